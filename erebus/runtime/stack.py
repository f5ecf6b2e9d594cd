"""The asyncio shell of the network stack: connections through the VPN as ordinary
asyncio transports and streams.

    vpn = VpnStack(tunnel)                         # any erebus.tunnel.PacketLink
    reader, writer = await vpn.open_connection("198.18.2.2", 80)
    server = await vpn.start_server(handler, 8080) # on the virtual IP
    transport, protocol = await vpn.create_datagram_endpoint(factory)   # UDP

Each TCP connection is an :class:`asyncio.Transport` (:class:`TcpTransport`), so
any :class:`asyncio.Protocol` runs over it, and asyncio's own StreamReader and
StreamWriter give the stream API with their usual flow control: a reader that
does not read pauses the transport, which stops taking data from the TCP
receive buffer, which closes the advertised window.

Each UDP socket is an :class:`asyncio.DatagramTransport` (:class:`UdpTransport`)
for an :class:`asyncio.DatagramProtocol`: ``datagram_received(data, addr)``,
``error_received(exc)`` (an ICMP error from the tunnel: port unreachable is
ConnectionRefusedError) and ``connection_lost``.  Its receive queue is bounded
(:data:`erebus.netstack.stack.UDP_QUEUE_LIMIT` datagrams while it is paused or
between two passes; more are dropped and counted), and so is the number of sockets
(:data:`erebus.netstack.stack.MAX_UDP_SOCKETS`).

Batching: packets from the tunnel go into the stack as they come; the stack's
output is produced once per event-loop pass (``call_soon``), so a burst of
segments is answered by one ACK and writes made in one pass share segments.
"""

from __future__ import annotations

import asyncio
import logging

from ..netstack.errors import NetError, NetErrorReason
from ..netstack.stack import SYN_BACKLOG, UDP_QUEUE_LIMIT, Listener, NetStack, PendingSyn, \
    UdpSocket
from ..netstack.tcp import SYNCHRONIZED, State, TcpConnection
from ..tunnel import PacketLink
from ..wire.inet import MappedAddressError, addr_str, to_addr

log = logging.getLogger("erebus.stack")

WRITE_HIGH = 256 * 1024
WRITE_LOW = 64 * 1024


_OS_ERRORS = {NetErrorReason.REFUSED: ConnectionRefusedError,
              NetErrorReason.RESET: ConnectionResetError,
              NetErrorReason.TIMED_OUT: TimeoutError}


def _error_for(error: NetError | None) -> OSError:
    """The OSError a socket would raise for ``error``, with its message (None: a
    connection that closed before it opened, with no reason from the peer)."""
    if error is None:
        return OSError("connection failed")
    exc = _OS_ERRORS.get(error.reason, OSError)(str(error))
    exc.reason = error.reason            # for the SOCKS reply code (expose/socks.py)
    return exc


class TcpTransport(asyncio.Transport):
    """One TCP connection of the stack, seen as an asyncio transport."""

    def __init__(self, vpn: "VpnStack", conn: TcpConnection):
        super().__init__()
        self._vpn = vpn
        self._conn = conn
        self._protocol: asyncio.BaseProtocol | None = None
        self._wbuf = bytearray()        # written but not yet taken by the send buffer
        self._write_paused = False
        self._read_paused = False
        self._eof_wanted = False        # write_eof() or close(): FIN after the data
        self._closing = False
        self._eof_delivered = False
        self._lost = False
        self._connected = False
        self._waiter: asyncio.Future | None = None
        self._on_fail = None

    # -- asyncio.Transport ---------------------------------------------------------------

    def get_extra_info(self, name, default=None):
        c = self._conn
        if name == "peername":
            return addr_str(c.remote_ip), c.remote_port
        if name == "sockname":
            return addr_str(c.local_ip), c.local_port
        if name == "tcp":
            return c
        return default

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def set_protocol(self, protocol) -> None:
        self._protocol = protocol

    def get_protocol(self):
        return self._protocol

    def is_reading(self) -> bool:
        return not self._read_paused and not self._lost

    def pause_reading(self) -> None:
        self._read_paused = True

    def resume_reading(self) -> None:
        if self._read_paused:
            self._read_paused = False
            self._vpn._changed(self)

    def write(self, data) -> None:
        if self._eof_wanted or self._lost:
            if self._lost:
                return                   # like asyncio: writes after loss are dropped
            raise RuntimeError("write after write_eof() or close()")
        if not data:
            return
        conn = self._conn
        if not self._wbuf and conn.state in (State.ESTABLISHED, State.CLOSE_WAIT):
            n = conn.send(data)
            if n < len(data):
                self._wbuf += memoryview(data)[n:]
        else:
            self._wbuf += data
        self._vpn._touch(conn)
        self._check_write_pause()

    def writelines(self, list_of_data) -> None:
        for data in list_of_data:
            self.write(data)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._eof_wanted:
            return
        self._eof_wanted = True
        self._push_writes()

    def close(self) -> None:
        """Send what is buffered, then FIN; stop delivering data."""
        if self._closing:
            return
        self._closing = True
        self._read_paused = False
        self.write_eof()
        self._vpn._changed(self)

    def abort(self) -> None:
        if self._lost:
            return
        self._closing = True
        self._vpn._abort(self)
        self._connection_lost(None)

    def get_write_buffer_size(self) -> int:
        return len(self._wbuf)

    def get_write_buffer_limits(self):
        return WRITE_LOW, WRITE_HIGH

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        pass

    # -- driven by the VpnStack ----------------------------------------------------------

    def _check_write_pause(self) -> None:
        if not self._write_paused and len(self._wbuf) > WRITE_HIGH:
            self._write_paused = True
            try:
                self._protocol.pause_writing()
            except Exception:                      # noqa: BLE001 - a protocol's bug
                log.exception("pause_writing failed")

    def _push_writes(self) -> None:
        conn = self._conn
        if self._wbuf and conn.state in (State.ESTABLISHED, State.CLOSE_WAIT):
            n = conn.send(self._wbuf)
            if n:
                del self._wbuf[:n]
                self._vpn._touch(conn)
        if self._write_paused and len(self._wbuf) <= WRITE_LOW:
            self._write_paused = False
            try:
                self._protocol.resume_writing()
            except Exception:                      # noqa: BLE001
                log.exception("resume_writing failed")
        if self._eof_wanted and not self._wbuf and not conn.fin_queued and \
                conn.state in (State.ESTABLISHED, State.CLOSE_WAIT):
            conn.shutdown()                  # once: touching it again every pass would spin
            self._vpn._touch(conn)

    def _update(self) -> None:
        """The connection changed: deliver data, EOF, room to write, loss."""
        conn = self._conn
        if self._lost:
            return
        if not self._connected:
            if conn.state in SYNCHRONIZED:
                self._connected = True
                if self._waiter is not None and not self._waiter.done():
                    self._waiter.set_result(None)
            elif conn.state is State.CLOSED:
                error = _error_for(conn.failure)
                if self._waiter is not None and not self._waiter.done():
                    self._waiter.set_exception(error)
                if self._on_fail is not None:
                    self._on_fail()
                self._lost = True
                self._vpn._forget(self)
                return
            else:
                return
        proto = self._protocol
        if proto is None:
            return
        if conn.readable:
            if self._closing:
                conn.read()                      # closed for reading: discard
                self._vpn._touch(conn)
            elif not self._read_paused:
                chunks = conn.read()
                self._vpn._touch(conn)
                # one delivery per pass: a burst of segments becomes one write downstream
                proto.data_received(chunks[0] if len(chunks) == 1 else b"".join(chunks))
                if self._lost:
                    return
        if conn.at_eof and not self._eof_delivered and not self._read_paused:
            self._eof_delivered = True
            keep_open = False
            if not self._closing:
                keep_open = proto.eof_received()
            if not keep_open:
                self.close()
        self._push_writes()
        if conn.state is State.CLOSED:
            self._connection_lost(_error_for(conn.failure) if conn.failure else None)
        elif self._closing and self._eof_delivered and conn.state in (
                State.TIME_WAIT, State.LAST_ACK, State.CLOSING) and not self._wbuf:
            self._connection_lost(None)
        elif self._closing and conn.state is State.FIN_WAIT_2:
            # we are done; the peer's FIN is the stack's business now (orphan)
            self._connection_lost(None)

    def _connection_lost(self, exc) -> None:
        if self._lost:
            return
        self._lost = True
        self._vpn._forget(self)
        if self._protocol is not None:
            try:
                self._protocol.connection_lost(exc)
            except Exception:                      # noqa: BLE001
                log.exception("connection_lost failed")


def _literal(host, what: str) -> str:
    """``host`` as the canonical text of an IPv4 or IPv6 address; ValueError otherwise
    (resolve names first: erebus.runtime.expose.dns)."""
    if isinstance(host, str):
        try:
            return addr_str(to_addr(host))
        except MappedAddressError as exc:
            raise ValueError(f"{what} {host!r}: {exc}") from None
        except ValueError:
            pass
    raise ValueError(f"{what} {host!r} is not an IPv4 or IPv6 address (resolve names "
                     "first)")


def _ip_address(addr, what: str) -> tuple[str, int]:
    """``addr`` as (IPv4 or IPv6 literal, port 1..65535), the address in its canonical
    text; ValueError otherwise (resolve names first: erebus.runtime.expose.dns).  An
    IPv6 address may come as asyncio gives it, (host, port, flowinfo, scope_id)."""
    try:
        host, port = addr[0], addr[1]
        if len(addr) not in (2, 4):
            raise ValueError
    except (TypeError, ValueError, IndexError, KeyError):
        raise ValueError(f"{what} {addr!r} is not (IP address, port)") from None
    host = _literal(host, what)
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"{what} {addr!r}: port {port!r} is out of range 1..65535")
    return host, port


class UdpTransport(asyncio.DatagramTransport):
    """One UDP socket of the stack on the virtual IP, seen as an asyncio datagram
    transport (what :meth:`VpnStack.create_datagram_endpoint` returns)."""

    def __init__(self, vpn: "VpnStack", sock: UdpSocket, remote: tuple[str, int] | None):
        super().__init__()
        self._vpn = vpn
        self._sock = sock
        self._remote = remote
        self._protocol: asyncio.DatagramProtocol | None = None
        self._read_paused = False
        self._closing = False
        self.sent = 0                   # datagrams handed to the tunnel
        self.received = 0               # datagrams delivered to the protocol

    # -- asyncio.DatagramTransport -------------------------------------------------------

    def get_extra_info(self, name, default=None):
        if name == "sockname":
            stack = self._vpn.stack
            local = stack.local_ip6 if self._ipv6 else stack.local_ip
            return addr_str(local), self._sock.port
        if name == "peername":
            return self._remote if self._remote is not None else default
        if name == "udp":
            return self._sock
        return default

    def set_protocol(self, protocol) -> None:
        self._protocol = protocol

    def get_protocol(self):
        return self._protocol

    def is_closing(self) -> bool:
        return self._closing

    def is_reading(self) -> bool:
        return not self._read_paused and not self._closing

    def pause_reading(self) -> None:
        """Datagrams wait in the socket's bounded queue (the rest are dropped)."""
        self._read_paused = True

    def resume_reading(self) -> None:
        if self._read_paused:
            self._read_paused = False
            self._vpn._changed(self)

    @property
    def max_payload(self) -> int:
        """The largest datagram :meth:`sendto` takes: the tunnel's MTU less the IP
        and UDP headers (the stack never fragments): IPv6's (20 bytes longer) for an
        endpoint connected to an IPv6 address or a stack with only IPv6."""
        return self._vpn.stack.udp_max_payload(self._ipv6)

    @property
    def _ipv6(self) -> bool:
        """Whether the endpoint speaks IPv6: connected to an IPv6 address, or on a
        stack that has only IPv6."""
        return (self._remote is not None and ":" in self._remote[0]) or \
            self._vpn.stack.local_ip is None

    @property
    def dropped(self) -> int:
        """Datagrams and errors dropped because the receive queue was full."""
        return self._sock.dropped

    def sendto(self, data, addr=None) -> None:
        """Send one datagram to ``addr`` (an IPv4 or IPv6 literal and a port; None or
        the remote for a connected endpoint).  ValueError for a bad address; a datagram
        too big for the tunnel's MTU, or to a family the tunnel has no address of, goes
        to ``error_received`` (OSError EMSGSIZE / ENETUNREACH), as asyncio reports a
        failed send."""
        if self._closing:
            return                       # like asyncio: sends after close are dropped
        if self._remote is not None:
            if addr is not None and _ip_address(addr, "sendto() address") != self._remote:
                raise ValueError(f"Invalid address: must be None or {self._remote}")
            host, port = self._remote
        elif addr is None:
            raise ValueError("sendto() needs an address: the endpoint is not connected")
        else:
            host, port = _ip_address(addr, "sendto() address")
        try:
            self._vpn.stack.udp_send(self._sock, bytes(data), host, port)
        except OSError as exc:
            self._call("error_received", exc)
            return
        self.sent += 1
        self._vpn._schedule_flush()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._vpn._close_udp(self)
        self._vpn.loop.call_soon(self._call, "connection_lost", None)

    def abort(self) -> None:
        self.close()

    def get_write_buffer_size(self) -> int:
        return 0                         # a datagram goes to the tunnel when sent

    # -- driven by the VpnStack ----------------------------------------------------------

    def _call(self, method: str, *args) -> None:
        try:
            getattr(self._protocol, method)(*args)
        except Exception:                          # noqa: BLE001 - a protocol's bug
            log.exception("%s of a UDP protocol failed", method)

    def _update(self) -> None:
        sock = self._sock
        if self._closing:
            sock.queue.clear()
            sock.errors.clear()
            return
        while sock.queue and not self._read_paused and not self._closing:
            data, source = sock.queue.popleft()
            self.received += 1
            self._call("datagram_received", data, source)
        while sock.errors and not self._read_paused and not self._closing:
            error, _dest = sock.errors.popleft()
            self._call("error_received", _error_for(error))


class VpnServer:
    """What :meth:`VpnStack.start_server` returns (like asyncio.Server, smaller)."""

    def __init__(self, vpn: "VpnStack", listener: Listener, protocol_factory):
        self._vpn = vpn
        self.listener = listener
        self._factory = protocol_factory
        self.sockets = ()

    @property
    def port(self) -> int:
        return self.listener.port

    def close(self) -> None:
        self._vpn.stack.unlisten(self.listener)
        self._vpn._servers.pop(self.listener.port, None)

    async def wait_closed(self) -> None:
        return None

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.close()


def tcp_mss(info) -> int:
    """The MSS our TCP announces and caps its segments at over IPv4: the tunnel's MTU
    less the IPv4 and TCP headers, and no more than the family's cap (OpenVPN's mssfix).
    IPv6 connections use 20 bytes less (:attr:`NetStack.mss6`)."""
    mss = info.mtu - 40
    return max(64, min(mss, info.mss)) if info.mss else mss


class VpnStack:
    """A NetStack bound to a tunnel and an event loop."""

    def __init__(self, tunnel: PacketLink, *, stack: NetStack | None = None):
        self.tunnel = tunnel
        info = tunnel.info
        self.stack = stack or NetStack(info.virtual_ip or None, info.mtu,
                                       local_ip6=getattr(info, "virtual_ip6", None))
        self.stack.mss = tcp_mss(info)
        self.loop = asyncio.get_running_loop()
        self._transports: dict[TcpConnection, TcpTransport] = {}
        self._servers: dict[int, tuple[VpnServer, object]] = {}
        self._deferred: dict[int, object] = {}
        self._udp: dict[UdpSocket, UdpTransport] = {}
        self._flush_handle: asyncio.Handle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._app_changed: set[TcpTransport] = set()
        tunnel.set_receiver(self._on_packet)

    # -- public API ----------------------------------------------------------------------

    @property
    def has_ipv4(self) -> bool:
        """Whether the tunnel gave us an IPv4 address (connections to IPv4 work)."""
        return self.stack.local_ip is not None

    @property
    def has_ipv6(self) -> bool:
        """Whether the tunnel gave us an IPv6 address (connections to IPv6 work)."""
        return self.stack.local_ip6 is not None

    async def create_connection(self, protocol_factory, host: str, port: int, *,
                                timeout: float | None = None):
        """Like loop.create_connection, through the VPN; ``host`` is an IPv4 or IPv6
        address (ValueError for a name: resolve it first).  OSError ENETUNREACH at once
        for a family the tunnel has no address of."""
        host = _literal(host, "host")
        conn = self.stack.connect(host, port, self.loop.time())
        transport = TcpTransport(self, conn)
        transport._waiter = self.loop.create_future()
        self._transports[conn] = transport
        self._schedule_flush()
        try:
            await asyncio.wait_for(asyncio.shield(transport._waiter), timeout)
        except BaseException:
            if not transport._lost:
                transport.abort()
            raise
        protocol = protocol_factory()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        self._changed(transport)
        return transport, protocol

    async def open_connection(self, host: str, port: int, *, limit: int = 2 ** 16,
                              timeout: float | None = None):
        reader = asyncio.StreamReader(limit=limit, loop=self.loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=self.loop)
        transport, _ = await self.create_connection(lambda: protocol, host, port,
                                                    timeout=timeout)
        writer = asyncio.StreamWriter(transport, protocol, reader, self.loop)
        return reader, writer

    async def create_server(self, protocol_factory, port: int) -> VpnServer:
        listener = self.stack.listen(port)
        server = VpnServer(self, listener, protocol_factory)
        self._servers[port] = (server, protocol_factory)
        return server

    async def start_server(self, client_connected_cb, port: int, *, limit: int = 2 ** 16):
        def factory():
            reader = asyncio.StreamReader(limit=limit, loop=self.loop)
            return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=self.loop)
        return await self.create_server(factory, port)

    def listen_deferred(self, port: int, on_syn, *, backlog: int = SYN_BACKLOG) -> Listener:
        """SYNs to ``port`` go to ``on_syn(pending)``, once per 4-tuple; answer with
        :meth:`accept` or :meth:`refuse` (e.g. after dialling a local target first).
        At most ``backlog`` are unanswered or half-open at once; the stack drops the
        SYNs beyond (see :data:`erebus.netstack.stack.SYN_BACKLOG`)."""
        listener = self.stack.listen(port, defer=True, backlog=backlog)
        self._deferred[port] = on_syn
        return listener

    def accept(self, pending: PendingSyn, protocol_factory, *,
               on_fail=None) -> TcpTransport | None:
        """SYN-ACK a deferred SYN; ``protocol_factory()`` runs once the handshake is
        complete, ``on_fail()`` if it never completes.  None, and nothing sent, if the
        SYN is no longer waiting (its listener closed and reset it)."""
        conn = self.stack.accept(pending, self.loop.time())
        if conn is None:
            return None
        transport = TcpTransport(self, conn)
        self._transports[conn] = transport
        transport._accept_factory = protocol_factory
        transport._on_fail = on_fail
        self._schedule_flush()
        return transport

    def refuse(self, pending: PendingSyn) -> bool:
        """RST a deferred SYN; False, and nothing sent, if it is no longer waiting."""
        if not self.stack.refuse(pending):
            return False
        self._schedule_flush()
        return True

    def rebind(self, info) -> None:
        """A new session of the tunnel: for each family whose virtual IP changed (or
        went away), its connections cannot go on (they are reset) and the stack takes
        the new address; the other family's connections carry on."""
        stack = self.stack
        new4 = to_addr(info.virtual_ip) if info.virtual_ip else None
        v6 = getattr(info, "virtual_ip6", None)
        new6 = to_addr(v6) if v6 else None
        for old, new, name in ((stack.local_ip, new4, "IP"), (stack.local_ip6, new6,
                                                              "IPv6 address")):
            if old == new:
                continue
            gone = [t for t in self._transports.values() if t._conn.local_ip == old]
            if old is not None:
                log.warning("the virtual %s changed from %s to %s: resetting %d "
                            "connection(s)", name, addr_str(old),
                            addr_str(new) if new is not None else "none", len(gone))
            for transport in gone:
                transport.abort()
        if new4 is None and new6 is None:
            raise ValueError("the tunnel gave no virtual IP")
        stack.local_ip, stack.local_ip6 = new4, new6
        self.stack.mtu = info.mtu
        self.stack.mss = tcp_mss(info)
        self._schedule_flush()

    def close(self) -> None:
        """Reset every connection and close every UDP socket (the tunnel is going
        away)."""
        for transport in list(self._transports.values()):
            transport.abort()
        for udp in list(self._udp.values()):
            udp.close()
        self._flush()
        if self._timer is not None:
            self._timer.cancel()
        if self._flush_handle is not None:
            self._flush_handle.cancel()

    # -- UDP ------------------------------------------------------------------------------

    async def create_datagram_endpoint(self, protocol_factory, local_port: int = 0,
                                       remote: tuple[str, int] | None = None, *,
                                       queue_limit: int = UDP_QUEUE_LIMIT):
        """Like loop.create_datagram_endpoint, on the virtual IP(s): a UDP socket on
        ``local_port`` (0: an ephemeral port) for both families, connected to
        ``remote`` (an IPv4 or IPv6 address and a port) if given; returns (transport,
        protocol).  Datagrams arrive as (data, (host, port)), the host as text of its
        family.  At most ``queue_limit`` datagrams wait for the protocol; OSError if the
        port is in use or too many sockets are open, ValueError for a bad ``remote``."""
        if remote is not None:
            remote = _ip_address(remote, "remote")
        sock = self.stack.udp_bind(local_port, remote=remote, limit=queue_limit)
        transport = UdpTransport(self, sock, remote)
        self._udp[sock] = transport
        try:
            protocol = protocol_factory()
            transport.set_protocol(protocol)
            protocol.connection_made(transport)
        except BaseException:
            transport._closing = True
            self._close_udp(transport)
            raise
        return transport, protocol

    async def udp_exchange(self, payload: bytes, host: str, port: int, *,
                           timeout: float, accept=None) -> bytes:
        """Send one datagram; return the first answer from (host, port) that
        ``accept(data)`` (if given) takes.  Datagrams from elsewhere are ignored; an
        ICMP error about (host, port) raises (ConnectionRefusedError ...)."""
        fut = self.loop.create_future()

        class _Exchange(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr) -> None:
                if not fut.done() and (accept is None or accept(data)):
                    fut.set_result(data)

            def error_received(self, exc) -> None:
                if not fut.done():
                    fut.set_exception(exc)

        transport, _ = await self.create_datagram_endpoint(_Exchange, remote=(host, port))
        try:
            transport.sendto(payload)
            return await asyncio.wait_for(fut, timeout)
        finally:
            transport.close()

    def _close_udp(self, transport: UdpTransport) -> None:
        sock = transport._sock
        self.stack.udp_close(sock)
        if self._udp.get(sock) is transport:
            del self._udp[sock]

    # -- the pump ------------------------------------------------------------------------

    def _on_packet(self, packet: bytes) -> None:
        self.stack.receive(packet, self.loop.time())
        self._schedule_flush()

    def _touch(self, conn: TcpConnection) -> None:
        self.stack.touch(conn)
        self._schedule_flush()

    def _changed(self, transport: TcpTransport | UdpTransport) -> None:
        self._app_changed.add(transport)
        self._schedule_flush()

    def _abort(self, transport: TcpTransport) -> None:
        self.stack.abort(transport._conn, self.loop.time())
        self._schedule_flush()

    def _forget(self, transport: TcpTransport) -> None:
        if self._transports.get(transport._conn) is transport:
            del self._transports[transport._conn]

    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        now = self.loop.time()
        stack = self.stack
        for _ in range(8):           # app callbacks may change more connections
            changed = stack.take_changed()
            if self._app_changed:
                changed |= self._app_changed
                self._app_changed = set()
            if not changed:
                break
            for item in changed:
                self._dispatch(item, now)
        send = self.tunnel.send_packet
        for packet in stack.output(now):
            send(packet)
        if stack.has_changes:
            self._schedule_flush()              # connections the output closed
        self._arm_timer()

    def _dispatch(self, item, now: float) -> None:
        if isinstance(item, (TcpTransport, UdpTransport)):
            item._update()
        elif isinstance(item, TcpConnection):
            transport = self._transports.get(item)
            if transport is not None:
                if transport._protocol is None and transport._connected is False \
                        and hasattr(transport, "_accept_factory") \
                        and item.state in SYNCHRONIZED:
                    self._start_accepted(transport)
                transport._update()
        elif isinstance(item, Listener):
            self._serve(item, now)
        elif isinstance(item, UdpSocket):
            transport = self._udp.get(item)
            if transport is None:
                item.queue.clear()
                item.errors.clear()
            else:
                transport._update()

    def _serve(self, listener: Listener, now: float) -> None:
        if listener.defer:
            on_syn = self._deferred.get(listener.port)
            while listener.pending:
                pending = listener.pending.popleft()
                if on_syn is None:
                    self.stack.refuse(pending)
                else:
                    on_syn(pending)
            # connections it accepted show up established; nothing queued for them
            listener.accepted.clear()
            return
        entry = self._servers.get(listener.port)
        while listener.accepted:
            conn = listener.accepted.popleft()
            if entry is None:
                self.stack.abort(conn, now)
                continue
            transport = TcpTransport(self, conn)
            transport._connected = True
            self._transports[conn] = transport
            protocol = entry[1]()
            transport.set_protocol(protocol)
            protocol.connection_made(transport)
            transport._update()

    def _start_accepted(self, transport: TcpTransport) -> None:
        transport._connected = True
        protocol = transport._accept_factory()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)

    def _arm_timer(self) -> None:
        deadline = self.stack.timer()
        if self._timer is not None:
            if deadline is not None and self._timer.when() == deadline:
                return
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.stack.handle_timer(self.loop.time())
        self._flush()
