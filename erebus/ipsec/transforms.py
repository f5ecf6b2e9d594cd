"""The ESP transforms erebus speaks, named like strongSwan's ESP proposals.

=================  =======================================  =====  ====  =====  ===
name               what                                     key    IV    ICV    blk
=================  =======================================  =====  ====  =====  ===
aes128gcm16        AES-GCM, 16-byte ICV (RFC 4106)          16+4   8     16     1
aes192gcm16        "                                        24+4   8     16     1
aes256gcm16        "                                        32+4   8     16     1
chacha20poly1305   ChaCha20-Poly1305 (RFC 7634)             32+4   8     16     1
aes128-sha256      AES-CBC (RFC 3602) + HMAC-SHA-256-128    16     16    16     16
aes192-sha256      (RFC 4868), integrity key 32 bytes       24     16    16     16
aes256-sha256      "                                        32     16    16     16
aes256-sha384      AES-CBC + HMAC-SHA-384-192, key 48       32     16    24     16
aes256-sha512      AES-CBC + HMAC-SHA-512-256, key 64       32     16    32     16
=================  =======================================  =====  ====  =====  ===

AEAD keying material is the key followed by the 4-byte salt (RFC 4106 section 8.1,
RFC 7634 section 2), as ``ip xfrm`` and Wireshark take it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..crypto.seal import AeadSeal, CbcHmacSeal, Rng, SealOpen

__all__ = ["Transform", "TRANSFORMS", "get_transform"]


@dataclass(frozen=True, slots=True)
class Transform:
    name: str
    description: str
    aead: bool
    key_len: int                 # bytes of `key` (the salt included for AEAD)
    integrity_key_len: int       # bytes of `integrity_key` (0: none, AEAD)
    iv_len: int
    icv_len: int
    block_len: int               # the encrypted part is a multiple of this
    wireshark_encryption: str | None   # the esp_sa UAT's names (Wireshark 4.0)
    wireshark_authentication: str
    _algorithm: str = ""         # AEAD algorithm or HMAC digest

    @property
    def align(self) -> int:
        """What the sender pads the encrypted part to: the block size, at least 4."""
        return max(self.block_len, 4)

    @property
    def overhead(self) -> int:
        """The most ESP adds to an inner packet: header, IV, trailer with the longest
        padding this sender uses, ICV (UDP and outer IPv4 not included)."""
        return 8 + self.iv_len + self.align - 1 + 2 + self.icv_len

    def new(self, key: bytes, integrity_key: bytes = b"", *, rng: Rng = os.urandom,
            iv_base: int | None = None) -> SealOpen:
        """The seal/open object of one SA (built once, used for every packet); ``rng``
        gives the CBC IVs and the AEAD IV base (unless ``iv_base`` is given)."""
        if len(key) != self.key_len:
            raise ValueError(f"{self.name}: key of {len(key)} bytes (want {self.key_len})")
        if len(integrity_key) != self.integrity_key_len:
            raise ValueError(f"{self.name}: integrity key of {len(integrity_key)} bytes "
                             f"(want {self.integrity_key_len})")
        if self.aead:
            return AeadSeal(self._algorithm, key[:-4], key[-4:], iv_base=iv_base, rng=rng)
        return CbcHmacSeal(key, integrity_key, digest=self._algorithm, tag_len=self.icv_len,
                           encrypted_ivs=True, rng=rng)


def _gcm(bits: int) -> Transform:
    return Transform(f"aes{bits}gcm16", f"AES-{bits}-GCM with a 16-byte ICV (RFC 4106)",
                     True, bits // 8 + 4, 0, 8, 16, 1,
                     "AES-GCM with 16 octet ICV [RFC4106]", "NULL", "aes-gcm")


def _cbc(bits: int, digest: str) -> Transform:
    size = {"sha256": 32, "sha384": 48, "sha512": 64}[digest]
    icv = size // 2
    auth = f"HMAC-SHA-{size * 8}-{icv * 8}"
    return Transform(f"aes{bits}-{digest}", f"AES-{bits}-CBC with {auth} (RFC 3602, 4868)",
                     False, bits // 8, size, 16, icv, 16, "AES-CBC [RFC3602]",
                     f"{auth} [RFC4868]", digest)


TRANSFORMS: dict[str, Transform] = {t.name: t for t in (
    _gcm(128), _gcm(192), _gcm(256),
    Transform("chacha20poly1305", "ChaCha20-Poly1305 (RFC 7634)", True, 36, 0, 8, 16, 1,
              None, "NULL", "chacha20-poly1305"),
    _cbc(128, "sha256"), _cbc(192, "sha256"), _cbc(256, "sha256"),
    _cbc(256, "sha384"), _cbc(256, "sha512"),
)}


def get_transform(name: str) -> Transform:
    """The transform called ``name`` (case-insensitive); KeyError listing the known ones."""
    try:
        return TRANSFORMS[name.lower()]
    except KeyError:
        raise KeyError(f"unknown ESP transform {name!r} (known: "
                       f"{', '.join(TRANSFORMS)})") from None
