"""SOCKS5 UDP ASSOCIATE (RFC 1928 section 7) in virtual time: the SOCKS server's
control connection on a fake transport, its UDP relay on a fake loopback network,
its VPN side a real VpnStack joined by a fake tunnel to a second stack playing the
host behind the VPN (a UDP echo on port 7, a DNS server on port 53).

What a user of the relay checks: echoes come back byte-exact behind a header naming
the sender, names are resolved through the VPN's DNS once for many datagrams, and
everything hostile from the local side (strangers, fragments, short or bad headers,
IPv6 or oversize destinations, floods to a name that does not resolve) is dropped and
counted, never raised; the association ends with its TCP connection or when idle."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import struct
from unittest import mock

import dns.message
import dns.rrset
from hypothesis import given, settings, strategies as st

from erebus.errors import ParseError
from erebus.netstack import stack as stack_mod
from erebus.runtime.expose import socks, socks_udp
from erebus.runtime.expose.dns import VpnResolver
from erebus.runtime.expose.forward import Dialer
from erebus.runtime.stack import VpnStack
from erebus.wire import socks5 as wire
from tests.unit.test_vpnstack_virtual import B, pair
from tests.unit.virtual_loop import run

CLIENT = ("127.0.0.1", 40000)
NAMES = {"echo.lab.test": B}


# -- the local side: a fake loopback network for the relay and the client ----------------

class LocalUdp(asyncio.DatagramTransport):
    def __init__(self, net: "LocalNet", addr):
        super().__init__()
        self.net, self.addr = net, addr
        self.protocol = None
        self.closed = False
        self.buffered = 0                    # what asyncio would hold (a slow reader)

    def sendto(self, data, addr=None):
        if not self.closed:
            asyncio.get_running_loop().call_soon(self.net.deliver, bytes(data), self.addr,
                                                 tuple(addr))

    def get_extra_info(self, name, default=None):
        return self.addr if name == "sockname" else default

    def get_write_buffer_size(self):
        return self.buffered

    def is_closing(self):
        return self.closed

    def close(self):
        if not self.closed:
            self.closed = True
            self.net.endpoints.pop(self.addr, None)
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)


class LocalNet:
    """Endpoints by (ip, port); a datagram to an address nobody holds is lost."""

    def __init__(self):
        self.endpoints: dict[tuple, LocalUdp] = {}
        self.ports = itertools.count(30000)

    async def create_datagram_endpoint(self, factory, local_addr):
        ip, port = local_addr
        t = LocalUdp(self, (ip, port or next(self.ports)))
        t.protocol = factory()
        self.endpoints[t.addr] = t
        t.protocol.connection_made(t)
        return t, t.protocol

    def deliver(self, data, source, dest):
        t = self.endpoints.get(dest)
        if t is not None:
            t.protocol.datagram_received(data, source)


class Client(asyncio.DatagramProtocol):
    """The local program: what the relay sends it."""

    def __init__(self):
        self.got: list[tuple[bytes, tuple]] = []
        self.changed = asyncio.Event()

    def datagram_received(self, data, addr):
        self.got.append((data, addr))
        self.changed.set()

    async def wait(self, n):
        while len(self.got) < n:
            self.changed.clear()
            await self.changed.wait()


# -- the far side: the host behind the VPN -------------------------------------------------

class Echo(asyncio.DatagramProtocol):
    def __init__(self):
        self.count = 0

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.count += 1
        self.transport.sendto(data, addr)


class DnsServer(asyncio.DatagramProtocol):
    """A records for NAMES; NXDOMAIN for the rest; silent for names under silent."""

    def __init__(self):
        self.queries: list[str] = []

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        query = dns.message.from_wire(data)
        name = str(query.question[0].name).rstrip(".")
        self.queries.append(name)
        if name.endswith("silent.lab.test"):
            return
        response = dns.message.make_response(query)
        if name in NAMES:
            response.answer.append(dns.rrset.from_text(name + ".", 60, "IN", "A", NAMES[name]))
        else:
            response.set_rcode(dns.rcode.NXDOMAIN)
        self.transport.sendto(response.to_wire(), addr)


class FakeControl(asyncio.Transport):
    """The TCP control connection, as the SOCKS server sees it."""

    def __init__(self, peer=CLIENT, local=("127.0.0.1", 1080)):
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.peer, self.local = peer, local

    def write(self, data):
        self.out += data

    def close(self):
        self.closed = True

    abort = close

    def is_closing(self):
        return self.closed

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def get_extra_info(self, name, default=None):
        return {"peername": self.peer, "sockname": self.local}.get(name, default)


class World:
    """Everything above, wired; ``await World.make()`` inside a running loop."""

    @classmethod
    async def make(cls, *, credentials=None):
        w = cls()
        a, b = pair(delay=0.002)
        w.pipes = (a, b)
        w.vpn, w.far = VpnStack(a), VpnStack(b)
        w.echo = Echo()
        await w.far.create_datagram_endpoint(lambda: w.echo, local_port=7)
        w.dns = DnsServer()
        await w.far.create_datagram_endpoint(lambda: w.dns, local_port=53)
        w.local = LocalNet()
        w.server = socks.SocksServer(Dialer(w.vpn, VpnResolver(w.vpn, [B], timeout=2.0)),
                                     "127.0.0.1", 1080, credentials=credentials,
                                     udp_endpoint=w.local.create_datagram_endpoint)
        return w

    async def associate(self, request: bytes = b"\x05\x03\x00\x01" + bytes(6), *,
                        greeting: bytes = b"\x05\x01\x00", strip: int = 2, peer=CLIENT):
        """(the control transport, the SOCKS client protocol, what the server wrote
        less its first ``strip`` bytes: the method choice "no authentication")."""
        control = FakeControl(peer=peer)
        client = socks._SocksClient(self.server)
        client.connection_made(control)
        client.data_received(greeting + request)
        for _ in range(100):
            if client.stage in ("associated", "done") or control.closed:
                break
            await asyncio.sleep(0.001)
        if client.timer:
            client.timer.cancel()
        return control, client, bytes(control.out[strip:])

    async def client_socket(self, addr=CLIENT):
        proto = Client()
        t, _ = await self.local.create_datagram_endpoint(lambda: proto, local_addr=addr)
        return t, proto

    def close(self):
        self.vpn.close()
        self.far.close()


def relay_of(reply: bytes) -> tuple[str, int]:
    """BND.ADDR and BND.PORT of a success reply with an IPv4 address (RFC 1928 6)."""
    assert reply[:4] == b"\x05\x00\x00\x01", reply
    return str(ipaddress.IPv4Address(reply[4:8])), struct.unpack("!H", reply[8:10])[0]


def header(ip: str, port: int, frag: int = 0) -> bytes:
    return b"\x00\x00" + bytes((frag, 1)) + ipaddress.IPv4Address(ip).packed + \
        struct.pack("!H", port)


def name_header(name: bytes, port: int) -> bytes:
    return b"\x00\x00\x00\x03" + bytes((len(name),)) + name + struct.pack("!H", port)


def test_echo_by_address_and_by_name_comes_back_byte_exact_with_the_sender():
    payloads = [bytes([i % 256]) * (i % 1300) for i in range(300)]

    async def main():
        w = await World.make()
        control, _, reply = await w.associate()
        relay = relay_of(reply)
        assert relay[0] == "127.0.0.1"                 # the address the client reached
        t, client = await w.client_socket()
        for i, p in enumerate(payloads):      # windows of 50: within every queue's bound
            if i % 2:
                t.sendto(header(B, 7) + p, relay)
            else:
                t.sendto(name_header(b"Echo.Lab.Test.", 7) + p, relay)
            if i % 50 == 49:
                await client.wait(i + 1)
        w.close()
        return w, client

    w, client = run(main())
    assert {addr for _, addr in client.got} == {("127.0.0.1", 30000)}
    assert all(d[:10] == header(B, 7) for d, _ in client.got)          # the sender's address
    assert sorted(d[10:] for d, _ in client.got) == sorted(payloads)
    assert w.dns.queries == ["echo.lab.test"]          # once, for 150 datagrams to the name
    c = w.server.udp_counters
    assert (c.associations, c.datagrams_out, c.datagrams_in) == (1, 300, 300)
    assert c.strangers == c.malformed == c.queue_overflow == c.unresolved == 0


def test_hostile_local_datagrams_are_dropped_and_counted():
    async def main():
        w = await World.make()
        _, _, reply = await w.associate()
        relay = relay_of(reply)
        t, client = await w.client_socket()
        t.sendto(header(B, 7) + b"first", relay)      # fixes the client's port
        await client.wait(1)
        other_port, _ = await w.client_socket(("127.0.0.1", 40001))
        other_ip, _ = await w.client_socket(("127.0.0.2", 40000))
        other_port.sendto(header(B, 7) + b"stranger", relay)
        other_ip.sendto(header(B, 7) + b"stranger", relay)
        for short in range(10):                                  # short headers
            t.sendto(header(B, 7)[:short], relay)
        t.sendto(b"\x00\x00\x00\x05" + bytes(6) + b"bad atyp", relay)
        t.sendto(b"\x00\x00\x00\x03\x20short", relay)            # name longer than the datagram
        t.sendto(b"\x00\x00\x00\x03\x00\x00\x07", relay)         # empty name
        t.sendto(name_header("é.lab.test".encode(), 7), relay)   # not ASCII
        t.sendto(header(B, 0) + b"port 0", relay)
        t.sendto(header(B, 7, frag=1) + b"fragment", relay)
        t.sendto(header(B, 7, frag=0x81) + b"last fragment", relay)
        t.sendto(b"\x00\x00\x00\x04" + ipaddress.IPv6Address("2001:2::1").packed +
                 b"\x00\x07" + b"v6", relay)
        t.sendto(header(B, 7) + bytes(1400 - 28 + 1), relay)    # more than the MTU allows
        t.sendto(header(B, 7) + bytes(1400 - 28), relay)        # exactly fits
        t.sendto(header(B, 7) + b"last", relay)
        await client.wait(3)
        await asyncio.sleep(1)
        w.close()
        return w, client

    w, client = run(main())
    assert sorted(len(d) - 10 for d, _ in client.got) == [4, 5, 1400 - 28]
    c = w.server.udp_counters
    assert c.strangers == 2
    assert c.malformed == 10 + 4 + 1
    assert c.fragments == 2 and c.unsupported_address == 1 and c.oversize == 1
    assert c.datagrams_out == 3 == w.echo.count
    assert c.errors == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=20))
def test_random_local_datagrams_never_raise(datagrams):
    def internal_error(*args, **kw):
        raise AssertionError("the relay raised on a datagram")

    async def main():
        w = await World.make()
        _, _, reply = await w.associate()
        relay = relay_of(reply)
        t, _ = await w.client_socket()
        for d in datagrams:
            t.sendto(d, relay)
        await asyncio.sleep(5)             # virtual: every lookup has ended
        w.close()
        return w

    with mock.patch.object(socks_udp.log, "exception", internal_error):
        w = run(main())
    c = w.server.udp_counters
    dropped = c.malformed + c.fragments + c.unsupported_address + c.oversize + c.unresolved
    assert c.errors == 0 and dropped + c.datagrams_out == len(datagrams)


def test_the_request_narrows_who_may_send():
    async def main():
        w = await World.make()
        # DST.PORT 40000: datagrams only from that port, even the first one
        _, _, reply = await w.associate(b"\x05\x03\x00\x01" + bytes((127, 0, 0, 1)) +
                                        struct.pack("!H", 40000))
        relay = relay_of(reply)
        early, _ = await w.client_socket(("127.0.0.1", 40001))
        early.sendto(header(B, 7) + b"not me", relay)
        t, client = await w.client_socket()
        t.sendto(header(B, 7) + b"me", relay)
        await client.wait(1)
        # DST.ADDR another address than the control connection's peer: not allowed
        c2, _, refused = await w.associate(b"\x05\x03\x00\x01" + bytes((127, 0, 0, 9)) +
                                           bytes(2))
        # a name for the client's own address (PySocks sends "0"): only the port counts
        c3, _, by_name = await w.associate(b"\x05\x03\x00\x03\x010" +
                                           struct.pack("!H", 40002))
        t3, client3 = await w.client_socket(("127.0.0.1", 40002))
        t3.sendto(header(B, 7) + b"by name", relay_of(by_name))
        t.sendto(header(B, 7) + b"not this one", relay_of(by_name))
        await client3.wait(1)
        c3_open = not c3.closed
        w.close()
        return w, client, refused, c2, client3, c3_open

    w, client, refused, c2, client3, c3_open = run(main())
    assert [d[10:] for d, _ in client.got] == [b"me"]
    assert [d[10:] for d, _ in client3.got] == [b"by name"] and c3_open
    assert w.server.udp_counters.strangers == 2
    assert refused[:2] == b"\x05\x02" and c2.closed
    assert w.server.udp_counters.associations == 2


def test_the_association_lives_as_long_as_its_control_connection():
    async def main():
        w = await World.make()
        sockets_before = len(w.vpn.stack.udp)
        control, proto, reply = await w.associate()
        relay = relay_of(reply)
        assert relay in w.local.endpoints and len(w.vpn.stack.udp) == sockets_before + 1
        proto.data_received(b"anything: discarded")           # RFC 1928 7
        assert proto.stage == "associated" and not control.closed
        proto.connection_lost(None)                          # the client closed it
        await asyncio.sleep(0)
        sockets_after = len(w.vpn.stack.udp)
        w.close()
        return w, relay, sockets_before, sockets_after

    w, relay, before, after = run(main())
    assert relay not in w.local.endpoints and not w.server.associations
    assert after == before                   # the VPN-side socket is closed too


def test_an_idle_association_ends_and_closes_its_control_connection():
    async def main():
        w = await World.make()
        loop = asyncio.get_running_loop()
        control, _, reply = await w.associate()
        relay = relay_of(reply)
        t, client = await w.client_socket()
        for i in range(4):                     # active every half timeout: it stays
            t.sendto(header(B, 7) + b"%d" % i, relay)
            await client.wait(i + 1)
            await asyncio.sleep(socks_udp.IDLE_TIMEOUT / 2)
        assert not control.closed and w.server.associations
        started = loop.time()
        while not control.closed:
            await asyncio.sleep(1)
        idle = loop.time() - started
        w.close()
        return w, relay, idle

    w, relay, idle = run(main())
    assert socks_udp.IDLE_TIMEOUT / 2 - 1 <= idle <= socks_udp.IDLE_TIMEOUT / 2 + 1
    assert w.server.udp_counters.idle_closed == 1
    assert relay not in w.local.endpoints and not w.server.associations


def test_username_and_password_apply_to_udp_associate():
    good = b"\x05\x01\x02" + b"\x01\x05alice\x02pw"
    bad = b"\x05\x01\x02" + b"\x01\x05alice\x02xx"

    async def main():
        w = await World.make(credentials=("alice", "pw"))
        c1, _, out1 = await w.associate(greeting=b"\x05\x01\x00", strip=0)   # no auth offered
        c2, _, out2 = await w.associate(greeting=bad, strip=0)
        c3, _, out3 = await w.associate(greeting=good, strip=0)
        w.close()
        return w, (c1, out1), (c2, out2), (c3, out3)

    w, no_auth, wrong, right = run(main())
    assert no_auth[1] == b"\x05\xff" and no_auth[0].closed
    assert wrong[1] == b"\x05\x02\x01\x01" and wrong[0].closed
    assert right[1][:4] == b"\x05\x02\x01\x00" and relay_of(right[1][4:])
    assert w.server.udp_counters.associations == 1 and w.server.auth_failures == 1


def test_associations_are_bounded(monkeypatch):
    monkeypatch.setattr(socks, "MAX_ASSOCIATIONS", 2)

    async def main():
        w = await World.make()
        replies = [(await w.associate())[2] for _ in range(3)]
        w.close()
        return w, replies

    w, replies = run(main())
    assert [r[:2] for r in replies] == [b"\x05\x00", b"\x05\x00", b"\x05\x01"]
    assert w.server.udp_counters.refused == 1


def test_no_socket_left_on_the_vpn_side_is_a_general_failure_reply(monkeypatch):
    async def main():
        w = await World.make()
        monkeypatch.setattr(stack_mod, "MAX_UDP_SOCKETS", len(w.vpn.stack.udp))  # all taken
        control, _, reply = await w.associate()
        w.close()
        return w, control, reply

    w, control, reply = run(main())
    assert reply[:2] == b"\x05\x01" and control.closed          # a reply, then closed
    assert w.server.udp_counters.refused == 1 and not w.server.associations
    assert not w.local.endpoints                                 # nothing left open


def test_datagrams_waiting_for_a_name_are_bounded():
    extra = 10

    async def main():
        w = await World.make()
        _, _, reply = await w.associate()
        relay = relay_of(reply)
        t, _ = await w.client_socket()
        for i in range(socks_udp.MAX_UNRESOLVED + extra):        # a name nobody answers
            t.sendto(name_header(b"x.silent.lab.test", 7) + b"%d" % i, relay)
        for i in range(socks_udp.MAX_LOOKUPS + 1):               # and many names at once
            t.sendto(name_header(b"n%d.silent.lab.test" % i, 7), relay)
        await asyncio.sleep(30)                                 # every lookup gave up
        w.close()
        return w

    w = run(main())
    c = w.server.udp_counters
    assert c.queue_overflow == extra + socks_udp.MAX_LOOKUPS + 1
    assert c.unresolved == socks_udp.MAX_UNRESOLVED and c.datagrams_out == 0


def test_a_client_that_does_not_read_loses_datagrams_not_memory():
    async def main():
        w = await World.make()
        _, _, reply = await w.associate()
        relay = relay_of(reply)
        t, client = await w.client_socket()
        t.sendto(header(B, 7) + b"one", relay)
        await client.wait(1)
        w.local.endpoints[relay].buffered = socks_udp.RELAY_BUFFER_LIMIT + 1
        t.sendto(header(B, 7) + b"two", relay)
        await asyncio.sleep(1)
        w.close()
        return w, client

    w, client = run(main())
    assert [d[10:] for d, _ in client.got] == [b"one"]
    assert w.server.udp_counters.queue_overflow == 1 and w.echo.count == 2


def test_the_counters_are_logged_when_the_server_closes(caplog):
    async def main():
        w = await World.make()
        _, _, reply = await w.associate()
        relay = relay_of(reply)
        t, client = await w.client_socket()
        t.sendto(header(B, 7) + b"x", relay)
        await client.wait(1)
        stranger, _ = await w.client_socket(("127.0.0.1", 40001))
        stranger.sendto(header(B, 7) + b"x", relay)
        t.sendto(header(B, 7, frag=1) + b"x", relay)
        await asyncio.sleep(0.1)
        with caplog.at_level(logging.INFO, logger="erebus.socks"):
            await w.server.close()
        w.close()
        return w

    w = run(main())
    (line,) = [r.getMessage() for r in caplog.records if "counters" in r.getMessage()]
    assert line == ("SOCKS5 proxy on 127.0.0.1:1080: counters: udp_associations=1 "
                    "udp_datagrams_out=1 udp_datagrams_in=1 udp_strangers=1 udp_fragments=1")
    assert not w.server.associations


# -- the wire format of the server's side (erebus/wire/socks5.py) --------------------------

def test_requests_and_udp_headers_parse_every_address_type():
    assert wire.parse_request(b"\x05\x03\x00\x01\x7f\x00") is None             # incomplete
    req, n = wire.parse_request(b"\x05\x03\x00\x01\x7f\x00\x00\x01\x9c\x40rest")
    assert (req.cmd, req.atyp, req.host, req.port, n) == (3, 1, "127.0.0.1", 40000, 10)
    req, _ = wire.parse_request(b"\x05\x01\x00\x04" + ipaddress.IPv6Address("2001:2::1").packed
                             + b"\x00\x50")
    assert (req.atyp, req.host, req.port) == (wire.ATYP_IPV6, "2001:2::1", 80)
    req, _ = wire.parse_request(b"\x05\x01\x00\x03\x0cweb.lab.test\x00\x50")
    assert (req.atyp, req.host) == (wire.ATYP_DOMAIN, "web.lab.test")
    for bad, code in ((b"\x04\x01\x00\x01", wire.REP_GENERAL_FAILURE),
                      (b"\x05\x01\x00\x07", wire.REP_ADDRESS_TYPE_NOT_SUPPORTED),
                      (b"\x05\x01\x00\x03\x00\x00\x50", wire.REP_GENERAL_FAILURE)):
        try:
            wire.parse_request(bad)
        except wire.RequestError as exc:
            assert exc.reply == code
        else:
            raise AssertionError(bad)
    d = wire.parse_udp_request(header(B, 7, frag=2) + b"data")
    assert (d.frag, d.atyp, d.host, d.port, d.data) == (2, 1, B, 7, b"data")
    assert wire.parse_udp_request(name_header(b"a.b", 53)).data == b""
    assert wire.build_reply(0, "127.0.0.1", 1080) == b"\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38"
    assert wire.build_reply(0, "::1", 1)[3:4] == b"\x04" and len(wire.build_reply(0, "::1", 1)) == 22


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_the_server_side_parsers_raise_only_parse_error(data):
    for parse in (wire.parse_request, wire.parse_udp_request):
        try:
            parse(data)
        except ParseError:
            pass
