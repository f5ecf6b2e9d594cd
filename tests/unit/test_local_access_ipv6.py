"""Local access over IPv6 without a VPN: the ssh-style and RFC 3986 bracket syntax of
-L, -R, --socks, --http-proxy and the HTTP proxy's targets; A and AAAA through the
VPN's DNS for the families the tunnel carries; Happy Eyeballs v2 (RFC 8305) as a
sans-IO machine in numbers and through the dialer in virtual time; SOCKS5 ATYP 4."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import struct

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from erebus.errors import ConfigError
from erebus.netstack.errors import no_route
from erebus.runtime.expose import socks
from erebus.runtime.expose.dns import ResolveError, VpnResolver, interleave
from erebus.runtime.expose.eyeballs import HappyEyeballs, Phase
from erebus.runtime.expose.forward import (Dialer, parse_listen, parse_local_forward,
                                           parse_remote_forward)
from erebus.runtime.expose.hostport import BadHostPort, parse_authority, split_fields
from erebus.runtime.expose.http_proxy import ProxyError, absolute_http_uri
from erebus.wire import socks5 as wire
from tests.unit.test_expose import FakeTransport, settle
from tests.unit.virtual_loop import run as run_virtual

V6A, V6B = "2001:2:0:2::5", "2001:2:0:2::6"
V4A, V4B = "198.18.2.5", "198.18.2.6"


# -- syntax -------------------------------------------------------------------------------

def test_local_forwards_take_ipv6_in_brackets_like_ssh():
    s = parse_local_forward("8080:[2001:2:0:2::2]:80")
    assert (s.bind, s.port, s.host, s.host_port) == ("127.0.0.1", 8080, "2001:2:0:2::2", 80)
    s = parse_local_forward("[::1]:8080:web.lab.test:80")
    assert (s.bind, s.host) == ("::1", "web.lab.test")
    s = parse_local_forward("[::1]:8080:[2001:2:0:2:0:0:0:2]:443")
    assert (s.bind, s.host, str(s)) == ("::1", "2001:2:0:2::2",
                                        "[::1]:8080 -> [2001:2:0:2::2]:443")
    assert parse_local_forward("[::]:8080:web:80").bind == "::"


@pytest.mark.parametrize("spec, words", [
    ("8080:2001:2::2:80", "an IPv6 address goes in brackets"),
    ("8080:[web.lab.test]:80", "[web.lab.test] is not an IPv6 address"),
    ("8080:[2001:2::2:80", "unbalanced '['"),
    ("8080:[2001:2::2]x:80", "'x' after ']'"),
    ("8080:2001:2::2]:80", "brackets go around a whole IPv6 address"),
    ("8080:[fe80::1%eth0]:80", "a zone (%eth0) means nothing inside the tunnel"),
    ("[::1]:8080:[]:80", "[] is not an IPv6 address"),
    ("8080:[::ffff:1.2.3.4", "unbalanced"),
])
def test_bad_local_forwards_say_why_in_one_line(spec, words):
    with pytest.raises(ConfigError) as info:
        parse_local_forward(spec)
    message = str(info.value)
    assert message.startswith(f"-L {spec}: ") and words in message and "\n" not in message


def test_remote_forwards_bind_a_family_or_an_address_and_reach_ipv6_locally():
    r = parse_remote_forward("8080:[::1]:3000")
    assert (r.vport, r.lhost, r.lport, r.bind, r.family) == (8080, "::1", 3000, "", None)
    assert str(r) == "<virtual IP>:8080 -> [::1]:3000"
    assert parse_remote_forward("*:8080:127.0.0.1:3000").family is None
    assert parse_remote_forward(":8080:127.0.0.1:3000").family is None
    assert parse_remote_forward("0.0.0.0:8080:127.0.0.1:3000").family == 4
    r = parse_remote_forward("[::]:8080:127.0.0.1:3000")
    assert (r.family, str(r)) == (6, "<virtual IPv6>:8080 -> 127.0.0.1:3000")
    r = parse_remote_forward("[2001:2:0:180:0::1000]:8080:[::1]:3000")
    assert (r.bind, r.family, str(r)) == ("2001:2:0:180::1000", 6,
                                          "[2001:2:0:180::1000]:8080 -> [::1]:3000")
    for bad, words in [("web:8080:127.0.0.1:3000", "BIND 'web' is not an address"),
                       ("8080:::1:3000", "an IPv6 address goes in brackets"),
                       ("8080:[::1]", "expected [BIND:]VPORT:LHOST:LPORT"),
                       ("8080:[localhost]:3000", "not an IPv6 address")]:
        with pytest.raises(ConfigError, match=r"^-R ") as info:
            parse_remote_forward(bad)
        assert words in str(info.value), str(info.value)


def test_proxy_listeners_on_ipv6():
    assert parse_listen("[::1]:1080", "--socks") == ("::1", 1080)
    assert parse_listen("[::]:3128", "--http-proxy") == ("::", 3128)
    assert parse_listen("1080", "--socks") == ("127.0.0.1", 1080)
    for bad in ("::1:1080", "[::1]", "[::1]:x", "[::1:1080"):
        with pytest.raises(ConfigError, match=r"^--socks "):
            parse_listen(bad, "--socks")


def test_split_fields_is_bounded():
    with pytest.raises(BadHostPort, match="longer than"):
        split_fields("1:" * 600)


@pytest.mark.parametrize("text, want", [
    ("[2001:2::1]:443", ("2001:2::1", 443)),
    ("[2001:0002:0:0::1]:443", ("2001:2::1", 443)),
    ("198.18.2.2:80", ("198.18.2.2", 80)),
    ("web.lab.test:8080", ("web.lab.test", 8080)),
])
def test_authority_like_rfc_3986(text, want):
    assert parse_authority(text) == want


@pytest.mark.parametrize("text, words", [
    ("2001:2::1:443", "an IPv6 address goes in brackets"),
    ("[2001:2::1:443", "unbalanced '['"),
    ("[2001:2::1]443", "after ']'"),
    ("[web.lab.test]:443", "not an IPv6 address"),
    ("[v1.fe]:443", "IPvFuture"),
    ("[2001:2::1]", "no port"),
    ("[2001:2::1]:", "no port"),
    ("[2001:2::1]:0", "out of range"),
    ("[2001:2::1]:65536", "out of range"),
    ("[2001:2::1]:+1", "not a port number"),
    (":443", "no host"),
    ("", "no host"),
    ("we b:80", "not a host name"),
    ("2001:2::1]:443", "brackets go around"),
])
def test_bad_authorities_say_why(text, words):
    with pytest.raises(BadHostPort) as info:
        parse_authority(text)
    assert words in str(info.value)


def test_absolute_uris_with_ipv6_hosts():
    assert absolute_http_uri("http://[2001:2::1]:80/path?q=1#frag") == \
        ("2001:2::1", 80, "[2001:2::1]:80", "/path?q=1")
    assert absolute_http_uri("http://[2001:2::1]") == ("2001:2::1", 80, "[2001:2::1]", "/")
    assert absolute_http_uri("HTTP://[2001:2::1]:8080?x") == \
        ("2001:2::1", 8080, "[2001:2::1]:8080", "/?x")
    assert absolute_http_uri("http://user:pw@[2001:2::1]:81/") == \
        ("2001:2::1", 81, "[2001:2::1]:81", "/")
    assert absolute_http_uri("http://web.lab.test/") == ("web.lab.test", 80, "web.lab.test",
                                                         "/")
    for bad, words in [("http://[2001:2::1/path", "unbalanced '['"),
                       ("http://2001:2::1/path", "an IPv6 address goes in brackets"),
                       ("http://[web]/", "not an IPv6 address"),
                       ("http:///path", "no host"),
                       ("https://[2001:2::1]/", "go through CONNECT"),
                       ("/path", "absolute http:// URI")]:
        with pytest.raises(ProxyError) as info:
            absolute_http_uri(bad)
        assert info.value.status == 400 and words in str(info.value), str(info.value)


# -- DNS: A and AAAA for the families the tunnel carries ------------------------------------

RECORDS = {
    "dual.lab.test": {"A": [V4A, V4B], "AAAA": [V6A, V6B]},    # in any order (DNS)
    "web.lab.test": {"A": [V4A], "AAAA": [V6A]},
    "v6only.lab.test": {"AAAA": [V6A]},
    "v4only.lab.test": {"A": [V4A]},
    "nothing.lab.test": {},
}


class DnsVpn:
    """A tunnel with the given families whose DNS server answers RECORDS after
    ``delays[type]`` seconds (NXDOMAIN for other names); ``silent`` types are never
    answered.  Dials as ``behaviour[address]`` says (see :meth:`create_connection`)."""

    def __init__(self, *, v4=True, v6=True, delays=None, silent=(), behaviour=None):
        self.has_ipv4, self.has_ipv6 = v4, v6
        self.delays = delays or {}
        self.silent = set(silent)
        self.behaviour = behaviour or {}
        self.asked: list[tuple[str, str, str]] = []       # (server, name, type)
        self.calls: list[tuple[float, str]] = []          # (time, address) of each dial
        self.cancelled: list[str] = []
        self.transports: dict[str, "Tcp"] = {}
        self.t0 = None

    async def udp_exchange(self, payload, host, port, *, timeout, accept=None):
        query = dns.message.from_wire(payload)
        question = query.question[0]
        name = str(question.name).rstrip(".")
        rtype = dns.rdatatype.to_text(question.rdtype)
        self.asked.append((host, name, rtype))
        if rtype in self.silent:
            await asyncio.sleep(timeout)
            raise asyncio.TimeoutError
        await asyncio.sleep(self.delays.get(rtype, 0.01))
        response = dns.message.make_response(query)
        if name not in RECORDS:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif RECORDS[name].get(rtype):
            response.answer.append(dns.rrset.from_text(name + ".", 60, "IN", rtype,
                                                       *RECORDS[name][rtype]))
        return response.to_wire()

    async def create_connection(self, factory, host, port, *, timeout=None):
        """``behaviour[host]``: ("ok", delay) connects after delay, ("refuse", delay)
        refuses after delay, "silent" never answers (times out)."""
        loop = asyncio.get_running_loop()
        if not (self.has_ipv6 if ":" in host else self.has_ipv4):
            raise no_route(host)                 # as the stack does, at once
        self.calls.append((round(loop.time() - self.t0, 4), host))
        kind = self.behaviour.get(host, ("ok", 0.02))
        try:
            if kind == "silent":
                await asyncio.sleep(timeout)
                raise asyncio.TimeoutError
            await asyncio.sleep(kind[1])
        except asyncio.CancelledError:
            self.cancelled.append(host)
            raise
        if kind[0] == "refuse":
            raise ConnectionRefusedError(f"{host}: connection refused")
        transport = Tcp(host, port)
        self.transports[host] = transport
        protocol = factory()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        return transport, protocol


class Tcp(FakeTransport):
    def __init__(self, host, port):
        super().__init__()
        self.sockname = (host, port)
        self.protocol = None

    def set_protocol(self, protocol):
        self.protocol = protocol

    def get_extra_info(self, name, default=None):
        return self.sockname if name == "sockname" else default


def resolve(vpn, name, servers=("198.18.2.53",)):
    async def go():
        return await VpnResolver(vpn, list(servers)).resolve_all(name)
    return run_virtual(go())


def test_both_families_asked_at_once_and_interleaved_ipv6_first():
    vpn = DnsVpn()
    got = resolve(vpn, "dual.lab.test")
    assert [ipaddress.ip_address(a).version for a in got] == [6, 4, 6, 4]
    assert set(got) == {V6A, V4A, V6B, V4B}
    assert sorted(t for _, _, t in vpn.asked) == ["A", "AAAA"]
    assert interleave([V6A], [V4A, V4B]) == [V6A, V4A, V4B]


def test_a_name_with_only_aaaa_works_and_one_with_neither_says_so():
    assert resolve(DnsVpn(), "v6only.lab.test") == [V6A]
    with pytest.raises(ResolveError, match=r"^cannot resolve nothing.lab.test: no IPv4 or "
                                           r"IPv6 address \(A or AAAA record\)$"):
        resolve(DnsVpn(), "nothing.lab.test")
    with pytest.raises(ResolveError, match=r"^cannot resolve nosuch.lab.test: no such name$"):
        resolve(DnsVpn(), "nosuch.lab.test")


def test_an_ipv4_only_tunnel_never_asks_aaaa_nor_uses_ipv6():
    vpn = DnsVpn(v6=False)
    assert sorted(resolve(vpn, "dual.lab.test")) == [V4A, V4B]
    with pytest.raises(ResolveError, match=r"no IPv4 address \(A record\)$"):
        resolve(vpn, "v6only.lab.test")
    assert {t for _, _, t in vpn.asked} == {"A"}


def test_an_ipv6_only_tunnel_never_asks_a_and_reaches_only_ipv6_servers():
    vpn = DnsVpn(v4=False)
    assert sorted(resolve(vpn, "dual.lab.test",
                          servers=("198.18.2.53", "2001:2:0:2::53"))) == [V6A, V6B]
    assert {(s, t) for s, _, t in vpn.asked} == {("2001:2:0:2::53", "AAAA")}
    with pytest.raises(ResolveError, match=r"no IPv6 address \(AAAA record\)$"):
        resolve(vpn, "v4only.lab.test", servers=("2001:2:0:2::53",))
    with pytest.raises(ResolveError, match="cannot reach the DNS server"):
        resolve(vpn, "dual.lab.test", servers=("198.18.2.53",))


def test_one_family_failing_leaves_the_other():
    vpn = DnsVpn(silent={"AAAA"})
    assert sorted(resolve(vpn, "dual.lab.test")) == [V4A, V4B]


# -- Happy Eyeballs: the machine in numbers ------------------------------------------------

def test_aaaa_first_starts_at_once_and_the_families_alternate_every_250_ms():
    he = HappyEyeballs(ipv6=True, ipv4=True, now=0.0)
    assert he.poll(0.0) == [] and he.timer() is None and he.phase is Phase.RESOLVING
    he.answer(6, [V6A, V6B], 0.010)
    assert he.poll(0.010) == [V6A]
    he.answer(4, [V4A, V4B], 0.020)
    assert he.timer() == pytest.approx(0.260)
    assert he.poll(0.100) == []
    assert he.poll(0.260) == [V4A]
    assert he.poll(0.510) == [V6B]
    assert he.poll(0.760) == [V4B]
    assert he.timer() is None and he.in_flight == [V6A, V4A, V6B, V4B]
    assert he.attempt_succeeded(V4A) == [V6A, V6B, V4B]
    assert he.phase is Phase.CONNECTED and he.winner == V4A
    assert he.attempt_succeeded(V6B) == [V6B]                 # too late: a loser


def test_an_a_answer_first_waits_50_ms_for_aaaa():
    he = HappyEyeballs(ipv6=True, ipv4=True, now=0.0)
    he.answer(4, [V4A], 0.010)
    assert he.poll(0.010) == [] and he.timer() == pytest.approx(0.060)
    he.answer(6, [V6A], 0.040)                          # within the Resolution Delay
    assert he.poll(0.040) == [V6A]
    assert he.poll(0.290) == [V4A]


def test_a_late_aaaa_joins_after_ipv4_has_started():
    he = HappyEyeballs(ipv6=True, ipv4=True, now=0.0)
    he.answer(4, [V4A, V4B], 0.010)
    assert he.poll(0.059) == [] and he.timer() == pytest.approx(0.060)
    assert he.poll(he.timer()) == [V4A]                 # the Resolution Delay passed
    he.answer(6, [V6A], 0.200)
    assert he.poll(0.200) == [] and he.timer() == pytest.approx(0.310)
    assert he.poll(he.timer()) == [V6A]                 # IPv6 next: the families alternate
    assert he.poll(he.timer()) == [V4B]


def test_the_latest_attempt_failing_starts_the_next_at_once():
    he = HappyEyeballs(ipv6=True, ipv4=True, now=0.0)
    he.answer(6, [V6A, V6B], 0.0)
    he.answer(4, [V4A], 0.0)
    assert he.poll(0.0) == [V6A]
    he.attempt_failed(V6A, ConnectionRefusedError(), 0.005)
    assert he.poll(0.005) == [V4A]
    assert he.poll(0.100) == []                          # V4A is in flight: wait
    he.attempt_failed(V4A, ConnectionRefusedError(), 0.120)
    assert he.poll(0.120) == [V6B]
    he.attempt_failed(V6B, TimeoutError(), 5.0)
    assert he.phase is Phase.FAILED and [a for a, _ in he.errors] == [V6A, V4A, V6B]


def test_an_older_attempt_failing_does_not_hurry_the_next():
    he = HappyEyeballs(ipv6=True, ipv4=True, now=0.0)
    he.answer(6, [V6A, V6B], 0.0)
    he.answer(4, [V4A], 0.0)
    assert he.poll(0.0) == [V6A] and he.poll(0.25) == [V4A]
    he.attempt_failed(V6A, ConnectionRefusedError(), 0.3)
    assert he.poll(0.3) == [] and he.poll(0.5) == [V6B]


def test_a_family_with_no_answer_and_names_with_nothing():
    he = HappyEyeballs(ipv6=True, ipv4=True, now=0.0)
    he.answer(4, [], 0.01)
    he.answer(6, [V6A], 0.02)                           # an AAAA-only name
    assert he.poll(0.02) == [V6A]
    he = HappyEyeballs(ipv6=True, ipv4=True, now=0.0)
    he.answer(6, [], 0.01)
    assert he.phase is Phase.RESOLVING                   # A still to come
    he.query_failed(4, ResolveError("cannot resolve x: no such name"), 0.02)
    assert he.phase is Phase.FAILED and not he.errors and len(he.query_errors) == 1
    he = HappyEyeballs(ipv6=True, ipv4=True, now=0.0)
    he.answer(6, [], 0.0)
    he.answer(4, [V4A], 0.0)                            # AAAA answered empty: no wait
    assert he.poll(0.0) == [V4A]


def test_only_the_families_asked_count_and_attempts_are_bounded():
    he = HappyEyeballs(ipv6=False, ipv4=True, now=0.0)
    he.answer(6, [V6A], 0.0)                            # not asked: ignored
    he.answer(4, [V4A], 0.0)
    assert he.poll(0.0) == [V4A]                          # no AAAA to wait for
    many = [str(ipaddress.ip_address(V4A) + i) for i in range(40)]
    he = HappyEyeballs(ipv6=False, ipv4=True, now=0.0, max_attempts=16)
    he.answer(4, many + many, 0.0)
    started = []
    for step in range(100):
        started += he.poll(step * 0.25)
    assert started == many[:16]
    for address in started:
        he.attempt_failed(address, TimeoutError(), 30.0)
    assert he.phase is Phase.FAILED


# -- Happy Eyeballs through the dialer, in virtual time -------------------------------------

class Proto(asyncio.Protocol):
    def __init__(self):
        self.made = 0

    def connection_made(self, transport):
        self.made += 1
        self.transport = transport


def dial(vpn, host, port=80, **kw):
    async def go():
        vpn.t0 = asyncio.get_running_loop().time()
        dialer = Dialer(vpn, VpnResolver(vpn, ["198.18.2.53"]), **kw)
        proto = Proto()
        try:
            transport = await dialer.dial(host, port, lambda: proto)
        except OSError as exc:
            await asyncio.sleep(1)
            return exc, proto
        await asyncio.sleep(1)                              # the losers are cleaned up
        return transport, proto
    return run_virtual(go())


def test_ipv6_wins_when_it_answers():
    vpn = DnsVpn()
    transport, proto = dial(vpn, "web.lab.test")
    assert vpn.calls == [(0.01, V6A)]                        # IPv4 never needed
    assert transport.sockname == (V6A, 80) and proto.made == 1
    assert transport.protocol is proto and not transport.paused and not transport.closed


def test_a_silent_ipv6_falls_back_to_ipv4_after_250_ms_and_is_aborted():
    vpn = DnsVpn(behaviour={V6A: "silent", V6B: "silent"})
    transport, proto = dial(vpn, "web.lab.test")
    assert vpn.calls == [(0.01, V6A), (0.26, V4A)]
    assert transport.sockname == (V4A, 80) and proto.made == 1
    assert vpn.cancelled == [V6A]


def test_the_resolution_delay_through_the_dialer():
    vpn = DnsVpn(delays={"A": 0.01, "AAAA": 0.1}, behaviour={V4A: "silent", V4B: "silent"})
    transport, _ = dial(vpn, "web.lab.test")
    assert vpn.calls == [(0.06, V4A), (0.31, V6A)]
    assert transport.sockname == (V6A, 80) and vpn.cancelled == [V4A]


def test_two_connecting_at_once_keep_one():
    vpn = DnsVpn(behaviour={V6A: ("ok", 0.26), V4A: ("ok", 0.01)})
    transport, proto = dial(vpn, "web.lab.test")
    assert vpn.calls == [(0.01, V6A), (0.26, V4A)]
    assert transport.sockname in ((V6A, 80), (V4A, 80)) and proto.made == 1
    others = [t for t in vpn.transports.values() if t is not transport]
    assert all(t.closed for t in others) and not transport.closed


def test_a_refusing_ipv6_tries_ipv4_at_once():
    vpn = DnsVpn(behaviour={V6A: ("refuse", 0.005)})
    transport, _ = dial(vpn, "web.lab.test")
    assert vpn.calls == [(0.01, V6A), (0.015, V4A)] and transport.sockname == (V4A, 80)


def test_every_attempt_failing_names_each_and_keeps_the_last_type():
    vpn = DnsVpn(behaviour={a: ("refuse", 0.001) for a in (V6A, V6B, V4A, V4B)})
    exc, proto = dial(vpn, "dual.lab.test")
    assert isinstance(exc, ConnectionRefusedError) and proto.made == 0
    assert [ipaddress.ip_address(a).version for _, a in vpn.calls] == [6, 4, 6, 4]
    assert {a for _, a in vpn.calls} == {V6A, V4A, V6B, V4B}
    assert all(f"{a}:80: " in str(exc) for a in (f"[{V6A}]", f"[{V6B}]", V4A, V4B))


def test_an_aaaa_only_name_and_a_name_with_nothing_through_the_dialer():
    vpn = DnsVpn()
    transport, _ = dial(vpn, "v6only.lab.test")
    assert transport.sockname == (V6A, 80)
    exc, _ = dial(DnsVpn(), "nothing.lab.test")
    assert isinstance(exc, ResolveError)
    assert str(exc) == "cannot resolve nothing.lab.test: no IPv4 or IPv6 address (A or " \
        "AAAA record)"
    exc, _ = dial(DnsVpn(v6=False), "v6only.lab.test")
    assert str(exc) == "cannot resolve v6only.lab.test: no IPv4 address (A record)"


def test_the_whole_dial_has_one_timeout():
    vpn = DnsVpn(behaviour={a: "silent" for a in (V6A, V6B, V4A, V4B)})
    exc, _ = dial(vpn, "dual.lab.test", timeout=5.0)
    assert isinstance(exc, TimeoutError) and "timed out" in str(exc)
    assert len(vpn.calls) == 4


def test_a_literal_of_a_family_the_tunnel_lacks_is_network_unreachable():
    exc, _ = dial(DnsVpn(v6=False), V6A)
    assert exc.errno == errno.ENETUNREACH and "the tunnel has no IPv6 address" in str(exc)
    assert socks.reply_code(exc) == wire.REP_NETWORK_UNREACHABLE
    transport, _ = dial(DnsVpn(), f"[{V6A}]")
    assert transport.sockname == (V6A, 80)
    exc, _ = dial(DnsVpn(v4=False), V4A)
    assert exc.errno == errno.ENETUNREACH and "no IPv4 address" in str(exc)


# -- SOCKS5 ATYP 4 ------------------------------------------------------------------------

def socks_connect(dialer, request: bytes):
    async def go():
        server = socks.SocksServer(dialer, "::1", 0, credentials=None)
        client = socks._SocksClient(server)
        t = FakeTransport()
        client.connection_made(t)
        client.data_received(b"\x05\x01\x00" + request)
        await settle()
        if client.timer:
            client.timer.cancel()
        return bytes(t.out[2:]), t.closed
    return asyncio.run(go())


def v6_request(address: str, port: int = 80) -> bytes:
    return b"\x05\x01\x00\x04" + ipaddress.IPv6Address(address).packed + \
        struct.pack("!H", port)


def test_socks_connect_atyp_4_replies_with_the_ipv6_bound_address():
    class Far:
        asked = []

        async def dial(self, host, port, factory):
            self.asked.append((host, port))
            factory()
            far = FakeTransport()
            far.get_extra_info = lambda name, default=None: \
                ("2001:2:0:180::1000", 40001) if name == "sockname" else default
            return far

    dialer = Far()
    out, closed = socks_connect(dialer, v6_request(V6A))
    assert dialer.asked == [(V6A, 80)] and not closed
    assert out == b"\x05\x00\x00\x04" + \
        ipaddress.IPv6Address("2001:2:0:180::1000").packed + struct.pack("!H", 40001)


def test_socks_atyp_4_without_ipv6_in_the_tunnel_is_network_unreachable():
    out, closed = socks_connect(Dialer(DnsVpn(v6=False)), v6_request(V6A))
    assert out == b"\x05\x03\x00\x04" + bytes(16) + b"\x00\x00" and closed
    assert wire.parse_reply(out)[0].message == "network unreachable"


def test_socks_a_name_with_only_aaaa_over_an_ipv4_tunnel_is_host_unreachable():
    request = b"\x05\x01\x00\x03" + bytes((15,)) + b"v6only.lab.test" + b"\x00\x50"
    vpn = DnsVpn(v6=False)

    async def go():
        vpn.t0 = asyncio.get_running_loop().time()
    asyncio.run(go())
    out, closed = socks_connect(Dialer(vpn, VpnResolver(vpn, ["198.18.2.53"])), request)
    assert out[:4] == b"\x05\x04\x00\x01" and closed


# -- on the IPv6 loopback: the HTTP proxy and the SOCKS5 UDP relay -------------------------

class LoopbackDialer:
    """Dials the test's origin on ::1 whatever is asked for, and records what was."""

    def __init__(self, port: int):
        self.port = port
        self.asked = []

    async def dial(self, host, port, factory):
        self.asked.append((host, port))
        transport, _ = await asyncio.get_running_loop().create_connection(
            factory, "::1", self.port)
        return transport


async def v6_origin(received: list):
    async def handle(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        received.append(head)
        if head.startswith(b"PING"):
            writer.write(b"PONG")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
        await writer.drain()
        writer.close()
    return await asyncio.start_server(handle, "::1", 0)


async def ask(port: int, data: bytes, until: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("::1", port)
    writer.write(data)
    try:
        got = b""
        async with asyncio.timeout(5):
            while until not in got:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                got += chunk
        return got
    finally:
        writer.close()


def http_proxy_session(test):
    from erebus.runtime.expose.http_proxy import HttpProxy

    async def go():
        received = []
        origin = await v6_origin(received)
        dialer = LoopbackDialer(origin.sockets[0].getsockname()[1])
        proxy = HttpProxy(dialer, "::1", 0)
        await proxy.start()
        try:
            return await test(proxy, dialer, received)
        finally:
            await proxy.close()
            origin.close()
    return asyncio.run(go())


def test_http_proxy_on_ipv6_loopback_forwards_to_a_v6_literal_with_the_uris_host():
    async def test(proxy, dialer, received):
        answer = await ask(proxy.port, b"GET http://[2001:2::1]:8080/p?q=1 HTTP/1.1\r\n"
                           b"Host: elsewhere.example\r\n\r\n", b"hello")
        return answer, dialer.asked, received

    answer, asked, received = http_proxy_session(test)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"hello")
    assert asked == [("2001:2::1", 8080)]
    head = received[0].lower()
    assert head.startswith(b"get /p?q=1 http/1.1\r\n")
    assert b"host: [2001:2::1]:8080\r\n" in head and b"elsewhere" not in head


def test_http_proxy_connect_to_a_bracketed_v6_target():
    async def test(proxy, dialer, received):
        answer = await ask(proxy.port, b"CONNECT [2001:2::1]:443 HTTP/1.1\r\n"
                           b"Host: [2001:2::1]:443\r\n\r\nPING\r\n\r\n", b"PONG")
        return answer, dialer.asked

    answer, asked = http_proxy_session(test)
    assert answer.startswith(b"HTTP/1.1 200 Connection established") and \
        answer.endswith(b"PONG")
    assert asked == [("2001:2::1", 443)]


@pytest.mark.parametrize("request_line, words", [
    (b"CONNECT 2001:2::1:443 HTTP/1.1", b"an IPv6 address goes in brackets"),
    (b"CONNECT [2001:2::1:443 HTTP/1.1", b"unbalanced '['"),
    (b"CONNECT [web.lab.test]:443 HTTP/1.1", b"is not an IPv6 address"),
    (b"GET http://[2001:2::1/ HTTP/1.1", b"bad host in the URI"),
    (b"GET http://2001:2::1/ HTTP/1.1", b"an IPv6 address goes in brackets"),
])
def test_http_proxy_bad_brackets_are_400_with_the_reason(request_line, words):
    async def test(proxy, dialer, received):
        answer = await ask(proxy.port, request_line + b"\r\nHost: x\r\n\r\n", b"\n\n")
        return answer, dialer.asked

    answer, asked = http_proxy_session(test)
    assert answer.startswith(b"HTTP/1.1 400 ") and words in answer, answer
    assert asked == []


class EchoVpnUdp(asyncio.DatagramTransport):
    """The VPN side of a UDP association: every datagram comes back from where it went."""

    max_payload = 1400 - 28

    def __init__(self, protocol):
        super().__init__()
        self.protocol = protocol
        self.sent = []

    def sendto(self, data, addr=None):
        self.sent.append(addr)
        asyncio.get_running_loop().call_soon(self.protocol.datagram_received, bytes(data),
                                             tuple(addr))

    def close(self):
        pass


class EchoVpn:
    has_ipv4 = has_ipv6 = True

    def __init__(self):
        self.endpoints = []

    async def create_datagram_endpoint(self, factory, *args, **kw):
        protocol = factory()
        transport = EchoVpnUdp(protocol)
        self.endpoints.append(transport)
        protocol.connection_made(transport)
        return transport, protocol


def test_socks_on_ipv6_loopback_relays_udp_to_and_from_ipv6():
    class Local(asyncio.DatagramProtocol):
        def __init__(self):
            self.got = asyncio.Queue()

        def datagram_received(self, data, addr):
            self.got.put_nowait((data, addr))

    async def go():
        vpn = EchoVpn()
        server = socks.SocksServer(Dialer(vpn), "::1", 0, credentials=None)
        await server.start()
        try:
            reader, writer = await asyncio.open_connection("::1", server.port)
            writer.write(b"\x05\x01\x00" + b"\x05\x03\x00\x04" + bytes(18))
            method = await reader.readexactly(2)
            reply = await reader.readexactly(4 + 16 + 2)
            relay = (str(ipaddress.IPv6Address(reply[4:20])),
                     struct.unpack("!H", reply[20:22])[0])
            loop = asyncio.get_running_loop()
            t, local = await loop.create_datagram_endpoint(Local, local_addr=("::1", 0))
            to_v6 = b"\x00\x00\x00\x04" + ipaddress.IPv6Address(V6A).packed + b"\x00\x07"
            to_v4 = b"\x00\x00\x00\x01" + ipaddress.IPv4Address(V4A).packed + b"\x00\x07"
            t.sendto(to_v6 + b"six", relay)
            first = await asyncio.wait_for(local.got.get(), 5)
            t.sendto(to_v4 + b"four", relay)
            second = await asyncio.wait_for(local.got.get(), 5)
            big = bytes(1400 - 48 + 1)                     # over IPv6's limit, not IPv4's
            t.sendto(to_v6 + big, relay)
            t.sendto(to_v4 + big, relay)
            third = await asyncio.wait_for(local.got.get(), 5)
            t.close()
            writer.close()
            return method, reply, first, second, third, server.udp_counters, vpn
        finally:
            await server.close()

    method, reply, first, second, third, counters, vpn = asyncio.run(go())
    assert method == b"\x05\x00" and reply[:4] == b"\x05\x00\x00\x04"
    assert ipaddress.IPv6Address(reply[4:20]) == ipaddress.IPv6Address("::1")
    assert first[0] == b"\x00\x00\x00\x04" + ipaddress.IPv6Address(V6A).packed + \
        b"\x00\x07six"
    assert second[0] == b"\x00\x00\x00\x01" + ipaddress.IPv4Address(V4A).packed + \
        b"\x00\x07four"
    assert len(third[0]) == 10 + 1400 - 48 + 1 and counters.oversize == 1
    assert vpn.endpoints[0].sent[:2] == [(V6A, 7), (V4A, 7)]


def test_remote_forward_bind_checks_the_family_and_filters_syns():
    from erebus.runtime.expose.forward import RemoteForward
    from erebus.session import TunnelInfo

    class Pending:
        def __init__(self, ip):
            self.peer = (ip, 40000)

    class Vpn:
        has_ipv4, has_ipv6 = True, False

        def __init__(self):
            self.tunnel = type("T", (), {})()
            self.tunnel.info = TunnelInfo(kind="t", server="s", virtual_ip="198.18.40.1",
                                          netmask="255.255.255.0", gateway=None,
                                          virtual_ip6="2001:2:0:40::1")
            self.refused = []

        def listen_deferred(self, port, on_syn, backlog):
            return ("listener", port)

        def refuse(self, pending):
            self.refused.append(pending.peer)
            return True

    async def go():
        vpn = Vpn()
        with pytest.raises(ConfigError, match=r"^-R \[::\]:8080:\.\.\.: the tunnel has no "
                                              r"IPv6 address to listen on$"):
            await RemoteForward(vpn, parse_remote_forward("[::]:8080:[::1]:80")).start()
        vpn.has_ipv6 = True
        with pytest.raises(ConfigError, match="is not the tunnel's virtual IPv6 address "
                                              r"\(2001:2:0:40::1\)"):
            await RemoteForward(vpn, parse_remote_forward(
                "[2001:2:0:40::2]:8080:[::1]:80")).start()
        rule = RemoteForward(vpn, parse_remote_forward("[2001:2:0:40::1]:8080:[::1]:80"))
        await rule.start()
        rule._on_syn(Pending("198.18.40.2"))             # the IPv4 address does not listen
        return vpn.refused, rule._tasks

    refused, tasks = asyncio.run(go())
    assert refused == [("198.18.40.2", 40000)] and not tasks
