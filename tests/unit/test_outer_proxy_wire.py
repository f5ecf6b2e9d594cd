"""The outer proxies' sans-IO parts: the CONNECT request and h11's reading of the
answer (hostile answers included), SOCKS5 messages (every reply code, truncated
replies) and the UDP header added and stripped."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings, strategies as st

from erebus.errors import ParseError
from erebus.wire import socks5
from erebus.wire.httpconnect import MAX_HEADERS, MAX_INTERIM, connect_request, offers_basic


# -- HTTP CONNECT ------------------------------------------------------------------------

def test_the_request_is_26s_default_http_10_with_host_and_basic():
    data, _ = connect_request("vpn.example", 443, agent="erebus-test",
                              headers=(("X-Foo", "bar"),), credentials=("alice", "s3cret"))
    lines = data.decode().split("\r\n")
    assert lines[0] == "CONNECT vpn.example:443 HTTP/1.0"
    assert lines[1].lower() == "host: vpn.example"
    token = base64.b64encode(b"alice:s3cret").decode()
    assert f"Proxy-Authorization: Basic {token}" in lines
    assert "x-foo: bar" in [x.lower() for x in lines]
    assert "user-agent: erebus-test" in [x.lower() for x in lines]
    assert data.endswith(b"\r\n\r\n")


def test_a_custom_host_header_replaces_ours_and_version_11():
    data, _ = connect_request("vpn.example", 443, version="1.1",
                              headers=(("Host", "front.example"),))
    assert data.startswith(b"CONNECT vpn.example:443 HTTP/1.1\r\n")
    assert data.lower().count(b"host:") == 1 and b"front.example" in data


@pytest.mark.parametrize("header", [("X y", "z"), ("X", "a\r\nInjected: 1"), ("", "v")])
def test_headers_h11_refuses_are_a_value_error(header):
    with pytest.raises(ValueError):
        connect_request("vpn.example", 443, headers=(header,))
    with pytest.raises(ValueError):
        connect_request("vpn.example", 443, version="2")


def answer_to(raw: bytes, *, chunk: int | None = None):
    _, parser = connect_request("vpn.example", 443)
    if chunk is None:
        return parser.receive(raw)
    got = None
    for i in range(0, len(raw), chunk):
        got = parser.receive(raw[i:i + chunk])
        if got is not None:
            return got
    return got


@pytest.mark.parametrize("chunk", [None, 1, 7])
def test_200_and_the_bytes_after_it_belong_to_the_server(chunk):
    raw = b"HTTP/1.0 200 Connection established\r\nProxy-agent: tinyproxy\r\n\r\n\x00\x2a"
    a = answer_to(raw, chunk=chunk)
    assert a.status == 200 and a.status_line == "200 Connection established"
    if chunk is None:
        assert a.rest == b"\x00\x2a"


def test_407_with_a_basic_challenge():
    a = answer_to(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                  b"Proxy-Authenticate: Basic realm=\"tinyproxy\"\r\nContent-Length: 3\r\n\r\nno!")
    assert a.status == 407 and offers_basic(a)
    b = answer_to(b"HTTP/1.1 407 x\r\nProxy-Authenticate: NTLM\r\n\r\n")
    assert not offers_basic(b)


def test_interim_answers_are_skipped_but_bounded():
    a = answer_to(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n")
    assert a.status == 200
    with pytest.raises(ParseError, match="interim"):
        answer_to(b"HTTP/1.1 100 Continue\r\n\r\n" * (MAX_INTERIM + 1))


def test_huge_headers_are_refused_at_the_bound():
    raw = b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * (MAX_HEADERS + 10)
    with pytest.raises(ParseError, match="too long"):
        answer_to(raw)
    with pytest.raises(ParseError):          # also when it trickles in
        answer_to(raw, chunk=4096)


@pytest.mark.parametrize("raw", [b"SSH-2.0-OpenSSH_9.2\r\n\r\n", b"\r\n\r\n",
                                 b"HTTP/1.1 abc nope\r\n\r\n", b"\x16\x03\x01\x02\x00" * 8 +
                                 b"\r\n\r\n"])
def test_no_status_line_is_a_parse_error_that_quotes_little(raw):
    with pytest.raises(ParseError) as e:
        answer_to(raw)
    assert len(str(e.value)) < 200


def test_closing_without_an_answer():
    _, parser = connect_request("vpn.example", 443)
    assert parser.receive(b"HTTP/1.1 200") is None
    with pytest.raises(ParseError):
        parser.receive(b"")


def test_bytes_after_the_close_are_a_parse_error_too():
    _, parser = connect_request("vpn.example", 443)
    with pytest.raises(ParseError):
        parser.receive(b"")
    with pytest.raises(ParseError, match="after it closed"):
        parser.receive(b"HTTP/1.1 200 OK\r\n\r\n")      # h11 itself raises RuntimeError


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 64))
def test_any_answer_parses_or_is_a_parse_error(raw, chunk):
    try:
        answer_to(b"HTTP/1.1 " + raw, chunk=chunk)
    except ParseError:
        pass


# -- SOCKS5 ------------------------------------------------------------------------------

def test_greeting_and_username_password_like_26():
    assert socks5.greeting(False) == b"\x05\x01\x00"
    assert socks5.greeting(True) == b"\x05\x01\x02"
    assert socks5.user_pass_request(b"al", b"pw") == b"\x01\x02al\x02pw"
    with pytest.raises(ValueError):
        socks5.user_pass_request(b"a" * 256, b"")


def test_connect_sends_the_name_even_for_an_address_like_26():
    assert socks5.request(socks5.CMD_CONNECT, "198.18.1.1", 1194, as_domain=True) == \
        b"\x05\x01\x00\x03\x0a198.18.1.1\x04\xaa"
    assert socks5.request(socks5.CMD_UDP_ASSOCIATE, "0.0.0.0", 0) == \
        b"\x05\x03\x00\x01\0\0\0\0\0\0"
    with pytest.raises(ValueError):
        socks5.request(socks5.CMD_CONNECT, "a" * 256, 1)


def test_every_reply_code_has_the_rfcs_words():
    words = ["succeeded", "general SOCKS server failure", "connection not allowed by ruleset",
             "network unreachable", "host unreachable", "connection refused", "TTL expired",
             "command not supported", "address type not supported"]
    for code, text in enumerate(words):
        reply, n = socks5.parse_reply(bytes((5, code, 0, 1, 10, 0, 0, 1, 0, 80)))
        assert (reply.message, n, reply.host, reply.port) == (text, 10, "10.0.0.1", 80)
    reply, _ = socks5.parse_reply(bytes((5, 0x42, 0, 1, 0, 0, 0, 0, 0, 0)))
    assert reply.message == "unassigned reply code 0x42"


@pytest.mark.parametrize("reply", [
    bytes((5, 0, 0, 1, 198, 18, 0, 2, 4, 56)),
    bytes((5, 0, 0, 3, 5)) + b"relay" + b"\x04\x38",
    bytes((5, 0, 0, 4)) + bytes(15) + b"\x01\x04\x38",
])
def test_a_truncated_reply_is_incomplete_at_every_length(reply):
    for n in range(len(reply)):
        assert socks5.parse_reply(reply[:n]) is None
    parsed, taken = socks5.parse_reply(reply + b"extra")
    assert taken == len(reply) and parsed.port == 1080


@pytest.mark.parametrize("raw, words", [(b"\x04\x5a\0\0\0\0\0\0", "version 4"),
                                        (b"\x05\x00\x00\x07\0\0", "address type 7")])
def test_bad_replies(raw, words):
    with pytest.raises(ParseError, match=words):
        socks5.parse_reply(raw)
    with pytest.raises(ParseError):
        socks5.parse_method(b"\x04\x00")


@given(st.binary(max_size=socks5.MAX_REPLY + 10))
def test_any_reply_parses_or_is_a_parse_error(raw):
    try:
        got = socks5.parse_reply(raw)
    except ParseError:
        return
    assert got is None or got[1] <= min(len(raw), socks5.MAX_REPLY)


@given(st.binary(max_size=1500), st.binary(min_size=4, max_size=4), st.integers(0, 65535))
def test_udp_header_round_trip(payload, ip, port):
    datagram = socks5.add_udp_header(payload, ip, port)
    assert len(datagram) == socks5.UDP_HEADER + len(payload)
    assert socks5.strip_udp_header(datagram) == (0, ip, port, payload)


@given(st.binary(max_size=40))
def test_stripping_any_datagram_gives_its_parts_or_a_parse_error(raw):
    try:
        frag, ip, port, payload = socks5.strip_udp_header(raw)
    except ParseError:
        assert len(raw) < socks5.UDP_HEADER or raw[3] != socks5.ATYP_IPV4
        return
    assert raw[3] == 1 and frag == raw[2] and len(ip) == 4 and payload == raw[10:]
