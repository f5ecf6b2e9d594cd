"""Names given to the proxies and forwards are resolved through the VPN, with the DNS
servers the VPN server pushed (``dhcp-option DNS``/``DNS6``, IKEv2's INTERNAL_IP4_DNS
and INTERNAL_IP6_DNS), never with the host's resolver.

A name is asked for the address families the tunnel carries: A when it has an IPv4
address, AAAA when it has an IPv6 one (both at once when it has both), so an answer
the tunnel could not reach is never used.  Queries go over UDP through the tunnel (and
over TCP through the tunnel when an answer comes back truncated), to the pushed
servers the tunnel can reach (an IPv6 server only with IPv6 in the tunnel), with a
timeout per try, the servers tried in turn, and a small cache per (name, type)
honouring the records' TTL.  Every lookup ends: a server that truncates and then
closes, answers garbage or never answers over TCP is one failed try; the callers
waiting on the same name and type all get the same ResolveError.  The cache
(:data:`CACHE_SIZE`) and the lookups in progress (:data:`MAX_PENDING`) are bounded.
IP literals are returned as they are (whether the tunnel reaches them is the dialer's
business).  Messages are built and parsed by dnspython.

:meth:`VpnResolver.lookup` is one type's answer (what Happy Eyeballs,
:mod:`erebus.runtime.expose.eyeballs`, starts both of); :meth:`VpnResolver.resolve_all`
both families' addresses, interleaved IPv6 first (RFC 8305 section 4).
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

from .hostport import ip_family, tunnel_families

log = logging.getLogger("erebus.dns")

CACHE_SIZE = 512                # (name, type) answers and failures; the oldest goes first
MAX_PENDING = 256               # (name, type) lookups at once; more are refused
MAX_TTL = 300.0
NEGATIVE_TTL = 10.0
MAX_ADDRESSES = 16              # addresses of one type kept from an answer

A, AAAA = "A", "AAAA"
_RDTYPE = {A: dns.rdatatype.A, AAAA: dns.rdatatype.AAAA}
_FAMILY = {A: 4, AAAA: 6}
_WHAT = {A: "no IPv4 address (A record)", AAAA: "no IPv6 address (AAAA record)",
         None: "no IPv4 or IPv6 address (A or AAAA record)"}


class ResolveError(OSError):
    """A name that could not be resolved; the message says why."""


def _retrieve(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()


def interleave(v6: list[str], v4: list[str]) -> list[str]:
    """RFC 8305 section 4 with a First Address Family Count of 1: IPv6, IPv4, IPv6 ..."""
    out: list[str] = []
    for i in range(max(len(v6), len(v4))):
        out += v6[i:i + 1] + v4[i:i + 1]
    return out


class VpnResolver:
    def __init__(self, vpn, servers: list[str], *, timeout: float = 2.0, attempts: int = 2,
                 clock=time.monotonic):
        self.vpn = vpn
        self.servers = list(servers)
        self.timeout = timeout
        self.attempts = attempts
        self.clock = clock
        # (name, "A"/"AAAA") -> (expires, addresses or the error's message)
        self._cache: OrderedDict[tuple[str, str], tuple[float, list[str] | str]] = \
            OrderedDict()
        self._inflight: dict[tuple[str, str], asyncio.Task] = {}    # at most MAX_PENDING
        self.queries = 0
        self.cache_hits = 0
        self.refused = 0

    # -- what the callers use ----------------------------------------------------------

    def types(self) -> tuple[str, ...]:
        """The record types worth asking for: the families the tunnel carries, AAAA
        first (RFC 8305 section 3)."""
        has4, has6 = tunnel_families(self.vpn)
        return ((AAAA,) if has6 else ()) + ((A,) if has4 else ())

    async def resolve(self, host: str) -> str:
        """One address for ``host``: the first of :meth:`resolve_all` (IPv6 when the
        tunnel has both families and the name has both)."""
        return (await self.resolve_all(host))[0]

    async def resolve_all(self, host: str) -> list[str]:
        """The addresses of ``host`` the tunnel can reach, interleaved IPv6 first; an
        IP literal as it is.  ResolveError when there are none, saying why."""
        literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if ip_family(literal) is not None:
            return [str(ipaddress.ip_address(literal))]
        name = self.check_name(host)
        types = self.types()
        results = await asyncio.gather(*(self.lookup(name, t) for t in types),
                                       return_exceptions=True)
        found: dict[str, list[str]] = {}
        errors: list[BaseException] = []
        for rtype, result in zip(types, results):
            if isinstance(result, BaseException):
                if not isinstance(result, ResolveError):
                    raise result                 # a bug, as it is
                errors.append(result)
            else:
                found[rtype] = result
        addresses = interleave(found.get(AAAA, []), found.get(A, []))
        if addresses:
            return addresses
        if errors:
            prefix = f"cannot resolve {name}: "
            why = dict.fromkeys(str(e).removeprefix(prefix) for e in errors)
            raise errors[0] if len(why) == 1 else ResolveError(prefix + "; ".join(why))
        raise ResolveError(self.nothing(name))

    def nothing(self, name: str) -> str:
        """The message for a name with no address of the families the tunnel has."""
        types = self.types()
        if not types:
            return f"cannot resolve {name}: the tunnel has no address of either family"
        return f"cannot resolve {name}: {_WHAT[types[0] if len(types) == 1 else None]}"

    @staticmethod
    def check_name(host: str) -> str:
        """``host`` as a name to look up (lower case, no trailing dot); ResolveError
        for one DNS cannot hold."""
        name = host.rstrip(".").lower()
        if not name or len(name) > 253:
            raise ResolveError(f"{host!r} is not a valid host name")
        return name

    async def lookup(self, name: str, rtype: str) -> list[str]:
        """The ``rtype`` ("A" or "AAAA") addresses of ``name`` (a :meth:`check_name`
        result): possibly none (the name exists without such records); ResolveError
        for no such name or no usable answer.  Cached; one lookup per (name, type)
        shared by every caller."""
        key = (name, rtype)
        hit = self._cache.get(key)
        if hit is not None:
            expires, value = hit
            if expires > self.clock():
                self._cache.move_to_end(key)
                self.cache_hits += 1
                if isinstance(value, str):
                    raise ResolveError(value)
                return value
            del self._cache[key]
        pending = self._inflight.get(key)
        if pending is None:
            if len(self._inflight) >= MAX_PENDING:
                self.refused += 1
                raise ResolveError(f"cannot resolve {name}: {MAX_PENDING} other names are "
                                   "being looked up already")
            # one lookup per name and type, shared by every caller and not cancelled
            # with any of them; it always ends (every try has a timeout) with addresses
            # or a ResolveError (a bug's own exception, unchanged), and how it ends
            # reaches every caller, so none waits forever
            pending = asyncio.get_running_loop().create_task(self._shared_lookup(key))
            pending.add_done_callback(_retrieve)       # also when every caller gave up
            self._inflight[key] = pending
        return await asyncio.shield(pending)

    # -- the lookup ----------------------------------------------------------------------

    async def _shared_lookup(self, key: tuple[str, str]) -> list[str]:
        """:meth:`_lookup` maps what a server can do wrong to ResolveError; anything
        else is a bug and goes to the callers as it is, not disguised as a DNS failure."""
        try:
            return await self._lookup(*key)
        finally:
            del self._inflight[key]

    def _reachable(self) -> tuple[list[str], list[str]]:
        """The pushed servers the tunnel can reach, and the others."""
        has4, has6 = tunnel_families(self.vpn)
        usable, other = [], []
        for server in self.servers:
            family = ip_family(server)
            (usable if (family == 6 and has6) or (family == 4 and has4) else other).append(
                server)
        return usable, other

    async def _lookup(self, name: str, rtype: str) -> list[str]:
        if not self.servers:
            raise ResolveError(f"cannot resolve {name}: the VPN server pushed no DNS server "
                               "(dhcp-option DNS); use an IP address")
        servers, unreachable = self._reachable()
        if not servers:
            raise ResolveError(f"cannot resolve {name}: the tunnel cannot reach the DNS "
                               f"server(s) the VPN server pushed ({', '.join(unreachable)}: "
                               "a family the tunnel has no address of); use an IP address")
        failures = []
        for attempt in range(self.attempts):
            for server in servers:
                try:
                    return self._answer(name, rtype, await self._query(name, rtype, server))
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

    async def _query(self, name: str, rtype: str, server: str) -> dns.message.Message:
        self.queries += 1
        query = dns.message.make_query(name, _RDTYPE[rtype])
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

    def _answer(self, name: str, rtype: str, response: dns.message.Message) -> list[str]:
        key = (name, rtype)
        rcode = response.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            self._store(key, NEGATIVE_TTL, f"cannot resolve {name}: no such name")
            raise ResolveError(f"cannot resolve {name}: no such name")
        if rcode != dns.rcode.NOERROR:
            raise ResolveError(f"cannot resolve {name}: the DNS server answered "
                               f"{dns.rcode.to_text(rcode)}")
        try:
            chain = response.resolve_chaining()
        except dns.exception.DNSException as exc:
            raise ResolveError(f"cannot resolve {name}: {exc}") from None
        rrset = chain.answer
        addresses = []
        for record in rrset if rrset is not None else ():
            address = str(record.address)
            if ip_family(address) == _FAMILY[rtype] and address not in addresses:
                addresses.append(address)
            if len(addresses) >= MAX_ADDRESSES:
                break
        if not addresses:
            self._store(key, NEGATIVE_TTL, [])          # the name has no such record
            return []
        self._store(key, min(float(chain.minimum_ttl), MAX_TTL), addresses)
        log.debug("%s %s -> %s", name, rtype, ", ".join(addresses))
        return addresses

    def _store(self, key: tuple[str, str], ttl: float, value) -> None:
        self._cache[key] = (self.clock() + ttl, value)
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
