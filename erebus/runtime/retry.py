"""Connecting again after a session ended, the same way for every VPN family."""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from ..errors import SessionError
from ..session import Stage

log = logging.getLogger("erebus.tunnel")

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0


async def with_backoff(connect: Callable[[], Awaitable], *, attempts: int | None = None,
                       stop: asyncio.Event | None = None):
    """``await connect()`` until it succeeds, waiting 1, 2, 4 ... 60 s between tries.
    A failure that is not ``recoverable`` (authentication, a certificate, an expired
    manual SA ...) is raised at once; so is the last one after ``attempts`` tries;
    ``stop`` set while waiting ends it with SessionError("stopped")."""
    delay, tries = BACKOFF_FIRST, 0
    while True:
        tries += 1
        try:
            return await connect()
        except SessionError as exc:
            if not exc.recoverable or (attempts and tries >= attempts):
                raise
            log.warning("reconnect failed (%s); next try in %.0f s", exc, delay)
        if stop is not None:
            try:
                await asyncio.wait_for(stop.wait(), delay)
                raise SessionError(Stage.STOPPED, "stopped while reconnecting")
            except asyncio.TimeoutError:
                pass
        else:
            await asyncio.sleep(delay)
        delay = min(delay * 2, BACKOFF_MAX)
