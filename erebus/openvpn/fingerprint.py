"""Certificate fingerprints of ``peer-fingerprint`` and ``verify-hash``, parsed as
OpenVPN 2.6 parses them (options.c ``parse_hash_fingerprint`` and
``parse_hash_fingerprint_multiline``), and printed as it prints them.

A fingerprint is hex bytes separated by colons, each exactly two hex digits
(``AD:B0:95:...``, either case), no ``SHA256:`` prefix and no other separator: 32
bytes for SHA-256, 20 for SHA-1.  An option's argument (or its inline block) may hold
several, one a line; blank lines and lines starting with ``#`` or ``;`` are skipped.
Pure functions on text: no I/O.
"""

from __future__ import annotations

import string

__all__ = ["DIGEST_SIZES", "FingerprintError", "parse_fingerprint", "parse_fingerprints",
           "format_fingerprint"]

DIGEST_SIZES = {"SHA1": 20, "SHA256": 32}
_HEX = frozenset(string.hexdigits)


class FingerprintError(ValueError):
    """A fingerprint 2.6 refuses, in its words."""


def parse_fingerprint(text: str, nbytes: int) -> bytes:
    """One fingerprint of ``nbytes`` bytes.  Surrounding white space is dropped (2.6
    refuses a trailing space or CR, which only a text editor can see)."""
    text = text.strip()
    out = bytearray()
    pos, term = 0, ""
    while pos < len(text) and len(out) < nbytes:
        seg = text[pos:pos + 3]
        if len(seg) < 2 or not _HEX.issuperset(seg[:2]) or (len(seg) == 3 and seg[2] != ":"):
            hint = (" (2.6 takes the bare hex bytes: drop the 'SHA256:' prefix)"
                    if text.upper().startswith(("SHA256:", "SHA1:", "SHA-256:")) else "")
            raise FingerprintError(f"format error in hash fingerprint: {text}{hint}")
        out.append(int(seg[:2], 16))
        term = seg[2:]
        if not term:
            break
        pos += 3
    if len(out) < nbytes:
        raise FingerprintError(f"hash fingerprint is wrong length - expected {nbytes} "
                               f"bytes, got {len(out)}: {text}")
    if term:
        raise FingerprintError(f"hash fingerprint too long - expected only {nbytes} "
                               f"bytes: {text}")
    return bytes(out)


def parse_fingerprints(text: str, nbytes: int) -> list[bytes]:
    """Every fingerprint of an argument or inline block, one a line."""
    out = []
    for line in text.split("\n"):
        line = line.lstrip()
        if not line or line[0] in "#;":
            continue
        out.append(parse_fingerprint(line, nbytes))
    return out


def format_fingerprint(digest: bytes) -> str:
    """As 2.6 prints a certificate's fingerprint (format_hex_ex): ``ad:b0:95:...``."""
    return ":".join(f"{b:02x}" for b in digest)
