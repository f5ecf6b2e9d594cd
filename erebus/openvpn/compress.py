"""Compression framing of the data channel (OpenVPN 2.6 comp.h, compstub.c, lzo.c,
comp-lz4.c), sans-IO.

Where it sits: ``frame()`` runs on every packet before :meth:`DataKey.encrypt`,
``unframe()`` on every payload that :meth:`DataKey.decrypt` returns.  That is
every data-channel payload, the keepalive ping and OCC messages included
(OpenVPN sends them through ``encrypt_sign(c, true)`` and recognises them only
after decompression).

erebus never compresses what it sends (compression of attacker-influenced data
next to secrets is what VORACLE exploits; the stock 2.6 client only compresses
with ``allow-compression yes``): outgoing packets get the *uncompressed* framing
of the negotiated method.  Incoming packets are decompressed when the method
allows it.  The framing, byte by byte (``p`` is the IP packet)::

    none                          p
    comp-lzo no                   FA p                    (COMP_ALG_STUB, no swap)
    comp-lzo [yes|adaptive],      FA p  | 66 lzo1x(p)     (COMP_ALG_LZO)
      compress lzo
    compress [stub]               FB p[1:] p[0]           (COMP_ALG_STUB + COMP_F_SWAP)
    compress lz4                  FB p[1:] p[0]  | 69 z[1:] z[0], z = lz4_block(p)
    compress stub-v2              p, or 50 00 p when p[0] == 0x50 (COMP_ALGV2_UNCOMPRESSED)
    compress lz4-v2               same, or 50 01 lz4_block(p)    (COMP_ALGV2_LZ4)

"Swap" (COMP_F_SWAP): the sender moves the payload's *first* byte to the end
and puts the framing byte in its place, so the rest stays aligned; the
receiver takes the framing byte off the front and puts the *last* byte back
there.  An empty payload stays empty in every method.

Incoming packets that OpenVPN would drop (an unknown framing byte, a
compressed packet in a method that does not compress, a failed decompression
or one larger than ``max_size``) raise :class:`CompressionError`, a
:class:`ParseError`: drop and count.  ``unframe`` raises nothing else.

Decompressors: LZ4 blocks with ``lz4.block.decompress(data, uncompressed_size=max_size)``
(LZ4_decompress_safe into a bounded buffer, as comp-lz4.c); raw LZO1X with
``lzallright`` (memory-safe Rust, wheels for every platform; trailing input is an
error, as with lzo1x_decompress_safe).  They are imported only when a method needs them.
"""

from __future__ import annotations

from ..errors import ParseError, SessionError

# comp.h, V1 on-wire codes
LZO_COMPRESS_BYTE = 0x66
LZ4_COMPRESS_BYTE = 0x69
NO_COMPRESS_BYTE = 0xFA
NO_COMPRESS_BYTE_SWAP = 0xFB
# comp.h, V2 on-wire codes
COMP_ALGV2_INDICATOR_BYTE = 0x50
COMP_ALGV2_UNCOMPRESSED_BYTE = 0
COMP_ALGV2_LZ4_BYTE = 1
COMP_ALGV2_LZO_BYTE = 2
COMP_ALGV2_SNAPPY_BYTE = 3

#: Largest decompressed payload accepted (tun-mtu 1500 plus generous headroom).
MAX_DECOMPRESSED = 1600

_FA = b"\xfa"
_FB = b"\xfb"
_V2_ESCAPE = b"\x50\x00"

# What a 2.6 pull client announces (comp.c, comp_generate_peer_info_string).
_PEER_INFO_STUBS = "IV_LZO_STUB=1\nIV_COMP_STUB=1\nIV_COMP_STUBv2=1\n"
_PEER_INFO_ALGS = "IV_LZ4=1\nIV_LZ4v2=1\nIV_LZO=1\nIV_COMP_STUB=1\nIV_COMP_STUBv2=1\n"


class CompressionError(ParseError):
    """A data-channel payload whose compression framing is bad: drop and count."""


def peer_info(*, algorithms: bool = False) -> str:
    """The compression lines of the client's peer info (``IV_...=1``, newline-ended).

    A 2.6 client without ``allow-compression yes|asym`` or a compression option
    advertises only the stubs (``algorithms=False``); one that accepts compressed
    packets also advertises LZ4, LZ4v2 and LZO.
    """
    return _PEER_INFO_ALGS if algorithms else _PEER_INFO_STUBS


def _lz4_decompressor():
    try:
        import lz4.block as lz4_block
    except ImportError:          # pragma: no cover - lz4 is a dependency
        raise SessionError("compression", "LZ4 compression needs the Python package 'lz4'") \
            from None
    decompress = lz4_block.decompress
    error = lz4_block.LZ4BlockError

    def lz4_decompress(data, max_size: int) -> bytes:
        # LZ4_decompress_safe into a max_size buffer, as comp-lz4.c does.
        try:
            out = decompress(data, uncompressed_size=max_size)
        except error:
            raise CompressionError("LZ4 decompression failed (corrupt, or larger than "
                                   f"{max_size} bytes)") from None
        except Exception as exc:          # defensive: never leak another type
            raise CompressionError(f"LZ4 decompression failed: {exc}") from None
        if not out:                       # LZ4_decompress_safe() <= 0 is an error
            raise CompressionError("LZ4 packet decompressed to nothing")
        return out

    return lz4_decompress


def _lzo_decompressor():
    try:
        from lzallright import LZOCompressor
    except ImportError:          # pragma: no cover - lzallright is a dependency
        raise SessionError("compression", "LZO compression needs the Python package "
                                          "'lzallright'") from None
    decompress = LZOCompressor.decompress

    def lzo_decompress(data, max_size: int) -> bytes:
        # lzo1x_decompress_safe semantics: trailing input is an error too.
        try:
            out = decompress(data, max_size)
        except Exception as exc:          # LZOError, InputNotConsumed, ...
            raise CompressionError(f"LZO decompression failed: {exc!r}") from None
        if len(out) > max_size:
            raise CompressionError(f"LZO packet decompresses to {len(out)} bytes "
                                   f"(more than {max_size})")
        return out

    return lzo_decompress


class Compression:
    """The compression framing of one session.

    Build it with :meth:`from_options` (or :meth:`none`).  Attributes:

    ``option``     the canonical option ("none", "comp-lzo no", "compress lz4-v2", ...);
    ``algorithm``  what incoming packets may be compressed with: None, "lzo" or "lz4";
    ``enabled``    OpenVPN's ``comp_enabled()``: any framing at all (the OCC options
                   string then carries ``,comp-lzo``);
    ``overhead``   bytes the framing adds to an outgoing packet (mtu.c: 1 for the V1
                   methods, 0 for none and the V2 methods).
    """

    __slots__ = ("option", "algorithm", "max_size", "_decompress")

    enabled = True
    overhead = 1

    def __init__(self, option: str, algorithm: str | None = None, *,
                 max_size: int = MAX_DECOMPRESSED):
        self.option = option
        self.algorithm = algorithm
        self.max_size = max_size
        if algorithm == "lz4":
            self._decompress = _lz4_decompressor()
        elif algorithm == "lzo":
            self._decompress = _lzo_decompressor()
        elif algorithm is None:
            self._decompress = None
        else:
            raise ValueError(f"unknown compression algorithm {algorithm!r}")

    def __repr__(self) -> str:
        return f"<Compression {self.option!r}>"

    def frame(self, ip_packet: bytes | bytearray | memoryview) -> bytes:
        """What goes into the data channel for ``ip_packet`` (never compressed)."""
        raise NotImplementedError

    def unframe(self, plaintext: bytes | bytearray | memoryview) -> bytes:
        """The packet carried by a decrypted data-channel payload.

        Raises :class:`CompressionError` (and nothing else) for anything OpenVPN drops.
        """
        raise NotImplementedError

    # -- construction -------------------------------------------------------------------

    @classmethod
    def none(cls) -> "Compression":
        return _NoFraming("none")

    @classmethod
    def from_options(cls, profile_option: str | None, pushed: str | None = None, *,
                     allow_compression: str = "asym",
                     max_size: int = MAX_DECOMPRESSED) -> "Compression":
        """The framing for a profile's compression option and the server's pushed one.

        Each is a whole option ("comp-lzo no", "compress lz4-v2", "compress", ...) or
        None; a pushed option replaces the profile's (every compression option sets
        both the algorithm and the swap flag).  ``allow_compression`` is the profile's
        ``allow-compression``: "asym" (erebus's default) and "yes" accept compressed
        incoming packets (erebus never compresses outgoing ones); "no" accepts only
        the stubs, like the stock client.

        Raises :class:`SessionError` ("compression") for an option erebus cannot speak.
        """
        if allow_compression not in ("asym", "yes", "no"):
            raise SessionError("compression", f"bad allow-compression {allow_compression!r}: "
                                              "must be 'yes', 'no' or 'asym'")
        if pushed is not None and pushed.strip():
            option, source = pushed, "pushed"
        else:
            option, source = profile_option, "profile"
        kind, canonical, algorithm = _parse(option, source)
        if algorithm is not None and allow_compression == "no":
            raise SessionError(
                "compression",
                f"the {source} option {canonical!r} enables {algorithm.upper()} compression, "
                "but allow-compression is 'no'; use 'allow-compression asym' to accept it")
        return kind(canonical, algorithm, max_size=max_size)


def _parse(option: str | None, source: str) -> tuple[type, str, str | None]:
    words = option.split() if option else []
    if not words:
        return _NoFraming, "none", None
    name, args = words[0], words[1:]
    if name == "comp-lzo" and len(args) <= 1:
        arg = args[0] if args else None
        if arg == "no":
            return _V1Framing, "comp-lzo no", None
        if arg in (None, "yes", "adaptive"):
            return _V1Framing, f"comp-lzo {arg}" if arg else "comp-lzo", "lzo"
        raise SessionError("compression", f"bad {source} option {option!r}: comp-lzo takes "
                                          "'yes', 'no' or 'adaptive'")
    if name == "compress" and len(args) <= 1:
        alg = args[0] if args else "stub"
        if alg == "stub":
            return _SwapFraming, "compress" if not args else "compress stub", None
        if alg == "lz4":
            return _SwapFraming, "compress lz4", "lz4"
        if alg == "lzo":
            return _V1Framing, "compress lzo", "lzo"
        if alg == "stub-v2":
            return _V2Framing, "compress stub-v2", None
        if alg == "lz4-v2":
            return _V2Framing, "compress lz4-v2", "lz4"
        if alg == "migrate":         # a server option; on a client it means no framing
            return _NoFraming, "none", None
        if alg == "snappy":
            raise SessionError("compression", f"the {source} option {option!r} asks for Snappy "
                                              "compression, which OpenVPN 2.5+ and erebus do "
                                              "not support; use 'compress stub-v2' or "
                                              "'compress lz4-v2'")
        raise SessionError("compression", f"bad {source} option {option!r}: unknown "
                                          f"compression algorithm {alg!r}")
    raise SessionError("compression", f"bad {source} compression option {option!r}")


# -- the framings ---------------------------------------------------------------------------

class _NoFraming(Compression):
    __slots__ = ()
    enabled = False
    overhead = 0

    def frame(self, ip_packet):
        return ip_packet if type(ip_packet) is bytes else bytes(ip_packet)

    def unframe(self, plaintext):
        return plaintext if type(plaintext) is bytes else bytes(plaintext)


class _V1Framing(Compression):
    """0xFA prefix; with LZO also 0x66 + lzo1x (comp-lzo, compress lzo)."""

    __slots__ = ()

    def frame(self, ip_packet):
        if not ip_packet:
            return b""
        return _FA + ip_packet

    def unframe(self, plaintext):
        if not plaintext:
            return b""
        c = plaintext[0]
        if c == NO_COMPRESS_BYTE:
            return bytes(plaintext[1:])
        if c == LZO_COMPRESS_BYTE and self._decompress is not None:
            return self._decompress(memoryview(plaintext)[1:], self.max_size)
        if c == LZO_COMPRESS_BYTE:
            raise CompressionError(f"LZO-compressed packet, but the method is {self.option!r}")
        raise CompressionError(f"bad compression byte 0x{c:02x} for {self.option!r}")


class _SwapFraming(Compression):
    """0xFB with the swap; with LZ4 also 0x69 (compress, compress stub, compress lz4)."""

    __slots__ = ()

    def frame(self, ip_packet):
        if not ip_packet:
            return b""
        mv = memoryview(ip_packet)
        return b"".join((_FB, mv[1:], mv[:1]))

    def unframe(self, plaintext):
        n = len(plaintext)
        if not n:
            return b""
        c = plaintext[0]
        if c == NO_COMPRESS_BYTE_SWAP:
            if n == 1:
                return b""
            mv = memoryview(plaintext)
            return b"".join((mv[-1:], mv[1:-1]))
        if c == LZ4_COMPRESS_BYTE and self._decompress is not None:
            if n == 1:
                raise CompressionError("empty LZ4-compressed packet")
            mv = memoryview(plaintext)
            return self._decompress(b"".join((mv[-1:], mv[1:-1])), self.max_size)
        if c == LZ4_COMPRESS_BYTE:
            raise CompressionError(f"LZ4-compressed packet, but the method is {self.option!r}")
        raise CompressionError(f"bad compression byte 0x{c:02x} for {self.option!r}")


class _V2Framing(Compression):
    """No prefix unless the packet starts with 0x50 (compress stub-v2, compress lz4-v2)."""

    __slots__ = ()
    overhead = 0

    def frame(self, ip_packet):
        if ip_packet and ip_packet[0] == COMP_ALGV2_INDICATOR_BYTE:
            return _V2_ESCAPE + ip_packet
        return ip_packet if type(ip_packet) is bytes else bytes(ip_packet)

    def unframe(self, plaintext):
        if not plaintext or plaintext[0] != COMP_ALGV2_INDICATOR_BYTE:
            return plaintext if type(plaintext) is bytes else bytes(plaintext)
        if len(plaintext) < 2:
            raise CompressionError("truncated V2 compression header")
        c = plaintext[1]
        if c == COMP_ALGV2_UNCOMPRESSED_BYTE:
            return bytes(plaintext[2:])
        if c == COMP_ALGV2_LZ4_BYTE and self._decompress is not None:
            return self._decompress(memoryview(plaintext)[2:], self.max_size)
        if c == COMP_ALGV2_LZ4_BYTE:
            raise CompressionError(f"LZ4-compressed packet, but the method is {self.option!r}")
        raise CompressionError(f"bad V2 compression byte 0x{c:02x} for {self.option!r}")
