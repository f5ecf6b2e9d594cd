"""``erebus check``: every test profile gets the verdict its header announces, with
the right file and line; the report says what erebus will do; nothing is asked."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from erebus.check import check, main

PROFILES = Path(__file__).resolve().parents[1] / "profiles"
ALL = sorted(p.name for p in PROFILES.glob("*.ovpn"))


def expectations(path: Path) -> tuple[set, bool]:
    expected, ok = set(), False
    for line in path.read_bytes().decode("utf-8-sig").splitlines()[:12]:
        m = re.match(r"# erebus-test: expect (\S+)(?: (\S+))?", line)
        if not m:
            continue
        if m.group(1) == "ok":
            ok = True
            continue
        where, option = m.group(1), m.group(2)
        option = None if option == "-" else option
        if where == "-":
            expected.add((str(path), None, option))
        elif ":" in where:
            f, n = where.rsplit(":", 1)
            expected.add((str(PROFILES / f), int(n), option))
        else:
            expected.add((str(path), int(where), option))
    return expected, ok


@pytest.mark.parametrize("name", ALL)
def test_every_profile_gets_its_verdict(name):
    path = PROFILES / name
    expected, ok = expectations(path)
    assert expected or ok, f"{name} has no '# erebus-test: expect' header"
    code, report = check(str(path))
    got = {(p["file"], p["line"], p["option"]) for p in report["problems"]}
    if ok:
        assert code == 0 and report["ok"], report["problems"]
        assert report["settings"]["remotes"]
    else:
        assert code == 1 and not report["ok"]
        assert got == expected, "\n".join(p["text"] for p in report["problems"])
        for p in report["problems"]:
            prefix = f"{p['file']}:{p['line']}: " if p["line"] else f"{p['file']}: "
            assert p["text"].startswith(prefix + (f"{p['option']}: " if p["option"]
                                                  else ""))


@pytest.mark.parametrize("name,words", [("esp.toml", "ipsec (manual SAs)"),
                                        ("swanctl.conf", "ipsec (IKEv2)")])
def test_ipsec_profiles_are_checked_too(name, words, capsys):
    assert main(str(PROFILES / name), False) == 0
    out = capsys.readouterr().out
    assert "usable by erebus" in out and words in out and "test-only-secret" not in out


@pytest.mark.parametrize("name,option", [("esp.toml", "ipsec.inbound.key"),
                                         ("swanctl.conf", "remote_tss")])
def test_broken_ipsec_profiles_name_file_line_and_option(name, option, capsys):
    path = PROFILES / "broken-ipsec" / name
    assert main(str(path), False) == 1
    out = capsys.readouterr().out.strip()
    assert out.startswith(str(path)) and option in out, out


def test_report_of_an_access_server_profile(capsys):
    path = PROFILES / "access-server.ovpn"
    assert main(str(path), True) == 0
    report = json.loads(capsys.readouterr().out)
    s = report["settings"]
    assert [(r["host"], r["port"], r["proto"]) for r in s["remotes"]] == [
        ("vpn.example.com", 1194, "udp"), ("vpn.example.com", 443, "tcp-client")]
    assert s["tls"] == {"mode": "tls-auth", "digest": "SHA1", "key_direction": 1}
    assert s["auth"]["mode"] == "username/password"
    assert s["auth"]["prompts"] == ["username", "password"]
    assert s["connect_timeout"] == 4                          # server-poll-timeout 4
    assert {"push-peer-info", "setenv", "verb"} <= {i["option"] for i in s["ignored"]}
    assert any("frobnicate-from-the-future" in w and "FORWARD_COMPATIBLE" in w
               for w in report["warnings"])


def test_report_of_connection_blocks_and_passphrases(capsys):
    code, report = check(str(PROFILES / "connection-blocks.ovpn"))
    s = report["settings"]
    assert code == 0 and s["remote_random"]
    # file order in the report; the shuffle happens when erebus connects
    assert [(r["host"], r["port"], r["proto"], r["connection_block"]) for r in s["remotes"]
            ] == [("198.18.10.6", 1194, "udp", 8), ("198.18.10.7", 443, "tcp-client", 12)]
    assert s["connect_retry"] == [2, 30]
    _, report = check(str(PROFILES / "encrypted-key-prompt.ovpn"))
    assert report["settings"]["auth"]["prompts"] == ["private key passphrase"]
    _, report = check(str(PROFILES / "opnsense-inline-p12.ovpn"))
    assert report["settings"]["auth"]["prompts"] == ["PKCS#12 passphrase"]
    _, report = check(str(PROFILES / "encrypted-key-askpass.ovpn"))
    assert report["settings"]["auth"]["prompts"] == []
    text = json.dumps(report)
    assert "test-only" not in text.replace("erebus test-only", "")   # no passphrase


def test_text_report_and_problem_lines(capsys):
    assert main(str(PROFILES / "pfsense-export.ovpn"), False) == 0
    out = capsys.readouterr().out
    assert "usable by erebus" in out and "198.18.10.3 1194/udp" in out
    assert "tls-auth (key direction 1)" in out and "fallback AES-256-CBC" in out
    assert main(str(PROFILES / "broken-many-problems.ovpn"), False) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and all(re.match(r".+:\d+: [a-z-]+: .+", ln) for ln in lines)


def test_check_never_prompts(monkeypatch):
    def no_input(*args, **kwargs):
        raise AssertionError("check asked for input")
    monkeypatch.setattr("builtins.input", no_input)
    monkeypatch.setattr("getpass.getpass", no_input)
    for name in ALL:
        check(str(PROFILES / name))


def test_unreadable_profile():
    code, report = check(str(PROFILES / "does-not-exist.ovpn"))
    assert code == 1 and "cannot read the profile" in report["problems"][0]["text"]


@pytest.mark.parametrize("name", ["esp.toml", "swanctl.conf"])
def test_ipsec_reports_are_json(name, capsys):
    import json
    assert main(str(PROFILES / name), True) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["settings"]["kind"].startswith("ipsec")


def test_no_client_authentication_in_the_stock_clients_words():
    code, report = check(str(PROFILES / "broken-no-client-auth.ovpn"))
    texts = [p["text"] for p in report["problems"]]
    assert code == 1 and len(texts) == 2, texts          # both problems, in one pass
    assert any("cert: No client-side authentication method is specified.  You must use "
               "either --cert/--key, --pkcs12, or --auth-user-pass" in t for t in texts)


def test_report_lists_what_the_profile_configures_for_ipv6(capsys):
    code, report = check(str(PROFILES / "ipv6-inside.ovpn"))
    assert code == 0
    v6 = report["settings"]["ipv6"]
    assert v6["routes_ipv6"] == ["2001:2:0:2::/64"] and v6["dns6"] == ["2001:2:0:2::2"]
    assert v6["route_ipv6_gateway"] == "2001:2:0:180::1" and v6["pushed"] is True
    assert report["settings"]["pull_filters"] == [["ignore", "route-ipv6 2001:2:0:9"],
                                                  ["accept", "route"]]
    main(str(PROFILES / "ipv6-inside.ovpn"), False)
    out = capsys.readouterr().out
    assert "IPv6 inside  as the server pushes it" in out
    assert "IPv6 routes  2001:2:0:2::/64 (gateway 2001:2:0:180::1)" in out
    assert "DNS          2001:2:0:2::2" in out
    assert "pull-filter  ignore 'route-ipv6 2001:2:0:9', accept 'route'" in out


def test_ipsec_reports_show_the_ipv6_parts(tmp_path, capsys):
    """vips = 0.0.0.0, :: and IPv6 selectors (swanctl.conf); local_ip6 (TOML)."""
    conf = tmp_path / "swanctl.conf"
    text = (PROFILES / "swanctl.conf").read_text()
    assert "vips = 0.0.0.0\n" in text and "remote_ts = 198.19.230.0/24\n" in text
    conf.write_text(text.replace("vips = 0.0.0.0\n", "vips = 0.0.0.0, ::\n").replace(
        "remote_ts = 198.19.230.0/24\n", "remote_ts = 198.19.230.0/24, 2001:2:0:131::/64\n"))
    assert main(str(conf), False) == 0
    out = capsys.readouterr().out
    assert "virtual_ip    IPv4 and IPv6" in out, out
    assert "2001:2:0:131::/64" in out and "IPv4 and IPv6 inside; IKE and ESP over IPv4" in out
    toml = tmp_path / "esp.toml"
    toml.write_text((PROFILES / "esp.toml").read_text().replace(
        "[ipsec]\n", '[ipsec]\nlocal_ip6 = "2001:2:0:11::2/64"\n', 1))
    assert main(str(toml), True) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["settings"]["local_ip6"] == "2001:2:0:11::2/64", report
