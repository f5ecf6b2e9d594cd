"""ESP in tunnel mode over UDP (RFC 4301, 4303, 3948), sans-IO.

:class:`SecurityAssociation` is one direction of protection (RFC 4301 section
4.4.2): SPI, transform and keys, sequence numbers (32-bit, or 64-bit with ESN),
the anti-replay window (inbound), packet and byte lifetimes.  It turns an inner
packet into an ESP packet (:meth:`~SecurityAssociation.seal`) or back
(:meth:`~SecurityAssociation.open`).

:class:`EspSession` is a client's pair of SAs with its traffic selectors: it
takes datagrams from the peer and IPv4 or IPv6 packets from the stack, with the
current time, and returns datagrams and packets; it never touches a socket or a
clock::

    session = EspSession(outbound_sa, inbound_sa, local_ip="198.19.11.2",
                         local_ip6="2001:2:0:130::2",          # optional
                         remote_ts=["198.19.20.0/24", "2001:2:0:131::/64"], now=now)
    datagram = session.send_packet(packet, now)    # bytes for the peer, or None
    packet = session.receive_datagram(data, now)   # an inner IP packet, or None
    session.get_timer() / session.handle_timer(now) -> [NAT keepalives]
    session.next_event()                           # SaExpired, SaSoftLimit, ...

Inbound processing, in order (RFC 4303 section 3.4): keepalives and non-ESP
(IKE) datagrams are counted and ignored; the SPI selects the SA (unknown: drop);
the sequence number is checked against the window (cheap, before the ICV); the
ICV is verified; only then does the window move; the padding and next header are
checked (4: IPv4, 41: IPv6, the inner packet's version must agree; 59: a dummy
packet, dropped; anything else dropped); the inner packet must come from the remote
selectors of its family and be addressed to our virtual IP of that family (RFC 4301
section 5.2, step 4): an IPv6 packet with no IPv6 virtual IP is outside the policy.
The inner length comes from the IPv4 total length or the IPv6 payload length
(a jumbogram, payload length 0, is malformed: ESP carries at most 64 KiB); whatever
follows it is TFC padding (RFC 4303 section 2.4) and is cut off.  Every drop is
counted in :class:`EspCounters`, never raised.

Outbound: a packet to a destination outside ``remote_ts`` (the networks of its
family) is dropped and counted (the SPD has no entry for it), and so is an IPv6
packet when we have no IPv6 virtual IP; everything else is sealed with the next
sequence number, next header 4 for IPv4 and 41 for IPv6 (RFC 4303 section 2.6).
A NAT keepalive (0xFF) goes out when nothing else was sent for
``keepalive_interval`` seconds (RFC 3948 section 4).

Lifetimes (RFC 4301 section 4.4.2.1): hard limits in packets and bytes (inner
bytes), per SA, and the end of the sequence number space (2**32 - 1 without
ESN; a sender never wraps).  At 90 % of a limit :class:`SaSoftLimit` is
reported once; at the limit the SA is dead, :class:`SaExpired` is reported and
its packets are dropped.  Manual SAs cannot be renewed: the session is over.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import struct
from collections import deque
from dataclasses import dataclass
from typing import Iterable

from ..counters import CountersDict
from ..crypto.replay import ReplayWindow
from ..crypto.seal import AuthenticationError, Rng
from ..errors import ParseError
from ..session import Closed, Notice
from ..wire import esp as wire
from ..wire.esp import NH_IPV4, NH_IPV6, NH_NO_NEXT
from .transforms import Transform, get_transform

__all__ = [
    "SecurityAssociation", "EspSession", "EspCounters",
    "EspDrop", "UnknownSpi", "Replayed", "AuthFailed", "BadPadding", "SaExpiredError",
    "SaExpired", "SaSoftLimit", "SequenceReset", "Closed",
    "SOFT_FRACTION", "KEEPALIVE_INTERVAL",
]

log = logging.getLogger("erebus.ipsec")

SOFT_FRACTION = 0.9
KEEPALIVE_INTERVAL = 20.0
RESET_SUSPECT = 32            # consecutive too-old packets before SequenceReset
_MAX_SEQ32 = (1 << 32) - 1
_MAX_SEQ64 = (1 << 64) - 1
_LOW = 0xFFFFFFFF
_ADDRS = struct.Struct("!II")
_TOTAL_LEN = struct.Struct("!H")
_DST = struct.Struct("!I")
_PAYLOAD_LEN6 = struct.Struct("!H")
IPV6_HEADER_LEN = 40


# -- why a packet was dropped ------------------------------------------------------------

class EspDrop(ParseError):
    """An inbound ESP packet that is dropped; ``counter`` names the EspCounters field."""

    counter = "malformed"


class UnknownSpi(EspDrop):
    counter = "unknown_spi"


class Replayed(EspDrop):
    counter = "replayed"


class AuthFailed(EspDrop):
    counter = "auth_failed"


class BadPadding(EspDrop):
    counter = "bad_padding"


class SaExpiredError(EspDrop):
    """The SA reached a hard lifetime limit: it protects nothing any more."""

    counter = "expired_in"


# -- events -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SaExpired:
    """An SA reached a hard limit; ``direction`` is "outbound" or "inbound"."""

    direction: str
    spi: int
    reason: str


@dataclass(frozen=True, slots=True)
class SaSoftLimit(Notice):
    """An SA used 90 % of a hard limit (manual SAs cannot be rekeyed: a warning)."""

    direction: str
    spi: int
    reason: str
    level = logging.WARNING

    @property
    def message(self) -> str:
        return f"{self.direction} SA {self.spi:#010x}: {self.reason}"


@dataclass(frozen=True, slots=True)
class SequenceReset(Notice):
    """Many packets in a row were far older than the window: the peer probably
    restarted with the same manual keys and counts from 1 again."""

    spi: int
    highest: int
    received: int
    level = logging.WARNING

    @property
    def message(self) -> str:
        return (f"inbound SA {self.spi:#010x}: the peer's sequence numbers went back from "
                f"{self.highest} to {self.received} (did it restart with the same keys?); "
                "its packets are dropped as replays: give both ends new keys and restart "
                "both")



# -- one SA -------------------------------------------------------------------------------

class SecurityAssociation:
    """One direction of ESP protection (RFC 4301 section 4.4.2.1), sans-IO.

    ``key`` is the transform's keying material (AEAD: key then 4-byte salt),
    ``integrity_key`` the HMAC key of CBC transforms.  ``replay_window`` 0 turns
    anti-replay off (inbound); ``seq`` is the last sequence number sent (outbound,
    0 for a new SA).  ``lifetime_packets`` / ``lifetime_bytes`` are hard limits
    (None: none).  ``rng`` gives the CBC IVs and the AEAD IV base; ``iv_base``: see
    :class:`erebus.crypto.seal.AeadSeal` (tests).
    """

    __slots__ = ("spi", "transform", "esn", "seq", "replay", "anti_replay",
                 "lifetime_packets", "lifetime_bytes", "packets", "bytes", "expired",
                 "notice", "_soft_packets", "_soft_bytes", "_limited", "_sealer", "_aead",
                 "_align", "_max_seq", "_too_old")

    def __init__(self, spi: int, transform: Transform | str, key: bytes,
                 integrity_key: bytes = b"", *, esn: bool = False, replay_window: int = 64,
                 lifetime_packets: int | None = None, lifetime_bytes: int | None = None,
                 seq: int = 0, iv_base: int | None = None, rng: Rng = os.urandom):
        if not 0 < spi <= _MAX_SEQ32:
            raise ValueError(f"SPI {spi:#x} out of range")
        if replay_window < 0:
            raise ValueError("replay window must be >= 0")
        t = get_transform(transform) if isinstance(transform, str) else transform
        self.spi = spi
        self.transform = t
        self.esn = esn
        self.seq = seq
        self.anti_replay = replay_window > 0
        self.replay = ReplayWindow(max(replay_window, 1))  # tracks the top for ESN too
        self.lifetime_packets = lifetime_packets
        self.lifetime_bytes = lifetime_bytes
        self.packets = 0
        self.bytes = 0
        self.expired: str | None = None
        self.notice: str | None = None        # a soft limit crossed, not yet reported
        self._soft_packets = int(lifetime_packets * SOFT_FRACTION) if lifetime_packets \
            else None
        self._soft_bytes = int(lifetime_bytes * SOFT_FRACTION) if lifetime_bytes else None
        self._limited = lifetime_packets is not None or lifetime_bytes is not None
        self._sealer = t.new(key, integrity_key, rng=rng, iv_base=iv_base)
        self._aead = t.aead
        self._align = t.align
        self._max_seq = _MAX_SEQ64 if esn else _MAX_SEQ32
        self._too_old = 0

    def __repr__(self) -> str:
        return f"<SA spi={self.spi:#010x} {self.transform.name}{' esn' if self.esn else ''}>"

    # -- lifetimes --------------------------------------------------------------------

    def _expire(self, reason: str) -> SaExpiredError:
        self.expired = reason
        return SaExpiredError(f"SA {self.spi:#010x}: {reason}")

    def _check_lifetime(self, n: int) -> None:
        """Before counting a packet of ``n`` inner bytes: raise if it would pass a hard
        limit, note a soft one."""
        packets = self.packets + 1
        nbytes = self.bytes + n
        limit = self.lifetime_packets
        if limit is not None and packets > limit:
            raise self._expire(f"hard lifetime of {limit} packets reached")
        limit = self.lifetime_bytes
        if limit is not None and nbytes > limit:
            raise self._expire(f"hard lifetime of {limit} bytes reached")
        soft = self._soft_packets
        if soft is not None and packets == soft:
            self.notice = f"{packets} of {self.lifetime_packets} packets used"
        soft = self._soft_bytes
        if soft is not None and self.bytes < soft <= nbytes:
            self.notice = f"{nbytes} of {self.lifetime_bytes} bytes used"

    # -- outbound ---------------------------------------------------------------------

    def seal(self, payload: bytes | bytearray | memoryview, next_header: int = NH_IPV4) -> bytes:
        """The ESP packet (from the SPI on) carrying ``payload``; SaExpiredError once a
        hard limit or the end of the sequence numbers is reached."""
        if self.expired is not None:
            raise SaExpiredError(f"SA {self.spi:#010x}: {self.expired}")
        n = len(payload)
        if self._limited:
            self._check_lifetime(n)
        seq = self.seq + 1
        if seq > self._max_seq:
            raise self._expire("sequence numbers exhausted" + (
                "" if self.esn else " (2**32 - 1 packets without ESN)"))
        self.seq = seq
        spi = self.spi
        header = wire.build_header(spi, seq)
        if self._aead:
            aad = wire.aad(spi, seq, True) if self.esn else header
            tail = b""
        else:
            aad = header
            tail = wire.esn_high(seq) if self.esn else b""
        trailer = wire.trailer(n, self._align, next_header)
        packet = self._sealer.seal(seq, b"".join((payload, trailer)), aad, tail, prefix=header)
        self.packets += 1
        self.bytes += n
        return packet

    # -- inbound ----------------------------------------------------------------------

    def infer_seq(self, low: int) -> int:
        """The full sequence number of a packet whose low 32 bits are ``low``
        (RFC 4303 appendix A2.2 with ESN; ``low`` itself without).  May be <= 0:
        then it is before the window."""
        if not self.esn:
            return low
        w = self.replay.size
        top = self.replay.top
        tl = top & _LOW
        th = top >> 32
        if tl >= w - 1:
            return (th if low >= tl - w + 1 else th + 1) << 32 | low
        if low >= (tl - w + 1) & _LOW:
            return (th - 1) << 32 | low if th else -1
        return th << 32 | low

    def open(self, packet: bytes | bytearray | memoryview) -> tuple[int, bytes]:
        """``(next header, payload)`` of an ESP packet for this SA.  Raises an
        :class:`EspDrop` (a ParseError) for anything that must be dropped."""
        if self.expired is not None:
            raise SaExpiredError(f"SA {self.spi:#010x}: {self.expired}")
        try:
            spi, low = wire.parse_header(packet)
        except ParseError as exc:
            raise EspDrop(str(exc)) from None
        if spi != self.spi:
            raise UnknownSpi(f"SPI {spi:#010x} is not this SA's")
        seq = self.infer_seq(low)
        replay = self.replay
        if seq <= 0 or (self.anti_replay and not replay.check(seq)):
            if seq <= 0 or seq + replay.size <= replay.top:
                self._too_old += 1
            raise Replayed(f"SA {spi:#010x}: sequence number {seq} replayed or too old")
        if self._aead:
            aad = wire.aad(spi, seq, True) if self.esn else bytes(packet[:8])
            tail = b""
        else:
            aad = bytes(packet[:8])
            tail = wire.esn_high(seq) if self.esn else b""
        try:
            plain = self._sealer.open(memoryview(packet)[8:], aad, tail)
        except AuthenticationError as exc:
            raise AuthFailed(f"SA {spi:#010x}: {exc}") from None
        replay.update(seq)
        self._too_old = 0
        try:
            end, next_header = wire.strip_trailer(plain)
        except ParseError as exc:
            raise BadPadding(f"SA {spi:#010x}: {exc}") from None
        if self._limited:
            self._check_lifetime(end)
        self.packets += 1
        self.bytes += end
        return next_header, plain[:end]

    @property
    def too_old_in_a_row(self) -> int:
        return self._too_old


# -- the session --------------------------------------------------------------------------

@dataclass(slots=True)
class EspCounters(CountersDict):
    """What came and went, and why anything was dropped."""

    datagrams_in: int = 0
    datagrams_out: int = 0
    packets_in: int = 0          # inner packets delivered
    packets_out: int = 0         # inner packets sealed
    bytes_in: int = 0            # inner bytes
    bytes_out: int = 0
    keepalives_in: int = 0       # NAT keepalives (ignored)
    keepalives_out: int = 0
    non_esp_in: int = 0          # IKE behind the non-ESP marker (ignored: no IKE yet)
    malformed: int = 0           # too short, cut, not the IP version the next header says
    unknown_spi: int = 0
    replayed: int = 0            # seen before, or older than the window
    auth_failed: int = 0         # forged, corrupted, wrong key
    bad_padding: int = 0
    dummy: int = 0               # next header 59 (RFC 4303 section 2.6)
    bad_next_header: int = 0     # neither IPv4 (4) nor IPv6 (41)
    policy_in: int = 0           # inner packet not from remote_ts to our virtual IP
                                 # (of its family; IPv6 without an IPv6 virtual IP)
    policy_out: int = 0          # to a destination outside remote_ts
    expired_in: int = 0          # the SA reached a hard limit
    expired_out: int = 0
    control_retransmits: int = 0  # no control channel with manual SAs: always 0

    DROPS = ("malformed", "unknown_spi", "replayed", "auth_failed", "bad_padding", "dummy",
             "bad_next_header", "policy_in", "expired_in")

    @property
    def dropped_in(self) -> int:
        return sum(getattr(self, name) for name in self.DROPS)



def _networks(cidrs: Iterable[str], version: int = 4) -> tuple[tuple[int, int], ...]:
    """(network, mask) as ints for the selectors of one family (the others skipped)."""
    nets = []
    for cidr in cidrs:
        net = ipaddress.ip_network(cidr)
        if net.version == version:
            nets.append((int(net.network_address), int(net.netmask)))
    return tuple(nets)


def _address6(value) -> bytes | None:
    """Our IPv6 virtual address as 16 bytes (text, bytes or an ipaddress object)."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        if len(value) != 16:
            raise ValueError(f"an IPv6 address is 16 bytes, not {len(value)}")
        return bytes(value)
    return ipaddress.IPv6Address(value if isinstance(value, (str, int)) else str(value)).packed


class EspSession:
    """A client's ESP tunnel: one outbound SA, one or more inbound SAs (by SPI), the
    traffic selectors, NAT keepalives.  Sans-IO: bytes and ``now`` in, bytes out."""

    def __init__(self, outbound: SecurityAssociation,
                 inbound: SecurityAssociation | Iterable[SecurityAssociation], *,
                 local_ip: str | int, remote_ts: Iterable[str], now: float,
                 local_ip6=None, keepalive_interval: float | None = KEEPALIVE_INTERVAL):
        self.outbound = outbound
        sas = [inbound] if isinstance(inbound, SecurityAssociation) else list(inbound)
        self.inbound: dict[int, SecurityAssociation] = {sa.spi: sa for sa in sas}
        self.local_ip = int(ipaddress.IPv4Address(local_ip))
        self.local_ip6 = _address6(local_ip6)   # 16 bytes, or None: IPv4 only
        self.remote_ts = list(remote_ts)
        self._remote = _networks(self.remote_ts)
        self._remote6 = _networks(self.remote_ts, 6)
        self.keepalive_interval = keepalive_interval or None
        self.counters = EspCounters()
        self.finished = False
        self._events: deque = deque()
        self._last_out = now
        self._reset_reported: set[int] = set()

    def install(self, outbound: SecurityAssociation, inbound: SecurityAssociation) -> None:
        """A rekeyed CHILD_SA: send on ``outbound`` from now on, accept ``inbound`` too
        (the old inbound SA stays until :meth:`retire_inbound`)."""
        self.inbound[inbound.spi] = inbound
        self.outbound = outbound

    def retire_inbound(self, spi: int) -> None:
        """The old inbound SA of a rekey was deleted: its packets are unknown now."""
        self.inbound.pop(spi, None)

    @property
    def established(self) -> bool:
        """Packets can be sent (the outbound SA is alive and the session not closed)."""
        return not self.finished and self.outbound.expired is None

    # -- outbound ---------------------------------------------------------------------

    def _to_remote(self, addr: int) -> bool:
        for net, mask in self._remote:
            if addr & mask == net:
                return True
        return False

    def _to_remote6(self, addr: int) -> bool:
        for net, mask in self._remote6:
            if addr & mask == net:
                return True
        return False

    def send_packet(self, packet: bytes | bytearray | memoryview, now: float) -> bytes | None:
        """The datagram carrying one IPv4 or IPv6 packet to the peer, or None if it is
        dropped (outside the selectors, SA expired, session closed: counted)."""
        c = self.counters
        n = len(packet)
        version = packet[0] >> 4 if n else 0
        if version == 4 and n >= 20:
            (dst,) = _DST.unpack_from(packet, 16)
            if not self._to_remote(dst):
                self._outside(ipaddress.IPv4Address(dst))
                return None
            next_header = NH_IPV4
        elif version == 6 and n >= IPV6_HEADER_LEN and self.local_ip6 is not None:
            dst = int.from_bytes(packet[24:40], "big")
            if not self._to_remote6(dst):
                self._outside(ipaddress.IPv6Address(dst))
                return None
            next_header = NH_IPV6
        else:
            c.policy_out += 1
            return None
        sa = self.outbound
        if self.finished or sa.expired is not None:
            c.expired_out += 1
            return None
        try:
            datagram = sa.seal(packet, next_header)
        except SaExpiredError:
            c.expired_out += 1
            self._events.append(SaExpired("outbound", sa.spi, sa.expired))
            return None
        if sa.notice is not None:
            self._events.append(SaSoftLimit("outbound", sa.spi, sa.notice))
            sa.notice = None
        c.packets_out += 1
        c.bytes_out += len(packet)
        c.datagrams_out += 1
        self._last_out = now
        return datagram

    def _outside(self, dst) -> None:
        c = self.counters
        c.policy_out += 1
        if c.policy_out == 1:
            log.info("dropped a packet to %s: outside the tunnel's remote_ts (%s)",
                     dst, ", ".join(self.remote_ts))

    def keepalive(self, now: float) -> bytes:
        """A NAT keepalive datagram (RFC 3948 section 2.3), counted."""
        self.counters.keepalives_out += 1
        self.counters.datagrams_out += 1
        self._last_out = now
        return wire.NAT_KEEPALIVE

    # -- inbound ----------------------------------------------------------------------

    def receive_datagram(self, data: bytes | bytearray | memoryview, now: float) -> bytes | None:
        """The inner IPv4 or IPv6 packet of one datagram from the peer, or None (not a
        data packet, or dropped: see :attr:`counters`)."""
        c = self.counters
        c.datagrams_in += 1
        if self.finished:
            return None
        try:
            kind = wire.classify(data)
        except ParseError:
            c.malformed += 1
            return None
        if kind != wire.KIND_ESP:
            if kind == wire.KIND_KEEPALIVE:
                c.keepalives_in += 1
            else:
                c.non_esp_in += 1
            return None
        sa = self.inbound.get(int.from_bytes(data[:4], "big"))
        if sa is None:
            c.unknown_spi += 1
            return None
        was_expired = sa.expired
        try:
            next_header, payload = sa.open(data)
        except EspDrop as exc:
            setattr(c, exc.counter, getattr(c, exc.counter) + 1)
            if isinstance(exc, SaExpiredError) and was_expired is None:
                self._events.append(SaExpired("inbound", sa.spi, sa.expired))
            elif isinstance(exc, Replayed) and sa.too_old_in_a_row >= RESET_SUSPECT \
                    and sa.spi not in self._reset_reported:
                self._reset_reported.add(sa.spi)
                self._events.append(SequenceReset(sa.spi, sa.replay.top,
                                                  sa.infer_seq(int.from_bytes(data[4:8],
                                                                              "big"))))
            return None
        if sa.notice is not None:
            self._events.append(SaSoftLimit("inbound", sa.spi, sa.notice))
            sa.notice = None
        n = len(payload)
        if next_header == NH_IPV4:
            if n < 20 or payload[0] >> 4 != 4:
                c.malformed += 1
                return None
            (total,) = _TOTAL_LEN.unpack_from(payload, 2)
            if total < 20 or total > n:
                c.malformed += 1
                return None
            if total < n:                      # TFC padding after the inner packet
                payload = payload[:total]
            src, dst = _ADDRS.unpack_from(payload, 12)
            if dst != self.local_ip or not self._to_remote(src):
                c.policy_in += 1
                return None
        elif next_header == NH_IPV6:
            if n < IPV6_HEADER_LEN or payload[0] >> 4 != 6:
                c.malformed += 1
                return None
            (length,) = _PAYLOAD_LEN6.unpack_from(payload, 4)
            total = IPV6_HEADER_LEN + length
            if length == 0 and payload[6] == 0:
                c.malformed += 1               # a jumbogram (RFC 2675): never in ESP
                return None
            if total > n:
                c.malformed += 1
                return None
            if total < n:                      # TFC padding after the inner packet
                payload = payload[:total]
            if self.local_ip6 is None or payload[24:40] != self.local_ip6 or \
                    not self._to_remote6(int.from_bytes(payload[8:24], "big")):
                c.policy_in += 1
                return None
        else:
            if next_header == NH_NO_NEXT:
                c.dummy += 1
            else:
                c.bad_next_header += 1
            return None
        self._reset_reported.discard(sa.spi)
        c.packets_in += 1
        c.bytes_in += total
        return payload

    # -- timers, events, end ----------------------------------------------------------

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` wants to run next (the next keepalive), or None."""
        if self.keepalive_interval is None or self.finished:
            return None
        return self._last_out + self.keepalive_interval

    def handle_timer(self, now: float) -> list[bytes]:
        """What is due at ``now``: a NAT keepalive after ``keepalive_interval`` quiet
        seconds."""
        deadline = self.get_timer()
        if deadline is None or now < deadline:
            return []
        return [self.keepalive(now)]

    @property
    def has_events(self) -> bool:
        return bool(self._events)

    def next_event(self):
        return self._events.popleft() if self._events else None

    def close(self, now: float) -> list[bytes]:
        """End the session.  Manual SAs have nobody to tell: nothing to send."""
        if not self.finished:
            self.finished = True
            self._events.append(Closed("closed"))
        return []
