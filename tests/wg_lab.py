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
    198.18.124.2/24 [to-sv2] -- [to-cli] 198.18.124.1/24
                                  ebs-wsv2-<id>  (only with second_site=True)
                                  wireguard-go  wgt<id>  UDP 51820
                                    198.18.123.1/24, 2001:2:0:123::1/64
                                    http.server :80 on both (v4, v6)
                                  routes 198.18.122.2/32 and 2001:2:0:122::2/128 into it

The client's tunnel addresses are 198.18.122.2/32 and 2001:2:0:122::2/128; the server
lets them (and nothing else) in from the client's key.  The client namespace has no
route but its own links: only what the tunnel carries reaches the web host.

The second site is a second WireGuard peer for one client profile, routed by
AllowedIPs: its own keys, no preshared key (so the two peers differ), its own web
server with a bigger blob on the device's own addresses (198.18.123.0/24 and
2001:2:0:123::/64, what the profile sends to it), nothing forwarded.

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
    with WgLab(second_site=True) as lab:       # lab.profile2_path has both peers
        lab.start_stock_client()               # with both peers
        lab.run_ns(lab.ns_cli, ["curl", "-s", lab.site2_blob_url])
        lab.latest_handshake(site=2)

``python -m tests.wg_lab [--second-site]`` starts the lab and the stock client for a
manual look.
Everything is torn down by :meth:`WgLab.close` (also at exit, on Ctrl-C and SIGTERM);
``EREBUS_KEEP_LAB=1`` keeps the lab directory (keys, configs, logs).
"""

from __future__ import annotations

import argparse
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
    write_web_root,
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
# the second site (WgLab(second_site=True)), a second peer of the same client
SITE2_LINK_ADDR = "198.18.124.1"     # site end of the client <-> site 2 link
CLIENT_SITE2_LINK_ADDR = "198.18.124.2"  # client end
SITE2_NET = "198.18.123.0/24"        # the profile's AllowedIPs of site 2
SITE2_ADDR = "198.18.123.1"          # site 2's wg device, where its web server listens
SITE2_NET6 = "2001:2:0:123::/64"
SITE2_ADDR6 = "2001:2:0:123::1"
SITE2_BLOB_SIZE = 3 << 20            # site 2's blob.bin: not site 1's size or content

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
    ``blob_url6`` / ``web_url``, the address constants as attributes.  With
    ``second_site=True`` also ``ns_sv2``, ``site2_keys``, ``site2`` (its
    :class:`WgDevice`), ``profile2_path`` (the profile with both peers),
    ``site2_blob_sha256`` / ``site2_blob_size`` / ``site2_blob_url`` /
    ``site2_blob_url6`` / ``site2_web_url``; the accessors of the server's state take
    ``site=2`` for site 2's.
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
    site2_link_addr = SITE2_LINK_ADDR
    client_site2_link_addr = CLIENT_SITE2_LINK_ADDR
    site2_addr = SITE2_ADDR
    site2_addr6 = SITE2_ADDR6
    site2_web_url = f"http://{SITE2_ADDR}/"
    site2_web_url6 = f"http://[{SITE2_ADDR6}]/"
    site2_blob_url = f"{site2_web_url}blob.bin"
    site2_blob_url6 = f"{site2_web_url6}blob.bin"
    site2_blob_size = SITE2_BLOB_SIZE

    def __init__(self, *, keep: bool | None = None, second_site: bool = False) -> None:
        super().__init__(keep=keep)
        self.second_site = second_site
        self.ns_srv = f"ebs-wsrv-{self.id}"
        self.ns_cli = f"ebs-wcli-{self.id}"
        self.ns_web = f"ebs-wweb-{self.id}"
        self.ns_sv2 = f"ebs-wsv2-{self.id}"
        short = self.id.replace("-", "")[-11:]
        self.server_ifname = f"wgs{short}"      # at most 15 characters
        self.client_ifname = f"wgc{short}"
        self.site2_ifname = f"wgt{short}"
        self.web_url = f"http://{WEB_ADDR}/"
        self.blob_url = f"{self.web_url}blob.bin"
        self.blob_url6 = f"{self.web_url6}blob.bin"
        self.server_keys: KeyPair | None = None
        self.client_keys: KeyPair | None = None
        self.psk = ""
        self.server: WgDevice | None = None
        self.client: WgDevice | None = None
        self.profile_path: Path | None = None
        self.site2_keys: KeyPair | None = None
        self.site2: WgDevice | None = None
        self.profile2_path: Path | None = None
        self.site2_blob_sha256 = ""
        self.startup_seconds = 0.0

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> "WgLab":
        """Create the directory, keys, namespaces, web host, the client profile and the
        server (and the second site, its web server and the two-peer profile, if asked
        for). Cleans up if it fails."""
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
            if self.second_site:
                self.site2_keys = KeyPair.generate()
                self._create_site2_network()
                self.profile2_path = self.write_profile("client2.conf", second_peer=True)
                self.start_site2()
                self._start_site2_web()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for device in (self.client, self.server, self.site2):
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
        self._start_http(self.ns_web, www, ((WEB_ADDR, "http.log"),
                                            (WEB_ADDR6, "http6.log")))
        self._dns = self._dnsmasq(self.ns_web, (WEB_ADDR,), "dnsmasq",
                                  [f"--address=/{name}/{addr}"
                                   for name, addr in DNS_NAMES.items()])

    def _start_http(self, ns: str, www: Path, binds: tuple[tuple[str, str], ...]) -> None:
        """One ``http.server`` :80 serving ``www`` per (address, log name) in ``binds``,
        each listening before this returns."""
        for addr, log in binds:
            proc = self.spawn_ns(ns, [SYSTEM_PYTHON, "-m", "http.server", "80",
                                      "--bind", addr, "--directory", str(www)],
                                 output=self.dir / log)
            needle = f"[{addr}]:80 " if ":" in addr else f"{addr}:80 "
            self._wait_listening(ns, proc, "http.server", "-Htln", needle, self.dir / log)

    def _wait_listening(self, ns: str, proc: NsProcess, what: str, ss_flags: str,
                        needle: str, log: Path) -> None:
        def listening() -> bool:
            if proc.poll() is not None:
                raise LabError(f"{what} exited:\n{tail(log)}")
            return needle in _run(_ns_argv(ns, ["ss", ss_flags])).stdout
        if not _wait_until(listening, timeout=10, interval=0.1):
            raise LabError(f"{what} not listening:\n{tail(log)}")

    # ----------------------------------------------------------------- the second site

    def _create_site2_network(self) -> None:
        """The fourth namespace and its veth to the client (to-sv2 / to-cli); nothing
        else joins it, so only the tunnel reaches SITE2_NET from the client."""
        _run(["ip", "netns", "add", self.ns_sv2])
        self._namespaces.append(self.ns_sv2)
        self._ip(self.ns_sv2, "link", "set", "lo", "up")
        self._ip(self.ns_sv2, "link", "add", "name", "to-cli", "type", "veth",
                 "peer", "name", "to-sv2", "netns", self.ns_cli)
        for ns, dev, addr in ((self.ns_sv2, "to-cli", SITE2_LINK_ADDR),
                              (self.ns_cli, "to-sv2", CLIENT_SITE2_LINK_ADDR)):
            self._ip(ns, "addr", "add", f"{addr}/{LINK_PREFIXLEN}", "dev", dev)
            self._ip(ns, "link", "set", dev, "up")

    def _start_site2_web(self) -> None:
        """Site 2's web server on its wg device's addresses (so after :meth:`start_site2`
        put them there); its listening sockets outlive a stop_site2 / start_site2."""
        www = self.dir / "www2"
        self.site2_blob_sha256 = write_web_root(www, "erebus WireGuard lab site 2",
                                                SITE2_BLOB_SIZE)
        self._start_http(self.ns_sv2, www, ((SITE2_ADDR, "http-site2.log"),
                                            (SITE2_ADDR6, "http6-site2.log")))

    def _site2_conf(self) -> str:
        """``wg setconf`` format: site 2 and its one peer, the client's key without a
        preshared key."""
        return "\n".join([
            "[Interface]", f"PrivateKey = {self.site2_keys.private}",
            f"ListenPort = {WG_PORT}", "",
            "[Peer]", f"PublicKey = {self.client_keys.public}",
            f"AllowedIPs = {CLIENT_TUNNEL_ADDR}/32, {CLIENT_TUNNEL_ADDR6}/128"]) + "\n"

    def start_site2(self) -> WgDevice:
        """wireguard-go at site 2, with its keys (again, after :meth:`stop_site2`).

        A restarted site knows no session and answers none of the client's packets on
        the old one: a stock client handshakes again only when ~15 s of them went
        unanswered (KEEPALIVE_TIMEOUT + REKEY_TIMEOUT), so the first connection after a
        restart may need TCP's SYN at 31 s."""
        if self.site2 is not None and self.site2.running:
            return self.site2
        conf = self._write_private("site2.conf", self._site2_conf())
        self.site2 = WgDevice(self, self.ns_sv2, self.site2_ifname,
                              self.dir / "wireguard-go-site2.log")
        self.site2.start(conf, [f"{SITE2_ADDR}/24", f"{SITE2_ADDR6}/{PREFIXLEN6}"],
                         [f"{CLIENT_TUNNEL_ADDR}/32", f"{CLIENT_TUNNEL_ADDR6}/128"])
        return self.site2

    def stop_site2(self) -> None:
        """Stop site 2's wireguard-go (its device and addresses go; the client's
        packets to it are lost) until :meth:`start_site2`."""
        if self.site2 is not None:
            self.site2.stop()
            self._wait_gone(self.ns_sv2, self.site2_ifname)

    def site2_wg(self, *args: str) -> str:
        """``wg ARGS`` in site 2's namespace."""
        return self.site2.wg(*args)

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
                     keepalive: int | None = KEEPALIVE, second_peer: bool = False) -> str:
        """The client's wg-quick file, as a VPN provider hands it out; ``endpoint``
        replaces the server's; ``second_peer``: site 2 as a second [Peer]."""
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
        if second_peer:
            lines += ["",
                      "[Peer]",
                      f"PublicKey = {self.site2_keys.public}",
                      f"Endpoint = {SITE2_LINK_ADDR}:{WG_PORT}",
                      f"AllowedIPs = {SITE2_NET}, {SITE2_NET6}"]
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

    def _site(self, site: int) -> WgDevice:
        """The server (site 1) or site 2's device."""
        if site == 1:
            return self.server
        if site == 2 and self.second_site:
            return self.site2
        raise LabError(f"this lab has no site {site}")

    def _peer_field(self, site: int, field: str, public: str | None) -> list[str]:
        """``wg show <dev> field`` at ``site``: the values on the line of ``public``
        (default: the client's key)."""
        public = public or self.client_keys.public
        device = self._site(site)
        for line in device.wg("show", device.ifname, field).splitlines():
            key, *values = line.split("\t")
            if key == public:
                return values
        raise LabError(f"site {site} has no peer {public}")

    def latest_handshake(self, public: str | None = None, *, site: int = 1) -> int:
        """The server's (``site=2``: site 2's) latest handshake with ``public``
        (default: the client's key), in seconds since the epoch; 0: never."""
        return int(self._peer_field(site, "latest-handshakes", public)[0])

    def transfer(self, public: str | None = None, *, site: int = 1) -> tuple[int, int]:
        """(bytes received from, bytes sent to) ``public`` by the server (or site 2)."""
        rx, tx = self._peer_field(site, "transfer", public)
        return int(rx), int(tx)

    def server_endpoint(self, public: str | None = None, *, site: int = 1) -> str | None:
        """Where the server (or site 2) last heard ``public`` from (``None``: never)."""
        endpoint = self._peer_field(site, "endpoints", public)[0]
        return None if endpoint == "(none)" else endpoint

    def wait_handshake(self, public: str | None = None, *, after: int = 0,
                       timeout: float = 20, site: int = 1) -> int:
        """Wait until the server's (or site 2's) latest handshake with ``public`` is
        later than ``after``; its time."""
        seen = [0]

        def done() -> bool:
            seen[0] = self.latest_handshake(public, site=site)
            return seen[0] > after
        if not _wait_until(done, timeout=timeout, interval=0.1):
            device = self._site(site)
            raise LabError(f"no handshake at site {site} after {after} within "
                           f"{timeout} s:\n{device.wg('show', device.ifname)}\n"
                           f"{tail(device.log)}")
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
        profile (with a second site: like profile2, both peers): the stock peer that
        shows the server works."""
        if self.client is not None and self.client.running:
            return self.client
        lines = ["[Interface]", f"PrivateKey = {self.client_keys.private}", "",
                 "[Peer]", f"PublicKey = {self.server_keys.public}",
                 f"PresharedKey = {self.psk}", f"Endpoint = {SERVER_LINK_ADDR}:{WG_PORT}",
                 f"AllowedIPs = {WEB_NET}, {TUNNEL_NET}, {WEB_NET6}, {TUNNEL_NET6}",
                 f"PersistentKeepalive = {KEEPALIVE}"]
        routes = [TUNNEL_NET, WEB_NET, TUNNEL_NET6, WEB_NET6]
        if self.second_site:
            lines += ["", "[Peer]", f"PublicKey = {self.site2_keys.public}",
                      f"Endpoint = {SITE2_LINK_ADDR}:{WG_PORT}",
                      f"AllowedIPs = {SITE2_NET}, {SITE2_NET6}",
                      f"PersistentKeepalive = {KEEPALIVE}"]
            routes += [SITE2_NET, SITE2_NET6]
        conf = self._write_private("client-wg.conf", "\n".join(lines) + "\n")
        self.client = WgDevice(self, self.ns_cli, self.client_ifname,
                               self.dir / "wireguard-go-client.log")
        self.client.start(conf, [f"{CLIENT_TUNNEL_ADDR}/32", f"{CLIENT_TUNNEL_ADDR6}/128"],
                          routes)
        return self.client

    def stop_stock_client(self) -> None:
        if self.client is not None:
            self.client.stop()
            self._wait_gone(self.ns_cli, self.client_ifname)
            self.client = None

    def logs_tail(self, lines: int = 40) -> str:
        out = []
        for name in ("wireguard-go-server.log", "wireguard-go-client.log", "http.log",
                     "wireguard-go-site2.log", "http-site2.log"):
            path = self.dir / name if self.dir else None
            if path is not None and path.exists():
                out.append(f"--- {name}\n{tail(path, lines)}")
        return "\n".join(out)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.wg_lab",
                                     description="Start the WireGuard lab and the stock "
                                                 "client; Ctrl-C tears it down.")
    parser.add_argument("--second-site", action="store_true",
                        help="also site 2, a second peer of the client (profile2)")
    args = parser.parse_args(argv)
    with WgLab(keep=True, second_site=args.second_site) as lab:
        lab.start_stock_client()
        print(f"lab {lab.id}: profile {lab.profile_path}; server {lab.ns_srv} "
              f"{lab.server_ifname}; client {lab.ns_cli} {lab.client_ifname}")
        print(f"try: ip netns exec {lab.ns_cli} curl -s {lab.blob_url} | sha256sum "
              f"(expect {lab.blob_sha256})")
        if lab.second_site:
            print(f"site 2: profile {lab.profile2_path}; {lab.ns_sv2} {lab.site2_ifname}")
            print(f"try: ip netns exec {lab.ns_cli} curl -s {lab.site2_blob_url} | "
                  f"sha256sum (expect {lab.site2_blob_sha256})")
        print("Ctrl-C to tear down")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
