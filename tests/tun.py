"""A tunnel whose other end is the Linux kernel: a TUN device in a test namespace.

erebus's network stack sits on a :class:`erebus.tunnel.Tunnel` that moves whole
IPv4 packets.  To hold our TCP up against the kernel's, :class:`KernelPeer`
makes a network namespace ``ebs-tun-<pid>-<n>`` holding a TUN device
(``IFF_TUN | IFF_NO_PI``, default ``ebtun0``, ``198.18.200.1/24``) and
:class:`TunTunnel` is the Tunnel over its file descriptor::

    us (erebus stack, 198.18.200.2)  <-- TunTunnel -- fd -- [ebtun0 198.18.200.1/24]  kernel
                                                              namespace ebs-tun-<pid>-<n>

Whatever the kernel in the namespace routes to ``198.18.200.0/24`` comes out of
the fd (so out of the tunnel's receiver); whatever we send into the tunnel is
received by the kernel on ``ebtun0``.  Nothing is changed in the namespace the
tests run in: the TUN device is created directly inside the test namespace.

Usage (as root)::

    async with KernelPeer(mtu=1400) as peer:
        tunnel = peer.tunnel()                 # needs the running loop
        tunnel.set_receiver(stack.input)
        server = peer.spawn_python(SERVER_CODE, "5000")
        peer.wait_listening(5000)
        peer.netem("loss 5% delay 5ms 2ms")    # kernel -> us
        tunnel.impair(loss=0.05, seed=1)       # us -> kernel
        ...

How the device gets into the namespace: a ``/dev/net/tun`` file belongs to the
network namespace of the thread that opens it, and ``TUNSETIFF`` creates the
device there.  :func:`in_netns` runs a function in a short-lived thread of its
own that has entered the namespace with ``setns(2)`` (``os.setns`` on Python
3.12+, libc through ctypes on 3.11); ``setns`` only moves the calling thread,
so the rest of the process stays where it was.  The fd then works from any
thread.  (Creating the device in our own namespace and moving it with ``ip link
set ... netns`` works too, but would briefly put a device in the shared
namespace, where its name could clash.)

IPv6 is disabled in the namespace unless ``KernelPeer(ipv6=True)``: then the
device also has ``kernel_ip6/prefixlen6`` (default ``2001:2:0:200::1/64``, no
DAD, no router advertisements accepted, no link-local address generated) and
our stack owns ``our_ip6`` (``2001:2:0:200::2``).  :class:`TunTunnel` passes
IPv6 only when its ``info`` has a ``virtual_ip6``; it drops and counts the
neighbour-discovery and MLD messages the kernel still sends on the device (a
point-to-point tunnel needs none), and any packet of a family it does not carry.

Clean-up (:meth:`KernelPeer.close`, also from ``with``/``async with``, at
interpreter exit and on exceptions in :meth:`KernelPeer.start`): tunnels closed,
processes started in the namespace stopped, fd closed, namespace deleted.
"""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import fcntl
import heapq
import ipaddress
import itertools
import os
import random
import shlex
import shutil
import signal
import struct
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from erebus.tunnel import TunnelInfo
from erebus.wire.icmpv6 import link_chatter as _link_chatter

__all__ = [
    "KernelPeer", "KernelPeerError", "NetemUnavailable", "TunTunnel", "TunStats",
    "ImpairStats", "in_netns", "missing_prerequisites",
    "ALLOWED_NET", "ALLOWED_NET6", "SYSTEM_PYTHON",
]

SYSTEM_PYTHON = "/usr/bin/python3"
# Every address these helpers configure must be in the RFC 2544 benchmarking range.
ALLOWED_NET = ipaddress.IPv4Network("198.18.0.0/15")
ALLOWED_NET6 = ipaddress.IPv6Network("2001:2::/48")

_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
_CLONE_NEWNET = 0x40000000
_IFNAMSIZ = 16
_CLOCK_RESOLUTION = time.get_clock_info("monotonic").resolution

_T = TypeVar("_T")
_ns_counter = itertools.count()


class KernelPeerError(RuntimeError):
    """The namespace or its TUN device could not be set up, or a command in it failed."""


class NetemUnavailable(KernelPeerError):
    """The kernel has no netem qdisc (``CONFIG_NET_SCH_NETEM``): use ``TunTunnel.impair_rx``."""


def missing_prerequisites() -> list[str]:
    """Why :class:`KernelPeer` cannot run here (an empty list if it can)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("a TUN device in a network namespace needs root")
    if not os.path.exists("/dev/net/tun"):
        problems.append("/dev/net/tun is missing")
    for tool in ("ip", "tc", "ss", "ping"):
        if shutil.which(tool) is None:
            problems.append(f"{tool!r} is not installed")
    if not os.path.exists(SYSTEM_PYTHON):
        problems.append(f"{SYSTEM_PYTHON} is missing")
    return problems


# --------------------------------------------------------------------------- setns

def _setns(fd: int) -> None:
    if hasattr(os, "setns"):        # Python 3.12+
        os.setns(fd, _CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def in_netns(ns: str, fn: Callable[[], _T]) -> _T:
    """Run ``fn()`` in a fresh thread that has entered network namespace *ns*.

    Only that thread changes namespace (``setns`` acts on the calling thread);
    it returns to the original namespace before it ends, and it ends right
    after, so nothing else ever runs in it.  Returns what ``fn`` returns, or
    raises what it raised.
    """
    result: list[Any] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                target = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
                try:
                    _setns(target)
                finally:
                    os.close(target)
                try:
                    result.append(fn())
                finally:
                    _setns(own)
            finally:
                os.close(own)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            failure.append(exc)

    thread = threading.Thread(target=body, name=f"netns-{ns}", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


# --------------------------------------------------------------------------- impairment

@dataclass(slots=True)
class ImpairStats:
    """Counters of one direction's :meth:`TunTunnel.impair` / :meth:`TunTunnel.impair_rx`."""

    lost: int = 0               # dropped (loss)
    duplicated: int = 0         # extra copies made (duplicate)
    reordered: int = 0          # held back by reorder_delay (reorder)
    delayed: int = 0            # packets (copies included) that went through the delay queue
    flushed: int = 0            # still held when the tunnel closed (never passed on)


class _Impairer:
    """Loss, duplication, delay, jitter and reordering in front of a sink (one direction)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sink: Callable[[bytes], None],
                 stats: ImpairStats):
        self._loop = loop
        self._sink = sink
        self.stats = stats
        self.active = False
        self._heap: list[tuple[float, int, bytes]] = []   # (due, seq, packet)
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    def configure(self, loss: float, duplicate: float, reorder: float, delay: float,
                  jitter: float, reorder_delay: float | None, seed: int | None) -> None:
        for name, p in (("loss", loss), ("duplicate", duplicate), ("reorder", reorder)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability, not {p}")
        if delay < 0 or jitter < 0 or (reorder_delay is not None and reorder_delay < 0):
            raise ValueError("delay, jitter and reorder_delay must not be negative")
        self.loss, self.duplicate, self.reorder = loss, duplicate, reorder
        self.delay, self.jitter = delay, jitter
        self.reorder_delay = (max(2 * delay + 2 * jitter, 0.005) if reorder_delay is None
                              else reorder_delay)
        self.rng = random.Random(seed)
        self.active = bool(loss or duplicate or reorder or delay or jitter)

    def clear(self) -> None:
        self.active = False

    def push(self, packet: bytes) -> None:
        rng = self.rng
        stats = self.stats
        if self.loss and rng.random() < self.loss:
            stats.lost += 1
            return
        copies = 1
        if self.duplicate and rng.random() < self.duplicate:
            copies = 2
            stats.duplicated += 1
        for _ in range(copies):
            wait = self.delay
            if self.jitter:
                wait = max(0.0, wait + rng.uniform(-self.jitter, self.jitter))
            if self.reorder and rng.random() < self.reorder:
                wait += self.reorder_delay
                stats.reordered += 1
            if wait <= 0.0:             # overtakes whatever is held
                self._sink(packet)
                continue
            stats.delayed += 1
            due = self._loop.time() + wait
            heapq.heappush(self._heap, (due, next(self._seq), packet))
            if self._heap[0][0] == due:
                self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(self._heap[0][0], self._release)

    def _release(self) -> None:
        self._timer = None
        heap = self._heap
        # asyncio may run a timer up to one clock resolution early
        now = self._loop.time() + _CLOCK_RESOLUTION
        while heap and heap[0][0] <= now:
            self._sink(heapq.heappop(heap)[2])
        if heap:
            self._arm()

    def flush(self) -> None:
        """Drop whatever is held (the tunnel closes)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.stats.flushed += len(self._heap)
        self._heap.clear()
        self.active = False


# --------------------------------------------------------------------------- TunTunnel

@dataclass(slots=True)
class TunStats:
    """Counters of a :class:`TunTunnel`."""

    rx_packets: int = 0         # IP packets read from the fd (those passed on)
    rx_bytes: int = 0
    rx_delivered: int = 0       # packets handed to the receiver (after impair_rx)
    rx_wakeups: int = 0         # reader callbacks that found at least one packet
    rx_max_batch: int = 0       # most packets read in one wake-up
    rx_full_batches: int = 0    # wake-ups that stopped at max_batch (more were waiting)
    rx_non_ipv4: int = 0        # dropped: not IPv4 (nor IPv6, when the tunnel carries it)
    rx_link_chatter: int = 0    # dropped: IPv6 neighbour discovery / MLD from the kernel
    rx_truncated: int = 0       # longer than read_size: cut short (still delivered)
    rx_no_receiver: int = 0     # dropped: the receiver was removed meanwhile
    rx_receiver_errors: int = 0  # receiver raised (see TunTunnel.errors)
    tx_packets: int = 0         # written to the fd
    tx_bytes: int = 0
    tx_eagain: int = 0          # dropped: the fd would block
    tx_errors: int = 0          # dropped: write failed otherwise (see TunTunnel.errors)
    tx_closed: int = 0          # dropped: tunnel closed
    tx_imp: ImpairStats = field(default_factory=ImpairStats)   # impair(): us -> kernel
    rx_imp: ImpairStats = field(default_factory=ImpairStats)   # impair_rx(): kernel -> us


class TunTunnel:
    """The :class:`erebus.tunnel.Tunnel` interface over a TUN fd (``IFF_NO_PI``), on asyncio.

    * Receiving: once a receiver is set, the fd is watched with
      ``loop.add_reader``.  Each wake-up reads up to ``max_batch`` packets
      (until ``EAGAIN``), then hands them to the receiver in order; whatever is
      left waits for the next loop iteration, so one busy tunnel cannot starve
      the loop.  Until a receiver is set, the kernel queues packets on the
      device (``txqueuelen``, 500 by default; beyond that it drops them).
      Packets that are not IPv4 are dropped and counted, unless ``info`` has a
      ``virtual_ip6``: then IPv6 passes too, except the kernel's neighbour
      discovery and MLD (dropped, counted in ``rx_link_chatter``).  A receiver that
      raises does not lose the rest of the batch: the exception is counted,
      kept in :attr:`errors` and passed to the loop's exception handler.
    * Sending: :meth:`send_packet` writes the packet at once with ``os.write``;
      on ``EAGAIN`` it is dropped and counted (``tx_eagain``), as are other
      write errors (``tx_errors``: e.g. ``EINVAL`` for a packet that is not IP,
      ``EIO`` with the device down).  After :meth:`close`, packets are dropped
      (``tx_closed``).
    * :meth:`impair` adds loss, duplication, delay, jitter and reordering to
      what *we* send; :meth:`impair_rx` the same to what the kernel sends us
      (an alternative to ``KernelPeer.netem`` that needs no ``sch_netem``).

    The tunnel owns *fd* (closed by :meth:`close`) unless ``close_fd=False``;
    it sets the fd non-blocking.  ``read_size`` defaults to the MTU, the most
    the kernel writes into a TUN device without offloads.
    """

    def __init__(self, fd: int, info: TunnelInfo, *,
                 loop: asyncio.AbstractEventLoop | None = None, max_batch: int = 64,
                 read_size: int | None = None, close_fd: bool = True):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.info = info
        self.stats = TunStats()
        self.errors: list[BaseException] = []   # the first 100 receiver / write errors
        self.max_batch = max_batch
        self.read_size = read_size or max(info.mtu, 68)
        self._fd: int | None = fd
        self._close_fd = close_fd
        self._loop = loop or asyncio.get_running_loop()
        self._receiver: Callable[[bytes], None] | None = None
        self._reading = False
        self._tx_imp = _Impairer(self._loop, self._write, self.stats.tx_imp)
        self._rx_imp = _Impairer(self._loop, self._deliver, self.stats.rx_imp)
        self._ipv6 = bool(getattr(info, "virtual_ip6", None))
        os.set_blocking(fd, False)

    # ---------------------------------------------------------------- Tunnel API

    @property
    def closed(self) -> bool:
        return self._fd is None

    @property
    def fd(self) -> int | None:
        return self._fd

    def set_receiver(self, receiver: Callable[[bytes], None] | None) -> None:
        """Call ``receiver(packet)`` for each IP packet the kernel sends us (None: stop)."""
        self._receiver = receiver
        if self._fd is None:
            return
        if receiver is not None and not self._reading:
            self._loop.add_reader(self._fd, self._on_readable)
            self._reading = True
        elif receiver is None and self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False

    def send_packet(self, packet: bytes) -> None:
        """Send one IP packet to the kernel (dropped and counted if that fails)."""
        if self._fd is None:
            self.stats.tx_closed += 1
        elif self._tx_imp.active:
            self._tx_imp.push(bytes(packet))
        else:
            self._write(packet)

    async def close(self) -> None:
        """Stop reading, drop what the impairments still hold, close the fd."""
        self.close_now()

    def close_now(self) -> None:
        """:meth:`close`, callable without (or after) the event loop."""
        fd = self._fd
        if fd is None:
            return
        self._fd = None
        if self._reading:
            self._reading = False
            try:
                self._loop.remove_reader(fd)
            except Exception:  # noqa: BLE001 - the loop may be gone already
                pass
        self._tx_imp.flush()
        self._rx_imp.flush()
        if self._close_fd:
            os.close(fd)

    # ---------------------------------------------------------------- impairment

    def impair(self, *, loss: float = 0.0, duplicate: float = 0.0, reorder: float = 0.0,
               delay: float = 0.0, jitter: float = 0.0, reorder_delay: float | None = None,
               seed: int | None = None) -> None:
        """Impair the packets we send from now on (a new call replaces the old settings).

        For each packet given to :meth:`send_packet`, in this order:

        * ``loss`` (probability): it is dropped;
        * ``duplicate`` (probability): a second copy follows it (through the same steps);
        * ``delay`` seconds, plus uniform noise in ``[-jitter, +jitter]`` (never below 0):
          it waits that long (with jitter, later packets may overtake it);
        * ``reorder`` (probability): it waits ``reorder_delay`` seconds more (default:
          ``2 * delay + 2 * jitter``, at least 5 ms), so packets sent after it overtake it.
          Unlike netem's ``reorder`` this works without ``delay``.

        Held packets are written, in order of due time (ties in send order), by a
        single ``loop.call_at`` timer; a packet that ends up with no wait is written
        at once (overtaking held ones).  ``seed`` makes the random choices
        repeatable.  All zero (``impair()``) is the same as :meth:`clear_impairment`.
        Counters: ``stats.tx_imp``.
        """
        self._tx_imp.configure(loss, duplicate, reorder, delay, jitter, reorder_delay, seed)

    def clear_impairment(self) -> None:
        """Send packets untouched again (those already held still go when due)."""
        self._tx_imp.clear()

    def impair_rx(self, *, loss: float = 0.0, duplicate: float = 0.0, reorder: float = 0.0,
                  delay: float = 0.0, jitter: float = 0.0, reorder_delay: float | None = None,
                  seed: int | None = None) -> None:
        """Like :meth:`impair`, for the packets the kernel sends us: applied between
        reading them from the fd and handing them to the receiver.  For the stack
        this is the same as netem on the device, and it needs no ``sch_netem``
        (which some kernels lack); only the kernel's own queueing differs, since
        its packets leave the device at once.  Counters: ``stats.rx_imp``."""
        self._rx_imp.configure(loss, duplicate, reorder, delay, jitter, reorder_delay, seed)

    def clear_rx_impairment(self) -> None:
        """Deliver received packets untouched again (those already held still go when due)."""
        self._rx_imp.clear()

    # ---------------------------------------------------------------- fd I/O

    def _note_error(self, exc: BaseException) -> None:
        if len(self.errors) < 100:
            self.errors.append(exc)

    def _write(self, packet: bytes) -> None:
        if self._fd is None:
            self.stats.tx_closed += 1
            return
        try:
            os.write(self._fd, packet)
        except BlockingIOError:
            self.stats.tx_eagain += 1
            return
        except OSError as exc:
            self.stats.tx_errors += 1
            self._note_error(exc)
            return
        self.stats.tx_packets += 1
        self.stats.tx_bytes += len(packet)

    def _deliver(self, packet: bytes) -> None:
        receiver = self._receiver
        if receiver is None or self._fd is None:
            self.stats.rx_no_receiver += 1
            return
        self.stats.rx_delivered += 1
        try:
            receiver(packet)
        except Exception as exc:  # noqa: BLE001 - recorded, the batch goes on
            self.stats.rx_receiver_errors += 1
            self._note_error(exc)
            self._loop.call_exception_handler({
                "message": "TunTunnel receiver raised", "exception": exc})

    def _on_readable(self) -> None:
        fd = self._fd
        if fd is None:
            return
        batch = []
        read_size = self.read_size
        for _ in range(self.max_batch):
            try:
                packet = os.read(fd, read_size)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                # EBADFD/EIO if the device went away: stop watching, keep the error.
                self._note_error(exc)
                if self._reading:
                    self._loop.remove_reader(fd)
                    self._reading = False
                break
            if not packet:
                break
            batch.append(packet)
        if not batch:
            return
        stats = self.stats
        n = len(batch)
        stats.rx_wakeups += 1
        if n > stats.rx_max_batch:
            stats.rx_max_batch = n
        if n == self.max_batch:
            stats.rx_full_batches += 1
        impairer = self._rx_imp
        for packet in batch:
            version = packet[0] >> 4
            if version == 4:
                if len(packet) == read_size and int.from_bytes(packet[2:4], "big") > read_size:
                    stats.rx_truncated += 1
            elif version == 6 and self._ipv6:
                if _link_chatter(packet):
                    stats.rx_link_chatter += 1
                    continue
                if (len(packet) == read_size
                        and 40 + int.from_bytes(packet[4:6], "big") > read_size):
                    stats.rx_truncated += 1
            else:
                stats.rx_non_ipv4 += 1
                continue
            stats.rx_packets += 1
            stats.rx_bytes += len(packet)
            if impairer.active:
                impairer.push(packet)
            else:
                self._deliver(packet)


# --------------------------------------------------------------------------- KernelPeer

_live_peers: "weakref.WeakSet[KernelPeer]" = weakref.WeakSet()


@atexit.register
def _close_live_peers() -> None:
    for peer in list(_live_peers):
        peer.close()


def _check_addr(what: str, addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.ip_address(addr)
    allowed = ALLOWED_NET if ip.version == 4 else ALLOWED_NET6
    if ip not in allowed:
        raise ValueError(f"{what} {addr} is outside {allowed}")
    return ip


def _kill_group(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """Stop a process started with ``start_new_session=True``: TERM its group, then KILL."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


class KernelPeer:
    """A network namespace ``ebs-tun-<pid>-<n>`` with a TUN device up in it.

    The device (``ifname``, default ``ebtun0``) has ``kernel_ip/prefixlen``
    (default ``198.18.200.1/24``) and ``mtu``; loopback is up; IPv6 is off
    unless ``ipv6=True`` (then ``kernel_ip6/prefixlen6`` too, ``our_ip6`` ours).
    ``our_ip`` (default ``198.18.200.2``) is the address the stack on the
    tunnel owns.  All addresses must be in 198.18.0.0/15.

    Use as a context manager (``with`` or ``async with``) or call
    :meth:`start` / :meth:`close`.  :attr:`fd` is the TUN fd (non-blocking);
    :meth:`tunnel` wraps a duplicate of it in a :class:`TunTunnel` (one at a
    time: two would steal each other's packets).
    """

    def __init__(self, *, kernel_ip: str = "198.18.200.1", our_ip: str = "198.18.200.2",
                 prefixlen: int = 24, mtu: int = 1500, ifname: str = "ebtun0",
                 txqueuelen: int | None = None, name: str | None = None,
                 ipv6: bool = False, kernel_ip6: str = "2001:2:0:200::1",
                 our_ip6: str = "2001:2:0:200::2", prefixlen6: int = 64):
        if ipv6:
            kip6 = _check_addr("kernel_ip6", kernel_ip6)
            oip6 = _check_addr("our_ip6", our_ip6)
            net6 = ipaddress.IPv6Network(f"{kernel_ip6}/{prefixlen6}", strict=False)
            if oip6 not in net6 or oip6 == kip6:
                raise ValueError(f"our_ip6 {our_ip6} must be another address in {net6}")
            if mtu < 1280:
                raise ValueError(f"IPv6 needs an MTU of at least 1280, not {mtu}")
        self.ipv6 = ipv6
        self.kernel_ip6 = kernel_ip6 if ipv6 else None
        self.our_ip6 = our_ip6 if ipv6 else None
        self.prefixlen6 = prefixlen6
        kip = _check_addr("kernel_ip", kernel_ip)
        oip = _check_addr("our_ip", our_ip)
        net = ipaddress.IPv4Network(f"{kernel_ip}/{prefixlen}", strict=False)
        if oip not in net or oip == kip:
            raise ValueError(f"our_ip {our_ip} must be another address in {net}")
        if not 68 <= mtu <= 65535:
            raise ValueError(f"mtu {mtu} out of range")
        if not 0 < len(ifname.encode()) < _IFNAMSIZ:
            raise ValueError(f"interface name {ifname!r} too long")
        self.kernel_ip = kernel_ip
        self.our_ip = our_ip
        self.prefixlen = prefixlen
        self.netmask = str(net.netmask)
        self.mtu = mtu
        self.ifname = ifname
        self.txqueuelen = txqueuelen
        self.name = name or f"ebs-tun-{os.getpid()}-{next(_ns_counter)}"
        self.fd: int | None = None
        self._ns_created = False
        self._procs: list[subprocess.Popen] = []
        self._aprocs: list[asyncio.subprocess.Process] = []
        self._tunnels: list[TunTunnel] = []

    # ---------------------------------------------------------------- life cycle

    def start(self) -> KernelPeer:
        """Create the namespace and the device; on any failure undo what was done."""
        if self._ns_created:
            return self
        _live_peers.add(self)
        try:
            self._check(["ip", "netns", "add", self.name])
            self._ns_created = True
            self.fd = in_netns(self.name, self._create_tun)
            commands = ["link set lo up",
                        f"link set dev {self.ifname} mtu {self.mtu}"
                        + (f" txqueuelen {self.txqueuelen}" if self.txqueuelen else ""),
                        f"addr add {self.kernel_ip}/{self.prefixlen} dev {self.ifname}",
                        f"link set dev {self.ifname} up"]
            if self.ipv6:
                commands.append(f"addr add {self.kernel_ip6}/{self.prefixlen6} "
                                f"dev {self.ifname} nodad")
            self._check(["ip", "-n", self.name, "-batch", "-"], input="\n".join(commands) + "\n")
        except BaseException:
            self.close()
            raise
        return self

    def _create_tun(self) -> int:
        # Runs inside the namespace (see in_netns): no IPv6 chatter on the device, or
        # with ipv6=True as little as the kernel allows (no RA, no DAD, no link-local).
        settings = ({"disable_ipv6": 0, "accept_ra": 0, "accept_dad": 0, "dad_transmits": 0,
                     "router_solicitations": 0, "addr_gen_mode": 1}
                    if self.ipv6 else {"disable_ipv6": 1})
        for scope in ("all", "default"):
            for key, value in settings.items():
                if scope == "all" and key == "addr_gen_mode":
                    continue
                with open(f"/proc/sys/net/ipv6/conf/{scope}/{key}", "w") as f:
                    f.write(str(value))
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            ifr = struct.pack("16sH22x", self.ifname.encode(), _IFF_TUN | _IFF_NO_PI)
            fcntl.ioctl(fd, _TUNSETIFF, ifr)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def close(self) -> None:
        """Close tunnels, stop processes started here, close the fd, delete the namespace."""
        for tunnel in self._tunnels:
            tunnel.close_now()
        self._tunnels.clear()
        for proc in self._procs:
            _kill_group(proc)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass
        self._procs.clear()
        for aproc in self._aprocs:
            if aproc.returncode is None:
                try:
                    os.killpg(aproc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._aprocs.clear()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self._ns_created:
            self._kill_leftovers()
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=30)
            self._ns_created = False
        _live_peers.discard(self)

    def _kill_leftovers(self) -> None:
        """Kill whatever still runs in our namespace (only ever started through this peer)."""
        cp = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True,
                            text=True, timeout=30)
        pids = [int(p) for p in cp.stdout.split() if p.isdigit() and int(p) != os.getpid()]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def __enter__(self) -> KernelPeer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()

    async def __aenter__(self) -> KernelPeer:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc_info) -> None:
        for tunnel in self._tunnels:
            await tunnel.close()
        await asyncio.to_thread(self.close)

    # ---------------------------------------------------------------- the tunnel

    @property
    def tunnel_info(self) -> TunnelInfo:
        """What a :class:`TunTunnel` on this peer reports as its ``info``."""
        return TunnelInfo(kind="tun-test", server="kernel", virtual_ip=self.our_ip,
                          netmask=self.netmask, gateway=self.kernel_ip, mtu=self.mtu,
                          virtual_ip6=self.our_ip6,
                          prefix6=self.prefixlen6 if self.ipv6 else None,
                          gateway6=self.kernel_ip6)

    def tunnel(self, *, max_batch: int = 64, read_size: int | None = None,
               loop: asyncio.AbstractEventLoop | None = None) -> TunTunnel:
        """A :class:`TunTunnel` on a duplicate of :attr:`fd` (call it in the running loop).

        Closing the tunnel closes only its duplicate: the device lives on until
        the peer closes, so another tunnel can be made after it.
        """
        if self.fd is None:
            raise KernelPeerError("the peer is not started")
        tunnel = TunTunnel(os.dup(self.fd), self.tunnel_info, loop=loop,
                           max_batch=max_batch, read_size=read_size)
        self._tunnels = [t for t in self._tunnels if not t.closed]
        self._tunnels.append(tunnel)
        return tunnel

    # ---------------------------------------------------------------- commands

    def ns_argv(self, argv: Sequence[Any]) -> list[str]:
        """*argv* prefixed to run in the namespace (``ip netns exec <ns> ...``)."""
        return ["ip", "netns", "exec", self.name, *map(str, argv)]

    def _check(self, argv: list[str], *, input: str | None = None) -> subprocess.CompletedProcess:
        try:
            cp = subprocess.run(argv, capture_output=True, text=True, timeout=30, input=input)
        except subprocess.TimeoutExpired as exc:
            raise KernelPeerError(f"timed out: {shlex.join(argv)}") from exc
        if cp.returncode != 0:
            raise KernelPeerError(f"failed (rc={cp.returncode}): {shlex.join(argv)}\n"
                                  f"{cp.stdout}{cp.stderr}".rstrip())
        return cp

    def run(self, argv: Sequence[Any], *, timeout: float = 30, check: bool = False,
            input: str | bytes | None = None, text: bool = True) -> subprocess.CompletedProcess:
        """Run *argv* in the namespace and wait (blocking: not for use inside the loop
        while the tunnel must answer; see :meth:`arun`).  Output is captured; a
        timeout kills the process group and raises ``subprocess.TimeoutExpired``;
        ``check=True`` raises ``CalledProcessError`` on a non-zero exit."""
        argv = self.ns_argv(argv)
        with subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=text,
                              start_new_session=True) as proc:
            try:
                out, err = proc.communicate(input, timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc, grace=1.0)
                proc.communicate()
                raise
        cp = subprocess.CompletedProcess(argv, proc.returncode, out, err)
        if check:
            cp.check_returncode()
        return cp

    async def arun(self, argv: Sequence[Any], *, timeout: float = 30, check: bool = False,
                   input: bytes | None = None) -> subprocess.CompletedProcess:
        """:meth:`run` for coroutines: the loop (and the tunnel) keeps running meanwhile.
        ``stdout``/``stderr`` of the result are ``str``."""
        argv = self.ns_argv(argv)
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self._aprocs.append(proc)
        try:
            out, err = await asyncio.wait_for(proc.communicate(input), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await proc.wait()
            raise
        finally:
            if proc.returncode is not None:
                self._aprocs.remove(proc)
        cp = subprocess.CompletedProcess(argv, proc.returncode, out.decode(errors="replace"),
                                         err.decode(errors="replace"))
        if check:
            cp.check_returncode()
        return cp

    def spawn(self, argv: Sequence[Any], **popen_kwargs) -> subprocess.Popen:
        """Start *argv* in the namespace (own session; stopped by :meth:`close` if still
        running).  Defaults: no stdin, stdout and stderr piped, text mode; any
        ``subprocess.Popen`` keyword overrides them."""
        kwargs: dict[str, Any] = dict(stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
        kwargs.update(popen_kwargs)
        kwargs["start_new_session"] = True
        proc = subprocess.Popen(self.ns_argv(argv), **kwargs)
        self._procs.append(proc)
        return proc

    def spawn_python(self, code: str, *args: Any, **popen_kwargs) -> subprocess.Popen:
        """Run ``/usr/bin/python3 -u -c code args...`` in the namespace (see :meth:`spawn`):
        for kernel-side TCP servers and clients.  ``sys.argv[1:]`` are *args*."""
        return self.spawn([SYSTEM_PYTHON, "-u", "-c", code, *args], **popen_kwargs)

    def wait_listening(self, port: int, *, timeout: float = 5.0) -> None:
        """Wait until a TCP socket listens on *port* in the namespace (blocking)."""
        deadline = time.monotonic() + timeout
        while not self._listening(port):
            if time.monotonic() >= deadline:
                raise KernelPeerError(f"nothing listens on TCP port {port} after {timeout}s")
            time.sleep(0.02)

    async def await_listening(self, port: int, *, timeout: float = 5.0) -> None:
        """:meth:`wait_listening` for coroutines."""
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(self._listening, port):
            if time.monotonic() >= deadline:
                raise KernelPeerError(f"nothing listens on TCP port {port} after {timeout}s")
            await asyncio.sleep(0.02)

    def _listening(self, port: int) -> bool:
        # /proc/net/tcp read from a thread inside the namespace: no process to start.
        def listening() -> bool:
            for table in ("tcp", "tcp6"):
                try:
                    f = open(f"/proc/thread-self/net/{table}")
                except FileNotFoundError:       # no IPv6 in this kernel
                    continue
                with f:
                    next(f)
                    for line in f:
                        fields = line.split()
                        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                            return True
            return False
        return in_netns(self.name, listening)

    # ---------------------------------------------------------------- kernel knobs

    def sysctl(self, key: str, value: Any) -> None:
        """Set a sysctl in the namespace, e.g. ``peer.sysctl("net.ipv4.tcp_sack", 0)``
        (only ``net.*`` keys: the others are not per namespace)."""
        if not key.startswith("net.") or ".." in key or "/" in key:
            raise ValueError(f"not a per-namespace sysctl: {key!r}")

        def write() -> None:
            with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                f.write(str(value))
        in_netns(self.name, write)

    def netem(self, spec: str) -> None:
        """Impair what the kernel sends us: ``tc qdisc replace dev <if> root netem <spec>``,
        e.g. ``peer.netem("loss 5% delay 5ms 2ms reorder 10% duplicate 2%")``.

        Raises :class:`NetemUnavailable` if the kernel has no netem (see
        :meth:`netem_available`; then :meth:`TunTunnel.impair_rx` does the same
        job in Python).  For what we send, see :meth:`TunTunnel.impair`."""
        argv = self.ns_argv(["tc", "qdisc", "replace", "dev", self.ifname, "root", "netem",
                             *shlex.split(spec)])
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if cp.returncode != 0:
            if "qdisc kind is unknown" in cp.stderr:
                raise NetemUnavailable(
                    "this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM); "
                    "impair the kernel's packets with TunTunnel.impair_rx instead")
            raise KernelPeerError(f"failed (rc={cp.returncode}): {shlex.join(argv)}\n"
                                  f"{cp.stdout}{cp.stderr}".rstrip())

    def netem_available(self) -> bool:
        """Whether :meth:`netem` works here (tries it, then removes it)."""
        try:
            self.netem("delay 0ms")
        except NetemUnavailable:
            return False
        self.clear_netem()
        return True

    def clear_netem(self) -> None:
        """Remove the netem qdisc (back to the device's default; no error if none)."""
        cp = subprocess.run(self.ns_argv(["tc", "qdisc", "del", "dev", self.ifname, "root"]),
                            capture_output=True, text=True, timeout=30)
        if cp.returncode != 0 and not any(s in cp.stderr for s in (
                "No such file", "Cannot delete qdisc with handle of zero", "Invalid handle")):
            raise KernelPeerError(f"tc qdisc del failed: {cp.stderr.strip()}")

    def qdisc(self) -> str:
        """``tc qdisc show dev <if>`` in the namespace."""
        return self._check(self.ns_argv(["tc", "qdisc", "show", "dev", self.ifname])).stdout
