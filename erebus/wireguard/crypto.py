"""WireGuard's primitives (the whitepaper's section 5.4 names): HASH, MAC, HMAC, KDF1-3,
DH, AEAD, XAEAD and TAI64N, from ``hashlib`` and ``cryptography``.

XChaCha20-Poly1305 (the cookie reply's XAEAD) is built from HChaCha20
(draft-irtf-cfrg-xchacha section 2.2), which is taken from the ChaCha20 keystream:
ChaCha20's block function outputs the permuted state *plus* the input state, so
subtracting the input words again gives the permuted state, whose words 0-3 and 12-15
are HChaCha20's output.  ``cryptography``'s ChaCha20 takes the 16 bytes of state words
12-15 (counter and nonce) as its "nonce", which is exactly HChaCha20's input.

Pure functions: no clock, no randomness (an ephemeral key is made from bytes the caller
got from its rng).
"""

from __future__ import annotations

import hashlib
import hmac as _hmac
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, \
    X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["KEY_LEN", "TAG_LEN", "hash_", "mac", "hmac", "kdf1", "kdf2", "kdf3",
           "PrivateKey", "dh", "public_of", "aead_encrypt", "aead_decrypt",
           "hchacha20", "xaead_encrypt", "xaead_decrypt", "tai64n", "InvalidTag",
           "DhError"]

KEY_LEN = 32
TAG_LEN = 16
_ZERO_KEY = bytes(32)
_U32 = struct.Struct("<16I")
_CONSTANTS = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)   # "expand 32-byte k"
TAI64_BASE = 0x400000000000000A      # TAI64 label of 1970 (2^62 + 10 leap seconds)
WHITENER = 0xFFFFFF                  # nanoseconds rounded down to 2^24 ns (wireguard-go)


class DhError(ValueError):
    """A Curve25519 point that gives the all-zero shared secret (a low-order point)."""


def hash_(*parts: bytes) -> bytes:
    """HASH(input): BLAKE2s-256 of the concatenation."""
    h = hashlib.blake2s()
    for part in parts:
        h.update(part)
    return h.digest()


def mac(key: bytes, data: bytes) -> bytes:
    """MAC(key, input): keyed BLAKE2s with a 16-byte digest."""
    return hashlib.blake2s(data, digest_size=16, key=key).digest()


def hmac(key: bytes, data: bytes) -> bytes:
    """HMAC(key, input) with BLAKE2s-256 (block size 64)."""
    return _hmac.new(key, data, hashlib.blake2s).digest()


def _kdf(key: bytes, data: bytes, n: int) -> tuple[bytes, ...]:
    prk = hmac(key, data)
    out, prev = [], b""
    for i in range(1, n + 1):
        prev = hmac(prk, prev + bytes((i,)))
        out.append(prev)
    return tuple(out)


def kdf1(key: bytes, data: bytes) -> bytes:
    return _kdf(key, data, 1)[0]


def kdf2(key: bytes, data: bytes) -> tuple[bytes, bytes]:
    return _kdf(key, data, 2)       # type: ignore[return-value]


def kdf3(key: bytes, data: bytes) -> tuple[bytes, bytes, bytes]:
    return _kdf(key, data, 3)       # type: ignore[return-value]


class PrivateKey:
    """A Curve25519 private key and its public key (32 bytes each)."""

    __slots__ = ("_key", "public")

    def __init__(self, private: bytes):
        if len(private) != KEY_LEN:
            raise ValueError("a Curve25519 private key is 32 bytes")
        self._key = X25519PrivateKey.from_private_bytes(bytes(private))
        self.public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def exchange(self, public: bytes) -> bytes:
        """DH(private, public); DhError for a point that gives the zero secret."""
        try:
            shared = self._key.exchange(X25519PublicKey.from_public_bytes(bytes(public)))
        except ValueError:          # cryptography refuses the all-zero result itself
            raise DhError("a low-order Curve25519 point") from None
        if shared == _ZERO_KEY:
            raise DhError("a low-order Curve25519 point")
        return shared

    def __repr__(self) -> str:
        return f"PrivateKey(public={self.public.hex()[:16]}...)"


def dh(private: PrivateKey, public: bytes) -> bytes:
    return private.exchange(public)


def public_of(private: bytes) -> bytes:
    return PrivateKey(private).public


def _nonce(counter: int) -> bytes:
    return b"\0\0\0\0" + counter.to_bytes(8, "little")


def aead_encrypt(key: bytes, counter: int, plaintext: bytes, ad: bytes) -> bytes:
    """AEAD(key, counter, plain, auth): ChaCha20-Poly1305, the nonce 32 zero bits and
    the 64-bit little-endian counter."""
    return ChaCha20Poly1305(key).encrypt(_nonce(counter), plaintext, ad)


def aead_decrypt(key: bytes, counter: int, ciphertext: bytes, ad: bytes) -> bytes:
    """InvalidTag when it does not authenticate."""
    return ChaCha20Poly1305(key).decrypt(_nonce(counter), ciphertext, ad)


def hchacha20(key: bytes, nonce16: bytes) -> bytes:
    """HChaCha20(key, 16-byte input) -> a 32-byte subkey."""
    if len(key) != 32 or len(nonce16) != 16:
        raise ValueError("HChaCha20 takes a 32-byte key and a 16-byte input")
    block = Cipher(algorithms.ChaCha20(key, nonce16), mode=None).encryptor() \
        .update(bytes(64))
    out = _U32.unpack(block)
    state = _CONSTANTS + struct.unpack("<8I", key) + struct.unpack("<4I", nonce16)
    words = [(out[i] - state[i]) & 0xFFFFFFFF for i in (0, 1, 2, 3, 12, 13, 14, 15)]
    return struct.pack("<8I", *words)


def _xsplit(key: bytes, nonce24: bytes) -> tuple[bytes, bytes]:
    if len(nonce24) != 24:
        raise ValueError("XChaCha20-Poly1305 takes a 24-byte nonce")
    return hchacha20(key, nonce24[:16]), b"\0\0\0\0" + nonce24[16:]


def xaead_encrypt(key: bytes, nonce24: bytes, plaintext: bytes, ad: bytes) -> bytes:
    """XAEAD(key, nonce, plain, auth): XChaCha20-Poly1305."""
    subkey, nonce = _xsplit(key, nonce24)
    return ChaCha20Poly1305(subkey).encrypt(nonce, plaintext, ad)


def xaead_decrypt(key: bytes, nonce24: bytes, ciphertext: bytes, ad: bytes) -> bytes:
    subkey, nonce = _xsplit(key, nonce24)
    return ChaCha20Poly1305(subkey).decrypt(nonce, ciphertext, ad)


def tai64n(unix_time: float) -> bytes:
    """TAI64N of a wall-clock time (12 bytes, big-endian), the nanoseconds rounded down
    to 2^24 ns as wireguard-go whitens them (so the timestamp does not leak the clock
    finely; a responder takes only timestamps greater than the last)."""
    seconds = int(unix_time)
    nanos = int((unix_time - seconds) * 1e9) & ~WHITENER
    return struct.pack(">QI", TAI64_BASE + seconds, nanos)
