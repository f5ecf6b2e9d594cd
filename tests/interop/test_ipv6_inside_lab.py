"""IPv6 inside the tunnel against the stock OpenVPN 2.6 server (issue 16): a server
with ``server-ipv6 2001:2:0:180::/64`` pushing ``route-ipv6 2001:2:0:2::/64`` and
``dhcp-option DNS6 2001:2:0:2::2`` (tests/lab.py, modes with ``ipv6_inside``, indices
80-84); erebus runs as ``nobody`` in the client namespace, which has no IPv6 anywhere but
through the tunnel.  ``probe --json`` reports the pushed IPv6 side, ``probe --ping`` an
IPv6 address gets echo replies from the web host over ICMPv6 (UDP and TCP transport, and
a static-key tunnel with ifconfig-ipv6), the pcap of it decodes with tshark; block-ipv6
and pull-filter keep IPv6 from the server as 2.6 does; the lab's DNS server answers
AAAA, also for a name that has only an AAAA record.  100 MiB arrive byte-exact over
IPv6 through ``-L [WEB_ADDR6]:80``; curl through erebus's SOCKS5 and HTTP proxy (absolute
URI and CONNECT) fetches from the IPv6 literal and from the AAAA-only name."""

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

from tests.interop.util import Up, _big_file, _fetch, _free_port, outdir, probe_json
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


@pytest.mark.parametrize("mode", ["v6", "v6-tcp"])
def test_blob_over_ipv6_through_a_local_forward(lab, mode):
    """UDP transport: 100 MiB byte-exact over IPv6 through -L [v6]:80; TCP: the 1 MiB blob."""
    server = lab.start_server(mode)
    port = _free_port()
    name, digest = (("big100.bin", _big_file(lab, "big100.bin", 100 << 20)) if mode == "v6"
                    else ("blob.bin", lab.blob_sha256))
    up = Up(lab, server.profile, f"{port}:[{WEB_ADDR6}]:80", log_name=f"up-{mode}.log")
    try:
        got, err, secs = _fetch(lab, f"http://127.0.0.1:{port}/{name}", timeout=300)
        assert got == digest, (err, up.log.read_text()[-3000:])
        print(f"\n{name} over IPv6 through -L ({mode}) in {secs:.1f} s")
    finally:
        assert up.stop() == 0, up.log.read_text()[-3000:]
    # the web host saw the client's IPv6 pool address, not IPv4
    text = (lab.dir / "http6.log").read_text()
    assert re.search(r"2001:2:0:18[01]::[0-9a-f]+ - - .*GET /" + re.escape(name), text), \
        text[-2000:]


@pytest.fixture(scope="module")
def proxies6(lab):
    """One `erebus up` on the dual-stack server (mode v6) with SOCKS5 and the HTTP proxy."""
    server = lab.start_server("v6")
    ports = {"socks": _free_port(), "http": _free_port()}
    up = Up(lab, server.profile, log_name="up-proxies6.log",
            args=["--socks", ports["socks"], "--http-proxy", ports["http"]])
    yield ports
    assert up.stop() == 0, up.log.read_text()[-3000:]


def _curl(lab, *args, timeout=120):
    cp = lab.run_ns(lab.ns_cli, ["bash", "-o", "pipefail", "-c",
                                 "curl -sS --fail --max-time %d %s | sha256sum"
                                 % (timeout, " ".join(args))], timeout=timeout + 30)
    return (cp.stdout.split()[0] if cp.stdout else ""), cp.stderr


@pytest.mark.parametrize("host", [f"[{WEB_ADDR6}]", V6ONLY_NAME])
@pytest.mark.parametrize("proxy", ["socks5h", "http", "http-connect"])
def test_curl_through_the_proxies_to_ipv6(lab, proxies6, proxy, host):
    """curl (as root in the client namespace, which has no IPv6 route of its own) through
    erebus's SOCKS5 (ATYP 4 for the literal, the name resolved through the VPN's DNS to
    its only AAAA record) and HTTP proxy (absolute URI and CONNECT) fetches the blob
    byte-exact from the web host's IPv6 address; the web host logs our IPv6 pool address."""
    if proxy == "socks5h":
        opts = f"--socks5-hostname 127.0.0.1:{proxies6['socks']}"
    else:
        opts = f"-x http://127.0.0.1:{proxies6['http']}" + (" -p" if proxy == "http-connect"
                                                            else "")
    log = lab.dir / "http6.log"
    before = log.read_text().count("GET /blob.bin")
    got, err = _curl(lab, opts, f"http://{host}/blob.bin")
    assert got == lab.blob_sha256, err
    text = log.read_text()
    assert text.count("GET /blob.bin") == before + 1, text[-2000:]
    last = [line for line in text.splitlines() if "GET /blob.bin" in line][-1]
    assert re.match(r"2001:2:0:180::[0-9a-f]+ - - ", last), last
