"""Happy Eyeballs version 2 (RFC 8305): which address of a name to try when, for one
connection through a tunnel that may carry both families.  Sans-IO: answers and
results in, with the time; addresses to connect to and the next deadline out.  The
asyncio driver is :meth:`erebus.runtime.expose.forward.Dialer.dial`.

    he = HappyEyeballs(ipv6=True, ipv4=True, now=t)
    he.answer(6, ["2001:2::5"], t)      # the AAAA answer (section 3)
    he.poll(t) -> ["2001:2::5"]         # start connecting to these now
    he.timer() -> t + 0.25              # poll again then (Connection Attempt Delay)
    he.attempt_failed("2001:2::5", exc, t2) / he.attempt_succeeded(addr) -> losers

The rules, with the RFC's sections:

- 3: both queries are sent at once (AAAA first).  A positive AAAA answer starts the
  attempts at once; a positive A answer first waits :data:`RESOLUTION_DELAY` (50 ms)
  for the AAAA answer, then starts with IPv4.  Addresses that arrive later join the
  ones not yet tried.
- 4: the families alternate, IPv6 first (a First Address Family Count of 1); within a
  family the DNS order is kept.  A family's addresses that arrive late come next
  when the last attempt was of the other family.
- 5: one attempt every :data:`CONNECTION_ATTEMPT_DELAY` (250 ms), or at once when
  the latest attempt failed; earlier attempts go on meanwhile.  The first to connect
  wins and the others are aborted (:meth:`attempt_succeeded` names them).
- At most :data:`MAX_ATTEMPTS` addresses are tried for one connection.

The machine ends CONNECTED (``winner``) or FAILED: every address tried and failed, or
the name has no address of a family the tunnel carries (``errors`` and
``query_errors`` say what happened).
"""

from __future__ import annotations

import enum
from collections import deque

__all__ = ["CONNECTION_ATTEMPT_DELAY", "RESOLUTION_DELAY", "MAX_ATTEMPTS", "Phase",
           "HappyEyeballs"]

CONNECTION_ATTEMPT_DELAY = 0.25   # RFC 8305 section 5's recommended default
RESOLUTION_DELAY = 0.05           # section 3's recommended default
MAX_ATTEMPTS = 16                 # addresses tried for one connection, both families


class Phase(enum.Enum):
    RESOLVING = "resolving"       # no attempt started yet
    CONNECTING = "connecting"
    CONNECTED = "connected"
    FAILED = "failed"


class HappyEyeballs:
    """One connection's address selection.  ``ipv6``/``ipv4``: which queries were
    sent (the families the tunnel carries); each must be answered once, by
    :meth:`answer` or :meth:`query_failed`."""

    def __init__(self, *, ipv6: bool, ipv4: bool, now: float,
                 attempt_delay: float = CONNECTION_ATTEMPT_DELAY,
                 resolution_delay: float = RESOLUTION_DELAY,
                 max_attempts: int = MAX_ATTEMPTS):
        self.attempt_delay = attempt_delay
        self.resolution_delay = resolution_delay
        self.max_attempts = max_attempts
        self.started = now
        self.pending: set[int] = {f for f, asked in ((6, ipv6), (4, ipv4)) if asked}
        self.answered: dict[int, list[str]] = {}
        self.remaining: dict[int, deque[str]] = {6: deque(), 4: deque()}
        self.in_flight: list[str] = []
        self.tried: list[str] = []
        self.errors: list[tuple[str, BaseException]] = []         # per failed attempt
        self.query_errors: list[tuple[int, BaseException]] = []   # per failed query
        self.winner: str | None = None
        self.phase = Phase.RESOLVING if self.pending else Phase.FAILED
        self._resolution_deadline: float | None = None
        self._next_attempt: float | None = None
        self._latest: str | None = None
        self._last_family: int | None = None

    # -- inputs ------------------------------------------------------------------------

    def answer(self, family: int, addresses: list[str], now: float) -> None:
        """The AAAA (6) or A (4) answer: possibly no address."""
        if family not in self.pending:
            return                                 # not asked, or answered already
        self.pending.discard(family)
        queue = self.remaining[family]
        fresh = [a for a in dict.fromkeys(addresses) if a not in self.tried and a not in queue]
        self.answered[family] = list(addresses)
        if self.phase in (Phase.RESOLVING, Phase.CONNECTING):
            self.remaining[family].extend(fresh)
        if family == 4 and fresh and 6 in self.pending and \
                self._resolution_deadline is None:
            self._resolution_deadline = now + self.resolution_delay
        self._advance(now)

    def query_failed(self, family: int, error: BaseException, now: float) -> None:
        if family not in self.pending:
            return
        self.pending.discard(family)
        self.query_errors.append((family, error))
        self._advance(now)

    def attempt_failed(self, address: str, error: BaseException, now: float) -> None:
        if address not in self.in_flight:
            return
        self.in_flight.remove(address)
        self.errors.append((address, error))
        if address == self._latest:
            self._next_attempt = now               # section 5: the next one now
        self._advance(now)

    def attempt_succeeded(self, address: str) -> list[str]:
        """The first success wins: the attempts to abort (the others in flight).  A
        later success (two connected at once) is itself a loser: [address]."""
        if self.phase is not Phase.CONNECTING or address not in self.in_flight:
            return [address]
        self.phase = Phase.CONNECTED
        self.winner = address
        losers = [a for a in self.in_flight if a != address]
        self.in_flight = [address]
        for queue in self.remaining.values():
            queue.clear()
        return losers

    # -- outputs -----------------------------------------------------------------------

    def poll(self, now: float) -> list[str]:
        """The addresses to start connecting to now (in this order)."""
        self._advance(now)
        out = []
        while self.phase is Phase.CONNECTING and self._may_start(now):
            address = self._pick()
            self.in_flight.append(address)
            self.tried.append(address)
            self._latest = address
            self._next_attempt = now + self.attempt_delay
            out.append(address)
        self._advance(now)
        return out

    def timer(self) -> float | None:
        """When :meth:`poll` may have something to start (None: only an input can
        change anything)."""
        if self.phase is Phase.RESOLVING:
            return self._resolution_deadline
        if self.phase is Phase.CONNECTING and self._has_remaining() and \
                len(self.tried) < self.max_attempts:
            return self._next_attempt
        return None

    @property
    def done(self) -> bool:
        return self.phase in (Phase.CONNECTED, Phase.FAILED)

    # -- the rules -----------------------------------------------------------------------

    def _has_remaining(self) -> bool:
        return bool(self.remaining[6] or self.remaining[4])

    def _may_start(self, now: float) -> bool:
        if not self._has_remaining() or len(self.tried) >= self.max_attempts:
            return False
        return not self.in_flight or self._next_attempt is None or now >= self._next_attempt

    def _pick(self) -> str:
        """Section 4: alternate the families, IPv6 first."""
        order = (4, 6) if self._last_family == 6 else (6, 4)
        for family in order:
            if self.remaining[family]:
                self._last_family = family
                return self.remaining[family].popleft()
        raise AssertionError("no address to pick")

    def _ready(self, now: float) -> bool:
        """Section 3: may the first attempt start?"""
        if self.remaining[6]:
            return True                            # a positive AAAA answer
        if not self.remaining[4]:
            return False
        if 6 not in self.pending:
            return True                            # AAAA answered (empty) or failed
        return self._resolution_deadline is not None and now >= self._resolution_deadline

    def _advance(self, now: float) -> None:
        if self.phase is Phase.RESOLVING:
            if self._ready(now):
                self.phase = Phase.CONNECTING
                self._next_attempt = now
            elif not self.pending and not self._has_remaining():
                self.phase = Phase.FAILED          # no address of any family we can use
        if self.phase is Phase.CONNECTING and not self.in_flight and (
                len(self.tried) >= self.max_attempts or
                (not self._has_remaining() and not self.pending)):
            self.phase = Phase.FAILED
