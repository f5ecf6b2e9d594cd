"""Option semantics like the stock client: unknown, removed, meaningless, refused;
argument counts; remotes, <connection> blocks, remote-random; material given twice;
PEM, encrypted keys, PKCS#12 and CRLs."""

from __future__ import annotations

import base64
import io
import random

import pytest

from erebus.errors import ConfigError
from erebus.openvpn.config import (OPTIONS, ProfileError, load_profile, parse_profile,
                                   read_profile, unlock)
from tests.profiles import pki as P

_PKI = P.Pki()
HEAD = "client\ndev tun\nremote 198.18.1.1 1194\n"


def profile(body: str, *, head: str = HEAD, pki: bool = True) -> str:
    return head + body + (_PKI.inline() if pki else "")


def problems(text: str) -> list[tuple[int | None, str | None, str]]:
    with pytest.raises(ProfileError) as e:
        parse_profile(text, "p.ovpn")
    return [(x.line, x.option, str(x)) for x in e.value.problems]


@pytest.mark.parametrize("line,words", [
    ("key-method 2", "removed in OpenVPN 2.5"),
    ("ncp-disable", "removed in OpenVPN 2.6"),
    ("tls-remote server", "verify-x509-name"),
    ("no-iv", "removed in OpenVPN 2.5"),
    ("compat-names", "removed in OpenVPN 2.5"),
    ("mtu-dynamic", "replaced by --fragment"),
    ("client-cert-not-required", "verify-client-cert none"),
    ("tls-crypt-v2 x.key frobnicate", "unsupported tls-crypt-v2 argument"),
    ("http-proxy 198.18.1.9 8080", "MUST be used in TCP Client mode"),
    ("server 198.19.0.0 255.255.255.0", "erebus is a client"),
    ("iroute 198.19.0.0 255.255.255.0", "refuses it in a profile"),
    ("show-ciphers", "standalone command"),
    ("verb", "takes 1 argument, got 0"),
    ("nobind 1", "takes 0 arguments, got 1"),
    ("remote a 1 udp extra", "takes 1 to 3 arguments, got 4"),
    ("ifconfig 198.19.0.1", "takes 2 arguments, got 1"),
])
def test_refused_like_26(line, words):
    (got,) = problems(profile(line + "\n"))
    assert got[0] == 4 and got[1] == line.split()[0] and words in got[2], got


def test_ignore_unknown_option_covers_unknown_and_removed_but_not_refused():
    p = parse_profile(profile("ignore-unknown-option frobnicate key-method fragment\n"
                              "frobnicate 1\nkey-method 2\n"), "p.ovpn")
    assert {"frobnicate", "key-method"} <= {i.option for i in p.ignored}
    assert any("key-method" in w and "skipped" in w for w in p.warnings)
    (got,) = problems(profile("ignore-unknown-option fragment\nfragment 1300\n"))
    assert got[1] == "fragment"
    # it must come first, as for the stock client
    (got,) = problems(profile("frobnicate\nignore-unknown-option frobnicate\n"))
    assert got[:2] == (4, "frobnicate")


def test_setenv_opt_applies_the_option_and_forgives_only_unknown():
    p = parse_profile(profile("setenv opt tls-version-min 1.2\nsetenv opt frobnicate 1\n"
                              "setenv opt block-outside-dns\n"))
    assert p.tls_version_min == "1.2"
    assert "frobnicate" in {i.option for i in p.ignored}
    (got,) = problems(profile("setenv opt fragment 1300\n"))
    assert got[1] == "fragment"
    p = parse_profile(profile("setenv FORWARD_COMPATIBLE 1\nfrobnicate\n"))
    assert "frobnicate" in {i.option for i in p.ignored}


def test_meaningless_options_are_listed_with_stock_warnings():
    p = parse_profile(profile("persist-tun\nredirect-gateway def1 bypass-dhcp\nmax-routes 10\n"
                              "block-outside-dns\nroute-method exe\n"))
    assert {"persist-tun", "redirect-gateway", "max-routes", "block-outside-dns"} <= {
        i.option for i in p.ignored}
    assert any("max-routes option ignored" in w for w in p.warnings)


def test_remote_port_proto_and_their_defaults():
    p = parse_profile(profile("proto tcp\nport 1300\nremote 198.18.1.2 2000\n"
                              "remote 198.18.1.3 2001 udp\n"))
    assert [(r.host, r.port, r.proto) for r in p.remotes] == [
        ("198.18.1.1", 1194, "tcp-client"), ("198.18.1.2", 2000, "tcp-client"),
        ("198.18.1.3", 2001, "udp")]
    (got,) = problems(profile("proto udp6\n"))
    assert "IPv6" in got[2]


def test_remote_random_is_deterministic_with_an_rng():
    text = profile("remote-random\n" + "".join(f"remote 198.18.1.{i} 1194\n"
                                                for i in range(2, 8)))
    a = parse_profile(text, rng=random.Random(7)).remotes
    b = parse_profile(text, rng=random.Random(7)).remotes
    assert [r.host for r in a] == [r.host for r in b]
    assert sorted(r.host for r in a) == sorted(f"198.18.1.{i}" for i in range(1, 8))
    assert [r.host for r in a] != [f"198.18.1.{i}" for i in range(1, 8)]


def test_connection_timers_and_retry_values_are_stored():
    p = parse_profile(profile("server-poll-timeout 4\nconnect-retry 3 60\n"
                              "connect-retry-max 5\nremote-random-hostname\n"))
    assert p.connect_timeout == 4 and p.connect_retry == (3, 60)
    assert p.connect_retry_max == 5 and p.remote_random_hostname
    assert p.remotes[0].connect_timeout == 4 and p.remotes[0].connect_retry == (3, 60)


def test_connection_blocks_inherit_what_precedes_them():
    text = ("client\ndev tun\nproto tcp\nport 1300\nconnect-timeout 20\n"
            "remote 198.18.9.9 1\n"                              # ignored: blocks win
            "<connection>\nremote 198.18.1.1\n</connection>\n"
            "<connection>\nremote 198.18.1.2 443 udp\nconnect-timeout 5\n"
            "explicit-exit-notify 2\n</connection>\n"
            "proto udp\n") + _PKI.inline()
    p = parse_profile(text, "p.ovpn")
    assert [(r.host, r.port, r.proto, r.connect_timeout, r.connection) for r in p.remotes] \
        == [("198.18.1.1", 1300, "tcp-client", 20, 7),
            ("198.18.1.2", 443, "udp", 5, 10)]
    assert p.remotes[1].explicit_exit_notify == 2
    assert any("outside <connection> blocks are ignored" in w for w in p.warnings)
    assert any(":15: proto: ignored by the <connection> blocks" in w for w in p.warnings)


def test_connection_block_tls_auth_and_forbidden_options():
    key = P.static_key(bytes(range(256)))
    text = (HEAD.replace("remote 198.18.1.1 1194\n", "") +
            f"<connection>\nremote 198.18.1.1\n<tls-auth>\n{key}</tls-auth>\n"
            "key-direction 1\n</connection>\n") + _PKI.inline()
    p = parse_profile(text)
    assert p.tls_wrap == "tls-auth" and p.tls_auth_direction == 1
    got = problems(HEAD.replace("remote 198.18.1.1 1194\n", "")
                   + "<connection>\nremote 198.18.1.1\ncipher AES-256-GCM\n</connection>\n"
                   + _PKI.inline())
    assert got[0][:2] == (5, "cipher") and "<connection> block" in got[0][2]


def test_key_direction_last_one_wins_like_the_stock_client():
    key = P.static_key(bytes(range(256)))
    p = parse_profile(profile(f"tls-auth [inline] 0\nkey-direction 1\n<tls-auth>\n{key}"
                              "</tls-auth>\n"))
    assert p.tls_auth_direction == 1
    p = parse_profile(profile(f"key-direction 0\ntls-auth [inline] 1\n<tls-auth>\n{key}"
                              "</tls-auth>\n"))
    assert p.tls_auth_direction == 1


def test_file_then_inline_and_inline_then_file(tmp_path):
    other = P.Pki("Other Test-Only CA")
    (tmp_path / "ca.crt").write_text(other.ca_pem)
    path = tmp_path / "v.ovpn"
    path.write_text(HEAD + "ca ca.crt\n" + _PKI.inline())        # the later <ca> wins
    assert load_profile(str(path)).ca.decode() == _PKI.ca_pem
    path.write_text(HEAD + _PKI.inline() + "ca ca.crt\n")        # the later file wins
    assert load_profile(str(path)).ca.decode() == other.ca_pem


def test_config_includes_and_cd(tmp_path):
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "ca.crt").write_text(_PKI.ca_pem)
    (tmp_path / "common.conf").write_text("client\ndev tun\nverb 3\n")
    path = tmp_path / "v.ovpn"
    path.write_text("config common.conf\nremote 198.18.1.1\ncd keys\nca ca.crt\n"
                    f"<cert>\n{_PKI.client_pem}</cert>\n<key>\n{_PKI.client_key_pem}</key>\n")
    p = load_profile(str(path))
    assert p.tls_client and p.ca.decode() == _PKI.ca_pem
    (tmp_path / "loop.conf").write_text("config loop.conf\n")
    path.write_text("config loop.conf\n")
    reading = read_profile(str(path))
    assert any("nested 'config'" in str(e) for e in reading.problems)


def test_pem_problems_name_the_line_inside_the_file(tmp_path):
    (tmp_path / "ca.crt").write_text("Certificate:\n  a dump\n" + _PKI.ca_pem
                                     + "-----BEGIN CERTIFICATE-----\nMIIB\n")
    path = tmp_path / "v.ovpn"
    path.write_text(HEAD + "ca ca.crt\n" + _PKI.inline().split("</ca>\n", 1)[1])
    reading = read_profile(str(path))
    (e,) = reading.problems
    cut_line = 3 + _PKI.ca_pem.count("\n")
    assert (e.path, e.line, e.option) == (str(tmp_path / "ca.crt"), cut_line, "ca")
    assert "no END line" in str(e)


def test_encrypted_key_askpass_prompt_and_no_terminal(tmp_path):
    encrypted = P.key_pem(_PKI.client_key, "pw-test-only")
    text = profile("", pki=False) + (f"<ca>\n{_PKI.ca_pem}</ca>\n<cert>\n{_PKI.client_pem}"
                                     f"</cert>\n<key>\n{encrypted}</key>\n")
    p = parse_profile(text)
    assert p.key_encrypted and p.key_passphrase is None

    class Tty(io.StringIO):
        def isatty(self):
            return True

    unlock(p, stdin=Tty(), prompt=lambda text: "pw-test-only")
    assert not p.key_encrypted and b"ENCRYPTED" not in p.key
    p = parse_profile(text)
    with pytest.raises(ConfigError, match="no terminal"):
        unlock(p, stdin=io.StringIO())
    with pytest.raises(ConfigError, match="does not unlock"):
        unlock(p, stdin=Tty(), prompt=lambda text: "wrong")
    (tmp_path / "pass").write_text("pw-test-only\n")
    path = tmp_path / "v.ovpn"
    path.write_text("askpass pass\n" + text)
    p = load_profile(str(path), stdin=io.StringIO())     # askpass: no terminal needed
    assert not p.key_encrypted


def test_pkcs12_file_inline_and_locked(tmp_path):
    bundle = P.p12(_PKI.client_key, _PKI.client, [_PKI.ca])
    (tmp_path / "c.p12").write_bytes(bundle)
    path = tmp_path / "v.ovpn"
    path.write_text(HEAD + "pkcs12 c.p12\n")
    p = load_profile(str(path))
    assert p.ca.decode() == _PKI.ca_pem and p.cert.decode() == _PKI.client_pem
    locked = base64.encodebytes(P.p12(_PKI.client_key, _PKI.client, [_PKI.ca],
                                      "pw-test-only")).decode()
    p = parse_profile(HEAD + f"<pkcs12>\n{locked}</pkcs12>\n")
    assert p.key_encrypted and p.pkcs12 is not None and p.cert is None

    class Tty(io.StringIO):
        def isatty(self):
            return True

    unlock(p, stdin=Tty(), prompt=lambda text: "pw-test-only")
    assert p.cert.decode() == _PKI.client_pem and p.ca.decode() == _PKI.ca_pem
    path.write_text(HEAD + "pkcs12 c.p12\n" + _PKI.inline().split("</ca>\n", 1)[1])
    got = read_profile(str(path)).problems
    assert {g.option for g in got} == {"cert", "key"}      # not with pkcs12
    got = problems(HEAD + "<pkcs12>\nnot base64 at all!\n</pkcs12>\n")
    assert got[0][1] == "pkcs12"


def test_crl_and_certificate_checks_are_read():
    crl = P.crl_pem(P.make_crl(_PKI.ca_key, _PKI.ca, revoked=[5]))
    p = parse_profile(profile(f"<crl-verify>\n{crl}</crl-verify>\nremote-cert-ku a0 88\n"
                              "remote-cert-eku \"TLS Web Server Authentication\"\n"
                              "ns-cert-type server\n"))
    assert p.crl.decode() == crl and p.remote_cert_ku == (0xa0, 0x88)
    assert p.remote_cert_eku == "TLS Web Server Authentication" and p.ns_cert_type == "server"
    p = parse_profile(profile("remote-cert-tls server\n"))
    assert (p.remote_cert_tls, p.remote_cert_ku, p.remote_cert_eku) == (
        "server", "required", "TLS Web Server Authentication")
    (got,) = problems(profile("crl-verify crls dir\n"))
    assert "directory" in got[2]
    (got,) = problems(profile("<crl-verify>\n-----BEGIN X509 CRL-----\n\n"
                              "-----END X509 CRL-----\n</crl-verify>\n"))
    assert got[1] == "crl-verify" and "empty" in got[2]


def test_key_that_does_not_match_the_certificate():
    other = P.key_pem(P.new_key())
    text = HEAD + (f"<ca>\n{_PKI.ca_pem}</ca>\n<cert>\n{_PKI.client_pem}</cert>\n"
                   f"<key>\n{other}</key>\n")
    (got,) = problems(text)
    assert got[1] == "key" and "does not match" in got[2]


def test_tls_cipher_iana_names_are_translated():
    p = parse_profile(profile("tls-cipher TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256:"
                              "TLS-ECDHE-RSA-WITH-CHACHA20-POLY1305-SHA256\n"))
    assert p.tls_cipher == "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305"


@pytest.mark.parametrize("value,auth", [("[null-digest]", "none"), ("none", "none"),
                                        ("sha-256", "SHA256"), ("SHA512", "SHA512"),
                                        ("SHA2-384", "SHA384"), ("sha-224", "SHA224"),
                                        ("md5", "MD5"), ("RIPEMD-160", "RIPEMD160"),
                                        ("rmd160", "RIPEMD160"),
                                        ("2.16.840.1.101.3.4.2.1", "SHA256"),
                                        ("sha512-256", "SHA512-256"),
                                        ("SHA-512/224", "SHA512-224"),
                                        ("blake2s-256", "BLAKE2s256"), ("ssl3-sha1", "SHA1")])
def test_auth_names_like_the_stock_client(value, auth):
    # '[null-digest]' is how OpenSSL (and the occ options string) names no digest
    assert parse_profile(profile(f"auth {value}\n")).auth == auth


def test_an_unknown_auth_digest_is_a_problem():
    assert problems(profile("auth MDC2\n")) == [
        (4, "auth", "p.ovpn:4: auth: unsupported digest MDC2: OpenVPN 2.6 does not know "
         "it either (Message hash algorithm not found)")]
    assert problems(profile("auth SHAKE256\n")) == [
        (4, "auth", "p.ovpn:4: auth: digest SHAKE256 is an extendable-output function; an "
         "HMAC cannot use it")]


def test_every_implemented_option_has_a_handler_and_back():
    from erebus.openvpn.config import IMPLEMENTED, _Reader
    handlers = {n[4:].replace("_", "-") for n in dir(_Reader) if n.startswith("opt_")}
    implemented = {n for n, s in OPTIONS.items() if s.kind == IMPLEMENTED}
    assert implemented == handlers
