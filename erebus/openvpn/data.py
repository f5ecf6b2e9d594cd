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
"""

from __future__ import annotations

import hmac
import os
import struct

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..crypto.aead import AEAD_CIPHERS, TAG_LEN, InvalidTag, make_aead
from ..crypto.replay import ReplayWindow
from ..errors import ErebusError, ParseError
from ..wire.openvpn import data_v1_header, data_v2_header

KEEPALIVE = bytes.fromhex("2a187bf3641eb4cb07ed2d0a981fc748")
OCC_MAGIC = bytes.fromhex("287f346bd4ef7a812d56b8d3afc5459c")
OCC_EXIT = 6

CBC_CIPHERS = {"AES-128-CBC": 16, "AES-192-CBC": 24, "AES-256-CBC": 32}
DIGESTS = {"SHA1": 20, "SHA224": 28, "SHA256": 32, "SHA384": 48, "SHA512": 64}
_PID = struct.Struct("!I")
MAX_PACKET_ID = 0xFFFFFFFF
PACKET_ID_WRAP_TRIGGER = 0xFF000000   # packet_id.h: renegotiate from this id on


class DataError(ParseError):
    """A data packet that does not authenticate, replays or is malformed."""


class PacketIdExhausted(ErebusError):
    """Every packet id of this key was used: the packet is not sent (a renegotiation,
    started at :data:`PACKET_ID_WRAP_TRIGGER`, should have replaced the key by now)."""


def normalize_digest(name: str) -> str | None:
    """The ``auth`` digest as :data:`DIGESTS` names it, ``None`` for ``auth none``;
    the name upper-cased (and not in :data:`DIGESTS`) when erebus lacks it."""
    upper = name.upper().replace("-", "")
    return None if upper in ("NONE", "[NULLDIGEST]") else upper


def normalize_cipher(name: str) -> str:
    upper = name.upper()
    return "none" if upper in ("NONE", "[NULL-CIPHER]") else upper


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
        self._rng = rng                       # CBC IVs
        enc_cipher, enc_hmac = key_block[0:64], key_block[64:128]
        dec_cipher, dec_hmac = key_block[128:192], key_block[192:256]
        if self.cipher in AEAD_CIPHERS:
            self.mode = "aead"
            self._enc = make_aead(self.cipher, enc_cipher)
            self._dec = make_aead(self.cipher, dec_cipher)
            self._enc_iv = bytes(enc_hmac[:8])
            self._dec_iv = bytes(dec_hmac[:8])
            return
        digest = normalize_digest(auth)
        if digest is not None and digest not in DIGESTS:
            raise ValueError(f"unsupported auth digest {auth}")
        self._digest = digest
        self._hlen = DIGESTS[digest] if digest else 0
        self._enc_hmac = bytes(enc_hmac[:self._hlen])
        self._dec_hmac = bytes(dec_hmac[:self._hlen])
        if self.cipher == "none":
            self.mode = "none" if digest is None else "hmac"
        elif self.cipher in CBC_CIPHERS:
            self.mode = "cbc"
            klen = CBC_CIPHERS[self.cipher]
            self._enc_key = bytes(enc_cipher[:klen])
            self._dec_key = bytes(dec_cipher[:klen])
        else:
            raise ValueError(f"unsupported data cipher {cipher}")

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
        if mode == "aead":
            pid = self._take_pid()
            aad = self.header + pid if self._v2 else pid
            sealed = self._enc.encrypt(pid + self._enc_iv, payload, aad)
            return b"".join((self.header, pid, sealed[-TAG_LEN:], sealed[:-TAG_LEN]))
        if mode == "none":
            return b"".join((self.header, self._take_pid(), payload))
        if mode == "hmac":
            body = self._take_pid() + payload
            return b"".join((self.header, hmac.digest(self._enc_hmac, body, self._digest), body))
        # cbc
        iv = self._rng(16)
        padder = padding.PKCS7(128).padder()
        plain = padder.update(self._take_pid()) + padder.update(payload) + padder.finalize()
        enc = Cipher(algorithms.AES(self._enc_key), modes.CBC(iv)).encryptor()
        body = iv + enc.update(plain) + enc.finalize()
        if self._digest is None:                  # CBC with auth none
            return self.header + body
        return b"".join((self.header, hmac.digest(self._enc_hmac, body, self._digest), body))

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
            if len(body) < 4 + TAG_LEN:
                raise DataError("AEAD data packet too short")
            pid_bytes = bytes(body[:4])
            (pid,) = _PID.unpack(pid_bytes)
            self._accept_pid(pid)
            if self._v2:
                aad = (self.header if header is None else bytes(header)) + pid_bytes
            else:
                aad = pid_bytes
            try:
                payload = self._dec.decrypt(pid_bytes + self._dec_iv,
                                            bytes(body[4 + TAG_LEN:]) + bytes(body[4:4 + TAG_LEN]),
                                            aad)
            except InvalidTag:
                raise DataError("AEAD tag mismatch") from None
        elif mode == "none":
            if len(body) < 4:
                raise DataError("data packet without packet id")
            (pid,) = _PID.unpack_from(body, 0)
            self._accept_pid(pid)
            payload = bytes(body[4:])
        else:
            hlen = self._hlen
            if len(body) < hlen:
                raise DataError("data packet shorter than its HMAC")
            mac = body[:hlen]
            rest = body[hlen:]
            if self._digest is not None and not hmac.compare_digest(
                    hmac.digest(self._dec_hmac, rest, self._digest), mac):
                raise DataError("HMAC mismatch")
            if mode == "hmac":
                plain = rest
            else:
                if len(rest) < 32 or len(rest) % 16:
                    raise DataError("CBC data packet has a bad length")
                dec = Cipher(algorithms.AES(self._dec_key), modes.CBC(bytes(rest[:16]))).decryptor()
                padded = dec.update(rest[16:]) + dec.finalize()
                unpadder = padding.PKCS7(128).unpadder()
                try:
                    plain = memoryview(unpadder.update(padded) + unpadder.finalize())
                except ValueError:
                    raise DataError("bad CBC padding") from None
            if len(plain) < 4:
                raise DataError("data packet without packet id")
            (pid,) = _PID.unpack_from(plain, 0)
            self._accept_pid(pid)
            payload = bytes(plain[4:])
        self.replay.update(pid)
        self.packets_in += 1
        self.bytes_in += len(payload)
        return payload
