"""PEM and PKCS#12 material of a ``.ovpn`` profile, checked as bytes: certificates,
private keys, CRLs, PKCS#12 bundles and tls-crypt-v2 client keys.

The checks here know nothing of the profile: each raises :class:`PemError` with the
offset, in the material's bytes, of the block at fault (or :class:`Pkcs12Error`), and
the reader (:mod:`erebus.openvpn.reader`) turns that into the file and line a user
reads.  Text around PEM blocks (an ``openssl x509 -text`` dump) is fine, as it is for
the stock client.  Certificates and keys are parsed by ``cryptography``, CRLs by
OpenSSL itself (:func:`erebus.openvpn.tls.check_crl_der`), as the stock client reads
them.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12 as _pkcs12

__all__ = ["CERT_LABELS", "KEY_LABELS", "PemBlock", "PemError", "Pkcs12Error", "pem_blocks",
           "check_certificates", "private_key_block", "check_private_key", "check_crls",
           "pkcs12_from_base64", "open_pkcs12", "pkcs12_pems", "unlock_key", "key_matches_certificate",
           "short_reason", "tls_crypt_v2_client_key", "TLS_CRYPT_V2_MAX_WKC_LEN"]

_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 #]+)-----")
CERT_LABELS = (b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE")
KEY_LABELS = (b"PRIVATE KEY", b"RSA PRIVATE KEY", b"EC PRIVATE KEY", b"DSA PRIVATE KEY",
              b"ENCRYPTED PRIVATE KEY")


@dataclass(slots=True)
class PemBlock:
    label: bytes
    text: bytes         # BEGIN line to END line, inclusive
    der: bytes
    offset: int         # where the BEGIN line starts
    encrypted: bool     # a legacy 'Proc-Type: 4,ENCRYPTED' header

    @property
    def locked(self) -> bool:
        """An encrypted private key (PKCS#8 or legacy): it needs its passphrase."""
        return self.label == b"ENCRYPTED PRIVATE KEY" or self.encrypted


class PemError(ValueError):
    """What is wrong with some PEM material; ``offset``: where, in its bytes (the
    reader turns it into a line)."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset


def pem_blocks(data: bytes, begin: re.Pattern = _PEM_BEGIN) -> list[PemBlock]:
    """Every PEM block of ``data`` whose BEGIN line ``begin`` matches (group 1: the
    label); text around them (an ``openssl x509 -text`` dump) is fine.  Raises
    :class:`PemError` for a truncated, empty or undecodable block."""
    blocks = []
    pos = 0
    while True:
        m = begin.search(data, pos)
        if m is None:
            return blocks
        label = m.group(1)
        end_line = b"-----END " + label + b"-----"
        end = data.find(end_line, m.end())
        if end < 0:
            raise PemError(f"the {label.decode()} block has no END line (truncated?)",
                           m.start())
        other = begin.search(data, m.end(), end)
        if other is not None:
            raise PemError(f"the {label.decode()} block has no END line before the next "
                           "BEGIN (truncated?)", m.start())
        body = data[m.end():end]
        encrypted = False
        lines = []
        for line in body.splitlines():
            line = line.strip()
            if b":" in line:                 # RFC 1421 headers of legacy encrypted keys
                encrypted = encrypted or line.replace(b" ", b"").upper().startswith(
                    b"PROC-TYPE:4,ENCRYPTED")
                continue
            lines.append(line)
        b64 = b"".join(lines)
        if not b64:
            raise PemError(f"the {label.decode()} block is empty", m.start())
        try:
            der = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise PemError(f"the {label.decode()} block is not valid base64 (damaged or "
                           "truncated)", m.start()) from None
        stop = end + len(end_line)
        blocks.append(PemBlock(label, data[m.start():stop], der, m.start(), encrypted))
        pos = stop



def short_reason(exc: Exception) -> str:
    """The first line of an exception's text, short enough for a problem's message."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:120]


# -- certificates, keys and CRLs ------------------------------------------------------

def check_certificates(data: bytes) -> None:
    """``data`` holds at least one PEM certificate, and each of them parses."""
    certs = [b for b in pem_blocks(data) if b.label in CERT_LABELS]
    if not certs:
        raise PemError("no PEM certificate (-----BEGIN CERTIFICATE-----) found", 0)
    for b in certs:
        try:
            x509.load_der_x509_certificate(b.der)
        except ValueError as exc:
            raise PemError(f"a certificate that does not parse ({short_reason(exc)})",
                           b.offset) from None


def private_key_block(data: bytes) -> PemBlock:
    """The first PEM private key of ``data`` (perhaps encrypted: see
    :attr:`PemBlock.locked`)."""
    keys = [b for b in pem_blocks(data) if b.label in KEY_LABELS]
    if not keys:
        raise PemError("no PEM private key (-----BEGIN ... PRIVATE KEY-----) found", 0)
    return keys[0]


def check_private_key(block: PemBlock) -> None:
    """An unencrypted private key that ``cryptography`` can use."""
    try:
        serialization.load_pem_private_key(block.text, password=None)
    except (ValueError, TypeError) as exc:
        raise PemError(f"a private key that does not parse ({short_reason(exc)})",
                       block.offset) from None
    except Exception as exc:      # noqa: BLE001 - e.g. an unsupported algorithm
        raise PemError(f"a private key erebus cannot use ({short_reason(exc)})",
                       block.offset) from None


def check_crls(data: bytes) -> None:
    """``data`` holds at least one PEM CRL, and OpenSSL parses each of them."""
    crls = [b for b in pem_blocks(data) if b.label == b"X509 CRL"]
    if not crls:
        raise PemError("no PEM CRL (-----BEGIN X509 CRL-----) found", 0)
    from .tls import check_crl_der          # OpenSSL's parser: what the stock client reads
    for b in crls:
        try:
            check_crl_der(b.der)
        except ValueError as exc:
            raise PemError(f"a CRL that does not parse ({short_reason(exc)})",
                           b.offset) from None


def unlock_key(pem: bytes, passphrase: str) -> bytes:
    """An encrypted PEM private key as an unencrypted PKCS#8 PEM.  ValueError when the
    passphrase is wrong."""
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase.encode())
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def key_matches_certificate(key_pem: bytes, cert_pem: bytes) -> bool:
    """Whether the key is the first certificate's; True when either cannot be read (a
    certificate whose public key does not load, e.g. an EC point off its curve, included:
    OpenSSL refuses it when the TLS context is built)."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        blocks = pem_blocks(cert_pem)
        leaf = x509.load_der_x509_certificate(
            next(b for b in blocks if b.label in CERT_LABELS).der)
        key_block = next(b for b in pem_blocks(key_pem) if b.label in KEY_LABELS)
        key = serialization.load_pem_private_key(key_block.text, password=None)
        theirs = leaf.public_key().public_bytes(serialization.Encoding.DER, spki)
    except Exception:          # noqa: BLE001 - unparseable material is reported elsewhere
        return True
    return key.public_key().public_bytes(serialization.Encoding.DER, spki) == theirs


# -- tls-crypt-v2 client keys ----------------------------------------------------------

# tls_crypt.h: a client key is Kc (a struct key2, 256 bytes) then WKc, at most 1024 bytes;
# WKc = tag (32) | AES-256-CTR(Kc | metadata) | u16 length of WKc, so at least 290.
TLS_CRYPT_V2_LABEL = b"OpenVPN tls-crypt-v2 client key"
TLS_CRYPT_V2_CLIENT_KEY_LEN = 256
TLS_CRYPT_V2_MAX_WKC_LEN = 1024
TLS_CRYPT_V2_MIN_WKC_LEN = 32 + TLS_CRYPT_V2_CLIENT_KEY_LEN + 2
_TLS_CRYPT_V2_BEGIN = re.compile(rb"-----BEGIN (" + re.escape(TLS_CRYPT_V2_LABEL) + rb")-----")
_OTHER_KEYS = ((b"-----BEGIN OpenVPN tls-crypt-v2 server key-----",
                "a tls-crypt-v2 server key: the client needs a client key made from it "
                "(openvpn --genkey tls-crypt-v2-client CLIENT.key --tls-crypt-v2 SERVER.key)"),
               (b"-----BEGIN OpenVPN Static key V1-----",
                "an OpenVPN static key: that is for tls-crypt or tls-auth, not tls-crypt-v2"))


def tls_crypt_v2_client_key(data: bytes) -> tuple[bytes, bytes]:
    """(Kc, WKc) of a tls-crypt-v2 client key (tls_crypt.c
    ``tls_crypt_v2_init_client_key``): Kc is a tls-crypt key, WKc stays opaque; its
    trailing length must be its own, and it may not exceed 1024 bytes."""
    blocks = pem_blocks(data, _TLS_CRYPT_V2_BEGIN)
    if not blocks:
        for marker, what in _OTHER_KEYS:
            if marker in data:
                raise PemError(f"this is {what}", data.index(marker))
        raise PemError(f"no -----BEGIN {TLS_CRYPT_V2_LABEL.decode()}----- block found", 0)
    b = blocks[0]
    kc, wkc = b.der[:TLS_CRYPT_V2_CLIENT_KEY_LEN], b.der[TLS_CRYPT_V2_CLIENT_KEY_LEN:]
    if len(wkc) < TLS_CRYPT_V2_MIN_WKC_LEN:
        raise PemError(f"the tls-crypt-v2 client key holds {len(b.der)} bytes: too few for "
                       f"the key ({TLS_CRYPT_V2_CLIENT_KEY_LEN}) and its wrapped copy (at "
                       f"least {TLS_CRYPT_V2_MIN_WKC_LEN}) (truncated?)", b.offset)
    if len(wkc) > TLS_CRYPT_V2_MAX_WKC_LEN:
        raise PemError(f"the wrapped client key is {len(wkc)} bytes, more than the "
                       f"{TLS_CRYPT_V2_MAX_WKC_LEN} OpenVPN allows", b.offset)
    (length,) = struct.unpack_from("!H", wkc, len(wkc) - 2)
    if length != len(wkc):
        raise PemError(f"the wrapped client key ends in length {length} but is {len(wkc)} "
                       "bytes (damaged or truncated)", b.offset)
    return kc, wkc


# -- PKCS#12 -------------------------------------------------------------------------

class Pkcs12Error(ValueError):
    """A PKCS#12 bundle erebus cannot read."""


def pkcs12_from_base64(data: bytes) -> bytes:
    """An inline PKCS#12 bundle (base64, as ``openssl base64`` writes it) as DER."""
    try:
        return base64.b64decode(b"".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise Pkcs12Error("inline PKCS#12 must be base64 (openssl base64 -in FILE.p12)"
                          ) from None


def open_pkcs12(data: bytes, passwords) -> tuple | None:
    """(key, certificate, extra certificates) of a PKCS#12 bundle, opened with the first
    of ``passwords`` that unlocks it; None when none does."""
    if not data.startswith(b"\x30"):
        raise Pkcs12Error("not a PKCS#12 bundle")
    for password in passwords:
        try:
            return _pkcs12.load_key_and_certificates(data, password)
        except ValueError:
            continue
        except Exception as exc:      # noqa: BLE001 - unsupported algorithms and such
            raise Pkcs12Error(f"cannot read the PKCS#12 bundle ({short_reason(exc)})"
                              ) from None
    return None


def pkcs12_pems(key, cert, extra) -> tuple[bytes, bytes, bytes]:
    """The certificate, the key (unencrypted PKCS#8) and the extra certificates of an
    opened bundle, as PEM (the last empty when the bundle has none)."""
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()),
            b"".join(c.public_bytes(serialization.Encoding.PEM) for c in extra or ()))
