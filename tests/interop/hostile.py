"""A hostile host behind the lab's OpenVPN server (run as root with the system python,
stdlib only, in the server namespace), and the counting local target of -R rules.

    hostile.py target LOG PORT...          echo server on 127.0.0.1:PORT...; logs
                                           "accept PORT" per connection
    hostile.py ooo VIP VPORT DEV PID N     connect to VIP:VPORT with a kernel socket,
                                           read both ISNs off DEV (AF_PACKET), flood N
                                           overlapping out-of-order segments (raw
                                           IPPROTO_RAW socket) past what the socket will
                                           send, then echo 200 KB through the connection
    hostile.py syn VIP VPORT N             N SYNs from spoofed 198.18.200.0/22 sources

Every 100 packets it pings VIP and waits for the answer: erebus handled what came
before (the tunnel keeps order), so the flood never overruns a socket buffer and the
time measured is erebus' own.  Results: one JSON line on stdout.
"""

from __future__ import annotations

import json
import os
import random
import select
import socket
import struct
import sys
import threading
import time

ETH_P_ALL = 0x0003
SYN, ACK = 0x02, 0x10
BATCH = 100


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def tcp_packet(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int,
               payload: bytes = b"", window: int = 65535, options: bytes = b"") -> bytes:
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    off = (20 + len(options)) // 4
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq % (1 << 32), ack % (1 << 32),
                      off << 4, flags, window, 0, 0) + options
    pseudo = s + d + struct.pack("!BBH", 0, 6, len(hdr) + len(payload))
    c = checksum(pseudo + hdr + payload)
    hdr = hdr[:16] + struct.pack("!H", c) + hdr[18:]
    total = 20 + len(hdr) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, random.getrandbits(16), 0, 64, 6, 0,
                     s, d)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return ip + hdr + payload


class Pinger:
    def __init__(self, dst: str):
        self.dst = dst
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.ident = os.getpid() & 0xFFFF
        self.seq = 0
        self.missed = 0

    def ping(self, timeout: float = 5.0) -> bool:
        self.seq = (self.seq + 1) & 0xFFFF
        body = b"erebus-hostile"
        hdr = struct.pack("!BBHHH", 8, 0, 0, self.ident, self.seq)
        hdr = struct.pack("!BBHHH", 8, 0, checksum(hdr + body), self.ident, self.seq)
        self.sock.sendto(hdr + body, (self.dst, 0))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([self.sock], [], [], left)[0]:
                break
            data, (src, _) = self.sock.recvfrom(2048)
            ihl = (data[0] & 0x0F) * 4
            kind, _, _, rid, rseq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
            if kind == 0 and rid == self.ident and rseq == self.seq and src == self.dst:
                return True
        self.missed += 1
        return False


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def target(log: str, ports: list[int]) -> None:
    out = open(log, "a", buffering=1)
    lock = threading.Lock()

    def echo(conn):
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def serve(port):
        srv = socket.create_server(("127.0.0.1", port), backlog=4096)
        out_line = f"listening {port}"
        with lock:
            out.write(out_line + "\n")
        while True:
            conn, _ = srv.accept()
            with lock:
                out.write(f"accept {port}\n")
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    threads = [threading.Thread(target=serve, args=(p,), daemon=True) for p in ports]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _isns(cap, laddr: str, lport: int, vip: str, vport: int, timeout: float = 10.0):
    """(our ISN, erebus' ISN) from the SYN and the SYN-ACK seen on the TUN device."""
    mine = theirs = None
    deadline = time.monotonic() + timeout
    while (mine is None or theirs is None) and time.monotonic() < deadline:
        if not select.select([cap], [], [], 0.5)[0]:
            continue
        pkt = cap.recv(65536)
        if len(pkt) < 40 or pkt[0] >> 4 != 4 or pkt[9] != 6:
            continue
        ihl = (pkt[0] & 0x0F) * 4
        src, dst = socket.inet_ntoa(pkt[12:16]), socket.inet_ntoa(pkt[16:20])
        sport, dport, seq = struct.unpack("!HHI", pkt[ihl:ihl + 8])
        flags = pkt[ihl + 13]
        if (src, sport, dst, dport) == (laddr, lport, vip, vport) and flags & SYN:
            mine = seq
        if (src, sport, dst, dport) == (vip, vport, laddr, lport) and flags & SYN \
                and flags & ACK:
            theirs = seq
    if mine is None or theirs is None:
        raise SystemExit(f"handshake not seen on the TUN device ({mine}, {theirs})")
    return mine, theirs


def ooo(vip: str, vport: int, dev: str, pid: int, count: int) -> dict:
    cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    cap.bind((dev, 0))
    sock = socket.create_connection((vip, vport), timeout=30)
    laddr, lport = sock.getsockname()
    isn, their_isn = _isns(cap, laddr, lport, vip, vport)
    cap.close()
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    pinger = Pinger(vip)
    pinger.ping()
    baseline = peak = rss_kib(pid)
    rng = random.Random(1)
    junk = rng.randbytes(4096)
    # offsets 300 KB .. 1.3 MB: past the 200 KB the socket sends below (so erebus never
    # acknowledges bytes the kernel did not send), partly past erebus' window
    lo, span = 300_000, 1_000_000
    start = time.monotonic()
    for i in range(count):
        off = lo + rng.randrange(span)
        n = rng.randint(200, 1400)
        k = rng.randrange(4096 - 1400)
        raw.sendto(tcp_packet(laddr, vip, lport, vport, isn + 1 + off, their_isn + 1, ACK,
                              junk[k:k + n]), (vip, 0))
        if i % BATCH == BATCH - 1:
            pinger.ping()
            peak = max(peak, rss_kib(pid))
    pinger.ping()
    elapsed = time.monotonic() - start
    peak = max(peak, rss_kib(pid))
    # the flooded connection still carries an exact stream, both ways
    data = random.Random(2).randbytes(200_000)
    got = bytearray()
    sock.settimeout(60)

    def reader():
        while len(got) < len(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            got.extend(chunk)

    t = threading.Thread(target=reader)
    t.start()
    sock.sendall(data)
    t.join(90)
    sock.close()
    return {"baseline_kib": baseline, "peak_kib": peak, "after_kib": rss_kib(pid),
            "flood_seconds": round(elapsed, 2), "segments": count,
            "pings_missed": pinger.missed, "echo_exact": bytes(got) == data,
            "echo_bytes": len(got)}


def syn(vip: str, vport: int, count: int) -> dict:
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    pinger = Pinger(vip)
    rng = random.Random(3)
    mss = struct.pack("!BBH", 2, 4, 1360)
    start = time.monotonic()
    for i in range(count):
        src = f"198.18.{200 + i // 250}.{1 + i % 250}"
        raw.sendto(tcp_packet(src, vip, 20000 + i, vport, rng.getrandbits(32), 0, SYN,
                              options=mss), (vip, 0))
        if i % BATCH == BATCH - 1:
            pinger.ping()
    pinger.ping()
    return {"sent": count, "seconds": round(time.monotonic() - start, 2),
            "pings_missed": pinger.missed}


def main(argv: list[str]) -> None:
    mode = argv[0]
    if mode == "target":
        target(argv[1], [int(p) for p in argv[2:]])
        return
    if mode == "ooo":
        result = ooo(argv[1], int(argv[2]), argv[3], int(argv[4]), int(argv[5]))
    elif mode == "syn":
        result = syn(argv[1], int(argv[2]), int(argv[3]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
