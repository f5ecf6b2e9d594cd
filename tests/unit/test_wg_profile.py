"""The wg-quick profile reader (erebus.wireguard.profile), ``erebus check`` of such a
file, and how a ``.conf`` is told WireGuard from OpenVPN."""

from __future__ import annotations

import base64
import ipaddress
import os
import string

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from erebus.check import check_wireguard, render
from erebus.errors import ConfigError
from erebus.families import family_of
from erebus.wireguard.profile import (MAX_PEERS, WgProfileError, is_wg_quick_text, load_wg_profile,
                                      parse_wg_profile, public_key_of, read_wg_profile)


def _pair(seed: int) -> tuple[str, str]:
    raw = bytes([seed]) * 32
    pub = X25519PrivateKey.from_private_bytes(raw).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode(), base64.b64encode(pub).decode()


PRIV, PUB = _pair(1)
SRV_PRIV, SRV_PUB = _pair(2)
_, SRV2_PUB = _pair(3)
PSK = base64.b64encode(bytes(range(32))).decode()


def good(**extra: str) -> str:
    return (f"[Interface]\nPrivateKey = {PRIV}\nAddress = 198.18.122.2/32\n\n"
            f"[Peer]\nPublicKey = {SRV_PUB}\nEndpoint = 198.18.120.1:51820\n"
            f"AllowedIPs = 0.0.0.0/0\n") + "".join(f"{k} = {v}\n" for k, v in extra.items())


def ok(text: str):
    reading = parse_wg_profile(text, "wg0.conf")
    assert reading.problems == [], [str(p) for p in reading.problems]
    return reading.profile


def problems(text: str) -> list[str]:
    reading = parse_wg_profile(text, "wg0.conf")
    assert reading.profile is None
    assert reading.problems
    return [str(p) for p in reading.problems]


# -- every option ----------------------------------------------------------------------

def test_full_profile_every_option() -> None:
    text = f"""# provider-generated
[Interface]
PrivateKey = {PRIV}   # secret
Address = 198.18.122.2/32, 2001:2:0:122::2/128
Address = 198.18.123.2
DNS = 198.18.121.2, 2001:2::53 , corp.example,lab.test.
DNS = 198.18.121.3
MTU = 1380
ListenPort = 51000

[Peer]
PublicKey = {SRV_PUB}
PresharedKey = {PSK}
Endpoint = vpn.example.net:51820
AllowedIPs = 198.18.121.0/24, 2001:2:0:121::/64
AllowedIPs = 198.18.124.7
PersistentKeepalive = 25

[Peer]
PublicKey = {SRV2_PUB}
Endpoint = [2001:2::1]:443
AllowedIPs = 198.18.125.0/24
PersistentKeepalive = off
"""
    p = ok(text)
    i = p.interface
    assert i.private_key == bytes([1]) * 32
    assert i.addresses == (ipaddress.ip_interface("198.18.122.2/32"),
                           ipaddress.ip_interface("2001:2:0:122::2/128"),
                           ipaddress.ip_interface("198.18.123.2/32"))
    assert [str(d) for d in i.dns] == ["198.18.121.2", "2001:2::53", "198.18.121.3"]
    assert i.dns_search == ("corp.example", "lab.test")
    assert (i.mtu, i.listen_port) == (1380, 51000)
    a, b = p.peers
    assert base64.b64encode(a.public_key).decode() == SRV_PUB
    assert a.preshared_key == bytes(range(32))
    assert a.endpoint == ("vpn.example.net", 51820)
    assert [str(n) for n in a.allowed_ips] == ["198.18.121.0/24", "2001:2:0:121::/64",
                                               "198.18.124.7/32"]
    assert a.persistent_keepalive == 25
    assert b.endpoint == ("2001:2::1", 443) and b.persistent_keepalive is None
    assert b.preshared_key is None
    assert p.peer_lines == (11, 19)
    assert p.warnings == ()
    assert base64.b64encode(p.public_key).decode() == PUB


def test_keys_case_insensitive_spaces_and_comments() -> None:
    p = ok(f"  [interface]  # us\nprivate key={PRIV}\nADDRESS=198.18.122.2\n"
           f"[PEER]\npublickey   =   {SRV_PUB}#c\nendpoint=198.18.120.1:1\nallowedips=::/0\r\n")
    assert p.peers[0].endpoint == ("198.18.120.1", 1)
    assert str(p.peers[0].allowed_ips[0]) == "::/0"


def test_sections_may_repeat_and_later_single_value_wins_with_warning() -> None:
    p = ok(good() + "[Interface]\nMTU = 1400\nMTU = 1300\n")
    assert p.interface.mtu == 1300
    assert any("wg0.conf:11: MTU: given again (first at line 10)" in w for w in p.warnings)


def test_keepalive_zero_is_off() -> None:
    assert ok(good(PersistentKeepalive="0")).peers[0].persistent_keepalive is None


@pytest.mark.parametrize("key", ["PostUp", "PostDown", "PreUp", "PreDown", "Table",
                                 "FwMark", "SaveConfig"])
def test_meaningless_keys_are_warnings(key: str) -> None:
    text = good().replace("[Peer]", f"{key} = iptables -A FORWARD -j ACCEPT; rm -rf /\n[Peer]")
    p = ok(text)
    assert len(p.warnings) == 1
    assert p.warnings[0].startswith(f"wg0.conf:5: {key}: meaningless in user space")
    if key.startswith(("Pre", "Post")):
        assert "never run" in p.warnings[0]


def test_peer_without_endpoint_is_a_warning_when_another_has_one() -> None:
    p = ok(good() + f"[Peer]\nPublicKey = {SRV2_PUB}\nAllowedIPs = 198.18.126.0/24\n")
    assert p.peers[1].endpoint is None
    assert any("wg0.conf:9: Endpoint: this [Peer] has none" in w for w in p.warnings)


def test_host_bits_and_shared_allowed_ips_are_warnings() -> None:
    p = ok(good().replace("0.0.0.0/0", "198.18.121.9/24") +
           f"[Peer]\nPublicKey = {SRV2_PUB}\nEndpoint = 198.18.120.3:1\n"
           "AllowedIPs = 198.18.121.0/24\n")
    assert str(p.peers[0].allowed_ips[0]) == "198.18.121.0/24"
    assert any("host bits set: it means 198.18.121.0/24" in w for w in p.warnings)
    assert any("also the [Peer] at line 5's" in w for w in p.warnings)


def test_empty_allowed_ips_is_a_warning() -> None:
    p = ok(good().replace("AllowedIPs = 0.0.0.0/0", "AllowedIPs ="))
    assert p.peers[0].allowed_ips == ()
    assert any("AllowedIPs: this [Peer] has none" in w for w in p.warnings)


# -- every error, with file:line and key -----------------------------------------------

@pytest.mark.parametrize("text, expected", [
    (good().replace("Address", "Adress"), "wg0.conf:3: Adress: unknown key"),
    (good() + "Jc = 4\n", "wg0.conf:9: Jc: unknown key"),
    (good() + "[Server]\n", "wg0.conf:9: [Server]: unknown section"),
    ("PrivateKey = x\n" + good(), "wg0.conf:1: PrivateKey: outside any section"),
    (good() + "MTU = 1400\n", "wg0.conf:9: MTU: belongs in the [Interface] section"),
    (good().replace("[Peer]", "Endpoint = 198.18.1.1:1\n[Peer]"),
     "wg0.conf:5: Endpoint: belongs in a [Peer] section"),
    (good() + "garbage line\n", "wg0.conf:9: not KEY = VALUE"),
    (good().replace("198.18.122.2/32", "198.18.122.300/32"),
     "wg0.conf:3: Address: not an IPv4 or IPv6 address"),
    (good().replace("Address = 198.18.122.2/32", "Address ="), "wg0.conf:3: Address: needs"),
    (good().replace("[Peer]", "DNS = 198.18.1\n[Peer]"), "wg0.conf:5: DNS: not an IPv4"),
    (good().replace("[Peer]", "DNS = -bad-\n[Peer]"),
     "wg0.conf:5: DNS: neither an address nor a search domain"),
    (good().replace("[Peer]", "MTU = big\n[Peer]"), "wg0.conf:5: MTU: must be a number"),
    (good().replace("[Peer]", "MTU = 70000\n[Peer]"), "wg0.conf:5: MTU: must be a number"),
    (good().replace("198.18.122.2/32", "198.18.122.2/32, 2001:2::2") + "[Interface]\n"
     "MTU = 1000\n", "wg0.conf:10: MTU: 1000 is below 1280"),
    (good().replace("[Peer]", "ListenPort = 65536\n[Peer]"),
     "wg0.conf:5: ListenPort: must be a number from 0 to 65535"),
    (good().replace(SRV_PUB, SRV_PUB[:-2] + "="), "wg0.conf:6: PublicKey: not a WireGuard key"),
    (good().replace(SRV_PUB, SRV_PUB[:-2] + "B="), "wg0.conf:6: PublicKey: not a WireGuard key"),
    (good(PresharedKey="c2hvcnQ="), "wg0.conf:9: PresharedKey: not a WireGuard key"),
    (good().replace(PRIV, base64.b64encode(bytes(32)).decode()),
     "wg0.conf:2: PrivateKey: is all zeros"),
    (good().replace("198.18.120.1:51820", "198.18.120.1"), "wg0.conf:7: Endpoint: not HOST:PORT"),
    (good().replace("198.18.120.1:51820", "198.18.120.1:0"),
     "wg0.conf:7: Endpoint: the port must be a number from 1 to 65535"),
    (good().replace("198.18.120.1:51820", "vpn.example:https"),
     "wg0.conf:7: Endpoint: the port must be"),
    (good().replace("198.18.120.1:51820", "[2001:2::1:51820"),
     "wg0.conf:7: Endpoint: not [IPv6]:PORT"),
    (good().replace("198.18.120.1:51820", "[nothost]:1"),
     "wg0.conf:7: Endpoint: not an IPv6 address in brackets"),
    (good().replace("198.18.120.1:51820", "bad_host!:1"),
     "wg0.conf:7: Endpoint: not a host name or address"),
    (good().replace("198.18.120.1:51820", "a:b:1"),
     "wg0.conf:7: Endpoint: an IPv6 endpoint is written [ADDRESS]:PORT"),
    (good().replace("0.0.0.0/0", "0.0.0.0/33"), "wg0.conf:8: AllowedIPs: not an IPv4 or IPv6"),
    (good().replace("0.0.0.0/0", "+0.0.0.0/0"), "wg0.conf:8: AllowedIPs: '+0.0.0.0/0': +/-"),
    (good(PersistentKeepalive="sometimes"), "wg0.conf:9: PersistentKeepalive: must be a number"),
    (good(PersistentKeepalive="65536"), "wg0.conf:9: PersistentKeepalive: must be a number"),
    (good().replace(f"PublicKey = {SRV_PUB}\n", ""), "wg0.conf:5: PublicKey: this [Peer] has no"),
    (good().replace(SRV_PUB, PUB), "wg0.conf:6: PublicKey: is this interface's own public key"),
    (good() + f"[Peer]\nPublicKey = {SRV_PUB}\nEndpoint = 198.18.120.9:1\n",
     "wg0.conf:10: PublicKey: the same peer as the [Peer] at line 5"),
    (good().replace("Endpoint = 198.18.120.1:51820\n", ""),
     "wg0.conf:5: Endpoint: no [Peer] has an Endpoint"),
    (good().replace(f"PrivateKey = {PRIV}\n", ""), "wg0.conf: PrivateKey: missing"),
    (good().replace("Address = 198.18.122.2/32\n", ""), "wg0.conf: Address: missing"),
    (good().split("[Peer]")[0], "wg0.conf: Peer: no [Peer] section"),
    ("# nothing\n", "wg0.conf: no [Interface] section"),
])
def test_errors_name_file_line_and_key(text: str, expected: str) -> None:
    assert any(p.startswith(expected) for p in problems(text)), problems(text)


def test_error_never_echoes_a_private_or_preshared_key() -> None:
    broken = PRIV[:-2] + "B="                         # stray bits: not canonical
    found = problems(good(PresharedKey=PSK[:-1] + "x").replace(PRIV, broken))
    assert len(found) == 2
    assert all(broken not in p and PSK[:30] not in p for p in found)
    assert "wg0.conf:2: PrivateKey: not a WireGuard key" in found[0]


def test_keys_of_an_unknown_section_are_not_taken() -> None:
    text = f"[Nope]\nPublicKey = {SRV_PUB}\nEndpoint = 198.18.1.1:1\n" + good()
    assert problems(text) == ["wg0.conf:1: [Nope]: unknown section (only [Interface] and "
                              "[Peer])"]
    reading = parse_wg_profile(good() + "[Nope]\nAllowedIPs = ::/0\n", "wg0.conf")
    assert [e.line for e in reading.problems] == [9]


def _peers(n: int) -> str:
    """``n`` distinct [Peer] sections, each with an Endpoint and a /32 of its own."""
    return "".join(f"[Peer]\nPublicKey = {base64.b64encode(i.to_bytes(32, 'big')).decode()}"
                   f"\nEndpoint = 198.18.{i // 250}.{i % 250 + 1}:51820\n"
                   f"AllowedIPs = 198.19.{i // 250}.{i % 250}/32\n" for i in range(1, n + 1))


def test_peers_are_bounded_by_max_peers() -> None:
    head = f"[Interface]\nPrivateKey = {PRIV}\nAddress = 198.18.122.2/32\n"
    assert len(ok(head + _peers(MAX_PEERS)).peers) == MAX_PEERS
    text = head + _peers(MAX_PEERS + 40)
    first_over = 3 + 4 * MAX_PEERS + 1                 # the line of peer MAX_PEERS + 1
    found = problems(text)
    assert found == [f"wg0.conf:{first_over}: Peer: more than {MAX_PEERS} [Peer] sections: "
                     f"erebus runs a session and a socket for each, and takes at most "
                     f"{MAX_PEERS} (split the profile)"]
    # the keys of the sections over the bound are not read (a bad one says nothing)
    assert problems(text + "[Peer]\nPublicKey = nope\n") == found


def test_all_problems_in_one_pass_sorted_by_line() -> None:
    text = good().replace("0.0.0.0/0", "nope") + "Jc = 1\nMTU = 1\n"
    reading = parse_wg_profile(text, "wg0.conf")
    assert [(e.line, e.option) for e in reading.problems] == [
        (8, "AllowedIPs"), (9, "Jc"), (10, "MTU")]
    assert all(isinstance(e, ConfigError) for e in reading.problems)


# -- the file --------------------------------------------------------------------------

def _write(tmp_path, text: str | bytes, mode: int = 0o600, name: str = "wg0.conf") -> str:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    os.chmod(path, mode)
    return str(path)


def test_file_readable_by_others_is_refused(tmp_path) -> None:
    path = _write(tmp_path, good(), 0o644)
    reading = read_wg_profile(path)
    assert [str(p) for p in reading.problems] == [
        f"{path}: cannot read the profile: other users may access it (mode 0644): "
        f"chmod 600 {path}"]


def test_load_raises_listing_every_problem_and_logs_warnings(tmp_path, caplog) -> None:
    path = _write(tmp_path, good().replace("0.0.0.0/0", "x, y"))
    with pytest.raises(WgProfileError) as info:
        load_wg_profile(path)
    assert len(info.value.problems) == 2 and info.value.line == 8
    assert "(and 1 more problem" in str(info.value)
    path = _write(tmp_path, good().replace("[Peer]", "PostUp = echo hi\n[Peer]"))
    with caplog.at_level("WARNING", logger="erebus.wireguard"):
        assert load_wg_profile(path).peers
    assert "PostUp: meaningless in user space: never run" in caplog.text


def test_not_utf8_names_the_line(tmp_path) -> None:
    path = _write(tmp_path, good().encode() + b"# \xff\n")
    assert [str(p) for p in read_wg_profile(path).problems] == [f"{path}:9: not valid UTF-8"]


def test_public_key_matches_x25519() -> None:
    assert base64.b64encode(public_key_of(bytes([1]) * 32)).decode() == PUB


def test_private_key_is_not_in_repr() -> None:
    p = ok(good(PresharedKey=PSK))
    assert "\\x01\\x01" not in repr(p) and "private_key" not in repr(p)
    assert "preshared_key" not in repr(p.peers[0])


# -- erebus check ----------------------------------------------------------------------

def test_check_reports_public_key_peers_and_warnings(tmp_path) -> None:
    path = _write(tmp_path, good(PresharedKey=PSK, PersistentKeepalive="25")
                  .replace("[Peer]", "PostUp = ip route add x\nDNS = 198.18.121.2, lab.test\n"
                                     "[Peer]"))
    code, report = check_wireguard(path)
    assert code == 0 and report["ok"] and report["format"] == "wg-quick"
    s = report["settings"]
    assert s["public_key"] == PUB
    assert s["peers"] == [f"{SRV_PUB} (line 7): endpoint 198.18.120.1:51820; allowed IPs "
                          "0.0.0.0/0; preshared key; keepalive every 25 s"]
    assert s["dns"] == ["198.18.121.2"] and s["dns_search"] == ["lab.test"]
    assert s["mtu"] == "1420 (default)"
    assert report["warnings"] == [f"{path}:5: PostUp: meaningless in user space: never run "
                                  "(erebus runs no command a profile names)"]
    text = render(report)
    assert f"public_key    {PUB}" in text and f"    1. {SRV_PUB}" in text
    assert PRIV not in text and PSK not in text and PRIV not in repr(report)


def test_check_lists_every_problem(tmp_path) -> None:
    path = _write(tmp_path, good().replace("0.0.0.0/0", "nope") + "Jc = 1\n")
    code, report = check_wireguard(path)
    assert code == 1 and not report["ok"]
    assert [(p["line"], p["option"]) for p in report["problems"]] == [(8, "AllowedIPs"),
                                                                      (9, "Jc")]
    assert render(report).splitlines()[1].startswith(f"{path}:9: Jc: unknown key")


# -- family recognition ----------------------------------------------------------------

def test_family_by_content(tmp_path) -> None:
    wg = _write(tmp_path, "# comment\n\n" + good(), name="wg0.conf")
    ovpn = _write(tmp_path, "client\nremote 198.18.1.1 1194\n<ca>\n</ca>\n",
                  name="client.conf")
    broken_wg = _write(tmp_path, "[Interface]\n", 0o644, name="mullvad.conf")
    assert family_of(wg).name == "wireguard"
    assert family_of(broken_wg).name == "wireguard"   # refused as WireGuard, not OpenVPN
    assert family_of(ovpn).name == "openvpn"
    assert family_of(str(tmp_path / "missing.conf")).name == "openvpn"
    assert family_of(_write(tmp_path, good(), name="x.ovpn")).name == "openvpn"
    assert family_of(str(tmp_path / "swanctl.conf")).name == "ipsec-ike"


def test_sniff_needs_interface_as_first_section() -> None:
    assert is_wg_quick_text(b"# x\n  [ Interface ] # y\n")
    assert not is_wg_quick_text(b"[Peer]\n[Interface]\n")
    assert not is_wg_quick_text(b"client\ndev tun\n")


def test_tunnel_factory_builds_the_wireguard_tunnel(tmp_path) -> None:
    from erebus.families import open_tunnel
    from erebus.runtime.wireguard import WireGuardTunnel
    tunnel = open_tunnel(_write(tmp_path, good()))
    assert isinstance(tunnel, WireGuardTunnel)
    assert tunnel.driver.endpoints()[0].port == tunnel.profile.peers[0].endpoint[1]


# -- hostile input ---------------------------------------------------------------------

_pieces = st.sampled_from(["[Interface]", "[Peer]", "[Nope]", "[", "]", "=", "#", ",", ":", "/",
                           "\n", " ", "PrivateKey", "PublicKey", "Address", "DNS", "MTU",
                           "Endpoint", "AllowedIPs", "PersistentKeepalive", "PresharedKey",
                           "ListenPort", "PostUp", "off", "0", "65536", "::", "[::1]",
                           "198.18.1.1", PRIV, SRV_PUB, PSK, "\x00", "\ufeff", "é"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_pieces, st.text(string.printable, max_size=12)), max_size=60))
def test_reader_raises_nothing_on_hostile_text(parts: list[str]) -> None:
    reading = parse_wg_profile("".join(parts), "fuzz.conf")
    assert (reading.profile is None) == bool(reading.problems)
    assert all(isinstance(e, ConfigError) and e.path == "fuzz.conf" for e in reading.problems)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_sniff_and_reader_take_any_bytes(raw: bytes) -> None:
    is_wg_quick_text(raw)
    parse_wg_profile(raw.decode("utf-8", "replace"), "fuzz.conf")


def test_whole_file_problems_come_after_the_lines() -> None:
    reading = parse_wg_profile("[Interface]\nDNS = 1.2.3\n", "wg0.conf")
    assert [(e.line, e.option) for e in reading.problems] == [
        (2, "DNS"), (None, "PrivateKey"), (None, "Address"), (None, "Peer")]


def test_docs_table_lists_every_key() -> None:
    from pathlib import Path

    from erebus.wireguard.profile import IGNORED_KEYS, INTERFACE_KEYS, PEER_KEYS
    doc = (Path(__file__).resolve().parents[2] / "docs" / "compatibility.md").read_text()
    section = doc.split("## WireGuard wg-quick profiles", 1)[1]
    for key in [*INTERFACE_KEYS.values(), *PEER_KEYS.values(), *IGNORED_KEYS.values()]:
        assert f"`{key}`" in section, key
