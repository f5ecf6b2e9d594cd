"""SOCKS5 messages (RFC 1928), username/password authentication (RFC 1929) and the
UDP request header (RFC 1928 section 7), as a client sends and reads them, and as a
server reads requests and datagrams (:func:`parse_request`, :func:`parse_udp_request`)
and answers (:func:`build_reply`).

Sans-IO: builders return bytes; each ``parse_*`` takes what has arrived so far and
returns ``None`` while the message is incomplete, else the message and how many
bytes it took.  Only :class:`~erebus.errors.ParseError` escapes.  The longest
message a proxy can send here is a reply with a domain name: 4 + 1 + 255 + 2 bytes,
so nothing a proxy sends is buffered beyond :data:`MAX_REPLY`.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from ..errors import ParseError

__all__ = ["VERSION", "NO_AUTH", "USER_PASS", "NO_ACCEPTABLE", "CMD_CONNECT",
           "CMD_UDP_ASSOCIATE", "ATYP_IPV4", "ATYP_DOMAIN", "ATYP_IPV6", "REPLY_MESSAGES",
           "MAX_REPLY", "UDP_HEADER", "Reply", "greeting", "parse_method",
           "user_pass_request", "parse_auth_status", "request", "parse_reply",
           "add_udp_header", "strip_udp_header", "RequestError", "Request", "UdpRequest",
           "parse_request", "parse_udp_request", "build_reply"]

VERSION = 5
AUTH_VERSION = 1                 # RFC 1929's sub-negotiation version
NO_AUTH, USER_PASS, NO_ACCEPTABLE = 0x00, 0x02, 0xFF
CMD_CONNECT, CMD_UDP_ASSOCIATE = 0x01, 0x03
ATYP_IPV4, ATYP_DOMAIN, ATYP_IPV6 = 0x01, 0x03, 0x04

REP_SUCCEEDED = 0x00
REP_GENERAL_FAILURE = 0x01
REP_NOT_ALLOWED = 0x02
REP_NETWORK_UNREACHABLE = 0x03
REP_HOST_UNREACHABLE = 0x04
REP_CONNECTION_REFUSED = 0x05
REP_TTL_EXPIRED = 0x06
REP_COMMAND_NOT_SUPPORTED = 0x07
REP_ADDRESS_TYPE_NOT_SUPPORTED = 0x08

# RFC 1928 section 6, in its words
REPLY_MESSAGES = {
    REP_SUCCEEDED: "succeeded",
    REP_GENERAL_FAILURE: "general SOCKS server failure",
    REP_NOT_ALLOWED: "connection not allowed by ruleset",
    REP_NETWORK_UNREACHABLE: "network unreachable",
    REP_HOST_UNREACHABLE: "host unreachable",
    REP_CONNECTION_REFUSED: "connection refused",
    REP_TTL_EXPIRED: "TTL expired",
    REP_COMMAND_NOT_SUPPORTED: "command not supported",
    REP_ADDRESS_TYPE_NOT_SUPPORTED: "address type not supported",
}

MAX_FIELD = 255                  # a domain name, RFC 1929's ULEN and PLEN: one byte each
MAX_REPLY = 4 + 1 + MAX_FIELD + 2
UDP_HEADER = 10                  # RSV(2) FRAG(1) ATYP(1) IPv4(4) PORT(2)
_ADDR_LEN = {ATYP_IPV4: 4, ATYP_IPV6: 16}


@dataclass(frozen=True, slots=True)
class Reply:
    """The proxy's answer to a request: ``code`` (REP), the bound address and port
    (for UDP ASSOCIATE: where to send datagrams)."""

    code: int
    host: str
    port: int

    @property
    def message(self) -> str:
        return REPLY_MESSAGES.get(self.code, f"unassigned reply code {self.code:#04x}")


def greeting(with_password: bool) -> bytes:
    """The method selection: one method, as OpenVPN 2.6 offers (socks.c)."""
    return bytes((VERSION, 1, USER_PASS if with_password else NO_AUTH))


def parse_method(buf: bytes) -> tuple[int, int] | None:
    """The method the proxy chose, and the bytes taken."""
    if len(buf) < 2:
        return None
    if buf[0] != VERSION:
        raise ParseError(f"not a SOCKS5 answer (version {buf[0]})")
    return buf[1], 2


def user_pass_request(user: bytes, password: bytes) -> bytes:
    """RFC 1929's request; ValueError if a field is longer than 255 bytes."""
    if len(user) > MAX_FIELD or len(password) > MAX_FIELD:
        raise ValueError("SOCKS username and password are at most 255 bytes each")
    return bytes((AUTH_VERSION, len(user))) + user + bytes((len(password),)) + password


def parse_auth_status(buf: bytes) -> tuple[bool, int] | None:
    """Whether the proxy took the username and password (STATUS 0), and the bytes
    taken.  The version byte is not checked: some servers answer 5, not 1."""
    if len(buf) < 2:
        return None
    return buf[1] == 0, 2


def _domain(host: str) -> bytes:
    name = host.encode("idna") if not host.isascii() else host.encode()
    if not name or len(name) > MAX_FIELD:
        raise ValueError(f"a SOCKS destination name is 1 to {MAX_FIELD} bytes")
    return bytes((ATYP_DOMAIN, len(name))) + name


def request(cmd: int, host: str, port: int, *, as_domain: bool = False) -> bytes:
    """A CONNECT or UDP ASSOCIATE request: an IPv4 literal as such, an IPv6 literal
    as ATYP 4, anything else as a domain name.  ``as_domain``: even an IPv4 literal
    as a name, as OpenVPN 2.6 sends CONNECT's destination (the proxy resolves it);
    an IPv6 literal stays ATYP 4 (2.6 would send it as a name, which a proxy need
    not parse).  ValueError for a name that does not fit."""
    addr = None
    if ":" in host:
        try:
            addr = bytes((ATYP_IPV6,)) + ipaddress.IPv6Address(host).packed
        except ValueError:
            pass
    if addr is None and not as_domain:
        try:
            addr = bytes((ATYP_IPV4,)) + ipaddress.IPv4Address(host).packed
        except ValueError:
            pass
    if addr is None:
        addr = _domain(host)
    return bytes((VERSION, cmd, 0)) + addr + struct.pack("!H", port)


def parse_reply(buf: bytes) -> tuple[Reply, int] | None:
    """A reply (section 6), and the bytes taken."""
    n = len(buf)
    if n < 5:
        return None
    if buf[0] != VERSION:
        raise ParseError(f"not a SOCKS5 reply (version {buf[0]})")
    atyp = buf[3]
    if atyp == ATYP_DOMAIN:
        alen, start = buf[4], 5
    elif atyp in _ADDR_LEN:
        alen, start = _ADDR_LEN[atyp], 4
    else:
        raise ParseError(f"a SOCKS5 reply with an unknown address type {atyp}")
    end = start + alen + 2
    if n < end:
        return None
    raw = bytes(buf[start:start + alen])
    if atyp == ATYP_DOMAIN:
        host = raw.decode("ascii", "replace")
    else:
        host = str(ipaddress.ip_address(raw))
    (port,) = struct.unpack_from("!H", buf, start + alen)
    return Reply(buf[1], host, port), end


def add_udp_header(datagram: bytes, ip: bytes, port: int) -> bytes:
    """Section 7's header before ``datagram``: FRAG 0 and the address ``ip`` (4 bytes:
    ATYP 1, as OpenVPN 2.6 sends it; 16 bytes: ATYP 4)."""
    atyp = b"\x01" if len(ip) == 4 else b"\x04"
    if len(ip) not in (4, 16):
        raise ValueError(f"an address is 4 or 16 bytes, not {len(ip)}")
    return b"\0\0\0" + atyp + ip + struct.pack("!H", port) + datagram


def strip_udp_header(datagram: bytes) -> tuple[int, bytes, int, bytes]:
    """(FRAG, source IPv4 as 4 bytes, source port, payload) of a datagram from the
    relay; ParseError if it is too short or not from an IPv4 address."""
    if len(datagram) < UDP_HEADER:
        raise ParseError(f"a {len(datagram)}-byte datagram from the SOCKS relay is "
                         "shorter than its header")
    if datagram[3] != ATYP_IPV4:
        raise ParseError(f"a datagram from the SOCKS relay with address type "
                         f"{datagram[3]}, not IPv4")
    (port,) = struct.unpack_from("!H", datagram, 8)
    return datagram[2], bytes(datagram[4:8]), port, datagram[UDP_HEADER:]


# -- the server's side ----------------------------------------------------------------

class RequestError(ParseError):
    """A request the server answers with ``reply`` (a REP code), then closes."""

    def __init__(self, message: str, reply: int):
        super().__init__(message)
        self.reply = reply


@dataclass(frozen=True, slots=True)
class Request:
    """A client's request (section 4): ``host`` is a dotted IPv4 address, an IPv6
    address (``atyp`` ATYP_IPV6) or a name as sent (ASCII)."""

    cmd: int
    atyp: int
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class UdpRequest:
    """A datagram from the client to the UDP relay (section 7)."""

    frag: int
    atyp: int
    host: str
    port: int
    data: bytes


def _parse_address(buf, offset: int) -> tuple[int, str, int, int] | None:
    """ATYP, address, port and end of the address that starts at ``offset`` (its
    ATYP byte); None while incomplete; RequestError for an unknown ATYP (reply 8), a
    name that is empty or not ASCII (reply 1)."""
    n = len(buf)
    if n <= offset:
        return None
    atyp = buf[offset]
    if atyp == ATYP_DOMAIN:
        if n <= offset + 1:
            return None
        alen, start = buf[offset + 1], offset + 2
    elif atyp in _ADDR_LEN:
        alen, start = _ADDR_LEN[atyp], offset + 1
    else:
        raise RequestError(f"unknown address type {atyp}", REP_ADDRESS_TYPE_NOT_SUPPORTED)
    end = start + alen + 2
    if n < end:
        return None
    raw = bytes(buf[start:start + alen])
    if atyp == ATYP_DOMAIN:
        if not raw or not raw.isascii():
            raise RequestError("a destination name that is empty or not ASCII (IDNA)",
                               REP_GENERAL_FAILURE)
        host = raw.decode("ascii")
    else:
        host = str(ipaddress.ip_address(raw))
    (port,) = struct.unpack_from("!H", buf, start + alen)
    return atyp, host, port, end


def parse_request(buf) -> tuple[Request, int] | None:
    """A client's request and the bytes taken; None while incomplete.  RequestError
    (with the reply to send) for a version other than 5, an unknown address type or
    an unusable name; the command is not checked."""
    if len(buf) < 4:
        return None
    if buf[0] != VERSION:
        raise RequestError(f"not a SOCKS5 request (version {buf[0]})", REP_GENERAL_FAILURE)
    parsed = _parse_address(buf, 3)
    if parsed is None:
        return None
    atyp, host, port, end = parsed
    return Request(buf[1], atyp, host, port), end


def parse_udp_request(datagram) -> UdpRequest:
    """RSV(2) FRAG(1) ATYP DST.ADDR DST.PORT DATA of a datagram from the client;
    ParseError if the header is incomplete or its address unusable.  RSV is not
    checked (RFC 1928 says X'0000'; nothing depends on it)."""
    n = len(datagram)
    parsed = _parse_address(datagram, 3) if n > 3 else None
    if parsed is None:
        raise ParseError(f"a {n}-byte datagram to the SOCKS relay is shorter than its "
                         "header")
    atyp, host, port, end = parsed
    return UdpRequest(datagram[2], atyp, host, port, bytes(datagram[end:]))


def build_reply(code: int, host: str = "0.0.0.0", port: int = 0) -> bytes:
    """The server's reply (section 6) with BND.ADDR ``host`` (IPv4 or IPv6) and
    BND.PORT ``port``."""
    addr = ipaddress.ip_address(host)
    atyp = ATYP_IPV4 if addr.version == 4 else ATYP_IPV6
    return bytes((VERSION, code, 0, atyp)) + addr.packed + struct.pack("!H", port)
