"""Every profile reader answers malformed input with a ConfigError and nothing else: random
bytes, and random edits of a valid profile (.ovpn, ESP TOML, swanctl.conf)."""

from __future__ import annotations

import base64
import datetime
import io
import os
import tempfile
import tomllib

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings, strategies as st

from erebus.errors import ConfigError
from erebus.ipsec.profile import load_esp_profile, parse_esp_profile
from erebus.ipsec.swanctl import list_connections, load_swanctl
from erebus.openvpn.options import OPTIONS
from erebus.openvpn.reader import load_profile, parse_profile, read_profile
from tests.profiles import pki as P

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

_PKI = P.Pki()
OVPN = ("client\ndev tun\nproto udp\nremote 198.18.1.1 1194\nremote-cert-tls server\n"
        "<connection>\nremote 198.18.1.2 443 tcp\n</connection>\ncipher AES-256-GCM\n"
        "data-ciphers AES-256-GCM:AES-128-GCM\nkeepalive 10 60\nverb 3\n"
        f"{_PKI.inline()}")

TOML = """
[ipsec]
peer = "198.18.1.1:4600"
local_ip = "198.19.11.2/24"
remote_ts = ["198.19.20.0/24"]
dns = ["198.19.20.53"]
mtu = 1400
replay_window = 64
keepalive = 20
[ipsec.outbound]
spi = 0x00001001
transform = "aes256-sha256"
key = "%s"
integrity_key = "%s"
[ipsec.inbound]
spi = "0x2002"
transform = "aes256-sha256"
key = "%s"
integrity_key = "%s"
""" % ("11" * 32, "22" * 32, "33" * 32, "44" * 32)

SWANCTL = """
connections {
    home {
        version = 2
        remote_addrs = vpn.example.org, 192.0.2.10
        remote_port = 4500
        vips = 0.0.0.0
        proposals = aes128gcm16-prfsha256-x25519, default
        dpd_delay = 30s
        local-1 { auth = psk
                  id = "alice@example.org" }
        remote-1 { auth = psk
                   id = vpn.example.org }
        children {
            net { remote_ts = 10.1.0.0/16, 192.168.7.1
                  esp_proposals = aes128gcm16, default
                  rekey_time = 50m }
        }
    }
}
secrets {
    ike-home { id-local = alice@example.org
               secret = 0x0102ff }
}
"""

_VOCAB = ["\n", "\r\n", " ", "\t", "\0", "\ufeff", "#", ";", "\\", '"', "'", "{", "}", "=",
          ":", ",", "0", "-1", "65536", "99999999999999999999", "0x", "0s", "[inline]",
          "<ca>", "</ca>", "<key>", "</key>", "<connection>", "</connection>", "-----BEGIN",
          "-----END CERTIFICATE-----", "include", "include missing.conf", "[ipsec]",
          "[ipsec.inbound]", "= [", "= {", "= 1.5", "= true", "= 1979-05-27", "é", "\udcff",
          "auth = pubkey", "psk", "%any", "dynamic", "::1", "10.0.0.0/33", "aes256gcm16",
          "tap", "tcp-server", "udp6", "dir", "none", "bidirectional", "setenv opt", "²",
          "\u0661\u0662", "1_000", "\nx = " + "[" * 1000, "{a=" * 1000,
          *sorted(OPTIONS)[::7]]

_EDIT = st.tuples(st.floats(0, 1), st.sampled_from(["delete", "insert", "replace", "line"]),
                  st.integers(0, 40),
                  st.one_of(st.sampled_from(_VOCAB), st.text(max_size=12),
                            st.binary(max_size=12).map(lambda b: b.decode("latin-1"))))


def mutate(text: str, edits) -> bytes:
    """``text`` after a few random edits, encoded (with surrogates as raw bytes, so the
    result may not be UTF-8)."""
    for where, kind, n, word in edits:
        at = int(where * len(text))
        if kind == "delete":
            text = text[:at] + text[at + n:]
        elif kind == "insert":
            text = text[:at] + word + text[at:]
        elif kind == "replace":
            text = text[:at] + word + text[at + len(word):]
        else:                                     # a whole line moved or doubled
            lines = text.split("\n")
            i = at % max(1, len(lines))
            lines.insert(n % (len(lines) + 1), lines[i])
            text = "\n".join(lines)
    return text.encode("utf-8", "surrogateescape")


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory(prefix="erebus-fuzz-") as d:
        yield d


def _write(folder: str, name: str, data: bytes) -> str:
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _ovpn(path: str) -> None:
    reading = read_profile(path)
    assert all(isinstance(p, ConfigError) for p in reading.problems)
    load_profile(path, stdin=io.StringIO(), prompt=lambda _: pytest.fail("prompted"))


def _swanctl(path: str) -> None:
    list_connections(path)
    load_swanctl(path)


# each reader: how to read a file, a valid profile, the file's name
READERS = {"ovpn": (_ovpn, OVPN, "fuzz.ovpn"),
           "esp-toml": (load_esp_profile, TOML, "fuzz.toml"),
           "swanctl": (_swanctl, SWANCTL, "swanctl.conf")}


def _only_config_errors(folder: str, kind: str, data: bytes) -> None:
    read, _, name = READERS[kind]
    if data.count(b"include") > data.count(b"include missing.conf"):
        return                                   # no walking of the file system
    try:
        read(_write(folder, name, data))
    except ConfigError as exc:
        assert str(exc)


def test_the_valid_profiles_are_valid(folder):
    load_profile(_write(folder, "valid.ovpn", OVPN.encode()))
    load_esp_profile(_write(folder, "valid.toml", TOML.encode()))
    assert load_swanctl(_write(folder, "swanctl.conf", SWANCTL.encode())).psk == b"\1\2\xff"


@pytest.mark.parametrize("kind", READERS)
@FUZZ
@given(data=st.binary(max_size=400))
def test_random_bytes(folder, kind, data):
    _only_config_errors(folder, kind, data)


@pytest.mark.parametrize("kind", READERS)
@FUZZ
@given(edits=st.lists(_EDIT, min_size=1, max_size=6))
def test_random_edits_of_a_valid_profile(folder, kind, edits):
    _only_config_errors(folder, kind, mutate(READERS[kind][1], edits))


_TOML_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
              st.datetimes().map(lambda d: d.replace(tzinfo=datetime.timezone.utc)),
              st.dates(), st.times(), st.sampled_from(["11" * 32, "0x1001", "aes256-sha256",
                                                       "198.18.1.1:4600", "198.19.11.2/24",
                                                       "10.0.0.0/8", "aes256gcm16"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["spi", "transform", "key",
                                                             "integrity_key", "x"]), inner,
                                            max_size=5)),
    max_leaves=12)
_TOP_KEYS = ["peer", "local_ip", "remote_ts", "dns", "mtu", "replay_window", "esn",
             "lifetime_packets", "lifetime_bytes", "local_port", "keepalive",
             "connect_timeout", "allow_static_aead", "outbound", "inbound"]


@FUZZ
@given(table=st.dictionaries(st.sampled_from(_TOP_KEYS), _TOML_VALUES, max_size=15),
       keep=st.sets(st.sampled_from(_TOP_KEYS)))
def test_esp_values_of_any_type(table, keep):
    good = tomllib.loads(TOML)["ipsec"]
    data = {"ipsec": {**{k: v for k, v in good.items() if k in keep}, **table}}
    try:
        parse_esp_profile(data, "typed.toml")
    except ConfigError:
        pass


# -- what the fuzzing found ---------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("x = " + "[" * 5000 + "]" * 5000, "nested too deeply"),
    ("x = " + "{a=" * 3000 + "1" + "}" * 3000, "nested too deeply"),
    (TOML.replace("198.18.1.1:4600", "198.18.1.1:\u00b2"), "with a port from 1 to 65535"),
])
def test_toml_that_once_escaped(folder, text, message):
    with pytest.raises(ConfigError, match=message):
        load_esp_profile(_write(folder, "found.toml", text.encode()))


@pytest.mark.parametrize("port", ["\u00b2", "\u0661\u0662"])
def test_a_swanctl_port_in_other_digits_is_refused(folder, port):
    path = _write(folder, "swanctl.conf", SWANCTL.replace("remote_port = 4500",
                                                          f"remote_port = {port}").encode())
    with pytest.raises(ConfigError, match="is not a port number"):
        load_swanctl(path)


def test_a_client_certificate_whose_key_does_not_load_is_a_config_error():
    """An EC point off its curve: cryptography parses the certificate but not its key;
    the profile reads, and building the TLS context refuses it."""
    der = _PKI.client.public_bytes(serialization.Encoding.DER)
    point = _PKI.client.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    bad = der.replace(point, point[:-1] + bytes([point[-1] ^ 1]))
    assert bad != der
    body = base64.encodebytes(bad).decode()
    pem = f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n"
    profile = parse_profile(OVPN.replace(P.cert_pem(_PKI.client), pem), "bad-key.ovpn")
    with pytest.raises(ConfigError, match="bad-key.ovpn: cert: cannot load the client "
                                          "certificate and key"):
        profile.tls_context()
