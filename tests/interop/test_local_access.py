"""Local access through the stock OpenVPN server: HTTP proxy, SOCKS5 with names
resolved by the pushed DNS server (dnsmasq on the web host), -L with a name, -R
exposure with RST for everything else, many parallel downloads, a slow reader."""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import pwd
import re
import subprocess
import time

import pytest

from tests.interop.util import Up, _big_file, _free_port, outdir
from tests.lab import UNPRIVILEGED_USER, WEB_ADDR, SYSTEM_PYTHON, tail

pytestmark = pytest.mark.interop

NAME = "web.lab.test"        # known to the lab's dnsmasq only, never to the host


@pytest.fixture(scope="module")
def proxies(lab, ovpn_server):
    """One `erebus up` with an HTTP proxy, SOCKS (with auth), -L by name and two -R."""
    server = ovpn_server("gcm")
    ports = {k: _free_port() for k in ("http", "socks", "socks_auth", "http_auth",
                                       "socks_legacy", "fwd")}
    # the local service exposed with -R: a web server in the client namespace
    www = outdir(lab)
    (www / "local.txt").write_text("served from the erebus side\n")
    local = lab.spawn_ns(lab.ns_cli, [SYSTEM_PYTHON, "-m", "http.server", "3000", "--bind",
                                      "127.0.0.1", "--directory", str(www)],
                         output=www / "local-http.log")
    deadline = time.time() + 10
    while "127.0.0.1:3000" not in lab.run_ns(lab.ns_cli, ["ss", "-Htln"]).stdout:
        assert time.time() < deadline and local.poll() is None, tail(www / "local-http.log")
        time.sleep(0.1)
    up = Up(lab, server.profile, f"{ports['fwd']}:{NAME}:80", log_name="up-access.log",
            args=["--http-proxy", ports["http"], "--socks", ports["socks"],
                  "-R", "8080:127.0.0.1:3000", "-R", "8081:127.0.0.1:3999", "-v"])
    virtual_ip = re.search(r"virtual IP ([\d.]+)/", up.log.read_text()).group(1)
    # a second instance with username/password on both proxies, from a file private to
    # the user erebus runs as (nobody)
    auth = outdir(lab) / "proxy-auth"
    auth.write_text("alice\ns3cret\n")
    os.chmod(auth, 0o600)
    os.chown(auth, pwd.getpwnam(UNPRIVILEGED_USER).pw_uid, -1)
    up_auth = Up(lab, ovpn_server("none").profile, log_name="up-proxy-auth.log",
                 args=["--socks", ports["socks_auth"], "--http-proxy", ports["http_auth"],
                       "--proxy-auth-file", auth])
    # and the old --socks-auth USER:PASSWORD, which still works, with a warning (on its
    # own server: a second client with the same certificate would push the first one out)
    up_legacy = Up(lab, ovpn_server("cbc").profile, log_name="up-socks-auth.log",
                   args=["--socks", ports["socks_legacy"], "--socks-auth", "alice:s3cret"])
    yield {"server": server, "ports": ports, "up": up, "virtual_ip": virtual_ip,
           "up_legacy": up_legacy}
    up.stop()
    up_auth.stop()
    up_legacy.stop()


def curl(lab, *args, timeout=120):
    cp = lab.run_ns(lab.ns_cli, ["curl", "-sS", "--max-time", str(timeout), *map(str, args)],
                    text=False, timeout=timeout + 30)
    return cp.returncode, cp.stdout, cp.stderr.decode(errors="replace")


def test_http_proxy_absolute_uri_and_keep_alive(lab, proxies):
    p = proxies["ports"]["http"]
    code, body, err = curl(lab, "-x", f"http://127.0.0.1:{p}", lab.blob_url,
                           lab.blob_url)                # two requests, one connection
    assert code == 0, err
    assert body == (lab.dir / "www" / "blob.bin").read_bytes() * 2
    code, body, err = curl(lab, "-x", f"http://127.0.0.1:{p}", f"http://{NAME}/index.html")
    assert code == 0 and b"erebus lab web host" in body, err


def test_http_proxy_post_body_streamed(lab, proxies):
    """A request body goes through (http.server answers 501 to POST: the status, headers
    and body of the answer come back intact)."""
    p = proxies["ports"]["http"]
    code, body, err = curl(lab, "-x", f"http://127.0.0.1:{p}", "-o", "/dev/null", "-w",
                           "%{http_code}", "--data-binary", "x" * 100000, lab.web_url)
    assert code == 0 and body == b"501", err


def test_http_proxy_connect(lab, proxies):
    p = proxies["ports"]["http"]
    code, body, err = curl(lab, "-p", "-x", f"http://127.0.0.1:{p}", lab.blob_url)
    assert code == 0, err
    assert hashlib.sha256(body).hexdigest() == lab.blob_sha256


def test_http_proxy_errors_are_http_answers(lab, proxies):
    p = proxies["ports"]["http"]
    # refused by the VPN side (nothing listens on port 81 of the web host)
    code, body, err = curl(lab, "-x", f"http://127.0.0.1:{p}", "-o", "/dev/null", "-w",
                           "%{http_code}", f"http://{WEB_ADDR}:81/")
    assert body == b"502", err
    # a name the VPN's DNS does not know
    code, body, err = curl(lab, "-x", f"http://127.0.0.1:{p}", "-o", "/dev/null", "-w",
                           "%{http_code}", "http://nosuch.lab.test/")
    assert body == b"502", err
    # malformed requests get a 4xx and do not disturb the others
    for raw in (b"GARBAGE\r\n\r\n", b"GET /relative HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET http://" + NAME.encode() + b"/ HTTP/1.1\r\nHost: x\r\nContent-Length:"
                b" -5\r\n\r\n"):
        answer = _raw_exchange(lab, p, raw)
        assert re.match(rb"HTTP/1\.1 4\d\d ", answer), answer
    code, body, err = curl(lab, "-x", f"http://127.0.0.1:{p}", lab.blob_url)
    assert code == 0 and hashlib.sha256(body).hexdigest() == lab.blob_sha256


def _raw_exchange(lab, port, raw: bytes) -> bytes:
    code = ("import socket,sys\n"
            f"s=socket.create_connection(('127.0.0.1',{port}),timeout=10)\n"
            "s.sendall(sys.stdin.buffer.read())\n"
            "print(s.recv(200).decode('latin-1'))\n")
    cp = lab.run_ns(lab.ns_cli, [SYSTEM_PYTHON, "-c", code], input=raw, text=False,
                    timeout=30)
    return cp.stdout


def test_socks5_with_a_name_resolved_through_the_vpn(lab, proxies):
    p = proxies["ports"]["socks"]
    code, body, err = curl(lab, "--socks5-hostname", f"127.0.0.1:{p}",
                           f"http://{NAME}/blob.bin")
    assert code == 0, err
    assert hashlib.sha256(body).hexdigest() == lab.blob_sha256
    # ALL_PROXY=socks5h:// works the same
    cp = lab.run_ns(lab.ns_cli, ["env", f"ALL_PROXY=socks5h://127.0.0.1:{p}", "curl", "-sS",
                                 "--max-time", "30", f"http://{NAME}/index.html"],
                    timeout=60)
    assert cp.returncode == 0 and "erebus lab web host" in cp.stdout, cp.stderr
    # the name was asked of the VPN's DNS server (dnsmasq logs the query)
    assert f"query[A] {NAME}" in (lab.dir / "dnsmasq.log").read_text()


def test_socks5_reply_codes(lab, proxies):
    p = proxies["ports"]["socks"]
    code, _, err = curl(lab, "--socks5-hostname", f"127.0.0.1:{p}", f"http://{WEB_ADDR}:81/",
                        timeout=20)
    assert code == 97 and "(5)" in err, (code, err)          # reply 0x05: refused
    code, _, err = curl(lab, "--socks5-hostname", f"127.0.0.1:{p}", "http://nosuch.lab.test/",
                        timeout=20)
    assert code == 97 and "(4)" in err, (code, err)          # reply 0x04: host unreachable


def _socks_auth_right_and_wrong(lab, p):
    """alice/s3cret fetches byte-exact; a wrong password is refused (curl exit 97)."""
    code, body, err = curl(lab, "--socks5-hostname", f"alice:s3cret@127.0.0.1:{p}",
                           lab.blob_url)
    assert code == 0 and hashlib.sha256(body).hexdigest() == lab.blob_sha256, err
    code, _, err = curl(lab, "--socks5-hostname", f"alice:wrong@127.0.0.1:{p}", lab.blob_url)
    assert code == 97, (code, err)


def test_socks5_username_password(lab, proxies):
    p = proxies["ports"]["socks_auth"]
    _socks_auth_right_and_wrong(lab, p)
    code, _, err = curl(lab, "--socks5-hostname", f"127.0.0.1:{p}", lab.blob_url)
    assert code == 97, (code, err)


def test_socks5_old_flag_still_works_and_warns(lab, proxies):
    p = proxies["ports"]["socks_legacy"]
    _socks_auth_right_and_wrong(lab, p)
    log = proxies["up_legacy"].log.read_text()
    assert "--socks-auth puts the password on the command line" in log


def test_http_proxy_basic_auth(lab, proxies):
    """curl --proxy-user against the HTTP proxy: the right credentials fetch, for an
    absolute URI and through CONNECT; none or wrong ones get 407."""
    p = proxies["ports"]["http_auth"]
    proxy = f"http://127.0.0.1:{p}"
    code, body, err = curl(lab, "-x", proxy, "--proxy-user", "alice:s3cret", lab.blob_url)
    assert code == 0 and hashlib.sha256(body).hexdigest() == lab.blob_sha256, err
    code, body, err = curl(lab, "-x", proxy, "--proxy-user", "alice:s3cret", "-p",
                           lab.blob_url)                                     # CONNECT
    assert code == 0 and hashlib.sha256(body).hexdigest() == lab.blob_sha256, err
    for user in ([], ["--proxy-user", "alice:wrong"]):
        code, out, err = curl(lab, "-x", proxy, *user, "-o", "/dev/null", "-w",
                              "%{http_code}", lab.blob_url, timeout=20)
        assert (code, out) == (0, b"407"), (code, out, err)
        code, _, err = curl(lab, "-x", proxy, *user, "-p", lab.blob_url, timeout=20)
        assert code == 56 and "407" in err, (code, err)
    code, body, err = curl(lab, "--socks5-hostname", f"alice:s3cret@127.0.0.1:"
                           f"{proxies['ports']['socks_auth']}", lab.blob_url)
    assert code == 0 and hashlib.sha256(body).hexdigest() == lab.blob_sha256, err


def test_local_forward_to_a_name(lab, proxies):
    p = proxies["ports"]["fwd"]
    code, body, err = curl(lab, f"http://127.0.0.1:{p}/blob.bin")
    assert code == 0 and hashlib.sha256(body).hexdigest() == lab.blob_sha256, err


def test_remote_forward_serves_the_named_port_and_nothing_else(lab, proxies):
    vip = proxies["virtual_ip"]
    cp = lab.run_ns(lab.ns_srv, ["curl", "-sS", "--max-time", "20",
                                 f"http://{vip}:8080/local.txt"], timeout=40)
    assert cp.returncode == 0 and cp.stdout == "served from the erebus side\n", cp.stderr
    # a port no rule names: RST, curl exit 7 (connection refused)
    cp = lab.run_ns(lab.ns_srv, ["curl", "-sS", "--max-time", "20", f"http://{vip}:8082/"],
                    timeout=40)
    assert cp.returncode == 7, (cp.returncode, cp.stderr)
    # a rule whose local target refuses: RST as well, not an accepted, hanging connection
    start = time.monotonic()
    cp = lab.run_ns(lab.ns_srv, ["curl", "-sS", "--max-time", "20", f"http://{vip}:8081/"],
                    timeout=40)
    assert cp.returncode == 7 and time.monotonic() - start < 5, (cp.returncode, cp.stderr)
    # ICMP echo of the virtual IP is answered
    assert lab.ping(lab.ns_srv, vip, count=2) == 2


def test_fifty_parallel_downloads_through_the_proxy(lab, proxies):
    digest = _big_file(lab, "big10.bin", 10 * 1024 * 1024)
    p = proxies["ports"]["http"]

    def one(i):
        cp = lab.run_ns(lab.ns_cli, ["bash", "-o", "pipefail", "-c",
                                     f"curl -sS --fail --max-time 300 -x http://127.0.0.1:{p}"
                                     f" http://{WEB_ADDR}/big10.bin | sha256sum"],
                        timeout=330)
        return cp.stdout.split()[:1], cp.stderr

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        results = list(pool.map(one, range(50)))
    elapsed = time.monotonic() - start
    bad = [(i, r) for i, r in enumerate(results) if r[0] != [digest]]
    assert not bad, bad[:3]
    print(f"\n50 x 10 MiB through the HTTP proxy in {elapsed:.1f} s "
          f"({500 / elapsed:.1f} MiB/s in all)")


def _rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_slow_reader_keeps_memory_bounded(lab, proxies):
    """A client that reads 100 KB/s: erebus' RSS stays bounded (the window closes, the
    server is held back) instead of buffering the whole 40 MiB."""
    _big_file(lab, "big40.bin", 40 * 1024 * 1024)
    p = proxies["ports"]["http"]
    pid = _erebus_pid(lab, proxies["up"])
    before = _rss_kib(pid)
    slow = lab.spawn_ns(lab.ns_cli, ["curl", "-sS", "--limit-rate", "100K", "-o", "/dev/null",
                                     "-x", f"http://127.0.0.1:{p}", f"http://{WEB_ADDR}/big40.bin"])
    try:
        peak = before
        for _ in range(16):
            time.sleep(0.5)
            peak = max(peak, _rss_kib(pid))
    finally:
        slow.kill()
        slow.wait()
    grown = peak - before
    print(f"\nRSS {before} KiB before, peak {peak} KiB while a 100 KB/s reader pulls 40 MiB")
    assert grown < 12 * 1024, (before, peak)


def _erebus_pid(lab, up) -> int:
    """The python process of `erebus up` (runuser's child)."""
    out = subprocess.run(["pgrep", "-f", f"erebus up .*{up.log.name[:0]}"],
                         capture_output=True, text=True).stdout.split()
    for pid in out:
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if cmd and b"runuser" not in cmd[0] and b"--http-proxy" in cmd:
            return int(pid)
    raise AssertionError(f"erebus up process not found among {out}")
