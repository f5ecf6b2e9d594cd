"""BatchedUdpLink: GRO reads split at the kernel's segment size, sends queued per loop
pass and flushed as UDP_SEGMENT runs, the fallbacks when the kernel refuses either.
A fake socket and a fake loop (no timing); then the real thing on loopback."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import socket
import struct
import sys

import pytest

from erebus.runtime import udp
from erebus.runtime.udp import BatchedUdpLink, gro_segments, gso_runs


class FakeLoop:
    def __init__(self):
        self.readers = {}
        self.soon = []

    def add_reader(self, fd, cb):
        self.readers[fd] = cb

    def remove_reader(self, fd):
        self.readers.pop(fd, None)

    def call_soon(self, cb):
        loop = self

        class Handle:
            cancelled = False

            def cancel(self):
                self.cancelled = True
                if self in loop.soon:
                    loop.soon.remove(self)
        h = Handle()
        h.cb = cb
        self.soon.append(h)
        return h

    def run_soon(self):
        while self.soon:
            self.soon.pop(0).cb()


class FakeSocket:
    """Reads come from ``reads`` ((payload, gro size or None) or an exception); what
    is sent is recorded: ("send", data) or ("gso", size, [segments])."""

    family = socket.AF_INET

    def __init__(self, *, gro_ok=True, gso_error=None, mtu=1500):
        self.gro_ok = gro_ok
        self.gso_error = gso_error
        self.mtu = mtu
        self.reads = []
        self.sent = []
        self.connected = None
        self.closed = False
        self.plain_reads = 0

    def fileno(self):
        return 7

    def setsockopt(self, level, opt, value):
        if level == udp.SOL_UDP and opt == udp.UDP_GRO and not self.gro_ok:
            raise OSError(errno.ENOPROTOOPT, "Protocol not available")

    def getsockopt(self, level, opt):
        return self.mtu

    def _next(self):
        if not self.reads:
            raise BlockingIOError
        item = self.reads.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def recvmsg_into(self, buffers, ancbufsize):
        assert ancbufsize >= socket.CMSG_SPACE(4)
        data, size, *flags = self._next()         # (data, size[, recvmsg flags])
        buffers[0][:len(data)] = data
        anc = [] if size is None else \
            [(udp.SOL_UDP, udp.UDP_GRO, size.to_bytes(4, sys.byteorder))]
        return len(data), anc, flags[0] if flags else 0, ("198.18.0.1", 1194)

    def recv_into(self, buffer):
        data, _ = self._next()
        self.plain_reads += 1
        buffer[:len(data)] = data
        return len(data)

    def send(self, data):
        self.sent.append(("send", bytes(data)))
        return len(data)

    def sendmsg(self, buffers, ancdata):
        (level, kind, value), = ancdata
        assert (level, kind) == (udp.SOL_UDP, udp.UDP_SEGMENT)
        if self.gso_error is not None:
            raise OSError(self.gso_error, "refused")
        self.sent.append(("gso", struct.unpack("=H", value)[0], [bytes(b) for b in buffers]))
        return sum(map(len, buffers))

    def connect(self, addr):
        self.sent.append(("connect", addr))

    def close(self):
        self.closed = True


def make_link(sock, **kw):
    loop = FakeLoop()
    got = []
    link = BatchedUdpLink(sock, loop, on_datagram=got.append, on_error=pytest.fail, **kw)
    return link, loop, got


def blob(n, tag):
    return bytes([tag]) * n


# -- receiving ---------------------------------------------------------------------------

def test_a_gro_read_is_split_at_the_cmsg_size_with_a_short_last_datagram():
    sock = FakeSocket()
    link, loop, got = make_link(sock)
    train = blob(1000, 1) + blob(1000, 2) + blob(1000, 3) + blob(300, 4)
    sock.reads = [(train, 1000), (blob(1000, 9) * 2, 1000)]  # the second read reuses the buffer
    loop.readers[7]()
    assert [len(d) for d in got] == [1000, 1000, 1000, 300, 1000, 1000]
    assert got[:4] == [blob(1000, 1), blob(1000, 2), blob(1000, 3), blob(300, 4)]
    assert all(type(d) is bytes for d in got)       # copies: intact after the reuse
    assert link.recv_calls == 2 and link.datagrams_received == 6


def test_a_read_without_the_cmsg_is_one_datagram():
    sock = FakeSocket()
    link, loop, got = make_link(sock)
    sock.reads = [(blob(2500, 5), None), (b"", None)]
    loop.readers[7]()
    assert got == [blob(2500, 5), b""]


def test_a_truncated_read_is_dropped_and_counted_and_the_next_one_taken():
    sock = FakeSocket()
    link, loop, got = make_link(sock)
    sock.reads = [(blob(1000, 1), None, socket.MSG_TRUNC), (blob(1000, 2), None, 0)]
    loop.readers[7]()
    assert got == [blob(1000, 2)] and link.dropped_truncated == 1
    assert udp.MSG_TRUNC == socket.MSG_TRUNC and type(udp.MSG_TRUNC) is int


def test_refused_gro_reads_one_datagram_per_recv_into():
    sock = FakeSocket(gro_ok=False)
    link, loop, got = make_link(sock)
    assert not link.gro
    sock.reads = [(blob(1400, 1), None), (blob(20, 2), None)]
    loop.readers[7]()
    assert got == [blob(1400, 1), blob(20, 2)] and sock.plain_reads == 2


def test_one_wake_up_takes_at_most_max_datagrams():
    sock = FakeSocket()
    link, loop, got = make_link(sock)
    sock.reads = [(blob(100, i) * 64, 100) for i in range(10)]   # 640 datagrams
    loop.readers[7]()
    assert len(got) == BatchedUdpLink.MAX_DATAGRAMS
    loop.readers[7]()
    assert len(got) == 2 * BatchedUdpLink.MAX_DATAGRAMS


@pytest.mark.parametrize("size,n", [(100, 250), (0, 0), (-1, 10)])
def test_gro_segments_of_odd_sizes_cover_the_read(size, n):
    spans = list(gro_segments(n, size))
    assert spans[0][0] == 0 and spans[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


# -- sending -----------------------------------------------------------------------------

def test_sends_wait_for_the_loop_pass_and_leave_as_gso_runs_by_size():
    sock = FakeSocket()
    link, loop, _ = make_link(sock)
    out = [blob(1000, 1), blob(1000, 2), blob(1000, 3), blob(400, 4),   # one run, short last
           blob(1000, 5), blob(1200, 6),                                 # bigger: a new run
           blob(1200, 7), blob(60, 8)]
    for d in out:
        link.send(d)
    assert sock.sent == []                     # nothing before the loop pass ends
    loop.run_soon()
    assert sock.sent == [("gso", 1000, out[0:4]), ("send", out[4]),
                         ("gso", 1200, out[5:8])]
    assert link.send_calls == 3 and link.datagrams_sent == 8


def test_a_batch_of_input_flushes_its_answers_once_at_its_end():
    sock = FakeSocket()
    loop = FakeLoop()
    link = None

    def answer(d):
        link.send(b"ack" + d[:1] * 97)
    link = BatchedUdpLink(sock, loop, on_datagram=answer, on_error=pytest.fail)
    sock.reads = [(blob(100, 1) * 5, 100)]
    loop.readers[7]()
    assert sock.sent == [("gso", 100, [b"ack" + b"\x01" * 97] * 5)]
    assert loop.soon == []                     # the scheduled flush was cancelled


def test_runs_are_bounded_in_segments_and_bytes():
    runs = list(gso_runs([blob(100, 1)] * 150, 1472))
    assert [len(r) for r in runs] == [64, 64, 22]
    runs = list(gso_runs([blob(1400, 1)] * 60, 1472))
    assert all(sum(map(len, r)) < udp.GSO_MAX_BYTES for r in runs)
    assert [len(r) for r in runs] == [46, 14]


def test_datagrams_beyond_the_path_mtu_go_alone():
    sock = FakeSocket(mtu=1280)
    link, loop, _ = make_link(sock)
    for d in (blob(1300, 1), blob(1300, 2), blob(1000, 3), blob(1000, 4)):
        link.send(d)
    loop.run_soon()
    assert [s[0] for s in sock.sent] == ["send", "send", "gso"]


def test_the_queue_is_bounded_a_full_one_is_flushed_at_once():
    sock = FakeSocket()
    link, loop, _ = make_link(sock)
    for i in range(udp.PENDING_MAX):
        link.send(blob(500, i % 256))
    assert sum(len(s[2]) for s in sock.sent) == udp.PENDING_MAX   # without the loop
    assert loop.soon == []


@pytest.mark.parametrize("code", [errno.EIO, errno.EINVAL, errno.ENOPROTOOPT])
def test_a_refused_gso_falls_back_to_one_send_each_and_is_remembered(code):
    sock = FakeSocket(gso_error=code)
    link, loop, _ = make_link(sock)
    out = [blob(1000, i) for i in range(4)]
    for d in out:
        link.send(d)
    loop.run_soon()
    assert sock.sent == [("send", d) for d in out]
    assert not link.gso and link.gso_refused == code
    assert "GSO refused: " + errno.errorcode[code] in link.stats()
    sock.gso_error = None                      # it would work now: not tried again
    for d in out:
        link.send(d)
    loop.run_soon()
    assert [s[0] for s in sock.sent[4:]] == ["send"] * 4


def test_a_full_socket_buffer_counts_the_run_as_dropped():
    sock = FakeSocket()
    link, loop, _ = make_link(sock)
    sock.sendmsg = lambda *a: (_ for _ in ()).throw(BlockingIOError())
    for _ in range(5):
        link.send(blob(800, 1))
    loop.run_soon()
    assert link.send_dropped == 5 and link.gso      # not a refusal


def test_close_and_redirect_send_what_is_queued_first():
    sock = FakeSocket()
    link, loop, _ = make_link(sock)
    link.remote = ("198.18.0.1", 1194)
    link.send(b"to the old port")
    link.redirect(1195)
    link.send(b"exit")
    link.close()
    assert sock.sent == [("send", b"to the old port"), ("connect", ("198.18.0.1", 1195)),
                         ("send", b"exit")]
    assert sock.closed and loop.soon == []
    link.send(b"late")                         # after close: nothing
    assert len(sock.sent) == 3


# -- the kernel's GRO and GSO on loopback ------------------------------------------------

@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_gso_to_gro_round_trip_on_loopback_is_byte_exact(host):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        a, b = socket.socket(family, socket.SOCK_DGRAM), socket.socket(family, socket.SOCK_DGRAM)
    except OSError as exc:
        pytest.skip(f"no {host} socket: {exc}")
    with a, b:
        try:
            a.bind((host, 0))
            b.bind((host, 0))
        except OSError as exc:
            pytest.skip(f"cannot bind {host}: {exc}")
        a.connect(b.getsockname()[:2])
        b.connect(a.getsockname()[:2])
        a.setblocking(False)
        b.setblocking(False)
        out = [bytes([i]) * 1200 for i in range(64)] + [b"tail" * 50] + \
            [bytes([i]) * 900 for i in range(10)]
        asyncio.run(_round_trip(a, b, out))


async def _round_trip(a, b, out):
    loop = asyncio.get_running_loop()
    got, done = [], asyncio.Event()

    def on_datagram(d):
        got.append(d)
        if len(got) == len(out):
            done.set()
    errors = []
    sender = BatchedUdpLink(a, loop, on_datagram=lambda d: None, on_error=errors.append)
    receiver = BatchedUdpLink(b, loop, on_datagram=on_datagram, on_error=errors.append)
    if not receiver.gro:
        pytest.skip("this kernel refuses UDP_GRO (Linux >= 5.0)")
    for d in out:
        sender.send(d)
    sender.flush()
    if not sender.gso:
        pytest.skip(f"this kernel refuses UDP_SEGMENT ({errno.errorcode[sender.gso_refused]})")
    await asyncio.wait_for(done.wait(), 10)
    assert errors == []
    assert [hashlib.sha256(d).hexdigest() for d in got] == \
        [hashlib.sha256(d).hexdigest() for d in out]
    assert sender.send_calls == 3     # 54 x 1200 (< 64 KiB); 10 x 1200 + the tail; 10 x 900
    assert receiver.recv_calls < len(out)         # the kernel kept the trains whole
    sender.close()
    receiver.close()


def test_an_error_that_ends_the_session_while_flushing_stops_the_flush():
    sock = FakeSocket()
    loop = FakeLoop()
    link = BatchedUdpLink(sock, loop, on_datagram=lambda d: None,
                          on_error=lambda exc: link.close())     # the shell's _end
    calls = []

    def refused(data):
        calls.append(data)
        raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    sock.send = refused
    link.send(b"delete")
    link.send(b"x" * 10)                       # a run of its own: shorter, not GSO-able
    link.close()                               # flushes; the error closes it again
    assert calls == [b"delete"] and sock.closed and link.closed


def test_replace_socket_carries_on_from_the_new_socket_and_closes_the_old():
    """Roaming: the link moves to a new socket (another local port here, another local
    address in the lab); datagrams flow both ways over it, the old one is closed."""
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.setblocking(False)

    def connected():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.connect(peer.getsockname())
        return s

    async def main():
        loop = asyncio.get_running_loop()
        got = asyncio.Queue(maxsize=4)
        first = connected()
        link = BatchedUdpLink(first, loop, on_datagram=got.put_nowait, on_error=pytest.fail)
        link.send(b"one")
        link.flush()
        data, was = await loop.sock_recvfrom(peer, 100)
        assert data == b"one"
        second = connected()
        link.replace_socket(second)
        assert first.fileno() == -1 and link.local == second.getsockname()[:2]
        link.send(b"two")
        link.flush()
        data, now = await loop.sock_recvfrom(peer, 100)
        assert data == b"two" and now != was
        peer.sendto(b"back", now)
        assert await asyncio.wait_for(got.get(), 5) == b"back"
        link.close()

    with peer:
        asyncio.run(main())
