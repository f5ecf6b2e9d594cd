"""A SOCKS5 server (RFC 1928) whose CONNECTs and UDP ASSOCIATEs go through the VPN.

IPv4 and IPv6 addresses (ATYP 1 and 4) and domain names (resolved through the VPN's
DNS to the families the tunnel carries, and connected to by Happy Eyeballs when a name
has both, so ``curl --socks5-hostname`` and ``ALL_PROXY=socks5h://`` never leak names
to the host's resolver); optional username/password (RFC 1929), for both commands.
Replies carry the RFC's codes: refused, host unreachable, network unreachable (also
for an address of a family the tunnel has no address of), TTL expired, command or
address type not supported; BND.ADDR is of the connection's family (a failure's
zeros of the request's).  The listener may be IPv4 or IPv6 (``--socks [::1]:1080``).
After a CONNECT's reply the connection is spliced transport to transport; a UDP
ASSOCIATE's relay is :mod:`erebus.runtime.expose.socks_udp`.
"""

from __future__ import annotations

import asyncio
import logging

from ...credentials import ProxyCredentials
from ...netstack.errors import NetErrorReason
from ...wire.socks5 import (ATYP_DOMAIN, ATYP_IPV6, CMD_CONNECT, CMD_UDP_ASSOCIATE,
                            NO_ACCEPTABLE, NO_AUTH, REP_COMMAND_NOT_SUPPORTED, REP_CONNECTION_REFUSED,
                            REP_GENERAL_FAILURE, REP_HOST_UNREACHABLE,
                            REP_NETWORK_UNREACHABLE, REP_NOT_ALLOWED, REP_SUCCEEDED,
                            REP_TTL_EXPIRED, USER_PASS, VERSION, Request, RequestError,
                            build_reply, parse_request)
from ..ratelimit import RateLimitedLog, counters_summary
from .dns import ResolveError
from .forward import Half
from .hostport import hostport, unmapped
from .socks_udp import MAX_ASSOCIATIONS, NameCache, UdpAssociation, UdpCounters

log = logging.getLogger("erebus.socks")

HANDSHAKE_LIMIT = 1024          # bytes buffered before the request is complete
HANDSHAKE_TIMEOUT = 30.0


_BY_REASON = {NetErrorReason.REFUSED: REP_CONNECTION_REFUSED,
              NetErrorReason.TTL_EXPIRED: REP_TTL_EXPIRED,
              NetErrorReason.NET_UNREACHABLE: REP_NETWORK_UNREACHABLE,
              NetErrorReason.UNREACHABLE: REP_HOST_UNREACHABLE,
              NetErrorReason.TIMED_OUT: REP_HOST_UNREACHABLE}


def reply_code(exc: BaseException) -> int:
    """The SOCKS reply for a failed CONNECT, by the error's type and the stack's reason
    (erebus.netstack.errors), never by its words."""
    if isinstance(exc, ResolveError):
        return REP_HOST_UNREACHABLE
    if isinstance(exc, ConnectionRefusedError):
        return REP_CONNECTION_REFUSED
    code = _BY_REASON.get(getattr(exc, "reason", None))
    if code is not None:
        return code
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return REP_HOST_UNREACHABLE
    return REP_GENERAL_FAILURE


def _reply(code: int, addr: str = "0.0.0.0", port: int = 0) -> bytes:
    return build_reply(code, addr, port)


class _SocksClient(Half):
    """One client connection: the SOCKS handshake, then a spliced half."""

    def __init__(self, server: "SocksServer"):
        super().__init__(gauge=server)
        self.server = server
        self.buf = bytearray()
        self.stage = "greeting"
        self.task: asyncio.Task | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.association: UdpAssociation | None = None
        self.unspecified = "0.0.0.0"      # a failure's BND.ADDR: the request's family

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.timer = asyncio.get_running_loop().call_later(HANDSHAKE_TIMEOUT, self._timeout)

    def _timeout(self) -> None:
        if self.stage not in ("spliced", "associated"):
            log.debug("SOCKS handshake timed out")
            self.transport.abort()

    def data_received(self, data) -> None:
        if self.stage in ("spliced", "connecting"):
            super().data_received(data)
            return
        if self.stage in ("associating", "associated"):
            return            # RFC 1928 7: nothing more is expected on the control connection
        self.buf += data
        if len(self.buf) > HANDSHAKE_LIMIT:
            self.transport.abort()
            return
        try:
            self._advance()
        except Exception:                      # noqa: BLE001 - never let one client crash
            log.exception("SOCKS: dropping a client after an internal error")
            self.server.errors += 1
            self.transport.abort()

    def _advance(self) -> None:
        while True:
            if self.stage == "greeting":
                if len(self.buf) < 2:
                    return
                if self.buf[0] != VERSION:
                    self.server.errors += 1
                    self.transport.abort()
                    return
                n = self.buf[1]
                if len(self.buf) < 2 + n:
                    return
                methods = set(self.buf[2:2 + n])
                del self.buf[:2 + n]
                want = USER_PASS if self.server.credentials else NO_AUTH
                if want not in methods:
                    self.transport.write(bytes((VERSION, NO_ACCEPTABLE)))
                    self.transport.close()
                    self.stage = "done"
                    return
                self.transport.write(bytes((VERSION, want)))
                self.stage = "auth" if want == USER_PASS else "request"
            elif self.stage == "auth":
                if len(self.buf) < 2:
                    return
                ulen = self.buf[1]
                if len(self.buf) < 3 + ulen:
                    return
                plen = self.buf[2 + ulen]
                if len(self.buf) < 3 + ulen + plen:
                    return
                user = bytes(self.buf[2:2 + ulen])
                password = bytes(self.buf[3 + ulen:3 + ulen + plen])
                ok = self.buf[0] == 1 and self.server.check(user, password)
                del self.buf[:3 + ulen + plen]
                self.transport.write(bytes((1, 0 if ok else 1)))
                if not ok:
                    self.server.auth_failures += 1
                    log.warning("SOCKS: authentication failed from %s",
                                self.transport.get_extra_info("peername"))
                    self.transport.close()
                    self.stage = "done"
                    return
                self.stage = "request"
            elif self.stage == "request":
                parsed = self._parse_request()
                if parsed is None:
                    return
                if self.stage == "done":
                    return
                if parsed.cmd == CMD_UDP_ASSOCIATE:
                    self.stage = "associating"
                    self.buf.clear()
                    self.task = asyncio.get_running_loop().create_task(
                        self._associate(parsed))
                    return
                host, port = parsed.host, parsed.port
                self.stage = "connecting"
                self.pending = [bytes(self.buf)] if self.buf else []
                self.buf.clear()
                self.transport.pause_reading()
                self.task = asyncio.get_running_loop().create_task(self._connect(host, port))
                return
            else:
                return

    def _parse_request(self) -> Request | tuple | None:
        """The request once complete (None before); after a refusal ``()``, the
        reply sent and the stage "done"."""
        try:
            parsed = parse_request(self.buf)
        except RequestError as exc:
            log.debug("SOCKS: %s", exc)
            self._fail(exc.reply)
            return ()
        if parsed is None:
            return None
        request, end = parsed
        del self.buf[:end]
        if request.atyp == ATYP_IPV6:
            self.unspecified = "::"
        if request.cmd == CMD_UDP_ASSOCIATE:
            return request          # its address is the client's own: see _associate
        if request.cmd != CMD_CONNECT:
            self._fail(REP_COMMAND_NOT_SUPPORTED)
            return ()
        if request.port == 0:
            self._fail(REP_GENERAL_FAILURE)
            return ()
        return request

    async def _associate(self, request: Request) -> None:
        """UDP ASSOCIATE: DST.ADDR and DST.PORT are where the client will send from
        (zeros if it does not know); only its TCP peer address may use the relay.  A
        name as DST.ADDR says nothing we could check (PySocks with remote DNS sends
        "0"): only its port counts then."""
        server = self.server
        peer = self.transport.get_extra_info("peername")
        local = self.transport.get_extra_info("sockname")
        if peer is None or local is None:
            self._fail(REP_GENERAL_FAILURE)
            return
        asked = unmapped("0.0.0.0" if request.atyp == ATYP_DOMAIN else request.host)
        if not asked.is_unspecified and asked != unmapped(peer[0]):
            log.warning("SOCKS: UDP ASSOCIATE from %s for datagrams from %s refused: only "
                        "the client's own address may use its relay", peer[0], asked)
            self._fail(REP_NOT_ALLOWED)
            return
        if len(server.associations) >= MAX_ASSOCIATIONS:
            server.udp_counters.refused += 1
            log.warning("SOCKS: UDP ASSOCIATE from %s refused: %d associations are open "
                        "already", peer[0], MAX_ASSOCIATIONS)
            self._fail(REP_GENERAL_FAILURE)
            return
        association = UdpAssociation(server, self.transport, (peer[0], request.port))
        server.associations.add(association)
        try:
            # a dual-stack listener's IPv4 client: the relay on the IPv4 address itself
            relay_ip, relay_port = await association.open(str(unmapped(local[0])))
        except OSError as exc:
            server.udp_counters.refused += 1
            log.warning("SOCKS: UDP ASSOCIATE from %s failed: %s", peer[0],
                        exc.strerror or exc)
            if not self.transport.is_closing():
                self._fail(REP_GENERAL_FAILURE)
            return
        if self.transport.is_closing():
            association.close()
            return
        if self.timer is not None:
            self.timer.cancel()
        self.association = association
        self.transport.write(_reply(REP_SUCCEEDED, relay_ip, relay_port))
        self.stage = "associated"
        server.udp_counters.associations += 1
        log.info("SOCKS: UDP relay %s for %s", hostport(relay_ip, relay_port), peer[0])

    def _fail(self, code: int) -> None:
        self.server.errors += 1
        self.transport.write(_reply(code, self.unspecified))
        self.transport.close()
        self.stage = "done"

    async def _connect(self, host: str, port: int) -> None:
        server = self.server
        try:
            transport = await server.dialer.dial(host, port, lambda: self.remote)
        except (OSError, asyncio.TimeoutError, ValueError) as exc:
            server.failed += 1
            log.info("SOCKS CONNECT %s failed: %s", hostport(host, port),
                     exc or type(exc).__name__)
            if not self.transport.is_closing():
                self.transport.write(_reply(reply_code(exc), self.unspecified))
                self.transport.close()
            self.stage = "done"
            return
        if self.transport.is_closing():
            transport.close()
            return
        if self.timer is not None:
            self.timer.cancel()
        bind_ip, bind_port = transport.get_extra_info("sockname")[:2]
        self.transport.write(_reply(REP_SUCCEEDED, bind_ip, bind_port))
        self.stage = "spliced"
        self.remote.attach(self.transport)
        self.attach(transport)
        self.transport.resume_reading()
        server.connected += 1

    @property
    def remote(self) -> Half:
        if not hasattr(self, "_remote"):
            self._remote = Half()
        return self._remote

    def connection_lost(self, exc) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.association is not None:
            self.association.close()          # it lives as long as its control connection
        if self.stage == "connecting" and self.task is not None:
            self.closed = True            # the dial finishes, then closes the VPN side
        super().connection_lost(exc)


class SocksServer:
    """``udp_endpoint``: what opens the local UDP relays (the loop's
    create_datagram_endpoint unless a test gives another)."""

    def __init__(self, dialer, bind: str, port: int, *,
                 credentials: ProxyCredentials | tuple[str, str] | None, udp_endpoint=None):
        self.dialer = dialer
        self.udp_endpoint = udp_endpoint
        self.bind, self.port = bind, port
        if isinstance(credentials, tuple):
            credentials = ProxyCredentials(credentials[0].encode(), credentials[1].encode())
        self.credentials = credentials
        self.server = None
        self.connected = self.failed = self.errors = self.auth_failures = 0
        self.open = 0                   # client connections alive
        self.associations: set[UdpAssociation] = set()     # at most MAX_ASSOCIATIONS
        self.udp_counters = UdpCounters()
        def clock() -> float:
            return asyncio.get_running_loop().time()
        self.names = NameCache(clock)
        self.drops = RateLimitedLog(log, clock=clock)

    def check(self, user: bytes, password: bytes) -> bool:
        return self.credentials.check(user, password)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _SocksClient(self), self.bind,
                                               self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("SOCKS5 proxy on %s%s", hostport(self.bind, self.port),
                 " (username/password required)" if self.credentials else "")

    def counters(self) -> dict[str, int]:
        values = {"connected": self.connected, "failed": self.failed, "errors": self.errors,
                  "auth_failures": self.auth_failures}
        values.update((f"udp_{k}", v) for k, v in self.udp_counters.as_dict().items())
        return values

    async def close(self) -> None:
        for association in list(self.associations):
            association.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        self.drops.flush()
        log.info("SOCKS5 proxy on %s: counters: %s", hostport(self.bind, self.port),
                 counters_summary(None, self.counters()))
