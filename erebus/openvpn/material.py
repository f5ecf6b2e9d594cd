"""PEM and PKCS#12 material of a ``.ovpn`` profile, checked as bytes: certificates,
private keys, CRLs and PKCS#12 bundles.

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
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12 as _pkcs12

__all__ = ["CERT_LABELS", "KEY_LABELS", "PemBlock", "PemError", "Pkcs12Error", "pem_blocks",
           "check_certificates", "private_key_block", "check_private_key", "check_crls",
           "pkcs12_from_base64", "open_pkcs12", "pkcs12_pems", "unlock_key", "key_matches_certificate",
           "short_reason"]

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


def pem_blocks(data: bytes) -> list[PemBlock]:
    """Every PEM block of ``data``; text around them (an ``openssl x509 -text`` dump) is
    fine.  Raises :class:`PemError` for a truncated, empty or undecodable block."""
    blocks = []
    pos = 0
    while True:
        m = _PEM_BEGIN.search(data, pos)
        if m is None:
            return blocks
        label = m.group(1)
        end_line = b"-----END " + label + b"-----"
        end = data.find(end_line, m.end())
        if end < 0:
            raise PemError(f"the {label.decode()} block has no END line (truncated?)",
                           m.start())
        other = _PEM_BEGIN.search(data, m.end(), end)
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
