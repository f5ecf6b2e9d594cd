"""``erebus run``'s side of the namespace: preflight, the helper process, its plan.

:func:`preflight` explains, in one line each, the host settings that forbid an
unprivileged user namespace.  :class:`Namespace` starts the helper
(:mod:`erebus.runtime.nshelper`) as a fresh single-threaded interpreter, receives the
TUN fd, sends it the configuration :func:`plan` derives from the tunnel's
:class:`TunnelInfo`, then the command, and waits for its exit status.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import socket
import sys

import erebus

from ..errors import ErebusError
from ..session import TunnelInfo

__all__ = ["NamespaceError", "preflight", "plan", "Namespace", "PROXY_HINT"]

PROXY_HINT = ("without it, use the proxy modes: erebus up PROFILE --socks 1080 "
              "--http-proxy 3128 (or -L)")
MAX_MESSAGE = 1 << 16
_SYSCTL = "/proc/sys/"


class NamespaceError(ErebusError):
    """The host does not let this user make the namespace ``erebus run`` needs."""


def _sysctl(name: str) -> str | None:
    try:
        with open(_SYSCTL + name.replace(".", "/")) as f:
            return f.read().strip()
    except OSError:
        return None


def preflight() -> None:
    """NamespaceError naming the setting when the host forbids what erebus run needs."""
    if _sysctl("kernel.unprivileged_userns_clone") == "0" and os.geteuid() != 0:
        raise NamespaceError("erebus run: this kernel forbids unprivileged user namespaces "
                             "(kernel.unprivileged_userns_clone = 0; as root: sysctl -w "
                             f"kernel.unprivileged_userns_clone=1); {PROXY_HINT}")
    if _sysctl("user.max_user_namespaces") == "0":
        raise NamespaceError("erebus run: user namespaces are disabled "
                             "(user.max_user_namespaces = 0; as root: sysctl -w "
                             f"user.max_user_namespaces=15000); {PROXY_HINT}")
    if not os.path.exists("/dev/net/tun"):
        raise NamespaceError("erebus run: there is no /dev/net/tun (as root: modprobe tun; "
                             "in a container, pass the device: --device /dev/net/tun); "
                             f"{PROXY_HINT}")
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        raise NamespaceError("erebus run: /dev/net/tun is not readable and writable by "
                             f"this user (it should be mode 0666); {PROXY_HINT}")


def _explain(step: str, message: str) -> str:
    """The helper's failure as one line, with what the host probably forbids."""
    hint = ""
    if step == "unshare":
        if "EPERM" in message:
            hint = ("; in a container, its seccomp profile or missing privileges forbid "
                    "unshare (Docker: --security-opt seccomp=unconfined)")
        elif "EINVAL" in message:
            hint = "; the helper was not single-threaded (a bug: please report it)"
        elif "ENOSPC" in message or "EUSERS" in message:
            hint = "; the user namespace limit is reached (user.max_user_namespaces)"
    elif step == "uid_map" and _sysctl("kernel.apparmor_restrict_unprivileged_userns") == "1":
        hint = ("; AppArmor restricts unprivileged user namespaces "
                "(kernel.apparmor_restrict_unprivileged_userns = 1): as root, allow it with "
                "an AppArmor profile for this python with 'userns,', or sysctl -w "
                "kernel.apparmor_restrict_unprivileged_userns=0")
    elif step == "tun":
        hint = "; the namespace cannot create a TUN device"
    return f"erebus run: {message}{hint}; {PROXY_HINT}"


def _prefixlen(netmask: str | None) -> int:
    if not netmask:
        return 32
    try:
        return ipaddress.IPv4Network(f"0.0.0.0/{netmask}").prefixlen
    except ValueError:
        return 32


def plan(info: TunnelInfo, *, everything: bool = False) -> dict:
    """What the helper configures: the tunnel's addresses, its MTU, and routes: the
    pushed ones (plus the peer's end and the DNS servers when outside them), or every
    destination with ``everything`` or a pushed redirect-gateway.  TCP inside sizes
    its segments by the routes' MTU metric: the tunnel's MSS cap (mssfix) plus 40."""
    everything = everything or info.redirect_gateway
    # with an MSS cap, the addresses' own networks need the MTU metric too: the
    # addresses go on as hosts and their networks as routes of ours
    mtu = min(info.mtu, info.mss + 40) if info.mss else None
    addresses: list[tuple[str, int]] = []
    wanted: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    on_link: dict[int, list] = {4: [], 6: []}
    for address, plen in ((info.virtual_ip, _prefixlen(info.netmask)),
                          (info.virtual_ip6, 128 if info.prefix6 is None else info.prefix6)):
        if not address:
            continue
        net = ipaddress.ip_network(f"{address}/{plen}", strict=False)
        if mtu and plen < net.max_prefixlen:
            addresses.append((address, net.max_prefixlen))
            wanted.append(net)
        else:
            addresses.append((address, plen))
            on_link[net.version].append(net)
    has4, has6 = bool(info.virtual_ip), bool(info.virtual_ip6)
    if everything:
        wanted += [ipaddress.ip_network("0.0.0.0/0")] if has4 else []
        wanted += [ipaddress.ip_network("::/0")] if has6 else []
    for cidr in [*info.routes, *info.routes6]:
        try:
            wanted.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            continue
    for host in (info.gateway, info.gateway6, *info.dns):
        try:
            wanted.append(ipaddress.ip_network(ipaddress.ip_address(host)))
        except (TypeError, ValueError):
            continue
    routes = []
    chosen: dict[int, list] = {4: [], 6: []}
    # widest first: a network (or a DNS server, the gateway) inside one routed already
    # through the same device needs no route of its own
    for net in sorted(wanted, key=lambda n: (n.version, n.prefixlen)):
        if net.version == 4 and not has4 or net.version == 6 and not has6:
            continue
        if any(net.subnet_of(n) for n in [*on_link[net.version], *chosen[net.version]]):
            continue
        chosen[net.version].append(net)
        route = {"dst": str(net.network_address), "prefixlen": net.prefixlen}
        if mtu:
            route["mtu"] = mtu
        routes.append(route)
    dns = [d for d in info.dns if (":" in d and has6) or (":" not in d and has4)]
    return {"addresses": addresses, "mtu": info.mtu, "routes": routes, "dns": dns,
            "search": list(info.domains)}


class Namespace:
    """The helper process and its socket, one step at a time."""

    def __init__(self) -> None:
        self.process: asyncio.subprocess.Process | None = None
        self._sock: socket.socket | None = None
        self.tun_fd: int | None = None
        self.device = ""

    async def start(self) -> int:
        """Make the namespace and its TUN device; the TUN fd (CLOEXEC, non-blocking)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # the helper imports erebus from where this process did, whatever sys.path
            # games brought it here
            root = os.path.dirname(os.path.dirname(os.path.abspath(erebus.__file__)))
            path = os.environ.get("PYTHONPATH")
            env = dict(os.environ, EREBUS_PARENT=str(os.getpid()),
                       PYTHONPATH=root + (os.pathsep + path if path else ""))
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "erebus.runtime.nshelper", str(theirs.fileno()),
                pass_fds=(theirs.fileno(),), env=env, stdin=None, stdout=None,
                stderr=None, start_new_session=False)
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        reply, fds = await self._receive()
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise NamespaceError("erebus run: the helper sent no TUN device")
        self.device = reply.get("device", "")
        self.tun_fd = fds[0]
        os.set_blocking(self.tun_fd, False)
        return self.tun_fd

    async def configure(self, config: dict) -> list[str]:
        """Addresses, routes, DNS; the refusals that were not fatal (a route)."""
        reply = await self._request({"configure": config})
        return [str(w) for w in reply.get("warnings", [])][:64]

    async def execute(self, argv: list[str]) -> None:
        """Hand over the command; from now on the helper only reports its exit."""
        self._send({"exec": list(argv)})
        self._sock.close()
        self._sock = None

    async def wait(self) -> int:
        """The command's exit status (128 + N when a signal N ended it)."""
        code = await self.process.wait()
        return 128 - code if code < 0 else code

    def send_signal(self, sig: int) -> None:
        if self.process is not None and self.process.returncode is None:
            try:
                self.process.send_signal(sig)
            except ProcessLookupError:
                pass

    async def close(self, grace: float = 5.0) -> None:
        """End the helper (and so the namespace) if it still runs; release the fds."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.tun_fd is not None:
            os.close(self.tun_fd)
            self.tun_fd = None
        proc = self.process
        if proc is not None and proc.returncode is None:
            self.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except asyncio.TimeoutError:
                self.send_signal(signal.SIGKILL)
                await proc.wait()

    # -- the socket --------------------------------------------------------------------

    def _send(self, message: dict) -> None:
        self._sock.send(json.dumps(message).encode() + b"\n")

    async def _request(self, message: dict) -> dict:
        self._send(message)
        reply, fds = await self._receive()
        for fd in fds:
            os.close(fd)
        return reply

    async def _receive(self) -> tuple[dict, list[int]]:
        loop = asyncio.get_running_loop()
        sock = self._sock
        while True:
            try:
                data, ancdata, _flags, _addr = sock.recvmsg(
                    MAX_MESSAGE, socket.CMSG_SPACE(4 * 4), socket.MSG_CMSG_CLOEXEC)
                break
            except BlockingIOError:
                ready = loop.create_future()
                loop.add_reader(sock.fileno(), ready.set_result, None)
                try:
                    await ready
                finally:
                    loop.remove_reader(sock.fileno())
        fds: list[int] = []
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(payload) - len(payload) % 4
                fds += list(memoryview(payload[:usable]).cast("i"))
        if not data:
            code = await self.process.wait()
            raise NamespaceError(f"erebus run: the namespace helper exited (status {code}) "
                                 "without a word")
        try:
            reply = json.loads(data)
        except ValueError:
            for fd in fds:
                os.close(fd)
            raise NamespaceError("erebus run: the namespace helper sent something "
                                 "unreadable") from None
        if "error" in reply:
            for fd in fds:
                os.close(fd)
            raise NamespaceError(_explain(reply.get("step", ""), str(reply["error"])))
        return reply, fds

