"""A pcapng capture writer that Wireshark and tshark read.

One section with two interfaces, both ``LINKTYPE_RAW`` (101, raw IP)::

    interface 0  "openvpn-outer"  the VPN's datagrams exchanged with the server,
                 ("ipsec-outer")  wrapped in synthesized IPv4 (or IPv6, for a server
                                  reached over IPv6) + UDP headers (valid
                                  checksums) so dissectors see UDP; named by the
                                  VPN family (``family=``)
    interface 1  "tunnel-inner"   the IP packets carried inside the tunnel, IPv4 and
                                  IPv6 alike (raw IP: Wireshark reads the version
                                  nibble of each)

Blocks written (pcapng, little-endian, every block padded to 32 bits)::

    SHB  0x0A0D0D0A | len | 0x1A2B3C4D | major 1 | minor 0 | section length -1
         | options (shb_userappl) | len
    IDB  1 | len | linktype(2) | reserved(2) | snaplen(4)
         | options (if_name, if_description, if_tsresol = 6) | len
    EPB  6 | len | interface id | timestamp high | timestamp low | captured len
         | original len | packet, padded | [epb_flags] | len

Timestamps are wall-clock epoch seconds (``time.time()``) in microseconds.
With ``inbound=True/False`` an EPB carries the epb_flags direction option.

Each packet is one ``write`` on a buffered file (struct precompiled, one
``b"".join``); the buffer is flushed when ``flush_interval`` seconds passed
since the last flush (checked when a packet is written, 0 flushes every
packet), by :meth:`PcapWriter.flush`, and by :meth:`PcapWriter.close`.  An
idle writer keeps its last packets buffered; a runtime that wants them on
disk calls :meth:`flush` from a timer.

Only UDP transport is synthesized for now.  TCP transport would need a
synthesized TCP stream per direction (sequence numbers, the 2-byte OpenVPN
length prefix); ``write_outer(..., proto=)`` is the place for it.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import stat
import struct
import time
from typing import BinaryIO

from ..errors import ConfigError
from ..wire.checksum import internet_checksum
from ..wire.ipv4 import PROTO_UDP, build_ipv4_header, to_ip

__all__ = ["PcapWriter", "open_capture", "LINKTYPE_RAW", "OUTER_INTERFACE", "INNER_INTERFACE"]

LINKTYPE_RAW = 101
OUTER_INTERFACE = 0
INNER_INTERFACE = 1
SNAPLEN = 0xFFFF

_SHB_TYPE = 0x0A0D0D0A
_IDB_TYPE = 0x00000001
_EPB_TYPE = 0x00000006
_BYTE_ORDER_MAGIC = 0x1A2B3C4D

_OPT_ENDOFOPT = 0
_SHB_USERAPPL = 4
_IF_NAME = 2
_IF_DESCRIPTION = 3
_IF_TSRESOL = 9
_EPB_FLAGS = 2

_U32 = struct.Struct("<I")
_OPT = struct.Struct("<HH")
_SHB_BODY = struct.Struct("<IHHq")  # byte-order magic, major, minor, section length
_IDB_BODY = struct.Struct("<HHI")  # linktype, reserved, snaplen
_EPB_HEAD = struct.Struct("<IIIIIII")
_UDP = struct.Struct("!HHHH")
_END_OF_OPTIONS = _OPT.pack(_OPT_ENDOFOPT, 0)
# epb_flags: bits 0-1 direction, 01 inbound, 10 outbound.
_FLAGS_INBOUND = _OPT.pack(_EPB_FLAGS, 4) + _U32.pack(1) + _END_OF_OPTIONS
_FLAGS_OUTBOUND = _OPT.pack(_EPB_FLAGS, 4) + _U32.pack(2) + _END_OF_OPTIONS
_PADDING = (b"", b"\0\0\0", b"\0\0", b"\0")  # indexed by length % 4

_MAX_UDP_PAYLOAD = 0xFFFF - 20 - 8
_IPV6_HEADER = struct.Struct("!IHBB16s16s")     # RFC 8200: version/class/flow, payload
_NEXT_UDP = 17                                  # length, next header, hop limit, src, dst


_FAMILY_NAMES = {"openvpn": "OpenVPN", "ipsec": "IKE and ESP", "wireguard": "WireGuard"}


def _option(code: int, value: bytes) -> bytes:
    return _OPT.pack(code, len(value)) + value + _PADDING[len(value) & 3]


def _block(block_type: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return _U32.pack(block_type) + _U32.pack(length) + body + _U32.pack(length)


def _shb(application: str) -> bytes:
    options = _option(_SHB_USERAPPL, application.encode()) + _END_OF_OPTIONS
    body = _SHB_BODY.pack(_BYTE_ORDER_MAGIC, 1, 0, -1) + options
    return _block(_SHB_TYPE, body)


def _idb(name: str, description: str) -> bytes:
    options = (_option(_IF_NAME, name.encode()) + _option(_IF_DESCRIPTION, description.encode())
               + _option(_IF_TSRESOL, bytes((6,))) + _END_OF_OPTIONS)
    body = _IDB_BODY.pack(LINKTYPE_RAW, 0, SNAPLEN) + options
    return _block(_IDB_TYPE, body)


Address = tuple[int | str | bytes, int]


def _refuse(path: str, reason: str, option: str = "--pcap",
            holds: str = "the capture holds the decrypted traffic") -> ConfigError:
    return ConfigError(f"{option}: {path}: {reason}; {holds}, "
                       "so erebus writes it only to a new file or to a regular file of its "
                       "own (choose another name or remove it)")


def open_capture(path: str | os.PathLike[str], *, option: str = "--pcap",
                 holds: str = "the capture holds the decrypted traffic") -> int:
    """A descriptor for writing the capture at ``path``, mode 0600: a new file
    (``O_CREAT | O_EXCL``), or an existing regular file owned by us with one link,
    truncated and made 0600.  Never follows a symlink (``O_NOFOLLOW``) and never
    opens a FIFO or device: another local user who made the name first (in /tmp,
    say) cannot redirect the capture nor read it.  Refusals are ConfigErrors."""
    shown = os.fspath(path)
    common = os.O_WRONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0) | \
        getattr(os, "O_BINARY", 0)
    try:
        return os.open(path, common | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(f"{option}: cannot create {shown}: {exc.strerror or exc}") from None
    try:
        fd = os.open(path, common | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP or os.path.islink(path):
            raise _refuse(shown, "is a symbolic link", option, holds) from None
        if exc.errno == errno.ENXIO:
            raise _refuse(shown, "is a FIFO", option, holds) from None
        raise ConfigError(f"{option}: cannot open {shown}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(shown, "exists and is not a regular file", option, holds)
        if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
            raise _refuse(shown, f"exists and belongs to another user (uid {st.st_uid})",
                          option, holds)
        if st.st_nlink != 1:
            raise _refuse(shown, f"exists with {st.st_nlink} hard links", option, holds)
        os.fchmod(fd, 0o600)
        os.ftruncate(fd, 0)
        os.set_blocking(fd, True)
        return fd
    except BaseException:
        os.close(fd)
        raise


class PcapWriter:
    """Write outer (OpenVPN over synthesized IPv4 or IPv6/UDP) and inner (tunnel IPv4
    and IPv6) packets to a pcapng file.

    ``target`` is a path (opened by :func:`open_capture`: mode 0600, never through
    a symlink; closed by :meth:`close`) or a binary file object (flushed but left
    open).  Use as a context manager.
    """

    def __init__(self, target: str | os.PathLike[str] | BinaryIO, *,
                 flush_interval: float = 1.0, application: str = "erebus",
                 family: str = "openvpn"):
        if isinstance(target, (str, os.PathLike)):
            self._fp: BinaryIO = os.fdopen(open_capture(target), "wb", buffering=1 << 16)
            self._owned = True
        else:
            self._fp = target
            self._owned = False
        self.flush_interval = flush_interval
        self.packets = 0
        self._closed = False
        self._addr_cache: dict[object, int] = {}
        self._ident = 0
        self._fp.write(b"".join((
            _shb(application),
            _idb(f"{family}-outer", f"{_FAMILY_NAMES.get(family, family)} datagrams to "
                 "and from the server (IP/UDP headers synthesized by erebus)"),
            _idb("tunnel-inner", "IP packets (IPv4 and IPv6) inside the tunnel"),
        )))
        self._fp.flush()
        self._last_flush = time.monotonic()

    # -- context manager -------------------------------------------------

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def flush(self) -> None:
        self._fp.flush()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._fp.flush()
        finally:
            if self._owned:
                self._fp.close()

    # -- packets ---------------------------------------------------------

    def _ip(self, addr: int | str | bytes) -> int:
        if type(addr) is int:
            return addr
        cache = self._addr_cache
        value = cache.get(addr)
        if value is None:
            if len(cache) > 256:
                cache.clear()
            value = cache[addr] = to_ip(addr)
        return value

    def write_outer(self, payload: bytes | bytearray | memoryview, src: Address, dst: Address,
                    ts: float | None = None, *, proto: str = "udp",
                    inbound: bool | None = None) -> None:
        """An OpenVPN datagram from ``src`` to ``dst`` (``(ip, port)`` each; ip as
        dotted string or int), wrapped in IPv4 and UDP headers, on interface 0.
        ``ts`` defaults to ``time.time()``."""
        if proto != "udp":
            raise ValueError(f"pcap: outer transport {proto!r} is not supported (only 'udp')")
        n = len(payload)
        if n > _MAX_UDP_PAYLOAD:
            raise ValueError(f"pcap: UDP payload of {n} bytes (at most {_MAX_UDP_PAYLOAD})")
        if isinstance(src[0], str) and ":" in src[0]:
            self._write_outer6(payload, src, dst, ts, inbound)
            return
        src_ip = self._ip(src[0])
        dst_ip = self._ip(dst[0])
        sport = src[1]
        dport = dst[1]
        udp_len = 8 + n
        # Pseudo-header (src, dst, proto, UDP length) + UDP header words + payload.
        csum = internet_checksum(payload, src_ip + dst_ip + PROTO_UDP + udp_len
                                 + sport + dport + udp_len) or 0xFFFF
        self._ident = ident = (self._ident + 1) & 0xFFFF
        ip_header = build_ipv4_header(src_ip, dst_ip, PROTO_UDP, udp_len, ident=ident)
        self._write(OUTER_INTERFACE, ts, inbound, 20 + udp_len,
                    ip_header + _UDP.pack(sport, dport, udp_len, csum), payload)

    def _write_outer6(self, payload, src: Address, dst: Address, ts: float | None,
                      inbound: bool | None) -> None:
        """The same over a synthesized IPv6 header (a server reached over IPv6)."""
        src_ip = ipaddress.IPv6Address(src[0].split("%")[0]).packed
        dst_ip = ipaddress.IPv6Address(str(dst[0]).split("%")[0]).packed
        sport, dport = src[1], dst[1]
        udp_len = 8 + len(payload)
        # RFC 8200 8.1 pseudo-header: src, dst, upper-layer length, next header
        pseudo = int.from_bytes(src_ip, "big") + int.from_bytes(dst_ip, "big") \
            + udp_len + _NEXT_UDP
        csum = internet_checksum(payload, pseudo + sport + dport + udp_len) or 0xFFFF
        ip_header = _IPV6_HEADER.pack(6 << 28, udp_len, _NEXT_UDP, 64, src_ip, dst_ip)
        self._write(OUTER_INTERFACE, ts, inbound, 40 + udp_len,
                    ip_header + _UDP.pack(sport, dport, udp_len, csum), payload)

    def write_inner(self, packet: bytes | bytearray | memoryview, ts: float | None = None, *,
                    inbound: bool | None = None) -> None:
        """An IP packet (IPv4 or IPv6) carried in the tunnel, on interface 1."""
        self._write(INNER_INTERFACE, ts, inbound, len(packet), b"", packet)

    def _write(self, interface: int, ts: float | None, inbound: bool | None, length: int,
               head: bytes, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise ValueError("pcap: write to a closed PcapWriter")
        if ts is None:
            ts = time.time()
        micros = round(ts * 1_000_000)
        pad = _PADDING[length & 3]
        options = b"" if inbound is None else (_FLAGS_INBOUND if inbound else _FLAGS_OUTBOUND)
        total = 32 + length + len(pad) + len(options)
        self._fp.write(b"".join((
            _EPB_HEAD.pack(_EPB_TYPE, total, interface, micros >> 32, micros & 0xFFFFFFFF,
                           length, length),
            head, data, pad, options, _U32.pack(total),
        )))
        self.packets += 1
        if self.flush_interval <= 0:
            self._fp.flush()
        else:
            now = time.monotonic()
            if now - self._last_flush >= self.flush_interval:
                self._fp.flush()
                self._last_flush = now
