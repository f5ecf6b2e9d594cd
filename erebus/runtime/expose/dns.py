"""Names given to the proxies and forwards are resolved through the VPN, with the DNS
servers the VPN server pushed (``dhcp-option DNS``), never with the host's resolver.

Queries go over UDP through the tunnel (and over TCP through the tunnel when an
answer comes back truncated), with a timeout per try, the pushed servers tried in
turn, and a small cache honouring the records' TTL.  Every lookup ends: a server
that truncates and then closes, answers garbage or never answers over TCP is one
failed try; the callers waiting on the same name all get the same ResolveError.
The cache (:data:`CACHE_SIZE`) and the lookups in progress (:data:`MAX_PENDING`)
are bounded.  IP literals are returned as
they are.  Messages are built and parsed by dnspython.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import struct
import time
from collections import OrderedDict

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

log = logging.getLogger("erebus.dns")

CACHE_SIZE = 512                # names cached (answers and failures); the oldest goes first
MAX_PENDING = 256               # distinct names being looked up at once; more are refused
MAX_TTL = 300.0
NEGATIVE_TTL = 10.0


class ResolveError(OSError):
    """A name that could not be resolved; the message says why."""


def _retrieve(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()


class VpnResolver:
    def __init__(self, vpn, servers: list[str], *, timeout: float = 2.0, attempts: int = 2,
                 clock=time.monotonic):
        self.vpn = vpn
        self.servers = list(servers)
        self.timeout = timeout
        self.attempts = attempts
        self.clock = clock
        self._cache: OrderedDict[str, tuple[float, list[str] | str]] = OrderedDict()
        self._inflight: dict[str, asyncio.Task] = {}       # at most MAX_PENDING
        self.queries = 0
        self.cache_hits = 0
        self.refused = 0

    async def resolve(self, host: str) -> str:
        """One IPv4 address for ``host`` (the first of the answer)."""
        return (await self.resolve_all(host))[0]

    async def resolve_all(self, host: str) -> list[str]:
        try:
            return [str(ipaddress.IPv4Address(host))]
        except ValueError:
            pass
        try:
            ipaddress.IPv6Address(host.strip("[]"))
            raise ResolveError(f"{host}: IPv6 destinations are not supported (the tunnel "
                               "carries IPv4)")
        except ValueError:
            pass
        name = host.rstrip(".").lower()
        if not name or len(name) > 253:
            raise ResolveError(f"{host!r} is not a valid host name")
        hit = self._cache.get(name)
        if hit is not None:
            expires, value = hit
            if expires > self.clock():
                self._cache.move_to_end(name)
                self.cache_hits += 1
                if isinstance(value, str):
                    raise ResolveError(value)
                return value
            del self._cache[name]
        pending = self._inflight.get(name)
        if pending is None:
            if len(self._inflight) >= MAX_PENDING:
                self.refused += 1
                raise ResolveError(f"cannot resolve {name}: {MAX_PENDING} other names are "
                                   "being looked up already")
            # one lookup per name, shared by every caller and not cancelled with any of
            # them; it always ends (every try has a timeout) with addresses or a
            # ResolveError (a bug's own exception, unchanged), and how it ends reaches
            # every caller, so none waits forever
            pending = asyncio.get_running_loop().create_task(self._shared_lookup(name))
            pending.add_done_callback(_retrieve)       # also when every caller gave up
            self._inflight[name] = pending
        return await asyncio.shield(pending)

    async def _shared_lookup(self, name: str) -> list[str]:
        """:meth:`_lookup` maps what a server can do wrong to ResolveError; anything
        else is a bug and goes to the callers as it is, not disguised as a DNS failure."""
        try:
            return await self._lookup(name)
        finally:
            del self._inflight[name]

    async def _lookup(self, name: str) -> list[str]:
        if not self.servers:
            raise ResolveError(f"cannot resolve {name}: the VPN server pushed no DNS server "
                               "(dhcp-option DNS); use an IP address")
        failures = []
        for attempt in range(self.attempts):
            for server in self.servers:
                try:
                    return self._answer(name, await self._query(name, server))
                except (asyncio.TimeoutError, TimeoutError):
                    failures.append(f"{server}: no answer in {self.timeout:g} s")
                except (dns.exception.DNSException, ValueError) as exc:
                    failures.append(f"{server}: bad answer ({exc})")
                except ResolveError:
                    raise
                except asyncio.IncompleteReadError:
                    failures.append(f"{server}: closed the TCP connection before the "
                                    "whole answer (it was truncated over UDP)")
                except OSError as exc:
                    failures.append(f"{server}: {exc or type(exc).__name__}")
        raise ResolveError(f"cannot resolve {name}: " + "; ".join(dict.fromkeys(failures)))

    async def _query(self, name: str, server: str) -> dns.message.Message:
        self.queries += 1
        query = dns.message.make_query(name, dns.rdatatype.A)
        wire = query.to_wire()
        raw = await self.vpn.udp_exchange(wire, server, 53, timeout=self.timeout,
                                          accept=lambda data: data[:2] == wire[:2])
        response = dns.message.from_wire(raw)
        if not query.is_response(response):
            raise ValueError("answer does not match the query")
        if response.flags & dns.flags.TC:
            response = await self._query_tcp(query, server)
        return response

    async def _query_tcp(self, query: dns.message.Message, server: str):
        wire = query.to_wire()
        reader, writer = await self.vpn.open_connection(server, 53, timeout=self.timeout)
        try:
            writer.write(struct.pack("!H", len(wire)) + wire)
            async with asyncio.timeout(self.timeout):     # the whole answer, not per read
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                raw = await reader.readexactly(length)
        finally:
            writer.close()
        response = dns.message.from_wire(raw)
        if not query.is_response(response):
            raise ValueError("answer over TCP does not match the query")
        return response

    def _answer(self, name: str, response: dns.message.Message) -> list[str]:
        rcode = response.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            self._store(name, NEGATIVE_TTL, f"cannot resolve {name}: no such name")
            raise ResolveError(f"cannot resolve {name}: no such name")
        if rcode != dns.rcode.NOERROR:
            raise ResolveError(f"cannot resolve {name}: the DNS server answered "
                               f"{dns.rcode.to_text(rcode)}")
        try:
            chain = response.resolve_chaining()
        except dns.exception.DNSException as exc:
            raise ResolveError(f"cannot resolve {name}: {exc}") from None
        rrset = chain.answer
        addresses = [r.address for r in rrset] if rrset is not None else []
        if not addresses:
            self._store(name, NEGATIVE_TTL, f"cannot resolve {name}: no IPv4 address")
            raise ResolveError(f"cannot resolve {name}: no IPv4 address (A record)")
        self._store(name, min(float(chain.minimum_ttl), MAX_TTL), addresses)
        log.debug("%s -> %s", name, ", ".join(addresses))
        return addresses

    def _store(self, name: str, ttl: float, value) -> None:
        self._cache[name] = (self.clock() + ttl, value)
        self._cache.move_to_end(name)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
