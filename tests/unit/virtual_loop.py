"""An asyncio event loop in virtual time, and a fake outer link, for tests of the
asyncio glue (the shell, VpnStack) without sockets, root or waiting (test helper).

``VirtualLoop.time()`` is a number that only moves when the loop has nothing ready:
then it jumps to the next scheduled callback.  So ``await asyncio.sleep(30)`` or a
session's 60 s hand-window take no wall time, and a run is exactly repeatable.

:class:`FakeConnector` replaces erebus.runtime.tunnel's DirectConnector: each
endpoint's "server" is a sans-IO peer object (``receive(datagram, now) -> replies``,
optional ``timer()`` / ``handle_timer(now)`` / ``datagrams(now)``) behind a link with
seeded loss and a fixed one-way delay, or a refused port; a name may have several
addresses (IPv4 and IPv6), each with its own peer.
"""

from __future__ import annotations

import asyncio
import errno
import random
import selectors
import socket


SPIN_LIMIT = 20_000        # loop passes without the clock moving: a busy loop


class BusyLoop(AssertionError):
    """Something re-schedules itself forever without time passing (it would burn a
    CPU in real time)."""


class _FastForward(selectors.DefaultSelector):
    """select() never sleeps: with nothing ready it moves the loop's clock instead."""

    def __init__(self):
        super().__init__()
        self.loop: VirtualLoop | None = None
        self._spins = 0

    def select(self, timeout=None):
        events = super().select(0)
        if not events and timeout and self.loop is not None:
            self.loop.advance(timeout)
            self._spins = 0
        elif timeout == 0:
            self._spins += 1
            if self._spins > SPIN_LIMIT:
                raise BusyLoop(f"{SPIN_LIMIT} loop passes at t={self.loop.time():.6f} "
                               "without time passing")
        return events


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self, start: float = 1000.0):
        self._now = start
        selector = _FastForward()
        super().__init__(selector)
        selector.loop = self

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


def run(coro, *, limit: float = 3600.0):
    """Run ``coro`` on a VirtualLoop; fail if it takes more than ``limit`` virtual s."""
    loop = VirtualLoop()
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, limit))
    finally:
        loop.close()


class FakeLink:
    """A connected outer link (what erebus.runtime.tunnel's links offer the shell)."""

    def __init__(self, connector: "FakeConnector", peer, tunnel_in, local, remote, *,
                 on_error=None):
        self.connector, self.peer = connector, peer
        self._deliver = tunnel_in           # (datagram) -> None, then batch end
        self._on_error = on_error           # set: every datagram sent is refused (ICMP)
        self.local, self.remote = local, remote
        self.closed = False
        self.sent: list[bytes] = []
        self._loop = asyncio.get_running_loop()
        self._timer = None
        self._arm()

    # -- what the shell calls ----------------------------------------------------------
    def send(self, datagram: bytes) -> None:
        if self.closed:
            return
        self.sent.append(datagram)
        if self._on_error is not None:
            self._loop.call_later(self.connector.delay, self._refuse)
            return
        if self.connector.lost():
            return
        self._loop.call_later(self.connector.delay, self._to_peer, datagram)

    def _refuse(self) -> None:
        if not self.closed:
            self._on_error(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"))

    def redirect(self, port: int) -> None:
        self.remote = (self.remote[0], port)

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()

    # -- the peer's side ----------------------------------------------------------------
    def _to_peer(self, datagram: bytes) -> None:
        # a datagram sent is on its way, even if the socket closes right after
        replies = self.peer.receive(datagram, self._loop.time()) or []
        if not self.closed:
            self._reply(replies)

    def _reply(self, replies) -> None:
        if hasattr(self.peer, "datagrams"):
            replies = list(replies) + list(self.peer.datagrams(self._loop.time()))
        for reply in replies:
            if not self.connector.lost():
                self._loop.call_later(self.connector.delay, self._from_peer, reply)
        self._arm()

    def _from_peer(self, datagram: bytes) -> None:
        if not self.closed:
            self._deliver(datagram)

    def inject(self, datagram: bytes) -> None:
        """A datagram from the peer's address, now (a forger on the path)."""
        self._from_peer(datagram)

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.peer.timer() if hasattr(self.peer, "timer") else None
        if deadline is not None and not self.closed:
            self._timer = self._loop.call_at(max(deadline, self._loop.time()), self._tick)

    def _tick(self) -> None:
        self._timer = None
        out = []
        if hasattr(self.peer, "handle_timer"):
            out = self.peer.handle_timer(self._loop.time()) or []
        self._reply(out)


class FakeConnector:
    """Endpoints by host name -> a peer factory (``() -> peer``), or "refused"."""

    def __init__(self, peers: dict, *, loss: float = 0.0, delay: float = 0.005,
                 seed: int = 1, addresses: dict[str, list[str]] | None = None):
        self.peers = peers
        self.addresses = addresses or {}
        self.opened: list[tuple] = []        # (host, address) of every link opened
        self.delay = delay
        self.loss = loss
        self.rng = random.Random(seed)
        self.links: list[FakeLink] = []
        self.resolved: list[str] = []
        self.resolve_times: list[float] = []

    def lost(self) -> bool:
        return self.loss > 0 and self.rng.random() < self.loss

    async def resolve(self, endpoint):
        """The endpoint's addresses: one made-up IPv4 address per host, or those of
        ``addresses[host]`` (each may have its own peer in ``peers[address]``), of
        the endpoint's family."""
        self.resolved.append(endpoint.host)
        self.resolve_times.append(asyncio.get_running_loop().time())
        if endpoint.host in self.addresses:
            want = {None: (4, 6), "ipv4": (4,), "ipv6": (6,)}[endpoint.family]
            found = [(a, endpoint.port) for a in self.addresses[endpoint.host]
                     if (6 if ":" in a else 4) in want]
            if not found:
                raise socket.gaierror(socket.EAI_NODATA,
                                      "No address associated with hostname")
            return found
        if endpoint.host not in self.peers:
            raise OSError(errno.ENOENT, f"no such host {endpoint.host}")
        return [(f"198.18.0.{len(self.resolved) % 250 + 1}", endpoint.port)]

    async def open(self, endpoint, addr, on_datagram, on_batch_end, on_error, on_lost,
                   driver=None):
        self.opened.append((endpoint.host, addr[0]))
        peer = self.peers.get(addr[0], self.peers.get(endpoint.host))
        local = ("2001:2:0:1::2" if ":" in addr[0] else "198.19.0.1", 40000 + len(self.links))

        def deliver(datagram: bytes) -> None:
            on_datagram(datagram)
            on_batch_end()

        if peer == "refused":
            link = FakeLink(self, _Silent(), deliver, local, addr, on_error=on_error)
        else:
            link = FakeLink(self, peer() if callable(peer) else peer, deliver, local, addr)
        self.links.append(link)
        return link


class _Silent:
    def receive(self, datagram, now):
        return []


__all__ = ["FakeConnector", "FakeLink", "VirtualLoop", "run"]
