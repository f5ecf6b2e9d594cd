"""ESP packets (RFC 4303) in UDP (RFC 3948): sans-IO parse and build.

A UDP datagram on the ESP-in-UDP port (4500 by default) is one of three things
(RFC 3948 section 2)::

    NAT keepalive   0xFF                                   (1 byte)
    non-ESP (IKE)   0x00000000 | IKE message               (the non-ESP marker: an SPI of 0)
    ESP             the ESP packet below, from its SPI on

ESP packet, offsets in bytes (``iv`` and ``icv`` depend on the SA's transform:
AES-GCM-16 and ChaCha20-Poly1305 8 and 16, AES-CBC + HMAC-SHA-256-128 16 and 16)::

    0        SPI (4)
    4        sequence number (4): the low 32 bits with ESN
    8        IV (iv)
    8+iv     ciphertext of: payload | padding | pad length (1) | next header (1)
    end-icv  ICV (icv)

The encrypted part is a multiple of the cipher's block size and of 4 bytes; the
padding is 1, 2, 3, ... (RFC 4303 section 2.4) and a receiver checks it.  Next
header 4 is an IPv4 packet (tunnel mode), 41 IPv6, 59 a dummy packet (RFC 4303
section 2.6: discarded).  With ESN the high 32 bits of the sequence number are
never sent: they are authenticated (AEAD: in the AAD, ``SPI | seq high | seq low``;
MAC: appended after the ICV'd data) and inferred by the receiver.

Malformed input raises :class:`erebus.errors.ParseError` and nothing else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..errors import ParseError

__all__ = [
    "NAT_T_PORT", "NAT_KEEPALIVE", "NON_ESP_MARKER", "HEADER_LEN", "HEADER",
    "NH_IPV4", "NH_IPV6", "NH_NO_NEXT",
    "KIND_ESP", "KIND_NON_ESP", "KIND_KEEPALIVE", "classify",
    "parse_header", "build_header", "aad", "esn_high", "trailer", "strip_trailer",
    "EspPacket", "parse_esp",
]

NAT_T_PORT = 4500
NAT_KEEPALIVE = b"\xff"
NON_ESP_MARKER = b"\x00\x00\x00\x00"
HEADER_LEN = 8

NH_IPV4 = 4
NH_IPV6 = 41
NH_NO_NEXT = 59           # a dummy packet (traffic flow confidentiality)

KIND_ESP = 0
KIND_NON_ESP = 1
KIND_KEEPALIVE = 2

HEADER = struct.Struct("!II")          # SPI, sequence number (low 32 bits)
_AAD_ESN = struct.Struct("!III")       # SPI, seq high, seq low (RFC 4106 section 5)
_U32 = struct.Struct("!I")
_PADDING = bytes(range(1, 256))
_trailers: dict[tuple[int, int], bytes] = {}


def classify(datagram: bytes | bytearray | memoryview) -> int:
    """What a datagram on the ESP-in-UDP port carries: KIND_ESP, KIND_NON_ESP (an
    IKE message behind the marker) or KIND_KEEPALIVE.  ParseError if it is none."""
    n = len(datagram)
    if n == 1 and datagram[0] == 0xFF:
        return KIND_KEEPALIVE
    if n >= 4 and datagram[:4] == NON_ESP_MARKER:
        return KIND_NON_ESP
    if n < HEADER_LEN:
        raise ParseError(f"ESP-in-UDP datagram of {n} bytes (at least {HEADER_LEN})")
    return KIND_ESP


def parse_header(packet: bytes | bytearray | memoryview) -> tuple[int, int]:
    """``(spi, seq)`` of an ESP packet (seq: the 32 bits on the wire)."""
    if len(packet) < HEADER_LEN:
        raise ParseError(f"ESP packet of {len(packet)} bytes (at least {HEADER_LEN})")
    spi, seq = HEADER.unpack_from(packet, 0)
    if spi == 0:
        raise ParseError("ESP packet with SPI 0")
    return spi, seq


def build_header(spi: int, seq: int) -> bytes:
    """SPI and the low 32 bits of ``seq``."""
    return HEADER.pack(spi, seq & 0xFFFFFFFF)


def aad(spi: int, seq: int, esn: bool) -> bytes:
    """The AEAD's additional data (RFC 4106 section 5): ``SPI | seq`` (8 bytes), or
    with ESN ``SPI | seq high | seq low`` (12 bytes)."""
    if esn:
        return _AAD_ESN.pack(spi, seq >> 32, seq & 0xFFFFFFFF)
    return HEADER.pack(spi, seq & 0xFFFFFFFF)


def esn_high(seq: int) -> bytes:
    """The high 32 bits a MAC transform appends to its input with ESN."""
    return _U32.pack(seq >> 32)


def trailer(payload_len: int, align: int, next_header: int) -> bytes:
    """``padding | pad length | next header`` that brings ``payload_len`` plus the
    trailer to a multiple of ``align`` (the cipher block size and 4, whichever is
    larger: both are powers of two here)."""
    pad = -(payload_len + 2) % align
    key = (pad, next_header)
    t = _trailers.get(key)
    if t is None:
        if pad > 255 or not 0 <= next_header <= 255:
            raise ValueError(f"no ESP trailer for pad {pad}, next header {next_header}")
        t = _trailers[key] = _PADDING[:pad] + bytes((pad, next_header))
    return t


def strip_trailer(plaintext: bytes | bytearray | memoryview) -> tuple[int, int]:
    """``(payload length, next header)`` of a decrypted ESP payload; ParseError
    if the pad length overruns it or the padding is not 1, 2, 3, ..."""
    n = len(plaintext)
    if n < 2:
        raise ParseError("ESP payload without its trailer")
    pad = plaintext[n - 2]
    end = n - 2 - pad
    if end < 0:
        raise ParseError(f"ESP pad length {pad} longer than the payload ({n} bytes)")
    if pad and plaintext[end:n - 2] != _PADDING[:pad]:
        raise ParseError("ESP padding is not 1, 2, 3, ...")
    return end, plaintext[n - 1]


@dataclass(slots=True)
class EspPacket:
    """An ESP packet cut into its fields (for inspection; the SA does its own cuts
    with the helpers above).  Views into the parsed buffer."""

    spi: int
    seq: int
    iv: memoryview = field(repr=False)
    ciphertext: memoryview = field(repr=False)
    icv: memoryview = field(repr=False)


def parse_esp(packet: bytes | bytearray | memoryview, iv_len: int, icv_len: int,
              block_len: int = 1) -> EspPacket:
    """Cut an ESP packet for a transform with these IV and ICV lengths; ParseError
    if it is too short or its encrypted part is not a multiple of ``block_len``.
    (Senders align it to 4 bytes as well; receivers do not insist, like Linux.)"""
    spi, seq = parse_header(packet)
    view = memoryview(packet)
    n = len(view)
    body = n - HEADER_LEN - iv_len - icv_len
    if body < 2:
        raise ParseError(f"ESP packet of {n} bytes: no room for IV, trailer and ICV")
    if body % block_len:
        raise ParseError(f"ESP encrypted part of {body} bytes (a multiple of {block_len})")
    return EspPacket(spi, seq, view[HEADER_LEN:HEADER_LEN + iv_len],
                     view[HEADER_LEN + iv_len:n - icv_len], view[n - icv_len:])
