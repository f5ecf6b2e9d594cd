"""Seal/open: one direction's data protection with its keys, for any packet format.

A :class:`SealOpen` is built once per key (cipher contexts and HMAC states are made
there, never per packet) and turns a plaintext into what goes on the wire after the
format's header, and back::

    sealed = explicit IV (iv_len) | ciphertext | tag (tag_len)

``aad`` is authenticated, not encrypted, and sent by the caller (in its header);
``tail`` is authenticated but never sent (ESP's high sequence bits with ESN on a
MAC transform, RFC 4303 section 2.2.1).  ``counter`` is a number the caller never
repeats for the key (ESP's 64-bit sequence number, OpenVPN's packet id).

Two families:

:class:`AeadSeal` (AES-GCM, ChaCha20-Poly1305; RFC 4106, RFC 7634)
    nonce = salt (fixed, from the keying material) | IV (``iv_len`` bytes, sent);
    the IV is ``(base + counter) mod 2**(8*iv_len)`` with a random ``base`` per
    instance, so it never repeats within a key's lifetime in this process, and two
    processes keyed alike (manual keys after a restart) collide only if their
    counter ranges overlap from random starting points.  AAD as given (ESP puts
    the ESN high bits there, RFC 4106 section 5, so ``tail`` is unused); the tag
    is the AEAD's (16 bytes).

:class:`CbcHmacSeal` (AES-CBC + HMAC, encrypt-then-MAC; RFC 3602 + RFC 4868)
    tag = HMAC(mac_key, aad | IV | ciphertext | tail) truncated to ``tag_len``.
    The plaintext must be a multiple of 16 bytes (the caller pads, as ESP does
    with its own padding).  The IV is unpredictable: one long-lived CBC encryptor
    chains across packets, and each packet starts with a fresh random block, whose
    ciphertext ``AES(random XOR previous block)`` is sent as the IV; the rest of
    the packet is then the CBC encryption of the plaintext under that IV.  That is
    NIST SP 800-38A's "IV = encryption of a nonce", and saves building a cipher
    context per packet.  Opening feeds ``IV | ciphertext`` to a long-lived CBC
    decryptor and drops the first block: the IV becomes the chaining block.
    The MAC is checked (constant time) before anything is decrypted.

Failures raise :class:`AuthenticationError` (a :class:`~erebus.errors.ParseError`:
drop and count).  The OpenVPN data channel (``erebus.openvpn.data``) keeps its own
layouts (its tag sits in front of the ciphertext); both use the same primitives
(:mod:`erebus.crypto.aead`) and :class:`erebus.crypto.replay.ReplayWindow`.
"""

from __future__ import annotations

import hmac
import os
import struct
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from ..errors import ParseError

__all__ = ["AuthenticationError", "SealOpen", "AeadSeal", "CbcHmacSeal", "AEAD_ALGORITHMS"]

Buffer = bytes | bytearray | memoryview


class AuthenticationError(ParseError):
    """A sealed packet that does not authenticate (wrong key, tampered, truncated)."""


class SealOpen(Protocol):
    name: str
    iv_len: int       # explicit IV bytes in front of the ciphertext
    tag_len: int      # ICV bytes after the ciphertext
    block_len: int    # the plaintext must be a multiple of this (1: any length)

    def seal(self, counter: int, plaintext: Buffer, aad: bytes, tail: bytes = b"") -> bytes:
        """``IV | ciphertext | tag`` for ``plaintext``."""

    def open(self, sealed: Buffer, aad: bytes, tail: bytes = b"") -> bytes:
        """The plaintext of ``IV | ciphertext | tag``; AuthenticationError if forged."""


_U64 = struct.Struct("!Q")

# name -> (constructor, key lengths)
AEAD_ALGORITHMS = {
    "aes-gcm": (AESGCM, (16, 24, 32)),
    "chacha20-poly1305": (ChaCha20Poly1305, (32,)),
}


class AeadSeal:
    """An AEAD with a 4-byte salt and a counter-derived 8-byte explicit IV (RFC 4106,
    RFC 7634): nonce = salt | IV."""

    __slots__ = ("name", "iv_len", "tag_len", "block_len", "_aead", "_salt", "_base",
                 "_mask", "_iv")

    def __init__(self, algorithm: str, key: bytes, salt: bytes, *,
                 iv_base: int | None = None):
        ctor, key_lens = AEAD_ALGORITHMS[algorithm]
        if len(key) not in key_lens:
            raise ValueError(f"{algorithm}: key of {len(key)} bytes (want {key_lens})")
        if len(salt) != 4:
            raise ValueError(f"{algorithm}: salt of {len(salt)} bytes (want 4)")
        self.name = algorithm
        self.iv_len = 8
        self.tag_len = 16
        self.block_len = 1
        self._aead = ctor(bytes(key))
        self._salt = bytes(salt)
        self._mask = (1 << 64) - 1
        self._base = (int.from_bytes(os.urandom(8), "big") if iv_base is None
                      else iv_base) & self._mask
        self._iv = _U64

    def seal(self, counter: int, plaintext: Buffer, aad: bytes, tail: bytes = b"") -> bytes:
        iv = self._iv.pack((self._base + counter) & self._mask)
        return iv + self._aead.encrypt(self._salt + iv, plaintext, aad)

    def open(self, sealed: Buffer, aad: bytes, tail: bytes = b"") -> bytes:
        n = self.iv_len
        if len(sealed) < n + 16:
            raise AuthenticationError("sealed data shorter than IV and tag")
        try:
            return self._aead.decrypt(self._salt + bytes(sealed[:n]), sealed[n:], aad)
        except InvalidTag:
            raise AuthenticationError("ICV mismatch") from None


class CbcHmacSeal:
    """AES-CBC then HMAC over ``aad | IV | ciphertext | tail`` (RFC 3602, RFC 4868)."""

    __slots__ = ("name", "iv_len", "tag_len", "block_len", "_enc", "_dec", "_mac",
                 "_compare")

    DIGESTS = ("sha256", "sha384", "sha512", "sha1")

    def __init__(self, key: bytes, mac_key: bytes, *, digest: str = "sha256",
                 tag_len: int = 16):
        if len(key) not in (16, 24, 32):
            raise ValueError(f"AES-CBC: key of {len(key)} bytes (want 16, 24 or 32)")
        if digest not in self.DIGESTS:
            raise ValueError(f"unsupported HMAC digest {digest}")
        self.name = f"aes-cbc-hmac-{digest}"
        self.iv_len = 16
        self.tag_len = tag_len
        self.block_len = 16
        aes = algorithms.AES(bytes(key))
        zero = bytes(16)
        self._enc = Cipher(aes, modes.CBC(os.urandom(16))).encryptor()
        self._dec = Cipher(aes, modes.CBC(zero)).decryptor()
        self._mac = hmac.new(bytes(mac_key), digestmod=digest)
        self._compare = hmac.compare_digest

    def _tag(self, data: Buffer, aad: bytes, tail: bytes) -> bytes:
        mac = self._mac.copy()
        if aad:
            mac.update(aad)
        mac.update(data)
        if tail:
            mac.update(tail)
        return mac.digest()[:self.tag_len]

    def seal(self, counter: int, plaintext: Buffer, aad: bytes, tail: bytes = b"") -> bytes:
        if len(plaintext) % 16:
            raise ValueError("CBC plaintext must be a multiple of 16 bytes (pad it first)")
        body = self._enc.update(os.urandom(16)) + self._enc.update(plaintext)
        return body + self._tag(body, aad, tail)

    def open(self, sealed: Buffer, aad: bytes, tail: bytes = b"") -> bytes:
        t = self.tag_len
        n = len(sealed) - t
        if n < 32 or n % 16:
            raise AuthenticationError(f"CBC payload of {max(n, 0)} bytes (want IV and "
                                      "whole blocks)")
        view = memoryview(sealed)
        body = view[:n]
        if not self._compare(self._tag(body, aad, tail), view[n:]):
            raise AuthenticationError("ICV mismatch")
        return self._dec.update(body)[16:]
