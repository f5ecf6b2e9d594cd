"""Key method 2 messages (ssl.c key_method_2_write / key_method_2_read)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from erebus.errors import ParseError
from erebus.openvpn import keymethod as km

PRE = bytes(range(48))
R1 = bytes(range(100, 132))
R2 = bytes(range(200, 232))
SRC = km.ClientKeySource(PRE, R1, R2)


def s(text: bytes) -> bytes:
    """OpenVPN's write_string: u16 length counting the NUL, the bytes, the NUL."""
    return struct.pack("!H", len(text) + 1) + text + b"\x00"


def test_client_message_exact_layout():
    msg = km.build_client_message(SRC, "V4,dev-type tun", "IV_VER=2.6.14\n",
                                  username="alice", password="s3cret")
    assert msg[0:4] == b"\x00\x00\x00\x00"
    assert msg[4] == 2
    assert msg[5:53] == PRE
    assert msg[53:85] == R1
    assert msg[85:117] == R2
    assert msg[117:] == (b"\x00\x10V4,dev-type tun\x00" + b"\x00\x06alice\x00"
                         + b"\x00\x07s3cret\x00" + b"\x00\x0fIV_VER=2.6.14\n\x00")
    assert len(msg) == 117 + 18 + 8 + 9 + 17


def test_client_message_without_credentials_sends_empty_strings():
    # write_empty_string: no username, no password -> u16 0 each, peer info still follows
    msg = km.build_client_message(SRC, "V4", "IV_PROTO=2\n")
    assert msg[117:] == s(b"V4") + b"\x00\x00" + b"\x00\x00" + s(b"IV_PROTO=2\n")


def test_empty_but_present_strings_are_sent_like_openvpn_does():
    # OpenVPN's write_string("") sends 00 01 00; a 2.6 server treats a zero length as
    # "not provided" (read_string) and fails auth-user-pass with a TLS error.
    msg = km.build_client_message(SRC, "V4", "", username="bob", password="")
    assert msg[117:] == s(b"V4") + s(b"bob") + b"\x00\x01\x00" + b"\x00\x01\x00"
    assert km.write_string("") == b"\x00\x01\x00"
    assert km.write_string(None) == b"\x00\x00"
    assert km.write_string(b"raw") == b"\x00\x04raw\x00"
    assert km.write_string("é") == b"\x00\x03\xc3\xa9\x00"


def test_write_string_refuses_nul_and_oversize():
    with pytest.raises(ValueError):
        km.write_string("a\x00b")
    with pytest.raises(ValueError):
        km.write_string("x" * 65535)
    assert len(km.write_string("x" * 65534)) == 2 + 65535


def test_client_message_refuses_bad_key_source():
    with pytest.raises(ValueError):
        km.build_client_message(km.ClientKeySource(PRE[:47], R1, R2), "V4", "")
    with pytest.raises(ValueError):
        km.build_client_message(km.ClientKeySource(PRE, R1, R2 + b"x"), "V4", "")


def test_peer_info_advertises_only_implemented_features():
    text = km.peer_info(["AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305"], mtu=1400)
    lines = text.splitlines()
    assert text.endswith("\n")
    assert "IV_CIPHERS=AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305" in lines
    assert "IV_NCP=2" in lines and "IV_MTU=1400" in lines
    # ssl.c push_peer_info: IV_NCP=2 only with both AES-GCM ciphers (a 2.4 server would
    # push one of them to any IV_NCP=2 client)
    for ciphers in (["AES-256-GCM", "CHACHA20-POLY1305"], ["BF-CBC"]):
        lines = km.peer_info(ciphers).splitlines()
        assert f"IV_CIPHERS={':'.join(ciphers)}" in lines
        assert not any(line.startswith("IV_NCP") for line in lines)
    proto = int(next(line for line in lines if line.startswith("IV_PROTO="))[9:])
    assert proto == km.IMPLEMENTED_IV_PROTO
    assert proto & km.IV_PROTO_DATA_V2 and proto & km.IV_PROTO_REQUEST_PUSH
    assert proto & km.IV_PROTO_TLS_KEY_EXPORT          # tls-ekm: implemented (RFC 5705)
    assert proto & km.IV_PROTO_AUTH_PENDING_KW       # AUTH_PENDING,timeout N: parsed
    assert not proto & (512 | 1024)   # not implemented
    assert (km.IV_PROTO_DATA_V2, km.IV_PROTO_REQUEST_PUSH, km.IV_PROTO_TLS_KEY_EXPORT,
            km.IV_PROTO_AUTH_PENDING_KW, km.IV_PROTO_CC_EXIT_NOTIFY) == (2, 4, 8, 16, 128)


SERVER_OPTIONS = (b"V4,dev-type tun,link-mtu 1521,tun-mtu 1500,proto UDPv4,cipher AES-256-GCM,"
                  b"auth [null-digest],keysize 256,key-method 2,tls-server")
SR1 = bytes(range(32, 64))
SR2 = bytes(range(64, 96))


def server_message(options: bytes = SERVER_OPTIONS, method: int = 2) -> bytes:
    # A 2.6 server writes the options, then two empty strings (no username/password).
    return (b"\x00\x00\x00\x00" + bytes((method,)) + SR1 + SR2 + s(options)
            + b"\x00\x00\x00\x00")


def test_parse_server_message():
    src = km.parse_server_message(server_message())
    assert src.random1 == SR1 and src.random2 == SR2
    assert src.options == SERVER_OPTIONS.decode()


def test_parse_server_message_accepts_memoryview_and_flag_bits():
    src = km.parse_server_message(memoryview(server_message(method=0x12)))  # high bits: flags
    assert src.random1 == SR1
    # an absent options string is tolerated
    assert km.parse_server_message(b"\x00" * 4 + b"\x02" + SR1 + SR2 + b"\x00\x00").options == ""


MALFORMED = {
    "empty": b"",
    "no randoms": b"\x00\x00\x00\x00\x02",
    "random2 truncated": b"\x00\x00\x00\x00\x02" + SR1 + SR2[:31],
    "no options length": b"\x00\x00\x00\x00\x02" + SR1 + SR2,
    "half a length": b"\x00\x00\x00\x00\x02" + SR1 + SR2 + b"\x00",
    "nonzero prefix": b"\x00\x00\x00\x01" + server_message()[4:],
    "key method 1": server_message(method=1),
    "key method 3": server_message(method=3),
    "string past end": b"\x00\x00\x00\x00\x02" + SR1 + SR2 + b"\x00\x20abc\x00",
    "missing NUL": b"\x00\x00\x00\x00\x02" + SR1 + SR2 + b"\x00\x03abc",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_server_messages_raise_parse_error(name):
    with pytest.raises(ParseError):
        km.parse_server_message(MALFORMED[name])


def test_every_truncation_of_a_server_message_up_to_the_options_fails():
    msg = server_message(b"V4")
    end_of_options = 5 + 64 + 2 + 3
    for n in range(end_of_options):
        with pytest.raises(ParseError):
            km.parse_server_message(msg[:n])
    assert km.parse_server_message(msg[:end_of_options]).options == "V4"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=200),
    st.builds(lambda m, r, tail: b"\x00\x00\x00\x00" + bytes((m,)) + r + tail,
              st.integers(0, 255), st.binary(min_size=64, max_size=64),
              st.binary(max_size=60))))
@example(b"\x00\x00\x00\x00\x02" + bytes(64) + b"\x00\x02\xff\x00")   # invalid UTF-8
def test_parse_server_message_fuzz(data):
    try:
        src = km.parse_server_message(data)
    except ParseError:
        return
    assert data[:4] == b"\x00\x00\x00\x00" and data[4] & 0x0F == 2
    assert src.random1 == data[5:37] and src.random2 == data[37:69]
    assert isinstance(src.options, str)


@settings(max_examples=300, deadline=None)
@given(options=st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=80))
def test_server_options_round_trip_through_write_string(options):
    msg = b"\x00\x00\x00\x00\x02" + SR1 + SR2 + km.write_string(options)
    assert km.parse_server_message(msg).options == options


def test_options_string_names_cipher_and_role():
    text = km.options_string(cipher="AES-256-GCM")
    parts = text.split(",")
    assert parts[0] == "V4" and "cipher AES-256-GCM" in parts
    assert "key-method 2" in parts and parts[-1] == "tls-client"
    assert "cipher none" not in km.options_string(cipher="none")
