"""``erebus status PATH [--json] [--watch]``: ask a running ``erebus up --control
PATH`` (erebus/runtime/control.py) and show the answer."""

from __future__ import annotations

import json
import shutil
import socket
import sys
import time

from .errors import ErebusError

ANSWER_MAX = 1 << 20        # bytes of one status answer
TIMEOUT = 5.0
CLEAR = "\x1b[H\x1b[2J"    # cursor home, clear the screen


class StatusError(ErebusError):
    """The control socket could not be asked (not there, not ours, no answer)."""


def unreachable(path: str, exc: OSError) -> str:
    """Why the control socket at ``path`` could not be connected to, in one line (for
    ``status`` and ``nc --via``)."""
    if isinstance(exc, PermissionError):
        return f"{path}: permission denied (the control socket is its owner's)"
    return f"{path}: {exc.strerror or exc} (is 'erebus up --control {path}' running?)"


def query(path: str, request: dict, *, timeout: float = TIMEOUT) -> dict:
    """One request line, one answer line (a dict with "ok")."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except OSError as exc:
            raise StatusError(unreachable(path, exc)) from None
        try:
            sock.sendall(json.dumps(request).encode() + b"\n")
        except OSError:
            pass                          # refused at once: its answer may be there
        buf = bytearray()
        while b"\n" not in buf:
            try:
                data = sock.recv(65536)
            except socket.timeout:
                raise StatusError(f"{path}: no answer in {timeout:g} s") from None
            except OSError as exc:
                if buf:
                    break
                raise StatusError(f"{path}: {exc.strerror or exc}") from None
            if not data:
                break
            buf += data
            if len(buf) > ANSWER_MAX:
                raise StatusError(f"{path}: the answer is longer than {ANSWER_MAX} bytes")
    finally:
        sock.close()
    line = bytes(buf).partition(b"\n")[0]
    try:
        answer = json.loads(line)
    except ValueError:
        raise StatusError(f"{path}: the answer is not JSON" if line else
                          f"{path}: closed without an answer") from None
    if not isinstance(answer, dict):
        raise StatusError(f"{path}: the answer is not a JSON object")
    if not answer.get("ok"):
        raise StatusError(f"{path}: {answer.get('error') or 'refused'}")
    return answer


def status(path: str) -> dict:
    answer = query(path, {"cmd": "status"})
    st = answer.get("status")
    if not isinstance(st, dict):
        raise StatusError(f"{path}: the answer has no status")
    return st


def _size(n) -> str:
    n = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def _duration(s) -> str:
    s = int(s or 0)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s" if m else f"{sec}s"


def render(st: dict) -> str:
    """The human view of one status answer."""
    lines = [f"tunnel     {st.get('state', '?')} for {_duration(st.get('state_s'))} "
             f"(erebus up pid {st.get('pid', '?')}, up {_duration(st.get('uptime_s'))})"]
    if st.get("server"):
        lines.append(f"server     {st['server']} ({st.get('kind') or '?'}), cipher "
                     f"{st.get('cipher') or '?'}, MTU {st.get('mtu') or '?'}")
    ips = []
    if st.get("virtual_ip"):
        ips.append(f"{st['virtual_ip']}/{st.get('netmask')}")
    if st.get("virtual_ip6"):
        ips.append(f"{st['virtual_ip6']}/{st.get('prefix6')}")
    if ips:
        lines.append(f"virtual IP {' and '.join(ips)}")
    routes = (st.get("routes") or []) + (st.get("routes6") or [])
    if routes:
        lines.append(f"routes     {', '.join(routes)}")
    if st.get("dns"):
        lines.append(f"DNS        {', '.join(st['dns'])}")
    lines.append(f"in         {_size(st.get('bytes_in'))} in {st.get('packets_in', 0)} "
                 "packets")
    lines.append(f"out        {_size(st.get('bytes_out'))} in {st.get('packets_out', 0)} "
                 "packets")
    drops = {k: v for k, v in (st.get("drops") or {}).items() if v}
    lines.append("drops      " + (", ".join(f"{k} {v}" for k, v in sorted(drops.items()))
                                 or "none"))
    lines.append(f"rekeys     {st.get('renegotiations', 0)}, reconnects "
                 f"{st.get('reconnects', 0)}")
    services = st.get("services") or []
    if services:
        lines.append("services")
        for s in services:
            lines.append(f"  {s.get('kind', '?'):<6} {s.get('name', '')}: "
                         f"{s.get('open', 0)} open")
    return "\n".join(lines)


def watch_loop(path: str, *, out=sys.stdout, rounds: int | None = None, interval: float = 1.0,
          sleep=time.sleep) -> int:
    """Redraw the view every ``interval`` s, cut to the terminal's height, until Ctrl-C
    (exit 0) or the socket goes away (exit 1); ``rounds``: stop after that many."""
    n = 0
    try:
        while rounds is None or n < rounds:
            n += 1
            try:
                text = render(status(path))
            except StatusError as exc:
                out.write(CLEAR + f"erebus: {exc}\n")
                out.flush()
                return 1
            height = shutil.get_terminal_size((80, 24)).lines
            shown = text.splitlines()[:max(1, height - 2)]
            out.write(CLEAR + "\n".join(shown) + f"\n\n{time.strftime('%H:%M:%S')}  "
                      "(Ctrl-C leaves)\n")
            out.flush()
            if rounds is None or n < rounds:
                sleep(interval)
    except KeyboardInterrupt:
        out.write("\n")
        return 0
    return 0


def main(path: str, *, json_out: bool = False, watch: bool = False) -> int:
    if watch:
        return watch_loop(path)
    st = status(path)
    print(json.dumps(st, indent=2) if json_out else render(st))
    return 0
