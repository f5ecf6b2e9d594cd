"""The README's demo: a lab of network namespaces with a stock OpenVPN 2.6 server and a
web host behind it; erebus runs in the client namespace as the unprivileged user nobody.

Run through ``scripts/demo`` (which installs what is needed first), as root.
"""

from __future__ import annotations

import hashlib
import os
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

        step(f"erebus up -L 8080:{WEB_ADDR}:80, then curl http://127.0.0.1:8080/ "
             "in the client namespace")
        log = out / "up.log"
        up = lab.spawn_client([*erebus, "up", str(server.profile), "-L",
                               f"8080:{WEB_ADDR}:80"], output=log)
        try:
            deadline = time.time() + 30
            while "forwarding" not in (log.read_text() if log.exists() else ""):
                if time.time() > deadline or up.poll() is not None:
                    print(tail(log), file=sys.stderr)
                    return 1
                time.sleep(0.1)
            got = lab.run_ns(lab.ns_cli, ["curl", "-sS", "--fail", "--max-time", "30",
                                          "http://127.0.0.1:8080/blob.bin"], text=False)
            digest = hashlib.sha256(got.stdout).hexdigest()
            print(f"fetched {len(got.stdout)} bytes through the VPN, sha256 {digest[:16]}... "
                  + ("matches the web host's file" if digest == lab.blob_sha256
                     else "DOES NOT MATCH"))
        finally:
            send_signal(up, signal.SIGINT)
            try:
                up.wait(timeout=15)
            except subprocess.TimeoutExpired:
                stop_process(up)
        print(tail(log, 8))
        step("done: the lab is removed")
        return 0 if digest == lab.blob_sha256 else 1


if __name__ == "__main__":
    sys.exit(main())
