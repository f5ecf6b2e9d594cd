"""erebus (as ``nobody``) reaching stock OpenVPN 2.6 servers through real proxies in
the client namespace: tinyproxy (HTTP CONNECT, without and with BasicAuth) and
dante (SOCKS5 CONNECT and UDP ASSOCIATE; with username authentication only the
refusal: dante checks usernames against the system's password database, and the
tests add no system user).
The proxies run as root bound to the client's lab address, their configs in the
lab's temp dir, and stop at teardown."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tests.interop.util import Up, _fetch, _free_port, erebus, probe_json
from tests.lab import CLIENT_LINK_ADDR, WEB_ADDR, stop_process, tail

pytestmark = pytest.mark.interop

HTTP_PORT, HTTP_AUTH_PORT, SOCKS_PORT, SOCKS_AUTH_PORT = 8888, 8889, 1080, 1081
USER, PASSWORD = "ebsproxy", "s3cret-proxy-pass"


@pytest.fixture(scope="module")
def proxies(lab):
    """tinyproxy twice (open, BasicAuth) and danted twice (none, username)."""
    for binary in ("tinyproxy", "danted"):
        if shutil.which(binary) is None:
            pytest.skip(f"{binary} is not installed (scripts/setup.sh installs it)")
    d = Path(tempfile.mkdtemp(dir=lab.dir, prefix="proxies-"))
    os.chmod(d, 0o777)
    procs = []
    tcp_port = lab.start_server("tcp").port
    for port, auth in ((HTTP_PORT, ""), (HTTP_AUTH_PORT, f"BasicAuth {USER} {PASSWORD}\n")):
        conf = d / f"tinyproxy-{port}.conf"
        log = d / f"tinyproxy-{port}.log"
        conf.write_text(f"User nobody\nGroup nogroup\nPort {port}\nListen {CLIENT_LINK_ADDR}\n"
                        f"Timeout 60\nLogFile \"{log}\"\nLogLevel Info\nMaxClients 20\n"
                        f"Allow {CLIENT_LINK_ADDR}\nConnectPort {tcp_port}\n{auth}")
        procs.append(lab.spawn_ns(lab.ns_cli, ["tinyproxy", "-d", "-c", str(conf)],
                                  output=d / f"tinyproxy-{port}.out"))
    for port, method in ((SOCKS_PORT, "none"), (SOCKS_AUTH_PORT, "username")):
        conf = d / f"danted-{port}.conf"
        log = d / f"danted-{port}.log"
        conf.write_text(
            f"logoutput: {log}\ninternal: {CLIENT_LINK_ADDR} port = {port}\n"
            f"external: {CLIENT_LINK_ADDR}\nsocksmethod: {method}\nclientmethod: none\n"
            "user.privileged: root\nuser.unprivileged: nobody\n"
            "client pass {\n from: 198.18.0.0/15 to: 0.0.0.0/0\n}\n"
            "socks pass {\n from: 0.0.0.0/0 to: 0.0.0.0/0\n"
            " command: connect udpassociate udpreply\n log: connect disconnect error\n}\n")
        procs.append(lab.spawn_ns(lab.ns_cli, ["danted", "-f", str(conf), "-p",
                                               str(d / f"danted-{port}.pid")],
                                  output=d / f"danted-{port}.out"))
    for port in (HTTP_PORT, HTTP_AUTH_PORT, SOCKS_PORT, SOCKS_AUTH_PORT):
        if not _listening(lab, port):
            logs = "\n".join(tail(p) for p in sorted(d.glob("*.out")) + sorted(d.glob("*.log")))
            for p in procs:
                stop_process(p)
            pytest.fail(f"a proxy does not listen on {port}:\n{logs}", pytrace=False)
    (d / "http.auth").write_text(f"{USER}\n{PASSWORD}\n")
    (d / "wrong.auth").write_text(f"{USER}\nnot-the-password\n")
    for f in d.glob("*.auth"):
        os.chmod(f, 0o644)
    try:
        yield d
    finally:
        for p in procs:
            stop_process(p)


def _listening(lab, port: int) -> bool:
    for _ in range(50):
        cp = lab.run_ns(lab.ns_cli, ["ss", "-Htln", f"sport = :{port}"])
        if cp.stdout.strip():
            return True
        time.sleep(0.1)
    return False


def profile_through(lab, directory: Path, mode: str, name: str, *lines: str) -> Path:
    server = lab.start_server(mode)
    path = directory / f"{name}.ovpn"
    path.write_text(server.profile.read_text() + "\n".join(lines) + "\n")
    os.chmod(path, 0o644)
    return path


def probe(lab, profile):
    return probe_json(lab, profile, "--timeout", 30, timeout=60)


def download_through(lab, profile) -> None:
    port = _free_port()
    up = Up(lab, profile, f"{port}:{WEB_ADDR}:80")
    try:
        got, err, _ = _fetch(lab, f"http://127.0.0.1:{port}/blob.bin")
        assert got == lab.blob_sha256, f"{err}\n{tail(up.log)}"
    finally:
        code = up.stop()
    assert code == 0, tail(up.log)


@pytest.mark.parametrize("name, mode, lines", [
    ("http-open", "tcp", [f"http-proxy {CLIENT_LINK_ADDR} {HTTP_PORT}",
                          "http-proxy-option AGENT erebus-lab",
                          "http-proxy-option CUSTOM-HEADER X-Lab yes"]),
    ("http-basic", "tcp", [f"http-proxy {CLIENT_LINK_ADDR} {HTTP_AUTH_PORT} {{d}}/http.auth"]),
    ("http-auto", "tcp", [f"http-proxy {CLIENT_LINK_ADDR} {HTTP_AUTH_PORT} auto",
                          "http-proxy-user-pass {d}/http.auth",
                          "http-proxy-option VERSION 1.1"]),
    ("socks-tcp", "tcp", [f"socks-proxy {CLIENT_LINK_ADDR} {SOCKS_PORT}"]),
    ("socks-udp", "gcm", [f"socks-proxy {CLIENT_LINK_ADDR} {SOCKS_PORT}"]),
])
def test_probe_and_a_byte_exact_download_through_the_proxy(lab, proxies, name, mode, lines):
    profile = profile_through(lab, proxies, mode, name,
                              *(line.format(d=proxies) for line in lines))
    cp, report = probe(lab, profile)
    assert cp.returncode == 0 and report["ok"], (report, cp.stderr)
    assert PASSWORD not in cp.stdout + cp.stderr
    port = int(lines[0].split()[2])
    kind = "tinyproxy" if name.startswith("http") else "danted"
    log = (proxies / f"{kind}-{port}.log").read_text()
    assert lab.server_link_addr in log, log[-2000:]       # the proxy did carry it
    download_through(lab, profile)


@pytest.mark.parametrize("name, mode, line, words", [
    ("http-wrong", "tcp", f"http-proxy {CLIENT_LINK_ADDR} {HTTP_AUTH_PORT} {{d}}/wrong.auth",
     f"HTTP proxy {CLIENT_LINK_ADDR}:{HTTP_AUTH_PORT}: answered '401 Unauthorized' to "
     "CONNECT 198.18.1.1:1203: the proxy refused the username and password"),
    ("http-none", "tcp", f"http-proxy {CLIENT_LINK_ADDR} {HTTP_AUTH_PORT}",
     "the profile gives none"),
    ("socks-wrong", "gcm", f"socks-proxy {CLIENT_LINK_ADDR} {SOCKS_AUTH_PORT} {{d}}/wrong.auth",
     f"SOCKS proxy {CLIENT_LINK_ADDR}:{SOCKS_AUTH_PORT}: the proxy refused the username"),
])
def test_a_wrong_or_missing_password_is_refused_naming_the_proxy(lab, proxies, name, mode,
                                                                 line, words):
    profile = profile_through(lab, proxies, mode, name, line.format(d=proxies))
    cp, report = probe(lab, profile)
    assert cp.returncode != 0 and not report["ok"], report
    text = json.dumps(report) + cp.stderr
    assert words in text and "auth" in text, text
    assert "not-the-password" not in text and PASSWORD not in text


def test_http_proxy_with_udp_is_a_config_error_with_file_and_line(lab, proxies):
    profile = profile_through(lab, proxies, "gcm", "http-udp",
                              f"http-proxy {CLIENT_LINK_ADDR} {HTTP_PORT}")
    line = len(profile.read_text().splitlines())
    cp = erebus(lab, "check", profile, timeout=30)
    assert cp.returncode != 0
    assert f"{profile}:{line}: http-proxy: --http-proxy MUST be used in TCP Client mode " \
           "(i.e. --proto tcp-client)" in cp.stdout + cp.stderr, cp.stdout + cp.stderr
