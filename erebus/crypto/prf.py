"""Key derivation: the TLS 1.0 PRF (RFC 2246 section 5) that OpenVPN uses for key method 2.

OpenVPN derives data-channel keys without TLS key export as::

    master    = PRF(pre_master, "OpenVPN master secret",
                    client_random1 + server_random1, 48)
    key_block = PRF(master, "OpenVPN key expansion",
                    client_random2 + server_random2 + client_sid + server_sid, 256)
"""

from __future__ import annotations

import hashlib
import hmac


def _p_hash(digest: str, secret: bytes, seed: bytes, length: int) -> bytes:
    out = bytearray()
    a = seed
    while len(out) < length:
        a = hmac.digest(secret, a, digest)
        out += hmac.digest(secret, a + seed, digest)
    return bytes(out[:length])


def tls1_prf(secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """PRF(secret, label, seed) = P_MD5(S1, label+seed) XOR P_SHA1(S2, label+seed)."""
    half = (len(secret) + 1) // 2
    s1, s2 = secret[:half], secret[len(secret) - half:]
    ls = label + seed
    md5 = _p_hash("md5", s1, ls, length)
    sha1 = _p_hash("sha1", s2, ls, length)
    return (int.from_bytes(md5, "big") ^ int.from_bytes(sha1, "big")).to_bytes(length, "big")


MASTER_LABEL = b"OpenVPN master secret"
EXPANSION_LABEL = b"OpenVPN key expansion"
KEY_BLOCK_LEN = 256


def openvpn_key_block(pre_master: bytes, client_random1: bytes, server_random1: bytes,
                      client_random2: bytes, server_random2: bytes,
                      client_session_id: bytes, server_session_id: bytes) -> bytes:
    """The 256-byte key2 block of key method 2 (four 64-byte slots)."""
    master = tls1_prf(pre_master, MASTER_LABEL, client_random1 + server_random1, 48)
    seed = client_random2 + server_random2 + client_session_id + server_session_id
    return tls1_prf(master, EXPANSION_LABEL, seed, KEY_BLOCK_LEN)


assert hashlib.md5  # the PRF needs MD5; fail at import on a FIPS-crippled hashlib
