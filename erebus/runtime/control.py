"""``erebus up --control PATH``: a Unix socket that answers ``erebus status`` and
carries ``erebus nc --via``.

The protocol is one JSON line each way (docs/control.md)::

    {"cmd": "status"}                          -> {"ok": true, "status": {...}}
    {"cmd": "connect", "host": H, "port": P}   -> {"ok": true, "peer": "..."} then raw
                                                  bytes both ways, or {"ok": false, ...}

Only the user who runs ``erebus up`` (and root) may talk to it: the socket is created
mode 0600 (under a umask, then chmod), and every accepted connection's SO_PEERCRED
uid is checked as well.  A request line is at most :data:`REQUEST_MAX` bytes and must
come within :data:`IDLE_TIMEOUT` seconds; anything else (not JSON, an unknown
command, a bad port) is answered with one error line and the connection closed.  No
client's fault reaches ``erebus up``.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import socket
import stat
import struct
import time

from ..counters import traffic_of
from ..errors import ConfigError
from .expose.forward import Half
from .expose.hostport import hostport

log = logging.getLogger("erebus.control")

REQUEST_MAX = 4096        # bytes of one request line, newline included
IDLE_TIMEOUT = 10.0       # seconds for the request line to arrive
PROTOCOL = 1              # "version" in every status answer


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix stream socket (SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


class State:
    """What ``erebus up`` says about the tunnel: "connecting", "up", "reconnecting";
    ``reconnects``: sessions brought up again after one ended."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.started = clock()
        self.state = "connecting"
        self.reconnects = 0
        self.since = self.started          # when the state last changed

    def set(self, state: str) -> None:
        if state == "up" and self.state == "reconnecting":
            self.reconnects += 1
        self.state = state
        self.since = self.clock()


def service_kind(service) -> tuple[str, str]:
    """(kind, name) of a service of ``erebus up``: -L, -R, http, socks."""
    name = type(service).__name__
    if name == "LocalForward":
        return "-L", str(service.spec)
    if name == "RemoteForward":
        return "-R", str(service.spec)
    if name == "HttpProxy":
        return "http", hostport(service.bind, service.port)
    if name == "SocksServer":
        return "socks", hostport(service.bind, service.port)
    if name == "ControlServer":
        return "nc", service.path
    return name, ""


def drops_of(tunnel) -> dict[str, int]:
    """The core's drop counters by reason (the driver's drop_kinds) over every session,
    and the packets the stack sent while the tunnel was down."""
    if hasattr(tunnel, "drops"):
        counts = tunnel.drops()
    else:
        counters = getattr(tunnel, "counters", None)
        kinds = getattr(getattr(tunnel, "driver", None), "drop_kinds", {}) or {}
        counts = {name: getattr(counters, name, 0) if counters is not None else 0
                  for name in kinds}
    drops = {name.removeprefix("dropped_"): int(n) for name, n in counts.items()}
    drops["tunnel_down"] = int(getattr(tunnel, "dropped_down", 0))
    return drops


def snapshot(tunnel, services, state: State, vpn=None) -> dict:
    """The status answer: plain JSON types only (docs/control.md lists the fields)."""
    info = getattr(tunnel, "info", None)
    now = state.clock()
    traffic = tunnel.traffic() if hasattr(tunnel, "traffic") else \
        traffic_of(getattr(tunnel, "session", None))
    out = {
        "version": PROTOCOL,
        "pid": os.getpid(),
        "state": state.state,
        "uptime_s": round(now - state.started, 1),
        "state_s": round(now - state.since, 1),
        "kind": getattr(info, "kind", None),
        "server": getattr(info, "server", None),
        "address": getattr(info, "address", None),
        "virtual_ip": getattr(info, "virtual_ip", None),
        "netmask": getattr(info, "netmask", None),
        "virtual_ip6": getattr(info, "virtual_ip6", None),
        "prefix6": getattr(info, "prefix6", None),
        "cipher": getattr(info, "cipher", None),
        "mtu": getattr(info, "mtu", None),
        "dns": list(getattr(info, "dns", []) or []),
        "routes": list(getattr(info, "routes", []) or []),
        "routes6": list(getattr(info, "routes6", []) or []),
        "bytes_in": traffic[0], "bytes_out": traffic[1],
        "packets_in": traffic[2], "packets_out": traffic[3],
        "drops": drops_of(tunnel),
        "renegotiations": int(getattr(tunnel, "rekeys", 0)),
        "reconnects": state.reconnects,
        "services": [],
        "connections": {},
    }
    for service in services:
        if not hasattr(service, "open"):
            continue                      # --pac, --metrics: nothing held open
        kind, name = service_kind(service)
        opened = int(getattr(service, "open", 0))
        out["services"].append({"kind": kind, "name": name, "open": opened})
        out["connections"][kind] = out["connections"].get(kind, 0) + opened
    if vpn is not None:
        stack = getattr(vpn, "stack", None)
        out["tcp_connections"] = len(getattr(stack, "conns", ()) or ())
    return out


def _line(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


class _ControlClient(Half):
    """One accepted control connection: a request line, then an answer (and, for
    connect, the spliced stream)."""

    def __init__(self, server: "ControlServer"):
        super().__init__()
        self.server = server
        self.buf = bytearray()
        self.stage = "request"        # -> "connecting" -> "spliced", or "done"
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task | None = None
        self._remote: Half | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        server = self.server
        try:
            uid = server.uid_of(transport.get_extra_info("socket"))
        except (OSError, TypeError, AttributeError) as exc:
            uid, why = None, f"no peer credentials ({exc})"
        else:
            why = f"uid {uid}"
        if uid is None or uid not in server.allowed_uids:
            server.refused += 1
            log.warning("control: refused a client (%s; only uid %s may connect)", why,
                        " and ".join(map(str, dict.fromkeys(server.allowed_uids))))
            self._finish({"ok": False, "error": "permission denied"})
            return
        self.timer = asyncio.get_running_loop().call_later(server.idle_timeout,
                                                           self._idle)

    def _idle(self) -> None:
        self.timer = None
        if self.stage == "request":
            self._answer_error(f"no request line in {self.server.idle_timeout:g} s")

    def _answer_error(self, message: str) -> None:
        self.server.errors += 1
        self._finish({"ok": False, "error": message})

    def _finish(self, answer: dict) -> None:
        """The last line: written, our side shut (what the client still sends is read
        and dropped, so its close is no reset), closed for good after the idle time."""
        self.stage = "done"
        t = self.transport
        if t is None or t.is_closing():
            return
        t.write(_line(answer))
        if t.can_write_eof():
            t.write_eof()
        else:
            t.close()
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(self.server.idle_timeout,
                                                           t.abort)

    def data_received(self, data) -> None:
        if self.stage in ("spliced", "connecting"):
            super().data_received(data)
            return
        if self.stage != "request":
            return
        self.buf += data
        end = self.buf.find(b"\n")
        if end < 0:
            if len(self.buf) >= self.server.request_max:
                self._answer_error(f"request longer than {self.server.request_max} bytes")
            return
        if end + 1 > self.server.request_max:
            self._answer_error(f"request longer than {self.server.request_max} bytes")
            return
        line, rest = bytes(self.buf[:end]), bytes(self.buf[end + 1:])
        self.buf.clear()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        try:
            self._request(line, rest)
        except Exception as exc:                 # noqa: BLE001 - never kill erebus up
            log.exception("control: internal error on a request")
            self._answer_error(f"internal error: {type(exc).__name__}")

    def eof_received(self) -> bool:
        if self.stage == "request":
            self._answer_error("no complete request line before EOF")
        if self.stage == "done":
            return False                         # both sides shut: closed
        return super().eof_received()

    def _request(self, line: bytes, rest: bytes) -> None:
        try:
            request = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            self._answer_error("bad request: not a JSON line")
            return
        if not isinstance(request, dict):
            self._answer_error("bad request: not a JSON object")
            return
        cmd = request.get("cmd")
        if cmd == "status":
            self._finish({"ok": True, "status": self.server.status()})
        elif cmd == "connect":
            host, port = request.get("host"), request.get("port")
            if not isinstance(host, str) or not host or len(host) > 255 \
                    or not isinstance(port, int) or isinstance(port, bool) \
                    or not 0 < port < 65536:
                self._answer_error("bad request: connect needs a host (a string) and "
                                   "a port (1..65535)")
                return
            if self.server.dialer is None:
                self._answer_error("this erebus up has no tunnel to connect through yet")
                return
            self.stage = "connecting"
            if rest:
                self.pending.append(rest)         # sent early: goes after the OK
            self.transport.pause_reading()
            self.task = asyncio.get_running_loop().create_task(self._connect(host, port))
            self.server.tasks.add(self.task)
            self.task.add_done_callback(self.server.tasks.discard)
        else:
            self._answer_error(f"unknown command {str(cmd)[:40]!r} (status, connect)")

    async def _connect(self, host: str, port: int) -> None:
        server = self.server
        self._remote = remote = Half(gauge=server.nc_gauge)
        try:
            transport = await server.dialer.dial(host, port, lambda: remote)
        except asyncio.CancelledError:
            raise
        except Exception as exc:                 # noqa: BLE001 - answered, never raised
            if not isinstance(exc, (OSError, ValueError, asyncio.TimeoutError)):
                log.exception("control: internal error connecting to %s",
                              hostport(host, port))
            server.failed += 1
            log.info("control: connect %s failed: %s", hostport(host, port),
                     exc or type(exc).__name__)
            self.transport.resume_reading()
            self._finish({"ok": False, "error": str(exc) or type(exc).__name__})
            return
        if self.transport.is_closing() or self.closed:
            transport.close()
            return
        peer = transport.get_extra_info("peername")
        self.transport.write(_line({"ok": True, "peer": hostport(*peer[:2])
                                    if peer else None}))
        self.stage = "spliced"
        remote.attach(self.transport)
        self.attach(transport)
        self.transport.resume_reading()
        server.connected += 1
        log.debug("control: spliced to %s", hostport(host, port))

    def connection_lost(self, exc) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        super().connection_lost(exc)


class _Gauge:
    __slots__ = ("open",)

    def __init__(self):
        self.open = 0


class ControlServer:
    """The control socket of one ``erebus up``.  ``status``: a callable giving the
    status dict; ``dialer``: what ``connect`` dials through (None until the tunnel is
    up); ``uid_of``: the SO_PEERCRED check (tests give a fake)."""

    def __init__(self, path: str, status, dialer=None, *, uid_of=peer_uid,
                 allowed_uids: tuple[int, ...] | None = None,
                 request_max: int = REQUEST_MAX, idle_timeout: float = IDLE_TIMEOUT):
        self.path = path
        self.status = status
        self.dialer = dialer
        self.uid_of = uid_of
        self.allowed_uids = allowed_uids if allowed_uids is not None else (os.getuid(), 0)
        self.request_max = request_max
        self.idle_timeout = idle_timeout
        self.server = None
        self.tasks: set[asyncio.Task] = set()
        self.nc_gauge = _Gauge()
        self.refused = self.errors = self.failed = self.connected = 0
        self._ino: tuple[int, int] | None = None

    @property
    def open(self) -> int:
        return self.nc_gauge.open

    async def start(self) -> None:
        sock = bind_private(self.path)
        st = os.stat(self.path)
        self._ino = (st.st_dev, st.st_ino)
        try:
            self.server = await asyncio.get_running_loop().create_unix_server(
                lambda: _ControlClient(self), sock=sock)
        except BaseException:
            sock.close()
            self._unlink()
            raise
        log.info("control socket %s (mode 0600)", self.path)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for task in list(self.tasks):
            task.cancel()
        self._unlink()

    def _unlink(self) -> None:
        """Remove the socket file if it is still ours (not one another process made)."""
        try:
            st = os.lstat(self.path)
        except OSError:
            return
        if self._ino is None or (st.st_dev, st.st_ino) == self._ino:
            try:
                os.unlink(self.path)
            except OSError:
                pass


def bind_private(path: str) -> socket.socket:
    """A listening Unix socket at ``path`` that only its owner can open: bound under
    umask 0177 and chmod 0600 after.  A stale socket (nobody listening) is replaced;
    anything else at ``path`` is a ConfigError."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise ConfigError(f"--control {path}: exists and is not a socket: refusing to "
                              "replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(2.0)
            probe.connect(path)
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                raise ConfigError(f"--control {path}: exists and cannot be checked "
                                  f"({exc.strerror or exc}): refusing to replace it") \
                    from None
            os.unlink(path)                       # stale: nobody listens
        else:
            raise ConfigError(f"--control {path}: another process is listening on it")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    try:
        os.chmod(path, 0o600)
        sock.listen(64)
        sock.setblocking(False)
    except OSError:
        sock.close()
        os.unlink(path)
        raise
    return sock
