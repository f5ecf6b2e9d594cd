"""Throwaway PKI for tests: a CA, server and client certificates, CRLs, PKCS#12
bundles and OpenVPN static keys, made with ``cryptography``.  Every key made here is
TEST-ONLY: it protects nothing."""

from __future__ import annotations

import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOT_BEFORE = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
NOT_AFTER = datetime.datetime(2099, 1, 1, tzinfo=datetime.timezone.utc)


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "erebus test-only"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def make_ca(cn: str = "Test-Only CA", key=None):
    key = key or new_key()
    cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def key_usage(**bits) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment",
             "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign",
             "encipher_only", "decipher_only")
    values = {n: bits.get(n, False) for n in names}
    return x509.KeyUsage(**values)


def make_cert(ca_key, ca_cert, cn: str, *, server: bool = True, ku=True, eku=True,
              serial: int | None = None, extra_extensions=(), key=None):
    """A leaf certificate.  ``ku``: True (digitalSignature+keyAgreement), False (none) or
    a KeyUsage; ``eku``: True (server or client auth), False (none) or a list of OIDs."""
    key = key or new_key()
    builder = (x509.CertificateBuilder().subject_name(name(cn))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(serial or x509.random_serial_number())
               .not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                              critical=True))
    if ku is True:
        builder = builder.add_extension(key_usage(digital_signature=True,
                                                  key_agreement=True), critical=True)
    elif ku:
        builder = builder.add_extension(ku, critical=True)
    if eku is True:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    elif eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    for ext, critical in extra_extensions:
        builder = builder.add_extension(ext, critical=critical)
    return key, builder.sign(ca_key, hashes.SHA256())


def make_crl(ca_key, ca_cert, revoked=(), *, last=NOT_BEFORE, next_=NOT_AFTER):
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
               .last_update(last).next_update(next_))
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial)
            .revocation_date(last).build())
    return builder.sign(ca_key, hashes.SHA256())


def cert_pem(cert) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def crl_pem(crl) -> str:
    return crl.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key, passphrase: str | None = None, *, legacy: bool = False) -> str:
    if passphrase is None:
        enc = serialization.NoEncryption()
    else:
        enc = serialization.BestAvailableEncryption(passphrase.encode())
    fmt = (serialization.PrivateFormat.TraditionalOpenSSL if legacy
           else serialization.PrivateFormat.PKCS8)
    return key.private_bytes(serialization.Encoding.PEM, fmt, enc).decode()


def p12(key, cert, cas=(), passphrase: str | None = None) -> bytes:
    enc = (serialization.NoEncryption() if passphrase is None
           else serialization.BestAvailableEncryption(passphrase.encode()))
    return pkcs12.serialize_key_and_certificates(b"test-only", key, cert, list(cas) or None,
                                                 enc)


def static_key(seed: bytes | None = None) -> str:
    data = seed or os.urandom(256)
    hexed = data.hex()
    lines = [hexed[i:i + 32] for i in range(0, 512, 32)]
    return ("#\n# 2048 bit OpenVPN static key (TEST-ONLY)\n#\n"
            "-----BEGIN OpenVPN Static key V1-----\n" + "\n".join(lines)
            + "\n-----END OpenVPN Static key V1-----\n")


def tls_crypt_v2_client_key(metadata: bytes = b"\x01" + bytes(8)) -> str:
    """A tls-crypt-v2 client key shaped like ``--genkey tls-crypt-v2-client`` writes it
    (Kc, then WKc = tag | Kc and metadata encrypted | u16 length); random bytes that no
    server key wraps: enough for the profile reader, which never opens WKc."""
    import base64
    wkc = os.urandom(32 + 256 + len(metadata))
    wkc += (len(wkc) + 2).to_bytes(2, "big")
    b64 = base64.b64encode(os.urandom(256) + wkc).decode()
    return ("-----BEGIN OpenVPN tls-crypt-v2 client key-----\n"
            + "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
            + "\n-----END OpenVPN tls-crypt-v2 client key-----\n")


class Pki:
    """One CA with a server and a client certificate, made on demand."""

    def __init__(self, cn: str = "Test-Only CA"):
        self.ca_key, self.ca = make_ca(cn)
        self.server_key, self.server = make_cert(self.ca_key, self.ca, "server")
        self.client_key, self.client = make_cert(self.ca_key, self.ca, "client",
                                                 server=False)

    @property
    def ca_pem(self) -> str:
        return cert_pem(self.ca)

    @property
    def client_pem(self) -> str:
        return cert_pem(self.client)

    @property
    def client_key_pem(self) -> str:
        return key_pem(self.client_key)

    def inline(self, *, key: str | None = None) -> str:
        return (f"<ca>\n{self.ca_pem}</ca>\n<cert>\n{self.client_pem}</cert>\n"
                f"<key>\n{key or self.client_key_pem}</key>\n")
