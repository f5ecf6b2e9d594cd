"""Local access through a dual-stack tunnel, end to end in virtual time: two VpnStacks
joined by a fake tunnel (tests/unit/test_vpnstack_virtual.py's Pipe, with IPv6
addresses), the far one playing the hosts behind the VPN (a web server on port 80 and a
DNS server on port 53 answering A and AAAA over both families).  The local side is the
IPv4 and IPv6 loopback.  What a user checks: SOCKS5 ATYP 4 CONNECT, the HTTP proxy to a
[v6] literal, -L to a [v6] target, a name with both families reached over IPv6 and, when
IPv6 does not answer, over IPv4 after the Connection Attempt Delay, an AAAA-only name,
and the SOCKS5 UDP relay to an IPv6 echo."""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
import struct

import dns.message
import dns.rdatatype
import dns.rrset
import pytest

from erebus.runtime.expose.dns import VpnResolver
from erebus.runtime.expose.forward import Dialer, ForwardSpec, LocalForward
from erebus.runtime.expose.http_proxy import HttpProxy
from erebus.runtime.expose.socks import SocksServer
from erebus.runtime.stack import VpnStack
from tests.unit.test_vpnstack_virtual import A, B, Pipe
from tests.unit.virtual_loop import run

A6, B6 = "2001:2:0:41::1", "2001:2:0:41::2"
ZONE = {
    "web.lab.test": {"A": [B], "AAAA": [B6]},
    "v6only.lab.test": {"AAAA": [B6]},
    "v4only.lab.test": {"A": [B]},
}

if not socket.has_ipv6:
    pytest.skip("no IPv6 loopback on this machine", allow_module_level=True)
if not hasattr(VpnStack, "has_ipv6"):          # until the dual-stack NetStack is merged
    pytest.skip("needs the dual-stack VpnStack (issue 16, item 2)", allow_module_level=True)


class Pipe6(Pipe):
    """A Pipe whose IPv6 packets can be lost on purpose (``drop_ipv6``): an IPv6 path
    that does not answer, while IPv4 works."""

    drop_ipv6 = False

    def send_packet(self, packet: bytes) -> None:
        if self.drop_ipv6 and packet[0] >> 4 == 6:
            self.sent += 1
            self.lost += 1
            return
        super().send_packet(packet)


def pair6():
    rng = random.Random(11)
    a, b = Pipe6(A, rng, loss=0.0, delay=0.005), Pipe6(B, rng, loss=0.0, delay=0.005)
    a.other, b.other = b, a
    a.info.virtual_ip6, a.info.prefix6 = A6, 64
    b.info.virtual_ip6, b.info.prefix6 = B6, 64
    return a, b


class Dns(asyncio.DatagramProtocol):
    def __init__(self):
        self.asked: list[tuple[str, str, str]] = []      # (client address, name, type)

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = str(question.name).rstrip(".")
        rtype = dns.rdatatype.to_text(question.rdtype)
        self.asked.append((addr[0], name, rtype))
        response = dns.message.make_response(query)
        if name not in ZONE:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif ZONE[name].get(rtype):
            response.answer.append(dns.rrset.from_text(name + ".", 60, "IN", rtype,
                                                       *ZONE[name][rtype]))
        self.transport.sendto(response.to_wire(), addr)


class World:
    """Both stacks, the far services and the client's Dialer; ``dns_server``: the
    pushed DNS server the client asks (B or B6)."""

    @classmethod
    async def make(cls, dns_server: str = B6):
        w = cls()
        w.a, w.b = pair6()
        w.vpn, w.far = VpnStack(w.a), VpnStack(w.b)
        w.peers: list[tuple[str, int]] = []           # who connected to the web server
        w.heads: list[bytes] = []

        async def web(reader, writer):
            w.peers.append(writer.get_extra_info("peername"))
            head = await reader.readuntil(b"\r\n\r\n")
            w.heads.append(head)
            body = f"hello {writer.get_extra_info('sockname')[0]}".encode()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
            writer.close()

        await w.far.start_server(web, 80)
        w.dns = Dns()
        await w.far.create_datagram_endpoint(lambda: w.dns, 53)
        w.resolver = VpnResolver(w.vpn, [dns_server])
        w.dialer = Dialer(w.vpn, w.resolver)
        return w

    def close(self):
        self.vpn.close()
        self.far.close()


async def proxy_clients_done() -> None:
    """Until the HTTP proxy's client handlers have returned (bounded)."""
    handlers = [t for t in asyncio.all_tasks()
                if t.get_coro().__qualname__ == "HttpProxy._client"]
    if handlers:
        _, pending = await asyncio.wait(handlers, timeout=30)
        assert not pending


async def http_get(host: str, port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    try:
        return await asyncio.wait_for(reader.read(-1), 30)
    finally:
        writer.close()


def test_the_far_side_is_dual_stack():
    async def main():
        w = await World.make()
        has = (w.vpn.has_ipv4, w.vpn.has_ipv6)
        w.close()
        return has
    assert run(main()) == (True, True)


def test_socks5_atyp_4_connect_reaches_an_ipv6_host():
    async def main():
        w = await World.make()
        socks = SocksServer(w.dialer, "::1", 0, credentials=None)
        await socks.start()
        reader, writer = await asyncio.open_connection("::1", socks.port)
        writer.write(b"\x05\x01\x00" + b"\x05\x01\x00\x04" +
                     ipaddress.IPv6Address(B6).packed + struct.pack("!H", 80))
        method = await reader.readexactly(2)
        reply = await reader.readexactly(22)
        writer.write(b"GET / HTTP/1.1\r\nHost: [2001:2:0:41::2]\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(-1), 30)
        writer.close()
        await socks.close()
        w.close()
        return method, reply, answer, w.peers

    method, reply, answer, peers = run(main())
    assert method == b"\x05\x00"
    assert reply[:4] == b"\x05\x00\x00\x04" and \
        ipaddress.IPv6Address(reply[4:20]) == ipaddress.IPv6Address(A6)
    assert answer.endswith(f"hello {B6}".encode())
    assert peers[0][0] == A6 and len(peers[0]) == 2


def test_http_proxy_to_a_v6_literal_and_connect():
    async def main():
        w = await World.make()
        proxy = HttpProxy(w.dialer, "127.0.0.1", 0)
        await proxy.start()
        got = await http_get("127.0.0.1", proxy.port,
                             b"GET http://[2001:2:0:41::2]/x HTTP/1.1\r\n"
                             b"Host: [2001:2:0:41::2]\r\nConnection: close\r\n\r\n")
        tunnel = await http_get("127.0.0.1", proxy.port,
                                b"CONNECT [2001:2:0:41::2]:80 HTTP/1.1\r\n"
                                b"Host: [2001:2:0:41::2]:80\r\n\r\n"
                                b"GET / HTTP/1.1\r\nHost: [2001:2:0:41::2]\r\n\r\n")
        await proxy_clients_done()            # the proxy's tunnel ends after the client
        await proxy.close()
        w.close()
        return got, tunnel, w.heads, w.peers

    got, tunnel, heads, peers = run(main())
    assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(f"hello {B6}".encode())
    assert heads[0].lower().startswith(b"get /x http/1.1\r\nhost: [2001:2:0:41::2]\r\n")
    assert tunnel.startswith(b"HTTP/1.1 200 Connection established") and \
        tunnel.endswith(f"hello {B6}".encode())
    assert [p[0] for p in peers] == [A6, A6]


def test_local_forward_to_a_v6_target_from_the_v6_loopback():
    async def main():
        w = await World.make()
        forward = LocalForward(w.dialer, ForwardSpec("::1", 0, B6, 80))
        await forward.start()
        port = forward.server.sockets[0].getsockname()[1]
        got = await http_get("::1", port, b"GET / HTTP/1.1\r\nHost: x\r\n"
                                          b"Connection: close\r\n\r\n")
        await forward.close()
        w.close()
        return got, w.peers

    got, peers = run(main())
    assert got.endswith(f"hello {B6}".encode()) and peers[0][0] == A6


def proxied_name(name: str, *, drop_ipv6=False, dns_server=B6):
    """GET http://NAME/ through the HTTP proxy: (answer, the web server's peers, the
    DNS questions, the virtual seconds the request took)."""
    async def main():
        w = await World.make(dns_server=dns_server)
        w.a.drop_ipv6 = w.b.drop_ipv6 = drop_ipv6
        proxy = HttpProxy(w.dialer, "127.0.0.1", 0)
        await proxy.start()
        loop = asyncio.get_running_loop()
        start = loop.time()
        got = await http_get("127.0.0.1", proxy.port,
                             f"GET http://{name}/ HTTP/1.1\r\nHost: {name}\r\n"
                             "Connection: close\r\n\r\n".encode())
        took = loop.time() - start
        await proxy.close()
        w.close()
        return got, w.peers, w.dns.asked, took
    return run(main())


def test_a_name_with_both_families_is_reached_over_ipv6():
    got, peers, asked, _ = proxied_name("web.lab.test")
    assert got.endswith(f"hello {B6}".encode()) and [p[0] for p in peers] == [A6]
    assert sorted(t for _, n, t in asked if n == "web.lab.test") == ["A", "AAAA"]
    assert {a for a, _, _ in asked} == {A6}           # the IPv6 DNS server, over IPv6


def test_ipv6_that_does_not_answer_falls_back_to_ipv4_after_the_attempt_delay():
    got, peers, asked, took = proxied_name("web.lab.test", drop_ipv6=True, dns_server=B)
    assert got.endswith(f"hello {B}".encode()) and [p[0] for p in peers] == [A]
    # the DNS answers (about 10 ms), the IPv6 SYN unanswered for 250 ms, then IPv4:
    # well before the IPv6 attempt's own SYN timeouts
    assert 0.25 < took < 1.0


def test_an_aaaa_only_name_and_an_a_only_name():
    got, peers, _, _ = proxied_name("v6only.lab.test")
    assert got.endswith(f"hello {B6}".encode()) and peers[0][0] == A6
    got, peers, _, _ = proxied_name("v4only.lab.test")
    assert got.endswith(f"hello {B}".encode()) and peers[0][0] == A


def test_a_name_with_neither_is_502_with_the_reason():
    got, peers, _, _ = proxied_name("nosuch.lab.test")
    assert got.startswith(b"HTTP/1.1 502 ") and b"no such name" in got and not peers


def test_socks5_udp_relay_to_an_ipv6_echo():
    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data, addr)

    class Local(asyncio.DatagramProtocol):
        def __init__(self):
            self.got = asyncio.Queue()

        def datagram_received(self, data, addr):
            self.got.put_nowait(data)

    async def main():
        w = await World.make()
        await w.far.create_datagram_endpoint(Echo, 7)
        socks = SocksServer(w.dialer, "::1", 0, credentials=None)
        await socks.start()
        reader, writer = await asyncio.open_connection("::1", socks.port)
        writer.write(b"\x05\x01\x00" + b"\x05\x03\x00\x04" + bytes(18))
        await reader.readexactly(2)
        reply = await reader.readexactly(22)
        relay = (str(ipaddress.IPv6Address(reply[4:20])), struct.unpack("!H", reply[20:])[0])
        t, local = await asyncio.get_running_loop().create_datagram_endpoint(
            Local, local_addr=("::1", 0))
        to_v6 = b"\x00\x00\x00\x04" + ipaddress.IPv6Address(B6).packed + b"\x00\x07"
        name = b"\x00\x00\x00\x03\x0fv6only.lab.test\x00\x07"
        t.sendto(to_v6 + b"by address", relay)
        first = await asyncio.wait_for(local.got.get(), 30)
        t.sendto(name + b"by name", relay)
        second = await asyncio.wait_for(local.got.get(), 30)
        t.close()
        writer.close()
        await socks.close()
        w.close()
        return first, second

    first, second = run(main())
    header = b"\x00\x00\x00\x04" + ipaddress.IPv6Address(B6).packed + b"\x00\x07"
    assert first == header + b"by address" and second == header + b"by name"
