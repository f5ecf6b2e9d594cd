"""IPv6 inside the tunnel against the stock OpenVPN 2.6 server (issue 16): a server
with ``server-ipv6 2001:2:0:180::/64`` pushing ``route-ipv6 2001:2:0:2::/64`` and
``dhcp-option DNS6 2001:2:0:2::2`` (tests/lab.py, modes with ``ipv6_inside``, indices
80-84); erebus runs as ``nobody`` in the client namespace, which has no IPv6 anywhere but
through the tunnel.  ``probe --json`` reports the pushed IPv6 side, ``probe --ping`` an
IPv6 address gets echo replies from the web host over ICMPv6 (UDP and TCP transport, and
a static-key tunnel with ifconfig-ipv6), the pcap of it decodes with tshark; block-ipv6
and pull-filter keep IPv6 from the server as 2.6 does; the lab's DNS server answers
AAAA, also for a name that has only an AAAA record."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.interop.util import outdir, probe_json
from tests.lab import (DNS_NAMES6, V6ONLY_NAME, WEB_ADDR, WEB_ADDR6, WEB_NET6,
                       REPO_ROOT)

pytestmark = pytest.mark.interop


def _probe(lab, profile, *extra, want_ok=True):
    cp, report = probe_json(lab, profile, "--timeout", 30, *extra, timeout=90)
    if want_ok:
        assert cp.returncode == 0 and report["ok"], (report, cp.stderr[-3000:],
                                                     lab.logs_tail())
    return report


def _variant(lab, mode: str, name: str, *lines: str) -> Path:
    server = lab.start_server(mode)
    d = Path(tempfile.mkdtemp(dir=lab.dir, prefix="v6-"))
    os.chmod(d, 0o755)
    path = d / f"{name}.ovpn"
    path.write_text(server.profile.read_text() + "".join(line + "\n" for line in lines))
    os.chmod(path, 0o644)
    return path


def test_probe_reports_the_pushed_ipv6_side(lab):
    server = lab.start_server("v6")
    report = _probe(lab, server.profile)
    pool = ipaddress.IPv6Network(server.pool6)
    assert ipaddress.IPv6Address(report["virtual_ip6"]) in pool, report
    assert report["prefix6"] == 64
    assert report["gateway6"] == server.vpn_address6 == "2001:2:0:180::1"
    assert report["routes6"] == [WEB_NET6]
    assert report["dns6"] == [WEB_ADDR6] and report["dns"] == [WEB_ADDR, WEB_ADDR6]
    assert report["virtual_ip"].startswith("198.19.80.")        # IPv4 as before


@pytest.mark.parametrize("mode", ["v6", "v6-tcp", "v6-static"])
def test_probe_pings_the_web_host_over_ipv6(lab, mode):
    server = lab.start_server(mode)
    report = _probe(lab, server.profile, "--ping", WEB_ADDR6)
    assert report["ping"] == WEB_ADDR6 and report["ping_ms"] is not None, report
    if mode == "v6-static":      # the profile's own ifconfig-ipv6 LOCAL/64 REMOTE
        assert report["virtual_ip6"] == "2001:2:0:182::2" and report["prefix6"] == 64
        assert report["gateway6"] == "2001:2:0:182::1" and report["routes6"] == [WEB_NET6]
    # and IPv4 still answers through the same kind of tunnel
    assert _probe(lab, server.profile, "--ping", WEB_ADDR)["ping_ms"] is not None


def _tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("tshark is required under CI")
        pytest.skip("tshark is not installed")
    return path


def test_the_pcap_of_an_ipv6_ping_decodes_with_tshark(lab):
    tshark = _tshark()
    server = lab.start_server("v6")
    pcap = outdir(lab) / "ping6.pcapng"
    report = _probe(lab, server.profile, "--ping", WEB_ADDR6, "--pcap", pcap)
    cp = subprocess.run([tshark, "-r", str(pcap), "-n", "-Y", "icmpv6", "-T", "fields",
                         "-E", "separator=|", "-e", "frame.interface_name", "-e", "ipv6.src",
                         "-e", "ipv6.dst", "-e", "icmpv6.type",
                         "-e", "icmpv6.checksum.status"],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    rows = {tuple(line.split("|")) for line in cp.stdout.splitlines() if line}
    me = report["virtual_ip6"]
    assert ("tunnel-inner", me, WEB_ADDR6, "128", "1") in rows, cp.stdout
    assert ("tunnel-inner", WEB_ADDR6, me, "129", "1") in rows, cp.stdout


def test_block_ipv6_answers_locally_and_sends_nothing(lab):
    server = lab.start_server("v6-block")
    report = _probe(lab, server.profile, "--ping", WEB_ADDR6, want_ok=False)
    assert report["stage"] == "ping" and report["ping_ms"] is None, report
    assert report["virtual_ip6"]                        # configured, as 2.6 does
    assert report["counters"]["dropped_block_ipv6"] >= 1, report["counters"]


def test_pull_filter_ignore_keeps_ipv6_out(lab):
    profile = _variant(lab, "v6", "no-ipv6", 'pull-filter ignore "ifconfig-ipv6"',
                       'pull-filter ignore "route-ipv6"')
    report = _probe(lab, profile, "--ping", WEB_ADDR6, want_ok=False)
    assert report["virtual_ip6"] is None and report["routes6"] == [], report
    assert report["stage"] == "ping"
    assert report["error"] == f"--ping {WEB_ADDR6}: the tunnel has no IPv6 address"
    assert report["virtual_ip"]                         # IPv4 is unaffected


def test_ping6_through_an_ipv4_only_tunnel_is_one_clear_line(lab):
    server = lab.start_server("gcm")
    report = _probe(lab, server.profile, "--ping", WEB_ADDR6, want_ok=False)
    assert report["error"] == f"--ping {WEB_ADDR6}: the tunnel has no IPv6 address"
    assert report["virtual_ip6"] is None


_DIG = r"""
import sys, dns.message, dns.query, dns.rdatatype
server, name, rdtype = sys.argv[1:]
answer = dns.query.udp(dns.message.make_query(name, rdtype), server, timeout=5)
print(dns.rcode.to_text(answer.rcode()), *sorted(r.to_text() for s in answer.answer for r in s))
"""


@pytest.mark.parametrize("server_addr", [WEB_ADDR, WEB_ADDR6])
def test_the_lab_dns_answers_aaaa(lab, server_addr):
    def dig(name, rdtype):
        cp = lab.run_ns(lab.ns_srv, [sys.executable, "-c", _DIG, server_addr, name, rdtype],
                        timeout=30, env={"PYTHONPATH": str(REPO_ROOT)})
        assert cp.returncode == 0, cp.stderr
        return cp.stdout.split()
    assert dig("web.lab.test", "AAAA") == ["NOERROR", DNS_NAMES6["web.lab.test"]]
    assert dig("web.lab.test", "A") == ["NOERROR", WEB_ADDR]
    assert dig(V6ONLY_NAME, "AAAA") == ["NOERROR", WEB_ADDR6]
    assert dig(V6ONLY_NAME, "A") == ["NOERROR"]          # NODATA: only an AAAA record


def _dual_stack() -> bool:
    from erebus.runtime.stack import VpnStack
    return hasattr(VpnStack, "has_ipv6")


@pytest.mark.skipif(not _dual_stack(), reason="the dual-stack NetStack (VpnStack.has_ipv6) "
                    "is not on this branch yet: TCP over IPv6 inside needs it")
@pytest.mark.parametrize("mode", ["v6", "v6-tcp"])
def test_blob_over_ipv6_through_a_local_forward(lab, mode):
    from tests.interop.util import Up, _fetch, _free_port
    server = lab.start_server(mode)
    port = _free_port()
    up = Up(lab, server.profile, f"{port}:[{WEB_ADDR6}]:80", log_name=f"up-{mode}.log")
    try:
        digest, err, _ = _fetch(lab, f"http://127.0.0.1:{port}/blob.bin", timeout=120)
        assert digest == lab.blob_sha256, (err, up.log.read_text()[-3000:])
    finally:
        assert up.stop() == 0, up.log.read_text()[-3000:]
    # the web host saw the client's IPv6 pool address, not IPv4
    text = (lab.dir / "http6.log").read_text()
    assert re.search(r"2001:2:0:18[01]::[0-9a-f]+ - - .*GET /blob\.bin", text), text[-2000:]
