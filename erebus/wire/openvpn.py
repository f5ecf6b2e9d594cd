"""OpenVPN packet formats (sans-IO parse and build).

Every packet starts with one byte: ``opcode << 3 | key_id``.

Control packets (all opcodes but P_ACK_V1 and the two data opcodes)::

    op(1) | session_id(8) | ack_count(1) | ack_ids(4 * n) | [remote_session_id(8) if n]
          | message_packet_id(4) | payload

P_ACK_V1 is the same without message packet id and payload.  With tls-auth or
tls-crypt a wrapping sits between the session id and the ack array; those
modes call :func:`parse_control_body` / :func:`build_control_body` on the
unwrapped part.  P_CONTROL_HARD_RESET_CLIENT_V3 and P_CONTROL_WKC_V1 carry a
wrapped client key (tls-crypt-v2) after the control packet; its last two
bytes are its own length.

Data packets: P_DATA_V1 is ``op(1) | body``; P_DATA_V2 is
``op(1) | peer_id(3) | body``; the body belongs to the data-channel cipher.

Names follow ``ssl_pkt.h`` in the OpenVPN sources.  Malformed input raises
:class:`erebus.errors.ParseError` and nothing else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..errors import ParseError

P_CONTROL_HARD_RESET_CLIENT_V1 = 1  # key method 1, not supported by 2.6
P_CONTROL_HARD_RESET_SERVER_V1 = 2
P_CONTROL_SOFT_RESET_V1 = 3
P_CONTROL_V1 = 4
P_ACK_V1 = 5
P_DATA_V1 = 6
P_CONTROL_HARD_RESET_CLIENT_V2 = 7
P_CONTROL_HARD_RESET_SERVER_V2 = 8
P_DATA_V2 = 9
P_CONTROL_HARD_RESET_CLIENT_V3 = 10
P_CONTROL_WKC_V1 = 11

OPCODE_NAMES = {
    P_CONTROL_HARD_RESET_CLIENT_V1: "P_CONTROL_HARD_RESET_CLIENT_V1",
    P_CONTROL_HARD_RESET_SERVER_V1: "P_CONTROL_HARD_RESET_SERVER_V1",
    P_CONTROL_SOFT_RESET_V1: "P_CONTROL_SOFT_RESET_V1",
    P_CONTROL_V1: "P_CONTROL_V1",
    P_ACK_V1: "P_ACK_V1",
    P_DATA_V1: "P_DATA_V1",
    P_CONTROL_HARD_RESET_CLIENT_V2: "P_CONTROL_HARD_RESET_CLIENT_V2",
    P_CONTROL_HARD_RESET_SERVER_V2: "P_CONTROL_HARD_RESET_SERVER_V2",
    P_DATA_V2: "P_DATA_V2",
    P_CONTROL_HARD_RESET_CLIENT_V3: "P_CONTROL_HARD_RESET_CLIENT_V3",
    P_CONTROL_WKC_V1: "P_CONTROL_WKC_V1",
}

CONTROL_OPCODES = frozenset({
    P_CONTROL_SOFT_RESET_V1, P_CONTROL_V1, P_ACK_V1, P_CONTROL_HARD_RESET_CLIENT_V2,
    P_CONTROL_HARD_RESET_SERVER_V2, P_CONTROL_HARD_RESET_CLIENT_V3, P_CONTROL_WKC_V1,
})
DATA_OPCODES = frozenset({P_DATA_V1, P_DATA_V2})
WKC_OPCODES = frozenset({P_CONTROL_HARD_RESET_CLIENT_V3, P_CONTROL_WKC_V1})

SESSION_ID_LEN = 8
MAX_ACKS = 8  # RELIABLE_ACK_SIZE in reliable.h
PEER_ID_UNDEF = 0xFFFFFF

# Early negotiation (ssl_pkt.h, 2.6).  A tls-crypt-v2 client signals support by starting
# its tls-crypt replay packet ids at EARLY_NEG_START (the top byte 0x0f); the server's
# HARD_RESET_SERVER_V2 then carries TLVs (u16 type | u16 length | value) as payload.
EARLY_NEG_MASK = 0xFF000000
EARLY_NEG_START = 0x0F000000
TLV_TYPE_EARLY_NEG_FLAGS = 0x0001
EARLY_NEG_FLAG_RESEND_WKC = 0x0001      # the client's message packet id 1 is P_CONTROL_WKC_V1

_U32 = struct.Struct("!I")
_U16 = struct.Struct("!H")


def opcode_name(opcode: int) -> str:
    return OPCODE_NAMES.get(opcode, f"opcode {opcode}")


def split_op(first: int) -> tuple[int, int]:
    """(opcode, key_id) from the first byte of a packet."""
    return first >> 3, first & 0x07


@dataclass(slots=True)
class ControlPacket:
    """A control-channel packet (including P_ACK_V1, whose packet_id is None)."""

    opcode: int
    key_id: int
    session_id: bytes
    acks: tuple[int, ...] = ()
    remote_session_id: bytes | None = None
    packet_id: int | None = None
    payload: bytes = b""
    wkc: bytes | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return opcode_name(self.opcode)


@dataclass(slots=True)
class DataPacket:
    """A data-channel packet; ``header`` is the bytes the AEAD authenticates for V2."""

    opcode: int
    key_id: int
    peer_id: int | None
    header: bytes
    body: memoryview


def _check_key_id(key_id: int) -> None:
    if not 0 <= key_id <= 7:
        raise ValueError(f"key_id {key_id} out of range 0..7")


def parse_control_body(opcode: int, key_id: int, session_id: bytes,
                       body: bytes | memoryview) -> ControlPacket:
    """Parse what follows the session id (after any tls-auth/tls-crypt unwrap)."""
    mv = memoryview(body)
    n = len(mv)
    if n < 1:
        raise ParseError(f"{opcode_name(opcode)}: truncated before the ACK array")
    ack_count = mv[0]
    if ack_count > MAX_ACKS:
        raise ParseError(f"{opcode_name(opcode)}: {ack_count} ACKs (at most {MAX_ACKS})")
    pos = 1
    end = pos + 4 * ack_count
    if end > n:
        raise ParseError(f"{opcode_name(opcode)}: truncated ACK array")
    acks = struct.unpack_from(f"!{ack_count}I", mv, pos) if ack_count else ()
    pos = end
    remote_sid = None
    if ack_count:
        if pos + SESSION_ID_LEN > n:
            raise ParseError(f"{opcode_name(opcode)}: truncated remote session id")
        remote_sid = bytes(mv[pos:pos + SESSION_ID_LEN])
        pos += SESSION_ID_LEN
    if opcode == P_ACK_V1:
        if pos != n:
            raise ParseError(f"P_ACK_V1: {n - pos} trailing bytes")
        if not ack_count:
            raise ParseError("P_ACK_V1 without ACKs")
        return ControlPacket(opcode, key_id, session_id, acks, remote_sid, None, b"")
    if pos + 4 > n:
        raise ParseError(f"{opcode_name(opcode)}: truncated message packet id")
    (packet_id,) = _U32.unpack_from(mv, pos)
    pos += 4
    return ControlPacket(opcode, key_id, session_id, acks, remote_sid, packet_id,
                         bytes(mv[pos:]))


def split_wkc(data: bytes | memoryview) -> tuple[memoryview, bytes]:
    """Split a wrapped client key (tls-crypt-v2) off the end of a packet."""
    mv = memoryview(data)
    if len(mv) < 2:
        raise ParseError("wrapped client key: truncated length")
    (wkc_len,) = _U16.unpack_from(mv, len(mv) - 2)
    if wkc_len < 2 or wkc_len > len(mv):
        raise ParseError(f"wrapped client key: length {wkc_len} out of range")
    return mv[:len(mv) - wkc_len], bytes(mv[len(mv) - wkc_len:])


def parse_early_negotiation(payload: bytes | memoryview) -> int:
    """The early-negotiation flags of a HARD_RESET_SERVER_V2 payload (0 when it carries
    none), as ssl.c ``parse_early_negotiation_tlvs`` reads them: TLVs to the end,
    unknown types skipped, EARLY_NEG_FLAGS exactly 2 bytes.  A TLV that overruns the
    payload, or a flags TLV of another length, is a ParseError."""
    mv = memoryview(payload)
    flags = 0
    pos, n = 0, len(mv)
    while pos < n:
        if n - pos < 4:
            raise ParseError(f"early negotiation: {n - pos} bytes left, a TLV needs 4")
        tlv_type, length = struct.unpack_from("!HH", mv, pos)
        pos += 4
        if length > n - pos:
            raise ParseError(f"early negotiation: TLV type {tlv_type:#06x} of {length} "
                             f"bytes, {n - pos} left")
        if tlv_type == TLV_TYPE_EARLY_NEG_FLAGS:
            if length != 2:
                raise ParseError(f"early negotiation: flags TLV of {length} bytes (not 2)")
            (value,) = _U16.unpack_from(mv, pos)
            flags |= value
        pos += length
    return flags


def build_early_negotiation(flags: int) -> bytes:
    """The EARLY_NEG_FLAGS TLV (the server's side of ssl_pkt.c ``tls_reset_standalone``)."""
    return struct.pack("!HHH", TLV_TYPE_EARLY_NEG_FLAGS, 2, flags)


def parse_packet(data: bytes | memoryview) -> ControlPacket | DataPacket:
    """Parse one OpenVPN packet (no tls-auth/tls-crypt wrapping)."""
    mv = memoryview(data)
    if len(mv) < 1:
        raise ParseError("empty packet")
    opcode, key_id = split_op(mv[0])
    if opcode == P_DATA_V2:
        if len(mv) < 4:
            raise ParseError("P_DATA_V2: truncated peer id")
        peer_id = int.from_bytes(mv[1:4], "big")
        return DataPacket(opcode, key_id, peer_id, bytes(mv[:4]), mv[4:])
    if opcode == P_DATA_V1:
        return DataPacket(opcode, key_id, None, bytes(mv[:1]), mv[1:])
    if opcode not in CONTROL_OPCODES:
        raise ParseError(f"unknown {opcode_name(opcode)}")
    wkc = None
    if opcode in WKC_OPCODES:
        mv, wkc = split_wkc(mv)
    if len(mv) < 1 + SESSION_ID_LEN:
        raise ParseError(f"{opcode_name(opcode)}: truncated session id")
    session_id = bytes(mv[1:1 + SESSION_ID_LEN])
    packet = parse_control_body(opcode, key_id, session_id, mv[1 + SESSION_ID_LEN:])
    packet.wkc = wkc
    return packet


def build_control_body(acks: tuple[int, ...] | list[int] = (),
                       remote_session_id: bytes | None = None,
                       packet_id: int | None = None, payload: bytes = b"") -> bytes:
    """The part after the session id: ACK array, remote session id, packet id, payload."""
    if len(acks) > MAX_ACKS:
        raise ValueError(f"at most {MAX_ACKS} ACKs per packet")
    parts = [bytes((len(acks),))]
    if acks:
        parts.append(struct.pack(f"!{len(acks)}I", *acks))
        if remote_session_id is None or len(remote_session_id) != SESSION_ID_LEN:
            raise ValueError("ACKs need the 8-byte remote session id")
        parts.append(remote_session_id)
    if packet_id is not None:
        parts.append(_U32.pack(packet_id))
        parts.append(payload)
    elif payload:
        raise ValueError("a payload needs a message packet id")
    return b"".join(parts)


def build_control(opcode: int, key_id: int, session_id: bytes,
                  acks: tuple[int, ...] | list[int] = (),
                  remote_session_id: bytes | None = None,
                  packet_id: int | None = None, payload: bytes = b"",
                  wkc: bytes | None = None) -> bytes:
    """Build a control packet (P_ACK_V1 when ``opcode`` says so)."""
    if opcode not in CONTROL_OPCODES:
        raise ValueError(f"{opcode_name(opcode)} is not a control opcode")
    _check_key_id(key_id)
    if len(session_id) != SESSION_ID_LEN:
        raise ValueError("session id must be 8 bytes")
    if opcode == P_ACK_V1:
        if packet_id is not None or payload or not acks:
            raise ValueError("P_ACK_V1 carries ACKs only")
    elif packet_id is None:
        raise ValueError(f"{opcode_name(opcode)} needs a message packet id")
    out = (bytes(((opcode << 3) | key_id,)) + session_id
           + build_control_body(acks, remote_session_id, packet_id, payload))
    if opcode in WKC_OPCODES:
        if wkc is None:
            raise ValueError(f"{opcode_name(opcode)} needs the wrapped client key")
        out += wkc
    return out


def data_v2_header(key_id: int, peer_id: int) -> bytes:
    """The 4 header bytes of P_DATA_V2 (also its AEAD additional data prefix)."""
    _check_key_id(key_id)
    if not 0 <= peer_id <= 0xFFFFFF:
        raise ValueError("peer id is 24 bits")
    return _U32.pack((((P_DATA_V2 << 3) | key_id) << 24) | peer_id)


def data_v1_header(key_id: int) -> bytes:
    _check_key_id(key_id)
    return bytes(((P_DATA_V1 << 3) | key_id,))
