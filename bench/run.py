"""erebus next to the stock OpenVPN 2.6 client (kernel TUN), in one lab and one run.

    .venv/bin/python bench/run.py [--size-mb 100] [--modes gcm,chacha,none]
        [--conns 1000] [--json bench-results.json]
        [--only throughput,latency,ipv6,setup,conns]

Figures printed and written as JSON (compare runs with any JSON diff):
- throughput of a download (best of --runs): stock client direct, erebus via -L, via
  the HTTP proxy (absolute URI), via SOCKS5 and inside `erebus run` (curl in the
  namespace, the kernel's TCP), for each data cipher;
- IPv6 inside next to IPv4 inside, on one dual-stack server (AES-256-GCM, server-ipv6):
  the stock client and erebus -L / SOCKS5, each to the web host's IPv4 and IPv6 address;
- latency p50/p99 of small HTTP requests on one kept-alive connection (stock vs -L);
- session setup time (stock: start to "Initialization Sequence Completed"; erebus:
  probe's setup_ms and the wall time of the whole probe);
- N concurrent idle connections through -L: success rate, erebus RSS per connection,
  CPU seconds.
A benchmark, not a test: it asserts nothing but byte-exactness.  Needs root (the lab).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.lab import (SYSTEM_PYTHON, WEB_ADDR, WEB_ADDR6, Lab, LabError,  # noqa: E402
                       missing_prerequisites, send_signal, stop_process, wait_for_log)

PORTS = {"fwd": 18000, "echo": 18001, "fwd6": 18002, "http": 18080, "socks": 11080}
ECHO_PORT = 9001

# inside `erebus run`: the downloads timed by the command itself (session setup apart)
RUN_INSIDE = r"""
import subprocess, sys, time
url, digest, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
for _ in range(runs):
    start = time.monotonic()
    cp = subprocess.run(["bash", "-o", "pipefail", "-c",
                         f"curl -sS --fail --max-time 600 {url} | sha256sum"],
                        capture_output=True, text=True)
    elapsed = time.monotonic() - start
    if cp.returncode or cp.stdout.split()[0] != digest:
        raise SystemExit(f"wrong bytes or failure: {cp.stderr}")
    print(f"{elapsed:.6f}")
"""

LATENCY_CLIENT = r"""
import socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((host, port), timeout=10)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
times = []
for i in range(n):
    t = time.perf_counter()
    s.sendall(b"ping")
    got = b""
    while len(got) < 4:
        chunk = s.recv(4 - len(got))
        if not chunk:
            raise SystemExit("closed")
        got += chunk
    times.append(time.perf_counter() - t)
print(" ".join(f"{x:.6f}" for x in times))
"""

ECHO_SERVER = r"""
import asyncio, socket, sys
async def handle(r, w):
    w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while data := await r.read(4096):
        w.write(data.replace(b"ping", b"pong"))
    w.close()
async def main():
    srv = await asyncio.start_server(handle, sys.argv[1], int(sys.argv[2]))
    print("ready", flush=True)
    await asyncio.sleep(float(sys.argv[3]))
asyncio.run(main())
"""

HOLD_SERVER = r"""
import asyncio, sys
async def handle(r, w):
    try:
        await r.readexactly(4)
        w.write(b"pong")
        await w.drain()
        await r.read()
    except Exception:
        pass
    w.close()
async def main():
    srv = await asyncio.start_server(handle, sys.argv[1], int(sys.argv[2]), backlog=4096)
    print("ready", flush=True)
    await asyncio.sleep(float(sys.argv[3]))
asyncio.run(main())
"""

CONNS_CLIENT = r"""
import asyncio, resource, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
async def one(i, opened):
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 60)
        w.write(b"ping")
        got = await asyncio.wait_for(r.readexactly(4), 60)
        opened.append(w)
        return got == b"pong"
    except Exception as exc:
        return False
async def main():
    opened = []
    sem = asyncio.Semaphore(200)
    async def guarded(i):
        async with sem:
            return await one(i, opened)
    t = time.monotonic()
    ok = await asyncio.gather(*(guarded(i) for i in range(n)))
    print(sum(ok), round(time.monotonic() - t, 2), flush=True)
    sys.stdin.readline()             # hold them open until told
    for w in opened:
        w.close()
asyncio.run(main())
"""


def proc_stats(pid: int) -> tuple[int, float]:
    """(RSS KiB, CPU seconds) of a process."""
    rss = 0
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return rss, (int(fields[11]) + int(fields[12])) / ticks


def erebus_pid(up_proc) -> int:
    """The python process under runuser."""
    for _ in range(50):
        out = subprocess.run(["pgrep", "-P", str(up_proc.pid)], capture_output=True,
                             text=True).stdout.split()
        if out:
            return int(out[0])
        time.sleep(0.1)
    raise RuntimeError("erebus process not found")


class Bench:
    def __init__(self, lab: Lab, args):
        self.lab = lab
        self.args = args
        self.out = Path(tempfile.mkdtemp(dir=lab.dir, prefix="bench-"))
        os.chmod(self.out, 0o777)
        self.size = args.size_mb * 1024 * 1024
        path = lab.dir / "www" / "bench.bin"
        with open(path, "wb") as f:
            subprocess.run(["head", "-c", str(self.size), "/dev/urandom"], stdout=f, check=True)
        os.chmod(path, 0o644)
        self.digest = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True,
                                     check=True).stdout.split()[0]
        echo = lab.spawn_ns(lab.ns_web, [SYSTEM_PYTHON, "-c", ECHO_SERVER, WEB_ADDR,
                                         str(ECHO_PORT), "3600"], stdout=subprocess.PIPE,
                            text=True)
        if echo.stdout.readline().strip() != "ready":
            raise RuntimeError("the echo server did not start")

    # -- helpers ---------------------------------------------------------------------

    def fetch(self, *curl_args) -> float:
        start = time.monotonic()
        cp = self.lab.run_ns(self.lab.ns_cli, ["bash", "-o", "pipefail", "-c",
                                               "curl -sS --fail --max-time 600 "
                                               + " ".join(curl_args) + " | sha256sum"],
                             timeout=700)
        elapsed = time.monotonic() - start
        if cp.returncode or cp.stdout.split()[0] != self.digest:
            raise RuntimeError(f"curl {curl_args}: wrong bytes or failure: {cp.stderr}")
        return elapsed

    def best(self, *curl_args) -> dict:
        runs = [self.fetch(*curl_args) for _ in range(self.args.runs)]
        best = min(runs)
        return {"mib_per_s": round(self.size / best / 2**20, 1), "seconds": round(best, 3),
                "all_seconds": [round(r, 3) for r in runs]}

    def run_inside(self, server) -> dict:
        """`erebus run PROFILE -- ...`: curl with the kernel's TCP in the namespace."""
        cp = self.lab.run_client([self.lab.python, "-m", "erebus", "run", str(server.profile),
                                  "--", SYSTEM_PYTHON, "-c", RUN_INSIDE,
                                  f"http://{WEB_ADDR}/bench.bin", self.digest,
                                  str(self.args.runs)], timeout=700 * self.args.runs)
        runs = [float(x) for x in cp.stdout.split()]
        if cp.returncode or len(runs) != self.args.runs:
            raise RuntimeError(f"erebus run: {cp.stderr[-2000:]}")
        best = min(runs)
        return {"mib_per_s": round(self.size / best / 2**20, 1), "seconds": round(best, 3),
                "all_seconds": [round(r, 3) for r in runs]}

    def start_erebus(self, server, tag: str, *extra: str):
        log = self.out / f"erebus-{tag}.log"
        up = self.lab.spawn_client(
            [self.lab.python, "-m", "erebus", "up", str(server.profile),
             "-L", f"{PORTS['fwd']}:{WEB_ADDR}:80", "-L", f"{PORTS['echo']}:{WEB_ADDR}:{ECHO_PORT}",
             *extra, "--http-proxy", str(PORTS["http"]),
             "--socks", str(PORTS["socks"])], output=log)
        wait_for_log(log, "ready (", timeout=30, process=up, what="erebus up")
        return up

    def stop_erebus(self, up) -> None:
        send_signal(up, signal.SIGINT)
        try:
            up.wait(timeout=15)
        except subprocess.TimeoutExpired:
            stop_process(up)

    def start_stock(self, server, tag: str):
        log = self.out / f"stock-{tag}.log"
        start = time.monotonic()
        client = self.lab.spawn_ns(self.lab.ns_cli, ["openvpn", "--config", str(server.profile),
                                                     "--log", str(log)])
        wait_for_log(log, "Initialization Sequence Completed", timeout=30, process=client,
                     what="stock openvpn client")
        return client, time.monotonic() - start

    def latency(self, host: str, port: int) -> dict:
        cp = self.lab.run_ns(self.lab.ns_cli, [SYSTEM_PYTHON, "-c", LATENCY_CLIENT, host,
                                               str(port), "500"], timeout=120)
        times = sorted(float(x) * 1000 for x in cp.stdout.split())
        if len(times) < 500:
            raise RuntimeError(f"latency client failed: {cp.stderr}")
        return {"p50_ms": round(statistics.median(times), 3),
                "p99_ms": round(times[int(len(times) * 0.99) - 1], 3),
                "requests": len(times)}

    # -- sections --------------------------------------------------------------------

    def throughput_and_latency(self, mode: str, results: dict) -> None:
        server = self.lab.start_server(mode)
        row = results.setdefault("modes", {}).setdefault(mode, {})
        stock, setup = self.start_stock(server, mode)
        try:
            row["stock"] = self.best(f"http://{WEB_ADDR}/bench.bin")
            if "latency" in self.args.only:
                row["stock_latency"] = self.latency(WEB_ADDR, ECHO_PORT)
        finally:
            stop_process(stock)
        row["stock_setup_s"] = round(setup, 3)
        up = self.start_erebus(server, mode)
        try:
            row["erebus_L"] = self.best(f"http://127.0.0.1:{PORTS['fwd']}/bench.bin")
            row["erebus_http_proxy"] = self.best(
                "-x", f"http://127.0.0.1:{PORTS['http']}", f"http://{WEB_ADDR}/bench.bin")
            row["erebus_socks"] = self.best(
                "--socks5-hostname", f"127.0.0.1:{PORTS['socks']}",
                f"http://{WEB_ADDR}/bench.bin")
            if "latency" in self.args.only:
                row["erebus_L_latency"] = self.latency("127.0.0.1", PORTS["echo"])
        finally:
            self.stop_erebus(up)
        row["erebus_run"] = self.run_inside(server)
        stock_speed = row["stock"]["mib_per_s"]
        for key in ("erebus_L", "erebus_http_proxy", "erebus_socks", "erebus_run"):
            row[key]["ratio_to_stock"] = round(row[key]["mib_per_s"] / stock_speed, 2)

    def ipv6(self, results: dict) -> None:
        """IPv4 and IPv6 inside the same tunnel (mode v6: AES-256-GCM, server-ipv6)."""
        server = self.lab.start_server("v6")
        row = results["ipv6"] = {}
        url4, url6 = f"http://{WEB_ADDR}/bench.bin", f"http://[{WEB_ADDR6}]/bench.bin"
        stock, _ = self.start_stock(server, "v6")
        try:
            row["stock_ipv4"] = self.best(url4)
            row["stock_ipv6"] = self.best(url6)
        finally:
            stop_process(stock)
        up = self.start_erebus(server, "v6", "-L", f"{PORTS['fwd6']}:[{WEB_ADDR6}]:80")
        socks = ("--socks5-hostname", f"127.0.0.1:{PORTS['socks']}")
        try:
            row["erebus_L_ipv4"] = self.best(f"http://127.0.0.1:{PORTS['fwd']}/bench.bin")
            row["erebus_L_ipv6"] = self.best(f"http://127.0.0.1:{PORTS['fwd6']}/bench.bin")
            row["erebus_socks_ipv4"] = self.best(*socks, url4)
            row["erebus_socks_ipv6"] = self.best(*socks, url6)
        finally:
            self.stop_erebus(up)
        for family in ("ipv4", "ipv6"):
            for path in ("erebus_L", "erebus_socks"):
                r = row[f"{path}_{family}"]
                r["ratio_to_stock"] = round(r["mib_per_s"] / row[f"stock_{family}"]["mib_per_s"],
                                            2)

    def setup(self, results: dict) -> None:
        server = self.lab.start_server("gcm")
        probes = []
        for _ in range(5):
            start = time.monotonic()
            cp = self.lab.run_client([self.lab.python, "-m", "erebus", "probe",
                                      str(server.profile), "--json"], timeout=60)
            wall = time.monotonic() - start
            probes.append((json.loads(cp.stdout)["setup_ms"], wall))
        stock = []
        for i in range(3):
            client, setup = self.start_stock(server, f"setup{i}")
            stop_process(client)
            stock.append(setup)
        results["setup"] = {
            "erebus_setup_ms_median": statistics.median(p[0] for p in probes),
            "erebus_probe_wall_s_median": round(statistics.median(p[1] for p in probes), 3),
            "stock_to_initialized_s_median": round(statistics.median(stock), 3)}

    def conns(self, results: dict) -> None:
        n = self.args.conns
        server = self.lab.start_server("gcm")
        hold = self.lab.spawn_ns(self.lab.ns_web, [SYSTEM_PYTHON, "-c", HOLD_SERVER, WEB_ADDR,
                                                   "9000", "600"],
                                 stdout=subprocess.PIPE, text=True)
        assert hold.stdout.readline().strip() == "ready"
        log = self.out / "erebus-conns.log"
        up = self.lab.spawn_client([self.lab.python, "-m", "erebus", "up",
                                    str(server.profile), "-L", f"19000:{WEB_ADDR}:9000"],
                                   output=log)
        try:
            wait_for_log(log, "ready (", timeout=30, process=up, what="erebus up")
            pid = erebus_pid(up)
            rss0, cpu0 = proc_stats(pid)
            client = self.lab.spawn_ns(self.lab.ns_cli, [SYSTEM_PYTHON, "-c", CONNS_CLIENT,
                                                         "127.0.0.1", "19000", str(n)],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       text=True)
            ok, secs = client.stdout.readline().split()
            time.sleep(1.0)
            rss1, cpu1 = proc_stats(pid)
            client.stdin.write("\n")
            client.stdin.flush()
            client.wait(timeout=60)
            results["concurrent"] = {
                "connections": n, "succeeded": int(ok), "open_seconds": float(secs),
                "erebus_rss_kib_before": rss0, "erebus_rss_kib_with_all_open": rss1,
                "rss_kib_per_connection": round((rss1 - rss0) / max(int(ok), 1), 1),
                "erebus_cpu_seconds": round(cpu1 - cpu0, 2)}
        finally:
            self.stop_erebus(up)
            stop_process(hold)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=int, default=100)
    p.add_argument("--modes", default="gcm,chacha,none")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--conns", type=int, default=1000)
    p.add_argument("--only", default="throughput,latency,ipv6,setup,conns")
    p.add_argument("--json", default="bench-results.json")
    args = p.parse_args()
    args.only = set(args.only.split(","))
    problems = missing_prerequisites()
    if problems:
        print("bench: cannot build the lab: " + "; ".join(problems), file=sys.stderr)
        return 1
    results = {"size_bytes": args.size_mb * 1024 * 1024, "machine": platform.machine(),
               "cpus": os.cpu_count(), "python": platform.python_version(),
               "time": time.strftime("%Y-%m-%d %H:%M:%S"), "uvloop": _has_uvloop()}
    with Lab() as lab:
        bench = Bench(lab, args)
        if "throughput" in args.only:
            print(f"{'mode':<7} {'path':<18} {'MiB/s':>7} {'ratio':>6}")
            for mode in args.modes.split(","):
                bench.throughput_and_latency(mode, results)
                row = results["modes"][mode]
                for key in ("stock", "erebus_L", "erebus_http_proxy", "erebus_socks",
                            "erebus_run"):
                    r = row[key]
                    ratio = f"{r['ratio_to_stock']:.2f}x" if "ratio_to_stock" in r else ""
                    print(f"{mode:<7} {key:<18} {r['mib_per_s']:>7.1f} {ratio:>6}")
                if "stock_latency" in row:
                    print(f"{mode:<7} latency p50/p99 ms: stock {row['stock_latency']['p50_ms']}"
                          f"/{row['stock_latency']['p99_ms']}, erebus -L "
                          f"{row['erebus_L_latency']['p50_ms']}/"
                          f"{row['erebus_L_latency']['p99_ms']}")
        if "ipv6" in args.only:
            bench.ipv6(results)
            print(f"{'family':<7} {'path':<18} {'MiB/s':>7} {'ratio':>6}   (one dual-stack "
                  "server, AES-256-GCM)")
            for family in ("ipv4", "ipv6"):
                for path in ("stock", "erebus_L", "erebus_socks"):
                    r = results["ipv6"][f"{path}_{family}"]
                    ratio = f"{r['ratio_to_stock']:.2f}x" if "ratio_to_stock" in r else ""
                    print(f"{family:<7} {path:<18} {r['mib_per_s']:>7.1f} {ratio:>6}")
        if "setup" in args.only:
            bench.setup(results)
            print("setup:", results["setup"])
        if "conns" in args.only:
            bench.conns(results)
            print("concurrent:", results["concurrent"])
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"figures written to {args.json}")
    return 0


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
        return True
    except ImportError:
        return False


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (LabError, RuntimeError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        sys.exit(1)
