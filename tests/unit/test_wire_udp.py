"""UDP datagram parse/build, checked against scapy."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.packet import Raw

from erebus.errors import ParseError
from erebus.wire.checksum import pseudo_header_sum
from erebus.wire.ipv4 import PROTO_UDP, build_ipv4, ip_from_str
from erebus.wire.udp import UdpDatagram, build_udp, parse_udp

SRC = "198.18.0.1"
DST = "198.19.255.2"
SRC_INT = ip_from_str(SRC)
DST_INT = ip_from_str(DST)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SCAPY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

addresses = st.integers(0xC6120000, 0xC613FFFF)  # 198.18.0.0/15
u16 = st.integers(0, 0xFFFF)


def scapy_view(src: int, dst: int, datagram: bytes) -> IP:
    """Our datagram inside an IPv4 packet, as scapy parses it; also checks that scapy,
    rebuilding it with a recomputed UDP checksum, produces the same bytes."""
    raw = build_ipv4(src, dst, PROTO_UDP, datagram)
    pkt = IP(raw)
    again = IP(raw)
    del again[UDP].chksum
    assert bytes(again) == raw
    return pkt


def scapy_datagram(payload: bytes = b"", **fields) -> bytes:
    return bytes(IP(src=SRC, dst=DST) / UDP(**fields) / Raw(payload))[20:]


def payload_with_zero_checksum(src: int, dst: int, sport: int, dport: int) -> bytes:
    """A 2-byte payload whose UDP checksum computes to 0."""
    base = pseudo_header_sum(src, dst, PROTO_UDP, 10) + sport + dport + 10
    word = (-base) % 0xFFFF or 0xFFFF  # the sum is then a non-zero multiple of 0xFFFF
    return struct.pack("!H", word)


@pytest.mark.parametrize("payload", [b"", b"x", b"\x00\x00", b"hello, world",
                                     bytes(range(256)) * 6])
def test_build_matches_scapy(payload):
    dgram = build_udp(SRC_INT, DST_INT, 5353, 53, payload)
    u = scapy_view(SRC_INT, DST_INT, dgram)[UDP]
    assert (u.sport, u.dport, u.len) == (5353, 53, 8 + len(payload))
    assert bytes(u.payload) == payload
    parsed = parse_udp(dgram, SRC_INT, DST_INT)
    assert parsed == UdpDatagram(5353, 53, payload)
    assert parsed.checksum == u.chksum != 0
    assert parsed.length == 8 + len(payload)


def test_build_sends_computed_zero_as_ffff():
    payload = payload_with_zero_checksum(SRC_INT, DST_INT, 1000, 2000)
    dgram = build_udp(SRC_INT, DST_INT, 1000, 2000, payload)
    assert dgram[6:8] == b"\xff\xff"
    scapy_view(SRC_INT, DST_INT, dgram)  # scapy does the same
    assert parse_udp(dgram, SRC_INT, DST_INT).payload == payload


def test_build_accepts_buffers_and_address_forms():
    payload = bytes(range(50))
    expected = build_udp(SRC_INT, DST_INT, 1, 2, payload)
    for form in (bytearray(payload), memoryview(payload)):
        assert build_udp(SRC, DST, 1, 2, form) == expected
    assert build_udp(bytes.fromhex("c6120001"), DST, 1, 2, payload) == expected


@pytest.mark.parametrize("args", [
    (0x10000, 1, b""), (1, -1, b""), (1, 2, bytes(0x10000 - 7)),
])
def test_build_rejects(args):
    with pytest.raises(ValueError):
        build_udp(SRC_INT, DST_INT, *args)


def test_build_largest():
    dgram = build_udp(SRC_INT, DST_INT, 1, 2, bytes(0xFFFF - 8))
    assert len(dgram) == 0xFFFF
    assert len(parse_udp(dgram, SRC_INT, DST_INT).payload) == 0xFFFF - 8


def test_parse_scapy_datagram():
    raw = scapy_datagram(b"query", sport=40000, dport=53)
    d = parse_udp(raw, SRC_INT, DST_INT)
    assert (d.src_port, d.dst_port, d.payload, d.checksum) == (40000, 53, b"query",
                                                               UDP(raw).chksum)
    assert isinstance(d.payload, memoryview)
    for form in (bytearray(raw), memoryview(raw), memoryview(b"ab" + raw)[2:]):
        assert parse_udp(form, SRC, DST) == d


def test_zero_checksum_means_none():
    raw = bytearray(scapy_datagram(b"no checksum", sport=1, dport=2, chksum=0))
    assert raw[6:8] == b"\x00\x00"
    assert parse_udp(raw, SRC_INT, DST_INT).payload == b"no checksum"
    raw[-1] ^= 0xFF  # still accepted: nothing to verify
    d = parse_udp(raw, SRC_INT + 1, DST_INT)
    assert d.checksum == 0 and len(d.payload) == 11


def test_parse_rejects_bad_checksum():
    raw = bytearray(scapy_datagram(b"payload", sport=1, dport=2))
    with pytest.raises(ParseError, match="checksum"):
        parse_udp(raw, SRC_INT, DST_INT + 1)
    raw[-1] ^= 0x01
    with pytest.raises(ParseError, match="checksum"):
        parse_udp(raw, SRC_INT, DST_INT)
    assert parse_udp(raw, SRC_INT, DST_INT, verify_checksum=False).payload == b"payloae"


def test_parse_trims_trailing_bytes():
    raw = scapy_datagram(b"abc", sport=1, dport=2)
    d = parse_udp(raw + b"\x00\xffpadding", SRC_INT, DST_INT)  # checksum over 11 bytes only
    assert d.payload == b"abc"


@pytest.mark.parametrize("data, message", [
    (b"", "shorter than a header"),
    (b"\x00\x01\x00\x02\x00\x08\x00", "shorter than a header"),
    (b"\x00\x01\x00\x02\x00\x07\x00\x00", "length 7 shorter"),
    (b"\x00\x01\x00\x02\x00\x00\x00\x00" + bytes(10), "length 0 shorter"),
    (b"\x00\x01\x00\x02\x00\x09\x00\x00", "length 9 beyond the 8 bytes"),
    (b"\x00\x01\x00\x02\xff\xff\x00\x00" + bytes(100), "length 65535 beyond"),
])
def test_parse_rejects_bad_lengths(data, message):
    for verify in (True, False):
        with pytest.raises(ParseError, match=message):
            parse_udp(data, SRC_INT, DST_INT, verify_checksum=verify)


def test_parse_truncations():
    full = build_udp(SRC_INT, DST_INT, 1, 2, b"0123456789")
    for cut in range(len(full)):
        for verify in (True, False):
            with pytest.raises(ParseError):
                parse_udp(full[:cut], SRC_INT, DST_INT, verify_checksum=verify)


@FAST
@given(st.binary(max_size=64), addresses, addresses)
def test_parse_arbitrary_bytes_only_parse_error(data, src, dst):
    for verify in (True, False):
        try:
            d = parse_udp(data, src, dst, verify_checksum=verify)
        except ParseError:
            continue
        assert 8 + len(d.payload) == struct.unpack_from("!H", data, 4)[0] <= len(data)


@FAST
@given(u16, st.binary(max_size=40))
def test_parse_random_length_field_only_parse_error(length, rest):
    data = struct.pack("!HHHH", 1, 2, length, 0) + rest
    try:
        d = parse_udp(data, SRC_INT, DST_INT)
    except ParseError:
        assert not 8 <= length <= len(data)
        return
    assert d.payload == rest[:length - 8]


@FAST
@given(addresses, addresses, u16, u16, st.binary(max_size=600))
def test_build_parse_roundtrip(src, dst, sport, dport, payload):
    dgram = build_udp(src, dst, sport, dport, payload)
    assert len(dgram) == 8 + len(payload)
    assert dgram[6:8] != b"\x00\x00"
    assert parse_udp(dgram, src, dst) == UdpDatagram(sport, dport, payload)
    bad = bytearray(dgram)
    pos = (sport + dport) % (len(bad) - 2)
    pos += 2 if pos >= 4 else 0  # not the length field (a shorter length is a new datagram)
    bad[pos] ^= 1 << (sport % 8)
    try:
        parse_udp(bad, src, dst)
    except ParseError:
        pass
    else:
        # the only survivable flip: the checksum field becoming 0 (none)
        assert bad[6:8] == b"\x00\x00"


@SCAPY
@given(addresses, addresses, u16, u16, st.binary(max_size=300))
def test_build_random_matches_scapy(src, dst, sport, dport, payload):
    u = scapy_view(src, dst, build_udp(src, dst, sport, dport, payload))[UDP]
    assert (u.sport, u.dport, u.len, bytes(u.payload)) == (sport, dport, 8 + len(payload),
                                                            payload)


@FAST
@given(addresses, addresses, u16, u16)
def test_zero_checksum_roundtrip_random(src, dst, sport, dport):
    payload = payload_with_zero_checksum(src, dst, sport, dport)
    dgram = build_udp(src, dst, sport, dport, payload)
    assert dgram[6:8] == b"\xff\xff"
    assert parse_udp(dgram, src, dst).payload == payload
