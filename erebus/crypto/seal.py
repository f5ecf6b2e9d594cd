"""Seal/open: one direction's data protection with its keys, for any packet format.

Every user of AES-CBC + HMAC or of an AEAD in erebus goes through this module: ESP
(``erebus.ipsec.esp``), IKE's SK payloads (``erebus.ipsec.ikecrypto.sk``), the OpenVPN
data channel (``erebus.openvpn.data``), static-key mode (``erebus.openvpn.static``) and
the HMAC of tls-auth/tls-crypt (``erebus.openvpn.wrap``).  A :class:`SealOpen` is built
once per key: cipher contexts and HMAC states are made there, never per packet.  It
turns a plaintext into what goes on the wire and back::

    prefix | IV | ciphertext | tag          (ESP, IKE)
    prefix | tag | IV | ciphertext          (CbcHmacSeal, tag_first: OpenVPN)
    prefix | IV | tag | ciphertext          (AeadSeal, tag_first: OpenVPN)

``prefix`` is put in front as it is (the format's header: ESP's SPI and sequence
number, IKE's header and payload header, OpenVPN's opcode and peer id), so a packet is
assembled in one copy; it is authenticated only if it is also passed as ``aad``.
``aad`` is authenticated, not encrypted and not sent by the sealer; ``tail`` is
authenticated after the ciphertext but never sent (ESP's high sequence bits with ESN
on a MAC transform, RFC 4303 section 2.2.1).  Randomness comes from the ``rng``
(``n -> n bytes``) the sealer was built with; nothing here calls ``os.urandom`` by
itself (the keyword defaults are for standalone use, a session passes its own).

:class:`AeadSeal` (AES-GCM, AES-CCM, ChaCha20-Poly1305; RFC 4106, RFC 5282, RFC 7634)
    nonce = salt | IV (``salt_first``, ESP and IKE) or IV | salt (OpenVPN: packet id |
    implicit IV).  The IV is ``iv`` if the caller gives one (OpenVPN's packet id, test
    vectors); else ``(base + counter) mod 2**(8*iv_len)`` with a random ``base`` per
    instance (ESP: never repeats within a key's lifetime in this process, and two
    processes keyed alike, manual keys after a restart, collide only if their counter
    ranges overlap from random starting points); ``counter=None`` takes a random IV
    from the rng (IKE: a few messages per key, no birthday risk).

:class:`CbcHmacSeal` (AES-CBC + HMAC, encrypt-then-MAC; RFC 3602, RFC 4868, OpenVPN)
    tag = HMAC(mac_key, aad | IV | ciphertext | tail), truncated to ``tag_len``.  The
    IV is ``rng(16)`` (or the caller's ``iv``), sent as it is (OpenVPN, IKE); with
    ``encrypted_ivs`` (ESP, as before) it is ``AES(rng(16) XOR C)``, see below.
    Either half may be absent, as OpenVPN allows: no cipher (``cipher none``: the
    plaintext goes out authenticated, not encrypted) or no MAC (``auth none``).  The
    plaintext must be a multiple of 16 bytes: the caller pads (ESP's trailer, IKE's
    pad length, :func:`pkcs7_padding` for OpenVPN).  On open the MAC is checked
    (constant time) before anything is decrypted.

The CBC contexts live as long as the key: one encryptor chains across packets (``C``:
its chaining block, the last ciphertext block it gave).  A packet under the IV ``X``
starts by feeding it ``AES-1(X) XOR C``, which it turns into ``X``; what follows is the
CBC encryption of the plaintext under ``X``.  ``AES-1(X) XOR C`` is what a second
long-lived context, a CBC *decryptor* fed the same ciphertext blocks, gives for ``X``.
With ``encrypted_ivs`` the packet starts with the rng's block ``R`` instead, and its
IV is ``AES(R XOR C)``: NIST SP 800-38A appendix C's "IV = encryption of a nonce",
unpredictable as well, and two context calls cheaper.  Opening feeds
``IV | ciphertext`` to a long-lived CBC decryptor and drops the first block: the IV
becomes the chaining block.

Failures raise :class:`AuthenticationError` (a :class:`~erebus.errors.ParseError`: drop
and count); :class:`SealedLengthError`, a subclass, when the length alone is wrong.
"""

from __future__ import annotations

import hmac
import os
from typing import Callable, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..errors import ParseError
from .aead import AEAD_ALGORITHMS, make_aead

__all__ = ["AuthenticationError", "SealedLengthError", "PaddingError", "Rng", "SealOpen",
           "AeadSeal", "CbcHmacSeal", "Hmac", "AEAD_ALGORITHMS", "pkcs7_padding",
           "pkcs7_unpadded_len"]

Buffer = bytes | bytearray | memoryview
Rng = Callable[[int], bytes]
BLOCK = 16                      # the AES block, and CBC's IV


class AuthenticationError(ParseError):
    """A sealed packet that does not authenticate (wrong key, tampered, truncated)."""


class SealedLengthError(AuthenticationError):
    """Sealed data of a length its layout cannot have (shorter than IV and tag, a CBC
    ciphertext that is not whole blocks)."""


class PaddingError(ParseError):
    """A decrypted plaintext whose PKCS#7 padding is not valid."""


class SealOpen(Protocol):
    name: str
    iv_len: int       # explicit IV bytes in the sealed data
    tag_len: int      # ICV bytes in the sealed data
    block_len: int    # the plaintext must be a multiple of this (1: any length)

    def seal(self, counter: int | None, plaintext: Buffer, aad: Buffer = b"",
             tail: bytes = b"", *, prefix: Buffer = b"", iv: bytes | None = None) -> bytes:
        """``prefix`` and the sealed ``plaintext`` in the sealer's layout."""

    def open(self, sealed: Buffer, aad: Buffer = b"", tail: bytes = b"") -> bytes | memoryview:
        """The plaintext of sealed data; AuthenticationError if forged or cut."""


# -- the building blocks --------------------------------------------------------------------

class Hmac:
    """An HMAC whose key schedule is done once: ``tag(data, aad, tail)`` is
    HMAC(aad | data | tail), truncated to ``tag_len`` (default: the whole digest)."""

    __slots__ = ("digest", "digest_size", "tag_len", "_state")

    def __init__(self, key: Buffer, digest: str, tag_len: int | None = None):
        self.digest = digest.lower()
        self._state = hmac.new(bytes(key), digestmod=self.digest)
        self.digest_size = self._state.digest_size
        self.tag_len = tag_len or self.digest_size
        if not 0 < self.tag_len <= self.digest_size:
            raise ValueError(f"HMAC-{digest}: tag of {tag_len} bytes")

    def tag(self, data: Buffer, aad: Buffer = b"", tail: Buffer = b"") -> bytes:
        mac = self._state.copy()
        if aad:
            mac.update(aad)
        mac.update(data)
        if tail:
            mac.update(tail)
        if self.tag_len == self.digest_size:
            return mac.digest()
        return mac.digest()[:self.tag_len]

    def verify(self, tag: Buffer, data: Buffer, aad: Buffer = b"", tail: Buffer = b"") -> bool:
        """Whether ``tag`` is right (compared in constant time)."""
        return hmac.compare_digest(self.tag(data, aad, tail), tag)


_PKCS7 = [bytes((n,)) * n for n in range(BLOCK + 1)]


def pkcs7_padding(length: int, block: int = BLOCK) -> bytes:
    """The PKCS#7 padding after ``length`` bytes of plaintext (1 to ``block`` bytes;
    16 for AES, 8 for the 64-bit block ciphers)."""
    return _PKCS7[block - length % block]


def pkcs7_unpadded_len(plain: Buffer, block: int = BLOCK) -> int:
    """The length of ``plain`` without its PKCS#7 padding; PaddingError if it is bad."""
    n = len(plain)
    pad = plain[-1] if n else 0
    if not 0 < pad <= block or pad > n or plain[n - pad:] != _PKCS7[pad]:
        raise PaddingError("bad PKCS#7 padding")
    return n - pad


# -- the sealers ----------------------------------------------------------------------------

class AeadSeal:
    """An AEAD with a salt (implicit nonce part) and an explicit IV: nonce = salt | IV
    (RFC 4106, 5282, 7634) or IV | salt (``salt_first=False``, OpenVPN)."""

    __slots__ = ("name", "iv_len", "tag_len", "block_len", "_aead", "_salt", "_salt_first",
                 "_tag_first", "_base", "_mask", "_rng")

    def __init__(self, algorithm: str, key: Buffer, salt: Buffer, *, iv_len: int = 8,
                 tag_len: int = 16, salt_first: bool = True, tag_first: bool = False,
                 iv_base: int | None = None, rng: Rng = os.urandom):
        if algorithm not in AEAD_ALGORITHMS:
            raise ValueError(f"AEAD {algorithm} not supported")
        self.name = algorithm
        self.iv_len = iv_len
        self.tag_len = tag_len
        self.block_len = 1
        self._aead = make_aead(algorithm, key, tag_len)
        self._salt = bytes(salt)
        self._salt_first = salt_first
        self._tag_first = tag_first
        self._mask = (1 << (8 * iv_len)) - 1
        self._rng = rng
        self._base = (int.from_bytes(rng(iv_len), "big") if iv_base is None
                      else iv_base) & self._mask

    def seal(self, counter: int | None, plaintext: Buffer, aad: Buffer = b"",
             tail: bytes = b"", *, prefix: Buffer = b"", iv: bytes | None = None) -> bytes:
        if iv is None:
            iv = (self._rng(self.iv_len) if counter is None else
                  ((self._base + counter) & self._mask).to_bytes(self.iv_len, "big"))
        out = self._aead.encrypt(self._salt + iv if self._salt_first else iv + self._salt,
                                 plaintext, aad)
        if self._tag_first:
            t = self.tag_len
            return b"".join((prefix, iv, out[-t:], out[:-t]))
        return b"".join((prefix, iv, out))

    def open(self, sealed: Buffer, aad: Buffer = b"", tail: bytes = b"") -> bytes:
        n = self.iv_len
        t = self.tag_len
        if len(sealed) < n + t:
            raise SealedLengthError("sealed data shorter than IV and tag")
        iv = bytes(sealed[:n])
        nonce = self._salt + iv if self._salt_first else iv + self._salt
        try:
            if self._tag_first:
                return self._aead.decrypt(nonce, b"".join((sealed[n + t:], sealed[n:n + t])),
                                          aad)
            return self._aead.decrypt(nonce, sealed[n:], aad)
        except InvalidTag:
            raise AuthenticationError("ICV mismatch") from None


class CbcHmacSeal:
    """A CBC block cipher (AES unless ``cipher`` says otherwise) then HMAC over
    ``aad | IV | ciphertext | tail`` (RFC 3602, RFC 4868); the tag after the ciphertext,
    or in front of the IV (``tag_first``, OpenVPN).  ``key`` None: no encryption;
    ``mac_key`` None: no tag (OpenVPN's cipher none, auth none).  ``cipher`` turns the
    key into a ``cryptography`` block cipher (OpenVPN's legacy ciphers: Blowfish, 3DES,
    Camellia ...); its block is the IV and the unit the plaintext comes in.  The CBC
    contexts live as long as the key (see the module docstring)."""

    __slots__ = ("name", "iv_len", "tag_len", "block_len", "_rng", "_enc", "_chain", "_dec",
                 "_mac", "_tag_first", "_encrypted_ivs")

    def __init__(self, key: Buffer | None, mac_key: Buffer | None, *, digest: str = "sha256",
                 tag_len: int | None = 16, tag_first: bool = False, encrypted_ivs: bool = False,
                 rng: Rng = os.urandom, cipher: Callable[[bytes], object] | None = None,
                 cipher_name: str = "aes-cbc"):
        digest = digest.lower()
        self._rng = rng
        self._encrypted_ivs = encrypted_ivs
        self._enc = self._chain = self._dec = None
        block = BLOCK
        if key is not None:
            if cipher is None:
                if len(key) not in (16, 24, 32):
                    raise ValueError(f"AES-CBC: key of {len(key)} bytes (want 16, 24 or 32)")
                algorithm = algorithms.AES(bytes(key))
            else:
                algorithm = cipher(bytes(key))
            block = algorithm.block_size // 8
            zero = modes.CBC(bytes(block))
            self._enc = Cipher(algorithm, zero).encryptor()
            self._chain = Cipher(algorithm, zero).decryptor()   # follows _enc's chaining block
            self._dec = Cipher(algorithm, zero).decryptor()
        try:
            self._mac = Hmac(mac_key, digest, tag_len) if mac_key is not None else None
        except (ValueError, TypeError):
            raise ValueError(f"unsupported HMAC digest {digest}") from None
        self._tag_first = tag_first
        self.name = "-".join(part for part, on in ((cipher_name, key is not None),
                                                   (f"hmac-{digest}", self._mac)) if on)
        self.iv_len = block if key is not None else 0
        self.tag_len = self._mac.tag_len if self._mac else 0
        self.block_len = block if key is not None else 1

    def seal(self, counter: int | None, plaintext: Buffer, aad: Buffer = b"",
             tail: bytes = b"", *, prefix: Buffer = b"", iv: bytes | None = None) -> bytes:
        enc = self._enc
        if enc is None:
            body = plaintext
        else:
            block = self.block_len
            if len(plaintext) % block:
                raise ValueError(f"CBC plaintext must be a multiple of {block} bytes "
                                 "(pad it first)")
            if self._encrypted_ivs:
                if iv is not None:
                    raise ValueError("this sealer encrypts its own IVs (encrypted_ivs)")
                body = enc.update(self._rng(block)) + enc.update(plaintext)
            else:
                if iv is None:
                    iv = self._rng(block)
                if len(iv) != block:
                    raise ValueError(f"CBC: IV of {len(iv)} bytes (want {block})")
                body = enc.update(self._chain.update(iv)) + enc.update(plaintext)
                self._chain.update(memoryview(body)[-block:])
        if self._mac is None:
            return b"".join((prefix, body))
        tag = self._mac.tag(body, aad, tail)
        return b"".join((prefix, tag, body) if self._tag_first else (prefix, body, tag))

    def open(self, sealed: Buffer, aad: Buffer = b"", tail: bytes = b"") -> bytes | memoryview:
        view = memoryview(sealed)
        if self._mac is not None:
            t = self.tag_len
            n = len(view) - t
            if n < 0:
                raise SealedLengthError(f"sealed data of {len(view)} bytes, shorter than "
                                        f"its {t}-byte ICV")
            if self._tag_first:
                tag, view = view[:t], view[t:]
            else:
                view, tag = view[:n], view[n:]
            if not self._mac.verify(tag, view, aad, tail):
                raise AuthenticationError("ICV mismatch")
        if self._dec is None:
            return view
        n = len(view)
        block = self.block_len
        if n < 2 * block or n % block:
            raise SealedLengthError(f"CBC data of {n} bytes (want an IV and whole blocks)")
        return self._dec.update(view)[block:]    # the IV block drops out
