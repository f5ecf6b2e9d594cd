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
