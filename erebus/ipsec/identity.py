"""IKE identities from swanctl.conf's text, as charon makes them (RFC 7296 section 3.5).

``local.id`` / ``remote.id`` are written the way strongSwan's
``identification_create_from_string`` reads them: an address (ID_IPV4_ADDR /
ID_IPV6_ADDR), ``user@domain`` (ID_RFC822_ADDR), ``@fqdn`` or a bare name (ID_FQDN),
``@#hex`` (ID_KEY_ID) -- :meth:`erebus.wire.ike.IDi.from_value` -- or a distinguished
name such as ``C=CH, O=strongSwan, CN=moon`` (ID_DER_ASN1_DN), which this module
encodes to DER exactly as strongSwan's ``atodn`` does: the RDNs in the order written
(``,`` separates them, or ``/`` when the text starts with one), each value a
PrintableString when it can be one, else a UTF8String (email and unstructuredName:
IA5String).

Without ``local.id`` charon takes the subject of the certificate it authenticates
with (vici_config.c: "id not specified, defaulting to cert subject"): that is
:func:`certificate_identity`, the subject's DER as it stands in the certificate.
"""

from __future__ import annotations

import re

from ..wire import der
from ..wire import ike as w

__all__ = ["identity", "certificate_identity", "dn_to_der", "same_identity"]

# strongSwan's x501rdns table (src/libstrongswan/utils/identification.c): keyword
# (case-insensitive) -> (OID, the string type a printable value gets).
_PRINTABLE, _UTF8, _IA5 = 0x13, 0x0C, 0x16
_RDNS = {
    "nd": "2.5.4.54", "uid": "0.9.2342.19200300.100.1.1",
    "dc": "0.9.2342.19200300.100.1.25", "cn": "2.5.4.3", "sn": "2.5.4.4",
    "serialnumber": "2.5.4.5", "c": "2.5.4.6", "l": "2.5.4.7", "st": "2.5.4.8",
    "street": "2.5.4.9", "o": "2.5.4.10", "ou": "2.5.4.11",
    "organizationidentifier": "2.5.4.97", "t": "2.5.4.12", "d": "2.5.4.13",
    "postaladdress": "2.5.4.16", "postalcode": "2.5.4.17", "n": "2.5.4.41",
    "g": "2.5.4.42", "i": "2.5.4.43", "dnqualifier": "2.5.4.46", "dmdname": "2.5.4.54",
    "pseudonym": "2.5.4.65", "id": "2.5.4.45", "en": "2.16.840.1.113730.3.1.3",
    "employeenumber": "2.16.840.1.113730.3.1.3", "e": "1.2.840.113549.1.9.1",
    "email": "1.2.840.113549.1.9.1", "emailaddress": "1.2.840.113549.1.9.1",
    "un": "1.2.840.113549.1.9.2", "unstructuredname": "1.2.840.113549.1.9.2",
    "ua": "1.2.840.113549.1.9.8", "unstructuredaddress": "1.2.840.113549.1.9.8",
    "tcgid": "2.23.133.2.1",
}
_IA5_OIDS = {"1.2.840.113549.1.9.1", "1.2.840.113549.1.9.2"}
_PRINTABLE_CHARS = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]*")


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def _oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.append(0x80 | (arc & 0x7F))
        out += bytes(reversed(chunk))
    return _der(0x06, bytes(out))


def dn_to_der(text: str) -> bytes | None:
    """The DER of the distinguished name *text* (strongSwan's syntax), or None when it
    is not one (no ``=``, or a keyword strongSwan does not know)."""
    text = text.strip()
    if "=" not in text:
        return None
    parts = text[1:].split("/") if text.startswith("/") else text.split(",")
    rdns = []
    for part in parts:
        if not part.strip():
            continue
        key, eq, value = part.partition("=")
        oid = _RDNS.get(key.strip().lower())
        if not eq or oid is None:
            return None
        value = value.lstrip(" =").rstrip(" ")
        if oid in _IA5_OIDS:
            tag = _IA5
        elif _PRINTABLE_CHARS.fullmatch(value):
            tag = _PRINTABLE
        else:
            tag = _UTF8
        rdns.append(_der(0x31, _der(0x30, _oid(oid) + _der(tag, value.encode("utf-8")))))
    if not rdns:
        return None
    return _der(0x30, b"".join(rdns))


# identification_create_from_string's type prefixes ("fqdn:host", "keyid:#0a0b").
_PREFIXES = {"ipv4": w.ID_IPV4_ADDR, "ipv6": w.ID_IPV6_ADDR, "rfc822": w.ID_RFC822_ADDR,
             "email": w.ID_RFC822_ADDR, "userfqdn": w.ID_RFC822_ADDR, "fqdn": w.ID_FQDN,
             "dns": w.ID_FQDN, "asn1dn": w.ID_DER_ASN1_DN, "asn1gn": w.ID_DER_ASN1_GN,
             "keyid": w.ID_KEY_ID}


def identity(text: str, cls=w.IDi):
    """*text* (a local.id / remote.id value) as an identification payload of *cls*,
    typed as charon types it.  ValueError for a ``prefix:#hex`` that is not hex."""
    prefix, colon, rest = text.partition(":")
    if colon and prefix.lower() in _PREFIXES:       # as-is (no conversion), or #hex
        data = bytes.fromhex(rest[1:]) if rest.startswith("#") else rest.encode("utf-8")
        return cls(_PREFIXES[prefix.lower()], data)
    if "=" in text:
        encoded = dn_to_der(text)
        if encoded is not None:
            return cls(w.ID_DER_ASN1_DN, encoded)
        return cls(w.ID_KEY_ID, text.encode("utf-8"))   # charon's fallback, too
    return cls.from_value(text)


def certificate_identity(cert, cls=w.IDi):
    """The identity charon uses without local.id: the certificate's subject DN (the
    DER of the subject as the certificate holds it)."""
    return cls(w.ID_DER_ASN1_DN, cert.subject.public_bytes())


def _tlvs(data: bytes):
    """(tag, content) of each DER element in *data*; ParseError when it does not parse."""
    pos = 0
    while pos < len(data):
        tag, content, pos = der.tlv(data, pos)
        yield tag, content


def _rdns(name: bytes) -> list[tuple[bytes, bytes]]:
    """(OID, value) of every attribute of a DER Name, in order (string types dropped);
    ValueError (ParseError is one) when it is not a Name."""
    ((tag, body),) = _tlvs(name)
    if tag != 0x30:
        raise ValueError("not a SEQUENCE")
    out = []
    for set_tag, rdn in _tlvs(body):
        for seq_tag, atv in _tlvs(rdn):
            parts = list(_tlvs(atv))
            if set_tag != 0x31 or seq_tag != 0x30 or len(parts) != 2 or parts[0][0] != 0x06:
                raise ValueError("not an AttributeTypeAndValue")
            out.append((parts[0][1], parts[1][1].lower()))
    return out


def same_identity(a, b) -> bool:
    """Whether two identification payloads name the same identity: equal type and data,
    or for distinguished names the same attributes in the same order whatever their
    string types, values compared case-insensitively (charon's compare_dn)."""
    if a.id_type != b.id_type:
        return False
    if a.data == b.data:
        return True
    if a.id_type != w.ID_DER_ASN1_DN:
        return False
    try:
        return _rdns(a.data) == _rdns(b.data)
    except ValueError:
        return False
