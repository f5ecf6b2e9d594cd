"""TLS for the control channel: OpenSSL (through pyOpenSSL) over memory BIOs.

No sockets and no files: TLS records go in with :meth:`TlsClient.feed` and come out of
:meth:`TlsClient.take_output`; the session puts them in P_CONTROL_V1 packets.  The client
certificate and key are loaded from memory (the key never touches the disk, not even
decrypted), into one :class:`TlsContext` per profile that every TLS session of a tunnel
(the first and each renegotiation) shares; the tunnel owns it, nothing global keeps it.

Verification is OpenSSL's, configured as OpenVPN 2.6 configures it (ssl_openssl.c): the
server chain must lead to the profile's CA, and with ``crl-verify`` the CRLs are in the
verification store with X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL, so every
certificate of the chain OpenSSL built (from the trust store and what the server sent,
whatever the server chose to send) needs a current CRL from its issuer that does not list
it.  CRLs are parsed by OpenSSL's own parser, so one OpenSSL (and so the stock client)
accepts works here too.  ``capath``'s certificates and CRLs (read by
:mod:`erebus.openvpn.castore`) join the same store, with the same flags, as 2.6's hashed-
directory lookup does.  Then OpenVPN's checks, in the verify callback for every
certificate of the chain as ssl_verify.c ``verify_cert`` makes them: the fingerprint of
``peer-fingerprint`` (depth 0) or ``verify-hash`` (depth 1), for the server's own
certificate ``remote-cert-tls``, ``remote-cert-ku`` / ``remote-cert-eku``,
``ns-cert-type`` and ``verify-x509-name``, and ``crl-verify DIR dir`` (a file named by the
certificate's decimal serial revokes it).  With ``peer-fingerprint`` and no ``ca`` or
``capath`` (2.6's PKI-less mode), OpenSSL's verdict on the chain is ignored, as 2.6
ignores it: the fingerprint alone decides.

The context applies ``tls-cert-profile`` as 2.6 does with OpenSSL (an OpenSSL security
level; 2.6's default, ``legacy``, is level 1) and ``tls-groups`` (the key-exchange groups
offered).
"""

from __future__ import annotations

import calendar
import datetime
import hmac
import os
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier
from OpenSSL import SSL, crypto
from OpenSSL._util import ffi as _ffi, lib as _lib   # only in "pyOpenSSL internals" below

from ..errors import ConfigError, ErebusError, SessionError
from ..files import opens
from .fingerprint import format_fingerprint
from .material import CERT_LABELS, KEY_LABELS, PemError, pem_blocks, short_reason

_TLS_VERSIONS = {"1.0": SSL.TLS1_VERSION, "1.1": SSL.TLS1_1_VERSION,
                 "1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}
# The stock client's cipher list when the profile has no tls-cipher
# (ssl_openssl.c: tls_ctx_restrict_ciphers).
DEFAULT_TLS_CIPHERS = "DEFAULT:!EXP:!LOW:!MEDIUM:!kDH:!kECDH:!DSS:!PSK:!SRP:!kRSA"
# tls-cert-profile as 2.6 maps it onto OpenSSL (ssl_openssl.c tls_ctx_set_cert_profile):
# security levels; no profile is "legacy".  "suiteb" also sets the SUITEB128 cipher list,
# which 2.6 replaces with the tls-cipher (or default) list right after, so only the
# level remains: as here.
CERT_PROFILE_LEVELS = {"legacy": 1, "preferred": 2, "suiteb": 3, "insecure": 0}
MAX_CERT_DEPTH = 16        # ssl_verify.h: a longer chain is "convoluted"
CRL_DIR_PATH_MAX = 255     # verify_check_crl_dir's fn[256]: a longer path is refused
_BIO_CHUNK = 65536


# -- pyOpenSSL internals -------------------------------------------------------------
# The only code here that reaches past pyOpenSSL's public API: its cffi bindings
# (OpenSSL._util ``lib`` / ``ffi``) and the pointers inside its objects (X509Store._store,
# X509._x509, Connection._ssl), for what the public API lacks: CRLs as OpenSSL itself
# reads them, verify error codes and strings, the names of certificates cryptography
# cannot read, and the time one session verifies its peer at.
# pyproject.toml pins pyOpenSSL exactly because of it: on an upgrade, check this section
# (tests/unit/test_tls_memory.py exercises every function; test_pyopenssl_internals_stay_
# in_one_section holds the rest of the module to the public API).

# X509_V_ERR_* codes the refusals name in words of their own
_UNABLE_TO_GET_ISSUER_CERT = _lib.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
_UNABLE_TO_GET_CRL = _lib.X509_V_ERR_UNABLE_TO_GET_CRL
_UNABLE_TO_DECRYPT_CRL_SIGNATURE = _lib.X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE
_CRL_SIGNATURE_FAILURE = _lib.X509_V_ERR_CRL_SIGNATURE_FAILURE
_CRL_NOT_YET_VALID = _lib.X509_V_ERR_CRL_NOT_YET_VALID
_CRL_HAS_EXPIRED = _lib.X509_V_ERR_CRL_HAS_EXPIRED
_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = _lib.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
_UNABLE_TO_VERIFY_LEAF_SIGNATURE = _lib.X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE
_CERT_REVOKED = _lib.X509_V_ERR_CERT_REVOKED
_UNABLE_TO_GET_CRL_ISSUER = _lib.X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER
_NOT_CHAINED = (_UNABLE_TO_GET_ISSUER_CERT, _UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
                _UNABLE_TO_VERIFY_LEAF_SIGNATURE)


def _drain_openssl_errors() -> str:
    reason = ""
    while (code := _lib.ERR_get_error()) != 0:
        text = _lib.ERR_reason_error_string(code)
        reason = _ffi.string(text).decode("ascii", "replace") if text != _ffi.NULL else ""
    return reason or "unparseable DER"


def _openssl_crl(der: bytes):
    """An X509_CRL parsed by OpenSSL's d2i (freed with the returned object).  ValueError
    with OpenSSL's reason when OpenSSL does not parse it."""
    bio = _lib.BIO_new_mem_buf(der, len(der))
    if bio == _ffi.NULL:
        raise MemoryError("BIO_new_mem_buf")
    try:
        crl = _lib.d2i_X509_CRL_bio(bio, _ffi.NULL)
    finally:
        _lib.BIO_free(bio)
    if crl == _ffi.NULL:
        raise ValueError(_drain_openssl_errors())
    return _ffi.gc(crl, _lib.X509_CRL_free)


def _store_add_crl(store: crypto.X509Store, crl) -> bool:
    """X509_STORE_add_crl of an X509_CRL from :func:`_openssl_crl` (pyOpenSSL's add_crl
    takes only what cryptography parses)."""
    return _lib.X509_STORE_add_crl(store._store, crl) == 1


def _verify_error_string(code: int) -> str:
    return _ffi.string(_lib.X509_verify_cert_error_string(code)).decode("ascii", "replace")


def _verify_at(conn: SSL.Connection, when: datetime.datetime) -> None:
    """OpenSSL verifies this connection's peer (validity of the chain and of the CRLs)
    at ``when`` (naive: UTC), not by its own clock: X509_VERIFY_PARAM_set_time on the
    connection's own parameters.  pyOpenSSL's public X509Store.set_time is per store, so
    per context, shared by every session of a tunnel, and cannot move a time once set
    (X509_STORE_set1_param copies a check time only into parameters without one)."""
    _lib.X509_VERIFY_PARAM_set_time(_lib.SSL_get0_param(conn._ssl),
                                    calendar.timegm(when.utctimetuple()))


def name_hash(name_der: bytes) -> int:
    """OpenSSL's hash of a DER X.509 name (X509_NAME_hash: the ``HASH`` of a capath
    file name ``HASH.N`` / ``HASH.rN``); ValueError when OpenSSL does not read it."""
    buf = _ffi.new("unsigned char[]", name_der)
    ptr = _ffi.new("unsigned char **", buf)
    name = _lib.d2i_X509_NAME(_ffi.NULL, ptr, len(name_der))
    if name == _ffi.NULL:
        raise ValueError(_drain_openssl_errors())
    try:
        return _lib.X509_NAME_hash(name) & 0xFFFFFFFF
    finally:
        _lib.X509_NAME_free(name)


def _set_groups(ctx: SSL.Context, groups: str) -> bool:
    """SSL_CTX_set1_groups_list (``tls-groups``; 2.6 calls it with OpenSSL 3).
    pyOpenSSL's only setter, set_tmp_ecdh, takes one elliptic curve, not a list, nor
    X25519; its bindings have the older name of the same call, SSL_CTX_set1_curves_list
    (OpenSSL: "synonyms", the same SSL_CTRL_SET_GROUPS_LIST)."""
    ok = _lib.SSL_CTX_set1_curves_list(ctx._context, groups.encode("ascii")) == 1
    while _lib.ERR_get_error() != 0:
        pass
    return ok


def _x509_name(cert: crypto.X509, *, issuer: bool = False) -> str:
    """A certificate's subject (or issuer) as OpenVPN prints it, read by OpenSSL: for
    certificates cryptography does not read (pyOpenSSL's get_subject is deprecated)."""
    name = (_lib.X509_get_issuer_name if issuer else _lib.X509_get_subject_name)(cert._x509)
    parts = []
    for i in range(_lib.X509_NAME_entry_count(name)):
        entry = _lib.X509_NAME_get_entry(name, i)
        short = _ffi.string(_lib.OBJ_nid2sn(_lib.OBJ_obj2nid(
            _lib.X509_NAME_ENTRY_get_object(entry)))).decode("ascii", "replace")
        data = _lib.X509_NAME_ENTRY_get_data(entry)
        value = _ffi.buffer(_lib.ASN1_STRING_get0_data(data), _lib.ASN1_STRING_length(data))
        parts.append(f"{short}={bytes(value).decode('utf-8', 'replace')}")
    return ", ".join(parts)


# -- settings and checks of the server certificate ------------------------------------

@dataclass(slots=True)
class TlsSettings:
    ca: bytes | None                     # None: capath alone, or PKI-less peer-fingerprint
    cert: bytes | None = None
    key: bytes | None = None
    extra_certs: bytes | None = None
    remote_cert_tls: str | None = None
    verify_x509_name: tuple[str, str] | None = None   # (name, type)
    tls_version_min: str | None = None
    tls_version_max: str | None = None
    tls_cipher: str | None = None        # OpenSSL names (config translates IANA names)
    tls_ciphersuites: str | None = None
    remote_cert_ku: tuple[int, ...] | str | None = None   # values, or "required"
    remote_cert_eku: str | None = None   # OpenSSL long name or dotted OID
    ns_cert_type: str | None = None      # "server" or "client"
    crl: bytes | None = None             # PEM CRLs (crl-verify)
    capath: str | None = None            # capath DIR, read by castore.read_capath into:
    capath_certs: tuple[bytes, ...] = ()     # DER CA certificates of capath
    capath_crls: tuple[bytes, ...] = ()      # DER CRLs of capath
    # peer-fingerprint (depth 0, SHA256) or verify-hash (depth 1, SHA1 or SHA256): the
    # certificate at that depth must have one of these digests (options.c, ssl_verify.c)
    verify_hash: tuple[bytes, ...] = ()
    verify_hash_depth: int = 0
    verify_hash_algo: str = "SHA256"
    crl_dir: str | None = None           # crl-verify DIR dir
    crl_dir_probe: Callable[[str], bool] = field(default=opens, repr=False)
    tls_groups: str | None = None
    tls_cert_profile: str | None = None

    @property
    def verify_hash_no_ca(self) -> bool:
        """2.6's PKI-less mode (options.c): peer-fingerprint and neither ca nor capath.
        OpenSSL's verdict on the chain is then ignored; the fingerprint decides."""
        return (self.ca is None and self.capath is None and bool(self.verify_hash)
                and self.verify_hash_depth == 0)


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
                             chain: Sequence[x509.Certificate] = (),
                             now: datetime.datetime | None = None) -> None:
    """OpenVPN's checks of a server certificate, offline: crl-verify through OpenSSL's
    verification of the chain (``chain``: the certificates the server sent after its own;
    ``now``: the time the chain and the CRLs must be valid at), then the checks of
    :func:`check_peer`.  A handshake makes the same checks in OpenSSL's verify callback."""
    if settings.crl is not None:
        check_crl(cert, list(chain), settings, now=now)
    check_peer(cert, settings)


def check_peer(cert: x509.Certificate, settings: TlsSettings) -> None:
    """What OpenVPN checks of the server's own certificate once OpenSSL has verified the
    chain (ssl_verify.c's verify_peer_cert): remote-cert-tls, remote-cert-ku/eku,
    ns-cert-type and verify-x509-name."""
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


def _who(cert: crypto.X509, depth: int) -> str:
    named = _describe_x509(cert)
    return (f"server certificate {named}" if depth == 0 else
            f"CA certificate {named} in the server's chain")


def certificate_digest(cert: crypto.X509, algo: str) -> bytes:
    """The SHA-256 or SHA-1 digest of a certificate's DER, as OpenSSL computes it."""
    return bytes.fromhex(cert.digest(algo.lower()).decode("ascii").replace(":", ""))


def check_fingerprint(cert: crypto.X509, depth: int, settings: TlsSettings) -> None:
    """peer-fingerprint / verify-hash (ssl_verify.c ``verify_cert``): at the depth the
    option names, the certificate's digest must be one of the profile's (compared in
    constant time, as 2.6 does).  The refusal quotes 2.6's words and names the
    certificate and its fingerprint."""
    if not settings.verify_hash or depth != settings.verify_hash_depth:
        return
    digest = certificate_digest(cert, settings.verify_hash_algo)
    if any(hmac.compare_digest(digest, pin) for pin in settings.verify_hash):
        return
    option = "peer-fingerprint" if settings.verify_hash_depth == 0 else \
        f"verify-hash {settings.verify_hash_algo}"
    raise SessionError("certificate", f"{_who(cert, depth)} does not match {option}: "
                       "--tls-verify/--peer-fingerprint certificate hash verification "
                       f"failed. (got certificate fingerprint: {format_fingerprint(digest)})")


def check_crl_dir(cert: crypto.X509, depth: int, settings: TlsSettings) -> None:
    """crl-verify DIR dir (ssl_verify.c ``verify_check_crl_dir``): a file in DIR named
    by the certificate's serial, in decimal, revokes it, at every depth of the chain."""
    if settings.crl_dir is None:
        return
    serial = str(cert.get_serial_number())
    path = os.path.join(settings.crl_dir, serial)
    if len(path) > CRL_DIR_PATH_MAX:
        raise SessionError("certificate", f"{_who(cert, depth)}: crl-verify dir: the "
                           f"path {path!r} is longer than the {CRL_DIR_PATH_MAX} "
                           "characters 2.6 allows (VERIFY CRL: filename overflow), so it "
                           "is refused, as the stock client refuses it")
    if settings.crl_dir_probe(path):
        raise SessionError("certificate", f"{_who(cert, depth)} (serial {serial}) is "
                           f"revoked: {path} exists (crl-verify {settings.crl_dir} dir)")


def verify_cert(cert: crypto.X509, depth: int, settings: TlsSettings) -> None:
    """What 2.6 checks of each certificate of the chain once OpenSSL has had its say
    (ssl_verify.c ``verify_cert``), in its order: the chain's depth, the fingerprint,
    the server's own certificate (:func:`check_peer`), the CRL directory."""
    if depth >= MAX_CERT_DEPTH:
        raise SessionError("certificate", "TLS Error: Convoluted certificate chain "
                           f"detected with depth [{depth}] greater than {MAX_CERT_DEPTH}")
    check_fingerprint(cert, depth, settings)
    if depth == 0:
        check_peer(cert.to_cryptography(), settings)
    check_crl_dir(cert, depth, settings)


# -- OpenSSL material, parsed by OpenSSL ------------------------------------------------

def _openssl_reason(exc: Exception) -> str:
    """The last reason in a pyOpenSSL error (its args are OpenSSL's error queue)."""
    queue = exc.args[0] if exc.args else None
    if isinstance(queue, list) and queue and isinstance(queue[-1], tuple):
        return str(queue[-1][-1])
    return str(exc) or type(exc).__name__


def _tls_error(exc: Exception) -> SessionError:
    """An OpenSSL error on the control channel, as the session reports it."""
    return SessionError("tls", f"TLS error: {_openssl_reason(exc)}")


def check_crl_der(der: bytes) -> None:
    """Raise ValueError (OpenSSL's reason) unless OpenSSL parses ``der`` as a CRL; what
    OpenSSL accepts, the stock client accepts, even when ``cryptography`` would not."""
    _openssl_crl(der)


def _pem_ders(data: bytes | None, labels: tuple[bytes, ...]) -> list[bytes]:
    if not data:
        return []
    try:
        return [b.der for b in pem_blocks(data) if b.label in labels]
    except PemError:
        return []          # the profile reader reports damaged PEM, with its line


def _certificates(data: bytes | None, option: str) -> list[crypto.X509]:
    out = []
    for der in _pem_ders(data, CERT_LABELS):
        try:
            out.append(crypto.load_certificate(crypto.FILETYPE_ASN1, der))
        except crypto.Error as exc:
            raise ConfigError(f"cannot load a certificate: {_openssl_reason(exc)}",
                              option=option) from None
    return out


def _fill_store(store: crypto.X509Store, settings: TlsSettings) -> None:
    """The CA certificates, capath's certificates and CRLs and (with crl-verify) the
    CRLs, as OpenVPN loads them."""
    cas = _certificates(settings.ca, "ca")
    if not cas and settings.ca is not None:
        raise ConfigError("cannot load the CA certificate: no PEM certificate found",
                          option="ca")
    if settings.ca is None and settings.capath is None and not settings.verify_hash_no_ca:
        raise ConfigError("You must define CA file (--ca) or CA path (--capath) and/or "
                          "peer fingerprint verification (--peer-fingerprint)", option="ca")
    for ca in cas:
        store.add_cert(ca)
    for der in settings.capath_certs:
        try:
            store.add_cert(crypto.load_certificate(crypto.FILETYPE_ASN1, der))
        except crypto.Error as exc:
            raise ConfigError(f"cannot load a certificate: {_openssl_reason(exc)}",
                              option="capath") from None
    for der in settings.capath_crls:
        try:
            crl = _openssl_crl(der)
        except ValueError as exc:
            raise ConfigError(f"a CRL that does not parse ({exc})", option="capath") from None
        _store_add_crl(store, crl)
    if settings.capath is not None:
        # ssl_openssl.c tls_ctx_load_ca: the hashed-directory lookup comes with these
        store.set_flags(crypto.X509StoreFlags.CRL_CHECK | crypto.X509StoreFlags.CRL_CHECK_ALL)
    if settings.crl is None:
        return
    crls = _pem_ders(settings.crl, (b"X509 CRL",))
    if not crls:
        raise ConfigError("no PEM CRL (-----BEGIN X509 CRL-----) found", option="crl-verify")
    for der in crls:
        try:
            crl = _openssl_crl(der)
        except ValueError as exc:
            raise ConfigError(f"a CRL that does not parse ({exc})",
                              option="crl-verify") from None
        # pyOpenSSL's add_crl takes only what cryptography parses: add OpenSSL's own
        if not _store_add_crl(store, crl):
            raise ConfigError(f"cannot add a CRL to the store ({_drain_openssl_errors()})",
                              option="crl-verify")
    store.set_flags(crypto.X509StoreFlags.CRL_CHECK | crypto.X509StoreFlags.CRL_CHECK_ALL)


def _crl_next_update(settings: TlsSettings, cert: crypto.X509) -> datetime.datetime | None:
    """For a refusal's text only: when the CRL of the certificate's issuer expired, if
    cryptography can read both (OpenSSL decided that it had)."""
    try:
        issuer = cert.to_cryptography().issuer
    except Exception:
        return None
    for der in _pem_ders(settings.crl, (b"X509 CRL",)):
        try:
            crl = x509.load_der_x509_crl(der)
            if crl.issuer == issuer:
                return crl.next_update_utc
        except (ValueError, x509.InvalidVersion):
            continue
    return None


def chain_refusal(code: int, text: str, cert: crypto.X509, depth: int,
                  settings: TlsSettings) -> SessionError:
    """OpenSSL's verdict on one certificate of the chain (X509_V_ERR_* ``code`` at
    ``depth``), as a refusal naming that certificate (read by OpenSSL: cryptography may
    not read it)."""
    named = _describe_x509(cert)
    who = (f"server certificate {named}" if depth == 0 else
           f"CA certificate {named} in the server's chain")
    if code == _CERT_REVOKED:
        source = "crl-verify" if settings.crl is not None else "capath"
        why = (f"{who} (serial {cert.get_serial_number():X}) is revoked by the CRL "
               f"({source})")
    elif code == _UNABLE_TO_GET_CRL:
        why = (f"{who}: crl-verify has no CRL from its issuer, so it cannot be checked: "
               "refused (the stock client accepts it unchecked); add the issuer's CRL to "
               "the crl-verify file")
    elif code in (_CRL_SIGNATURE_FAILURE, _UNABLE_TO_DECRYPT_CRL_SIGNATURE,
                  _UNABLE_TO_GET_CRL_ISSUER):
        why = f"{who}: the CRL of its issuer is not signed by that issuer"
    elif code == _CRL_NOT_YET_VALID:
        why = f"{who}: the CRL of its issuer is not valid yet"
    elif code == _CRL_HAS_EXPIRED:
        when = _crl_next_update(settings, cert)
        why = f"{who}: the CRL of its issuer expired" + (
            f" on {when:%Y-%m-%d %H:%M} UTC" if when else "")
    elif code in _NOT_CHAINED:
        why = f"{who} rejected: {text} (it does not chain to the profile's CA)"
    else:
        why = f"{who} rejected: {text}"
    return SessionError("certificate", why)


def check_crl(leaf: x509.Certificate, chain: list[x509.Certificate],
              settings: TlsSettings, *, now: datetime.datetime | None = None) -> None:
    """crl-verify offline: OpenSSL verifies ``leaf`` (with the untrusted ``chain``) against
    the CA and the CRLs, with the flags of a handshake; a refusal names the certificate
    OpenSSL refused."""
    store = crypto.X509Store()
    if now is not None:
        store.set_time(now)            # first: it replaces the store's parameters
    _fill_store(store, settings)
    ctx = crypto.X509StoreContext(store, crypto.X509.from_cryptography(leaf),
                                  [crypto.X509.from_cryptography(c) for c in chain])
    try:
        ctx.verify_certificate()
    except crypto.X509StoreContextError as exc:
        code, depth, text = exc.errors
        raise chain_refusal(code, text, exc.certificate, depth, settings) from None


# -- the context every session of a profile shares ----------------------------------------

class TlsContext:
    """One ``SSL_CTX`` for a profile: trust store (CA, CRLs and flags), client certificate,
    extra certificates and key from memory, versions and ciphers.  Building it raises
    ConfigError naming the option at fault; sessions made from it (:class:`TlsClient`)
    are cheap."""

    def __init__(self, settings: TlsSettings):
        self.settings = settings
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        # as the stock client: no compression, no tickets, no TLS renegotiation (OpenVPN
        # renegotiates with a new TLS session per key id)
        ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_TICKET
                        | getattr(SSL, "OP_NO_RENEGOTIATION", 0))
        ctx.set_verify(SSL.VERIFY_PEER, _verify_callback)
        _fill_store(ctx.get_cert_store(), settings)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        if settings.tls_version_min:
            version = settings.tls_version_min.split()[0]
            if version not in _TLS_VERSIONS:
                raise ConfigError(f"unknown TLS version {version!r}",
                                  option="tls-version-min")
            ctx.set_min_proto_version(_TLS_VERSIONS[version])
        if settings.tls_version_max:
            if settings.tls_version_max not in _TLS_VERSIONS:
                raise ConfigError(f"unknown TLS version {settings.tls_version_max!r}",
                                  option="tls-version-max")
            ctx.set_max_proto_version(_TLS_VERSIONS[settings.tls_version_max])
        try:
            ctx.set_cipher_list(_cipher_list(settings).encode())
        except SSL.Error:
            raise ConfigError(f"no usable cipher in {settings.tls_cipher!r}",
                              option="tls-cipher") from None
        if settings.tls_groups:
            check_tls_groups(settings.tls_groups, ctx)
        if settings.tls_ciphersuites:
            try:
                ctx.set_tls13_ciphersuites(settings.tls_ciphersuites.encode())
            except SSL.Error:
                raise ConfigError(f"no usable TLS 1.3 ciphersuite in "
                                  f"{settings.tls_ciphersuites!r}",
                                  option="tls-ciphersuites") from None
        if settings.cert or settings.key:
            self._use_client_certificate(ctx, settings)
        self.ssl_context = ctx

    @staticmethod
    def _use_client_certificate(ctx: SSL.Context, settings: TlsSettings) -> None:
        if not (settings.cert and settings.key):
            raise ConfigError("a client certificate needs its key (and the key its "
                              "certificate)", option="cert" if not settings.cert else "key")
        certs = _certificates(settings.cert, "cert")
        extra = _certificates(settings.extra_certs, "extra-certs")
        keys = _pem_ders(settings.key, KEY_LABELS)
        if not certs or not keys:
            raise ConfigError("cannot load the client certificate and key: no PEM "
                              f"{'certificate' if not certs else 'private key'} found",
                              option="cert" if not certs else "key")
        try:
            key = serialization.load_der_private_key(keys[0], password=None)
        except TypeError:
            raise ConfigError("cannot load the client certificate and key: the private "
                              "key is still locked by its passphrase", option="key") from None
        except (ValueError, crypto.Error) as exc:
            raise ConfigError(f"cannot load the client certificate and key: {exc}",
                              option="key") from None
        try:
            ctx.use_certificate(certs[0].to_cryptography())
            ctx.use_privatekey(key)
            ctx.check_privatekey()
            for chain_cert in certs[1:] + extra:
                ctx.add_extra_chain_cert(chain_cert.to_cryptography())
        except (SSL.Error, TypeError, ValueError) as exc:
            reason = (_openssl_reason(exc) if isinstance(exc, SSL.Error) else str(exc))
            raise ConfigError(f"cannot load the client certificate and key: {reason}",
                              option="cert") from None


def _cipher_list(settings: TlsSettings) -> str:
    """The tls-cipher (or default) list with tls-cert-profile's security level, as 2.6
    sets them (the level first, then the list: a ``@SECLEVEL`` in tls-cipher wins)."""
    profile = settings.tls_cert_profile or "legacy"
    if profile not in CERT_PROFILE_LEVELS:
        raise ConfigError(f"ERROR: Invalid cert profile: {profile}",
                          option="tls-cert-profile")
    ciphers = settings.tls_cipher or DEFAULT_TLS_CIPHERS
    if "@SECLEVEL" in ciphers.upper():
        return ciphers
    return f"{ciphers}:@SECLEVEL={CERT_PROFILE_LEVELS[profile]}"


def check_tls_groups(groups: str, ctx: SSL.Context | None = None) -> None:
    """Set ``tls-groups`` on ``ctx`` (a scratch context without one), or ConfigError
    naming the group OpenSSL does not know (2.6: "Failed to set allowed TLS group list")."""
    if _set_groups(ctx or SSL.Context(SSL.TLS_CLIENT_METHOD), groups):
        return
    scratch = SSL.Context(SSL.TLS_CLIENT_METHOD)
    for token in (t.strip().lstrip("*?") for t in groups.replace("/", ":").split(":")):
        if token and not _set_groups(scratch, token):
            raise ConfigError(f"unknown TLS group {token!r} (OpenSSL knows names such as "
                              "X25519, secp256r1, secp384r1, ffdhe2048)", option="tls-groups")
    raise ConfigError(f"Failed to set allowed TLS group list: {groups}", option="tls-groups")


def _verify_callback(conn: SSL.Connection, cert: crypto.X509, code: int, depth: int,
                     ok: int) -> bool:
    ref = conn.get_app_data()
    client = ref() if ref is not None else None
    if client is None:
        return False                   # no session to check for: refuse, never pass
    return client._verify(cert, code, depth, bool(ok))


def _describe_x509(cert: crypto.X509) -> str:
    """:func:`describe` for a certificate cryptography may not read."""
    try:
        return f"'{_x509_name(cert)}' (issued by '{_x509_name(cert, issuer=True)}')"
    except Exception:          # a name OpenSSL itself cannot give: still a refusal
        return "(with an unreadable name)"


# -- one TLS session ------------------------------------------------------------------

class TlsClient:
    """The client side of one TLS session (one key id) over memory BIOs."""

    def __init__(self, settings: TlsSettings, context: TlsContext | None = None, *,
                 now: datetime.datetime | None = None):
        """``context``: the tunnel's (shared by every key id); without one, a context of
        its own is built from ``settings``.  ``now``: the time the server's certificates
        (and the CRLs) must be valid at; None: OpenSSL's clock when it verifies."""
        self.settings = settings
        self.context = context if context is not None else TlsContext(settings)
        self._conn = SSL.Connection(self.context.ssl_context, None)
        if now is not None:
            _verify_at(self._conn, now)
        self._conn.set_app_data(weakref.ref(self))     # no cycle through OpenSSL
        self._conn.set_connect_state()
        self._refusal: ErebusError | None = None     # why the verify callback said no
        self.established = False
        self.peer_certificate: x509.Certificate | None = None
        self.version: str | None = None
        self.cipher: str | None = None

    def _verify(self, cert: crypto.X509, code: int, depth: int, ok: bool) -> bool:
        """OpenSSL's verify callback for this session: the first refusal is kept, named
        after the certificate at fault, and ends the handshake.  It never raises (pyOpenSSL
        would re-raise from do_handshake): a certificate OpenSSL reads but cryptography
        does not (version 2, a duplicate extension, an unsupported name type...) is a
        refusal too."""
        if self._refusal is not None:
            return False
        s = self.settings
        try:
            if not ok and not s.verify_hash_no_ca:
                if code == _UNABLE_TO_GET_CRL and s.crl is None:
                    # only capath's flags asked for CRLs: 2.6 logs and ignores a missing
                    # one ("VERIFY WARNING", ssl_verify_openssl.c verify_callback)
                    return True
                self._refusal = chain_refusal(code, _verify_error_string(code), cert, depth,
                                              s)
                return False
            # PKI-less (verify_hash_no_ca): OpenSSL's complaint (a self-signed
            # certificate, no issuer) is ignored as 2.6 ignores it; the checks decide
            verify_cert(cert, depth, s)
        except ErebusError as exc:
            self._refusal = exc
            return False
        except Exception as exc:       # a certificate OpenSSL reads and cryptography not
            who = "server certificate" if depth == 0 else "CA certificate"
            where = "" if depth == 0 else " in the server's chain"
            self._refusal = SessionError(
                "certificate", f"{who} {_describe_x509(cert)}{where} cannot be checked: "
                f"{short_reason(exc)}")
            return False
        return True

    def feed(self, data: bytes) -> None:
        try:
            self._conn.bio_write(data)
        except SSL.Error as exc:
            raise _tls_error(exc) from None

    def take_output(self) -> bytes:
        out = []
        while True:
            try:
                chunk = self._conn.bio_read(_BIO_CHUNK)
            except SSL.WantReadError:
                break
            except SSL.Error as exc:
                raise _tls_error(exc) from None
            if not chunk:
                break
            out.append(chunk)
        return b"".join(out)

    def handshake(self) -> bool:
        """Advance the handshake; True once it is complete and the server checked."""
        if self.established:
            return True
        try:
            self._conn.do_handshake()
        except SSL.WantReadError:
            return False
        except SSL.Error as exc:
            if self._refusal is not None:
                raise self._refusal from None
            reason = _openssl_reason(exc)
            hint = ""
            if self.settings.tls_groups and "handshake failure" in reason:
                hint = (f" (the profile's tls-groups {self.settings.tls_groups} may share "
                        "no group with the server)")
            raise SessionError("tls", f"TLS handshake failed: {reason}{hint}") from None
        if self._refusal is not None:        # never: a refusal fails the handshake
            raise self._refusal
        cert = self._conn.get_peer_certificate(as_cryptography=True)
        if cert is None:
            raise SessionError("certificate", "the server sent no certificate")
        self.peer_certificate = cert
        self.version = self._conn.get_protocol_version_name()
        self.cipher = self._conn.get_cipher_name()
        self.established = True
        return True

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = self._conn.send(view)
            except SSL.Error as exc:
                raise _tls_error(exc) from None
            view = view[sent:]

    def read_records(self) -> list[bytes]:
        """Application data now readable; each item is (at most) one TLS record."""
        out = []
        while True:
            try:
                chunk = self._conn.recv(_BIO_CHUNK)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                raise SessionError("tls", "the server closed the TLS session") from None
            except SSL.Error as exc:
                raise _tls_error(exc) from None
            if not chunk:
                break
            out.append(chunk)
        return out

    def export_keying_material(self, label: str, length: int,
                               context: bytes | None = None) -> bytes:
        """RFC 5705 keying material of this session (OpenVPN's key derivation with
        ``EXPORTER-OpenVPN-datakeys``, 2.6's key-derivation tls-ekm)."""
        if not self.established:
            raise SessionError("tls", "no keying material before the TLS handshake ends")
        try:
            return self._conn.export_keying_material(label.encode("ascii"), length, context)
        except SSL.Error as exc:
            raise SessionError("tls", f"TLS keying material export failed: "
                               f"{_openssl_reason(exc)}") from None
