"""Reconnecting with backoff: recoverable failures are retried, others raised at once."""

import asyncio

import pytest

from erebus.errors import SessionError
from erebus.runtime import retry


def run(coro):
    return asyncio.run(coro)


def test_retries_recoverable_failures_with_growing_delays(monkeypatch):
    waits = []

    async def fake_sleep(delay):
        waits.append(delay)

    monkeypatch.setattr(retry.asyncio, "sleep", fake_sleep)
    calls = iter([SessionError("unreachable", "x"), SessionError("tls", "y"), "info"])

    async def connect():
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    assert run(retry.with_backoff(connect)) == "info"
    assert waits == [1.0, 2.0]


def test_auth_failure_is_not_retried():
    async def connect():
        raise SessionError("auth", "wrong password")

    with pytest.raises(SessionError, match="wrong password"):
        run(retry.with_backoff(connect))


def test_attempts_and_stop():
    async def connect():
        raise SessionError("unreachable", "nobody home")

    with pytest.raises(SessionError, match="nobody home"):
        run(retry.with_backoff(connect, attempts=1))

    async def stopped():
        stop = asyncio.Event()
        stop.set()
        await retry.with_backoff(connect, stop=stop)

    with pytest.raises(SessionError) as e:
        run(stopped())
    assert e.value.stage == "stopped"
