"""Throughput of a download through erebus -L next to the same download through the
stock OpenVPN 2.6 client with a kernel TUN device, in one run, in the lab (root needed).

    sudo .venv/bin/python bench/throughput.py [--size-mb 100] [--modes gcm,none]
        [--json results.json]

Prints a table and writes the figures as JSON so runs can be compared.  This is a
benchmark, not a test: it asserts nothing but byte-exactness.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.lab import (WEB_ADDR, Lab, LabError, missing_prerequisites,  # noqa: E402
                       send_signal, stop_process, wait_for_log)


def make_file(lab: Lab, size: int) -> tuple[str, str]:
    name = f"bench-{size}.bin"
    path = lab.dir / "www" / name
    subprocess.run(["head", "-c", str(size), "/dev/urandom"], stdout=open(path, "wb"),
                   check=True)
    os.chmod(path, 0o644)
    digest = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True,
                            check=True).stdout.split()[0]
    return name, digest


def fetch(lab: Lab, url: str) -> tuple[str, float]:
    start = time.monotonic()
    cp = lab.run_ns(lab.ns_cli, ["bash", "-o", "pipefail", "-c",
                                 f"curl -sS --fail --max-time 600 {url} | sha256sum"],
                    timeout=700)
    elapsed = time.monotonic() - start
    if cp.returncode:
        raise RuntimeError(f"curl {url} failed: {cp.stderr}")
    return cp.stdout.split()[0], elapsed


def bench_erebus(lab: Lab, server, name: str, out: Path, runs: int) -> list[float]:
    log = out / f"erebus-{server.mode}.log"
    up = lab.spawn_client([lab.python, "-m", "erebus", "up", str(server.profile), "-L",
                           f"18000:{WEB_ADDR}:80"], output=log)
    try:
        wait_for_log(log, "forwarding", timeout=30, process=up, what="erebus up")
        return [fetch(lab, f"http://127.0.0.1:18000/{name}") for _ in range(runs)]
    finally:
        send_signal(up, signal.SIGINT)
        try:
            up.wait(timeout=15)
        except subprocess.TimeoutExpired:
            stop_process(up)


def bench_stock(lab: Lab, server, name: str, out: Path, runs: int) -> list[float]:
    log = out / f"stock-{server.mode}.log"
    client = lab.spawn_ns(lab.ns_cli, ["openvpn", "--config", str(server.profile),
                                       "--log", str(log)])
    try:
        wait_for_log(log, "Initialization Sequence Completed", timeout=30, process=client,
                     what="stock openvpn client")
        return [fetch(lab, f"http://{WEB_ADDR}/{name}") for _ in range(runs)]
    finally:
        stop_process(client)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=int, default=100)
    p.add_argument("--modes", default="gcm,none", help="lab server modes (tests/lab.py)")
    p.add_argument("--runs", type=int, default=2, help="downloads per client (best counts)")
    p.add_argument("--json", default="bench-throughput.json")
    args = p.parse_args()
    problems = missing_prerequisites()
    if problems:
        print("bench: cannot build the lab: " + "; ".join(problems), file=sys.stderr)
        return 1
    size = args.size_mb * 1024 * 1024
    results = {"size_bytes": size, "machine": platform.machine(), "cpus": os.cpu_count(),
               "python": platform.python_version(), "time": time.time(), "modes": {}}
    with Lab() as lab:
        name, digest = make_file(lab, size)
        out = Path(tempfile.mkdtemp(dir=lab.dir, prefix="bench-"))
        os.chmod(out, 0o777)
        print(f"{'mode':<6} {'client':<8} {'MiB/s':>8}  {'seconds':>8}  ratio")
        for mode in args.modes.split(","):
            server = lab.start_server(mode)
            row = {}
            for who, fn in (("stock", bench_stock), ("erebus", bench_erebus)):
                runs = fn(lab, server, name, out, args.runs)
                for got, _ in runs:
                    if got != digest:
                        raise RuntimeError(f"{who}/{mode}: wrong bytes")
                best = min(secs for _, secs in runs)
                row[who] = {"seconds": round(best, 3),
                            "mib_per_s": round(size / best / 2**20, 1),
                            "all_seconds": [round(s, 3) for _, s in runs]}
            ratio = row["erebus"]["mib_per_s"] / row["stock"]["mib_per_s"]
            row["ratio"] = round(ratio, 2)
            results["modes"][mode] = row
            for who in ("stock", "erebus"):
                r = row[who]
                print(f"{mode:<6} {who:<8} {r['mib_per_s']:>8.1f}  {r['seconds']:>8.2f}"
                      + (f"  {ratio:.2f}x" if who == "erebus" else ""))
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (LabError, RuntimeError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        sys.exit(1)
