"""TLS for the control channel: the stdlib ``ssl`` module over memory BIOs.

No sockets: TLS records go in with :meth:`TlsClient.feed` and come out of
:meth:`TlsClient.take_output`; the session puts them in P_CONTROL_V1 packets.
Verification is OpenSSL's (the server chain must lead to the profile's CA),
then OpenVPN's own checks on the server's certificate, as OpenVPN 2.6 makes them
with OpenSSL (ssl_verify_openssl.c): ``remote-cert-tls`` (key usage present, TLS
server extended key usage), ``remote-cert-ku`` / ``remote-cert-eku``,
``ns-cert-type`` (the certificate's TLS server purpose), ``verify-x509-name``, and
``crl-verify``: every certificate of the server's chain below the CA must be
covered by a CRL of its issuer, correctly signed and current, that does not list
its serial (OpenSSL's CRL_CHECK | CRL_CHECK_ALL, which OpenVPN sets).
"""

from __future__ import annotations

import datetime
import os
import ssl
import struct
import tempfile
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

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
    remote_cert_ku: tuple[int, ...] | str | None = None   # values, or "required"
    remote_cert_eku: str | None = None   # OpenSSL long name or dotted OID
    ns_cert_type: str | None = None      # "server" or "client"
    crl: bytes | None = None             # PEM CRLs (crl-verify)


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


# OpenSSL's long names of extended key usages (OBJ_obj2txt without no_name), which is
# how OpenVPN compares remote-cert-eku; a dotted OID matches as well.
_EKU_NAMES = {
    "TLS Web Server Authentication": ExtendedKeyUsageOID.SERVER_AUTH,
    "TLS Web Client Authentication": ExtendedKeyUsageOID.CLIENT_AUTH,
    "Code Signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "E-mail Protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "Time Stamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "OCSP Signing": ExtendedKeyUsageOID.OCSP_SIGNING,
    "Any Extended Key Usage": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    "IPSec End System": ObjectIdentifier("1.3.6.1.5.5.7.3.5"),
    "IPSec Tunnel": ObjectIdentifier("1.3.6.1.5.5.7.3.6"),
    "IPSec User": ObjectIdentifier("1.3.6.1.5.5.7.3.7"),
    "Microsoft Server Gated Crypto": ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"),
    "Netscape Server Gated Crypto": ObjectIdentifier("2.16.840.1.113730.4.1"),
}
_REMOTE_CERT_TLS_EKU = {"server": "TLS Web Server Authentication",
                        "client": "TLS Web Client Authentication"}
_NS_CERT_TYPE = ObjectIdentifier("2.16.840.1.113730.1.1")
_NS_SSL_CLIENT, _NS_SSL_SERVER = 0x80, 0x40


def _extension(cert: x509.Certificate, kind):
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def key_usage_bits(ku: x509.KeyUsage) -> int:
    """Key usage as OpenVPN prints and compares it: digitalSignature 0x80 ... encipherOnly
    0x01 (the first byte of the DER bit string)."""
    bits = [ku.digital_signature, ku.content_commitment, ku.key_encipherment,
            ku.data_encipherment, ku.key_agreement, ku.key_cert_sign, ku.crl_sign,
            ku.key_agreement and ku.encipher_only]
    return sum(1 << (7 - i) for i, bit in enumerate(bits) if bit)


def _eku_matches(oid: ObjectIdentifier, wanted: str) -> bool:
    return oid.dotted_string == wanted or _EKU_NAMES.get(wanted) == oid


def _ns_cert_type_byte(cert: x509.Certificate) -> int | None:
    try:
        raw = cert.extensions.get_extension_for_oid(_NS_CERT_TYPE).value.value
    except x509.ExtensionNotFound:
        return None
    # a DER BIT STRING: 03 len unused-bits first-byte ...
    return raw[3] if len(raw) >= 4 and raw[0] == 0x03 else 0


def _ssl_purpose_ok(cert: x509.Certificate, server: bool) -> bool:
    """OpenSSL's X509_check_purpose(SSL_SERVER / SSL_CLIENT) for a leaf certificate."""
    eku = _extension(cert, x509.ExtendedKeyUsage)
    if eku is not None:
        wanted = {ExtendedKeyUsageOID.SERVER_AUTH, _EKU_NAMES["Netscape Server Gated Crypto"],
                  _EKU_NAMES["Microsoft Server Gated Crypto"]} if server else \
            {ExtendedKeyUsageOID.CLIENT_AUTH}
        if not wanted & set(eku):
            return False
    ns = _ns_cert_type_byte(cert)
    if ns is not None and not ns & (_NS_SSL_SERVER if server else _NS_SSL_CLIENT):
        return False
    ku = _extension(cert, x509.KeyUsage)
    if ku is not None:
        if server and not (ku.digital_signature or ku.key_encipherment or ku.key_agreement):
            return False
        if not server and not (ku.digital_signature or ku.key_agreement):
            return False
    return True


def check_server_certificate(cert: x509.Certificate, settings: TlsSettings, *,
                             chain: list[x509.Certificate] = (),
                             now: datetime.datetime | None = None) -> None:
    """OpenVPN's checks beyond the chain.  ``chain`` is what the server sent after its
    own certificate (for crl-verify); ``now`` the time a CRL must be current at."""
    ku_wanted = settings.remote_cert_ku
    eku_wanted = settings.remote_cert_eku
    if settings.remote_cert_tls in _REMOTE_CERT_TLS_EKU:
        if ku_wanted is None:
            ku_wanted = "required"
        if eku_wanted is None:
            eku_wanted = _REMOTE_CERT_TLS_EKU[settings.remote_cert_tls]
    why = (f"remote-cert-tls {settings.remote_cert_tls}" if settings.remote_cert_tls
           else None)
    if eku_wanted is not None:
        eku = _extension(cert, x509.ExtendedKeyUsage) or []
        if not any(_eku_matches(oid, eku_wanted) for oid in eku):
            if eku_wanted == "TLS Web Server Authentication":
                text = "has no TLS Web Server Authentication usage"
            else:
                text = f"has no extended key usage {eku_wanted!r}"
            raise SessionError("certificate", f"server certificate {describe(cert)} {text} "
                               f"({why or 'remote-cert-eku'})")
    if ku_wanted is not None:
        ku = _extension(cert, x509.KeyUsage)
        if ku is None:
            raise SessionError("certificate", f"server certificate {describe(cert)} has no "
                               f"key usage extension ({why or 'remote-cert-ku'})")
        if ku_wanted != "required":
            have = key_usage_bits(ku)
            if not any(v and have & v == v for v in ku_wanted):
                wanted = ", ".join(f"{v:02x}" for v in ku_wanted)
                raise SessionError("certificate", f"server certificate {describe(cert)} has "
                                   f"key usage {have:02x}, expected one of {wanted} "
                                   "(remote-cert-ku)")
    if settings.ns_cert_type is not None:
        server = settings.ns_cert_type == "server"
        ns = _ns_cert_type_byte(cert)
        if not _ssl_purpose_ok(cert, server) and not (
                ns and ns & (_NS_SSL_SERVER if server else _NS_SSL_CLIENT)):
            raise SessionError("certificate", f"server certificate {describe(cert)} is not a "
                               f"TLS {settings.ns_cert_type} certificate (ns-cert-type "
                               f"{settings.ns_cert_type})")
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
    if settings.crl is not None:
        check_crl(cert, list(chain), settings, now=now)


def _load_pem_all(data: bytes, loader) -> list:
    out = []
    begin = b"-----BEGIN "
    pos = 0
    while True:
        start = data.find(begin, pos)
        if start < 0:
            return out
        label_end = data.find(b"-----", start + len(begin))
        if label_end < 0:
            return out
        label = data[start + len(begin):label_end]
        end_line = b"-----END " + label + b"-----"
        end = data.find(end_line, label_end)
        if end < 0:
            return out
        block = data[start:end + len(end_line)]
        pos = end + len(end_line)
        try:
            out.append(loader(block))
        except ValueError:
            continue


def _is_self_issued(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


def check_crl(leaf: x509.Certificate, chain: list[x509.Certificate],
              settings: TlsSettings, *, now: datetime.datetime | None = None) -> None:
    """crl-verify: each certificate of the server's chain below the CA needs a current,
    correctly signed CRL from its issuer that does not list it; otherwise the server is
    refused, naming the certificate."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    crls = _load_pem_all(settings.crl, x509.load_pem_x509_crl)
    issuers = _load_pem_all(settings.ca or b"", x509.load_pem_x509_certificate) + chain
    for cert in [leaf, *chain]:
        if _is_self_issued(cert):
            continue                                  # a trust anchor: nothing above it
        issuer = next((c for c in issuers if c.subject == cert.issuer
                       and not (c is cert)), None)
        mine = [crl for crl in crls if crl.issuer == cert.issuer]
        if not mine:
            raise SessionError("certificate", f"server certificate {describe(cert)}: "
                               "crl-verify has no CRL from its issuer, so it cannot be "
                               "checked (the stock client refuses it too)")
        good = []
        for crl in mine:
            if issuer is not None and not crl.is_signature_valid(issuer.public_key()):
                continue
            good.append(crl)
        if not good:
            raise SessionError("certificate", f"server certificate {describe(cert)}: the "
                               "CRL of its issuer is not signed by that issuer")
        for crl in good:
            if crl.last_update_utc > now:
                raise SessionError("certificate", f"server certificate {describe(cert)}: "
                                   "the CRL of its issuer is not valid yet")
            if crl.next_update_utc is not None and crl.next_update_utc < now:
                raise SessionError("certificate", f"server certificate {describe(cert)}: "
                                   f"the CRL of its issuer expired on "
                                   f"{crl.next_update_utc:%Y-%m-%d %H:%M} UTC")
            if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                raise SessionError("certificate", f"server certificate {describe(cert)} "
                                   f"(serial {cert.serial_number:X}) is revoked by the CRL "
                                   "(crl-verify)")


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
        chain = []
        for extra in self._seen_certs[1:]:
            try:
                chain.append(x509.load_der_x509_certificate(extra))
            except ValueError:
                pass
        check_server_certificate(self.peer_certificate, self.settings, chain=chain)
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
