"""Issue 17 in the lab, erebus as nobody: ``erebus nc`` (an HTTP request; ssh and scp
of 10 MB to an sshd behind the VPN, with a tunnel per invocation and through ``--via``
a running ``erebus up --control``), ``erebus status --json`` counters moving during a
download through -L, another user refused by the control socket, --print-env lines
evaluated by sh for curl, the --pac file and --metrics."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.interop.util import Up, _big_file, _free_port, outdir
from tests.lab import UNPRIVILEGED_USER, WEB_ADDR, tail, wait_for_log

pytestmark = pytest.mark.interop

NAME = "web.lab.test"        # known to the lab's dnsmasq only, never to the host
SSH_PORT = 2222
OTHER_USER = "daemon"        # a second unprivileged user: refused by the control socket
SCP_SIZE = 10 * 1024 * 1024


def _wait(predicate, what: str, timeout: float = 30.0, interval: float = 0.1):
    """Poll until ``predicate()`` gives something true (returned), at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}", pytrace=False)
        time.sleep(interval)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture(scope="module")
def control_up(lab, ovpn_server):
    """One ``erebus up`` (on the gcm server) with every issue-17 option."""
    ports = {k: _free_port() for k in ("fwd", "http", "socks", "pac", "metrics")}
    sock = outdir(lab) / "erebus.sock"
    up = Up(lab, ovpn_server("gcm").profile, f"{ports['fwd']}:{NAME}:80",
            log_name="up-control.log",
            args=["--http-proxy", ports["http"], "--socks", ports["socks"],
                  "--control", sock, "--print-env", "--pac", ports["pac"],
                  "--metrics", ports["metrics"]])
    wait_for_log(up.log, "# erebus: ready", timeout=30, process=up.proc, what="erebus up")
    yield {"up": up, "ports": ports, "sock": sock}
    rc = up.stop()
    assert rc == 0, tail(up.log)
    assert not sock.exists()                      # removed on exit


def status_json(lab, sock, *, user=UNPRIVILEGED_USER):
    cp = lab.run_ns(lab.ns_cli, [lab.python, "-m", "erebus", "status", str(sock), "--json"],
                    user=user, timeout=30)
    return cp


def read_status(lab, sock) -> dict:
    cp = status_json(lab, sock)
    assert cp.returncode == 0, cp.stderr
    return json.loads(cp.stdout)


def test_control_socket_mode_and_status(lab, control_up):
    sock = control_up["sock"]
    st = os.stat(sock)
    assert oct(st.st_mode & 0o777) == "0o600"
    assert st.st_uid == pwd.getpwnam(UNPRIVILEGED_USER).pw_uid
    status = read_status(lab, sock)
    assert status["state"] == "up" and status["kind"] == "openvpn"
    assert status["virtual_ip"].startswith("198.19.")
    assert status["cipher"] == "AES-256-GCM"
    kinds = sorted(s["kind"] for s in status["services"])
    assert kinds == ["-L", "http", "nc", "socks"]
    text = lab.run_client([lab.python, "-m", "erebus", "status", str(sock)], timeout=30)
    assert text.returncode == 0 and "tunnel     up for" in text.stdout, text.stderr


def test_status_watch_redraws_and_ctrl_c_exits_0(lab, control_up):
    import select
    import signal
    proc = lab.spawn_client([lab.python, "-m", "erebus", "status", "--watch",
                             str(control_up["sock"])], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    out = b""
    deadline = time.monotonic() + 30
    try:
        while out.count(b"\x1b[H\x1b[2J") < 2:            # two screens, a second apart
            assert time.monotonic() < deadline and proc.poll() is None, out
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                out += os.read(proc.stdout.fileno(), 65536)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0, proc.stderr.read()
    assert out.count(b"tunnel     up for") >= 2 and b"(Ctrl-C leaves)" in out


def test_status_refuses_another_user(lab, control_up):
    cp = status_json(lab, control_up["sock"], user=OTHER_USER)
    assert cp.returncode == 1
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1 and "permission denied" in lines[0], cp.stderr
    assert cp.stdout == ""


def test_status_counters_move_during_a_download(lab, control_up):
    """Two readings while curl downloads through -L: the bytes grow and -L has the
    connection open."""
    _big_file(lab, "ctl-40m.bin", 40 * 1024 * 1024)
    sock, port = control_up["sock"], control_up["ports"]["fwd"]
    before = read_status(lab, sock)
    curl = lab.spawn_ns(lab.ns_cli, ["curl", "-sS", "--fail", "--limit-rate", "4M", "-o",
                                     "/dev/null", f"http://127.0.0.1:{port}/ctl-40m.bin"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        first = _wait(lambda: (s := read_status(lab, sock))["bytes_in"] >
                      before["bytes_in"] + 1_000_000 and s, "a first 1 MB through -L")
        assert first["connections"]["-L"] == 1
        second = _wait(lambda: (s := read_status(lab, sock))["bytes_in"] >
                       first["bytes_in"] + 2_000_000 and s, "2 MB more through -L")
        assert second["packets_in"] > first["packets_in"] > before["packets_in"]
        assert second["bytes_out"] > before["bytes_out"]        # the ACKs
        assert curl.poll() is None                             # still downloading
    finally:
        curl.kill()
        curl.wait()
    _wait(lambda: read_status(lab, sock)["connections"]["-L"] == 0, "-L closed")


def _env_lines(log: Path) -> str:
    return "\n".join(line for line in log.read_text().splitlines()
                     if line.startswith("export ") or line == "# erebus: ready")


def test_print_env_evaluated_by_sh(lab, control_up):
    env = _env_lines(control_up["up"].log)
    ports = control_up["ports"]
    assert f"export http_proxy=http://127.0.0.1:{ports['http']} " in env
    assert f"ALL_PROXY=socks5h://127.0.0.1:{ports['socks']}" in env
    assert "NO_PROXY=localhost,127.0.0.1,::1" in env
    # the name is known only to the VPN's DNS: it resolves through the proxy or not at all
    for script in ('eval "$1"; curl -sS --fail --max-time 30 http://web.lab.test/index.html',
                   'eval "$1"; unset http_proxy HTTP_PROXY; curl -sS --fail --max-time 30 '
                   'http://web.lab.test/index.html'):          # the second via ALL_PROXY
        cp = lab.run_ns(lab.ns_cli, ["sh", "-c", script, "sh", env], user=UNPRIVILEGED_USER,
                        timeout=60)
        assert cp.returncode == 0 and "erebus lab web host" in cp.stdout, cp.stderr


def test_pac_and_metrics_served(lab, control_up):
    ports = control_up["ports"]
    cp = lab.run_ns(lab.ns_cli, ["curl", "-sS", "-i", "--max-time", "10",
                                 f"http://127.0.0.1:{ports['pac']}/proxy.pac"], timeout=30)
    assert cp.returncode == 0, cp.stderr
    head, _, body = cp.stdout.partition("\n\n")      # (text mode: \r\n read as \n)
    assert "content-type: application/x-ns-proxy-autoconfig" in head.lower()
    assert f'var vpn = "PROXY 127.0.0.1:{ports["http"]}";' in body
    web_net = WEB_ADDR.rsplit(".", 1)[0] + ".0"
    assert f'isInNet(ip, "{web_net}", "255.255.255.0")' in body        # the pushed route
    status = read_status(lab, control_up["sock"])
    subnet = re.search(r'isInNet\(ip, "(198\.19\.[\d.]+)"', body)
    assert subnet and status["virtual_ip"].rsplit(".", 1)[0] in subnet.group(1)
    cp = lab.run_ns(lab.ns_cli, ["curl", "-sS", "--max-time", "10",
                                 f"http://127.0.0.1:{ports['metrics']}/metrics"], timeout=30)
    assert cp.returncode == 0, cp.stderr
    assert "erebus_tunnel_up 1" in cp.stdout.splitlines()
    bytes_in = re.search(r'^erebus_bytes_total\{dir="in"\} (\d+)$', cp.stdout, re.M)
    assert bytes_in and int(bytes_in.group(1)) > 0
    assert 'erebus_connections{service="-L"}' in cp.stdout


REQUEST = f"GET /index.html HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n\r\n"


def test_nc_profile_http(lab, ovpn_server):
    cp = lab.run_client([lab.python, "-m", "erebus", "nc", ovpn_server("cbc").profile,
                         WEB_ADDR, "80"], input=REQUEST, timeout=60)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.startswith("HTTP/1.") and "erebus lab web host" in cp.stdout
    assert cp.stderr == ""                       # quiet by default
    # by name, through the VPN's DNS
    cp = lab.run_client([lab.python, "-m", "erebus", "nc", ovpn_server("cbc").profile,
                         NAME, "80"], input=REQUEST, timeout=60)
    assert cp.returncode == 0 and "erebus lab web host" in cp.stdout, cp.stderr
    # refused: one line, non-zero
    cp = lab.run_client([lab.python, "-m", "erebus", "nc", ovpn_server("cbc").profile,
                         WEB_ADDR, "81"], input="", timeout=60)
    assert cp.returncode == 1 and cp.stdout == ""
    assert len(cp.stderr.strip().splitlines()) == 1 and "refused" in cp.stderr, cp.stderr


def test_nc_via_control_http(lab, control_up):
    cp = lab.run_client([lab.python, "-m", "erebus", "nc", "--via", control_up["sock"],
                         NAME, "80"], input=REQUEST, timeout=60)
    assert cp.returncode == 0 and "erebus lab web host" in cp.stdout, cp.stderr
    cp = lab.run_client([lab.python, "-m", "erebus", "nc", "--via", control_up["sock"],
                         WEB_ADDR, "81"], input="", timeout=60)
    assert cp.returncode == 1 and len(cp.stderr.strip().splitlines()) == 1, cp.stderr
    cp = lab.run_ns(lab.ns_cli, [lab.python, "-m", "erebus", "nc", "--via",
                                 str(control_up["sock"]), NAME, "80"], user=OTHER_USER,
                    input="", timeout=60)
    assert cp.returncode == 1 and "permission denied" in cp.stderr, cp.stderr


@pytest.fixture(scope="module")
def sshd(lab):
    """A stock sshd in the web namespace on WEB_ADDR:2222: its own config, host key,
    pid file and authorized key (for root); the host's sshd is never touched."""
    d = Path(lab.dir) / "sshd"
    d.mkdir(mode=0o755)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host_key")],
                   check=True)
    client = outdir(lab) / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(client)],
                   check=True)
    nobody = pwd.getpwnam(UNPRIVILEGED_USER).pw_uid
    os.chown(client, nobody, -1)                 # ssh wants its key private to its user
    os.chmod(client, 0o600)
    (d / "authorized_keys").write_text(Path(f"{client}.pub").read_text())
    (d / "sshd_config").write_text(f"""\
Port {SSH_PORT}
ListenAddress {WEB_ADDR}
HostKey {d / 'host_key'}
PidFile {d / 'sshd.pid'}
AuthorizedKeysFile {d / 'authorized_keys'}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
LogLevel VERBOSE
""")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)   # sshd's privilege separation dir
    proc = lab.spawn_ns(lab.ns_web, ["/usr/sbin/sshd", "-D", "-e", "-f",
                                     str(d / "sshd_config")], output=d / "sshd.log")
    _wait(lambda: proc.poll() is not None or f"{WEB_ADDR}:{SSH_PORT} " in
          lab.run_ns(lab.ns_web, ["ss", "-Htln"]).stdout, "sshd listening", timeout=15)
    assert proc.poll() is None, tail(d / "sshd.log")
    yield {"key": client, "dir": d}
    proc.terminate()
    proc.wait(timeout=10)


def _ssh_opts(key: Path, proxy: str) -> list[str]:
    return ["-o", f"ProxyCommand={proxy}", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "LogLevel=ERROR", "-i", str(key)]


def _proxies(lab, control_up, ovpn_server) -> dict[str, str]:
    return {"profile": f"{lab.python} -m erebus nc {ovpn_server('cbc').profile} %h %p",
            "via": f"{lab.python} -m erebus nc --via {control_up['sock']} %h %p"}


@pytest.mark.parametrize("how", ["profile", "via"])
def test_ssh_and_scp_over_nc(lab, sshd, control_up, ovpn_server, how):
    proxy = _proxies(lab, control_up, ovpn_server)[how]
    opts = _ssh_opts(sshd["key"], proxy)
    env = {"SHELL": "/bin/sh"}                  # ssh runs ProxyCommand with $SHELL
    cp = lab.run_client(["ssh", "-p", str(SSH_PORT), *opts, f"root@{WEB_ADDR}", "echo ok"],
                        env=env, timeout=120)
    assert cp.returncode == 0 and cp.stdout == "ok\n", \
        f"{cp.stderr}\n{tail(sshd['dir'] / 'sshd.log')}"
    if how == "profile":
        # nc's own tunnel is closed cleanly (the server told) though ssh SIGHUPs it
        verbose = _ssh_opts(sshd["key"], proxy.replace(" nc ", " nc -v "))
        cp = lab.run_client(["ssh", "-p", str(SSH_PORT), *verbose, f"root@{WEB_ADDR}",
                             "echo ok"], env=env, timeout=120)
        assert cp.returncode == 0 and cp.stdout == "ok\n", cp.stderr
        assert "session closed: closed by us" in cp.stderr, cp.stderr
    # 10 MB there and back, byte-exact
    out = outdir(lab)
    src = out / "up.bin"
    src.write_bytes(os.urandom(SCP_SIZE))
    os.chmod(src, 0o644)
    remote = sshd["dir"] / f"copy-{how}.bin"
    back = out / "back.bin"
    start = time.monotonic()
    cp = lab.run_client(["scp", "-q", "-P", str(SSH_PORT), *opts, str(src),
                         f"root@{WEB_ADDR}:{remote}"], env=env, timeout=300)
    assert cp.returncode == 0, cp.stderr
    cp = lab.run_client(["scp", "-q", "-P", str(SSH_PORT), *opts,
                         f"root@{WEB_ADDR}:{remote}", str(back)], env=env, timeout=300)
    elapsed = time.monotonic() - start
    assert cp.returncode == 0, cp.stderr
    assert _sha256(remote) == _sha256(src) == _sha256(back)
    print(f"scp 2 x {SCP_SIZE >> 20} MiB over nc ({how}): {elapsed:.2f} s")


@pytest.mark.parametrize("how", ["profile", "via"])
def test_nc_download_byte_exact_and_timed(lab, control_up, ovpn_server, how):
    """40 MiB through nc (an HTTP GET on stdin, the body's tail hashed), and how long an
    nc of one small request takes from start to exit."""
    size = 40 * 1024 * 1024
    digest = _big_file(lab, "ctl-40m.bin", size)
    where = (str(ovpn_server("cbc").profile) if how == "profile"
             else f"--via {control_up['sock']}")
    nc = f"{lab.python} -m erebus nc {where}"
    get = f"GET /ctl-40m.bin HTTP/1.1\\r\\nHost: {NAME}\\r\\nConnection: close\\r\\n\\r\\n"
    start = time.monotonic()
    cp = lab.run_client(["bash", "-o", "pipefail", "-c",
                         f"printf '{get}' | {nc} {NAME} 80 | tail -c {size} | sha256sum"],
                        timeout=300)
    elapsed = time.monotonic() - start
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.split()[0] == digest
    times = []
    for _ in range(5):
        t0 = time.monotonic()
        small = lab.run_client(["sh", "-c", f"{nc} {WEB_ADDR} 80"], input=REQUEST, timeout=60)
        times.append(time.monotonic() - t0)
        assert small.returncode == 0 and "erebus lab web host" in small.stdout, small.stderr
    times.sort()
    print(f"nc ({how}): 40 MiB in {elapsed:.2f} s ({size / elapsed / 2**20:.1f} MiB/s); one "
          f"small request, process start to exit: median {times[2] * 1000:.0f} ms "
          f"(min {times[0] * 1000:.0f})")


def test_status_and_metrics_through_a_server_restart(lab, ovpn_server):
    """The server stops and comes back: status says reconnecting, then up with one
    reconnect, and the traffic figures go on from where they were."""
    server = ovpn_server("restart")
    sock = outdir(lab) / "restart.sock"
    ports = {"fwd": _free_port(), "metrics": _free_port()}
    up = Up(lab, server.profile, f"{ports['fwd']}:{WEB_ADDR}:80", log_name="up-ctl-restart.log",
            args=["--control", sock, "--metrics", ports["metrics"]])
    try:
        cp = lab.run_ns(lab.ns_cli, ["curl", "-sS", "--fail", "-o", "/dev/null",
                                     f"http://127.0.0.1:{ports['fwd']}/blob.bin"], timeout=60)
        assert cp.returncode == 0, cp.stderr
        before = read_status(lab, sock)
        assert before["state"] == "up" and before["reconnects"] == 0
        assert before["bytes_in"] > lab.blob_size
        lab.stop_server("restart")
        down = _wait(lambda: (s := read_status(lab, sock))["state"] == "reconnecting" and s,
                     "state reconnecting")
        assert down["bytes_in"] >= before["bytes_in"]
        lab.start_server("restart")
        again = _wait(lambda: (s := read_status(lab, sock))["state"] == "up" and s,
                      "state up again", timeout=90)
        assert again["reconnects"] == 1 and again["bytes_in"] >= before["bytes_in"]
        cp = lab.run_ns(lab.ns_cli, ["curl", "-sS", "--fail", "-o", "/dev/null",
                                     f"http://127.0.0.1:{ports['fwd']}/blob.bin"], timeout=60)
        assert cp.returncode == 0, cp.stderr
        after = read_status(lab, sock)
        assert after["bytes_in"] > before["bytes_in"] + lab.blob_size    # summed, not reset
        cp = lab.run_ns(lab.ns_cli, ["curl", "-sS", "--max-time", "10",
                                     f"http://127.0.0.1:{ports['metrics']}/metrics"],
                        timeout=30)
        lines = cp.stdout.splitlines()
        assert "erebus_reconnects_total 1" in lines and "erebus_tunnel_up 1" in lines
    finally:
        assert up.stop() == 0, tail(up.log, 30)
