"""A network-namespace lab for ESP: scapy's ESP (tests/esp_peer.py) behind a TUN device,
a web host behind it, and a client namespace in which erebus runs as ``nobody``.

Topology (addresses in 198.18.0.0/15)::

    ebs-ecli-<id>                  ebs-esrv-<id>                         ebs-eweb-<id>
    198.18.101.2/24 [to-srv] ---- [to-cli] 198.18.101.1/24
                                   esp_peer.py (scapy) per mode N:
                                     UDP 198.18.101.1:(4600+N), control :(4650+N)
                                     esptunN 198.19.(200+N).1/24 (its TUN device)
                                   relay.py (loss, reordering) :(4700+N) -> :(4600+N)
                                   ip_forward=1
                                   [to-web] 198.19.210.1/24 ---- [to-srv] 198.19.210.2/24
                                                                  http.server :80
                                                                  dnsmasq :53 (web.esp.test)
                                                                  route 198.19.200.0/21 via .210.1

The client of mode N is ``198.19.(200+N).2`` with ``remote_ts = ["198.19.210.0/24"]``;
its only route is its own link, so only what the ESP tunnel carries reaches the web
host.  The client profile (TOML, world-readable, fresh random keys) is written to
the lab dir; the peer reads the same file and mirrors it.

    from tests.esp_lab import EspLab
    with EspLab() as lab:
        peer = lab.start_peer("gcm")
        result = lab.run_esp_client(peer.profile, ping=lab.web_addr,
                                    fetch=f"{lab.web_addr}:80/blob10m.bin")

:class:`EspLab` is a :class:`tests.lab.Lab` (its process, namespace and clean-up
machinery, ``run_ns``/``spawn_ns``/``run_client``, ``EREBUS_KEEP_LAB=1``) with its own
network and no OpenVPN.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.lab import (REPO_ROOT, SYSTEM_PYTHON, Lab, LabError, NsProcess,
                       _install_sigterm_handler, _ns_argv, _run, _wait_until, stop_process,
                       tail, wait_for_log)

LINK_PEER = "198.18.101.1"
LINK_CLIENT = "198.18.101.2"
WEB_GATEWAY = "198.19.210.1"
WEB_ADDR = "198.19.210.2"
PROTECTED_NET = "198.19.210.0/24"
POOLS_NET = "198.19.200.0/21"          # 198.19.200.0/24 ... 198.19.207.0/24
DNS_NAMES = {"web.esp.test": WEB_ADDR}
BASE_PORT = 4600
CONTROL_OFFSET = 50
RELAY_OFFSET = 100
BIG_FILE = "blob10m.bin"
BIG_SIZE = 10 * 1024 * 1024


@dataclass(frozen=True)
class EspMode:
    """A peer configuration: ``index`` N gives the pool 198.19.(200+N).0/24, the port
    4600+N and the device esptunN.  ``outbound`` is the client's transform towards
    the peer, ``inbound`` the peer's towards the client."""

    index: int
    outbound: str
    inbound: str
    esn: bool = False
    mtu: int = 1400


MODES: dict[str, EspMode] = {
    "gcm": EspMode(0, "aes256gcm16", "aes256gcm16"),
    "cbc": EspMode(1, "aes256-sha256", "aes256-sha256"),
    "mixed": EspMode(2, "aes128gcm16", "aes128-sha256"),
    "chacha": EspMode(3, "chacha20poly1305", "chacha20poly1305"),
    "esn": EspMode(4, "aes256gcm16", "aes256-sha512", esn=True),
    # for figures, with the peer on erebus's own ESP (start_peer(..., engine="erebus"))
    "fast-gcm": EspMode(5, "aes256gcm16", "aes256gcm16"),
    "fast-cbc": EspMode(6, "aes256-sha256", "aes256-sha256"),
}


@dataclass
class EspPeer:
    mode: str
    port: int
    control: tuple[str, int]
    client_ip: str
    pool: str
    device: str
    profile: Path              # the client's profile, straight to the peer
    log: Path
    process: NsProcess = field(repr=False)
    relay_profile: Path | None = None    # the same SAs, through the impairing relay
    relay: NsProcess | None = field(default=None, repr=False)

    def describe(self, lines: int = 40) -> str:
        return f"--- esp peer {self.mode!r} ({self.log}) ---\n{tail(self.log, lines)}"


def missing_prerequisites() -> list[str]:
    """Why the ESP lab cannot run here (an empty list if it can)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the ESP lab needs root (network namespaces, TUN devices)")
    for tool in ("ip", "runuser", "ss"):
        if shutil.which(tool) is None:
            problems.append(f"{tool!r} is not installed")
    if not os.path.exists("/dev/net/tun"):
        problems.append("/dev/net/tun is missing")
    if not os.path.exists(SYSTEM_PYTHON):
        problems.append(f"{SYSTEM_PYTHON} is missing")
    try:
        import scapy.layers.ipsec  # noqa: F401
    except ImportError:
        problems.append("scapy is not installed in this interpreter (the peer needs it)")
    return problems


def profile_text(mode: EspMode, peer: str, *, dns: bool = True, **extra) -> str:
    """A client profile with fresh random keys for ``mode``."""
    from erebus.ipsec.transforms import TRANSFORMS

    def sa(spi: int, name: str) -> str:
        t = TRANSFORMS[name]
        lines = [f"spi = {spi:#010x}", f'transform = "{name}"',
                 f'key = "{os.urandom(t.key_len).hex()}"']
        if t.integrity_key_len:
            lines.append(f'integrity_key = "{os.urandom(t.integrity_key_len).hex()}"')
        return "\n".join(lines)

    n = mode.index
    top = [f'peer = "{peer}"', f'local_ip = "198.19.{200 + n}.2"',
           f'remote_ts = ["{PROTECTED_NET}"]', f"mtu = {mode.mtu}"]
    if dns:
        top.append(f'dns = ["{WEB_ADDR}"]')
    if mode.esn:
        top.append("esn = true")
    if TRANSFORMS[mode.outbound].aead or TRANSFORMS[mode.inbound].aead:
        top.append("allow_static_aead = true          # fresh keys for every lab peer")
    top += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    return ("[ipsec]\n" + "\n".join(top) + "\n\n[ipsec.outbound]\n"
            + sa(0x1000 + n, mode.outbound) + "\n\n[ipsec.inbound]\n"
            + sa(0x2000 + n, mode.inbound) + "\n")


class EspLab(Lab):
    """The ESP lab; a context manager.  See the module docstring."""

    web_addr = WEB_ADDR
    server_link_addr = LINK_PEER
    client_link_addr = LINK_CLIENT

    def __init__(self, *, keep: bool | None = None) -> None:
        super().__init__(keep=keep)
        self.ns_srv = f"ebs-esrv-{self.id}"
        self.ns_cli = f"ebs-ecli-{self.id}"
        self.ns_web = f"ebs-eweb-{self.id}"
        self.web_url = f"http://{WEB_ADDR}/"
        self.blob_url = f"{self.web_url}blob.bin"
        self.big_url = f"{self.web_url}{BIG_FILE}"
        self.big_sha256 = ""
        self.peers: dict[str, EspPeer] = {}

    def start(self) -> "EspLab":
        atexit.register(self.close)
        _install_sigterm_handler()
        try:
            self.dir = Path(tempfile.mkdtemp(prefix=f"erebus-esplab-{self.id}-", dir="/tmp"))
            os.chmod(self.dir, 0o755)            # the client runs as nobody
            self._create_network()
            self._start_web()
        except BaseException:
            self.close()
            raise
        return self

    # ----------------------------------------------------------------- network

    def _create_network(self) -> None:
        self._build_network(server_addr=LINK_PEER, client_addr=LINK_CLIENT,
                            web_gateway=WEB_GATEWAY, web_addr=WEB_ADDR, pools=POOLS_NET,
                            disable_ipv6=True)

    def _start_web(self) -> None:
        www = self.dir / "www"
        www.mkdir(mode=0o755)
        blob = os.urandom(BIG_SIZE)
        (www / BIG_FILE).write_bytes(blob)
        self.big_sha256 = hashlib.sha256(blob).hexdigest()
        small = blob[:1 << 20]
        (www / "blob.bin").write_bytes(small)
        self.blob_sha256 = hashlib.sha256(small).hexdigest()
        self.blob_size = len(small)
        (www / "index.html").write_text("<!doctype html><p>erebus ESP lab web host</p>\n")
        self._http = self.spawn_ns(
            self.ns_web, [SYSTEM_PYTHON, "-m", "http.server", "80", "--bind", WEB_ADDR,
                          "--directory", str(www)], output=self.dir / "http.log")

        def listening() -> bool:
            if self._http.poll() is not None:
                raise LabError(f"http.server exited:\n{tail(self.dir / 'http.log')}")
            return f"{WEB_ADDR}:80 " in _run(_ns_argv(self.ns_web, ["ss", "-Htln"])).stdout
        if not _wait_until(listening, timeout=10, interval=0.1):
            raise LabError(f"http.server not listening:\n{tail(self.dir / 'http.log')}")
        if shutil.which("dnsmasq"):
            self._start_dns()

    def _start_dns(self) -> None:
        argv = ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
                "--bind-interfaces", f"--listen-address={WEB_ADDR}", "--port=53",
                "--user=root", "--group=root", f"--pid-file={self.dir / 'dnsmasq.pid'}",
                "--log-queries", "--log-facility=-"]
        argv += [f"--address=/{name}/{addr}" for name, addr in DNS_NAMES.items()]
        self._dns = self.spawn_ns(self.ns_web, argv, output=self.dir / "dnsmasq.log")

        def listening() -> bool:
            if self._dns.poll() is not None:
                raise LabError(f"dnsmasq exited:\n{tail(self.dir / 'dnsmasq.log')}")
            return f"{WEB_ADDR}:53 " in _run(_ns_argv(self.ns_web, ["ss", "-Huln"])).stdout
        if not _wait_until(listening, timeout=10, interval=0.1):
            raise LabError(f"dnsmasq not listening:\n{tail(self.dir / 'dnsmasq.log')}")

    @property
    def _loss_links(self) -> tuple[tuple[str, str], ...]:
        return (self.ns_srv, "to-cli"), (self.ns_cli, "to-srv")

    # ----------------------------------------------------------------- peers

    def start_peer(self, mode: str, *, engine: str = "scapy", timeout: float = 30,
                   **profile_extra) -> EspPeer:
        """Start (once) the peer of ``mode`` (see :data:`MODES`) with a fresh client
        profile.  ``engine="erebus"`` runs the peer on erebus's own ESP (for figures:
        scapy is slow; not an independent check)."""
        if mode in self.peers:
            return self.peers[mode]
        m = MODES[mode]
        n = m.index
        port = BASE_PORT + n
        profile = self.dir / f"esp-{mode}.toml"
        profile.write_text(profile_text(m, f"{LINK_PEER}:{port}", **profile_extra))
        os.chmod(profile, 0o644)                      # the client runs as nobody
        log = self.dir / f"esp-peer-{mode}.log"
        control = (LINK_PEER, port + CONTROL_OFFSET)
        proc = self.spawn_ns(self.ns_srv, [
            sys.executable, str(REPO_ROOT / "tests" / "esp_peer.py"), str(profile),
            "--listen", f"{LINK_PEER}:{port}", "--tun", f"esptun{n}",
            "--tun-addr", f"198.19.{200 + n}.1/24", "--mtu", str(m.mtu),
            "--control", f"{control[0]}:{control[1]}", "--engine", engine],
            output=log, cwd=REPO_ROOT)
        try:
            wait_for_log(log, "esp peer ready", timeout=timeout, process=proc,
                         what=f"esp peer {mode!r}")
        except LabError:
            stop_process(proc)
            raise
        peer = EspPeer(mode=mode, port=port, control=control, client_ip=f"198.19.{200 + n}.2",
                       pool=f"198.19.{200 + n}.0/24", device=f"esptun{n}", profile=profile,
                       log=log, process=proc)
        self.peers[mode] = peer
        return peer

    def start_relay(self, peer: EspPeer, *, loss: float = 0.0, reorder: float = 0.0,
                    duplicate: float = 0.0, delay: float = 0.0, jitter: float = 0.0,
                    seed: int = 1) -> Path:
        """Put tests/relay.py (in the server namespace) in front of ``peer``; returns a
        client profile with the same SAs that goes through it."""
        if peer.relay is not None:
            stop_process(peer.relay)
        port = peer.port + RELAY_OFFSET
        log = self.dir / f"relay-{peer.mode}.log"
        peer.relay = self.spawn_ns(self.ns_srv, [
            SYSTEM_PYTHON, str(REPO_ROOT / "tests" / "relay.py"), LINK_PEER, str(port),
            LINK_PEER, str(peer.port), "--loss", str(loss), "--reorder", str(reorder),
            "--duplicate", str(duplicate), "--delay", str(delay), "--jitter", str(jitter),
            "--seed", str(seed)], output=log)
        wait_for_log(log, "relay ready", timeout=10, process=peer.relay, what="relay")
        relayed = self.dir / f"esp-{peer.mode}-relay.toml"
        relayed.write_text(peer.profile.read_text().replace(
            f'peer = "{LINK_PEER}:{peer.port}"', f'peer = "{LINK_PEER}:{port}"'))
        os.chmod(relayed, 0o644)
        peer.relay_profile = relayed
        return relayed

    def peer_control(self, peer: EspPeer, word: str) -> dict:
        """Send a control word to the peer (from the client namespace); its answer."""
        cp = self.run_ns(self.ns_cli, [SYSTEM_PYTHON, "-c", _CONTROL_SCRIPT, peer.control[0],
                                       str(peer.control[1]), word], timeout=15, check=True)
        return json.loads(cp.stdout)

    # ----------------------------------------------------------------- the client

    def run_esp_client(self, profile: Path, *, ping: str | None = None,
                       fetch: str | None = None, control: tuple[str, int] | None = None,
                       pcap: Path | None = None, verbose: bool = False,
                       timeout: float = 300) -> dict:
        """Run :data:`CLIENT_SCRIPT` (EspTunnel + VpnStack) as ``nobody`` in the client
        namespace; its JSON report, with ``stderr`` (its log) added.  ``fetch`` is
        ``HOST:PORT/PATH`` (HTTP/1.0 GET through the tunnel); ``control`` makes it ask
        the peer for a replay and a forgery after the ping and count the drops."""
        script = self.dir / "esp_client.py"
        if not script.exists():
            script.write_text(CLIENT_SCRIPT)
            os.chmod(script, 0o644)
        argv = [self.python, str(script), str(profile)]
        if ping:
            argv += ["--ping", ping]
        if fetch:
            argv += ["--fetch", fetch]
        if control:
            argv += ["--control", f"{control[0]}:{control[1]}"]
        if pcap:
            argv += ["--pcap", str(pcap)]
        if verbose:
            argv += ["--verbose"]
        cp = self.run_client(argv, timeout=timeout)
        try:
            report = json.loads(cp.stdout.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            raise LabError(f"the ESP client failed (rc={cp.returncode}):\n{cp.stdout}\n"
                           f"{cp.stderr[-4000:]}") from None
        report["stderr"] = cp.stderr
        return report

    def outdir(self) -> Path:
        """A folder in the lab that nobody can write (pcaps)."""
        d = Path(tempfile.mkdtemp(dir=self.dir, prefix="out-"))
        os.chmod(d, 0o777)
        return d

    # ----------------------------------------------------------------- diagnostics

    def logs_tail(self, lines: int = 40) -> str:
        parts = [p.describe(lines) for p in self.peers.values()]
        for p in self.peers.values():
            if p.relay is not None:
                parts.append(f"--- relay {p.mode} ---\n"
                             f"{tail(self.dir / f'relay-{p.mode}.log', lines)}")
        if self.dir is not None:
            parts.append(f"--- http.server ---\n{tail(self.dir / 'http.log', lines)}")
        return "\n".join(parts)


_CONTROL_SCRIPT = r"""
import socket, sys
host, port, word = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(word.encode(), (host, port))
print(s.recv(65535).decode())
"""

# Runs as nobody in the client namespace:
#   python esp_client.py PROFILE [--ping ADDR] [--fetch HOST:PORT/PATH]
#                                [--control HOST:PORT] [--pcap FILE] [--verbose]
# Prints one JSON line: tunnel info, ping RTT, fetch digest and speed, replay/forgery
# results, the session's counters.
CLIENT_SCRIPT = r'''
import argparse, asyncio, hashlib, json, logging, socket, sys, time

from erebus.ipsec.profile import load_esp_profile
from erebus.runtime.ipsec import EspTunnel
from erebus.probe import ping_through
from erebus.runtime.pcap import PcapWriter
from erebus.runtime.stack import VpnStack

p = argparse.ArgumentParser()
p.add_argument("profile")
p.add_argument("--ping")
p.add_argument("--fetch")
p.add_argument("--control")
p.add_argument("--pcap")
p.add_argument("--verbose", action="store_true")
args = p.parse_args()
logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                    format="%(asctime)s %(name)s %(levelname)s %(message)s")


async def control(word):
    host, _, port = args.control.rpartition(":")
    loop = asyncio.get_running_loop()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    await loop.sock_connect(s, (host, int(port)))
    await loop.sock_sendall(s, word.encode())
    answer = await asyncio.wait_for(loop.sock_recv(s, 65535), 5)
    s.close()
    return json.loads(answer)


async def wait_for(predicate, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return predicate()


async def main():
    report = {"ok": False}
    profile = load_esp_profile(args.profile)
    pcap = PcapWriter(args.pcap) if args.pcap else None
    tunnel = EspTunnel(profile, pcap=pcap)
    try:
        info = await tunnel.connect(timeout=profile.connect_timeout)
        report["info"] = info.as_dict()
        c = tunnel.session.counters
        if args.ping:
            report["ping_ms"] = await ping_through(tunnel, args.ping)
        if args.control:
            before = (c.replayed, c.auth_failed, c.packets_in)
            report["replay"] = await control("replay")
            replay_seen = await wait_for(lambda: c.replayed > before[0])
            report["flip"] = await control("flip")
            flip_seen = await wait_for(lambda: c.auth_failed > before[1])
            report["drops"] = {"replayed": c.replayed - before[0],
                               "auth_failed": c.auth_failed - before[1],
                               "delivered": c.packets_in - before[2],
                               "replay_seen": replay_seen, "flip_seen": flip_seen}
            report["ping_after_ms"] = await ping_through(tunnel, args.ping)
        if args.fetch:
            hostport, _, path = args.fetch.partition("/")
            host, _, port = hostport.rpartition(":")
            vpn = VpnStack(tunnel)
            start = time.monotonic()
            reader, writer = await vpn.open_connection(host, int(port), timeout=20)
            writer.write(f"GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            digest = hashlib.sha256()
            size = 0
            while chunk := await reader.read(1 << 16):
                digest.update(chunk)
                size += len(chunk)
            seconds = time.monotonic() - start
            writer.close()
            vpn.close()
            report["fetch"] = {"status": head.split(b"\r\n", 1)[0].decode(),
                               "sha256": digest.hexdigest(), "bytes": size,
                               "seconds": round(seconds, 3),
                               "mib_per_s": round(size / seconds / 2 ** 20, 3)}
        report["counters"] = tunnel.session.counters.as_dict()
        report["ok"] = True
    finally:
        await tunnel.close()
        if pcap:
            pcap.close()
    print(json.dumps(report), flush=True)


asyncio.run(main())
'''


if __name__ == "__main__":        # a quick manual check: python -m tests.esp_lab [mode ...]
    with EspLab() as lab:
        for name in sys.argv[1:] or ["gcm"]:
            peer = lab.start_peer(name)
            print(f"{name}: peer {LINK_PEER}:{peer.port} profile {peer.profile}")
            result = lab.run_esp_client(peer.profile, ping=WEB_ADDR)
            print(json.dumps({k: v for k, v in result.items() if k != "stderr"}, indent=1))
        if sys.stdin.isatty():
            input("press Enter to tear the lab down ")
