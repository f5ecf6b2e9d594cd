"""Micro-benchmark of the stack's receive path (downloads), no lab needed.

    python bench/rx_micro.py [--size-mb 50] [--repeat 3] [--loss 0] [--profile FILE]

A sending stack streams ``--size-mb`` MiB to a receiving stack over a perfect link
(``--loss`` drops that share of the data packets, seeded, to exercise the out-of-order
path) in virtual time; every packet the receiver gets is recorded.  Then a fresh
receiver (the same seeds, so the same states) is fed the recording ``--repeat`` times:
``NetStack.receive`` of every packet, a read of the connection and ``output`` (its
ACKs) per batch of 32 packets, as the shell does.  Prints CPU µs per received
segment (``time.process_time``, the fastest repeat).  ``--profile FILE`` writes a
cProfile of one replay instead.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from erebus.netstack.stack import NetStack  # noqa: E402

SERVER = "198.18.0.1"
CLIENT = "198.18.0.2"
PORT = 80
BATCH = 32


def _rng(seed: int):
    r = random.Random(seed)
    return lambda n: r.randbytes(n)


def record(size: int, loss: float) -> list[list[bytes]]:
    """The batches of packets the receiver gets during one transfer."""
    srv = NetStack(SERVER, rng=_rng(1))
    cli = NetStack(CLIENT, rng=_rng(2))
    lossy = random.Random(3)
    listener = srv.listen(PORT)
    now = 0.0
    conn = cli.connect(SERVER, PORT, now)
    batches: list[list[bytes]] = []
    data = random.Random(4).randbytes(1 << 20)
    sent = got = 0
    sconn = None
    while got < size:
        now += 0.001
        for p in cli.output(now):
            srv.receive(p, now)
        if sconn is None and listener.accepted:
            sconn = listener.accepted.popleft()
        if sconn is not None and sent < size:
            sent += sconn.send(memoryview(data)[:min(len(data), size - sent)])
        out = srv.output(now)
        for i in range(0, len(out), BATCH):
            batch = [p for p in out[i:i + BATCH] if len(p) < 100 or lossy.random() >= loss]
            batches.append(batch)
            for p in batch:
                cli.receive(p, now)
            got += sum(map(len, conn.read()))
        if srv.timer() is not None and srv.timer() <= now:
            srv.handle_timer(now)
        if cli.timer() is not None and cli.timer() <= now:
            cli.handle_timer(now)
    return batches


def replay(batches: list[list[bytes]]) -> tuple[float, int]:
    cli = NetStack(CLIENT, rng=_rng(2))
    now = 0.0
    conn = cli.connect(SERVER, PORT, now)
    cli.output(now)
    receive, output, read = cli.receive, cli.output, conn.read
    n = 0
    t = time.process_time()
    for batch in batches:
        for p in batch:
            receive(p, now)
        n += len(batch)
        read()
        output(now)
    return time.process_time() - t, n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--loss", type=float, default=0.0)
    ap.add_argument("--profile")
    args = ap.parse_args()
    batches = record(int(args.size_mb * (1 << 20)), args.loss)
    if args.profile:
        import cProfile
        cProfile.runctx("replay(batches)", globals(), {"batches": batches}, args.profile)
        return 0
    best = min(replay(batches) for _ in range(args.repeat))
    print(f"receive path: {best[0] / best[1] * 1e6:.2f} µs per packet "
          f"({best[1]} packets, loss {args.loss})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
