"""A network-namespace lab with a stock WireGuard peer (Debian's wireguard-go, set up
with ``wg`` from wireguard-tools and ``ip``), the server for erebus's WireGuard client.

Topology (IPv4 from 198.18.0.0/15, IPv6 from 2001:2::/48; indices 120-129)::

    ebs-wcli-<id>                 ebs-wsrv-<id>                      ebs-wweb-<id>
    198.18.120.2/24 [to-srv] -- [to-cli] 198.18.120.1/24
                                  wireguard-go  wgs<id>  UDP 51820
                                    198.18.122.1/24, 2001:2:0:122::1/64
                                  forwarding on
                                  [to-web] 198.18.121.1/24 -- [to-srv] 198.18.121.2/24
                                           2001:2:0:121::1/64   2001:2:0:121::2/64
                                                               http.server :80 (v4, v6)
                                                               dnsmasq :53 (web.wg.test)
                                                               routes 198.18.122.0/24 and
                                                               2001:2:0:122::/64 back

The client's tunnel addresses are 198.18.122.2/32 and 2001:2:0:122::2/128; the server
lets them (and nothing else) in from the client's key.  The client namespace has no
route but its own link: only what the tunnel carries reaches the web host.

The kernel here has no wireguard module, so both ends are wireguard-go on a kernel
TUN device.  wireguard-go's control sockets live in ``/var/run/wireguard/<ifname>.sock``,
which every namespace shares: the interface names carry the lab id.

Keys are generated at start with ``wg genkey`` / ``wg pubkey`` / ``wg genpsk``; the
client's side is written the way a user has it, a wg-quick file
(:attr:`WgLab.profile_path`: Address, DNS, Endpoint, AllowedIPs, owned by the user the
clients run as, mode 0600).

Usage, from pytest (see ``tests/interop/test_wg_lab.py``) or standalone::

    from tests.wg_lab import WgLab
    with WgLab() as lab:
        client = lab.start_stock_client()      # wireguard-go in the client namespace
        lab.run_ns(lab.ns_cli, ["curl", "-s", lab.blob_url])
        lab.latest_handshake()                 # the server's view of the client's key

``python -m tests.wg_lab`` starts the lab and the stock client for a manual look.
Everything is torn down by :meth:`WgLab.close` (also at exit, on Ctrl-C and SIGTERM);
``EREBUS_KEEP_LAB=1`` keeps the lab directory (keys, configs, logs).
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.lab import (
    SYSTEM_PYTHON,
    UNPRIVILEGED_USER,
    Lab,
    LabError,
    NsProcess,
    _install_sigterm_handler,
    _ns_argv,
    _run,
    _wait_until,
    stop_process,
    tail,
)

SERVER_LINK_ADDR = "198.18.120.1"    # server end of the client <-> server link
CLIENT_LINK_ADDR = "198.18.120.2"    # client end
LINK_PREFIXLEN = 24
WEB_GATEWAY_ADDR = "198.18.121.1"    # server end of the server <-> web link
WEB_ADDR = "198.18.121.2"            # the host behind the VPN (http :80, dns :53)
WEB_NET = "198.18.121.0/24"
TUNNEL_NET = "198.18.122.0/24"       # inside the tunnel
SERVER_TUNNEL_ADDR = "198.18.122.1"
CLIENT_TUNNEL_ADDR = "198.18.122.2"
WEB_GATEWAY_ADDR6 = "2001:2:0:121::1"
WEB_ADDR6 = "2001:2:0:121::2"
WEB_NET6 = "2001:2:0:121::/64"
TUNNEL_NET6 = "2001:2:0:122::/64"
SERVER_TUNNEL_ADDR6 = "2001:2:0:122::1"
CLIENT_TUNNEL_ADDR6 = "2001:2:0:122::2"
PREFIXLEN6 = 64
WG_PORT = 51820
DNS_NAMES = {"web.wg.test": WEB_ADDR}
BLOB_SIZE = 1 << 20                  # size of www/blob.bin
KEEPALIVE = 25                       # the client profile's PersistentKeepalive

WG_SOCKET_DIR = Path("/var/run/wireguard")


def missing_prerequisites() -> list[str]:
    """Why the lab cannot run here (an empty list if it can)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the lab needs root (network namespaces, tun devices)")
    for tool in ("ip", "ss", "curl", "dnsmasq", "runuser", "wg", "wireguard-go"):
        if shutil.which(tool) is None:
            problems.append(f"{tool!r} is not installed (scripts/setup.sh installs it)")
    if not os.path.exists("/dev/net/tun"):
        problems.append("/dev/net/tun is missing")
    if not os.path.exists(SYSTEM_PYTHON):
        problems.append(f"{SYSTEM_PYTHON} is missing")
    return problems


def wg_tool(*args: str, stdin: str | None = None) -> str:
    """``wg ARGS`` (outside any namespace: key generation), its stdout stripped."""
    cp = subprocess.run(["wg", *args], input=stdin, capture_output=True, text=True,
                        timeout=10)
    if cp.returncode != 0:
        raise LabError(f"wg {' '.join(args)} failed: {cp.stderr.strip()}")
    return cp.stdout.strip()


@dataclass(frozen=True)
class KeyPair:
    private: str      # base64, as wg genkey prints it
    public: str

    @classmethod
    def generate(cls) -> "KeyPair":
        private = wg_tool("genkey")
        return cls(private, wg_tool("pubkey", stdin=private + "\n"))


class WgDevice:
    """One wireguard-go process and its TUN device in a namespace."""

    def __init__(self, lab: "WgLab", ns: str, ifname: str, log: Path) -> None:
        self.lab, self.ns, self.ifname, self.log = lab, ns, ifname, log
        self.proc: NsProcess | None = None

    @property
    def socket_path(self) -> Path:
        return WG_SOCKET_DIR / f"{self.ifname}.sock"

    def start(self, conf: Path, addresses: list[str], routes: list[str]) -> None:
        """wireguard-go in the foreground, ``wg setconf`` with ``conf``, the addresses
        and routes on the device, the device up."""
        env = {"WG_PROCESS_FOREGROUND": "1", "LOG_LEVEL": "verbose",
               "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}
        self.proc = self.lab.spawn_ns(self.ns, ["wireguard-go", "-f", self.ifname],
                                      output=self.log, env=env)

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise LabError(f"wireguard-go {self.ifname} exited:\n{tail(self.log)}")
            return self.socket_path.exists()
        if not _wait_until(ready, timeout=10, interval=0.05):
            raise LabError(f"wireguard-go {self.ifname}: no control socket:\n"
                           f"{tail(self.log)}")
        self.wg("setconf", self.ifname, str(conf))
        for address in addresses:
            self.lab._ip(self.ns, "addr", "add", address, "dev", self.ifname,
                         *(("nodad",) if ":" in address else ()))
        self.lab._ip(self.ns, "link", "set", self.ifname, "up")
        for route in routes:
            self.lab._ip(self.ns, *(("-6",) if ":" in route else ()), "route", "add",
                         route, "dev", self.ifname)

    def wg(self, *args: str) -> str:
        return _run(_ns_argv(self.ns, ["wg", *args])).stdout

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        # wireguard-go removes its socket on a clean exit; a killed one leaves it
        try:
            self.socket_path.unlink()
        except FileNotFoundError:
            pass

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class WgLab(Lab):
    """Namespaces, keys, web host and a running wireguard-go server; a context manager.

    Inherits from :class:`tests.lab.Lab` everything that is not OpenVPN: ``run_ns``,
    ``spawn_ns``, ``run_client`` / ``spawn_client`` (as nobody in the client
    namespace), ``python`` / ``pythonpath``, ``ping``, ``set_loss`` / ``clear_loss``,
    ``close``.

    Attributes (after :meth:`start`): ``server_keys`` / ``client_keys``
    (:class:`KeyPair`), ``psk``, ``server`` (:class:`WgDevice`), ``profile_path`` (the
    client's wg-quick file), ``blob_sha256`` / ``blob_size`` / ``blob_url`` /
    ``blob_url6`` / ``web_url``, the address constants as attributes.
    """

    server_link_addr = SERVER_LINK_ADDR
    client_link_addr = CLIENT_LINK_ADDR
    web_addr = WEB_ADDR
    web_addr6 = WEB_ADDR6
    web_url6 = f"http://[{WEB_ADDR6}]/"
    client_tunnel_addr = CLIENT_TUNNEL_ADDR
    client_tunnel_addr6 = CLIENT_TUNNEL_ADDR6
    server_tunnel_addr = SERVER_TUNNEL_ADDR
    dns_addr = WEB_ADDR
    dns_names = DNS_NAMES
    port = WG_PORT

    def __init__(self, *, keep: bool | None = None) -> None:
        super().__init__(keep=keep)
        self.ns_srv = f"ebs-wsrv-{self.id}"
        self.ns_cli = f"ebs-wcli-{self.id}"
        self.ns_web = f"ebs-wweb-{self.id}"
        short = self.id.replace("-", "")[-11:]
        self.server_ifname = f"wgs{short}"      # at most 15 characters
        self.client_ifname = f"wgc{short}"
        self.web_url = f"http://{WEB_ADDR}/"
        self.blob_url = f"{self.web_url}blob.bin"
        self.blob_url6 = f"{self.web_url6}blob.bin"
        self.server_keys: KeyPair | None = None
        self.client_keys: KeyPair | None = None
        self.psk = ""
        self.server: WgDevice | None = None
        self.client: WgDevice | None = None
        self.profile_path: Path | None = None
        self.startup_seconds = 0.0

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> "WgLab":
        """Create the directory, keys, namespaces, web host, the client profile and the
        server. Cleans up if it fails."""
        atexit.register(self.close)
        _install_sigterm_handler()
        try:
            self.dir = Path(tempfile.mkdtemp(prefix=f"erebus-wglab-{self.id}-", dir="/tmp"))
            os.chmod(self.dir, 0o755)        # the client runs as nobody
            self.server_keys = KeyPair.generate()
            self.client_keys = KeyPair.generate()
            self.psk = wg_tool("genpsk")
            self._create_network()
            self._start_web()
            self.profile_path = self.write_profile()
            began = time.monotonic()
            self.start_server()
            self.startup_seconds = time.monotonic() - began
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for device in (self.client, self.server):
            if device is not None:
                device.stop()
        super().close()

    def _create_network(self) -> None:
        self._build_network(server_addr=SERVER_LINK_ADDR, client_addr=CLIENT_LINK_ADDR,
                            web_gateway=WEB_GATEWAY_ADDR, web_addr=WEB_ADDR,
                            pools=TUNNEL_NET)
        for ns, dev, addr in ((self.ns_srv, "to-web", WEB_GATEWAY_ADDR6),
                              (self.ns_web, "to-srv", WEB_ADDR6)):
            self._ip(ns, "addr", "add", f"{addr}/{PREFIXLEN6}", "dev", dev, "nodad")
        self._ip(self.ns_web, "-6", "route", "add", TUNNEL_NET6, "via", WEB_GATEWAY_ADDR6)
        _run(_ns_argv(self.ns_srv, ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]))

    def _start_web(self) -> None:
        www = self._write_web_root("erebus WireGuard lab", BLOB_SIZE)
        for addr, needle, log in ((WEB_ADDR, f"{WEB_ADDR}:80 ", "http.log"),
                                  (WEB_ADDR6, f"[{WEB_ADDR6}]:80 ", "http6.log")):
            proc = self.spawn_ns(self.ns_web, [SYSTEM_PYTHON, "-m", "http.server", "80",
                                               "--bind", addr, "--directory", str(www)],
                                 output=self.dir / log)
            self._wait_listening(proc, "http.server", "-Htln", needle, self.dir / log)
        self._dns = self._dnsmasq(self.ns_web, (WEB_ADDR,), "dnsmasq",
                                  [f"--address=/{name}/{addr}"
                                   for name, addr in DNS_NAMES.items()])

    def _wait_listening(self, proc: NsProcess, what: str, ss_flags: str, needle: str,
                        log: Path) -> None:
        def listening() -> bool:
            if proc.poll() is not None:
                raise LabError(f"{what} exited:\n{tail(log)}")
            return needle in _run(_ns_argv(self.ns_web, ["ss", ss_flags])).stdout
        if not _wait_until(listening, timeout=10, interval=0.1):
            raise LabError(f"{what} not listening:\n{tail(log)}")

    # ----------------------------------------------------------------- files

    def _write_private(self, name: str, text: str, *, owner: str | None = None) -> Path:
        path = self.dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        if owner is not None:
            user = pwd.getpwnam(owner)
            os.chown(path, user.pw_uid, user.pw_gid)
        return path

    def profile_text(self, *, keys: KeyPair | None = None, endpoint: str | None = None,
                     keepalive: int | None = KEEPALIVE) -> str:
        """The client's wg-quick file, as a VPN provider hands it out."""
        keys = keys or self.client_keys
        lines = ["# erebus WireGuard lab: the client's side (wg-quick format)",
                 "[Interface]",
                 f"PrivateKey = {keys.private}",
                 f"Address = {CLIENT_TUNNEL_ADDR}/32, {CLIENT_TUNNEL_ADDR6}/128",
                 f"DNS = {WEB_ADDR}, wg.test",
                 "",
                 "[Peer]",
                 f"PublicKey = {self.server_keys.public}",
                 f"PresharedKey = {self.psk}",
                 f"Endpoint = {endpoint or f'{SERVER_LINK_ADDR}:{WG_PORT}'}",
                 f"AllowedIPs = {WEB_NET}, {TUNNEL_NET}",
                 f"AllowedIPs = {WEB_NET6}, {TUNNEL_NET6}"]
        if keepalive:
            lines.append(f"PersistentKeepalive = {keepalive}")
        return "\n".join(lines) + "\n"

    def write_profile(self, name: str = "client.conf", **kwargs) -> Path:
        """Write :meth:`profile_text` to ``<lab>/name``: mode 0600, owned by the user
        the clients run as (a private key is a secret: erebus refuses it otherwise)."""
        return self._write_private(name, self.profile_text(**kwargs),
                                   owner=UNPRIVILEGED_USER)

    def _server_conf(self) -> str:
        """``wg setconf`` format (no wg-quick keys): the server and its one peer."""
        return "\n".join([
            "[Interface]", f"PrivateKey = {self.server_keys.private}",
            f"ListenPort = {WG_PORT}", "",
            *self._client_peer_lines(self.client_keys.public)]) + "\n"

    def _client_peer_lines(self, public: str) -> list[str]:
        return ["[Peer]", f"PublicKey = {public}", f"PresharedKey = {self.psk}",
                f"AllowedIPs = {CLIENT_TUNNEL_ADDR}/32, {CLIENT_TUNNEL_ADDR6}/128"]

    # ----------------------------------------------------------------- the server

    def start_server(self) -> WgDevice:
        """wireguard-go on the server, with the lab's keys (again, after a stop)."""
        if self.server is not None and self.server.running:
            return self.server
        conf = self._write_private("server.conf", self._server_conf())
        self.server = WgDevice(self, self.ns_srv, self.server_ifname,
                               self.dir / "wireguard-go-server.log")
        self.server.start(conf, [f"{SERVER_TUNNEL_ADDR}/24",
                                 f"{SERVER_TUNNEL_ADDR6}/{PREFIXLEN6}"], [])
        return self.server

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()

    def restart_server(self) -> WgDevice:
        """Stop wireguard-go and start it again with the same keys and peer (it
        forgets every session: the client must handshake again)."""
        self.stop_server()
        self._wait_gone(self.ns_srv, self.server_ifname)
        return self.start_server()

    def _wait_gone(self, ns: str, ifname: str) -> None:
        def gone() -> bool:
            return _run(["ip", "-n", ns, "link", "show", ifname], check=False
                        ).returncode != 0
        if not _wait_until(gone, timeout=10, interval=0.05):
            raise LabError(f"{ifname} still exists after wireguard-go stopped")

    def server_wg(self, *args: str) -> str:
        """``wg ARGS`` in the server namespace."""
        return self.server.wg(*args)

    def latest_handshake(self, public: str | None = None) -> int:
        """The server's latest handshake with ``public`` (default: the client's key),
        in seconds since the epoch; 0: never."""
        public = public or self.client_keys.public
        for line in self.server_wg("show", self.server_ifname,
                                   "latest-handshakes").splitlines():
            key, _, when = line.partition("\t")
            if key == public:
                return int(when)
        raise LabError(f"the server has no peer {public}")

    def transfer(self, public: str | None = None) -> tuple[int, int]:
        """(bytes received from, bytes sent to) ``public`` by the server."""
        public = public or self.client_keys.public
        for line in self.server_wg("show", self.server_ifname, "transfer").splitlines():
            key, rx, tx = line.split("\t")
            if key == public:
                return int(rx), int(tx)
        raise LabError(f"the server has no peer {public}")

    def server_endpoint(self, public: str | None = None) -> str | None:
        """Where the server last heard ``public`` from (``None``: never)."""
        public = public or self.client_keys.public
        for line in self.server_wg("show", self.server_ifname, "endpoints").splitlines():
            key, _, endpoint = line.partition("\t")
            if key == public:
                return None if endpoint == "(none)" else endpoint
        raise LabError(f"the server has no peer {public}")

    def wait_handshake(self, public: str | None = None, *, after: int = 0,
                       timeout: float = 20) -> int:
        """Wait until the server's latest handshake with ``public`` is later than
        ``after``; its time."""
        seen = [0]

        def done() -> bool:
            seen[0] = self.latest_handshake(public)
            return seen[0] > after
        if not _wait_until(done, timeout=timeout, interval=0.1):
            raise LabError(f"no handshake after {after} within {timeout} s:\n"
                           f"{self.server_wg('show', self.server_ifname)}\n"
                           f"{tail(self.server.log)}")
        return seen[0]

    def remove_client_peer(self, public: str | None = None) -> None:
        """Forget the client's key on the server (its packets are dropped from now)."""
        self.server_wg("set", self.server_ifname, "peer",
                       public or self.client_keys.public, "remove")

    def replace_client_peer(self, public: str, *, old: str | None = None) -> None:
        """Let the key ``public`` in with the client's tunnel addresses instead of
        ``old`` (default: the client's key)."""
        self.remove_client_peer(old)
        conf = self._write_private("peer.conf", "\n".join(
            self._client_peer_lines(public)) + "\n")
        self.server_wg("addconf", self.server_ifname, str(conf))

    # ----------------------------------------------------------------- stock client

    def start_stock_client(self) -> WgDevice:
        """wireguard-go in the client namespace (a kernel TUN), configured like the
        profile: the stock peer that shows the server works."""
        if self.client is not None and self.client.running:
            return self.client
        conf = self._write_private("client-wg.conf", "\n".join([
            "[Interface]", f"PrivateKey = {self.client_keys.private}", "",
            "[Peer]", f"PublicKey = {self.server_keys.public}",
            f"PresharedKey = {self.psk}", f"Endpoint = {SERVER_LINK_ADDR}:{WG_PORT}",
            f"AllowedIPs = {WEB_NET}, {TUNNEL_NET}, {WEB_NET6}, {TUNNEL_NET6}",
            f"PersistentKeepalive = {KEEPALIVE}"]) + "\n")
        self.client = WgDevice(self, self.ns_cli, self.client_ifname,
                               self.dir / "wireguard-go-client.log")
        self.client.start(conf, [f"{CLIENT_TUNNEL_ADDR}/32", f"{CLIENT_TUNNEL_ADDR6}/128"],
                          [TUNNEL_NET, WEB_NET, TUNNEL_NET6, WEB_NET6])
        return self.client

    def stop_stock_client(self) -> None:
        if self.client is not None:
            self.client.stop()
            self._wait_gone(self.ns_cli, self.client_ifname)
            self.client = None

    def logs_tail(self, lines: int = 40) -> str:
        out = []
        for name in ("wireguard-go-server.log", "wireguard-go-client.log", "http.log"):
            path = self.dir / name if self.dir else None
            if path is not None and path.exists():
                out.append(f"--- {name}\n{tail(path, lines)}")
        return "\n".join(out)


def _main(argv: list[str]) -> int:
    with WgLab(keep=True) as lab:
        lab.start_stock_client()
        print(f"lab {lab.id}: profile {lab.profile_path}; server {lab.ns_srv} "
              f"{lab.server_ifname}; client {lab.ns_cli} {lab.client_ifname}")
        print(f"try: ip netns exec {lab.ns_cli} curl -s {lab.blob_url} | sha256sum "
              f"(expect {lab.blob_sha256})")
        print("Ctrl-C to tear down")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
