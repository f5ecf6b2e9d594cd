"""SOCKS5 UDP ASSOCIATE (RFC 1928 section 7): a UDP relay between one local client and
the VPN.

Each association is two UDP sockets: the relay, bound on the local address the
client reached the SOCKS listener at (an ephemeral port, named in the reply), and a
socket on the virtual IP (:meth:`erebus.runtime.stack.VpnStack.create_datagram_endpoint`).
A datagram from the client carries its destination in the header (an IPv4 or IPv6
address, or a name, resolved through the VPN's DNS to the families the tunnel carries,
IPv6 first, with a small cache of our own in front); the header is removed and the
rest goes through the tunnel.  A datagram from the VPN goes back to the client behind a
header naming its sender (ATYP 1 or 4 by its family).

Who may use the relay: only the client's IP address (its TCP control connection's
peer), and only its port: the one named in the request (DST.PORT), or, if that is 0
(the client does not know it yet, as RFC 1928 allows), the source port of the first
datagram from that address.  Everything else is dropped and counted, like fragments
(FRAG != 0: not reassembled, as most servers and OpenVPN 2.6's client do), malformed
headers, destinations of a family the tunnel has no address of, and datagrams too big
for the tunnel (its MTU less 28 bytes of headers for IPv4, 48 for IPv6).  The
association ends with its TCP control connection, or after
:data:`IDLE_TIMEOUT` seconds without a datagram either way (then the control
connection is closed too).  Every queue is bounded where it is declared.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import OrderedDict, deque
from dataclasses import dataclass

from ...counters import CountersDict
from ...errors import ParseError
from ...wire.socks5 import ATYP_DOMAIN, add_udp_header, parse_udp_request
from .hostport import hostport, tunnel_families, unmapped

log = logging.getLogger("erebus.socks")

MAX_ASSOCIATIONS = 64        # per SOCKS server; one more is answered "general failure"
IDLE_TIMEOUT = 300.0         # s without a datagram either way: the association ends
MAX_UNRESOLVED = 64          # datagrams waiting for their destination's name, per association
MAX_LOOKUPS = 8              # names being resolved at once, per association
NAME_CACHE_SIZE = 64         # names remembered per SOCKS server (the resolver has its own)
NAME_CACHE_TTL = 30.0        # s a name is remembered (the resolver honours the DNS TTL)
RELAY_BUFFER_LIMIT = 256 * 1024    # bytes asyncio may hold towards a slow local client


@dataclass(slots=True)
class UdpCounters(CountersDict):
    """What the UDP relays of one SOCKS server did (the log line at exit shows them
    with a ``udp_`` prefix)."""

    associations: int = 0        # granted
    refused: int = 0             # beyond MAX_ASSOCIATIONS, or no socket could be opened
    datagrams_out: int = 0       # client -> VPN
    datagrams_in: int = 0        # VPN -> client
    strangers: int = 0           # to the relay from another address or port than the client
    fragments: int = 0           # FRAG != 0
    malformed: int = 0           # short header, unknown address type, port 0, bad name
    unsupported_address: int = 0  # of a family the tunnel has no address of
    oversize: int = 0            # do not fit the tunnel's MTU
    unresolved: int = 0          # to a name the VPN's DNS did not resolve
    queue_overflow: int = 0      # beyond a bounded queue (names pending, towards the client)
    undeliverable: int = 0       # from the VPN before the client's port was known
    icmp_errors: int = 0         # ICMP errors from the VPN about what we sent
    idle_closed: int = 0         # associations ended by IDLE_TIMEOUT
    errors: int = 0              # internal errors (a bug), the datagram dropped


def max_payload(vpn, endpoint, ip: str) -> int:
    """The largest datagram to ``ip`` the tunnel takes: the stack's figure for the
    family (``udp_max_payload``), else the endpoint's IPv4 one (MTU less 28 bytes) less
    20 bytes for IPv6's larger header."""
    figure = getattr(getattr(vpn, "stack", None), "udp_max_payload", None)
    if figure is not None:
        return figure(":" in ip)
    return endpoint.max_payload - (20 if ":" in ip else 0)


class NameCache:
    """Name -> address for :data:`NAME_CACHE_TTL` s, at most ``size`` names (the
    least recently used goes first), so that a stream of datagrams to one name does
    not start a lookup each."""

    def __init__(self, clock, *, size: int = NAME_CACHE_SIZE, ttl: float = NAME_CACHE_TTL):
        self.clock, self.size, self.ttl = clock, size, ttl
        self._names: OrderedDict[str, tuple[float, str]] = OrderedDict()

    def get(self, name: str) -> str | None:
        hit = self._names.get(name)
        if hit is None:
            return None
        if hit[0] <= self.clock():
            del self._names[name]
            return None
        self._names.move_to_end(name)
        return hit[1]

    def put(self, name: str, address: str) -> None:
        self._names[name] = (self.clock() + self.ttl, address)
        self._names.move_to_end(name)
        while len(self._names) > self.size:
            self._names.popitem(last=False)

    def __len__(self) -> int:
        return len(self._names)


class _Side(asyncio.DatagramProtocol):
    """The protocol of one of an association's two sockets (``relay``: the local one)."""

    def __init__(self, association: "UdpAssociation", on_datagram, *, relay: bool):
        self.association = association
        self.on_datagram = on_datagram
        self.relay = relay

    def datagram_received(self, data, addr) -> None:
        try:
            self.on_datagram(data, addr)
        except Exception:                          # noqa: BLE001 - never let one datagram crash
            self.association.counters.errors += 1
            log.exception("SOCKS UDP: dropped a datagram after an internal error")

    def error_received(self, exc) -> None:
        self.association.error_received(self, exc)

    def connection_lost(self, exc) -> None:
        self.association.close()


class UdpAssociation:
    """One UDP ASSOCIATE: ``control`` is its TCP connection (closed when the
    association ends), ``client`` the client's (IP, port or 0)."""

    def __init__(self, server, control: asyncio.Transport, client: tuple[str, int]):
        self.server = server
        self.counters: UdpCounters = server.udp_counters
        self.control = control
        self.client_ip = unmapped(client[0])
        self.client_port = client[1]              # 0: the first datagram's source port
        self.client_addr = None                   # where replies go, once known
        self.relay: asyncio.DatagramTransport | None = None
        self.vpn_side = None
        self.loop = asyncio.get_running_loop()
        self.last_active = self.loop.time()
        self._idle: asyncio.TimerHandle | None = None
        self._waiting: dict[str, deque] = {}     # name -> (data, port), MAX_UNRESOLVED in all
        self._waiting_count = 0
        self._lookups: set[asyncio.Task] = set()
        self.closed = False

    async def open(self, local_ip: str) -> tuple[str, int]:
        """Bind both sockets; the relay's (address, port) for the reply.  OSError if
        either cannot be opened (nothing is left open then)."""
        vpn = self.server.dialer.vpn
        try:
            self.vpn_side, _ = await vpn.create_datagram_endpoint(
                lambda: _Side(self, self._from_vpn, relay=False))
            opener = self.server.udp_endpoint or self.loop.create_datagram_endpoint
            self.relay, _ = await opener(
                lambda: _Side(self, self._from_client, relay=True), local_addr=(local_ip, 0))
        except BaseException:
            self._release()              # the control connection stays: it gets the reply
            raise
        self._idle = self.loop.call_later(IDLE_TIMEOUT, self._check_idle)
        return self.relay.get_extra_info("sockname")[:2]

    # -- client -> VPN ------------------------------------------------------------------

    def _from_client(self, data: bytes, addr) -> None:
        c = self.counters
        if self.closed:
            return
        if not self._is_client(addr):
            c.strangers += 1
            self.server.drops.log(logging.INFO, "stranger",
                                  f"SOCKS UDP: dropped a datagram from {addr[0]}:{addr[1]}, "
                                  "not the client of the association")
            return
        try:
            req = parse_udp_request(data)
        except ParseError as exc:
            c.malformed += 1
            self.server.drops.log(logging.DEBUG, "malformed", f"SOCKS UDP: dropped: {exc}")
            return
        if req.frag != 0:
            c.fragments += 1
            self.server.drops.log(logging.DEBUG, "fragment", "SOCKS UDP: dropped a fragment "
                                  f"(FRAG {req.frag}): fragments are not reassembled")
            return
        if req.atyp != ATYP_DOMAIN and not self._reachable(req.host):
            return
        if req.port == 0:
            c.malformed += 1
            self.server.drops.log(logging.DEBUG, "port0", "SOCKS UDP: dropped a datagram "
                                  "to port 0")
            return
        self.last_active = self.loop.time()
        if req.atyp == ATYP_DOMAIN:
            self._to_name(req.host.rstrip(".").lower(), req.port, req.data)
        else:
            self._send(req.data, req.host, req.port)

    def _reachable(self, ip: str) -> bool:
        """Whether the tunnel has an address of ``ip``'s family (dropped and counted
        if not)."""
        has4, has6 = tunnel_families(self.server.dialer.vpn)
        v6 = ":" in ip
        if has6 if v6 else has4:
            return True
        family = "IPv6" if v6 else "IPv4"
        self.counters.unsupported_address += 1
        self.server.drops.log(logging.INFO, family, f"SOCKS UDP: dropped a datagram to "
                              f"{ip}: the tunnel has no {family} address")
        return False

    def _is_client(self, addr) -> bool:
        try:
            ip = unmapped(addr[0])
        except ValueError:
            return False
        if ip != self.client_ip:
            return False
        if self.client_addr is not None:
            return addr[1] == self.client_addr[1]
        if self.client_port and addr[1] != self.client_port:
            return False
        self.client_addr = (addr[0], addr[1])
        return True

    def _send(self, data: bytes, ip: str, port: int) -> None:
        limit = max_payload(self.server.dialer.vpn, self.vpn_side, ip)
        if len(data) > limit:
            self.counters.oversize += 1
            self.server.drops.log(logging.INFO, "oversize", f"SOCKS UDP: dropped a "
                                  f"{len(data)}-byte datagram to {hostport(ip, port)}: more "
                                  f"than the {limit} bytes the tunnel's MTU allows")
            return
        self.vpn_side.sendto(data, (ip, port))
        self.counters.datagrams_out += 1

    def _to_name(self, name: str, port: int, data: bytes) -> None:
        address = self.server.names.get(name)
        if address is not None:
            self._send(data, address, port)
            return
        queue = self._waiting.get(name)
        if self._waiting_count >= MAX_UNRESOLVED or (
                queue is None and len(self._waiting) >= MAX_LOOKUPS):
            self.counters.queue_overflow += 1
            self.server.drops.log(logging.INFO, "unresolved-queue",
                                  "SOCKS UDP: dropped a datagram: too many are waiting for "
                                  "their destination's name to be resolved")
            return
        if queue is None:
            queue = self._waiting[name] = deque()
            task = self.loop.create_task(self._resolve(name))
            self._lookups.add(task)
            task.add_done_callback(self._lookups.discard)
        queue.append((data, port))
        self._waiting_count += 1

    async def _resolve(self, name: str) -> None:
        resolver = self.server.dialer.resolver
        try:
            if resolver is None:
                raise OSError("no resolver")
            address = await resolver.resolve(name)
        except (OSError, ValueError) as exc:
            waiting = self._waiting.pop(name, ())
            self._waiting_count -= len(waiting)
            self.counters.unresolved += len(waiting)
            self.server.drops.log(logging.INFO, "unresolved",
                                  f"SOCKS UDP: dropped {len(waiting)} datagram(s) to {name}: "
                                  f"{exc}", len(waiting) or 1)
            return
        self.server.names.put(name, address)
        waiting = self._waiting.pop(name, ())
        self._waiting_count -= len(waiting)
        for data, port in waiting:
            if self.closed:
                return
            self._send(data, address, port)

    # -- VPN -> client ------------------------------------------------------------------

    def _from_vpn(self, data: bytes, addr) -> None:
        c = self.counters
        if self.closed:
            return
        if self.client_addr is None:
            c.undeliverable += 1
            return
        if self.relay.get_write_buffer_size() > RELAY_BUFFER_LIMIT:
            c.queue_overflow += 1
            self.server.drops.log(logging.INFO, "relay-buffer", "SOCKS UDP: dropped a "
                                  "datagram for a local client that does not read")
            return
        self.last_active = self.loop.time()
        ip, port = addr[:2]
        self.relay.sendto(add_udp_header(data, ipaddress.ip_address(ip).packed, port),
                          self.client_addr)
        c.datagrams_in += 1

    def error_received(self, side: _Side, exc: Exception) -> None:
        if self.closed:
            return
        if side.relay:
            log.debug("SOCKS UDP: relay socket: %s", exc)    # e.g. the client went away
            return
        self.counters.icmp_errors += 1
        self.server.drops.log(logging.DEBUG, "icmp", f"SOCKS UDP: {exc}")

    # -- lifetime -----------------------------------------------------------------------

    def _check_idle(self) -> None:
        self._idle = None
        if self.closed:
            return
        idle = self.loop.time() - self.last_active
        if idle < IDLE_TIMEOUT:
            self._idle = self.loop.call_later(IDLE_TIMEOUT - idle, self._check_idle)
            return
        self.counters.idle_closed += 1
        log.info("SOCKS UDP: association of %s idle for %g s: closed", self.client_ip,
                 IDLE_TIMEOUT)
        self.close()

    def close(self) -> None:
        """End the association: both sockets, the lookups, the control connection."""
        if self.closed:
            return
        self._release()
        if not self.control.is_closing():
            self.control.close()

    def _release(self) -> None:
        self.closed = True
        self.server.associations.discard(self)
        if self._idle is not None:
            self._idle.cancel()
        for task in list(self._lookups):
            task.cancel()
        self._waiting.clear()
        self._waiting_count = 0
        for transport in (self.relay, self.vpn_side):
            if transport is not None:
                transport.close()
