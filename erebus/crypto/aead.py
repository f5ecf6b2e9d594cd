"""AEAD primitives shared by the OpenVPN data channel and ESP."""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

TAG_LEN = 16

# OpenVPN cipher name -> (key length, constructor)
AEAD_CIPHERS = {
    "AES-128-GCM": (16, AESGCM),
    "AES-192-GCM": (24, AESGCM),
    "AES-256-GCM": (32, AESGCM),
    "CHACHA20-POLY1305": (32, ChaCha20Poly1305),
}


def make_aead(name: str, key: bytes):
    """A reusable cipher object (built once per key, not per packet)."""
    key_len, ctor = AEAD_CIPHERS[name]
    return ctor(bytes(key[:key_len]))


__all__ = ["AEAD_CIPHERS", "InvalidTag", "TAG_LEN", "make_aead"]
