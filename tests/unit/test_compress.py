"""Compression framing (erebus.openvpn.compress) against OpenVPN 2.6's comp.h,
compstub.c, lzo.c and comp-lz4.c.

Vectors are built by hand from the comp.h constants; the REAL_* vectors are data
payloads captured on the wire from a stock OpenVPN 2.6.14 server in the lab
(``cipher none``/``auth none`` so the payload is readable, ``allow-compression yes``
and the method pushed), after the 4-byte P_DATA_V2 header and the packet id.  Each
decodes to the exact IPv4 packet the server read from its tun device (sha256).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import struct

import lz4.block
import pytest
from hypothesis import given, settings, strategies as st
from lzallright import LZOCompressor

from erebus.errors import ParseError, SessionError
from erebus.openvpn import compress as c
from erebus.openvpn.compress import MAX_DECOMPRESSED, Compression, CompressionError, peer_info
from erebus.openvpn.data import KEEPALIVE, OCC_EXIT, OCC_MAGIC

ALL_OPTIONS = ["none", "comp-lzo no", "comp-lzo", "comp-lzo yes", "comp-lzo adaptive",
               "compress", "compress stub", "compress lz4", "compress lzo",
               "compress stub-v2", "compress lz4-v2"]
V1_FA = ["comp-lzo no", "comp-lzo", "comp-lzo yes", "comp-lzo adaptive", "compress lzo"]
SWAP = ["compress", "compress stub", "compress lz4"]
V2 = ["compress stub-v2", "compress lz4-v2"]

# A 40-byte IPv4/TCP header: version/IHL 0x45 first, as every IPv4 packet.
IP_HDR = bytes.fromhex("4500002812344000400600000a0800020a080001d43101bb0000000100000000"
                       "5010ffff0000")[:40]


def comp(option: str, **kw) -> Compression:
    return Compression.from_options(None if option == "none" else option, None, **kw)


def text_packet(n: int) -> bytes:
    """A compressible IPv4-looking packet of n bytes."""
    body = b"".join(b"line %d: the quick brown fox jumps over the lazy dog\n" % i
                    for i in range(n // 40 + 1))
    return (IP_HDR + body)[:n]


def ipv4_ok(packet: bytes) -> bool:
    """Total length matches and the header checksum verifies."""
    ihl = (packet[0] & 0x0F) * 4
    if packet[0] >> 4 != 4 or struct.unpack_from("!H", packet, 2)[0] != len(packet):
        return False
    words = struct.unpack(f"!{ihl // 2}H", packet[:ihl])
    s = sum(words)
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF


# -- what a 2.6 server does with allow-compression yes (comp-lz4.c, lzo.c) ---------------

def lz4_raw(p: bytes) -> bytes:
    """LZ4_compress_default, no size prefix (what comp-lz4.c puts on the wire)."""
    return lz4.block.compress(p, mode="default", store_size=False)


def server_frame(option: str, p: bytes, lzo=lambda p: LZOCompressor().compress(p)) -> bytes:
    """Frame p as an OpenVPN 2.6 server that compresses (COMPRESS_THRESHOLD 100)."""
    if option in ("compress lz4", "compress lz4-v2") and len(p) >= 100:
        z = lz4_raw(p)
        if option == "compress lz4" and len(z) < len(p):
            return b"\x69" + z[1:] + z[:1]
        if option == "compress lz4-v2" and len(z) + 2 < len(p):
            return b"\x50\x01" + z
    if option in ("comp-lzo", "comp-lzo yes", "comp-lzo adaptive", "compress lzo") \
            and len(p) >= 100:
        z = lzo(p)
        if len(z) < len(p):
            return b"\x66" + z
    return comp(option).frame(p)


def _liblzo2_compressor():
    """lzo1x_1_15_compress from the system's liblzo2 (OpenVPN's own LZO_COMPRESS)."""
    name = ctypes.util.find_library("lzo2")
    if name is None:
        return None
    lib = ctypes.CDLL(name)
    fn = lib.lzo1x_1_15_compress
    fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                   ctypes.POINTER(ctypes.c_size_t), ctypes.c_void_p]
    fn.restype = ctypes.c_int
    wrkmem = ctypes.create_string_buffer(1 << 19)   # > LZO1X_1_15_MEM_COMPRESS

    def compress(p: bytes) -> bytes:
        out = ctypes.create_string_buffer(len(p) + len(p) // 16 + 64 + 3)
        n = ctypes.c_size_t(0)
        assert fn(p, len(p), out, ctypes.byref(n), wrkmem) == 0
        return out.raw[:n.value]
    return compress


LIBLZO2 = _liblzo2_compressor()


# -- constants ------------------------------------------------------------------------------

def test_comp_h_constants():
    assert (c.LZO_COMPRESS_BYTE, c.LZ4_COMPRESS_BYTE) == (0x66, 0x69)
    assert (c.NO_COMPRESS_BYTE, c.NO_COMPRESS_BYTE_SWAP) == (0xFA, 0xFB)
    assert c.COMP_ALGV2_INDICATOR_BYTE == 0x50
    assert (c.COMP_ALGV2_UNCOMPRESSED_BYTE, c.COMP_ALGV2_LZ4_BYTE,
            c.COMP_ALGV2_LZO_BYTE, c.COMP_ALGV2_SNAPPY_BYTE) == (0, 1, 2, 3)
    assert MAX_DECOMPRESSED == 1600


def test_compression_error_is_a_parse_error():
    assert issubclass(CompressionError, ParseError)
    assert issubclass(CompressionError, ValueError)


# -- from_options ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, option, algorithm, overhead, enabled", [
    (None, "none", None, 0, False),
    ("", "none", None, 0, False),
    ("comp-lzo no", "comp-lzo no", None, 1, True),
    ("comp-lzo", "comp-lzo", "lzo", 1, True),
    ("comp-lzo yes", "comp-lzo yes", "lzo", 1, True),
    ("comp-lzo adaptive", "comp-lzo adaptive", "lzo", 1, True),
    ("compress", "compress", None, 1, True),
    ("compress stub", "compress stub", None, 1, True),
    ("compress lz4", "compress lz4", "lz4", 1, True),
    ("compress lzo", "compress lzo", "lzo", 1, True),
    ("compress stub-v2", "compress stub-v2", None, 0, True),
    ("compress lz4-v2", "compress lz4-v2", "lz4", 0, True),
    ("compress migrate", "none", None, 0, False),
    ("  compress \t lz4-v2 ", "compress lz4-v2", "lz4", 0, True),
])
def test_from_options(text, option, algorithm, overhead, enabled):
    for got in (Compression.from_options(text, None), Compression.from_options(None, text)):
        assert isinstance(got, Compression)
        assert (got.option, got.algorithm, got.overhead, got.enabled) == \
            (option, algorithm, overhead, enabled)
        assert repr(got) == f"<Compression {option!r}>"


def test_pushed_option_replaces_the_profile_option():
    got = Compression.from_options("comp-lzo", "compress stub-v2")
    assert got.option == "compress stub-v2"
    assert got.frame(b"\x45abc") == b"\x45abc"
    got = Compression.from_options("compress lz4-v2", "comp-lzo no")
    assert got.frame(b"\x45abc") == b"\xfa\x45abc"
    # an empty push is no push
    assert Compression.from_options("compress", "  ").option == "compress"
    assert Compression.from_options(None, None).option == "none"
    assert Compression.none().frame(b"\x45") == b"\x45"


@pytest.mark.parametrize("profile, pushed, needle", [
    ("compress snappy", None, "Snappy"),
    (None, "compress snappy", "pushed"),
    ("compress zstd", None, "zstd"),
    ("comp-lzo maybe", None, "comp-lzo"),
    ("comp-lzo yes please", None, "comp-lzo"),
    ("compress lz4 lz4-v2", None, "compress"),
    ("frobnicate", None, "frobnicate"),
])
def test_options_erebus_cannot_speak(profile, pushed, needle):
    with pytest.raises(SessionError) as info:
        Compression.from_options(profile, pushed)
    assert info.value.stage == "compression"
    assert needle in str(info.value)


def test_allow_compression_no_accepts_only_stubs():
    for option in ("comp-lzo no", "compress", "compress stub-v2"):
        assert Compression.from_options(option, None, allow_compression="no").algorithm is None
    for option in ("comp-lzo", "compress lz4", "compress lz4-v2", "compress lzo"):
        with pytest.raises(SessionError, match="allow-compression") as info:
            Compression.from_options(None, option, allow_compression="no")
        assert info.value.stage == "compression"
        assert Compression.from_options(None, option, allow_compression="yes").algorithm
    with pytest.raises(SessionError):
        Compression.from_options(None, None, allow_compression="sometimes")


def test_peer_info():
    assert peer_info() == "IV_LZO_STUB=1\nIV_COMP_STUB=1\nIV_COMP_STUBv2=1\n"
    assert peer_info(algorithms=True) == \
        "IV_LZ4=1\nIV_LZ4v2=1\nIV_LZO=1\nIV_COMP_STUB=1\nIV_COMP_STUBv2=1\n"


# -- frame: exact bytes ---------------------------------------------------------------------

P = bytes.fromhex("450000200001000040110000c6130102c6120202")


def test_frame_none():
    assert comp("none").frame(P) == P


@pytest.mark.parametrize("option", V1_FA)
def test_frame_v1_prefixes_fa(option):
    assert comp(option).frame(P) == bytes.fromhex("fa450000200001000040110000c6130102c6120202")


@pytest.mark.parametrize("option", SWAP)
def test_frame_swap_moves_the_first_byte_to_the_end(option):
    # stub_compress / lz4_compress with COMP_F_SWAP: *tail = *head; *head = 0xFB
    assert comp(option).frame(P) == bytes.fromhex("fb0000200001000040110000c6130102c612020245")
    assert comp(option).frame(b"\x45") == b"\xfb\x45"
    assert comp(option).frame(b"\x45\x01") == b"\xfb\x01\x45"


@pytest.mark.parametrize("option", V2)
def test_frame_v2_escapes_only_0x50(option):
    assert comp(option).frame(P) == P
    assert comp(option).frame(b"\x50\x01\x02") == b"\x50\x00\x50\x01\x02"
    assert comp(option).frame(b"\x50") == b"\x50\x00\x50"
    assert comp(option).frame(b"\x60\x50") == b"\x60\x50"


@pytest.mark.parametrize("option", ALL_OPTIONS)
def test_frame_empty_stays_empty(option):
    assert comp(option).frame(b"") == b""
    assert comp(option).unframe(b"") == b""


@pytest.mark.parametrize("option", ALL_OPTIONS)
def test_frame_and_unframe_take_any_buffer_and_return_bytes(option):
    co = comp(option)
    for kind in (bytes, bytearray, memoryview):
        framed = co.frame(kind(P))
        assert type(framed) is bytes
        got = co.unframe(kind(framed))
        assert type(got) is bytes and got == P


def test_keepalive_and_occ_are_framed_like_any_packet():
    # captured from OpenVPN 2.6.14 with "compress" (swap) in both directions
    assert comp("compress").frame(KEEPALIVE) == \
        bytes.fromhex("fb187bf3641eb4cb07ed2d0a981fc7482a")
    assert comp("compress").unframe(bytes.fromhex("fb187bf3641eb4cb07ed2d0a981fc7482a")) == \
        KEEPALIVE
    assert comp("comp-lzo no").frame(KEEPALIVE) == b"\xfa" + KEEPALIVE
    # and with stub-v2/lz4-v2 they go as they are (0x2a, not 0x50)
    assert comp("compress lz4-v2").frame(KEEPALIVE) == KEEPALIVE
    exit_msg = OCC_MAGIC + bytes([OCC_EXIT])
    assert comp("compress").frame(exit_msg) == b"\xfb" + exit_msg[1:] + exit_msg[:1]
    assert comp("compress lz4").unframe(comp("compress lz4").frame(exit_msg)) == exit_msg


# -- unframe: uncompressed ------------------------------------------------------------------

@pytest.mark.parametrize("option", V1_FA)
def test_unframe_v1(option):
    assert comp(option).unframe(b"\xfa" + P) == P
    assert comp(option).unframe(b"\xfa") == b""          # an empty packet, as lzo.c/stub


@pytest.mark.parametrize("option", SWAP)
def test_unframe_swap_puts_the_last_byte_back_in_front(option):
    assert comp(option).unframe(bytes.fromhex("fb0000200001000040110000c6130102c612020245")) == P
    assert comp(option).unframe(b"\xfb\x01\x45") == b"\x45\x01"
    assert comp(option).unframe(b"\xfb\x45") == b"\x45"
    # one byte: --len makes it empty, the "swap" copies the header byte onto itself
    assert comp(option).unframe(b"\xfb") == b""


@pytest.mark.parametrize("option", V2)
def test_unframe_v2(option):
    assert comp(option).unframe(P) == P
    assert comp(option).unframe(b"\x50\x00" + P) == P
    assert comp(option).unframe(b"\x50\x00\x50\x01") == b"\x50\x01"
    assert comp(option).unframe(b"\x50\x00") == b""
    with pytest.raises(CompressionError):
        comp(option).unframe(b"\x50")                       # truncated header


def test_unframe_none_is_identity():
    assert comp("none").unframe(b"\xfa\x66\x50\x01") == b"\xfa\x66\x50\x01"


# -- unframe: real packets from OpenVPN 2.6.14 -----------------------------------------------

# "compress lz4": 172-byte framed payload -> 709-byte IPv4 packet (0x69, swapped LZ4 block)
REAL_LZ4_V1 = bytes.fromhex(
    "695b450002c55ebb40003f06424ec6120202c6130a020050ccde31515bbbb6d8254e80190040235600000101"
    "080a79b521ae36af5bfd6c617a7920646f670a6c696e65203238383a2074686520717569636b2062726f776e"
    "20666f78206a756d7073206f766572207468652036001f393600212f39303600221f313600221f323600221f"
    "333600221f343600221f353600221f363600221f373600220f1c02221f391c02175020646f670afc"
)
REAL_LZ4_V1_SHA256 = "a03281a8b62e6d8a67363004636ecfcbaf8506d909f25b9184377c76e4992e71"
# "comp-lzo yes": 191-byte framed payload -> 709-byte IPv4 packet (0x66, LZO1X)
REAL_LZO = bytes.fromhex(
    "660053450002c5834740003f061cc2c6120202c6130b020050d28cebd7e22e8539390480190040118b000001"
    "01080a2064239a9f2832f56c617a7920646f670a6c696e65203238383a2074686520717569636b2062726f77"
    "6e20666f78206a756d7073206f76657298032ed600393a990271200cd60039302014d500312014d500322014"
    "d500332014d500342014d500352014d500362014d500372014d500382014d4003a6c080001206f7665722074"
    "6865206c617a7920646f670a110000"
)
REAL_LZO_SHA256 = "2ef6b735d26aecb4ef122af58f071ae515e36d1a8e7337e44d919241ca9d0633"
# "compress lz4-v2": 171-byte framed payload -> 698-byte IPv4 packet (0x50 0x01, LZ4 block)
REAL_LZ4_V2 = bytes.fromhex(
    "5001f14b450002ba351040003f066904c6120202c6130d020050cd706803c7176fdcd42780190040d3ee0000"
    "0101080adbb6c82f3fac01f96e65203238383a2074686520717569636b2062726f776e20666f78206a756d70"
    "73206f7665721f00b16c617a7920646f670a6c6936001f393600212f39303600221f313600221f323600221f"
    "333600221f343600221f353600221f363600221f373600220f1c02221f391c02175020646f670a"
)
REAL_LZ4_V2_SHA256 = "3b5379bb6603a9e0ea2f24f095322fd134a264a3d8b9bea6bf4aa91e88ab6bb3"
# "compress" (stub, swap): a SYN-ACK, 0x45 moved to the end
REAL_STUB = bytes.fromhex("fb00003c000040003f06a192c6120202c6130c020050d3c03c9c15fb070d7d44"
                          "a012fe889aec0000020405870402080a0a2638484185e58d0103030a45")


@pytest.mark.parametrize("option, framed, sha", [
    ("compress lz4", REAL_LZ4_V1, REAL_LZ4_V1_SHA256),
    ("comp-lzo yes", REAL_LZO, REAL_LZO_SHA256),
    ("comp-lzo", REAL_LZO, REAL_LZO_SHA256),
    ("compress lzo", REAL_LZO, REAL_LZO_SHA256),
    ("compress lz4-v2", REAL_LZ4_V2, REAL_LZ4_V2_SHA256),
])
def test_real_compressed_packets(option, framed, sha):
    got = comp(option).unframe(framed)
    assert hashlib.sha256(got).hexdigest() == sha
    assert ipv4_ok(got)
    assert b"the quick brown fox jumps over" in got


def test_real_stub_packet():
    got = comp("compress").unframe(REAL_STUB)
    assert got[0] == 0x45 and len(got) == 60 and ipv4_ok(got)
    assert comp("compress").frame(got) == REAL_STUB


@pytest.mark.parametrize("option, framed", [
    ("comp-lzo no", REAL_LZO),            # 0x66 without LZO
    ("compress", REAL_LZ4_V1),            # 0x69 with the stub
    ("compress stub-v2", REAL_LZ4_V2),    # 0x50 0x01 with stub-v2
    ("compress lz4", REAL_LZO),           # LZO byte in an LZ4 method
    ("comp-lzo", REAL_LZ4_V1),            # LZ4 byte in an LZO method
    ("compress lz4", b"\xfa" + P),       # V1 no-swap byte in a swap method
    ("comp-lzo", REAL_STUB),              # swap byte in an LZO method
])
def test_compressed_packet_the_method_does_not_allow(option, framed):
    with pytest.raises(CompressionError):
        comp(option).unframe(framed)


# -- round trips with real compression ---------------------------------------------------------

@pytest.mark.parametrize("size", [100, 101, 500, 1400, 1500, MAX_DECOMPRESSED])
@pytest.mark.parametrize("option", ["compress lz4", "compress lz4-v2", "comp-lzo", "compress lzo"])
def test_round_trip_with_real_compression(option, size):
    p = text_packet(size)
    framed = server_frame(option, p)
    if size >= 500:
        assert framed[0] in (0x69, 0x66, 0x50) and len(framed) < size // 2, "not compressed"
    assert comp(option).unframe(framed) == p


@pytest.mark.skipif(LIBLZO2 is None, reason="liblzo2 not installed")
@pytest.mark.parametrize("size", [100, 777, 1500])
def test_round_trip_with_openvpns_lzo1x_1_15(size):
    p = text_packet(size)
    framed = server_frame("comp-lzo", p, lzo=LIBLZO2)
    assert framed[0] == (0x66 if size > 100 else 0xFA)
    assert comp("comp-lzo").unframe(framed) == p


def test_lz4_v1_swap_of_the_compressed_block():
    p = text_packet(1000)
    z = lz4_raw(p)
    framed = b"\x69" + z[1:] + z[:1]
    assert comp("compress lz4").unframe(framed) == p
    # without the swap the LZ4 block is corrupt or decodes to something else
    try:
        assert comp("compress lz4").unframe(b"\x69" + z) != p
    except CompressionError:
        pass


def test_incompressible_packets_go_uncompressed():
    p = b"".join(hashlib.sha256(bytes([i])).digest() for i in range(40))   # 1280 random bytes
    assert server_frame("compress lz4-v2", p) == p
    assert server_frame("compress lz4", p) == b"\xfb" + p[1:] + p[:1]
    assert comp("compress lz4-v2").unframe(p) == p


# -- garbage and limits ------------------------------------------------------------------------

@pytest.mark.parametrize("option", ["compress lz4", "compress lz4-v2", "comp-lzo"])
def test_oversize_decompression_is_refused(option):
    p = text_packet(MAX_DECOMPRESSED + 1)
    framed = server_frame(option, p)
    with pytest.raises(CompressionError):
        comp(option).unframe(framed)
    assert comp(option, max_size=2000).unframe(framed) == p
    # a small limit applies too
    ok = text_packet(500)
    with pytest.raises(CompressionError):
        comp(option, max_size=400).unframe(server_frame(option, ok))


def test_lzo_bomb_is_refused():
    framed = b"\x66" + LZOCompressor().compress(bytes(200_000))
    assert len(framed) < 1600
    with pytest.raises(CompressionError):
        comp("comp-lzo").unframe(framed)


@pytest.mark.parametrize("option, framed", [
    ("compress lz4", b"\x69"),                       # nothing to decompress
    ("compress lz4", b"\x69\x00"),                   # decompresses to nothing
    ("compress lz4-v2", b"\x50\x01"),
    ("compress lz4-v2", b"\x50\x01\x00"),
    ("compress lz4-v2", b"\x50\x01\xff\xff\xff"),    # corrupt
    ("compress lz4", b"\x69\xff\xff\xff"),
    ("comp-lzo", b"\x66"),
    ("comp-lzo", b"\x66\xff\xff\xff\xff"),
    ("comp-lzo", REAL_LZO + b"\x00"),                 # input not consumed (lzo1x_decompress_safe)
    ("comp-lzo", REAL_LZO[:-3]),                      # truncated
    ("compress lz4-v2", b"\x50\x02" + P),             # V2 LZO: never implemented by 2.6
    ("compress lz4-v2", b"\x50\x03" + P),             # V2 Snappy
    ("compress stub-v2", b"\x50\xff" + P),
    ("comp-lzo no", b"\x00" + P),
    ("comp-lzo no", P),                               # an unframed IPv4 packet
    ("compress", P),
    ("compress stub", b"\xfa" + P),
])
def test_garbage_is_a_compression_error(option, framed):
    with pytest.raises(CompressionError):
        comp(option).unframe(framed)


# -- fuzz ----------------------------------------------------------------------------------------

PREFIXES = [b"", b"\xfa", b"\xfb", b"\x66", b"\x69", b"\x50", b"\x50\x00", b"\x50\x01",
            b"\x50\x02", REAL_LZ4_V1[:20], REAL_LZO[:20], REAL_LZ4_V2[:20]]


@settings(max_examples=300, deadline=None)
@given(option=st.sampled_from(ALL_OPTIONS),
       prefix=st.sampled_from(PREFIXES),
       data=st.binary(max_size=2000),
       kind=st.sampled_from([bytes, bytearray, memoryview]))
def test_fuzz_unframe_raises_only_compression_error(option, prefix, data, kind):
    try:
        got = comp(option).unframe(kind(prefix + data))
    except CompressionError:
        return
    assert type(got) is bytes


@settings(max_examples=200, deadline=None)
@given(option=st.sampled_from(ALL_OPTIONS),
       real=st.sampled_from([REAL_LZ4_V1, REAL_LZO, REAL_LZ4_V2, REAL_STUB]),
       flips=st.lists(st.tuples(st.integers(0, 170), st.integers(1, 255)), max_size=4),
       cut=st.integers(0, 200))
def test_fuzz_mutated_real_packets(option, real, flips, cut):
    mutated = bytearray(real)
    for pos, x in flips:
        mutated[pos % len(mutated)] ^= x
    try:
        got = comp(option).unframe(bytes(mutated[:cut] if cut < len(real) else mutated))
    except CompressionError:
        return
    assert type(got) is bytes and len(got) <= MAX_DECOMPRESSED + len(real)


@settings(max_examples=300, deadline=None)
@given(option=st.sampled_from(ALL_OPTIONS), p=st.binary(max_size=1600))
def test_fuzz_round_trip(option, p):
    co = comp(option)
    assert co.unframe(co.frame(p)) == p


@settings(max_examples=100, deadline=None)
@given(option=st.sampled_from(["compress lz4", "compress lz4-v2", "comp-lzo", "compress lzo"]),
       p=st.binary(min_size=1, max_size=1600).map(lambda b: IP_HDR[:1] + b) |
       st.integers(1, 1600).map(text_packet))
def test_fuzz_round_trip_compressed_by_the_server(option, p):
    assert comp(option).unframe(server_frame(option, p)) == p
