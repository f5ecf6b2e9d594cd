"""OpenVPN static-key (pre-shared ``secret``) mode: a sans-IO session.

No TLS, no control channel, no opcode byte: every datagram is a data packet
protected with a slice of the 2048-bit pre-shared key (crypto.c
``openvpn_encrypt_v1`` / ``openvpn_decrypt_v1``; init.c ``do_init_crypto_static``
sets ``CO_PACKET_ID_LONG_FORM``)::

    CBC cipher:         HMAC(IV || ciphertext) | IV | CBC(packet_id(4) | time(4) | payload)
    cipher none + auth: HMAC(packet_id | time | payload) | packet_id(4) | time(4) | payload
    cipher none, auth none:                               packet_id(4) | time(4) | payload

``IV`` is random (a cipher block: 16 bytes for AES, 8 for BF-CBC), CBC uses PKCS#7 padding, the
HMAC covers everything after it.  ``packet_id`` starts at 1; ``time`` is the
sender's wall clock (seconds, u32) at its first packet and stays fixed until the
packet id wraps (packet_id.c ``packet_id_send_update``).  The receiver accepts a
new ``time`` as a new sequence and refuses an older one; inside one ``time`` a
sliding window (``replay-window`` n, default 64) and a time window (its second
argument, default 15 s) refuse replays (packet_id.c ``packet_id_test`` /
``packet_id_add`` / ``packet_id_reap``).

2.6 refuses AEAD ciphers in this mode (crypto.c ``init_key_type`` with
``tls_mode`` false: "Cipher '...' mode not supported"), and defaults to BF-CBC
when no ``cipher`` is given, as erebus does: any CBC cipher of
:mod:`erebus.openvpn.algorithms` (AES, BF, CAST5, 3DES, Camellia, SEED ...) or ``none``.

Keepalive pings and OCC messages (occ.c) travel inside the data channel, as in TLS
mode.  A 2.6 peer pings right away and every ``ping`` seconds, and sends
``OCC_REQUEST`` 10 s after start (then every 10 s, 12 tries) until it gets an
``OCC_REPLY`` carrying our options string, which it compares with the one it
expects; we do the same (our first ``OCC_REQUEST`` goes out at once, so the first
answer proves that the key and cipher match).  ``OCC_EXIT`` from the peer ends the
session (``Failed("restart", ...)``: a stock client restarts then);
:meth:`StaticKeySession.close` sends one.

There is no handshake: the session is established (``Connected``) as soon as it is
created.  The first authentic packet from the peer is logged and sets
``remote_session_id`` to :data:`PEER_SEEN`; with ``ping_restart`` set, no authentic
packet for that long fails the session (``Failed("ping-restart", ...)``).

The public surface is that of :class:`erebus.openvpn.session.ClientSession` as
the runtime (``erebus.runtime.openvpn``) drives it.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import struct
import time
from collections import deque
from dataclasses import dataclass, field

from ..counters import CountersDict
from ..crypto.aead import AEAD_CIPHERS
from ..crypto.replay import PacketIdWindow, next_packet_id
from ..crypto.seal import (AuthenticationError, CbcHmacSeal, PaddingError, SealedLengthError,
                           pkcs7_padding, pkcs7_unpadded_len)
from ..errors import ConfigError, SessionError
from .algorithms import AlgorithmError, cbc_cipher, make_cbc
from .algorithms import digest as digest_spec
from .data import (CBC_CIPHERS, DIGESTS, KEEPALIVE, OCC_EXIT, OCC_MAGIC, cbc_spec,
                   is_insecure, normalize_cipher, normalize_digest, sweet32_warning)
from . import block6
from .block6 import LOCAL_PACKETS_MAX
from .push import PushedOptions, Route
from ..session import Closed, Failed, Stage
from .session import Connected, ServerMessage, State, tunnel_info
from .statickey import STATIC_KEY_LEN, key_slices

log = logging.getLogger("erebus.openvpn")

__all__ = ["StaticKeySettings", "StaticKeySession", "StaticCounters", "PEER_SEEN",
           "OCC_REQUEST", "OCC_REPLY", "OCC_MTU_LOAD_REQUEST", "OCC_MTU_LOAD", "OCC_MTU_REQUEST", "OCC_MTU_REPLY", "OCC_EXIT", "options_string",
           "static_link_mtu", "check_static_cipher"]

# occ.h
OCC_REQUEST = 0
OCC_REPLY = 1
OCC_MTU_LOAD_REQUEST = 2
OCC_MTU_LOAD = 3
OCC_MTU_REQUEST = 4
OCC_MTU_REPLY = 5
OCC_INTERVAL = 10.0          # OCC_INTERVAL_SECONDS
OCC_TRIES = 12               # OCC_N_TRIES

PEER_SEEN = b"static-key peer"      # remote_session_id once the peer proved its key
DEFAULT_CIPHER = "BF-CBC"             # options.c options_postprocess_cipher (no pull)
_PID = struct.Struct("!II")          # packet id, time (long form)


def check_static_cipher(cipher: str | None, auth: str | None) -> tuple[str, str | None]:
    """(cipher, digest or None) for static-key mode, or :class:`ConfigError` saying why not.

    No ``cipher`` is BF-CBC, 2.6's default without pull (options.c
    ``options_postprocess_cipher``); any CBC cipher of :mod:`.algorithms` works, by any
    of its names."""
    name = normalize_cipher(cipher or DEFAULT_CIPHER)
    if name in AEAD_CIPHERS or name.endswith("-GCM"):
        raise ConfigError(f"{name} is an AEAD cipher, which static-key mode cannot use "
                          "(OpenVPN 2.6 refuses it too: \"mode not supported\"); use "
                          "AES-256-CBC", option="cipher")
    if name != "none" and name not in CBC_CIPHERS:
        try:
            cbc_cipher(name)
        except AlgorithmError as exc:
            raise ConfigError(f"{exc} (static-key mode takes a CBC cipher or none)",
                              option="cipher") from None
    digest = normalize_digest(auth or "SHA1")
    if digest is not None and digest not in DIGESTS:
        try:
            digest_spec(auth or "SHA1")
        except AlgorithmError as exc:
            raise ConfigError(f"auth {auth}: {exc}", option="auth") from None
    return name, digest


def static_link_mtu(cipher: str, digest: str | None, tun_mtu: int) -> int:
    """The ``link-mtu`` OpenVPN 2.6 puts in a static-key UDP options string
    (mtu.c ``calc_options_string_link_mtu``): the tun MTU plus the long packet id,
    and for CBC a cipher block and the IV, plus the HMAC."""
    mtu = tun_mtu + _PID.size + (DIGESTS[digest] if digest else 0)
    if cipher in CBC_CIPHERS:
        mtu += 2 * cbc_spec(cipher).block_len
    return mtu


def options_string(*, cipher: str, digest: str | None, tun_mtu: int, local_ip: str,
                   remote_ip: str, direction: int | None, remote: bool = False,
                   ipv6: bool = False) -> str:
    """options.c ``options_string`` for a static-key UDP tun peer.

    ``remote=False``: what we send in ``OCC_REPLY``; ``remote=True``: what we expect
    the peer's ``OCC_REPLY`` to say.  For a p2p tun the ifconfig part is
    "<peer address> <own address>" (tun.c ``ifconfig_options_string``).
    """
    if remote:
        local_ip, remote_ip = remote_ip, local_ip
        if direction is not None:
            direction = 1 - direction
    parts = ["V4", "dev-type tun", f"link-mtu {static_link_mtu(cipher, digest, tun_mtu)}",
             f"tun-mtu {tun_mtu}", "proto UDPv4",
             *(("tun-ipv6",) if ipv6 else ()),     # options.c: p2p with ifconfig-ipv6
             f"ifconfig {remote_ip} {local_ip}"]
    if direction is not None:
        parts.append(f"keydir {direction}")
    keysize = CBC_CIPHERS[cipher] * 8 if cipher in CBC_CIPHERS else 0
    parts += [f"cipher {cipher if cipher != 'none' else '[null-cipher]'}",
              f"auth {digest or '[null-digest]'}", f"keysize {keysize}", "secret"]
    return ",".join(parts)


def _options_differences(ours: str, theirs: str) -> list[str]:
    """Human-readable differences between two options strings (options.c
    ``options_warning``)."""
    def split(s: str) -> dict[str, str]:
        out = {}
        for item in s.split(","):
            item = item.strip()
            if item:
                out[item.split(" ", 1)[0]] = item
        return out
    mine, peer = split(ours), split(theirs)
    diffs = []
    for key in sorted(set(mine) | set(peer)):
        if mine.get(key) != peer.get(key):
            diffs.append(f"'{key}': expected {mine.get(key)!r}, the peer has "
                         f"{peer.get(key)!r}")
    return diffs


# -- settings, counters ----------------------------------------------------------------

@dataclass(slots=True)
class StaticKeySettings:
    """What a static-key profile says (``secret``, ``key-direction``, ``cipher``,
    ``auth``, ``ifconfig LOCAL REMOTE``, ``tun-mtu``, ``ping``/``ping-restart`` or
    ``keepalive``, ``replay-window N [T]``, ``route``)."""

    key: bytes                              # the 256 bytes of the static key
    direction: int | None = None            # key-direction 0 / 1, or None (bidirectional)
    cipher: str | None = None               # a CBC cipher or none; None: BF-CBC (2.6)
    auth: str = "SHA1"                      # OpenVPN's default
    local_ip: str | None = None             # ifconfig LOCAL (our tunnel address)
    remote_ip: str | None = None            # ifconfig REMOTE (the peer's tunnel address)
    tun_mtu: int = 1500
    ping: int | None = None
    ping_restart: int | None = None
    replay_window: int = 64
    replay_time: int = 15                   # replay-window's second argument
    routes: list[Route] = field(default_factory=list)    # the profile's route lines
    dns: list[str] = field(default_factory=list)
    ifconfig_ipv6: tuple[str, int, str] | None = None    # ifconfig-ipv6 LOCAL[/BITS] REMOTE
    routes_ipv6: list = field(default_factory=list)      # push.Route6, route-ipv6 lines
    route_ipv6_gateway: str | None = None
    block_ipv6: bool = False

    def __repr__(self) -> str:             # never print key material
        return (f"StaticKeySettings(direction={self.direction!r}, cipher={self.cipher!r}, "
                f"auth={self.auth!r}, local_ip={self.local_ip!r}, "
                f"remote_ip={self.remote_ip!r})")


@dataclass(slots=True)
class StaticCounters(CountersDict):
    """The fields of :class:`erebus.openvpn.session.Counters`, and more."""

    dropped_malformed: int = 0       # too short, bad CBC length, no packet id, bad OCC
    dropped_session: int = 0         # (always 0: kept for parity with TLS mode)
    dropped_data_auth: int = 0       # HMAC mismatch
    dropped_decrypt: int = 0         # authentic but does not decrypt (cipher mismatch?)
    dropped_replay: int = 0
    dropped_before_established: int = 0
    control_retransmits: int = 0     # (no control channel)
    keepalives_in: int = 0
    keepalives_out: int = 0
    occ_in: int = 0
    occ_out: int = 0
    occ_ignored: int = 0             # OCC messages we do not act on (MTU load tests, unknown)
    packets_in: int = 0
    packets_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    dropped_packet_id_exhausted: int = 0    # not sent: packet id at its end in this second
    dropped_block_ipv6: int = 0      # IPv6 not sent under block-ipv6 (answered locally)



# -- the session -----------------------------------------------------------------------

class _Drop(Exception):
    def __init__(self, counter: str, reason: str):
        self.counter = counter
        self.reason = reason


class StaticKeySession:
    """A static-key OpenVPN peer, sans-IO; same surface as ``ClientSession``::

        s = StaticKeySession(settings, now)
        s.receive_datagram(data, now)  -> inbound IP packets
        s.datagrams_to_send(now)       -> OCC requests/replies, keepalives due
        s.get_timer() / s.handle_timer(now)
        s.next_event()                 -> Connected (at once), Failed, Closed, ServerMessage
        s.send_packet(packet, now)     -> one datagram
        s.close(now)                   -> OCC exit (in datagrams_to_send), then Closed

    ``clock`` gives the wall-clock seconds for the packet-id ``time`` field;
    ``rng`` the CBC IVs.
    """

    def __init__(self, settings: StaticKeySettings, now: float, *, rng=os.urandom,
                 clock=time.time):
        st = self.settings = settings
        cipher, digest = check_static_cipher(st.cipher, st.auth)
        if len(st.key) != STATIC_KEY_LEN:
            raise ConfigError(f"a static key is {STATIC_KEY_LEN} bytes, not {len(st.key)}",
                              option="secret")
        if st.direction not in (None, 0, 1):
            raise ConfigError(f"key direction must be 0, 1 or absent, not {st.direction!r}",
                              option="key-direction")
        for what, value in (("local", st.local_ip), ("remote", st.remote_ip)):
            try:
                ipaddress.IPv4Address(value or "")
            except ValueError:
                raise ConfigError(f"static-key mode needs 'ifconfig LOCAL REMOTE' (IPv4): "
                                  f"bad or missing {what} address {value!r}",
                                  option="ifconfig") from None
        log.warning("static-key mode ('secret') is deprecated: OpenVPN 2.6 warns about it "
                    "and 2.7 removes it; no forward secrecy, one key for every session. "
                    "Move to TLS (e.g. peer-fingerprint) when you can")
        if cipher == "none":
            log.warning("static-key mode with 'cipher none': the tunnel is NOT encrypted")
        if digest is None:
            log.warning("static-key mode with 'auth none': packets are NOT authenticated")
        if is_insecure(cipher):
            log.warning("%s", sweet32_warning(cipher))
        self._clock = clock
        self.cipher = cipher
        self.auth = digest or "none"
        self._cbc = cipher in CBC_CIPHERS
        out, inc = key_slices(bytes(st.key), st.direction)
        spec = cbc_spec(cipher) if self._cbc else None
        klen = spec.key_len if spec else 0
        self._block = spec.block_len if spec else 1
        hlen = DIGESTS[digest] if digest else 0
        md = digest_spec(digest).hashlib_name if digest else "sha1"

        def sealer(half):
            return CbcHmacSeal(half.cipher[:klen] if klen else None,
                               half.hmac[:hlen] if digest else None, digest=md,
                               tag_len=None, tag_first=True, rng=rng,
                               cipher=(lambda key: make_cbc(spec, key)) if spec else None,
                               cipher_name=cipher.lower())
        self._seal, self._open = sealer(out), sealer(inc)
        self.replay = PacketIdWindow(st.replay_window, st.replay_time)
        self._send_id = 0
        self._send_time: int | None = None
        self.state = State.ESTABLISHED
        self.remote_session_id: bytes | None = None
        self.session_id = b""
        self.tls_info = None
        self.renegotiations = 0
        self.counters = StaticCounters()
        self.started = now
        self._events: deque = deque()
        self._outbox: deque[bytes] = deque()        # plaintext payloads (OCC) to send
        self._local_in: deque[bytes] = deque()      # block-ipv6 answers, LOCAL_PACKETS_MAX
        self._last_in = now
        self._last_out = now
        self._ping_interval = float(st.ping) if st.ping else None
        self._ping_restart = float(st.ping_restart) if st.ping_restart else None
        self._occ_tries = 0
        self._occ_next: float | None = now           # our OCC_REQUEST: at once
        self._max_recv = self._max_send = 0
        self.local_options = options_string(cipher=cipher, digest=digest, tun_mtu=st.tun_mtu,
                                            local_ip=st.local_ip, remote_ip=st.remote_ip,
                                            direction=st.direction,
                                            ipv6=st.ifconfig_ipv6 is not None)
        self.expected_remote_options = options_string(
            cipher=cipher, digest=digest, tun_mtu=st.tun_mtu, local_ip=st.local_ip,
            remote_ip=st.remote_ip, direction=st.direction, remote=True,
            ipv6=st.ifconfig_ipv6 is not None)
        self.peer_options: str | None = None
        self.pushed = PushedOptions(ifconfig=(st.local_ip, st.remote_ip), topology="p2p",
                                    routes=list(st.routes), dns=list(st.dns),
                                    tun_mtu=st.tun_mtu, cipher=cipher,
                                    ping=st.ping, ping_restart=st.ping_restart,
                                    ifconfig_ipv6=st.ifconfig_ipv6,
                                    routes_ipv6=list(st.routes_ipv6),
                                    route_ipv6_gateway=st.route_ipv6_gateway,
                                    block_ipv6=st.block_ipv6)
        self._data_out: list[bytes] = []            # sealed datagrams due (keepalive, exit)
        self._events.append(Connected(tunnel_info(self.pushed, cipher, 0.0, st.tun_mtu),
                                      self.pushed))
        log.info("static-key session: %s <-> %s, cipher %s, auth %s, key direction %s",
                 st.local_ip, st.remote_ip, cipher, self.auth,
                 "bidirectional" if st.direction is None else st.direction)

    # -- public API -----------------------------------------------------------------------

    @property
    def established(self) -> bool:
        return self.state is State.ESTABLISHED

    @property
    def finished(self) -> bool:
        return self.state in (State.CLOSED, State.FAILED)

    @property
    def answered(self) -> bool:
        return self.remote_session_id is not None

    def next_event(self):
        return self._events.popleft() if self._events else None

    def connect_timeout(self) -> tuple[Stage, str]:
        return Stage.UNREACHABLE, "no answer from the server"    # Connected comes at once

    def control_idle(self) -> bool:
        return True

    def receive_datagram(self, data: bytes | memoryview, now: float) -> list[bytes]:
        """One datagram from the peer; the IP packets it carries (zero or one)."""
        if self.finished:
            return []
        try:
            payload = self._decrypt(data, now)
        except _Drop as drop:
            setattr(self.counters, drop.counter, getattr(self.counters, drop.counter) + 1)
            log.debug("dropped static-key packet: %s", drop.reason)
            return []
        self._last_in = now
        self._max_recv = max(self._max_recv, len(data))
        if self.remote_session_id is None:
            self.remote_session_id = PEER_SEEN
            log.info("first authentic packet from the static-key peer after %.1f s: key, "
                     "cipher and auth match", now - self.started)
        c = self.counters
        c.packets_in += 1
        c.bytes_in += len(payload)
        if payload == KEEPALIVE:
            c.keepalives_in += 1
            return []
        if payload[:16] == OCC_MAGIC:
            self._receive_occ(payload[16:], now)
            return []
        if not payload:
            return []
        return [payload]

    def datagrams_to_send(self, now: float) -> list[bytes]:
        out, self._data_out = self._data_out, []
        if self.state is not State.ESTABLISHED:
            return out
        if self._occ_next is not None and now >= self._occ_next:
            self._queue_occ_request(now)
        out += [d for d in map(self._encrypt, self._outbox) if d is not None]
        self._outbox.clear()
        if out:
            self._last_out = now
        return out

    def get_timer(self) -> float | None:
        if self.state is not State.ESTABLISHED:
            return None
        deadlines = [self._occ_next]
        if self._ping_interval:
            deadlines.append(self._last_out + self._ping_interval)
        if self._ping_restart:
            deadlines.append(self._last_in + self._ping_restart)
        deadlines = [d for d in deadlines if d is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        """Deadlines that passed: ping-restart, keepalive, OCC requests (what they make
        is in :meth:`datagrams_to_send`)."""
        if self.state is not State.ESTABLISHED:
            return
        if self._ping_restart and now >= self._last_in + self._ping_restart:
            what = ("no authentic packet from the peer" if self.remote_session_id is None
                    else "no packet from the peer")
            self._fail("ping-restart", f"{what} for {self._ping_restart:.0f} s "
                       "(ping-restart); with a static key, check that both ends use the "
                       "same key, key direction, cipher and auth")
            return
        if self._occ_next is not None and now >= self._occ_next:
            self._queue_occ_request(now)
        if self._ping_interval and now >= self._last_out + self._ping_interval:
            datagram = self._encrypt(KEEPALIVE)
            if datagram is not None:
                self._data_out.append(datagram)
                self.counters.keepalives_out += 1
            self._last_out = now

    def send_packet(self, packet: bytes | memoryview, now: float | None = None) -> bytes | None:
        """Encrypt one IP packet into a datagram; None when it cannot be sent (the packet
        id space ran out within one second: dropped and counted)."""
        if self.state is not State.ESTABLISHED:
            raise SessionError("state", f"no data in state {self.state.value}")
        if self.pushed.block_ipv6 and block6.is_ipv6_packet(packet):
            self.counters.dropped_block_ipv6 += 1
            reply = block6.unreachable_reply(packet, self.pushed.gateway6)
            if reply is not None and len(self._local_in) < LOCAL_PACKETS_MAX:
                self._local_in.append(reply)
            return None
        if now is not None:
            self._last_out = now
        return self._encrypt(packet)

    def local_packets(self) -> list[bytes]:
        """block-ipv6's ICMPv6 answers for the stack, taken once (as ClientSession)."""
        out = list(self._local_in)
        self._local_in.clear()
        return out

    def close(self, now: float) -> None:
        """Tell the peer we leave (OCC exit, in :meth:`datagrams_to_send`); the session
        is then closed."""
        if self.finished:
            return
        exit_ = self._encrypt(OCC_MAGIC + bytes((OCC_EXIT,)))
        if exit_ is not None:
            self._data_out.append(exit_)
        self.counters.occ_out += 1
        self._outbox.clear()
        self._finish("closed by us")

    # -- crypto ---------------------------------------------------------------------------

    def _encrypt(self, payload: bytes | memoryview) -> bytes | None:
        """``[HMAC] | [IV | CBC](packet id | time | payload)`` (crypto.c
        ``openvpn_encrypt_v1``); None, counted, when the packet id space of this second
        is used up (2.6 drops the packet too: "ENCRYPT ERROR: packet ID roll over")."""
        c = self.counters
        nxt = next_packet_id(self._send_id, self._send_time, self._clock)
        if nxt is None:
            c.dropped_packet_id_exhausted += 1
            log.debug("dropped outgoing packet: packet ID roll over within one second")
            return None
        self._send_id, self._send_time = nxt
        c.packets_out += 1
        c.bytes_out += len(payload)
        pid = _PID.pack(*nxt)
        pad = pkcs7_padding(_PID.size + len(payload), self._block) if self._cbc else b""
        body = self._seal.seal(None, b"".join((pid, payload, pad)))
        self._max_send = max(self._max_send, len(body))
        return body

    def _decrypt(self, data: bytes | memoryview, now: float) -> bytes:
        try:
            plain = self._open.open(data)
            if self._cbc:
                plain = plain[:pkcs7_unpadded_len(plain, self._block)]
        except SealedLengthError as exc:
            raise _Drop("dropped_malformed", str(exc)) from None
        except AuthenticationError:
            raise _Drop("dropped_data_auth", "HMAC mismatch") from None
        except PaddingError:
            raise _Drop("dropped_decrypt", "bad CBC padding (cipher mismatch?)") from None
        if len(plain) < _PID.size:
            raise _Drop("dropped_malformed", "no packet id")
        pid, ptime = _PID.unpack_from(plain, 0)
        why = self.replay.check(pid, ptime, now)
        if why is not None:
            raise _Drop("dropped_replay", f"{why} (time {ptime})")
        self.replay.update(pid, ptime, now)
        return bytes(plain[_PID.size:])

    # -- OCC ------------------------------------------------------------------------------

    def _queue_occ_request(self, now: float) -> None:
        self._occ_tries += 1
        self._outbox.append(OCC_MAGIC + bytes((OCC_REQUEST,)))
        self.counters.occ_out += 1
        if self._occ_tries >= OCC_TRIES:
            self._occ_next = None
            log.info("no OCC reply from the static-key peer after %d requests",
                     self._occ_tries)
        else:
            self._occ_next = now + OCC_INTERVAL

    def _receive_occ(self, msg: bytes, now: float) -> None:
        c = self.counters
        if not msg:
            c.dropped_malformed += 1
            return
        c.occ_in += 1
        op = msg[0]
        if op == OCC_REQUEST:
            self._outbox.append(OCC_MAGIC + bytes((OCC_REPLY,)) + self.local_options.encode()
                                + b"\x00")
            c.occ_out += 1
        elif op == OCC_REPLY:
            text = msg[1:].split(b"\x00", 1)[0].decode("ascii", "replace")
            first = self.peer_options is None
            self.peer_options = text
            self._occ_next = None
            if first:
                diffs = _options_differences(self.expected_remote_options, text)
                if diffs:
                    log.warning("the static-key peer's options differ from ours: %s",
                                "; ".join(diffs))
                    self._events.append(ServerMessage(f"OCC: peer options {text}"))
                else:
                    log.info("the static-key peer's options match ours")
        elif op == OCC_MTU_REQUEST:
            self._outbox.append(OCC_MAGIC + bytes((OCC_MTU_REPLY,))
                                + struct.pack("!HH", min(self._max_recv, 0xFFFF),
                                              min(self._max_send, 0xFFFF)))
            c.occ_out += 1
        elif op == OCC_EXIT:
            # the stock client restarts (SIGUSR1 "remote-exit"): "restart" lets the
            # runtime reconnect
            self._fail("restart", "the peer announced that it exits or restarts (OCC exit)")
        else:
            # OCC_MTU_LOAD_REQUEST / OCC_MTU_LOAD / OCC_MTU_REPLY (--mtu-test) and
            # anything unknown: not acted on
            c.occ_ignored += 1
            log.debug("ignored OCC message %d from the peer", op)

    # -- endings --------------------------------------------------------------------------

    def _fail(self, stage: str, message: str) -> None:
        if self.finished:
            return
        log.debug("static-key session failed (%s): %s", stage, message)
        self.state = State.FAILED
        self._events.append(Failed(stage, message))

    def _finish(self, reason: str) -> None:
        if self.finished:
            return
        self.state = State.CLOSED
        self._events.append(Closed(reason))
