"""The OpenVPN data channel (crypto.c), sans-IO.

Keys come from the 256-byte key2 block: four 64-byte slots
``[c2s cipher | c2s hmac | s2c cipher | s2c hmac]``; the client encrypts with
slots 0/1 and decrypts with slots 2/3.

AEAD (AES-GCM, ChaCha20-Poly1305)::

    header | packet_id(4) | tag(16) | ciphertext
    nonce = packet_id(4) || implicit IV (first 8 bytes of the direction's hmac slot)
    AAD   = P_DATA_V2: header(4) || packet_id ; P_DATA_V1: packet_id

CBC + HMAC, and ``cipher none`` with an HMAC::

    header | HMAC(IV || ciphertext) | IV | CBC(packet_id || payload)
    header | HMAC(packet_id || payload) | packet_id | payload

The CBC cipher is AES or one of 2.6's legacy ciphers (:mod:`.algorithms`: BF-CBC,
CAST5-CBC, DES-EDE3-CBC, CAMELLIA-*-CBC, SEED-CBC ...): the IV is one block of the
cipher (8 bytes for the 64-bit block ciphers), PKCS#7 pads to that block, and the key
is the first ``cipher_kt_key_size`` bytes of the cipher slot (16 for BF-CBC), the HMAC
key the first digest-size bytes of the HMAC slot (16 for MD5, 48 for SHA384).

CBC with ``auth none`` (2.6 allows it with a warning: crypto.c ``init_key_type``)
is the first layout without the HMAC: anything that decrypts with good padding is
taken, which is exactly as weak as the stock client warns::

    header | IV | CBC(packet_id || payload)

``cipher none`` with ``auth none`` still carries the packet id (TLS mode always
initialises the packet-id state, crypto.c's "No Encryption" branch writes it)::

    header | packet_id(4) | payload

Packet ids start at 1 per key and direction and are never reused; received
ids go through a sliding replay window.  TLS mode uses the short (4-byte) form,
which may not wrap: from :data:`PACKET_ID_WRAP_TRIGGER` on the key is
:attr:`DataKey.close_to_wrapping` and the session renegotiates (ssl.c
``packet_id_close_to_wrapping``); past 0xFFFFFFFF :meth:`DataKey.encrypt` raises
:class:`PacketIdExhausted` rather than reuse an id (crypto.c: "packet ID roll over").
Anything that does not authenticate or replays raises :class:`DataError` (a
:class:`ParseError`): drop and count.

The protection itself is :mod:`erebus.crypto.seal`'s (one sealer per direction, built
with the key): :class:`~erebus.crypto.seal.AeadSeal` with the packet id as the explicit
IV in front of the implicit one and the tag in front of the ciphertext, and
:class:`~erebus.crypto.seal.CbcHmacSeal` with the HMAC in front (either half may be
absent); this module lays out the packet id, the PKCS#7 padding and the header.
"""

from __future__ import annotations

import os
import struct

from ..crypto.aead import AEAD_CIPHERS
from ..crypto.replay import ReplayWindow
from ..crypto.seal import (AeadSeal, AuthenticationError, CbcHmacSeal, PaddingError,
                           SealedLengthError, pkcs7_padding, pkcs7_unpadded_len)
from ..errors import ErebusError, ParseError
from ..wire.openvpn import data_v1_header, data_v2_header
from .algorithms import (CBC_CIPHER_NAMES, DIGEST_NAMES, AlgorithmError, CbcCipher, Digest,
                         canonical_cipher, canonical_digest, cbc_cipher, make_cbc)
from .algorithms import key_len as _cbc_key_len
from .algorithms import digest as digest_spec

KEEPALIVE = bytes.fromhex("2a187bf3641eb4cb07ed2d0a981fc748")
OCC_MAGIC = bytes.fromhex("287f346bd4ef7a812d56b8d3afc5459c")
OCC_EXIT = 6


def _usable(lookup, names):
    out = {}
    for name in names:
        try:
            spec = lookup(name)
        except AlgorithmError:
            continue
        out[name] = spec
    return out


# what this erebus can run: OpenVPN name -> key length (CBC) / HMAC size (digests)
_CBC_SPECS: dict[str, CbcCipher] = _usable(cbc_cipher, CBC_CIPHER_NAMES)
_DIGEST_SPECS: dict[str, Digest] = _usable(digest_spec, DIGEST_NAMES)
CBC_CIPHERS = {name: spec.key_len for name, spec in _CBC_SPECS.items()}
DIGESTS = {name: spec.size for name, spec in _DIGEST_SPECS.items()}
_PID = struct.Struct("!I")
TAG_LEN = 16
MAX_PACKET_ID = 0xFFFFFFFF
PACKET_ID_WRAP_TRIGGER = 0xFF000000   # packet_id.h: renegotiate from this id on


class DataError(ParseError):
    """A data packet that does not authenticate, replays or is malformed."""


class PacketIdExhausted(ErebusError):
    """Every packet id of this key was used: the packet is not sent (a renegotiation,
    started at :data:`PACKET_ID_WRAP_TRIGGER`, should have replaced the key by now)."""


def normalize_digest(name: str) -> str | None:
    """The ``auth`` digest by OpenVPN's name (any spelling OpenSSL 3 takes: ``sha-256``,
    ``SHA2-256``, its OID), ``None`` for ``auth none``; the name upper-cased (and not in
    :data:`DIGESTS`) when it is unknown."""
    upper = name.upper()
    if upper in ("NONE", "[NULL-DIGEST]"):
        return None
    return canonical_digest(name) or upper


def normalize_cipher(name: str) -> str:
    """The data cipher by OpenVPN's name (``bf`` and ``blowfish`` are BF-CBC), ``none``
    for no encryption; the name upper-cased when it is unknown."""
    upper = name.upper()
    if upper in ("NONE", "[NULL-CIPHER]"):
        return "none"
    return canonical_cipher(name) or upper


def cipher_key_bits(name: str) -> int:
    """The key size OpenVPN reports for data cipher ``name`` (the OCC ``keysize``,
    ``cipher_kt_key_size`` * 8: BF-CBC 128); 0 for none or an unknown cipher."""
    n = normalize_cipher(name)
    if n in AEAD_CIPHERS:
        return AEAD_CIPHERS[n][0] * 8
    if n in _CBC_SPECS:
        return _CBC_SPECS[n].key_len * 8
    canonical = canonical_cipher(n)
    return _cbc_key_len(canonical) * 8 if canonical else 0


def digest_size(name: str | None) -> int:
    """The HMAC size of ``auth`` digest ``name`` (0 for none)."""
    n = None if name is None else normalize_digest(name)
    return _DIGEST_SPECS[n].size if n else 0


def cbc_spec(name: str) -> CbcCipher:
    """The CBC cipher ``name``; :class:`AlgorithmError` if erebus cannot run it."""
    return _CBC_SPECS.get(normalize_cipher(name)) or cbc_cipher(name)


def is_insecure(name: str) -> bool:
    """A CBC cipher with a block under 128 bits (crypto_openssl.c cipher_kt_insecure)."""
    spec = _CBC_SPECS.get(normalize_cipher(name))
    return spec is not None and spec.insecure


def sweet32_warning(name: str) -> str:
    """crypto.c ``warn_insecure_key_type``, in 2.6's words."""
    spec = _CBC_SPECS[normalize_cipher(name)]
    return (f"WARNING: INSECURE cipher ({spec.name}) with block size less than 128 bit "
            f"({spec.block_len * 8} bit).  This allows attacks like SWEET32.  Mitigate by "
            "using a --cipher with a larger block size (e.g. AES-256-CBC). Support for "
            "these insecure ciphers will be removed in OpenVPN 2.7.")


def supported_cipher(name: str) -> bool:
    n = normalize_cipher(name)
    return n == "none" or n in AEAD_CIPHERS or n in CBC_CIPHERS


def is_aead(name: str) -> bool:
    return normalize_cipher(name) in AEAD_CIPHERS


class DataKey:
    """One key id's data-channel state, both directions (the client's view)."""

    def __init__(self, key_id: int, cipher: str, key_block: bytes, *, auth: str = "SHA1",
                 peer_id: int | None = None, replay_window: int = 64, rng=os.urandom):
        if len(key_block) != 256:
            raise ValueError("key block must be 256 bytes")
        self.key_id = key_id
        self.cipher = normalize_cipher(cipher)
        self.peer_id = peer_id
        self.header = (data_v2_header(key_id, peer_id) if peer_id is not None
                       else data_v1_header(key_id))
        self._v2 = peer_id is not None
        self.replay = ReplayWindow(replay_window)
        self.next_pid = 1
        self.packets_out = self.packets_in = 0
        self.bytes_out = self.bytes_in = 0
        slots = ((key_block[0:64], key_block[64:128]),        # encrypt: cipher, hmac
                 (key_block[128:192], key_block[192:256]))     # decrypt
        if self.cipher in AEAD_CIPHERS:
            self.mode = "aead"
            klen, algorithm = AEAD_CIPHERS[self.cipher]
            # nonce = packet id | implicit IV (the first 8 bytes of the hmac slot)
            self._seal, self._open = (
                AeadSeal(algorithm, c[:klen], h[:8], iv_len=_PID.size, salt_first=False,
                         tag_first=True, iv_base=0, rng=rng) for c, h in slots)
            return
        digest = normalize_digest(auth)
        if digest is not None and digest not in DIGESTS:
            raise ValueError(f"unsupported auth digest {auth}")
        spec = None
        if self.cipher == "none":
            self.mode = "none" if digest is None else "hmac"
            klen = 0
        elif self.cipher in CBC_CIPHERS:
            self.mode = "cbc"
            spec = _CBC_SPECS[self.cipher]
            klen = spec.key_len
        else:
            raise ValueError(f"unsupported data cipher {cipher}")
        self.block = spec.block_len if spec else 1
        hlen = DIGESTS[digest] if digest else 0
        hashlib_name = _DIGEST_SPECS[digest].hashlib_name if digest else "sha1"
        self._seal, self._open = (
            CbcHmacSeal(c[:klen] if klen else None, h[:hlen] if hlen else None,
                        digest=hashlib_name, tag_len=None, tag_first=True, rng=rng,
                        cipher=(lambda key: make_cbc(spec, key)) if spec else None,
                        cipher_name=self.cipher.lower())
            for c, h in slots)

    # -- outbound -------------------------------------------------------------------------

    @property
    def close_to_wrapping(self) -> bool:
        """The last packet id sent is at or past :data:`PACKET_ID_WRAP_TRIGGER`."""
        return self.next_pid - 1 >= PACKET_ID_WRAP_TRIGGER

    def _take_pid(self) -> bytes:
        pid = self.next_pid
        self.next_pid = pid + 1
        return _PID.pack(pid)

    def encrypt(self, payload: bytes | memoryview) -> bytes:
        """A complete data packet (header included) carrying ``payload``.

        Raises :class:`PacketIdExhausted` when the key has no packet id left."""
        if self.next_pid > MAX_PACKET_ID:
            raise PacketIdExhausted(f"key id {self.key_id}: every packet id was used "
                                    "(packet ID roll over); the packet is not sent")
        self.packets_out += 1
        self.bytes_out += len(payload)
        mode = self.mode
        pid = self._take_pid()
        if mode == "aead":
            aad = self.header + pid if self._v2 else pid
            return self._seal.seal(None, payload, aad, prefix=self.header, iv=pid)
        if mode == "none":
            return b"".join((self.header, pid, payload))
        pad = pkcs7_padding(_PID.size + len(payload), self.block) if mode == "cbc" else b""
        return self._seal.seal(None, b"".join((pid, payload, pad)), prefix=self.header)

    # -- inbound --------------------------------------------------------------------------

    def _accept_pid(self, pid: int) -> None:
        if not self.replay.check(pid):
            raise DataError(f"replayed or too old packet id {pid}")

    def decrypt(self, body: memoryview, header: bytes | None = None) -> bytes:
        """The payload of a data packet whose header has been stripped (``body``).

        ``header`` is the packet's header as received (``DataPacket.header``).  For
        P_DATA_V2 with an AEAD cipher OpenVPN authenticates the received header
        (ssl.c sets ad_start before the opcode), so pass it to detect a tampered
        peer id; without it this key's own header is assumed.
        """
        mode = self.mode
        if mode == "aead":
            if len(body) < _PID.size + TAG_LEN:
                raise DataError("AEAD data packet too short")
            (pid,) = _PID.unpack_from(body, 0)
            self._accept_pid(pid)
            aad = body[:_PID.size]
            if self._v2:
                aad = b"".join((self.header if header is None else header, aad))
            try:
                payload = self._open.open(body, aad)
            except AuthenticationError:
                raise DataError("AEAD tag mismatch") from None
        elif mode == "none":
            if len(body) < 4:
                raise DataError("data packet without packet id")
            (pid,) = _PID.unpack_from(body, 0)
            self._accept_pid(pid)
            payload = bytes(body[4:])
        else:
            try:
                plain = self._open.open(body)
                end = pkcs7_unpadded_len(plain, self.block) if mode == "cbc" else len(plain)
            except SealedLengthError as exc:
                raise DataError(f"data packet: {exc}") from None
            except AuthenticationError:
                raise DataError("HMAC mismatch") from None
            except PaddingError:
                raise DataError("bad CBC padding") from None
            if end < 4:
                raise DataError("data packet without packet id")
            (pid,) = _PID.unpack_from(plain, 0)
            self._accept_pid(pid)
            payload = bytes(plain[4:end])
        self.replay.update(pid)
        self.packets_in += 1
        self.bytes_in += len(payload)
        return payload
