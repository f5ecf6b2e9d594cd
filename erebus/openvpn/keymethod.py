"""Key method 2: the key material and options exchanged inside TLS (ssl.c).

Client to server::

    u32 0 | u8 2 | pre_master(48) | random1(32) | random2(32)
          | options string | username | password | peer_info

Server to client::

    u32 0 | u8 2 | random1(32) | random2(32) | options string [| ...]

Strings are ``u16 length | bytes | NUL`` with the length counting the NUL
(ssl.c ``write_string``; an empty string is ``00 01 00``); an absent string
(no username/password) is just ``u16 0`` (``write_empty_string``).  A 2.6
server reads the options string, username and password with ``read_string``,
which treats length 0 as "not provided".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import ParseError
from .. import __version__

KEY_METHOD_2 = 2
KEY_METHOD_MASK = 0x0F
PRE_MASTER_LEN = 48
RANDOM_LEN = 32
MAX_STRING = 65535

# IV_PROTO bits (ssl.h); advertise only what we implement.
IV_PROTO_DATA_V2 = 1 << 1
IV_PROTO_REQUEST_PUSH = 1 << 2
IV_PROTO_TLS_KEY_EXPORT = 1 << 3
IV_PROTO_AUTH_PENDING_KW = 1 << 4
IV_PROTO_CC_EXIT_NOTIFY = 1 << 7

IMPLEMENTED_IV_PROTO = (IV_PROTO_DATA_V2 | IV_PROTO_REQUEST_PUSH | IV_PROTO_TLS_KEY_EXPORT
                        | IV_PROTO_AUTH_PENDING_KW | IV_PROTO_CC_EXIT_NOTIFY)

_U16 = struct.Struct("!H")


def write_string(value: str | bytes | None) -> bytes:
    """``None`` is an absent string (``u16 0``); anything else, even empty, is
    ``u16 len+1 | bytes | NUL`` exactly as OpenVPN's write_string sends it."""
    if value is None:
        return _U16.pack(0)
    raw = value.encode() if isinstance(value, str) else value
    if b"\x00" in raw:
        raise ValueError("key method 2 strings cannot contain NUL")
    if len(raw) + 1 > MAX_STRING:
        raise ValueError("key method 2 string too long")
    return _U16.pack(len(raw) + 1) + raw + b"\x00"


def read_string(buf: memoryview, pos: int) -> tuple[str, int]:
    if pos + 2 > len(buf):
        raise ParseError("key method 2: truncated string length")
    (n,) = _U16.unpack_from(buf, pos)
    pos += 2
    if n == 0:
        return "", pos
    if pos + n > len(buf):
        raise ParseError("key method 2: string runs past the message")
    raw = bytes(buf[pos:pos + n])
    if raw[-1] != 0:
        raise ParseError("key method 2: string not NUL-terminated")
    return raw[:-1].decode("utf-8", "replace"), pos + n


@dataclass(slots=True)
class ClientKeySource:
    pre_master: bytes
    random1: bytes
    random2: bytes


@dataclass(slots=True)
class ServerKeySource:
    random1: bytes
    random2: bytes
    options: str


def peer_info(ciphers: list[str], *, iv_proto: int = IMPLEMENTED_IV_PROTO,
              mtu: int | None = None, sso: tuple[str, ...] | list[str] = ()) -> str:
    """The peer-info lines.  ``IV_NCP=2`` only when both AES-GCM ciphers are offered
    (ssl.c ``push_peer_info``): an OpenVPN 2.4 server pushes AES-256-GCM or AES-128-GCM
    to any client that says IV_NCP=2, whatever else it offers.  ``sso``: the
    pending-auth methods (IV_SSO, management-notes.txt: webauth, openurl, crtext) the
    client handles; none: no IV_SSO line."""
    lines = [
        "IV_VER=2.6.14",
        "IV_PLAT=linux",
        f"IV_PROTO={iv_proto}",
        *(["IV_NCP=2"] if {"AES-128-GCM", "AES-256-GCM"} <= set(ciphers) else []),
        f"IV_CIPHERS={':'.join(ciphers)}",
        f"IV_GUI_VER=erebus_{__version__}",
    ]
    if mtu:
        lines.append(f"IV_MTU={mtu}")
    if sso:
        lines.append(f"IV_SSO={','.join(sso)}")
    return "\n".join(lines) + "\n"


def build_client_message(source: ClientKeySource, options: str, peer_info_text: str,
                         username: str | None = None, password: str | None = None) -> bytes:
    if (len(source.pre_master), len(source.random1), len(source.random2)) != (
            PRE_MASTER_LEN, RANDOM_LEN, RANDOM_LEN):
        raise ValueError("bad key source lengths")
    return b"".join((
        b"\x00\x00\x00\x00", bytes((KEY_METHOD_2,)),
        source.pre_master, source.random1, source.random2,
        write_string(options), write_string(username), write_string(password),
        write_string(peer_info_text),
    ))


def parse_server_message(data: bytes | memoryview) -> ServerKeySource:
    buf = memoryview(data)
    if len(buf) < 5 + 2 * RANDOM_LEN:
        raise ParseError("key method 2: server message too short")
    if bytes(buf[:4]) != b"\x00\x00\x00\x00":
        raise ParseError("key method 2: server message does not start with four zero bytes")
    method = buf[4] & KEY_METHOD_MASK
    if method != KEY_METHOD_2:
        raise ParseError(f"key method {method} (only 2 is supported)")
    pos = 5
    random1 = bytes(buf[pos:pos + RANDOM_LEN])
    random2 = bytes(buf[pos + RANDOM_LEN:pos + 2 * RANDOM_LEN])
    pos += 2 * RANDOM_LEN
    options, pos = read_string(buf, pos)
    return ServerKeySource(random1, random2, options)


def options_string(*, cipher: str | None, proto: str = "UDPv4", tun_mtu: int = 1500,
                   link_mtu: int | None = None, comp_lzo: bool = False,
                   auth: str = "[null-digest]", keysize: int | None = None) -> str:
    """The occ options string; a 2.6 server only compares it to warn about mismatches.

    options.c ``options_string``: ``cipher`` only if the client would accept it (the
    caller passes None otherwise), ``auth`` the HMAC digest of that cipher
    (``[null-digest]`` for an AEAD), ``keysize`` its key bits (BF-CBC: 128)."""
    parts = ["V4", "dev-type tun"]
    if link_mtu:
        parts.append(f"link-mtu {link_mtu}")
    parts += [f"tun-mtu {tun_mtu}", f"proto {proto}"]
    if comp_lzo:
        parts.append("comp-lzo")
    if cipher and cipher.lower() != "none":
        parts.append(f"cipher {cipher}")
    if keysize is None:
        keysize = 256 if cipher and "256" in cipher else 128
    parts += [f"auth {auth}", f"keysize {keysize}", "key-method 2", "tls-client"]
    return ",".join(parts)


def options_string_cipher(options: str) -> str | None:
    """The ``cipher`` a peer's occ options string names (ssl_util.c
    ``options_string_extract_option``), or None: what 2.6's "poor man's NCP" falls back
    on when the server pushes no cipher."""
    for item in options.split(","):
        name, _, value = item.strip().partition(" ")
        if name == "cipher" and value.strip():
            return value.strip()
    return None
