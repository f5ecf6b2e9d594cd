"""The OpenVPN client session: a sans-IO state machine.

Bytes and the current time go in; datagrams to send, events and the next
timer deadline come out (in the manner of aioquic's ``QuicConnection``)::

    s = ClientSession(settings, now, rng=rng)
    s.receive_datagram(data, now)   -> list of inbound IP packets (data channel)
    s.datagrams_to_send(now)        -> list of datagrams for the transport
    s.get_timer()                   -> the next deadline, or None
    s.handle_timer(now)
    s.next_event()                  -> Connected / Failed / Closed / ... or None
    s.send_packet(packet, now)      -> one datagram (after Connected)
    s.close(now)                    -> exit notification, then Closed

It is an :class:`erebus.session.Session`: the events are erebus.session's.

Stages: hard reset, TLS handshake, key method 2, PUSH_REQUEST / PUSH_REPLY,
established.  No data packet is sent or accepted before the session is
established.
"""

from __future__ import annotations

import datetime
import enum
import logging
import os
import re
import time
from collections import deque
from dataclasses import dataclass, field

from ..counters import CountersDict
from ..crypto.prf import KEY_BLOCK_LEN, openvpn_key_block
from ..errors import ParseError, SessionError
from ..session import Closed, Failed, Notice, Stage, TunnelInfo
from ..session import Connected as _Connected
from ..wire import openvpn as w
from . import block6, keymethod
from .block6 import LOCAL_PACKETS_MAX
from .challenge import CrText, DynamicChallenge, WebAuth, cr_response, parse_auth_pending, \
    parse_crv1, parse_info_pre, printable
from .compress import Compression, CompressionError
from .compress import peer_info as compression_peer_info
from .data import KEEPALIVE, OCC_EXIT, OCC_MAGIC, DataError, DataKey, \
    PacketIdExhausted, cipher_key_bits, digest_size, is_aead, is_insecure, \
    normalize_cipher, normalize_digest, supported_cipher, sweet32_warning
from .mtu import MssFix, mss_fix
from .push import PushedOptions, PushRejected, parse_push_reply
from .reliable import ReliableReceive, ReliableSend
from .tls import TlsClient, TlsContext, TlsSettings
from .wrap import TlsAuth, TlsCrypt, TlsCryptV2, WrapError

log = logging.getLogger("erebus.openvpn")
_REDACT = re.compile(r"(auth-token(?:-user)?\s+)[^,]*")   # credentials never reach a log

EKM_LABEL = "EXPORTER-OpenVPN-datakeys"   # ssl.c: key-derivation tls-ekm (RFC 5705)
SWEET32_RENEG_BYTES = 64 * 1024 * 1024      # ssl.c tls_limit_reneg_bytes
EKM_LENGTH = KEY_BLOCK_LEN                # a key2: 2 x (64 cipher + 64 HMAC), as the PRF's
CONTROL_PAYLOAD_MAX = 1100     # TLS bytes per P_CONTROL_V1 (stays under tls-mtu 1250)
PUSH_REQUEST_INTERVAL = 2.0
EXIT_GRACE = 2.0
LOGGED_PER_KIND = 8             # skipped / filtered pushed options logged one a line
EXIT_NOTIFY_INTERVAL = 1.0      # sig.c: explicit-exit-notify resends once a second


class State(enum.Enum):
    INITIAL = "initial"
    HARD_RESET_SENT = "hard-reset-sent"
    TLS_HANDSHAKE = "tls-handshake"
    KEY_EXCHANGE = "key-exchange"
    PUSH_REQUEST_SENT = "push-request-sent"
    ESTABLISHED = "established"
    CLOSING = "closing"
    CLOSED = "closed"
    FAILED = "failed"


# -- events (erebus.session's Failed and Closed; these carry what is OpenVPN's) -----------

@dataclass(slots=True)
class TlsEstablished(Notice):
    version: str | None
    cipher: str | None
    peer_subject: str

    @property
    def message(self) -> str:
        return f"TLS {self.version} ({self.cipher}) with {self.peer_subject}"


@dataclass(slots=True)
class Connected(_Connected):
    """erebus.session.Connected with the options the server pushed."""

    options: PushedOptions = field(default_factory=PushedOptions)


@dataclass(slots=True)
class ServerMessage(Notice):
    """A control message the session does not act on (INFO, ...)."""

    text: str

    @property
    def message(self) -> str:
        return f"server says: {printable(self.text)}"


@dataclass(slots=True)
class AuthPending(Notice):
    """AUTH_PENDING: the server finishes authentication out of band; the session waits
    for its PUSH_REPLY up to ``timeout`` seconds after the key exchange."""

    timeout: float
    hand_window: float

    @property
    def message(self) -> str:      # push.c receive_auth_pending's words
        return (f"AUTH_PENDING received, extending handshake timeout from "
                f"{self.hand_window:.0f}s to {self.timeout:.0f}s")


@dataclass(slots=True)
class WebAuthRequested(Notice):
    """INFO_PRE,WEB_AUTH / OPEN_URL: the user must open a URL to finish logging in."""

    request: WebAuth
    level = logging.WARNING

    @property
    def message(self) -> str:
        return (f"the server asks you to authenticate in a web browser: open "
                f"{self.request.url}")


@dataclass(slots=True)
class CrTextRequested(Notice):
    """INFO_PRE,CR_TEXT: a challenge to answer with :meth:`ClientSession.send_cr_response`
    (the runtime asks the user)."""

    request: CrText
    level = logging.WARNING

    @property
    def message(self) -> str:
        return f"the server asks a challenge: {self.request.text}"


def tunnel_info(options: PushedOptions, cipher: str, setup_time: float,
                tun_mtu: int, mss: int | None = None) -> TunnelInfo:
    """The TunnelInfo of a session with these pushed options (server: the shell's)."""
    return TunnelInfo(kind="openvpn", server="", virtual_ip=options.virtual_ip,
                      netmask=options.netmask, gateway=options.gateway,
                      routes=[r.cidr for r in options.routes],
                      mtu=options.tun_mtu or tun_mtu, dns=list(options.dns), cipher=cipher,
                      setup_ms=round(setup_time * 1000, 1), mss=mss,
                      virtual_ip6=options.virtual_ip6, prefix6=options.prefix6,
                      gateway6=options.gateway6 if options.ifconfig_ipv6 else None,
                      routes6=[r.cidr for r in options.routes_ipv6]
                      if options.ifconfig_ipv6 else [],
                      redirect_gateway=options.redirect_gateway,
                      domains=list(dict.fromkeys(
                          ([options.domain] if options.domain else []) +
                          options.domain_search)))


@dataclass(slots=True)
class SessionSettings:
    tls: TlsSettings
    data_ciphers: list[str] = field(default_factory=lambda: ["AES-256-GCM", "AES-128-GCM",
                                                               "CHACHA20-POLY1305"])
    fallback_cipher: str | None = None   # data-ciphers-fallback only, never 'cipher': 2.6
                                         # ignores --cipher for cipher negotiation
    cipher: str | None = None            # the profile's 'cipher': only named in the OCC
                                         # options string, as by 2.6
    auth: str = "SHA1"
    username: str | None = None
    password: str | None = None
    proto: str = "udp"
    tun_mtu: int = 1500
    hand_window: float = 60.0
    tls_timeout: float = 2.0
    push_timeout: float | None = None   # defaults to hand_window
    ping: int | None = None              # profile values; pushed values win
    ping_restart: int | None = None
    replay_window: int = 64
    tran_window: float = 60.0
    reneg_sec: float | None = 3600.0      # client-started renegotiation (None: never)
    tls_auth: tuple[bytes, int | None, str] | None = None   # key, key-direction, digest
    tls_crypt: bytes | None = None
    tls_crypt_v2: tuple[bytes, bytes] | None = None   # Kc (256 bytes), WKc (opaque)
    compression: str | None = None        # the profile's comp-lzo / compress option
    allow_compression: str = "asym"       # decompress what the server sends, never compress
    reneg_bytes: int | None = None
    auth_token: str | None = None         # from an earlier session (reconnect)
    mssfix: MssFix = field(default_factory=MssFix)   # the profile's (or connection's)
    socks_udp: bool = False               # datagrams ride a SOCKS5 UDP relay (mssfix)
    ipv6_outer: bool = False              # the server is reached over IPv6 (mssfix)
    exit_notify: int = 0                  # explicit-exit-notify N (0: not given)
    auth_retry: str = "none"              # auth-retry none | nointeract | interact
    sso: tuple[str, ...] = ()             # IV_SSO: the pending-auth methods handled
    pull_filters: tuple[tuple[str, str], ...] = ()   # pull-filter (type, text), in order
    # the profile's IPv6 lines (pushed ones win for ifconfig-ipv6; routes add up, as
    # 2.6 restores its pre-pull options and appends the pushed routes)
    ifconfig_ipv6: tuple[str, int, str] | None = None
    routes_ipv6: tuple = ()                # push.Route6
    route_ipv6_gateway: str | None = None
    block_ipv6: bool = False


@dataclass(slots=True)
class Counters(CountersDict):
    dropped_malformed: int = 0
    dropped_session: int = 0
    dropped_data_auth: int = 0
    dropped_replay: int = 0
    dropped_before_established: int = 0
    control_retransmits: int = 0
    keepalives_in: int = 0
    keepalives_out: int = 0
    dropped_packet_id_exhausted: int = 0    # not sent: the key had no packet id left
    dropped_block_ipv6: int = 0        # IPv6 not sent under block-ipv6 (answered locally)



def _key_traffic(key: DataKey) -> tuple[int, int, int, int]:
    return key.bytes_in, key.bytes_out, key.packets_in, key.packets_out


class _KeyState:
    """One key id: its reliable channel and TLS session (ssl.c's ``key_state``)."""

    def __init__(self, key_id: int, settings: SessionSettings):
        self.key_id = key_id
        self.send = ReliableSend(initial_timeout=settings.tls_timeout)
        self.recv = ReliableReceive()
        self.tls: TlsClient | None = None
        self.key_source: keymethod.ClientKeySource | None = None
        self.key_block: bytes | None = None
        self.app_buffer = b""
        self.key_method_done = False
        self.resend_wkc = False      # the server's reset asked for P_CONTROL_WKC_V1 (ssl.c
                                     # CO_RESEND_WKC): our message packet id 1 carries WKc

    def needs_wkc(self) -> bool:
        """ssl.c ``control_packet_needs_wkc``: the next message is packet id 1."""
        return self.resend_wkc and self.send.next_unassigned == 1

class ClientSession:
    def __init__(self, settings: SessionSettings, now: float, *, rng=os.urandom,
                 tls_context: TlsContext | None = None, clock=time.time):
        """``tls_context``: the tunnel's, built once per profile; without one the session
        builds its own.  Either way it exists before anything is sent: a client
        certificate, key, CRL or tls-cipher OpenSSL refuses is a ConfigError here.
        ``clock``: the wall clock (seconds since the epoch) the server's certificate must
        be valid by, read when each key id's TLS session starts (``now`` is the session's
        own, monotonic time)."""
        self.settings = settings
        self._clock = clock
        self._tls_context = tls_context if tls_context is not None \
            else TlsContext(settings.tls)
        self.rng = rng
        self.state = State.INITIAL
        self.session_id = rng(8)
        self._wrapper = None             # tls-auth / tls-crypt(-v2), one per session id
        self._wkc: bytes | None = None   # tls-crypt-v2's wrapped client key
        self._comp = Compression.none()
        if settings.tls_crypt_v2 is not None:
            kc, self._wkc = settings.tls_crypt_v2
            self._wrapper = TlsCryptV2(kc, self._wkc)
        elif settings.tls_crypt is not None:
            self._wrapper = TlsCrypt(settings.tls_crypt, client=True)
        elif settings.tls_auth is not None:
            key, direction, digest = settings.tls_auth
            self._wrapper = TlsAuth(key, direction, digest)
        self._control_payload = CONTROL_PAYLOAD_MAX - (
            self._wrapper.overhead if self._wrapper else 0)
        self.remote_session_id: bytes | None = None
        self._past_reset = False         # the server ACKed one of our messages after the reset
        self.counters = Counters()
        self.started = now
        self._events: deque = deque()
        self._keys: dict[int, _KeyState] = {}
        self._primary: _KeyState | None = None
        self.data_key: DataKey | None = None
        self._lame: DataKey | None = None          # the previous key, during tran-window
        self._retired = (0, 0, 0, 0)               # traffic() of the keys gone
        self._lame_until: float | None = None
        self._lame_ks: _KeyState | None = None
        self._reneg: _KeyState | None = None       # a renegotiation under way
        self._reneg_deadline: float | None = None
        self.renegotiations = 0
        self.auth_token: str | None = settings.auth_token
        self.username: str | None = settings.username
        self.auth_challenge: DynamicChallenge | None = None   # AUTH_FAILED,CRV1 asked it
        self.auth_refused = False       # AUTH_FAILED under auth-retry interact: ask again
        self._keyed_at: float | None = None       # the first key exchange was done
        self._key_started: float | None = None
        self._reneg_bytes_at: int | None = None
        self._reneg_bytes = settings.reneg_bytes    # 64 MB for a 64-bit block cipher
        self._local_in: deque[bytes] = deque()     # bounded by LOCAL_PACKETS_MAX
        self.pushed = PushedOptions(ifconfig_ipv6=settings.ifconfig_ipv6,
                                    routes_ipv6=list(settings.routes_ipv6),
                                    route_ipv6_gateway=settings.route_ipv6_gateway,
                                    block_ipv6=settings.block_ipv6)
        self.cipher: str | None = None
        self._remote_cipher: str | None = None   # from the server's occ options string
        self._push_deadline: float | None = None
        self._push_request_at: float | None = None
        self._handshake_deadline = now + settings.hand_window
        self._last_in = now
        self._last_out = now
        self._ping_interval: float | None = None
        self._ping_restart: float | None = None
        self._exit_deadline: float | None = None
        self._cc_exit = False
        self._occ_exits_left = 0               # explicit-exit-notify: OCC exits still due
        self.tls_info: TlsEstablished | None = None
        self.key_derivation = "tls1-prf"         # or "tls-ekm", when the server says so
        self._data_out: list[bytes] = []        # data-channel datagrams due (keepalive, exit)
        self._start(now)

    # -- public API ---------------------------------------------------------------------

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
        if self.remote_session_id is None:
            wrap = self._wrapper
            if wrap is not None:
                return Stage.UNREACHABLE, (f"no answer from the server; with {wrap.name}, "
                                           f"{wrap.silent_drop}")
            return Stage.UNREACHABLE, "no answer from the server"
        stage = {State.TLS_HANDSHAKE: Stage.TLS, State.KEY_EXCHANGE: Stage.TLS,
                 State.PUSH_REQUEST_SENT: Stage.PUSH_TIMEOUT}.get(self.state, Stage.TIMEOUT)
        refused = self._client_key_refused() or self._no_shared_group()
        return stage, stage.value + (f" ({refused})" if refused else "")

    def _no_shared_group(self) -> str | None:
        """Why a TLS handshake with tls-groups stalls: a 2.6 server that shares none of
        the groups logs "no suitable key share" and restarts the client's instance, so
        the alert it wrote never leaves it."""
        groups = self.settings.tls.tls_groups
        if not groups or self.state is not State.TLS_HANDSHAKE:
            return None
        return (f"the TLS handshake stalled; with tls-groups {groups}, that is how a 2.6 "
                "server that offers none of those groups refuses it, without an alert")

    def _client_key_refused(self) -> str | None:
        """Why a tls-crypt-v2 handshake stalls after the server's reset: a 2.6 server
        answers the reset statelessly and checks the client key's metadata only on our
        next packet, dropping it silently when it refuses (doc/tls-crypt-v2.txt)."""
        if self._wkc is None or self.remote_session_id is None or self._past_reset:
            return None
        return ("the server answered the hard reset but ignored everything after it; with "
                "tls-crypt-v2 that is how a server refuses a client key (its "
                "tls-crypt-v2-verify script or tls-crypt-v2-max-age), silently")

    def receive_datagram(self, data: bytes | memoryview, now: float) -> list[bytes]:
        """Process one datagram from the server; returns inbound IP packets, if any."""
        if self.finished:
            return []
        dk = self.data_key
        if dk is not None and type(data) is bytes and data.startswith(dk.header) \
                and self.state is State.ESTABLISHED:
            # the data channel's fast path: the current key's own header (opcode, key id,
            # peer id), so no DataPacket is built; anything else takes the long way
            return self._take_data(dk, memoryview(data)[len(dk.header):], None, now)
        wrapper = self._wrapper
        if wrapper is not None and data and (data[0] >> 3) in w.CONTROL_OPCODES:
            try:
                data = wrapper.unwrap(data, now)
            except WrapError as exc:
                if exc.kind == "replay":
                    self.counters.dropped_replay += 1
                else:
                    self.counters.dropped_malformed += 1
                log.debug("dropped control packet (%s): %s", wrapper.name, exc)
                return []
        try:
            packet = w.parse_packet(data)
        except ParseError as exc:
            self.counters.dropped_malformed += 1
            log.debug("dropped malformed packet: %s", exc)
            return []
        if isinstance(packet, w.DataPacket):
            return self._receive_data(packet, now)
        try:
            self._receive_control(packet, now)
        except SessionError as exc:
            self._fail(exc.stage, str(exc))
        except ParseError as exc:
            self.counters.dropped_malformed += 1
            log.debug("dropped malformed control message: %s", exc)
        return []

    def datagrams_to_send(self, now: float) -> list[bytes]:
        out, self._data_out = self._data_out, []
        if self.state is State.FAILED:
            return out
        wrap = self._wrapper.wrap if self._wrapper is not None else None
        for ks in self._keys.values():
            before = ks.send.retransmissions
            due = ks.send.due(now)
            # counted as they happen, so a retired key state does not take its share away
            self.counters.control_retransmits += ks.send.retransmissions - before
            for pid, opcode, payload in due:
                acks = ks.recv.take_acks(4, history=True) if self.remote_session_id else []
                # HARD_RESET_CLIENT_V3 and WKC_V1 (and their retransmissions) carry WKc
                packet = w.build_control(opcode, ks.key_id, self.session_id, acks,
                                         self.remote_session_id if acks else None,
                                         pid, payload, wkc=self._wkc)
                out.append(wrap(packet, now) if wrap else packet)
            while ks.recv.has_acks and self.remote_session_id is not None:
                acks = ks.recv.take_acks(w.MAX_ACKS)
                packet = w.build_control(w.P_ACK_V1, ks.key_id, self.session_id, acks,
                                         self.remote_session_id)
                out.append(wrap(packet, now) if wrap else packet)
        if out:
            self._last_out = now
        return out

    def get_timer(self) -> float | None:
        if self.finished:
            return None
        deadlines = [k.send.next_deadline() for k in self._keys.values()]
        if self.state in (State.HARD_RESET_SENT, State.TLS_HANDSHAKE, State.KEY_EXCHANGE):
            deadlines.append(self._handshake_deadline)
        if self.state is State.PUSH_REQUEST_SENT:
            deadlines += [self._push_request_at, self._push_deadline,
                          self._last_in + self.settings.hand_window]
        if self.state is State.ESTABLISHED:
            deadlines += [self._lame_until, self._reneg_deadline]
            if self._reneg is None and self.data_key.close_to_wrapping:
                deadlines.append(self._last_out)     # renegotiate at once
            if self.settings.reneg_sec and self._reneg is None and self._key_started:
                deadlines.append(self._key_started + self.settings.reneg_sec)
            if self._ping_interval:
                deadlines.append(self._last_out + self._ping_interval)
            if self._ping_restart:
                deadlines.append(self._last_in + self._ping_restart)
        if self.state is State.CLOSING:
            deadlines.append(self._exit_deadline)
        deadlines = [d for d in deadlines if d is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        """Deadlines that passed (what they make is in datagrams_to_send)."""
        out = self._data_out
        st = self.state
        if st in (State.HARD_RESET_SENT, State.TLS_HANDSHAKE, State.KEY_EXCHANGE):
            if now >= self._handshake_deadline:
                what = {State.HARD_RESET_SENT: ("unreachable", "no answer from the server "
                                                "(hard reset not acknowledged)"),
                        State.TLS_HANDSHAKE: ("tls", "TLS handshake did not complete in time"),
                        State.KEY_EXCHANGE: ("tls", "key exchange did not complete in time")}
                stage, message = what[st]
                if st is State.HARD_RESET_SENT and self._wkc is not None:
                    message += f"; with tls-crypt-v2, {self._wrapper.silent_drop}"
                elif (refused := self._client_key_refused()) is not None:
                    message += f"; {refused}"
                self._fail(stage, message)
                return
        elif st is State.PUSH_REQUEST_SENT:
            if now >= self._push_deadline:
                self._fail("push-timeout", "no PUSH_REPLY from the server in time")
                return
            if now >= self._last_in + self.settings.hand_window:   # push.c send_push_request
                self._fail("push-timeout", "no PUSH_REPLY and no packet from the server "
                           f"for {self.settings.hand_window:.0f} s")
                return
            if now >= self._push_request_at:
                self._send_app(self._primary, b"PUSH_REQUEST\x00")
                self._push_request_at = now + PUSH_REQUEST_INTERVAL
        elif st is State.ESTABLISHED:
            self._expire_lame(now)
            if self.settings.reneg_sec and self._key_started is not None \
                    and now >= self._key_started + self.settings.reneg_sec:
                self._client_renegotiation(now, f"reneg-sec {self.settings.reneg_sec:g}")
            if self._reneg_bytes_at is not None and self.data_key.bytes_in + \
                    self.data_key.bytes_out >= self._reneg_bytes_at:
                self._client_renegotiation(now, f"reneg-bytes {self._reneg_bytes}")
            self._renegotiate_before_wrapping(now)
            if self._reneg_deadline is not None and now >= self._reneg_deadline:
                self._fail("renegotiation", "a renegotiation did not complete within "
                           f"{self.settings.hand_window:.0f} s")
                return
            if self._ping_restart and now >= self._last_in + self._ping_restart:
                self._fail("ping-restart", f"no packet from the server for "
                           f"{self._ping_restart:.0f} s (ping-restart)")
                return
            if self._ping_interval and now >= self._last_out + self._ping_interval:
                datagram = self._encrypt(self._comp.frame(KEEPALIVE))
                if datagram is not None:
                    out.append(datagram)
                    self.counters.keepalives_out += 1
                self._last_out = now
        elif st is State.CLOSING:
            if self._occ_exits_left:
                if now >= self._exit_deadline:
                    self._send_occ_exit(now)
            elif now >= self._exit_deadline or all(k.send.idle for k in self._keys.values()):
                self._finish("closed by us")

    def send_packet(self, packet: bytes | memoryview, now: float | None = None) -> bytes | None:
        """Encrypt one IP packet into a data-channel datagram; None when it cannot be
        sent (the key ran out of packet ids: dropped and counted).  The soft reset before
        the packet id wraps is the timer's (get_timer / handle_timer), not this path's:
        PACKET_ID_WRAP_TRIGGER leaves ~16.7 M packets of headroom."""
        if self.state is not State.ESTABLISHED:
            raise SessionError("state", f"no data before the session is established "
                               f"(state {self.state.value})")
        if self.pushed.block_ipv6 and block6.is_ipv6_packet(packet):
            self._block_ipv6(packet)
            return None
        if now is not None:
            self._last_out = now
        return self._encrypt(self._comp.frame(packet))

    def _block_ipv6(self, packet: bytes | memoryview) -> None:
        """block-ipv6: not sent; the ICMPv6 answer goes back to the stack
        (:meth:`local_packets`).  :mod:`erebus.openvpn.block6`."""
        self.counters.dropped_block_ipv6 += 1
        if self.counters.dropped_block_ipv6 == 1:
            log.warning("block-ipv6: IPv6 packets are answered with ICMPv6 no route to "
                        "host, never sent to the server")
        reply = block6.unreachable_reply(packet, self.pushed.gateway6)
        if reply is not None and len(self._local_in) < LOCAL_PACKETS_MAX:
            self._local_in.append(reply)

    def local_packets(self) -> list[bytes]:
        """Packets the session answers itself for the stack (block-ipv6's ICMPv6), to
        hand in as if received; taken once."""
        out = list(self._local_in)
        self._local_in.clear()
        return out

    def close(self, now: float) -> None:
        """Tell the server we leave (cc-exit EXIT, or OCC exit), then close.

        What is due (the OCC exit, the EXIT control message) comes from
        :meth:`datagrams_to_send` as usual.
        """
        if self.finished or self.state is State.CLOSING:
            return
        if self.state is State.ESTABLISHED:
            notify = self.settings.exit_notify if self.settings.proto == "udp" else 0
            self.state = State.CLOSING
            if self._cc_exit:
                self._send_app(self._primary, b"EXIT\x00")
                self._exit_deadline = now + max(EXIT_GRACE, notify)
                return
            # sig.c: with explicit-exit-notify N the OCC exit goes out once a second
            # for N seconds (UDP may lose it); without it, once, and we are done
            self._occ_exits_left = max(1, notify)
            self._send_occ_exit(now)
        else:
            self._finish("closed by us before the session was established")

    def _send_occ_exit(self, now: float) -> None:
        datagram = self._encrypt(self._comp.frame(OCC_MAGIC + bytes((OCC_EXIT,))))
        if datagram is not None:
            self._data_out.append(datagram)
        self._occ_exits_left -= 1
        if self._occ_exits_left <= 0:
            self._finish("closed by us")
        else:
            self._exit_deadline = now + EXIT_NOTIFY_INTERVAL

    def control_idle(self) -> bool:
        return all(k.send.idle for k in self._keys.values())

    # -- internals ------------------------------------------------------------------------

    def _start(self, now: float) -> None:
        ks = _KeyState(0, self.settings)
        self._keys[0] = ks
        self._primary = ks
        ks.send.push(w.P_CONTROL_HARD_RESET_CLIENT_V3 if self._wkc is not None
                     else w.P_CONTROL_HARD_RESET_CLIENT_V2, b"")
        self.state = State.HARD_RESET_SENT

    def _encrypt(self, payload: bytes) -> bytes | None:
        try:
            return self.data_key.encrypt(payload)
        except PacketIdExhausted as exc:
            self.counters.dropped_packet_id_exhausted += 1
            log.debug("dropped outgoing data packet: %s", exc)
            return None

    def _renegotiate_before_wrapping(self, now: float) -> None:
        """ssl.c: a soft reset once the packet id reaches PACKET_ID_WRAP_TRIGGER."""
        if self._reneg is None and self.data_key.close_to_wrapping:
            self._client_renegotiation(now, f"packet id {self.data_key.next_pid - 1:#x} "
                                       "close to wrapping")

    def _fail(self, stage: str, message: str, *, recoverable: bool | None = None,
              immediate: bool = False) -> None:
        if self.finished:
            return
        log.debug("session failed (%s): %s", stage, message)
        self.state = State.FAILED
        self._events.append(Failed(stage, message, recoverable=recoverable,
                                   immediate=immediate))

    def _finish(self, reason: str) -> None:
        if self.finished:
            return
        self.state = State.CLOSED
        self._events.append(Closed(reason))

    def _receive_data(self, packet: w.DataPacket, now: float) -> list[bytes]:
        dk = self.data_key
        if dk is None or self.state not in (State.ESTABLISHED, State.CLOSING):
            self.counters.dropped_before_established += 1
            return []
        if packet.key_id != dk.key_id:
            if self._lame is not None and packet.key_id == self._lame.key_id:
                dk = self._lame              # the old key, inside the transition window
            else:
                self.counters.dropped_session += 1
                return []
        return self._take_data(dk, packet.body, packet.header, now)

    def _take_data(self, dk, body: memoryview, header: bytes | None,
                   now: float) -> list[bytes]:
        """A data packet of key ``dk`` (header stripped): its inner packet, if any."""
        try:
            payload = dk.decrypt(body, header)
        except DataError as exc:
            if "replay" in str(exc):
                self.counters.dropped_replay += 1
            else:
                self.counters.dropped_data_auth += 1
            log.debug("dropped data packet: %s", exc)
            return []
        if self._comp.enabled:
            try:
                payload = self._comp.unframe(payload)
            except CompressionError as exc:
                self.counters.dropped_malformed += 1
                log.debug("dropped data packet: %s", exc)
                return []
        self._last_in = now
        if payload == KEEPALIVE:
            self.counters.keepalives_in += 1
            return []
        if payload[:16] == OCC_MAGIC:
            log.debug("OCC message %s from the server", payload[16:17].hex())
            return []
        return [payload]

    def _receive_control(self, p: w.ControlPacket, now: float) -> None:
        if p.opcode == w.P_CONTROL_HARD_RESET_SERVER_V2:
            w.parse_early_negotiation(p.payload)   # malformed TLVs: dropped and counted
            if self.remote_session_id is None:
                self.remote_session_id = p.session_id
                log.debug("server session id %s", p.session_id.hex())
        if self.remote_session_id is None or p.session_id != self.remote_session_id:
            self.counters.dropped_session += 1
            log.debug("dropped %s from unknown session %s", p.name, p.session_id.hex())
            return
        if p.acks and p.remote_session_id != self.session_id:
            self.counters.dropped_session += 1
            log.debug("dropped %s acknowledging another session", p.name)
            return
        ks = self._keys.get(p.key_id)
        if ks is None:
            if p.opcode == w.P_CONTROL_SOFT_RESET_V1 and self.state is State.ESTABLISHED \
                    and self._reneg is None and p.key_id != 0:
                ks = self._start_renegotiation(p.key_id, now)
            else:
                self.counters.dropped_session += 1
                return
        self._last_in = now
        for pid in p.acks:
            if ks.send.ack(pid) and pid > 0 and ks.key_id == 0:
                self._past_reset = True
        if self.state is State.CLOSING and self.control_idle():
            self._finish("closed by us")      # the server has our EXIT
            return
        if p.packet_id is None:
            return
        ks.recv.receive(p.packet_id, p.opcode, p.payload)
        for _pid, opcode, payload in ks.recv.ready():
            self._deliver(ks, opcode, payload, now)

    def _deliver(self, ks: _KeyState, opcode: int, payload: bytes, now: float) -> None:
        if opcode == w.P_CONTROL_HARD_RESET_SERVER_V2:
            if self.state is State.HARD_RESET_SENT:
                flags = w.parse_early_negotiation(payload)    # checked on receipt
                if flags & w.EARLY_NEG_FLAG_RESEND_WKC and self._wkc is not None:
                    ks.resend_wkc = True
                    log.debug("the server asks for the wrapped client key again "
                              "(P_CONTROL_WKC_V1)")
                self.state = State.TLS_HANDSHAKE
                ks.tls = self._new_tls()
                self._pump_tls(ks, now)
            return
        if opcode == w.P_CONTROL_SOFT_RESET_V1:
            if ks is self._reneg and ks.tls is None:
                ks.tls = self._new_tls()
                self._pump_tls(ks, now)
            return
        if opcode != w.P_CONTROL_V1:
            log.debug("ignored %s in order on the control channel", w.opcode_name(opcode))
            return
        if ks.tls is None:
            raise SessionError("protocol", "TLS data before the server's hard reset")
        ks.tls.feed(payload)
        self._pump_tls(ks, now)

    def _new_tls(self) -> TlsClient:
        """A TLS session for a new key id, from the one context of this session (the
        tunnel's), shared by every renegotiation."""
        wall = datetime.datetime.fromtimestamp(self._clock(), datetime.timezone.utc)
        return TlsClient(self.settings.tls, self._tls_context, now=wall)

    def _pump_tls(self, ks: _KeyState, now: float) -> None:
        tls = ks.tls
        if not tls.established:
            done = tls.handshake()
            self._flush_tls(ks)
            if not done:
                return
            subject = tls.peer_certificate.subject.rfc4514_string()
            self.tls_info = TlsEstablished(tls.version, tls.cipher, subject)
            if ks is self._primary:
                self._events.append(self.tls_info)
                log.info("TLS established (%s, %s), server %s", tls.version, tls.cipher,
                         subject)
                self.state = State.KEY_EXCHANGE
            else:
                log.debug("renegotiation: TLS established for key id %d", ks.key_id)
            self._send_key_method(ks)
        for record in tls.read_records():
            self._receive_app(ks, record, now)
        self._flush_tls(ks)

    def _flush_tls(self, ks: _KeyState) -> None:
        data = ks.tls.take_output()
        step = self._control_payload
        pos = 0
        if data and ks.needs_wkc():
            # ssl.c write_outgoing_tls_ciphertext: the first fragment, WKc appended, stays
            # within the control packet size (at least 16 bytes of TLS, as 2.6)
            first = max(16, step - len(self._wkc))
            ks.send.push(w.P_CONTROL_WKC_V1, data[:first])
            pos = first
        for i in range(pos, len(data), step):
            ks.send.push(w.P_CONTROL_V1, data[i:i + step])

    def _send_app(self, ks: _KeyState, data: bytes) -> None:
        ks.tls.write(data)
        self._flush_tls(ks)

    def _send_key_method(self, ks: _KeyState) -> None:
        st = self.settings
        ks.key_source = keymethod.ClientKeySource(self.rng(48), self.rng(32), self.rng(32))
        ciphers = [normalize_cipher(c) for c in st.data_ciphers if supported_cipher(c)]
        ciphers = ["none" if c == "none" else c for c in ciphers]
        comp = Compression.from_options(st.compression, None,
                                        allow_compression=st.allow_compression)
        # options.c options_string: --cipher (or data-ciphers-fallback; BF-CBC when
        # neither is set), named only if data-ciphers has it; its digest and key bits
        occ = normalize_cipher(st.fallback_cipher or st.cipher or "BF-CBC")
        digest = normalize_digest(st.auth)
        options = keymethod.options_string(cipher=occ if occ in ciphers else None,
                                           proto="TCPv4_CLIENT" if st.proto != "udp"
                                           else "UDPv4", tun_mtu=st.tun_mtu,
                                           comp_lzo=comp.enabled,
                                           auth="[null-digest]" if is_aead(occ) or not digest
                                           else digest, keysize=cipher_key_bits(occ))
        password = self.auth_token if self.auth_token is not None else st.password
        info = keymethod.peer_info(ciphers, sso=st.sso) + compression_peer_info(
            algorithms=st.allow_compression != "no")
        message = keymethod.build_client_message(
            ks.key_source, options, info, self.username, password)
        self._send_app(ks, message)

    def _receive_app(self, ks: _KeyState, record: bytes, now: float) -> None:
        if not ks.key_method_done:
            server = keymethod.parse_server_message(record)
            src = ks.key_source
            if self.key_derivation == "tls-ekm":      # every later key id too (ssl.c)
                ks.key_block = self._exported_key_block(ks)
            else:       # (the first key id's: the PUSH_REPLY may still switch it to EKM)
                ks.key_block = openvpn_key_block(src.pre_master, src.random1,
                                                 server.random1, src.random2,
                                                 server.random2, self.session_id,
                                                 self.remote_session_id)
            ks.key_method_done = True
            log.debug("server options string: %s", server.options)
            if ks is self._primary:
                self._remote_cipher = keymethod.options_string_cipher(server.options)
            if ks is self._reneg:
                self._finish_renegotiation(ks, now)
                return
            if ks is self._primary:
                self.state = State.PUSH_REQUEST_SENT
                self._keyed_at = now
                self._send_app(ks, b"PUSH_REQUEST\x00")
                self._push_request_at = now + PUSH_REQUEST_INTERVAL
                self._push_deadline = now + (self.settings.push_timeout
                                             or self.settings.hand_window)
            return
        ks.app_buffer += record
        while b"\x00" in ks.app_buffer:
            raw, _, ks.app_buffer = ks.app_buffer.partition(b"\x00")
            self._control_message(raw.decode("utf-8", "replace"), now)
        if len(ks.app_buffer) > 65536:
            raise SessionError("protocol", "control message without terminator")

    def _control_message(self, text: str, now: float) -> None:
        log.debug("control message: %s", _REDACT.sub(r"\1[redacted]", text))
        if text.startswith("PUSH_REPLY"):
            if self.state is not State.PUSH_REQUEST_SENT:
                return   # a duplicate answer to a repeated PUSH_REQUEST
            try:
                last = parse_push_reply(text, self.pushed, self.settings.pull_filters)
            except PushRejected as exc:       # options.c: SIGUSR1, "Restarting."
                raise SessionError("restart", f"{exc}: restarting, as the stock client "
                                   "does (the profile's pull-filter reject)") from None
            except ParseError as exc:
                detail = str(exc).removeprefix("PUSH_REPLY: ")
                raise SessionError("push", f"the server's PUSH_REPLY is refused: {detail}") \
                    from None
            if last:
                self._establish(now)
            else:   # push.c: a continuation answers the request; stop repeating it
                self._push_request_at = self._push_deadline
        elif text.startswith("AUTH_FAILED"):
            self._auth_failed(text[len("AUTH_FAILED"):].removeprefix(","))
        elif text.startswith("AUTH_PENDING"):
            if self.state is State.PUSH_REQUEST_SENT:
                self._auth_pending(text)
        elif text.startswith("INFO_PRE"):
            self._info_pre(text[len("INFO_PRE"):].removeprefix(","))
        elif text.startswith("RESTART"):
            reason = printable(text[len("RESTART"):].lstrip(",")) or "no reason given"
            self._fail("restart", f"the server asked for a restart: {reason}")
        elif text.startswith("HALT"):
            reason = printable(text[len("HALT"):].lstrip(",")) or "no reason given"
            self._fail("halted", f"the server halted the session: {reason}")
        else:
            self._events.append(ServerMessage(text))

    def _auth_failed(self, reason: str) -> None:
        """push.c receive_auth_failed: a refused auth-token is forgotten and the session
        restarts with the credentials; else auth-retry decides (none: fatal; nointeract:
        again with the same credentials; interact: ask, then again).  A CRV1 dynamic
        challenge is kept for the next session to answer (with auth-retry interact, as
        the stock client requires)."""
        shown = printable(reason) or "no reason given"
        log.info("AUTH: Received control message: AUTH_FAILED%s",
                 f",{shown}" if reason else "")
        retry = self.settings.auth_retry
        if reason.startswith("CRV1:"):
            try:
                challenge = parse_crv1(reason)
            except ParseError as exc:
                self._fail("auth", f"authentication failed: the server's dynamic challenge "
                           f"is refused: {exc}")
                return
            if retry != "interact":
                self._fail("auth", f"authentication failed: the server asks a dynamic "
                           f"challenge ('{challenge.text}'), which the stock client answers "
                           "only with 'auth-retry interact': add that line to the profile")
                return
            self.auth_challenge = challenge
            self._fail("auth", f"the server asks a dynamic challenge: {challenge.text}",
                       recoverable=True, immediate=True)
            return
        if self.auth_token is not None:          # ssl_clean_auth_token
            self.auth_token = None
            self.username = self.settings.username
            self._fail("auth", f"authentication failed: {shown} (the server refused the "
                       "auth-token: reconnecting with the username and password)",
                       recoverable=True)
            return
        if retry == "nointeract" or (retry == "interact" and self.settings.username is None
                                     and self.settings.password is None):
            # (interact without a username/password to ask again: the same again)
            self._fail("auth", f"authentication failed: {shown} (auth-retry {retry}: "
                       "trying again with the same credentials)", recoverable=True)
        elif retry == "interact":
            self.auth_refused = True
            self._fail("auth", f"authentication failed: {shown} (auth-retry interact: "
                       "asking for the username and password again)", recoverable=True,
                       immediate=True)
        else:
            self._fail("auth", f"authentication failed: {shown}")

    def _auth_pending(self, text: str) -> None:
        """push.c receive_auth_pending: wait for the PUSH_REPLY up to the server's timeout
        (default hand-window), at most max(reneg-sec / 2, hand-window), counted from the
        key exchange; PUSH_REQUESTs keep going out meanwhile."""
        st = self.settings
        server_timeout = parse_auth_pending(text)
        hand = st.hand_window
        most = max((st.reneg_sec or 0) / 2, hand)
        timeout = min(most, float(server_timeout) if server_timeout is not None else hand)
        self._push_deadline = (self._keyed_at or self.started) + timeout
        self._events.append(AuthPending(timeout, hand))

    def _info_pre(self, extra: str) -> None:
        try:
            request = parse_info_pre(extra)
        except ParseError as exc:
            log.warning("the server's pending-auth request is refused: %s", exc)
            return
        if request is None:
            self._events.append(ServerMessage(extra))
        elif isinstance(request, WebAuth):
            self._events.append(WebAuthRequested(request))
        else:
            self._events.append(CrTextRequested(request))

    def send_cr_response(self, response: str, now: float) -> None:
        """Answer a CR_TEXT challenge: ``CR_RESPONSE,base64(response)``."""
        if self.state not in (State.PUSH_REQUEST_SENT, State.ESTABLISHED):
            raise SessionError("state", f"no challenge response in state {self.state.value}")
        self._send_app(self._primary, cr_response(response))

    @staticmethod
    def _exported_key_block(ks: "_KeyState") -> bytes:
        """The data channel keys of ``ks`` by TLS keying material export (no context:
        an empty one would give other bytes on TLS 1.2)."""
        if ks.tls is None:
            raise SessionError("tls", "tls-ekm: no TLS session to export keys from")
        return ks.tls.export_keying_material(EKM_LABEL, EKM_LENGTH, None)

    def _set_reneg_bytes(self) -> None:
        limit = self._reneg_bytes
        self._reneg_bytes_at = None if not limit else limit

    def _client_renegotiation(self, now: float, why: str) -> None:
        """Our own soft reset (reneg-sec / reneg-bytes): the next key id, 1..7."""
        if self._reneg is not None or self.state is not State.ESTABLISHED:
            return
        key_id = self._primary.key_id % 7 + 1
        log.info("renegotiating (%s): key id %d", why, key_id)
        self._start_renegotiation(key_id, now, by="us")

    def _start_renegotiation(self, key_id: int, now: float, by: str = "the server") \
            -> "_KeyState":
        """P_CONTROL_SOFT_RESET_V1 (the server's, or ours): a new key state with a fresh
        TLS session; the current key carries data until the new one is ready."""
        if by != "us":
            log.info("renegotiation started by %s (key id %d)", by, key_id)
        ks = _KeyState(key_id, self.settings)
        ks.send.push(w.P_CONTROL_SOFT_RESET_V1, b"")
        self._keys[key_id] = ks
        self._reneg = ks
        self._reneg_deadline = now + self.settings.hand_window
        return ks

    def _finish_renegotiation(self, ks: "_KeyState", now: float) -> None:
        old_ks, old_key = self._primary, self.data_key
        self.data_key = DataKey(ks.key_id, self.cipher, ks.key_block,
                                auth=self._auth, peer_id=self.pushed.peer_id,
                                replay_window=self.settings.replay_window, rng=self.rng)
        self._retire(self._lame)
        self._lame = old_key
        self._lame_ks = old_ks
        self._lame_until = now + self.settings.tran_window
        self._primary = ks
        self._reneg = None
        self._reneg_deadline = None
        self._key_started = now
        self._set_reneg_bytes()
        self.renegotiations += 1
        log.info("renegotiation done: data now on key id %d (key id %d kept for %.0f s)",
                 ks.key_id, old_key.key_id, self.settings.tran_window)

    def _expire_lame(self, now: float) -> None:
        if self._lame_until is not None and now >= self._lame_until:
            if self._lame_ks is not None and self._keys.get(self._lame_ks.key_id) \
                    is self._lame_ks:
                del self._keys[self._lame_ks.key_id]
            self._retire(self._lame)
            self._lame = self._lame_ks = self._lame_until = None

    def _retire(self, key: DataKey | None) -> None:
        if key is not None:
            self._retired = tuple(a + b for a, b in zip(self._retired, _key_traffic(key)))

    def traffic(self) -> tuple[int, int, int, int]:
        """(bytes in, bytes out, packets in, packets out) of the inner packets over the
        whole session, every data key's (for ``erebus status``; read, never counted
        twice: the keys count, this only adds them up)."""
        total = self._retired
        for key in (self.data_key, self._lame):
            if key is not None:
                total = tuple(a + b for a, b in zip(total, _key_traffic(key)))
        return total

    def _allowed_ciphers(self) -> list[str]:
        """data-ciphers, and data-ciphers-fallback (ssl_ncp.c check_session_cipher)."""
        st = self.settings
        allowed = [normalize_cipher(c) for c in st.data_ciphers]
        if st.fallback_cipher and normalize_cipher(st.fallback_cipher) not in allowed:
            allowed.append(normalize_cipher(st.fallback_cipher))
        return allowed

    def _negotiated_cipher(self) -> str:
        """The pushed cipher if the profile allows it, as 2.6 decides: a pushed cipher
        outside data-ciphers (and not the data-ciphers-fallback) is refused, ``none``
        included; no pushed cipher means the fallback."""
        st, p = self.settings, self.pushed
        if p.cipher is not None:
            cipher = normalize_cipher(p.cipher)
            if cipher not in self._allowed_ciphers():
                listed = ":".join(normalize_cipher(c) for c in st.data_ciphers)
                fallback = (f", data-ciphers-fallback {normalize_cipher(st.fallback_cipher)}"
                            if st.fallback_cipher else "")
                what = " (no encryption)" if cipher == "none" else ""
                raise SessionError("push", f"the server pushed cipher {cipher}{what}, which "
                                   f"is not in data-ciphers {listed}{fallback}: refused "
                                   "(OpenVPN 2.6: negotiated cipher not allowed); add it to "
                                   "data-ciphers to connect to this server")
        else:
            cipher = self._no_pushed_cipher()
        if not supported_cipher(cipher):
            raise SessionError("push", f"the server chose data cipher {cipher}, "
                               "which erebus does not support")
        return cipher

    def _no_pushed_cipher(self) -> str:
        """ssl_ncp.c check_pull_client_ncp when the server pushed no cipher: the cipher of
        the server's options string if data-ciphers has it ("poor man's NCP"), else, when
        the server named none, data-ciphers-fallback; otherwise no cipher is agreed.  The
        profile's 'cipher' plays no part (2.6 ignores --cipher for negotiation)."""
        st = self.settings
        listed = ":".join(normalize_cipher(c) for c in st.data_ciphers)
        remote = self._remote_cipher
        if remote is not None:
            cipher = normalize_cipher(remote)
            if cipher in (normalize_cipher(c) for c in st.data_ciphers):
                log.debug("using the server's cipher %s (from its options string)", cipher)
                return cipher
            raise SessionError("cipher", f"the server pushed no data cipher and its options "
                               f"string names cipher {cipher}, which is not in data-ciphers "
                               f"{listed} (OpenVPN 2.6: failed to negotiate cipher with "
                               "server); add it to data-ciphers to connect to this server")
        if st.fallback_cipher is not None:
            return normalize_cipher(st.fallback_cipher)
        raise SessionError("cipher", "the server pushed no data cipher and the profile has "
                           "no data-ciphers-fallback (OpenVPN 2.6: failed to negotiate cipher "
                           "with server); add data-ciphers-fallback to connect to this server")

    def _mss_fix(self, cipher: str, digest: str | None) -> int | None:
        """mssfix as 2.6 computes it for this session's data channel (mtu.py)."""
        st = self.settings
        mss = mss_fix(st.mssfix, tun_mtu=st.tun_mtu, cipher=cipher,
                      digest_size=0 if is_aead(cipher) else digest_size(digest),
                      peer_id=self.pushed.peer_id is not None, tcp=st.proto != "udp",
                      ipv6=st.ipv6_outer, socks_udp=st.socks_udp,
                      compression_overhead=self._comp.overhead)
        log.info("TCP MSS %s (%s)", mss if mss else "not capped",
                 st.mssfix.resolved(st.tun_mtu))
        return mss

    def _establish(self, now: float) -> None:
        p = self.pushed
        cipher = self._negotiated_cipher()
        if "dyn-tls-crypt" in p.protocol_flags:
            raise SessionError("push", "the server pushed dyn-tls-crypt, which erebus did "
                               "not offer (its IV_PROTO has no DYN_TLS_CRYPT): refused, the "
                               "control channel keys would not match")
        ks = self._primary
        if p.key_derivation == "tls-ekm" or "tls-ekm" in p.protocol_flags:
            # ssl.c tls_session_generate_data_channel_keys: RFC 5705 instead of the PRF
            self.key_derivation = "tls-ekm"
            ks.key_block = self._exported_key_block(ks)
        for line in p.dropped[:LOGGED_PER_KIND]:
            log.warning("PUSH_REPLY: %s: the option is skipped, as by the stock client",
                        line)
        for text in p.filtered[:LOGGED_PER_KIND]:
            log.info("Pushed option removed by filter: '%s'", text)
        for what, items in (("options skipped", p.dropped), ("removed by pull-filter",
                                                                 p.filtered)):
            if len(items) > LOGGED_PER_KIND:
                log.warning("PUSH_REPLY: %d more %s", len(items) - LOGGED_PER_KIND, what)
        if p.routes_ipv6 and not p.ifconfig_ipv6:
            log.warning("PUSH_REPLY: route-ipv6 without ifconfig-ipv6: the tunnel has no "
                        "IPv6 address, the IPv6 routes are not used")
        for text in p.not_pullable:
            log.warning("PUSH_REPLY: option '%s' cannot be used in this context "
                        "([PUSH-OPTIONS]): ignored, as by the stock client",
                        text.split()[0])
        auth = self.settings.auth            # the profile's: config.py checked it
        digest = normalize_digest(auth)
        if not is_aead(cipher):
            # crypto.c init_key_type, as the stock client warns when it makes the key
            if cipher == "none":
                log.warning("data channel: cipher none: NO encryption will be performed "
                            "and tunnelled data WILL be transmitted in clear text over "
                            "the network")
            if digest is None:
                log.warning("data channel: auth none: no authentication will be performed "
                            "on received packets; you CANNOT trust that they were not "
                            "manipulated")
            if is_insecure(cipher):
                log.warning("%s", sweet32_warning(cipher))
                # ssl.c tls_limit_reneg_bytes: unless reneg-bytes was given (0 included)
                if self.settings.reneg_bytes is None:
                    log.warning("WARNING: cipher with small block size in use, reducing "
                                "reneg-bytes to 64MB to mitigate SWEET32 attacks.")
                    self._reneg_bytes = SWEET32_RENEG_BYTES
        self._comp = Compression.from_options(self.settings.compression, p.compression,
                                              allow_compression=self.settings.allow_compression)
        if self._comp.enabled:
            log.info("compression framing: %s", self._comp.option)
        if p.virtual_ip is None:
            raise SessionError("push", "the server pushed no ifconfig (no virtual IP)")
        self._auth = auth                  # the profile's: 2.6 does not pull 'auth'
        self.data_key = DataKey(ks.key_id, cipher, ks.key_block,
                                auth=self._auth, peer_id=p.peer_id,
                                replay_window=self.settings.replay_window, rng=self.rng)
        self.cipher = cipher
        if p.auth_token:
            self.auth_token = p.auth_token        # used instead of the password from now on
        if p.auth_token_user:
            self.username = p.auth_token_user
        self._key_started = now
        self._set_reneg_bytes()
        self._cc_exit = "cc-exit" in p.protocol_flags
        ping = p.ping if p.ping is not None else self.settings.ping
        restart = p.ping_restart if p.ping_restart is not None else self.settings.ping_restart
        self._ping_interval = float(ping) if ping else None
        self._ping_restart = float(restart) if restart else None
        self._last_in = self._last_out = now
        self.state = State.ESTABLISHED
        mss = self._mss_fix(cipher, digest)
        self._events.append(Connected(tunnel_info(p, cipher, now - self.started,
                                                  self.settings.tun_mtu, mss), p))
        log.info("session established: virtual IP %s/%s, cipher %s, peer-id %s, data keys "
                 "by %s", p.virtual_ip, p.netmask, cipher, p.peer_id, self.key_derivation)
