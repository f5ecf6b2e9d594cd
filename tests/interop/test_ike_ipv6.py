"""IPv6 inside an IKEv2 tunnel against the stock strongSwan responder (mode "v6" of
:class:`tests.swan_lab.SwanLab`: an IPv4 and an IPv6 pool, both protected networks):
erebus as nobody reads the lab's swanctl.conf (``vips = 0.0.0.0, ::``), gets an address
from each pool, and carries IPv6 through ESP (next header 41) both ways.

The ICMPv6 echo is built here through the tunnel API (``IkeTunnel.send_packet`` /
``set_receiver``), so this test does not depend on ``probe --ping`` for IPv6.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.swan_lab import SwanLab

pytestmark = pytest.mark.interop

# As nobody: connect with the user's swanctl.conf, ping the web host over IPv6 and
# IPv4 (both through the one CHILD_SA), print a JSON line.
PING6 = r"""
import asyncio, json, os, sys, time
from erebus.ipsec.swanctl import load_swanctl
from erebus.runtime.ipsec import IkeTunnel
from erebus.errors import ParseError, SessionError
from erebus.probe import ping_through
from erebus.wire import icmpv6, ipv6

async def main(conf, target, count):
    t = IkeTunnel(load_swanctl(conf))
    try:
        info = await t.connect()
    except SessionError as exc:
        print(json.dumps({"ok": False, "stage": exc.stage, "error": str(exc)})); return
    src, dst = ipv6.ip6_from_str(info.virtual_ip6), ipv6.ip6_from_str(target)
    ident = int.from_bytes(os.urandom(2), "big")
    replies, hop = {}, {}
    got = asyncio.Event()

    def receive(packet):
        try:
            header, payload = ipv6.parse_ipv6(packet)
            if header.src != dst or header.dst != src or header.protocol != 58:
                return
            m = icmpv6.parse_icmpv6(payload, header.src, header.dst)
        except ParseError:
            return
        if isinstance(m, icmpv6.Icmpv6Echo) and m.type == icmpv6.ECHO_REPLY \
                and m.ident == ident:
            replies[m.seq] = m.data
            got.set()

    t.set_receiver(receive)
    sent = {}
    for seq in range(1, count + 1):
        data = os.urandom(56)
        sent[seq] = data
        t.send_packet(ipv6.build_ipv6(src, dst, 58,
                                      icmpv6.build_echo_request(src, dst, ident, seq, data)))
        deadline = time.monotonic() + 3
        while seq not in replies and time.monotonic() < deadline:
            got.clear()
            try:
                await asyncio.wait_for(got.wait(), deadline - time.monotonic())
            except asyncio.TimeoutError:
                break
    ok = sorted(s for s in replies if replies[s] == sent.get(s))
    ping4 = await ping_through(t, sys.argv[4])
    out = {"ok": True, "info": info.as_dict(), "replies6": ok, "ping4_ms": ping4,
           "counters": t.counters.as_dict()}
    await t.close()
    print(json.dumps(out))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


# As nobody: connect, then fetch a file over IPv6 (and over IPv4) with VpnStack, the
# dual-stack NetStack's TCP through ESP; print sizes, hashes and the peer names.
FETCH = r"""
import asyncio, hashlib, json, sys
from erebus.ipsec.swanctl import load_swanctl
from erebus.runtime.ipsec import IkeTunnel
from erebus.runtime.stack import VpnStack

async def get(vpn, host, path):
    r, w = await vpn.open_connection(host, 80, timeout=10)
    peer = w.get_extra_info("peername")
    w.write(f"GET /{path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    data = await asyncio.wait_for(r.read(), 120)
    w.close()
    body = data.split(b"\r\n\r\n", 1)[1]
    return {"size": len(body), "sha256": hashlib.sha256(body).hexdigest(),
            "peer": list(peer)}

async def main(conf, web6, web4, path):
    t = IkeTunnel(load_swanctl(conf))
    info = await t.connect()
    vpn = VpnStack(t)
    out = {"ok": True, "has_ipv6": vpn.has_ipv6, "info": info.as_dict()}
    out["v6"] = await get(vpn, web6, path)
    out["v4"] = await get(vpn, web4, path)
    out["counters"] = t.counters.as_dict()
    vpn.close()
    await t.close()
    print(json.dumps(out))

asyncio.run(main(*sys.argv[1:5]))
"""



@pytest.fixture
def lab(swan_lab: SwanLab) -> Iterator[SwanLab]:
    yield swan_lab
    swan_lab.terminate_all()


def _json(cp, lab: SwanLab) -> tuple[dict, str]:
    """The JSON document of a command's output (``probe --json``: indented; the
    script: one line), and the context for failures."""
    context = f"{cp.stdout}\n{cp.stderr[-4000:]}\n{lab.logs_tail()}"
    start = cp.stdout.find("{")
    assert start >= 0, context
    return json.loads(cp.stdout[start:]), context


def test_probe_reports_the_ipv6_virtual_ip_from_the_pool(lab: SwanLab):
    conf = lab.profile("v6").conf
    assert "vips = 0.0.0.0, ::" in conf.read_text()
    cp = lab.run_client([lab.python, "-m", "erebus", "probe", str(conf), "--json",
                         "--ping", lab.web_addr], timeout=90)
    report, context = _json(cp, lab)
    assert cp.returncode == 0 and report["ok"], context
    assert ipaddress.ip_address(report["virtual_ip"]) in ipaddress.ip_network(lab.pool)
    assert ipaddress.ip_address(report["virtual_ip6"]) in ipaddress.ip_network(lab.pool6), \
        context
    assert report["prefix6"] == 64, context         # what charon sends (ike_config.c)
    assert report["routes"] == [lab.protected_net], context
    assert report["routes6"] == [lab.protected_net6], context
    assert report["dns"] == [lab.dns_addr, lab.dns_addr6], context
    assert report["ping_ms"] is not None, context
    # the responder agrees: our two addresses, both selectors in one CHILD_SA
    log = lab.responder_log.read_text(errors="replace")
    assert re.search(rf"assigning virtual IP {re.escape(report['virtual_ip6'])} to peer",
                     log), context


def test_ping6_through_esp(lab: SwanLab):
    """Five ICMPv6 echoes to the web host's IPv6 address, answered byte-exact, and an
    IPv4 ping through the same CHILD_SA; nothing dropped by ESP."""
    script = Path(lab.dir) / "ping6.py"
    script.write_text(PING6)
    script.chmod(0o644)
    cp = lab.run_client([lab.python, str(script), str(lab.profile("v6").conf),
                         lab.web_addr6, "5", lab.web_addr], timeout=120)
    out, context = _json(cp, lab)
    assert cp.returncode == 0 and out["ok"], context
    assert out["info"]["virtual_ip6"].startswith("2001:2:0:130::"), context
    assert out["replies6"] == [1, 2, 3, 4, 5], context
    assert out["ping4_ms"] is not None, context
    counters = out["counters"]
    assert counters["bad_next_header"] == 0 and counters["policy_in"] == 0, context
    assert counters["malformed"] == 0, context
    assert not lab.established("v6"), lab.list_sas()


def test_fetch_over_ipv6_through_esp_with_vpnstack(lab: SwanLab):
    """The blob (1 MiB) from the web host's IPv6 address through VpnStack's TCP over ESP,
    byte-exact, and the same over IPv4 through the same CHILD_SA."""
    from erebus.runtime.stack import VpnStack
    if not hasattr(VpnStack, "has_ipv6"):
        pytest.skip("needs the dual-stack NetStack (VpnStack.has_ipv6) from main")
    script = Path(lab.dir) / "fetch6.py"
    script.write_text(FETCH)
    script.chmod(0o644)
    cp = lab.run_client([lab.python, str(script), str(lab.profile("v6").conf),
                         lab.web_addr6, lab.web_addr, "blob.bin"], timeout=240)
    out, context = _json(cp, lab)
    assert cp.returncode == 0 and out["ok"] and out["has_ipv6"], context
    for family, host in (("v6", lab.web_addr6), ("v4", lab.web_addr)):
        got = out[family]
        assert got["size"] == lab.blob_size and got["sha256"] == lab.blob_sha256, context
        assert got["peer"] == [host, 80], context
    c = out["counters"]
    assert c["bad_next_header"] == c["policy_in"] == c["malformed"] == 0, context
