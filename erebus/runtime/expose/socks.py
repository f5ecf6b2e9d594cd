"""A SOCKS5 server (RFC 1928) whose CONNECTs go through the VPN.

IPv4 addresses and domain names (resolved through the VPN's DNS, so ``curl
--socks5-hostname`` and ``ALL_PROXY=socks5h://`` never leak names to the host's
resolver); optional username/password (RFC 1929).  Replies carry the RFC's codes:
refused, host unreachable, network unreachable, TTL expired, command or address type
not supported.  After the reply the connection is spliced transport to transport.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import struct

from ...credentials import ProxyCredentials
from ...netstack.errors import NetErrorReason
from ...wire.socks5 import (ATYP_DOMAIN, ATYP_IPV4, ATYP_IPV6, CMD_CONNECT, NO_ACCEPTABLE,
                            NO_AUTH, REP_ADDRESS_TYPE_NOT_SUPPORTED,
                            REP_COMMAND_NOT_SUPPORTED, REP_CONNECTION_REFUSED,
                            REP_GENERAL_FAILURE, REP_HOST_UNREACHABLE,
                            REP_NETWORK_UNREACHABLE, REP_SUCCEEDED, REP_TTL_EXPIRED, USER_PASS,
                            VERSION)
from .dns import ResolveError
from .forward import Half

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
    return struct.pack("!BBBB4sH", VERSION, code, 0, ATYP_IPV4,
                       ipaddress.IPv4Address(addr).packed, port)


class _SocksClient(Half):
    """One client connection: the SOCKS handshake, then a spliced half."""

    def __init__(self, server: "SocksServer"):
        super().__init__()
        self.server = server
        self.buf = bytearray()
        self.stage = "greeting"
        self.task: asyncio.Task | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.timer = asyncio.get_running_loop().call_later(HANDSHAKE_TIMEOUT, self._timeout)

    def _timeout(self) -> None:
        if self.stage != "spliced":
            log.debug("SOCKS handshake timed out")
            self.transport.abort()

    def data_received(self, data) -> None:
        if self.stage in ("spliced", "connecting"):
            super().data_received(data)
            return
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
                host, port = parsed
                self.stage = "connecting"
                self.pending = [bytes(self.buf)] if self.buf else []
                self.buf.clear()
                self.transport.pause_reading()
                self.task = asyncio.get_running_loop().create_task(self._connect(host, port))
                return
            else:
                return

    def _parse_request(self):
        b = self.buf
        if len(b) < 5:
            return None
        ver, cmd, _, atyp = b[0], b[1], b[2], b[3]
        if ver != VERSION:
            self._fail(REP_GENERAL_FAILURE)
            return ()
        if atyp == ATYP_IPV4:
            end = 4 + 4 + 2
            if len(b) < end:
                return None
            host = str(ipaddress.IPv4Address(bytes(b[4:8])))
        elif atyp == ATYP_DOMAIN:
            n = b[4]
            end = 5 + n + 2
            if len(b) < end:
                return None
            try:
                host = bytes(b[5:5 + n]).decode("ascii")
            except UnicodeDecodeError:
                del b[:end]
                self._fail(REP_GENERAL_FAILURE)      # names travel as ASCII (IDNA)
                return ()
        elif atyp == ATYP_IPV6:
            end = 4 + 16 + 2
            if len(b) < end:
                return None
            del b[:end]
            self._fail(REP_ADDRESS_TYPE_NOT_SUPPORTED)
            return ()
        else:
            self._fail(REP_ADDRESS_TYPE_NOT_SUPPORTED)
            return ()
        (port,) = struct.unpack_from("!H", b, end - 2)
        del b[:end]
        if cmd != CMD_CONNECT:
            self._fail(REP_COMMAND_NOT_SUPPORTED)
            return ()
        if not host or port == 0:
            self._fail(REP_GENERAL_FAILURE)
            return ()
        return host, port

    def _fail(self, code: int) -> None:
        self.server.errors += 1
        self.transport.write(_reply(code))
        self.transport.close()
        self.stage = "done"

    async def _connect(self, host: str, port: int) -> None:
        server = self.server
        try:
            transport = await server.dialer.dial(host, port, lambda: self.remote)
        except (OSError, asyncio.TimeoutError, ValueError) as exc:
            server.failed += 1
            log.info("SOCKS CONNECT %s:%d failed: %s", host, port,
                     exc or type(exc).__name__)
            if not self.transport.is_closing():
                self.transport.write(_reply(reply_code(exc)))
                self.transport.close()
            self.stage = "done"
            return
        if self.transport.is_closing():
            transport.close()
            return
        if self.timer is not None:
            self.timer.cancel()
        bind_ip, bind_port = transport.get_extra_info("sockname")
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
        if self.stage == "connecting" and self.task is not None:
            self.closed = True            # the dial finishes, then closes the VPN side
        super().connection_lost(exc)


class SocksServer:
    def __init__(self, dialer, bind: str, port: int, *,
                 credentials: ProxyCredentials | tuple[str, str] | None):
        self.dialer = dialer
        self.bind, self.port = bind, port
        if isinstance(credentials, tuple):
            credentials = ProxyCredentials(credentials[0].encode(), credentials[1].encode())
        self.credentials = credentials
        self.server = None
        self.connected = self.failed = self.errors = self.auth_failures = 0

    def check(self, user: bytes, password: bytes) -> bool:
        return self.credentials.check(user, password)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _SocksClient(self), self.bind,
                                               self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("SOCKS5 proxy on %s:%d%s", self.bind, self.port,
                 " (username/password required)" if self.credentials else "")

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
