"""The helper process of ``erebus run``: it makes the namespace and becomes the command.

Started fresh (``python -m erebus.runtime.nshelper FD``) by
:mod:`erebus.runtime.netns`, single-threaded, because ``unshare(CLONE_NEWUSER)`` fails
with EINVAL in a threaded process.  It talks to erebus over the Unix socket ``FD``, one
JSON line each way per step:

1. it unshares user, network, mount and PID namespaces, maps the user's own uid and
   gid (so the command runs as the user, with no capabilities after exec), creates the
   TUN device and answers ``{"ok": "tun"}`` with the TUN fd (SCM_RIGHTS);
2. it takes ``{"configure": {...}}`` (addresses, MTU, routes, DNS servers from the
   tunnel), configures the namespace by rtnetlink (no ``ip`` binary), bind-mounts a
   resolv.conf and an nsswitch.conf, sets the per-namespace sysctls and answers
   ``{"ok": "configured"}``;
3. it takes ``{"exec": [argv...]}``: it forks the namespace's init (PID 1), which forks
   the command, forwards signals to it, reaps every orphan and exits with the
   command's status; when it exits the kernel ends every process left in the
   namespace.  The helper waits for it and exits with the same status.

Any failure is one line ``{"error": "...", "step": "..."}`` and exit status 125.
Only the standard library and :mod:`erebus.wire.rtnetlink` are imported here.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile

from erebus.wire import rtnetlink

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
DEVICE = "erebus0"
# the kernel's TCP and UDP inside take their ports below erebus' own stack's range
# (erebus.netstack.stack.EPHEMERAL), so replies are told apart by destination port
LOCAL_PORT_RANGE = "32768 49151"
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                     signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)
# what the terminal sends its foreground process group, the command included: when we
# are in that group, forwarding them too would deliver each twice
TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGQUIT, signal.SIGWINCH)
PR_SET_PDEATHSIG = 1
FAILED = 125
MAX_LINE = 1 << 16

_libc = ctypes.CDLL(None, use_errno=True)


class StepError(Exception):
    def __init__(self, step: str, message: str):
        super().__init__(message)
        self.step = step


def _check(result: int, step: str, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise StepError(step, f"{what}: {os.strerror(err)} (errno {errno.errorcode.get(err, err)})")


def _write(path: str, text: str, step: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as exc:
        raise StepError(step, f"writing {text.strip()!r} to {path}: {exc.strerror}") from None


def _sysctl(path: str, value: str) -> None:
    """A per-namespace setting; one the kernel lacks (no IPv6) is left as it is."""
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError:
        pass


# -- step 1: namespaces and the TUN device -------------------------------------------

def make_namespaces(uid: int, gid: int) -> None:
    _check(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID),
           "unshare", "unshare(user, network, mount and PID namespaces)")
    # setgroups must be denied before an unprivileged process may write gid_map
    _write("/proc/self/setgroups", "deny", "uid_map")
    _write("/proc/self/uid_map", f"{uid} {uid} 1\n", "uid_map")
    _write("/proc/self/gid_map", f"{gid} {gid} 1\n", "uid_map")
    # our mounts stay ours: nothing we bind below propagates to the host
    _check(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount",
           "making the mount namespace private")


def open_tun() -> int:
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise StepError("tun", f"/dev/net/tun: {exc.strerror}") from None
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", DEVICE.encode(),
                                               IFF_TUN | IFF_NO_PI))
    except OSError as exc:
        os.close(fd)
        raise StepError("tun", f"creating the TUN device {DEVICE}: {exc.strerror}") from None
    return fd


# -- step 2: addresses, routes, DNS ----------------------------------------------------

def _netlink(messages: list[tuple[str, bytes, bool]]) -> list[str]:
    """Send the requests and read every ACK.  The first refusal of a required one is a
    StepError; refusals of the others (routes) come back as warnings."""
    warnings = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as nl:
        nl.bind((0, 0))
        pending = {}
        for seq, (text, message, required) in enumerate(messages, 1):
            message = message[:8] + struct.pack("=I", seq) + message[12:]
            pending[seq] = (text, required)
            nl.send(message)
        while pending:
            for seq, err in rtnetlink.parse_acks(nl.recv(65536)):
                text, required = pending.pop(seq, (None, False))
                if err and text is not None:
                    if required:
                        raise StepError("netlink", f"{text}: {os.strerror(err)}")
                    warnings.append(f"{text}: {os.strerror(err)}")
    return warnings


def _labelled(config: dict) -> list[tuple[str, bytes, bool]]:
    """The requests, what each does (for a refusal's line), and whether it is needed."""
    lo = socket.if_nametoindex("lo")
    tun = socket.if_nametoindex(DEVICE)
    out = [("bringing lo up", rtnetlink.link_up(lo), True),
           (f"setting {DEVICE}'s MTU to {config['mtu']}",
            rtnetlink.link_up(tun, mtu=config["mtu"]), True)]
    for address, prefixlen in config["addresses"]:
        out.append((f"adding {address}/{prefixlen} to {DEVICE}",
                    rtnetlink.addr_add(tun, address, prefixlen), True))
    for route in config["routes"]:
        dst, prefixlen = route["dst"], route["prefixlen"]
        out.append((f"the route {dst}/{prefixlen} via {DEVICE} refused",
                    rtnetlink.route_add(tun, dst, prefixlen, source=route.get("src"),
                                        mtu=route.get("mtu"), advmss=route.get("advmss")),
                    False))
    return out


def _bind_file(target: str, text: str, workdir: str) -> None:
    """Bind a file holding ``text`` over ``target`` (mount follows a symlink there)."""
    source = os.path.join(workdir, os.path.basename(target))
    with open(source, "w") as f:
        f.write(text)
    os.chmod(source, 0o644)
    try:
        _check(_libc.mount(source.encode(), os.path.realpath(target).encode(), None,
                           MS_BIND, None), "dns", f"bind-mounting the namespace's {target}")
    finally:
        os.unlink(source)             # the mount keeps the file; nothing stays on disk


def _nsswitch() -> str:
    """The host's nsswitch.conf with ``hosts: files dns``: nss-resolve, nscd or mdns
    would answer from outside the namespace over their Unix sockets."""
    try:
        with open("/etc/nsswitch.conf") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    lines = [ln for ln in lines if not ln.split(":", 1)[0].strip() == "hosts"]
    return "\n".join(lines + ["hosts: files dns"]) + "\n"


def configure(config: dict) -> list[str]:
    has6 = any(":" in a for a, _ in config["addresses"])
    if not has6:
        # no IPv6 in the tunnel: none in the namespace (no router solicitations, no MLD)
        _sysctl(f"/proc/sys/net/ipv6/conf/{DEVICE}/disable_ipv6", "1")
    else:
        for key, value in (("addr_gen_mode", "1"), ("accept_ra", "0"),
                           ("router_solicitations", "0")):
            _sysctl(f"/proc/sys/net/ipv6/conf/{DEVICE}/{key}", value)
    gid = os.getgid()
    _sysctl("/proc/sys/net/ipv4/ping_group_range", f"{gid} {gid}")
    _sysctl("/proc/sys/net/ipv4/ip_local_port_range", LOCAL_PORT_RANGE)
    warnings = _netlink(_labelled(config))
    resolv = "".join(f"nameserver {s}\n" for s in config["dns"][:3])
    if config.get("search"):
        resolv += "search " + " ".join(config["search"]) + "\n"
    resolv += "options edns0\n" if config["dns"] else ""
    workdir = tempfile.mkdtemp(prefix="erebus-run-")
    try:
        _bind_file("/etc/resolv.conf", "# erebus run: the VPN's DNS servers\n" + resolv,
                   workdir)
        if os.path.exists("/etc/nsswitch.conf"):
            _bind_file("/etc/nsswitch.conf", _nsswitch(), workdir)
    finally:
        os.rmdir(workdir)
    return warnings


# -- step 3: init and the command ------------------------------------------------------

def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def in_terminal_foreground() -> bool:
    """Whether this process is in the foreground process group of its terminal."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


def _forwarding(target: list[int], foreground: bool):
    def forward(signum, _frame):
        if target[0]:
            try:
                os.kill(target[0], signum)
            except ProcessLookupError:
                pass
    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, signal.SIG_IGN if foreground and sig in TERMINAL_SIGNALS
                      else forward)


def _die_with_parent(parent: int) -> None:
    """SIGKILL when the parent goes (erebus killed outright): the namespace's init
    goes with the helper, and every process in the namespace with its init."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(FAILED)


def _init(argv: list[str], foreground: bool) -> int:
    """PID 1 of the namespace: a fresh /proc, the command as its child, every orphan
    reaped; its exit status is the command's."""
    _libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    target = [0]
    _forwarding(target, foreground)
    program = shutil.which(argv[0]) if "/" not in argv[0] else argv[0]
    if program is None:
        print(f"erebus run: {argv[0]}: command not found", file=sys.stderr)
        return 127
    pid = os.fork()
    if pid == 0:
        for sig in FORWARDED_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        try:
            os.execv(program, argv)
        except OSError as exc:
            print(f"erebus run: cannot run {argv[0]}: {exc.strerror}", file=sys.stderr)
            os._exit(127 if exc.errno == errno.ENOENT else 126)
    target[0] = pid
    while True:
        try:
            child, status = os.wait()
        except ChildProcessError:
            return 1
        except InterruptedError:
            continue
        if child == pid:
            return _exit_code(status)


def run_command(argv: list[str]) -> int:
    target = [0]
    foreground = in_terminal_foreground()
    _forwarding(target, foreground)
    pid = os.fork()
    if pid == 0:
        try:
            _die_with_parent(0)       # PID 1: its parent is outside the namespace
            code = _init(argv, foreground)
        except BaseException:         # noqa: BLE001 - PID 1 must not leave a traceback
            code = 1
        os._exit(code)
    target[0] = pid
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except InterruptedError:
            continue
        return _exit_code(status)


# -- the conversation with erebus ------------------------------------------------------

def _read_line(sock: socket.socket, buf: bytearray) -> dict | None:
    while b"\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        buf += chunk
        if len(buf) > MAX_LINE:
            raise StepError("protocol", "request too long")
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return json.loads(line)


def _send(sock: socket.socket, message: dict, fds: list[int] = ()) -> None:
    data = json.dumps(message).encode() + b"\n"
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.sendall(data)


def main(fd: int) -> int:
    _die_with_parent(int(os.environ.get("EREBUS_PARENT", "0")) or os.getppid())
    sock = socket.socket(fileno=fd)
    buf = bytearray()
    step = "unshare"
    try:
        make_namespaces(os.getuid(), os.getgid())
        step = "tun"
        tun = open_tun()
        _send(sock, {"ok": "tun", "device": DEVICE}, [tun])
        os.close(tun)
        step = "configure"
        request = _read_line(sock, buf)
        if request is None:
            return FAILED
        warnings = configure(request["configure"])
        _send(sock, {"ok": "configured", "warnings": warnings})
        step = "exec"
        request = _read_line(sock, buf)
        if request is None:
            return FAILED
        argv = request["exec"]
    except StepError as exc:
        _send_error(sock, exc.step, str(exc))
        return FAILED
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _send_error(sock, step, f"{type(exc).__name__}: {exc}")
        return FAILED
    sock.close()
    return run_command(argv)


def _send_error(sock: socket.socket, step: str, message: str) -> None:
    try:
        _send(sock, {"error": message, "step": step})
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
