"""OpenVPN packet formats: exact bytes, round trips, and hostile input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from erebus.errors import ParseError
from erebus.wire import openvpn as w

SID = bytes.fromhex("0123456789abcdef")
RSID = bytes.fromhex("fedcba9876543210")

FUZZ = settings(max_examples=400, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

# --- hand-written vectors ----------------------------------------------------------------


def test_hard_reset_client_v2_exact_bytes_as_the_stock_client_sends_it():
    wire = w.build_control(w.P_CONTROL_HARD_RESET_CLIENT_V2, 0, SID, packet_id=0)
    assert wire == bytes.fromhex("38" "0123456789abcdef" "00" "00000000")
    pkt = w.parse_packet(bytes.fromhex("380123456789abcdef0000000000"))
    assert isinstance(pkt, w.ControlPacket)
    assert (pkt.opcode, pkt.key_id, pkt.session_id) == (
        w.P_CONTROL_HARD_RESET_CLIENT_V2, 0, SID)
    assert pkt.acks == () and pkt.remote_session_id is None
    assert pkt.packet_id == 0 and pkt.payload == b""
    assert pkt.name == "P_CONTROL_HARD_RESET_CLIENT_V2"


def test_hard_reset_server_v2_with_ack_exact_bytes():
    # The server's answer ACKs the client's packet 0 and names the client's session.
    wire = bytes.fromhex("40" "fedcba9876543210" "01" "00000000" "0123456789abcdef"
                         "00000000")
    assert w.build_control(w.P_CONTROL_HARD_RESET_SERVER_V2, 0, RSID, acks=[0],
                           remote_session_id=SID, packet_id=0) == wire
    pkt = w.parse_packet(wire)
    assert pkt.opcode == w.P_CONTROL_HARD_RESET_SERVER_V2
    assert pkt.session_id == RSID and pkt.remote_session_id == SID
    assert pkt.acks == (0,) and pkt.packet_id == 0


def test_p_ack_v1_exact_bytes():
    # opcode 5, key id 0 -> 0x28; two ACKs; remote session id; no packet id, no payload
    wire = bytes.fromhex("28" "0123456789abcdef" "02" "00000001" "00000002"
                         "fedcba9876543210")
    assert w.build_control(w.P_ACK_V1, 0, SID, acks=[1, 2], remote_session_id=RSID) == wire
    pkt = w.parse_packet(wire)
    assert pkt.opcode == w.P_ACK_V1 and pkt.acks == (1, 2)
    assert pkt.remote_session_id == RSID
    assert pkt.packet_id is None and pkt.payload == b""


def test_p_control_v1_exact_bytes_with_key_id_and_payload():
    wire = bytes.fromhex("23" "0123456789abcdef" "00" "00000007" "160301")
    assert w.build_control(w.P_CONTROL_V1, 3, SID, packet_id=7, payload=b"\x16\x03\x01") == wire
    pkt = w.parse_packet(wire)
    assert (pkt.opcode, pkt.key_id, pkt.packet_id, pkt.payload) == (
        w.P_CONTROL_V1, 3, 7, b"\x16\x03\x01")


def test_soft_reset_first_byte():
    wire = w.build_control(w.P_CONTROL_SOFT_RESET_V1, 1, SID, packet_id=0)
    assert wire[0] == 0x19  # 3 << 3 | 1


def test_p_data_v2_header_layout():
    assert w.data_v2_header(0, 0x000102) == bytes.fromhex("48000102")
    assert w.data_v2_header(2, 0xABCDEF) == bytes.fromhex("4aabcdef")
    assert w.data_v2_header(7, w.PEER_ID_UNDEF) == bytes.fromhex("4fffffff")
    pkt = w.parse_packet(bytes.fromhex("4aabcdef") + b"body")
    assert isinstance(pkt, w.DataPacket)
    assert (pkt.opcode, pkt.key_id, pkt.peer_id) == (w.P_DATA_V2, 2, 0xABCDEF)
    assert pkt.header == bytes.fromhex("4aabcdef")
    assert bytes(pkt.body) == b"body"


def test_p_data_v1_header_layout():
    assert w.data_v1_header(0) == b"\x30"
    assert w.data_v1_header(5) == b"\x35"
    pkt = w.parse_packet(b"\x35payload")
    assert (pkt.opcode, pkt.key_id, pkt.peer_id) == (w.P_DATA_V1, 5, None)
    assert pkt.header == b"\x35" and bytes(pkt.body) == b"payload"


def test_opcode_numbers_match_ssl_pkt_h():
    assert (w.P_CONTROL_SOFT_RESET_V1, w.P_CONTROL_V1, w.P_ACK_V1, w.P_DATA_V1,
            w.P_CONTROL_HARD_RESET_CLIENT_V2, w.P_CONTROL_HARD_RESET_SERVER_V2,
            w.P_DATA_V2, w.P_CONTROL_HARD_RESET_CLIENT_V3, w.P_CONTROL_WKC_V1) == (
        3, 4, 5, 6, 7, 8, 9, 10, 11)
    assert w.split_op(0x38) == (7, 0)
    assert w.split_op(0x4F) == (9, 7)


def make_wkc(body: bytes) -> bytes:
    """A wrapped client key: opaque bytes whose last two are the total length."""
    return body + struct.pack("!H", len(body) + 2)


def test_hard_reset_client_v3_carries_wkc_at_the_end():
    wkc = make_wkc(b"\xaa" * 30)
    wire = w.build_control(w.P_CONTROL_HARD_RESET_CLIENT_V3, 0, SID, packet_id=0, wkc=wkc)
    assert wire == bytes.fromhex("50" "0123456789abcdef" "00" "00000000") + wkc
    pkt = w.parse_packet(wire)
    assert pkt.opcode == w.P_CONTROL_HARD_RESET_CLIENT_V3
    assert pkt.wkc == wkc and pkt.payload == b"" and pkt.packet_id == 0


def test_wkc_v1_with_payload_and_acks():
    wkc = make_wkc(bytes(range(40)))
    wire = w.build_control(w.P_CONTROL_WKC_V1, 0, SID, acks=[0], remote_session_id=RSID,
                           packet_id=1, payload=b"\x16\x03\x03hello", wkc=wkc)
    assert wire[0] == 0x58
    pkt = w.parse_packet(wire)
    assert pkt.wkc == wkc and pkt.payload == b"\x16\x03\x03hello"
    assert pkt.acks == (0,) and pkt.remote_session_id == RSID and pkt.packet_id == 1


def test_split_wkc_uses_trailing_length():
    head, wkc = w.split_wkc(b"HEAD" + make_wkc(b"xyz"))
    assert bytes(head) == b"HEAD" and wkc == b"xyz\x00\x05"
    with pytest.raises(ParseError):
        w.split_wkc(b"\x00")
    with pytest.raises(ParseError):
        w.split_wkc(b"ab\x00\x01")          # length 1 cannot even hold itself
    with pytest.raises(ParseError):
        w.split_wkc(b"ab\x00\x05")          # longer than the packet


# --- round trips --------------------------------------------------------------------------

NON_ACK_CONTROL = [w.P_CONTROL_HARD_RESET_CLIENT_V2, w.P_CONTROL_HARD_RESET_SERVER_V2,
                   w.P_CONTROL_SOFT_RESET_V1, w.P_CONTROL_V1,
                   w.P_CONTROL_HARD_RESET_CLIENT_V3, w.P_CONTROL_WKC_V1]

u32 = st.integers(0, 0xFFFFFFFF)
sid = st.binary(min_size=8, max_size=8)


@FUZZ
@given(opcode=st.sampled_from(NON_ACK_CONTROL), key_id=st.integers(0, 7), session_id=sid,
       acks=st.lists(u32, max_size=w.MAX_ACKS), remote=sid, packet_id=u32,
       payload=st.binary(max_size=300), wkc_body=st.binary(max_size=64))
def test_control_round_trip(opcode, key_id, session_id, acks, remote, packet_id, payload,
                            wkc_body):
    wkc = make_wkc(wkc_body) if opcode in w.WKC_OPCODES else None
    wire = w.build_control(opcode, key_id, session_id, acks=acks,
                           remote_session_id=remote if acks else None,
                           packet_id=packet_id, payload=payload, wkc=wkc)
    assert wire[0] == (opcode << 3) | key_id
    assert wire[1:9] == session_id
    assert wire[9] == len(acks)
    pkt = w.parse_packet(wire)
    assert isinstance(pkt, w.ControlPacket)
    assert (pkt.opcode, pkt.key_id, pkt.session_id) == (opcode, key_id, session_id)
    assert pkt.acks == tuple(acks)
    assert pkt.remote_session_id == (remote if acks else None)
    assert pkt.packet_id == packet_id and pkt.payload == payload
    assert pkt.wkc == wkc
    expected_len = 1 + 8 + 1 + 4 * len(acks) + (8 if acks else 0) + 4 + len(payload)
    assert len(wire) == expected_len + (len(wkc) if wkc else 0)


@FUZZ
@given(key_id=st.integers(0, 7), session_id=sid,
       acks=st.lists(u32, min_size=1, max_size=w.MAX_ACKS), remote=sid)
def test_ack_round_trip(key_id, session_id, acks, remote):
    wire = w.build_control(w.P_ACK_V1, key_id, session_id, acks=acks,
                           remote_session_id=remote)
    assert len(wire) == 1 + 8 + 1 + 4 * len(acks) + 8
    pkt = w.parse_packet(wire)
    assert (pkt.opcode, pkt.key_id, pkt.session_id, pkt.acks, pkt.remote_session_id,
            pkt.packet_id, pkt.payload) == (w.P_ACK_V1, key_id, session_id, tuple(acks),
                                            remote, None, b"")


@pytest.mark.parametrize("n", range(0, w.MAX_ACKS + 1))
def test_every_ack_array_size(n):
    acks = [0xFFFFFFFF - i for i in range(n)]
    wire = w.build_control(w.P_CONTROL_V1, 0, SID, acks=acks,
                           remote_session_id=RSID if n else None, packet_id=n, payload=b"p")
    pkt = w.parse_packet(wire)
    assert pkt.acks == tuple(acks) and pkt.packet_id == n and pkt.payload == b"p"
    assert pkt.remote_session_id == (RSID if n else None)


def test_more_than_eight_acks_rejected_both_ways():
    with pytest.raises(ValueError):
        w.build_control(w.P_CONTROL_V1, 0, SID, acks=list(range(9)), remote_session_id=RSID,
                        packet_id=0)
    wire = (b"\x20" + SID + b"\x09" + struct.pack("!9I", *range(9)) + RSID
            + b"\x00\x00\x00\x00")
    with pytest.raises(ParseError):
        w.parse_packet(wire)


@FUZZ
@given(key_id=st.integers(0, 7), peer_id=st.integers(0, 0xFFFFFF),
       body=st.binary(max_size=200))
def test_data_round_trip(key_id, peer_id, body):
    v2 = w.parse_packet(w.data_v2_header(key_id, peer_id) + body)
    assert (v2.opcode, v2.key_id, v2.peer_id, bytes(v2.body)) == (
        w.P_DATA_V2, key_id, peer_id, body)
    assert v2.header == w.data_v2_header(key_id, peer_id)
    v1 = w.parse_packet(w.data_v1_header(key_id) + body)
    assert (v1.opcode, v1.key_id, v1.peer_id, bytes(v1.body)) == (
        w.P_DATA_V1, key_id, None, body)


def test_builders_refuse_bad_arguments():
    with pytest.raises(ValueError):
        w.build_control(w.P_CONTROL_V1, 8, SID, packet_id=0)            # key id > 7
    with pytest.raises(ValueError):
        w.build_control(w.P_CONTROL_V1, 0, SID[:7], packet_id=0)        # short session id
    with pytest.raises(ValueError):
        w.build_control(w.P_CONTROL_V1, 0, SID)                         # no packet id
    with pytest.raises(ValueError):
        w.build_control(w.P_CONTROL_V1, 0, SID, acks=[1], packet_id=0)  # ACK w/o remote sid
    with pytest.raises(ValueError):
        w.build_control(w.P_ACK_V1, 0, SID)                             # ACK without ACKs
    with pytest.raises(ValueError):
        w.build_control(w.P_ACK_V1, 0, SID, acks=[1], remote_session_id=RSID, packet_id=2)
    with pytest.raises(ValueError):
        w.build_control(w.P_DATA_V2, 0, SID, packet_id=0)               # not control
    with pytest.raises(ValueError):
        w.build_control(w.P_CONTROL_WKC_V1, 0, SID, packet_id=0)        # WKC missing
    with pytest.raises(ValueError):
        w.data_v2_header(0, 0x1000000)


# --- hostile input ------------------------------------------------------------------------

@pytest.mark.parametrize("opcode", [0, 1, 2, 12, 31])
def test_unknown_opcodes_rejected(opcode):
    with pytest.raises(ParseError):
        w.parse_packet(bytes(((opcode << 3),)) + SID + b"\x00" + b"\x00" * 4)


def test_empty_and_ack_without_acks_rejected():
    with pytest.raises(ParseError):
        w.parse_packet(b"")
    with pytest.raises(ParseError):
        w.parse_packet(b"\x28" + SID + b"\x00")
    with pytest.raises(ParseError):  # P_ACK_V1 with trailing garbage
        w.parse_packet(w.build_control(w.P_ACK_V1, 0, SID, acks=[1], remote_session_id=RSID)
                       + b"\x00")


STRUCTURAL_VECTORS = [
    w.build_control(w.P_CONTROL_HARD_RESET_CLIENT_V2, 0, SID, packet_id=0),
    w.build_control(w.P_CONTROL_HARD_RESET_SERVER_V2, 0, RSID, acks=[0],
                    remote_session_id=SID, packet_id=0),
    w.build_control(w.P_CONTROL_V1, 2, SID, acks=list(range(8)), remote_session_id=RSID,
                    packet_id=9),
    w.build_control(w.P_CONTROL_SOFT_RESET_V1, 1, SID, packet_id=0),
    w.build_control(w.P_ACK_V1, 0, SID, acks=[5, 6, 7], remote_session_id=RSID),
]


@pytest.mark.parametrize("wire", STRUCTURAL_VECTORS, ids=lambda b: b[:1].hex())
def test_every_truncation_raises_parse_error(wire):
    assert w.parse_packet(wire)          # the full packet is valid
    for n in range(len(wire)):
        with pytest.raises(ParseError):
            w.parse_packet(wire[:n])


def test_truncating_a_payload_only_shortens_the_payload():
    wire = w.build_control(w.P_CONTROL_V1, 0, SID, packet_id=3, payload=b"abcdef")
    header_len = len(wire) - 6
    for n in range(header_len):
        with pytest.raises(ParseError):
            w.parse_packet(wire[:n])
    for n in range(header_len, len(wire) + 1):
        assert w.parse_packet(wire[:n]).payload == b"abcdef"[:n - header_len]


def test_truncated_data_v2_header():
    for n in range(1, 4):
        with pytest.raises(ParseError):
            w.parse_packet(bytes.fromhex("48000102")[:n])


def _check_parse(data: bytes) -> None:
    try:
        pkt = w.parse_packet(data)
    except ParseError:
        return
    if isinstance(pkt, w.ControlPacket):
        # Whatever parses is canonical: building it again gives the same bytes.
        assert w.build_control(pkt.opcode, pkt.key_id, pkt.session_id, pkt.acks,
                               pkt.remote_session_id, pkt.packet_id, pkt.payload,
                               pkt.wkc) == data
    else:
        assert pkt.header + bytes(pkt.body) == data


@FUZZ
@given(st.binary(max_size=120))
@example(b"\x28" + SID + b"\x01\x00\x00\x00\x01" + RSID)
def test_parse_packet_on_arbitrary_bytes(data):
    _check_parse(data)


@FUZZ
@given(first=st.sampled_from(sorted(w.CONTROL_OPCODES)), key_id=st.integers(0, 7),
       ack_count=st.integers(0, 10), rest=st.binary(max_size=100))
def test_parse_packet_on_near_valid_control_packets(first, key_id, ack_count, rest):
    _check_parse(bytes(((first << 3) | key_id,)) + SID + bytes((ack_count,)) + rest)


@FUZZ
@given(opcode=st.sampled_from(sorted(w.CONTROL_OPCODES)), body=st.binary(max_size=120))
def test_parse_control_body_on_arbitrary_bytes(opcode, body):
    try:
        pkt = w.parse_control_body(opcode, 0, SID, body)
    except ParseError:
        return
    assert w.build_control_body(pkt.acks, pkt.remote_session_id, pkt.packet_id,
                                pkt.payload) == body


@FUZZ
@given(st.binary(max_size=80))
def test_split_wkc_on_arbitrary_bytes(data):
    try:
        head, wkc = w.split_wkc(data)
    except ParseError:
        return
    assert bytes(head) + wkc == data
    assert len(wkc) >= 2 and struct.unpack("!H", wkc[-2:])[0] == len(wkc)


def test_memoryview_input_is_accepted():
    wire = w.build_control(w.P_CONTROL_V1, 0, SID, packet_id=1, payload=b"x")
    buf = bytearray(b"junk" + wire)
    assert w.parse_packet(memoryview(buf)[4:]).payload == b"x"

