"""Control-channel wrapping: ``tls-auth`` and ``tls-crypt`` (sans-IO).

Both wrap a plain control packet as built by
:func:`erebus.wire.openvpn.build_control` (``op | session_id | body``, body =
ACK array, remote session id, message packet id, payload) and unwrap a received
datagram back into that form for :func:`erebus.wire.openvpn.parse_packet`.
Data packets (P_DATA_V1/V2) are never wrapped.

The replay packet id is OpenVPN's "long form" (packet_id.c): a 32-bit id then a
32-bit time, both big-endian.  A sender's ids start at 1 and count up; its time
is fixed when it sends its first packet (``int(now)``; OpenVPN uses wall-clock
seconds, the peer only compares times with each other).

tls-auth (ssl_pkt.c ``tls_wrap_control`` / ``swap_hmac``, crypto.c
``openvpn_encrypt_v1`` without a cipher)::

    on the wire:  op(1) | session_id(8) | HMAC(H) | packet_id(4) | time(4) | body
    HMAC input:   packet_id | time | op | session_id | body

    H = digest size (MD5 16, SHA1 20, SHA384 48, SHA512 64; ``--auth``), keyed with the
    first H bytes of the HMAC slot of the direction's key half.  OpenVPN builds
    ``HMAC | pid | time | op | sid | body`` and then swaps the 9-byte
    ``op | sid`` to the front: hence the HMAC covers the packet id first.

tls-crypt (tls_crypt.c ``tls_crypt_wrap`` / ``tls_crypt_unwrap``)::

    on the wire:  op(1) | session_id(8) | packet_id(4) | time(4) | tag(32) | ciphertext
    offsets:      0       1              9              13         17        49
    tag        =  HMAC-SHA256(op | session_id | packet_id | time | body)
    ciphertext =  AES-256-CTR(key, IV = tag[:16], body)

    keys: the first 32 bytes of the cipher and HMAC slots; key direction is
    fixed: the server uses direction 0 (KEY_DIRECTION_NORMAL), the client 1
    (KEY_DIRECTION_INVERSE): client -> server with key[1], server -> client
    with key[0].

tls-crypt-v2 (doc/tls-crypt-v2.txt, tls_crypt.c, ssl_pkt.c ``tls_wrap_control``): the
client key Kc is used exactly as a tls-crypt key in the client direction; the two
opcodes that carry the wrapped client key WKc (P_CONTROL_HARD_RESET_CLIENT_V3,
P_CONTROL_WKC_V1) are tls-crypt-wrapped without it and get WKc appended, in the clear::

    on the wire:  tls-crypt(op | session_id | body) | WKc        (WKc ends in its u16 length)

WKc is opaque to the client (the server's key wraps it).  The client's replay ids
start after EARLY_NEG_START (0x0f000001 first): 2.6's signal that it can resend WKc
(ssl.c ``tls_session_init``).

On receive, authentication comes first; the replay check runs on authenticated
packets only, so a forgery cannot move the window.  Anything malformed, forged
or replayed raises :class:`WrapError` (a :class:`ParseError`): drop and count.

The HMACs are :class:`erebus.crypto.seal.Hmac` (key schedule once per key), the replay
state is :class:`erebus.crypto.replay.PacketIdWindow` and the send ids
:func:`erebus.crypto.replay.next_packet_id`, as in static-key mode.  tls-crypt's
cipher is not a :mod:`erebus.crypto.seal` sealer: it is SIV-style (MAC, then encrypt
under an IV that *is* the tag) in CTR mode, so each packet needs a CTR context for its
own IV; there are a handful of control packets per session, none on the data path.
"""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..crypto.replay import PacketIdWindow, next_packet_id
from ..crypto.seal import Hmac
from ..errors import ConfigError, ParseError
from ..wire.openvpn import (CONTROL_OPCODES, EARLY_NEG_START, SESSION_ID_LEN, WKC_OPCODES,
                            opcode_name, split_wkc)
from .algorithms import AlgorithmError
from .algorithms import digest as digest_spec
from .data import DIGESTS, normalize_digest
from .statickey import key_slices

__all__ = ["PACKET_ID_LEN", "TLS_AUTH_DIGESTS", "TLS_CRYPT_OVERHEAD",
           "TlsAuth", "TlsCrypt", "TlsCryptV2", "WrapError"]

HEADER_LEN = 1 + SESSION_ID_LEN          # op | session id: 9 bytes, never wrapped
PACKET_ID_LEN = 8                        # long form: id(4) | time(4)
TLS_CRYPT_TAG_LEN = 32
TLS_CRYPT_KEY_LEN = 32                   # AES-256 key, HMAC-SHA256 key
TLS_CRYPT_OVERHEAD = PACKET_ID_LEN + TLS_CRYPT_TAG_LEN      # 40 (CTR adds no padding)
_TLS_CRYPT_OFF_TAG = HEADER_LEN + PACKET_ID_LEN             # 17
_TLS_CRYPT_OFF_CT = _TLS_CRYPT_OFF_TAG + TLS_CRYPT_TAG_LEN  # 49

DEFAULT_REPLAY_WINDOW = 64               # --replay-window n [t] defaults
DEFAULT_REPLAY_TIME = 15

# The --auth digests tls-auth can use: every HMAC digest of the data channel
# (:mod:`.algorithms`; the HMAC key is the first digest-size bytes of a 64-byte slot,
# and no digest is larger than 64 bytes).
TLS_AUTH_DIGESTS = tuple(DIGESTS)

_PID = struct.Struct("!II")


class WrapError(ParseError):
    """A control packet that failed tls-auth/tls-crypt unwrapping.

    ``kind`` is ``"malformed"`` (too short, not a control opcode), ``"auth"``
    (HMAC/tag mismatch: forged, corrupted or wrong key) or ``"replay"``.
    """

    def __init__(self, kind: str, message: str):
        self.kind = kind
        super().__init__(message)


class _Wrapper:
    """Packet-id send counter and receive replay state shared by both wrappers."""

    name = ""
    overhead = 0
    silent_drop = ("a wrong key or key-direction makes the server drop every packet "
                   "silently")    # what the user reads when the server never answers

    def __init__(self, replay_window: int, replay_time: float, send_time: int | None):
        self._send_id = 0
        self._send_time = send_time
        self.replay = PacketIdWindow(replay_window, replay_time)

    def _next_packet_id(self, now: float) -> bytes:
        """The long-form ``id | time`` of our next packet (the time is ``int(now)`` at
        the first one)."""
        nxt = next_packet_id(self._send_id, self._send_time, lambda: now)
        if nxt is None:
            raise RuntimeError(f"{self.name}: packet id space exhausted within one second")
        self._send_id, self._send_time = nxt
        return _PID.pack(*nxt)

    @staticmethod
    def _check_outgoing(packet: bytes | memoryview) -> memoryview:
        mv = memoryview(packet)
        if len(mv) <= HEADER_LEN:
            raise ValueError("a control packet is op | session id | body")
        opcode = mv[0] >> 3
        if opcode not in CONTROL_OPCODES or opcode in WKC_OPCODES:
            raise ValueError(f"cannot wrap {opcode_name(opcode)}")
        return mv

    def _check_incoming(self, data: bytes | memoryview, minimum: int) -> memoryview:
        mv = memoryview(data)
        if len(mv) < 1:
            raise WrapError("malformed", f"{self.name}: empty packet")
        opcode = mv[0] >> 3
        if opcode not in CONTROL_OPCODES or opcode in WKC_OPCODES:
            raise WrapError("malformed", f"{self.name}: unexpected {opcode_name(opcode)}")
        if len(mv) < minimum:
            raise WrapError("malformed", f"{self.name}: {opcode_name(opcode)} too short "
                                         f"({len(mv)} < {minimum} bytes)")
        return mv

    def _replay_check(self, pid_bytes: bytes | memoryview, now: float) -> None:
        pid, ptime = _PID.unpack(pid_bytes)
        why = self.replay.check(pid, ptime, now)
        if why is not None:
            raise WrapError("replay", f"{self.name}: {why}")
        self.replay.update(pid, ptime, now)

    def wrap(self, packet: bytes | memoryview, now: float) -> bytes:   # pragma: no cover
        raise NotImplementedError

    def unwrap(self, data: bytes | memoryview, now: float) -> bytes:   # pragma: no cover
        raise NotImplementedError


class TlsAuth(_Wrapper):
    """``tls-auth``: an HMAC and a replay packet id on every control packet.

    *key*: the 256 bytes of the static key (:func:`erebus.openvpn.statickey.parse_static_key`);
    *direction*: ``key-direction`` / the tls-auth option's second argument
    (None, 0 or 1; a client normally uses 1 against a server's 0);
    *digest*: the ``auth`` option (default SHA1).
    *send_time*: the time field of our packet ids (default: ``int(now)`` at the
    first :meth:`wrap`).
    """

    name = "tls-auth"

    def __init__(self, key: bytes, direction: int | None, digest: str = "SHA1", *,
                 replay_window: int = DEFAULT_REPLAY_WINDOW,
                 replay_time: float = DEFAULT_REPLAY_TIME, send_time: int | None = None):
        try:
            spec = None if normalize_digest(digest) is None else digest_spec(digest)
        except AlgorithmError as exc:
            raise ConfigError(f"tls-auth: {exc}", option="auth") from None
        if spec is None:     # init.c do_init_tls_wrap_key, in 2.6's words
            raise ConfigError("ERROR: tls-auth enabled, but no valid --auth algorithm "
                              f"specified ('{digest}')", option="auth")
        md = spec.hashlib_name
        super().__init__(replay_window, replay_time, send_time)
        out, inc = key_slices(key, direction)
        self.digest = spec.name
        self.hmac_size = spec.size
        self.overhead = self.hmac_size + PACKET_ID_LEN
        self._hmac_out = Hmac(out.hmac[:self.hmac_size], md)
        self._hmac_in = Hmac(inc.hmac[:self.hmac_size], md)

    def wrap(self, packet: bytes | memoryview, now: float) -> bytes:
        """``op | sid | HMAC | pid | time | body`` for a plain control packet."""
        mv = self._check_outgoing(packet)
        pid = self._next_packet_id(now)
        tag = self._hmac_out.tag(mv, aad=pid)
        return b"".join((mv[:HEADER_LEN], tag, pid, mv[HEADER_LEN:]))

    def unwrap(self, data: bytes | memoryview, now: float) -> bytes:
        """Verify HMAC and replay id; the plain control packet ``op | sid | body``."""
        mv = self._check_incoming(data, HEADER_LEN + self.overhead)
        hs = self.hmac_size
        tag = mv[HEADER_LEN:HEADER_LEN + hs]
        pid = mv[HEADER_LEN + hs:HEADER_LEN + hs + PACKET_ID_LEN]
        body = mv[HEADER_LEN + hs + PACKET_ID_LEN:]
        if not self._hmac_in.verify(tag, mv[:HEADER_LEN], aad=pid, tail=body):
            raise WrapError("auth", f"tls-auth: HMAC mismatch on "
                                    f"{opcode_name(mv[0] >> 3)} (forged, corrupted or wrong key)")
        self._replay_check(pid, now)
        return b"".join((mv[:HEADER_LEN], body))


class TlsCrypt(_Wrapper):
    """``tls-crypt``: HMAC-SHA256 (SIV style) and AES-256-CTR over the control body.

    *key*: the 256 bytes of the static key; *client*: True for the client's key
    direction (1), False for the server's (0).
    """

    name = "tls-crypt"
    overhead = TLS_CRYPT_OVERHEAD

    def __init__(self, key: bytes, *, client: bool = True,
                 replay_window: int = DEFAULT_REPLAY_WINDOW,
                 replay_time: float = DEFAULT_REPLAY_TIME, send_time: int | None = None):
        super().__init__(replay_window, replay_time, send_time)
        out, inc = key_slices(key, 1 if client else 0)
        self.client = client
        self._aes_out = algorithms.AES(out.cipher[:TLS_CRYPT_KEY_LEN])
        self._aes_in = algorithms.AES(inc.cipher[:TLS_CRYPT_KEY_LEN])
        self._hmac_out = Hmac(out.hmac[:TLS_CRYPT_KEY_LEN], "sha256")
        self._hmac_in = Hmac(inc.hmac[:TLS_CRYPT_KEY_LEN], "sha256")

    def wrap(self, packet: bytes | memoryview, now: float) -> bytes:
        """``op | sid | pid | time | tag | AES-CTR(body)`` for a plain control packet."""
        return self._wrap(self._check_outgoing(packet), now)

    def _wrap(self, mv: memoryview, now: float) -> bytes:
        header = b"".join((mv[:HEADER_LEN], self._next_packet_id(now)))
        body = mv[HEADER_LEN:]
        tag = self._hmac_out.tag(body, aad=header)
        enc = Cipher(self._aes_out, modes.CTR(tag[:16])).encryptor()
        return b"".join((header, tag, enc.update(body), enc.finalize()))

    def unwrap(self, data: bytes | memoryview, now: float) -> bytes:
        """Decrypt, verify the tag and the replay id; the plain control packet."""
        mv = self._check_incoming(data, _TLS_CRYPT_OFF_CT)
        tag = bytes(mv[_TLS_CRYPT_OFF_TAG:_TLS_CRYPT_OFF_CT])
        dec = Cipher(self._aes_in, modes.CTR(tag[:16])).decryptor()
        body = dec.update(mv[_TLS_CRYPT_OFF_CT:]) + dec.finalize()
        if not self._hmac_in.verify(tag, body, aad=mv[:_TLS_CRYPT_OFF_TAG]):
            raise WrapError("auth", f"tls-crypt: authentication failed on "
                                    f"{opcode_name(mv[0] >> 3)} (forged, corrupted or wrong key)")
        self._replay_check(mv[HEADER_LEN:_TLS_CRYPT_OFF_TAG], now)
        return b"".join((mv[:HEADER_LEN], body))


class TlsCryptV2(TlsCrypt):
    """``tls-crypt-v2`` on the client: tls-crypt with the client key *key* (Kc, 256
    bytes), and the wrapped client key *wkc* appended to the packets whose opcode
    carries it (:data:`erebus.wire.openvpn.WKC_OPCODES`).

    Those packets are given to :meth:`wrap` as :func:`erebus.wire.openvpn.build_control`
    builds them (the plain packet, then WKc); the plain part is wrapped, WKc follows.
    *early_negotiation*: start the replay ids at EARLY_NEG_START, as 2.6 does.
    """

    name = "tls-crypt-v2"
    silent_drop = ("a client key not made with this server's tls-crypt-v2 key (a wrong "
                   "key) makes the server drop every packet silently")

    def __init__(self, key: bytes, wkc: bytes, *, early_negotiation: bool = True,
                 replay_window: int = DEFAULT_REPLAY_WINDOW,
                 replay_time: float = DEFAULT_REPLAY_TIME, send_time: int | None = None):
        super().__init__(key, client=True, replay_window=replay_window,
                         replay_time=replay_time, send_time=send_time)
        self.wkc = bytes(wkc)
        if early_negotiation:
            self._send_id = EARLY_NEG_START

    def wrap(self, packet: bytes | memoryview, now: float) -> bytes:
        mv = memoryview(packet)
        if len(mv) > HEADER_LEN and (mv[0] >> 3) in WKC_OPCODES:
            plain, wkc = split_wkc(mv)
            if wkc != self.wkc:
                raise ValueError(f"{opcode_name(mv[0] >> 3)} must end in this client's "
                                 "wrapped key")
            if len(plain) <= HEADER_LEN:
                raise ValueError("a control packet is op | session id | body")
            return self._wrap(plain, now) + wkc
        return super().wrap(packet, now)
