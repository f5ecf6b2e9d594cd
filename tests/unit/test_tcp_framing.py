"""OpenVPN over TCP (erebus/runtime/openvpn.py TcpFraming): the frames sent in one
event-loop pass leave in one transport write, in order, bounded, and without a
further send to push them."""

from __future__ import annotations

import asyncio
import struct

from erebus.runtime import openvpn
from erebus.runtime.openvpn import TcpFraming


class FakeTransport:
    def __init__(self):
        self.writes: list[bytes] = []
        self.wrote = asyncio.Event()
        self.closed = False

    def write(self, data) -> None:
        self.writes.append(bytes(data))
        self.wrote.set()

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name, default=None):
        return default


def framing():
    link = TcpFraming(lambda d: None, lambda: None, lambda exc: None)
    transport = FakeTransport()
    link.connection_made(transport)
    return link, transport


def framed(packets) -> bytes:
    return b"".join(struct.pack("!H", len(p)) + p for p in packets)


def test_sends_of_one_pass_are_one_write_in_order_flushed_without_another_send():
    async def go():
        link, transport = framing()
        packets = [bytes([i]) * (100 + i) for i in range(20)]
        for p in packets:
            link.send(p)
        assert transport.writes == []            # nothing yet: the pass is not over
        await asyncio.wait_for(transport.wrote.wait(), 5)
        assert transport.writes == [framed(packets)]
        transport.wrote.clear()
        link.send(b"next pass")                  # a new pass: its own write
        await asyncio.wait_for(transport.wrote.wait(), 5)
        assert transport.writes[1:] == [framed([b"next pass"])]
    asyncio.run(go())


def test_a_burst_beyond_the_bound_is_written_as_it_fills():
    async def go():
        link, transport = framing()
        packet = b"x" * 1400
        n = openvpn.COALESCE_LIMIT // 1402 * 3
        for _ in range(n):
            link.send(packet)
        assert transport.writes                  # the bound was reached: written already
        assert all(len(w) <= openvpn.COALESCE_LIMIT + 1402 for w in transport.writes)
        transport.wrote.clear()
        await asyncio.wait_for(transport.wrote.wait(), 5)    # the rest, at the pass end
        assert b"".join(transport.writes) == framed([packet] * n)
    asyncio.run(go())


def test_close_writes_what_was_sent_first():
    async def go():
        link, transport = framing()
        link.send(b"exit notify")
        link.close()
        assert transport.writes == [framed([b"exit notify"])] and transport.closed
        link.send(b"after close")                # dropped, and no write scheduled
        await asyncio.sleep(0)
        assert transport.writes == [framed([b"exit notify"])]
    asyncio.run(go())


def test_frames_split_anywhere_are_reassembled():
    got = []
    link = TcpFraming(got.append, lambda: None, lambda exc: None)
    data = framed([b"one", b"", b"three" * 100])
    for i in range(0, len(data), 7):
        link.data_received(data[i:i + 7])
    assert got == [b"one", b"", b"three" * 100]
