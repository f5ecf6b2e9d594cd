"""erebus next to the stock clients (OpenVPN 2.6 with a kernel TUN; strongSwan), in one run.

    .venv/bin/python bench/run.py [--quick] [--size-mb 100] [--runs 3]
        [--modes gcm,chacha,none] [--conns 10000] [--parallel 50] [--parallel-mb 4]
        [--json bench-results.json]
        [--only throughput,upload,parallel,latency,run,uvloop,ipv6,setup,conns,ipsec,
                wireguard]

Every throughput figure is the median of --runs runs with the min and max (MiB/s), and
for the client process (openvpn, charon or erebus) its CPU seconds per GiB moved
(utime + stime from /proc/PID/stat over the runs).  For each data cipher (--modes):
- downloads (curl | sha256sum): stock direct; erebus via -L, SOCKS5, the HTTP proxy with an
  absolute URI and with CONNECT (curl -p), and inside `erebus run` (the kernel's TCP);
- uploads (upload): a sink on the web host reads until EOF and answers the byte count and
  sha256; the client checks both: stock direct, erebus via -L and via SOCKS5;
- aggregate of --parallel downloads at once (parallel): total bytes / wall time, stock,
  -L and SOCKS5;
- latency p50/p99 of 4-byte round trips on one connection (latency): stock, -L, SOCKS5.
Then: uvloop next to asyncio for erebus (-L, SOCKS5; if uvloop is importable);
IPv6 inside next to IPv4 inside (ipv6); session setup time (setup); --conns concurrent idle
connections through SOCKS5, each pinging at the end to prove it is alive (conns: success,
RSS KiB per connection, CPU); ESP/IKEv2 (ipsec): strongSwan's own client (charon with
kernel-libipsec) vs erebus up swanctl.conf on the same responder; WireGuard (wireguard):
the stock wireguard-go client (kernel TUN) against a wireguard-go server (tests/wg_lab.py),
download and upload, and erebus up with the lab's wg-quick profile once
erebus.runtime.wireguard exists ("erebus: not yet" until then).
--quick: 1 run, 20 MiB, 1000 connections, 50 x 1 MiB (a smoke run).
A benchmark, not a test: it asserts nothing but byte-exactness (and that every idle
connection survived), and fails loudly otherwise.  Needs root (the lab).
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

PORTS = {"fwd": 18000, "echo": 18001, "fwd6": 18002, "sink": 18003, "http": 18080,
         "socks": 11080}
ECHO_PORT = 9001                   # on the web host: ping -> pong (latency)
SINK_PORT = 9002                   # counts uploaded bytes, answers count and sha256
HOLD_PORT = 9000                   # holds idle connections

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

# a SOCKS5 CONNECT (no auth) in front of a plain socket, for the scripts below
SOCKS5 = r"""
import socket, struct
def socks5(sock, host, port):
    sock.sendall(b"\x05\x01\x00")
    if recvn(sock, 2) != b"\x05\x00":
        raise SystemExit("socks5: no acceptable method")
    sock.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(host) + struct.pack("!H", port))
    head = recvn(sock, 4)
    if head[1] != 0:
        raise SystemExit(f"socks5: reply {head[1]}")
    recvn(sock, {1: 4, 4: 16}[head[3]] + 2)
def recvn(sock, n):
    got = b""
    while len(got) < n:
        chunk = sock.recv(n - len(got))
        if not chunk:
            raise SystemExit("closed")
        got += chunk
    return got
def connect(host, port, socks):
    if socks:
        shost, sport = socks.split(":")
        s = socket.create_connection((shost, int(sport)), timeout=60)
        socks5(s, host, port)
    else:
        s = socket.create_connection((host, port), timeout=60)
    return s
"""

LATENCY_CLIENT = SOCKS5 + r"""
import sys, time
host, port, n, socks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
s = connect(host, port, socks if socks != "-" else None)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
times = []
for i in range(n):
    t = time.perf_counter()
    s.sendall(b"ping")
    if recvn(s, 4) != b"pong":
        raise SystemExit("wrong answer")
    times.append(time.perf_counter() - t)
print(" ".join(f"{x:.6f}" for x in times))
"""

# the upload sink on the web host: reads until EOF, answers "<count> <sha256>\n"
SINK_SERVER = r"""
import asyncio, hashlib, sys
async def handle(r, w):
    h, n = hashlib.sha256(), 0
    while data := await r.read(1 << 18):
        h.update(data)
        n += len(data)
    w.write(f"{n} {h.hexdigest()}\n".encode())
    await w.drain()
    w.close()
async def main():
    srv = await asyncio.start_server(handle, sys.argv[1], int(sys.argv[2]), backlog=256)
    print("ready", flush=True)
    await asyncio.sleep(float(sys.argv[3]))
asyncio.run(main())
"""

# sends a file to the sink (directly or through SOCKS5), checks count and digest
UPLOAD_CLIENT = SOCKS5 + r"""
import hashlib, sys, time
host, port, path, socks = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
data = open(path, "rb").read()
digest = hashlib.sha256(data).hexdigest()
start = time.monotonic()
s = connect(host, port, socks if socks != "-" else None)
s.settimeout(600)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
answer = b""
while chunk := s.recv(4096):
    answer += chunk
elapsed = time.monotonic() - start
n, got = answer.decode().split()
if int(n) != len(data) or got != digest:
    raise SystemExit(f"upload not byte-exact: sink got {n} bytes {got}, sent {len(data)} {digest}")
print(f"{elapsed:.6f}")
"""

# N downloads at once (curl each, sha256 each): total bytes / wall time
PARALLEL_CLIENT = r"""
import subprocess, sys, time
digest, n, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
cmd = "curl -sS --fail --max-time 600 " + " ".join(args) + " | sha256sum"
start = time.monotonic()
procs = [subprocess.Popen(["bash", "-o", "pipefail", "-c", cmd], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) for _ in range(n)]
outs = [p.communicate() for p in procs]
elapsed = time.monotonic() - start
bad = [e for p, (o, e) in zip(procs, outs) if p.returncode or o.split()[0] != digest]
if bad:
    raise SystemExit(f"{len(bad)} of {n} parallel downloads wrong or failed: {bad[0]}")
print(f"{elapsed:.6f}")
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

# holds idle connections: answers each "ping" with "pong" for as long as they stay open
HOLD_SERVER = r"""
import asyncio, resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
async def handle(r, w):
    try:
        while True:
            await r.readexactly(4)
            w.write(b"pong")
            await w.drain()
    except Exception:
        pass
    w.close()
async def main():
    srv = await asyncio.start_server(handle, sys.argv[1], int(sys.argv[2]), backlog=4096)
    print("ready", hard, flush=True)
    await asyncio.sleep(float(sys.argv[3]))
asyncio.run(main())
"""

# N idle connections through SOCKS5 (or direct); after "\n" on stdin each one exchanges
# ping/pong again to prove it is still alive
CONNS_CLIENT = r"""
import asyncio, ipaddress, resource, struct, sys, time
host, port, n, socks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
async def open_one():
    if socks == "-":
        return await asyncio.open_connection(host, port)
    shost, sport = socks.split(":")
    r, w = await asyncio.open_connection(shost, int(sport))
    w.write(b"\x05\x01\x00")
    if await r.readexactly(2) != b"\x05\x00":
        raise OSError("socks5 method")
    w.write(b"\x05\x01\x00\x01" + ipaddress.IPv4Address(host).packed + struct.pack("!H", port))
    head = await r.readexactly(4)
    if head[1] != 0:
        raise OSError(f"socks5 reply {head[1]}")
    await r.readexactly({1: 4, 4: 16}[head[3]] + 2)
    return r, w
async def ping(r, w):
    w.write(b"ping")
    return await asyncio.wait_for(r.readexactly(4), 60) == b"pong"
async def one(opened):
    try:
        r, w = await asyncio.wait_for(open_one(), 60)
        if await ping(r, w):
            opened.append((r, w))
            return True
    except Exception:
        pass
    return False
async def main():
    opened = []
    sem = asyncio.Semaphore(200)
    async def guarded():
        async with sem:
            return await one(opened)
    t = time.monotonic()
    ok = await asyncio.gather(*(guarded() for i in range(n)))
    print(sum(ok), round(time.monotonic() - t, 2), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    async def check(rw):
        async with sem:
            try:
                return await ping(*rw)
            except Exception:
                return False
    alive = await asyncio.gather(*(check(rw) for rw in opened))
    print(sum(alive), flush=True)
    for r, w in opened:
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


def spread(values: list[float], nbytes: int) -> dict:
    """Median / min / max MiB/s of runs that each moved *nbytes* in values[i] seconds."""
    speeds = sorted(nbytes / v / 2**20 for v in values)
    return {"mib_per_s": round(statistics.median(speeds), 1), "min": round(speeds[0], 1),
            "max": round(speeds[-1], 1), "all_seconds": [round(v, 3) for v in values]}


class Bench:
    def __init__(self, lab, args, *, web_addr: str = WEB_ADDR):
        self.lab = lab
        self.args = args
        self.web = web_addr
        self.out = Path(tempfile.mkdtemp(dir=lab.dir, prefix="bench-"))
        os.chmod(self.out, 0o777)
        self.size = args.size_mb * 1024 * 1024
        self.digest = self._random_file(lab.dir / "www" / "bench.bin", self.size)
        self.small = args.parallel_mb * 1024 * 1024
        self.small_digest = self._random_file(lab.dir / "www" / "small.bin", self.small)
        self.upload_file = self.out / "upload.bin"
        self._random_file(self.upload_file, self.size)
        self.cpu_pid: int | None = None       # the client process whose CPU is counted
        for script, port in ((ECHO_SERVER, ECHO_PORT), (SINK_SERVER, SINK_PORT),
                             (HOLD_SERVER, HOLD_PORT)):
            proc = lab.spawn_ns(lab.ns_web, [SYSTEM_PYTHON, "-c", script, self.web, str(port),
                                             "7200"], stdout=subprocess.PIPE, text=True)
            if not proc.stdout.readline().startswith("ready"):
                raise RuntimeError(f"a helper server on the web host (port {port}) did not start")

    @staticmethod
    def _random_file(path: Path, size: int) -> str:
        with open(path, "wb") as f:
            subprocess.run(["head", "-c", str(size), "/dev/urandom"], stdout=f, check=True)
        os.chmod(path, 0o644)
        return subprocess.run(["sha256sum", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0]

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

    def upload(self, host: str, port: int, socks: str = "-") -> float:
        cp = self.lab.run_ns(self.lab.ns_cli, [SYSTEM_PYTHON, "-c", UPLOAD_CLIENT, host,
                                               str(port), str(self.upload_file), socks],
                             timeout=700)
        if cp.returncode:
            raise RuntimeError(f"upload to {host}:{port} (socks {socks}): {cp.stderr[-2000:]}")
        return float(cp.stdout)

    def measure(self, fn, *fargs, nbytes: int | None = None) -> dict:
        """--runs runs of fn(*fargs) -> seconds; median/min/max MiB/s, and CPU seconds
        per GiB of the client process (self.cpu_pid) over all runs."""
        nbytes = self.size if nbytes is None else nbytes
        cpu0 = proc_stats(self.cpu_pid)[1] if self.cpu_pid else None
        runs = [fn(*fargs) for _ in range(self.args.runs)]
        r = spread(runs, nbytes)
        if cpu0 is not None:
            cpu = proc_stats(self.cpu_pid)[1] - cpu0
            r["cpu_s_per_gib"] = round(cpu / (nbytes * len(runs) / 2**30), 2)
        return r

    def download(self, *curl_args) -> dict:
        return self.measure(self.fetch, *curl_args)

    def parallel(self, *curl_args) -> dict:
        def once() -> float:
            cp = self.lab.run_ns(self.lab.ns_cli, [SYSTEM_PYTHON, "-c", PARALLEL_CLIENT,
                                                   self.small_digest,
                                                   str(self.args.parallel), *curl_args],
                                 timeout=900)
            if cp.returncode:
                raise RuntimeError(f"parallel downloads {curl_args}: {cp.stderr[-2000:]}")
            return float(cp.stdout)
        return self.measure(once, nbytes=self.small * self.args.parallel)

    def run_inside(self, server) -> dict:
        """`erebus run PROFILE -- ...`: curl with the kernel's TCP in the namespace."""
        cp = self.lab.run_client([self.lab.python, "-m", "erebus", "run", str(server.profile),
                                  "--", SYSTEM_PYTHON, "-c", RUN_INSIDE,
                                  f"http://{self.web}/bench.bin", self.digest,
                                  str(self.args.runs)], timeout=700 * self.args.runs)
        runs = [float(x) for x in cp.stdout.split()]
        if cp.returncode or len(runs) != self.args.runs:
            raise RuntimeError(f"erebus run: {cp.stderr[-2000:]}")
        return spread(runs, self.size)

    def start_erebus(self, profile, tag: str, *extra: str, env: dict | None = None):
        log = self.out / f"erebus-{tag}.log"
        up = self.lab.spawn_client(
            [self.lab.python, "-m", "erebus", "up", str(profile),
             "-L", f"{PORTS['fwd']}:{self.web}:80", "-L", f"{PORTS['echo']}:{self.web}:{ECHO_PORT}",
             "-L", f"{PORTS['sink']}:{self.web}:{SINK_PORT}",
             *extra, "--http-proxy", str(PORTS["http"]),
             "--socks", str(PORTS["socks"])], output=log, env=env)
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

    def latency(self, host: str, port: int, socks: str = "-") -> dict:
        n = 200 if self.args.quick else 1000
        cp = self.lab.run_ns(self.lab.ns_cli, [SYSTEM_PYTHON, "-c", LATENCY_CLIENT, host,
                                               str(port), str(n), socks], timeout=120)
        times = sorted(float(x) * 1000 for x in cp.stdout.split())
        if len(times) < n:
            raise RuntimeError(f"latency client failed: {cp.stderr}")
        return {"p50_ms": round(statistics.median(times), 3),
                "p99_ms": round(times[int(len(times) * 0.99) - 1], 3),
                "requests": len(times)}

    # -- the paths of one client -------------------------------------------------------

    def stock_paths(self, row: dict) -> None:
        url = f"http://{self.web}/bench.bin"
        row["stock"] = self.download(url)
        if "upload" in self.args.only:
            row["stock_upload"] = self.measure(self.upload, self.web, SINK_PORT)
        if "parallel" in self.args.only:
            row["stock_parallel"] = self.parallel(f"http://{self.web}/small.bin")
        if "latency" in self.args.only:
            row["stock_latency"] = self.latency(self.web, ECHO_PORT)

    def erebus_paths(self, row: dict, *, all_paths: bool = True) -> None:
        url = f"http://{self.web}/bench.bin"
        socks = f"127.0.0.1:{PORTS['socks']}"
        proxy = f"http://127.0.0.1:{PORTS['http']}"
        row["erebus_L"] = self.download(f"http://127.0.0.1:{PORTS['fwd']}/bench.bin")
        row["erebus_socks"] = self.download("--socks5-hostname", socks, url)
        if all_paths:
            row["erebus_http_proxy"] = self.download("-x", proxy, url)
            row["erebus_http_connect"] = self.download("-p", "-x", proxy, url)
        if "upload" in self.args.only:
            row["erebus_L_upload"] = self.measure(self.upload, "127.0.0.1", PORTS["sink"])
            row["erebus_socks_upload"] = self.measure(self.upload, self.web, SINK_PORT, socks)
        if "parallel" in self.args.only and all_paths:
            row["erebus_L_parallel"] = self.parallel(
                f"http://127.0.0.1:{PORTS['fwd']}/small.bin")
            row["erebus_socks_parallel"] = self.parallel(
                "--socks5-hostname", socks, f"http://{self.web}/small.bin")
        if "latency" in self.args.only and all_paths:
            row["erebus_L_latency"] = self.latency("127.0.0.1", PORTS["echo"])
            row["erebus_socks_latency"] = self.latency(self.web, ECHO_PORT, socks)

    # -- sections --------------------------------------------------------------------

    def throughput_and_latency(self, mode: str, results: dict) -> None:
        server = self.lab.start_server(mode)
        row = results.setdefault("modes", {}).setdefault(mode, {})
        stock, setup = self.start_stock(server, mode)
        try:
            self.cpu_pid = stock.pid          # ip netns exec execs openvpn: the same pid
            self.stock_paths(row)
        finally:
            self.cpu_pid = None
            stop_process(stock)
        row["stock_setup_s"] = round(setup, 3)
        up = self.start_erebus(server.profile, mode)
        try:
            self.cpu_pid = erebus_pid(up)
            self.erebus_paths(row)
        finally:
            self.cpu_pid = None
            self.stop_erebus(up)
        if "run" in self.args.only:
            row["erebus_run"] = self.run_inside(server)
        add_ratios(row)

    def uvloop(self, results: dict) -> None:
        """-L / SOCKS5 download and upload, AES-256-GCM, on asyncio and on uvloop."""
        if not _has_uvloop(self.lab.python):
            results["uvloop"] = "not installed"
            return
        server = self.lab.start_server("gcm")
        row = results["uvloop"] = {}
        for name, env in (("asyncio", {"EREBUS_NO_UVLOOP": "1"}), ("uvloop", None)):
            up = self.start_erebus(server.profile, f"loop-{name}", env=env)
            try:
                self.cpu_pid = erebus_pid(up)
                sub = row[name] = {}
                self.erebus_paths(sub, all_paths=False)
            finally:
                self.cpu_pid = None
                self.stop_erebus(up)

    def ipv6(self, results: dict) -> None:
        """IPv4 and IPv6 inside the same tunnel (mode v6: AES-256-GCM, server-ipv6)."""
        server = self.lab.start_server("v6")
        row = results["ipv6"] = {}
        url4, url6 = f"http://{WEB_ADDR}/bench.bin", f"http://[{WEB_ADDR6}]/bench.bin"
        stock, _ = self.start_stock(server, "v6")
        try:
            row["stock_ipv4"] = self.download(url4)
            row["stock_ipv6"] = self.download(url6)
        finally:
            stop_process(stock)
        up = self.start_erebus(server.profile, "v6", "-L", f"{PORTS['fwd6']}:[{WEB_ADDR6}]:80")
        socks = ("--socks5-hostname", f"127.0.0.1:{PORTS['socks']}")
        try:
            row["erebus_L_ipv4"] = self.download(f"http://127.0.0.1:{PORTS['fwd']}/bench.bin")
            row["erebus_L_ipv6"] = self.download(f"http://127.0.0.1:{PORTS['fwd6']}/bench.bin")
            row["erebus_socks_ipv4"] = self.download(*socks, url4)
            row["erebus_socks_ipv6"] = self.download(*socks, url6)
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
        """N concurrent idle connections through SOCKS5 to the holder on the web host."""
        n = self.args.conns
        server = self.lab.start_server("gcm")
        log = self.out / "erebus-conns.log"
        up = self.lab.spawn_client([self.lab.python, "-m", "erebus", "up",
                                    str(server.profile), "--socks", str(PORTS["socks"])],
                                   output=log)
        try:
            wait_for_log(log, "ready (", timeout=30, process=up, what="erebus up")
            pid = erebus_pid(up)
            rss0, cpu0 = proc_stats(pid)
            client = self.lab.spawn_ns(self.lab.ns_cli, [SYSTEM_PYTHON, "-c", CONNS_CLIENT,
                                                         self.web, str(HOLD_PORT), str(n),
                                                         f"127.0.0.1:{PORTS['socks']}"],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       text=True)
            line = _readline(client, timeout=max(120, n / 20))
            ok, secs = line.split()
            time.sleep(2.0)
            rss1, cpu1 = proc_stats(pid)
            client.stdin.write("\n")
            client.stdin.flush()
            alive = int(_readline(client, timeout=max(120, n / 20)))
            client.wait(timeout=60)
            results["concurrent"] = {
                "via": "socks5", "connections": n, "succeeded": int(ok),
                "alive_at_end": alive, "open_seconds": float(secs),
                "erebus_rss_kib_before": rss0, "erebus_rss_kib_with_all_open": rss1,
                "rss_kib_per_connection": round((rss1 - rss0) / max(int(ok), 1), 2),
                "erebus_cpu_seconds": round(cpu1 - cpu0, 2)}
            if alive != int(ok) or int(ok) != n:
                raise RuntimeError(f"concurrent connections: {ok} of {n} opened, {alive} "
                                   f"alive at the end: {results['concurrent']}")
        finally:
            self.stop_erebus(up)


def _readline(proc, timeout: float) -> str:
    """A line of proc's stdout within *timeout* seconds (else the bench fails)."""
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(timeout):
        stop_process(proc)
        raise RuntimeError(f"no answer from {proc.args[-5:]} within {timeout:.0f} s")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"{proc.args[-5:]} ended early (status {proc.wait()})")
    return line


def add_ratios(row: dict) -> None:
    pairs = {"erebus_L": "stock", "erebus_socks": "stock", "erebus_http_proxy": "stock",
             "erebus_http_connect": "stock", "erebus_run": "stock",
             "erebus_L_upload": "stock_upload", "erebus_socks_upload": "stock_upload",
             "erebus_L_parallel": "stock_parallel", "erebus_socks_parallel": "stock_parallel"}
    for key, ref in pairs.items():
        if key in row and ref in row:
            row[key]["ratio_to_stock"] = round(row[key]["mib_per_s"] / row[ref]["mib_per_s"], 2)


def ipsec(args, results: dict) -> None:
    """ESP/IKEv2: strongSwan's user-space client (charon + kernel-libipsec) vs erebus up
    swanctl.conf -L / SOCKS5 against the same responder (mode psk)."""
    from tests import swan_lab
    problems = swan_lab.missing_prerequisites()
    if problems:
        results["ipsec"] = "not run: " + "; ".join(problems)
        return
    row = results["ipsec"] = {}
    with swan_lab.SwanLab(log_keys=False) as lab:
        bench = Bench(lab, args, web_addr=lab.web_addr)
        profile = lab.profile("psk")
        ini = lab.start_initiator("psk")
        try:
            ini.initiate()
            bench.cpu_pid = ini.charon.process.pid
            bench.stock_paths(row)
        finally:
            bench.cpu_pid = None
            ini.terminate()
            ini.stop()
        up = bench.start_erebus(profile.conf, "ipsec")
        try:
            bench.cpu_pid = erebus_pid(up)
            bench.erebus_paths(row)
        finally:
            bench.cpu_pid = None
            bench.stop_erebus(up)
        add_ratios(row)


def wireguard(args, results: dict) -> None:
    """WireGuard: the stock wireguard-go client (kernel TUN) against the lab's
    wireguard-go server; erebus up with the lab's wg-quick profile (-L, SOCKS5) when its
    WireGuard tunnel exists."""
    import importlib.util

    from tests import wg_lab
    problems = wg_lab.missing_prerequisites()
    if problems:
        results["wireguard"] = "not run: " + "; ".join(problems)
        return
    row = results["wireguard"] = {}
    with wg_lab.WgLab() as lab:
        bench = Bench(lab, args, web_addr=lab.web_addr)
        client = lab.start_stock_client()
        try:
            bench.cpu_pid = client.proc.pid       # ip netns exec execs wireguard-go
            row["stock"] = bench.download(f"http://{bench.web}/bench.bin")
            row["stock_upload"] = bench.measure(bench.upload, bench.web, SINK_PORT)
        finally:
            bench.cpu_pid = None
            lab.stop_stock_client()
        if importlib.util.find_spec("erebus.runtime.wireguard") is None:
            row["erebus"] = "not yet (erebus.runtime.wireguard is absent)"
            return
        up = bench.start_erebus(lab.profile_path, "wireguard")
        try:
            bench.cpu_pid = erebus_pid(up)
            bench.erebus_paths(row, all_paths=False)
            row["erebus_L_upload"] = bench.measure(bench.upload, "127.0.0.1", PORTS["sink"])
        finally:
            bench.cpu_pid = None
            bench.stop_erebus(up)
        add_ratios(row)


def _print_wireguard(wg) -> None:
    if isinstance(wg, str):
        print(f"wireguard: {wg}")
        return
    for key, label in (("stock", "download"), ("stock_upload", "upload")):
        r = wg[key]
        print(f"wireguard stock wireguard-go (kernel TUN) {label:<8} {r['mib_per_s']:>7.1f} "
              f"MiB/s ({r['min']}-{r['max']}), CPU {r.get('cpu_s_per_gib', '-')} s/GiB")
    if isinstance(wg.get("erebus"), str):
        print(f"wireguard erebus: {wg['erebus']}")


TABLE_PATHS = (("download -L", "erebus_L", "stock"),
               ("download SOCKS5", "erebus_socks", "stock"),
               ("download HTTP proxy", "erebus_http_proxy", "stock"),
               ("download CONNECT", "erebus_http_connect", "stock"),
               ("download erebus run", "erebus_run", "stock"),
               ("upload -L", "erebus_L_upload", "stock_upload"),
               ("upload SOCKS5", "erebus_socks_upload", "stock_upload"),
               ("50 parallel -L", "erebus_L_parallel", "stock_parallel"),
               ("50 parallel SOCKS5", "erebus_socks_parallel", "stock_parallel"))


def print_table(rows: dict[str, dict]) -> None:
    """One line per path x cipher: erebus and stock medians, ratio, min-max spreads,
    CPU s/GiB."""
    print(f"{'cipher':<8} {'path':<22} {'erebus':>7} {'stock':>7} {'ratio':>6}  "
          f"{'erebus min-max':>15} {'stock min-max':>15}  {'CPU s/GiB e/s':>14}")
    for cipher, row in rows.items():
        for label, key, ref in TABLE_PATHS:
            if key not in row or ref not in row:
                continue
            e, s = row[key], row[ref]
            cpu = f"{e.get('cpu_s_per_gib', '-')}/{s.get('cpu_s_per_gib', '-')}"
            print(f"{cipher:<8} {label:<22} {e['mib_per_s']:>7.1f} {s['mib_per_s']:>7.1f} "
                  f"{e['mib_per_s'] / s['mib_per_s']:>5.2f}x  "
                  f"{e['min']:>7.1f}-{e['max']:<7.1f} {s['min']:>7.1f}-{s['max']:<7.1f}  "
                  f"{cpu:>14}")
        lat = [(name, row[k]) for name, k in (("stock", "stock_latency"),
                                              ("-L", "erebus_L_latency"),
                                              ("SOCKS5", "erebus_socks_latency")) if k in row]
        if lat:
            print(f"{cipher:<8} latency p50/p99 ms: " + ", ".join(
                f"{name} {r['p50_ms']}/{r['p99_ms']}" for name, r in lat))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=int, default=100)
    p.add_argument("--modes", default="gcm,chacha,none")
    p.add_argument("--runs", type=int, default=3, help="runs per figure (median, min, max)")
    p.add_argument("--conns", type=int, default=10000)
    p.add_argument("--parallel", type=int, default=50, help="parallel downloads")
    p.add_argument("--parallel-mb", type=int, default=4, help="size of each parallel download")
    p.add_argument("--only", default=",".join(SECTIONS),
                   help="comma-separated sections: " + ",".join(SECTIONS))
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 run, 20 MiB, 1000 connections, 50 x 1 MiB")
    p.add_argument("--json", default="bench-results.json")
    p.add_argument("--gro", action="store_true",
                   help="the client's link coalesces UDP trains as a NIC with GRO does "
                        "(veth: GRO, threaded NAPI, the server end's TSO off); both "
                        "clients are measured on it")
    args = p.parse_args()
    if args.quick:
        args.runs, args.size_mb, args.conns, args.parallel_mb = 1, 20, 1000, 1
    args.only = set(args.only.split(","))
    unknown = args.only - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}: choose from {','.join(SECTIONS)}")
    problems = missing_prerequisites()
    if problems:
        print("bench: cannot build the lab: " + "; ".join(problems), file=sys.stderr)
        return 1
    results = {"size_bytes": args.size_mb * 1024 * 1024, "runs": args.runs,
               "quick": args.quick, "machine": platform.machine(),
               "cpus": os.cpu_count(), "python": platform.python_version(),
               "time": time.strftime("%Y-%m-%d %H:%M:%S"), "gro": args.gro}
    t0 = time.monotonic()
    paths = {"throughput", "upload", "parallel", "latency", "run"}
    with Lab() if args.only - {"ipsec", "wireguard"} else _NoLab() as lab:
        if lab is not None and args.gro:
            lab.receive_like_a_nic()
        bench = Bench(lab, args) if lab is not None else None
        if args.only & paths:
            args.only.add("throughput")
            for mode in args.modes.split(","):
                bench.throughput_and_latency(mode, results)
                print(f"[{time.monotonic() - t0:.0f} s] {mode} done", flush=True)
        if "uvloop" in args.only:
            bench.uvloop(results)
        if "ipv6" in args.only:
            bench.ipv6(results)
        if "setup" in args.only:
            bench.setup(results)
        if "conns" in args.only:
            bench.conns(results)
    if "ipsec" in args.only:
        ipsec(args, results)
    if "wireguard" in args.only:
        wireguard(args, results)
    results["wall_seconds"] = round(time.monotonic() - t0, 1)
    print()
    print(f"MiB/s, median of {args.runs} (min-max), stock = OpenVPN 2.6 client with a kernel "
          f"TUN (ipsec: charon; wireguard: wireguard-go); {args.size_mb} MiB per transfer"
          + ("; SMOKE RUN (--quick)" if args.quick else ""))
    rows = dict(results.get("modes", {}))
    if isinstance(results.get("ipsec"), dict):
        rows["esp-psk"] = results["ipsec"]     # stock = strongSwan charon + kernel-libipsec
    if isinstance(results.get("wireguard"), dict) and "erebus_L" in results["wireguard"]:
        rows["wireguard"] = results["wireguard"]   # stock = wireguard-go, kernel TUN
    if rows:
        print_table(rows)
    if isinstance(results.get("uvloop"), dict):
        print("uvloop (gcm):")
        print_table({f"gcm/{k}": {**v, "stock": results["modes"]["gcm"]["stock"],
                                  "stock_upload": results["modes"]["gcm"].get("stock_upload",
                                                                              {})}
                     if "modes" in results and "gcm" in results["modes"] else v
                     for k, v in results["uvloop"].items()})
    elif "uvloop" in results:
        print(f"uvloop: {results['uvloop']}")
    if isinstance(results.get("ipsec"), str):
        print(f"ipsec: {results['ipsec']}")
    if "wireguard" in results:
        _print_wireguard(results["wireguard"])
    if "ipv6" in results:
        print(f"{'family':<7} {'path':<18} {'MiB/s':>7} {'ratio':>6}   (one dual-stack "
              "server, AES-256-GCM)")
        for family in ("ipv4", "ipv6"):
            for path in ("stock", "erebus_L", "erebus_socks"):
                r = results["ipv6"][f"{path}_{family}"]
                ratio = f"{r['ratio_to_stock']:.2f}x" if "ratio_to_stock" in r else ""
                print(f"{family:<7} {path:<18} {r['mib_per_s']:>7.1f} {ratio:>6}")
    if "setup" in results:
        print("setup:", results["setup"])
    if "concurrent" in results:
        print("concurrent (SOCKS5):", results["concurrent"])
    print(f"total {results['wall_seconds']} s")
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"figures written to {args.json}")
    return 0


SECTIONS = ("throughput", "upload", "parallel", "latency", "run", "uvloop", "ipv6", "setup",
            "conns", "ipsec", "wireguard")


class _NoLab:
    """Only the sections with labs of their own: no OpenVPN lab."""

    def __enter__(self):
        return None

    def __exit__(self, *exc) -> None:
        pass


def _has_uvloop(python: str) -> bool:
    """Whether the interpreter erebus runs on can import uvloop."""
    return subprocess.run([python, "-c", "import uvloop"], capture_output=True).returncode == 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (LabError, RuntimeError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        sys.exit(1)
