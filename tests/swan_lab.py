"""A network-namespace lab with a stock strongSwan IKEv2 responder (Debian's charon),
the peer for erebus's IKEv2 initiator.

Topology (all addresses in the 198.18.0.0/15 benchmarking range)::

    ebs-scli-<id>                ebs-ssrv-<id>                      ebs-sweb-<id>
    198.18.130.2/24 [to-srv] -- [to-cli] 198.18.130.1/24 (+ .11 - .15)
                                 charon-systemd (kernel-libipsec:
                                   userspace ESP through TUN ipsec0)
                                 ip_forward=1
                                 [to-web] 198.19.230.1/24 -- [to-srv] 198.19.230.2/24
                                                               http.server :80
                                                               dnsmasq :53 (web.swan.test)
                                                               route 198.19.231.0/24 via .230.1

    VPN pool (virtual IPs): 198.19.231.0/24, DNS attribute 198.19.230.2;
    protected network (the children's local_ts): 198.19.230.0/24.

    IPv6 inside (mode "v6", from 2001:2::/48): the web link also carries
    2001:2:0:131::fe/64 (responder) -- 2001:2:0:131::1/64 (web host: http.server and
    dnsmasq on it too, web6.swan.test AAAA), the web host routes 2001:2:0:130::/112 (the
    IPv6 pool, DNS attribute 2001:2:0:131::1) back through the responder, which forwards
    IPv6; the mode's children protect 198.19.230.0/24 and 2001:2:0:131::/64. The
    client <-> responder link stays IPv4 (IKE and ESP over IPv4).

The client namespace has no route anywhere but its own link: only traffic carried by
the tunnel reaches the web host. The kernel here has XFRM but no ESP transforms
(``CONFIG_INET_ESP`` is off), so every charon of the lab uses the ``kernel-libipsec``
plugin (ESP in userspace, packets through a TUN device) and every connection forces
UDP encapsulation (``encap = yes``): ESP flows inside UDP 4500, like erebus will do.

One charon serves every mode (:data:`MODES`); the modes differ by the responder
address the client connects to (``local_addrs`` of each connection), so every mode
uses the standard ports 500 and 4500 and a client never depends on strongSwan's
peer-config switching. For each mode the lab writes the client's side the way a
strongSwan road-warrior user has it (``swanctl.conf`` plus ``x509/``, ``x509ca/``,
``private/``), world-readable: :meth:`SwanLab.profile`.

Usage, from pytest (see ``tests/interop/test_swan_lab.py``) or standalone::

    from tests.swan_lab import SwanLab
    with SwanLab() as lab:
        profile = lab.profile("psk")           # profile.conf is the client swanctl.conf
        proc = lab.run_client([lab.python, "-m", "erebus", ...])
        print(lab.list_sas())                  # the responder's view

``python -m tests.swan_lab [mode ...]`` starts the lab (and, for the given modes, the
stock strongSwan initiator) for a manual look. Everything is torn down by
:meth:`SwanLab.close` (also at exit, on Ctrl-C and on SIGTERM); ``EREBUS_KEEP_LAB=1``
keeps the lab directory (PKI, configs, charon logs).
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.lab import (
    SYSTEM_PYTHON,
    Lab,
    LabError,
    NsProcess,
    Pki,
    _install_sigterm_handler,
    _ns_argv,
    _run,
    _wait_until,
    stop_process,
    tail,
    wait_for_log,
)

# Addresses. Everything lives in 198.18.0.0/15 (RFC 2544 benchmarking range).
RESPONDER_ADDR = "198.18.130.1"      # responder end of the client <-> responder link
CLIENT_ADDR = "198.18.130.2"         # client end
LINK_PREFIXLEN = 24
WEB_GATEWAY_ADDR = "198.19.230.1"    # responder end of the responder <-> web link
WEB_ADDR = "198.19.230.2"            # the host behind the VPN (http :80, dns :53)
PROTECTED_NET = "198.19.230.0/24"    # the children's local_ts (responder side)
POOL_NET = "198.19.231.0/24"         # virtual IPs handed to clients
POOL_NAME = "lab-pool"
DNS_ADDR = WEB_ADDR                  # the pool's dns attribute

SERVER_ID = "vpn.swan.test"          # the responder's identity (cert SAN DNS)
CLIENT_ID = "client.swan.test"       # the client's identity (cert CN + SAN DNS)
DNS_NAMES = {"web.swan.test": WEB_ADDR}   # what the lab's dnsmasq answers

# IPv6 inside the tunnel (mode "v6"); everything in 2001:2::/48.
WEB_GATEWAY_ADDR6 = "2001:2:0:131::fe"   # responder end of the web link
WEB_ADDR6 = "2001:2:0:131::1"            # the web host (http :80, dns :53)
PROTECTED_NET6 = "2001:2:0:131::/64"
POOL_NET6 = "2001:2:0:130::/112"         # IPv6 virtual IPs
POOL_NAME6 = "lab-pool6"
DNS_ADDR6 = WEB_ADDR6
PREFIXLEN6 = 64
DNS_NAMES6 = {"web6.swan.test": WEB_ADDR6}   # AAAA only

BLOB_SIZE = 1 << 20                  # size of www/blob.bin

IKE_PORT = 500
NATT_PORT = 4500

# The responder's IKE proposals, in its order of preference, and its ESP proposals.
IKE_PROPOSALS = ("aes256gcm16-prfsha256-ecp256", "aes256gcm16-prfsha256-x25519",
                 "aes256gcm16-prfsha256-modp2048", "aes256-sha256-modp2048")
ESP_PROPOSALS = ("aes256gcm16", "aes256-sha256")

# charon's plugins, in load order. kernel-libipsec comes BEFORE kernel-netlink: the
# first plugin that registers "kernel-ipsec" wins (kernel_interface.add_ipsec_interface
# ignores later ones), so SAs go to libipsec while kernel-netlink keeps the networking
# part (addresses, routes in table 220). kdf provides prf+ (strongSwan >= 5.9.6).
# No "resolve" (it would rewrite the host's /etc/resolv.conf on the initiator) and no
# "updown".
CHARON_PLUGINS = ("random nonce openssl pem pkcs1 pkcs8 x509 pubkey revocation constraints "
                  "kdf sha1 sha2 hmac aes gcm curve25519 gmp "
                  "kernel-libipsec kernel-netlink socket-default vici")
CHARON_CANDIDATES = ("/usr/sbin/charon-systemd",)
PLUGIN_DIR = Path("/usr/lib/ipsec/plugins")


@dataclass(frozen=True)
class SwanMode:
    """One responder connection (and the client configuration that matches it).

    ``address`` is the responder address the client connects to: the connection's
    ``local_addrs``, unique among :data:`MODES`.
    """

    name: str
    address: str
    auth: str = "psk"                     # "psk" or "pubkey"
    server_identity: str = "server"       # PKI identity the responder presents (pubkey)
    child_rekey_time: str | None = None   # children.<name>.rekey_time on the responder
    client_identity: str = "client"       # PKI identity the client authenticates with
    client_id: str | None = CLIENT_ID     # the client's local.id (None: none, as charon
                                          # then: the certificate's subject DN)
    expected_client_id: str = CLIENT_ID   # the responder's remote.id
    ipv6: bool = False                    # both pools, both protected networks; the
                                          # client asks vips = 0.0.0.0, ::


MODES: dict[str, SwanMode] = {
    # Pre-shared key: local id vpn.swan.test, remote id client.swan.test.
    "psk": SwanMode("psk", RESPONDER_ADDR),
    # Certificates: the responder presents server.pem (vpn.swan.test), the client
    # client.pem (client.swan.test), both signed by ca.pem.
    "cert": SwanMode("cert", "198.18.130.11", auth="pubkey"),
    # PSK with the CHILD_SA rekeyed by the responder every ~10 s (9-10 s: strongSwan
    # subtracts a random 0..rand_time, which defaults to life_time - rekey_time = 1 s).
    "rekey": SwanMode("rekey", "198.18.130.12", child_rekey_time="10s"),
    # Like "cert" (same client configuration, other address) but the responder's
    # certificate (also vpn.swan.test) comes from an unrelated CA: the client must refuse.
    "foreign-ca": SwanMode("foreign-ca", "198.18.130.13", auth="pubkey",
                           server_identity="rogue-server"),
    # Certificates, the client's swanctl.conf without local.id: charon's default identity
    # is the certificate's subject DN, which the responder's remote.id names.
    "cert-dn": SwanMode("cert-dn", "198.18.130.14", auth="pubkey", client_id=None,
                        expected_client_id=f"CN={CLIENT_ID}"),
    # The same with an RSA client certificate (CN=rsa-client.swan.test, 2048 bits).
    "cert-rsa-dn": SwanMode("cert-rsa-dn", "198.18.130.15", auth="pubkey",
                            client_identity="rsa-client", client_id=None,
                            expected_client_id=f"CN=rsa-{CLIENT_ID}"),
    # PSK, dual stack inside: an IPv4 and an IPv6 virtual IP, both protected networks.
    "v6": SwanMode("v6", "198.18.130.16", ipv6=True),
}


class SwanError(LabError):
    """A strongSwan operation of the lab failed."""


def charon_binary() -> str | None:
    """The charon daemon to run (Debian's charon-systemd), or None."""
    for path in CHARON_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return None


def missing_prerequisites() -> list[str]:
    """Why the strongSwan lab cannot run here (an empty list if it can)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the strongSwan lab needs root (network namespaces, tun devices)")
    for tool in ("ip", "ss", "runuser", "curl", "dnsmasq", "swanctl"):
        if shutil.which(tool) is None:
            problems.append(f"{tool!r} is not installed")
    if charon_binary() is None:
        problems.append("charon-systemd is not installed (Debian package charon-systemd)")
    for plugin in CHARON_PLUGINS.split():
        if not (PLUGIN_DIR / f"libstrongswan-{plugin}.so").exists():
            problems.append(f"strongSwan plugin {plugin!r} is missing from {PLUGIN_DIR}")
    if not os.path.exists("/dev/net/tun"):
        problems.append("/dev/net/tun is missing")
    if not os.path.exists(SYSTEM_PYTHON):
        problems.append(f"{SYSTEM_PYTHON} is missing")
    return problems


# --------------------------------------------------------------------------- settings files

def render_settings(tree: dict, indent: int = 0) -> str:
    """strongSwan's settings syntax (strongswan.conf, swanctl.conf) from nested dicts.

    A dict value is a section, anything else ``key = value`` (str() of it).
    """
    pad = "    " * indent
    out = []
    for key, value in tree.items():
        if isinstance(value, dict):
            out.append(f"{pad}{key} {{\n{render_settings(value, indent + 1)}{pad}}}\n")
        else:
            out.append(f"{pad}{key} = {value}\n")
    return "".join(out)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def charon_settings(*, log: Path, vici: Path, log_keys: bool, extra: dict | None = None) -> str:
    """A self-contained strongswan.conf for one lab charon (no include of /etc)."""
    levels = {"default": 1, "ike": 4 if log_keys else 2, "chd": 4 if log_keys else 2,
              "cfg": 2, "net": 1, "enc": 1, "knl": 2}
    charon = {
        "load": CHARON_PLUGINS,
        "filelog": {"lab": {"path": log, "time_format": "%H:%M:%S", "time_add_ms": "yes",
                            "ike_name": "yes", "append": "no", "flush_line": "yes",
                            **levels}},
        "syslog": {"daemon": {"default": -1}},
        # Fast reconnects by tests must never meet cookies or the half-open limit.
        "cookie_threshold": 100000,
        "cookie_threshold_ip": 100000,
        "block_threshold": 100001,     # must exceed cookie_threshold_ip
        "plugins": {"vici": {"socket": f"unix://{vici}"}},
        **(extra or {}),
    }
    tree = {
        "charon": charon,
        # charon-systemd reads charon-systemd.*, falling back to charon.*; its journal
        # logger is on by default: keep the lab out of the host's journal.
        "charon-systemd": {"journal": {"default": -1}},
        "swanctl": {"socket": f"unix://{vici}"},
    }
    return render_settings(tree)


# --------------------------------------------------------------------------- PKI

class SwanPki(Pki):
    """PEM files of the strongSwan lab's PKI (``<name>.pem`` and ``<name>.key``).

    Identities: ``ca`` ("swan-lab-ca"); ``server`` (CN and SAN DNS ``vpn.swan.test``,
    SAN IPs: every responder address, 198.18.130.1 first) and ``client`` (CN and SAN
    DNS ``client.swan.test``) and ``rsa-client`` (the same for ``rsa-client.swan.test``,
    an RSA 2048 key), signed by it; ``rogue-ca`` ("rogue-swan-ca") and
    ``rogue-server`` (same names as ``server``, signed by the rogue CA).
    EC P-256 keys but for ``rsa-client``, PKCS#8, world-readable (the client under test
    runs as nobody).
    """

    def cert(self, name: str) -> Path:
        return self.dir / f"{name}.pem"

    @classmethod
    def generate(cls, directory: Path) -> "SwanPki":
        from cryptography import x509
        from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

        from tests.pki import ca_extensions, issue as issue_cert, key_usage

        pki = cls(directory)
        ike_intermediate = ObjectIdentifier("1.3.6.1.5.5.8.2.2")

        def issue(name: str, cn: str, issuer: tuple | None, extensions: list) -> tuple:
            return issue_cert(pki.cert(name), pki.key(name), cn, issuer, extensions)

        def ca_exts():
            return ca_extensions()

        def leaf_exts(dns: str, ips: list[str], ekus: list):
            names = [x509.DNSName(dns), *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips)]
            return [(x509.BasicConstraints(ca=False, path_length=None), True),
                    (key_usage(digital_signature=True), True),
                    (x509.ExtendedKeyUsage(ekus), False),
                    (x509.SubjectAlternativeName(names), False)]

        server_ips = [RESPONDER_ADDR, *(m.address for m in MODES.values()
                                        if m.address != RESPONDER_ADDR)]
        server_exts = leaf_exts(SERVER_ID, server_ips,
                                [ExtendedKeyUsageOID.SERVER_AUTH, ike_intermediate])
        ca = issue("ca", "swan-lab-ca", None, ca_exts())
        issue("server", SERVER_ID, ca, server_exts)
        issue("client", CLIENT_ID, ca,
              leaf_exts(CLIENT_ID, [], [ExtendedKeyUsageOID.CLIENT_AUTH]))
        from cryptography.hazmat.primitives.asymmetric import rsa
        issue_cert(pki.cert("rsa-client"), pki.key("rsa-client"), f"rsa-{CLIENT_ID}", ca,
                   leaf_exts(f"rsa-{CLIENT_ID}", [], [ExtendedKeyUsageOID.CLIENT_AUTH]),
                   key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
        rogue = issue("rogue-ca", "rogue-swan-ca", None, ca_exts())
        issue("rogue-server", SERVER_ID, rogue, server_exts)
        return pki


# --------------------------------------------------------------------------- client profiles

@dataclass(frozen=True)
class SwanProfile:
    """A mode's client side, as a strongSwan road-warrior user has it: ``conf``
    (``swanctl.conf``) in ``dir`` with ``x509/``, ``x509ca/`` and ``private/``.

    ``connection`` / ``child`` name ``connections.<connection>`` and its
    ``children.<child>``; the other fields repeat what the file says.
    """

    mode: str
    dir: Path
    conf: Path
    connection: str
    child: str
    address: str               # remote_addrs: the responder address of this mode
    auth: str                  # "psk" or "pubkey"
    local_id: str | None       # None: no local.id (the certificate's subject DN)
    remote_id: str
    remote_ts: str             # the IPv4 network (remote_ts6: the IPv6 one, in ipv6 modes)
    psk: str | None            # secrets.ike-<mode>.secret (psk modes)
    cert: Path | None          # x509/client.pem (pubkey modes)
    key: Path | None           # private/client.key
    cacert: Path | None        # x509ca/ca.pem
    remote_ts6: str | None = None


# --------------------------------------------------------------------------- vici raw output

_RAW_TOKEN = re.compile(r"([^\s=\[\]{}]+)=\[([^\]]*)\]"   # key=[item item]
                        r"|([^\s=\[\]{}]+)=([^\s{}]*)"      # key=value
                        r"|([^\s=\[\]{}]+) \{"             # name {
                        r"|\}")


def parse_raw_listing(text: str) -> list[dict]:
    """Parse ``swanctl --list-sas --raw`` (one ``list-sa event {...}`` a line) into
    one dict per IKE_SA: ``{"name": conn, "uniqueid": ..., "child-sas": {...}, ...}``.
    Lists (``key=[a b]``, e.g. ``remote-vips``) become Python lists. Values must not
    contain spaces (true for this lab's identities)."""
    sas = []
    prefix = "list-sa event {"
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith(prefix):
            continue
        root: dict = {}
        stack = [root]
        for m in _RAW_TOKEN.finditer(line[len(prefix):]):
            top = stack[-1]
            if m.group(1) is not None:
                top[m.group(1)] = m.group(2).split()
            elif m.group(3) is not None:
                top[m.group(3)] = m.group(4)
            elif m.group(5) is not None:
                stack.append(top.setdefault(m.group(5), {}))
            elif len(stack) > 1:
                stack.pop()
        for name, sa in root.items():
            if isinstance(sa, dict):
                sas.append({"name": name, **sa})
    return sas


# --------------------------------------------------------------------------- a charon

@dataclass
class Charon:
    """One charon of the lab (the responder, or a stock initiator) in a namespace.

    ``conf`` is its strongswan.conf (pass it as ``STRONGSWAN_CONF``), ``vici`` its
    control socket, ``log`` its file log, ``out`` its stdout/stderr.
    """

    role: str
    ns: str
    dir: Path
    conf: Path
    vici: Path
    log: Path
    out: Path
    process: NsProcess = field(repr=False)
    startup_seconds: float = 0.0

    @property
    def uri(self) -> str:
        return f"unix://{self.vici}"

    @property
    def env(self) -> dict[str, str]:
        return {"STRONGSWAN_CONF": str(self.conf)}

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log, lines)

    def describe(self, lines: int = 40) -> str:
        return (f"--- charon {self.role} in {self.ns} ({self.log}) ---\n{self.log_tail(lines)}"
                + (f"\n--- its output ---\n{tail(self.out, 10)}" if tail(self.out, 10) else ""))


# --------------------------------------------------------------------------- the lab

class SwanLab(Lab):
    """Namespaces, PKI, web host and a running strongSwan responder; a context manager.

    Inherits from :class:`tests.lab.Lab` everything that is not OpenVPN: ``run_ns``,
    ``spawn_ns``, ``run_client`` / ``spawn_client`` (as nobody in the client
    namespace), ``python`` / ``pythonpath``, ``ping``, ``set_loss`` / ``clear_loss``
    (on the client <-> responder link), ``close``.

    Attributes (after :meth:`start`): ``id``, ``ns_srv``, ``ns_cli``, ``ns_web``,
    ``dir``, ``pki`` (:class:`SwanPki`), ``psk``, ``responder`` (:class:`Charon`),
    ``startup_seconds`` (charon start + ``swanctl --load-all``), ``blob_sha256`` /
    ``blob_size`` / ``blob_url`` / ``web_url``, and the address constants as
    ``responder_addr``, ``client_addr``, ``web_addr``, ``web_gateway_addr``,
    ``protected_net``, ``pool``, ``dns_addr``, ``server_id``, ``client_id``,
    ``ike_proposals``, ``esp_proposals``, ``ike_port`` / ``natt_port``, ``modes``.
    """

    responder_addr = RESPONDER_ADDR
    client_addr = CLIENT_ADDR
    server_link_addr = RESPONDER_ADDR     # names of tests.lab.Lab
    client_link_addr = CLIENT_ADDR
    web_addr = WEB_ADDR
    web_gateway_addr = WEB_GATEWAY_ADDR
    protected_net = PROTECTED_NET
    pool = POOL_NET
    dns_addr = DNS_ADDR
    dns_names = DNS_NAMES
    web_addr6 = WEB_ADDR6
    web_gateway_addr6 = WEB_GATEWAY_ADDR6
    protected_net6 = PROTECTED_NET6
    pool6 = POOL_NET6
    dns_addr6 = DNS_ADDR6
    dns_names6 = DNS_NAMES6
    server_id = SERVER_ID
    client_id = CLIENT_ID
    ike_proposals = IKE_PROPOSALS
    esp_proposals = ESP_PROPOSALS
    ike_port = IKE_PORT                   # where the responder listens (on every address)
    natt_port = NATT_PORT
    modes = MODES

    def __init__(self, *, keep: bool | None = None, log_keys: bool = True) -> None:
        """*log_keys*: log IKE and CHILD keying material (``ike 4``, ``chd 4``) in the
        charon logs, for debugging key derivation (the lab's keys are throwaway)."""
        super().__init__(keep=keep)
        self.ns_srv = f"ebs-ssrv-{self.id}"
        self.ns_cli = f"ebs-scli-{self.id}"
        self.ns_web = f"ebs-sweb-{self.id}"
        self.web_url = f"http://{WEB_ADDR}/"
        self.blob_url = f"{self.web_url}blob.bin"
        self.web_url6 = f"http://[{WEB_ADDR6}]/"
        self.blob_url6 = f"{self.web_url6}blob.bin"
        self.blob_size = BLOB_SIZE
        self.log_keys = log_keys
        self.psk = ""
        self.responder: Charon | None = None
        self.initiators: list[StockInitiator] = []
        self.startup_seconds = 0.0
        self._profiles: dict[str, SwanProfile] = {}

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> "SwanLab":
        """Create the directory, PKI, namespaces, web host, client profiles and the
        responder. Cleans up if it fails."""
        atexit.register(self.close)
        _install_sigterm_handler()
        try:
            self.dir = Path(tempfile.mkdtemp(prefix=f"erebus-swanlab-{self.id}-", dir="/tmp"))
            os.chmod(self.dir, 0o755)        # the client runs as nobody
            (self.dir / "pki").mkdir(mode=0o755)
            self.pki = SwanPki.generate(self.dir / "pki")
            self.psk = "swan-lab-" + secrets.token_urlsafe(18)
            self._create_network()
            self._start_web()
            for name in MODES:
                self._profiles[name] = self._write_profile(MODES[name])
            self._start_responder()
        except BaseException:
            self.close()
            raise
        return self

    # ----------------------------------------------------------------- network

    def _create_network(self) -> None:
        self._build_network(server_addr=RESPONDER_ADDR, client_addr=CLIENT_ADDR,
                            web_gateway=WEB_GATEWAY_ADDR, web_addr=WEB_ADDR, pools=POOL_NET)
        for mode in MODES.values():     # one responder address per mode
            if mode.address != RESPONDER_ADDR:
                self._ip(self.ns_srv, "addr", "add", f"{mode.address}/{LINK_PREFIXLEN}",
                         "dev", "to-cli")
        # IPv6 behind the responder (mode "v6"): nodad, usable at once
        for ns, dev, addr in ((self.ns_srv, "to-web", WEB_GATEWAY_ADDR6),
                              (self.ns_web, "to-srv", WEB_ADDR6)):
            self._ip(ns, "addr", "add", f"{addr}/{PREFIXLEN6}", "dev", dev, "nodad")
        self._ip(self.ns_web, "-6", "route", "add", POOL_NET6, "via", WEB_GATEWAY_ADDR6)
        _run(_ns_argv(self.ns_srv, ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]))

    def _start_web(self) -> None:
        www = self._write_web_root("erebus strongSwan lab", BLOB_SIZE)
        self._http = self.spawn_ns(
            self.ns_web, [SYSTEM_PYTHON, "-m", "http.server", "80", "--bind", WEB_ADDR,
                          "--directory", str(www)],
            output=self.dir / "http.log")
        self._wait_listening(self._http, "http.server", "-Htln", f"{WEB_ADDR}:80 ",
                             self.dir / "http.log")
        self._http6 = self.spawn_ns(
            self.ns_web, [SYSTEM_PYTHON, "-m", "http.server", "80", "--bind", WEB_ADDR6,
                          "--directory", str(www)],
            output=self.dir / "http6.log")
        self._wait_listening(self._http6, "http.server (IPv6)", "-Htln",
                             f"[{WEB_ADDR6}]:80 ", self.dir / "http6.log")
        argv = ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
                "--bind-interfaces", f"--listen-address={WEB_ADDR}",
                f"--listen-address={WEB_ADDR6}", "--port=53",
                "--user=root", "--group=root", f"--pid-file={self.dir / 'dnsmasq.pid'}",
                "--log-queries", "--log-facility=-"]
        argv += [f"--address=/{name}/{addr}" for name, addr in DNS_NAMES.items()]
        # AAAA only (dnsmasq answers the A question of a host-record name NODATA)
        argv += [f"--host-record={name},{addr}" for name, addr in DNS_NAMES6.items()]
        self._dns = self.spawn_ns(self.ns_web, argv, output=self.dir / "dnsmasq.log")
        self._wait_listening(self._dns, "dnsmasq", "-Huln", f"{WEB_ADDR}:53 ",
                             self.dir / "dnsmasq.log")

    def _wait_listening(self, proc: NsProcess, what: str, ss_flags: str, needle: str,
                        log: Path) -> None:
        def listening() -> bool:
            if proc.poll() is not None:
                raise LabError(f"{what} exited:\n{tail(log)}")
            return needle in _run(_ns_argv(self.ns_web, ["ss", ss_flags])).stdout
        if not _wait_until(listening, timeout=10, interval=0.1):
            raise LabError(f"{what} not listening:\n{tail(log)}")

    # ----------------------------------------------------------------- charons

    def _start_charon(self, role: str, ns: str, *, extra: dict | None = None,
                      timeout: float = 20) -> Charon:
        """Start a charon with its own strongswan.conf, vici socket and log in *ns*."""
        binary = charon_binary()
        if binary is None:
            raise SwanError("charon-systemd is not installed")
        d = self.dir / role
        d.mkdir(mode=0o755, exist_ok=True)
        conf, vici, log, out = d / "strongswan.conf", d / "charon.vici", d / "charon.log", \
            d / "charon.out"
        conf.write_text(charon_settings(log=log, vici=vici, log_keys=self.log_keys, extra=extra))
        t0 = time.monotonic()
        proc = self.spawn_ns(ns, [binary], env={"STRONGSWAN_CONF": str(conf)}, output=out)
        charon = Charon(role=role, ns=ns, dir=d, conf=conf, vici=vici, log=log, out=out,
                        process=proc)
        try:
            wait_for_log(log, "loaded plugins:", timeout=timeout, process=proc,
                         what=f"charon {role}")

            def answering() -> bool:
                if proc.poll() is not None:
                    raise SwanError(f"charon {role} exited rc={proc.returncode}")
                return self.swanctl(charon, "--stats", check=False, timeout=10).returncode == 0
            if not _wait_until(answering, timeout=timeout, interval=0.05):
                raise SwanError(f"charon {role}: vici socket {vici} does not answer")
        except LabError as exc:
            stop_process(proc)
            raise SwanError(f"{exc}\n{charon.describe()}".rstrip()) from None
        loaded = re.search(r"loaded plugins: (.*)", log.read_text(errors="replace"))
        if loaded is None or "kernel-libipsec" not in loaded.group(1).split():
            # Without it kernel-netlink's XFRM backend takes over and CHILD_SAs fail.
            stop_process(proc)
            raise SwanError(f"charon {role} did not load kernel-libipsec\n{charon.describe()}")
        charon.startup_seconds = time.monotonic() - t0
        return charon

    def swanctl(self, charon: "Charon | None", *args: str, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess:
        """``swanctl ARGS --uri <charon's vici>`` in the charon's namespace (the
        responder's by default); raises :class:`SwanError` if it fails and *check*."""
        charon = charon or self.responder
        cp = self.run_ns(charon.ns, ["swanctl", *args, "--uri", charon.uri], env=charon.env,
                         timeout=timeout)
        if check and cp.returncode != 0:
            raise SwanError(f"swanctl {' '.join(args)} failed (rc={cp.returncode}):\n"
                            f"{cp.stdout}{cp.stderr}\n{charon.describe()}".rstrip())
        return cp

    def _start_responder(self) -> None:
        t0 = time.monotonic()
        self.responder = self._start_charon(
            "responder", self.ns_srv,
            # a dead client's IKE_SA goes within ~25 s (DPD every 5 s, 3 retransmits)
            extra={"retransmit_tries": 3, "retransmit_timeout": 2.0})
        swan = self.responder.dir / "swanctl"
        for sub in ("x509", "x509ca", "private"):
            (swan / sub).mkdir(parents=True, mode=0o700, exist_ok=True)
        for ident in ("server", "rogue-server"):
            shutil.copy(self.pki.cert(ident), swan / "x509" / f"{ident}.pem")
            shutil.copy(self.pki.key(ident), swan / "private" / f"{ident}.key")
        # The rogue CA is NOT trusted by the responder: only the lab CA verifies clients.
        shutil.copy(self.pki.ca_cert, swan / "x509ca" / "ca.pem")
        (swan / "swanctl.conf").write_text(self._responder_swanctl())
        self.swanctl(self.responder, "--load-all", "--noprompt",
                     "--file", str(swan / "swanctl.conf"))
        self.startup_seconds = time.monotonic() - t0

    def _responder_swanctl(self) -> str:
        conns = {}
        for mode in MODES.values():
            if mode.auth == "psk":
                local = {"auth": "psk", "id": SERVER_ID}
                remote = {"auth": "psk", "id": CLIENT_ID}
            else:
                local = {"auth": "pubkey", "certs": f"{mode.server_identity}.pem",
                         "id": SERVER_ID}
                remote = {"auth": "pubkey", "cacerts": "ca.pem",
                          "id": _quote(mode.expected_client_id)}
            child = {"local_ts": PROTECTED_NET + (f", {PROTECTED_NET6}" if mode.ipv6 else ""),
                     "esp_proposals": ",".join(ESP_PROPOSALS)}
            if mode.child_rekey_time:
                child["rekey_time"] = mode.child_rekey_time
            conn = {
                "version": 2,
                "local_addrs": mode.address,
                "pools": POOL_NAME + (f", {POOL_NAME6}" if mode.ipv6 else ""),
                "proposals": ", ".join(IKE_PROPOSALS),
                "encap": "yes",
                "dpd_delay": "5s",
                # A reconnecting client (same identity) replaces its old IKE_SA.
                "unique": "replace",
            }
            if mode.auth == "pubkey":
                # Send the certificate even if the client sends no CERTREQ.
                conn["send_cert"] = "always"
            conns[mode.name] = {**conn, "local": local, "remote": remote,
                                "children": {mode.name: child}}
        tree = {
            "connections": conns,
            "pools": {POOL_NAME: {"addrs": POOL_NET, "dns": DNS_ADDR},
                      POOL_NAME6: {"addrs": POOL_NET6, "dns": DNS_ADDR6}},
            "secrets": {"ike-psk": {"id-client": CLIENT_ID, "id-server": SERVER_ID,
                                    "secret": _quote(self.psk)}},
        }
        return render_settings(tree)

    # ----------------------------------------------------------------- client profiles

    def profile(self, mode: str) -> SwanProfile:
        """The client side of *mode* (see :class:`SwanProfile`), world-readable."""
        return self._profiles[mode]

    def _write_profile(self, mode: SwanMode) -> SwanProfile:
        d = self.dir / "client" / mode.name
        for sub in ("x509", "x509ca", "private"):
            (d / sub).mkdir(parents=True, mode=0o755, exist_ok=True)
        os.chmod(d.parent, 0o755)
        if mode.auth == "psk":
            local = {"auth": "psk", "id": CLIENT_ID}
            remote = {"auth": "psk", "id": SERVER_ID}
        else:
            local = {"auth": "pubkey", "certs": "client.pem"}
            if mode.client_id is not None:
                local["id"] = mode.client_id
            remote = {"auth": "pubkey", "id": SERVER_ID, "cacerts": "ca.pem"}
        conn = {
            "version": 2,
            "remote_addrs": mode.address,
            "vips": "0.0.0.0, ::" if mode.ipv6 else "0.0.0.0",
            "proposals": ", ".join(IKE_PROPOSALS),
            "encap": "yes",
            "local": local,
            "remote": remote,
            "children": {mode.name: {
                "remote_ts": PROTECTED_NET + (f", {PROTECTED_NET6}" if mode.ipv6 else ""),
                "esp_proposals": ",".join(ESP_PROPOSALS)}},
        }
        tree: dict = {"connections": {mode.name: conn}}
        cert = key = cacert = None
        if mode.auth == "psk":
            tree["secrets"] = {f"ike-{mode.name}": {"id-local": CLIENT_ID, "id-remote": SERVER_ID,
                                                    "secret": _quote(self.psk)}}
        else:
            cert, key, cacert = d / "x509" / "client.pem", d / "private" / "client.key", \
                d / "x509ca" / "ca.pem"
            shutil.copy(self.pki.cert(mode.client_identity), cert)
            shutil.copy(self.pki.key(mode.client_identity), key)
            shutil.copy(self.pki.ca_cert, cacert)
        conf = d / "swanctl.conf"
        conf.write_text(f"# erebus strongSwan lab: client side of mode {mode.name!r}\n"
                        + render_settings(tree))
        for p in d.rglob("*"):
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        return SwanProfile(mode=mode.name, dir=d, conf=conf, connection=mode.name,
                           child=mode.name, address=mode.address, auth=mode.auth,
                           local_id=mode.client_id, remote_id=SERVER_ID,
                           remote_ts=PROTECTED_NET,
                           psk=self.psk if mode.auth == "psk" else None,
                           cert=cert, key=key, cacert=cacert,
                           remote_ts6=PROTECTED_NET6 if mode.ipv6 else None)

    # PEM paths, for the client under test.
    @property
    def ca_cert(self) -> Path:
        return self.pki.ca_cert

    @property
    def client_cert(self) -> Path:
        return self.pki.cert("client")

    @property
    def client_key(self) -> Path:
        return self.pki.key("client")

    @property
    def responder_log(self) -> Path:
        return self.responder.log

    # ----------------------------------------------------------------- responder state

    def list_sas(self, *, raw: bool = False, ike: str | None = None) -> str:
        """``swanctl --list-sas`` of the responder (optionally ``--ike <conn>``)."""
        args = ["--list-sas"] + (["--raw"] if raw else []) + (["--ike", ike] if ike else [])
        return self.swanctl(self.responder, *args, timeout=20).stdout

    def ike_sas(self, mode: str | None = None) -> list[dict]:
        """The responder's IKE_SAs (of connection *mode*), parsed from ``--raw``:
        dicts with ``name``, ``state``, ``remote-host``, ``remote-port``,
        ``remote-vips`` (list), ``child-sas`` (dict name -> dict with ``state``,
        ``spi-in``, ``spi-out``, ``encr-alg``, ...), etc."""
        return parse_raw_listing(self.list_sas(raw=True, ike=mode))

    def established(self, mode: str | None = None) -> list[dict]:
        """The responder's ESTABLISHED IKE_SAs (of *mode*) that have an INSTALLED child."""
        return [sa for sa in self.ike_sas(mode) if sa.get("state") == "ESTABLISHED"
                and any(c.get("state") == "INSTALLED"
                        for c in (sa.get("child-sas") or {}).values())]

    def wait_established(self, mode: str | None = None, *, timeout: float = 30) -> dict:
        """Wait until the responder has an established IKE_SA + CHILD_SA (of *mode*)."""
        found: list[dict] = []

        def up() -> bool:
            found[:] = self.established(mode)
            return bool(found)
        if not _wait_until(up, timeout=timeout, interval=0.2):
            raise SwanError(f"no established IKE_SA{f' for {mode!r}' if mode else ''} "
                            f"within {timeout}s\n{self.list_sas()}\n{self.responder.describe()}")
        return found[0]

    def terminate_all(self) -> None:
        """Close every IKE_SA on the responder (between tests)."""
        for sa in self.ike_sas():
            self.swanctl(self.responder, "--terminate", "--ike-id", sa["uniqueid"],
                         "--force", "--timeout", "5", check=False, timeout=20)

    # ----------------------------------------------------------------- stock initiator

    def start_initiator(self, mode: str, *, port: int = 0, natt_port: int = 0) -> "StockInitiator":
        """A STOCK strongSwan initiator (a second charon, also kernel-libipsec) in the
        client namespace, with *mode*'s generated client swanctl.conf loaded.

        *port* / *natt_port*: its local IKE and NAT-T ports; 0 (default) picks random
        unprivileged ones, like erebus will: IKE_SA_INIT goes from a high port to 500,
        then (NAT-T forced) IKE_AUTH and ESP from another high port to 4500.
        """
        n = len(self.initiators)
        charon = self._start_charon(f"initiator-{mode}-{n}", self.ns_cli,
                                    extra={"port": port, "port_nat_t": natt_port,
                                           "retransmit_tries": 2})
        ini = StockInitiator(self, charon, self.profile(mode))
        self.initiators.append(ini)
        self.swanctl(charon, "--load-all", "--noprompt", "--file", str(ini.profile.conf))
        return ini

    # ----------------------------------------------------------------- diagnostics

    def start_server(self, mode: str, **_kwargs):        # tests.lab.Lab's OpenVPN API
        raise LabError("SwanLab runs strongSwan, not OpenVPN: use profile(mode)")

    def logs_tail(self, lines: int = 40) -> str:
        """Tails of the responder's log, of live initiators' logs and of the web host's."""
        parts = []
        if self.responder is not None:
            parts.append(self.responder.describe(lines))
        parts += [i.charon.describe(lines) for i in self.initiators
                  if i.charon.process.poll() is None]
        if self.dir is not None:
            parts.append(f"--- http.server ---\n{tail(self.dir / 'http.log', lines)}")
        return "\n".join(parts)


class StockInitiator:
    """A stock strongSwan initiator started by :meth:`SwanLab.start_initiator`."""

    def __init__(self, lab: SwanLab, charon: Charon, profile: SwanProfile) -> None:
        self.lab, self.charon, self.profile = lab, charon, profile

    def initiate(self, *, timeout: int = 30, check: bool = True) -> subprocess.CompletedProcess:
        """``swanctl --initiate --child <child>``: returns once the CHILD_SA is up
        (or failed: then raises :class:`SwanError` if *check*)."""
        return self.lab.swanctl(self.charon, "--initiate", "--child", self.profile.child,
                                "--timeout", str(timeout), check=check, timeout=timeout + 15)

    def ike_sas(self) -> list[dict]:
        return parse_raw_listing(self.lab.swanctl(self.charon, "--list-sas", "--raw").stdout)

    def virtual_ip(self) -> str | None:
        for sa in self.ike_sas():
            if sa.get("state") == "ESTABLISHED" and sa.get("local-vips"):
                return sa["local-vips"][0]
        return None

    def terminate(self) -> None:
        self.lab.swanctl(self.charon, "--terminate", "--ike", self.profile.connection,
                         "--timeout", "10", check=False, timeout=25)

    def stop(self) -> None:
        stop_process(self.charon.process)

    def describe(self, lines: int = 40) -> str:
        return self.charon.describe(lines)


if __name__ == "__main__":      # a quick manual check: python -m tests.swan_lab [mode ...]
    with SwanLab() as lab:
        print(f"lab dir {lab.dir}; responder up in {lab.startup_seconds:.2f}s; "
              f"log {lab.responder_log}; blob sha256 {lab.blob_sha256}")
        for name in MODES:
            p = lab.profile(name)
            print(f"{name}: {p.address} ({p.auth}) client conf {p.conf}")
        for name in sys.argv[1:]:
            ini = lab.start_initiator(name)
            cp = ini.initiate(check=False)
            print(f"stock initiator {name}: rc={cp.returncode} vip={ini.virtual_ip()}")
        print(lab.list_sas())
        if sys.stdin.isatty():
            input("press Enter to tear the lab down ")
