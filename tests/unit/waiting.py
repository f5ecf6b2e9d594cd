"""Waiting on conditions in unit tests: bounded, never a fixed sleep."""

from __future__ import annotations

import asyncio


async def until(predicate, timeout: float = 2.0, what: str = "condition") -> None:
    """Wait (at most ``timeout`` seconds) until ``predicate()`` holds, e.g. for datagrams
    sent on the loopback, which the tunnel's reader callback reads, not the test."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def run_timers(stack, now: float = 0.0, *, limit: int = 1000) -> float:
    """Run a sans-IO stack's timers in virtual time until none is left (at most
    ``limit`` deadlines); returns the time of the last one."""
    for _ in range(limit):
        deadline = stack.timer()
        if deadline is None:
            break
        now = deadline
        stack.handle_timer(now)
        stack.output(now)
    return now
