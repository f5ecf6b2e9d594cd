"""erebus.ipsec.swanctl: strongSwan swanctl.conf files -> IkeProfile."""

from __future__ import annotations

import base64
import datetime
import textwrap
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from erebus.errors import ConfigError
from erebus.ipsec.ikeprofile import IkeProfile
from erebus.ipsec.swanctl import list_connections, load_swanctl, parse_duration

DEFAULT_IKE = IkeProfile(path="", name="", remote_addrs=[]).proposals
DEFAULT_ESP = IkeProfile(path="", name="", remote_addrs=[]).esp_proposals


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def line_of(path: Path, needle: str) -> int:
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return n
    raise AssertionError(f"{needle!r} not in {path}")


def raises_at(path: Path, needle: str, match: str, **kw) -> ConfigError:
    """load_swanctl fails with a ConfigError naming *path* and the line holding *needle*."""
    with pytest.raises(ConfigError, match=match) as info:
        load_swanctl(str(kw.pop("conf", path)), **kw)
    exc = info.value
    assert exc.path == str(path)
    assert exc.line == line_of(path, needle), str(exc)
    assert exc.option
    assert str(exc).startswith(f"{path}:{exc.line}: ")
    return exc


# --------------------------------------------------------------------------- a small PKI

@pytest.fixture(scope="module")
def pki():
    now = datetime.datetime.now(datetime.timezone.utc)

    def issue(cn, issuer=None):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        iname, ikey = issuer if issuer else (name, key)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(iname)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .sign(ikey, hashes.SHA256()))
        return cert, key

    ca, ca_key = issue("test-ca")
    client, client_key = issue("client.test", (ca.subject, ca_key))
    other, other_key = issue("other.test", (ca.subject, ca_key))
    return {"ca": ca, "client": client, "client_key": client_key,
            "other_key": other_key, "other": other}


def pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_bytes(key, encoding=serialization.Encoding.PEM, password: bytes | None = None):
    enc = (serialization.BestAvailableEncryption(password) if password
           else serialization.NoEncryption())
    return key.private_bytes(encoding, serialization.PrivateFormat.PKCS8, enc)


def cert_dir(tmp_path: Path, pki, *, der=False, key_folder="private", key_der=False,
             with_key=True, encrypted=False) -> Path:
    d = tmp_path / "swanctl"
    for sub in ("x509", "x509ca", "private"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    enc = serialization.Encoding.DER if der else serialization.Encoding.PEM
    (d / "x509" / "client.crt").write_bytes(pki["client"].public_bytes(enc))
    (d / "x509ca" / "ca.crt").write_bytes(pem(pki["ca"]))
    # a decoy: another key that is not the certificate's
    (d / "private" / "a-other.key").write_bytes(key_bytes(pki["other_key"]))
    (d / "private" / "README").write_text("not a key\n")
    if with_key:
        (d / key_folder).mkdir(exist_ok=True)
        kenc = serialization.Encoding.DER if key_der else serialization.Encoding.PEM
        (d / key_folder / "client.key").write_bytes(
            key_bytes(pki["client_key"], kenc, b"passphrase" if encrypted else None))
    return d


CERT_CONF = """
    connections {
        home {
            remote_addrs = vpn.example.org
            vips = 0.0.0.0
            local {
                auth = pubkey
                certs = client.crt
                id = client.test
            }
            remote {
                auth = pubkey
                id = vpn.example.org
                cacerts = ca.crt
            }
            children {
                home {
                    remote_ts = 10.0.0.0/8
                }
            }
        }
    }
"""


# --------------------------------------------------------------------------- good profiles

def test_road_warrior_psk(tmp_path):
    conf = write(tmp_path / "swanctl.conf", """
        # road warrior with a pre-shared key
        connections {
            home {     # the office
                version = 2
                remote_addrs = vpn.example.org, 192.0.2.10   # two gateways
                remote_port = 500
                vips = 0.0.0.0
                proposals = aes128gcm16-prfsha256-x25519, default
                encap = yes
                mobike = no
                dpd_delay = 30s
                rekey_time = 4h
                local-1 {
                    auth = psk
                    id = "alice@example.org"
                }
                remote-1 {
                    auth = psk
                    id = vpn.example.org
                }
                children {
                    net {
                        remote_ts = 10.1.0.0/16,  192.168.7.1
                        esp_proposals = aes128gcm16, default
                        rekey_time = 50m
                        start_action = start
                        dpd_action = restart
                        close_action = start
                    }
                    other {
                        remote_ts = 172.16.0.0/12
                    }
                }
            }
        }
        secrets {
            ike-home {
                id-local = alice@example.org
                id-remote = vpn.example.org
                secret = "a secret # with a hash and \\"quotes\\""
            }
        }
        pools {
            unused { addrs = 10.3.0.0/24 }
        }
    """)
    p = load_swanctl(str(conf))
    assert p.path == str(conf) and p.name == "home"
    assert p.remote_addrs == ["vpn.example.org", "192.0.2.10"]
    assert (p.remote_port, p.natt_port, p.local_port) == (500, 4500, 0)
    assert p.vips is True and p.encap is True
    assert p.proposals == ["aes128gcm16-prfsha256-x25519", *DEFAULT_IKE]
    assert p.esp_proposals == list(dict.fromkeys(["aes128gcm16", *DEFAULT_ESP]))
    assert (p.local_auth, p.remote_auth) == ("psk", "psk")
    assert (p.local_id, p.remote_id) == ("alice@example.org", "vpn.example.org")
    assert p.psk == b'a secret # with a hash and "quotes"'
    assert p.child == "net"
    assert p.remote_ts == ["10.1.0.0/16", "192.168.7.1/32"]
    assert p.local_ts == []
    assert (p.dpd_delay, p.rekey_time, p.child_rekey_time) == (30.0, 14400.0, 3000.0)
    assert p.local_cert is None and p.cacerts == []
    assert list_connections(str(conf)) == ["home"]


def test_child_by_name_defaults_and_dynamic(tmp_path):
    conf = write(tmp_path / "swanctl.conf", """
        connections {
            c {
                remote_addrs = 192.0.2.1
                remote_port = 4501
                local_port = 500
                local { auth = psk }
                remote { auth = psk }
                children {
                    first { remote_ts = 10.0.0.0/8 }
                    second {
                        remote_ts = dynamic
                        local_ts = dynamic
                        esp_proposals = chacha20poly1305-noesn
                    }
                }
            }
        }
        secrets { ike { secret = 0x0102ff } }
    """)
    p = load_swanctl(str(conf), child="second")
    assert p.child == "second" and p.remote_ts == ["0.0.0.0/0"] and p.local_ts == []
    assert p.esp_proposals == ["chacha20poly1305"]
    assert p.proposals == DEFAULT_IKE and p.vips is False
    assert (p.remote_port, p.natt_port, p.local_port) == (4501, 4501, 0)
    assert p.psk == b"\x01\x02\xff"
    assert (p.local_id, p.remote_id) == (None, None)
    assert p.dpd_delay is None and p.rekey_time is None


def test_secret_chosen_by_ids_and_base64(tmp_path):
    conf = write(tmp_path / "swanctl.conf", """
        connections {
            c {
                remote_addrs = 192.0.2.1
                local { auth = psk
                        id = me }
                remote { auth = psk
                         id = gw }
                children { c { remote_ts = 10.0.0.0/8 } }
            }
        }
        secrets {
            ike-other { id = someone, gw
                        secret = wrong }
            ike-any { secret = fallback }
            ike-mine { id-a = me
                       id-b = gw
                       secret = 0s%s }
        }
    """ % base64.b64encode(b"right").decode())
    assert load_swanctl(str(conf)).psk == b"right"


def test_certificates_and_key_found_by_public_key(tmp_path, pki):
    d = cert_dir(tmp_path, pki)
    conf = write(d / "swanctl.conf", CERT_CONF)
    p = load_swanctl(str(conf))
    assert (p.local_auth, p.remote_auth) == ("pubkey", "pubkey")
    assert p.local_cert == pem(pki["client"])
    assert p.cacerts == [pem(pki["ca"])]
    key = serialization.load_pem_private_key(p.local_key, None)
    assert key.private_numbers() == pki["client_key"].private_numbers()
    assert p.psk is None and p.remote_ts == ["10.0.0.0/8"]


@pytest.mark.parametrize("folder", ["ecdsa", "pkcs8"])
def test_der_certificate_and_der_key_in_other_folders(tmp_path, pki, folder):
    d = cert_dir(tmp_path, pki, der=True, key_folder=folder, key_der=True)
    conf = write(d / "swanctl.conf", CERT_CONF.replace("cacerts = ca.crt", ""))
    p = load_swanctl(str(conf))
    assert p.local_cert == pem(pki["client"])          # DER converted to PEM
    assert p.local_key.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert p.cacerts == [pem(pki["ca"])]               # every CA of x509ca/


def test_absolute_certificate_paths(tmp_path, pki):
    d = cert_dir(tmp_path, pki)
    conf = write(tmp_path / "elsewhere" / "swanctl.conf",
                 CERT_CONF.replace("client.crt", str(d / "x509" / "client.crt"))
                 .replace("ca.crt", str(d / "x509ca" / "ca.crt")))
    (tmp_path / "elsewhere" / "private").symlink_to(d / "private")
    p = load_swanctl(str(conf))
    assert p.local_cert == pem(pki["client"]) and p.cacerts == [pem(pki["ca"])]


def test_several_connections(tmp_path):
    conf = write(tmp_path / "swanctl.conf", """
        connections {
            office { remote_addrs = 192.0.2.1
                     local { auth = psk }
                     remote { auth = psk }
                     children { net { remote_ts = 10.0.0.0/8 } } }
            lab { remote_addrs = 192.0.2.2
                  local { auth = psk }
                  remote { auth = psk }
                  children { net { remote_ts = 10.9.0.0/16 } } }
        }
        secrets { ike-1 { secret = s } }
    """)
    assert list_connections(str(conf)) == ["office", "lab"]
    with pytest.raises(ConfigError, match=r"2 connections: choose one with --conn "
                                          r"\(office, lab\)") as info:
        load_swanctl(str(conf))
    assert info.value.path == str(conf)
    assert load_swanctl(str(conf), conn="lab").remote_addrs == ["192.0.2.2"]
    with pytest.raises(ConfigError, match="no connection 'nope'"):
        load_swanctl(str(conf), conn="nope")


def test_includes_merge_and_override(tmp_path):
    conf = write(tmp_path / "swanctl.conf", """
        include conf.d/*.conf
        connections {
            home {
                include "home parts/*.conf"
                rekey_time = 1h
            }
        }
        include secrets.conf
        include nothing-matches/*.conf
    """)
    write(tmp_path / "conf.d" / "10-home.conf", """
        connections {
            home {
                remote_addrs = 192.0.2.1
                rekey_time = 2h
                local
                {
                    auth = psk
                }
            }
        }
    """)
    write(tmp_path / "home parts" / "remote.conf", """
        remote { auth = psk }
        children { c { remote_ts = 10.0.0.0/8 } }
    """)
    write(tmp_path / "secrets.conf", "secrets { ike { secret = from-include } }\n")
    p = load_swanctl(str(conf))
    assert p.remote_addrs == ["192.0.2.1"] and p.rekey_time == 3600.0
    assert p.psk == b"from-include" and p.remote_ts == ["10.0.0.0/8"]


def test_values_and_quoted_strings(tmp_path):
    conf = write(tmp_path / "swanctl.conf", """
        connections { c { remote_addrs = 192.0.2.1
          local { auth = psk
                  id = "multi \\
        line" } # the } ends the value
          remote { auth = psk
                   id = two   words }
          children { c { remote_ts = 10.0.0.0/8 } }
        } }
        secrets { ike { secret = "tab\\there" } }
    """)
    p = load_swanctl(str(conf))
    assert p.local_id == "multi line"
    assert p.remote_id == "two words"
    assert p.psk == b"tab\there"


def test_swan_lab_profiles(tmp_path):
    """The client files tests/swan_lab.py writes (no namespaces needed to write them)."""
    from tests.swan_lab import MODES, SwanLab, SwanPki
    lab = SwanLab()
    lab.dir = tmp_path
    (tmp_path / "pki").mkdir()
    lab.pki = SwanPki.generate(tmp_path / "pki")
    lab.psk = 'swan-lab-"quoted"\\secret'
    for name, mode in MODES.items():
        sp = lab._write_profile(mode)
        p = load_swanctl(str(sp.conf))
        assert list_connections(str(sp.conf)) == [sp.connection]
        assert (p.name, p.child) == (sp.connection, sp.child)
        assert p.remote_addrs == [sp.address] and p.vips is True
        assert p.proposals == list(lab.ike_proposals)
        assert p.esp_proposals == list(lab.esp_proposals)
        assert (p.local_id, p.remote_id) == (sp.local_id, sp.remote_id)
        assert p.remote_ts == [sp.remote_ts] + ([sp.remote_ts6] if sp.remote_ts6 else [])
        assert (p.local_auth, p.remote_auth) == (sp.auth, sp.auth)
        if sp.auth == "psk":
            assert p.psk == sp.psk.encode()
        else:
            assert p.local_cert == sp.cert.read_bytes()
            assert p.cacerts == [sp.cacert.read_bytes()]
            key = serialization.load_pem_private_key(p.local_key, None)
            ref = serialization.load_pem_private_key(sp.key.read_bytes(), None)
            assert key.private_numbers() == ref.private_numbers()


def test_durations():
    assert [parse_duration(t) for t in ("30", "30s", "5m", "1h", "2d", "0")] == \
        [30, 30, 300, 3600, 172800, 0]
    for bad in ("", "1.5h", "5 minutes", "-1s", "1w"):
        with pytest.raises(ValueError):
            parse_duration(bad)


# --------------------------------------------------------------------------- broken profiles

PSK_CONN = """
    connections {
        home {
            remote_addrs = 192.0.2.1
            %s
            local { auth = psk
                    id = me }
            remote { auth = psk
                     id = gw }
            children { home { remote_ts = 10.0.0.0/8
                              %s } }
        }
    }
    secrets { ike-home { secret = s } }
"""


@pytest.mark.parametrize("conn_line, child_line, needle, match", [
    ("version = 1", "", "version", "IKEv1 is not supported"),
    ("aggressive = yes", "", "aggressive", "IKEv1"),
    ("remote_adrs = 192.0.2.2", "", "remote_adrs", "unknown key"),
    ("", "esp_proposal = aes256gcm16", "esp_proposal", "unknown key"),
    ("dpd_delay = 30 seconds", "", "dpd_delay", "not a duration"),
    ("proposals = aes256-sha256-modp1024x", "", "proposals", "IKE proposal not supported"),
    ("", "esp_proposals = aes256gcm16-modp2048", "esp_proposals", "PFS"),
    ("", "mode = transport", "mode", "only tunnel mode"),
    ("", "ah_proposals = sha256", "ah_proposals", "AH is not supported"),
    ("vips = 0.0.0.0, 10.1.2.3", "", "vips", "a second IPv4 virtual IP"),
    ("vips = ::, ::", "", "vips", "a second IPv6 virtual IP"),
    ("vips = any", "", "vips", ":: for any IPv6"),
    ("remote_port = 70000", "", "remote_port", "not a port"),
    ("encap = maybe", "", "encap", "not a boolean"),
    ("", "local_ts = 10.0.0.1-10.0.0.9", "local_ts", "ranges"),
    ("", "local_ts = 2001:db8::/32x", "local_ts", "an IPv6 prefix like"),
    ("", "local_ts = 2001:db8::1-2001:db8::9", "local_ts", "ranges"),
    ("mediation_peer = x", "", "mediation_peer", "mediation"),
    ("typo { }", "", "typo", "unknown section"),
])
def test_refused_settings_name_file_and_line(tmp_path, conn_line, child_line, needle, match):
    conf = write(tmp_path / "swanctl.conf", PSK_CONN % (conn_line, child_line))
    exc = raises_at(conf, needle, match)
    assert needle in exc.option


def test_ignored_settings_are_accepted(tmp_path):
    conf = write(tmp_path / "swanctl.conf", PSK_CONN % (
        "mobike = no\n            aggressive = no\n            fragmentation = yes\n"
        "            keyingtries = 0\n            pools = p\n            unique = never",
        "updown = /usr/lib/ipsec/_updown\n                              mode = tunnel"))
    assert load_swanctl(str(conf)).psk == b"s"


def test_eap_refused(tmp_path):
    conf = write(tmp_path / "swanctl.conf", """
        connections {
            eap {
                remote_addrs = vpn.example.org
                local { auth = eap-mschapv2
                        eap_id = alice }
                remote { auth = pubkey }
                children { c { remote_ts = 0.0.0.0/0 } }
            }
        }
    """)
    raises_at(conf, "eap-mschapv2", "EAP is not supported yet")


def test_multiple_auth_rounds_refused(tmp_path):
    conf = write(tmp_path / "swanctl.conf", PSK_CONN % (
        "local-2 { auth = psk }", ""))
    raises_at(conf, "local { auth = psk", r"several local authentication rounds "
              r"\(local-2, local\): only one round")


def test_missing_secret(tmp_path):
    conf = write(tmp_path / "swanctl.conf", (PSK_CONN % ("", "")).replace(
        "secrets { ike-home { secret = s } }", ""))
    raises_at(conf, "local { auth = psk", "no secrets")


def test_no_matching_secret(tmp_path):
    conf = write(tmp_path / "swanctl.conf", (PSK_CONN % ("", "")).replace(
        "secrets { ike-home { secret = s } }",
        "secrets {\n  ike-a { id = x\n secret = 1 }\n  ike-b { id = me\n id2 = y\n"
        " secret = 2 }\n}"))
    raises_at(conf, "ike-a", "none of the ike secrets")


def test_bad_hex_secret(tmp_path):
    conf = write(tmp_path / "swanctl.conf", (PSK_CONN % ("", "")).replace(
        "secret = s", "secret = 0xzz"))
    raises_at(conf, "0xzz", "not valid hex")


def test_certificate_without_its_private_key(tmp_path, pki):
    d = cert_dir(tmp_path, pki, with_key=False)
    conf = write(d / "swanctl.conf", CERT_CONF)
    exc = raises_at(conf, "certs = client.crt", "no private key for .*client.crt")
    assert exc.option == "connections.home.local.certs"


def test_encrypted_private_key_refused(tmp_path, pki):
    d = cert_dir(tmp_path, pki, encrypted=True)
    conf = write(d / "swanctl.conf", CERT_CONF)
    raises_at(conf, "certs = client.crt",
              r"encrypted keys are not supported: .*private/client.key")


def test_missing_certificate_file(tmp_path, pki):
    d = cert_dir(tmp_path, pki)
    conf = write(d / "swanctl.conf", CERT_CONF.replace("cacerts = ca.crt", "cacerts = nope.crt"))
    raises_at(conf, "cacerts", "cannot read certificate .*x509ca/nope.crt")


def test_pubkey_without_any_ca(tmp_path, pki):
    d = cert_dir(tmp_path, pki)
    (d / "x509ca" / "ca.crt").unlink()
    conf = write(d / "swanctl.conf", CERT_CONF.replace("cacerts = ca.crt", ""))
    raises_at(conf, "remote {", "no CA to check it")


def test_error_in_included_file_names_that_file(tmp_path):
    conf = write(tmp_path / "swanctl.conf", PSK_CONN % ("include extra.conf", ""))
    extra = write(tmp_path / "extra.conf", "# extra settings\n\nrekey_tiem = 1h\n")
    raises_at(extra, "rekey_tiem", "unknown key", conf=conf)


def test_missing_include(tmp_path):
    conf = write(tmp_path / "swanctl.conf", "# nothing\ninclude missing.conf\n")
    raises_at(conf, "include missing.conf", "does not exist")


@pytest.mark.parametrize("text, needle, match", [
    ("connections {\n  c : base {\n  }\n}\n", "c : base", "references"),
    ("connections {\n  c {\n    remote_addrs = x\n}\n", "connections", "never closed"),
    ("connections {\n}\n}\n", "}", "without a section"),
    ("connections {\n  c {\n    id = \"open\n  }\n}\n", "id =", "unterminated string"),
    ("connections {\n  c\n  remote_addrs\n}\n", "remote_addrs", "'=' or '{' expected"),
    ("connectoins {\n}\n", "connectoins", "unknown section"),
])
def test_syntax_errors(tmp_path, text, needle, match):
    conf = tmp_path / "swanctl.conf"
    conf.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        load_swanctl(str(conf))
    lines = text.splitlines()
    want = [n for n, line in enumerate(lines, 1) if needle in line]
    assert info.value.path == str(conf)
    assert info.value.line in want, str(info.value)


def test_line_numbers_after_multiline_string(tmp_path):
    conf = write(tmp_path / "swanctl.conf", PSK_CONN % (
        'local_addrs = "a\\\n   b"\n            versoin = 2', ""))
    raises_at(conf, "versoin", "unknown key")


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read") as info:
        load_swanctl(str(tmp_path / "nope.conf"))
    assert info.value.path == str(tmp_path / "nope.conf")


def test_certificate_from_x509_folder_without_certs_key(tmp_path, pki):
    """swanctl loads every file of x509/; with one there, local.certs may be left out."""
    d = cert_dir(tmp_path, pki)
    conf = write(d / "swanctl.conf", "\ufeff" + CERT_CONF.replace("certs = client.crt", "")
                 .replace("cacerts = ca.crt", ""))
    p = load_swanctl(str(conf))
    assert p.local_cert == pem(pki["client"]) and p.local_key
    (d / "x509" / "second.crt").write_bytes(pem(pki["other"]))
    raises_at(conf, "local {", "give local.certs")


def test_default_auth_is_pubkey(tmp_path):
    """No local/remote sections: strongSwan's default (pubkey) needs a certificate."""
    conf = write(tmp_path / "swanctl.conf", """
        connections {
            bare {
                remote_addrs = 192.0.2.1
                children { c { remote_ts = 10.0.0.0/8 } }
            }
        }
    """)
    raises_at(conf, "bare {", "needs our certificate")


# --------------------------------------------------------------------------- warnings

@pytest.mark.parametrize("remote_id, needle", [("", "remote {"),
                                               ("id = %any", "id = %any")])
def test_no_remote_id_with_certificates_warns_with_file_and_line(tmp_path, pki, capsys,
                                                                remote_id, needle):
    """Like the stock OpenVPN client's "No server certificate verification method has been
    enabled": without remote.id any certificate of the trusted CAs passes as the
    responder's. `erebus check` shows it with the file and line."""
    from erebus.check import main
    d = cert_dir(tmp_path, pki)
    conf = write(d / "swanctl.conf", CERT_CONF.replace("id = vpn.example.org", remote_id))
    p = load_swanctl(str(conf))
    line = line_of(conf, needle)
    (warning,) = p.warnings
    assert warning.startswith(f"{conf}:{line}: connections.home.remote.id: no remote.id: ")
    assert "\n" not in warning
    assert main(str(conf), False) == 0
    assert f"warning: {warning}" in capsys.readouterr().out


def test_no_warning_with_remote_id_or_with_a_psk(tmp_path, pki):
    """With a PSK the responder proves the secret, not a name: strongSwan says nothing
    about a missing remote id, and neither do we."""
    d = cert_dir(tmp_path, pki)
    assert load_swanctl(str(write(d / "swanctl.conf", CERT_CONF))).warnings == []
    conf = write(tmp_path / "psk" / "swanctl.conf", """
        connections {
            home {
                remote_addrs = 192.0.2.10
                local { auth = psk }
                remote { auth = psk }
                children { net { remote_ts = 10.0.0.0/8 } }
            }
        }
        secrets { ike { secret = s3cret } }
    """)
    assert load_swanctl(str(conf)).warnings == []


def test_loading_for_a_tunnel_logs_the_warnings_once(tmp_path, pki, caplog):
    """`erebus up` / `probe` load through the family, which logs the profile's warnings
    when it is read (as for .ovpn and ESP profiles); the tunnel does not repeat them."""
    import logging
    from erebus.families import family_of
    from erebus.runtime.ipsec import IkeTunnel
    d = cert_dir(tmp_path, pki)
    conf = write(d / "swanctl.conf", CERT_CONF.replace("id = vpn.example.org", ""))
    with caplog.at_level(logging.WARNING, logger="erebus.ipsec"):
        IkeTunnel(family_of(str(conf)).load(str(conf), None))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "connections.home.remote.id: no remote.id" in warnings[0]


# --------------------------------------------------------------------------- charon's defaults

def _psk_conf(tmp_path, conn: str = "", child: str = "remote_ts = 10.0.0.0/8") -> Path:
    return write(tmp_path / "swanctl.conf", f"""
        connections {{
            home {{
                remote_addrs = 192.0.2.10
                {conn}
                local {{ auth = psk }}
                remote {{ auth = psk }}
                children {{ net {{
                    {child}
                }} }}
            }}
        }}
        secrets {{ ike {{ secret = s3cret }} }}
    """)


def test_certificate_without_local_id_leaves_the_identity_to_the_certificate(tmp_path, pki):
    """No local.id with a certificate: the profile says nothing (local_id None) and the
    initiator sends the certificate's subject DN, as charon ("id not specified,
    defaulting to cert subject"); see test_ike_initiator."""
    from erebus.ipsec.ike import IkeInitiator
    from erebus.wire.ike import IDi
    d = cert_dir(tmp_path, pki)
    p = load_swanctl(str(write(d / "swanctl.conf", CERT_CONF.replace("id = client.test", ""))))
    assert p.local_id is None and p.local_auth == "pubkey" and p.warnings == []
    ini = IkeInitiator(p, 0.0, local_addr=("198.18.130.2", 40000))
    assert ini._local_identity() == IDi(9, pki["client"].subject.public_bytes())


def test_a_dn_local_id_is_read_and_a_bad_hex_id_refused(tmp_path):
    p = load_swanctl(str(_psk_conf(tmp_path).parent / "swanctl.conf"))
    conf = write(tmp_path / "dn" / "swanctl.conf", _psk_conf(tmp_path).read_text().replace(
        "local { auth = psk }", 'local {\n auth = psk\n id = "C=CH, CN=moon"\n }'))
    assert load_swanctl(str(conf)).local_id == "C=CH, CN=moon" and p.local_id is None
    bad = write(tmp_path / "bad" / "swanctl.conf", conf.read_text().replace(
        '"C=CH, CN=moon"', '"keyid:#zz"'))
    raises_at(bad, "keyid:#zz", "hex")


def test_rekey_defaults_are_charons(tmp_path):
    """Unset: None, which the initiator reads as charon's 4h (IKE) and 1h (CHILD);
    0 means never; children's life_time alone gives rekey_time = life_time / 1.1."""
    from erebus.ipsec.ike import IkeInitiator
    p = load_swanctl(str(_psk_conf(tmp_path)))
    ini = IkeInitiator(p, 0.0)
    assert (p.rekey_time, p.child_rekey_time) == (None, None)
    assert (ini.rekey_time, ini.child_rekey_time) == (4 * 3600.0, 3600.0)
    p = load_swanctl(str(_psk_conf(tmp_path, "rekey_time = 0",
                                   "remote_ts = 10.0.0.0/8\n rekey_time = 0s")))
    assert (p.rekey_time, p.child_rekey_time) == (0.0, 0.0)
    ini = IkeInitiator(p, 0.0)
    assert (ini.rekey_time, ini.child_rekey_time) == (0.0, 0.0)
    p = load_swanctl(str(_psk_conf(tmp_path, "", "remote_ts = 10.0.0.0/8\n life_time = 66m")))
    assert p.child_rekey_time == pytest.approx(3600.0)


def test_reauth_time_alone_rekeys_at_that_interval_with_a_warning(tmp_path):
    conf = _psk_conf(tmp_path, "reauth_time = 2h")
    p = load_swanctl(str(conf))
    assert p.rekey_time == 7200.0
    (warning,) = p.warnings
    assert warning.startswith(f"{conf}:{line_of(conf, 'reauth_time')}: "
                              "connections.home.reauth_time: erebus does not reauthenticate")
    p = load_swanctl(str(_psk_conf(tmp_path, "reauth_time = 2h\n rekey_time = 1h")))
    assert p.rekey_time == 3600.0 and len(p.warnings) == 1


@pytest.mark.parametrize("conn, key, needle", [
    ("local_port = 500", "local_port", "ephemeral port"),
    ("encap = no", "encap", "UDP-encapsulates ESP anyway"),
])
def test_settings_erebus_cannot_honour_warn_with_file_and_line(tmp_path, conn, key, needle):
    conf = _psk_conf(tmp_path, conn)
    (warning,) = load_swanctl(str(conf)).warnings
    assert warning.startswith(f"{conf}:{line_of(conf, key)}: connections.home.{key}: ")
    assert needle in warning


@pytest.mark.parametrize("child", ["", "remote_ts = dynamic"])
def test_dynamic_remote_ts_warns_that_erebus_proposes_everything(tmp_path, child):
    conf = _psk_conf(tmp_path, "", child)
    p = load_swanctl(str(conf))
    assert p.remote_ts == ["0.0.0.0/0"]
    (warning,) = p.warnings
    needle = child or "net {"
    assert warning.startswith(f"{conf}:{line_of(conf, needle)}: "
                              "connections.home.children.net.remote_ts: remote_ts 'dynamic'")


def test_fragmentation_no_is_not_announced(tmp_path):
    from erebus.ipsec.ike import IkeInitiator
    from erebus.wire import ike as w
    assert load_swanctl(str(_psk_conf(tmp_path))).fragmentation is True
    for mode, announced in (("yes", True), ("accept", True), ("no", False)):
        p = load_swanctl(str(_psk_conf(tmp_path, f"fragmentation = {mode}")))
        (init,) = IkeInitiator(p, 0.0).datagrams_to_send(0.0)
        msg = w.parse_message(init)
        assert (msg.notify(w.IKEV2_FRAGMENTATION_SUPPORTED) is not None) == announced
    raises_at(_psk_conf(tmp_path, "fragmentation = maybe"), "fragmentation", "yes, accept")


def test_local_ts_dynamic_without_a_virtual_ip_is_our_address(tmp_path):
    """charon's 'dynamic' local_ts: 0.0.0.0/0 when asking for a virtual IP, else the
    address we send from."""
    from erebus.ipsec.ike import IkeInitiator
    p = load_swanctl(str(_psk_conf(tmp_path)))
    assert p.vips is False and p.local_ts == []
    assert IkeInitiator(p, 0.0, local_addr=("198.18.130.2", 4)).\
        _local_ts() == ["198.18.130.2/32"]
    p.vips = True
    assert IkeInitiator(p, 0.0, local_addr=("198.18.130.2", 4))._local_ts() == ["0.0.0.0/0"]


# --------------------------------------------------------------------------- IPv6 inside

@pytest.mark.parametrize("vips, v4, v6, dynamic", [
    ("vips = 0.0.0.0", True, False, ["0.0.0.0/0"]),
    ("vips = ::", False, True, ["::/0"]),
    ("vips = 0.0.0.0, ::", True, True, ["0.0.0.0/0", "::/0"]),
    ("vips = 10.1.2.3, 2001:2:0:130::9", True, True, ["0.0.0.0/0", "::/0"]),
])
def test_vips_of_both_families(tmp_path, vips, v4, v6, dynamic):
    from erebus.ipsec.ike import IkeInitiator
    p = load_swanctl(str(_psk_conf(tmp_path, vips, "remote_ts = 10.0.0.0/8, 2001:2::/48")))
    assert (p.vips, p.vips6) == (v4, v6)
    assert p.remote_ts == ["10.0.0.0/8", "2001:2::/48"]
    assert IkeInitiator(p, 0.0, local_addr=("198.18.130.2", 4))._local_ts() == dynamic


def test_ipv6_selectors_and_dynamic_with_an_ipv6_vip(tmp_path):
    p = load_swanctl(str(_psk_conf(tmp_path, "vips = 0.0.0.0, ::",
                                   "local_ts = 2001:2:0:130::/112, 198.19.231.0/24\n"
                                   "remote_ts = dynamic")))
    assert p.local_ts == ["2001:2:0:130::/112", "198.19.231.0/24"]
    assert p.remote_ts == ["0.0.0.0/0", "::/0"]
    assert any("0.0.0.0/0 and ::/0" in w for w in p.warnings)
    # no remote_ts at all: charon's dynamic, both families
    p = load_swanctl(str(_psk_conf(tmp_path, "vips = ::", "esp_proposals = aes256gcm16")))
    assert p.remote_ts == ["0.0.0.0/0", "::/0"]


def test_ipv6_responder_address_stays_refused(tmp_path):
    conf = write(tmp_path / "swanctl.conf", (PSK_CONN % ("", "")).replace(
        "192.0.2.1", "2001:2::1"))
    exc = raises_at(conf, "2001:2::1", "IPv6 peers are not supported")
    assert "vips = ::" in str(exc)
