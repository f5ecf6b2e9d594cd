"""The ESP-in-UDP wire format (erebus.wire.esp): classification, header, trailer,
cutting; anything malformed raises ParseError and nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from erebus.errors import ParseError
from erebus.wire import esp


def test_classify_the_three_kinds():
    assert esp.classify(b"\xff") == esp.KIND_KEEPALIVE
    assert esp.classify(b"\x00\x00\x00\x00" + b"ike header" * 3) == esp.KIND_NON_ESP
    assert esp.classify(b"\x00\x00\x10\x01\x00\x00\x00\x01" + bytes(24)) == esp.KIND_ESP
    for short in (b"", b"\xfe", b"\xff\xff", b"\x00\x00\x10\x01\x00\x00\x00"):
        with pytest.raises(ParseError):
            esp.classify(short)


def test_header_round_trip_and_spi_zero():
    assert esp.parse_header(esp.build_header(0x1001, 7) + b"rest") == (0x1001, 7)
    # only the low 32 bits of an ESN go on the wire
    assert esp.parse_header(esp.build_header(0x1001, (5 << 32) | 9)) == (0x1001, 9)
    with pytest.raises(ParseError):
        esp.parse_header(bytes(8))
    with pytest.raises(ParseError):
        esp.parse_header(b"\x00\x00\x10\x01")


def test_aad_layouts():
    assert esp.aad(0x01020304, 0x0A0B0C0D, False) == bytes.fromhex("010203040a0b0c0d")
    assert esp.aad(0x01020304, (7 << 32) | 0x0A0B0C0D, True) == \
        bytes.fromhex("01020304000000070a0b0c0d")
    assert esp.esn_high((7 << 32) | 5) == b"\x00\x00\x00\x07"


@pytest.mark.parametrize("align", [4, 16])
@pytest.mark.parametrize("length", range(0, 40))
def test_trailer_aligns_and_strips(align, length):
    payload = bytes([0xAB]) * length
    t = esp.trailer(length, align, esp.NH_IPV4)
    assert (length + len(t)) % align == 0
    pad = len(t) - 2
    assert 0 <= pad < align
    assert t[:pad] == bytes(range(1, pad + 1))               # RFC 4303: 1, 2, 3, ...
    assert esp.strip_trailer(payload + t) == (length, esp.NH_IPV4)


def test_strip_trailer_refuses_bad_padding():
    with pytest.raises(ParseError):
        esp.strip_trailer(b"\x01")
    with pytest.raises(ParseError):
        esp.strip_trailer(b"ab\x05\x04")                      # pad length past the start
    with pytest.raises(ParseError):
        esp.strip_trailer(b"data\x01\x03\x03\x04")            # 1, 3 is not 1, 2, 3
    assert esp.strip_trailer(b"data\x01\x02\x03\x03\x04") == (4, 4)
    assert esp.strip_trailer(b"\x00\x3b") == (0, esp.NH_NO_NEXT)


def test_parse_esp_cuts_fields():
    packet = esp.build_header(0x2002, 3) + b"I" * 16 + b"C" * 32 + b"T" * 16
    p = esp.parse_esp(packet, 16, 16, 16)
    assert (p.spi, p.seq) == (0x2002, 3)
    assert bytes(p.iv) == b"I" * 16 and bytes(p.ciphertext) == b"C" * 32
    assert bytes(p.icv) == b"T" * 16
    with pytest.raises(ParseError):
        esp.parse_esp(packet[:-1], 16, 16, 16)                # not whole blocks
    with pytest.raises(ParseError):
        esp.parse_esp(packet[:8 + 16 + 1 + 16], 16, 16, 1)    # no room for the trailer


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80), st.sampled_from([(8, 16, 1), (16, 16, 16), (16, 24, 16)]))
def test_fuzz_parsers_raise_only_parse_error(data, lengths):
    for call in (lambda: esp.classify(data), lambda: esp.parse_header(data),
                 lambda: esp.strip_trailer(data), lambda: esp.parse_esp(data, *lengths)):
        try:
            call()
        except ParseError:
            pass
