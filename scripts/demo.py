"""The README's demo: a lab of network namespaces with a stock OpenVPN 2.6 server and a
web host behind it; erebus runs in the client namespace as the unprivileged user nobody.

Run through ``scripts/demo`` (which installs what is needed first), as root.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.lab import WEB_ADDR, Lab, missing_prerequisites, send_signal, stop_process, tail  # noqa: E402


def step(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def show(cp: subprocess.CompletedProcess) -> None:
    for stream in (cp.stdout, cp.stderr):
        if stream and stream.strip():
            print(stream.rstrip())


def main() -> int:
    problems = missing_prerequisites()
    if problems:
        print("demo: cannot build the lab here: " + "; ".join(problems), file=sys.stderr)
        return 1
    with Lab() as lab:
        step("lab: namespaces from 198.18.0.0/15, a PKI, a web host at "
             f"{WEB_ADDR}, a stock {subprocess.run(['openvpn', '--version'], capture_output=True, text=True).stdout.split()[1]} server")
        server = lab.start_server("gcm")
        print(f"server {server.host}:{server.port}/udp, VPN pool {server.pool}, "
              f"profile {server.profile}")
        out = Path(tempfile.mkdtemp(dir=lab.dir, prefix="demo-"))
        os.chmod(out, 0o777)
        erebus = [lab.python, "-m", "erebus"]

        step("erebus probe (as nobody: no root, no TUN device, no routes)")
        pcap = out / "demo.pcapng"
        cp = lab.run_client([*erebus, "probe", str(server.profile), "--ping", WEB_ADDR,
                             "--pcap", str(pcap)], timeout=60)
        show(cp)
        if cp.returncode:
            print(server.describe(), file=sys.stderr)
            return 1

        step("what tshark reads in the pcap (outer OpenVPN datagrams, inner IPv4)")
        cp = subprocess.run(["tshark", "-r", str(pcap), "-d",
                             f"udp.port=={server.port},openvpn"],
                            capture_output=True, text=True, timeout=60)
        print("\n".join(line for line in cp.stdout.splitlines()
                        if "OpenVPN" in line or "ICMP" in line)[:4000])

        step("erebus up: -L 8080:web.lab.test:80, --http-proxy 3128, --socks 1080, and "
             "-R 8081:127.0.0.1:3000 (a local web server exposed on the virtual IP)")
        (out / "hello.txt").write_text("hello from a local service on the erebus side\n")
        local = lab.spawn_ns(lab.ns_cli, ["/usr/bin/python3", "-m", "http.server", "3000",
                                          "--bind", "127.0.0.1", "--directory", str(out)],
                             output=out / "local.log")
        log = out / "up.log"
        up = lab.spawn_client([*erebus, "up", str(server.profile),
                               "-L", "8080:web.lab.test:80", "--http-proxy", "3128",
                               "--socks", "1080", "-R", "8081:127.0.0.1:3000"], output=log)
        ok = True
        try:
            deadline = time.time() + 30
            while "ready (" not in (log.read_text() if log.exists() else ""):
                if time.time() > deadline or up.poll() is not None:
                    print(tail(log), file=sys.stderr)
                    return 1
                time.sleep(0.1)
            print(tail(log, 7))
            vip = re.search(r"virtual IP ([\d.]+)/", log.read_text()).group(1)
            for title, argv in (
                ("-L to a name the VPN's DNS resolves",
                 ["curl", "-sS", "http://127.0.0.1:8080/blob.bin"]),
                ("HTTP proxy, absolute URI",
                 ["curl", "-sS", "-x", "http://127.0.0.1:3128", lab.blob_url]),
                ("HTTP proxy, CONNECT",
                 ["curl", "-sS", "-p", "-x", "http://127.0.0.1:3128", lab.blob_url]),
                ("SOCKS5, name resolved through the VPN",
                 ["curl", "-sS", "--socks5-hostname", "127.0.0.1:1080",
                  "http://web.lab.test/blob.bin"])):
                got = lab.run_ns(lab.ns_cli, [*argv, "--max-time", "30"], text=False)
                good = hashlib.sha256(got.stdout).hexdigest() == lab.blob_sha256
                ok &= good
                print(f"  $ {' '.join(argv)}\n    {len(got.stdout)} bytes, "
                      + ("sha256 matches the web host's file" if good else
                         f"WRONG ({got.stderr.decode().strip()})"))
            got = lab.run_ns(lab.ns_srv, ["curl", "-sS", "--max-time", "10",
                                          f"http://{vip}:8081/hello.txt"])
            print(f"  from the server's side: $ curl http://{vip}:8081/hello.txt\n    "
                  f"{got.stdout.strip() or got.stderr.strip()}")
            ok &= got.returncode == 0
            got = lab.run_ns(lab.ns_srv, ["curl", "-sS", "--max-time", "10",
                                          f"http://{vip}:22/"])
            print(f"  from the server's side: $ curl http://{vip}:22/  (no rule names it)\n"
                  f"    exit {got.returncode}: {got.stderr.strip()}")
            ok &= got.returncode == 7
        finally:
            send_signal(up, signal.SIGINT)
            try:
                up.wait(timeout=15)
            except subprocess.TimeoutExpired:
                stop_process(up)
            stop_process(local)
        print(tail(log, 2))
        step("done: the lab is removed")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
