"""``erebus run``'s data path: IP packets between the namespace's TUN fd and the tunnel.

The kernel inside the namespace does TCP, UDP and ICMP; erebus only carries its
packets.  When ``-L``, ``-R``, ``--socks`` or ``--http-proxy`` are given as well, erebus'
own stack shares the virtual IP: the pump hands it what is addressed to its ports
(its ephemeral range, :data:`erebus.netstack.stack.EPHEMERAL`, and its listeners: the
``-R`` ports); the namespace's kernel takes its own ports from below that range
(:data:`erebus.runtime.nshelper.LOCAL_PORT_RANGE`), everything else goes to the
namespace, and what cannot be told apart (ICMP errors and echo replies, later
fragments) goes to both: each ignores what is not its own.

Out of the namespace: packets larger than the tunnel's MTU are answered with ICMP
"fragmentation needed" / ICMPv6 "packet too big"; router solicitations and MLD
reports are dropped (the tunnel has no router to solicit); a source address that is
not the tunnel's is dropped.  Every drop is counted by reason.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
from dataclasses import dataclass
from typing import Callable

from ..counters import CountersDict
from ..netstack.stack import EPHEMERAL
from ..wire import flow as flows
from ..wire.icmp import DEST_UNREACH, UNREACH_FRAG_NEEDED, build_icmp_error
from ..wire.icmp import ECHO_REQUEST as ICMP_ECHO_REQUEST
from ..wire.icmpv6 import ECHO_REQUEST as ICMPV6_ECHO_REQUEST
from ..wire.icmpv6 import build_packet_too_big, link_chatter
from ..wire.ipv4 import PROTO_ICMP, build_ipv4
from ..wire.ipv6 import NH_ICMPV6, build_ipv6

log = logging.getLogger("erebus.run")

READ_BATCH = 256                  # packets read from the TUN per wake-up
READ_SIZE = 65536


@dataclass(slots=True)
class PumpCounters(CountersDict):
    packets_out: int = 0          # namespace -> tunnel
    bytes_out: int = 0
    packets_in: int = 0           # tunnel -> namespace
    bytes_in: int = 0
    to_stack: int = 0             # tunnel -> erebus' own stack (-L/-R/--socks/--http-proxy)
    too_big: int = 0              # answered with ICMP fragmentation needed / too big
    ignored_icmpv6: int = 0       # router solicitations, MLD from the namespace
    wrong_source: int = 0         # not the tunnel's address
    tun_write_errors: int = 0


class _StackLink:
    """The PacketLink erebus' own stack sees: the tunnel's, minus what the pump
    steers to the namespace."""

    def __init__(self, pump: "TunPump"):
        self._pump = pump

    @property
    def info(self):
        return self._pump.tunnel.info

    def send_packet(self, packet: bytes) -> None:
        self._pump.tunnel.send_packet(packet)

    def set_receiver(self, receiver: Callable[[bytes], None]) -> None:
        self._pump._stack_receiver = receiver


class TunPump:
    def __init__(self, tunnel, fd: int, *, loop: asyncio.AbstractEventLoop | None = None):
        self.tunnel = tunnel
        self.fd = fd
        self.loop = loop or asyncio.get_running_loop()
        self.counters = PumpCounters()
        self._stack_receiver: Callable[[bytes], None] | None = None
        self._stack = None              # the NetStack, for its listeners
        self.sources: set[bytes] = set()
        self._mtu = 1500
        self._gateway4: str | None = None
        self._gateway6: str | None = None
        self.rebind(tunnel.info)
        tunnel.set_receiver(self._from_tunnel)
        self.loop.add_reader(fd, self._readable)
        self._closed = False

    def stack_link(self) -> _StackLink:
        """A PacketLink for a VpnStack that serves -L/-R/--socks/--http-proxy beside
        the namespace."""
        return _StackLink(self)

    def attach_stack(self, vpn) -> None:
        self._stack = vpn.stack

    def rebind(self, info) -> None:
        """A new session: its addresses and MTU."""
        self.sources = {ipaddress.ip_address(a).packed
                         for a in (info.virtual_ip, info.virtual_ip6) if a}
        self._mtu = info.mtu
        self._gateway4 = info.gateway
        self._gateway6 = info.gateway6

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.loop.remove_reader(self.fd)
            self.tunnel.set_receiver(lambda packet: None)

    # -- namespace -> tunnel -----------------------------------------------------------

    def _readable(self) -> None:
        counters = self.counters
        send = self.tunnel.send_packet
        for _ in range(READ_BATCH):
            try:
                packet = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EIO, errno.EBADFD, errno.EBADF):
                    log.debug("the namespace's TUN device is gone: %s", exc)
                    self.close()
                    return
                raise
            if not packet:
                self.close()
                return
            if len(packet) > self._mtu:
                self._too_big(packet)
                continue
            if flows.source(packet) not in self.sources:
                if not self._ignorable(packet):
                    counters.wrong_source += 1
                continue
            if self._ignorable(packet):
                continue
            counters.packets_out += 1
            counters.bytes_out += len(packet)
            send(packet)

    def _ignorable(self, packet: bytes) -> bool:
        """Router solicitations, neighbour discovery and MLD out of the namespace: the
        tunnel has no link and no router to ask."""
        if packet[0] >> 4 == 6 and link_chatter(packet):
            self.counters.ignored_icmpv6 += 1
            return True
        return False

    def _too_big(self, packet: bytes) -> None:
        """Answer a packet larger than the tunnel's MTU as a router would."""
        self.counters.too_big += 1
        if not flows.dont_fragment(packet):
            return
        try:
            if packet[0] >> 4 == 4:
                src = self._gateway4 or ipaddress.IPv4Address(packet[16:20]).compressed
                icmp = build_icmp_error(DEST_UNREACH, UNREACH_FRAG_NEEDED, packet,
                                        rest=self._mtu & 0xFFFF)
                answer = build_ipv4(src, bytes(packet[12:16]), PROTO_ICMP, icmp)
            else:
                src = self._gateway6 or ipaddress.IPv6Address(packet[24:40]).compressed
                dst = bytes(packet[8:24])
                answer = build_ipv6(src, dst, NH_ICMPV6, build_packet_too_big(
                    src, dst, packet, max(self._mtu, 1280)))
        except ValueError:
            return
        self._write(answer)

    # -- tunnel -> namespace -----------------------------------------------------------

    def _from_tunnel(self, packet: bytes) -> None:
        receiver = self._stack_receiver
        if receiver is None:
            self._write(packet)
            return
        where = self._steer(packet)
        if where & 1:
            self.counters.to_stack += 1
            receiver(packet)
        if where & 2:
            self._write(packet)

    def _steer(self, packet: bytes) -> int:
        """1: erebus' stack, 2: the namespace, 3: both."""
        f = flows.flow(packet)
        if f is None:
            return 3
        if f.icmp_type >= 0:
            # echo requests: the namespace's kernel answers; replies and errors: both
            return 2 if f.icmp_type in (ICMP_ECHO_REQUEST, ICMPV6_ECHO_REQUEST) else 3
        port = f.dst_port
        if EPHEMERAL[0] <= port <= EPHEMERAL[1]:
            return 1
        stack = self._stack
        if stack is not None and f.protocol == flows.PROTO_TCP and port in stack.listeners:
            return 1
        return 2

    def _write(self, packet: bytes) -> None:
        try:
            os.write(self.fd, packet)
        except OSError:
            self.counters.tun_write_errors += 1
            return
        self.counters.packets_in += 1
        self.counters.bytes_in += len(packet)
