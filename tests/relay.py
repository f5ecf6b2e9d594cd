"""A UDP relay that impairs what it forwards: delay with jitter, loss, duplication,
reordering.  The lab's kernel has no netem, so the outer path between erebus and a stock
OpenVPN server is impaired by running this relay in the server's namespace: erebus talks
to the relay, the relay to the server (one upstream socket per client address).

Standard library only, so it runs under Debian's /usr/bin/python3 in any namespace:

    python3 relay.py LISTEN_IP LISTEN_PORT TARGET_IP TARGET_PORT \
        [--delay S] [--jitter S] [--loss P] [--duplicate P] [--reorder P] [--seed N]

Probabilities are per packet and per direction.  A reordered packet waits an extra
``2 * delay + 2 * jitter`` (at least 5 ms), so later packets overtake it.  Prints
``relay ready`` once listening, and counters on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys


class Impairer:
    def __init__(self, args, rng: random.Random):
        self.a = args
        self.rng = rng
        self.loop = asyncio.get_running_loop()
        self.stats = {"forwarded": 0, "lost": 0, "duplicated": 0, "reordered": 0}

    def send(self, transport, data: bytes, addr=None) -> None:
        a, rng = self.a, self.rng
        if rng.random() < a.loss:
            self.stats["lost"] += 1
            return
        copies = 1
        if rng.random() < a.duplicate:
            copies = 2
            self.stats["duplicated"] += 1
        for _ in range(copies):
            wait = max(0.0, a.delay + rng.uniform(-a.jitter, a.jitter))
            if rng.random() < a.reorder:
                wait += max(2 * a.delay + 2 * a.jitter, 0.005)
                self.stats["reordered"] += 1
            self.stats["forwarded"] += 1
            if wait <= 0:
                transport.sendto(data, addr)
            else:
                self.loop.call_later(wait, self._deliver, transport, data, addr)

    @staticmethod
    def _deliver(transport, data, addr) -> None:
        if not transport.is_closing():
            transport.sendto(data, addr)


class Upstream(asyncio.DatagramProtocol):
    """The relay's socket towards the target, for one client address."""

    def __init__(self, relay: "Relay", client):
        self.relay = relay
        self.client = client
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data, addr) -> None:
        self.relay.impair.send(self.relay.transport, data, self.client)


class Relay(asyncio.DatagramProtocol):
    def __init__(self, args, impair: Impairer):
        self.args = args
        self.impair = impair
        self.transport = None
        self.upstreams: dict = {}
        self.pending: dict = {}

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data, addr) -> None:
        up = self.upstreams.get(addr)
        if up is not None and up.transport is not None:
            self.impair.send(up.transport, data)
            return
        self.pending.setdefault(addr, []).append(data)
        if up is None:
            up = Upstream(self, addr)
            self.upstreams[addr] = up
            asyncio.ensure_future(self._open(up, addr))

    async def _open(self, up: Upstream, addr) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(
            lambda: up, remote_addr=(self.args.target_ip, self.args.target_port))
        for data in self.pending.pop(addr, []):
            self.impair.send(up.transport, data)


async def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("listen_ip")
    p.add_argument("listen_port", type=int)
    p.add_argument("target_ip")
    p.add_argument("target_port", type=int)
    p.add_argument("--delay", type=float, default=0.0)
    p.add_argument("--jitter", type=float, default=0.0)
    p.add_argument("--loss", type=float, default=0.0)
    p.add_argument("--duplicate", type=float, default=0.0)
    p.add_argument("--reorder", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--max-seconds", type=float, default=3600.0,
                   help="stop by itself after this long (a bound for tests)")
    args = p.parse_args(argv)
    loop = asyncio.get_running_loop()
    impair = Impairer(args, random.Random(args.seed))
    transport, _ = await loop.create_datagram_endpoint(
        lambda: Relay(args, impair), local_addr=(args.listen_ip, args.listen_port))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("relay ready", flush=True)
    try:
        await asyncio.wait_for(stop.wait(), args.max_seconds)
    except asyncio.TimeoutError:
        pass
    transport.close()
    print(" ".join(f"{k}={v}" for k, v in impair.stats.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
