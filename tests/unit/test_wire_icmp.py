"""ICMP parse/build, checked against scapy."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.packet import Raw
from scapy.utils import checksum as scapy_checksum

from erebus.errors import ParseError
from erebus.wire.checksum import internet_checksum
from erebus.wire.icmp import (
    DEST_UNREACH,
    ECHO_REPLY,
    ECHO_REQUEST,
    EXCEEDED_TTL,
    PARAMETER_PROBLEM,
    REDIRECT,
    TIME_EXCEEDED,
    UNREACH_FRAG_NEEDED,
    UNREACH_PORT,
    IcmpEcho,
    IcmpError,
    IcmpMessage,
    build_echo_reply,
    build_echo_request,
    build_icmp,
    build_icmp_error,
    parse_icmp,
)
from erebus.wire.ipv4 import PROTO_ICMP, PROTO_TCP, PROTO_UDP, build_ipv4, ip_from_str, parse_ipv4

CLIENT = "198.19.0.2"
SERVER = "198.18.2.2"
ROUTER = "198.18.0.254"

FAST = settings(max_examples=300, deadline=None)


def _scapy_valid(icmp_bytes: bytes) -> bool:
    """scapy rebuilds the same bytes, checksum included."""
    again = ICMP(icmp_bytes).copy()
    del again.chksum
    return bytes(again) == icmp_bytes


def _scapy_checksum_ok(icmp_bytes: bytes) -> bool:
    """The stored checksum is what scapy computes (as ICMP.post_build does)."""
    stored = struct.unpack("!H", icmp_bytes[2:4])[0]
    return stored == scapy_checksum(icmp_bytes[:2] + b"\0\0" + icmp_bytes[4:])


@pytest.mark.parametrize("data", [b"", b"x", b"hello!!", bytes(range(256)) * 4])
def test_echo_request_matches_scapy(data):
    ours = build_echo_request(0x1234, 0xABCD, data)
    theirs = bytes(ICMP(type=8, code=0, id=0x1234, seq=0xABCD) / Raw(data)) if data else \
        bytes(ICMP(type=8, code=0, id=0x1234, seq=0xABCD))
    assert ours == theirs
    assert internet_checksum(ours) == 0


def test_parse_scapy_echo_request_and_reply():
    raw = bytes(ICMP(type=8, id=7, seq=9) / Raw(b"ping data"))
    echo = parse_icmp(raw)
    assert isinstance(echo, IcmpEcho)
    assert (echo.type, echo.code, echo.ident, echo.seq, echo.data) == (8, 0, 7, 9, b"ping data")
    assert echo.is_request
    assert echo.checksum == ICMP(raw).chksum
    reply = build_echo_reply(echo)
    assert reply == build_echo_reply(raw) == build_echo_reply(memoryview(raw))
    assert _scapy_valid(reply)
    theirs = ICMP(reply)
    assert (theirs.type, theirs.code, theirs.id, theirs.seq, theirs.load) == \
        (0, 0, 7, 9, b"ping data")
    parsed = parse_icmp(reply)
    assert isinstance(parsed, IcmpEcho) and parsed.type == ECHO_REPLY and not parsed.is_request


def test_echo_reply_needs_a_request():
    reply = build_echo_reply(build_echo_request(1, 2, b"x"))
    with pytest.raises(ValueError):
        build_echo_reply(parse_icmp(reply))
    with pytest.raises(ParseError):
        build_echo_reply(bytes(ICMP(type=3, code=3) / bytes(IP(src=CLIENT, dst=SERVER) / UDP())))
    with pytest.raises(ValueError):
        build_echo_request(0x10000, 0)


def test_inside_ipv4():
    packet = build_ipv4(CLIENT, SERVER, PROTO_ICMP, build_echo_request(3, 4, b"abc"))
    pkt = IP(packet)
    assert pkt[ICMP].type == 8 and pkt[ICMP].id == 3 and pkt[ICMP].seq == 4
    header, payload = parse_ipv4(packet)
    echo = parse_icmp(payload)
    assert isinstance(echo, IcmpEcho) and echo.data == b"abc"


def test_bad_checksum():
    raw = bytearray(build_echo_request(1, 1, b"abc"))
    raw[-1] ^= 0x40
    with pytest.raises(ParseError, match="bad checksum"):
        parse_icmp(raw)
    assert parse_icmp(raw, verify_checksum=False).data == b"ab#"


def test_truncated():
    with pytest.raises(ParseError, match="shorter than a header"):
        parse_icmp(build_echo_request(1, 1)[:7])


# ---------------------------------------------------------------------------
# errors


def _original_udp() -> bytes:
    return bytes(IP(src=CLIENT, dst=SERVER, id=5) / UDP(sport=40001, dport=53) / Raw(b"q" * 40))


def test_port_unreachable_from_scapy():
    original = _original_udp()
    raw = bytes(ICMP(type=3, code=3) / Raw(original[:28]))
    err = parse_icmp(raw)
    assert isinstance(err, IcmpError)
    assert (err.type, err.code) == (DEST_UNREACH, UNREACH_PORT)
    orig = err.original
    assert orig.dst == ip_from_str(SERVER) and orig.src == ip_from_str(CLIENT)
    assert (orig.src_str, orig.dst_str) == (CLIENT, SERVER)
    assert orig.protocol == PROTO_UDP
    assert (orig.src_port, orig.dst_port) == (40001, 53)
    assert orig.echo_ident is None
    assert orig.header.total_length == len(original)  # the quote is shorter; that is fine
    assert orig.payload == original[20:28]
    assert err.next_hop_mtu is None and err.pointer is None and err.gateway is None


def test_scapy_quotes_whole_datagram_tcp():
    original = bytes(IP(src=CLIENT, dst=SERVER) / TCP(sport=40002, dport=443, flags="S"))
    raw = bytes(ICMP(type=3, code=13) / Raw(original))
    err = parse_icmp(raw)
    assert isinstance(err, IcmpError)
    assert err.original.protocol == PROTO_TCP
    assert (err.original.src_port, err.original.dst_port) == (40002, 443)


def test_time_exceeded_for_echo():
    original = build_ipv4(CLIENT, SERVER, PROTO_ICMP, build_echo_request(0x4242, 1, b"x" * 56),
                          ttl=1)
    raw = bytes(ICMP(type=11, code=0) / Raw(original[:28]))
    err = parse_icmp(raw)
    assert isinstance(err, IcmpError)
    assert (err.type, err.code) == (TIME_EXCEEDED, EXCEEDED_TTL)
    assert err.original.protocol == PROTO_ICMP
    assert err.original.echo_ident == 0x4242
    assert err.original.src_port is None


def test_frag_needed_mtu_and_parameter_problem_pointer():
    original = _original_udp()
    raw = bytes(ICMP(type=3, code=4, nexthopmtu=1400) / Raw(original[:28]))
    err = parse_icmp(raw)
    assert isinstance(err, IcmpError) and err.code == UNREACH_FRAG_NEEDED
    assert err.next_hop_mtu == 1400
    raw = bytes(ICMP(type=12, code=0, ptr=9) / Raw(original[:28]))
    err = parse_icmp(raw)
    assert isinstance(err, IcmpError) and err.type == PARAMETER_PROBLEM and err.pointer == 9
    raw = bytes(ICMP(type=5, code=1, gw=ROUTER) / Raw(original[:28]))
    err = parse_icmp(raw)
    assert isinstance(err, IcmpError) and err.type == REDIRECT
    assert err.gateway == ip_from_str(ROUTER)


def test_quote_without_ports():
    original = _original_udp()
    err = parse_icmp(build_icmp(DEST_UNREACH, UNREACH_PORT, 0, original[:22]))
    assert isinstance(err, IcmpError)
    assert err.original.src_port is None and err.original.dst_port is None
    # a non-first fragment carries no ports
    frag = build_ipv4(CLIENT, SERVER, PROTO_UDP, b"\x01\x02\x03\x04" * 4, df=False,
                      frag_offset=8)
    err = parse_icmp(build_icmp_error(DEST_UNREACH, UNREACH_PORT, frag))
    assert isinstance(err, IcmpError) and err.original.src_port is None


@pytest.mark.parametrize("quote", [b"", b"\x45" + bytes(10), b"\x60" + bytes(27)])
def test_bad_quote(quote):
    with pytest.raises(ParseError, match="quoted datagram"):
        parse_icmp(build_icmp(TIME_EXCEEDED, 0, 0, quote))


def test_build_error_matches_scapy():
    original = _original_udp()
    ours = build_icmp_error(DEST_UNREACH, UNREACH_FRAG_NEEDED, original, rest=1280)
    theirs = bytes(ICMP(type=3, code=4, nexthopmtu=1280) / Raw(original[:28]))
    assert ours == theirs
    assert _scapy_valid(ours)
    with pytest.raises(ValueError):
        build_icmp_error(ECHO_REQUEST, 0, original)


def test_other_types():
    raw = bytes(ICMP(type=13, code=0, id=1, seq=2, ts_ori=1, ts_rx=2, ts_tx=3))  # timestamp
    msg = parse_icmp(raw)
    assert isinstance(msg, IcmpMessage)
    assert (msg.type, msg.code, msg.rest) == (13, 0, 0x00010002)
    assert msg.data == struct.pack("!III", 1, 2, 3)


@FAST
@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=200))
def test_echo_roundtrip(ident, seq, data):
    raw = build_echo_request(ident, seq, data)
    assert raw == bytes(ICMP(type=8, id=ident, seq=seq) / Raw(data) if data
                        else ICMP(type=8, id=ident, seq=seq))
    echo = parse_icmp(raw)
    assert isinstance(echo, IcmpEcho)
    assert (echo.ident, echo.seq, echo.data) == (ident, seq, data)
    reply = build_echo_reply(echo)
    assert struct.unpack("!H", reply[2:4])[0] == ICMP(reply).chksum
    assert _scapy_valid(reply)


@FAST
@given(st.binary(max_size=80))
def test_arbitrary_bytes_only_parse_error(data):
    for verify in (True, False):
        try:
            parse_icmp(data, verify_checksum=verify)
        except ParseError:
            pass


@FAST
@given(st.sampled_from(sorted({0, 3, 4, 5, 8, 11, 12, 13, 255})), st.integers(0, 255),
       st.integers(0, 0xFFFFFFFF), st.binary(max_size=60))
def test_checksummed_messages_only_parse_error(typ, code, rest, data):
    raw = build_icmp(typ, code, rest, data)
    assert _scapy_checksum_ok(raw)
    try:
        msg = parse_icmp(raw)
    except ParseError:
        assert typ in (3, 4, 5, 11, 12)
        return
    assert msg.type == typ


def test_the_quoted_tcp_sequence_number_is_parsed_when_quoted():
    original = bytes(IP(src=CLIENT, dst=SERVER) / TCP(sport=40002, dport=443, seq=0xDEADBEEF,
                                                       flags="S"))
    err = parse_icmp(bytes(ICMP(type=3, code=3) / Raw(original[:28])))   # RFC 792: 8 bytes
    assert isinstance(err, IcmpError) and err.original.tcp_seq == 0xDEADBEEF
    err = parse_icmp(bytes(ICMP(type=3, code=3) / Raw(original[:24])))   # ports only
    assert err.original.src_port == 40002 and err.original.tcp_seq is None
    udp = bytes(IP(src=CLIENT, dst=SERVER) / UDP(sport=40001, dport=53) / Raw(b"q" * 8))
    assert parse_icmp(bytes(ICMP(type=3, code=3) / Raw(udp))).original.tcp_seq is None
