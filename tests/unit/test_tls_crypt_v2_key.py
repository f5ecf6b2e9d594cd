"""The tls-crypt-v2 client key as a profile gives it: Kc and WKc out of the PEM block
(tls_crypt.c ``tls_crypt_v2_init_client_key``), its bounds, the profile's problems naming
file, line and option, and options.c's rule against mixing it with tls-crypt/tls-auth."""

from __future__ import annotations

import pytest

from erebus.errors import ConfigError
from erebus.openvpn.config import parse_profile
from erebus.openvpn.material import PemError, tls_crypt_v2_client_key
from tests.unit.test_config import profile
from tests.unit.test_tls_crypt_v2 import KC, WKC, make_wkc, pem


# -- the client key --------------------------------------------------------------------

def test_client_key_splits_into_kc_and_wkc():
    kc, wkc = tls_crypt_v2_client_key(("# comment\n" + pem(KC + WKC)).encode())
    assert kc == KC and wkc == WKC
    kc, wkc = tls_crypt_v2_client_key(pem(KC + make_wkc(1024)).encode())
    assert len(wkc) == 1024


@pytest.mark.parametrize("raw, words", [
    (KC, "too few"),                                          # no WKc at all
    (KC + make_wkc(289), "too few"),                          # shorter than tag + Kc + len
    (KC + WKC[:-1], "length"),                                # truncated: trailer is wrong
    (KC + WKC + b"\0", "length"),                             # a byte too many
    (KC + make_wkc(1025), "more than the 1024"),
])
def test_bad_client_keys_are_refused(raw, words):
    with pytest.raises(PemError, match=words):
        tls_crypt_v2_client_key(pem(raw).encode())


def test_other_keys_are_named():
    with pytest.raises(PemError, match="server key"):
        tls_crypt_v2_client_key(b"-----BEGIN OpenVPN tls-crypt-v2 server key-----\nAAAA\n"
                                b"-----END OpenVPN tls-crypt-v2 server key-----\n")
    with pytest.raises(PemError, match="static key"):
        tls_crypt_v2_client_key(b"-----BEGIN OpenVPN Static key V1-----\n00\n")
    with pytest.raises(PemError, match="no -----BEGIN OpenVPN tls-crypt-v2 client key"):
        tls_crypt_v2_client_key(b"nothing here")
    with pytest.raises(PemError, match="no END line"):
        tls_crypt_v2_client_key(pem(KC + WKC).encode()[:200])


def test_profile_inline_and_file(tmp_path):
    p = parse_profile(profile(f"<tls-crypt-v2>\n{pem(KC + WKC)}</tls-crypt-v2>\n"))
    assert p.tls_wrap == "tls-crypt-v2"
    assert (p.tls_crypt_v2_key, p.tls_crypt_v2_wkc) == (KC, WKC)
    (tmp_path / "v2.key").write_text(pem(KC + WKC))
    p = parse_profile(profile("tls-crypt-v2 v2.key force-cookie\n"),
                      str(tmp_path / "p.ovpn"))
    assert p.tls_crypt_v2_wkc == WKC


def test_bad_key_names_file_line_and_option(tmp_path):
    (tmp_path / "v2.key").write_text("# the key\n" + pem(KC + WKC[:-1]))
    with pytest.raises(ConfigError) as e:
        parse_profile(profile("tls-crypt-v2 v2.key\n"), str(tmp_path / "p.ovpn"))
    assert (e.value.path, e.value.line, e.value.option) == (str(tmp_path / "v2.key"), 2,
                                                            "tls-crypt-v2")
    with pytest.raises(ConfigError) as e:     # inline: the profile's line of the block
        parse_profile(profile(f"verb 3\n<tls-crypt-v2>\n{pem(KC)}</tls-crypt-v2>\n"), "p.ovpn")
    assert (e.value.path, e.value.line, e.value.option) == ("p.ovpn", 6, "tls-crypt-v2")
    assert "too few" in str(e.value)
    with pytest.raises(ConfigError, match="unsupported tls-crypt-v2 argument 'bogus'"):
        parse_profile(profile("tls-crypt-v2 v2.key bogus\n"), str(tmp_path / "p.ovpn"))


STATIC = "-----BEGIN OpenVPN Static key V1-----\n" + "ab" * 256 + \
    "\n-----END OpenVPN Static key V1-----\n"


@pytest.mark.parametrize("other", ["tls-crypt", "tls-auth"])
def test_with_tls_crypt_or_tls_auth_is_refused_as_by_26(other):
    """options.c: '--tls-crypt-v2, --tls-auth and --tls-crypt are mutually exclusive in
    client mode' -- after a <connection> block took the profile's (only if it has none)."""
    v2 = f"<tls-crypt-v2>\n{pem(KC + WKC)}</tls-crypt-v2>\n"
    with pytest.raises(ConfigError, match="mutually exclusive in client mode") as e:
        parse_profile(profile(f"<{other}>\n{STATIC}</{other}>\n" + v2), "p.ovpn")
    assert e.value.option == "tls-crypt-v2"
    block = f"<connection>\nremote 198.18.1.9 1194\n{v2}</connection>\n"
    p = parse_profile(f"<{other}>\n{STATIC}</{other}>\n" + profile("").replace(
        "remote 198.18.1.1 1194\n", block))
    assert p.tls_wrap == "tls-crypt-v2"         # the block's own wins, as in 2.6
