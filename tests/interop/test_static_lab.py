"""Static-key (``secret``) mode against the lab's stock OpenVPN 2.6 p2p server.

1. The STOCK client reaches the web host through the "static" lab mode (proves
   the lab: key, key directions, forwarding, routes).
2. erebus's :class:`StaticKeySession`, driven by the real asyncio runtime
   (``OpenVPNTunnel`` with a ``session_factory``; nothing in the runtime is changed),
   runs in the client namespace, pings the web host through the tunnel with an
   ICMP echo built by ``erebus.wire``, gets the reply, exchanges OCC option strings
   with the server and leaves with an OCC exit the server acts on.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time

import pytest

from tests.lab import REPO_ROOT, LabError, stop_process, tail, wait_for_log

pytestmark = pytest.mark.interop

# Runs in the client namespace: python HELPER PROFILE HOST PORT WEB_ADDR
HELPER = r'''
import asyncio, json, logging, re, sys, time

from erebus.openvpn.config import Profile, Remote
from erebus.openvpn.push import Route
from erebus.openvpn.static import StaticKeySession, StaticKeySettings
from erebus.openvpn.statickey import parse_static_key
from erebus.runtime.openvpn import OpenVPNTunnel
from erebus.wire.icmp import IcmpEcho, build_echo_request, parse_icmp
from erebus.wire.ipv4 import PROTO_ICMP, build_ipv4, parse_ipv4

logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                    format="%(asctime)s %(name)s %(levelname)s %(message)s")
profile_path, host, port, web = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
text = open(profile_path).read()


def option(name):
    m = re.search(rf"^{name} (.+)$", text, re.M)
    return m.group(1).split() if m else None


# the little the profile reader (erebus/openvpn/config.py) will have to map
key = parse_static_key(re.search(r"<secret>(.*?)</secret>", text, re.S).group(1),
                       source=f"{profile_path}: <secret>")
local_ip, remote_ip = option("ifconfig")
ping, restart = map(int, option("keepalive"))
routes = [Route(*m.groups()) for m in re.finditer(r"^route (\S+) (\S+)$", text, re.M)]
settings = StaticKeySettings(key=key, direction=int(option("key-direction")[0]),
                             cipher=option("cipher")[0], auth=option("auth")[0],
                             local_ip=local_ip, remote_ip=remote_ip, ping=ping,
                             ping_restart=restart, routes=routes)
profile = Profile(path=profile_path, remotes=[Remote(host, port, "udp")])


async def main():
    tunnel = OpenVPNTunnel(profile,
                           session_factory=lambda now, token: StaticKeySession(settings, now))
    inbound = asyncio.Queue()
    tunnel.set_receiver(inbound.put_nowait)
    info = await tunnel.connect(timeout=10)
    session = tunnel.session
    ident, replies, sent, rtt = 0x5E57, 0, 0, None
    deadline = time.monotonic() + 25
    while replies < 3 and time.monotonic() < deadline:
        sent += 1
        payload = b"erebus static key %d" % sent
        echo = build_echo_request(ident, sent, payload)
        t0 = time.monotonic()
        tunnel.send_packet(build_ipv4(local_ip, web, PROTO_ICMP, echo))
        try:
            while True:
                packet = await asyncio.wait_for(inbound.get(), 2.0)
                if not packet or packet[0] >> 4 != 4:
                    continue        # the server's TUN sends IPv6 too (router solicitations)
                header, body = parse_ipv4(packet)
                if header.protocol != PROTO_ICMP or header.src_str != web:
                    continue
                msg = parse_icmp(body)
                if isinstance(msg, IcmpEcho) and msg.type == 0 and msg.ident == ident \
                        and msg.seq == sent and msg.data == payload:
                    replies += 1
                    rtt = time.monotonic() - t0
                    break
        except asyncio.TimeoutError:
            pass
    # the server's OCC reply to our first OCC_REQUEST
    for _ in range(50):
        if session.peer_options is not None:
            break
        await asyncio.sleep(0.1)
    c = session.counters
    result = {
        "info": info.as_dict(), "sent": sent, "replies": replies, "rtt": rtt,
        "peer_seen": session.remote_session_id is not None,
        "peer_options": session.peer_options,
        "expected_remote_options": session.expected_remote_options,
        "local_options": session.local_options,
        "counters": {k: getattr(c, k) for k in c.__slots__},
        "datagrams_in": tunnel.datagrams_in, "datagrams_out": tunnel.datagrams_out,
    }
    await tunnel.close()
    result["state_after_close"] = session.state.value
    print(json.dumps(result))


asyncio.run(main())
'''


def test_stock_client_through_static_lab(lab, ovpn_server):
    server = ovpn_server("static")
    client_log = lab.dir / "stock-client-static.log"
    client = lab.spawn_ns(lab.ns_cli, ["openvpn", "--config", str(server.profile),
                                       "--log", str(client_log)])

    def context() -> str:
        return f"--- stock client ({client_log}) ---\n{tail(client_log)}\n{server.describe()}"

    try:
        try:
            wait_for_log(client_log, "Initialization Sequence Completed", timeout=30,
                         process=client, what="stock openvpn client (static key)")
        except LabError as exc:
            pytest.fail(f"{exc}\n{server.describe()}", pytrace=False)
        assert lab.ping(lab.ns_cli, server.vpn_address, count=3) > 0, context()
        assert lab.ping(lab.ns_cli, lab.web_addr, count=3) > 0, context()
        got = lab.run_ns(lab.ns_cli, ["curl", "-sS", "--fail", "--max-time", "30",
                                      lab.blob_url], text=False, timeout=60)
        assert got.returncode == 0, f"curl failed: {got.stderr.decode()}\n{context()}"
        assert hashlib.sha256(got.stdout).hexdigest() == lab.blob_sha256, context()
        log = client_log.read_text()
        assert "Data Channel: cipher 'AES-256-CBC', auth 'SHA256'" in log, context()
    finally:
        stop_process(client)


def test_static_key_session_against_stock_server(lab, ovpn_server):
    server = ovpn_server("static")
    script = lab.dir / "static_key_helper.py"
    script.write_text(HELPER)
    log_start = len(server.log.read_bytes())
    cp = lab.run_ns(lab.ns_cli, [sys.executable, str(script), str(server.profile),
                                 server.host, str(server.port), lab.web_addr],
                    env={"PYTHONPATH": str(REPO_ROOT)}, timeout=90)
    context = (f"--- helper rc={cp.returncode} ---\nstdout:\n{cp.stdout[-3000:]}\n"
               f"stderr:\n{cp.stderr[-6000:]}\n{server.describe(60)}")
    assert cp.returncode == 0, context
    result = json.loads(cp.stdout.strip().splitlines()[-1])

    assert result["info"]["virtual_ip"] == "198.19.8.2", context
    assert result["info"]["gateway"] == "198.19.8.1", context
    assert result["info"]["routes"] == ["198.18.2.0/24"], context
    assert result["info"]["cipher"] == "AES-256-CBC", context
    assert result["replies"] == 3, context
    assert result["peer_seen"], context
    # OCC: the server answered our OCC_REQUEST with exactly the string we expect,
    # and (see its log below) found nothing to complain about in ours
    assert result["peer_options"] == result["expected_remote_options"], context
    c = result["counters"]
    assert c["dropped_data_auth"] == c["dropped_decrypt"] == c["dropped_replay"] == 0, context
    assert c["dropped_malformed"] == 0 and c["occ_in"] >= 1, context
    assert result["state_after_close"] == "closed", context

    def server_log_since_start() -> str:
        return server.log.read_bytes()[log_start:].decode("utf-8", "replace")

    # the server took our packets (no authentication errors, no replay warnings), and
    # our OCC exit made it restart (SIGUSR1 "remote-exit"), as a stock client's would
    deadline = time.monotonic() + 10
    while "remote-exit" not in (since := server_log_since_start()):
        if time.monotonic() > deadline:
            pytest.fail(f"the server did not act on our OCC exit\n{context}", pytrace=False)
        time.sleep(0.1)
    assert f"Peer Connection Initiated with [AF_INET]{lab.client_link_addr}" in since, context
    for bad in ("Authenticate/Decrypt packet error", "bad packet ID", "inconsistently"):
        assert bad not in since, f"{bad!r} in the server log\n{context}"
