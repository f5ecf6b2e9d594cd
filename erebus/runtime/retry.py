"""Connecting again after a session ended, the same way for every VPN family; how long
to wait between tries is the family's :class:`RetryPolicy` (OpenVPN's from the profile's
``connect-retry``, as the stock client waits)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable

from ..errors import SessionError
from ..session import Stage

log = logging.getLogger("erebus.tunnel")

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Wait ``first`` seconds before each of the first ``steady`` retries, then twice as
    long each time, never more than ``cap``.  OpenVPN 2.6's ``connect-retry n [max]``
    is RetryPolicy(n, max, 5) (init.c: slowed down after 5 retries per remote); the
    default, for IPsec, doubles from the start: 1, 2, 4 ... 60 s."""

    first: float = BACKOFF_FIRST
    cap: float = BACKOFF_MAX
    steady: int = 0

    def delay(self, retry: int) -> float:
        """The wait before retry number ``retry`` (1, 2, ...)."""
        doublings = max(0, retry - self.steady - (0 if self.steady else 1))
        return min(max(self.first, 0.0) * 2 ** min(doublings, 30), self.cap)


async def with_backoff(connect: Callable[[], Awaitable], *, attempts: int | None = None,
                       stop: asyncio.Event | None = None,
                       policy: RetryPolicy | Callable[[], RetryPolicy] = RetryPolicy()):
    """``await connect()`` until it succeeds, waiting as ``policy`` says between tries
    (default 1, 2, 4 ... 60 s; a callable is asked after each failure: the policy of
    what failed last).  A failure that is not ``recoverable``
    (authentication, a certificate, an expired manual SA ...) is raised at once; so is
    the last one after ``attempts`` tries; ``stop`` set while waiting ends it with
    SessionError("stopped")."""
    tries = 0
    while True:
        tries += 1
        try:
            return await connect()
        except SessionError as exc:
            if not exc.recoverable or (attempts and tries >= attempts):
                raise
            delay = (policy() if callable(policy) else policy).delay(tries)
            log.warning("reconnect failed (%s); next try in %.0f s", exc, delay)
        if stop is not None:
            try:
                await asyncio.wait_for(stop.wait(), delay)
                raise SessionError(Stage.STOPPED, "stopped while reconnecting")
            except asyncio.TimeoutError:
                pass
        else:
            await asyncio.sleep(delay)
