"""Certificate pinning and TLS options as OpenVPN 2.6 has them: peer-fingerprint (with
and without a CA: 2.6's PKI-less mode), verify-hash (the CA at depth 1), capath (OpenSSL's
hashed layout), crl-verify DIR dir, tls-groups and tls-cert-profile; parsed from
profiles, then enforced in real handshakes in memory (a pyOpenSSL server over memory
BIOs: no sockets)."""

from __future__ import annotations

import hashlib
import os
import types

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from OpenSSL import SSL, crypto

from erebus.check import check
from erebus.errors import ConfigError, SessionError
from erebus.openvpn import castore
from erebus.openvpn import tls as T
from erebus.openvpn.config import parse_profile, read_profile
from erebus.openvpn.fingerprint import (FingerprintError, format_fingerprint,
                                        parse_fingerprint, parse_fingerprints)
from erebus.openvpn.tls import TlsClient, TlsContext, TlsSettings
from tests.profiles import pki as P
from tests.unit.test_tls_memory import handshake, server_context

PKI = P.Pki()
HEAD = "client\ndev tun\nremote 198.18.1.1 1194\n"


def der(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def sha256(cert) -> bytes:
    return hashlib.sha256(der(cert)).digest()


def colons(digest: bytes) -> str:
    return ":".join(f"{b:02X}" for b in digest)


def self_signed(cn: str, key=None):
    """A self-signed server certificate, as the 2.6 man page's PKI-less example makes."""
    key = key or P.new_key()
    return key, P.make_cert(key, types.SimpleNamespace(subject=P.name(cn)), cn, key=key)[1]


@pytest.fixture(scope="module")
def pinned():
    key, cert = self_signed("pin-server")
    return dict(key=key, cert=cert, fp=sha256(cert))


def settings(**kw) -> TlsSettings:
    kw.setdefault("ca", PKI.ca_pem.encode())
    return TlsSettings(**kw)


def pki_server():
    return server_context(PKI.server_key, [PKI.server])


# -- fingerprints as 2.6 parses them ---------------------------------------------------

def test_a_fingerprint_is_colon_separated_hex_pairs_in_either_case():
    digest = bytes(range(32))
    assert parse_fingerprint(colons(digest), 32) == digest
    assert parse_fingerprint(colons(digest).lower(), 32) == digest
    assert format_fingerprint(digest) == colons(digest).lower()     # as 2.6 prints it


@pytest.mark.parametrize("text,words", [
    ("AB:CD", "hash fingerprint is wrong length - expected 32 bytes, got 2: AB:CD"),
    (colons(bytes(33)), "hash fingerprint too long - expected only 32 bytes"),
    (colons(bytes(32)) + ":", "hash fingerprint too long"),
    ("SHA256:" + colons(bytes(32)), "format error in hash fingerprint: SHA256:00"),
    ("A:" + colons(bytes(31)), "format error in hash fingerprint"),
    (colons(bytes(31)) + ":0G", "format error in hash fingerprint"),
    (colons(bytes(32)).replace(":", "-"), "format error in hash fingerprint"),
])
def test_what_2_6_refuses_is_refused_in_its_words(text, words):
    with pytest.raises(FingerprintError) as e:
        parse_fingerprint(text, 32)
    assert words in str(e.value)


def test_the_sha256_prefix_gets_a_hint():
    with pytest.raises(FingerprintError, match="drop the 'SHA256:' prefix"):
        parse_fingerprint("SHA256:" + colons(bytes(32)), 32)


def test_an_inline_block_holds_one_a_line_with_comments_and_blank_lines():
    a, b = bytes(range(32)), bytes(range(1, 33))
    text = f"# the server\n{colons(a)}\n\n  ; the spare\n   {colons(b).lower()}  \n"
    assert parse_fingerprints(text, 32) == [a, b]


# -- the profile reader --------------------------------------------------------------------

def client_material() -> str:
    return f"<cert>\n{PKI.client_pem}</cert>\n<key>\n{PKI.client_key_pem}</key>\n"


def problems(text: str) -> list[tuple[int | None, str | None, str]]:
    from erebus.openvpn.config import ProfileError
    try:
        parse_profile(text, "p.ovpn")
    except ProfileError as exc:
        return [(e.line, e.option, str(e)) for e in exc.problems]
    return []


def test_peer_fingerprint_without_ca_is_2_6s_pki_less_mode(pinned):
    fp = colons(pinned["fp"])
    p = parse_profile(HEAD + f"peer-fingerprint {fp}\n" + client_material(), "p.ovpn")
    assert p.ca is None and p.verify_hash == [pinned["fp"]] and p.verify_hash_depth == 0
    assert p.tls_settings().verify_hash_no_ca
    assert not [w for w in p.warnings if "No server certificate verification" in w]


def test_without_ca_capath_or_peer_fingerprint_2_6s_words_are_the_problem():
    (got,) = problems(HEAD + client_material())
    assert got[1] == "ca" and "You must define CA file (--ca) or CA path (--capath) and/or " \
        "peer fingerprint verification (--peer-fingerprint)" in got[2]
    # verify-hash checks the CA at depth 1: it needs one
    (got,) = problems(HEAD + f"verify-hash {colons(bytes(20))}\n" + client_material())
    assert got[1] == "ca"


def test_repeated_lines_and_inline_blocks_add_up(pinned):
    a, b, c = bytes(32), bytes(range(32)), pinned["fp"]
    p = parse_profile(HEAD + f"peer-fingerprint {colons(a)}\n<peer-fingerprint>\n"
                      f"{colons(b)}\n# spare\n{colons(c)}\n</peer-fingerprint>\n"
                      + client_material(), "p.ovpn")
    assert p.verify_hash == [a, b, c]


def test_verify_hash_is_sha1_unless_said_and_sha256_inline():
    base = HEAD + PKI.inline()
    p = parse_profile(base + f"verify-hash {colons(bytes(20))}\n", "p.ovpn")
    assert (p.verify_hash_algo, p.verify_hash_depth, p.verify_hash) == ("SHA1", 1, [bytes(20)])
    assert any("DEPRECATED OPTION: The option --verify-hash is deprecated." in w
               for w in p.warnings)
    p = parse_profile(base + f"verify-hash {colons(bytes(32))} SHA256\n", "p.ovpn")
    assert p.verify_hash_algo == "SHA256"
    p = parse_profile(base + f"<verify-hash>\n{colons(bytes(32))}\n</verify-hash>\n", "p.ovpn")
    assert p.verify_hash_algo == "SHA256"
    (got,) = problems(base + f"verify-hash {colons(bytes(32))} MD5\n")
    assert "invalid or unsupported hashing algorithm: MD5 (only SHA1 and SHA256 are " \
        "supported)" in got[2]
    (got,) = problems(base + f"verify-hash {colons(bytes(32))}\n")      # SHA1: 20 bytes
    assert "too long - expected only 20 bytes" in got[2]


def test_mixed_algorithms_warn_that_the_last_one_applies():
    p = parse_profile(HEAD + PKI.inline() + f"verify-hash {colons(bytes(20))}\n"
                      f"verify-hash {colons(bytes(32))} SHA256\n", "p.ovpn")
    assert p.verify_hash_algo == "SHA256"
    assert any("the hashes of the other algorithm can never match" in w for w in p.warnings)


def test_verify_hash_and_peer_fingerprint_are_mutually_exclusive():
    (got,) = problems(HEAD + f"verify-hash {colons(bytes(20))}\n"
                      f"peer-fingerprint {colons(bytes(32))}\n" + PKI.inline())
    assert got[:2] == (5, "peer-fingerprint") and "ERROR: Setting peer-fingerprint not " \
        "allowed. --verify-hash and --peer-fingerprint are mutually exclusive" in got[2]


def test_tls_groups_names_the_group_openssl_does_not_know():
    p = parse_profile(HEAD + PKI.inline() + "tls-groups X25519:secp256r1\n", "p.ovpn")
    assert p.tls_groups == "X25519:secp256r1"
    (got,) = problems(HEAD + "tls-groups X25519:curve-of-tomorrow\n" + PKI.inline())
    assert got[:2] == (4, "tls-groups") and "unknown TLS group 'curve-of-tomorrow'" in got[2]


def test_tls_cert_profile_takes_2_6s_four_names():
    for name in ("legacy", "preferred", "suiteb", "insecure"):
        assert parse_profile(HEAD + PKI.inline() + f"tls-cert-profile {name}\n",
                             "p.ovpn").tls_cert_profile == name
    (got,) = problems(HEAD + "tls-cert-profile strict\n" + PKI.inline())
    assert got[:2] == (4, "tls-cert-profile") and "ERROR: Invalid cert profile: strict" in got[2]


def test_crl_verify_dir_must_be_a_searchable_directory(tmp_path):
    d = tmp_path / "revoked"
    d.mkdir()
    profile = tmp_path / "p.ovpn"
    profile.write_text(HEAD + PKI.inline() + "crl-verify revoked dir\n")
    reading = read_profile(str(profile))
    assert not reading.problems and reading.profile.crl_dir == str(d)
    assert reading.profile.crl is None
    profile.write_text(HEAD + PKI.inline() + "crl-verify elsewhere dir\n")
    (got,) = read_profile(str(profile)).problems
    assert got.option == "crl-verify" and "--crl-verify directory fails with" in str(got)


# -- enforced in handshakes ------------------------------------------------------------

def test_pki_less_the_listed_self_signed_server_is_accepted(pinned):
    client = TlsClient(settings(ca=None, verify_hash=(bytes(32), pinned["fp"])))
    handshake(client, server_context(pinned["key"], [pinned["cert"]]))
    assert client.established and client.peer_certificate == pinned["cert"]


def test_pki_less_another_server_is_refused_naming_its_subject_and_fingerprint(pinned):
    key, other = self_signed("impostor")
    client = TlsClient(settings(ca=None, verify_hash=(pinned["fp"],)))
    with pytest.raises(SessionError) as e:
        handshake(client, server_context(key, [other]))
    text = str(e.value)
    assert e.value.stage == "certificate" and not client.established
    assert "server certificate 'O=erebus test-only, CN=impostor'" in text
    assert "does not match peer-fingerprint" in text
    assert "--tls-verify/--peer-fingerprint certificate hash verification failed." in text
    assert f"(got certificate fingerprint: {format_fingerprint(sha256(other))})" in text


def test_pki_less_the_other_checks_still_apply(pinned):
    client = TlsClient(settings(ca=None, verify_hash=(pinned["fp"],),
                                verify_x509_name=("someone-else", "name")))
    with pytest.raises(SessionError, match="does not match verify-x509-name"):
        handshake(client, server_context(pinned["key"], [pinned["cert"]]))


def test_with_a_ca_both_the_chain_and_the_fingerprint_must_hold(pinned):
    ok = TlsClient(settings(verify_hash=(sha256(PKI.server),), remote_cert_tls="server"))
    handshake(ok, pki_server())
    assert ok.established
    with pytest.raises(SessionError, match="does not match peer-fingerprint"):
        handshake(TlsClient(settings(verify_hash=(pinned["fp"],))), pki_server())
    # the right fingerprint does not excuse a certificate outside the CA
    with pytest.raises(SessionError, match="CN=pin-server.* rejected: self-signed"):
        handshake(TlsClient(settings(verify_hash=(pinned["fp"],))),
                  server_context(pinned["key"], [pinned["cert"]]))


def test_verify_hash_checks_the_ca_that_signed_the_server_certificate():
    ca = crypto.X509.from_cryptography(PKI.ca)
    sha1 = bytes.fromhex(ca.digest("sha1").decode().replace(":", ""))
    ok = TlsClient(settings(verify_hash=(sha1,), verify_hash_depth=1, verify_hash_algo="SHA1"))
    handshake(ok, pki_server())
    assert ok.established
    ok = TlsClient(settings(verify_hash=(sha256(PKI.ca),), verify_hash_depth=1))
    handshake(ok, pki_server())
    assert ok.established
    # the server's own fingerprint is not the CA's
    bad = TlsClient(settings(verify_hash=(sha256(PKI.server),), verify_hash_depth=1))
    with pytest.raises(SessionError) as e:
        handshake(bad, pki_server())
    assert str(e.value).startswith("CA certificate 'O=erebus test-only, CN=Test-Only CA'")
    assert "in the server's chain does not match verify-hash SHA256" in str(e.value)
    assert format_fingerprint(sha256(PKI.ca)) in str(e.value)


def test_crl_dir_a_file_named_by_the_decimal_serial_revokes(tmp_path):
    d = tmp_path / "crl"
    d.mkdir()
    client = TlsClient(settings(crl_dir=str(d)))
    handshake(client, pki_server())
    assert client.established                  # nothing revoked yet
    (d / str(PKI.server.serial_number)).write_text("")
    with pytest.raises(SessionError) as e:
        handshake(TlsClient(settings(crl_dir=str(d))), pki_server())
    text = str(e.value)
    assert "server certificate 'O=erebus test-only, CN=server'" in text
    assert f"(serial {PKI.server.serial_number}) is revoked" in text
    assert f"crl-verify {d} dir" in text
    # at every depth: the CA's serial revokes the CA
    os.unlink(d / str(PKI.server.serial_number))
    (d / str(PKI.ca.serial_number)).write_text("")
    with pytest.raises(SessionError, match=r"CA certificate .*Test-Only CA.* is revoked"):
        handshake(TlsClient(settings(crl_dir=str(d))), pki_server())


def test_crl_dir_is_looked_up_at_each_handshake_through_its_probe():
    seen = []
    client = TlsClient(settings(crl_dir="/nowhere", crl_dir_probe=lambda p: seen.append(p)))
    handshake(client, pki_server())
    assert client.established
    assert f"/nowhere/{PKI.server.serial_number}" in seen
    assert f"/nowhere/{PKI.ca.serial_number}" in seen


def test_crl_dir_a_path_longer_than_2_6_allows_is_refused():
    client = TlsClient(settings(crl_dir="/" + "d" * 250, crl_dir_probe=lambda p: False))
    with pytest.raises(SessionError, match="longer than the 255 characters 2.6 allows"):
        handshake(client, pki_server())


# -- capath ------------------------------------------------------------------------------

def hashed(cert) -> str:
    return f"{crypto.X509.from_cryptography(cert).subject_name_hash() & 0xFFFFFFFF:08x}"


def test_capath_reads_the_hashed_layout_and_the_server_chains_to_it(tmp_path):
    (tmp_path / f"{hashed(PKI.ca)}.0").write_text(PKI.ca_pem)
    (tmp_path / "README").write_text("not a hashed name: never read")
    found = castore.read_capath(str(tmp_path))
    assert found.certificates == [der(PKI.ca)] and found.crls == [] and not found.warnings
    # no CRL in the directory: the stock client ignores the missing CRL, so does erebus
    client = TlsClient(settings(ca=None, capath=str(tmp_path),
                                capath_certs=tuple(found.certificates)))
    handshake(client, pki_server())
    assert client.established
    other = P.Pki("Other CA")
    with pytest.raises(SessionError, match="does not chain to the profile's CA"):
        handshake(TlsClient(settings(ca=None, capath=str(tmp_path),
                                     capath_certs=tuple(found.certificates))),
                  server_context(other.server_key, [other.server]))


def test_capath_crls_revoke(tmp_path):
    (tmp_path / f"{hashed(PKI.ca)}.0").write_text(PKI.ca_pem)
    crl = P.crl_pem(P.make_crl(PKI.ca_key, PKI.ca, revoked=[PKI.server.serial_number]))
    (tmp_path / f"{hashed(PKI.ca)}.r0").write_text(crl)
    found = castore.read_capath(str(tmp_path))
    assert len(found.crls) == 1
    client = TlsClient(settings(ca=None, capath=str(tmp_path),
                                capath_certs=tuple(found.certificates),
                                capath_crls=tuple(found.crls)))
    with pytest.raises(SessionError, match=r"CN=server.*is revoked by the CRL \(capath\)"):
        handshake(client, pki_server())


def test_capath_a_broken_file_is_named(tmp_path):
    name = tmp_path / f"{hashed(PKI.ca)}.0"
    name.write_text(PKI.ca_pem[:200] + "\n-----END CERTIFICATE-----\n")
    with pytest.raises(castore.CaPathError) as e:
        castore.read_capath(str(tmp_path))
    assert e.value.file == str(name) and str(name) in str(e.value)
    name.write_text("no PEM here")
    with pytest.raises(castore.CaPathError, match="no PEM certificate"):
        castore.read_capath(str(tmp_path))


def test_capath_files_openssl_would_never_open_are_left_out_with_a_warning(tmp_path):
    (tmp_path / "0badc0de.0").write_text(PKI.ca_pem)              # not its subject's hash
    (tmp_path / f"{hashed(PKI.ca)}.1").write_text(PKI.ca_pem)     # no .0 before it
    found = castore.read_capath(str(tmp_path))
    assert found.certificates == []
    assert len(found.warnings) == 2 and all("left out" in w for w in found.warnings)


def test_capath_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(castore, "MAX_FILES", 2)
    for n in range(3):
        (tmp_path / f"{hashed(PKI.ca)}.{n}").write_text(PKI.ca_pem)
    with pytest.raises(castore.CaPathError, match="more than the 2 erebus reads"):
        castore.read_capath(str(tmp_path))
    monkeypatch.setattr(castore, "MAX_ENTRIES", 2)
    with pytest.raises(castore.CaPathError, match="more than 2 entries"):
        castore.read_capath(str(tmp_path))


def test_capath_in_a_profile_warns_as_2_6_and_replaces_the_ca(tmp_path):
    d = tmp_path / "cas"
    d.mkdir()
    (d / f"{hashed(PKI.ca)}.0").write_text(PKI.ca_pem)
    profile = tmp_path / "p.ovpn"
    profile.write_text(HEAD + "remote-cert-tls server\ncapath cas\n" + client_material())
    reading = read_profile(str(profile))
    assert not reading.problems, reading.problems
    assert reading.profile.capath == str(d) and reading.profile.ca is None
    assert any("WARNING: experimental option --capath cas" in w for w in reading.warnings)
    code, report = check(str(profile))
    assert code == 0 and report["settings"]["server_checks"][0].startswith(
        "chain to the profile's CA (and capath")
    (d / f"{hashed(PKI.ca)}.0").unlink()
    (got,) = read_profile(str(profile)).problems
    assert got.option == "capath" and "openssl rehash" in str(got)


# -- tls-groups and tls-cert-profile -----------------------------------------------------

def test_tls_groups_a_group_the_server_lacks_fails_with_a_clear_message():
    sctx = pki_server()
    assert T._set_groups(sctx, "secp384r1")
    with pytest.raises(SessionError) as e:
        handshake(TlsClient(settings(tls_groups="X25519")), sctx)
    assert e.value.stage == "tls"
    assert "the profile's tls-groups X25519 may share no group with the server" in str(e.value)
    ok = TlsClient(settings(tls_groups="X25519:secp384r1"))
    handshake(ok, sctx)
    assert ok.established


def test_tls_groups_unknown_to_openssl_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown TLS group 'nope'"):
        TlsContext(settings(tls_groups="X25519:nope"))


def rsa_1024():
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    ca_key, ca = P.make_ca("Weak CA", key=key)
    return key, ca


def test_tls_cert_profile_sets_2_6s_security_levels():
    assert T._cipher_list(settings()).endswith(":@SECLEVEL=1")          # legacy, 2.6's
    assert T._cipher_list(settings(tls_cert_profile="suiteb")).endswith(":@SECLEVEL=3")
    assert T._cipher_list(settings(tls_cert_profile="insecure")).endswith(":@SECLEVEL=0")
    # a @SECLEVEL of tls-cipher comes after 2.6's level, so it wins
    assert T._cipher_list(settings(tls_cipher="DEFAULT:@SECLEVEL=0",
                                   tls_cert_profile="preferred")) == "DEFAULT:@SECLEVEL=0"


def test_tls_cert_profile_preferred_refuses_a_1024_bit_rsa_client_key():
    key, cert = rsa_1024()
    material = dict(cert=P.cert_pem(cert).encode(), key=P.key_pem(key).encode())
    TlsContext(settings(**material))                        # legacy (level 1): loads
    with pytest.raises(ConfigError, match="key too small"):
        TlsContext(settings(tls_cert_profile="preferred", **material))


def weak_server(key, cert) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_cipher_list(b"DEFAULT:@SECLEVEL=0")      # before the key, which it allows
    ctx.use_certificate(cert)
    ctx.use_privatekey(key)
    return ctx


def test_tls_cert_profile_preferred_refuses_a_1024_bit_rsa_server():
    key, cert = rsa_1024()
    ok = TlsClient(settings(ca=None, verify_hash=(sha256(cert),)))
    handshake(ok, weak_server(key, cert))
    assert ok.established                                   # legacy: level 1, as 2.6
    with pytest.raises(SessionError, match="CN=Weak CA.* rejected: EE certificate key too weak"):
        handshake(TlsClient(settings(ca=P.cert_pem(cert).encode(),
                                     tls_cert_profile="preferred")), weak_server(key, cert))


def test_check_says_the_fingerprint_decides_without_a_ca(tmp_path, pinned):
    profile = tmp_path / "p.ovpn"
    profile.write_text(HEAD + f"peer-fingerprint {colons(pinned['fp'])}\n"
                       "tls-groups X25519:secp256r1\n" + client_material())
    code, report = check(str(profile))
    assert code == 0, report
    checks = report["settings"]["server_checks"]
    assert checks[0].startswith("Using certificate fingerprint to verify peer (no CA option "
                                "set)")
    assert "peer-fingerprint: 1 fingerprint" in checks
    assert report["settings"]["tls_groups"] == "X25519:secp256r1"
    assert report["settings"]["tls_cert_profile"] == "legacy"


def test_a_handshake_stalled_with_tls_groups_says_how_2_6_refuses_it():
    """A 2.6 server sharing none of tls-groups restarts the client's instance before its
    alert leaves: the client only sees the handshake stall (virtual time, no server)."""
    from erebus.openvpn.session import ClientSession, SessionSettings, State
    from erebus.wire import openvpn as w
    for groups, hinted in (("X25519", True), (None, False)):
        client = ClientSession(SessionSettings(tls=settings(tls_groups=groups)), 0.0)
        client.datagrams_to_send(0.0)
        client.receive_datagram(w.build_control(
            w.P_CONTROL_HARD_RESET_SERVER_V2, 0, bytes(range(8)), [0], client.session_id,
            0, b""), 0.0)
        assert client.state is State.TLS_HANDSHAKE
        client.datagrams_to_send(0.5)                        # the ClientHello, unanswered
        stage, why = client.connect_timeout()
        assert stage == "tls"
        assert ("with tls-groups X25519, that is how a 2.6 server that offers none of "
                "those groups refuses it" in why) is hinted, why
