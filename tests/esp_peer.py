"""An ESP-in-UDP peer with manual SAs built on scapy's ESP (``scapy.layers.ipsec``),
an implementation independent of erebus, behind a TUN device: the far end of the
ESP interop tests (no kernel here has XFRM's crypto, and strongSwan has no manual
keying).

    python esp_peer.py PROFILE.toml --listen 198.18.101.1:4600 --tun esptun0 \
        --tun-addr 198.19.200.1/24 [--mtu 1400] [--control 198.18.101.1:4650]

PROFILE is the *client's* erebus profile (``[ipsec]`` TOML, read with tomllib): the
peer decrypts with its ``outbound`` SA and encrypts with its ``inbound`` SA (and
``esn``).  It must run as root in the namespace that routes to the protected
network: it creates the TUN device there, sets its address, MTU and state, and
turns IPv6 off on it.

Datagrams on the UDP socket (RFC 3948): 0xFF keepalives and non-ESP (IKE)
datagrams are counted and ignored; ESP is decrypted by scapy (SPI and ICV checked)
and the inner IPv4 packet written to the TUN device; the client's address is
learned from the last datagram that authenticated.  IPv4 packets the kernel routes
into the TUN device are encrypted by scapy and sent to that address.

The control socket (``--control``) takes one-word datagrams and answers each with
a JSON line: ``stats`` (the counters), ``replay`` (send the last ESP datagram
again: a replay), ``flip`` (encrypt the last inner packet again with the next
sequence number, flip one bit of the ciphertext, send it: a forgery).

``--engine erebus`` swaps scapy for erebus's own SecurityAssociation: not an
independent check any more, only a peer fast enough to measure erebus's side (scapy
needs about 1 ms per packet it encrypts, which caps a transfer near 1 MiB/s).

Prints ``esp peer ready`` once listening, and the counters (JSON) on SIGTERM.
Standard library and scapy only (erebus with ``--engine erebus``).
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import signal
import struct
import subprocess
import sys
import tomllib

from scapy.layers.inet import IP
from scapy.layers.ipsec import ESP, IPSecIntegrityError, SecurityAssociation
from scapy.packet import Raw

_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000

# erebus transform name -> scapy (crypt_algo, auth_algo)
SCAPY_ALGOS = {
    "aes128gcm16": ("AES-GCM", None), "aes192gcm16": ("AES-GCM", None),
    "aes256gcm16": ("AES-GCM", None), "chacha20poly1305": ("CHACHA20-POLY1305", None),
    "aes128-sha256": ("AES-CBC", "SHA2-256-128"), "aes192-sha256": ("AES-CBC", "SHA2-256-128"),
    "aes256-sha256": ("AES-CBC", "SHA2-256-128"), "aes256-sha384": ("AES-CBC", "SHA2-384-192"),
    "aes256-sha512": ("AES-CBC", "SHA2-512-256"),
}


def _hex(text: str) -> bytes:
    text = "".join(ch for ch in text if ch not in " :\t\n")
    return bytes.fromhex(text[2:] if text[:2].lower() == "0x" else text)


def scapy_sa(table: dict, *, esn: bool, src: str, dst: str) -> SecurityAssociation:
    crypt, auth = SCAPY_ALGOS[table["transform"].lower()]
    ikey = table.get("integrity_key")
    spi = table["spi"] if isinstance(table["spi"], int) else int(table["spi"], 0)
    return SecurityAssociation(ESP, spi=spi, crypt_algo=crypt, crypt_key=_hex(table["key"]),
                               auth_algo=auth, auth_key=_hex(ikey) if ikey else None,
                               tunnel_header=IP(src=src, dst=dst), esn_en=esn, esn=0)


def erebus_sa(table: dict, *, esn: bool):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from erebus.ipsec.esp import SecurityAssociation as ErebusSA
    ikey = table.get("integrity_key")
    spi = table["spi"] if isinstance(table["spi"], int) else int(table["spi"], 0)
    return ErebusSA(spi, table["transform"], _hex(table["key"]),
                    _hex(ikey) if ikey else b"", esn=esn, replay_window=0)


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
    fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH22x", name.encode(), _IFF_TUN | _IFF_NO_PI))
    return fd


class Peer:
    def __init__(self, args, profile: dict):
        ipsec = profile["ipsec"]
        self.args = args
        self.esn = bool(ipsec.get("esn", False))
        self.listen = args.listen
        # decrypt what the client sends (its outbound), encrypt with its inbound SA
        self.engine = args.engine
        if self.engine == "scapy":
            self.rx = scapy_sa(ipsec["outbound"], esn=self.esn, src="0.0.0.0", dst="0.0.0.0")
            self.tx = scapy_sa(ipsec["inbound"], esn=self.esn, src=args.listen[0],
                               dst="0.0.0.0")
        else:
            self.rx = erebus_sa(ipsec["outbound"], esn=self.esn)
            self.tx = erebus_sa(ipsec["inbound"], esn=self.esn)
        self.client = None
        self.transport = None
        self.last_datagram: bytes | None = None
        self.last_inner: bytes | None = None
        self.stats = dict(esp_in=0, esp_out=0, auth_failed=0, wrong_spi=0, malformed=0,
                          keepalives_in=0, non_esp_in=0, tun_in=0, tun_out=0, not_ipv4=0,
                          no_client=0, replays_sent=0, forgeries_sent=0)
        self.loop = asyncio.get_running_loop()
        self.fd = open_tun(args.tun)
        for cmd in (["ip", "link", "set", "dev", args.tun, "mtu", str(args.mtu)],
                    ["ip", "addr", "add", args.tun_addr, "dev", args.tun],
                    ["ip", "link", "set", "dev", args.tun, "up"]):
            subprocess.run(cmd, check=True)
        try:
            with open(f"/proc/sys/net/ipv6/conf/{args.tun}/disable_ipv6", "w") as f:
                f.write("1")
        except OSError:
            pass
        self.loop.add_reader(self.fd, self.from_tun)

    # -- UDP side -------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr) -> None:
        s = self.stats
        if data == b"\xff":
            s["keepalives_in"] += 1
            return
        if data[:4] == b"\x00\x00\x00\x00":
            s["non_esp_in"] += 1
            return
        if len(data) < 8:
            s["malformed"] += 1
            return
        raw = self.open(data, addr) if self.engine == "scapy" else self.open_erebus(data)
        if raw is None:
            return
        s["esp_in"] += 1
        self.client = addr
        if not raw or raw[0] >> 4 != 4:
            s["not_ipv4"] += 1
            return
        try:
            os.write(self.fd, raw)
            s["tun_out"] += 1
        except OSError:
            pass

    def open(self, data: bytes, addr) -> bytes | None:
        pkt = IP(bytes(IP(src=addr[0], dst=self.listen[0], proto=50) / Raw(data)))
        try:
            return bytes(self.rx.decrypt(pkt))
        except IPSecIntegrityError:
            self.stats["auth_failed"] += 1
        except TypeError:            # scapy's check_spi
            self.stats["wrong_spi"] += 1
        except Exception:            # noqa: BLE001 - anything scapy cannot cut
            self.stats["malformed"] += 1
        return None

    def open_erebus(self, data: bytes) -> bytes | None:
        try:
            _, payload = self.rx.open(data)
            return payload
        except ValueError as exc:    # erebus's EspDrop is a ParseError, a ValueError
            key = {"AuthFailed": "auth_failed", "UnknownSpi": "wrong_spi"}.get(
                type(exc).__name__, "malformed")
            self.stats[key] += 1
            return None

    def error_received(self, exc) -> None:
        pass

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        pass

    # -- TUN side -------------------------------------------------------------------------

    def from_tun(self) -> None:
        for _ in range(64):
            try:
                packet = os.read(self.fd, 65535)
            except (BlockingIOError, InterruptedError):
                return
            self.stats["tun_in"] += 1
            if not packet or packet[0] >> 4 != 4:
                self.stats["not_ipv4"] += 1
                continue
            if self.client is None:
                self.stats["no_client"] += 1
                continue
            self.last_inner = packet
            self.send_esp(self.seal(packet))

    def seal(self, packet: bytes, seq: int | None = None) -> bytes:
        tx = self.tx
        if self.engine == "erebus":
            return tx.seal(packet)
        if seq is None:
            seq = tx.seq_num
            tx.seq_num += 1
        if self.esn:                         # scapy keeps 32 bits: carry into esn
            tx.esn, low = seq >> 32, seq & 0xFFFFFFFF
        else:
            low = seq
        return bytes(tx.encrypt(IP(packet), seq_num=low)[ESP])

    def send_esp(self, datagram: bytes) -> None:
        self.last_datagram = datagram
        self.transport.sendto(datagram, self.client)
        self.stats["esp_out"] += 1

    # -- control --------------------------------------------------------------------------

    def control(self, word: str) -> dict:
        if word == "replay" and self.last_datagram is not None:
            self.transport.sendto(self.last_datagram, self.client)
            self.stats["replays_sent"] += 1
            return {"ok": True, "seq": int.from_bytes(self.last_datagram[4:8], "big")}
        if word == "flip" and self.last_inner is not None:
            forged = bytearray(self.seal(self.last_inner))
            forged[len(forged) // 2] ^= 0x10
            self.transport.sendto(bytes(forged), self.client)
            self.stats["forgeries_sent"] += 1
            return {"ok": True, "seq": int.from_bytes(forged[4:8], "big")}
        if word == "stats":
            return {"ok": True, **self.stats}
        return {"ok": False, "error": f"cannot {word!r} now"}


class Control(asyncio.DatagramProtocol):
    def __init__(self, peer: Peer):
        self.peer = peer
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data, addr) -> None:
        answer = self.peer.control(data.decode(errors="replace").strip())
        self.transport.sendto(json.dumps(answer).encode() + b"\n", addr)


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("profile")
    p.add_argument("--listen", type=_addr, required=True)
    p.add_argument("--tun", default="esptun0")
    p.add_argument("--tun-addr", required=True)
    p.add_argument("--mtu", type=int, default=1400)
    p.add_argument("--control", type=_addr)
    p.add_argument("--engine", choices=("scapy", "erebus"), default="scapy")
    p.add_argument("--max-seconds", type=float, default=3600.0)
    args = p.parse_args(argv)
    with open(args.profile, "rb") as f:
        profile = tomllib.load(f)
    loop = asyncio.get_running_loop()
    peer = Peer(args, profile)
    await loop.create_datagram_endpoint(lambda: peer, local_addr=args.listen)
    if args.control:
        await loop.create_datagram_endpoint(lambda: Control(peer), local_addr=args.control)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("esp peer ready", flush=True)
    try:
        await asyncio.wait_for(stop.wait(), args.max_seconds)
    except asyncio.TimeoutError:
        pass
    print(json.dumps(peer.stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
