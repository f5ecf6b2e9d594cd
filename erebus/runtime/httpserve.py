"""A tiny read-only HTTP/1.1 server for ``--pac`` and ``--metrics``: GET (and HEAD)
of a few fixed paths, one request per connection, h11 doing the framing.  A request
head is at most :data:`MAX_HEAD` bytes and must come within :data:`TIMEOUT` seconds."""

from __future__ import annotations

import asyncio
import logging

import h11

from .expose.hostport import hostport

log = logging.getLogger("erebus.httpserve")

MAX_HEAD = 8192
TIMEOUT = 10.0
CHUNK = 4096


class HttpServe:
    """``routes``: path -> a callable giving (content type, body bytes)."""

    def __init__(self, what: str, bind: str, port: int, routes: dict):
        self.what = what
        self.bind, self.port = bind, port
        self.routes = routes
        self.server = None
        self.requests = self.errors = 0

    async def start(self) -> None:
        from .expose.forward import warn_if_public
        warn_if_public(self.what, self.bind)
        self.server = await asyncio.start_server(self._client, self.bind, self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("%s on http://%s/", self.what, hostport(self.bind, self.port))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _client(self, reader, writer) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        event = None
        try:
            event = await asyncio.wait_for(self._request(conn, reader), TIMEOUT)
            if isinstance(event, h11.Request):
                self.requests += 1
                status, ctype, body = self._answer(event)
            else:
                return
        except (asyncio.TimeoutError, ConnectionError):
            return
        except h11.RemoteProtocolError:
            self.errors += 1
            status, ctype, body = 400, "text/plain", b"bad request\n"
        except Exception:                           # noqa: BLE001 - never kill erebus up
            log.exception("%s: internal error", self.what)
            status, ctype, body = 500, "text/plain", b"internal error\n"
        try:
            headers = [("content-type", ctype), ("content-length", str(len(body))),
                       ("connection", "close"), ("cache-control", "no-store")]
            writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
            if not (isinstance(event, h11.Request) and event.method == b"HEAD"):
                writer.write(conn.send(h11.Data(data=body)))
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
        except (ConnectionError, h11.LocalProtocolError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _request(conn, reader):
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            conn.receive_data(await reader.read(CHUNK))

    def _answer(self, request: h11.Request) -> tuple[int, str, bytes]:
        if request.method not in (b"GET", b"HEAD"):
            return 405, "text/plain", b"only GET\n"
        path = request.target.decode("ascii", "replace").partition("?")[0]
        route = self.routes.get(path)
        if route is None:
            return 404, "text/plain", b"not found\n"
        ctype, body = route()
        return 200, ctype, body
