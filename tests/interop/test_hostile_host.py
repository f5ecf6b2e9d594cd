"""A hostile host inside the VPN (raw sockets in the stock OpenVPN server's namespace,
writing to erebus' virtual IP through the server's TUN device) against `erebus up` run
as nobody through the CLI: 40,000 overlapping out-of-order segments on one connection
cost erebus less than 16 MiB of RSS and leave that connection and others working; 2,000
spoofed SYNs to a -R port open at most the backlog's worth of local connections while a
-L fetch goes on."""

from __future__ import annotations

import concurrent.futures
import json
import re
import time
from pathlib import Path

import pytest

from erebus.runtime.expose.forward import RemoteForward
from tests.interop.util import Up, _big_file, _fetch, _free_port, outdir
from tests.lab import SYSTEM_PYTHON, WEB_ADDR, tail

pytestmark = pytest.mark.interop

HOSTILE = str(Path(__file__).with_name("hostile.py"))
SPOOFED = "198.18.200.0/22"          # SYN sources: routed back via the server, into a hole
FLOOD_PORT, SYN_PORT = 8090, 8091


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _accepted(log: Path, port: int) -> int:
    return log.read_text().count(f"accept {port}\n") if log.exists() else 0


@pytest.fixture(scope="module")
def hostile(lab, ovpn_server):
    server = ovpn_server("gcm")
    out = outdir(lab)
    targets = {FLOOD_PORT: _free_port(), SYN_PORT: _free_port()}
    target_log = out / "target.log"
    proc = lab.spawn_ns(lab.ns_cli, [SYSTEM_PYTHON, HOSTILE, "target", str(target_log),
                                     *map(str, targets.values())], output=out / "target.out")
    _wait(lambda: target_log.exists() and target_log.read_text().count("listening") == 2
          or proc.poll() is not None, 10, "the local target")
    assert proc.poll() is None, tail(out / "target.out")
    fwd = _free_port()
    up = Up(lab, server.profile, f"{fwd}:{WEB_ADDR}:80", log_name="up-hostile.log",
            args=[a for vport, lport in targets.items()
                  for a in ("-R", f"{vport}:127.0.0.1:{lport}")])
    vip = re.search(r"virtual IP ([\d.]+)/", up.log.read_text()).group(1)
    lab.run_ns(lab.ns_srv, ["ip", "route", "add", "blackhole", SPOOFED], check=True)
    yield {"server": server, "up": up, "vip": vip, "fwd": fwd, "target_log": target_log,
           "targets": targets, "pid": _erebus_pid(up)}
    lab.run_ns(lab.ns_srv, ["ip", "route", "del", "blackhole", SPOOFED])
    up.stop()


def _erebus_pid(up) -> int:
    """The python process of this `erebus up` (runuser's child), by its -R argument."""
    needle = f"{FLOOD_PORT}:127.0.0.1:".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].rsplit(b"/", 1)[-1] not in (b"runuser", b"env", b"ip") \
                and b"up" in cmd and any(needle in a for a in cmd):
            return int(proc.name)
    raise AssertionError("erebus up process not found")


def _hostile(lab, *args, timeout=600) -> dict:
    cp = lab.run_ns(lab.ns_srv, [SYSTEM_PYTHON, HOSTILE, *map(str, args)], timeout=timeout)
    assert cp.returncode == 0, cp.stderr
    return json.loads(cp.stdout.strip().splitlines()[-1])


def test_out_of_order_flood_costs_little_memory_and_breaks_nothing(lab, hostile):
    r = _hostile(lab, "ooo", hostile["vip"], FLOOD_PORT, hostile["server"].device,
                 hostile["pid"], 40_000)
    grown = r["peak_kib"] - r["baseline_kib"]
    print(f"\n40,000 overlapping out-of-order segments: handled in {r['flood_seconds']} s; "
          f"erebus RSS {r['baseline_kib']} KiB before, peak {r['peak_kib']} KiB "
          f"(+{grown} KiB), {r['after_kib']} KiB after the echo; "
          f"{r['pings_missed']} pings missed")
    assert r["pings_missed"] == 0, r            # every batch reached erebus and was handled
    assert grown < 16 * 1024, r
    assert r["echo_exact"], r                   # the flooded connection, both ways
    digest, err, _ = _fetch(lab, f"http://127.0.0.1:{hostile['fwd']}/blob.bin")
    assert digest == lab.blob_sha256, err       # and another one


def test_syn_flood_on_a_remote_forward_opens_at_most_the_backlog(lab, hostile):
    log, port = hostile["target_log"], hostile["targets"][SYN_PORT]
    before = _accepted(log, port)
    digest10 = _big_file(lab, "big10.bin", 10 * 1024 * 1024)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        fetch = pool.submit(_fetch, lab, f"http://127.0.0.1:{hostile['fwd']}/big10.bin")
        r = _hostile(lab, "syn", hostile["vip"], SYN_PORT, 2000)
        digest, err, seconds = fetch.result(timeout=300)
    assert r["pings_missed"] == 0, r
    assert digest == digest10, err
    backlog = RemoteForward.BACKLOG
    # the first `backlog` SYNs were dialled: wait for those dials, then send more with
    # the queue full (the half-open connections stay for their SYN-ACK retries)
    _wait(lambda: _accepted(log, port) - before >= backlog, 30,
          f"the backlog's dials ({_accepted(log, port) - before} seen)")
    _hostile(lab, "syn", hostile["vip"], SYN_PORT, 200)
    opened = _accepted(log, port) - before
    print(f"\n2,000 + 200 spoofed SYNs in {r['seconds']} s: {opened} local connections "
          f"(backlog {backlog}); a 10 MiB -L fetch meanwhile in {seconds:.1f} s")
    assert opened == backlog, opened
    # -L and the other -R rule still serve while the flooded rule's queue is full
    digest, err, _ = _fetch(lab, f"http://127.0.0.1:{hostile['fwd']}/blob.bin")
    assert digest == lab.blob_sha256, err
    code = ("import socket\n"
            f"s=socket.create_connection(('{hostile['vip']}',{FLOOD_PORT}),timeout=20)\n"
            "s.sendall(b'echo through -R')\n"
            "print(s.recv(100).decode())\n")
    cp = lab.run_ns(lab.ns_srv, [SYSTEM_PYTHON, "-c", code], timeout=60)
    assert cp.stdout.strip() == "echo through -R", cp.stderr
