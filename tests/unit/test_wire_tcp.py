"""TCP segment parse/build and sequence arithmetic, checked against scapy."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, in4_chksum
from scapy.packet import Raw

from erebus.errors import ParseError
from erebus.wire.checksum import internet_checksum, pseudo_header_sum
from erebus.wire.ipv4 import PROTO_TCP, build_ipv4, ip_from_str
from erebus.wire.tcp import (
    ACK,
    CWR,
    ECE,
    FIN,
    PSH,
    RST,
    SYN,
    URG,
    TcpSegment,
    build_tcp,
    flags_to_str,
    parse_tcp,
    seq_add,
    seq_diff,
    seq_ge,
    seq_gt,
    seq_le,
    seq_lt,
)

SRC = "198.18.0.1"
DST = "198.19.255.2"
SRC_INT = ip_from_str(SRC)
DST_INT = ip_from_str(DST)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SCAPY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

addresses = st.integers(0xC6120000, 0xC613FFFF)  # 198.18.0.0/15
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


def scapy_view(src: int, dst: int, segment: bytes) -> IP:
    """Our segment inside an IPv4 packet, as scapy parses it; also checks that scapy,
    rebuilding the packet with a recomputed TCP checksum, produces the same bytes."""
    raw = build_ipv4(src, dst, PROTO_TCP, segment)
    pkt = IP(raw)
    assert TCP in pkt
    again = IP(raw)
    del again[TCP].chksum
    assert bytes(again) == raw  # scapy's checksum (and option encoding) equals ours
    return pkt


def tcp_of(pkt: IP) -> bytes:
    return bytes(pkt[TCP])


def scapy_options(seg_options):
    """scapy's parsed option list with EOL padding dropped."""
    return [opt for opt in seg_options if opt[0] != "EOL"]


# ---------------------------------------------------------------------------
# build, checked by scapy


def test_flag_constants_match_scapy():
    for name, bit in [("F", FIN), ("S", SYN), ("R", RST), ("P", PSH), ("A", ACK), ("U", URG),
                      ("E", ECE), ("C", CWR)]:
        assert int(TCP(flags=name).flags) == bit
    assert flags_to_str(SYN | ACK) == "SYN|ACK"
    assert flags_to_str(0) == "-"


LAYOUTS = [
    # (options given to build_tcp, scapy's view of them, raw option bytes)
    ({}, [], ""),
    ({"ts": (1, 2)}, [("NOP", None), ("NOP", None), ("Timestamp", (1, 2))],
     "0101080a0000000100000002"),
    # a Linux SYN
    ({"mss": 1460, "sack_permitted": True, "ts": (0xDEADBEEF, 0), "wscale": 7},
     [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (0xDEADBEEF, 0)), ("NOP", None),
      ("WScale", 7)],
     "020405b4" "0402080a" "deadbeef00000000" "01030307"),
    # a Linux SYN without timestamps
    ({"mss": 1400, "sack_permitted": True, "wscale": 14},
     [("MSS", 1400), ("NOP", None), ("NOP", None), ("SAckOK", b""), ("NOP", None),
      ("WScale", 14)],
     "02040578" "01010402" "0103030e"),
    ({"mss": 536}, [("MSS", 536)], "02040218"),
    ({"wscale": 0}, [("NOP", None), ("WScale", 0)], "01030300"),
    ({"sack_permitted": True}, [("NOP", None), ("NOP", None), ("SAckOK", b"")], "01010402"),
    ({"ts": (7, 8), "sack_blocks": ((100, 200), (300, 400), (0xFFFFFFF0, 5))},
     [("NOP", None), ("NOP", None), ("Timestamp", (7, 8)), ("NOP", None), ("NOP", None),
      ("SAck", (100, 200, 300, 400, 0xFFFFFFF0, 5))],
     "0101080a0000000700000008" "0101051a" "00000064000000c8" "0000012c00000190"
     "fffffff000000005"),
    ({"sack_blocks": [(1, 2), (3, 4), (5, 6), (7, 8)]},
     [("NOP", None), ("NOP", None), ("SAck", (1, 2, 3, 4, 5, 6, 7, 8))],
     "01010522" + "".join(f"{i:08x}" for i in range(1, 9))),
]


@pytest.mark.parametrize("payload", [b"", b"x", b"hello, world", bytes(range(256)) * 6])
@pytest.mark.parametrize("options, scapy_opts, raw_opts", LAYOUTS)
def test_build_matches_scapy(options, scapy_opts, raw_opts, payload):
    seg = build_tcp(SRC_INT, DST_INT, 40000, 443, 0x12345678, 0x9ABCDEF0, PSH | ACK, 501,
                    payload, urgent=7, **options)
    pkt = scapy_view(SRC_INT, DST_INT, seg)
    t = pkt[TCP]
    assert (t.sport, t.dport, t.seq, t.ack, int(t.flags), t.window, t.urgptr) == (
        40000, 443, 0x12345678, 0x9ABCDEF0, PSH | ACK, 501, 7)
    assert t.dataofs * 4 == 20 + len(raw_opts) // 2
    assert seg[20:t.dataofs * 4].hex() == raw_opts
    assert scapy_options(t.options) == scapy_opts
    assert bytes(t.payload) == payload
    # and back
    parsed = parse_tcp(seg, SRC_INT, DST_INT)
    assert parsed.checksum == t.chksum
    assert bytes(parsed.payload) == payload


def test_build_syn_ack_flags_and_seq_modulo():
    seg = build_tcp(SRC, DST, 1, 2, 2**32 + 5, -1, SYN | ACK, 0xFFFF)
    t = scapy_view(SRC_INT, DST_INT, seg)[TCP]
    assert (t.seq, t.ack, str(t.flags)) == (5, 0xFFFFFFFF, "SA")


def test_build_accepts_buffers_and_address_forms():
    payload = bytes(range(100))
    expected = build_tcp(SRC_INT, DST_INT, 1, 2, 3, 4, ACK, 5, payload, ts=(6, 7))
    for form in (bytearray(payload), memoryview(payload)):
        assert build_tcp(SRC, DST, 1, 2, 3, 4, ACK, 5, form, ts=(6, 7)) == expected
    assert build_tcp(bytes.fromhex("c6120001"), DST, 1, 2, 3, 4, ACK, 5, payload,
                     ts=(6, 7)) == expected
    generic = build_tcp(SRC, DST, 1, 2, 3, 4, ACK, 5, memoryview(payload), mss=1000)
    assert bytes(parse_tcp(generic, SRC_INT, DST_INT).payload) == payload


@pytest.mark.parametrize("kwargs", [
    {"wscale": 15}, {"wscale": -1}, {"mss": 0x10000}, {"mss": -1},
    {"sack_blocks": [(1, 2)] * 5},
    {"mss": 1460, "ts": (1, 2), "wscale": 7, "sack_blocks": [(1, 2), (3, 4), (5, 6)]},  # 48 bytes
    {"ts": (1, 2), "sack_blocks": [(1, 2)] * 4},  # 12 + 36 bytes
    {"src_port": 0x10000}, {"dst_port": -1}, {"flags": 0x100}, {"window": 0x10000},
    {"urgent": 0x10000}, {"payload": bytes(65536 - 20)},
    {"payload": bytes(65536 - 32), "ts": (1, 2)},
    {"src_port": 0x10000, "ts": (1, 2)}, {"window": -1, "ts": (1, 2)},
])
def test_build_rejects(kwargs):
    args = {"src_port": 1, "dst_port": 2, "flags": ACK, "window": 1, "payload": b""}
    args.update(kwargs)
    with pytest.raises(ValueError):
        build_tcp(SRC_INT, DST_INT, args.pop("src_port"), args.pop("dst_port"), 0, 0,
                  args.pop("flags"), args.pop("window"), args.pop("payload"), **args)


def test_build_largest_segment():
    seg = build_tcp(SRC_INT, DST_INT, 1, 2, 0, 0, ACK, 1, bytes(65535 - 32), ts=(1, 2))
    assert len(seg) == 65535
    assert len(parse_tcp(seg, SRC_INT, DST_INT).payload) == 65535 - 32


# ---------------------------------------------------------------------------
# parse, fed by scapy


def scapy_segment(**fields) -> bytes:
    payload = fields.pop("load", b"")
    pkt = IP(src=SRC, dst=DST) / TCP(**fields)
    if payload:
        pkt = pkt / Raw(payload)
    return bytes(pkt)[20:]


def test_parse_scapy_syn():
    raw = scapy_segment(sport=51000, dport=443, seq=0xFFFFFFFF, flags="S", window=64240,
                        options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (123456, 0)),
                                 ("NOP", None), ("WScale", 7)])
    seg = parse_tcp(raw, SRC_INT, DST_INT)
    assert (seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.flags, seg.window) == (
        51000, 443, 0xFFFFFFFF, 0, SYN, 64240)
    assert (seg.mss, seg.wscale, seg.sack_permitted, seg.sack_blocks) == (1460, 7, True, ())
    assert (seg.ts_val, seg.ts_ecr, seg.ts) == (123456, 0, (123456, 0))
    assert seg.syn and not seg.ack_flag and not seg.fin
    assert seg.seg_len == 1 and seg.seq_end == 0
    assert len(seg.payload) == 0
    assert seg.checksum == TCP(raw).chksum


def test_parse_scapy_other_option_orders():
    # Windows/BSD-style SYN: MSS NOP WS NOP NOP SACKOK, and options followed by EOL padding.
    raw = scapy_segment(sport=1, dport=2, flags="S",
                        options=[("MSS", 1380), ("NOP", None), ("WScale", 8), ("NOP", None),
                                 ("NOP", None), ("SAckOK", b""), ("EOL", None)])
    seg = parse_tcp(raw, SRC_INT, DST_INT)
    assert (seg.mss, seg.wscale, seg.sack_permitted, seg.ts) == (1380, 8, True, None)
    raw = scapy_segment(sport=1, dport=2, flags="S", options=[("WScale", 15), ("MSS", 9000)])
    seg = parse_tcp(raw, SRC_INT, DST_INT)
    assert (seg.mss, seg.wscale) == (9000, 14)  # RFC 7323: shifts above 14 count as 14


@pytest.mark.parametrize("blocks", [
    ((1000, 2000),),
    ((1000, 2000), (3000, 4000)),
    ((0xFFFFFF00, 0x100), (5, 6), (7, 8)),
])
@pytest.mark.parametrize("with_ts", [False, True])
def test_parse_scapy_sack_blocks(blocks, with_ts):
    options = [("NOP", None), ("NOP", None), ("Timestamp", (99, 98))] if with_ts else []
    options += [("NOP", None), ("NOP", None), ("SAck", tuple(e for b in blocks for e in b))]
    payload = b"data" * 300
    raw = scapy_segment(sport=443, dport=40000, seq=5, ack=6, flags="A", window=1000,
                        options=options, load=payload)
    seg = parse_tcp(raw, SRC_INT, DST_INT)
    assert seg.sack_blocks == blocks
    assert seg.ts == ((99, 98) if with_ts else None)
    assert bytes(seg.payload) == payload
    assert seg.seg_len == len(payload)
    assert (seg.mss, seg.wscale, seg.sack_permitted) == (None, None, False)


def test_parse_scapy_four_sack_blocks_and_unknown_option():
    raw = scapy_segment(sport=1, dport=2, flags="A",
                        options=[(254, b"\xf9\x89"), ("SAck", (1, 2, 3, 4, 5, 6, 7, 8)),
                                 ("NOP", None), ("NOP", None)])
    seg = parse_tcp(raw, SRC_INT, DST_INT)
    assert seg.sack_blocks == ((1, 2), (3, 4), (5, 6), (7, 8))


def test_parse_fin_data_segment_properties():
    raw = scapy_segment(sport=1, dport=2, seq=0xFFFFFFFE, flags="FPA", load=b"bye")
    seg = parse_tcp(raw, SRC_INT, DST_INT)
    assert seg.fin and seg.psh and seg.ack_flag and not seg.rst and not seg.urg
    assert seg.seg_len == 4
    assert seg.seq_end == 2
    assert seg.flags_str == "FIN|PSH|ACK"


def test_parse_rejects_bad_checksum_and_wrong_addresses():
    raw = bytearray(scapy_segment(sport=1, dport=2, flags="A", load=b"payload"))
    parse_tcp(raw, SRC_INT, DST_INT)
    with pytest.raises(ParseError, match="checksum"):
        parse_tcp(raw, SRC_INT + 1, DST_INT)
    raw[-1] ^= 0x40
    with pytest.raises(ParseError, match="checksum"):
        parse_tcp(raw, SRC_INT, DST_INT)
    assert bytes(parse_tcp(raw, SRC_INT, DST_INT, verify_checksum=False).payload) == b"payloa$"


def test_parse_accepts_buffers_and_payload_is_a_view():
    raw = scapy_segment(sport=1, dport=2, flags="A", load=b"abc",
                        options=[("NOP", None), ("NOP", None), ("Timestamp", (1, 2))])
    for form in (raw, bytearray(raw), memoryview(raw), memoryview(b"xx" + raw)[2:]):
        seg = parse_tcp(form, SRC, DST)
        assert isinstance(seg.payload, memoryview)
        assert seg.payload == b"abc" and seg.ts == (1, 2)
    buf = bytearray(raw)
    seg = parse_tcp(buf, SRC_INT, DST_INT)
    buf[-1] = ord("z")
    assert seg.payload == b"abz"


def test_segment_equality_ignores_checksum():
    seg = parse_tcp(build_tcp(SRC_INT, DST_INT, 1, 2, 3, 4, ACK, 5, b"x"), SRC_INT, DST_INT)
    assert seg == TcpSegment(1, 2, 3, 4, ACK, 5, payload=b"x")
    assert seg.checksum != 0


# ---------------------------------------------------------------------------
# malformed input


def with_options(opts: bytes, payload: bytes = b"", *, offset: int | None = None) -> bytes:
    """A segment with raw option bytes (padded with EOL) and a correct checksum."""
    opts += bytes(-len(opts) % 4)
    words = offset if offset is not None else 5 + len(opts) // 4
    header = struct.pack("!HHIIBBHHH", 1, 2, 3, 4, words << 4, ACK, 5, 0, 0)
    seg = bytearray(header + opts + payload)
    seg[16:18] = struct.pack("!H", in4_chksum(PROTO_TCP, IP(src=SRC, dst=DST), bytes(seg)))
    return bytes(seg)


@pytest.mark.parametrize("opts, message", [
    (b"\x01\x01\x01\x02", "no length byte"),
    (b"\x01\x01\x01\x08", "no length byte"),
    (b"\x02\x00\x00\x00", "length 0"),
    (b"\x22\x01\x00\x00", "length 1"),
    (b"\x08\x0a\x00\x00", "runs past"),
    (b"\x01\x01\x05\x0a" + bytes(8) + b"\x02\x05\x00\x00", "runs past"),
])
def test_parse_rejects_malformed_options(opts, message):
    seg = with_options(opts)
    with pytest.raises(ParseError, match=message):
        parse_tcp(seg, SRC_INT, DST_INT)
    with pytest.raises(ParseError, match=message):
        parse_tcp(seg, SRC_INT, DST_INT, verify_checksum=False)


def test_parse_ignores_known_options_with_wrong_length_and_stops_at_eol():
    seg = parse_tcp(with_options(b"\x02\x03\x05" b"\x03\x04\x07\x00" b"\x04\x03\x00"
                                 b"\x08\x06\x00\x00\x00\x01" b"\x05\x03\x00"
                                 b"\x05\x0b" + bytes(9)), SRC_INT, DST_INT)
    assert (seg.mss, seg.wscale, seg.sack_permitted, seg.sack_blocks, seg.ts) == (
        None, None, False, (), None)
    # after EOL anything goes (even what would be a malformed option)
    seg = parse_tcp(with_options(b"\x02\x04\x05\xb4\x00\x02\x00\x02"), SRC_INT, DST_INT)
    assert seg.mss == 1460
    # an all-EOL/NOP area and a full 40-byte area
    assert parse_tcp(with_options(b"\x01" * 40), SRC_INT, DST_INT).mss is None
    seg = parse_tcp(with_options(b"\x01\x01\x08\x0a" + bytes(8) + b"\x01\x01\x05\x1a"
                                 + bytes(range(24))), SRC_INT, DST_INT)
    assert seg.ts == (0, 0) and len(seg.sack_blocks) == 3


@pytest.mark.parametrize("words", [0, 1, 4])
def test_parse_rejects_data_offset_below_five(words):
    with pytest.raises(ParseError, match="data offset"):
        parse_tcp(with_options(b"", b"x" * 40, offset=words), SRC_INT, DST_INT,
                  verify_checksum=False)


def test_parse_rejects_data_offset_past_the_end():
    seg = with_options(b"", b"", offset=6)
    with pytest.raises(ParseError, match="24-byte header in 20 bytes"):
        parse_tcp(seg, SRC_INT, DST_INT)
    seg = with_options(b"", bytes(39), offset=15)
    with pytest.raises(ParseError, match="60-byte header"):
        parse_tcp(seg, SRC_INT, DST_INT, verify_checksum=False)


def test_parse_truncations():
    full = build_tcp(SRC_INT, DST_INT, 1, 2, 3, 4, SYN, 5, b"abcdef", mss=1460,
                     sack_permitted=True, ts=(1, 2), wscale=7)
    hlen = 40
    assert parse_tcp(full, SRC_INT, DST_INT).payload == b"abcdef"
    for cut in range(len(full)):
        with pytest.raises(ParseError):
            parse_tcp(full[:cut], SRC_INT, DST_INT)
        if cut < hlen:
            with pytest.raises(ParseError):
                parse_tcp(full[:cut], SRC_INT, DST_INT, verify_checksum=False)
        else:
            seg = parse_tcp(full[:cut], SRC_INT, DST_INT, verify_checksum=False)
            assert seg.payload == b"abcdef"[:cut - hlen] and seg.mss == 1460


@FAST
@given(st.binary(min_size=20, max_size=120), addresses, addresses, st.booleans())
def test_parse_checksum_verdict_is_rfc1071(data, src, dst, fix):
    # the parser's inlined sum gives the verdict internet_checksum gives, odd lengths too
    raw = bytearray(data)
    raw[12] = 5 << 4                                   # a 20-byte header: no options
    if fix:
        raw[16:18] = b"\0\0"
        raw[16:18] = struct.pack("!H", internet_checksum(
            raw, pseudo_header_sum(src, dst, PROTO_TCP, len(raw))))
    good = internet_checksum(raw, pseudo_header_sum(src, dst, PROTO_TCP, len(raw))) == 0
    try:
        parse_tcp(bytes(raw), src, dst)
    except ParseError as exc:
        assert not good and "checksum" in str(exc)
    else:
        assert good


@FAST
@given(st.binary(max_size=120), addresses, addresses)
def test_parse_arbitrary_bytes_only_parse_error(data, src, dst):
    for verify in (True, False):
        try:
            parse_tcp(data, src, dst, verify_checksum=verify)
        except ParseError:
            pass


@FAST
@given(st.integers(0, 15), st.binary(max_size=44), st.binary(max_size=16))
def test_parse_arbitrary_options_only_parse_error(words, opts, payload):
    seg = struct.pack("!HHIIBBHHH", 1, 2, 3, 4, words << 4 | 0x0F, 0xFF, 5, 0, 0) + opts + payload
    try:
        parsed = parse_tcp(seg, SRC_INT, DST_INT, verify_checksum=False)
    except ParseError:
        return
    assert 5 <= words and 4 * words <= len(seg)
    assert parsed.flags == 0xFF
    assert parsed.wscale is None or 0 <= parsed.wscale <= 14
    assert len(parsed.sack_blocks) <= 4


# ---------------------------------------------------------------------------
# round trips


def options_len(mss, wscale, sack_permitted, sack_blocks, ts) -> int:
    n = (4 if mss is not None else 0) + (4 if wscale is not None else 0)
    n += 12 if ts is not None else (4 if sack_permitted else 0)
    return n + (4 + 8 * len(sack_blocks) if sack_blocks else 0)


segment_fields = st.fixed_dictionaries({
    "src": addresses, "dst": addresses, "src_port": u16, "dst_port": u16,
    "seq": u32, "ack": u32, "flags": st.integers(0, 0xFF), "window": u16, "urgent": u16,
    "payload": st.binary(max_size=300),
    "mss": st.none() | u16, "wscale": st.none() | st.integers(0, 14),
    "sack_permitted": st.booleans(),
    "sack_blocks": st.lists(st.tuples(u32, u32), max_size=4).map(tuple),
    "ts": st.none() | st.tuples(u32, u32),
})


def build_from(f) -> bytes:
    return build_tcp(f["src"], f["dst"], f["src_port"], f["dst_port"], f["seq"], f["ack"],
                     f["flags"], f["window"], f["payload"], mss=f["mss"], wscale=f["wscale"],
                     sack_permitted=f["sack_permitted"], sack_blocks=f["sack_blocks"],
                     ts=f["ts"], urgent=f["urgent"])


@FAST
@given(segment_fields)
def test_build_parse_roundtrip(f):
    olen = options_len(f["mss"], f["wscale"], f["sack_permitted"], f["sack_blocks"], f["ts"])
    if olen > 40:
        with pytest.raises(ValueError, match="options"):
            build_from(f)
        return
    seg = build_from(f)
    assert len(seg) == 20 + olen + len(f["payload"])
    parsed = parse_tcp(seg, f["src"], f["dst"])
    assert parsed == TcpSegment(
        f["src_port"], f["dst_port"], f["seq"], f["ack"], f["flags"], f["window"],
        f["urgent"], f["payload"], f["mss"], f["wscale"], f["sack_permitted"],
        f["sack_blocks"], *(f["ts"] or (None, None)))
    assert parsed.seg_len == len(f["payload"]) + bool(f["flags"] & SYN) + bool(f["flags"] & FIN)
    # any single flipped bit is caught by the checksum (not just the header)
    pos = (f["seq"] + f["ack"]) % len(seg)
    bad = bytearray(seg)
    bad[pos] ^= 1 << (f["window"] % 8)
    with pytest.raises(ParseError):
        parse_tcp(bad, f["src"], f["dst"])


@SCAPY
@given(segment_fields)
def test_build_random_segments_match_scapy(f):
    if options_len(f["mss"], f["wscale"], f["sack_permitted"], f["sack_blocks"], f["ts"]) > 40:
        return
    seg = build_from(f)
    t = scapy_view(f["src"], f["dst"], seg)[TCP]
    assert (t.sport, t.dport, t.seq, t.ack, int(t.flags), t.window, t.urgptr) == (
        f["src_port"], f["dst_port"], f["seq"], f["ack"], f["flags"], f["window"], f["urgent"])
    opts = dict(o for o in scapy_options(t.options) if o[0] != "NOP")
    assert opts.get("MSS") == f["mss"]
    assert opts.get("WScale") == f["wscale"]
    assert ("SAckOK" in opts) == f["sack_permitted"]
    assert opts.get("Timestamp") == f["ts"]
    edges = tuple(e for block in f["sack_blocks"] for e in block)
    assert opts.get("SAck", ()) == edges
    assert bytes(t.payload) == f["payload"]


# ---------------------------------------------------------------------------
# sequence arithmetic


@pytest.mark.parametrize("a, b, diff", [
    (0, 0, 0),
    (1, 0, 1),
    (0, 1, -1),
    (0, 0xFFFFFFFF, 1),  # across the wrap
    (0xFFFFFFFF, 0, -1),
    (5, 0xFFFFFFF0, 21),
    (0xFFFFFFF0, 5, -21),
    (0x7FFFFFFF, 0, 0x7FFFFFFF),
    (0x80000001, 0, -0x7FFFFFFF),
    (0x80000000, 0, -0x80000000),  # exactly half-way: ambiguous, negative both ways
    (0, 0x80000000, -0x80000000),
    (1000, 1000 + 2**32, 0),  # unreduced inputs
])
def test_seq_diff_and_comparisons(a, b, diff):
    assert seq_diff(a, b) == diff
    assert seq_lt(a, b) == (diff < 0)
    assert seq_le(a, b) == (diff <= 0)
    assert seq_gt(a, b) == (diff > 0)
    assert seq_ge(a, b) == (diff >= 0)


def test_seq_add_wraps():
    assert seq_add(0xFFFFFFFF, 1) == 0
    assert seq_add(0xFFFFFFF0, 0x20) == 0x10
    assert seq_add(5, -10) == 0xFFFFFFFB
    assert seq_add(0, 2**32) == 0


@FAST
@given(u32, st.integers(-(2**31) + 1, 2**31 - 1))
def test_seq_arithmetic_random(a, n):
    b = seq_add(a, n)
    assert 0 <= b <= 0xFFFFFFFF
    assert seq_diff(b, a) == n
    assert seq_diff(a, b) == -n
    assert seq_lt(a, b) == (n > 0) == seq_gt(b, a)
    assert seq_le(a, b) == (n >= 0) == seq_ge(b, a)
    assert seq_lt(a, b) != seq_ge(a, b)
    assert seq_gt(a, b) != seq_le(a, b)
