"""ESP profiles (TOML): what loads, and errors that name the file and the key."""

from __future__ import annotations

import pytest

from erebus.errors import ConfigError
from erebus.ipsec.profile import load_esp_profile
from erebus.ipsec.wireshark import tshark_esp_options, wireshark_esp_sa

GCM_KEY = "11" * 36
CBC_KEY = "22" * 32
HMAC_KEY = "33" * 32

EXAMPLE = f"""
[ipsec]
peer = "198.18.1.1:4600"          # UDP address of the ESP peer
local_ip = "198.19.11.2"          # our inner (virtual) address
remote_ts = ["198.19.20.0/24"]    # what the tunnel reaches
allow_static_aead = true          # AES-GCM below, with manual keys
[ipsec.outbound]                  # our packets to the peer
spi = 0x00001001
transform = "aes256gcm16"
key = "{GCM_KEY}"
[ipsec.inbound]                   # the peer's packets to us
spi = 0x00002002
transform = "aes256-sha256"
key = "{CBC_KEY}"
integrity_key = "{HMAC_KEY}"
"""


def write(tmp_path, text, name="site.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_example_from_the_issue(tmp_path):
    p = load_esp_profile(write(tmp_path, EXAMPLE))
    assert (p.peer_host, p.peer_port, p.peer) == ("198.18.1.1", 4600, "198.18.1.1:4600")
    assert (p.local_ip, p.netmask, p.remote_ts) == ("198.19.11.2", "255.255.255.255",
                                                    ["198.19.20.0/24"])
    assert p.outbound.spi == 0x1001 and p.outbound.transform.name == "aes256gcm16"
    assert p.outbound.key == bytes.fromhex(GCM_KEY) and p.outbound.integrity_key == b""
    assert p.inbound.spi == 0x2002 and p.inbound.integrity_key == bytes.fromhex(HMAC_KEY)
    assert (p.mtu, p.replay_window, p.esn, p.dns, p.local_port) == (1400, 64, False, [], 0)
    assert p.lifetime_packets is None and p.keepalive == 20.0
    out, inb = p.security_associations()
    assert (out.spi, inb.spi, inb.replay.size) == (0x1001, 0x2002, 64)


def test_optional_keys(tmp_path):
    text = EXAMPLE.replace('remote_ts = ["198.19.20.0/24"]', """remote_ts = "198.19.20.0/24"
dns = ["198.19.20.53"]
mtu = 1300
replay_window = 1024
esn = true
lifetime_packets = 1000
lifetime_bytes = 1_000_000
local_port = 4500
keepalive = 0
""").replace('local_ip = "198.19.11.2"', 'local_ip = "198.19.11.2/24"')
    text = text.replace('key = "' + CBC_KEY, 'key = "0x' + ":".join([CBC_KEY[i:i + 2] for i in
                                                                   range(0, 64, 2)]))
    p = load_esp_profile(write(tmp_path, text))
    assert p.remote_ts == ["198.19.20.0/24"] and p.netmask == "255.255.255.0"
    assert (p.dns, p.mtu, p.replay_window, p.esn) == (["198.19.20.53"], 1300, 1024, True)
    assert (p.lifetime_packets, p.lifetime_bytes, p.local_port) == (1000, 1_000_000, 4500)
    assert p.inbound.key == bytes.fromhex(CBC_KEY)
    session = p.new_session(0.0)
    assert session.get_timer() is None                    # keepalive = 0: none
    assert session.outbound.esn and session.outbound.lifetime_packets == 1000


@pytest.mark.parametrize("change, option, words", [
    (("peer = \"198.18.1.1:4600\"", "peer = \"198.18.1.1:99999\""), "ipsec.peer", "port"),
    (("local_ip = \"198.19.11.2\"", "local_ip = \"nowhere\""), "ipsec.local_ip", "IPv4"),
    (("remote_ts = [\"198.19.20.0/24\"]", "remote_ts = [\"198.19.20.1/24\"]"),
     "ipsec.remote_ts", "host bits"),
    (("remote_ts = [\"198.19.20.0/24\"]", "remote_ts = []"), "ipsec.remote_ts", "non-empty"),
    (("spi = 0x00001001", "spi = 7"), "ipsec.outbound.spi", "reserved"),
    (("transform = \"aes256gcm16\"", "transform = \"aes256gcm8\""),
     "ipsec.outbound.transform", "aes256-sha256"),
    ((f'key = "{GCM_KEY}"', f'key = "{"11" * 32}"'), "ipsec.outbound.key",
     "32-byte key followed by the 4-byte salt"),
    ((f'key = "{GCM_KEY}"', 'key = "xyz"'), "ipsec.outbound.key", "hex"),
    ((f'integrity_key = "{HMAC_KEY}"', 'integrity_key = "33"'), "ipsec.inbound.integrity_key",
     "32 bytes"),
    ((f'integrity_key = "{HMAC_KEY}"', ''), "ipsec.inbound.integrity_key", "missing"),
    ((f'key = "{GCM_KEY}"', f'key = "{GCM_KEY}"\nintegrity_key = "{HMAC_KEY}"'),
     "ipsec.outbound.integrity_key", "AEAD"),
    (("[ipsec.outbound]", "replay_windw = 5\n[ipsec.outbound]"), "ipsec.replay_windw",
     "unknown key"),
    (("spi = 0x00002002", "spi = 0x00002002\nsalt = 1"), "ipsec.inbound.salt", "unknown key"),
    (("[ipsec]", "[ipsec]\nmtu = 100"), "ipsec.mtu", "576"),
    (("[ipsec]", "[ipsec]\nesn = 1"), "ipsec.esn", "true or false"),
    ((f'key = "{CBC_KEY}"\n', f'key = "{"22" * 32}"\n'), None, None),   # fine: not reused
])
def test_errors_name_file_and_key(tmp_path, change, option, words):
    path = write(tmp_path, EXAMPLE.replace(*change))
    if option is None:
        load_esp_profile(path)
        return
    with pytest.raises(ConfigError) as info:
        load_esp_profile(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {option}: "), message
    assert words in message


def test_same_key_both_ways_refused(tmp_path):
    text = EXAMPLE.replace(f'key = "{CBC_KEY}"', f'key = "{GCM_KEY}"').replace(
        'transform = "aes256-sha256"', 'transform = "aes256gcm16"').replace(
        f'integrity_key = "{HMAC_KEY}"', "")
    with pytest.raises(ConfigError, match="ipsec.inbound.key: the same key"):
        load_esp_profile(write(tmp_path, text))


def test_unreadable_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_esp_profile(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_esp_profile(write(tmp_path, "[ipsec\n"))
    with pytest.raises(ConfigError, match=r"no \[ipsec\] table"):
        load_esp_profile(write(tmp_path, "[openvpn]\n"))
    with pytest.raises(ConfigError, match="ipsec.peer: missing"):
        load_esp_profile(write(tmp_path, "[ipsec]\nlocal_ip = \"198.19.11.2\"\n"))


# -- AEAD transforms with manual keys (RFC 4106 section 8.1, RFC 7634) ----------------------

WITHOUT_OPT_IN = EXAMPLE.replace("allow_static_aead = true", "")


@pytest.mark.parametrize("outbound,inbound,option,rfc", [
    ("aes256gcm16", "aes256-sha256", "ipsec.outbound.transform", "RFC 4106 section 8.1"),
    ("aes256-sha256", "aes128gcm16", "ipsec.inbound.transform", "RFC 4106 section 8.1"),
    ("aes256-sha256", "chacha20poly1305", "ipsec.inbound.transform", "RFC 7634"),
])
def test_static_aead_refused_without_the_opt_in(tmp_path, outbound, inbound, option, rfc):
    def sa(name, key):
        from erebus.ipsec.transforms import TRANSFORMS
        t = TRANSFORMS[name]
        lines = f'transform = "{name}"\nkey = "{key * t.key_len}"\n'
        return lines + (f'integrity_key = "{"33" * t.integrity_key_len}"\n'
                        if t.integrity_key_len else "")
    text = WITHOUT_OPT_IN.split("[ipsec.outbound]")[0] + (
        "[ipsec.outbound]\nspi = 0x1001\n" + sa(outbound, "44")
        + "[ipsec.inbound]\nspi = 0x2002\n" + sa(inbound, "55"))
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_esp_profile(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {option}: "), message
    assert rfc in message and "allow_static_aead = true" in message
    assert "replay_window = 0" not in message
    p = load_esp_profile(write(tmp_path, text.replace("[ipsec.outbound]",
                                                      "allow_static_aead = true\n"
                                                      "[ipsec.outbound]")),
                         log_warnings=False)
    assert len(p.warnings) == 1 and p.warnings[0].startswith(f"{path}: {option}: ")
    assert rfc in p.warnings[0]


def test_opt_in_is_logged_and_reported_by_check(tmp_path, caplog):
    from erebus.check import check
    path = write(tmp_path, EXAMPLE)
    with caplog.at_level("WARNING", logger="erebus.ipsec"):
        p = load_esp_profile(path)
    assert p.allow_static_aead
    assert [r.getMessage() for r in caplog.records] == p.warnings
    assert "RFC 4106 section 8.1" in p.warnings[0]
    code, report = check(str(path))
    assert code == 0 and report["warnings"] == p.warnings


def test_cbc_only_needs_no_opt_in(tmp_path):
    text = WITHOUT_OPT_IN.replace(f'transform = "aes256gcm16"\nkey = "{GCM_KEY}"',
                                  f'transform = "aes128-sha256"\nkey = "{"66" * 16}"\n'
                                  f'integrity_key = "{"77" * 32}"')
    p = load_esp_profile(write(tmp_path, text))
    assert p.warnings == [] and not p.allow_static_aead


def test_opt_in_must_be_a_boolean(tmp_path):
    with pytest.raises(ConfigError, match="ipsec.allow_static_aead: must be true or false"):
        load_esp_profile(write(tmp_path, EXAMPLE.replace("allow_static_aead = true",
                                                         'allow_static_aead = "yes"')))


def test_no_advice_to_turn_anti_replay_off():
    """The sequence-reset warning and the profile docs never advise replay_window = 0."""
    from pathlib import Path

    import erebus.ipsec
    for source in Path(erebus.ipsec.__file__).parent.glob("*.py"):
        text = source.read_text()
        assert "set replay_window = 0" not in text and "(or set" not in text, source


def test_wireshark_lines(tmp_path):
    p = load_esp_profile(write(tmp_path, EXAMPLE))
    lines = wireshark_esp_sa(p, "198.18.101.2", "198.18.1.1")
    assert lines == [
        f'"IPv4","198.18.101.2","198.18.1.1","0x00001001",'
        f'"AES-GCM with 16 octet ICV [RFC4106]","0x{GCM_KEY}","NULL",""',
        f'"IPv4","198.18.1.1","198.18.101.2","0x00002002","AES-CBC [RFC3602]",'
        f'"0x{CBC_KEY}","HMAC-SHA-256-128 [RFC4868]","0x{HMAC_KEY}"',
    ]
    args = tshark_esp_options(p)
    assert args[-2:] == ["-d", "udp.port==4600,udpencap"]


# -- IPv6 inside ---------------------------------------------------------------------------

def test_ipv6_inner_address_routes_and_dns(tmp_path):
    text = EXAMPLE.replace('remote_ts = ["198.19.20.0/24"]',
                           'remote_ts = ["198.19.20.0/24", "2001:2:0:20::/64"]\n'
                           'local_ip6 = "2001:2:0:11::2/64"\n'
                           'dns = ["2001:2:0:20::53", "198.19.20.53"]')
    p = load_esp_profile(write(tmp_path, text))
    assert (p.local_ip6, p.prefix6) == ("2001:2:0:11::2", 64)
    assert p.remote_ts == ["198.19.20.0/24", "2001:2:0:20::/64"]
    assert p.dns == ["2001:2:0:20::53", "198.19.20.53"] and p.warnings[1:] == []
    session = p.new_session(0.0)
    assert session.local_ip6 == bytes.fromhex("20010002000000110000000000000002")
    from erebus.ipsec.manual import ManualEspSession
    from erebus.session import Connected
    core = ManualEspSession(p, 0.0)
    (info,) = [e.info for e in iter(core.next_event, None) if isinstance(e, Connected)]
    assert (info.virtual_ip, info.virtual_ip6, info.prefix6) == ("198.19.11.2",
                                                                  "2001:2:0:11::2", 64)
    assert info.routes == ["198.19.20.0/24"] and info.routes6 == ["2001:2:0:20::/64"]
    # without a prefix length: a /128
    p = load_esp_profile(write(tmp_path, text.replace("::2/64", "::2")))
    assert p.prefix6 == 128


@pytest.mark.parametrize("change, option, words", [
    (('local_ip = "198.19.11.2"', 'local_ip = "198.19.11.2"\nlocal_ip6 = "fe80::1"'),
     "ipsec.local_ip6", "cannot be our address"),
    (('local_ip = "198.19.11.2"', 'local_ip = "198.19.11.2"\nlocal_ip6 = "198.19.11.3"'),
     "ipsec.local_ip6", "not an IPv6 address"),
    (('local_ip = "198.19.11.2"', 'local_ip = "198.19.11.2"\nlocal_ip6 = 6'),
     "ipsec.local_ip6", "not an IPv6 address"),
    (('remote_ts = ["198.19.20.0/24"]', 'remote_ts = ["2001:2:0:20::/64"]'),
     "ipsec.remote_ts", "set local_ip6"),
    (('remote_ts = ["198.19.20.0/24"]', 'remote_ts = ["198.19.20.0/24"]\ndns = ["2001:2::53"]'),
     "ipsec.dns", "set local_ip6"),
    (('remote_ts = ["198.19.20.0/24"]', 'remote_ts = ["2001:2:0:20::1/64"]\n'
      'local_ip6 = "2001:2::2"'), "ipsec.remote_ts", "host bits"),
])
def test_ipv6_errors_name_file_and_key(tmp_path, change, option, words):
    path = write(tmp_path, EXAMPLE.replace(*change))
    with pytest.raises(ConfigError) as info:
        load_esp_profile(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {option}: "), message
    assert words in message


def test_ipv6_address_without_ipv6_routes_warns(tmp_path):
    text = EXAMPLE.replace('local_ip = "198.19.11.2"',
                           'local_ip = "198.19.11.2"\nlocal_ip6 = "2001:2::2"')
    p = load_esp_profile(write(tmp_path, text), log_warnings=False)
    assert any("no IPv6 network in remote_ts" in w for w in p.warnings)
