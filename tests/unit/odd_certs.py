"""Server certificates that OpenSSL reads and cryptography does not: version 2, a
duplicated extension, a subjectAltName with an EDIPartyName.  Made by editing a
certificate's TBSCertificate bytes and signing them again (ECDSA P-256, SHA-256)."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, ObjectIdentifier

from tests.profiles import pki as P

_OID_A = ObjectIdentifier("1.3.6.1.4.1.55555.1")
_OID_B = ObjectIdentifier("1.3.6.1.4.1.55555.2")
# SEQUENCE { [5] EDIPartyName { partyName [1] UTF8String "abc" } }
_EDI_SAN = bytes.fromhex("3009a507a1050c03616263")


def _tlv(buf: bytes, pos: int) -> tuple[int, int]:
    """(content start, end) of the DER element at ``pos``."""
    n, pos = buf[pos + 1], pos + 2
    if n & 0x80:
        k = n & 0x7F
        n, pos = int.from_bytes(buf[pos:pos + k], "big"), pos + k
    return pos, pos + n


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + content


def _resign(cert: x509.Certificate, issuer_key, edit) -> bytes:
    der = cert.public_bytes(serialization.Encoding.DER)
    start, _ = _tlv(der, 0)
    _, tbs_end = _tlv(der, start)
    tbs = edit(der[start:tbs_end])
    _, alg_end = _tlv(der, tbs_end)
    signature = issuer_key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    return _der(0x30, tbs + der[tbs_end:alg_end] + _der(0x03, b"\0" + signature))


def _version_2(tbs: bytes) -> bytes:
    v3 = bytes.fromhex("a003020102")           # [0] EXPLICIT INTEGER 2 (v3)
    i = tbs.index(v3)
    return tbs[:i] + bytes.fromhex("a003020101") + tbs[i + len(v3):]


def _second_oid_as_first(tbs: bytes) -> bytes:
    tail_b = bytes.fromhex("83b20302")          # ...55555.2 encoded (55555: 83 b2 03)
    i = tbs.rindex(tail_b)
    return tbs[:i] + bytes.fromhex("83b20301") + tbs[i + len(tail_b):]


def odd_server(kind: str, ca_key, ca) -> tuple[object, bytes, str]:
    """(key, DER certificate, CN) of a server certificate issued by ``ca``; ``kind``:
    "version-2", "duplicate-extension" or "edi-party-name"."""
    if kind == "version-2":
        key, cert = P.make_cert(ca_key, ca, "v2-server")
        return key, _resign(cert, ca_key, _version_2), "v2-server"
    if kind == "duplicate-extension":
        key, cert = P.make_cert(ca_key, ca, "dup-server", extra_extensions=[
            (x509.UnrecognizedExtension(_OID_A, b"\x05\x00"), False),
            (x509.UnrecognizedExtension(_OID_B, b"\x05\x00"), False)])
        return key, _resign(cert, ca_key, _second_oid_as_first), "dup-server"
    if kind == "edi-party-name":
        key, cert = P.make_cert(ca_key, ca, "edi-server", extra_extensions=[
            (x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, _EDI_SAN),
             False)])
        return key, cert.public_bytes(serialization.Encoding.DER), "edi-server"
    raise ValueError(kind)


KINDS = ("version-2", "duplicate-extension", "edi-party-name")
CRYPTOGRAPHY_SAYS = {"version-2": "1 is not a valid X509 version",
                     "duplicate-extension": "Duplicate 1.3.6.1.4.1.55555.1 extension found",
                     "edi-party-name": "x400Address/EDIPartyName are not supported types"}
