"""ssh-style forwards: ``-L [BIND:]PORT:HOST:HOSTPORT`` (a local listener whose
connections go through the VPN to HOST:HOSTPORT).

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

from ..errors import ConfigError

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


def _port(text: str, what: str, spec: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"-L {spec}: {what} {text!r} is not a port number") from None
    if not 0 < value < 65536:
        raise ConfigError(f"-L {spec}: {what} {value} is out of range 1..65535")
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


class _Half(asyncio.Protocol):
    """One side of a forwarded connection; ``peer`` is the other side's transport."""

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

    def __init__(self, vpn, spec: ForwardSpec, *, connect=None):
        self.vpn = vpn
        self.spec = spec
        self.connect = connect          # async (host, port) -> (ip, port); default: literal
        self.server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self.dialing = 0
        self.total = 0
        self.failed = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            ipaddress.ip_address(self.spec.bind)
        except ValueError:
            raise ConfigError(f"-L {self.spec}: bind address {self.spec.bind!r} is not an "
                              "IP address") from None
        if self.spec.bind not in ("127.0.0.1", "::1"):
            log.warning("-L %s listens on %s: reachable from other hosts", self.spec,
                        self.spec.bind)
        self.server = await loop.create_server(self._accept, self.spec.bind, self.spec.port)
        log.info("forwarding %s", self.spec)

    def _accept(self) -> asyncio.Protocol:
        return _Half(on_made=self._on_local)

    def _on_local(self, local: _Half) -> None:
        local.transport.pause_reading()
        task = asyncio.get_running_loop().create_task(self._dial(local))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dial(self, local: _Half) -> None:
        self.total += 1
        self.dialing += 1
        try:
            host, port = self.spec.host, self.spec.host_port
            if self.connect is not None:
                host, port = await self.connect(host, port)
            remote = _Half()
            try:
                transport, _ = await self.vpn.create_connection(
                    lambda: remote, host, port, timeout=CONNECT_TIMEOUT)
            except (OSError, asyncio.TimeoutError, ValueError) as exc:
                self.failed += 1
                log.warning("-L %s: %s:%d: %s", self.spec, host, port,
                            exc or type(exc).__name__)
                local.transport.abort()
                return
            remote.attach(local.transport)
            local.attach(transport)
            if not local.transport.is_closing():
                local.transport.resume_reading()
            peer = local.transport.get_extra_info("peername")
            log.debug("-L %s: %s connected via %s", self.spec, peer,
                      transport.get_extra_info("sockname"))
        finally:
            self.dialing -= 1

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
