"""A connected, non-blocking UDP socket read in batches and written in batches: every
wake-up drains up to BATCH reads before the owner flushes, so one burst of packets
costs one pass of timers, ACKs and writes instead of one per packet.  Shared by every
VPN family.

Fewer system calls where Linux offers them (issue 18):

- receive: UDP_GRO (Linux 5.0) lets the kernel hand over a train of datagrams of one
  size from the peer in one read, with their size in a cmsg; each is copied out of
  the reused buffer into its own ``bytes`` before the core sees it (a core may keep
  what it is given: a control-channel record, a pcap line).  Without the option, or
  without the cmsg, one read is one datagram, as before.
- send: datagrams are queued and flushed once per loop pass (after a batch of input,
  or by a callback scheduled at the first one); runs of equal size (the last may be
  shorter) go out in one ``sendmsg`` with UDP_SEGMENT (Linux 4.18), the others one
  ``send`` each, with no copy.  A kernel or device that refuses GSO is remembered:
  the rest of the link's life is one send per datagram.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
import sys
from typing import Callable, Iterator, Sequence

log = logging.getLogger("erebus.udp")

SOL_UDP = getattr(socket, "SOL_UDP", 17)
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)      # linux/udp.h
UDP_GRO = getattr(socket, "UDP_GRO", 104)
IP_MTU = getattr(socket, "IP_MTU", 14)                  # linux/in.h
IPV6_MTU = getattr(socket, "IPV6_MTU", 24)              # linux/in6.h

GSO_MAX_SEGMENTS = 64        # UDP_MAX_SEGMENTS of older kernels (newer allow 128)
GSO_MAX_BYTES = 65507        # a run's total stays below this (IPv4's largest payload)
PENDING_MAX = 256            # datagrams queued before a flush is forced
RECV_BUFFER = 1 << 16        # one GRO train (<= 64 KiB) or one datagram
_REFUSES_GSO = frozenset({errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP})
_SEGMENT_CMSG = struct.Struct("=H")
MSG_TRUNC = int(socket.MSG_TRUNC)     # a plain int: `flags & socket.MSG_TRUNC` is an
                                      # IntFlag operation in Python (392 ns a datagram)


def gro_segments(nbytes: int, size: int | None) -> Iterator[tuple[int, int]]:
    """(start, end) of each datagram in a read of ``nbytes`` that the kernel coalesced
    at ``size`` (UDP_GRO's cmsg; the last one may be shorter); one datagram when
    ``size`` is None (no cmsg), not positive, or not smaller than the read."""
    if size is None or size <= 0 or size >= nbytes:
        yield 0, nbytes
        return
    for start in range(0, nbytes, size):
        yield start, min(start + size, nbytes)


def gso_runs(datagrams: Sequence[bytes], max_segment: int, *,
             max_segments: int = GSO_MAX_SEGMENTS,
             max_bytes: int = GSO_MAX_BYTES) -> Iterator[list[bytes]]:
    """Consecutive datagrams that may leave in one UDP_SEGMENT send: all of the first
    one's size, except that the last may be shorter; at most ``max_segments`` of them
    and fewer than ``max_bytes`` in all.  A datagram that is empty or larger than
    ``max_segment`` (what fits the path MTU unfragmented) is a run of its own."""
    run: list[bytes] = []
    size = total = 0
    for d in datagrams:
        n = len(d)
        if run and (n > size or len(run) >= max_segments or total + n >= max_bytes):
            yield run
            run = []
        if not run:
            run, size, total = [d], n, n
            if n == 0 or n > max_segment:
                yield run
                run = []
            continue
        run.append(d)
        total += n
        if n < size:                     # a shorter one ends the run
            yield run
            run = []
    if run:
        yield run


def path_mtu_payload(sock: socket.socket) -> int:
    """The largest UDP payload the connected ``sock`` sends unfragmented (the kernel's
    path MTU less the IP and UDP headers; 1472 when it does not say)."""
    v6 = sock.family == socket.AF_INET6
    try:
        mtu = sock.getsockopt(socket.IPPROTO_IPV6 if v6 else socket.IPPROTO_IP,
                              IPV6_MTU if v6 else IP_MTU)
    except OSError:
        return 1472
    return max(0, mtu - (48 if v6 else 28))


class BatchedUdpLink:
    BATCH = 64                # reads per wake-up
    MAX_DATAGRAMS = 256       # datagrams per wake-up (a GRO read carries up to 64)
    BUFFER = 4 << 20          # asked for; the kernel caps it at net.core.[rw]mem_max

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop, *,
                 on_datagram: Callable[[bytes], None],
                 on_error: Callable[[Exception], None],
                 on_batch_end: Callable[[], None] | None = None,
                 gro: bool = True, gso: bool = True):
        self.sock = sock
        self.loop = loop
        self._on_datagram = on_datagram
        self._on_error = on_error
        self._on_batch_end = on_batch_end
        self.closed = False
        self.send_dropped = 0        # datagrams a full socket buffer refused
        self.dropped_truncated = 0   # reads larger than the buffer (MSG_TRUNC)
        self.recv_calls = self.datagrams_received = 0
        self.send_calls = self.datagrams_sent = 0
        self.gso_refused: int | None = None      # the errno that turned GSO off
        self.local = self.remote = ("0.0.0.0", 0)     # set by whoever connected the socket
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, self.BUFFER)
            except OSError:
                pass
        self.gro = gro and self._enable_gro()
        self.gso = gso
        self._max_segment = path_mtu_payload(sock) if gso else 0
        self._buffer = bytearray(RECV_BUFFER)
        self._view = memoryview(self._buffer)
        self._ancillary = socket.CMSG_SPACE(4) if self.gro else 0
        self._pending: list[bytes] = []          # bounded: PENDING_MAX
        self._flush_handle: asyncio.Handle | None = None
        loop.add_reader(sock.fileno(), self._readable)

    def replace_socket(self, sock: socket.socket) -> None:
        """Carry on over ``sock`` (connected to the same peer, perhaps from another
        local address): what is queued is dropped (it failed on the old one), the old
        socket closed, the options set again."""
        self.loop.remove_reader(self.sock.fileno())
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._pending = []
        self.sock.close()
        self.sock = sock
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, self.BUFFER)
            except OSError:
                pass
        if self.gro:
            self.gro = self._enable_gro()
            self._ancillary = socket.CMSG_SPACE(4) if self.gro else 0
        if self.gso:
            self._max_segment = path_mtu_payload(sock)
        self.local = sock.getsockname()[:2]
        self.loop.add_reader(sock.fileno(), self._readable)

    def _enable_gro(self) -> bool:
        try:
            self.sock.setsockopt(SOL_UDP, UDP_GRO, 1)
        except OSError:
            return False                         # not Linux >= 5.0: one datagram a read
        return True

    # -- receiving ---------------------------------------------------------------------

    def _read(self) -> tuple[int, int | None, int]:
        """One read into the reused buffer: (bytes, GRO segment size or None, flags)."""
        if not self._ancillary:
            return self.sock.recv_into(self._buffer), None, 0
        n, ancillary, flags, _ = self.sock.recvmsg_into([self._buffer], self._ancillary)
        size = None
        for level, kind, data in ancillary:
            if level == SOL_UDP and kind == UDP_GRO and len(data) >= 4:
                size = int.from_bytes(data[:4], sys.byteorder, signed=True)
        return n, size, flags

    def _readable(self) -> None:
        on_datagram = self._on_datagram
        view = self._view
        got = 0
        for _ in range(self.BATCH):
            try:
                n, size, flags = self._read()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._on_error(exc)
                break
            self.recv_calls += 1
            if flags & MSG_TRUNC:
                self.dropped_truncated += 1
                continue
            for start, end in gro_segments(n, size):
                got += 1
                on_datagram(bytes(view[start:end]))   # a copy: the buffer is reused
                if self.closed:
                    return
            if got >= self.MAX_DATAGRAMS:
                break
        self.datagrams_received += got
        if got and self._on_batch_end is not None:
            self._on_batch_end()
        self.flush()

    # -- sending -----------------------------------------------------------------------

    def send(self, datagram: bytes) -> None:
        """Queue ``datagram``; it leaves with the rest of this loop pass's."""
        if self.closed:
            return
        pending = self._pending
        pending.append(datagram)
        if len(pending) >= PENDING_MAX:
            self.flush()
        elif self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Send what is queued: GSO runs where the kernel takes them, else one by one."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        pending = self._pending
        if not pending or self.closed:
            return
        self._pending = []
        if not self.gso:
            for datagram in pending:
                if not self._send_one(datagram):
                    return
            return
        for run in gso_runs(pending, self._max_segment):
            if not (self._send_run(run) if len(run) > 1 else self._send_one(run[0])):
                return

    def _send_one(self, datagram: bytes) -> bool:
        """False when the link closed meanwhile (an error ended the session)."""
        try:
            self.sock.send(datagram)
        except (BlockingIOError, InterruptedError):
            self.send_dropped += 1       # a full socket buffer: like a lost datagram
        except OSError as exc:
            self._on_error(exc)
            return not self.closed
        else:
            self.send_calls += 1
            self.datagrams_sent += 1
        return True

    def _send_run(self, run: list[bytes]) -> bool:
        if self.gso:
            try:
                self.sock.sendmsg(run, [(SOL_UDP, UDP_SEGMENT,
                                         _SEGMENT_CMSG.pack(len(run[0])))])
            except (BlockingIOError, InterruptedError):
                self.send_dropped += len(run)
                return True
            except OSError as exc:
                if exc.errno not in _REFUSES_GSO:
                    self._on_error(exc)
                    return not self.closed
                self.gso = False             # remembered: no GSO on this link again
                self.gso_refused = exc.errno
                log.debug("UDP GSO refused (%s): one send per datagram from now on",
                          exc.strerror or exc)
            else:
                self.send_calls += 1
                self.datagrams_sent += len(run)
                return True
        for datagram in run:
            if not self._send_one(datagram):
                return False
        return True

    # -- the rest ----------------------------------------------------------------------

    def redirect(self, port: int) -> None:
        """Send to (and only take datagrams from) ``port`` of the same peer from now on."""
        self.flush()                         # what is queued was meant for the old port
        self.remote = (self.remote[0], port)
        self.sock.connect(self.remote)

    def stats(self) -> str:
        """One line for the debug log: system calls per datagram each way."""
        gso = "on" if self.gso else ("refused: " + errno.errorcode.get(self.gso_refused, "?")
                                     if self.gso_refused else "off")
        return (f"UDP link: {self.datagrams_received} datagrams in {self.recv_calls} reads "
                f"(GRO {'on' if self.gro else 'off'}), {self.datagrams_sent} out in "
                f"{self.send_calls} sends (GSO {gso})")

    def close(self) -> None:
        if self.closed:
            return
        self.flush()                         # a last EXIT / DELETE still goes out
        if not self.closed:                  # (an error there may have closed it)
            self.closed = True
            if self._flush_handle is not None:
                self._flush_handle.cancel()
                self._flush_handle = None
            self._pending = []
            self.loop.remove_reader(self.sock.fileno())
            log.debug("%s", self.stats())
            self.sock.close()
