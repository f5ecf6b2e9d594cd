"""Local-access pieces without a VPN: argument parsing, hop-by-hop headers, the DNS
resolver against a fake tunnel, the SOCKS5 handshake against a fake transport."""

from __future__ import annotations

import asyncio
import struct
from unittest import mock

import dns.message
import dns.rcode
import dns.rrset
import pytest
from hypothesis import given, settings, strategies as st

from erebus.errors import ConfigError
from erebus.runtime.expose import socks
from erebus.runtime.expose.dns import ResolveError, VpnResolver
from erebus.runtime.expose.forward import parse_listen, parse_local_forward, parse_remote_forward
from erebus.runtime.expose.http_proxy import end_to_end


def test_forward_specs_like_ssh():
    s = parse_local_forward("8080:198.18.2.2:80")
    assert (s.bind, s.port, s.host, s.host_port) == ("127.0.0.1", 8080, "198.18.2.2", 80)
    s = parse_local_forward("0.0.0.0:8080:web.lab.test:80")
    assert (s.bind, s.host) == ("0.0.0.0", "web.lab.test")
    s = parse_local_forward("[::1]:8080:198.18.2.2:80")
    assert s.bind == "::1"
    r = parse_remote_forward("8080:127.0.0.1:3000")
    assert (r.vport, r.lhost, r.lport) == (8080, "127.0.0.1", 3000)
    assert parse_listen("3128", "--http-proxy") == ("127.0.0.1", 3128)
    assert parse_listen("0.0.0.0:1080", "--socks") == ("0.0.0.0", 1080)
    for bad in ("8080", "8080:host", "x:198.18.2.2:80", "8080:198.18.2.2:99999"):
        with pytest.raises(ConfigError, match="-L"):
            parse_local_forward(bad)
    with pytest.raises(ConfigError, match="-R"):
        parse_remote_forward("8080:127.0.0.1")


def test_hop_by_hop_headers_are_dropped():
    headers = [(b"host", b"x"), (b"connection", b"keep-alive, X-Trace"), (b"x-trace", b"1"),
               (b"keep-alive", b"timeout=5"), (b"proxy-authorization", b"Basic abc"),
               (b"transfer-encoding", b"chunked"), (b"te", b"trailers"),
               (b"upgrade", b"h2c"), (b"accept", b"*/*")]
    assert end_to_end(headers) == [(b"host", b"x"), (b"accept", b"*/*")]
    assert (b"transfer-encoding", b"chunked") in end_to_end(headers, keep_te=True)


class FakeVpn:
    """Answers DNS queries like a server behind the tunnel would."""

    def __init__(self, answers, *, truncate=False):
        self.answers = answers
        self.truncate = truncate
        self.sent = []

    async def udp_exchange(self, payload, host, port, *, timeout, accept=None):
        self.sent.append((host, port))
        query = dns.message.from_wire(payload)
        name = str(query.question[0].name).rstrip(".")
        answer = self.answers.get(name)
        if answer == "timeout":
            raise asyncio.TimeoutError
        response = dns.message.make_response(query)
        if answer is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        else:
            response.answer.append(dns.rrset.from_text(name + ".", 60, "IN", "A", *answer))
        wire = response.to_wire()
        assert accept is None or accept(wire)
        return wire


def run(coro):
    return asyncio.run(coro)


def test_resolver_asks_the_pushed_server_and_caches():
    vpn = FakeVpn({"web.lab.test": ["198.18.2.2", "198.18.2.3"]})
    r = VpnResolver(vpn, ["198.18.2.53"])

    async def go():
        assert await r.resolve("web.lab.test") in ("198.18.2.2", "198.18.2.3")
        assert sorted(await r.resolve_all("WEB.lab.test.")) == ["198.18.2.2", "198.18.2.3"]
        assert await r.resolve("198.18.9.9") == "198.18.9.9"      # literal: no query
    run(go())
    assert vpn.sent == [("198.18.2.53", 53)] and r.cache_hits == 1


def test_resolver_errors_say_why():
    vpn = FakeVpn({"slow.lab.test": "timeout"})

    async def go():
        with pytest.raises(ResolveError, match="no such name"):
            await VpnResolver(vpn, ["198.18.2.53"]).resolve("nosuch.lab.test")
        with pytest.raises(ResolveError, match="no answer"):
            await VpnResolver(vpn, ["198.18.2.53"], attempts=1).resolve("slow.lab.test")
        with pytest.raises(ResolveError, match="pushed no DNS server"):
            await VpnResolver(vpn, []).resolve("web.lab.test")
        # a literal of either family is returned as it is: whether the tunnel
        # reaches it is the dialer's business (ENETUNREACH without IPv6)
        assert await VpnResolver(vpn, ["198.18.2.53"]).resolve("2001:db8::1") == \
            "2001:db8::1"
    run(go())


class FakeTransport(asyncio.Transport):
    def __init__(self):
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.paused = False

    def write(self, data):
        self.out += data

    def close(self):
        self.closed = True

    def abort(self):
        self.closed = True

    def is_closing(self):
        return self.closed

    def pause_reading(self):
        self.paused = True

    def resume_reading(self):
        self.paused = False

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 5555) if name == "peername" else default


class RefusingDialer:
    def __init__(self, exc):
        self.exc = exc
        self.asked = []

    async def dial(self, host, port, factory):
        self.asked.append((host, port))
        raise self.exc


async def settle(timeout: float = 2.0) -> None:
    """Until every task the code under test started (the dial) has finished; bounded."""
    others = asyncio.all_tasks() - {asyncio.current_task()}
    if others:
        _, pending = await asyncio.wait(others, timeout=timeout)
        assert not pending, pending


def socks_session(data: bytes, *, credentials=None, exc=ConnectionRefusedError("refused")):
    async def go():
        dialer = RefusingDialer(exc)
        server = socks.SocksServer(dialer, "127.0.0.1", 0, credentials=credentials)
        client = socks._SocksClient(server)
        t = FakeTransport()
        client.connection_made(t)
        client.data_received(data)
        await settle()
        if client.timer:
            client.timer.cancel()
        return bytes(t.out), t.closed, dialer.asked
    return asyncio.run(go())


def test_socks_connect_refused_gets_reply_5():
    req = b"\x05\x01\x00" + b"\x05\x01\x00\x03" + bytes((12,)) + b"web.lab.test" + \
        struct.pack("!H", 80)
    out, closed, asked = socks_session(req)
    assert out[:2] == b"\x05\x00"                          # no auth chosen
    assert out[2:4] == b"\x05\x05" and closed              # refused
    assert asked == [("web.lab.test", 80)]


class ConnectingDialer:
    """Every CONNECT succeeds: the transport of the far end (its sockname is what the
    reply carries)."""

    def __init__(self):
        self.asked = []
        self.far = FakeTransport()
        self.far.get_extra_info = lambda name, default=None: \
            ("198.19.9.2", 40001) if name == "sockname" else default

    async def dial(self, host, port, factory):
        self.asked.append((host, port))
        factory()
        return self.far


def test_socks_connect_succeeds_replies_0_with_the_bound_address_and_splices():
    async def go():
        dialer = ConnectingDialer()
        server = socks.SocksServer(dialer, "127.0.0.1", 0, credentials=None)
        client = socks._SocksClient(server)
        t = FakeTransport()
        client.connection_made(t)
        client.data_received(b"\x05\x01\x00" + b"\x05\x01\x00\x01" + bytes((198, 18, 2, 2))
                             + struct.pack("!H", 80))
        await settle()
        client.data_received(b"GET / HTTP/1.0\r\n\r\n")          # spliced to the far end
        if client.timer:
            client.timer.cancel()
        return bytes(t.out), t.closed, dialer, server

    out, closed, dialer, server = asyncio.run(go())
    assert out == b"\x05\x00" + b"\x05\x00\x00\x01" + bytes((198, 19, 9, 2)) + \
        struct.pack("!H", 40001) and not closed
    assert dialer.asked == [("198.18.2.2", 80)] and server.connected == 1
    assert bytes(dialer.far.out) == b"GET / HTTP/1.0\r\n\r\n"


def test_socks_auth_required_and_checked():
    greeting = b"\x05\x01\x00"                             # offers only "no auth"
    out, closed, _ = socks_session(greeting, credentials=("alice", "pw"))
    assert out == b"\x05\xff" and closed
    bad = b"\x05\x01\x02" + b"\x01\x05alice\x02xx"
    out, closed, _ = socks_session(bad, credentials=("alice", "pw"))
    assert out == b"\x05\x02\x01\x01" and closed


def test_socks_unsupported_command_and_address_type():
    bind = b"\x05\x01\x00" + b"\x05\x02\x00\x01" + bytes(4) + b"\x00\x50"
    out, closed, _ = socks_session(bind)
    assert out[2:4] == b"\x05\x07" and closed
    unknown = b"\x05\x01\x00" + b"\x05\x01\x00\x05" + bytes(16) + b"\x00\x50"
    out, closed, _ = socks_session(unknown)
    assert out[2:4] == b"\x05\x08" and closed


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_socks_parser_never_crashes(data):
    def internal_error(*args, **kw):
        raise AssertionError("the SOCKS handshake parser raised")
    with mock.patch.object(socks.log, "exception", internal_error):
        out, closed, asked = socks_session(data)
    assert len(out) < 64
