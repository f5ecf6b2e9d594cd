"""Lexing like OpenVPN 2.6's read_config_file / parse_line, and fuzzing: whatever the
bytes, only ConfigError escapes the reader."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from erebus.errors import ConfigError
from erebus.openvpn.config import ProfileError, lex, parse_profile, split_line
from tests.profiles.pki import Pki

_PKI = Pki()


def profile(body: str, *, head: str = "client\ndev tun\nremote 198.18.1.1 1194\n") -> str:
    return head + body + _PKI.inline()


@pytest.mark.parametrize("line,words", [
    ('remote "vpn.example.com" 1194', ["remote", "vpn.example.com", "1194"]),
    ("a 'b \\c' d", ["a", "b \\c", "d"]),              # single quotes: literal
    ('a "b \\\\ c"', ["a", "b \\ c"]),
    ('a "b \\"q\\" c"', ["a", 'b "q" c']),
    ('a"b"', ['a"b"']),                                 # a quote inside a word is literal
    ('"a"b', ["a", "b"]),                               # a closing quote ends the word
    ('a ""', ["a", ""]),
    ("a b#c ;d", ["a", "b#c"]),                         # comment only where a word starts
    ("a \\#b", ["a"]),                                  # even escaped, as in 2.6
    ("a\\ b c", ["a b", "c"]),
    ("a\tb\r\n", ["a", "b"]),
    ("a \\\n", ["a"]),                                  # a trailing escaped newline
    ("x" + " y" * 20, ["x"] + ["y"] * 15),              # 16 words count
])
def test_words_like_parse_line(line, words):
    assert split_line(line, "p", 1) == words


@pytest.mark.parametrize("line,message", [
    ('remote "198.18.1.1', "unterminated quote"),
    ("remote '198.18.1.1", "unterminated quote"),
    ('ca "C:\\Program Files\\ca.crt"', "bad backslash"),
    ("ca C:\\keys\\ca.crt", "bad backslash"),
    ("remote host\\", "the line ends in a backslash"),
])
def test_lines_the_stock_client_refuses(line, message):
    with pytest.raises(ConfigError, match=f"p:7: {message}"):
        split_line(line, "p", 7)


def test_line_endings_bom_and_no_final_newline():
    lf = profile("proto udp ; comment\nport 1300 # comment\n")
    for text in (lf, lf.replace("\n", "\r\n"), "\ufeff" + lf,
                 lf.replace("proto udp ; comment\n", "proto udp ; comment\r\n"),
                 lf.rstrip("\n")):
        p = parse_profile(text, "p.ovpn")
        assert [(r.host, r.port, r.proto) for r in p.remotes] == [
            ("198.18.1.1", 1194, "udp")]


def test_a_lone_cr_is_white_space_not_a_line_break():
    # OpenVPN's fgets only ends lines at \n: "nobind\rverb 3" is one line of 3 words
    with pytest.raises(ProfileError, match="p.ovpn:4: nobind: takes 0 arguments, got 2"):
        parse_profile(profile("nobind\rverb 3\n"), "p.ovpn")


def test_long_lines_are_refused_like_the_stock_client():
    with pytest.raises(ProfileError, match=r"p.ovpn:4: the line is \d+ characters long"):
        parse_profile(profile("verify-x509-name " + "a" * 250 + "\n"), "p.ovpn")
    # inside inline material any length is fine
    ok = profile("auth-user-pass\n<auth-user-pass>\n" + "u" * 400 + "\npw\n"
                 "</auth-user-pass>\n")
    assert parse_profile(ok).username == "u" * 400


def test_inline_blocks_end_tags_and_leading_dashes():
    text = profile("--proto tcp\n  <tls-crypt>  # a comment after the tag\n"
                   + _static() + "   </tls-crypt> trailing words\n")
    p = parse_profile(text)
    assert p.tls_wrap == "tls-crypt" and p.remotes[0].proto == "tcp-client"


def test_unclosed_and_mismatched_blocks_name_their_lines():
    text = ("client\nremote 198.18.1.1\n<ca>\n" + _PKI.ca_pem + "<cert>\n"
            + _PKI.client_pem + "</cert>\n")
    with pytest.raises(ProfileError) as e:
        parse_profile(text, "p.ovpn")
    cert_line = text.split("\n").index("<cert>") + 1
    assert str(e.value).startswith(f"p.ovpn:{cert_line}: ca: the inline block <ca> opened "
                                   "at line 3 meets <cert>")
    with pytest.raises(ProfileError) as e:
        parse_profile("client\nremote 198.18.1.1\nca x\n<key>\nabc\n", "p.ovpn")
    assert "p.ovpn:4: key: inline block <key> has no </key>" in map(str, e.value.problems)


def test_every_problem_is_reported_not_just_the_first():
    text = profile("frobnicate\nfragment 1300\nproto\ncipher ARIA-256-CBC\n")
    with pytest.raises(ProfileError) as e:
        parse_profile(text, "p.ovpn")
    assert [(x.line, x.option) for x in e.value.problems] == [
        (4, "frobnicate"), (5, "fragment"), (6, "proto"), (7, "cipher")]
    assert "and 3 more problems" in str(e.value)


def test_lex_attaches_inline_material_and_lines():
    ds = lex("a 1\n<ca>\nX\n</ca>\nb\n", "p")
    assert [(d.line, d.name, d.args, d.inline) for d in ds] == [
        (1, "a", ["1"], None), (2, "ca", [], "X\n"), (5, "b", [], None)]


def _static() -> str:
    from tests.profiles.pki import static_key
    return static_key(bytes(range(256)))


_WORDS = st.sampled_from(["client", "remote", "<ca>", "</ca>", "<connection>",
                          "</connection>", "proto", "tcp", "udp", "\"", "'", "\\", "#", ";",
                          "--", "ca", "[inline]", "key-direction", "1", "tls-auth",
                          "setenv", "opt", "ignore-unknown-option", "-----BEGIN CERTIFICATE-----",
                          "-----END CERTIFICATE-----", "\r", "\t", " ", "\ufeff", "config",
                          "pkcs12", "askpass", "crl-verify", "remote-cert-ku", "a0"])
_LINES = st.lists(st.one_of(_WORDS, st.text(max_size=12)), max_size=8).map(" ".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_LINES, max_size=30).map("\n".join))
def test_fuzz_profile_like_text_only_raises_config_errors(text):
    try:
        parse_profile(text, "fuzz.ovpn", rng=random.Random(1))
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.ovpn") or "fuzz" in str(exc) or exc.path


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=600))
def test_fuzz_lexer_on_any_text(text):
    problems: list = []
    lex(text, "fuzz.ovpn", problems=problems)
    assert all(isinstance(p, ConfigError) for p in problems)
    try:
        lex(text, "fuzz.ovpn")
    except ConfigError:
        pass
