"""The one DER element reader erebus needs (X.690 section 8.1): tag, length, content.

For the few ASN.1 structures IKE carries as opaque bytes (RFC 7427 AlgorithmIdentifiers,
ID_DER_ASN1_DN identities); certificates themselves are parsed by ``cryptography``.
"""

from __future__ import annotations

from ..errors import ParseError

__all__ = ["tlv"]


def tlv(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """(tag, content, next position) of the DER element at ``pos``: single-byte tags,
    definite lengths of at most two bytes (64 KiB). ParseError otherwise."""
    if pos + 2 > len(data):
        raise ParseError("truncated")
    tag, n = data[pos], data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 2 or pos + k > len(data):
            raise ParseError("bad length")
        n = int.from_bytes(data[pos:pos + k], "big")
        pos += k
    if pos + n > len(data):
        raise ParseError("truncated")
    return tag, data[pos:pos + n], pos + n
