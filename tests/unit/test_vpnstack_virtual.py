"""VpnStack (the asyncio glue of the network stack) in virtual time: two of them
joined by a fake tunnel with seeded loss and delay, no sockets and no root.  What a
user of the embedding API checks: bytes intact both ways, a closed port refused, a
silent peer timed out."""

from __future__ import annotations

import asyncio
import hashlib
import random

import pytest

from erebus.runtime.stack import VpnStack
from erebus.session import TunnelInfo
from tests.unit.virtual_loop import run

A, B = "198.18.40.1", "198.18.40.2"


class Pipe:
    """One end of a fake tunnel (an erebus.tunnel.PacketLink)."""

    def __init__(self, ip: str, rng: random.Random, *, loss: float, delay: float):
        self.info = TunnelInfo(kind="test", server="pipe", virtual_ip=ip,
                               netmask="255.255.255.0", gateway=None, mtu=1400)
        self.rng, self.loss, self.delay = rng, loss, delay
        self.other: Pipe | None = None
        self.receiver = None
        self.sent = self.lost = 0
        self.cut = False

    def set_receiver(self, receiver) -> None:
        self.receiver = receiver

    def send_packet(self, packet: bytes) -> None:
        self.sent += 1
        if self.cut or self.rng.random() < self.loss:
            self.lost += 1
            return
        loop = asyncio.get_running_loop()
        loop.call_later(self.delay * (1 + self.rng.random()), self.other.receiver, packet)


def pair(loss=0.0, delay=0.01, seed=7):
    rng = random.Random(seed)
    a, b = Pipe(A, rng, loss=loss, delay=delay), Pipe(B, rng, loss=loss, delay=delay)
    a.other, b.other = b, a
    return a, b


@pytest.mark.parametrize("loss", [0.0, 0.03])
def test_a_transfer_both_ways_arrives_intact(loss):
    upload = random.Random(1).randbytes(300_000)
    download = random.Random(2).randbytes(400_000)

    async def main():
        a, b = pair(loss=loss)
        client, server = VpnStack(a), VpnStack(b)
        got_up = asyncio.get_running_loop().create_future()

        async def handle(reader, writer):
            data = await reader.readexactly(len(upload))
            got_up.set_result(hashlib.sha256(data).hexdigest())
            writer.write(download)
            await writer.drain()
            writer.close()

        await server.start_server(handle, 8080)
        reader, writer = await client.open_connection(B, 8080)
        writer.write(upload)
        await writer.drain()
        received = await reader.read(-1)
        writer.close()
        client.close()
        server.close()
        return await got_up, hashlib.sha256(received).hexdigest(), a.lost + b.lost

    up, down, lost = run(main(), limit=600)
    assert up == hashlib.sha256(upload).hexdigest()
    assert down == hashlib.sha256(download).hexdigest()
    assert (lost > 0) == (loss > 0)


def test_a_closed_port_is_refused_and_a_silent_peer_times_out():
    async def main():
        a, b = pair()
        client, server = VpnStack(a), VpnStack(b)
        with pytest.raises(ConnectionRefusedError):
            await client.open_connection(B, 9)
        a.cut = True
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await client.open_connection(B, 8080)
        waited = loop.time() - started
        client.close()
        server.close()
        return waited

    waited = run(main(), limit=600)
    assert waited >= 10                       # SYN retransmissions, not an instant error


A6, B6 = "2001:2:0:40::1", "2001:2:0:40::2"


def pair6(loss=0.0, seed=9):
    a, b = pair(loss=loss, seed=seed)
    a.info.virtual_ip6, b.info.virtual_ip6 = A6, B6
    return a, b


@pytest.mark.parametrize("loss", [0.0, 0.03])
def test_ipv6_streams_and_datagrams_through_the_embedding_api(loss):
    upload = random.Random(3).randbytes(200_000)

    async def main():
        a, b = pair6(loss=loss)
        client, server = VpnStack(a), VpnStack(b)
        assert client.has_ipv6 and client.has_ipv4
        seen = asyncio.get_running_loop().create_future()

        async def handle(reader, writer):
            data = await reader.readexactly(len(upload))
            seen.set_result(writer.get_extra_info("peername")[0])
            writer.write(hashlib.sha256(data).digest())
            await writer.drain()
            writer.close()

        await server.start_server(handle, 8080)
        reader, writer = await client.open_connection("2001:2:0:40:0::2", 8080)
        names = writer.get_extra_info("sockname"), writer.get_extra_info("peername")
        writer.write(upload)
        digest = await reader.readexactly(32)
        writer.close()

        class Echo(asyncio.DatagramProtocol):
            def connection_made(self, transport):
                self.transport = transport

            def datagram_received(self, data, addr):
                self.transport.sendto(data[::-1], addr)

        await server.create_datagram_endpoint(Echo, 5353)
        answers = []
        for i in range(20):
            try:
                answers.append(await client.udp_exchange(b"abc%d" % i, B6, 5353,
                                                         timeout=1.0))
            except TimeoutError:
                pass
        client.close()
        server.close()
        return await seen, names, digest, answers

    peer, names, digest, answers = run(main(), limit=600)
    assert peer == A6 and names == ((A6, names[0][1]), (B6, 8080))
    assert digest == hashlib.sha256(upload).digest()
    assert answers and all(a[::-1].startswith(b"abc") for a in answers)


def test_ipv6_literals_checked_and_a_missing_family_unreachable():
    async def main():
        a, b = pair()                                   # IPv4 only
        client = VpnStack(a)
        assert not client.has_ipv6
        errors = []
        for host in ("2001:2:0:40::2", "web.lab.test", "::ffff:198.18.40.2"):
            try:
                await client.open_connection(host, 80, timeout=1)
            except (OSError, ValueError) as exc:
                errors.append((type(exc).__name__, str(exc)))
        client.close()
        return errors

    (unreach, name, mapped) = run(main(), limit=60)
    assert unreach[0] == "OSError" and "no IPv6 address" in unreach[1]
    assert name[0] == "ValueError" and "resolve names first" in name[1]
    assert mapped[0] == "ValueError" and "IPv4-mapped" in mapped[1]


def test_rebind_resets_only_the_family_whose_address_changed():
    async def main():
        a, b = pair6()
        client, server = VpnStack(a), VpnStack(b)

        async def handle(reader, writer):
            await reader.read(-1)

        await server.start_server(handle, 80)
        _, w4 = await client.open_connection(B, 80)
        _, w6 = await client.open_connection(B6, 80)
        a.info.virtual_ip6 = "2001:2:0:40::99"
        client.rebind(a.info)               # resets at once: nothing to wait for
        state = w4.is_closing(), w6.is_closing(), client.stack.local_ip6
        client.close()
        server.close()
        return state

    closing4, closing6, local6 = run(main(), limit=60)
    assert (closing4, closing6) == (False, True)
    assert local6 == bytes.fromhex("20010002000000400000000000000099")
