"""TLS for the control channel: the stdlib ``ssl`` module over memory BIOs.

No sockets: TLS records go in with :meth:`TlsClient.feed` and come out of
:meth:`TlsClient.take_output`; the session puts them in P_CONTROL_V1 packets.
Verification is OpenSSL's (the server chain must lead to the profile's CA),
then OpenVPN's own checks on the server's leaf certificate:
``remote-cert-tls server`` and ``verify-x509-name``.
"""

from __future__ import annotations

import os
import ssl
import struct
import tempfile
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import ConfigError, SessionError

_TLS_VERSIONS = {"1.0": ssl.TLSVersion.TLSv1, "1.1": ssl.TLSVersion.TLSv1_1,
                 "1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_HANDSHAKE = 22
_CERTIFICATE = 11


@dataclass(slots=True)
class TlsSettings:
    ca: bytes
    cert: bytes | None = None
    key: bytes | None = None
    extra_certs: bytes | None = None
    remote_cert_tls: str | None = None
    verify_x509_name: tuple[str, str] | None = None   # (name, type)
    tls_version_min: str | None = None
    tls_version_max: str | None = None
    tls_cipher: str | None = None
    tls_ciphersuites: str | None = None


def openvpn_subject(name: x509.Name) -> str:
    """A subject as OpenVPN prints it: ``C=US, O=Example, CN=server``."""
    parts = []
    for rdn in name.rdns:
        for attr in rdn:
            short = attr.rfc4514_attribute_name
            if attr.oid == NameOID.EMAIL_ADDRESS:
                short = "emailAddress"
            parts.append(f"{short}={attr.value}")
    return ", ".join(parts)


def common_name(cert: x509.Certificate) -> str | None:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[-1].value) if attrs else None


def describe(cert: x509.Certificate) -> str:
    return (f"'{openvpn_subject(cert.subject)}' "
            f"(issued by '{openvpn_subject(cert.issuer)}')")


def _certs_from_handshake(data: bytes) -> list[bytes]:
    """DER certificates from a TLS 1.2 or 1.3 Certificate message (header included)."""
    if len(data) < 4 or data[0] != _CERTIFICATE:
        return []
    body = data[4:]
    for tls13 in (True, False):
        try:
            pos = 0
            if tls13:
                ctx_len = body[0]
                pos = 1 + ctx_len
            total = int.from_bytes(body[pos:pos + 3], "big")
            pos += 3
            end = pos + total
            if end != len(body):
                continue
            certs = []
            while pos < end:
                clen = int.from_bytes(body[pos:pos + 3], "big")
                pos += 3
                certs.append(bytes(body[pos:pos + clen]))
                pos += clen
                if tls13:
                    (elen,) = struct.unpack_from("!H", body, pos)
                    pos += 2 + elen
            if pos == end and certs:
                return certs
        except (IndexError, struct.error):
            continue
    return []


def _build_context(settings: TlsSettings, seen_certs: list[bytes]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False          # OpenVPN checks names with verify-x509-name
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        ctx.load_verify_locations(cadata=settings.ca.decode("ascii", "replace"))
    except ssl.SSLError as exc:
        raise ConfigError(f"cannot load the CA certificate: {exc.reason or exc}",
                          option="ca") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.tls_version_min:
        version = settings.tls_version_min.split()[0]
        if version not in _TLS_VERSIONS:
            raise ConfigError(f"unknown TLS version {version!r}", option="tls-version-min")
        ctx.minimum_version = _TLS_VERSIONS[version]
    if settings.tls_version_max:
        if settings.tls_version_max not in _TLS_VERSIONS:
            raise ConfigError(f"unknown TLS version {settings.tls_version_max!r}",
                              option="tls-version-max")
        ctx.maximum_version = _TLS_VERSIONS[settings.tls_version_max]
    if settings.tls_cipher:
        try:
            ctx.set_ciphers(settings.tls_cipher)
        except ssl.SSLError:
            raise ConfigError(f"no usable cipher in {settings.tls_cipher!r}",
                              option="tls-cipher") from None
    if settings.cert or settings.key:
        if not (settings.cert and settings.key):
            raise ConfigError("a client certificate needs its key (and the key its "
                              "certificate)", option="cert" if not settings.cert else "key")
        # ssl only loads a chain from files: write it where only we can read, then remove it.
        with tempfile.TemporaryDirectory(prefix="erebus-tls-") as tmp:
            cert_path = os.path.join(tmp, "cert.pem")
            key_path = os.path.join(tmp, "key.pem")
            fd = os.open(cert_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(settings.cert + b"\n" + (settings.extra_certs or b""))
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(settings.key)
            try:
                ctx.load_cert_chain(cert_path, key_path)
            except ssl.SSLError as exc:
                raise ConfigError("cannot load the client certificate and key: "
                                  f"{exc.reason or exc}", option="cert") from None

    def on_message(conn, direction, version, content_type, msg_type, data):
        if direction == "read" and content_type == _HANDSHAKE and msg_type == _CERTIFICATE:
            seen_certs[:] = _certs_from_handshake(bytes(data))

    ctx._msg_callback = on_message  # only to name a rejected certificate
    return ctx


def check_server_certificate(cert: x509.Certificate, settings: TlsSettings) -> None:
    """OpenVPN's checks beyond the chain: remote-cert-tls and verify-x509-name."""
    if settings.remote_cert_tls == "server":
        try:
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            eku = []
        if ExtendedKeyUsageOID.SERVER_AUTH not in eku:
            raise SessionError("certificate", f"server certificate {describe(cert)} has no "
                               "TLS Web Server Authentication usage (remote-cert-tls server)")
        try:
            cert.extensions.get_extension_for_class(x509.KeyUsage)
        except x509.ExtensionNotFound:
            raise SessionError("certificate", f"server certificate {describe(cert)} has no "
                               "key usage extension (remote-cert-tls server)") from None
    if settings.verify_x509_name:
        want, kind = settings.verify_x509_name
        cn = common_name(cert) or ""
        if kind == "subject":
            ok = openvpn_subject(cert.subject) == want
        elif kind == "name":
            ok = cn == want
        elif kind == "name-prefix":
            ok = cn.startswith(want)
        else:
            raise ConfigError(f"unknown type {kind!r}", option="verify-x509-name")
        if not ok:
            raise SessionError("certificate", f"server certificate {describe(cert)} does not "
                               f"match verify-x509-name {want!r} ({kind})")


class TlsClient:
    """The client side of one TLS session over memory BIOs."""

    def __init__(self, settings: TlsSettings, context: ssl.SSLContext | None = None):
        self.settings = settings
        self._seen_certs: list[bytes] = []
        self._ctx = context or _build_context(settings, self._seen_certs)
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = self._ctx.wrap_bio(self._in, self._out, server_side=False)
        self.established = False
        self.peer_certificate: x509.Certificate | None = None
        self.version: str | None = None
        self.cipher: str | None = None

    def feed(self, data: bytes) -> None:
        self._in.write(data)

    def take_output(self) -> bytes:
        return self._out.read()

    def handshake(self) -> bool:
        """Advance the handshake; True once it is complete and the server checked."""
        if self.established:
            return True
        try:
            self._obj.do_handshake()
        except ssl.SSLWantReadError:
            return False
        except ssl.SSLCertVerificationError as exc:
            who = "the server certificate"
            if self._seen_certs:
                try:
                    who = "server certificate " + describe(
                        x509.load_der_x509_certificate(self._seen_certs[0]))
                except ValueError:
                    pass
            raise SessionError("certificate", f"{who} rejected: {exc.verify_message} "
                               "(it does not chain to the profile's CA)"
                               if exc.verify_code in (2, 20, 21)
                               else f"{who} rejected: {exc.verify_message}") from None
        except ssl.SSLError as exc:
            raise SessionError("tls", f"TLS handshake failed: {exc.reason or exc}") from None
        der = self._obj.getpeercert(binary_form=True)
        if der is None:
            raise SessionError("certificate", "the server sent no certificate")
        self.peer_certificate = x509.load_der_x509_certificate(der)
        check_server_certificate(self.peer_certificate, self.settings)
        self.version = self._obj.version()
        cipher = self._obj.cipher()
        self.cipher = cipher[0] if cipher else None
        self.established = True
        return True

    def write(self, data: bytes) -> None:
        self._obj.write(data)

    def read_records(self) -> list[bytes]:
        """Application data now readable; each item is (at most) one TLS record."""
        out = []
        while True:
            try:
                chunk = self._obj.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                raise SessionError("tls", "the server closed the TLS session") from None
            except ssl.SSLError as exc:
                raise SessionError("tls", f"TLS error: {exc.reason or exc}") from None
            if not chunk:
                break
            out.append(chunk)
        return out
