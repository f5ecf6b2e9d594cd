"""ICMPv6 parse/build, checked against scapy."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6MLDone,
    ICMPv6MLQuery,
    ICMPv6MLReport,
    ICMPv6MLReport2,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_Redirect,
    ICMPv6ND_RS,
    ICMPv6PacketTooBig,
    ICMPv6ParamProblem,
    ICMPv6TimeExceeded,
    ICMPv6Unknown,
    IPv6,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    in6_chksum,
)
from scapy.packet import Raw

from erebus.errors import ParseError
from erebus.wire.checksum import internet_checksum, pseudo_header_sum6
from erebus.wire.icmpv6 import (
    DEST_UNREACH,
    ECHO_REPLY,
    ECHO_REQUEST,
    EXCEEDED_HOP_LIMIT,
    EXCEEDED_REASSEMBLY,
    MAX_QUOTE,
    PACKET_TOO_BIG,
    PARAMETER_PROBLEM,
    REDIRECT,
    TIME_EXCEEDED,
    UNREACH_ADMIN_PROHIBITED,
    UNREACH_PORT,
    Icmpv6Echo,
    Icmpv6Error,
    Icmpv6Ignored,
    Icmpv6Message,
    build_dest_unreachable,
    build_echo_reply,
    build_echo_request,
    build_icmpv6,
    build_icmpv6_error,
    build_packet_too_big,
    error_allowed,
    parse_icmpv6,
)
from erebus.wire.ipv6 import (
    MIN_MTU,
    NH_FRAGMENT,
    NH_HOPOPTS,
    NH_ICMPV6,
    NH_TCP,
    NH_UDP,
    PP_ERRONEOUS_FIELD,
    PP_UNRECOGNIZED_OPTION,
    build_ipv6,
    ip6_from_str,
    parse_ipv6,
)
from erebus.wire.udp import build_udp

CLIENT = "2001:2::2"
SERVER = "2001:2:0:1::53"
ROUTER = "2001:2::1"
C = ip6_from_str(CLIENT)
S = ip6_from_str(SERVER)
R = ip6_from_str(ROUTER)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def in_ipv6(src: str, dst: str, message: bytes) -> bytes:
    return build_ipv6(src, dst, NH_ICMPV6, message)


def scapy_recomputes(src: str, dst: str, message: bytes) -> IPv6:
    """scapy parses our message inside an IPv6 packet and, recomputing its checksum,
    gets the same bytes."""
    raw = in_ipv6(src, dst, message)
    pkt = IPv6(raw)
    again = IPv6(raw)
    del again.payload.cksum
    assert bytes(again) == raw
    return pkt


def scapy_message(src: str, dst: str, icmp) -> bytes:
    """scapy's ICMPv6 message (with its checksum) from src to dst."""
    return bytes(IPv6(src=src, dst=dst) / icmp)[40:]


def original_udp(payload: bytes = b"q" * 40) -> bytes:
    return bytes(IPv6(src=CLIENT, dst=SERVER) / UDP(sport=40001, dport=53) / Raw(payload))


# ---------------------------------------------------------------------------
# echo


@pytest.mark.parametrize("data", [b"", b"x", b"hello!!", bytes(range(256)) * 4])
def test_echo_request_matches_scapy(data):
    ours = build_echo_request(C, S, 0x1234, 0xABCD, data)
    assert ours == scapy_message(CLIENT, SERVER, ICMPv6EchoRequest(id=0x1234, seq=0xABCD,
                                                                   data=data))
    assert build_echo_request(CLIENT, SERVER, 0x1234, 0xABCD, data) == ours
    assert internet_checksum(ours, pseudo_header_sum6(C, S, NH_ICMPV6, len(ours))) == 0
    pkt = scapy_recomputes(CLIENT, SERVER, ours)
    assert (pkt[ICMPv6EchoRequest].id, pkt[ICMPv6EchoRequest].seq) == (0x1234, 0xABCD)


def test_parse_scapy_echo_request_and_reply():
    raw = scapy_message(SERVER, CLIENT, ICMPv6EchoRequest(id=7, seq=9, data=b"ping data"))
    echo = parse_icmpv6(raw, S, C)
    assert isinstance(echo, Icmpv6Echo)
    assert (echo.type, echo.code, echo.ident, echo.seq, echo.data) == (128, 0, 7, 9, b"ping data")
    assert echo.is_request
    assert echo.checksum == struct.unpack("!H", raw[2:4])[0]
    reply = build_echo_reply(C, S, echo)
    assert reply == build_echo_reply(C, S, raw) == build_echo_reply(CLIENT, SERVER,
                                                                    memoryview(raw))
    pkt = scapy_recomputes(CLIENT, SERVER, reply)
    theirs = pkt[ICMPv6EchoReply]
    assert (theirs.type, theirs.code, theirs.id, theirs.seq, theirs.data) == \
        (129, 0, 7, 9, b"ping data")
    parsed = parse_icmpv6(reply, C, S)
    assert isinstance(parsed, Icmpv6Echo) and parsed.type == ECHO_REPLY and not parsed.is_request


def test_echo_reply_needs_a_request():
    reply = build_echo_reply(C, S, build_echo_request(S, C, 1, 2, b"x"))
    with pytest.raises(ValueError):
        build_echo_reply(S, C, parse_icmpv6(reply, C, S))
    with pytest.raises(ParseError, match="bad checksum"):  # verified: it came from S, not R
        build_echo_reply(C, S, build_echo_request(R, C, 1, 2, b"x"))
    with pytest.raises(ParseError, match="not an echo request"):
        build_echo_reply(C, S, build_dest_unreachable(S, C, original_udp()))
    with pytest.raises(ValueError):
        build_echo_request(C, S, 0x10000, 0)


def test_inside_ipv6():
    packet = in_ipv6(CLIENT, SERVER, build_echo_request(C, S, 3, 4, b"abc"))
    header, payload = parse_ipv6(packet)
    assert header.protocol == NH_ICMPV6
    echo = parse_icmpv6(payload, header.src, header.dst)
    assert isinstance(echo, Icmpv6Echo) and echo.data == b"abc"


def test_checksum_covers_the_pseudo_header():
    raw = bytearray(build_echo_request(C, S, 1, 1, b"abc"))
    with pytest.raises(ParseError, match="bad checksum"):
        parse_icmpv6(raw, C, R)  # another destination
    with pytest.raises(ParseError, match="bad checksum"):
        parse_icmpv6(raw + b"\x00", C, S)  # another length
    raw[-1] ^= 0x40
    with pytest.raises(ParseError, match="bad checksum"):
        parse_icmpv6(raw, C, S)
    assert parse_icmpv6(raw, C, S, verify_checksum=False).data == b"ab#"


def test_truncated():
    with pytest.raises(ParseError, match="7 bytes, shorter than a header"):
        parse_icmpv6(build_echo_request(C, S, 1, 1)[:7], C, S)


# ---------------------------------------------------------------------------
# errors


def test_port_unreachable_from_scapy():
    original = original_udp()
    raw = scapy_message(SERVER, CLIENT, ICMPv6DestUnreach(code=4) / Raw(original))
    err = parse_icmpv6(raw, S, C)
    assert isinstance(err, Icmpv6Error)
    assert (err.type, err.code) == (DEST_UNREACH, UNREACH_PORT)
    orig = err.original
    assert (orig.src, orig.dst, orig.src_str, orig.dst_str) == (C, S, CLIENT, SERVER)
    assert orig.protocol == NH_UDP
    assert (orig.src_port, orig.dst_port, orig.echo_ident, orig.tcp_seq) == (40001, 53, None, None)
    assert orig.payload == original[40:]
    assert err.mtu is None and err.pointer is None


def test_quote_cut_short():
    original = bytes(IPv6(src=CLIENT, dst=SERVER) / TCP(sport=40002, dport=443, seq=0xDEADBEEF,
                                                        flags="S"))
    err = parse_icmpv6(scapy_message(SERVER, CLIENT, ICMPv6DestUnreach(code=1)
                                     / Raw(original[:48])), S, C)
    assert isinstance(err, Icmpv6Error) and err.code == UNREACH_ADMIN_PROHIBITED
    assert err.original.header.payload_length == 20  # what it said; 8 bytes are quoted
    assert (err.original.src_port, err.original.dst_port, err.original.tcp_seq) == \
        (40002, 443, 0xDEADBEEF)
    err = parse_icmpv6(build_icmpv6(S, C, DEST_UNREACH, 1, 0, original[:44]), S, C)
    assert err.original.src_port == 40002 and err.original.tcp_seq is None
    err = parse_icmpv6(build_icmpv6(S, C, DEST_UNREACH, 1, 0, original[:42]), S, C)
    assert err.original.src_port is None


def test_packet_too_big_time_exceeded_parameter_problem():
    original = original_udp()
    err = parse_icmpv6(scapy_message(ROUTER, CLIENT, ICMPv6PacketTooBig(mtu=1400)
                                     / Raw(original)), R, C)
    assert isinstance(err, Icmpv6Error) and err.type == PACKET_TOO_BIG and err.mtu == 1400
    err = parse_icmpv6(scapy_message(ROUTER, CLIENT, ICMPv6TimeExceeded(code=1)
                                     / Raw(original)), R, C)
    assert (err.type, err.code) == (TIME_EXCEEDED, EXCEEDED_REASSEMBLY)
    err = parse_icmpv6(scapy_message(ROUTER, CLIENT, ICMPv6ParamProblem(code=0, ptr=4)
                                     / Raw(original)), R, C)
    assert (err.type, err.code, err.pointer, err.mtu) == (PARAMETER_PROBLEM, PP_ERRONEOUS_FIELD,
                                                         4, None)


def test_time_exceeded_for_echo():
    original = in_ipv6(CLIENT, SERVER, build_echo_request(C, S, 0x4242, 1, b"x" * 56))
    err = parse_icmpv6(build_icmpv6_error(R, C, TIME_EXCEEDED, EXCEEDED_HOP_LIMIT, original),
                       R, C)
    assert isinstance(err, Icmpv6Error) and err.original.echo_ident == 0x4242
    assert err.original.src_port is None


def test_quote_with_extension_headers_and_fragments():
    hbh = bytes(IPv6(src=CLIENT, dst=SERVER) / IPv6ExtHdrHopByHop() / UDP(sport=7, dport=9))
    err = parse_icmpv6(build_dest_unreachable(S, C, hbh), S, C)
    assert err.original.protocol == NH_UDP and err.original.header.extensions == ((0, 40),)
    assert (err.original.src_port, err.original.dst_port) == (7, 9)
    first = bytes(IPv6(src=CLIENT, dst=SERVER) / IPv6ExtHdrFragment(id=1, m=1)
                  / UDP(sport=7, dport=9) / Raw(bytes(16)))
    err = parse_icmpv6(build_packet_too_big(R, C, first, 1280), R, C)
    assert err.original.header.is_fragment and err.original.src_port == 7
    later = bytes(IPv6(src=CLIENT, dst=SERVER) / IPv6ExtHdrFragment(id=1, offset=3, nh=NH_UDP)
                  / Raw(bytes(16)))
    err = parse_icmpv6(build_packet_too_big(R, C, later, 1280), R, C)
    assert err.original.header.frag_offset == 24 and err.original.src_port is None


@pytest.mark.parametrize("quote, message", [
    (b"", "shorter than a header"),
    (b"\x45" + bytes(39), "version 4"),
    (bytes(IPv6(src=CLIENT, dst=SERVER) / IPv6ExtHdrHopByHop() / UDP())[:44], "runs past"),
])
def test_bad_quote(quote, message):
    with pytest.raises(ParseError, match=f"ICMPv6 error: quoted packet: IPv6: .*{message}"):
        parse_icmpv6(build_icmpv6(R, C, TIME_EXCEEDED, 0, 0, quote), R, C)


def test_unknown_error_types_quote_too():
    # RFC 4443 2.4 (b): an unknown error type goes to the upper layer like the known ones
    raw = build_icmpv6(R, C, 100, 7, 0x01020304, original_udp())
    err = parse_icmpv6(raw, R, C)
    assert isinstance(err, Icmpv6Error) and (err.type, err.code, err.rest) == (100, 7, 0x01020304)
    assert err.original.dst_port == 53
    assert err.mtu is None and err.pointer is None


# ---------------------------------------------------------------------------
# neighbour and multicast listener discovery: recognised, ignored


@pytest.mark.parametrize("icmp, kind", [
    (ICMPv6ND_RS(), "router solicitation"),
    (ICMPv6ND_RA(), "router advertisement"),
    (ICMPv6ND_NS(tgt=CLIENT), "neighbour solicitation"),
    (ICMPv6ND_NA(tgt=CLIENT), "neighbour advertisement"),
    (ICMPv6ND_Redirect(tgt=ROUTER, dst=SERVER), "redirect"),
    (ICMPv6MLQuery(), "multicast listener query"),
    (ICMPv6MLReport(mladdr="ff02::1:3"), "multicast listener report"),
    (ICMPv6MLDone(mladdr="ff02::1:3"), "multicast listener done"),
    (ICMPv6MLReport2(), "multicast listener report (v2)"),
])
def test_discovery_is_ignored(icmp, kind):
    raw = scapy_message("fe80::1", "ff02::1", icmp)
    msg = parse_icmpv6(raw, "fe80::1", "ff02::1")
    assert isinstance(msg, Icmpv6Ignored) and msg.kind == kind
    assert msg.type == raw[0]
    with pytest.raises(ParseError, match="bad checksum"):  # checked all the same
        parse_icmpv6(raw, "fe80::2", "ff02::1")


def test_other_informational_types():
    raw = scapy_message(SERVER, CLIENT, ICMPv6Unknown(type=200, code=1, msgbody=b"\x00\x01\x00\x02"
                                                                                 b"body"))
    msg = parse_icmpv6(raw, S, C)
    assert isinstance(msg, Icmpv6Message)
    assert (msg.type, msg.code, msg.rest, msg.data) == (200, 1, 0x00010002, b"body")


# ---------------------------------------------------------------------------
# building errors


def test_port_unreachable_matches_scapy():
    original = original_udp()
    ours = build_dest_unreachable(S, C, original)
    assert ours == scapy_message(SERVER, CLIENT, ICMPv6DestUnreach(code=4) / Raw(original))
    pkt = scapy_recomputes(SERVER, CLIENT, ours)
    assert pkt[ICMPv6DestUnreach].code == 4
    assert build_dest_unreachable(S, C, original, code=1)[1] == 1


def test_error_quote_fits_the_minimum_mtu():
    big = original_udp(bytes(2000))
    ours = build_packet_too_big(R, C, big, 1400)
    assert len(ours) == 8 + MAX_QUOTE
    packet = in_ipv6(ROUTER, CLIENT, ours)
    assert len(packet) == MIN_MTU == 1280
    assert ours == scapy_message(ROUTER, CLIENT, ICMPv6PacketTooBig(mtu=1400) / Raw(big[:1232]))
    pkt = scapy_recomputes(ROUTER, CLIENT, ours)
    assert pkt[ICMPv6PacketTooBig].mtu == 1400
    err = parse_icmpv6(ours, R, C)
    assert err.mtu == 1400 and err.original.dst_port == 53
    assert len(err.original.payload) == 1232 - 40 < err.original.header.payload_length
    small = original_udp(b"short")
    assert build_dest_unreachable(R, C, small)[8:] == small  # quoted whole


def test_build_error_rejects():
    with pytest.raises(ValueError, match="not an error type"):
        build_icmpv6_error(R, C, ECHO_REQUEST, 0, original_udp())
    with pytest.raises(ValueError, match="shorter than an IPv6 header"):
        build_dest_unreachable(R, C, original_udp()[:39])
    with pytest.raises(ValueError, match="below the IPv6 minimum"):
        build_packet_too_big(R, C, original_udp(), 1279)
    with pytest.raises(ValueError):
        build_icmpv6(R, C, 256, 0, 0)
    with pytest.raises(ValueError):
        build_icmpv6("198.18.0.1", C, 1, 0, 0)


def _packet(src: str, dst: str, nh: int, payload: bytes) -> bytes:
    return build_ipv6(src, dst, nh, payload)


@pytest.mark.parametrize("invoking, typ, code, allowed", [
    (original_udp(), DEST_UNREACH, UNREACH_PORT, True),
    # not to an error or a redirect
    (_packet(SERVER, CLIENT, NH_ICMPV6, build_dest_unreachable(S, C, original_udp())),
     DEST_UNREACH, UNREACH_PORT, False),
    (_packet(ROUTER, CLIENT, NH_ICMPV6, build_icmpv6(R, C, REDIRECT, 0, 0, bytes(32))),
     PARAMETER_PROBLEM, 0, False),
    (_packet(CLIENT, SERVER, NH_ICMPV6, b""), PARAMETER_PROBLEM, 0, False),
    # an echo request may be answered with an error
    (_packet(CLIENT, SERVER, NH_ICMPV6, build_echo_request(C, S, 1, 1)), PACKET_TOO_BIG, 0, True),
    # to multicast: only packet too big and a parameter problem about an option
    (_packet(CLIENT, "ff02::1", NH_UDP, build_udp(C, ip6_from_str("ff02::1"), 1, 2)),
     DEST_UNREACH, UNREACH_PORT, False),
    (_packet(CLIENT, "ff02::1", NH_UDP, b""), PACKET_TOO_BIG, 0, True),
    (_packet(CLIENT, "ff02::1", NH_UDP, b""), PARAMETER_PROBLEM, PP_UNRECOGNIZED_OPTION, True),
    (_packet(CLIENT, "ff02::1", NH_UDP, b""), PARAMETER_PROBLEM, PP_ERRONEOUS_FIELD, False),
    # from the unspecified or a multicast address
    (_packet("::", SERVER, NH_UDP, b""), DEST_UNREACH, UNREACH_PORT, False),
    (_packet("ff05::2", SERVER, NH_UDP, b""), PACKET_TOO_BIG, 0, False),
    (b"\x60" + bytes(30), DEST_UNREACH, 0, False),
    # an unreadable header chain is answered (Linux)
    (_packet(CLIENT, SERVER, NH_HOPOPTS, b"\x3a"), PARAMETER_PROBLEM, 0, True),
    (_packet(CLIENT, SERVER, NH_FRAGMENT, struct.pack("!BBHI", NH_ICMPV6, 0, 8, 1) + b"\x01"),
     DEST_UNREACH, 0, True),
])
def test_error_allowed(invoking, typ, code, allowed):
    assert error_allowed(invoking, typ, code) is allowed


# ---------------------------------------------------------------------------
# fuzz


@FAST
@given(st.binary(max_size=120))
def test_arbitrary_bytes_only_parse_error(data):
    for verify in (True, False):
        try:
            parse_icmpv6(data, C, S, verify_checksum=verify)
        except ParseError:
            pass
    try:
        error_allowed(data, DEST_UNREACH, 0)
    except ParseError:  # pragma: no cover - it answers, it does not raise
        raise AssertionError("error_allowed raised")


@FAST
@given(st.sampled_from([1, 2, 3, 4, 100, 128, 129, 133, 137, 143, 200, 255]),
       st.integers(0, 255), st.integers(0, 0xFFFFFFFF),
       st.one_of(st.binary(max_size=60), st.just(original_udp()).map(lambda b: b[:50])))
def test_checksummed_messages_only_parse_error(typ, code, rest, data):
    raw = build_icmpv6(C, S, typ, code, rest, data)
    assert struct.unpack("!H", raw[2:4])[0] == in6_chksum(NH_ICMPV6, IPv6(src=CLIENT, dst=SERVER),
                                                           raw[:2] + b"\0\0" + raw[4:])
    try:
        msg = parse_icmpv6(raw, C, S)
    except ParseError:
        assert typ < 128  # only an error's quote can be malformed
        return
    assert msg.type == typ


@FAST
@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=200))
def test_echo_roundtrip(ident, seq, data):
    raw = build_echo_request(C, S, ident, seq, data)
    echo = parse_icmpv6(raw, C, S)
    assert isinstance(echo, Icmpv6Echo) and (echo.ident, echo.seq, echo.data) == (ident, seq, data)
    reply = build_echo_reply(S, C, echo)
    scapy_recomputes(SERVER, CLIENT, reply)


def test_quoted_tcp_segment():
    original = bytes(IPv6(src=CLIENT, dst=SERVER) / TCP(sport=1, dport=2, seq=5))
    err = parse_icmpv6(build_dest_unreachable(S, C, original), S, C)
    assert err.original.protocol == NH_TCP and err.original.tcp_seq == 5
