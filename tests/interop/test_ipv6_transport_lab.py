"""erebus (as ``nobody``) reaching stock OpenVPN 2.6 servers over an IPv6 outer
transport: servers listening dual-stack on [::] with ``proto udp6`` / ``proto tcp6``
(the lab's link gets 2001:2:0:1::1/64 and ::2/64), reached by their IPv6 literal, by a
name with only an AAAA record, by a name with A and AAAA records with the family forced
(udp6, udp4, tcp4-client ...), and a name without an address of the forced family.
Which family a session used is read from the server's log: a dual-stack socket names
an IPv4 client ``[AF_INET6]::ffff:198.18.1.2``, an IPv6 one ``[AF_INET6]2001:2:0:1::2``.
The inner traffic stays IPv4: the web host's blob is fetched through the tunnel and its
hash checked.  Names come from the dnsmasq the lab starts on the server end of the
link for the client's own resolver (tests/lab.py OUTER_DNS_NAMES)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tests.interop.util import Up, _fetch, _free_port, probe_json
from tests.lab import (CLIENT_LINK_ADDR, CLIENT_LINK_ADDR6, MODES, SERVER_LINK_ADDR6,
                       WEB_ADDR, Mode, stop_process, tail)

pytestmark = pytest.mark.interop

# pool 198.19.N.0/24, port 1194 + N, tunN: no other lab mode uses 60 and 61
MODES.setdefault("ipv6-udp", Mode(60, proto="udp6", ipv6=True))
MODES.setdefault("ipv6-tcp", Mode(61, proto="tcp6", ipv6=True))

FROM_V6 = f"[AF_INET6]{CLIENT_LINK_ADDR6}:"          # a client that came over IPv6
FROM_V4 = f"[AF_INET6]::ffff:{CLIENT_LINK_ADDR}:"    # over IPv4, on the [::] socket
HTTP_PORT, SOCKS_PORT = 8898, 1088


@pytest.fixture(scope="module")
def files(lab):
    d = Path(tempfile.mkdtemp(dir=lab.dir, prefix="ipv6-"))
    os.chmod(d, 0o755)
    return d


def variant(lab, files: Path, mode: str, name: str, remote: str, proto: str,
            *lines: str) -> Path:
    """The mode's profile with its remote and proto lines replaced."""
    server = lab.start_server(mode)
    text = server.profile.read_text()
    text = re.sub(r"(?m)^proto .*$", f"proto {proto}", text)
    text = re.sub(r"(?m)^remote .*$", f"remote {remote}", text)
    path = files / f"{name}.ovpn"
    path.write_text(text + "".join(line + "\n" for line in lines))
    os.chmod(path, 0o644)
    return path


class ServerLog:
    """What the server logged after this point."""

    def __init__(self, server):
        self.path = server.log
        self.start = self.path.stat().st_size

    def since(self) -> str:
        with open(self.path, "rb") as f:
            f.seek(self.start)
            return f.read().decode("utf-8", "replace")


def probe_ok(lab, profile, server) -> tuple[dict, str]:
    log = ServerLog(server)
    cp, report = probe_json(lab, profile, "--timeout", 30, timeout=90)
    assert cp.returncode == 0 and report["ok"], (report, cp.stderr[-3000:])
    # the probe said goodbye: the server logged the whole session by now
    text = log.since()
    assert "Peer Connection Initiated with" in text, text[-3000:]
    return report, text


def download(lab, profile) -> None:
    port = _free_port()
    up = Up(lab, profile, f"{port}:{WEB_ADDR}:80")
    try:
        got, err, _ = _fetch(lab, f"http://127.0.0.1:{port}/blob.bin")
        assert got == lab.blob_sha256, f"{err}\n{tail(up.log)}"
    finally:
        code = up.stop()
    assert code == 0, tail(up.log)
    return up


@pytest.mark.parametrize("mode, proto", [("ipv6-udp", "udp6"), ("ipv6-tcp", "tcp6-client")])
def test_the_ipv6_literal_over_udp_and_tcp_and_a_download(lab, files, mode, proto):
    server = lab.start_server(mode)
    profile = variant(lab, files, mode, f"literal-{mode}", f"{SERVER_LINK_ADDR6} "
                      f"{server.port}", proto)
    report, text = probe_ok(lab, profile, server)
    assert report["server"] == f"[{SERVER_LINK_ADDR6}]:{server.port}"
    assert report["address"] == f"[{SERVER_LINK_ADDR6}]:{server.port}"
    assert FROM_V6 in text and FROM_V4 not in text
    if mode == "ipv6-tcp":
        assert "TCP connection established with [AF_INET6]2001:2:0:1::2" in text
    download(lab, profile)


def test_a_name_with_only_an_aaaa_record_over_plain_udp_and_tcp(lab, files):
    for mode, proto in (("ipv6-udp", "udp"), ("ipv6-tcp", "tcp")):
        server = lab.start_server(mode)
        profile = variant(lab, files, f"{mode}", f"aaaa-{mode}",
                          f"vpn6.lab.test {server.port}", proto)
        report, text = probe_ok(lab, profile, server)
        assert report["server"] == f"vpn6.lab.test:{server.port}"
        assert report["address"] == f"[{SERVER_LINK_ADDR6}]:{server.port}"
        assert FROM_V6 in text and FROM_V4 not in text


@pytest.mark.parametrize("proto, family", [("udp6", 6), ("udp4", 4), ("tcp6-client", 6),
                                           ("tcp4", 4)])
def test_a_dual_stack_name_with_the_family_forced(lab, files, proto, family):
    mode = "ipv6-udp" if proto.startswith("udp") else "ipv6-tcp"
    server = lab.start_server(mode)
    profile = variant(lab, files, mode, f"dual-{proto}", f"vpn46.lab.test {server.port}",
                      proto)
    report, text = probe_ok(lab, profile, server)
    if family == 6:
        assert report["address"] == f"[{SERVER_LINK_ADDR6}]:{server.port}"
        assert FROM_V6 in text and FROM_V4 not in text, text[-2000:]
    else:
        assert report["address"] == f"198.18.1.1:{server.port}"
        assert FROM_V4 in text and FROM_V6 not in text, text[-2000:]


def test_a_dual_stack_name_downloads_over_ipv4_when_forced(lab, files):
    server = lab.start_server("ipv6-udp")
    profile = variant(lab, files, "ipv6-udp", "dual-udp4-download",
                      f"vpn46.lab.test {server.port}", "udp4")
    log = ServerLog(server)
    download(lab, profile)
    assert FROM_V4 in log.since()


def test_plain_udp_tries_the_next_address_when_the_first_is_refused(lab, files):
    """vpn46.lab.test resolves IPv6 first; the 'gcm' server listens on 198.18.1.1 only,
    so the IPv6 address refuses (port unreachable) and the IPv4 one answers."""
    server = lab.start_server("gcm")
    profile = variant(lab, files, "gcm", "dual-fallback", f"vpn46.lab.test {server.port}",
                      "udp")
    log = ServerLog(server)
    cp, report = probe_json(lab, profile, "--timeout", 30, "-v", timeout=90)
    assert cp.returncode == 0 and report["ok"], (report, cp.stderr[-3000:])
    assert report["address"] == f"198.18.1.1:{server.port}"
    assert f"trying the next address of vpn46.lab.test (198.18.1.1:{server.port})" \
        in cp.stderr, cp.stderr[-3000:]
    assert f"[{SERVER_LINK_ADDR6}]:{server.port}" in cp.stderr
    assert f"[AF_INET]{CLIENT_LINK_ADDR}:" in log.since()


@pytest.mark.parametrize("name, proto, words", [
    ("vpn4.lab.test", "udp6", "udp6: IPv6 addresses only"),
    ("vpn6.lab.test", "udp4", "udp4: IPv4 addresses only"),
    ("vpn6.lab.test", "tcp4-client", "tcp4-client: IPv4 addresses only"),
])
def test_a_name_without_an_address_of_the_forced_family_fails_clearly(lab, files, name,
                                                                       proto, words):
    mode = "ipv6-udp" if proto.startswith("udp") else "ipv6-tcp"
    server = lab.start_server(mode)
    profile = variant(lab, files, mode, f"nofamily-{name}-{proto}",
                      f"{name} {server.port}", proto, "connect-retry-max 1")
    start = time.monotonic()
    cp, report = probe_json(lab, profile, "--timeout", 30, timeout=90)
    assert cp.returncode != 0 and not report["ok"]
    assert report["stage"] == "resolve", report
    assert report["error"] == (f"cannot resolve {name}:{server.port}: No address "
                               f"associated with hostname ({words})"), report
    assert time.monotonic() - start < 30       # answered NODATA, not a timeout


@pytest.fixture(scope="module")
def proxies(lab, files):
    """tinyproxy (HTTP CONNECT) and danted (SOCKS5) on the client's IPv4 address,
    both allowed to reach the IPv6 server."""
    for binary in ("tinyproxy", "danted"):
        if shutil.which(binary) is None:
            pytest.skip(f"{binary} is not installed (scripts/setup.sh installs it)")
    tcp_port = lab.start_server("ipv6-tcp").port
    conf = files / "tinyproxy.conf"
    conf.write_text(f"User nobody\nGroup nogroup\nPort {HTTP_PORT}\nListen {CLIENT_LINK_ADDR}\n"
                    f"Timeout 60\nLogFile \"{files / 'tinyproxy.log'}\"\nLogLevel Info\n"
                    f"MaxClients 20\nAllow {CLIENT_LINK_ADDR}\nConnectPort {tcp_port}\n")
    os.chmod(files, 0o777)
    procs = [lab.spawn_ns(lab.ns_cli, ["tinyproxy", "-d", "-c", str(conf)],
                          output=files / "tinyproxy.out")]
    dconf = files / "danted.conf"
    dconf.write_text(
        f"logoutput: {files / 'danted.log'}\ninternal: {CLIENT_LINK_ADDR} port = {SOCKS_PORT}\n"
        "external: to-srv\nsocksmethod: none\nclientmethod: none\n"
        "user.privileged: root\nuser.unprivileged: nobody\n"
        "client pass {\n from: 198.18.0.0/15 to: 0.0.0.0/0\n}\n"
        "socks pass {\n from: 0.0.0.0/0 to: ::/0\n command: connect\n"
        " log: connect disconnect error\n}\n")
    procs.append(lab.spawn_ns(lab.ns_cli, ["danted", "-f", str(dconf), "-p",
                                           str(files / "danted.pid")],
                              output=files / "danted.out"))
    for port in (HTTP_PORT, SOCKS_PORT):
        for _ in range(50):
            if lab.run_ns(lab.ns_cli, ["ss", "-Htln", f"sport = :{port}"]).stdout.strip():
                break
            time.sleep(0.1)
        else:
            logs = "\n".join(tail(p) for p in sorted(files.glob("*.out")))
            for p in procs:
                stop_process(p)
            pytest.fail(f"a proxy does not listen on {port}:\n{logs}", pytrace=False)
    try:
        yield files
    finally:
        for p in procs:
            stop_process(p)


@pytest.mark.parametrize("kind, line", [
    ("http", f"http-proxy {CLIENT_LINK_ADDR} {HTTP_PORT}"),
    ("socks", f"socks-proxy {CLIENT_LINK_ADDR} {SOCKS_PORT}"),
])
def test_an_ipv6_server_through_an_ipv4_proxy(lab, files, proxies, kind, line):
    server = lab.start_server("ipv6-tcp")
    profile = variant(lab, files, "ipv6-tcp", f"proxy-{kind}",
                      f"{SERVER_LINK_ADDR6} {server.port}", "tcp-client", line)
    report, text = probe_ok(lab, profile, server)
    assert report["server"] == f"[{SERVER_LINK_ADDR6}]:{server.port}"
    # the proxy reached the server over IPv6, from the client's address
    assert FROM_V6 in text, text[-2000:]
    if kind == "http":
        assert f"CONNECT [{SERVER_LINK_ADDR6}]:{server.port}" in \
            (proxies / "tinyproxy.log").read_text()
