"""Protection of IKEv2's SK and SKF payloads (RFC 7296 section 3.14, RFC 5282, RFC
7383), and the reassembly of SKF fragments (:class:`FragmentCollector`)::

    SK payload = generic header | IV | E(inner payloads | padding | pad length) | ICV

The protection is :mod:`erebus.crypto.seal`'s, one sealer per direction built with
the keys (:meth:`IkeSaKeys.sealer`); this module lays out the payloads, the padding
and what is authenticated:

* AES-CBC + HMAC: 16-byte random IV, zero padding to the 16-byte block; the ICV is
  the truncated HMAC (SK_a of the sender) over the whole message from the first
  byte of the IKE header (with its final length) to the pad length byte.
* AEAD (AES-GCM-16, AES-CCM, ChaCha20-Poly1305): an 8-byte explicit IV (random: at
  most a few thousand messages per key, so no birthday risk), nonce = salt | IV,
  pad length 0; the AAD is the message from the IKE header through the SK
  payload's generic header (SKF: through Total Fragments), IV excluded.

``initiator`` everywhere is *our* role as the original initiator of the IKE SA: we
encrypt with SK_ei/SK_ai and decrypt with SK_er/SK_ar when it is True.  A failed
ICV raises :class:`IntegrityError` (an :class:`erebus.crypto.seal.AuthenticationError`,
so a :class:`~erebus.errors.ParseError`: drop the message, RFC 7296 section 2.21.2);
anything malformed raises ParseError.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ...crypto.seal import AuthenticationError
from ...errors import ParseError
from ...wire import ike as w
from ...wire.ike import (
    HEADER_LEN, SK, SKF, IkeHeader, IkeMessage, build_header, build_payloads, parse_header,
    parse_payloads)
from .errors import IntegrityError
from .keys import IkeSaKeys
from .suites import IkeSuite

__all__ = ["SkDecrypted", "encrypt_sk", "encrypt_sk_fragments", "decrypt_sk",
           "decrypt_message", "FragmentCollector"]


_FRAGMENT = struct.Struct("!HH")     # SKF: fragment number, total fragments


def _seal(keys: IkeSaKeys, sender_initiator: bool, prefix: bytes, inner: bytes,
          iv: bytes | None) -> bytes:
    """The SK/SKF message: ``prefix`` (header with its final length, outer payloads,
    the payload's own header), then IV | E(inner | padding | pad length) | ICV, with
    ``prefix`` authenticated."""
    suite = keys.suite
    pad = (-(len(inner) + 1)) % suite.block_len
    if iv is not None and len(iv) != suite.iv_len:
        raise ValueError(f"{suite.name}: IV of {len(iv)} bytes (want {suite.iv_len})")
    plain = b"".join((inner, bytes(pad), bytes((pad,))))
    return keys.sealer(sender_initiator).seal(None, plain, prefix, prefix=prefix, iv=iv)


def _sealed_len(suite: IkeSuite, inner_len: int) -> int:
    bs = suite.block_len
    return suite.iv_len + inner_len + 1 + (-(inner_len + 1)) % bs + suite.icv_len


def _check_role(message: IkeMessage, initiator: bool) -> None:
    if message.initiator != initiator:
        raise ValueError("the Initiator flag does not match our role "
                         f"({'initiator' if initiator else 'responder'})")


def encrypt_sk(keys: IkeSaKeys, message: IkeMessage, *, initiator: bool,
               iv: bytes | None = None) -> bytes:
    """The protected message: ``message``'s header and, in one SK payload, its
    ``payloads`` (the plaintext inner payloads).  ``initiator``: our role (must agree
    with the Initiator flag); ``iv``: for tests, else random."""
    _check_role(message, initiator)
    first, inner = build_payloads(message.payloads)
    sk_len = SK.HEADER_LEN + _sealed_len(keys.suite, len(inner))
    header = build_header(message.spi_i, message.spi_r, w.PT_SK, message.exchange,
                          message.flags, message.message_id, HEADER_LEN + sk_len,
                          message.version)
    return _seal(keys, initiator, header + w.GENERIC.pack(first, 0, sk_len), inner, iv)


def encrypt_sk_fragments(keys: IkeSaKeys, message: IkeMessage, *, initiator: bool,
                         max_size: int) -> list[bytes]:
    """The message cut into SKF messages of at most ``max_size`` bytes each (RFC 7383
    section 2.5; the IKE message, not counting IP/UDP headers or the non-ESP marker:
    1280 - 20 - 8 - 4 over IPv4 is a safe start)."""
    _check_role(message, initiator)
    first, inner = build_payloads(message.payloads)
    suite = keys.suite
    room = max_size - HEADER_LEN - SKF.HEADER_LEN - suite.iv_len - suite.icv_len
    room -= room % suite.block_len        # the padded plaintext, a whole number of blocks
    chunk = room - 1                       # at least the pad length byte
    if chunk < 1:
        raise ValueError(f"fragments of {max_size} bytes cannot carry data")
    pieces = [inner[i:i + chunk] for i in range(0, len(inner), chunk)] or [b""]
    if len(pieces) > 0xFFFF:
        raise ValueError("too many fragments")
    out = []
    for number, piece in enumerate(pieces, 1):
        skf_len = SKF.HEADER_LEN + _sealed_len(suite, len(piece))
        header = build_header(message.spi_i, message.spi_r, w.PT_SKF, message.exchange,
                              message.flags, message.message_id, HEADER_LEN + skf_len,
                              message.version)
        prefix = header + w.GENERIC.pack(first if number == 1 else 0, 0, skf_len) + \
            _FRAGMENT.pack(number, len(pieces))
        out.append(_seal(keys, initiator, prefix, piece, None))
    return out


@dataclass(slots=True)
class SkDecrypted:
    """A decrypted SK or SKF message: ``plaintext`` is the inner payload chain (padding
    removed) starting with ``first_payload``; ``fragment_number`` is 0 for SK."""

    header: IkeHeader
    outer: list
    first_payload: int
    plaintext: bytes
    fragment_number: int = 0
    total_fragments: int = 0

    def message(self) -> IkeMessage:
        """The message with its inner payloads parsed (not for a fragment)."""
        if self.fragment_number:
            raise ParseError("an SKF fragment: reassemble it with FragmentCollector")
        h = self.header
        return IkeMessage(h.spi_i, h.spi_r, h.exchange, h.flags, h.message_id,
                          self.outer + parse_payloads(self.first_payload, self.plaintext),
                          h.version)


def decrypt_sk(keys: IkeSaKeys, data: bytes, *, initiator: bool) -> SkDecrypted:
    """Check and decrypt a message protected by the peer (whose role is the opposite of
    ``initiator``: its Initiator flag must say so)."""
    header = parse_header(data)
    if header.length != len(data):
        raise ParseError(f"IKE header: length field {header.length}, "
                         f"message of {len(data)} bytes")
    if header.initiator == initiator:
        raise ParseError("the Initiator flag says this message is from our own side")
    payloads = parse_payloads(header.next_payload, memoryview(data)[HEADER_LEN:])
    if not payloads or not isinstance(payloads[-1], (SK, SKF)):
        raise ParseError("message has no SK or SKF payload")
    sk = payloads[-1]
    suite = keys.suite
    _, ct, _ = sk.split(suite.iv_len, suite.icv_len)
    if len(ct) % suite.block_len:
        raise ParseError(f"SK payload: ciphertext of {len(ct)} bytes, not whole blocks")
    prefix_end = len(data) - len(sk.data)
    view = memoryview(data)
    try:
        plain = keys.sealer(header.initiator).open(view[prefix_end:], view[:prefix_end])
    except AuthenticationError:
        raise IntegrityError("SK payload: ICV does not verify") from None
    pad = plain[-1] if plain else 0
    if not plain or pad + 1 > len(plain):
        raise ParseError(f"SK payload: pad length {pad} in {len(plain)} bytes")
    plain = bytes(plain[:len(plain) - pad - 1])
    if isinstance(sk, SKF):
        return SkDecrypted(header, payloads[:-1], sk.first_payload, plain, sk.number, sk.total)
    return SkDecrypted(header, payloads[:-1], sk.first_payload, plain)


def decrypt_message(keys: IkeSaKeys, data: bytes, *, initiator: bool) -> IkeMessage:
    """:func:`decrypt_sk` and the inner payloads parsed; ParseError for a fragment."""
    return decrypt_sk(keys, data, initiator=initiator).message()


class FragmentCollector:
    """Reassembles the SKF fragments of one message at a time (RFC 7383 section 2.6):
    feed every :class:`SkDecrypted` of the expected message id; a whole message comes
    back once (SK messages come back at once).  A fragment with a larger total than
    the ones collected restarts the collection; one with a smaller total is dropped
    (ParseError)."""

    MAX_FRAGMENTS = 128

    def __init__(self) -> None:
        self._mid: int | None = None
        self._total = 0
        self._parts: dict[int, SkDecrypted] = {}

    def add(self, piece: SkDecrypted) -> IkeMessage | None:
        if not piece.fragment_number:
            return piece.message()
        if piece.total_fragments > self.MAX_FRAGMENTS:
            raise ParseError(f"SKF: {piece.total_fragments} fragments (at most "
                             f"{self.MAX_FRAGMENTS})")
        mid = piece.header.message_id
        if mid != self._mid or piece.total_fragments > self._total:
            self._mid, self._total, self._parts = mid, piece.total_fragments, {}
        elif piece.total_fragments < self._total:
            raise ParseError(f"SKF: total {piece.total_fragments} below {self._total}")
        self._parts.setdefault(piece.fragment_number, piece)
        if len(self._parts) < self._total:
            return None
        parts = [self._parts[i] for i in range(1, self._total + 1)]
        self._mid, self._total, self._parts = None, 0, {}
        first = parts[0]
        h = first.header
        inner = b"".join(p.plaintext for p in parts)
        return IkeMessage(h.spi_i, h.spi_r, h.exchange, h.flags, h.message_id,
                          first.outer + parse_payloads(first.first_payload, inner), h.version)
