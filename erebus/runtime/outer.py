"""Reaching the server through an outer proxy: the connector the OpenVPN tunnel uses
when a remote has ``http-proxy`` or ``socks-proxy`` (erebus/runtime/outer_http.py,
erebus/runtime/outer_socks.py), next to :class:`~erebus.runtime.tunnel.DirectConnector`
for remotes without one.

:class:`ProxyStream` is the TCP connection to a proxy during its handshake: what the
proxy sends is buffered (at most :data:`ProxyStream.LIMIT` bytes, reading paused
beyond) until a sans-IO parser (erebus/wire/httpconnect.py, erebus/wire/socks5.py)
has a whole answer; then the stream is handed to the protocol that carries OpenVPN
(its TCP framing) or watches a UDP association.  Every error a proxy can cause leaves
as a :class:`~erebus.errors.SessionError` naming the remote and the proxy.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Callable

from ..errors import ParseError, SessionError
from ..session import Stage
from .tunnel import DirectConnector, Endpoint, host_port, tcp_socket

__all__ = ["OuterConnector", "ProxyStream", "open_stream", "proxy_error"]

log = logging.getLogger("erebus.proxy")


def proxy_error(stage: Stage, endpoint: Endpoint, message: str, *,
                recoverable: bool | None = None) -> SessionError:
    """An error of the remote ``endpoint``'s proxy, named in the message."""
    return SessionError(stage, f"{endpoint.name}: {endpoint.proxy.name}: {message}",
                        recoverable=recoverable)


class ProxyStream(asyncio.Protocol):
    """A TCP connection to a proxy, until its handshake is over."""

    LIMIT = 64 * 1024            # bytes buffered before a parser takes them

    def __init__(self, endpoint: Endpoint):
        self.endpoint = endpoint
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.lost = False
        self._waiter: asyncio.Future | None = None
        self._paused = False

    # -- asyncio.Protocol

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) >= self.LIMIT and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def connection_lost(self, exc) -> None:
        self.lost = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- the handshake

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    async def read(self, parse: Callable[[bytes], tuple[object, int] | None], what: str):
        """The next message: ``parse(buffered)`` returns ``(message or None, bytes
        taken)``, or None while it needs more.  SessionError if the proxy closes the
        connection first, or sends what does not parse."""
        while True:
            if self.buf:
                try:
                    got = parse(bytes(self.buf))
                except ParseError as exc:
                    raise proxy_error(Stage.PROTOCOL, self.endpoint, f"{what}: {exc}",
                                      recoverable=False) from None
                if got is not None:
                    message, taken = got
                    del self.buf[:taken]
                    if self._paused and len(self.buf) < self.LIMIT:
                        self._paused = False
                        self.transport.resume_reading()
                    if message is not None:
                        return message
                    continue
                if len(self.buf) >= self.LIMIT:
                    raise proxy_error(Stage.PROTOCOL, self.endpoint, f"{what}: more than "
                                      f"{self.LIMIT} bytes without a complete answer",
                                      recoverable=False)
            if self.lost:
                raise proxy_error(Stage.CONNECTION_LOST, self.endpoint, "closed the "
                                  f"connection before {what}")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def hand_over(self, protocol: asyncio.Protocol, addr: tuple[str, int]):
        """The stream to ``protocol`` (which gets what was left unparsed), as a link."""
        transport, rest = self.transport, bytes(self.buf)
        self.buf.clear()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self._paused:
            transport.resume_reading()
        if rest:        # after the caller has its session: it runs before any callback
            asyncio.get_running_loop().call_soon(protocol.data_received, rest)
        sock = transport.get_extra_info("socket")
        protocol.local = sock.getsockname()[:2] if sock is not None else ("0.0.0.0", 0)
        protocol.remote = addr[:2]
        return protocol

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_stream(endpoint: Endpoint, addr: tuple[str, int]) -> ProxyStream:
    """A TCP connection to the endpoint's proxy at ``addr``."""
    loop = asyncio.get_running_loop()
    try:
        _, stream = await loop.create_connection(lambda: ProxyStream(endpoint),
                                                 sock=await tcp_socket(loop, addr))
    except OSError as exc:
        raise proxy_error(Stage.UNREACHABLE, endpoint, f"TCP connect to "
                          f"{host_port(*addr[:2])} failed: {exc.strerror or exc}") from None
    sock = stream.transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return stream


class OuterConnector:
    """Each endpoint through its proxy, if it has one, else straight to the server."""

    def __init__(self):
        from .outer_http import HttpProxyConnector
        from .outer_socks import SocksConnector
        self.direct = DirectConnector()
        self.by_kind = {"http": HttpProxyConnector(), "socks": SocksConnector()}

    async def resolve(self, endpoint: Endpoint) -> list[tuple]:
        """The proxy's addresses, of the remote's family as 2.6 resolves the proxy
        (socket.c resolve_remote: the proxy's name with the connection's af); the
        server's name goes to the proxy unresolved, except for a SOCKS UDP
        association, which resolves it when it opens."""
        proxy = endpoint.proxy
        if proxy is None:
            return await self.direct.resolve(endpoint)
        try:
            return await self.direct.resolve(Endpoint(proxy.host, proxy.port, "tcp-client",
                                                      family=endpoint.family))
        except OSError as exc:
            raise OSError(exc.errno, f"{proxy.name}: {exc.strerror or exc}") from None

    async def open(self, endpoint: Endpoint, addr, on_datagram, on_batch_end, on_error,
                   on_lost, driver):
        if endpoint.proxy is None:
            return await self.direct.open(endpoint, addr, on_datagram, on_batch_end,
                                          on_error, on_lost, driver)
        log.info("%s: through the %s", endpoint.name, endpoint.proxy.name)
        return await self.by_kind[endpoint.proxy.kind].open(
            endpoint, addr, on_datagram, on_batch_end, on_error, on_lost, driver)
