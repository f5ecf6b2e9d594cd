"""IPv6 parse/build, extension headers, fragment reassembly and the TCP/UDP checksums over
IPv6, checked against scapy."""

from __future__ import annotations

import ipaddress
import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import (
    HBHOptUnknown,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    Jumbo,
    PadN,
    RouterAlert,
    fragment6,
    in6_chksum,
)
from scapy.packet import Raw

from erebus.errors import ParseError
from erebus.wire.checksum import internet_checksum, pseudo_header_sum, pseudo_header_sum6
from erebus.wire.ipv6 import (
    MAX_EXTENSION_BYTES,
    MAX_EXTENSION_HEADERS,
    MAX_OPTIONS,
    NH_AH,
    NH_DSTOPTS,
    NH_ESP,
    NH_FRAGMENT,
    NH_HOPOPTS,
    NH_ICMPV6,
    NH_NONE,
    NH_ROUTING,
    NH_TCP,
    NH_UDP,
    PP_ERRONEOUS_FIELD,
    PP_INCOMPLETE_CHAIN,
    PP_UNRECOGNIZED_NEXT_HEADER,
    PP_UNRECOGNIZED_OPTION,
    IPv6Header,
    Ipv6Error,
    Reason,
    Reassembler,
    address_int,
    build_ipv6,
    build_ipv6_header,
    ip6_from_str,
    ip6_to_str,
    is_ipv6_address,
    parse_ipv6,
    parse_ipv6_prefix,
    to_ip6,
)
from erebus.wire.tcp import ACK, SYN, build_tcp, parse_tcp
from erebus.wire.udp import build_udp, parse_udp

SRC = "2001:2::1"
DST = "2001:2:0:ff::2"
SRC_B = ipaddress.IPv6Address(SRC).packed
DST_B = ipaddress.IPv6Address(DST).packed
MCAST = "ff02::1"

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SCAPY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

lab_addresses = st.binary(min_size=10, max_size=10).map(
    lambda tail: bytes.fromhex("20010002") + b"\x00\x00" + tail)  # 2001:2::/48


def options_header(nh: int, options: bytes = b"") -> bytes:
    """A hop-by-hop or destination options header holding ``options``, padded with Pad1 or
    PadN to a multiple of 8 bytes."""
    pad = -(2 + len(options)) % 8
    padding = b"\x00" if pad == 1 else (bytes([1, pad - 2]) + bytes(pad - 2) if pad else b"")
    body = options + padding
    return bytes([nh, (2 + len(body)) // 8 - 1]) + body


def routing_header(nh: int, segments_left: int, rtype: int = 4) -> bytes:
    return bytes([nh, 0, rtype, segments_left]) + bytes(4)


def fragment_header(nh: int, offset: int, more: bool, ident: int) -> bytes:
    return struct.pack("!BBHI", nh, 0, offset | int(more), ident)


def packet(nh: int, payload: bytes, dst: str = DST) -> bytes:
    return build_ipv6(SRC, dst, nh, payload)


def drop(raw: bytes) -> Ipv6Error:
    with pytest.raises(Ipv6Error) as info:
        parse_ipv6(raw)
    return info.value


UDP_SEGMENT = build_udp(SRC_B, DST_B, 40000, 53, b"query")


# ---------------------------------------------------------------------------
# addresses


def test_address_helpers():
    assert ip6_from_str(SRC) == SRC_B
    assert ip6_to_str(SRC_B) == SRC
    assert ip6_to_str(ip6_from_str("2001:0002:0000:0000:0000:0000:0000:0001")) == SRC  # RFC 5952
    assert to_ip6(SRC) == to_ip6(SRC_B) == to_ip6(bytearray(SRC_B)) == to_ip6(memoryview(SRC_B)) \
        == to_ip6(int.from_bytes(SRC_B, "big")) == to_ip6(ipaddress.IPv6Address(SRC)) == SRC_B
    for bad in ("2001:2::1::2", "198.18.0.1", "fe80::1%eth0", "", b"\x01" * 15, -1, 1 << 128, 1.5,
                None):
        with pytest.raises(ValueError):
            to_ip6(bad)
    with pytest.raises(ValueError):
        ip6_to_str(b"\x00" * 4)


def test_address_int_reads_either_family():
    assert address_int(SRC) == address_int(SRC_B) == address_int(ipaddress.IPv6Address(SRC)) \
        == int.from_bytes(SRC_B, "big")
    assert address_int("198.18.0.1") == address_int(b"\xc6\x12\x00\x01") == 0xC6120001
    assert address_int(ipaddress.IPv4Address("198.18.0.1")) == 0xC6120001
    for bad in ("not an address", b"\x01" * 5, 1 << 128, -1, 2.0):
        with pytest.raises(ValueError):
            address_int(bad)
    assert is_ipv6_address(SRC_B) and is_ipv6_address(SRC) and is_ipv6_address(1 << 100)
    assert is_ipv6_address(ipaddress.IPv6Address(SRC))
    assert not is_ipv6_address(b"\xc6\x12\x00\x01") and not is_ipv6_address("198.18.0.1")
    assert not is_ipv6_address(0xC6120001)


# ---------------------------------------------------------------------------
# the pseudo-header (RFC 8200 section 8.1)


@FAST
@given(lab_addresses, lab_addresses, st.sampled_from([NH_TCP, NH_UDP, NH_ICMPV6]),
       st.binary(max_size=400))
def test_pseudo_header_sum6_matches_scapy(src, dst, nh, upper):
    ip = IPv6(src=ip6_to_str(src), dst=ip6_to_str(dst))
    ours = internet_checksum(upper, pseudo_header_sum6(src, dst, nh, len(upper)))
    assert ours == in6_chksum(nh, ip, upper)
    # with the addresses as integers, the IPv4 function computes the same sum
    as_ints = pseudo_header_sum(int.from_bytes(src, "big"), int.from_bytes(dst, "big"), nh,
                                len(upper))
    assert internet_checksum(upper, as_ints) == ours


# ---------------------------------------------------------------------------
# the fixed header


def test_parse_scapy_packet():
    pkt = IPv6(src=SRC, dst=DST, tc=0xB8, fl=0xABCDE, hlim=17) / UDP(sport=5, dport=53) \
        / Raw(b"hello")
    raw = bytes(pkt)
    header, payload = parse_ipv6(raw)
    assert isinstance(header, IPv6Header)
    assert header.version == 6
    assert (header.traffic_class, header.flow_label, header.hop_limit) == (0xB8, 0xABCDE, 17)
    assert header.payload_length == len(raw) - 40 == header.payload_len == 13
    assert header.next_header == header.protocol == NH_UDP
    assert (header.src, header.dst) == (SRC_B, DST_B)
    assert (header.src_str, header.dst_str) == (SRC, DST)
    assert header.header_len == 40 and header.extensions == ()
    assert header.ident is None and not header.is_fragment and not header.is_atomic_fragment
    assert isinstance(payload, memoryview)
    assert bytes(payload) == bytes(pkt[UDP])


def test_parse_trims_link_padding():
    raw = packet(NH_UDP, UDP_SEGMENT)
    header, payload = parse_ipv6(raw + bytes(20))
    assert header.payload_length == len(UDP_SEGMENT)
    assert bytes(payload) == UDP_SEGMENT


@pytest.mark.parametrize("mutate, reason, message, pp", [
    (lambda r: r[:39], Reason.SHORT, "39 bytes, shorter than a header", None),
    (lambda r: b"\x40" + r[1:], Reason.VERSION, "version 4", None),
    (lambda r: b"\x00" + r[1:], Reason.VERSION, "version 0", None),
    (lambda r: r[:-1], Reason.PAYLOAD_LENGTH, "payload length 13 beyond the 12 bytes received",
     (PP_ERRONEOUS_FIELD, 4)),
])
def test_parse_rejects(mutate, reason, message, pp):
    err = drop(mutate(packet(NH_UDP, UDP_SEGMENT)))
    assert isinstance(err, ParseError)
    assert err.reason is reason and message in str(err) and str(err).startswith("IPv6: ")
    assert err.parameter_problem == pp


def test_build_matches_scapy():
    raw = build_ipv6(SRC, DST, NH_UDP, UDP_SEGMENT, hop_limit=9, traffic_class=4,
                     flow_label=0x12345)
    pkt = IPv6(raw)
    assert (pkt.version, pkt.tc, pkt.fl, pkt.plen, pkt.nh, pkt.hlim) == \
        (6, 4, 0x12345, len(UDP_SEGMENT), NH_UDP, 9)
    assert (pkt.src, pkt.dst) == (SRC, DST)
    assert bytes(pkt) == raw
    assert bytes(IPv6(src=SRC, dst=DST, hlim=9, tc=4, fl=0x12345, nh=NH_UDP)
                 / Raw(UDP_SEGMENT)) == raw
    assert build_ipv6_header(SRC_B, DST_B, NH_UDP, 8) == bytes(IPv6(src=SRC, dst=DST, nh=17,
                                                                    plen=8))


def test_build_rejects():
    for kwargs in ({"hop_limit": 256}, {"traffic_class": 256}, {"flow_label": 1 << 20}):
        with pytest.raises(ValueError):
            build_ipv6(SRC, DST, NH_UDP, b"", **kwargs)
    with pytest.raises(ValueError):
        build_ipv6(SRC, DST, NH_UDP, bytes(65536))
    with pytest.raises(ValueError):
        build_ipv6("198.18.0.1", DST, NH_UDP, b"")
    with pytest.raises(ValueError):
        build_ipv6(SRC, DST, 256, b"")


@SCAPY
@given(lab_addresses, lab_addresses, st.integers(0, 255), st.integers(0, 0xFFFFF),
       st.integers(0, 255), st.sampled_from([NH_TCP, NH_UDP, NH_ICMPV6, NH_NONE, 253]),
       st.binary(max_size=300))
def test_build_parse_roundtrip(src, dst, tc, fl, hlim, nh, payload):
    raw = build_ipv6(src, dst, nh, payload, traffic_class=tc, flow_label=fl, hop_limit=hlim)
    header, body = parse_ipv6(raw)
    assert (header.src, header.dst, header.traffic_class, header.flow_label, header.hop_limit,
            header.protocol) == (src, dst, tc, fl, hlim, nh)
    assert bytes(body) == payload
    pkt = IPv6(raw)
    assert (pkt.src, pkt.dst, pkt.tc, pkt.fl, pkt.hlim, pkt.nh, pkt.plen) == \
        (ip6_to_str(src), ip6_to_str(dst), tc, fl, hlim, nh, len(payload))


# ---------------------------------------------------------------------------
# extension headers


def test_scapy_chain_walked_to_the_upper_layer():
    pkt = (IPv6(src=SRC, dst=DST) / IPv6ExtHdrHopByHop(options=[RouterAlert()])
           / IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\x00" * 4)])
           / IPv6ExtHdrRouting(addresses=[SRC], segleft=0)
           / IPv6ExtHdrFragment(id=0x1234, offset=0, m=0)
           / IPv6ExtHdrDestOpt() / UDP(sport=1, dport=2) / Raw(b"data"))
    raw = bytes(pkt)
    header, payload = parse_ipv6(raw)
    assert header.next_header == NH_HOPOPTS
    assert header.protocol == NH_UDP
    assert [t for t, _ in header.extensions] == [NH_HOPOPTS, NH_DSTOPTS, NH_ROUTING, NH_FRAGMENT,
                                                 NH_DSTOPTS]
    assert [off for _, off in header.extensions] == [40, 48, 56, 80, 88]
    assert header.header_len == 96
    # an atomic fragment (RFC 6946): its Fragment header is walked past
    assert header.is_atomic_fragment and not header.is_fragment and header.ident == 0x1234
    assert bytes(payload) == bytes(pkt[UDP])
    assert header.payload_len == len(payload)


@pytest.mark.parametrize("nh", [NH_ESP, NH_AH, NH_NONE, 135, 139, 253, 255])
def test_any_other_next_header_ends_the_walk(nh):
    raw = packet(NH_DSTOPTS, options_header(nh) + b"opaque")
    header, payload = parse_ipv6(raw)
    assert header.protocol == nh and header.header_len == 48 and bytes(payload) == b"opaque"


def test_routing_header_with_segments_left_is_dropped():
    raw = bytes(IPv6(src=SRC, dst=DST) / IPv6ExtHdrHopByHop()
                / IPv6ExtHdrRouting(addresses=[SRC, DST], segleft=1) / UDP())
    err = drop(raw)
    assert err.reason is Reason.SEGMENTS_LEFT and "routing header type 0 with 1 segments left" \
        in str(err)
    assert err.parameter_problem == (PP_ERRONEOUS_FIELD, 48 + 2)  # at the Routing Type
    # a segment routing header (type 4) likewise; with none left it is skipped
    assert drop(packet(NH_ROUTING, routing_header(NH_UDP, 3) + UDP_SEGMENT)).reason \
        is Reason.SEGMENTS_LEFT
    header, payload = parse_ipv6(packet(NH_ROUTING, routing_header(NH_UDP, 0) + UDP_SEGMENT))
    assert header.protocol == NH_UDP and bytes(payload) == UDP_SEGMENT


def test_hop_by_hop_only_first():
    raw = packet(NH_DSTOPTS, options_header(NH_HOPOPTS) + options_header(NH_UDP) + UDP_SEGMENT)
    err = drop(raw)
    assert err.reason is Reason.HOP_BY_HOP_NOT_FIRST
    # code 1 at the Next Header field that named it: the first byte of the header before
    assert err.parameter_problem == (PP_UNRECOGNIZED_NEXT_HEADER, 40)
    header, _ = parse_ipv6(packet(NH_HOPOPTS, options_header(NH_UDP) + UDP_SEGMENT))
    assert header.extensions == ((NH_HOPOPTS, 40),)


@pytest.mark.parametrize("kind, pp", [
    (0x1E, None),                              # 00: skipped
    (0x5E, "silent"),                          # 01: dropped
    (0x9E, (PP_UNRECOGNIZED_OPTION, 42)),      # 10: dropped, Parameter Problem code 2
    (0xDE, (PP_UNRECOGNIZED_OPTION, 42)),      # 11: the same for a unicast destination
])
@pytest.mark.parametrize("nh", [NH_HOPOPTS, NH_DSTOPTS])
def test_unrecognized_option_actions(kind, pp, nh):
    raw = packet(nh, options_header(NH_UDP, bytes([kind, 2, 0xAA, 0xBB])) + UDP_SEGMENT)
    if pp is None:
        header, payload = parse_ipv6(raw)
        assert header.protocol == NH_UDP and bytes(payload) == UDP_SEGMENT
        return
    err = drop(raw)
    assert err.reason is Reason.UNRECOGNIZED_OPTION and f"0x{kind:02x} at offset 42" in str(err)
    assert err.parameter_problem == (None if pp == "silent" else pp)


def test_unrecognized_option_to_multicast():
    raw = packet(NH_DSTOPTS, options_header(NH_UDP, bytes([0xDE, 0])) + UDP_SEGMENT, dst=MCAST)
    err = drop(raw)
    assert err.reason is Reason.UNRECOGNIZED_OPTION and err.parameter_problem is None
    raw = packet(NH_DSTOPTS, options_header(NH_UDP, bytes([0x9E, 0])) + UDP_SEGMENT, dst=MCAST)
    assert drop(raw).parameter_problem == (PP_UNRECOGNIZED_OPTION, 42)


def test_scapy_jumbo_and_unknown_options():
    jumbo = bytes(IPv6(src=SRC, dst=DST) / IPv6ExtHdrHopByHop(options=[Jumbo(jumboplen=70000)])
                  / UDP())
    err = drop(jumbo)
    assert err.reason is Reason.UNRECOGNIZED_OPTION  # 0xC2: erebus does not do jumbograms
    assert err.parameter_problem == (PP_UNRECOGNIZED_OPTION, 42)
    skipped = bytes(IPv6(src=SRC, dst=DST)
                    / IPv6ExtHdrDestOpt(options=[HBHOptUnknown(otype=0x07, optdata=b"abc")])
                    / UDP(sport=7, dport=9))
    header, payload = parse_ipv6(skipped)
    assert header.protocol == NH_UDP and bytes(payload)[:4] == b"\x00\x07\x00\x09"


@pytest.mark.parametrize("options, message", [
    (b"\x00" * 8 + b"\x1e\x02ab" + b"\x00" * 2, "more than 7 bytes of padding at offset 49"),
    (b"\x01\x06" + bytes(6) + b"\x1e\x04abcd", "more than 7 bytes of padding at offset 42"),
    (b"\x01\x04\x00\x00\x00\x01", "PadN at offset 42 is not all zero"),
    (b"\x1e\x05abcd", "option 30 at offset 42 (length 5) runs past its header"),
    (b"\x1e\x00\x1e\x00\x00\x1e", "option 30 at offset 47 has no length byte"),
])
def test_malformed_options(options, message):
    assert (2 + len(options)) % 8 == 0
    raw = packet(NH_DSTOPTS, bytes([NH_UDP, (2 + len(options)) // 8 - 1]) + options + UDP_SEGMENT)
    err = drop(raw)
    assert err.reason is Reason.BAD_OPTION and message in str(err)
    assert err.parameter_problem is None


def test_padding_up_to_seven_bytes():
    for options in (b"\x00" * 6, b"\x01\x04" + bytes(4), b"\x00\x01\x03" + bytes(3)):
        header, _ = parse_ipv6(packet(NH_DSTOPTS, bytes([NH_UDP, 0]) + options + UDP_SEGMENT))
        assert header.protocol == NH_UDP
    header, _ = parse_ipv6(packet(NH_DSTOPTS, bytes([NH_UDP, 1]) + b"\x00" * 7 + b"\x1e\x00"
                                  + b"\x00" * 5 + UDP_SEGMENT))
    assert header.protocol == NH_UDP


def test_options_limit():
    just = bytes([0x1E, 0]) * MAX_OPTIONS
    header, _ = parse_ipv6(packet(NH_DSTOPTS, options_header(NH_UDP, just) + UDP_SEGMENT))
    assert header.protocol == NH_UDP
    err = drop(packet(NH_DSTOPTS, options_header(NH_UDP, just + b"\x1e\x00") + UDP_SEGMENT))
    assert err.reason is Reason.TOO_MANY_OPTIONS and err.parameter_problem is None


def _dstopts_chain(count: int, nh: int = NH_UDP) -> bytes:
    chain = b"".join(options_header(NH_DSTOPTS) for _ in range(count - 1))
    return chain + options_header(nh)


def test_extension_header_count_limit():
    header, payload = parse_ipv6(packet(NH_DSTOPTS, _dstopts_chain(MAX_EXTENSION_HEADERS)
                                        + UDP_SEGMENT))
    assert len(header.extensions) == MAX_EXTENSION_HEADERS and bytes(payload) == UDP_SEGMENT
    err = drop(packet(NH_DSTOPTS, _dstopts_chain(MAX_EXTENSION_HEADERS + 1) + UDP_SEGMENT))
    assert err.reason is Reason.TOO_MANY_HEADERS and err.parameter_problem is None
    with pytest.raises(Ipv6Error, match="more than 8 extension headers"):
        parse_ipv6_prefix(packet(NH_DSTOPTS, _dstopts_chain(MAX_EXTENSION_HEADERS + 1)))


def test_extension_bytes_limit():
    big = bytes([0x1E, 253]) + bytes(253)  # an option of 255 bytes, skipped
    half = options_header(NH_DSTOPTS, big + big)  # 512 bytes
    assert len(half) == 512 and MAX_EXTENSION_BYTES == 1024
    last = options_header(NH_UDP, big + big)
    header, _ = parse_ipv6(packet(NH_DSTOPTS, half + last + UDP_SEGMENT))
    assert header.header_len == 40 + 1024
    err = drop(packet(NH_DSTOPTS, half + half + options_header(NH_UDP) + UDP_SEGMENT))
    assert err.reason is Reason.HEADERS_TOO_LONG


@pytest.mark.parametrize("payload, message", [
    (b"\x11\x00\x00", "extension header 60 at offset 40 runs past the 43-byte packet"),
    (bytes([NH_UDP, 1]) + bytes(6 + 4), "extension header 60 at offset 40 (16 bytes) runs past "
                                        "the 52-byte packet"),
    (options_header(NH_FRAGMENT) + b"\x11\x00\x00\x00", "extension header 44 at offset 48 runs "
                                                         "past"),
])
def test_truncated_extension_headers(payload, message):
    err = drop(packet(NH_DSTOPTS, payload))
    assert err.reason is Reason.TRUNCATED_HEADER and message in str(err)
    assert err.parameter_problem is None


def test_zero_payload_length_is_not_a_jumbogram():
    raw = bytearray(bytes(IPv6(src=SRC, dst=DST) / IPv6ExtHdrHopByHop(
        options=[Jumbo(jumboplen=70000)]) / UDP()))
    raw[4:6] = b"\x00\x00"
    assert drop(bytes(raw)).reason is Reason.TRUNCATED_HEADER


def test_prefix_parse_for_quotes():
    raw = packet(NH_DSTOPTS, options_header(NH_UDP) + UDP_SEGMENT + bytes(100))
    header, payload = parse_ipv6_prefix(raw[:52])
    assert header.protocol == NH_UDP and header.payload_length == len(raw) - 40
    assert bytes(payload) == UDP_SEGMENT[:4]
    with pytest.raises(Ipv6Error):
        parse_ipv6(raw[:52])
    with pytest.raises(Ipv6Error, match="runs past the 44-byte packet"):
        parse_ipv6_prefix(raw[:44])
    with pytest.raises(Ipv6Error, match="shorter than a header"):
        parse_ipv6_prefix(raw[:39])
    # the receiver's rules are not applied to a packet quoted back to us
    routed = packet(NH_ROUTING, routing_header(NH_TCP, 2) + b"tcp...")
    assert drop(routed).reason is Reason.SEGMENTS_LEFT
    assert parse_ipv6_prefix(routed)[0].protocol == NH_TCP


# ---------------------------------------------------------------------------
# fragments (RFC 8200 section 4.5)


def frag(offset: int, data: bytes, more: bool, ident: int = 9, nh: int = NH_UDP,
         unfragmentable: bytes = b"", first_nh: int = NH_HOPOPTS, src: str = SRC) -> bytes:
    """A fragment, by hand (erebus builds none): ``unfragmentable`` is extension headers
    whose last one names the Fragment header, ``first_nh`` the first of them."""
    body = unfragmentable + fragment_header(nh, offset, more, ident) + data
    return build_ipv6(src, DST, first_nh if unfragmentable else NH_FRAGMENT, body)


def test_parse_fragments():
    header, payload = parse_ipv6(frag(0, UDP_SEGMENT + bytes(3), True, ident=0xDEADBEEF))
    assert header.is_fragment and not header.is_atomic_fragment
    assert (header.ident, header.frag_offset, header.mf) == (0xDEADBEEF, 0, True)
    assert header.protocol == NH_UDP and header.header_len == 48 and header.unfragmentable == b""
    assert bytes(payload) == UDP_SEGMENT + bytes(3)
    header, payload = parse_ipv6(frag(1232, b"late" * 3, False, nh=NH_TCP,
                                      unfragmentable=options_header(NH_FRAGMENT)))
    assert (header.frag_offset, header.mf, header.protocol) == (1232, False, NH_TCP)
    assert header.unfragmentable == options_header(NH_FRAGMENT)
    assert header.extensions == ((NH_HOPOPTS, 40), (NH_FRAGMENT, 48))
    assert bytes(payload) == b"late" * 3


@pytest.mark.parametrize("data, nh", [
    (bytes([NH_UDP, 1]) + bytes(6), NH_DSTOPTS),   # a destination options header cut short
    (UDP_SEGMENT[:4] + bytes(4), NH_TCP),          # 8 of TCP's 20 header bytes
    (UDP_SEGMENT[:4], NH_UDP),                     # 4 of UDP's 8
    (b"", NH_ICMPV6),
    (b"", 200),                                    # one byte of anything else
])
def test_first_fragment_must_hold_the_header_chain(data, nh):
    err = drop(frag(0, data, True, nh=nh))
    assert err.reason is Reason.INCOMPLETE_CHAIN
    assert err.parameter_problem == (PP_INCOMPLETE_CHAIN, 0)
    # a later fragment carries no chain to check
    header, _ = parse_ipv6(frag(8, data, True, nh=nh))
    assert header.frag_offset == 8


def test_first_fragment_chain_rules_apply():
    chain = options_header(NH_UDP, bytes([0x9E, 0])) + UDP_SEGMENT
    err = drop(frag(0, chain + bytes(-len(chain) % 8), True, nh=NH_DSTOPTS))
    assert err.reason is Reason.UNRECOGNIZED_OPTION
    assert err.parameter_problem == (PP_UNRECOGNIZED_OPTION, 48 + 2)
    assert parse_ipv6(frag(0, UDP_SEGMENT, True, nh=NH_NONE))[0].protocol == NH_NONE


def test_nested_fragment_refused():
    inner = fragment_header(NH_UDP, 0, True, 5) + UDP_SEGMENT
    err = drop(frag(0, inner + bytes(-len(inner) % 8), True, nh=NH_FRAGMENT))
    assert err.reason is Reason.NESTED_FRAGMENT and "inside a fragmented packet" in str(err)


def _feed(r: Reassembler, packets: list[bytes], now: float = 0.0) -> list[tuple]:
    out = []
    for raw in packets:
        header, payload = parse_ipv6(raw)
        result = r.add(header, payload, now)
        if result is not None:
            out.append(result)
    return out


PAYLOAD = bytes(range(256)) * 11 + b"tail"


def _scapy_frags(*layers, payload: bytes = PAYLOAD, ident: int = 77, src: str = SRC,
                 size: int = 1280) -> tuple[list[bytes], IPv6]:
    pkt = IPv6(src=src, dst=DST)
    for layer in layers:
        pkt = pkt / layer
    pkt = pkt / IPv6ExtHdrFragment(id=ident) / UDP(sport=4000, dport=53) / Raw(payload)
    return [bytes(f) for f in fragment6(pkt, size)], pkt


@pytest.mark.parametrize("order", ["in-order", "reversed", "shuffled", "last-first"])
def test_reassemble_scapy_fragments(order):
    frags, pkt = _scapy_frags(size=600)
    assert len(frags) == 6
    if order == "reversed":
        frags.reverse()
    elif order == "shuffled":
        random.Random(7).shuffle(frags)
    elif order == "last-first":
        frags = frags[-1:] + frags[:-1]
    r = Reassembler()
    results = [r.add(*parse_ipv6(raw), float(i)) for i, raw in enumerate(frags)]
    assert results[:-1] == [None] * (len(frags) - 1)
    header, upper = results[-1]
    assert header.protocol == NH_UDP and header.ident is None and not header.is_fragment
    assert (header.src, header.dst) == (SRC_B, DST_B)
    assert bytes(upper) == bytes(pkt[UDP])
    datagram = parse_udp(upper, header.src, header.dst)  # the checksum of the whole
    assert (datagram.dst_port, bytes(datagram.payload)) == (53, PAYLOAD)
    assert len(r) == 0 and r.stats.completed == 1 and r.stats.fragments == 6


def test_reassembly_keeps_the_first_fragments_unfragmentable_part():
    frags, pkt = _scapy_frags(IPv6ExtHdrHopByHop(options=[RouterAlert()]),
                              IPv6ExtHdrRouting(addresses=[SRC], segleft=0))
    frags.reverse()
    (header, upper), = _feed(Reassembler(), frags)
    assert [t for t, _ in header.extensions] == [NH_HOPOPTS, NH_ROUTING]
    assert header.next_header == NH_HOPOPTS and header.protocol == NH_UDP
    assert bytes(upper) == bytes(pkt[UDP])
    assert header.payload_length == len(bytes(pkt)) - 40 - 8  # the Fragment header is gone


def test_reassembly_walks_the_fragmentable_headers():
    pkt = (IPv6(src=SRC, dst=DST) / IPv6ExtHdrFragment(id=3) / IPv6ExtHdrDestOpt()
           / UDP(sport=1, dport=2) / Raw(PAYLOAD))
    (header, upper), = _feed(Reassembler(), [bytes(f) for f in fragment6(pkt, 1280)])
    assert header.extensions == ((NH_DSTOPTS, 40),) and header.protocol == NH_UDP
    assert bytes(upper) == bytes(pkt[UDP])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=1, max_size=3000), st.sampled_from([1280, 600, 200]),
       st.randoms(use_true_random=False))
def test_reassemble_any_order(payload, size, rnd):
    frags, pkt = _scapy_frags(payload=payload, size=size)
    rnd.shuffle(frags)
    r = Reassembler()
    results = _feed(r, frags)
    assert len(results) == 1 and bytes(results[0][1]) == bytes(pkt[UDP])
    assert len(r) == 0


def test_unfragmented_and_atomic_pass_through():
    r = Reassembler()
    assert _feed(r, [frag(0, b"a" * 8, True, ident=9)]) == []
    raw = packet(NH_UDP, UDP_SEGMENT)
    (header, payload), = _feed(r, [raw])
    assert bytes(payload) == UDP_SEGMENT
    # an atomic fragment with the pending datagram's identification: in isolation (RFC 6946)
    (header, payload), = _feed(r, [frag(0, UDP_SEGMENT, False, ident=9)])
    assert header.is_atomic_fragment and bytes(payload) == UDP_SEGMENT
    assert r.stats.fragments == 1 and len(r) == 1
    (header, payload), = _feed(r, [frag(8, b"b", False, ident=9)])
    assert bytes(payload) == b"a" * 8 + b"b"


def test_interleaved_datagrams():
    a, pa = _scapy_frags(payload=b"A" * 3000, ident=1, size=600)
    b, pb = _scapy_frags(payload=b"B" * 3000, ident=1, src="2001:2::9", size=600)
    c, pc = _scapy_frags(payload=b"C" * 3000, ident=2, size=600)
    mixed = [f for trio in zip(a, b, c) for f in trio]
    results = _feed(Reassembler(), mixed)
    assert sorted(bytes(u) for _, u in results) == sorted(bytes(p[UDP]) for p in (pa, pb, pc))


def test_duplicate_fragment_ignored():
    frags, pkt = _scapy_frags(size=600)
    r = Reassembler()
    (_, upper), = _feed(r, frags[:3] + [frags[1]] + frags[3:])
    assert bytes(upper) == bytes(pkt[UDP]) and r.stats.duplicates == 1


def test_overlap_discards_the_datagram():
    r = Reassembler()
    packets = [frag(0, b"a" * 16, True), frag(8, b"b" * 16, True), frag(16, b"c" * 8, False),
               frag(24, b"d" * 8, False)]
    assert _feed(r, packets) == []
    assert r.stats.overlaps == 1 and r.stats.discarded == 2  # RFC 5722: all of it, later too
    assert r.expire(59.9) == 0 and len(r) == 1
    assert r.expire(60.0) == 0 and len(r) == 0  # a discarded datagram did not time out
    (_, upper), = _feed(r, [frag(0, b"a" * 8, True), frag(8, b"z", False)], 61.0)
    assert bytes(upper) == b"a" * 8 + b"z"


@pytest.mark.parametrize("packets", [
    [frag(0, b"a" * 8, True), frag(0, b"b" * 8, True)],          # same place, other contents
    [frag(16, b"x", False), frag(24, b"x", False)],              # two different ends
    [frag(16, b"x", False), frag(16, b"y" * 8, True)],           # data past the end
    [frag(8, b"y" * 8, True), frag(0, b"x" * 16, True)],         # overlaps the next one
    [frag(0, b"y" * 32, True), frag(8, b"x" * 8, True)],         # inside an earlier one
])
def test_inconsistent_fragments_discard(packets):
    r = Reassembler()
    assert _feed(r, packets) == []
    assert r.stats.overlaps == 1


def test_invalid_fragments_dropped():
    r = Reassembler()
    assert _feed(r, [frag(8, b"a" * 12, True), frag(8, b"", True)]) == []  # M set: 8-byte units
    assert r.stats.invalid == 2 and len(r) == 0


def test_too_big_discards():
    r = Reassembler()
    assert _feed(r, [frag(0, b"a" * 8, True), frag(65528, b"x" * 8, False)]) == []
    assert r.stats.too_big == 1
    # exactly 65535 bytes of payload length is fine; the unfragmentable part counts
    largest = Reassembler()
    assert _feed(largest, [frag(65528, b"x" * 7, False)]) == []
    assert largest.stats.too_big == 0 and len(largest) == 1
    hbh = options_header(NH_FRAGMENT)
    assert _feed(largest, [frag(65520, b"x" * 8, False, ident=10, unfragmentable=hbh)]) == []
    assert largest.stats.too_big == 1
    small = Reassembler(max_size=1000)
    assert _feed(small, _scapy_frags(size=600)[0]) == []
    assert small.stats.too_big == 1


def test_timeout_is_60_seconds():
    frags, _ = _scapy_frags(size=600)
    r = Reassembler()
    assert _feed(r, frags[:3], now=10.0) == []
    assert r.next_deadline() == 70.0
    assert r.expire(69.9) == 0 and len(r) == 1
    assert r.expire(70.0) == 1 and len(r) == 0 and r.stats.timed_out == 1
    assert r.next_deadline() is None
    late = Reassembler()
    assert _feed(late, frags[:3], now=0.0) == []
    assert _feed(late, frags[3:], now=61.0) == []  # add() expires; the rest never completes
    assert late.stats.timed_out == 1


def test_max_entries_evicts_the_oldest():
    r = Reassembler(max_entries=4)
    assert _feed(r, [frag(0, b"a" * 8, True, ident=i) for i in range(6)]) == []
    assert len(r) == 4 and r.stats.evicted == 2
    results = _feed(r, [frag(8, b"b", False, ident=0), frag(8, b"b", False, ident=5)])
    assert [bytes(u) for _, u in results] == [b"a" * 8 + b"b"]


def test_max_fragments():
    r = Reassembler(max_fragments=4)
    pieces = [frag(i * 8, b"p" * 8, True) for i in range(5)] + [frag(40, b"end", False)]
    assert _feed(r, pieces) == []
    assert r.stats.too_many == 1 and r.stats.discarded == 1


@FAST
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 6), st.booleans(),
                          st.integers(0, 3), st.booleans()), max_size=40))
def test_reassembler_random_fragments_bounded(items):
    r = Reassembler(max_entries=2, max_size=400, timeout=5.0)
    now = 0.0
    hbh = options_header(NH_FRAGMENT)
    for offset8, blocks, more, ident, with_hbh in items:
        now += 0.5
        data = bytes([offset8]) * (blocks * 8 + (0 if more else offset8 % 3))
        if offset8 == 0:
            data = UDP_SEGMENT[:8] + data  # a first fragment holds the UDP header
        header, payload = parse_ipv6(frag(offset8 * 8, data, more, ident=ident,
                                          unfragmentable=hbh if with_hbh else b""))
        result = r.add(header, payload, now)
        if result is not None:
            assert result[0].payload_length <= 400
        assert len(r) <= 2
        held = sum(len(d) for entry in r._entries.values() for _, d in entry.frags)
        assert held <= 2 * 400


# ---------------------------------------------------------------------------
# TCP and UDP over IPv6


def scapy_recomputes(raw: bytes, layer) -> IPv6:
    """scapy, rebuilding the packet with the upper layer's checksum recomputed, gives
    the same bytes."""
    pkt = IPv6(raw)
    again = IPv6(raw)
    del again[layer].chksum
    assert bytes(again) == raw
    return pkt


@pytest.mark.parametrize("payload", [b"", b"x", b"hello, world", bytes(range(256)) * 5])
def test_udp_over_ipv6_matches_scapy(payload):
    dgram = build_udp(SRC_B, DST_B, 5353, 53, payload)
    pkt = scapy_recomputes(build_ipv6(SRC_B, DST_B, NH_UDP, dgram), UDP)
    assert (pkt[UDP].sport, pkt[UDP].dport, bytes(pkt[UDP].payload)) == (5353, 53, payload)
    assert build_udp(SRC, DST, 5353, 53, payload) == dgram  # text addresses
    theirs = bytes(IPv6(src=SRC, dst=DST) / UDP(sport=5353, dport=53) / Raw(payload))
    header, upper = parse_ipv6(theirs)
    assert bytes(upper) == dgram
    parsed = parse_udp(upper, header.src, header.dst)
    assert (parsed.src_port, parsed.dst_port, bytes(parsed.payload)) == (5353, 53, payload)


def test_udp_over_ipv6_checksum_checked():
    dgram = bytearray(build_udp(SRC_B, DST_B, 1, 2, b"abc"))
    dgram[-1] ^= 1
    with pytest.raises(ParseError, match="bad checksum"):
        parse_udp(dgram, SRC_B, DST_B)
    good = build_udp(SRC_B, DST_B, 1, 2, b"abc")
    with pytest.raises(ParseError, match="bad checksum"):
        parse_udp(good, DST_B, SRC_B[:-1] + b"\x09")  # other addresses


def test_udp_zero_checksum_refused_over_ipv6_only():
    dgram = bytes(build_udp(SRC_B, DST_B, 1, 2, b"abc")[:6]) + b"\x00\x00abc"
    with pytest.raises(ParseError, match=r"no checksum \(0\) over IPv6"):
        parse_udp(dgram, SRC_B, DST_B)
    with pytest.raises(ParseError):
        parse_udp(dgram, SRC, DST)
    assert parse_udp(dgram, SRC_B, DST_B, verify_checksum=False).payload == b"abc"
    assert parse_udp(dgram, 0xC6120001, 0xC6120002).payload == b"abc"  # IPv4: "no checksum"


@pytest.mark.parametrize("kwargs", [
    {}, {"ts": (1, 2)}, {"mss": 1220, "wscale": 7, "sack_permitted": True, "ts": (5, 0)},
    {"sack_blocks": [(100, 200)]},
])
def test_tcp_over_ipv6_matches_scapy(kwargs):
    seg = build_tcp(SRC_B, DST_B, 40000, 443, 0xFFFFFFF0, 7, SYN | ACK, 65535, b"payload",
                    **kwargs)
    pkt = scapy_recomputes(build_ipv6(SRC_B, DST_B, NH_TCP, seg), TCP)
    assert (pkt[TCP].sport, pkt[TCP].dport, pkt[TCP].seq, bytes(pkt[TCP].payload)) == \
        (40000, 443, 0xFFFFFFF0, b"payload")
    assert build_tcp(SRC, DST, 40000, 443, 0xFFFFFFF0, 7, SYN | ACK, 65535, b"payload",
                     **kwargs) == seg
    parsed = parse_tcp(seg, SRC_B, DST_B)
    assert (parsed.seq, parsed.ack, parsed.flags, bytes(parsed.payload)) == \
        (0xFFFFFFF0, 7, SYN | ACK, b"payload")


def test_tcp_over_ipv6_from_scapy():
    raw = bytes(IPv6(src=SRC, dst=DST) / IPv6ExtHdrDestOpt()
                / TCP(sport=1, dport=2, seq=3, flags="S", options=[("MSS", 1220)]))
    header, upper = parse_ipv6(raw)
    seg = parse_tcp(upper, header.src, header.dst)
    assert (seg.src_port, seg.mss, seg.syn) == (1, 1220, True)
    bad = bytearray(upper)
    bad[4] ^= 1
    with pytest.raises(ParseError, match="bad checksum"):
        parse_tcp(bad, header.src, header.dst)


@SCAPY
@given(lab_addresses, lab_addresses, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF),
       st.binary(max_size=300))
def test_udp_over_ipv6_roundtrip(src, dst, sport, dport, payload):
    dgram = build_udp(src, dst, sport, dport, payload)
    scapy_recomputes(build_ipv6(src, dst, NH_UDP, dgram), UDP)
    assert bytes(parse_udp(dgram, src, dst).payload) == payload


# ---------------------------------------------------------------------------
# fuzz: only Ipv6Error escapes


def _only_ipv6_error(fn, data):
    try:
        return fn(data)
    except Ipv6Error:
        return None


@FAST
@given(st.binary(max_size=120))
def test_arbitrary_bytes_only_ipv6_error(data):
    for fn in (parse_ipv6, parse_ipv6_prefix):
        _only_ipv6_error(fn, data)
        _only_ipv6_error(fn, b"\x60" + data[1:])


extension = st.one_of(
    st.tuples(st.sampled_from([NH_HOPOPTS, NH_DSTOPTS, NH_ROUTING]), st.integers(0, 3),
              st.binary(max_size=40)),
    st.tuples(st.just(NH_FRAGMENT), st.integers(0, 0xFFFF), st.binary(min_size=4, max_size=4)),
)


@FAST
@given(st.lists(extension, max_size=11), st.sampled_from([NH_TCP, NH_UDP, NH_ICMPV6, 59, 99]),
       st.binary(max_size=40), st.integers(-12, 12), st.booleans())
def test_random_extension_chains_only_ipv6_error(chain, upper, tail, cut, multicast):
    """Extension headers whose next-header fields chain correctly, with random lengths and
    contents, then an upper layer; sometimes the payload length is off."""
    body = b""
    kinds = [k for k, _, _ in chain] + [upper]
    for (kind, arg, content), nxt in zip(chain, kinds[1:]):
        if kind == NH_FRAGMENT:
            body += struct.pack("!BBH", nxt, 0, arg) + content
        else:
            need = (arg + 1) * 8 - 2
            body += bytes([nxt, arg]) + (content + bytes(need))[:need]
    raw = bytearray(build_ipv6(SRC, MCAST if multicast else DST, kinds[0], body + tail))
    if cut:
        struct.pack_into("!H", raw, 4, max(0, len(raw) - 40 + cut) & 0xFFFF)
    for fn in (parse_ipv6, parse_ipv6_prefix):
        result = _only_ipv6_error(fn, bytes(raw))
        if result is None:
            continue
        header, payload = result
        assert 40 <= header.header_len <= 40 + header.payload_length
        assert len(header.extensions) <= MAX_EXTENSION_HEADERS
        assert header.header_len - 40 <= MAX_EXTENSION_BYTES
        if fn is parse_ipv6:
            assert len(payload) == header.payload_len
