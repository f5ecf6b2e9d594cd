"""Two user-space stacks joined by a simulated link, in virtual time (test helper)."""

from __future__ import annotations

import heapq
import itertools
import random

from erebus.netstack.stack import NetStack
from erebus.wire.ipv4 import parse_ipv4
from erebus.wire.ipv6 import parse_ipv6
from erebus.wire.tcp import parse_tcp

A_IP = "198.18.10.1"
B_IP = "198.18.10.2"
A_IP6 = "2001:2:0:10::1"
B_IP6 = "2001:2:0:10::2"


def tcp_flags(packets: list[bytes]) -> list[int]:
    """The TCP flags of each IPv4/TCP or IPv6/TCP packet, in order."""
    out = []
    for packet in packets:
        h, payload = parse_ipv6(packet) if packet[0] >> 4 == 6 else parse_ipv4(packet)
        out.append(parse_tcp(payload, h.src, h.dst).flags)
    return out


class Link:
    """Moves packets between two stacks with loss, duplication, reordering and delay."""

    def __init__(self, *, loss=0.0, dup=0.0, reorder=0.0, delay=0.01, jitter=0.0, seed=1,
                 mtu=1500, a_kw=None, b_kw=None, drop=None, ipv6=False):
        self.rng = random.Random(seed)
        six = {"local_ip6": A_IP6} if ipv6 else {}
        self.a = NetStack(A_IP, mtu, rng=self._bytes, **six, **(a_kw or {}))
        six = {"local_ip6": B_IP6} if ipv6 else {}
        self.b = NetStack(B_IP, mtu, rng=self._bytes, **six, **(b_kw or {}))
        self.loss, self.dup, self.reorder = loss, dup, reorder
        self.delay, self.jitter = delay, jitter
        self.drop = drop            # optional predicate(packet, direction) -> bool
        self.now = 0.0
        self._q = []
        self._n = itertools.count()
        self.sent = self.lost = 0

    def _bytes(self, n):
        return self.rng.randbytes(n)

    def _send(self, packets, dst):
        for p in packets:
            self.sent += 1
            if self.drop is not None and self.drop(p, dst):
                self.lost += 1
                continue
            if self.rng.random() < self.loss:
                self.lost += 1
                continue
            copies = 2 if self.rng.random() < self.dup else 1
            for _ in range(copies):
                d = self.delay + self.rng.uniform(-self.jitter, self.jitter)
                if self.rng.random() < self.reorder:
                    d += self.delay * 2
                heapq.heappush(self._q, (self.now + max(d, 0.0), next(self._n), dst, p))

    def flush(self):
        self._send(self.a.output(self.now), self.b)
        self._send(self.b.output(self.now), self.a)

    def step(self, app=None):
        """Advance to the next event (a delivery or a timer); run ``app`` after each."""
        self.flush()
        if app:
            app()
            self.flush()
        candidates = [t for t in (self.a.timer(), self.b.timer()) if t is not None]
        if self._q:
            candidates.append(self._q[0][0])
        if not candidates:
            return False
        self.now = max(self.now, min(candidates))
        while self._q and self._q[0][0] <= self.now:
            _, _, dst, p = heapq.heappop(self._q)
            dst.receive(p, self.now)
        for s in (self.a, self.b):
            t = s.timer()
            if t is not None and t <= self.now:
                s.handle_timer(self.now)
        return True

    def run(self, until, app=None, limit=600.0, max_steps=2_000_000):
        for _ in range(max_steps):
            if until():
                return True
            if self.now > limit or not self.step(app):
                return until()
        return until()
