"""The WireGuard core behind erebus.session's contract: one peer, its handshakes,
keypairs and timers (whitepaper section 6; wireguard-go's timers.go gives the same
rules).  Sans-IO: ``now`` is a monotonic time, the TAI64N timestamp comes from the
``wall_clock`` given, every random number from ``rng``.

Keypairs: ``current`` sends; ``previous`` still decrypts what was in flight when a
new handshake completed; ``next`` is a keypair we made as the *responder* (the peer
initiated), confirmed, and made current, by the first data packet that arrives with
it.  An initiator's keypair is current as soon as the response is in.

The timers (all from the last event of their kind):
- a handshake is retried every REKEY_TIMEOUT plus up to 1/3 s of jitter, with a new
  ephemeral key, until REKEY_ATTEMPT_TIME has passed: then the session fails
  ("no handshake response from PEER: is our public key configured there?");
- data sent and nothing authentic back within KEEPALIVE_TIMEOUT + REKEY_TIMEOUT:
  a new handshake (the peer may have restarted and forgotten our keys);
- data received and nothing sent within KEEPALIVE_TIMEOUT: an empty keepalive;
- PersistentKeepalive N: something is sent at least every N seconds;
- the initiator rekeys when it sends on a keypair REKEY_AFTER_TIME old (or after
  REKEY_AFTER_MESSAGES), and when it receives on one older than REJECT_AFTER_TIME -
  KEEPALIVE_TIMEOUT - REKEY_TIMEOUT; no keypair is used past REJECT_AFTER_TIME.

Inner packets are taken only from a source inside the peer's AllowedIPs and sent only
to a destination inside them; everything refused is dropped and counted.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ..counters import CountersDict
from ..crypto.replay import ReplayWindow
from ..errors import ParseError
from ..session import Closed, Connected, Failed, Note, Rekeyed, Stage, TunnelInfo
from ..wire import wireguard as wire
from .crypto import InvalidTag, PrivateKey, tai64n
from .keys import DEFAULT_MTU, WgInterfaceConfig, WgPeerConfig
from .noise import CookieChecker, CookieJar, Handshake, HandshakeError, add_macs, \
    check_mac1, mac1_key

__all__ = ["WireGuardSession", "WgCounters", "REKEY_AFTER_TIME", "REJECT_AFTER_TIME",
           "REKEY_ATTEMPT_TIME", "REKEY_TIMEOUT", "KEEPALIVE_TIMEOUT",
           "REKEY_AFTER_MESSAGES", "REJECT_AFTER_MESSAGES", "REPLAY_WINDOW", "STAGED_MAX",
           "CIPHER", "no_response_message"]

REKEY_AFTER_MESSAGES = 1 << 60
REJECT_AFTER_MESSAGES = (1 << 64) - (1 << 13) - 1
REKEY_AFTER_TIME = 120.0
REJECT_AFTER_TIME = 180.0
REKEY_ATTEMPT_TIME = 90.0
REKEY_TIMEOUT = 5.0
REKEY_JITTER = 1 / 3                 # up to this much is added to every retry
KEEPALIVE_TIMEOUT = 10.0
INITIATION_RATE = 1 / 50             # initiations from the peer closer than this: ignored
REPLAY_WINDOW = 8128                 # counters below the highest seen that may still come
STAGED_MAX = 128                     # inner packets held while no keypair is ready
CIPHER = "ChaCha20-Poly1305 (WireGuard, Noise_IKpsk2)"

_NONCE_PAD = b"\0\0\0\0"


def no_response_message(peer: str) -> str:
    return f"no handshake response from {peer}: is our public key configured there?"


@dataclass(slots=True)
class WgCounters(CountersDict):
    bytes_in: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    packets_out: int = 0
    handshakes_sent: int = 0
    handshake_retries: int = 0
    handshakes_completed: int = 0        # as initiator and as responder
    handshakes_answered: int = 0         # initiations from the peer we responded to
    keepalives_sent: int = 0
    keepalives_received: int = 0
    cookies_received: int = 0
    staged: int = 0                      # inner packets held for a keypair
    # drops
    malformed: int = 0
    unknown_index: int = 0
    replayed: int = 0
    auth_failed: int = 0
    bad_mac: int = 0
    expired: int = 0                     # a keypair past REJECT_AFTER_TIME / messages
    policy_in: int = 0                   # an inner source outside the peer's AllowedIPs
    policy_out: int = 0                  # an inner destination outside them
    staged_dropped: int = 0              # the staging queue was full
    unknown_peer: int = 0                # an initiation from a key that is not the peer's
    replayed_timestamp: int = 0          # an initiation not newer than the last one
    flood: int = 0                       # initiations faster than INITIATION_RATE


class Keypair:
    __slots__ = ("send", "receive", "local_index", "remote_index", "created", "initiator",
                 "counter", "replay")

    def __init__(self, keys, now: float):
        self.send = ChaCha20Poly1305(keys.send)
        self.receive = ChaCha20Poly1305(keys.receive)
        self.local_index = keys.local_index
        self.remote_index = keys.remote_index
        self.created = now
        self.initiator = keys.initiator
        self.counter = 0
        self.replay = ReplayWindow(REPLAY_WINDOW)


class _Nets:
    """AllowedIPs as (version -> [(network int, mask int)]), matched on raw packets."""

    def __init__(self, networks):
        self.v4: list[tuple[int, int]] = []
        self.v6: list[tuple[int, int]] = []
        self.all4 = self.all6 = False
        for net in networks:
            net = ipaddress.ip_network(net, strict=False)
            bits = 32 if net.version == 4 else 128
            mask = ((1 << net.prefixlen) - 1) << (bits - net.prefixlen)
            (self.v4 if net.version == 4 else self.v6).append(
                (int(net.network_address), mask))
            if net.prefixlen == 0:
                if net.version == 4:
                    self.all4 = True
                else:
                    self.all6 = True

    def contains(self, packet, offset4: int, offset6: int) -> bool:
        version = packet[0] >> 4
        if version == 4:
            if self.all4:
                return True
            addr = int.from_bytes(packet[offset4:offset4 + 4], "big")
            return any(addr & mask == net for net, mask in self.v4)
        if version == 6:
            if self.all6:
                return True
            addr = int.from_bytes(packet[offset6:offset6 + 16], "big")
            return any(addr & mask == net for net, mask in self.v6)
        return False


def tunnel_info(interface: WgInterfaceConfig, peer: WgPeerConfig) -> TunnelInfo:
    """What `probe` prints and the stack uses: our addresses, the peer's AllowedIPs as
    routes (a default route as redirect_gateway), MTU, DNS and search domains."""
    v4 = [a for a in interface.addresses if a.version == 4]
    v6 = [a for a in interface.addresses if a.version == 6]
    nets = [ipaddress.ip_network(n, strict=False) for n in peer.allowed_ips]
    default = any(n.prefixlen == 0 for n in nets)
    return TunnelInfo(
        kind="wireguard", server="",
        virtual_ip=str(v4[0].ip) if v4 else "",
        netmask=str(v4[0].netmask) if v4 else "",
        gateway=None,
        routes=[str(n) for n in nets if n.version == 4 and n.prefixlen],
        mtu=interface.mtu or DEFAULT_MTU,
        dns=[str(d) for d in interface.dns],
        cipher=CIPHER,
        virtual_ip6=str(v6[0].ip) if v6 else None,
        prefix6=v6[0].network.prefixlen if v6 else None,
        routes6=[str(n) for n in nets if n.version == 6 and n.prefixlen],
        redirect_gateway=default,
        domains=list(interface.dns_search))


class WireGuardSession:
    """One peer of a WireGuard interface (see the module's docstring).

    ``initiate``: start a handshake at once (a client; False: wait to be contacted,
    the server's role, as tests use it).  ``peer_name``: how messages name the peer
    (its endpoint).  ``under_load``: a responder's question "answer initiations with
    a cookie reply now?" (tests; None: never), with ``source`` the bytes of the
    peer's address the cookie is bound to.
    """

    def __init__(self, interface: WgInterfaceConfig, peer: WgPeerConfig, now: float, *,
                 rng: Callable[[int], bytes] = os.urandom,
                 wall_clock: Callable[[], float] = time.time, peer_name: str = "",
                 initiate: bool = True, under_load: Callable[[], bool] | None = None,
                 source: bytes = b""):
        self.interface = interface
        self.peer = peer
        self.rng = rng
        self.wall_clock = wall_clock
        self.peer_name = peer_name or (f"{peer.endpoint[0]}:{peer.endpoint[1]}"
                                       if peer.endpoint else "the peer")
        self.counters = WgCounters()
        self._static = PrivateKey(interface.private_key)
        self._mac1_to_peer = mac1_key(peer.public_key)
        self._mac1_to_us = mac1_key(self._static.public)
        self._jar = CookieJar(peer.public_key)
        self._checker = CookieChecker(self._static.public, rng, now) if under_load else None
        self._under_load = under_load
        self._source = source
        self._allowed = _Nets(peer.allowed_ips)
        self._mtu = interface.mtu or DEFAULT_MTU
        self._info = tunnel_info(interface, peer)
        self._events: deque = deque()
        self._out: list[bytes] = []
        self._staged: deque[bytes] = deque(maxlen=STAGED_MAX)
        self._by_index: dict[int, object] = {}
        self.current: Keypair | None = None
        self.previous: Keypair | None = None
        self.next: Keypair | None = None
        self._handshake: Handshake | None = None
        self._attempt_started: float | None = None
        self._retry_at: float | None = None
        self._keepalive_at: float | None = None
        self._new_handshake_at: float | None = None
        self._last_sent = now
        self._last_minute_sent = False       # the rekey-on-receive handshake was sent
        self._last_timestamp = b""           # of the peer's last initiation
        self._last_initiation = -1e9
        self._started = now
        self._connected = False
        self._finished = False
        self._answered = False
        self._keepalive = peer.persistent_keepalive or None
        if initiate:
            self._initiate(now)

    # -- the contract -------------------------------------------------------------------------

    @property
    def established(self) -> bool:
        return self._connected and not self._finished

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def answered(self) -> bool:
        return self._answered

    @property
    def public_key(self) -> bytes:
        return self._static.public

    def next_event(self):
        return self._events.popleft() if self._events else None

    def datagrams_to_send(self, now: float) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        if self._finished:
            return None
        deadlines = [t for t in (self._retry_at, self._keepalive_at, self._new_handshake_at)
                     if t is not None]
        if self._keepalive and self.current is not None:
            deadlines.append(self._last_sent + self._keepalive)
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        if self._finished:
            return
        if self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
            if now - self._attempt_started >= REKEY_ATTEMPT_TIME:
                self._give_up(now)
                return
            self.counters.handshake_retries += 1
            self._initiate(now, retry=True)
        if self._new_handshake_at is not None and now >= self._new_handshake_at:
            self._new_handshake_at = None
            self._events.append(Note(f"no answer from {self.peer_name} for "
                                     f"{KEEPALIVE_TIMEOUT + REKEY_TIMEOUT:.0f} s after data "
                                     "was sent: a new handshake", logging.INFO))
            self._initiate(now)
        if self._keepalive_at is not None and now >= self._keepalive_at:
            self._keepalive_at = None
            self._send_keepalive(now)
        if self._keepalive and self.current is not None and \
                now >= self._last_sent + self._keepalive:
            self._send_keepalive(now)

    def close(self, now: float) -> None:
        """WireGuard has no goodbye: forget the keys, and Closed."""
        if self._finished:
            return
        self._forget_keys()
        self._finished = True
        self._events.append(Closed("closed"))

    def connect_timeout(self) -> tuple[Stage, str]:
        if self._answered or self.counters.cookies_received:
            return Stage.TIMEOUT, f"the handshake with {self.peer_name} did not complete"
        return Stage.UNREACHABLE, no_response_message(self.peer_name)

    # -- sending ------------------------------------------------------------------------------

    def send_packet(self, packet: bytes | memoryview, now: float) -> bytes | None:
        if self._finished or not packet:
            return None
        if not self._allowed.contains(packet, 16, 24):
            self.counters.policy_out += 1
            return None
        kp = self.current
        if kp is None or now - kp.created >= REJECT_AFTER_TIME or \
                kp.counter >= REJECT_AFTER_MESSAGES:
            self._stage(bytes(packet), now)
            return None
        datagram = self._seal(kp, packet, now)
        if kp.initiator and (now - kp.created >= REKEY_AFTER_TIME
                             or kp.counter >= REKEY_AFTER_MESSAGES):
            self._initiate(now)
        if self._new_handshake_at is None:
            self._new_handshake_at = now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT
        return datagram

    def _seal(self, kp: Keypair, packet, now: float) -> bytes:
        length = len(packet)
        pad = -length % 16
        if pad and length + pad > self._mtu:
            pad = max(0, self._mtu - length)
        plain = bytes(packet) + bytes(pad) if pad else packet
        counter = kp.counter
        kp.counter = counter + 1
        sealed = kp.send.encrypt(_NONCE_PAD + counter.to_bytes(8, "little"), plain, None)
        self._last_sent = now
        self._keepalive_at = None            # anything authentic sent answers the peer
        c = self.counters
        if length:
            c.bytes_out += length
            c.packets_out += 1
        return wire.build_transport_header(kp.remote_index, counter) + sealed

    def _send_keepalive(self, now: float) -> None:
        kp = self.current
        if kp is None or now - kp.created >= REJECT_AFTER_TIME:
            return
        self._out.append(self._seal(kp, b"", now))
        self.counters.keepalives_sent += 1

    def _stage(self, packet: bytes, now: float) -> None:
        if len(self._staged) == STAGED_MAX:
            self.counters.staged_dropped += 1      # the oldest goes (deque maxlen)
        self._staged.append(packet)
        self.counters.staged += 1
        self._initiate(now)

    def _flush_staged(self, now: float) -> None:
        kp = self.current
        while self._staged and kp is not None:
            self._out.append(self._seal(kp, self._staged.popleft(), now))
        if self._out == [] and kp is not None:
            pass

    # -- handshakes ---------------------------------------------------------------------------

    def _new_index(self) -> int:
        while True:
            index = int.from_bytes(self.rng(4), "little")
            if index not in self._by_index:
                return index

    def _ephemeral(self) -> PrivateKey:
        return PrivateKey(self.rng(32))

    def _initiate(self, now: float, *, retry: bool = False) -> None:
        """Send a handshake initiation, unless one is in flight (retries come from the
        timer)."""
        if self._finished or (self._handshake is not None and not retry):
            return
        if not retry:
            self._attempt_started = now
        old = self._handshake
        if old is not None:
            self._by_index.pop(old.local_index, None)
        hs = Handshake(self._static, self.peer.public_key, self.peer.preshared_key)
        index = self._new_index()
        message = hs.create_initiation(index, self._ephemeral(), tai64n(self.wall_clock()))
        data = add_macs(message, self._mac1_to_peer, self._jar.current(now))
        hs.mac1 = data[wire.MAC1_OFFSET_INITIATION:wire.MAC1_OFFSET_INITIATION + 16]
        self._handshake = hs
        self._by_index[index] = hs
        self._out.append(data)
        self._last_sent = now
        self.counters.handshakes_sent += 1
        jitter = int.from_bytes(self.rng(2), "little") / 65536 * REKEY_JITTER
        self._retry_at = now + REKEY_TIMEOUT + jitter

    def _give_up(self, now: float) -> None:
        self._finished = True
        self._forget_keys()
        if self._connected:
            self._events.append(Failed(Stage.TIMEOUT, no_response_message(self.peer_name)
                                       + f" (no new handshake in {REKEY_ATTEMPT_TIME:.0f} s)"))
        else:
            stage, why = self.connect_timeout()
            self._events.append(Failed(stage, why))

    def _forget_keys(self) -> None:
        self.current = self.previous = self.next = None
        self._handshake = None
        self._by_index.clear()
        self._staged.clear()
        self._retry_at = self._keepalive_at = self._new_handshake_at = None

    def _install(self, kp: Keypair, now: float) -> None:
        """A new keypair we initiated: current at once; the old current stays previous."""
        old_previous = self.previous
        if old_previous is not None:
            self._by_index.pop(old_previous.local_index, None)
        if self.next is not None:          # a crossing handshake of the peer's: superseded
            self._by_index.pop(self.next.local_index, None)
            self.next = None
        self.previous, self.current = self.current, kp
        self._by_index[kp.local_index] = kp
        self._handshake_done(now)

    def _handshake_done(self, now: float) -> None:
        self.counters.handshakes_completed += 1
        self._retry_at = None
        self._last_minute_sent = False
        setup = (now - self._started) * 1000
        if not self._connected:
            self._connected = True
            self._info.setup_ms = round(setup, 1)
            self._events.append(Connected(self._info))
        else:
            self._events.append(Rekeyed("keypair", f"with {self.peer_name}"))

    def _on_response(self, data: bytes, now: float) -> None:
        if not check_mac1(data, self._mac1_to_us):
            self.counters.bad_mac += 1
            return
        hs = self._handshake
        if hs is None:
            self.counters.unknown_index += 1
            return
        try:
            keys = hs.consume_response(data)
        except HandshakeError as exc:
            setattr(self.counters, exc.reason, getattr(self.counters, exc.reason) + 1)
            return
        self._answered = True
        self._by_index.pop(hs.local_index, None)
        self._handshake = None
        self._install(Keypair(keys, now), now)
        self._authentic_in(now)
        if self._staged:
            self._flush_staged(now)
        else:
            self._send_keepalive(now)       # confirms the keypair to the responder

    def _on_cookie(self, data: bytes, now: float) -> None:
        receiver = int.from_bytes(bytes(data[4:8]), "little")
        hs = self._handshake
        if hs is None or receiver != hs.local_index:
            self.counters.unknown_index += 1
            return
        try:
            self._jar.consume(data, hs.mac1, now)
        except HandshakeError as exc:
            setattr(self.counters, exc.reason, getattr(self.counters, exc.reason) + 1)
            return
        self.counters.cookies_received += 1
        self._events.append(Note(f"{self.peer_name} is under load: it sent a cookie; "
                                 "the next handshake carries it", logging.INFO))

    def _on_initiation(self, data: bytes, now: float) -> None:
        if not check_mac1(data, self._mac1_to_us):
            self.counters.bad_mac += 1
            return
        if self._checker is not None and self._under_load():
            if not self._checker.check_mac2(data, self._source, now):
                sender = int.from_bytes(data[4:8], "little")
                self._out.append(self._checker.reply(data, sender, self._source, now))
                return
        if now - self._last_initiation < INITIATION_RATE:
            self.counters.flood += 1
            return

        def psk_of(public: bytes):
            if public != self.peer.public_key:
                raise HandshakeError("unknown_peer", "an initiation from a key that is not "
                                     "our peer's")
            return self.peer.preshared_key

        try:
            hs, _ = Handshake.consume_initiation(self._static, data, psk_of)
        except HandshakeError as exc:
            setattr(self.counters, exc.reason, getattr(self.counters, exc.reason) + 1)
            return
        if hs.timestamp <= self._last_timestamp:
            self.counters.replayed_timestamp += 1
            return
        self._last_timestamp = hs.timestamp
        self._last_initiation = now
        self._answered = True
        index = self._new_index()
        message, keys = hs.create_response(index, self._ephemeral())
        self._out.append(add_macs(message, self._mac1_to_peer, self._jar.current(now)))
        self._last_sent = now
        if self.next is not None:
            self._by_index.pop(self.next.local_index, None)
        kp = Keypair(keys, now)
        self.next = kp
        self._by_index[index] = kp
        self.counters.handshakes_answered += 1

    # -- receiving ----------------------------------------------------------------------------

    def _authentic_in(self, now: float) -> None:
        self._new_handshake_at = None

    def receive_datagram(self, data: bytes | memoryview, now: float):
        if self._finished:
            return ()
        try:
            kind = wire.message_type(data)
            if kind == wire.TRANSPORT:
                return self._on_transport(data, now)
            if kind == wire.RESPONSE:
                if len(data) != wire.RESPONSE_LEN:
                    raise ParseError("a handshake response of the wrong size")
                self._on_response(bytes(data), now)
            elif kind == wire.INITIATION:
                if len(data) != wire.INITIATION_LEN:
                    raise ParseError("a handshake initiation of the wrong size")
                self._on_initiation(bytes(data), now)
            elif kind == wire.COOKIE_REPLY:
                if len(data) != wire.COOKIE_REPLY_LEN:
                    raise ParseError("a cookie reply of the wrong size")
                self._on_cookie(bytes(data), now)
            else:
                raise ParseError(f"WireGuard message type {kind}")
        except ParseError:
            self.counters.malformed += 1
        return ()

    def _on_transport(self, data, now: float):
        c = self.counters
        receiver, counter = wire.parse_transport_header(data)
        kp = self._by_index.get(receiver)
        if not isinstance(kp, Keypair):
            c.unknown_index += 1
            return ()
        if now - kp.created >= REJECT_AFTER_TIME or counter >= REJECT_AFTER_MESSAGES:
            c.expired += 1
            return ()
        pid = counter + 1
        if not kp.replay.check(pid):
            c.replayed += 1
            return ()
        try:
            plain = kp.receive.decrypt(_NONCE_PAD + counter.to_bytes(8, "little"),
                                       data[wire.TRANSPORT_HEADER_LEN:], None)
        except InvalidTag:
            c.auth_failed += 1
            return ()
        kp.replay.update(pid)
        self._answered = True
        self._authentic_in(now)
        if kp is self.next:                          # the peer's handshake: confirmed
            if self.previous is not None:
                self._by_index.pop(self.previous.local_index, None)
            self.previous, self.current, self.next = self.current, kp, None
            if self._handshake is not None:          # ours crossed it: no longer needed
                self._by_index.pop(self._handshake.local_index, None)
                self._handshake = None
            self._handshake_done(now)
            self._flush_staged(now)
        cur = self.current
        if cur is not None and cur.initiator and self._handshake is None and \
                not self._last_minute_sent and \
                now - cur.created >= REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT:
            self._last_minute_sent = True
            self._initiate(now)
        if not plain:
            c.keepalives_received += 1
            return ()
        version = plain[0] >> 4
        if version == 4 and len(plain) >= 20:
            length = int.from_bytes(plain[2:4], "big")
        elif version == 6 and len(plain) >= 40:
            length = 40 + int.from_bytes(plain[4:6], "big")
        else:
            c.malformed += 1
            return ()
        if length > len(plain) or (version == 4 and length < 20):
            c.malformed += 1
            return ()
        packet = plain[:length] if length != len(plain) else plain
        if not self._allowed.contains(packet, 12, 8):
            c.policy_in += 1
            return ()
        if self._keepalive_at is None:
            self._keepalive_at = now + KEEPALIVE_TIMEOUT
        c.bytes_in += length
        c.packets_in += 1
        return (packet,)
