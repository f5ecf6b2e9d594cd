"""An HTTP/1.1 forward proxy whose upstream connections go through the VPN.

Absolute-URI requests (``GET http://host/path``) of any method are forwarded with
keep-alive on both sides and bodies streamed both ways (h11 does the framing:
content-length and chunked); hop-by-hop headers are dropped as RFC 9110 7.6.1 asks.
``CONNECT host:port`` opens a tunnel.  Failures are answered as HTTP: 400 for a
malformed request, 407 without the credentials the proxy asks for, 502 when the VPN
side refuses, cannot resolve or is unreachable, 504 when it does not answer in time.
Parsing is h11's, not ours: a request's line and headers are at most
:data:`MAX_HEADERS` bytes and must arrive within :data:`REQUEST_TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import logging

import h11

from .forward import warn_if_public
from .hostport import BadHostPort, hostport, parse_authority

log = logging.getLogger("erebus.http")

CHUNK = 65536
MAX_HEADERS = 64 * 1024          # request line + headers (h11 max_incomplete_event_size)
REQUEST_TIMEOUT = 30.0           # for a request's head to arrive (slowloris, idle keep-alive)
RESPONSE_TIMEOUT = 120.0
REALM = b'Basic realm="erebus", charset="UTF-8"'     # RFC 7617 section 2
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection",
                        b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
                        b"transfer-encoding", b"upgrade"})
VIA = (b"via", b"1.1 erebus")


class ProxyError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def absolute_http_uri(target: str) -> tuple[str, int, str, str]:
    """An absolute-form request target (RFC 9112 3.2.2, RFC 3986): (host, port, the
    authority for Host, the origin-form path and query).  ProxyError(400) saying why
    for anything else: another scheme, no or a bad authority (an IPv6 host goes in
    brackets: ``http://[2001:2::1]:8080/``)."""
    scheme, sep, rest = target.partition("://")
    if not sep or scheme.lower() != "http":
        if sep and scheme.lower() == "https":
            raise ProxyError(400, "https:// URLs go through CONNECT")
        raise ProxyError(400, "a proxy request needs an absolute http:// URI "
                              "(or CONNECT)")
    end = len(rest)
    for stop in "/?#":
        at = rest.find(stop)
        if at >= 0:
            end = min(end, at)
    authority, tail = rest[:end], rest[end:]
    authority = authority.rpartition("@")[2]       # userinfo (deprecated): never sent on
    try:
        host, port = parse_authority(authority, default_port=80)
    except BadHostPort as exc:
        raise ProxyError(400, f"bad host in the URI: {exc}") from None
    path = tail.partition("#")[0]
    if not path.startswith("/"):
        path = "/" + path
    return host, port, authority, path


def _status_for(exc: BaseException) -> int:
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return 504
    return 502


def end_to_end(headers, *, keep_te: bool = False) -> list[tuple[bytes, bytes]]:
    """Headers without the hop-by-hop ones (and those the Connection header names)."""
    named = set()
    for name, value in headers:
        if name == b"connection":
            named.update(v.strip().lower() for v in value.split(b","))
    out = []
    for name, value in headers:
        if name in named or (name in HOP_BY_HOP and not (
                keep_te and name == b"transfer-encoding")):
            continue
        out.append((name, value))
    return out


class _Upstream:
    """One connection to an origin server through the VPN, reusable while keep-alive."""

    def __init__(self, key, reader, writer):
        self.key = key
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADERS)

    def send(self, event) -> None:
        data = self.conn.send(event)
        if data:
            self.writer.write(data)

    async def next_event(self, timeout: float | None = None):
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await asyncio.wait_for(self.reader.read(CHUNK), timeout)
            self.conn.receive_data(data)

    @property
    def reusable(self) -> bool:
        return self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE

    def close(self) -> None:
        self.writer.close()


class HttpProxy:
    """``credentials``: the username and password clients must send in
    ``Proxy-Authorization: Basic`` (RFC 7617, RFC 9110 11.7.2) for every request and
    CONNECT; without them, or with others, the answer is 407 and the connection
    closes.  The header is never forwarded and never logged."""

    def __init__(self, dialer, bind: str, port: int, *, credentials=None):
        self.dialer = dialer
        self.bind, self.port = bind, port
        self.credentials = credentials
        self.server = None
        self.requests = self.tunnels = self.errors = self.auth_failures = 0
        self.open = 0                   # client connections alive

    async def start(self) -> None:
        warn_if_public("--http-proxy", self.bind)
        self.server = await asyncio.start_server(self._client, self.bind, self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("HTTP proxy on %s%s", hostport(self.bind, self.port),
                 " (username/password required)" if self.credentials else "")

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _open(self, host: str, port: int):
        reader = asyncio.StreamReader(limit=CHUNK)
        protocol = asyncio.StreamReaderProtocol(reader)
        transport = await self.dialer.dial(host, port, lambda: protocol)
        writer = asyncio.StreamWriter(transport, protocol, reader,
                                      asyncio.get_running_loop())
        return reader, writer

    # -- one client connection --------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADERS)
        upstream: _Upstream | None = None
        peer = writer.get_extra_info("peername")
        self.open += 1

        async def next_event():
            while True:
                event = conn.next_event()
                if event is not h11.NEED_DATA:
                    return event
                conn.receive_data(await reader.read(CHUNK))

        def send(event) -> None:
            data = conn.send(event)
            if data:
                writer.write(data)

        try:
            while True:
                try:
                    event = await asyncio.wait_for(next_event(), REQUEST_TIMEOUT)
                except asyncio.TimeoutError:
                    log.debug("HTTP proxy: %s sent no complete request in %.0f s", peer,
                              REQUEST_TIMEOUT)
                    break
                except h11.RemoteProtocolError as exc:
                    # h11's text quotes the offending line (a URL with userinfo or a
                    # token, a credential header): neither logged nor echoed
                    self.errors += 1
                    status = exc.error_status_hint or 400
                    log.info("HTTP proxy: bad request from %s: %s, status %d (the "
                             "request is not shown: it may hold a secret)", peer,
                             type(exc).__name__, status)
                    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        self._error(send, status, "Bad request: malformed HTTP")
                    break
                if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    break
                if not isinstance(event, h11.Request):
                    break
                self.requests += 1
                if self.credentials is not None and not self._authorized(event, peer):
                    self.auth_failures += 1
                    self._error(send, 407, "Proxy authentication required",
                                [(b"proxy-authenticate", REALM)])
                    break
                if event.method == b"CONNECT":
                    await self._connect(conn, event, reader, writer, send)
                    return
                try:
                    upstream = await self._forward(conn, event, next_event, send, writer,
                                                   upstream)
                except ProxyError as exc:
                    self.errors += 1
                    log.info("HTTP proxy: %s %s: %s", event.method.decode(),
                             event.target.decode(errors="replace"), exc)
                    if upstream is not None:
                        upstream.close()
                        upstream = None
                    if conn.our_state is h11.SEND_RESPONSE:
                        self._error(send, exc.status, str(exc))
                        await self._drain_request(conn, next_event)
                    else:
                        break                 # a response had started: cut it short
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    break
                try:
                    conn.start_next_cycle()
                except h11.LocalProtocolError:
                    break
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, h11.LocalProtocolError) as exc:
            log.debug("HTTP proxy: %s: %s", peer, exc)
        finally:
            self.open -= 1
            if upstream is not None:
                upstream.close()
            writer.close()

    def _authorized(self, request: h11.Request, peer) -> bool:
        values = [v for name, v in request.headers if name == b"proxy-authorization"]
        if len(values) == 1 and self.credentials.check_basic(values[0]):
            return True
        if values:
            log.warning("HTTP proxy: authentication failed from %s", peer)
        else:
            log.info("HTTP proxy: %s sent no credentials (407)", peer)
        return False

    def _error(self, send, status: int, message: str, extra=()) -> None:
        body = (message + "\n").encode()
        reasons = {400: b"Bad Request", 407: b"Proxy Authentication Required",
                   502: b"Bad Gateway", 504: b"Gateway Timeout"}
        send(h11.Response(status_code=status, reason=reasons.get(status, b""),
                          headers=[(b"content-type", b"text/plain; charset=utf-8"),
                                   (b"content-length", str(len(body)).encode()),
                                   *extra, (b"connection", b"close"), VIA]))
        send(h11.Data(data=body))
        send(h11.EndOfMessage())

    async def _drain_request(self, conn, next_event) -> None:
        """Read what is left of the client's request body after an early error."""
        while conn.their_state is h11.SEND_BODY:
            event = await next_event()
            if isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break

    async def _forward(self, conn, request: h11.Request, next_event, send, writer,
                       upstream: _Upstream | None) -> _Upstream | None:
        target = request.target.decode("ascii", "replace")
        host, port, authority, path = absolute_http_uri(target)
        key = (host, port)
        if upstream is not None and (upstream.key != key or not upstream.reusable):
            upstream.close()
            upstream = None
        if upstream is not None:
            upstream.conn.start_next_cycle()
        else:
            try:
                reader, up_writer = await self._open(host, port)
            except (OSError, ValueError) as exc:
                raise ProxyError(_status_for(exc),
                                 f"{hostport(host, port)}: {exc}") from None
            upstream = _Upstream(key, reader, up_writer)
        # RFC 9112 3.2.2: the Host of an absolute-form request is the URI's authority,
        # whatever Host the client sent
        headers = [(b"host", authority.encode())] + [
            (name, value) for name, value in end_to_end(request.headers, keep_te=True)
            if name != b"host"]
        headers.append(VIA)
        try:
            upstream.send(h11.Request(method=request.method, target=path.encode(),
                                      headers=headers))
            # the request body, streamed
            while True:
                event = await next_event()
                if isinstance(event, h11.Data):
                    upstream.send(h11.Data(data=event.data))
                    await upstream.writer.drain()
                elif isinstance(event, h11.EndOfMessage):
                    upstream.send(h11.EndOfMessage(headers=event.headers))
                    break
                else:
                    raise ProxyError(400, "the request ended early")
            await upstream.writer.drain()
            # the response, streamed
            while True:
                try:
                    event = await upstream.next_event(RESPONSE_TIMEOUT)
                except asyncio.TimeoutError:
                    raise ProxyError(504, f"{hostport(host, port)} sent no response in "
                                          f"{RESPONSE_TIMEOUT:.0f} s") from None
                if isinstance(event, h11.InformationalResponse):
                    continue                     # 1xx: not forwarded (no Expect support)
                if isinstance(event, h11.Response):
                    send(h11.Response(status_code=event.status_code, reason=event.reason,
                                      headers=end_to_end(event.headers) + [VIA]))
                    break
                raise ProxyError(502, f"{hostport(host, port)} closed without a response")
            while True:
                event = await upstream.next_event(RESPONSE_TIMEOUT)
                if isinstance(event, h11.Data):
                    send(h11.Data(data=event.data))
                    await writer.drain()
                elif isinstance(event, h11.EndOfMessage):
                    send(h11.EndOfMessage())
                    break
                else:
                    raise ProxyError(502, f"{hostport(host, port)} cut the response short")
        except h11.RemoteProtocolError as exc:
            raise ProxyError(502, f"{hostport(host, port)} answered malformed HTTP: "
                                  f"{exc}") from None
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
            raise ProxyError(_status_for(exc),
                             f"{hostport(host, port)}: {exc or 'lost'}") from None
        if not upstream.reusable:
            upstream.close()
            return None
        return upstream

    async def _connect(self, conn, request: h11.Request, reader, writer, send) -> None:
        target = request.target.decode("ascii", "replace")
        try:
            host, port = parse_authority(target)
        except BadHostPort as exc:
            self.errors += 1
            self._error(send, 400, f"CONNECT needs host:port ([2001:2::1]:443 for an IPv6 "
                                   f"address): {exc}")
            await writer.drain()
            return
        try:
            up_reader, up_writer = await self._open(host, port)
        except (OSError, ValueError) as exc:
            self.errors += 1
            log.info("HTTP proxy: CONNECT %s: %s", target, exc)
            self._error(send, _status_for(exc), f"{target}: {exc}")
            await writer.drain()
            return
        self.tunnels += 1
        send(h11.Response(status_code=200, reason=b"Connection established",
                          headers=[VIA]))
        leftover, _ = conn.trailing_data
        if leftover:
            up_writer.write(leftover)
        await splice(reader, writer, up_reader, up_writer)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.transport.abort()


async def splice(a_reader, a_writer, b_reader, b_writer) -> None:
    """Copy both ways until both directions ended (half-close propagated)."""
    try:
        await asyncio.gather(_pump(a_reader, b_writer), _pump(b_reader, a_writer))
    finally:
        a_writer.close()
        b_writer.close()

