"""Where an upload's (or a download's) time goes: erebus -L under cProfile, with its TCP
sender's counters.

    .venv/bin/python bench/profile_upload.py [--size-mb 50] [--runs 3] [--mode gcm]
        [--socks] [--download] [--parallel N] [--top 30] [--out DIR]

Builds the lab of bench/run.py (as root), starts `erebus up` through bench/upload_probe.py
and sends --runs uploads of --size-mb through -L (or SOCKS5) to the sink, each checked by
byte count and sha256 (--download: --runs curls of the web host's file through -L or
SOCKS5, each checked by sha256; --parallel N: --runs rounds of N curls at once of a 4 MiB
file through -L).  Prints MiB/s per run, every bulk connection's counters (segments,
retransmissions, RTOs, fast recoveries, what limited the sender's output passes, the
largest burst and cwnd) and the cProfile functions with the most own time.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import run as bench_run  # noqa: E402
from tests.lab import Lab, wait_for_log  # noqa: E402

PROBE = str(Path(__file__).resolve().parent / "upload_probe.py")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=int, default=50)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--mode", default="gcm")
    p.add_argument("--socks", action="store_true", help="through SOCKS5 instead of -L")
    p.add_argument("--download", action="store_true",
                   help="downloads (curl of the web host's file) instead of uploads")
    p.add_argument("--parallel", type=int, default=0,
                   help="rounds of this many parallel 4 MiB downloads through -L")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--out", default=None, help="keep erebus.prof and tcp.json here")
    args = p.parse_args()
    with Lab() as lab:
        b = bench_run.Bench(lab, SimpleNamespace(size_mb=args.size_mb, parallel_mb=4,
                                                 parallel=args.parallel,
                                                 runs=args.runs, quick=False))
        server = lab.start_server(args.mode)
        log = b.out / "erebus-probe.log"
        ports = bench_run.PORTS
        up = lab.spawn_client([lab.python, PROBE, str(b.out), "up", str(server.profile),
                               "-L", f"{ports['sink']}:{b.web}:{bench_run.SINK_PORT}",
                               "-L", f"{ports['fwd']}:{b.web}:80",
                               "--socks", str(ports["socks"])], output=log)
        wait_for_log(log, "ready (", timeout=30, process=up, what="erebus up")
        speeds = []
        if args.parallel:                # --runs rounds inside Bench.parallel
            r = b.parallel(f"http://127.0.0.1:{ports['fwd']}/small.bin")
            speeds = [r["min"], r["mib_per_s"], r["max"]]
            print(f"{args.parallel} parallel downloads: {r}", flush=True)
        else:
            for _ in range(args.runs):
                if args.download and args.socks:
                    secs = b.fetch("--socks5-hostname", f"127.0.0.1:{ports['socks']}",
                                   f"http://{b.web}/bench.bin")
                elif args.download:
                    secs = b.fetch(f"http://127.0.0.1:{ports['fwd']}/bench.bin")
                elif args.socks:
                    secs = b.upload(b.web, bench_run.SINK_PORT,
                                    f"127.0.0.1:{ports['socks']}")
                else:
                    secs = b.upload("127.0.0.1", ports["sink"])
                speeds.append(b.size / secs / 2**20)
                print(f"{'download' if args.download else 'upload'} {speeds[-1]:.1f} MiB/s",
                      flush=True)
        time.sleep(0.5)                 # the last connection's TIME_WAIT records it
        b.stop_erebus(up)
        for _ in range(50):
            if (b.out / "erebus.prof").exists():
                break
            time.sleep(0.1)
        print(f"median {sorted(speeds)[len(speeds) // 2]:.1f} MiB/s "
              f"(min {min(speeds):.1f}, max {max(speeds):.1f})")
        tcp = json.loads((b.out / "tcp.json").read_text())
        for rec in tcp:
            print(json.dumps(rec))
        stats = pstats.Stats(str(b.out / "erebus.prof"))
        stats.sort_stats("tottime").print_stats(args.top)
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            for name in ("erebus.prof", "tcp.json"):
                (Path(args.out) / name).write_bytes((b.out / name).read_bytes())
    return 0


if __name__ == "__main__":
    sys.exit(main())
