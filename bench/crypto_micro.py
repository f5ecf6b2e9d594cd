"""Micro-benchmark of the hot crypto paths, no lab needed.

    python bench/crypto_micro.py [-n 100000] [--size 1400] [--repeat 3]

Prints microseconds per packet (best of --repeat) for the OpenVPN data channel
(``DataKey.encrypt`` / ``DataKey.decrypt``, AES-256-GCM and AES-256-CBC + HMAC-SHA256,
P_DATA_V2) and ESP (``SecurityAssociation.seal`` / ``open``, aes256gcm16 and
aes256-sha256), each with ``--size``-byte payloads.  Decryption is timed over packets
sealed beforehand by the peer, in batches, so the replay window sees increasing ids.
Times are CPU time of this process (``time.process_time``), so that other work on a
busy machine does not count.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from erebus.ipsec.esp import SecurityAssociation  # noqa: E402
from erebus.ipsec.transforms import get_transform  # noqa: E402
from erebus.openvpn.data import DataKey  # noqa: E402

BATCH = 10_000
clock = time.process_time


def _best(repeat: int, run) -> float:
    return min(run() for _ in range(repeat))


def openvpn(cipher: str, auth: str, n: int, size: int, repeat: int) -> tuple[float, float]:
    kb = random.Random(1).randbytes(256)
    payload = random.Random(2).randbytes(size)

    def enc() -> float:
        key = DataKey(0, cipher, kb, auth=auth, peer_id=7)
        t = clock()
        for _ in range(n):
            key.encrypt(payload)
        return (clock() - t) / n * 1e6

    def dec() -> float:
        peer = DataKey(0, cipher, kb[128:] + kb[:128], auth=auth, peer_id=7)
        key = DataKey(0, cipher, kb, auth=auth, peer_id=7)
        header = key.header
        total, left = 0.0, n
        while left:
            bodies = [memoryview(peer.encrypt(payload))[4:] for _ in range(min(BATCH, left))]
            t = clock()
            for body in bodies:
                key.decrypt(body, header)
            total += clock() - t
            left -= len(bodies)
        return total / n * 1e6

    return _best(repeat, enc), _best(repeat, dec)


def esp(name: str, n: int, size: int, repeat: int) -> tuple[float, float]:
    t = get_transform(name)
    rnd = random.Random(3)
    key, ikey = rnd.randbytes(t.key_len), rnd.randbytes(t.integrity_key_len)
    payload = rnd.randbytes(size)

    def seal() -> float:
        sa = SecurityAssociation(0x1000, t, key, ikey)
        t0 = clock()
        for _ in range(n):
            sa.seal(payload)
        return (clock() - t0) / n * 1e6

    def open_() -> float:
        out = SecurityAssociation(0x1000, t, key, ikey)
        sa = SecurityAssociation(0x1000, t, key, ikey)
        total, left = 0.0, n
        while left:
            packets = [out.seal(payload) for _ in range(min(BATCH, left))]
            t0 = clock()
            for p in packets:
                sa.open(p)
            total += clock() - t0
            left -= len(packets)
        return total / n * 1e6

    return _best(repeat, seal), _best(repeat, open_)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=100_000)
    ap.add_argument("--size", type=int, default=1400)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    rows = [("OpenVPN AES-256-GCM", *openvpn("AES-256-GCM", "SHA256", a.n, a.size, a.repeat)),
            ("OpenVPN AES-256-CBC+SHA256",
             *openvpn("AES-256-CBC", "SHA256", a.n, a.size, a.repeat)),
            ("ESP aes256gcm16", *esp("aes256gcm16", a.n, a.size, a.repeat)),
            ("ESP aes256-sha256", *esp("aes256-sha256", a.n, a.size, a.repeat))]
    print(f"{a.n} packets of {a.size} bytes, best of {a.repeat}, µs per packet")
    print(f"{'':28} {'seal':>7} {'open':>7}")
    for name, s, o in rows:
        print(f"{name:28} {s:7.2f} {o:7.2f}")


if __name__ == "__main__":
    main()
