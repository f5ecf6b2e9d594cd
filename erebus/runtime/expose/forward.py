"""ssh-style forwards: ``-L [BIND:]PORT:HOST:HOSTPORT`` (a local listener whose
connections go through the VPN to HOST:HOSTPORT) and ``-R VPORT:LHOST:LPORT`` (a port
of the virtual IP whose connections go to a local service).

Bytes move transport to transport with no queue of our own in between: the local
socket's ``data_received`` writes straight into the VPN connection and the other way
round, and each side's "pause writing" pauses the other side's reading.  A slow
reader anywhere therefore slows the sender instead of growing a buffer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass

from ...errors import ConfigError
from ...netstack.stack import SYN_BACKLOG

log = logging.getLogger("erebus.forward")

CONNECT_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class ForwardSpec:
    bind: str
    port: int
    host: str
    host_port: int

    def __str__(self) -> str:
        return f"{self.bind}:{self.port} -> {self.host}:{self.host_port}"


def _port(text: str, what: str, spec: str, option: str = "-L") -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{option} {spec}: {what} {text!r} is not a port number") from None
    if not 0 <= value < 65536 or (value == 0 and option == "-L"):
        raise ConfigError(f"{option} {spec}: {what} {value} is out of range 1..65535")
    return value


def parse_local_forward(spec: str) -> ForwardSpec:
    """``[BIND:]PORT:HOST:HOSTPORT`` as ssh reads it (``[::1]`` style brackets allowed)."""
    parts: list[str] = []
    rest = spec
    while rest:
        if rest.startswith("["):
            end = rest.find("]")
            if end < 0:
                raise ConfigError(f"-L {spec}: unbalanced '['")
            parts.append(rest[1:end])
            rest = rest[end + 1:]
            if rest.startswith(":"):
                rest = rest[1:]
        else:
            head, sep, rest = rest.partition(":")
            parts.append(head)
            if not sep:
                break
    if len(parts) == 3:
        parts.insert(0, "127.0.0.1")
    if len(parts) != 4 or not all(parts[1:]):
        raise ConfigError(f"-L {spec}: expected [BIND:]PORT:HOST:HOSTPORT")
    bind = parts[0] or "127.0.0.1"
    if bind == "*":
        bind = "0.0.0.0"
    return ForwardSpec(bind, _port(parts[1], "port", spec), parts[2],
                       _port(parts[3], "host port", spec))


class Dialer:
    """Opens connections through the VPN: names resolved with the VPN's DNS."""

    def __init__(self, vpn, resolver=None, *, timeout: float = CONNECT_TIMEOUT):
        self.vpn = vpn
        self.resolver = resolver
        self.timeout = timeout

    async def dial(self, host: str, port: int, protocol_factory) -> asyncio.Transport:
        if self.resolver is not None:
            address = await self.resolver.resolve(host)
        else:
            address = host
        try:
            transport, _ = await self.vpn.create_connection(protocol_factory, address, port,
                                                            timeout=self.timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"connection to {host}:{port} timed out") from None
        return transport


class Half(asyncio.Protocol):
    """One side of a spliced connection; ``peer`` is the other side's transport."""

    def __init__(self, on_made=None):
        self.on_made = on_made
        self.transport: asyncio.Transport | None = None
        self.peer: asyncio.Transport | None = None
        self.pending: list[bytes] = []     # data that came before the peer existed
        self.eof_pending = False
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        if self.on_made is not None:
            self.on_made(self)

    def attach(self, peer: asyncio.Transport) -> None:
        self.peer = peer
        for data in self.pending:
            peer.write(data)
        self.pending.clear()
        if self.eof_pending:
            self._eof_to_peer()
        if self.closed:
            peer.close()

    def data_received(self, data) -> None:
        if self.peer is None:
            self.pending.append(bytes(data))
            return
        self.peer.write(data)

    def eof_received(self) -> bool:
        if self.peer is None:
            self.eof_pending = True
        else:
            self._eof_to_peer()
        return True                       # half-close: keep our own sending side open

    def _eof_to_peer(self) -> None:
        if not self.peer.is_closing():
            if self.peer.can_write_eof():
                self.peer.write_eof()
            else:
                self.peer.close()

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.resume_reading()

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.peer is not None and not self.peer.is_closing():
            if exc is not None:
                self.peer.abort()
            else:
                self.peer.close()


class LocalForward:
    """A -L listener: every accepted local connection is dialled through the VPN."""

    def __init__(self, dialer: Dialer, spec: ForwardSpec):
        self.dialer = dialer
        self.spec = spec
        self.server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self.total = 0
        self.failed = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        warn_if_public(f"-L {self.spec}", self.spec.bind)
        self.server = await loop.create_server(self._accept, self.spec.bind, self.spec.port)
        log.info("forwarding %s", self.spec)

    def _accept(self) -> asyncio.Protocol:
        return Half(on_made=self._on_local)

    def _on_local(self, local: Half) -> None:
        local.transport.pause_reading()
        task = asyncio.get_running_loop().create_task(self._dial(local))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dial(self, local: Half) -> None:
        self.total += 1
        remote = Half()
        try:
            transport = await self.dialer.dial(self.spec.host, self.spec.host_port,
                                               lambda: remote)
        except (OSError, ValueError) as exc:
            self.failed += 1
            log.warning("-L %s: %s", self.spec, exc or type(exc).__name__)
            local.transport.abort()
            return
        remote.attach(local.transport)
        local.attach(transport)
        if not local.transport.is_closing():
            local.transport.resume_reading()
        log.debug("-L %s: %s connected via %s", self.spec,
                  local.transport.get_extra_info("peername"),
                  transport.get_extra_info("sockname"))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@dataclass(frozen=True, slots=True)
class RemoteSpec:
    vport: int
    lhost: str
    lport: int

    def __str__(self) -> str:
        return f"<virtual IP>:{self.vport} -> {self.lhost}:{self.lport}"


def parse_remote_forward(spec: str) -> RemoteSpec:
    """``VPORT:LHOST:LPORT`` (ssh's ``-R``; the listening side is the virtual IP)."""
    parts = spec.split(":")
    if len(parts) == 4 and parts[0] in ("", "*", "0.0.0.0"):
        parts = parts[1:]
    if len(parts) != 3 or not all(parts):
        raise ConfigError(f"-R {spec}: expected VPORT:LHOST:LPORT")
    return RemoteSpec(_port(parts[0], "port", spec, "-R"), parts[1],
                      _port(parts[2], "local port", spec, "-R"))


class RemoteForward:
    """A -R rule: the virtual IP's port VPORT is served by the local LHOST:LPORT.

    The local target is dialled when the SYN arrives, before anything is answered: if
    it refuses, the remote side gets RST ("connection refused"), never a connection
    that is accepted and then hangs.  One dial per 4-tuple (a retransmitted SYN does
    not dial again), and at most ``BACKLOG`` SYNs dialling or half-open at once: the
    stack drops the SYNs beyond, as a kernel with a full SYN queue does, so a SYN
    flood opens at most ``BACKLOG`` local connections.
    """

    LOCAL_TIMEOUT = 10.0
    BACKLOG = SYN_BACKLOG

    def __init__(self, vpn, spec: RemoteSpec):
        self.vpn = vpn
        self.spec = spec
        self.listener = None
        self._tasks: set[asyncio.Task] = set()
        self.accepted = 0
        self.refused = 0

    async def start(self) -> None:
        self.listener = self.vpn.listen_deferred(self.spec.vport, self._on_syn,
                                                 backlog=self.BACKLOG)
        log.info("exposing %s", self.spec)

    def _on_syn(self, pending) -> None:
        task = asyncio.get_running_loop().create_task(self._dial(pending))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dial(self, pending) -> None:
        loop = asyncio.get_running_loop()
        local = Half()
        try:
            transport, _ = await asyncio.wait_for(loop.create_connection(
                lambda: local, self.spec.lhost, self.spec.lport), self.LOCAL_TIMEOUT)
        except asyncio.CancelledError:
            if local.transport is not None:    # connected as we were cancelled (close)
                local.transport.abort()
            raise
        except (OSError, asyncio.TimeoutError) as exc:
            if not self.vpn.refuse(pending):
                return                         # reset already (the rule was closed)
            self.refused += 1
            log.info("-R %s: %s:%d from %s:%d: local target failed (%s): RST", self.spec,
                     self.spec.lhost, self.spec.lport, *pending.peer,
                     exc or type(exc).__name__)
            return
        transport.pause_reading()

        def on_made(remote: Half) -> None:
            remote.attach(transport)
            local.attach(remote.transport)
            if not transport.is_closing():
                transport.resume_reading()

        if self.vpn.accept(pending, lambda: Half(on_made=on_made),
                           on_fail=transport.abort) is None:
            transport.abort()                  # the SYN was reset meanwhile (close)
            return
        self.accepted += 1
        log.debug("-R %s: %s:%d connected", self.spec, *pending.peer)

    async def close(self) -> None:
        """Stop exposing: unanswered SYNs get RST, dials under way are cancelled (their
        local connections aborted), connections already accepted go on."""
        if self.listener is not None:
            self.vpn.stack.unlisten(self.listener)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def warn_if_public(what: str, bind: str) -> None:
    """Local listeners default to loopback; anything else is the user's explicit choice."""
    try:
        address = ipaddress.ip_address(bind)
    except ValueError:
        raise ConfigError(f"{what}: bind address {bind!r} is not an IP address") from None
    if not address.is_loopback:
        log.warning("%s listens on %s: reachable from other hosts", what, bind)


def parse_listen(spec: str, option: str) -> tuple[str, int]:
    """``[HOST:]PORT`` for --http-proxy and --socks (HOST defaults to 127.0.0.1)."""
    host, sep, port = spec.rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    return host or "127.0.0.1", _port(port, "port", spec, option)
