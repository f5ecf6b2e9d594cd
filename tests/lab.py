"""A network-namespace lab with stock OpenVPN servers, for interop tests and demos.

Topology (all addresses in the 198.18.0.0/15 benchmarking range)::

    ebs-cli-<id>                 ebs-srv-<id>                    ebs-web-<id>
    198.18.1.2/24 [to-srv] ---- [to-cli] 198.18.1.1/24
                                 openvpn servers (one per mode)
                                 tun<N> 198.19.N.1/24
                                 ip_forward=1
                                 [to-web] 198.18.2.1/24 ---- [to-srv] 198.18.2.2/24
                                                              http.server :80
                                                              route 198.19.0.0/16 via .2.1

IPv6 inside (issue 16): the server <-> web link also has 2001:2:0:2::1/64 (server,
forwarding IPv6) and 2001:2:0:2::2/64 (web, routing the VPN's IPv6 pools
2001:2:0:100::/56 back through the server); the web host serves HTTP and DNS on both
addresses.  Modes with ``ipv6_inside=True`` (indices 80-84) run ``server-ipv6
2001:2:0:1NN::/64`` and push ``route-ipv6 2001:2:0:2::/64`` and ``dhcp-option DNS6
2001:2:0:2::2``.

On demand (:meth:`Lab.enable_ipv6_link`, for modes with ``ipv6=True``) the client <->
server link also gets 2001:2:0:1::1/64 (server) and 2001:2:0:1::2/64 (client), and a
second dnsmasq on the server end answers the client's own resolver for the outer names
of :data:`OUTER_DNS_NAMES` (AAAA only, A and AAAA, A only).

The VPN client (erebus, or the stock ``openvpn`` for :mod:`tests.interop.test_lab`)
runs in ``ebs-cli-<id>``, which has no route anywhere but its own link: only traffic
carried by the tunnel can reach the web host.

Usage, from pytest (see ``tests/conftest.py``) or standalone::

    from tests.lab import Lab
    with Lab() as lab:
        server = lab.start_server("gcm")
        proc = lab.run_client([lab.python, "-m", "erebus", "--config", str(server.profile)])

Everything is created as root and torn down by :meth:`Lab.close` (also run at exit,
on Ctrl-C and on SIGTERM). Set ``EREBUS_KEEP_LAB=1`` to keep the lab directory (PKI,
configs, logs) for inspection.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

REPO_ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"
UNPRIVILEGED_USER = "nobody"

# Addresses. Everything lives in 198.18.0.0/15 (RFC 2544 benchmarking range).
SERVER_LINK_ADDR = "198.18.1.1"      # server end of the client <-> server link
CLIENT_LINK_ADDR = "198.18.1.2"      # client end
WEB_GATEWAY_ADDR = "198.18.2.1"      # server end of the server <-> web link
WEB_ADDR = "198.18.2.2"              # the host behind the VPN
LINK_PREFIXLEN = 24
SERVER_LINK_ADDR6 = "2001:2:0:1::1"  # the same link's IPv6 ends (enable_ipv6_link)
CLIENT_LINK_ADDR6 = "2001:2:0:1::2"
LINK_PREFIXLEN6 = 64
VPN_POOLS_NET = "198.19.0.0/16"      # the union of all VPN pools (198.19.N.0/24)
WEB_GATEWAY_ADDR6 = "2001:2:0:2::1"  # IPv6 inside: the server end of the web link
WEB_ADDR6 = "2001:2:0:2::2"          # the web host's IPv6 address (HTTP and DNS)
WEB_NET6 = "2001:2:0:2::/64"         # what ipv6_inside modes push as route-ipv6
VPN_POOLS_NET6 = "2001:2:0:100::/56" # the union of the IPv6 pools (2001:2:0:1NN::/64)
V6ONLY_NAME = "v6only.lab.test"      # a name with only an AAAA record (WEB_ADDR6)
BASE_PORT = 1194                     # mode N listens on BASE_PORT + N

BLOB_SIZE = 1 << 20                  # size of www/blob.bin
DNS_NAMES = {"web.lab.test": WEB_ADDR}   # what the lab's DNS server (dnsmasq) answers
DNS_NAMES6 = {"web.lab.test": WEB_ADDR6, V6ONLY_NAME: WEB_ADDR6}   # its AAAA records
# What the client's own resolver learns from the dnsmasq on the server end of the link
# (enable_ipv6_link): names of the VPN server itself, by family.
OUTER_DNS_NAMES = {"vpn6.lab.test": (SERVER_LINK_ADDR6,),
                   "vpn46.lab.test": (SERVER_LINK_ADDR, SERVER_LINK_ADDR6),
                   "vpn4.lab.test": (SERVER_LINK_ADDR,)}

_READY_LINE = "Initialization Sequence Completed"


class LabError(RuntimeError):
    """The lab could not be set up or a lab operation failed."""


# --------------------------------------------------------------------------- helpers

def tail(path: Path | str, lines: int = 40) -> str:
    """The last *lines* lines of a text file ("" if it does not exist)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 512 * lines))
            data = f.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def _run(argv: list[str], *, timeout: float = 30, check: bool = True,
         **kwargs) -> subprocess.CompletedProcess:
    """Run a setup command; raise :class:`LabError` with its output if it fails."""
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout}s: {' '.join(argv)}") from exc
    if check and cp.returncode != 0:
        raise LabError(f"command failed (rc={cp.returncode}): {' '.join(argv)}\n"
                       f"{cp.stdout}{cp.stderr}".rstrip())
    return cp


def _wait_until(predicate, *, timeout: float, interval: float = 0.05) -> bool:
    """Poll *predicate* until it returns true or *timeout* seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def wait_for_log(path: Path | str, needle: str, *, timeout: float,
                 process: subprocess.Popen | None = None, what: str = "process") -> None:
    """Wait until *needle* appears in the log file *path*.

    Fails early if *process* exits. Raises :class:`LabError` carrying the log's tail.
    """
    path = Path(path)
    def seen() -> bool:
        try:
            if needle in path.read_text(errors="replace"):
                return True
        except FileNotFoundError:
            pass
        if process is not None and process.poll() is not None:
            raise LabError(f"{what} exited with rc={process.returncode} before "
                           f"{needle!r}; {path} ends with:\n{tail(path)}")
        return False

    if not _wait_until(seen, timeout=timeout, interval=0.1):
        raise LabError(f"{what}: no {needle!r} within {timeout}s; {path} ends with:\n"
                       f"{tail(path)}")


class NsProcess(subprocess.Popen):
    """A process started by the lab: in its own session (process group), and with
    signals that reach the real command even through ``runuser``.

    ``runuser`` (used for commands run as ``nobody``) forks the command and waits for
    it; it ignores SIGINT and, on SIGTERM, forwards it but then sleeps 2 s before
    SIGKILLing the child. So for a wrapped command :meth:`send_signal` (and hence
    :meth:`terminate`) signals runuser's child directly: runuser then just exits with
    the command's status. :meth:`kill` SIGKILLs the whole process group.
    """

    wrapped = False      # set when argv goes through runuser

    def send_signal(self, sig: int) -> None:
        if self.poll() is not None:
            return
        for pid in self._signal_targets():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _signal_targets(self) -> list[int]:
        if self.wrapped:
            try:
                children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
            except OSError:
                children = []
            if children:
                return [int(c) for c in children]
        return [self.pid]


def send_signal(proc: subprocess.Popen, sig: int) -> None:
    """Deliver *sig* to the command *proc* runs (through runuser too: see :class:`NsProcess`)."""
    proc.send_signal(sig)


def stop_process(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """``terminate()``, wait up to *grace* seconds, then ``kill()``."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ethtool -K DEV gro|tso on|off, without ethtool: the legacy SIOCETHTOOL ioctl with
# ETHTOOL_SGRO / ETHTOOL_STSO (linux/ethtool.h) and a struct ethtool_value
_ETHTOOL = """
import array, fcntl, socket, struct, sys
dev, what, value = sys.argv[1], sys.argv[2], int(sys.argv[3])
cmd = {"gro": 0x2c, "tso": 0x1f}[what]
value_buf = array.array("I", [cmd, value])
fcntl.ioctl(socket.socket(), 0x8946, struct.pack("16sP", dev.encode(), value_buf.buffer_info()[0]))
"""


def _ns_argv(ns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *map(str, argv)]


def missing_prerequisites() -> list[str]:
    """Why the lab cannot run here (an empty list if it can)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the lab needs root (network namespaces, tun devices)")
    for tool in ("ip", "openvpn", "tc", "ss", "runuser", "curl", "dnsmasq"):
        if shutil.which(tool) is None:
            problems.append(f"{tool!r} is not installed")
    if not os.path.exists("/dev/net/tun"):
        problems.append("/dev/net/tun is missing")
    if not os.path.exists(SYSTEM_PYTHON):
        problems.append(f"{SYSTEM_PYTHON} is missing")
    return problems


# --------------------------------------------------------------------------- PKI

@dataclass(frozen=True)
class Pki:
    """PEM files of the lab's PKI, all in one directory.

    Identities (each has ``<name>.crt`` and ``<name>.key``): ``ca`` ("erebus-lab-ca"),
    ``server`` and ``client`` (signed by it), ``rogue-ca`` and ``rogue-server``
    (signed by the rogue CA: a server the client must refuse).
    """

    dir: Path

    def cert(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    @property
    def ca_cert(self) -> Path:
        return self.cert("ca")

    @classmethod
    def generate(cls, directory: Path) -> "Pki":
        """Create the CAs and leaf certificates (EC P-256) in *directory*."""
        from cryptography import x509
        from cryptography.x509.oid import ExtendedKeyUsageOID

        from tests.pki import ca_extensions, issue as issue_cert, key_usage

        pki = cls(directory)

        def issue(name: str, cn: str, issuer: tuple | None, extensions: list) -> tuple:
            return issue_cert(pki.cert(name), pki.key(name), cn, issuer, extensions)

        def ca_exts():
            return ca_extensions()

        def leaf_exts(eku, **usage):
            return [(x509.BasicConstraints(ca=False, path_length=None), True),
                    (key_usage(**usage), True),
                    (x509.ExtendedKeyUsage([eku]), False)]

        server_exts = leaf_exts(ExtendedKeyUsageOID.SERVER_AUTH,
                                digital_signature=True, key_encipherment=True)
        ca = issue("ca", "erebus-lab-ca", None, ca_exts())
        issue("server", "server", ca, server_exts)
        issue("client", "client", ca,
              leaf_exts(ExtendedKeyUsageOID.CLIENT_AUTH, digital_signature=True))
        rogue = issue("rogue-ca", "rogue-ca", None, ca_exts())
        issue("rogue-server", "rogue-server", rogue, server_exts)
        return pki


# --------------------------------------------------------------------------- modes

@dataclass(frozen=True)
class Mode:
    """How one lab OpenVPN server (and the matching client profile) is configured.

    ``index`` N gives the pool 198.19.N.0/24, the port ``BASE_PORT + N`` and the
    device ``tunN``; it must be unique among :data:`MODES`.

    ``server_lines`` / ``client_lines`` are extra config lines; they are formatted
    with ``str.format`` and may use ``{lab_dir}``, ``{static_key}`` (path of an OpenVPN
    static key, generated on first use with ``openvpn --genkey secret``) and
    ``{static_key_text}`` (its contents, for inline blocks in the client profile).
    For example a tls-crypt mode would be::

        Mode(3, server_lines=("tls-crypt {static_key}",),
             client_lines=("<tls-crypt>\\n{static_key_text}</tls-crypt>",))
    """

    index: int
    data_ciphers: str = "AES-256-GCM"
    server_lines: tuple[str, ...] = ()
    client_lines: tuple[str, ...] = ()
    proto: str = "udp"                 # "udp", "tcp" (udp6, tcp6 with ipv6): one word, both ends
    server_identity: str = "server"    # PKI identity the server presents
    # Static-key (pre-shared "secret") point-to-point mode: no TLS, no PKI, no pool;
    # the server is "ifconfig 198.19.N.1 198.19.N.2" and the client is 198.19.N.2.
    static_key_mode: bool = False
    # The server listens dual-stack on [::] (no 'local'; ``proto`` udp6 or tcp6) and
    # the profile's remote is its IPv6 link address: the lab enables the IPv6 link.
    ipv6: bool = False
    # IPv6 inside the tunnel: 'server-ipv6 2001:2:0:1NN::/64' (NN the index, 80-84),
    # route-ipv6 WEB_NET6 and dhcp-option DNS6 WEB_ADDR6 pushed; a static-key mode gets
    # 'ifconfig-ipv6 2001:2:0:1NN::1 ::2' (server) and '::2/64 ::1' (client) instead.
    ipv6_inside: bool = False

    @property
    def pool6(self) -> str | None:
        return f"2001:2:0:1{self.index:02d}::/64" if self.ipv6_inside else None


class _LineWithScript(str):
    """A config line that, when the lab formats it (at server start, once the lab dir
    exists), first writes an executable ``/bin/sh`` script into the lab dir; the
    line's ``{script}`` placeholder becomes the script's path."""

    def __new__(cls, line: str, name: str, body: str) -> "_LineWithScript":
        obj = super().__new__(cls, line)
        obj.script_name, obj.script_body = name, body
        return obj

    def format(self, *args, **kwargs) -> str:
        path = Path(kwargs["lab_dir"]) / self.script_name
        path.write_text(self.script_body)
        os.chmod(path, 0o755)
        return str(self).format(*args, script=path, **kwargs)


# auth-user-pass-verify ... via-file: $1 is a file with the username and the password,
# one a line. Accepts only alice / s3cret.
_CHECK_USER_SH = """#!/bin/sh
{ read -r user && read -r pass; } < "$1" && [ "$user" = alice ] && [ "$pass" = s3cret ]
"""


MODES: dict[str, Mode] = {
    # No encryption and no HMAC on the data channel (OpenVPN 2.6, found by experiment):
    # - "data-ciphers none": the client announces IV_CIPHERS=none and the server must
    #   have "none" in its own data-ciphers to pick it (else AUTH_FAILED, "no shared
    #   cipher"). A 2.6 client ignores a bare "cipher none" for negotiation.
    # - "data-ciphers-fallback none": for a client that sends no IV_CIPHERS/IV_NCP.
    # - "auth none" on BOTH ends: auth is not negotiated. Without it the server keeps
    #   HMAC-SHA1 on the null cipher; the session still comes up (PUSH_REPLY works),
    #   but every data packet fails with "packet HMAC authentication failed".
    "none": Mode(0, data_ciphers="none",
                 server_lines=("data-ciphers-fallback none", "auth none"),
                 client_lines=("cipher none", "auth none")),
    "gcm": Mode(1, data_ciphers="AES-256-GCM"),
    # The server's certificate comes from an unrelated CA: the client must refuse it.
    "rogue": Mode(2, data_ciphers="AES-256-GCM", server_identity="rogue-server"),
    # The server renegotiates (soft reset, new key id) every 4 seconds.
    "reneg": Mode(3, data_ciphers="AES-256-GCM", server_lines=("reneg-sec 4",)),
    # AES-256-CBC + HMAC-SHA256 with "comp-lzo no" framing (0xFA before every payload)
    # on both ends, also pushed. The client's data-ciphers/cipher AES-256-CBC makes NCP
    # pick CBC; "auth" is not negotiated, so both ends set SHA256. The stock client logs
    # "cipher 'AES-256-CBC', auth 'SHA256', ... compression: 'stub'" (no real compression).
    "cbc": Mode(6, data_ciphers="AES-256-CBC",
                server_lines=("auth SHA256", "comp-lzo no", 'push "comp-lzo no"'),
                client_lines=("cipher AES-256-CBC", "auth SHA256", "comp-lzo no")),
    # A server that really compresses what it sends: LZ4 "v2" framing (0x50 0x01 + LZ4
    # block for packets >= 100 bytes that shrink, raw packets otherwise). The server
    # needs "allow-compression yes" to compress; a 2.6 client refuses pushed compression
    # unless its profile says "allow-compression asym" (decompress, never compress).
    "lz4": Mode(7, data_ciphers="AES-256-GCM",
                server_lines=("compress lz4-v2", "allow-compression yes",
                              'push "compress lz4-v2"'),
                client_lines=("allow-compression asym",)),
    "chacha": Mode(11, data_ciphers="CHACHA20-POLY1305"),
    # OpenVPN over TCP (length-prefixed packets).
    "tcp": Mode(9, data_ciphers="AES-256-GCM", proto="tcp"),
    # Tells its clients RESTART when it stops (tests restart it to see them reconnect).
    "restart": Mode(10, data_ciphers="AES-256-GCM", server_lines=("explicit-exit-notify 1",)),
    # tls-auth: HMAC + replay id on every control packet; the server's key direction 0,
    # the client's 1.
    "tls-auth": Mode(4, data_ciphers="CHACHA20-POLY1305",
                     server_lines=("tls-auth {static_key} 0",),
                     client_lines=("key-direction 1",
                                   "<tls-auth>\n{static_key_text}</tls-auth>")),
    # tls-crypt (control channel encrypted) plus username/password: only alice / s3cret
    # pass the server's check script; the server pushes an auth-token.
    "tls-crypt": Mode(5, data_ciphers="AES-256-GCM",
                      server_lines=("tls-crypt {static_key}",
                                    "script-security 2",
                                    _LineWithScript("auth-user-pass-verify {script} via-file",
                                                    "check-user.sh", _CHECK_USER_SH),
                                    "auth-gen-token"),
                      client_lines=("<tls-crypt>\n{static_key_text}</tls-crypt>",
                                    "<auth-user-pass>\nalice\ns3cret\n</auth-user-pass>")),
    # Static-key mode (deprecated in 2.6, removed in 2.7): "secret <key> 0" on the server,
    # the key inline with "key-direction 1" in the client profile; AES-256-CBC + SHA256.
    "static": Mode(8, data_ciphers="AES-256-CBC", static_key_mode=True),
    # IPv6 inside the tunnel (issue 16; indices 80-84): server-ipv6 2001:2:0:1NN::/64.
    "v6": Mode(80, data_ciphers="AES-256-GCM", ipv6_inside=True),
    "v6-tcp": Mode(81, data_ciphers="AES-256-GCM", proto="tcp", ipv6_inside=True),
    "v6-static": Mode(82, data_ciphers="AES-256-CBC", static_key_mode=True,
                      ipv6_inside=True),
    "v6-block": Mode(83, data_ciphers="AES-256-GCM", ipv6_inside=True,
                     client_lines=("block-ipv6",)),
}


@dataclass
class OvpnServer:
    """A running stock OpenVPN server in the lab's server namespace."""

    mode: str
    proto: str
    host: str              # address the server listens on (198.18.1.1, or 2001:2:0:1::1)
    port: int
    pool: str              # e.g. "198.19.1.0/24"
    vpn_address: str       # the server's own address in the pool, e.g. "198.19.1.1"
    device: str            # tun device in the server namespace
    profile: Path          # client .ovpn profile (inline PKI) for this server
    config: Path
    log: Path
    pidfile: Path
    process: subprocess.Popen = field(repr=False)
    pool6: str | None = None   # IPv6 inside: e.g. "2001:2:0:180::/64"
    vpn_address6: str | None = None    # the server's IPv6 address in it ("...:180::1")

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log, lines)

    def describe(self, lines: int = 40) -> str:
        """A header plus the log's tail, for assertion messages."""
        return f"--- openvpn server {self.mode!r} ({self.log}) ---\n{self.log_tail(lines)}"


# --------------------------------------------------------------------------- unprivileged python

class UnprivilegedPython(NamedTuple):
    """An interpreter and a PYTHONPATH with which user ``nobody`` can import erebus."""

    python: str
    pythonpath: str


_unpriv_cache: dict[tuple[Path, Path], UnprivilegedPython] = {}


def _default_venv() -> Path:
    """The running interpreter's venv (under pytest), else ``<repo>/.venv``."""
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix)
    return REPO_ROOT / ".venv"


def _nobody_can_import(python: str, pythonpath: str) -> subprocess.CompletedProcess:
    return _run(["runuser", "-u", UNPRIVILEGED_USER, "--", "env", f"PYTHONPATH={pythonpath}",
                 python, "-c", "import erebus, cryptography"], check=False, cwd="/", timeout=60)


def _make_world_readable(root: Path) -> None:
    """``chmod -R a+rX root``."""
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, os.stat(dirpath).st_mode | 0o555)
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                mode = os.stat(p).st_mode
                os.chmod(p, mode | 0o444 | (0o111 if mode & 0o100 else 0))


def _build_unprivileged_copy(repo: Path) -> UnprivilegedPython:
    """Create (or refresh) a world-readable venv + erebus copy under /tmp."""
    tag = hashlib.sha256(str(repo).encode()).hexdigest()[:10]
    root = Path(f"/tmp/erebus-unpriv-{os.getuid()}-{tag}")
    with open(f"{root}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        root.mkdir(mode=0o755, exist_ok=True)
        st = root.stat()
        if st.st_uid != os.getuid() or st.st_mode & 0o022:
            raise LabError(f"{root} exists but is not ours or is group/world-writable")
        os.chmod(root, 0o755)

        venv = root / "venv"
        deps = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["dependencies"]
        stamp = root / "deps.txt"
        wanted = "\n".join(deps)
        if not (venv / "bin" / "python").exists() or \
                (stamp.read_text() if stamp.exists() else None) != wanted:
            _run([SYSTEM_PYTHON, "-m", "venv", "--clear", str(venv)], timeout=300)
            _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                  "--disable-pip-version-check", *deps], timeout=600)
            stamp.write_text(wanted)

        site = root / "site"
        staging = root / "site.new"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(repo / "erebus", staging / "erebus",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        shutil.rmtree(site, ignore_errors=True)
        staging.rename(site)
        _make_world_readable(root)
    return UnprivilegedPython(str(venv / "bin" / "python"), str(site))


def ensure_unprivileged_python(repo: Path = REPO_ROOT,
                               venv: Path | None = None) -> UnprivilegedPython:
    """Find a Python that user ``nobody`` can run to ``import erebus, cryptography``.

    First try the repo's venv (``venv``, by default the running interpreter's venv or
    ``<repo>/.venv``) with ``PYTHONPATH=<repo>``. If ``nobody`` cannot use it (e.g. the
    repo lives under a directory only root can traverse), build a world-readable copy
    in ``/tmp/erebus-unpriv-<uid>-<hash of repo path>``: a venv from
    ``/usr/bin/python3`` with the runtime dependencies of ``pyproject.toml``
    installed by pip, plus a fresh copy of the ``erebus`` package on PYTHONPATH.
    The result is cached for the process.
    """
    repo = Path(repo).resolve()
    venv = Path(venv) if venv is not None else _default_venv()
    key = (repo, venv)
    if key in _unpriv_cache:
        return _unpriv_cache[key]
    candidate = UnprivilegedPython(str(venv / "bin" / "python"), str(repo))
    if _nobody_can_import(*candidate).returncode != 0:
        candidate = _build_unprivileged_copy(repo)
        check = _nobody_can_import(*candidate)
        if check.returncode != 0:
            raise LabError(f"user {UNPRIVILEGED_USER} cannot import erebus with {candidate}:\n"
                           f"{check.stdout}{check.stderr}")
    _unpriv_cache[key] = candidate
    return candidate


# --------------------------------------------------------------------------- the lab

_lab_ids = itertools.count()
_sigterm_installed = False


def _install_sigterm_handler() -> None:
    """Turn SIGTERM into SystemExit so that ``with Lab()`` and atexit clean up."""
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        def on_sigterm(signum, frame):
            raise SystemExit(128 + signum)
        signal.signal(signal.SIGTERM, on_sigterm)
    _sigterm_installed = True


def write_web_root(www: Path, title: str, size: int) -> str:
    """A web root at ``www`` (created, world-readable): blob.bin (``size`` random bytes)
    and an index.html titled ``title``; the blob's sha256 (hex)."""
    www.mkdir(mode=0o755)
    blob = os.urandom(size)
    (www / "blob.bin").write_bytes(blob)
    (www / "index.html").write_text(
        f"<!doctype html><title>{title}</title><p>{title} web host</p>\n")
    return hashlib.sha256(blob).hexdigest()


class Lab:
    """The namespaces, PKI, web host and OpenVPN servers; a context manager.

    Attributes (after :meth:`start`): ``id``, ``ns_srv``, ``ns_cli``, ``ns_web``,
    ``dir`` (the lab's world-readable temp dir), ``pki`` (:class:`Pki`),
    ``blob_sha256`` / ``blob_size`` / ``blob_url`` (the 1 MiB random file served by
    the web host), ``web_url``, ``servers`` (mode -> :class:`OvpnServer`),
    ``loss_backend``; lazily: ``python`` / ``pythonpath`` (see
    :func:`ensure_unprivileged_python`).
    """

    server_link_addr = SERVER_LINK_ADDR
    client_link_addr = CLIENT_LINK_ADDR
    web_addr = WEB_ADDR
    web_addr6 = WEB_ADDR6
    web_url6 = f"http://[{WEB_ADDR6}]/"

    def __init__(self, *, keep: bool | None = None) -> None:
        n = next(_lab_ids)
        self.id = f"{os.getpid()}" + (f"-{n}" if n else "")
        self.ns_srv = f"ebs-srv-{self.id}"
        self.ns_cli = f"ebs-cli-{self.id}"
        self.ns_web = f"ebs-web-{self.id}"
        self.keep = os.environ.get("EREBUS_KEEP_LAB") == "1" if keep is None else keep
        self.dir: Path | None = None
        self.pki: Pki | None = None
        self.blob_sha256 = ""
        self.blob_size = BLOB_SIZE
        self.web_url = f"http://{WEB_ADDR}/"
        self.blob_url = f"{self.web_url}blob.bin"
        self.servers: dict[str, OvpnServer] = {}
        self.loss_backend: str | None = None     # "netem" or "bpf", once set_loss ran
        self._namespaces: list[str] = []
        self._procs: list[NsProcess] = []
        self._http: NsProcess | None = None
        self._static_key: Path | None = None
        self._outer_dns: NsProcess | None = None      # enable_ipv6_link's resolver
        self._netns_etc: Path | None = None           # /etc/netns/<ns_cli>, if ours
        self._closed = False

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> "Lab":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> "Lab":
        """Create the directory, PKI, namespaces and web host. Cleans up if it fails."""
        atexit.register(self.close)
        _install_sigterm_handler()
        try:
            self.dir = Path(tempfile.mkdtemp(prefix=f"erebus-lab-{self.id}-", dir="/tmp"))
            os.chmod(self.dir, 0o755)        # the client runs as nobody
            self.pki = Pki.generate(self.dir)
            self._create_network()
            self._add_web_link6()
            self._start_web()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop every process, delete the namespaces and (unless kept) the directory."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        for proc in self._procs:
            stop_process(proc)
        for ns in self._namespaces:
            self._kill_namespace_processes(ns)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        if self._netns_etc is not None:
            shutil.rmtree(self._netns_etc, ignore_errors=True)
        if self.dir is not None:
            if self.keep:
                print(f"[lab] kept {self.dir}", file=sys.stderr)
            else:
                shutil.rmtree(self.dir, ignore_errors=True)

    @staticmethod
    def _kill_namespace_processes(ns: str) -> None:
        """Kill whatever still runs in *ns* (e.g. children the lab did not track)."""
        def pids() -> list[int]:
            cp = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            return [int(p) for p in cp.stdout.split()]

        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            if _wait_until(lambda: not pids(), timeout=3):
                return

    # ----------------------------------------------------------------- network

    def _ip(self, ns: str, *args: str) -> None:
        _run(["ip", "-n", ns, *args])

    def _create_network(self) -> None:
        self._build_network(server_addr=SERVER_LINK_ADDR, client_addr=CLIENT_LINK_ADDR,
                            web_gateway=WEB_GATEWAY_ADDR, web_addr=WEB_ADDR,
                            pools=VPN_POOLS_NET)

    def _build_network(self, *, server_addr: str, client_addr: str, web_gateway: str,
                       web_addr: str, pools: str, disable_ipv6: bool = False) -> None:
        """Every lab's shape: client <-> server (the VPN peer) <-> web host, /24 veth
        links (devices to-cli / to-srv / to-web), the web host routing the VPN pools back
        through the server, which forwards."""
        for ns in (self.ns_srv, self.ns_cli, self.ns_web):
            _run(["ip", "netns", "add", ns])
            self._namespaces.append(ns)
            self._ip(ns, "link", "set", "lo", "up")
            if disable_ipv6:
                for scope in ("all", "default"):
                    _run(_ns_argv(ns, ["sysctl", "-qw",
                                       f"net.ipv6.conf.{scope}.disable_ipv6=1"]))
        links = [  # (ns, device, peer ns, peer device, address, peer address)
            (self.ns_srv, "to-cli", self.ns_cli, "to-srv", server_addr, client_addr),
            (self.ns_srv, "to-web", self.ns_web, "to-srv", web_gateway, web_addr),
        ]
        for ns, dev, peer_ns, peer_dev, addr, peer_addr in links:
            self._ip(ns, "link", "add", "name", dev, "type", "veth",
                     "peer", "name", peer_dev, "netns", peer_ns)
            for n, d, a in ((ns, dev, addr), (peer_ns, peer_dev, peer_addr)):
                self._ip(n, "addr", "add", f"{a}/{LINK_PREFIXLEN}", "dev", d)
                self._ip(n, "link", "set", d, "up")
        self._ip(self.ns_web, "route", "add", pools, "via", web_gateway)
        _run(_ns_argv(self.ns_srv, ["sysctl", "-qw", "net.ipv4.ip_forward=1"]))

    def receive_like_a_nic(self) -> None:
        """Let the client's link coalesce UDP trains as a NIC with GRO does (what
        UDP_GRO sockets need), for bench/run.py --gro.  A veth hands every packet to
        its receiver in the sender's own syscall, one at a time, so nothing is ever
        coalesced; with GRO on the client's end, threaded NAPI (packets queue up while
        the poller waits for a CPU, like interrupt coalescing) and TSO off on the
        server's end (veth only takes a local sender's UDP through GRO then), a
        UDP_GRO socket gets trains and every other socket the packets as before."""
        _run(_ns_argv(self.ns_cli, [SYSTEM_PYTHON, "-c", _ETHTOOL, "to-srv", "gro", "1"]))
        _run(_ns_argv(self.ns_cli, ["sh", "-c", "echo 1 > /sys/class/net/to-srv/threaded"]))
        _run(_ns_argv(self.ns_srv, [SYSTEM_PYTHON, "-c", _ETHTOOL, "to-cli", "tso", "0"]))

    def _add_web_link6(self) -> None:
        """IPv6 inside: WEB_GATEWAY_ADDR6 / WEB_ADDR6 on the server <-> web link
        (``nodad``: usable at once), IPv6 forwarding in the server, the IPv6 pools routed
        back from the web host."""
        for ns, dev, addr in ((self.ns_srv, "to-web", WEB_GATEWAY_ADDR6),
                              (self.ns_web, "to-srv", WEB_ADDR6)):
            self._ip(ns, "addr", "add", f"{addr}/64", "dev", dev, "nodad")
        self._ip(self.ns_web, "-6", "route", "add", VPN_POOLS_NET6, "via", WEB_GATEWAY_ADDR6)
        _run(_ns_argv(self.ns_srv, ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]))

    def _write_web_root(self, title: str, size: int = BLOB_SIZE) -> Path:
        """``<lab>/www`` for the web host: blob.bin (``size`` random bytes, its digest in
        ``self.blob_sha256``) and an index.html titled ``title``."""
        www = self.dir / "www"
        self.blob_sha256 = write_web_root(www, title, size)
        return www

    def _start_web(self) -> None:
        www = self._write_web_root("erebus lab")
        self._http = self.spawn_ns(
            self.ns_web, [SYSTEM_PYTHON, "-m", "http.server", "80", "--bind", WEB_ADDR,
                          "--directory", str(www)],
            output=self.dir / "http.log")

        def listening() -> bool:
            if self._http.poll() is not None:
                raise LabError(f"http.server exited:\n{tail(self.dir / 'http.log')}")
            out = _run(_ns_argv(self.ns_web, ["ss", "-Htln"])).stdout
            return f"{WEB_ADDR}:80 " in out
        if not _wait_until(listening, timeout=10, interval=0.1):
            raise LabError(f"http.server not listening:\n{tail(self.dir / 'http.log')}")
        # the same files over IPv6 (IPv6 inside), a second server on WEB_ADDR6
        http6 = self.spawn_ns(
            self.ns_web, [SYSTEM_PYTHON, "-m", "http.server", "80", "--bind", WEB_ADDR6,
                          "--directory", str(www)], output=self.dir / "http6.log")

        def listening6() -> bool:
            if http6.poll() is not None:
                raise LabError(f"http.server (IPv6) exited:\n{tail(self.dir / 'http6.log')}")
            return f"[{WEB_ADDR6}]:80 " in _run(_ns_argv(self.ns_web, ["ss", "-Htln"])).stdout
        if not _wait_until(listening6, timeout=10, interval=0.1):
            raise LabError(f"http.server (IPv6) not listening:\n{tail(self.dir / 'http6.log')}")
        self._start_dns()

    def _start_dns(self) -> None:
        """dnsmasq on the web host (WEB_ADDR and WEB_ADDR6): the DNS server the OpenVPN
        servers push.  It knows the lab's names (DNS_NAMES, and their AAAA records
        DNS_NAMES6: web.lab.test has both, V6ONLY_NAME only an AAAA) and nothing else (no
        upstream, no /etc/hosts)."""
        self._dns = self._dnsmasq(self.ns_web, (WEB_ADDR, WEB_ADDR6), "dnsmasq",
                                  [f"--address=/{name}/{addr}"
                                   for name, addr in DNS_NAMES.items()]
                                  + [f"--address=/{name}/{addr}" if name in DNS_NAMES
                                     else f"--host-record={name},{addr}"
                                     for name, addr in DNS_NAMES6.items()]
                                  # the AAAA-only name's A query: NODATA, as a real zone
                                  + [f"--local=/{name}/" for name in DNS_NAMES6
                                     if name not in DNS_NAMES])

    def _dnsmasq(self, ns: str, listen: tuple[str, ...], name: str,
                 records: list[str]) -> NsProcess:
        """A dnsmasq answering only ``records`` (no upstream, no /etc/hosts) on
        ``listen`` port 53 in ``ns``, logging its queries to <lab>/<name>.log."""
        argv = ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
                "--bind-interfaces", *(f"--listen-address={a}" for a in listen),
                "--port=53", "--user=root", "--group=root",
                f"--pid-file={self.dir / (name + '.pid')}", "--log-queries",
                "--log-facility=-", *records]
        log = self.dir / f"{name}.log"
        proc = self.spawn_ns(ns, argv, output=log)
        want = [f"[{a}]:53 " if ":" in a else f"{a}:53 " for a in listen]

        def listening() -> bool:
            if proc.poll() is not None:
                raise LabError(f"{name} exited:\n{tail(log)}")
            out = _run(_ns_argv(ns, ["ss", "-Huln"])).stdout
            return all(w in out for w in want)
        if not _wait_until(listening, timeout=10, interval=0.1):
            raise LabError(f"{name} not listening:\n{tail(log)}")
        return proc

    def enable_ipv6_link(self) -> None:
        """Give the client <-> server link its IPv6 addresses (SERVER_LINK_ADDR6,
        CLIENT_LINK_ADDR6; ``nodad``: usable at once) and the client a resolver: a
        dnsmasq on the server end (198.18.1.1 and 2001:2:0:1::1) that knows only
        OUTER_DNS_NAMES, named in /etc/netns/<client ns>/resolv.conf (which ``ip netns
        exec`` mounts over /etc/resolv.conf; removed at close).  Idempotent; other
        tests see a link with two more addresses and nothing else changed."""
        if self._outer_dns is not None:
            return
        for ns, dev, addr in ((self.ns_srv, "to-cli", SERVER_LINK_ADDR6),
                              (self.ns_cli, "to-srv", CLIENT_LINK_ADDR6)):
            self._ip(ns, "addr", "add", f"{addr}/{LINK_PREFIXLEN6}", "dev", dev, "nodad")
        # --local: the authority for lab.test, so a name without an address of the
        # family asked is NODATA and an unknown one NXDOMAIN, as a real zone answers
        records = ["--local=/lab.test/", *(f"--host-record={name},{','.join(addrs)}"
                                           for name, addrs in OUTER_DNS_NAMES.items())]
        self._outer_dns = self._dnsmasq(self.ns_srv, (SERVER_LINK_ADDR, SERVER_LINK_ADDR6),
                                        "outer-dnsmasq", records)
        etc = Path("/etc/netns") / self.ns_cli
        etc.mkdir(parents=True, exist_ok=True)
        self._netns_etc = etc
        (etc / "resolv.conf").write_text(f"nameserver {SERVER_LINK_ADDR}\n"
                                         "options timeout:2 attempts:2\n")
        os.chmod(etc / "resolv.conf", 0o644)

    # ----------------------------------------------------------------- packet loss

    @property
    def _loss_links(self) -> tuple[tuple[str, str], ...]:
        """(namespace, device) of both ends of the client <-> server link."""
        return (self.ns_srv, "to-cli"), (self.ns_cli, "to-srv")

    def set_loss(self, percent: float) -> None:
        """Drop *percent* % of packets in each direction of the client <-> server link.

        Uses ``tc ... netem loss`` on both veth ends when the kernel has netem. Kernels
        without it (like this project's Firecracker VMs) get an equivalent: an htb root
        whose second class ends in ``pfifo limit 0`` (drops all) and a classic-BPF
        ``cls_bpf`` filter sending IPv4 packets there when a random u32 is below the
        threshold. ``set_loss(0)`` removes the qdiscs.
        """
        if not 0 <= percent <= 100:
            raise ValueError(f"loss percent out of range: {percent}")
        for ns, dev in self._loss_links:
            subprocess.run(_ns_argv(ns, ["tc", "qdisc", "del", "dev", dev, "root"]),
                           capture_output=True)
            if percent:
                self._apply_loss(ns, dev, percent)

    def clear_loss(self) -> None:
        self.set_loss(0)

    def _apply_loss(self, ns: str, dev: str, percent: float) -> None:
        tc = ["ip", "netns", "exec", ns, "tc"]
        if self.loss_backend in (None, "netem"):
            cp = _run([*tc, "qdisc", "replace", "dev", dev, "root", "netem", "loss",
                       f"{percent}%"], check=False)
            if cp.returncode == 0:
                self.loss_backend = "netem"
                return
            if self.loss_backend == "netem" or "unknown" not in cp.stderr.lower():
                raise LabError(f"tc netem failed on {ns}/{dev}: {cp.stderr}")
            self.loss_backend = "bpf"
        threshold = min(int(percent / 100 * 2**32), 2**32 - 1)
        # cBPF: A = random u32 (SKF_AD_OFF + SKF_AD_RANDOM); A >= threshold ? no match : match
        bytecode = f"4,32 0 0 {2**32 - 0x1000 + 56},53 1 0 {threshold},6 0 0 {2**32 - 1},6 0 0 0"
        for args in (
            ["qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "1"],
            ["class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb",
             "rate", "10gbit", "quantum", "1514"],
            ["class", "add", "dev", dev, "parent", "1:", "classid", "1:2", "htb",
             "rate", "10gbit", "quantum", "1514"],
            ["qdisc", "add", "dev", dev, "parent", "1:2", "handle", "20:", "pfifo", "limit", "0"],
            ["filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1",
             "bpf", "bytecode", bytecode, "classid", "1:2"],
        ):
            _run([*tc, *args])

    # ----------------------------------------------------------------- running things

    def _command(self, ns: str, argv: list[str], user: str | None,
                 env: dict[str, str] | None) -> list[str]:
        """``ip netns exec ns [runuser -u user --] [env K=V ...] argv``.

        As a non-root *user*, PYTHONPATH is set so that ``[lab.python, "-m", "erebus"]``
        works.
        """
        env = dict(env or {})
        prefix: list[str] = []
        if user is not None:
            env = {"PYTHONPATH": self.pythonpath, "PYTHONDONTWRITEBYTECODE": "1", **env}
            prefix = ["runuser", "-u", user, "--"]
        if env:
            prefix += ["env", *(f"{k}={v}" for k, v in env.items())]
        return _ns_argv(ns, [*prefix, *argv])

    def run_ns(self, ns: str, argv: list[str], *, user: str | None = None,
               env: dict[str, str] | None = None, timeout: float = 60, check: bool = False,
               text: bool = True, input=None, **popen_kwargs) -> subprocess.CompletedProcess:
        """Run *argv* in namespace *ns* (as root, or as *user*) and capture its output.

        Like ``subprocess.run``; on timeout the command is stopped (:func:`stop_process`:
        TERM, then KILL of its process group) and ``TimeoutExpired`` raised.
        """
        popen_kwargs["stdin"] = subprocess.PIPE if input is not None else subprocess.DEVNULL
        with self._popen(ns, argv, user, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=text, **popen_kwargs) as proc:
            try:
                out, err = proc.communicate(input, timeout=timeout)
            except subprocess.TimeoutExpired:
                stop_process(proc, grace=1.0)
                proc.communicate()
                raise
        cp = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        if check:
            cp.check_returncode()
        return cp

    def spawn_ns(self, ns: str, argv: list[str], *, user: str | None = None,
                 env: dict[str, str] | None = None, output: Path | None = None,
                 **popen_kwargs) -> NsProcess:
        """Start *argv* in namespace *ns* (as root, or as *user*); stopped on close.

        *output*: a file that receives stdout and stderr; otherwise pass your own
        ``stdout=``/``stderr=`` (and read pipes, or a chatty process blocks).
        """
        popen_kwargs.setdefault("stdin", subprocess.DEVNULL)
        if output is None:
            proc = self._popen(ns, argv, user, env, **popen_kwargs)
        else:
            with open(output, "wb") as out:
                proc = self._popen(ns, argv, user, env, stdout=out, stderr=subprocess.STDOUT,
                                   **popen_kwargs)
        self._procs.append(proc)
        return proc

    def _popen(self, ns: str, argv: list[str], user: str | None,
               env: dict[str, str] | None, **popen_kwargs) -> NsProcess:
        proc = NsProcess(self._command(ns, argv, user, env), start_new_session=True,
                         **popen_kwargs)
        proc.wrapped = user is not None
        return proc

    def run_client(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        """:meth:`run_ns` in the client namespace as ``nobody``, cwd the lab dir.

        E.g. ``lab.run_client([lab.python, "-m", "erebus", ...], timeout=30)``.
        """
        kwargs.setdefault("cwd", self.dir)
        return self.run_ns(self.ns_cli, argv, user=UNPRIVILEGED_USER, **kwargs)

    def spawn_client(self, argv: list[str], **kwargs) -> NsProcess:
        """:meth:`spawn_ns` in the client namespace as ``nobody``, cwd the lab dir.

        ``proc.terminate()`` / ``proc.send_signal(SIGINT)`` reach the command itself
        (see :class:`NsProcess`).
        """
        kwargs.setdefault("cwd", self.dir)
        return self.spawn_ns(self.ns_cli, argv, user=UNPRIVILEGED_USER, **kwargs)

    @property
    def python(self) -> str:
        """Interpreter for ``[lab.python, "-m", "erebus", ...]`` run as ``nobody``."""
        return ensure_unprivileged_python().python

    @property
    def pythonpath(self) -> str:
        return ensure_unprivileged_python().pythonpath

    def ping(self, ns: str, address: str, *, count: int = 3, timeout: float = 2.0) -> int:
        """ICMP echo from *ns* to *address*; the number of replies (no ping binary needed)."""
        cp = self.run_ns(ns, [sys.executable, "-c", _PING_SCRIPT, address, str(count),
                              str(timeout)], timeout=count * timeout + 10, check=True)
        return int(cp.stdout.strip())

    # ----------------------------------------------------------------- openvpn servers

    def start_server(self, mode: str, *, timeout: float = 20) -> OvpnServer:
        """Start (once) the stock OpenVPN server for *mode*; see :data:`MODES`."""
        if mode in self.servers:
            return self.servers[mode]
        m = MODES[mode]
        n = m.index
        twins = sorted(name for name, other in MODES.items()
                       if other.index == n and name != mode)
        if twins:      # one port, pool and tun per index: a second mode would steal them
            raise LabError(f"lab mode {mode!r} has index {n}, as {', '.join(twins)} does")
        port = BASE_PORT + n
        if m.ipv6:
            self.enable_ipv6_link()
        files = {ext: self.dir / f"server-{mode}.{ext}" for ext in ("conf", "log", "pid", "out")}
        fmt = self._format_vars(m)
        ident = m.server_identity
        server_conf = [
            f"server 198.19.{n}.0 255.255.255.0",
            "topology subnet",
            f"dev tun{n}",
            "dev-type tun",
            f"proto {m.proto}",
            *(() if m.ipv6 else (f"local {SERVER_LINK_ADDR}",)),    # ipv6: [::], both
            f"port {port}",
            f"ca {self.pki.ca_cert}",
            f"cert {self.pki.cert(ident)}",
            f"key {self.pki.key(ident)}",
            "dh none",
            "keepalive 10 60",
            f"push \"route {WEB_ADDR.rsplit('.', 1)[0]}.0 255.255.255.0\"",
            f"push \"dhcp-option DNS {WEB_ADDR}\"",
            *((f"server-ipv6 {m.pool6}", f"push \"route-ipv6 {WEB_NET6}\"",
               f"push \"dhcp-option DNS6 {WEB_ADDR6}\"") if m.ipv6_inside else ()),
            f"data-ciphers {m.data_ciphers}",
            "disable-dco",
            "verb 4",
            f"log {files['log']}",
            f"writepid {files['pid']}",
            *(line.format(**fmt) for line in m.server_lines),
        ]
        if m.static_key_mode:
            server_conf = self._static_server_conf(m, port, files, fmt)
        files["conf"].write_text("\n".join(server_conf) + "\n")
        profile = self.dir / f"client-{mode}.ovpn"
        profile.write_text(self._client_profile(m, port, fmt))

        proc = self.spawn_ns(self.ns_srv, ["openvpn", "--config", str(files["conf"])],
                             output=files["out"])
        server = OvpnServer(mode=mode, proto=m.proto,
                            host=SERVER_LINK_ADDR6 if m.ipv6 else SERVER_LINK_ADDR, port=port,
                            pool=f"198.19.{n}.0/24", vpn_address=f"198.19.{n}.1",
                            device=f"tun{n}", profile=profile, config=files["conf"],
                            log=files["log"], pidfile=files["pid"], process=proc,
                            pool6=m.pool6,
                            vpn_address6=m.pool6.replace("::/64", "::1") if m.pool6 else None)
        try:
            # A static-key p2p server only completes its initialisation once a peer
            # has sent an authentic packet: ready once its UDP socket is bound.
            ready = "link local (bound)" if m.static_key_mode else _READY_LINE
            wait_for_log(files["log"], ready, timeout=timeout, process=proc,
                         what=f"openvpn server {mode!r}")
        except LabError as exc:
            stop_process(proc)
            raise LabError(f"{exc}\n{tail(files['out'])}".rstrip()) from None
        self.servers[mode] = server
        return server

    def stop_server(self, mode: str) -> None:
        server = self.servers.pop(mode, None)
        if server is not None:
            stop_process(server.process)

    def _static_server_conf(self, m: Mode, port: int, files: dict[str, Path],
                            fmt: dict[str, str]) -> list[str]:
        """A static-key (``secret``) point-to-point server: no PKI, no pool, no push.

        The client (198.19.N.2) reaches the web host through the server's forwarding;
        the web host already routes 198.19.0.0/16 back, and the kernel's peer route on
        tunN carries the replies to 198.19.N.2.
        """
        n = m.index
        return [
            f"dev tun{n}",
            "dev-type tun",
            f"proto {m.proto}",
            f"local {SERVER_LINK_ADDR}",
            f"port {port}",
            f"ifconfig 198.19.{n}.1 198.19.{n}.2",
            *((f"ifconfig-ipv6 {m.pool6.replace('::/64', '::1')} "
               f"{m.pool6.replace('::/64', '::2')}",) if m.ipv6_inside else ()),
            f"secret {self.static_key()} 0",
            f"cipher {m.data_ciphers}",
            "auth SHA256",
            "keepalive 10 60",
            "disable-dco",
            "verb 4",
            f"log {files['log']}",
            f"writepid {files['pid']}",
            *(line.format(**fmt) for line in m.server_lines),
        ]

    def _static_client_profile(self, m: Mode, port: int, fmt: dict[str, str]) -> str:
        n = m.index
        lines = [
            "dev tun",
            f"proto {m.proto}",
            f"remote {SERVER_LINK_ADDR} {port}",
            "nobind",
            f"ifconfig 198.19.{n}.2 198.19.{n}.1",
            f"<secret>\n{self.static_key().read_text().strip()}\n</secret>",
            "key-direction 1",
            f"cipher {m.data_ciphers}",
            "auth SHA256",
            "keepalive 10 60",
            f"route {WEB_ADDR.rsplit('.', 1)[0]}.0 255.255.255.0",
            *((f"ifconfig-ipv6 {m.pool6.replace('::/64', '::2/64')} "
               f"{m.pool6.replace('::/64', '::1')}", f"route-ipv6 {WEB_NET6}")
              if m.ipv6_inside else ()),
            "verb 3",
            *(line.format(**fmt) for line in m.client_lines),
        ]
        return "\n".join(lines) + "\n"

    def _client_profile(self, m: Mode, port: int, fmt: dict[str, str]) -> str:
        if m.static_key_mode:
            return self._static_client_profile(m, port, fmt)

        def inline(tag: str, path: Path) -> str:
            return f"<{tag}>\n{path.read_text().strip()}\n</{tag}>"
        lines = [
            "client",
            "dev tun",
            f"proto {m.proto}",
            f"remote {SERVER_LINK_ADDR6 if m.ipv6 else SERVER_LINK_ADDR} {port}",
            "nobind",
            "remote-cert-tls server",
            "verb 3",
            f"data-ciphers {m.data_ciphers}",
            *(line.format(**fmt) for line in m.client_lines),
            inline("ca", self.pki.ca_cert),
            inline("cert", self.pki.cert("client")),
            inline("key", self.pki.key("client")),
        ]
        return "\n".join(lines) + "\n"

    def _format_vars(self, m: Mode) -> dict[str, str]:
        """Values for the ``{placeholders}`` of a mode's extra lines."""
        fmt = {"lab_dir": str(self.dir)}
        if any("{static_key" in line for line in (*m.server_lines, *m.client_lines)):
            key = self.static_key()
            fmt.update(static_key=str(key), static_key_text=key.read_text())
        return fmt

    def static_key(self) -> Path:
        """An OpenVPN static key (tls-auth / tls-crypt / secret), generated once."""
        if self._static_key is None:
            path = self.dir / "static.key"
            _run(["openvpn", "--genkey", "secret", str(path)])
            os.chmod(path, 0o644)
            self._static_key = path
        return self._static_key

    # ----------------------------------------------------------------- diagnostics

    def logs_tail(self, lines: int = 40) -> str:
        """Tails of every server log and the web host's log, for failure reports."""
        parts = [s.describe(lines) for s in self.servers.values()]
        if self.dir is not None:
            parts.append(f"--- http.server ---\n{tail(self.dir / 'http.log', lines)}")
        return "\n".join(parts)


_PING_SCRIPT = r"""
import os, socket, struct, sys, time
dst, count, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])

def checksum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF

sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
ident, replies = os.getpid() & 0xFFFF, 0
for seq in range(count):
    payload = b"erebus-lab-ping!"
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    header = struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, seq)
    sock.sendto(header + payload, (dst, 0))
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data, (src, _) = sock.recvfrom(2048)
        except socket.timeout:
            break
        ihl = (data[0] & 0x0F) * 4
        kind, _, _, rid, rseq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
        if kind == 0 and rid == ident and rseq == seq and src == dst:
            replies += 1
            break
print(replies)
"""


if __name__ == "__main__":        # a quick manual check: python -m tests.lab [mode ...]
    with Lab() as lab:
        for name in sys.argv[1:] or ["gcm"]:
            s = lab.start_server(name)
            print(f"{name}: {s.host}:{s.port}/{s.proto} pool {s.pool} profile {s.profile}")
        print(f"lab dir {lab.dir}; blob sha256 {lab.blob_sha256}")
        if sys.stdin.isatty():
            input("press Enter to tear the lab down ")
