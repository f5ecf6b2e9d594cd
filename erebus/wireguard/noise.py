"""WireGuard's handshake: Noise_IKpsk2 (whitepaper section 5.4.2-5.4.5), both roles,
plus mac1/mac2 and the cookie reply (section 5.4.7).

:class:`Handshake` holds one handshake of one side: ``create_initiation`` then
``consume_response`` (initiator), or ``consume_initiation`` then ``create_response``
(responder).  Each ends in :class:`TransportKeys`.  Every failure is a
:class:`HandshakeError` whose ``reason`` is a counter's name (bad_mac, auth_failed,
replayed_timestamp ...).  Inputs are bytes; the ephemeral key comes from the caller's
rng and the timestamp from the caller's wall clock: nothing here reads a clock.
"""

from __future__ import annotations

import hmac as _hmac
from dataclasses import dataclass

from ..wire import wireguard as wire
from . import crypto
from .crypto import DhError, InvalidTag, PrivateKey, aead_decrypt, aead_encrypt, hash_, \
    kdf1, kdf2, kdf3, mac

__all__ = ["CONSTRUCTION", "IDENTIFIER", "LABEL_MAC1", "LABEL_COOKIE", "HandshakeError",
           "TransportKeys", "Handshake", "mac1_key", "cookie_key", "add_macs",
           "check_mac1", "CookieJar", "CookieChecker", "COOKIE_SECRET_LIFETIME"]

CONSTRUCTION = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
IDENTIFIER = b"WireGuard v1 zx2c4 Jason@zx2c4.com"
LABEL_MAC1 = b"mac1----"
LABEL_COOKIE = b"cookie--"
COOKIE_SECRET_LIFETIME = 120.0       # seconds: a cookie (and the secret behind it) lasts
_EMPTY_MAC = bytes(16)

_C0 = hash_(CONSTRUCTION)            # the chaining key and hash every handshake starts at
_H0 = hash_(_C0, IDENTIFIER)


class HandshakeError(Exception):
    """A handshake message refused; ``reason`` is the drop counter it counts under."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TransportKeys:
    send: bytes = b""
    receive: bytes = b""
    local_index: int = 0
    remote_index: int = 0
    initiator: bool = True           # we created the keys as the initiator


def mac1_key(public: bytes) -> bytes:
    """The key of mac1 of messages *to* the holder of ``public``."""
    return hash_(LABEL_MAC1, public)


def cookie_key(public: bytes) -> bytes:
    """The key of cookie replies *from* the holder of ``public``."""
    return hash_(LABEL_COOKIE, public)


def add_macs(message: bytearray, key1: bytes, cookie: bytes | None) -> bytes:
    """Fill in mac1 (and mac2 from a cookie, zeros without one); the message as bytes."""
    end = len(message) - 32
    message[end:end + 16] = mac(key1, bytes(message[:end]))
    if cookie is not None:
        message[end + 16:] = mac(cookie, bytes(message[:end + 16]))
    return bytes(message)


def check_mac1(message: bytes, key1: bytes) -> bool:
    end = len(message) - 32
    return _hmac.compare_digest(mac(key1, message[:end]), message[end:end + 16])


def _mix_hash(h: bytes, data: bytes) -> bytes:
    return hash_(h, data)


class Handshake:
    """One handshake between our static key and one peer's.

    ``psk``: the peer's PresharedKey or None (zeros).  The initiator's side:
    ``create_initiation(sender_index, ephemeral_private, timestamp)`` -> the message
    without MACs; ``consume_response(response)`` -> TransportKeys.  The responder's
    side: ``Handshake.consume_initiation(...)`` (a classmethod: the initiator's
    identity comes out of the message) then ``create_response(...)``.
    """

    def __init__(self, local: PrivateKey, remote_public: bytes, psk: bytes | None = None):
        self.local = local
        self.remote_public = bytes(remote_public)
        self.psk = psk or bytes(32)
        self.chaining = _C0
        self.hash = b""
        self.ephemeral: PrivateKey | None = None
        self.remote_ephemeral = b""
        self.local_index = 0
        self.remote_index = 0
        self.timestamp = b""        # the initiator's TAI64N (responder: what it sent)
        self.mac1 = b""             # of the last message we sent (a cookie reply's AD)

    # -- initiator ---------------------------------------------------------------------------

    def create_initiation(self, sender_index: int, ephemeral: PrivateKey,
                          timestamp: bytes) -> bytearray:
        h = _mix_hash(_H0, self.remote_public)
        c = kdf1(_C0, ephemeral.public)
        h = _mix_hash(h, ephemeral.public)
        c, k = kdf2(c, ephemeral.exchange(self.remote_public))
        static = aead_encrypt(k, 0, self.local.public, h)
        h = _mix_hash(h, static)
        c, k = kdf2(c, self.local.exchange(self.remote_public))
        stamp = aead_encrypt(k, 0, timestamp, h)
        h = _mix_hash(h, stamp)
        self.chaining, self.hash, self.ephemeral = c, h, ephemeral
        self.local_index, self.timestamp = sender_index, timestamp
        return wire.build_initiation(sender_index, ephemeral.public, static, stamp)

    def consume_response(self, data: bytes) -> TransportKeys:
        """The peer's response to our initiation (mac1 already checked by the caller)."""
        msg = wire.parse_response(data)
        if self.ephemeral is None or msg.receiver != self.local_index:
            raise HandshakeError("unknown_index", "a handshake response to no initiation "
                                 "of ours")
        try:
            h = _mix_hash(self.hash, msg.ephemeral)
            c = kdf1(self.chaining, msg.ephemeral)
            c = kdf1(c, self.ephemeral.exchange(msg.ephemeral))
            c = kdf1(c, self.local.exchange(msg.ephemeral))
        except DhError:
            raise HandshakeError("auth_failed", "a handshake response with a low-order "
                                 "ephemeral key") from None
        c, tau, k = kdf3(c, self.psk)
        h = _mix_hash(h, tau)
        try:
            aead_decrypt(k, 0, msg.empty, h)
        except InvalidTag:
            raise HandshakeError("auth_failed", "a handshake response that does not "
                                 "authenticate (another key, or a wrong preshared "
                                 "key)") from None
        send, receive = kdf2(c, b"")
        self._forget()
        return TransportKeys(send, receive, self.local_index, msg.sender, True)

    # -- responder ---------------------------------------------------------------------------

    @classmethod
    def consume_initiation(cls, local: PrivateKey, data: bytes,
                           psk_of) -> tuple[Handshake, bytes]:
        """Read an initiation sent to ``local``: (the handshake, the initiator's static
        public key).  ``psk_of(public)`` gives the preshared key of a known peer, or
        raises HandshakeError("unknown_peer") for a key we do not know."""
        msg = wire.parse_initiation(data)
        h = _mix_hash(_H0, local.public)
        c = kdf1(_C0, msg.ephemeral)
        h = _mix_hash(h, msg.ephemeral)
        try:
            c, k = kdf2(c, local.exchange(msg.ephemeral))
        except DhError:
            raise HandshakeError("auth_failed", "a handshake initiation with a low-order "
                                 "ephemeral key") from None
        try:
            static = aead_decrypt(k, 0, msg.static, h)
        except InvalidTag:
            raise HandshakeError("auth_failed", "a handshake initiation that does not "
                                 "authenticate (not for our key)") from None
        h = _mix_hash(h, msg.static)
        psk = psk_of(static)
        try:
            c, k = kdf2(c, local.exchange(static))
            stamp = aead_decrypt(k, 0, msg.timestamp, h)
        except (DhError, InvalidTag):
            raise HandshakeError("auth_failed", "a handshake initiation whose timestamp "
                                 "does not authenticate") from None
        h = _mix_hash(h, msg.timestamp)
        hs = cls(local, static, psk)
        hs.chaining, hs.hash = c, h
        hs.remote_ephemeral, hs.remote_index, hs.timestamp = msg.ephemeral, msg.sender, stamp
        return hs, static

    def create_response(self, sender_index: int, ephemeral: PrivateKey) -> \
            tuple[bytearray, TransportKeys]:
        h = _mix_hash(self.hash, ephemeral.public)
        c = kdf1(self.chaining, ephemeral.public)
        c = kdf1(c, ephemeral.exchange(self.remote_ephemeral))
        c = kdf1(c, ephemeral.exchange(self.remote_public))
        c, tau, k = kdf3(c, self.psk)
        h = _mix_hash(h, tau)
        empty = aead_encrypt(k, 0, b"", h)
        receive, send = kdf2(c, b"")
        self.local_index = sender_index
        message = wire.build_response(sender_index, self.remote_index, ephemeral.public, empty)
        self._forget()
        return message, TransportKeys(send, receive, sender_index, self.remote_index, False)

    def _forget(self) -> None:
        """Once the transport keys exist the handshake's secrets are of no more use."""
        self.chaining = self.hash = b""
        self.ephemeral = None


class CookieJar:
    """The initiator's side of cookies: the last cookie a peer sent, for mac2, for
    COOKIE_SECRET_LIFETIME seconds after it came."""

    def __init__(self, peer_public: bytes):
        self._key = cookie_key(peer_public)
        self.cookie: bytes | None = None
        self.received = 0.0

    def consume(self, data: bytes, mac1_sent: bytes, now: float) -> None:
        """A cookie reply to the message whose mac1 was ``mac1_sent``; HandshakeError
        when it does not decrypt (forged, or for another message)."""
        msg = wire.parse_cookie_reply(data)
        try:
            cookie = crypto.xaead_decrypt(self._key, msg.nonce, msg.cookie, mac1_sent)
        except InvalidTag:
            raise HandshakeError("auth_failed", "a cookie reply that does not "
                                 "authenticate") from None
        self.cookie, self.received = cookie, now

    def current(self, now: float) -> bytes | None:
        if self.cookie is not None and now - self.received < COOKIE_SECRET_LIFETIME:
            return self.cookie
        self.cookie = None
        return None


class CookieChecker:
    """The responder's side (a peer under load): mac2 must be the cookie of the
    sender's address, else it answers a cookie reply.  The secret changes every
    COOKIE_SECRET_LIFETIME seconds (from the caller's rng)."""

    def __init__(self, local_public: bytes, rng, now: float):
        self._mac1 = mac1_key(local_public)
        self._cookie = cookie_key(local_public)
        self._rng = rng
        self._secret = rng(32)
        self._secret_at = now

    def _cookie_of(self, source: bytes, now: float) -> bytes:
        if now - self._secret_at >= COOKIE_SECRET_LIFETIME:
            self._secret, self._secret_at = self._rng(32), now
        return mac(self._secret, source)

    def check_mac2(self, message: bytes, source: bytes, now: float) -> bool:
        end = len(message) - 16
        want = mac(self._cookie_of(source, now), message[:end])
        return _hmac.compare_digest(want, message[end:])

    def reply(self, message: bytes, receiver: int, source: bytes, now: float) -> bytes:
        end = len(message) - 32
        mac1_sent = message[end:end + 16]
        nonce = self._rng(24)
        sealed = crypto.xaead_encrypt(self._cookie, nonce, self._cookie_of(source, now),
                                      mac1_sent)
        return wire.build_cookie_reply(receiver, nonce, sealed)
