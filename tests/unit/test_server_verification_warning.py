"""A TLS profile that checks the server's certificate only against the CA is warned
about, in the stock client's words (init.c do_option_warnings), by `check` (a warning
line with file and line), and at WARNING when `up` or `probe` load the profile."""

from __future__ import annotations

import json
import logging

import pytest

from erebus.check import check, main
from erebus.openvpn.config import load_profile, read_profile
from tests.profiles.pki import Pki

_PKI = Pki()
STOCK = ("WARNING: No server certificate verification method has been enabled.  "
         "See http://openvpn.net/howto.html#mitm for more info.")


def write(tmp_path, body: str, *, client: str = "client") -> str:
    path = tmp_path / "p.ovpn"
    path.write_text(f"# a profile\n{client}\ndev tun\nremote 198.18.1.1 1194\n" + body +
                    f"<ca>\n{_PKI.ca_pem}</ca>\n<cert>\n{_PKI.client_pem}</cert>\n"
                    f"<key>\n{_PKI.client_key_pem}</key>\n")
    return str(path)


def server_warnings(path: str) -> list[str]:
    return [w for w in read_profile(path).warnings if "No server certificate" in w]


def test_check_warns_with_file_line_and_the_stock_words(tmp_path, capsys):
    path = write(tmp_path, "")
    assert main(path, False) == 0                      # a warning, not a problem
    out = capsys.readouterr().out.splitlines()
    assert f"  warning: {path}:2: client: {STOCK}" in out, out
    assert main(path, True) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["warnings"] == [f"{path}:2: client: {STOCK}"]


def test_without_client_line_the_ca_line_is_named(tmp_path):
    path = write(tmp_path, "", client="tls-client")
    assert server_warnings(path) == [f"{path}:2: tls-client: {STOCK}"]
    path = write(tmp_path, "pull\n", client="# no client line")
    _, report = check(path)
    ca_line = next(n for n, text in enumerate(open(path).read().splitlines(), 1)
                   if text == "<ca>")
    assert [w for w in report["warnings"] if STOCK in w] == [f"{path}:{ca_line}: ca: {STOCK}"]


@pytest.mark.parametrize("option", [
    "remote-cert-tls server", "verify-x509-name server-1 name", "ns-cert-type server",
    "remote-cert-eku \"TLS Web Server Authentication\"", "verify-x509-name 'CN=server-1'",
    "peer-fingerprint " + ":".join(["AB"] * 32),
])
def test_each_server_check_of_2_6_silences_it(tmp_path, option):
    assert server_warnings(write(tmp_path, option + "\n")) == []


@pytest.mark.parametrize("option", ["remote-cert-ku", "ns-cert-type client",
                                    "remote-cert-ku a0 88"])
def test_checks_that_2_6_does_not_count_still_warn(tmp_path, option):
    # init.c counts ns-cert-type only for 'server', and remote-cert-ku not at all
    path = write(tmp_path, option + "\n")
    assert server_warnings(path) == [f"{path}:2: client: {STOCK}"]


@pytest.mark.parametrize("option", ["peer-fingerprint AA:BB", "tls-verify ./check.sh"])
def test_a_refused_or_broken_check_is_a_problem_not_this_warning(tmp_path, option):
    path = write(tmp_path, option + "\n")
    reading = read_profile(path)
    assert reading.problems and server_warnings(path) == []


def test_verify_hash_checks_the_ca_so_the_warning_stays(tmp_path):
    # verify-hash checks depth 1 (the CA); init.c counts only a depth-0 hash
    # (peer-fingerprint): 2.6 warns
    path = write(tmp_path, "verify-hash " + ":".join(["AB"] * 20) + "\n")
    reading = read_profile(path)
    assert reading.problems == []
    assert server_warnings(path) == [f"{path}:2: client: {STOCK}"]


def test_up_and_probe_log_it_at_warning_when_loading(tmp_path, caplog):
    # `up` and `probe` load the profile with load_profile (erebus.families.open_tunnel)
    path = write(tmp_path, "")
    with caplog.at_level(logging.WARNING, logger="erebus"):
        load_profile(path)
    records = [r for r in caplog.records if STOCK in r.getMessage()]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    assert records[0].getMessage() == f"{path}:2: client: {STOCK}"


def test_static_key_profiles_are_not_warned(tmp_path):
    key = "\n".join(["-----BEGIN OpenVPN Static key V1-----"] +
                    ["0123456789abcdef" * 2] * 16 + ["-----END OpenVPN Static key V1-----"])
    path = tmp_path / "s.ovpn"
    path.write_text("dev tun\nremote 198.18.1.1 1194\nifconfig 198.19.0.2 198.19.0.1\n"
                    f"cipher AES-256-CBC\n<secret>\n{key}\n</secret>\n")
    reading = read_profile(str(path))
    assert reading.ok, reading.problems
    assert not [w for w in reading.warnings if STOCK in w]


def test_probe_reports_it_even_when_the_server_does_not_answer(tmp_path, caplog):
    import asyncio
    import socket

    from erebus.probe import probe
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:   # a closed loopback port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "p.ovpn"
    path.write_text(f"client\ndev tun\nremote 127.0.0.1 {port}\nconnect-retry-max 1\n"
                    f"<ca>\n{_PKI.ca_pem}</ca>\n<cert>\n{_PKI.client_pem}</cert>\n"
                    f"<key>\n{_PKI.client_key_pem}</key>\n")
    with caplog.at_level(logging.WARNING, logger="erebus"):
        report = asyncio.run(probe(str(path), timeout=5.0))
    assert not report["ok"]
    assert report["warnings"] == [f"{path}:1: client: {STOCK}"]
    assert any(r.getMessage() == f"{path}:1: client: {STOCK}" for r in caplog.records)
