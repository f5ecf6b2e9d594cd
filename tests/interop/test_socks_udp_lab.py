"""SOCKS5 UDP ASSOCIATE through the stock OpenVPN server: `erebus up --socks` as
nobody in the client namespace, a UDP echo server on the web host behind the VPN, and
two clients: our own, written from RFC 1928 (tests/socks5_udp_client.py), and PySocks
(Debian's python3-socks), a third party's.  Answers arrive byte-exact, names go to the
VPN's DNS (the lab's dnsmasq), erebus's memory stays flat over 10,000 datagrams, and a
datagram from another local socket is dropped and counted in erebus's exit counters."""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.interop.util import Up, _free_port
from tests.lab import REPO_ROOT, SYSTEM_PYTHON, WEB_ADDR, tail

pytestmark = pytest.mark.interop

NAME = "web.lab.test"                # known to the lab's dnsmasq only
ECHO_PORT = 7007
CLIENT = str(REPO_ROOT / "tests" / "socks5_udp_client.py")

_ECHO = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(({WEB_ADDR!r}, {ECHO_PORT}))
while True:
    data, addr = s.recvfrom(65535)
    s.sendto(data, addr)
"""


@pytest.fixture(scope="module")
def relay(lab, ovpn_server):
    """`erebus up --socks` (and a second one with username/password) and the echo."""
    echo = lab.spawn_ns(lab.ns_web, [SYSTEM_PYTHON, "-c", _ECHO],
                        output=lab.dir / "udp-echo.log")
    deadline = time.time() + 10
    while f"{WEB_ADDR}:{ECHO_PORT} " not in lab.run_ns(lab.ns_web, ["ss", "-Huln"]).stdout:
        assert time.time() < deadline and echo.poll() is None, tail(lab.dir / "udp-echo.log")
        time.sleep(0.1)
    port = _free_port()
    up = Up(lab, ovpn_server("gcm").profile, log_name="up-socks-udp.log",
            args=["--socks", port, "-v"])
    yield {"port": port, "up": up}
    up.stop()
    echo.kill()
    echo.wait()


def client(lab, port, *args, timeout=300) -> dict:
    cp = lab.run_ns(lab.ns_cli, [SYSTEM_PYTHON, CLIENT, "127.0.0.1", str(port),
                                 *map(str, args)], timeout=timeout)
    assert cp.returncode == 0, cp.stderr
    return json.loads(cp.stdout)


def _rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _erebus_pid(up) -> int:
    """The python process of `erebus up` (the runuser's child)."""
    pid = up.proc.pid
    for _ in range(4):                   # runuser -> python (maybe via ip netns exec)
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            break
        if b"erebus" in cmd and b"runuser" not in cmd[0] and b"ip" != cmd[0].split(b"/")[-1]:
            return pid
        children = open(f"/proc/{pid}/task/{pid}/children").read().split()
        if not children:
            break
        pid = int(children[0])
    raise AssertionError(f"the erebus process under {up.proc.pid} was not found")


def test_ten_thousand_echo_datagrams_byte_exact_with_flat_memory(lab, relay):
    port = relay["port"]
    warm = client(lab, port, "echo", WEB_ADDR, ECHO_PORT, "--count", 1000, "--seed", 1)
    assert warm["exact"] >= 990 and warm["wrong"] == 0, warm
    pid = _erebus_pid(relay["up"])
    before = _rss_kib(pid)
    result = client(lab, port, "echo", WEB_ADDR, ECHO_PORT, "--count", 10000, "--window",
                    50, "--max-size", 1200, "--seed", 2, "--stranger", "--timeout", 240)
    after = _rss_kib(pid)
    print(f"\n10,000 echo datagrams through the SOCKS5 UDP relay: {result['exact']} exact, "
          f"{result['sent'] - result['exact']} lost, in {result['seconds']} s; "
          f"erebus RSS {before} KiB before, {after} KiB after")
    assert result["sent"] == 10000
    assert result["wrong"] == 0, result                 # every answer that came is exact
    assert result["exact"] >= 9900, result              # at least 99 % came
    assert result["senders"] == [f"{WEB_ADDR}:{ECHO_PORT}"]
    assert result["stranger_answered"] is False, result
    assert result["relay"][0] == "127.0.0.1"
    assert after - before < 8 * 1024, (before, after)


def test_names_go_to_the_vpn_dns_through_the_relay(lab, relay):
    port = relay["port"]
    # a raw DNS query to the pushed DNS server, carried by the relay
    result = client(lab, port, "dns", WEB_ADDR, NAME, "--count", 3)
    assert result["lost"] == 0 and result["answers"] == [[WEB_ADDR]] * 3, result
    # a destination given as a name: erebus resolves it with the VPN's DNS
    result = client(lab, port, "echo", NAME, ECHO_PORT, "--count", 200, "--seed", 3)
    assert result["wrong"] == 0 and result["exact"] >= 198, result
    assert result["senders"] == [f"{WEB_ADDR}:{ECHO_PORT}"]
    assert f"query[A] {NAME}" in (lab.dir / "dnsmasq.log").read_text()


_PYSOCKS = f"""
import socket, socks, sys
s = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
s.set_proxy(socks.SOCKS5, "127.0.0.1", int(sys.argv[1]), rdns=True)
s.settimeout(5)
got = []
for i in range(20):
    msg = b"pysocks %d " % i + bytes(range(256)) * 4
    s.sendto(msg, ({NAME!r}, {ECHO_PORT}))
    data, addr = s.recvfrom(65535)
    got.append(data == msg and addr == ({WEB_ADDR!r}, {ECHO_PORT}))
print(sum(got))
"""


def test_pysocks_a_third_party_client(lab, relay):
    """PySocks (python3-socks) asks with DST.ADDR the name "0" and sends names as
    ATYP 3 (rdns): both work."""
    cp = lab.run_ns(lab.ns_cli, [SYSTEM_PYTHON, "-c", _PYSOCKS, str(relay["port"])],
                    timeout=120)
    assert cp.returncode == 0 and cp.stdout.strip() == "20", (cp.stdout, cp.stderr)


def test_the_exit_counters_show_the_stranger(lab, relay):
    """Last in this module: stops erebus and reads its counters line."""
    up = relay["up"]
    assert up.stop() == 0
    log = up.log.read_text()
    line = re.search(r"SOCKS5 proxy on 127\.0\.0\.1:\d+: counters: (.*)", log)
    assert line, tail(up.log)
    print("\n" + line.group(0))
    counters = dict(kv.split("=") for kv in line.group(1).split())
    assert int(counters["udp_strangers"]) >= 1, line.group(0)
    assert int(counters["udp_associations"]) >= 4, line.group(0)
    assert int(counters["udp_datagrams_out"]) >= 11000, line.group(0)
    assert "udp_errors" not in counters, line.group(0)
