"""A UDP relay that impairs what it forwards: delay with jitter, loss, duplication,
reordering; and, to play a hostile path, injected random datagrams, replays of earlier
datagrams and bit-flipped copies.  The lab's kernel has no netem, so the outer path between erebus and a stock
OpenVPN server is impaired by running this relay in the server's namespace: erebus talks
to the relay, the relay to the server (one upstream socket per client address).

Standard library only, so it runs under Debian's /usr/bin/python3 in any namespace:

    python3 relay.py LISTEN_IP LISTEN_PORT TARGET_IP TARGET_PORT \
        [--delay S] [--jitter S] [--loss P] [--duplicate P] [--reorder P] [--seed N]
        [--inject P] [--replay P] [--flip P] [--hostile-to client|server|both]
        [--hostile-after N]

Probabilities are per packet and per direction.  The hostile ones add a datagram next
to the one forwarded (which still goes through, unharmed), only towards
``--hostile-to`` (default: the client) and only after ``--hostile-after`` datagrams
went that way (so an unauthenticated handshake can finish first):

- ``--inject``: random bytes (1 to 1400 of them); every other one keeps the first
  8 bytes of the packet it follows (opcode, key id, peer id / SPI, sequence), so it
  gets past the header checks to the authentication;
- ``--replay``: a copy of one of the last 512 datagrams sent that way;
- ``--flip``: a copy of the packet with 1 to 3 bits flipped.
  A reordered packet waits an extra
``2 * delay + 2 * jitter`` (at least 5 ms), so later packets overtake it.  Prints
``relay ready`` once listening, and counters on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
from collections import deque


class Impairer:
    def __init__(self, args, rng: random.Random):
        self.a = args
        self.rng = rng
        self.loop = asyncio.get_running_loop()
        self.stats = {"forwarded": 0, "lost": 0, "duplicated": 0, "reordered": 0,
                      "injected": 0, "replayed": 0, "flipped": 0}
        self.seen = {"client": 0, "server": 0}
        self.history = {"client": deque(maxlen=512), "server": deque(maxlen=512)}

    def send(self, transport, data: bytes, addr=None) -> None:
        """``addr`` is the client's address towards the client, None towards the server."""
        self._hostile(transport, data, addr, "client" if addr is not None else "server")
        self._impaired(transport, data, addr)

    def _hostile(self, transport, data: bytes, addr, to: str) -> None:
        a, rng = self.a, self.rng
        if a.hostile_to not in (to, "both"):
            return
        self.seen[to] += 1
        history = self.history[to]
        if self.seen[to] > a.hostile_after:
            if rng.random() < a.inject:
                junk = rng.randbytes(rng.randint(1, 1400))
                if rng.random() < 0.5:
                    junk = data[:8] + junk
                self.stats["injected"] += 1
                transport.sendto(junk, addr)
            if history and rng.random() < a.replay:
                self.stats["replayed"] += 1
                transport.sendto(history[rng.randrange(len(history))], addr)
            if data and rng.random() < a.flip:
                flipped = bytearray(data)
                for _ in range(rng.randint(1, 3)):
                    bit = rng.randrange(len(flipped) * 8)
                    flipped[bit >> 3] ^= 1 << (bit & 7)
                self.stats["flipped"] += 1
                transport.sendto(bytes(flipped), addr)
        history.append(data)

    def _impaired(self, transport, data: bytes, addr) -> None:
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
    p.add_argument("--inject", type=float, default=0.0)
    p.add_argument("--replay", type=float, default=0.0)
    p.add_argument("--flip", type=float, default=0.0)
    p.add_argument("--hostile-to", choices=("client", "server", "both"), default="client")
    p.add_argument("--hostile-after", type=int, default=0)
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
