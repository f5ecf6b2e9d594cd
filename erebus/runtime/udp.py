"""A connected, non-blocking UDP socket read in batches: every wake-up drains up to
BATCH datagrams before the owner flushes, so one burst of packets costs one pass of
timers, ACKs and writes instead of one per packet.  Shared by every VPN family."""

from __future__ import annotations

import asyncio
import socket
from typing import Callable


class BatchedUdpLink:
    BATCH = 64
    BUFFER = 4 << 20          # asked for; the kernel caps it at net.core.[rw]mem_max

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop, *,
                 on_datagram: Callable[[bytes], None],
                 on_error: Callable[[Exception], None],
                 on_batch_end: Callable[[], None] | None = None):
        self.sock = sock
        self.loop = loop
        self._on_datagram = on_datagram
        self._on_error = on_error
        self._on_batch_end = on_batch_end
        self.closed = False
        self.send_dropped = 0
        self.local = self.remote = ("0.0.0.0", 0)     # set by whoever connected the socket
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, self.BUFFER)
            except OSError:
                pass
        loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        recv = self.sock.recv
        on_datagram = self._on_datagram
        got = 0
        for _ in range(self.BATCH):
            try:
                data = recv(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._on_error(exc)
                break
            got += 1
            on_datagram(data)
            if self.closed:
                return
        if got and self._on_batch_end is not None:
            self._on_batch_end()

    def redirect(self, port: int) -> None:
        """Send to (and only take datagrams from) ``port`` of the same peer from now on."""
        self.remote = (self.remote[0], port)
        self.sock.connect(self.remote)

    def send(self, datagram: bytes) -> None:
        if self.closed:
            return
        try:
            self.sock.send(datagram)
        except (BlockingIOError, InterruptedError):
            self.send_dropped += 1       # a full socket buffer: like a lost datagram
        except OSError as exc:
            self._on_error(exc)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
