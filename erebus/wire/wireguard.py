"""WireGuard's four messages (whitepaper section 5.4): handshake initiation (type 1,
148 bytes), handshake response (type 2, 92), cookie reply (type 3, 64) and transport
data (type 4, a 16-byte header and at least a 16-byte tag).  Integers are
little-endian; three reserved zero bytes follow the type.  Parsers take bytes or a
memoryview and raise only :class:`ParseError`; the lengths are exact.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from ..errors import ParseError

__all__ = ["INITIATION", "RESPONSE", "COOKIE_REPLY", "TRANSPORT", "INITIATION_LEN",
           "RESPONSE_LEN", "COOKIE_REPLY_LEN", "TRANSPORT_HEADER_LEN", "MIN_TRANSPORT_LEN",
           "Initiation", "Response", "CookieReply", "message_type", "parse_initiation",
           "parse_response", "parse_cookie_reply", "parse_transport_header",
           "build_initiation", "build_response", "build_cookie_reply",
           "build_transport_header", "MAC1_OFFSET_INITIATION", "MAC1_OFFSET_RESPONSE"]

INITIATION, RESPONSE, COOKIE_REPLY, TRANSPORT = 1, 2, 3, 4
INITIATION_LEN, RESPONSE_LEN, COOKIE_REPLY_LEN = 148, 92, 64
TRANSPORT_HEADER_LEN = 16
MIN_TRANSPORT_LEN = TRANSPORT_HEADER_LEN + 16          # an empty (keepalive) packet
MAC1_OFFSET_INITIATION = INITIATION_LEN - 32           # mac1 and mac2 close a message
MAC1_OFFSET_RESPONSE = RESPONSE_LEN - 32

_HEAD = struct.Struct("<B3xI")                        # type, reserved, sender / receiver
_TRANSPORT = struct.Struct("<B3xIQ")                   # type, receiver, counter
_RESPONSE_HEAD = struct.Struct("<B3xII")               # type, sender, receiver


class Initiation(NamedTuple):
    sender: int
    ephemeral: bytes            # 32
    static: bytes               # 32 + 16, AEAD of the initiator's static public key
    timestamp: bytes            # 12 + 16, AEAD of TAI64N
    mac1: bytes
    mac2: bytes


class Response(NamedTuple):
    sender: int
    receiver: int
    ephemeral: bytes            # 32
    empty: bytes                # 16, AEAD of nothing
    mac1: bytes
    mac2: bytes


class CookieReply(NamedTuple):
    receiver: int
    nonce: bytes                # 24
    cookie: bytes               # 16 + 16, XAEAD of the cookie


def message_type(data: bytes | memoryview) -> int:
    """The type of a message (ParseError if the reserved bytes are not zero)."""
    if len(data) < 4:
        raise ParseError(f"a WireGuard message of {len(data)} bytes")
    if data[1] or data[2] or data[3]:
        raise ParseError("a WireGuard message with non-zero reserved bytes")
    return data[0]


def _exact(data, length: int, what: str) -> bytes:
    if len(data) != length:
        raise ParseError(f"a {what} of {len(data)} bytes (it is {length})")
    return bytes(data)


def parse_initiation(data: bytes | memoryview) -> Initiation:
    b = _exact(data, INITIATION_LEN, "handshake initiation")
    kind, sender = _HEAD.unpack_from(b)
    if kind != INITIATION:
        raise ParseError(f"message type {kind} is not a handshake initiation")
    return Initiation(sender, b[8:40], b[40:88], b[88:116], b[116:132], b[132:148])


def parse_response(data: bytes | memoryview) -> Response:
    b = _exact(data, RESPONSE_LEN, "handshake response")
    kind, sender, receiver = _RESPONSE_HEAD.unpack_from(b)
    if kind != RESPONSE:
        raise ParseError(f"message type {kind} is not a handshake response")
    return Response(sender, receiver, b[12:44], b[44:60], b[60:76], b[76:92])


def parse_cookie_reply(data: bytes | memoryview) -> CookieReply:
    b = _exact(data, COOKIE_REPLY_LEN, "cookie reply")
    kind, receiver = _HEAD.unpack_from(b)
    if kind != COOKIE_REPLY:
        raise ParseError(f"message type {kind} is not a cookie reply")
    return CookieReply(receiver, b[8:32], b[32:64])


def parse_transport_header(data: bytes | memoryview) -> tuple[int, int]:
    """(receiver index, counter) of a transport message; the ciphertext follows at
    TRANSPORT_HEADER_LEN."""
    if len(data) < MIN_TRANSPORT_LEN:
        raise ParseError(f"a transport message of {len(data)} bytes "
                         f"(at least {MIN_TRANSPORT_LEN})")
    kind, receiver, counter = _TRANSPORT.unpack_from(data)
    if kind != TRANSPORT:
        raise ParseError(f"message type {kind} is not transport data")
    return receiver, counter


def build_initiation(sender: int, ephemeral: bytes, static: bytes, timestamp: bytes) -> \
        bytearray:
    """The message up to mac1, with room for the MACs (zeros), to be filled in."""
    out = bytearray(INITIATION_LEN)
    _HEAD.pack_into(out, 0, INITIATION, sender)
    out[8:40], out[40:88], out[88:116] = ephemeral, static, timestamp
    return out


def build_response(sender: int, receiver: int, ephemeral: bytes, empty: bytes) -> bytearray:
    out = bytearray(RESPONSE_LEN)
    _RESPONSE_HEAD.pack_into(out, 0, RESPONSE, sender, receiver)
    out[12:44], out[44:60] = ephemeral, empty
    return out


def build_cookie_reply(receiver: int, nonce: bytes, cookie: bytes) -> bytes:
    return _HEAD.pack(COOKIE_REPLY, receiver) + nonce + cookie


def build_transport_header(receiver: int, counter: int) -> bytes:
    return _TRANSPORT.pack(TRANSPORT, receiver, counter)
