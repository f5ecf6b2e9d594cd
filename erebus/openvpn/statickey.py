"""OpenVPN static key files (``openvpn --genkey secret``), as used by ``tls-auth``,
``tls-crypt`` and static-key (``secret``) mode.

File format (crypto.c ``read_key_file`` / ``write_key_file``)::

    #
    # 2048 bit OpenVPN static key
    #
    -----BEGIN OpenVPN Static key V1-----
    <512 hex digits, normally 16 lines of 32>
    -----END OpenVPN Static key V1-----

Anything before the header line is ignored (comments); between header and
footer only hex digits and white space are allowed.

The 256 bytes are a ``struct key2``: two ``struct key`` of 64 cipher bytes then
64 HMAC bytes each.  A user of a slot takes its first N bytes (N = the cipher's
key length or the digest's size).  Key direction (crypto.c
``key_direction_state_init``; ``ascii2keydirection``: "0" is
KEY_DIRECTION_NORMAL, "1" KEY_DIRECTION_INVERSE, absent BIDIRECTIONAL)::

    direction None : send with key[0], receive with key[0]
    direction 0    : send with key[0], receive with key[1]
    direction 1    : send with key[1], receive with key[0]

so two peers with directions 0 and 1 (or both None) understand each other.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from ..errors import ConfigError

STATIC_KEY_HEAD = "-----BEGIN OpenVPN Static key V1-----"
STATIC_KEY_FOOT = "-----END OpenVPN Static key V1-----"
KEY_SLOT_LEN = 64                      # MAX_CIPHER_KEY_LENGTH == MAX_HMAC_KEY_LENGTH
ONE_KEY_LEN = 2 * KEY_SLOT_LEN         # sizeof(struct key)
STATIC_KEY_LEN = 2 * ONE_KEY_LEN       # sizeof(struct key2 .keys): 256 bytes, 2048 bits

_HEX = frozenset(string.hexdigits)

__all__ = ["KeyHalf", "STATIC_KEY_FOOT", "STATIC_KEY_HEAD", "STATIC_KEY_LEN",
           "format_static_key", "key_slices", "parse_static_key"]


@dataclass(frozen=True, slots=True)
class KeyHalf:
    """One ``struct key``: 64 bytes of cipher key material, 64 bytes of HMAC key material."""

    cipher: bytes
    hmac: bytes

    def __repr__(self) -> str:           # never print key material
        return "KeyHalf(<secret>)"


def parse_static_key(text: str | bytes, *, source: str = "<inline>") -> bytes:
    """The 256 key bytes of an OpenVPN static key file.

    *source* names the file (or inline block) in error messages.  Raises
    :class:`erebus.errors.ConfigError` for a missing header or footer, a
    non-hex character or a key that is not exactly 2048 bits.
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"not an OpenVPN static key: not text (byte {exc.start})",
                              path=source) from None
    lines = text.splitlines()
    head = next((i for i, line in enumerate(lines) if line.strip() == STATIC_KEY_HEAD), None)
    if head is None:
        raise ConfigError(f"not an OpenVPN static key: no {STATIC_KEY_HEAD!r} line",
                          path=source)
    digits: list[str] = []
    foot = None
    for i in range(head + 1, len(lines)):
        line = lines[i].strip()
        if line == STATIC_KEY_FOOT:
            foot = i
            break
        for ch in line:
            if ch in _HEX:
                digits.append(ch)
            elif not ch.isspace():
                shown = repr(ch) if ch.isprintable() else f"0x{ord(ch):02x}"
                raise ConfigError(f"static key: non-hex character {shown}",
                                  path=source, line=i + 1)
    if foot is None:
        raise ConfigError(f"static key: no {STATIC_KEY_FOOT!r} line after the key",
                          path=source)
    if len(digits) % 2:
        raise ConfigError(f"static key: odd number of hex digits ({len(digits)})",
                          path=source)
    n = len(digits) // 2
    if n != STATIC_KEY_LEN:
        raise ConfigError(f"static key has {n} bytes ({n * 8} bits); expected "
                          f"{STATIC_KEY_LEN} bytes ({STATIC_KEY_LEN * 8} bits)", path=source)
    return bytes.fromhex("".join(digits))


def format_static_key(key: bytes) -> str:
    """The file text for 256 key bytes, as ``openvpn --genkey secret`` writes it."""
    if len(key) != STATIC_KEY_LEN:
        raise ValueError(f"a static key is {STATIC_KEY_LEN} bytes, not {len(key)}")
    hexed = key.hex()
    body = "\n".join(hexed[i:i + 32] for i in range(0, len(hexed), 32))
    return (f"#\n# {STATIC_KEY_LEN * 8} bit OpenVPN static key\n#\n"
            f"{STATIC_KEY_HEAD}\n{body}\n{STATIC_KEY_FOOT}\n")


def _half(key: bytes, index: int) -> KeyHalf:
    base = index * ONE_KEY_LEN
    return KeyHalf(cipher=bytes(key[base:base + KEY_SLOT_LEN]),
                   hmac=bytes(key[base + KEY_SLOT_LEN:base + ONE_KEY_LEN]))


def key_slices(key: bytes, direction: int | None) -> tuple[KeyHalf, KeyHalf]:
    """(outgoing, incoming) key halves for an OpenVPN key direction (None, 0 or 1)."""
    if len(key) != STATIC_KEY_LEN:
        raise ValueError(f"a static key is {STATIC_KEY_LEN} bytes, not {len(key)}")
    if direction is None:
        out_idx, in_idx = 0, 0
    elif direction == 0:
        out_idx, in_idx = 0, 1
    elif direction == 1:
        out_idx, in_idx = 1, 0
    else:
        raise ValueError(f"key direction must be None, 0 or 1, not {direction!r}")
    return _half(key, out_idx), _half(key, in_idx)
