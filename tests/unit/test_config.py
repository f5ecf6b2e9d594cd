"""The .ovpn reader: what a user's profile means, and errors that name file, line, option."""

import pytest
from hypothesis import given, settings, strategies as st

from erebus.errors import ConfigError
from erebus.openvpn.config import load_profile, parse_profile, split_line
from tests.profiles.pki import Pki

_PKI = Pki()
CA = _PKI.ca_pem
CERT = _PKI.client_pem
KEY = _PKI.client_key_pem


def profile(body: str, *, with_pki: bool = True) -> str:
    pki = f"<ca>\n{CA}</ca>\n<cert>\n{CERT}</cert>\n<key>\n{KEY}</key>\n" if with_pki else ""
    return "client\ndev tun\nremote 198.18.1.1 1194\n" + body + pki


def test_typical_provider_profile():
    p = parse_profile(profile(
        "proto udp\nresolv-retry infinite\nnobind\npersist-key\npersist-tun\n"
        "remote-cert-tls server\ncipher AES-256-GCM\nverb 3\nmute 20\n"
        "remote 198.18.1.9 1195\n"), "provider.ovpn")
    assert [(r.host, r.port, r.proto) for r in p.remotes] == [
        ("198.18.1.1", 1194, "udp"), ("198.18.1.9", 1195, "udp")]
    assert p.remote_cert_tls == "server"
    assert p.cipher == "AES-256-GCM"
    assert p.ca.decode() == CA and p.key.decode() == KEY
    assert {i.option for i in p.ignored} >= {"persist-tun", "verb"}
    assert p.resolv_retry is None                            # infinite


def test_port_and_proto_apply_to_remotes_without_their_own():
    p = parse_profile("client\nremote 198.18.1.1\nremote 198.18.1.2 2000\nport 1300\n"
                      f"<ca>\n{CA}</ca>\n<cert>\n{CERT}</cert>\n<key>\n{KEY}</key>\n")
    assert [r.port for r in p.remotes] == [1300, 2000]


def test_files_are_relative_to_the_profile(tmp_path):
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "ca.crt").write_text(CA)
    (tmp_path / "c.crt").write_text(CERT)
    (tmp_path / "c.key").write_text(KEY)
    path = tmp_path / "vpn.ovpn"
    path.write_text("client\nremote 198.18.1.1 1194\nca keys/ca.crt\ncert c.crt\nkey c.key\n")
    p = load_profile(str(path))
    assert p.ca.decode() == CA and p.key.decode() == KEY


def test_missing_file_names_file_line_and_option(tmp_path):
    path = tmp_path / "vpn.ovpn"
    path.write_text("client\nremote 198.18.1.1 1194\nca nowhere.crt\n")
    with pytest.raises(ConfigError) as e:
        load_profile(str(path))
    assert str(e.value).startswith(f"{path}:3: ca: cannot read")


@pytest.mark.parametrize("line,option,words", [
    ("dev tap", "dev", "tap"),
    ("fragment 1300", "fragment", "fragmentation"),
    ("frobnicate yes", "frobnicate", "unknown option"),
    ("compress snappy", "compress", "snappy"),
    ("cipher ARIA-128-CBC", "cipher", "ARIA-128-CBC is not supported by erebus"),
    ("cipher AES-256-CFB", "cipher", "CFB and OFB modes are not supported"),
    ("remote-cert-tls", "remote-cert-tls", "argument"),
    ("peer-fingerprint AB:CD", "peer-fingerprint", "wrong length - expected 32 bytes"),
    ("crl-verify crl.pem", "crl-verify", "cannot read"),
])
def test_refused_options_name_line_and_option(line, option, words):
    text = profile(line + "\n")
    with pytest.raises(ConfigError) as e:
        parse_profile(text, "p.ovpn")
    msg = str(e.value)
    assert msg.startswith(f"p.ovpn:4: {option}: "), msg
    assert words in msg


def test_ignore_unknown_option_and_setenv_opt():
    p = parse_profile(profile("ignore-unknown-option frobnicate\nfrobnicate 1\n"
                              "setenv opt block-outside-dns\nblock-outside-dns\n"))
    assert "frobnicate" in {i.option for i in p.ignored}


def test_auth_user_pass_inline_and_never_in_ignored():
    p = parse_profile(profile("auth-user-pass\n<auth-user-pass>\nalice\nsecr et\n"
                              "</auth-user-pass>\n"))
    assert (p.username, p.password) == ("alice", "secr et")
    assert all("secr" not in i.text for i in p.ignored)


def test_inline_block_without_end_tag_names_its_line():
    with pytest.raises(ConfigError) as e:
        parse_profile("client\nremote 198.18.1.1 1194\n<ca>\n" + CA, "p.ovpn")
    assert str(e.value).startswith("p.ovpn:3: ca: ") and "</ca>" in str(e.value)


def test_stray_end_tag_is_an_error():
    with pytest.raises(ConfigError) as e:
        parse_profile(profile("</key>\n"), "p.ovpn")
    assert str(e.value).startswith("p.ovpn:4:")


def test_crlf_and_leading_dashes_and_comments():
    text = profile("--proto udp ; trailing comment\r\n# remote 198.18.9.9\r\n").replace(
        "\n", "\r\n")
    p = parse_profile(text)
    assert [r.host for r in p.remotes] == ["198.18.1.1"]


def test_no_remote_and_no_ca_are_errors():
    with pytest.raises(ConfigError, match="no 'remote'"):
        parse_profile(f"client\n<ca>\n{CA}</ca>\n")
    with pytest.raises(ConfigError, match="no CA"):
        parse_profile("client\nremote 198.18.1.1\n")


@pytest.mark.parametrize("line,words", [
    ('a "b c" d', ["a", "b c", "d"]),
    ("a 'b \\c' d", ["a", "b \\c", "d"]),
    ('a "b \\"q\\" c"', ["a", 'b "q" c']),
    ("a b#c ;d", ["a", "b#c"]),
    ("  # all comment", []),
    ("a\\ b c", ["a b", "c"]),
])
def test_split_line_like_openvpn(line, words):
    assert split_line(line, "p", 1) == words


def test_unterminated_quote():
    with pytest.raises(ConfigError, match="p:7: unterminated quote"):
        split_line('remote "198.18.1.1', "p", 7)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_arbitrary_profiles_give_a_profile_or_a_config_error(text):
    try:
        parse_profile(text, "fuzz.ovpn")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.ovpn")


def test_auth_user_pass_prompt_and_username_only_file(tmp_path):
    import io
    from erebus import credentials
    p = parse_profile(profile("auth-user-pass\n"), "p.ovpn")
    assert p.auth_user_pass and p.username is None and p.password is None

    class Tty(io.StringIO):
        def isatty(self):
            return True

    credentials.complete(p, stdin=Tty(), ask=lambda text: "alice",
                         prompt=lambda text: "s3cret")
    assert (p.username, p.password) == ("alice", "s3cret")
    p = parse_profile(profile("auth-user-pass\n"), "p.ovpn")
    with pytest.raises(ConfigError, match="no terminal"):
        credentials.complete(p, stdin=io.StringIO())
    (tmp_path / "user.txt").write_text("bob\n")
    path = tmp_path / "v.ovpn"
    path.write_text(profile("auth-user-pass user.txt\n"))
    p = load_profile(str(path))
    assert (p.username, p.password) == ("bob", None)


STATIC_KEY = ("-----BEGIN OpenVPN Static key V1-----\n" + ("0123456789abcdef" * 2 + "\n") * 16
              + "-----END OpenVPN Static key V1-----\n")


def test_static_key_profile():
    text = ("dev tun\nremote 198.18.1.1 1202\nifconfig 198.19.8.2 198.19.8.1\n"
            "cipher AES-256-CBC\nauth SHA256\nkey-direction 1\nroute 198.18.2.0 255.255.255.0\n"
            f"<secret>\n{STATIC_KEY}</secret>\n")
    p = parse_profile(text, "s.ovpn")
    assert len(p.static_key) == 256 and p.static_direction == 1
    assert p.ifconfig == ("198.19.8.2", "198.19.8.1") and p.routes == [("198.18.2.0",
                                                                       "255.255.255.0")]
    assert any("deprecated" in w for w in p.warnings)
    # no cipher: BF-CBC, 2.6's default without pull (options.c)
    assert parse_profile(text.replace("cipher AES-256-CBC\n", ""), "s.ovpn").cipher \
        == "BF-CBC"
    with pytest.raises(ConfigError, match="ifconfig"):
        parse_profile(text.replace("ifconfig 198.19.8.2 198.19.8.1\n", ""), "s.ovpn")
    with pytest.raises(ConfigError, match="cannot also use TLS"):
        parse_profile("client\n" + text, "s.ovpn")


def test_tls_auth_direction_from_the_option_or_key_direction():
    text = profile(f"key-direction 1\n<tls-auth>\n{STATIC_KEY}</tls-auth>\n")
    p = parse_profile(text)
    assert p.tls_wrap == "tls-auth" and p.tls_auth_direction == 1
    p = parse_profile(profile(f"<tls-crypt>\n{STATIC_KEY}</tls-crypt>\n"))
    assert p.tls_wrap == "tls-crypt" and len(p.tls_crypt_key) == 256
    with pytest.raises(ConfigError, match="p.ovpn"):
        parse_profile(profile("<tls-auth>\nnot a key\n</tls-auth>\n"), "p.ovpn")
