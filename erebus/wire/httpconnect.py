"""An HTTP CONNECT through a proxy (RFC 9110 section 9.3.6), as OpenVPN 2.6 asks for
it (proxy.c): the request line, a Host header (the server's name, unless a custom
header gives one), the custom headers, User-Agent, and ``Proxy-Authorization:
Basic`` (RFC 7617) when there are credentials.

Sans-IO, and h11 does the parsing: :class:`ConnectAnswer` takes the proxy's bytes as
they come and returns its answer once the status line and headers are complete.
Status line and headers together are at most :data:`MAX_HEADERS` bytes (h11's
``max_incomplete_event_size``), at most :data:`MAX_INTERIM` interim (1xx) answers
are skipped.  Only :class:`~erebus.errors.ParseError` escapes.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import h11

from ..errors import ParseError

__all__ = ["MAX_HEADERS", "MAX_INTERIM", "VERSIONS", "Answer", "ConnectAnswer",
           "connect_request", "offers_basic"]

MAX_HEADERS = 16 * 1024          # status line + headers of one answer
MAX_INTERIM = 8                  # 1xx answers skipped before the real one
VERSIONS = ("1.0", "1.1")        # http-proxy-option VERSION; 2.6's default is 1.0
_SHOWN = 120                     # characters of a bad status line quoted in an error


@dataclass(frozen=True, slots=True)
class Answer:
    """The proxy's answer: status, reason, headers (lower-case names), and for a 2xx
    the bytes that followed the headers (already the server's)."""

    status: int
    reason: str
    headers: tuple[tuple[bytes, bytes], ...]
    rest: bytes = b""

    @property
    def status_line(self) -> str:
        return f"{self.status} {self.reason}".rstrip()


def _request(host: str, port: int, *, headers, agent: str | None,
             credentials: tuple[str, str] | None) -> h11.Request:
    fields = list(headers)
    shown = f"[{host}]" if ":" in host else host      # an IPv6 literal (RFC 3986)
    if not any(name.lower() == "host" for name, _ in fields):
        fields.insert(0, ("Host", shown))
    if agent:
        fields.append(("User-Agent", agent))
    if credentials is not None:
        user, password = credentials
        token = base64.b64encode(f"{user}:{password}".encode("utf-8", "surrogateescape"))
        fields.append(("Proxy-Authorization", b"Basic " + token))
    return h11.Request(method="CONNECT", target=f"{shown}:{port}", headers=fields)


def connect_request(host: str, port: int, *, version: str = "1.0",
                    headers: tuple[tuple[str, str], ...] = (), agent: str | None = None,
                    credentials: tuple[str, str] | None = None) -> tuple[bytes, "ConnectAnswer"]:
    """The request's bytes and the parser of its answer.  ValueError for a header h11
    refuses to send (a name that is not a token, a value with CR or LF)."""
    if version not in VERSIONS:
        raise ValueError(f"HTTP version must be one of {', '.join(VERSIONS)}")
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADERS)
    try:
        data = conn.send(_request(host, port, headers=headers, agent=agent,
                                  credentials=credentials))
        data += conn.send(h11.EndOfMessage())
    except h11.LocalProtocolError as exc:
        raise ValueError(str(exc)) from None
    if version == "1.0":
        # h11 only writes HTTP/1.1; its state machine is the same for our one request
        line_end = data.index(b"\r\n")
        data = data[:line_end].replace(b" HTTP/1.1", b" HTTP/1.0") + data[line_end:]
    return data, ConnectAnswer(conn)


class ConnectAnswer:
    """The proxy's answer to one CONNECT."""

    def __init__(self, conn: h11.Connection):
        self._conn = conn
        self._interim = 0

    def receive(self, data: bytes) -> Answer | None:
        """Bytes from the proxy (``b""``: it closed the connection); the answer once
        its headers are complete, else None."""
        conn = self._conn
        try:
            conn.receive_data(data)
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    return None
                if isinstance(event, h11.InformationalResponse):
                    self._interim += 1
                    if self._interim > MAX_INTERIM:
                        raise ParseError(f"more than {MAX_INTERIM} interim (1xx) answers")
                    continue
                if isinstance(event, h11.Response):
                    return self._answer(event)
                if isinstance(event, h11.ConnectionClosed):
                    raise ParseError("the proxy closed the connection without answering")
                raise ParseError(f"unexpected {type(event).__name__}")
        except h11.RemoteProtocolError as exc:
            raise ParseError(_shorten(str(exc))) from None
        except RuntimeError:           # h11: data fed after the close (b"")
            raise ParseError("bytes from the proxy after it closed the connection") \
                from None

    def _answer(self, event: h11.Response) -> Answer:
        rest = b""
        if 200 <= event.status_code < 300:
            if self._conn.next_event() is h11.PAUSED:
                rest = bytes(self._conn.trailing_data[0])
        return Answer(event.status_code, event.reason.decode("latin-1"),
                      tuple((bytes(n), bytes(v)) for n, v in event.headers), rest)


def offers_basic(answer: Answer) -> bool:
    """Whether a 407's ``Proxy-Authenticate`` headers offer Basic."""
    return any(name == b"proxy-authenticate" and value.strip().lower().startswith(b"basic")
               for name, value in answer.headers)


def _shorten(text: str) -> str:
    """h11's message quotes the offending line: at most _SHOWN characters of it."""
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."
