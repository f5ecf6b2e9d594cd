"""IPv4 parse/build, the Internet checksum and fragment reassembly, checked against scapy."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, UDP, IPOption_NOP, fragment, in4_chksum
from scapy.packet import Raw
from scapy.utils import checksum as scapy_checksum

from erebus.errors import ParseError
from erebus.wire.checksum import fold, internet_checksum, ones_sum, pseudo_header_sum
from erebus.wire.ipv4 import (
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    IPv4Header,
    Reassembler,
    build_ipv4,
    build_ipv4_header,
    ip_from_str,
    ip_to_str,
    next_ident,
    parse_ipv4,
    parse_ipv4_prefix,
    to_ip,
)

SRC = "198.18.0.1"
DST = "198.19.255.2"
SRC_INT = 0xC6120001
DST_INT = 0xC613FF02

FAST = settings(max_examples=300, deadline=None)


# ---------------------------------------------------------------------------
# checksum


@pytest.mark.parametrize("data", [
    b"", b"\x00", b"\xff", b"\x00\x00", b"\xff\xff", b"\xff\xff\xff\xff", b"\x01\x02\x03",
    bytes(range(256)), b"\xff" * 1001, bytes(20),
    # RFC 1071 section 3 example: sum 0xddf2, checksum 0x220d
    bytes.fromhex("0001f203f4f5f6f7"),
])
def test_checksum_matches_scapy(data):
    assert internet_checksum(data) == scapy_checksum(data)


def test_checksum_rfc1071_example():
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


@FAST
@given(st.binary(max_size=2000))
def test_checksum_matches_scapy_random(data):
    assert internet_checksum(data) == scapy_checksum(data)
    assert internet_checksum(memoryview(data)) == scapy_checksum(data)
    assert internet_checksum(bytearray(data)) == scapy_checksum(data)


@FAST
@given(st.binary(max_size=300), st.binary(max_size=300))
def test_checksum_partial_sums_compose(a, b):
    if len(a) & 1:
        a += b"\x00"
    assert internet_checksum(b, ones_sum(a)) == internet_checksum(a + b)
    assert 0 <= fold(ones_sum(a + b)) <= 0xFFFF


@FAST
@given(st.binary(max_size=600))
def test_checksum_verifies_to_zero(data):
    if len(data) & 1:
        data += b"\x00"
    csum = internet_checksum(data)
    assert internet_checksum(data + struct.pack("!H", csum)) == 0
    assert internet_checksum(struct.pack("!H", csum) + data) == 0


@FAST
@given(st.integers(0xC6120000, 0xC613FFFF),
       st.integers(0xC6120000, 0xC613FFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF),
       st.binary(max_size=500))
def test_pseudo_header_sum_matches_scapy_udp(src, dst, sport, dport, payload):
    udp_len = 8 + len(payload)
    udp = struct.pack("!HHHH", sport, dport, udp_len, 0) + payload
    ours = internet_checksum(udp, pseudo_header_sum(src, dst, PROTO_UDP, udp_len))
    ip = IP(src=ip_to_str(src), dst=ip_to_str(dst), proto=PROTO_UDP)
    assert ours == in4_chksum(PROTO_UDP, ip, udp)


# ---------------------------------------------------------------------------
# addresses


def test_address_helpers():
    assert ip_from_str(SRC) == SRC_INT
    assert ip_to_str(SRC_INT) == SRC
    assert to_ip(SRC) == to_ip(SRC_INT) == to_ip(bytes.fromhex("c6120001")) == SRC_INT
    for bad in ("198.18.0", "198.18.0.256", "::1", -1, 1 << 32, b"\x01\x02\x03", 1.5):
        with pytest.raises(ValueError):
            to_ip(bad)


# ---------------------------------------------------------------------------
# parse


def test_parse_scapy_packet():
    pkt = IP(src=SRC, dst=DST, id=0x1234, ttl=17, tos=0xB8, flags="DF") / UDP(sport=5, dport=53) \
        / Raw(b"hello")
    raw = bytes(pkt)
    header, payload = parse_ipv4(raw)
    assert isinstance(header, IPv4Header)
    assert (header.version, header.ihl, header.header_len) == (4, 5, 20)
    assert header.tos == 0xB8
    assert header.total_length == len(raw) == 33
    assert header.payload_len == 13
    assert header.ident == 0x1234
    assert header.df and not header.mf and not header.is_fragment
    assert header.frag_offset == 0
    assert header.ttl == 17
    assert header.protocol == PROTO_UDP
    assert header.checksum == IP(raw).chksum
    assert (header.src, header.dst) == (SRC_INT, DST_INT)
    assert (header.src_str, header.dst_str) == (SRC, DST)
    assert isinstance(payload, memoryview)
    assert bytes(payload) == bytes(pkt[UDP])


def test_parse_fragment_fields():
    raw = bytes(IP(src=SRC, dst=DST, flags="MF", frag=100, proto=PROTO_TCP) / Raw(bytes(16)))
    header, payload = parse_ipv4(raw)
    assert header.mf and not header.df and header.is_fragment
    assert header.frag_offset == 800
    assert header.flags == 1
    assert len(payload) == 16


def test_parse_skips_options():
    pkt = IP(src=SRC, dst=DST, options=[IPOption_NOP()] * 4) / ICMP()
    raw = bytes(pkt)
    header, payload = parse_ipv4(raw)
    assert header.ihl == 6
    assert header.options == b"\x01" * 4
    assert bytes(payload) == bytes(pkt[ICMP])


def test_parse_trims_link_padding():
    raw = bytes(IP(src=SRC, dst=DST) / ICMP())
    header, payload = parse_ipv4(raw + b"\x00" * 18)
    assert header.total_length == len(raw)
    assert len(payload) == 8


def _with(raw: bytes, offset: int, fmt: str, value: int, *, fix: bool = True) -> bytes:
    b = bytearray(raw)
    struct.pack_into(fmt, b, offset, value)
    if fix:
        struct.pack_into("!H", b, 10, 0)
        hlen = (b[0] & 0x0F) * 4
        if len(b) >= 20 and 20 <= hlen <= len(b):
            struct.pack_into("!H", b, 10, internet_checksum(b[:hlen]))
    return bytes(b)


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r[:19], "shorter than a header"),
    (lambda r: _with(r, 0, "!B", 0x65), "version 6"),
    (lambda r: _with(r, 0, "!B", 0x44), "IHL 4"),
    (lambda r: _with(r, 0, "!B", 0x4F), "60-byte header in 28 bytes"),
    (lambda r: _with(r, 2, "!H", 29), "beyond the 28 bytes"),
    (lambda r: _with(r, 2, "!H", 19), "shorter than the 20-byte header"),
    (lambda r: _with(r, 8, "!B", 63, fix=False), "bad header checksum"),
])
def test_parse_rejects(mutate, message):
    raw = bytes(IP(src=SRC, dst=DST) / ICMP())
    with pytest.raises(ParseError, match=message):
        parse_ipv4(mutate(raw))


def test_parse_checksum_can_be_skipped():
    raw = bytearray(bytes(IP(src=SRC, dst=DST) / ICMP()))
    raw[8] ^= 1
    with pytest.raises(ParseError):
        parse_ipv4(raw)
    header, _ = parse_ipv4(raw, verify_checksum=False)
    assert header.ttl == 64 ^ 1


def test_parse_prefix_accepts_truncated():
    raw = bytes(IP(src=SRC, dst=DST) / UDP(sport=1, dport=2) / Raw(bytes(100)))
    header, payload = parse_ipv4_prefix(raw[:28])
    assert header.total_length == len(raw)
    assert bytes(payload) == raw[20:28]
    with pytest.raises(ParseError):
        parse_ipv4(raw[:28])
    with pytest.raises(ParseError):
        parse_ipv4_prefix(raw[:19])


@FAST
@given(st.binary(max_size=80))
def test_parse_arbitrary_bytes_only_parse_error(data):
    for verify in (True, False):
        try:
            parse_ipv4(data, verify_checksum=verify)
        except ParseError:
            pass
        try:
            parse_ipv4_prefix(data)
        except ParseError:
            pass


@FAST
@given(st.integers(0, 255), st.integers(0, 0xFFFF), st.binary(min_size=0, max_size=60))
def test_parse_mangled_headers_only_parse_error(first, total, rest):
    data = bytes([first, 0]) + struct.pack("!H", total) + rest
    try:
        header, payload = parse_ipv4(data, verify_checksum=False)
    except ParseError:
        return
    assert header.header_len <= header.total_length <= len(data)
    assert len(payload) == header.total_length - header.header_len


@FAST
@given(st.integers(5, 15), st.binary(min_size=60, max_size=60), st.integers(0, 0xFFFF),
       st.booleans())
def test_parse_checksum_verdict_is_rfc1071_over_the_header(ihl, raw, csum, fix):
    # the parser sums the unpacked fields instead of the header bytes: the same verdict
    # as internet_checksum over the header, for any header (options included)
    hlen = ihl * 4
    data = bytearray(bytes([0x40 | ihl]) + raw[1:])
    data[2:4] = struct.pack("!H", hlen)            # total length: the header alone
    data[10:12] = struct.pack("!H", csum)
    if fix:
        data[10:12] = b"\0\0"
        data[10:12] = struct.pack("!H", internet_checksum(data[:hlen]))
    good = internet_checksum(data[:hlen]) == 0
    try:
        parse_ipv4(bytes(data))
    except ParseError as exc:
        assert not good and "checksum" in str(exc)
    else:
        assert good


# ---------------------------------------------------------------------------
# build


def test_build_matches_scapy():
    raw = build_ipv4(SRC, DST, PROTO_UDP, b"abc", ttl=9, ident=0xBEEF, tos=4)
    pkt = IP(raw)
    assert (pkt.version, pkt.ihl, pkt.len, pkt.id, pkt.ttl, pkt.tos, pkt.proto) == \
        (4, 5, 23, 0xBEEF, 9, 4, PROTO_UDP)
    assert str(pkt.flags) == "DF"
    assert (pkt.src, pkt.dst) == (SRC, DST)
    recomputed = pkt.copy()
    del recomputed.chksum
    assert bytes(recomputed) == raw
    assert raw[20:] == b"abc"


@FAST
@given(st.integers(0xC6120000, 0xC613FFFF), st.integers(0xC6120000, 0xC613FFFF),
       st.integers(0, 255), st.binary(max_size=100), st.integers(0, 255), st.integers(0, 0xFFFF),
       st.booleans(), st.booleans(), st.integers(0, 0x1FFF), st.integers(0, 255))
def test_build_parse_roundtrip(src, dst, proto, payload, ttl, ident, df, mf, frag8, tos):
    raw = build_ipv4(src, dst, proto, payload, ttl=ttl, ident=ident, df=df, mf=mf,
                     frag_offset=frag8 * 8, tos=tos)
    assert internet_checksum(raw[:20]) == 0
    assert struct.unpack("!H", raw[10:12])[0] == scapy_checksum(raw[:10] + b"\0\0" + raw[12:20])
    header, body = parse_ipv4(raw)
    assert (header.src, header.dst, header.protocol, header.ttl, header.ident, header.tos) == \
        (src, dst, proto, ttl, ident, tos)
    assert (header.df, header.mf, header.frag_offset) == (df, mf, frag8 * 8)
    assert bytes(body) == payload


def test_build_header_only_and_inputs():
    header = build_ipv4_header(bytes.fromhex("c6120001"), DST_INT, PROTO_ICMP, 8, ident=1, df=False)
    assert len(header) == 20
    parsed, payload = parse_ipv4(header + bytes(8))
    assert parsed.src == SRC_INT and not parsed.df and len(payload) == 8


def test_build_default_ident_counts():
    a = parse_ipv4(build_ipv4(SRC, DST, PROTO_UDP, b""))[0].ident
    b = parse_ipv4(build_ipv4(SRC, DST, PROTO_UDP, b""))[0].ident
    assert b == (a + 1) & 0xFFFF
    assert 0 <= next_ident() <= 0xFFFF


def test_build_rejects():
    with pytest.raises(ValueError):
        build_ipv4(SRC, DST, PROTO_UDP, bytes(65516))
    with pytest.raises(ValueError):
        build_ipv4(SRC, DST, PROTO_UDP, b"", frag_offset=4)
    with pytest.raises(ValueError):
        build_ipv4("198.18.0.300", DST, PROTO_UDP, b"")


# ---------------------------------------------------------------------------
# reassembly


def _frags(payload: bytes, fragsize: int, ident: int = 77, src: str = SRC) -> list[bytes]:
    pkt = IP(src=src, dst=DST, id=ident, flags=0) / ICMP(type=8, id=1, seq=2) / Raw(payload)
    return [bytes(f) for f in fragment(pkt, fragsize=fragsize)]


def _feed(r: Reassembler, packets: list[bytes], now: float = 0.0) -> list[bytes]:
    out = []
    for raw in packets:
        header, payload = parse_ipv4(raw)
        result = r.add(header, payload, now)
        if result is not None:
            out.append(result)
    return out


def _whole(payload: bytes) -> bytes:
    return bytes(ICMP(type=8, id=1, seq=2) / Raw(payload))


PAYLOAD = bytes(range(256)) * 11 + b"tail"


@pytest.mark.parametrize("order", ["in-order", "reversed", "shuffled", "last-first"])
def test_reassemble_scapy_fragments(order):
    frags = _frags(PAYLOAD, 504)
    assert len(frags) == 6
    if order == "reversed":
        frags.reverse()
    elif order == "shuffled":
        random.Random(7).shuffle(frags)
    elif order == "last-first":
        frags = frags[-1:] + frags[:-1]
    r = Reassembler()
    results = []
    for i, raw in enumerate(frags):
        header, payload = parse_ipv4(raw)
        result = r.add(header, payload, float(i))
        if i < len(frags) - 1:
            assert result is None
        results.append(result)
    assert results[-1] == _whole(PAYLOAD)
    assert len(r) == 0
    assert r.stats.completed == 1 and r.stats.fragments == 6


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=1500), st.sampled_from([8, 64, 504, 1480]),
       st.randoms(use_true_random=False))
def test_reassemble_any_order(payload, fragsize, rnd):
    frags = _frags(payload, fragsize)
    rnd.shuffle(frags)
    r = Reassembler()
    assert _feed(r, frags) == [_whole(payload)]
    assert len(r) == 0


def test_unfragmented_passes_through():
    raw = build_ipv4(SRC, DST, PROTO_UDP, b"whole", df=False)
    r = Reassembler()
    assert _feed(r, [raw]) == [b"whole"]
    assert r.stats.fragments == 0


def test_interleaved_datagrams():
    a = _frags(b"A" * 1000, 256, ident=1)
    b = _frags(b"B" * 1000, 256, ident=1, src="198.18.9.9")  # same ident, other source
    c = _frags(b"C" * 1000, 256, ident=2)
    mixed = [f for trio in zip(a, b, c) for f in trio] + a[len(b):] + b[len(a):]
    r = Reassembler()
    assert sorted(_feed(r, mixed)) == sorted(_whole(x * 1000) for x in (b"A", b"B", b"C"))


def test_duplicate_fragment_ignored():
    frags = _frags(PAYLOAD, 504)
    r = Reassembler()
    assert _feed(r, frags[:3] + [frags[1]] + frags[3:]) == [_whole(PAYLOAD)]
    assert r.stats.duplicates == 1


def _raw_frag(offset: int, data: bytes, more: bool, ident: int = 9) -> bytes:
    return build_ipv4(SRC, DST, PROTO_UDP, data, ident=ident, df=False, mf=more, frag_offset=offset)


def test_overlap_discards_datagram():
    r = Reassembler()
    packets = [_raw_frag(0, b"a" * 16, True), _raw_frag(8, b"b" * 16, True),
               _raw_frag(16, b"c" * 8, False), _raw_frag(24, b"d" * 8, False)]
    assert _feed(r, packets) == []
    assert r.stats.overlaps == 1
    assert r.stats.discarded == 2  # the rest is dropped until the timeout
    assert r.expire(100.0) == 0  # a discarded datagram does not count as timed out
    assert len(r) == 0
    # After the timeout the same key reassembles again.
    assert _feed(r, [_raw_frag(0, b"a" * 8, True), _raw_frag(8, b"z", False)], 101.0) == [
        b"a" * 8 + b"z"]


@pytest.mark.parametrize("packets", [
    # same place, different contents
    [_raw_frag(0, b"a" * 8, True), _raw_frag(0, b"b" * 8, True)],
    # two different ends
    [_raw_frag(16, b"x", False), _raw_frag(24, b"x", False)],
    # data past the end
    [_raw_frag(16, b"x", False), _raw_frag(16, b"y" * 8, True)],
    # an end before data already received
    [_raw_frag(16, b"y" * 8, True), _raw_frag(8, b"x", False)],
    # next fragment overlaps the new one's tail
    [_raw_frag(8, b"y" * 8, True), _raw_frag(0, b"x" * 16, True)],
    # fragment contained in an earlier one
    [_raw_frag(0, b"y" * 32, True), _raw_frag(8, b"x" * 8, True)],
])
def test_inconsistent_fragments_discard(packets):
    r = Reassembler()
    assert _feed(r, packets) == []
    assert r.stats.overlaps == 1


def test_invalid_fragments_dropped():
    r = Reassembler()
    assert _feed(r, [_raw_frag(0, b"a" * 12, True), _raw_frag(0, b"", True)]) == []
    assert r.stats.invalid == 2
    assert len(r) == 0


def test_too_big_discards():
    r = Reassembler()
    packets = [_raw_frag(0, b"a" * 8, True), _raw_frag(65528, b"x" * 16, False)]
    assert _feed(r, packets) == []
    assert r.stats.too_big == 1
    small = Reassembler(max_size=1000)
    assert _feed(small, _frags(PAYLOAD, 504)) == []
    assert small.stats.too_big == 1
    largest = Reassembler(max_size=65535)  # exactly 65535 bytes with a 20-byte header is fine
    assert _feed(largest, [_raw_frag(0, b"a" * 8, True), _raw_frag(65504, b"x" * 11, False)]) == []
    assert largest.stats.too_big == 0 and len(largest) == 1


def test_timeout():
    frags = _frags(PAYLOAD, 504)
    r = Reassembler(timeout=30.0)
    assert _feed(r, frags[:3], now=10.0) == []
    assert r.next_deadline() == 40.0
    assert r.expire(39.9) == 0 and len(r) == 1
    assert r.expire(40.0) == 1 and len(r) == 0
    assert r.stats.timed_out == 1
    assert r.next_deadline() is None
    # add() expires too: the late fragments start a new datagram that never completes
    r2 = Reassembler(timeout=30.0)
    assert _feed(r2, frags[:3], now=0.0) == []
    assert _feed(r2, frags[3:], now=31.0) == []
    assert r2.stats.timed_out == 1


def test_max_entries_evicts_oldest():
    r = Reassembler(max_entries=4)
    firsts = [_raw_frag(0, b"a" * 8, True, ident=i) for i in range(6)]
    assert _feed(r, firsts) == []
    assert len(r) == 4
    assert r.stats.evicted == 2
    # ident 0 was evicted; ident 5 completes
    assert _feed(r, [_raw_frag(8, b"b", False, ident=0), _raw_frag(8, b"b", False, ident=5)]) == [
        b"a" * 8 + b"b"]


@FAST
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 6), st.booleans(), st.integers(0, 3)),
                max_size=30))
def test_reassembler_random_fragments_never_crash(items):
    r = Reassembler(max_entries=2, max_size=400, timeout=5.0)
    now = 0.0
    for offset8, blocks, more, ident in items:
        now += 0.5
        data = bytes([offset8]) * (blocks * 8 + (0 if more else offset8 % 3))
        result = r.add(parse_ipv4(_raw_frag(offset8 * 8, data, more, ident=ident))[0], data, now)
        if result is not None:
            assert len(result) + 20 <= 400
    assert len(r) <= 2
