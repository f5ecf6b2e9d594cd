"""--print-env lines, the --pac file (its logic evaluated for a few URLs: by node when
it is installed, and its isInNet lines always), the --metrics text and the tiny HTTP
server that serves both; up's option checks."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import shutil
import subprocess

import pytest

from erebus import metrics
from erebus.errors import ConfigError
from erebus.proxyenv import NO_PROXY, PAC_TYPE, READY_LINE, env_lines, pac_routes, pac_text
from erebus.runtime.httpserve import HttpServe
from erebus.session import TunnelInfo


def _info(**kw) -> TunnelInfo:
    base = dict(kind="openvpn", server="s:1194", virtual_ip="198.18.8.6",
                netmask="255.255.255.0", gateway=None, routes=["198.18.2.0/24",
                                                                "198.19.0.0/16"],
                virtual_ip6="2001:2:0:8::1000", prefix6=64, routes6=["2001:2:0:2::/64"])
    base.update(kw)
    return TunnelInfo(**base)


def test_print_env_lines():
    lines = env_lines(("127.0.0.1", 3128), ("127.0.0.1", 1080))
    assert lines == [
        "export http_proxy=http://127.0.0.1:3128 https_proxy=http://127.0.0.1:3128 "
        "HTTP_PROXY=http://127.0.0.1:3128 HTTPS_PROXY=http://127.0.0.1:3128",
        "export ALL_PROXY=socks5h://127.0.0.1:1080 all_proxy=socks5h://127.0.0.1:1080",
        f"export NO_PROXY={NO_PROXY} no_proxy={NO_PROXY}"]
    assert env_lines(None, ("::1", 1080))[0] == \
        "export ALL_PROXY=socks5h://[::1]:1080 all_proxy=socks5h://[::1]:1080"
    # a wildcard bind is reached on loopback; no credentials ever
    assert "http://127.0.0.1:8080" in env_lines(("0.0.0.0", 8080), None)[0]
    assert len(env_lines(("0.0.0.0", 8080), None)) == 2
    assert env_lines(None, None) == []
    with_auth = env_lines(("127.0.0.1", 3128), None, auth=True)
    assert with_auth[0].startswith("# erebus: the proxies ask for a username")
    assert not any("@" in line for line in with_auth)
    assert READY_LINE.startswith("#")


def test_print_env_evaluates_in_sh():
    lines = env_lines(("127.0.0.1", 3128), ("127.0.0.1", 1080)) + [READY_LINE]
    out = subprocess.run(["sh", "-c", 'eval "$1"; echo "$https_proxy $ALL_PROXY $no_proxy"',
                          "sh", "\n".join(lines)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["http://127.0.0.1:3128", "socks5h://127.0.0.1:1080",
                                  NO_PROXY]


def _isinnet_rules(text: str) -> list[ipaddress.IPv4Network]:
    return [ipaddress.IPv4Network(f"{a}/{m}") for a, m in
            re.findall(r'isInNet\(ip, "([\d.]+)", "([\d.]+)"\)', text)]


def test_pac_isinnet_lines():
    text = pac_text(_info(domains=["corp.lab.test"]), ("127.0.0.1", 3128), None)
    assert 'var vpn = "PROXY 127.0.0.1:3128";' in text
    # the VPN subnet first, then the pushed routes; each once
    assert _isinnet_rules(text) == [ipaddress.IPv4Network("198.18.8.0/24"),
                                    ipaddress.IPv4Network("198.18.2.0/24"),
                                    ipaddress.IPv4Network("198.19.0.0/16")]
    assert 'isInNetEx(h, "2001:2:0:8::/64")' in text
    assert 'isInNetEx(h, "2001:2:0:2::/64")' in text
    assert 'dnsDomainIs(host, ".corp.lab.test") || host == "corp.lab.test"' in text
    only_socks = pac_text(_info(), None, ("127.0.0.1", 1080))
    assert 'var vpn = "SOCKS5 127.0.0.1:1080; SOCKS 127.0.0.1:1080";' in only_socks
    assert "dnsDomainIs" not in only_socks            # no domain pushed
    bare = pac_text(_info(routes=[], virtual_ip6=None, routes6=[]), ("127.0.0.1", 1), None)
    assert _isinnet_rules(bare) == [ipaddress.IPv4Network("198.18.8.0/24")]
    assert "isInNetEx" not in bare


# PAC's helper functions, as browsers define them, for node
_PAC_RUNTIME = r"""
function dnsDomainIs(h, d) { return h.length >= d.length && h.slice(-d.length) == d; }
function ip2n(a) { return a.split(".").reduce(function (n, o) { return n * 256 + +o; }, 0); }
function isInNet(h, p, m) { return (ip2n(h) & ip2n(m)) >>> 0 == (ip2n(p) & ip2n(m)) >>> 0; }
var NAMES = %s;
function dnsResolve(h) { return NAMES[h] || null; }
function isInNetEx(h, cidr) {
  var net = require("net"); var bl = new net.BlockList();
  var parts = cidr.split("/"); bl.addSubnet(parts[0], +parts[1], "ipv6");
  return net.isIPv6(h) && bl.check(h, "ipv6");
}
%s
var out = {};
for (const [url, host] of %s) out[url] = FindProxyForURL(url, host);
console.log(JSON.stringify(out));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_pac_logic_in_node():
    text = pac_text(_info(domains=["corp.lab.test"]), ("127.0.0.1", 3128), None)
    names = {"web.lab.test": "198.18.2.2", "example.org": "192.0.2.1"}
    cases = {"http://198.18.2.2/": "198.18.2.2",
             "http://198.19.200.1:8080/x": "198.19.200.1",
             "http://198.18.8.1/": "198.18.8.1",
             "http://198.20.0.1/": "198.20.0.1",
             "http://web.lab.test/": "web.lab.test",
             "http://example.org/": "example.org",
             "http://unknown.invalid/": "unknown.invalid",
             "http://git.corp.lab.test/": "git.corp.lab.test",
             "http://corp.lab.test/": "corp.lab.test",
             "http://notcorp.lab.test/": "notcorp.lab.test",
             "http://[2001:2:0:2::2]/": "2001:2:0:2::2",
             "http://[2001:2:0:9::2]/": "[2001:2:0:9::2]"}
    script = _PAC_RUNTIME % (json.dumps(names), text, json.dumps(list(cases.items())))
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    proxy, direct = "PROXY 127.0.0.1:3128", "DIRECT"
    assert got == {"http://198.18.2.2/": proxy, "http://198.19.200.1:8080/x": proxy,
                   "http://198.18.8.1/": proxy, "http://198.20.0.1/": direct,
                   "http://web.lab.test/": proxy, "http://example.org/": direct,
                   "http://unknown.invalid/": direct, "http://git.corp.lab.test/": proxy,
                   "http://corp.lab.test/": proxy, "http://notcorp.lab.test/": direct,
                   "http://[2001:2:0:2::2]/": proxy, "http://[2001:2:0:9::2]/": direct}


def _metrics_status():
    return {"state": "up", "uptime_s": 12.5, "bytes_in": 10 ** 12, "bytes_out": 7,
            "packets_in": 3, "packets_out": 4, "drops": {"replay": 2, 'we"ird': 1},
            "reconnects": 1, "renegotiations": 5, "connections": {"-L": 2, "socks": 0}}


def test_metrics_text():
    text = metrics.render(_metrics_status())
    lines = text.splitlines()
    for line in ("erebus_tunnel_up 1", "erebus_uptime_seconds 12.5",
                 'erebus_bytes_total{dir="in"} 1000000000000',
                 'erebus_bytes_total{dir="out"} 7', 'erebus_packets_total{dir="in"} 3',
                 'erebus_drops_total{reason="replay"} 2',
                 'erebus_drops_total{reason="we\\"ird"} 1',
                 "erebus_reconnects_total 1", "erebus_renegotiations_total 5",
                 'erebus_connections{service="-L"} 2',
                 "# TYPE erebus_bytes_total counter", "# TYPE erebus_connections gauge"):
        assert line in lines, line
    assert metrics.render({"state": "reconnecting"}).splitlines()[2] == "erebus_tunnel_up 0"
    for name in metrics.METRICS:          # every name is documented
        assert name in open("docs/control.md").read()


async def _get(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


def test_http_serve_pac_and_metrics():
    async def go():
        routes = pac_routes(lambda: _info(), ("127.0.0.1", 3128), None)
        routes.update(metrics.routes(_metrics_status))
        server = HttpServe("--pac", "127.0.0.1", 0, routes)
        await server.start()
        try:
            for path in ("/proxy.pac", "/"):
                data = await _get(server.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"
                                  .encode())
                head, _, body = data.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200")
                assert f"content-type: {PAC_TYPE}".encode() in head.lower()
                assert body.startswith(b"// erebus up --pac") and b"FindProxyForURL" in body
            data = await _get(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"text/plain; version=0.0.4" in data and b"erebus_tunnel_up 1" in data
            data = await _get(server.port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
            assert data.startswith(b"HTTP/1.1 404")
            data = await _get(server.port, b"POST / HTTP/1.1\r\nHost: x\r\n"
                              b"Content-Length: 0\r\n\r\n")
            assert data.startswith(b"HTTP/1.1 405")
            data = await _get(server.port, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"\r\n\r\n")
            data = await _get(server.port, b"garbage\r\n\r\n")
            assert data.startswith(b"HTTP/1.1 400")
            data = await _get(server.port, b"GET / HTTP/1.1\r\nX: " + b"a" * 9000 +
                              b"\r\n\r\n")                  # the head is bounded
            assert data.startswith(b"HTTP/1.1 4")
            assert server.requests == 6 and server.errors == 2
        finally:
            await server.close()

    asyncio.run(asyncio.wait_for(go(), 10))


@pytest.mark.parametrize("kw, what", [({"pac": "8080"}, "--pac needs"),
                                      ({"print_env": True}, "--print-env needs"),
                                      ({"pac": "8080", "socks": "1080:x"}, "--socks")])
def test_up_option_checks(kw, what):
    from erebus.up import run_up
    with pytest.raises(ConfigError, match=what):
        asyncio.run(run_up("/nonexistent.ovpn", **kw))
