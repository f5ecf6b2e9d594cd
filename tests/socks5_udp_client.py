"""A SOCKS5 UDP client written from RFC 1928 (and RFC 1929 for a password), for the
interop tests: it asks a SOCKS server for a UDP ASSOCIATE and sends datagrams through
the relay it names, in paced windows (never a flood), checking every answer.

Standard library only, so it runs under Debian's /usr/bin/python3 in the lab's
client namespace (the test process is elsewhere).  Prints one JSON object:

    python3 socks5_udp_client.py PROXY_HOST PROXY_PORT echo TARGET_HOST TARGET_PORT
        [--count N] [--window W] [--max-size S] [--seed N] [--user U --password P]
        [--stranger] [--timeout S]
    python3 socks5_udp_client.py PROXY_HOST PROXY_PORT dns SERVER NAME [--count N]

``echo``: N datagrams (sizes 1..S, contents derived from the sequence number and the
seed) to TARGET (an IPv4 address, or a name the proxy resolves), W at a time: a
window is sent, then its answers are awaited (1 s at most) before the next.
Reports sent, received, exact (byte-exact answers from TARGET), wrong (answers that
differ or name another sender) and, with ``--stranger``, whether a datagram sent to
the relay from another local socket came back (it must not).  ``dns``: N raw A
queries for NAME to SERVER:53 through the relay; reports the answers' addresses.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import select
import socket
import struct
import sys
import time

VERSION = 5
CMD_UDP_ASSOCIATE = 3
ATYP_IPV4, ATYP_DOMAIN = 1, 3


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the SOCKS server closed the connection")
        data += chunk
    return data


def associate(proxy: tuple[str, int], user: str | None, password: str | None,
              udp: socket.socket) -> tuple[socket.socket, tuple[str, int]]:
    """The control connection and the relay's address (RFC 1928 4, 6, 7)."""
    control = socket.create_connection(proxy, timeout=10)
    method = 2 if user is not None else 0
    control.sendall(bytes((VERSION, 1, method)))
    ver, chosen = _recv_exact(control, 2)
    if ver != VERSION or chosen != method:
        raise ConnectionError(f"method {chosen} chosen, {method} offered")
    if method == 2:
        u, p = user.encode(), password.encode()
        control.sendall(bytes((1, len(u))) + u + bytes((len(p),)) + p)
        if _recv_exact(control, 2)[1] != 0:
            raise ConnectionError("username/password refused")
    # DST.ADDR/DST.PORT: where our datagrams will come from (our UDP socket's port)
    src_ip, src_port = udp.getsockname()
    control.sendall(bytes((VERSION, CMD_UDP_ASSOCIATE, 0, ATYP_IPV4)) +
                    ipaddress.IPv4Address(src_ip).packed + struct.pack("!H", src_port))
    ver, rep, _, atyp = _recv_exact(control, 4)
    if rep != 0:
        raise ConnectionError(f"UDP ASSOCIATE refused: reply {rep}")
    if atyp != ATYP_IPV4:
        raise ConnectionError(f"relay address type {atyp}")
    ip = str(ipaddress.IPv4Address(_recv_exact(control, 4)))
    (port,) = struct.unpack("!H", _recv_exact(control, 2))
    if ipaddress.IPv4Address(ip).is_unspecified:
        ip = proxy[0]
    return control, (ip, port)


def udp_header(host: str, port: int) -> bytes:
    try:
        addr = bytes((ATYP_IPV4,)) + ipaddress.IPv4Address(host).packed
    except ValueError:
        name = host.encode("ascii")
        addr = bytes((ATYP_DOMAIN, len(name))) + name
    return b"\x00\x00\x00" + addr + struct.pack("!H", port)


def parse_reply(datagram: bytes) -> tuple[tuple[str, int], bytes] | None:
    """The sender and the payload of a datagram from the relay (IPv4 sender)."""
    if len(datagram) < 10 or datagram[2] != 0 or datagram[3] != ATYP_IPV4:
        return None
    ip = str(ipaddress.IPv4Address(datagram[4:8]))
    (port,) = struct.unpack("!H", datagram[8:10])
    return (ip, port), datagram[10:]


def payload(seed: int, seq: int, max_size: int) -> bytes:
    rng = random.Random(seed * 1_000_003 + seq)
    size = rng.randint(4, max_size)
    return struct.pack("!I", seq) + rng.randbytes(size - 4)


def echo(args, udp, relay) -> dict:
    target_ip = args.target_host
    try:
        ipaddress.IPv4Address(target_ip)
    except ValueError:
        target_ip = None                  # a name: the relay names the resolved sender
    header = udp_header(args.target_host, args.target_port)
    sent = received = exact = wrong = 0
    senders = set()
    start = time.monotonic()
    seq = 0
    while seq < args.count and time.monotonic() - start < args.timeout:
        window = range(seq, min(seq + args.window, args.count))
        waiting = {}
        for s in window:
            data = payload(args.seed, s, args.max_size)
            waiting[s] = data
            udp.sendto(header + data, relay)
            sent += 1
        seq = window.stop
        deadline = time.monotonic() + 1.0
        while waiting and time.monotonic() < deadline:
            ready, _, _ = select.select([udp], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            datagram, source = udp.recvfrom(65535)
            parsed = parse_reply(datagram) if source == relay else None
            if parsed is None:
                wrong += 1
                continue
            sender, data = parsed
            senders.add(f"{sender[0]}:{sender[1]}")
            s = struct.unpack("!I", data[:4])[0] if len(data) >= 4 else -1
            if s in waiting and data == waiting[s] and sender[1] == args.target_port and \
                    (target_ip is None or sender[0] == target_ip):
                del waiting[s]
                received += 1
                exact += 1
            else:
                received += 1
                wrong += 1
    result = {"sent": sent, "received": received, "exact": exact, "wrong": wrong,
              "senders": sorted(senders), "seconds": round(time.monotonic() - start, 3)}
    if args.stranger:
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        other.bind((udp.getsockname()[0], 0))
        other.sendto(header + payload(args.seed, 0, 64), relay)
        ready, _, _ = select.select([other, udp], [], [], 1.0)
        result["stranger_answered"] = bool(ready)
        other.close()
    return result


def dns_query(name: str, ident: int) -> bytes:
    qname = b"".join(bytes((len(p),)) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)


def dns_addresses(answer: bytes, ident: int) -> list[str] | None:
    """The A records of an answer to query ``ident`` (no name compression needed: the
    answer's names are pointers or labels, skipped)."""
    if len(answer) < 12 or struct.unpack("!H", answer[:2])[0] != ident:
        return None
    _, flags, qd, an, _, _ = struct.unpack("!HHHHHH", answer[:12])
    if not flags & 0x8000:
        return None
    pos = 12

    def skip_name(pos: int) -> int:
        while True:
            n = answer[pos]
            if n & 0xC0 == 0xC0:
                return pos + 2
            if n == 0:
                return pos + 1
            pos += 1 + n

    for _ in range(qd):
        pos = skip_name(pos) + 4
    out = []
    for _ in range(an):
        pos = skip_name(pos)
        rtype, _, _, rdlen = struct.unpack("!HHIH", answer[pos:pos + 10])
        pos += 10
        if rtype == 1 and rdlen == 4:
            out.append(str(ipaddress.IPv4Address(answer[pos:pos + 4])))
        pos += rdlen
    return out


def dns(args, udp, relay) -> dict:
    header = udp_header(args.server, 53)
    answers = []
    lost = 0
    for i in range(args.count):
        ident = 0x4000 + i
        udp.sendto(header + dns_query(args.name, ident), relay)
        ready, _, _ = select.select([udp], [], [], 2.0)
        if not ready:
            lost += 1
            continue
        parsed = parse_reply(udp.recvfrom(65535)[0])
        if parsed is None or parsed[0] != (args.server, 53):
            answers.append(None)
            continue
        answers.append(dns_addresses(parsed[1], ident))
    return {"answers": answers, "lost": lost}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("proxy_host")
    ap.add_argument("proxy_port", type=int)
    ap.add_argument("--user")
    ap.add_argument("--password")
    sub = ap.add_subparsers(dest="mode", required=True)
    e = sub.add_parser("echo")
    e.add_argument("target_host")
    e.add_argument("target_port", type=int)
    e.add_argument("--count", type=int, default=1000)
    e.add_argument("--window", type=int, default=50)
    e.add_argument("--max-size", type=int, default=1200)
    e.add_argument("--seed", type=int, default=1)
    e.add_argument("--stranger", action="store_true")
    e.add_argument("--timeout", type=float, default=120.0)
    d = sub.add_parser("dns")
    d.add_argument("server")
    d.add_argument("name")
    d.add_argument("--count", type=int, default=3)
    args = ap.parse_args(argv)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((args.proxy_host, 0))
    control, relay = associate((args.proxy_host, args.proxy_port), args.user,
                               args.password, udp)
    try:
        result = echo(args, udp, relay) if args.mode == "echo" else dns(args, udp, relay)
    finally:
        control.close()
        udp.close()
    result["relay"] = list(relay)
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
