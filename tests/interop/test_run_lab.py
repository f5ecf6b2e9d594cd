"""``erebus run PROFILE -- COMMAND`` as nobody against the stock OpenVPN server: the
command's only network is the VPN (a TUN device in an unprivileged user + network
namespace), so programs that know nothing of proxies reach the web host behind it
with the kernel's own TCP, UDP and ICMP; the exit status is the command's; the host's
interfaces, routes and resolver are untouched; the namespace ends with the command.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import signal
import subprocess
import time

import pytest

from tests.interop.util import Up, _big_file, _free_port, outdir
from tests.lab import SYSTEM_PYTHON, WEB_ADDR, _wait_until, send_signal, stop_process, tail

pytestmark = pytest.mark.interop

NAME = "web.lab.test"           # known to the lab's dnsmasq only, never to the host
BIG = 100 << 20


def run(lab, profile, *command, args=(), timeout=120):
    """``erebus run PROFILE ARGS -- COMMAND`` as nobody in the client namespace."""
    return lab.run_client([lab.python, "-m", "erebus", "run", str(profile), *map(str, args),
                           "--", *map(str, command)], timeout=timeout, text=False)


def text(cp) -> str:
    return (cp.stdout.decode(errors="replace") + cp.stderr.decode(errors="replace"))


def host_network(lab) -> str:
    """What erebus must not change: the client namespace's interfaces and routes."""
    out = []
    for argv in (["ip", "-o", "addr"], ["ip", "-o", "route"], ["ip", "-o", "-6", "route"],
                 ["ip", "-o", "link"], ["cat", "/etc/resolv.conf"]):
        # a link-local address may still be leaving DAD ("tentative"): not ours
        out += [line for line in lab.run_ns(lab.ns_cli, argv).stdout.splitlines()
                if "fe80::" not in line]
    return re.sub(r"\s+", " ", "\n".join(out))


@pytest.fixture(scope="module")
def gcm(lab, ovpn_server):
    return ovpn_server("gcm")


def test_curl_prints_the_body_and_the_host_is_unchanged(lab, gcm):
    before = host_network(lab)
    cp = run(lab, gcm.profile, "curl", "-sS", "--max-time", "30",
             f"http://{WEB_ADDR}/index.html")
    assert cp.returncode == 0, text(cp) + lab.logs_tail()
    assert b"erebus lab web host" in cp.stdout
    assert host_network(lab) == before


def test_exit_status_is_the_commands(lab, gcm):
    assert run(lab, gcm.profile, "sh", "-c", "exit 3").returncode == 3
    cp = run(lab, gcm.profile, "no-such-program-here")
    assert cp.returncode == 127 and b"no-such-program-here" in cp.stderr, text(cp)


def test_ping_gets_three_replies(lab, gcm):
    cp = run(lab, gcm.profile, "ping", "-n", "-c", "3", "-W", "5", WEB_ADDR)
    assert cp.returncode == 0, text(cp)
    assert re.search(rb"3 packets transmitted, 3 received", cp.stdout), text(cp)


def test_names_resolve_through_the_tunnel_only(lab, gcm):
    """glibc's resolver (getent) and a UDP DNS client of its own (dnspython, its
    queries straight to the resolv.conf erebus put there) get the lab's name, which
    the host's resolver does not know; the lab's DNS server logs the query as coming
    from the virtual IP."""
    probe = ("import dns.resolver; r = dns.resolver.Resolver(); "
             f"print('dnspython', r.resolve('{NAME}', 'A')[0], r.nameservers)")
    cp = run(lab, gcm.profile, "sh", "-c",
             f"getent ahostsv4 {NAME} && {shlex.quote(lab.python)} -c {shlex.quote(probe)} "
             "&& cat /etc/resolv.conf")
    assert cp.returncode == 0, text(cp)
    out = cp.stdout.decode()
    assert re.search(rf"^{re.escape(WEB_ADDR)}\s+STREAM {NAME}$", out, re.M), out
    assert f"dnspython {WEB_ADDR}" in out, out
    vip = _virtual_ip(lab, gcm)
    log = (lab.dir / "dnsmasq.log").read_text()
    assert re.search(rf"query\[A\] {re.escape(NAME)} from {re.escape(vip)}", log), log[-2000:]


def _virtual_ip(lab, server) -> str:
    cp = run(lab, server.profile, "ip", "-o", "-4", "addr", "show", "erebus0")
    m = re.search(rb"inet ([\d.]+)/", cp.stdout)
    assert m, text(cp)
    return m.group(1).decode()


def test_a_program_that_ignores_proxies_uses_a_plain_socket(lab, gcm):
    program = ("import socket, os\n"
               "for k in ('http_proxy', 'ALL_PROXY'): assert k not in os.environ\n"
               f"s = socket.create_connection(('{WEB_ADDR}', 80), timeout=10)\n"
               "s.sendall(b'GET /blob.bin HTTP/1.0\\r\\n\\r\\n')\n"
               "data = b''\n"
               "while chunk := s.recv(65536): data += chunk\n"
               "import hashlib; print(hashlib.sha256(data.split(b'\\r\\n\\r\\n', 1)[1]).hexdigest())\n")
    cp = run(lab, gcm.profile, lab.python, "-c", program)
    assert cp.returncode == 0, text(cp)
    assert cp.stdout.decode().strip() == lab.blob_sha256


def test_100mib_byte_exact_through_curl_inside(lab, gcm):
    digest = _big_file(lab, "run-big.bin", BIG)
    start = time.monotonic()
    cp = run(lab, gcm.profile, "sh", "-c",
             f"curl -sS --fail --max-time 300 http://{WEB_ADDR}/run-big.bin | sha256sum",
             timeout=360)
    seconds = time.monotonic() - start
    assert cp.returncode == 0, text(cp)
    assert cp.stdout.split()[0].decode() == digest
    print(f"\nerebus run, curl inside, AES-256-GCM: {BIG / seconds / 1e6:.1f} MB/s "
          f"({seconds:.1f} s for 100 MiB, session setup included)")


def test_signal_reaches_the_command_and_nothing_outlives_it(lab, gcm):
    """SIGTERM to erebus goes to the command (exit 128 + 15); a background child the
    command left behind ends with the namespace.  The command is found by ``marker`` in
    its arguments (Debian's dash has no ``exec -a``: a command that failed at once
    raced the signal)."""
    out = outdir(lab)
    marker = f"erebus-run-orphan-{_free_port()}"
    log = out / "run-signal.log"
    proc = lab.spawn_client([lab.python, "-m", "erebus", "run", str(gcm.profile), "-v", "--",
                             "sh", "-c", f"sleep 300 & exec {SYSTEM_PYTHON} -c "
                             f"'import time; time.sleep(301)' {marker}"],
                            output=log)
    try:
        def started() -> bool:
            assert proc.poll() is None, tail(log)
            return "running sh" in log.read_text()
        assert _wait_until(started, timeout=60), tail(log)
        assert _wait_until(lambda: _pgrep(marker), timeout=20), tail(log)
        send_signal(proc, signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM, tail(log)
    finally:
        stop_process(proc)
    assert _wait_until(lambda: not _pgrep("sleep 300") and not _pgrep(marker), timeout=10)


def _pgrep(pattern: str) -> bool:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True).returncode == 0


def test_local_forward_served_beside_the_namespace(lab, ovpn_server):
    """-L is served by erebus' own stack on the same virtual IP while the command's
    kernel TCP runs inside: both downloads byte-exact."""
    server = ovpn_server("none")
    out = outdir(lab)
    done = out / "done"
    port = _free_port()
    log = out / "run-forward.log"
    inner = (f"curl -sS --fail --max-time 60 http://{WEB_ADDR}/blob.bin | sha256sum > "
             f"{out}/inner.sha256; while [ ! -e {done} ]; do sleep 0.05; done")
    proc = lab.spawn_client([lab.python, "-m", "erebus", "run", str(server.profile), "-v",
                             "-L", f"{port}:{WEB_ADDR}:80", "--", "sh", "-c", inner],
                            output=log)
    try:
        assert _wait_until(lambda: (out / "inner.sha256").exists()
                           and (out / "inner.sha256").read_text().strip(), timeout=60), \
            tail(log)
        got = lab.run_ns(lab.ns_cli, ["curl", "-sS", "--max-time", "30",
                                      f"http://127.0.0.1:{port}/blob.bin"], text=False)
        assert hashlib.sha256(got.stdout).hexdigest() == lab.blob_sha256, got.stderr
        assert (out / "inner.sha256").read_text().split()[0] == lab.blob_sha256
        done.write_text("")
        assert proc.wait(timeout=30) == 0, tail(log)
    finally:
        stop_process(proc)


def test_preflight_names_the_sysctl(lab, gcm):
    """With user.max_user_namespaces=0 erebus run says so in one line and points to the
    proxy modes, before any packet goes to the server.  The limit is set for this test
    only: in a user namespace of its own (the limits are per user namespace; the
    host's cannot be written here), where erebus runs as that namespace's root (nobody
    outside)."""
    script = 'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"'
    sessions = gcm.log.read_text().count("Peer Connection Initiated")
    cp = lab.run_client(["unshare", "--user", "--map-root-user", "sh", "-c", script, "sh",
                         lab.python, "-m", "erebus", "run", str(gcm.profile), "--", "true"],
                        timeout=60, text=False)
    err = cp.stderr.decode().strip().splitlines()
    assert cp.returncode not in (0, 126, 127) and len(err) == 1, text(cp)
    assert "user.max_user_namespaces" in err[0] and "--socks" in err[0], err
    assert gcm.log.read_text().count("Peer Connection Initiated") == sessions, \
        "a session was made before the refusal"


def test_proxy_settings_are_not_needed_but_up_still_works(lab, gcm):
    """erebus up on the same server afterwards: run left nothing behind."""
    port = _free_port()
    up = Up(lab, gcm.profile, f"{port}:{WEB_ADDR}:80", log_name="up-after-run.log")
    try:
        got = lab.run_ns(lab.ns_cli, ["curl", "-sS", "--max-time", "30",
                                      f"http://127.0.0.1:{port}/blob.bin"], text=False)
        assert hashlib.sha256(got.stdout).hexdigest() == lab.blob_sha256, got.stderr
    finally:
        up.stop()


def test_ipv6_inside_the_namespace(lab, ovpn_server):
    """A server pushing ifconfig-ipv6 and route-ipv6: the namespace has both families;
    curl over IPv6 byte-exact, ping -6, and a name's AAAA through the VPN's DNS."""
    from tests.lab import WEB_ADDR6
    server = ovpn_server("v6")
    cp = run(lab, server.profile, "sh", "-c",
             f"ip -6 -o addr show dev erebus0 && curl -sS --fail --max-time 30 "
             f"http://[{WEB_ADDR6}]/blob.bin | sha256sum && ping -6 -n -c 2 -W 5 {WEB_ADDR6}"
             f" && getent ahostsv6 {NAME}")
    out = text(cp)
    assert cp.returncode == 0, out + lab.logs_tail()
    assert lab.blob_sha256 in out and "2 packets transmitted, 2 received" in out
    assert re.search(rf"^{re.escape(WEB_ADDR6)}\s+STREAM {NAME}$", out, re.M), out


def test_shell_reads_its_commands_from_stdin(lab, gcm):
    """--shell runs $SHELL (here /bin/sh, its script on standard input)."""
    cp = lab.run_client(["env", "SHELL=/bin/sh", lab.python, "-m", "erebus", "run",
                         str(gcm.profile), "--shell"], timeout=60,
                        input=f"curl -sS --max-time 20 http://{WEB_ADDR}/blob.bin | sha256sum\n"
                        "exit 5\n")
    assert cp.returncode == 5, cp.stdout + cp.stderr
    assert lab.blob_sha256 in cp.stdout


def test_the_command_survives_a_server_restart(lab, ovpn_server):
    """The server restarts while the command runs: erebus reconnects, the namespace and
    the command stay, and the next download inside is byte-exact."""
    server = ovpn_server("restart")
    out = outdir(lab)
    go = out / "go"
    log = out / "run-restart.log"
    script = (f"curl -sS --fail --max-time 30 http://{WEB_ADDR}/blob.bin | sha256sum > "
              f"{out}/first && while [ ! -e {go} ]; do sleep 0.05; done && "
              f"curl -sS --fail --retry 5 --retry-all-errors --max-time 60 "
              f"http://{WEB_ADDR}/blob.bin | sha256sum > {out}/second")
    proc = lab.spawn_client([lab.python, "-m", "erebus", "run", str(server.profile), "-v",
                             "--", "sh", "-c", script], output=log)
    try:
        assert _wait_until(lambda: (out / "first").exists()
                           and (out / "first").read_text().strip(), timeout=60), tail(log)
        assert (out / "first").read_text().split()[0] == lab.blob_sha256
        lab.stop_server("restart")
        assert _wait_until(lambda: "tunnel down" in log.read_text(), timeout=30), tail(log)
        lab.start_server("restart")
        assert _wait_until(lambda: "reconnected" in log.read_text(), timeout=90), tail(log)
        go.write_text("")
        assert proc.wait(timeout=120) == 0, tail(log)
    finally:
        stop_process(proc)
    assert (out / "second").read_text().split()[0] == lab.blob_sha256, tail(log)
