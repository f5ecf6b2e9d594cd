"""The AEAD algorithms erebus speaks, by name, for :class:`erebus.crypto.seal.AeadSeal`."""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

# algorithm -> (key lengths, tag lengths)
AEAD_ALGORITHMS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "aes-gcm": ((16, 24, 32), (16,)),                   # RFC 4106, RFC 5282
    "aes-ccm": ((16, 24, 32), (8, 12, 16)),             # RFC 4309, RFC 5282
    "chacha20-poly1305": ((32,), (16,)),                # RFC 7634
}

# OpenVPN cipher name -> (key length, algorithm)
AEAD_CIPHERS = {
    "AES-128-GCM": (16, "aes-gcm"),
    "AES-192-GCM": (24, "aes-gcm"),
    "AES-256-GCM": (32, "aes-gcm"),
    "CHACHA20-POLY1305": (32, "chacha20-poly1305"),
}


def make_aead(algorithm: str, key: bytes, tag_len: int = 16):
    """The cryptography AEAD object for ``algorithm`` (built once per key)."""
    key_lens, tag_lens = AEAD_ALGORITHMS[algorithm]
    if len(key) not in key_lens:
        raise ValueError(f"{algorithm}: key of {len(key)} bytes (want {key_lens})")
    if tag_len not in tag_lens:
        raise ValueError(f"{algorithm}: tag of {tag_len} bytes (want {tag_lens})")
    key = bytes(key)
    if algorithm == "aes-gcm":
        return AESGCM(key)
    if algorithm == "aes-ccm":
        return AESCCM(key, tag_length=tag_len)
    return ChaCha20Poly1305(key)


__all__ = ["AEAD_ALGORITHMS", "AEAD_CIPHERS", "make_aead"]
