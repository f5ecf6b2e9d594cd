"""What is WireGuard's in the one asyncio shell (erebus/runtime/tunnel.py): a driver
per peer that names its endpoint and builds the sans-IO core
(:class:`erebus.wireguard.session.WireGuardSession`), and :class:`WireGuardTunnel`,
which routes between the peers of one profile by their AllowedIPs.

Several peers: every ``[Peer]`` with an ``Endpoint`` gets its own shell tunnel (its own
session, timers and UDP socket; only the first binds ``ListenPort``).  Cryptokey
routing as in the whitepaper (section 2): what we send goes to the peer whose
AllowedIPs hold its destination most specifically, and what a peer sends is taken only
if its source routes back to that same peer.  A prefix given to two peers belongs to
the later one (as ``wg setconf`` does; the profile warns).  A peer without Endpoint is
listed as not used: erebus only connects out.

The peers come up together.  ``connect`` succeeds when at least one does; a peer that
did not, or whose session ends later while another still carries traffic, is
reconnected in the background (its AllowedIPs are dropped, and counted, meanwhile) and
the tunnel stays up.  Only when no peer is up does the tunnel end, and ``erebus up``
reconnects it as a whole.  One peer (a client's usual profile) is exactly one shell
tunnel: no routing layer.

WireGuard has no goodbye and no refusal: a peer that does not know our public key
stays silent, so connecting ends with "no handshake response from peer KEY: is our
public key configured there?" (our key is logged when connecting).  A peer that
restarts forgets our keys; the core notices (data sent, nothing back for 15 s) and
handshakes again within the same session, so the tunnel, its listeners and its TCP
connections stay.  A session whose handshakes time out (REKEY_ATTEMPT_TIME, 90 s)
fails and is reconnected: a new session, a new handshake.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import os
import time
from dataclasses import dataclass

from ..counters import CountersDict
from ..errors import SessionError
from ..session import Stage, TunnelInfo
from ..wireguard.keys import WgPeerConfig
from ..wireguard.profile import WgProfile
from ..wireguard.session import WgCounters, WireGuardSession
from .keylog import KeyLog
from .ratelimit import DropReporter
from .retry import RetryPolicy, with_backoff
from .tunnel import CLOSE_WAIT, Endpoint, ShellTunnel

__all__ = ["WireGuardTunnel", "WireGuardDriver", "DROP_KINDS", "ROUTING_DROPS",
           "CONNECT_TIMEOUT", "peer_label"]

log = logging.getLogger("erebus.wireguard")

CONNECT_TIMEOUT = 30.0    # seconds for the first handshake (--timeout overrides)
ROUTE_CACHE = 4096        # addresses whose peer is remembered (several peers only)

# What a dropped datagram was, per counter of WgCounters (rate-limited, see
# erebus.runtime.ratelimit): a warning when someone on the path may be sending it.
DROP_KINDS = {
    "malformed": (logging.WARNING, "a malformed WireGuard message"),
    "unknown_index": (logging.INFO, "a WireGuard message for a session we no longer have "
                      "(an old keypair, or a peer that restarted)"),
    "replayed": (logging.WARNING, "a replayed or too old WireGuard data packet"),
    "auth_failed": (logging.WARNING, "a WireGuard data packet that failed authentication "
                    "(corrupted or forged)"),
    "bad_mac": (logging.WARNING, "a WireGuard handshake message with a wrong MAC "
                "(not for our key, or forged)"),
    "expired": (logging.INFO, "a WireGuard data packet on a keypair past its lifetime"),
    "policy_in": (logging.WARNING, "an inner packet from a source outside the peer's "
                  "AllowedIPs"),
    "policy_out": (logging.INFO, "an inner packet to a destination outside the peer's "
                   "AllowedIPs (not sent)"),
    "staged_dropped": (logging.INFO, "an inner packet dropped while waiting for a "
                       "handshake (the queue was full)"),
    "unknown_peer": (logging.WARNING, "a WireGuard handshake initiation from a key that is "
                     "not the peer's"),
    "replayed_timestamp": (logging.WARNING, "a replayed WireGuard handshake initiation"),
    "flood": (logging.INFO, "a WireGuard handshake initiation sooner than 20 ms after the "
              "last"),
}


# What the routing between several peers drops (counted by WireGuardTunnel itself).
ROUTING_DROPS = {
    "policy_in": (logging.WARNING, "an inner packet whose source address belongs to "
                  "another peer's AllowedIPs"),
    "policy_out": (logging.INFO, "an inner packet to a destination in no peer's "
                   "AllowedIPs (not sent)"),
}


def peer_label(public_key: bytes) -> str:
    """How messages name a peer: by its public key, as ``wg show`` does."""
    return "peer " + base64.b64encode(public_key).decode()


class WireGuardDriver:
    """One peer of a WireGuard profile, for :class:`ShellTunnel`."""

    log = log
    drop_kinds = DROP_KINDS
    refused_after = 3                 # ICMP errors before the peer ever answered
    refused_hint = "is a WireGuard peer listening there?"
    retry = RetryPolicy()
    retry_attempts = None
    close_wait = CLOSE_WAIT           # unused: close() finishes the core at once
    resolve_retry = None
    roams = True                      # our address changed: a new socket (the peer follows)

    def __init__(self, profile: WgProfile, peer: WgPeerConfig, *, listen_port: int = 0,
                 rng=os.urandom, wall_clock=time.time, keylog: KeyLog | None = None):
        self.profile = profile
        self.keylog = keylog
        self.rng = rng
        self.wall_clock = wall_clock
        self.peer = peer
        self.listen_port = listen_port    # our UDP port (0: any)

    @property
    def name(self) -> str:
        return peer_label(self.peer.public_key)

    def endpoints(self) -> list[Endpoint]:
        host, port = self.peer.endpoint
        return [Endpoint(host, port, "udp", self.listen_port, source=self.peer)]

    def new_session(self, now, endpoint, local, remote, previous) -> WireGuardSession:
        ours = base64.b64encode(self.profile.public_key).decode()
        self.log.info("handshaking with %s as %s", self.name, ours)
        return WireGuardSession(self.profile.interface, self.peer, now, rng=self.rng,
                                wall_clock=self.wall_clock, peer_name=self.name,
                                keylog=self.keylog.write if self.keylog else None)


class _PeerTunnel(ShellTunnel):
    """One peer's sessions over its own socket; :class:`WireGuardTunnel` routes."""

    def __init__(self, driver: WireGuardDriver, *, pcap, connector):
        super().__init__(driver, warnings=[], connect_timeout=CONNECT_TIMEOUT, pcap=pcap,
                         connector=connector)
        self.name = driver.name
        self.error: SessionError | None = None     # why it is down (None: up, or never
                                                   # tried)

    def reset(self) -> None:
        """Before the whole tunnel connects again: the last session's counters logged,
        its socket closed."""
        if self.session is not None:
            self._log_counters(f"{self.name}: session {self.sessions} counters")
        self._teardown()


class _Routes:
    """Cryptokey routing: the peer whose AllowedIPs hold an address most specifically
    (longest prefix first); looked up on the raw packet, remembered per address (at
    most ROUTE_CACHE of them: a sender of many addresses only costs the lookups)."""

    _MISS = object()

    def __init__(self, entries):
        tables: dict[int, list] = {4: [], 6: []}
        for net, target in entries:
            tables[net.version].append((net.prefixlen, int(net.network_address),
                                        int(net.netmask), target))
        self.v4 = [(n, m, t) for _, n, m, t in sorted(tables[4], key=lambda e: -e[0])]
        self.v6 = [(n, m, t) for _, n, m, t in sorted(tables[6], key=lambda e: -e[0])]
        self._cache: dict[bytes, object] = {}

    def lookup(self, packet, offset4: int, offset6: int):
        """The peer for the address at ``offset4`` (IPv4) / ``offset6`` (IPv6) of the
        packet; None if no peer's AllowedIPs hold it (or it is not an IP packet)."""
        if not packet:
            return None
        version = packet[0] >> 4
        if version == 4:
            key, table = bytes(packet[offset4:offset4 + 4]), self.v4
        elif version == 6:
            key, table = bytes(packet[offset6:offset6 + 16]), self.v6
        else:
            return None
        found = self._cache.get(key, self._MISS)
        if found is not self._MISS:
            return found
        if len(key) != (4 if version == 4 else 16):      # truncated: no address
            return None
        addr = int.from_bytes(key, "big")
        found = next((t for net, mask, t in table if addr & mask == net), None)
        if len(self._cache) >= ROUTE_CACHE:
            self._cache.clear()
        self._cache[key] = found
        return found

    def destination(self, packet):
        return self.lookup(packet, 16, 24)

    def source(self, packet):
        return self.lookup(packet, 12, 8)


@dataclass(slots=True)
class RoutingCounters(CountersDict):
    policy_in: int = 0
    policy_out: int = 0


def _owned(profile: WgProfile) -> list[WgPeerConfig]:
    """The peers with an Endpoint, each with the AllowedIPs it owns: a prefix of two
    peers belongs to the later one, as in wg."""
    owner: dict = {}
    for i, peer in enumerate(profile.peers):
        for net in peer.allowed_ips:
            owner[net] = i
    return [dataclasses.replace(peer, allowed_ips=tuple(
                n for n in peer.allowed_ips if owner[n] == i))
            for i, peer in enumerate(profile.peers) if peer.endpoint is not None]


class WireGuardTunnel:
    """A WireGuard profile's peers as one :class:`erebus.tunnel.Tunnel` (see the
    module's docstring)."""

    def __init__(self, profile: WgProfile, *, pcap=None, connector=None, rng=os.urandom,
                 keylog: str | None = None):
        self.profile = profile
        self.pcap = pcap
        self.keylog = KeyLog(keylog) if keylog else None
        if self.keylog is not None:
            log.warning("writing the WireGuard keys (the private key too) to %s, as "
                        "asked (--keylog)", self.keylog.path)
        path, port = profile.path, profile.interface.listen_port
        self.warnings = list(profile.warnings)
        for line, peer in zip(profile.peer_lines, profile.peers):
            if peer.endpoint is None:
                self.warnings.append(f"{path}:{line}: [Peer]: not used: it has no "
                                     "Endpoint, and erebus only connects out")
        used = _owned(profile)
        if port and len(used) > 1:
            self.warnings.append(f"{path}: ListenPort: {port} is bound by the first "
                                 "peer's socket only; each further peer has a socket of "
                                 "its own, on a port the kernel picks")
        for text in self.warnings[len(profile.warnings):]:
            log.warning("%s", text)
        self.peers = [_PeerTunnel(WireGuardDriver(profile, peer, listen_port=(port or 0)
                                                  if i == 0 else 0, rng=rng,
                                                  keylog=self.keylog),
                                  pcap=pcap, connector=connector)
                      for i, peer in enumerate(used)]
        self.driver = self.peers[0].driver
        self.connect_timeout = CONNECT_TIMEOUT
        self.info: TunnelInfo | None = None
        self.routing = RoutingCounters()
        self._routing_drops = DropReporter(log, ROUTING_DROPS)
        self._routes = _Routes((net, sub) for sub in self.peers
                               for net in sub.driver.peer.allowed_ips)
        self._receiver = None
        self._watchers: set[asyncio.Task] = set()
        self._done: asyncio.Future | None = None
        self._stop = asyncio.Event()
        self._timeout: float | None = None     # connect()'s, per try (None: the peer's)
        if len(self.peers) == 1:
            self.send_packet = self.peers[0].send_packet      # no routing layer

    # -- Tunnel interface ----------------------------------------------------------------

    @property
    def up(self) -> bool:
        return any(sub.up for sub in self.peers)

    @property
    def session(self):
        """The session of the first peer that is up (the first peer's otherwise)."""
        return next((sub.session for sub in self.peers if sub.up), self.peers[0].session)

    @property
    def counters(self):
        if len(self.peers) == 1:
            return self.peers[0].counters
        present = [sub.counters for sub in self.peers if sub.counters is not None]
        if not present:
            return None
        total = WgCounters()
        for name in total.as_dict():
            setattr(total, name, sum(getattr(c, name) for c in present))
        total.policy_in += self.routing.policy_in
        total.policy_out += self.routing.policy_out
        return total

    @property
    def dropped_down(self) -> int:
        return sum(sub.dropped_down for sub in self.peers)

    @property
    def rekeys(self) -> int:
        return sum(sub.rekeys for sub in self.peers)

    @property
    def sessions(self) -> int:
        return sum(sub.sessions for sub in self.peers)

    def traffic(self) -> tuple[int, int, int, int]:
        totals = [sub.traffic() for sub in self.peers]
        return tuple(sum(t[i] for t in totals) for i in range(4))

    def drops(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for sub in self.peers:
            for name, n in sub.drops().items():
                out[name] = out.get(name, 0) + n
        for name, n in self.routing.as_dict().items():
            out[name] = out.get(name, 0) + n
        return out

    def set_receiver(self, receiver) -> None:
        self._receiver = receiver
        if len(self.peers) == 1:
            self.peers[0].set_receiver(receiver)
            return
        for sub in self.peers:
            sub.set_receiver(self._inbound(sub))

    def _inbound(self, sub: _PeerTunnel):
        routes, counts = self._routes, self.routing

        def deliver(packet) -> None:
            if routes.source(packet) is sub:
                self._receiver(packet)
                return
            counts.policy_in += 1
            self._routing_drops.check(counts)
        return deliver

    def send_packet(self, packet: bytes) -> None:
        sub = self._routes.destination(packet)
        if sub is None:
            self.routing.policy_out += 1
            self._routing_drops.check(self.routing)
            return
        sub.send_packet(packet)

    def peer_report(self) -> list[dict]:
        """Per peer: its key, endpoint, whether it is up, its latest handshake (seconds
        since the epoch, None: never) and what failed, when it is down."""
        out = []
        for sub in self.peers:
            s = sub.session
            out.append({"peer": base64.b64encode(sub.driver.peer.public_key).decode(),
                        "server": sub.info.server if sub.info is not None else
                        Endpoint(*sub.driver.peer.endpoint).name,
                        "up": sub.up,
                        "latest_handshake": getattr(s, "last_handshake", None),
                        "error": None if sub.up else (str(sub.error) if sub.error
                                                      else "not connected")})
        return out

    async def connect(self, timeout: float | None = None) -> TunnelInfo:
        """Every peer at once; the tunnel is up when one is (the others are tried again
        in the background).  Raises the first peer's failure when none came up."""
        await self._stop_watchers()
        self._stop.clear()
        self._timeout = timeout                # the background reconnects' too
        if self._done is not None and self._done.done():
            self._done = None
        results = await asyncio.gather(*(sub.connect(timeout=timeout)
                                         for sub in self.peers), return_exceptions=True)
        failed = []
        for sub, result in zip(self.peers, results):
            sub.error = None
            if isinstance(result, BaseException):
                if not isinstance(result, SessionError):
                    raise result
                sub.error = result
                failed.append(sub)
        if len(failed) == len(self.peers):
            for sub in failed[1:]:
                log.warning("%s", sub.error)
            raise failed[0].error
        for sub in self.peers:
            if sub in failed:
                log.warning("%s did not come up: %s; trying it again in the background "
                            "(the other peers are up)", sub.name, sub.error)
            self._watch(sub, down=sub.error, said=True)
        self.info = self._merged_info()
        return self.info

    async def reconnect(self, *, timeout: float | None = None, attempts: int | None = None,
                        stop: asyncio.Event | None = None) -> TunnelInfo:
        """Every peer again, with the driver's backoff, until one comes up."""
        await self._stop_watchers()
        for sub in self.peers:
            sub.reset()
        d = self.driver
        info = await with_backoff(lambda: self.connect(timeout=timeout),
                                  attempts=attempts if attempts is not None
                                  else d.retry_attempts, stop=stop, policy=d.retry)
        log.info("reconnected (session %d)", self.sessions)
        return info

    async def wait_closed(self) -> str:
        """Until no peer is up (the last one's SessionError) or :meth:`close`."""
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
        return await asyncio.shield(self._done)

    async def close(self) -> None:
        self._stop.set()
        await self._stop_watchers()
        try:
            for sub in self.peers:
                await sub.close()
        finally:
            if self._done is not None and not self._done.done():
                self._done.set_result("closed")
            self._routing_drops.flush(self.routing)
            if self.keylog is not None:
                self.keylog.close()

    # -- several peers -------------------------------------------------------------------

    def _merged_info(self) -> TunnelInfo:
        if len(self.peers) == 1:
            return self.peers[0].info
        live = [sub.info for sub in self.peers if sub.up and sub.info is not None]
        nets = [net for sub in self.peers for net in sub.driver.peer.allowed_ips]
        first = live[0]
        return dataclasses.replace(
            first, server=", ".join(i.server for i in live),
            address=", ".join(i.address for i in live),
            peer=", ".join(i.peer for i in live),
            routes=[str(n) for n in nets if n.version == 4 and n.prefixlen],
            routes6=[str(n) for n in nets if n.version == 6 and n.prefixlen],
            redirect_gateway=any(n.prefixlen == 0 for n in nets),
            setup_ms=max(i.setup_ms for i in live))

    def _watch(self, sub: _PeerTunnel, down: SessionError | None, said: bool) -> None:
        task = asyncio.ensure_future(self._keep(sub, down, said))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _keep(self, sub: _PeerTunnel, down: SessionError | None,
                    said: bool) -> None:
        """One peer for as long as the tunnel lives: when its session ends while
        another peer is up, it is reconnected here; when none is, the tunnel ends."""
        while True:
            if down is None:
                try:
                    await sub.wait_closed()
                    return                                   # closed by us
                except SessionError as exc:
                    down = sub.error = exc
            if not down.recoverable or not any(o.up for o in self.peers if o is not sub):
                self._fail(down)
                return
            if not said:
                log.warning("%s down: %s; reconnecting it (the other peers stay up)",
                            sub.name, down)
            said = False
            try:
                await sub.reconnect(timeout=self._timeout, stop=self._stop)
            except SessionError as exc:
                if exc.stage is Stage.STOPPED:
                    return
                down = sub.error = exc
                continue
            sub.error = down = None
            self.info = self._merged_info()

    def _fail(self, error: SessionError) -> None:
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
        if not self._done.done():
            self._done.set_exception(error)
            self._done.exception()                  # retrieved: nobody has to await it

    async def _stop_watchers(self) -> None:
        tasks = list(self._watchers)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
