"""VpnStack's datagram endpoints (the UDP half of the embedding API) in virtual time:
two stacks joined by a fake tunnel.  What an embedding program checks: datagrams
arrive byte-exact with their sender, a closed port is ConnectionRefusedError in
error_received, a connected endpoint hears only its peer, the receive queue and the
number of sockets are bounded, close() frees the port."""

from __future__ import annotations

import asyncio
import errno
import random

import pytest

from erebus.netstack import stack as stack_mod
from erebus.runtime.stack import VpnStack
from tests.unit.test_vpnstack_virtual import A, B, pair
from tests.unit.virtual_loop import run


class Recorder(asyncio.DatagramProtocol):
    """Everything a datagram protocol is told, and an event per datagram."""

    def __init__(self):
        self.transport = None
        self.datagrams: list[tuple[bytes, tuple]] = []
        self.errors: list[Exception] = []
        self.lost: list = []
        self.changed = asyncio.Event()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data, addr) -> None:
        self.datagrams.append((data, addr))
        self.changed.set()

    def error_received(self, exc) -> None:
        self.errors.append(exc)
        self.changed.set()

    def connection_lost(self, exc) -> None:
        self.lost.append(exc)
        self.changed.set()

    async def wait(self, predicate) -> None:
        while not predicate():
            self.changed.clear()
            await self.changed.wait()


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data, addr) -> None:
        self.transport.sendto(data, addr)


def test_datagrams_echoed_byte_exact_with_their_sender():
    rng = random.Random(3)
    payloads = [rng.randbytes(rng.randrange(0, 1372)) for _ in range(200)]

    async def main():
        a, b = pair()
        client, server = VpnStack(a), VpnStack(b)
        echo, _ = await server.create_datagram_endpoint(Echo, local_port=7)
        assert echo.get_extra_info("sockname") == (B, 7)
        transport, rec = await client.create_datagram_endpoint(Recorder)
        ip, port = transport.get_extra_info("sockname")
        assert ip == A and 49152 <= port <= 65535
        assert transport.get_extra_info("peername") is None
        for p in payloads:
            transport.sendto(p, (B, 7))
        await rec.wait(lambda: len(rec.datagrams) == len(payloads))
        transport.close()
        await rec.wait(lambda: rec.lost)
        client.close()
        server.close()
        return rec, transport

    rec, transport = run(main())
    assert sorted(d for d, _ in rec.datagrams) == sorted(payloads)
    assert {addr for _, addr in rec.datagrams} == {(B, 7)}
    assert rec.errors == [] and rec.lost == [None]
    assert transport.sent == transport.received == len(payloads)


def test_a_closed_port_is_connection_refused_in_error_received():
    async def main():
        a, b = pair()
        client, server = VpnStack(a), VpnStack(b)
        transport, rec = await client.create_datagram_endpoint(Recorder)
        transport.sendto(b"anyone?", (B, 9999))
        await rec.wait(lambda: rec.errors)
        client.close()
        server.close()
        return rec

    rec = run(main())
    (exc,) = rec.errors
    assert isinstance(exc, ConnectionRefusedError) and f"from {B}" in str(exc)
    assert rec.datagrams == []


def test_a_connected_endpoint_hears_only_its_peer():
    async def main():
        a, b = pair()
        client, server = VpnStack(a), VpnStack(b)
        await server.create_datagram_endpoint(Echo, local_port=7)
        other, _ = await server.create_datagram_endpoint(Recorder, local_port=8)
        transport, rec = await client.create_datagram_endpoint(Recorder, remote=(B, 7))
        assert transport.get_extra_info("peername") == (B, 7)
        with pytest.raises(ValueError, match="must be None or"):
            transport.sendto(b"x", (B, 8))
        transport.sendto(b"to the peer")
        await rec.wait(lambda: rec.datagrams)
        # port 8 of B writes to our port: not our peer, answered as a closed port
        other.sendto(b"stranger", transport.get_extra_info("sockname"))
        other_rec = other.get_protocol()
        await other_rec.wait(lambda: other_rec.errors)
        client.close()
        server.close()
        return rec, other_rec, client.stack.counters

    rec, other_rec, counters = run(main())
    assert rec.datagrams == [(b"to the peer", (B, 7))]
    assert isinstance(other_rec.errors[0], ConnectionRefusedError)
    assert counters.udp_filtered == 1


def test_bad_addresses_and_oversize_datagrams():
    async def main():
        a, b = pair()
        client = VpnStack(a)
        transport, rec = await client.create_datagram_endpoint(Recorder)
        for bad in (("web.lab.test", 53), (B, 0), (B, 70000), ("::ffff:" + B, 53), B):
            with pytest.raises(ValueError):
                transport.sendto(b"x", bad)
        with pytest.raises(ValueError, match="not connected"):
            transport.sendto(b"x")
        with pytest.raises(ValueError):
            await client.create_datagram_endpoint(Recorder, remote=("name", 53))
        assert transport.max_payload == 1400 - 28
        transport.sendto(bytes(transport.max_payload + 1), (B, 7))
        transport.sendto(bytes(transport.max_payload), (B, 7))
        transport.sendto(b"x", ("2001:2::1", 53))      # the tunnel has no IPv6 address
        client.close()
        return rec, transport, a.sent

    rec, transport, sent = run(main())
    big, unreachable = rec.errors
    assert isinstance(big, OSError) and big.errno == errno.EMSGSIZE
    assert unreachable.errno == errno.ENETUNREACH and "no IPv6 address" in str(unreachable)
    assert transport.sent == 1 and sent == 1


def test_the_receive_queue_is_bounded_while_paused():
    limit = 16

    async def main():
        a, b = pair()
        client, server = VpnStack(a), VpnStack(b)
        transport, rec = await client.create_datagram_endpoint(Recorder, queue_limit=limit)
        sender, _ = await server.create_datagram_endpoint(Recorder)
        transport.pause_reading()
        assert not transport.is_reading()
        for i in range(3 * limit):
            sender.sendto(b"%d" % i, transport.get_extra_info("sockname"))
        await asyncio.sleep(1)                     # virtual: every datagram has arrived
        assert rec.datagrams == []
        transport.resume_reading()
        await rec.wait(lambda: len(rec.datagrams) == limit)
        await asyncio.sleep(1)
        client.close()
        server.close()
        return rec, transport, client.stack.counters

    rec, transport, counters = run(main())
    got = [d for d, _ in rec.datagrams]            # the first `limit` to arrive (jitter)
    assert len(set(got)) == limit and set(got) <= {b"%d" % i for i in range(3 * limit)}
    assert transport.dropped == 2 * limit and counters.udp_dropped == 2 * limit


def test_the_number_of_sockets_is_bounded(monkeypatch):
    monkeypatch.setattr(stack_mod, "MAX_UDP_SOCKETS", 8)

    async def main():
        a, _ = pair()
        client = VpnStack(a)
        transports = [(await client.create_datagram_endpoint(Recorder, local_port=7000))[0]]
        with pytest.raises(OSError, match="in use") as e:
            await client.create_datagram_endpoint(Recorder, local_port=7000)
        assert e.value.errno == errno.EADDRINUSE
        transports += [(await client.create_datagram_endpoint(Recorder))[0] for _ in range(7)]
        with pytest.raises(OSError, match="too many UDP sockets") as e:
            await client.create_datagram_endpoint(Recorder)
        assert e.value.errno == errno.EMFILE
        transports[3].close()
        await client.create_datagram_endpoint(Recorder)      # one was freed
        client.close()

    run(main())


def test_close_frees_the_port_and_the_stack_closes_every_endpoint():
    async def main():
        a, b = pair()
        client, server = VpnStack(a), VpnStack(b)
        transport, rec = await client.create_datagram_endpoint(Recorder, local_port=5000)
        transport.close()
        transport.sendto(b"after close", (B, 7))      # dropped, like asyncio
        await rec.wait(lambda: rec.lost)
        sender, srec = await server.create_datagram_endpoint(Recorder)
        sender.sendto(b"x", (A, 5000))
        await srec.wait(lambda: srec.errors)           # the port is closed now
        again, rec2 = await client.create_datagram_endpoint(Recorder, local_port=5000)
        client.close()                                 # the tunnel goes away
        await rec2.wait(lambda: rec2.lost)
        server.close()
        return rec, srec, a.sent

    rec, srec, sent = run(main())
    assert rec.lost == [None] and rec.datagrams == []
    assert isinstance(srec.errors[0], ConnectionRefusedError)
    assert sent == 1                  # the ICMP error for b"x": nothing after close()


def test_a_protocol_that_raises_does_not_stop_the_others():
    class Broken(Recorder):
        def datagram_received(self, data, addr):
            super().datagram_received(data, addr)
            raise RuntimeError("a bug in the embedding program")

    async def main():
        a, b = pair()
        client, server = VpnStack(a), VpnStack(b)
        await server.create_datagram_endpoint(Echo, local_port=7)
        broken, brec = await client.create_datagram_endpoint(Broken)
        good, grec = await client.create_datagram_endpoint(Recorder)
        for i in range(3):
            broken.sendto(b"b%d" % i, (B, 7))
            good.sendto(b"g%d" % i, (B, 7))
        await grec.wait(lambda: len(grec.datagrams) == 3)
        await brec.wait(lambda: len(brec.datagrams) == 3)
        client.close()
        server.close()

    run(main())
