"""WireGuard's four messages (erebus.wire.wireguard, whitepaper section 5.4) against an
independent layout, scapy's ``scapy.contrib.wireguard`` layers: what we build scapy
dissects into the same fields, what scapy builds we parse into the same fields; the
lengths are exact (148, 92, 64, at least 32); every truncation, extension or wrong type
is a ParseError, and arbitrary bytes never raise anything else (hypothesis)."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.contrib.wireguard import (Wireguard, WireguardCookieReply, WireguardInitiation,
                                     WireguardResponse, WireguardTransport)

from erebus.errors import ParseError
from erebus.wire import wireguard as wire

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PARSERS = [wire.parse_initiation, wire.parse_response, wire.parse_cookie_reply,
           wire.parse_transport_header, wire.message_type]


def fields(seed: int) -> dict:
    rng = random.Random(seed)
    return {"sender": rng.getrandbits(32), "receiver": rng.getrandbits(32),
            "ephemeral": rng.randbytes(32), "static": rng.randbytes(48),
            "timestamp": rng.randbytes(28), "empty": rng.randbytes(16),
            "mac1": rng.randbytes(16), "mac2": rng.randbytes(16),
            "nonce": rng.randbytes(24), "cookie": rng.randbytes(32),
            "counter": rng.getrandbits(64), "data": rng.randbytes(rng.randrange(16, 200))}


def ours_initiation(f) -> bytes:
    out = wire.build_initiation(f["sender"], f["ephemeral"], f["static"], f["timestamp"])
    out[wire.MAC1_OFFSET_INITIATION:] = f["mac1"] + f["mac2"]
    return bytes(out)


def ours_response(f) -> bytes:
    out = wire.build_response(f["sender"], f["receiver"], f["ephemeral"], f["empty"])
    out[wire.MAC1_OFFSET_RESPONSE:] = f["mac1"] + f["mac2"]
    return bytes(out)


def ours_cookie(f) -> bytes:
    return wire.build_cookie_reply(f["receiver"], f["nonce"], f["cookie"])


def ours_transport(f) -> bytes:
    return wire.build_transport_header(f["receiver"], f["counter"]) + f["data"]


# -- the sizes of the whitepaper -------------------------------------------------------------

def test_sizes_and_offsets():
    assert (wire.INITIATION_LEN, wire.RESPONSE_LEN, wire.COOKIE_REPLY_LEN) == (148, 92, 64)
    assert (wire.TRANSPORT_HEADER_LEN, wire.MIN_TRANSPORT_LEN) == (16, 32)
    assert (wire.MAC1_OFFSET_INITIATION, wire.MAC1_OFFSET_RESPONSE) == (116, 60)
    assert (wire.INITIATION, wire.RESPONSE, wire.COOKIE_REPLY, wire.TRANSPORT) == (1, 2, 3, 4)


# -- ours both ways --------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_initiation_round_trip(seed):
    f = fields(seed)
    data = ours_initiation(f)
    assert len(data) == 148 and data[:4] == b"\x01\0\0\0"
    assert wire.message_type(data) == wire.INITIATION
    for view in (data, memoryview(data), bytearray(data)):
        assert wire.parse_initiation(view) == wire.Initiation(
            f["sender"], f["ephemeral"], f["static"], f["timestamp"], f["mac1"], f["mac2"])


@pytest.mark.parametrize("seed", range(5))
def test_response_round_trip(seed):
    f = fields(seed)
    data = ours_response(f)
    assert len(data) == 92 and data[:4] == b"\x02\0\0\0"
    for view in (data, memoryview(data)):
        assert wire.parse_response(view) == wire.Response(
            f["sender"], f["receiver"], f["ephemeral"], f["empty"], f["mac1"], f["mac2"])


@pytest.mark.parametrize("seed", range(5))
def test_cookie_reply_round_trip(seed):
    f = fields(seed)
    data = ours_cookie(f)
    assert len(data) == 64 and data[:4] == b"\x03\0\0\0"
    assert wire.parse_cookie_reply(memoryview(data)) == \
        wire.CookieReply(f["receiver"], f["nonce"], f["cookie"])


@pytest.mark.parametrize("seed", range(5))
def test_transport_round_trip(seed):
    f = fields(seed)
    data = ours_transport(f)
    assert data[:4] == b"\x04\0\0\0"
    assert wire.parse_transport_header(memoryview(data)) == (f["receiver"], f["counter"])
    assert data[wire.TRANSPORT_HEADER_LEN:] == f["data"]


def test_build_initiation_leaves_the_macs_zero_to_be_filled_in():
    f = fields(9)
    out = wire.build_initiation(f["sender"], f["ephemeral"], f["static"], f["timestamp"])
    assert len(out) == 148 and bytes(out[116:]) == bytes(32)
    out = wire.build_response(f["sender"], f["receiver"], f["ephemeral"], f["empty"])
    assert len(out) == 92 and bytes(out[60:]) == bytes(32)


def test_integers_are_little_endian():
    data = wire.build_transport_header(0x04030201, 0x0C0B0A0908070605)
    assert data == bytes([4, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])


# -- scapy as the oracle ---------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_scapy_dissects_what_we_build(seed):
    f = fields(seed)
    p = Wireguard(ours_initiation(f))
    assert (p.message_type, p.reserved_zero) == (1, 0)
    i = p[WireguardInitiation]
    assert (i.sender_index, i.unencrypted_ephemeral, i.encrypted_static,
            i.encrypted_timestamp, i.mac1, i.mac2) == \
        (f["sender"], f["ephemeral"], f["static"], f["timestamp"], f["mac1"], f["mac2"])
    assert not i.payload                     # nothing left over: the length is exact

    p = Wireguard(ours_response(f))
    r = p[WireguardResponse]
    assert p.message_type == 2
    assert (r.sender_index, r.receiver_index, r.unencrypted_ephemeral, r.encrypted_nothing,
            r.mac1, r.mac2) == \
        (f["sender"], f["receiver"], f["ephemeral"], f["empty"], f["mac1"], f["mac2"])
    assert not r.payload

    p = Wireguard(ours_cookie(f))
    c = p[WireguardCookieReply]
    assert p.message_type == 3
    assert (c.receiver_index, c.nonce, c.encrypted_cookie) == \
        (f["receiver"], f["nonce"], f["cookie"])
    assert not c.payload

    p = Wireguard(ours_transport(f))
    t = p[WireguardTransport]
    assert p.message_type == 4
    assert (t.receiver_index, t.counter, t.encrypted_encapsulated_packet) == \
        (f["receiver"], f["counter"], f["data"])


@pytest.mark.parametrize("seed", range(5))
def test_we_parse_what_scapy_builds(seed):
    f = fields(100 + seed)
    init = bytes(Wireguard() / WireguardInitiation(
        sender_index=f["sender"], unencrypted_ephemeral=f["ephemeral"],
        encrypted_static=f["static"], encrypted_timestamp=f["timestamp"],
        mac1=f["mac1"], mac2=f["mac2"]))
    assert init == ours_initiation(f)
    assert wire.parse_initiation(init) == wire.Initiation(
        f["sender"], f["ephemeral"], f["static"], f["timestamp"], f["mac1"], f["mac2"])

    resp = bytes(Wireguard(message_type=2) / WireguardResponse(
        sender_index=f["sender"], receiver_index=f["receiver"],
        unencrypted_ephemeral=f["ephemeral"], encrypted_nothing=f["empty"],
        mac1=f["mac1"], mac2=f["mac2"]))
    assert resp == ours_response(f)
    assert wire.parse_response(resp).receiver == f["receiver"]

    cookie = bytes(Wireguard(message_type=3) / WireguardCookieReply(
        receiver_index=f["receiver"], nonce=f["nonce"], encrypted_cookie=f["cookie"]))
    assert cookie == ours_cookie(f)
    assert wire.parse_cookie_reply(cookie) == \
        wire.CookieReply(f["receiver"], f["nonce"], f["cookie"])

    transport = bytes(Wireguard(message_type=4) / WireguardTransport(
        receiver_index=f["receiver"], counter=f["counter"],
        encrypted_encapsulated_packet=f["data"]))
    assert transport == ours_transport(f)
    assert wire.parse_transport_header(transport) == (f["receiver"], f["counter"])


# -- what is refused -------------------------------------------------------------------------

BUILT = {
    wire.parse_initiation: ours_initiation,
    wire.parse_response: ours_response,
    wire.parse_cookie_reply: ours_cookie,
}


@pytest.mark.parametrize("parse", list(BUILT), ids=lambda p: p.__name__)
def test_every_truncation_and_extension_is_a_parse_error(parse):
    data = BUILT[parse](fields(3))
    for cut in range(len(data)):
        with pytest.raises(ParseError):
            parse(data[:cut])
    for extra in (1, 15, 16, 100):
        with pytest.raises(ParseError):
            parse(data + bytes(extra))


def test_a_transport_message_shorter_than_header_and_tag_is_a_parse_error():
    data = wire.build_transport_header(7, 1) + bytes(16)          # a keepalive: 32 bytes
    assert wire.parse_transport_header(data) == (7, 1)
    for cut in range(len(data)):
        with pytest.raises(ParseError):
            wire.parse_transport_header(data[:cut])
    assert wire.parse_transport_header(data + bytes(1500)) == (7, 1)   # any longer is fine


@pytest.mark.parametrize("parse", list(BUILT), ids=lambda p: p.__name__)
def test_each_parser_refuses_every_other_type(parse):
    data = bytearray(BUILT[parse](fields(4)))
    own = data[0]
    for kind in range(256):
        if kind == own:
            continue
        data[0] = kind
        with pytest.raises(ParseError):
            parse(bytes(data))


def test_transport_parser_refuses_every_other_type():
    data = bytearray(ours_transport(fields(5)))
    for kind in (0, 1, 2, 3, 5, 255):
        data[0] = kind
        with pytest.raises(ParseError):
            wire.parse_transport_header(bytes(data))


def test_message_type_needs_four_bytes_and_zero_reserved_bytes():
    for short in (b"", b"\x01", b"\x01\0\0"):
        with pytest.raises(ParseError):
            wire.message_type(short)
    for reserved in (b"\x01\0\0", b"\0\x01\0", b"\0\0\x80"):
        with pytest.raises(ParseError):
            wire.message_type(b"\x04" + reserved + bytes(28))
    assert wire.message_type(memoryview(b"\x09\0\0\0")) == 9   # unknown: the caller decides


# -- hostile input: ParseError only -----------------------------------------------------------

@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_parse_error(data):
    for parse in PARSERS:
        for view in (data, memoryview(data)):
            try:
                parse(view)
            except ParseError:
                pass


@FUZZ
@given(st.sampled_from(sorted(BUILT, key=lambda p: p.__name__)), st.integers(0, 2**31),
       st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
       st.integers(-20, 20))
def test_mutated_messages_raise_only_parse_error(parse, seed, flips, resize):
    data = bytearray(BUILT[parse](fields(seed % 1000)))
    for where, value in flips:
        if where < len(data):
            data[where] = value
    if resize < 0:
        del data[resize:]
    else:
        data += bytes(resize)
    for p in PARSERS:
        try:
            p(bytes(data))
        except ParseError:
            pass


# -- the reserved bytes and the builders' lengths ---------------------------------------------

ALL_BUILT = {**BUILT, wire.parse_transport_header: ours_transport}


@pytest.mark.parametrize("parse", list(ALL_BUILT), ids=lambda p: p.__name__)
@pytest.mark.parametrize("where", [1, 2, 3])
def test_each_parser_refuses_non_zero_reserved_bytes(parse, where):
    """The type is the first 4 bytes as a little-endian integer in the reference
    implementations (wireguard-go reads a uint32), so 01 00 80 00 is no initiation;
    every parser agrees with message_type()."""
    data = bytearray(ALL_BUILT[parse](fields(6)))
    data[where] = 0x80
    with pytest.raises(ParseError):
        wire.message_type(bytes(data))
    with pytest.raises(ParseError):
        parse(bytes(data))


@pytest.mark.parametrize("build,args", [
    (wire.build_initiation, (1, bytes(31), bytes(48), bytes(28))),
    (wire.build_initiation, (1, bytes(32), bytes(49), bytes(28))),
    (wire.build_initiation, (1, bytes(32), bytes(48), bytes(12))),     # timestamp unsealed
    (wire.build_response, (1, 2, bytes(32), b"")),
    (wire.build_response, (1, 2, bytes(33), bytes(16))),
    (wire.build_cookie_reply, (1, bytes(16), bytes(32))),
    (wire.build_cookie_reply, (1, bytes(24), bytes(16))),
], ids=["init-ephemeral", "init-static", "init-timestamp", "resp-empty", "resp-ephemeral",
        "cookie-nonce", "cookie-cookie"])
def test_builders_refuse_fields_of_the_wrong_length(build, args):
    """A field of the wrong size would silently grow or shrink the message (bytearray
    slice assignment), making one that no peer parses: the builder says so instead."""
    with pytest.raises(ValueError):
        build(*args)
