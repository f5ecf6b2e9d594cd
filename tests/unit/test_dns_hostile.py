"""The resolver against a hostile or broken DNS server behind a fake tunnel: it answers
truncated (TC) over UDP and then, over TCP, closes, answers garbage, cuts the answer
short or never answers.  Every lookup ends with a clear ResolveError, also for the
callers waiting on the same name; the tables a local client can grow are bounded."""

from __future__ import annotations

import asyncio

import dns.flags
import dns.message
import pytest

from erebus.runtime.expose import dns as vpndns
from erebus.runtime.expose.dns import MAX_PENDING, ResolveError, VpnResolver

SERVER = "198.18.2.53"


class Writer:
    def __init__(self):
        self.data = b""
        self.closed = False

    def write(self, data):
        self.data += data

    def close(self):
        self.closed = True


class TruncatingVpn:
    """UDP: a truncated (TC) answer to everything.  TCP: ``behaviour``."""

    def __init__(self, behaviour: str):
        self.behaviour = behaviour
        self.tcp = 0
        self.writers = []

    async def udp_exchange(self, payload, host, port, *, timeout, accept=None):
        query = dns.message.from_wire(payload)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.TC
        wire = response.to_wire()
        assert accept is None or accept(wire)
        return wire

    async def open_connection(self, host, port, *, timeout=None):
        self.tcp += 1
        if self.behaviour == "refuse":
            raise ConnectionRefusedError("connection refused")
        if self.behaviour == "connect-timeout":
            raise asyncio.TimeoutError
        reader = asyncio.StreamReader()
        if self.behaviour == "close":
            reader.feed_eof()
        elif self.behaviour == "garbage":
            reader.feed_data(b"\x00\x20" + b"\xff" * 32)
        elif self.behaviour == "short":
            reader.feed_data(b"\x01\x00" + b"\x00" * 10)
            reader.feed_eof()
        elif self.behaviour == "drip":                 # one byte, then nothing, forever
            reader.feed_data(b"\x01")
        # "silent": nothing at all, connection left open
        writer = Writer()
        self.writers.append(writer)
        return reader, writer


REASONS = {
    "close": "closed the TCP connection before the whole answer",
    "short": "closed the TCP connection before the whole answer",
    "garbage": "bad answer",
    "silent": "no answer in 0.2 s",
    "drip": "no answer in 0.2 s",
    "refuse": "connection refused",
    "connect-timeout": "no answer in 0.2 s",
}


@pytest.mark.parametrize("behaviour", sorted(REASONS))
def test_truncated_then_broken_tcp_fails_every_waiter(behaviour):
    vpn = TruncatingVpn(behaviour)
    resolver = VpnResolver(vpn, [SERVER], timeout=0.2, attempts=2)

    async def go():
        waiters = [asyncio.ensure_future(resolver.resolve("web.lab.test")) for _ in range(3)]
        waiters.append(asyncio.ensure_future(resolver.resolve("other.lab.test")))
        done, pending = await asyncio.wait(waiters, timeout=10)
        assert not pending, "a lookup hung"
        for w in done:
            exc = w.exception()
            assert isinstance(exc, ResolveError), repr(exc)
            assert str(exc).startswith("cannot resolve ")
            assert f"{SERVER}: {REASONS[behaviour]}" in str(exc), str(exc)
        assert resolver._inflight == {}
    asyncio.run(go())
    assert vpn.tcp == 2 * 2                 # two names, two attempts each: one lookup per name
    assert all(w.closed for w in vpn.writers)


def test_a_cancelled_caller_does_not_cancel_the_others():
    class SlowVpn(TruncatingVpn):
        async def udp_exchange(self, payload, host, port, *, timeout, accept=None):
            await asyncio.sleep(0.05)
            return await super().udp_exchange(payload, host, port, timeout=timeout,
                                              accept=accept)

    resolver = VpnResolver(SlowVpn("close"), [SERVER], timeout=0.2, attempts=1)

    async def go():
        first = asyncio.ensure_future(resolver.resolve("web.lab.test"))
        second = asyncio.ensure_future(resolver.resolve("web.lab.test"))
        await asyncio.sleep(0)
        first.cancel()
        with pytest.raises(ResolveError, match="closed the TCP connection"):
            await asyncio.wait_for(second, 5)
        assert first.cancelled()
    asyncio.run(go())


def test_an_internal_error_in_a_lookup_reaches_every_waiter():
    """A bug (here a RuntimeError) is not disguised as a DNS failure: every caller
    waiting on the name gets it as it is, none hangs, and the name can be asked again."""
    class BrokenVpn(TruncatingVpn):
        async def udp_exchange(self, *args, **kwargs):
            await asyncio.sleep(0.01)
            raise RuntimeError("boom")

    resolver = VpnResolver(BrokenVpn("close"), [SERVER], timeout=0.2)

    async def go():
        waiters = [asyncio.ensure_future(resolver.resolve("web.lab.test")) for _ in range(2)]
        done, pending = await asyncio.wait(waiters, timeout=5)
        assert not pending
        for w in done:
            exc = w.exception()
            assert type(exc) is RuntimeError and str(exc) == "boom", repr(exc)
        assert resolver._inflight == {}
    asyncio.run(go())


def test_pending_lookups_are_bounded():
    """A local client asking for many names at once cannot grow the table of lookups
    in progress past MAX_PENDING; the rest fail at once."""
    class NeverVpn(TruncatingVpn):
        def __init__(self):
            super().__init__("silent")
            self.release = asyncio.Event()
            self.asking = 0
            self.all_asking = asyncio.Event()

        async def udp_exchange(self, *args, **kwargs):
            self.asking += 1
            if self.asking == MAX_PENDING:
                self.all_asking.set()
            await self.release.wait()
            raise asyncio.TimeoutError

    async def go():
        vpn = NeverVpn()
        resolver = VpnResolver(vpn, [SERVER], timeout=0.2, attempts=1)
        waiters = [asyncio.ensure_future(resolver.resolve(f"n{i}.lab.test"))
                   for i in range(MAX_PENDING + 50)]
        # every lookup let in is waiting for its server; the refusals came before any
        # of them could start (a refused caller fails without waiting for anything)
        await asyncio.wait_for(vpn.all_asking.wait(), 5)
        assert len(resolver._inflight) == MAX_PENDING and vpn.asking == MAX_PENDING
        refused = [w for w in waiters if w.done()]
        assert len(refused) == 50 and resolver.refused == 50
        assert all("being looked up already" in str(w.exception()) for w in refused)
        vpn.release.set()
        done, pending = await asyncio.wait(waiters, timeout=5)
        assert not pending and resolver._inflight == {}
    asyncio.run(go())


def test_cache_is_bounded():
    class AnsweringVpn:
        async def udp_exchange(self, payload, host, port, *, timeout, accept=None):
            query = dns.message.from_wire(payload)
            response = dns.message.make_response(query)
            name = query.question[0].name
            response.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "198.18.2.2"))
            return response.to_wire()

    import dns.rrset  # noqa: F401
    resolver = VpnResolver(AnsweringVpn(), [SERVER])

    async def go():
        for i in range(vpndns.CACHE_SIZE + 100):
            await resolver.resolve(f"n{i}.lab.test")
    asyncio.run(go())
    assert len(resolver._cache) == vpndns.CACHE_SIZE
    assert ("n0.lab.test", "A") not in resolver._cache and \
        (f"n{vpndns.CACHE_SIZE + 99}.lab.test", "A") in resolver._cache
