"""The network stack of the virtual IP(s): IPv4 and IPv6 demultiplexing to TCP
connections, listeners and UDP sockets, ICMP/ICMPv6 echo and errors, RST for closed
ports, path MTU discovery for our TCP.  Sans-IO.

    stack = NetStack("198.19.1.2", mtu=1500, local_ip6="2001:2:0:180::1000")
    stack.receive(ip_packet, now)        # from the tunnel
    stack.output(now) -> [ip_packet]     # to the tunnel
    stack.timer() / stack.handle_timer(now)
    stack.take_changed() -> connections, listeners and sockets the application
                            should look at (data to read, room to write, closed ...)

Addresses are :mod:`erebus.wire.inet`'s: an IPv4 one an int, an IPv6 one 16 bytes, so a
connection's 4-tuple says its family.  Listeners and UDP sockets are per port and serve
both families (a dual-stack socket without the mapped addresses); a family the tunnel
has no address of is unreachable (ENETUNREACH).

It never sends a fragment: TCP segments fit the MTU by their MSS (the IPv6 one 20 bytes
less), and a UDP datagram that would not fit is refused.  Inbound fragments are
reassembled within limits (see :class:`erebus.wire.ipv4.Reassembler` and
:class:`erebus.wire.ipv6.Reassembler`).  An ICMP "fragmentation needed" or ICMPv6
"packet too big" that quotes a segment of ours in flight lowers that connection's MSS
(RFC 1191 / RFC 8201, never below 552 / 1280 bytes of MTU) and what was in flight is
sent again in smaller segments.  Neighbour and multicast listener discovery messages
(meaningless on a point-to-point tunnel) are ignored and counted; none are sent.

What a host on the VPN can make it hold is bounded where each table is declared:
half-open connections per listener (:data:`SYN_BACKLOG`; a SYN beyond is dropped
and counted, and a retransmitted SYN of a 4-tuple still waiting is not handed to the
application again), TIME-WAIT connections (:data:`MAX_TIME_WAIT`), each UDP socket's
datagrams and errors (:data:`UDP_QUEUE_LIMIT`), the UDP sockets the application
may bind (:data:`MAX_UDP_SOCKETS`), the ICMP errors we answer with
(:data:`ICMP_ERRORS_PER_SEC`), each connection's out-of-order data (its receive
buffer, :mod:`erebus.netstack.ooo`).  ICMP errors that quote no segment we have in
flight are ignored (RFC 5927).  Established connections are the application's to
bound (each -R connection is one local connection).
"""

from __future__ import annotations

import errno
import hashlib
import heapq
import itertools
import logging
import os
import random
from collections import deque
from dataclasses import dataclass, field

from ..errors import ParseError
from ..wire import icmp, icmpv6
from ..wire.inet import Addr, addr_str, to_addr
from ..wire.ipv4 import PROTO_ICMP, PROTO_TCP, PROTO_UDP, Reassembler, build_ipv4, \
    parse_ipv4
from ..wire.ipv6 import NH_ICMPV6, NH_NONE, build_ipv6, parse_ipv6, to_ip6
from ..wire.ipv6 import Reassembler as Reassembler6
from ..wire.tcp import ACK, RST, SYN, TcpSegment, build_tcp, parse_tcp
from ..wire.udp import build_udp, parse_udp
from .errors import NetError, NetErrorReason, TcpError, no_route
from .tcp import DEFAULT_RCV_BUF, DEFAULT_SND_BUF, SYNCHRONIZED, State, TcpConnection

log = logging.getLogger("erebus.netstack")

EPHEMERAL = (49152, 65535)
UDP_QUEUE_LIMIT = 256     # datagrams (and, apart, ICMP errors) queued per UDP socket
# UDP sockets bound at once (DNS lookups, datagram endpoints, SOCKS UDP associations);
# one more is refused with OSError, as a process runs out of descriptors
MAX_UDP_SOCKETS = 1024
# Half-open connections per listener: SYNs waiting for the application (deferred
# listeners dial their local target first) plus connections in SYN-RECEIVED.  Like
# Linux's listen backlog / somaxconn (128 for years); a SYN beyond it is dropped
# silently, as Linux does for a full SYN queue without syncookies, so that a real
# peer retries (its SYN is retransmitted after 1, 2, 4 ... s) instead of being refused.
SYN_BACKLOG = 128
# Connections in TIME-WAIT (a peer can make many by opening and closing): beyond this
# one closes at once instead, as Linux does past tcp_max_tw_buckets.
MAX_TIME_WAIT = 2048
# ICMP errors we send (port unreachable for UDP to a closed port): a token bucket
# like Linux's icmp_msgs_per_sec / icmp_msgs_burst.
ICMP_ERRORS_PER_SEC = 1000
ICMP_ERRORS_BURST = 50

# what an ICMP error means for the connection or datagram it quotes (any other type
# and code: UNREACHABLE, named by its numbers)
_ICMP_ERRORS = {
    (icmp.DEST_UNREACH, icmp.UNREACH_NET): (NetErrorReason.NET_UNREACHABLE,
                                             "network unreachable"),
    (icmp.DEST_UNREACH, icmp.UNREACH_HOST): (NetErrorReason.UNREACHABLE, "host unreachable"),
    (icmp.DEST_UNREACH, icmp.UNREACH_PROTOCOL): (NetErrorReason.UNREACHABLE,
                                                 "protocol unreachable"),
    (icmp.DEST_UNREACH, icmp.UNREACH_PORT): (NetErrorReason.REFUSED, "connection refused"),
    (icmp.DEST_UNREACH, icmp.UNREACH_ADMIN_PROHIBITED): (NetErrorReason.UNREACHABLE,
                                                         "administratively prohibited"),
    (icmp.TIME_EXCEEDED, icmp.EXCEEDED_TTL): (NetErrorReason.TTL_EXPIRED,
                                              "TTL expired in transit"),
}
# the same for ICMPv6 (RFC 4443; the words Linux's strerror gives for its errno)
_ICMPV6_ERRORS = {
    (icmpv6.DEST_UNREACH, icmpv6.UNREACH_NO_ROUTE): (NetErrorReason.NET_UNREACHABLE,
                                                     "network unreachable"),
    (icmpv6.DEST_UNREACH, icmpv6.UNREACH_ADMIN_PROHIBITED): (
        NetErrorReason.UNREACHABLE, "administratively prohibited"),
    (icmpv6.DEST_UNREACH, icmpv6.UNREACH_BEYOND_SCOPE): (NetErrorReason.UNREACHABLE,
                                                         "beyond the source's scope"),
    (icmpv6.DEST_UNREACH, icmpv6.UNREACH_ADDRESS): (NetErrorReason.UNREACHABLE,
                                                    "host unreachable"),
    (icmpv6.DEST_UNREACH, icmpv6.UNREACH_PORT): (NetErrorReason.REFUSED,
                                                 "connection refused"),
    (icmpv6.DEST_UNREACH, icmpv6.UNREACH_SOURCE_POLICY): (
        NetErrorReason.UNREACHABLE, "source address failed policy"),
    (icmpv6.DEST_UNREACH, icmpv6.UNREACH_REJECT_ROUTE): (NetErrorReason.UNREACHABLE,
                                                         "reject route"),
    (icmpv6.TIME_EXCEEDED, icmpv6.EXCEEDED_HOP_LIMIT): (NetErrorReason.TTL_EXPIRED,
                                                        "hop limit exceeded in transit"),
}
# the smallest path MTU a "too big" message can make us use (Linux's min_pmtu for
# IPv4; RFC 8200's minimum link MTU for IPv6): one saying less is taken as this
MIN_PMTU4 = 552
MIN_PMTU6 = 1280


@dataclass(slots=True)
class Counters:
    packets_in: int = 0
    packets_out: int = 0
    malformed: int = 0
    not_for_us: int = 0
    unknown_protocol: int = 0
    rst_sent: int = 0
    echo_replies: int = 0
    icmp_errors: int = 0
    udp_dropped: int = 0          # datagrams and errors beyond a socket's queue
    udp_filtered: int = 0         # to a connected socket from another address
    syn_dropped: int = 0          # SYNs beyond a listener's backlog
    syn_retransmits: int = 0      # SYNs of a 4-tuple already waiting for an answer
    icmp_ignored: int = 0         # ICMP errors quoting no segment we have in flight
    icmp_rate_limited: int = 0    # ICMP errors we did not send (rate limit)
    time_wait_overflow: int = 0   # connections closed instead of entering TIME-WAIT
    discovery_ignored: int = 0    # ICMPv6 neighbour/listener discovery, multicast dests
    pmtu_lowered: int = 0         # connections whose MSS a "too big" message lowered


@dataclass(slots=True)
class PendingSyn:
    """A SYN waiting for the application to accept or refuse it (deferred listeners:
    dial the local target first, then answer)."""

    listener: "Listener"
    remote_ip: Addr
    remote_port: int
    segment: TcpSegment
    received: float

    @property
    def peer(self) -> tuple[str, int]:
        return addr_str(self.remote_ip), self.remote_port


@dataclass(eq=False)
class Listener:
    port: int
    defer: bool = False
    backlog: int = SYN_BACKLOG       # bound of half_open (see SYN_BACKLOG)
    accepted: deque = field(default_factory=deque)       # established connections
    pending: deque = field(default_factory=deque)        # PendingSyn for the app (defer)
    # every SYN not answered yet (given to the app or not), by (remote ip, port): a
    # retransmitted SYN finds its entry and is not handed out again
    unanswered: dict = field(default_factory=dict)
    syn_received: set = field(default_factory=set)       # connections in SYN-RECEIVED
    closed: bool = False

    @property
    def half_open(self) -> int:
        return len(self.unanswered) + len(self.syn_received)


@dataclass(eq=False)
class UdpSocket:
    """A bound UDP port.  ``remote`` (ip, port), if set, connects it as connect(2)
    does: only datagrams from there are delivered (others are answered as by a closed
    port) and only ICMP errors quoting a datagram to there.  ``queue`` and ``errors``
    hold at most ``limit`` entries each; what comes beyond is dropped and counted in
    ``dropped`` (and in the stack's ``udp_dropped``)."""

    port: int
    remote: tuple[Addr, int] | None = None
    limit: int = UDP_QUEUE_LIMIT
    queue: deque = field(default_factory=deque)          # (payload, (ip_str, port))
    errors: deque = field(default_factory=deque)         # (NetError, (ip_str, port))
    dropped: int = 0
    closed: bool = False


class NetStack:
    """``local_ip`` is the IPv4 address (None: the tunnel has none), ``local_ip6`` the
    IPv6 one (None: none).  ``mss`` is the IPv4 MSS (``mtu - 40`` unless an embedder
    caps it, as OpenVPN's mssfix does); the IPv6 one is 20 bytes less."""

    def __init__(self, local_ip, mtu: int = 1500, *, local_ip6=None, rng=os.urandom,
                 rcv_buf: int = DEFAULT_RCV_BUF, snd_buf: int = DEFAULT_SND_BUF):
        self.local_ip: int | None = None if local_ip is None else to_addr(local_ip)
        self.local_ip6: bytes | None = None if local_ip6 is None else to_ip6(local_ip6)
        if self.local_ip is not None and type(self.local_ip) is not int:
            raise ValueError(f"local_ip {local_ip!r} is not an IPv4 address: give it as "
                             "local_ip6")
        if self.local_ip is None and self.local_ip6 is None:
            raise ValueError("a stack needs an IPv4 or an IPv6 address")
        self.mtu = mtu
        self.mss = mtu - 40
        self.rcv_buf = rcv_buf
        self.snd_buf = snd_buf
        self.conns: dict[tuple[int, int, int, int], TcpConnection] = {}
        self.listeners: dict[int, Listener] = {}
        self.udp: dict[int, UdpSocket] = {}
        self.counters = Counters()
        self._secret = rng(32)
        self._rand = random.Random(rng(16))
        # the IPv4 identification of the next packet (RFC 6864: one counter for every
        # packet we send, all of them atomic: DF set, never fragmented)
        self._ident = int.from_bytes(rng(2), "big")
        self._out: list[bytes] = []
        # connections with output due, in the order they were touched (a dict, not a
        # set: a set's order is the objects' addresses, and the stack is deterministic)
        self._dirty: dict[TcpConnection, None] = {}
        self._changed: set = set()
        self._heap: list = []
        self._tick = itertools.count()
        self._reasm = Reassembler()
        self._reasm6 = Reassembler6()
        self._time_wait: set[TcpConnection] = set()
        self._icmp_tokens = float(ICMP_ERRORS_BURST)
        self._icmp_last: float | None = None

    # -- application calls ---------------------------------------------------------------

    @property
    def mss6(self) -> int:
        """The MSS of IPv6 connections: the IPv4 one less the 20 bytes IPv6's header
        is longer."""
        return max(64, self.mss - 20)

    def local_for(self, remote: Addr) -> int | bytes:
        """Our address of ``remote``'s family; OSError(ENETUNREACH) if we have none."""
        local = self.local_ip if type(remote) is int else self.local_ip6
        if local is None:
            raise no_route(addr_str(remote))
        return local

    def connect(self, remote_ip, remote_port: int, now: float, **kw) -> TcpConnection:
        rip = to_addr(remote_ip)
        lip = self.local_for(rip)
        port = self._ephemeral(lambda p: (rip, remote_port, lip, p) not in self.conns)
        conn = self._new_conn(port, rip, remote_port, now, **kw)
        conn.open_active(now)
        self._touch(conn)
        return conn

    def listen(self, port: int, *, defer: bool = False, backlog: int = SYN_BACKLOG) -> Listener:
        if port in self.listeners:
            raise OSError(f"TCP port {port} is already listened on")
        listener = Listener(port, defer, backlog)
        self.listeners[port] = listener
        return listener

    def unlisten(self, listener: Listener) -> None:
        listener.closed = True
        if self.listeners.get(listener.port) is listener:
            del self.listeners[listener.port]
        for syn in listener.unanswered.values():
            self._refuse(syn)
        listener.unanswered.clear()
        listener.pending.clear()

    def accept(self, syn: PendingSyn, now: float) -> TcpConnection | None:
        """Answer a deferred SYN with SYN-ACK; the connection comes to ``accepted``.

        None, and nothing sent, if the SYN is no longer waiting (already answered, or
        reset when its listener closed): the peer's 4-tuple is not ours to open."""
        if not self._take_unanswered(syn):
            return None
        listener = syn.listener
        key = (syn.remote_ip, syn.remote_port, self.local_for(syn.remote_ip), listener.port)
        old = self.conns.get(key)
        if old is not None:                    # never two connections on one 4-tuple
            self.abort(old, now)
        conn = self._new_conn(listener.port, syn.remote_ip, syn.remote_port, now)
        conn.listener = listener
        conn.open_passive(syn.segment, now)
        listener.syn_received.add(conn)
        self._touch(conn)
        return conn

    def refuse(self, syn: PendingSyn) -> bool:
        """Answer a deferred SYN with RST (the peer sees "connection refused").

        False, and nothing sent, if the SYN is no longer waiting (answered already)."""
        if not self._take_unanswered(syn):
            return False
        self._refuse(syn)
        return True

    def _take_unanswered(self, syn: PendingSyn) -> bool:
        listener = syn.listener
        key = (syn.remote_ip, syn.remote_port)
        if listener.closed or listener.unanswered.get(key) is not syn:
            return False
        del listener.unanswered[key]
        return True

    def _refuse(self, syn: PendingSyn) -> None:
        seg = syn.segment
        self._send_rst(syn.remote_ip, seg.dst_port, seg.src_port, 0,
                       (seg.seq + 1) % (1 << 32), RST | ACK)

    def udp_bind(self, port: int = 0, *, remote=None,
                 limit: int = UDP_QUEUE_LIMIT) -> UdpSocket:
        """A UDP socket on ``port`` (0: an ephemeral one), connected to ``remote``
        ((ip, port)) if given.  OSError if the port is taken or
        :data:`MAX_UDP_SOCKETS` are bound already."""
        if len(self.udp) >= MAX_UDP_SOCKETS:
            raise OSError(errno.EMFILE, f"too many UDP sockets ({MAX_UDP_SOCKETS} are "
                          "bound)")
        if not 0 <= port < 65536:
            raise OSError(errno.EINVAL, f"UDP port {port} is out of range")
        if port == 0:
            port = self._ephemeral(lambda p: p not in self.udp)
        elif port in self.udp:
            raise OSError(errno.EADDRINUSE, f"UDP port {port} is in use")
        if remote is not None:
            remote = (to_addr(remote[0]), remote[1])
        sock = UdpSocket(port, remote, limit)
        self.udp[port] = sock
        return sock

    def udp_close(self, sock: UdpSocket) -> None:
        sock.closed = True
        if self.udp.get(sock.port) is sock:
            del self.udp[sock.port]

    def udp_send(self, sock: UdpSocket, payload: bytes, remote_ip, remote_port: int) -> None:
        rip = to_addr(remote_ip)
        lip = self.local_for(rip)
        if len(payload) + (28 if type(rip) is int else 48) > self.mtu:
            raise OSError(errno.EMSGSIZE, f"UDP datagram of {len(payload)} bytes does not "
                          f"fit the tunnel MTU {self.mtu}")
        self._emit(rip, PROTO_UDP, build_udp(lip, rip, sock.port, remote_port, payload))

    def udp_max_payload(self, ipv6: bool = False) -> int:
        """The largest UDP payload that fits the MTU unfragmented, by family."""
        return self.mtu - (48 if ipv6 else 28)

    def touch(self, conn: TcpConnection) -> None:
        """The application changed something (sent, read, shut down): output is due."""
        self._touch(conn)

    def abort(self, conn: TcpConnection, now: float) -> None:
        rst = conn.abort(now)
        if rst is not None:
            self._emit(conn.remote_ip, PROTO_TCP, rst)
            self.counters.rst_sent += 1
        self._forget(conn)

    @property
    def has_changes(self) -> bool:
        return bool(self._changed)

    def take_changed(self) -> set:
        changed, self._changed = self._changed, set()
        return changed

    # -- input ---------------------------------------------------------------------------

    def receive(self, packet, now: float) -> None:
        c = self.counters
        c.packets_in += 1
        if packet and packet[0] >> 4 == 6:
            self._receive6(packet, now)
            return
        try:
            header, payload = parse_ipv4(packet)
        except ParseError as exc:
            c.malformed += 1
            log.debug("dropped packet: %s", exc)
            return
        if header.dst != self.local_ip:
            c.not_for_us += 1
            return
        if header.flags & 1 or header.frag_offset:        # header.is_fragment
            whole = self._reasm.add(header, payload, now)
            if whole is None:
                return
            payload = memoryview(whole)
        proto = header.protocol
        src = header.src
        try:
            if proto == PROTO_TCP:
                self._receive_tcp(src, header.dst, parse_tcp(payload, src, header.dst), now)
            elif proto == PROTO_UDP:
                self._receive_udp(src, header.dst, payload, packet, now)
            elif proto == PROTO_ICMP:
                self._receive_icmp(src, payload)
            else:
                c.unknown_protocol += 1
        except ParseError as exc:
            c.malformed += 1
            log.debug("dropped %s segment from %s: %s", proto, addr_str(src), exc)

    def _receive6(self, packet, now: float) -> None:
        c = self.counters
        try:
            header, payload = parse_ipv6(packet)
        except ParseError as exc:
            c.malformed += 1
            log.debug("dropped packet: %s", exc)
            return
        dst = header.dst
        if dst != self.local_ip6:
            if dst[0] == 0xFF:
                c.discovery_ignored += 1       # all-nodes, solicited-node, MLD: not ours
            else:
                c.not_for_us += 1
            return
        if header.is_fragment:
            whole = self._reasm6.add(header, payload, now)
            if whole is None:
                return
            header, payload = whole
            packet = None                       # quote the reassembled packet, if any
        proto = header.protocol
        src = header.src
        try:
            if proto == PROTO_TCP:
                self._receive_tcp(src, dst, parse_tcp(payload, src, dst), now)
            elif proto == PROTO_UDP:
                if packet is None:
                    packet = build_ipv6(src, dst, PROTO_UDP, payload,
                                        hop_limit=header.hop_limit)
                self._receive_udp(src, dst, payload, packet, now)
            elif proto == NH_ICMPV6:
                self._receive_icmp6(src, dst, payload)
            elif proto != NH_NONE:
                c.unknown_protocol += 1
        except ParseError as exc:
            c.malformed += 1
            log.debug("dropped %s segment from %s: %s", proto, addr_str(src), exc)

    def _receive_tcp(self, src: Addr, lip: Addr, seg: TcpSegment, now: float) -> None:
        key = (src, seg.src_port, lip, seg.dst_port)
        conn = self.conns.get(key)
        if conn is not None:
            was = conn.state
            rst = conn.receive(seg, now)
            if rst is not None:
                self._emit(src, PROTO_TCP, rst)
                self.counters.rst_sent += 1
            state = conn.state
            if was is State.SYN_RECEIVED and state is not State.SYN_RECEIVED:
                listener = conn.listener
                if listener is not None:
                    listener.syn_received.discard(conn)
                    if state in SYNCHRONIZED and not listener.closed:
                        listener.accepted.append(conn)
                        self._changed.add(listener)
            if state is State.TIME_WAIT and conn not in self._time_wait:
                if len(self._time_wait) >= MAX_TIME_WAIT:
                    self.counters.time_wait_overflow += 1
                    conn.end_time_wait()
                else:
                    self._time_wait.add(conn)
            self._touch(conn)
            if conn.state is State.CLOSED:
                self._forget(conn)
            return
        flags = seg.flags
        if flags & RST:
            return
        listener = self.listeners.get(seg.dst_port)
        if listener is not None and flags & SYN and not flags & ACK:
            self._receive_syn(listener, src, seg, now)
            return
        # no such connection: RST (RFC 9293 3.10.7.1), so the peer sees "refused"
        if flags & ACK:
            self._send_rst(src, seg.dst_port, seg.src_port, seg.ack, 0, RST)
        else:
            self._send_rst(src, seg.dst_port, seg.src_port, 0,
                           (seg.seq + seg.seg_len) % (1 << 32), RST | ACK)

    def _receive_syn(self, listener: Listener, src: Addr, seg: TcpSegment,
                     now: float) -> None:
        if listener.defer and (src, seg.src_port) in listener.unanswered:
            self.counters.syn_retransmits += 1     # still deciding: dial once per 4-tuple
            return
        if listener.half_open >= listener.backlog or len(listener.accepted) >= \
                listener.backlog:
            self.counters.syn_dropped += 1         # full: dropped, the peer retries
            return
        if listener.defer:
            held = TcpSegment(seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.flags,
                              seg.window, mss=seg.mss, wscale=seg.wscale,
                              sack_permitted=seg.sack_permitted, ts_val=seg.ts_val,
                              ts_ecr=seg.ts_ecr)
            pending = PendingSyn(listener, src, seg.src_port, held, now)
            listener.unanswered[(src, seg.src_port)] = pending
            listener.pending.append(pending)
            self._changed.add(listener)
            return
        conn = self._new_conn(listener.port, src, seg.src_port, now)
        conn.listener = listener
        conn.open_passive(seg, now)
        listener.syn_received.add(conn)
        self._touch(conn)

    def _receive_udp(self, src: Addr, lip: Addr, payload, packet, now: float) -> None:
        dgram = parse_udp(payload, src, lip)
        sock = self.udp.get(dgram.dst_port)
        if sock is not None and sock.remote is not None and \
                sock.remote != (src, dgram.src_port):
            self.counters.udp_filtered += 1
            sock = None                  # a connected socket: as if the port were closed
        if sock is None:
            # like a kernel: port unreachable, quoting the datagram (rate-limited)
            if type(src) is int:
                if self._icmp_allowed(now):
                    self._emit(src, PROTO_ICMP, icmp.build_icmp_error(
                        icmp.DEST_UNREACH, icmp.UNREACH_PORT, packet))
            elif icmpv6.error_allowed(packet, icmpv6.DEST_UNREACH, icmpv6.UNREACH_PORT) \
                    and self._icmp_allowed(now):
                self._emit(src, NH_ICMPV6, icmpv6.build_dest_unreachable(lip, src, packet))
            return
        if len(sock.queue) >= sock.limit:
            sock.dropped += 1
            self.counters.udp_dropped += 1
            return
        sock.queue.append((bytes(dgram.payload), (addr_str(src), dgram.src_port)))
        self._changed.add(sock)

    def _receive_icmp(self, src: int, payload) -> None:
        message = icmp.parse_icmp(payload)
        if isinstance(message, icmp.IcmpEcho):
            if message.type == icmp.ECHO_REQUEST:
                self.counters.echo_replies += 1
                self._emit(src, PROTO_ICMP, icmp.build_echo_reply(message))
            return
        if not isinstance(message, icmp.IcmpError):
            return
        self.counters.icmp_errors += 1
        orig = message.original
        if orig.src != self.local_ip or orig.src_port is None:
            return
        mtu = message.next_hop_mtu
        if mtu is not None:                          # fragmentation needed (RFC 1191)
            if orig.protocol == PROTO_TCP and mtu:   # 0: a pre-1191 router, no size
                self._too_big(orig, max(mtu, MIN_PMTU4) - 40)
            return
        reason, text = _ICMP_ERRORS.get((message.type, message.code), (
            NetErrorReason.UNREACHABLE, f"ICMP type {message.type} code {message.code}"))
        self._icmp_error(orig, reason, f"{text} (from {addr_str(src)})")

    def _receive_icmp6(self, src: bytes, dst: bytes, payload) -> None:
        message = icmpv6.parse_icmpv6(payload, src, dst)
        if isinstance(message, icmpv6.Icmpv6Echo):
            if message.type == icmpv6.ECHO_REQUEST:
                self.counters.echo_replies += 1
                self._emit(src, NH_ICMPV6, icmpv6.build_echo_reply(dst, src, message))
            return
        if isinstance(message, icmpv6.Icmpv6Ignored):
            self.counters.discovery_ignored += 1
            return
        if not isinstance(message, icmpv6.Icmpv6Error):
            return
        self.counters.icmp_errors += 1
        orig = message.original
        if orig.src != self.local_ip6 or orig.src_port is None:
            return
        if message.type == icmpv6.PACKET_TOO_BIG:    # RFC 8201
            if orig.protocol == PROTO_TCP:
                self._too_big(orig, max(message.mtu, MIN_PMTU6) - 60)
            return
        reason, text = _ICMPV6_ERRORS.get((message.type, message.code), (
            NetErrorReason.UNREACHABLE, f"ICMPv6 type {message.type} code {message.code}"))
        self._icmp_error(orig, reason, f"{text} (from {addr_str(src)})")

    def _quoted_conn(self, orig) -> TcpConnection | None:
        """The connection an ICMP error's quoted TCP segment belongs to, if that
        segment is one it has in flight (RFC 5927); else None, counted as ignored."""
        conn = self.conns.get((orig.dst, orig.dst_port, orig.src, orig.src_port))
        if conn is None:
            return None
        if orig.tcp_seq is None or not conn.quotes_our_segment(orig.tcp_seq):
            self.counters.icmp_ignored += 1
            return None
        return conn

    def _too_big(self, orig, mss: int) -> None:
        conn = self._quoted_conn(orig)
        if conn is not None and conn.path_mtu(mss):
            self.counters.pmtu_lowered += 1
            log.debug("%r: path MTU lowered, MSS now %d", conn, conn.mss)
            self._touch(conn)

    def _icmp_error(self, orig, reason: NetErrorReason, text: str) -> None:
        if orig.protocol == PROTO_TCP:
            conn = self._quoted_conn(orig)
            if conn is not None:
                conn.icmp_unreachable(TcpError(reason, text))
                self._touch(conn)
                if conn.state is State.CLOSED:
                    self._forget(conn)     # frees its 4-tuple and its listener's slot
        elif orig.protocol == PROTO_UDP:
            sock = self.udp.get(orig.src_port)
            if sock is not None:
                if sock.remote is not None and sock.remote != (orig.dst, orig.dst_port):
                    self.counters.icmp_ignored += 1     # not about what it sends
                    return
                if len(sock.errors) >= sock.limit:
                    sock.dropped += 1
                    self.counters.udp_dropped += 1
                    return
                sock.errors.append((NetError(reason, text),
                                    (addr_str(orig.dst), orig.dst_port)))
                self._changed.add(sock)

    # -- output and timers ---------------------------------------------------------------

    def output(self, now: float) -> list[bytes]:
        dirty, self._dirty = self._dirty, {}
        emit = self._emit
        for conn in dirty:
            for seg in conn.output(now):
                emit(conn.remote_ip, PROTO_TCP, seg)
            self._schedule(conn)
            if conn.state is State.CLOSED:
                self._forget(conn)
        out, self._out = self._out, []
        self.counters.packets_out += len(out)
        return out

    def timer(self) -> float | None:
        heap = self._heap
        reasm = self._reasm.next_deadline()
        reasm6 = self._reasm6.next_deadline()
        if reasm6 is not None and (reasm is None or reasm6 < reasm):
            reasm = reasm6
        while heap:
            deadline, _, conn = heap[0]
            if conn.timer() == deadline:
                return deadline if reasm is None else min(deadline, reasm)
            heapq.heappop(heap)            # stale entry
        return reasm

    def handle_timer(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, conn = heapq.heappop(heap)
            if conn.timer() != deadline:
                continue
            conn.handle_timer(now)
            self._touch(conn)
            if conn.state is State.CLOSED:
                self._forget(conn)
        self._reasm.expire(now)
        self._reasm6.expire(now)

    # -- internals -----------------------------------------------------------------------

    def _touch(self, conn: TcpConnection) -> None:
        self._dirty[conn] = None
        self._changed.add(conn)

    def _schedule(self, conn: TcpConnection) -> None:
        deadline = conn.timer()
        if deadline is not None:
            heapq.heappush(self._heap, (deadline, next(self._tick), conn))
            if len(self._heap) > 4 * len(self.conns) + 64:
                self._heap = [e for e in self._heap if e[2].timer() == e[0]]
                heapq.heapify(self._heap)

    def _forget(self, conn: TcpConnection) -> None:
        if self.conns.get(conn.key) is conn:
            del self.conns[conn.key]
        self._time_wait.discard(conn)
        if conn.listener is not None:
            conn.listener.syn_received.discard(conn)
        self._changed.add(conn)

    def _icmp_allowed(self, now: float) -> bool:
        last = self._icmp_last
        if last is not None:
            self._icmp_tokens = min(float(ICMP_ERRORS_BURST), self._icmp_tokens + max(
                0.0, now - last) * ICMP_ERRORS_PER_SEC)
        self._icmp_last = now
        if self._icmp_tokens < 1:
            self.counters.icmp_rate_limited += 1
            return False
        self._icmp_tokens -= 1
        return True

    def _emit(self, dst: Addr, proto: int, payload: bytes) -> None:
        if type(dst) is int:
            ident = self._ident
            self._ident = (ident + 1) & 0xFFFF
            self._out.append(build_ipv4(self.local_ip, dst, proto, payload, ident=ident))
        else:
            self._out.append(build_ipv6(self.local_ip6, dst, proto, payload))

    def _send_rst(self, dst: Addr, sport: int, dport: int, seq: int, ack: int, flags: int):
        self.counters.rst_sent += 1
        self._emit(dst, PROTO_TCP, build_tcp(self.local_for(dst), dst, sport, dport, seq,
                                             ack, flags, 0))

    def _new_conn(self, local_port: int, rip: Addr, rport: int, now: float,
                  **kw) -> TcpConnection:
        lip = self.local_for(rip)
        conn = TcpConnection(lip, local_port, rip, rport,
                             iss=self._isn(lip, local_port, rip, rport, now),
                             mss=self.mss if type(rip) is int else self.mss6,
                             now=now, rcv_buf=kw.pop("rcv_buf", self.rcv_buf),
                             snd_buf=kw.pop("snd_buf", self.snd_buf), **kw)
        self.conns[conn.key] = conn
        return conn

    def _isn(self, lip: Addr, lport: int, rip: Addr, rport: int, now: float) -> int:
        """RFC 6528: a 4-microsecond clock plus a keyed hash of the connection's ids."""
        ids = f"{lip},{lport},{rip},{rport}" if type(rip) is int else \
            f"{lip.hex()},{lport},{rip.hex()},{rport}"
        h = hashlib.blake2s(ids.encode(), key=self._secret, digest_size=4).digest()
        return (int(now * 250_000) + int.from_bytes(h, "big")) % (1 << 32)

    def _ephemeral(self, free) -> int:
        lo, hi = EPHEMERAL
        start = self._rand.randint(lo, hi)
        for i in range(hi - lo + 1):
            port = lo + (start - lo + i) % (hi - lo + 1)
            if free(port) and port not in self.listeners:
                return port
        raise OSError("no free ephemeral port")
