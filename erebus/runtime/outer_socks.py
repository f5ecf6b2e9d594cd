"""OpenVPN through a SOCKS5 proxy (``socks-proxy``), as OpenVPN 2.6 does it
(socks.c): one method offered (username/password with an authfile, RFC 1929, else
none), then for TCP a CONNECT with the server's name as a domain name (the proxy
resolves it; an IPv6 address as ATYP 4) and OpenVPN's TCP framing on the stream; for
UDP a UDP ASSOCIATE (DST 0.0.0.0:0), the server resolved here, and every datagram to
the relay the proxy names with the RFC 1928 section 7 header (IPv4 destination: 2.6
forces IPv4 for SOCKS over UDP, and so does the profile reader).

The association lives as long as its TCP control connection: when the proxy closes
that, the session ends.  The UDP socket is connected to the relay, so the kernel
drops datagrams from anyone else; what the relay sends with FRAG != 0, from another
source than the server, or malformed, is dropped and counted here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import replace

from ..errors import ParseError, SessionError
from ..session import Stage
from ..wire import socks5
from .outer import ProxyStream, open_stream, proxy_error
from .tunnel import DirectConnector, Endpoint, udp_socket
from .udp import BatchedUdpLink

__all__ = ["SocksConnector", "SocksUdpLink", "reply_error"]

log = logging.getLogger("erebus.proxy")

# Reply codes after which another try (later, or the next remote) may succeed
_RECOVERABLE_REPLIES = frozenset({
    socks5.REP_GENERAL_FAILURE, socks5.REP_NOT_ALLOWED, socks5.REP_NETWORK_UNREACHABLE,
    socks5.REP_HOST_UNREACHABLE, socks5.REP_CONNECTION_REFUSED, socks5.REP_TTL_EXPIRED})


def reply_error(endpoint: Endpoint, command: str, reply: socks5.Reply):
    """The SessionError for a reply other than 'succeeded' (None for it)."""
    if reply.code == socks5.REP_SUCCEEDED:
        return None
    said = f"refused {command}: {reply.message}"
    if reply.code in _RECOVERABLE_REPLIES:
        return proxy_error(Stage.UNREACHABLE, endpoint, said, recoverable=True)
    return proxy_error(Stage.PROTOCOL, endpoint, said, recoverable=False)


async def _negotiate(stream: ProxyStream, endpoint: Endpoint) -> None:
    """Method selection, then username/password if the profile gives them."""
    proxy = endpoint.proxy
    with_password = proxy.username is not None
    stream.write(socks5.greeting(with_password))
    method = await stream.read(socks5.parse_method, "choosing a method")
    wanted = socks5.USER_PASS if with_password else socks5.NO_AUTH
    if method != wanted:
        why = ("accepts none of the methods offered (username/password)" if with_password
               else "asks for authentication: give socks-proxy HOST PORT AUTHFILE"
               if method in (socks5.NO_ACCEPTABLE, socks5.USER_PASS) else
               f"chose method {method:#04x}, which was not offered")
        raise proxy_error(Stage.AUTH, endpoint, why, recoverable=False)
    if with_password:
        stream.write(socks5.user_pass_request(
            proxy.username.encode("utf-8", "surrogateescape"),
            (proxy.password or "").encode("utf-8", "surrogateescape")))
        if not await stream.read(socks5.parse_auth_status, "answering the username"):
            raise proxy_error(Stage.AUTH, endpoint, "the proxy refused the username and "
                              "password", recoverable=False)


async def _request(stream: ProxyStream, endpoint: Endpoint, command: str,
                   data: bytes) -> socks5.Reply:
    stream.write(data)
    reply = await stream.read(socks5.parse_reply, f"its reply to {command}")
    error = reply_error(endpoint, command, reply)
    if error is not None:
        raise error
    return reply


class SocksConnector:
    """A "tcp-client" or "udp" endpoint through its SOCKS5 proxy."""

    async def open(self, endpoint: Endpoint, addr, on_datagram, on_batch_end, on_error,
                   on_lost, driver):
        server = None
        if endpoint.proto != "tcp-client":
            server = await self._resolve_server(endpoint)
        stream = await open_stream(endpoint, addr)
        try:
            await _negotiate(stream, endpoint)
            if server is None:
                command = f"CONNECT {endpoint.name}"
                await _request(stream, endpoint, command, socks5.request(
                    socks5.CMD_CONNECT, endpoint.host, endpoint.port, as_domain=True))
                return stream.hand_over(driver.stream_link(on_datagram, on_batch_end,
                                                           on_lost), addr)
            reply = await _request(stream, endpoint, "UDP ASSOCIATE", socks5.request(
                socks5.CMD_UDP_ASSOCIATE, "0.0.0.0", 0))
            relay = self._relay(endpoint, reply, addr)
            log.info("%s: UDP to %s:%d goes to the relay %s:%d", endpoint.proxy.name,
                     *server, *relay)
            link = SocksUdpLink(endpoint, server, relay, on_datagram=on_datagram,
                                on_error=on_error, on_batch_end=on_batch_end)
        except BaseException:
            stream.close()
            raise
        stream.hand_over(_Control(link, on_lost), addr)
        return link

    @staticmethod
    async def _resolve_server(endpoint: Endpoint) -> tuple[str, int]:
        """The server's IPv4 address: the UDP header carries it (2.6 forces IPv4:
        the profile reader made the remote's family "ipv4")."""
        try:
            return (await DirectConnector().resolve(replace(endpoint, family="ipv4")))[0][:2]
        except OSError as exc:
            raise SessionError(Stage.RESOLVE, f"cannot resolve {endpoint.host}: {exc}") \
                from None

    @staticmethod
    def _relay(endpoint: Endpoint, reply: socks5.Reply, addr) -> tuple[str, int]:
        """Where the datagrams go: the reply's address (the proxy's own if it says
        0.0.0.0, RFC 1928 leaves that to the client) and port."""
        try:
            ip = ipaddress.IPv4Address(reply.host)
        except ValueError:
            raise proxy_error(Stage.PROTOCOL, endpoint, f"names the UDP relay {reply.host!r}"
                              ", not an IPv4 address", recoverable=False) from None
        if reply.port == 0:
            raise proxy_error(Stage.PROTOCOL, endpoint, "names the UDP relay with port 0",
                              recoverable=False)
        return (addr[0] if ip.is_unspecified else str(ip)), reply.port


class _Control(asyncio.Protocol):
    """The UDP association's TCP connection: nothing more is expected on it (what
    comes is discarded); when it ends, so does the association."""

    def __init__(self, link: "SocksUdpLink", on_lost):
        self.link = link
        self._on_lost = on_lost
        self.transport = None
        link.control = self

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        pass

    def connection_lost(self, exc) -> None:
        if not self.link.closed:
            self.link.close()
            self._on_lost(proxy_error(Stage.CONNECTION_LOST, self.link.endpoint,
                                      "closed the UDP association's control connection"
                                      + (f" ({exc})" if exc else "")))


class SocksUdpLink:
    """Datagrams to and from the server through a SOCKS5 UDP relay."""

    proto = "udp"

    def __init__(self, endpoint: Endpoint, server: tuple[str, int], relay: tuple[str, int],
                 *, on_datagram, on_error, on_batch_end):
        self.endpoint = endpoint
        self._server_ip = ipaddress.IPv4Address(server[0]).packed
        self._server_port = server[1]
        self._on_datagram = on_datagram
        self.control: _Control | None = None
        self.closed = False
        self.dropped_fragment = 0      # FRAG != 0: 2.6 does not reassemble either
        self.dropped_foreign = 0       # from another source than the server
        self.dropped_malformed = 0     # shorter than the header, or not IPv4
        try:
            sock = udp_socket(relay, endpoint.local_port)
        except OSError as exc:
            raise proxy_error(Stage.UNREACHABLE, endpoint, f"UDP relay {relay[0]}:"
                              f"{relay[1]}: {exc.strerror or exc}") from None
        self.udp = BatchedUdpLink(sock, asyncio.get_running_loop(),
                                  on_datagram=self._from_relay, on_error=on_error,
                                  on_batch_end=on_batch_end)
        self.local, self.remote = sock.getsockname()[:2], server

    def _from_relay(self, datagram: bytes) -> None:
        try:
            frag, ip, port, payload = socks5.strip_udp_header(datagram)
        except ParseError as exc:
            self.dropped_malformed += 1
            log.debug("%s: dropped: %s", self.endpoint.proxy.name, exc)
            return
        if frag != 0:
            self.dropped_fragment += 1
            log.debug("%s: dropped a fragment (FRAG %d)", self.endpoint.proxy.name, frag)
            return
        if ip != self._server_ip or port != self._server_port:
            self.dropped_foreign += 1
            log.debug("%s: dropped a datagram from %s:%d, not the server",
                      self.endpoint.proxy.name, ipaddress.IPv4Address(ip), port)
            return
        self._on_datagram(payload)

    def send(self, datagram: bytes) -> None:
        self.udp.send(socks5.add_udp_header(datagram, self._server_ip, self._server_port))

    def redirect(self, port: int) -> None:
        """The server's datagrams now come from (and go to) ``port``."""
        self._server_port = port
        self.remote = (self.remote[0], port)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.udp.close()
        if self.control is not None and self.control.transport is not None:
            self.control.transport.close()
        dropped = self.dropped_fragment + self.dropped_foreign + self.dropped_malformed
        if dropped:
            log.info("%s: dropped from the relay: %d fragments, %d from another source, "
                     "%d malformed", self.endpoint.proxy.name, self.dropped_fragment,
                     self.dropped_foreign, self.dropped_malformed)
