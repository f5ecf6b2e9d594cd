"""Throwaway certificates for the labs (EC P-256, SHA-256, valid from yesterday for 30
days, keys PKCS#8 and world-readable: the client under test runs as nobody)."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def key_usage(**on: bool) -> x509.KeyUsage:
    flags = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment",
                           "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign",
                           "encipher_only", "decipher_only"), False)
    flags.update(on)
    return x509.KeyUsage(**flags)


def ca_extensions() -> list:
    return [(x509.BasicConstraints(ca=True, path_length=None), True),
            (key_usage(key_cert_sign=True, crl_sign=True), True)]


def issue(cert_path: Path, key_path: Path, cn: str, issuer: tuple | None,
          extensions: list, key=None) -> tuple:
    """A certificate for ``cn`` signed by ``issuer`` ((name, key) as returned by an
    earlier call) or self-signed; writes both PEM files; returns (subject, key).
    *key*: the subject's private key (default: a new EC P-256 key)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer_name, issuer_key = issuer if issuer else (subject, key)
    builder = (x509.CertificateBuilder()
               .subject_name(subject).issuer_name(issuer_name)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False))
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False)
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    cert = builder.sign(issuer_key, hashes.SHA256())
    Path(cert_path).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    Path(key_path).write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    os.chmod(cert_path, 0o644)
    os.chmod(key_path, 0o644)
    return subject, key
