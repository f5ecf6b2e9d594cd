"""IKEv2 messages (RFC 7296): sans-IO parse and build.

A message is a fixed 28-byte header and a chain of payloads::

    0   SPIi (8)            the original initiator's IKE SPI
    8   SPIr (8)            the responder's (zero in the first IKE_SA_INIT request)
    16  next payload (1)    type of the first payload
    17  version (1)         0x20: major 2, minor 0
    18  exchange type (1)   IKE_SA_INIT 34, IKE_AUTH 35, CREATE_CHILD_SA 36, INFORMATIONAL 37
    19  flags (1)           Initiator 0x08 (sent by the original initiator), Response 0x20
    20  message id (4)
    24  length (4)          of the whole message, header included
    28  payloads

Every payload starts with the generic payload header (section 3.2)::

    next payload (1) | C (1 bit) + reserved (7) | payload length (2, header included)

and its body follows; the "next payload" field names the type of the payload that
comes after it (0 ends the chain).  Bodies, as parsed into the dataclasses below:

=========  ==  ====================================================================
SA         33  proposals (3.3): last(1)=0|2 res(1) len(2) number(1) protocol(1)
               spi_size(1) n_transforms(1) spi, then transforms: last(1)=0|3 res(1)
               len(2) type(1) res(1) id(2) attributes; an attribute is AF|type(2) then
               value(2) when AF is set (TV: the key length, type 14) or length(2)+value
KE         34  group(2) reserved(2) key exchange data
IDi/IDr    35  id type(1) reserved(3) data            (36 for IDr)
CERT       37  encoding(1) data
CERTREQ    38  encoding(1) certification authority (SHA-1 hashes of the CA keys)
AUTH       39  method(1) reserved(3) data; method 14 (RFC 7427): ASN.1 length(1)
               AlgorithmIdentifier signature
Nonce      40  16 to 256 bytes
N          41  protocol(1) spi_size(1) type(2) spi data
D          42  protocol(1) spi_size(1) n_spis(2) spis
V          43  vendor id
TSi/TSr    44  n_ts(1) reserved(3) selectors: type(1) protocol(1) len(2) start port(2)
               end port(2) start address end address     (45 for TSr)
SK         46  IV | ciphertext (inner payloads | padding | pad length) | ICV
CP         47  cfg type(1) reserved(3) attributes: R|type(2) length(2) value
EAP        48  the EAP message, kept whole
SKF        53  fragment number(2) total fragments(2) IV | ciphertext | ICV (RFC 7383)
=========  ==  ====================================================================

SK and SKF are always last: their "next payload" field is the type of the first
*inner* payload (zero in SKF fragments after the first), which stays encrypted in
:attr:`SK.data` until :mod:`erebus.ipsec.ikecrypto` decrypts it; the caller then
parses the plaintext chain with :func:`parse_payloads` ``(first_type, plaintext)``.

Unknown payload types are kept as :class:`UnknownPayload` with their critical bit;
the state machine must reject a message carrying one with the bit set
(UNSUPPORTED_CRITICAL_PAYLOAD, section 2.5).  Everything is bounds checked: malformed
input raises :class:`erebus.errors.ParseError` and nothing else.  Building checks
the caller's values and raises ValueError.  Layouts follow RFC 7296 section 3,
RFC 7383 (SKF), RFC 7427 (AUTH method 14) and strongSwan's ``encoding/payloads``.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import ClassVar, Union

from ..errors import ParseError

__all__ = [
    "HEADER_LEN", "IKE_VERSION", "IkeHeader", "IkeMessage",
    "parse_header", "build_header", "parse_message", "build_message",
    "parse_payloads", "build_payloads", "payload_name", "exchange_name", "notify_name",
    "Attribute", "Transform", "Proposal", "SA", "KE", "IDi", "IDr", "CERT", "CERTREQ",
    "AUTH", "Nonce", "Notify", "Delete", "VendorID", "TrafficSelector", "TSi", "TSr",
    "SK", "ConfigAttribute", "ConfigReply", "parse_config_reply", "CP", "EAP", "SKF",
    "UnknownPayload", "Payload",
    "split_digital_signature", "join_digital_signature",
    "build_hash_algorithms", "parse_hash_algorithms", "parse_u16_notify",
]

HEADER_LEN = 28
IKE_VERSION = 0x20
HEADER = struct.Struct("!8s8sBBBBII")
GENERIC = struct.Struct("!BBH")
_SUBSTRUCT = struct.Struct("!BBHBBBB")     # proposal: last res len num proto spi_size n
_TRANSFORM = struct.Struct("!BBHBBH")      # last res len type res id
_U16 = struct.Struct("!H")
_U16x2 = struct.Struct("!HH")
_TYPE_RES3 = struct.Struct("!B3x")
_NOTIFY = struct.Struct("!BBH")
_DELETE = struct.Struct("!BBH")
_TS = struct.Struct("!BBHHH")            # type protocol length start_port end_port
_TS_HEAD = struct.Struct("!BBH")

# -- exchange types and flags (section 3.1) ---------------------------------------------

IKE_SA_INIT = 34
IKE_AUTH = 35
CREATE_CHILD_SA = 36
INFORMATIONAL = 37
IKE_INTERMEDIATE = 43     # RFC 9242

EXCHANGE_NAMES = {IKE_SA_INIT: "IKE_SA_INIT", IKE_AUTH: "IKE_AUTH",
                  CREATE_CHILD_SA: "CREATE_CHILD_SA", INFORMATIONAL: "INFORMATIONAL",
                  IKE_INTERMEDIATE: "IKE_INTERMEDIATE"}

FLAG_INITIATOR = 0x08
FLAG_VERSION = 0x10
FLAG_RESPONSE = 0x20

# -- payload types (section 3.2; RFC 7383) ----------------------------------------------

PT_NONE = 0
PT_SA = 33
PT_KE = 34
PT_IDI = 35
PT_IDR = 36
PT_CERT = 37
PT_CERTREQ = 38
PT_AUTH = 39
PT_NONCE = 40
PT_NOTIFY = 41
PT_DELETE = 42
PT_VENDOR = 43
PT_TSI = 44
PT_TSR = 45
PT_SK = 46
PT_CP = 47
PT_EAP = 48
PT_SKF = 53

PAYLOAD_NAMES = {PT_SA: "SA", PT_KE: "KE", PT_IDI: "IDi", PT_IDR: "IDr", PT_CERT: "CERT",
                 PT_CERTREQ: "CERTREQ", PT_AUTH: "AUTH", PT_NONCE: "Nonce", PT_NOTIFY: "N",
                 PT_DELETE: "D", PT_VENDOR: "V", PT_TSI: "TSi", PT_TSR: "TSr", PT_SK: "SK",
                 PT_CP: "CP", PT_EAP: "EAP", PT_SKF: "SKF"}

# -- SA payload: protocols, transform types and ids (section 3.3, IANA) ------------------

PROTO_IKE = 1
PROTO_AH = 2
PROTO_ESP = 3

TRANSFORM_ENCR = 1
TRANSFORM_PRF = 2
TRANSFORM_INTEG = 3
TRANSFORM_DH = 4          # "Key Exchange Method" since RFC 9370
TRANSFORM_ESN = 5

ENCR_3DES = 3
ENCR_NULL = 11
ENCR_AES_CBC = 12
ENCR_AES_CTR = 13
ENCR_AES_CCM_8 = 14
ENCR_AES_CCM_12 = 15
ENCR_AES_CCM_16 = 16
ENCR_AES_GCM_8 = 18
ENCR_AES_GCM_12 = 19
ENCR_AES_GCM_16 = 20
ENCR_CHACHA20_POLY1305 = 28

PRF_HMAC_SHA1 = 2
PRF_AES128_XCBC = 4
PRF_HMAC_SHA2_256 = 5
PRF_HMAC_SHA2_384 = 6
PRF_HMAC_SHA2_512 = 7

INTEG_NONE = 0
INTEG_HMAC_SHA1_96 = 2
INTEG_AES_XCBC_96 = 5
INTEG_HMAC_SHA2_256_128 = 12
INTEG_HMAC_SHA2_384_192 = 13
INTEG_HMAC_SHA2_512_256 = 14

DH_NONE = 0
DH_MODP_2048 = 14
DH_MODP_3072 = 15
DH_MODP_4096 = 16
DH_ECP_256 = 19
DH_ECP_384 = 20
DH_ECP_521 = 21
DH_CURVE25519 = 31
DH_CURVE448 = 32

ESN_NO = 0
ESN_YES = 1

ATTR_KEY_LENGTH = 14

# -- ID, CERT, AUTH (sections 3.5 to 3.8; RFC 7427) -------------------------------------

ID_IPV4_ADDR = 1
ID_FQDN = 2
ID_RFC822_ADDR = 3
ID_IPV6_ADDR = 5
ID_DER_ASN1_DN = 9
ID_DER_ASN1_GN = 10
ID_KEY_ID = 11

CERT_X509_SIGNATURE = 4
CERT_HASH_URL_X509 = 12

AUTH_RSA_SIG = 1
AUTH_PSK = 2               # "Shared Key Message Integrity Code"
AUTH_DSS_SIG = 3
AUTH_ECDSA_256 = 9         # RFC 4754: P-256 with SHA-256, r | s
AUTH_ECDSA_384 = 10
AUTH_ECDSA_521 = 11
AUTH_NULL = 13             # RFC 7619
AUTH_DIGITAL_SIGNATURE = 14  # RFC 7427

HASH_SHA1 = 1              # SIGNATURE_HASH_ALGORITHMS values (RFC 7427 section 7)
HASH_SHA2_256 = 2
HASH_SHA2_384 = 3
HASH_SHA2_512 = 4
HASH_IDENTITY = 5          # RFC 8420

# -- notify message types (section 3.10.1, IANA) ----------------------------------------

UNSUPPORTED_CRITICAL_PAYLOAD = 1
INVALID_IKE_SPI = 4
INVALID_MAJOR_VERSION = 5
INVALID_SYNTAX = 7
INVALID_MESSAGE_ID = 9
INVALID_SPI = 11
NO_PROPOSAL_CHOSEN = 14
INVALID_KE_PAYLOAD = 17
AUTHENTICATION_FAILED = 24
SINGLE_PAIR_REQUIRED = 34
NO_ADDITIONAL_SAS = 35
INTERNAL_ADDRESS_FAILURE = 36
FAILED_CP_REQUIRED = 37
TS_UNACCEPTABLE = 38
INVALID_SELECTORS = 39
TEMPORARY_FAILURE = 43
CHILD_SA_NOT_FOUND = 44
INITIAL_CONTACT = 16384
SET_WINDOW_SIZE = 16385
ADDITIONAL_TS_POSSIBLE = 16386
IPCOMP_SUPPORTED = 16387
NAT_DETECTION_SOURCE_IP = 16388
NAT_DETECTION_DESTINATION_IP = 16389
COOKIE = 16390
USE_TRANSPORT_MODE = 16391
HTTP_CERT_LOOKUP_SUPPORTED = 16392
REKEY_SA = 16393
ESP_TFC_PADDING_NOT_SUPPORTED = 16394
NON_FIRST_FRAGMENTS_ALSO = 16395
MOBIKE_SUPPORTED = 16396
MULTIPLE_AUTH_SUPPORTED = 16404
ANOTHER_AUTH_FOLLOWS = 16405
REDIRECT_SUPPORTED = 16406
REDIRECT = 16407
EAP_ONLY_AUTHENTICATION = 16417
CHILDLESS_IKEV2_SUPPORTED = 16418
IKEV2_FRAGMENTATION_SUPPORTED = 16430
SIGNATURE_HASH_ALGORITHMS = 16431
USE_PPK = 16435
INTERMEDIATE_EXCHANGE_SUPPORTED = 16438

NOTIFY_ERROR_MAX = 16383   # types below 16384 are errors (section 3.10.1)

_NOTIFY_TYPES = (
    "UNSUPPORTED_CRITICAL_PAYLOAD", "INVALID_IKE_SPI", "INVALID_MAJOR_VERSION", "INVALID_SYNTAX",
    "INVALID_MESSAGE_ID", "INVALID_SPI", "NO_PROPOSAL_CHOSEN", "INVALID_KE_PAYLOAD",
    "AUTHENTICATION_FAILED", "SINGLE_PAIR_REQUIRED", "NO_ADDITIONAL_SAS",
    "INTERNAL_ADDRESS_FAILURE", "FAILED_CP_REQUIRED", "TS_UNACCEPTABLE", "INVALID_SELECTORS",
    "TEMPORARY_FAILURE", "CHILD_SA_NOT_FOUND", "INITIAL_CONTACT", "SET_WINDOW_SIZE",
    "ADDITIONAL_TS_POSSIBLE", "IPCOMP_SUPPORTED", "NAT_DETECTION_SOURCE_IP",
    "NAT_DETECTION_DESTINATION_IP", "COOKIE", "USE_TRANSPORT_MODE", "HTTP_CERT_LOOKUP_SUPPORTED",
    "REKEY_SA", "ESP_TFC_PADDING_NOT_SUPPORTED", "NON_FIRST_FRAGMENTS_ALSO", "MOBIKE_SUPPORTED",
    "MULTIPLE_AUTH_SUPPORTED", "ANOTHER_AUTH_FOLLOWS", "REDIRECT_SUPPORTED", "REDIRECT",
    "EAP_ONLY_AUTHENTICATION", "CHILDLESS_IKEV2_SUPPORTED", "IKEV2_FRAGMENTATION_SUPPORTED",
    "SIGNATURE_HASH_ALGORITHMS", "USE_PPK", "INTERMEDIATE_EXCHANGE_SUPPORTED",
)
NOTIFY_NAMES = {globals()[name]: name for name in _NOTIFY_TYPES}

# -- traffic selectors and configuration (sections 3.13, 3.15; RFC 8598) ---------------

TS_IPV4_ADDR_RANGE = 7
TS_IPV6_ADDR_RANGE = 8

CFG_REQUEST = 1
CFG_REPLY = 2
CFG_SET = 3
CFG_ACK = 4

INTERNAL_IP4_ADDRESS = 1
INTERNAL_IP4_NETMASK = 2
INTERNAL_IP4_DNS = 3
INTERNAL_IP4_NBNS = 4
INTERNAL_IP4_DHCP = 6
APPLICATION_VERSION = 7
INTERNAL_IP6_ADDRESS = 8
INTERNAL_IP6_DNS = 10
INTERNAL_IP6_DHCP = 12
INTERNAL_IP4_SUBNET = 13
SUPPORTED_ATTRIBUTES = 14
INTERNAL_IP6_SUBNET = 15
INTERNAL_DNS_DOMAIN = 25

_CP_NAMES = {INTERNAL_IP4_ADDRESS: "INTERNAL_IP4_ADDRESS", INTERNAL_IP6_ADDRESS:
             "INTERNAL_IP6_ADDRESS", INTERNAL_IP4_DNS: "INTERNAL_IP4_DNS",
             INTERNAL_IP6_DNS: "INTERNAL_IP6_DNS"}

NONCE_MIN = 16
NONCE_MAX = 256


def payload_name(ptype: int) -> str:
    return PAYLOAD_NAMES.get(ptype, f"payload {ptype}")


def exchange_name(exchange: int) -> str:
    return EXCHANGE_NAMES.get(exchange, f"exchange {exchange}")


def notify_name(ntype: int) -> str:
    return NOTIFY_NAMES.get(ntype, f"notify {ntype}")


Buffer = Union[bytes, bytearray, memoryview]


def _u8(value: int, what: str) -> int:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{what} {value} does not fit in 8 bits")
    return value


def _u16(value: int, what: str) -> int:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{what} {value} does not fit in 16 bits")
    return value


# -- the header ------------------------------------------------------------------------

@dataclass(slots=True)
class IkeHeader:
    """The fixed header as it is on the wire (``length`` included)."""

    spi_i: bytes
    spi_r: bytes
    next_payload: int
    version: int
    exchange: int
    flags: int
    message_id: int
    length: int

    @property
    def initiator(self) -> bool:
        """Sent by the original initiator of the IKE SA."""
        return bool(self.flags & FLAG_INITIATOR)

    @property
    def response(self) -> bool:
        return bool(self.flags & FLAG_RESPONSE)


def parse_header(data: Buffer) -> IkeHeader:
    """The header of a message (cheap: to match SPIs and message ids first)."""
    if len(data) < HEADER_LEN:
        raise ParseError(f"IKE header: {len(data)} bytes (at least {HEADER_LEN})")
    spi_i, spi_r, nxt, version, exchange, flags, mid, length = HEADER.unpack_from(data, 0)
    if version >> 4 != 2:
        raise ParseError(f"IKE major version {version >> 4} (only 2 is spoken)")
    if length < HEADER_LEN:
        raise ParseError(f"IKE header: length field {length} is shorter than the header")
    return IkeHeader(spi_i, spi_r, nxt, version, exchange, flags, mid, length)


def build_header(spi_i: bytes, spi_r: bytes, next_payload: int, exchange: int, flags: int,
                 message_id: int, length: int, version: int = IKE_VERSION) -> bytes:
    if len(spi_i) != 8 or len(spi_r) != 8:
        raise ValueError("IKE SPIs are 8 bytes")
    if not 0 <= message_id <= 0xFFFFFFFF or not HEADER_LEN <= length <= 0xFFFFFFFF:
        raise ValueError("message id or length out of range")
    return HEADER.pack(spi_i, spi_r, _u8(next_payload, "next payload"), _u8(version, "version"),
                       _u8(exchange, "exchange type"), _u8(flags, "flags"), message_id, length)


# -- SA payload ------------------------------------------------------------------------

@dataclass(slots=True)
class Attribute:
    """A transform attribute other than the key length: TV (``value`` an int, 16 bits,
    AF set) or TLV (``value`` bytes)."""

    type: int
    value: int | bytes

    def build(self) -> bytes:
        if not 0 <= self.type <= 0x7FFF:
            raise ValueError(f"attribute type {self.type} does not fit in 15 bits")
        if isinstance(self.value, int):
            return _U16x2.pack(0x8000 | self.type, _u16(self.value, "attribute value"))
        return _U16x2.pack(self.type, _u16(len(self.value), "attribute length")) + self.value


@dataclass(slots=True)
class Transform:
    """One transform: ``type`` (TRANSFORM_*) and ``id``; ``key_length`` in bits for
    variable-length ciphers (AES), None otherwise."""

    type: int
    id: int
    key_length: int | None = None
    attributes: tuple[Attribute, ...] = ()

    def build(self, last: bool) -> bytes:
        attrs = b""
        if self.key_length is not None:
            attrs = _U16x2.pack(0x8000 | ATTR_KEY_LENGTH, _u16(self.key_length, "key length"))
        attrs += b"".join(a.build() for a in self.attributes)
        length = _TRANSFORM.size + len(attrs)
        return _TRANSFORM.pack(0 if last else 3, 0, _u16(length, "transform length"),
                               _u8(self.type, "transform type"), 0,
                               _u16(self.id, "transform id")) + attrs


@dataclass(slots=True)
class Proposal:
    """A proposal: ``number`` (1, 2, ...), ``protocol`` (PROTO_IKE/ESP), ``spi`` (empty
    in the first IKE_SA_INIT, 8 bytes for an IKE rekey, 4 for ESP)."""

    number: int
    protocol: int
    spi: bytes = b""
    transforms: list[Transform] = field(default_factory=list)

    def of_type(self, ttype: int) -> list[Transform]:
        return [t for t in self.transforms if t.type == ttype]

    def first(self, ttype: int) -> Transform | None:
        for t in self.transforms:
            if t.type == ttype:
                return t
        return None

    def build(self, last: bool) -> bytes:
        if len(self.transforms) > 255:
            raise ValueError("at most 255 transforms in a proposal")
        body = b"".join(t.build(i == len(self.transforms) - 1)
                        for i, t in enumerate(self.transforms))
        length = _SUBSTRUCT.size + len(self.spi) + len(body)
        return _SUBSTRUCT.pack(0 if last else 2, 0, _u16(length, "proposal length"),
                               _u8(self.number, "proposal number"),
                               _u8(self.protocol, "protocol"), _u8(len(self.spi), "SPI size"),
                               len(self.transforms)) + self.spi + body


def _parse_attributes(mv: memoryview) -> tuple[int | None, tuple[Attribute, ...]]:
    key_length = None
    attrs: list[Attribute] = []
    pos, n = 0, len(mv)
    while pos < n:
        if pos + 4 > n:
            raise ParseError("transform attribute: truncated")
        atype, val = _U16x2.unpack_from(mv, pos)
        pos += 4
        if atype & 0x8000:
            atype &= 0x7FFF
            if atype == ATTR_KEY_LENGTH:
                if key_length is not None:
                    raise ParseError("transform: two key length attributes")
                key_length = val
            else:
                attrs.append(Attribute(atype, val))
        else:
            if pos + val > n:
                raise ParseError(f"transform attribute {atype}: truncated value")
            attrs.append(Attribute(atype, bytes(mv[pos:pos + val])))
            pos += val
    return key_length, tuple(attrs)


def _parse_transforms(mv: memoryview, count: int) -> list[Transform]:
    out: list[Transform] = []
    pos, n = 0, len(mv)
    while pos < n:
        if pos + _TRANSFORM.size > n:
            raise ParseError("transform: truncated")
        last, _, length, ttype, _, tid = _TRANSFORM.unpack_from(mv, pos)
        if last not in (0, 3):
            raise ParseError(f"transform: 'last substruc' {last} (0 or 3)")
        if length < _TRANSFORM.size or pos + length > n:
            raise ParseError(f"transform: length {length} out of range")
        key_length, attrs = _parse_attributes(mv[pos + _TRANSFORM.size:pos + length])
        out.append(Transform(ttype, tid, key_length, attrs))
        pos += length
    if len(out) != count:
        raise ParseError(f"proposal: {len(out)} transforms, header says {count}")
    return out


@dataclass(slots=True)
class SA:
    TYPE: ClassVar[int] = PT_SA
    proposals: list[Proposal] = field(default_factory=list)

    def body(self) -> bytes:
        return b"".join(p.build(i == len(self.proposals) - 1)
                        for i, p in enumerate(self.proposals))

    @classmethod
    def parse_body(cls, mv: memoryview) -> SA:
        proposals: list[Proposal] = []
        pos, n = 0, len(mv)
        if n == 0:
            raise ParseError("SA payload without proposals")
        while pos < n:
            if pos + _SUBSTRUCT.size > n:
                raise ParseError("proposal: truncated")
            last, _, length, number, proto, spi_size, count = _SUBSTRUCT.unpack_from(mv, pos)
            if last not in (0, 2):
                raise ParseError(f"proposal: 'last substruc' {last} (0 or 2)")
            if length < _SUBSTRUCT.size + spi_size or pos + length > n:
                raise ParseError(f"proposal: length {length} out of range")
            start = pos + _SUBSTRUCT.size
            spi = bytes(mv[start:start + spi_size])
            transforms = _parse_transforms(mv[start + spi_size:pos + length], count)
            proposals.append(Proposal(number, proto, spi, transforms))
            pos += length
        return cls(proposals)


# -- KE, ID, CERT, CERTREQ, AUTH, Nonce ----------------------------------------------------

@dataclass(slots=True)
class KE:
    TYPE: ClassVar[int] = PT_KE
    group: int
    data: bytes

    def body(self) -> bytes:
        return _U16x2.pack(_u16(self.group, "DH group"), 0) + self.data

    @classmethod
    def parse_body(cls, mv: memoryview) -> KE:
        if len(mv) < 4:
            raise ParseError("KE payload: truncated")
        (group, _) = _U16x2.unpack_from(mv, 0)
        return cls(group, bytes(mv[4:]))


@dataclass(slots=True)
class _Identification:
    id_type: int
    data: bytes

    def body(self) -> bytes:
        """Also "RestOfIDPayload" of the AUTH computation (section 2.15)."""
        return _TYPE_RES3.pack(_u8(self.id_type, "ID type")) + self.data

    @classmethod
    def parse_body(cls, mv: memoryview):
        if len(mv) < 4:
            raise ParseError(f"{cls.__name__} payload: truncated")
        return cls(mv[0], bytes(mv[4:]))

    @classmethod
    def from_value(cls, value: str):
        """An identity from text as strongSwan takes it: an IP address (ID_IPV4_ADDR/
        ID_IPV6_ADDR), ``user@domain`` (ID_RFC822_ADDR), ``@#hex`` (ID_KEY_ID), ``@fqdn``
        or anything else (ID_FQDN).  Distinguished names: build ID_DER_ASN1_DN yourself."""
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            pass
        else:
            return cls(ID_IPV4_ADDR if addr.version == 4 else ID_IPV6_ADDR, addr.packed)
        if value.startswith("@#"):
            return cls(ID_KEY_ID, bytes.fromhex(value[2:]))
        if value.startswith("@"):
            return cls(ID_FQDN, value[1:].encode())
        if "@" in value:
            return cls(ID_RFC822_ADDR, value.encode())
        return cls(ID_FQDN, value.encode())

    def text(self) -> str:
        """For logs: addresses dotted, names as text, anything else in hex."""
        if (self.id_type == ID_IPV4_ADDR and len(self.data) == 4) or \
                (self.id_type == ID_IPV6_ADDR and len(self.data) == 16):
            return str(ipaddress.ip_address(self.data))
        if self.id_type in (ID_FQDN, ID_RFC822_ADDR):
            return self.data.decode("utf-8", "replace")
        return self.data.hex()


@dataclass(slots=True)
class IDi(_Identification):
    TYPE: ClassVar[int] = PT_IDI


@dataclass(slots=True)
class IDr(_Identification):
    TYPE: ClassVar[int] = PT_IDR


@dataclass(slots=True)
class CERT:
    TYPE: ClassVar[int] = PT_CERT
    encoding: int
    data: bytes

    def body(self) -> bytes:
        return bytes((_u8(self.encoding, "certificate encoding"),)) + self.data

    @classmethod
    def parse_body(cls, mv: memoryview) -> CERT:
        if len(mv) < 1:
            raise ParseError("CERT payload: truncated")
        return cls(mv[0], bytes(mv[1:]))


@dataclass(slots=True)
class CERTREQ:
    TYPE: ClassVar[int] = PT_CERTREQ
    encoding: int
    data: bytes = b""

    @property
    def authorities(self) -> list[bytes]:
        """For X.509: the 20-byte SHA-1 hashes of the trusted CAs' public keys."""
        if len(self.data) % 20:
            raise ParseError(f"CERTREQ: {len(self.data)} bytes is not a list of SHA-1 hashes")
        return [self.data[i:i + 20] for i in range(0, len(self.data), 20)]

    def body(self) -> bytes:
        return bytes((_u8(self.encoding, "certificate encoding"),)) + self.data

    @classmethod
    def parse_body(cls, mv: memoryview) -> CERTREQ:
        if len(mv) < 1:
            raise ParseError("CERTREQ payload: truncated")
        return cls(mv[0], bytes(mv[1:]))


@dataclass(slots=True)
class AUTH:
    TYPE: ClassVar[int] = PT_AUTH
    method: int
    data: bytes

    def body(self) -> bytes:
        return _TYPE_RES3.pack(_u8(self.method, "auth method")) + self.data

    @classmethod
    def parse_body(cls, mv: memoryview) -> AUTH:
        if len(mv) < 4:
            raise ParseError("AUTH payload: truncated")
        return cls(mv[0], bytes(mv[4:]))


def split_digital_signature(data: bytes) -> tuple[bytes, bytes]:
    """AUTH method 14 data (RFC 7427 section 3): (AlgorithmIdentifier DER, signature)."""
    if len(data) < 1 or len(data) < 1 + data[0]:
        raise ParseError("AUTH (digital signature): truncated AlgorithmIdentifier")
    n = data[0]
    if n == 0:
        raise ParseError("AUTH (digital signature): empty AlgorithmIdentifier")
    return bytes(data[1:1 + n]), bytes(data[1 + n:])


def join_digital_signature(algorithm_identifier: bytes, signature: bytes) -> bytes:
    return bytes((_u8(len(algorithm_identifier), "AlgorithmIdentifier length"),)) + \
        algorithm_identifier + signature


@dataclass(slots=True)
class Nonce:
    TYPE: ClassVar[int] = PT_NONCE
    data: bytes

    def body(self) -> bytes:
        if not NONCE_MIN <= len(self.data) <= NONCE_MAX:
            raise ValueError(f"a nonce is {NONCE_MIN} to {NONCE_MAX} bytes")
        return self.data

    @classmethod
    def parse_body(cls, mv: memoryview) -> Nonce:
        if not NONCE_MIN <= len(mv) <= NONCE_MAX:
            raise ParseError(f"Nonce payload: {len(mv)} bytes ({NONCE_MIN} to {NONCE_MAX})")
        return cls(bytes(mv))


# -- N, D, V ------------------------------------------------------------------------------

@dataclass(slots=True)
class Notify:
    """``protocol`` 0 and no SPI for IKE SA notifies; PROTO_ESP with the 4-byte SPI for
    a Child SA's (REKEY_SA, INVALID_SPI)."""

    TYPE: ClassVar[int] = PT_NOTIFY
    type: int
    data: bytes = b""
    protocol: int = 0
    spi: bytes = b""

    @property
    def error(self) -> bool:
        return self.type <= NOTIFY_ERROR_MAX

    @property
    def name(self) -> str:
        return notify_name(self.type)

    def body(self) -> bytes:
        return _NOTIFY.pack(_u8(self.protocol, "protocol"), _u8(len(self.spi), "SPI size"),
                            _u16(self.type, "notify type")) + self.spi + self.data

    @classmethod
    def parse_body(cls, mv: memoryview) -> Notify:
        if len(mv) < 4:
            raise ParseError("N payload: truncated")
        proto, spi_size, ntype = _NOTIFY.unpack_from(mv, 0)
        if 4 + spi_size > len(mv):
            raise ParseError("N payload: truncated SPI")
        return cls(ntype, bytes(mv[4 + spi_size:]), proto, bytes(mv[4:4 + spi_size]))


def parse_u16_notify(data: bytes) -> int:
    """The 16-bit value of INVALID_KE_PAYLOAD (the group the responder wants)."""
    if len(data) != 2:
        raise ParseError(f"notify data: {len(data)} bytes (want 2)")
    return _U16.unpack(data)[0]


def build_hash_algorithms(ids) -> bytes:
    """SIGNATURE_HASH_ALGORITHMS data: 16-bit hash algorithm ids (HASH_*)."""
    return b"".join(_U16.pack(_u16(i, "hash algorithm")) for i in ids)


def parse_hash_algorithms(data: bytes) -> tuple[int, ...]:
    """SIGNATURE_HASH_ALGORITHMS data: its whole 16-bit ids.  A stray last byte (odd
    length) is ignored, as strongSwan reads it (ike_init.c reads while 2 bytes remain):
    the notify is advisory, never a reason to drop the response carrying it."""
    return struct.unpack(f"!{len(data) // 2}H", data[:len(data) - len(data) % 2])


@dataclass(slots=True)
class Delete:
    """Delete the IKE SA (PROTO_IKE, no SPIs) or Child SAs (PROTO_ESP, 4-byte SPIs:
    each the SPI the *sender* expects inbound)."""

    TYPE: ClassVar[int] = PT_DELETE
    protocol: int
    spis: list[bytes] = field(default_factory=list)
    spi_size: int | None = None      # None: from the SPIs (0 when there are none)

    def __post_init__(self) -> None:
        if self.spi_size is None:
            self.spi_size = len(self.spis[0]) if self.spis else 0

    def body(self) -> bytes:
        size = self.spi_size
        if any(len(s) != size for s in self.spis):
            raise ValueError("Delete: SPIs of different sizes")
        return _DELETE.pack(_u8(self.protocol, "protocol"), _u8(size, "SPI size"),
                            _u16(len(self.spis), "number of SPIs")) + b"".join(self.spis)

    @classmethod
    def parse_body(cls, mv: memoryview) -> Delete:
        if len(mv) < 4:
            raise ParseError("D payload: truncated")
        proto, spi_size, count = _DELETE.unpack_from(mv, 0)
        if 4 + spi_size * count != len(mv):
            raise ParseError(f"D payload: {count} SPIs of {spi_size} bytes in {len(mv) - 4}")
        spis = [bytes(mv[4 + i * spi_size:4 + (i + 1) * spi_size]) for i in range(count)]
        return cls(proto, spis, spi_size)


@dataclass(slots=True)
class VendorID:
    TYPE: ClassVar[int] = PT_VENDOR
    data: bytes

    def body(self) -> bytes:
        return self.data

    @classmethod
    def parse_body(cls, mv: memoryview) -> VendorID:
        return cls(bytes(mv))


# -- TSi / TSr ---------------------------------------------------------------------------

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


@dataclass(slots=True)
class TrafficSelector:
    """An address range with an IP protocol (0: any) and a port range.  ``start`` and
    ``end`` are ipaddress objects (strings are converted).  Types other than the
    IPv4/IPv6 ranges are kept whole in ``raw`` (their body after the length field)."""

    start: IPAddress | str
    end: IPAddress | str
    protocol: int = 0
    start_port: int = 0
    end_port: int = 65535
    ts_type: int | None = None       # None: from the address family
    raw: bytes | None = None

    def __post_init__(self) -> None:
        if isinstance(self.start, str):
            self.start = ipaddress.ip_address(self.start)
        if isinstance(self.end, str):
            self.end = ipaddress.ip_address(self.end)
        if self.ts_type is None:
            self.ts_type = TS_IPV4_ADDR_RANGE if self.start.version == 4 else TS_IPV6_ADDR_RANGE

    @classmethod
    def from_network(cls, network: str, protocol: int = 0) -> TrafficSelector:
        """``"10.1.0.0/16"`` (or an address alone) as a range, any port."""
        net = ipaddress.ip_network(network, strict=False)
        return cls(net.network_address, net.broadcast_address, protocol)

    def networks(self) -> list[str]:
        """The range as CIDR prefixes (what :class:`erebus.ipsec.esp.EspSession` takes)."""
        if self.raw is not None or self.start > self.end:
            return []
        return [str(n) for n in ipaddress.summarize_address_range(self.start, self.end)]

    def build(self) -> bytes:
        if self.raw is not None:
            return _TS_HEAD.pack(_u8(self.ts_type, "TS type"), _u8(self.protocol, "IP protocol"),
                                 _u16(4 + len(self.raw), "TS length")) + self.raw
        width = 4 if self.ts_type == TS_IPV4_ADDR_RANGE else 16
        if self.ts_type not in (TS_IPV4_ADDR_RANGE, TS_IPV6_ADDR_RANGE) or \
                self.start.version != self.end.version or len(self.start.packed) != width:
            raise ValueError(f"traffic selector type {self.ts_type} does not match "
                             f"{self.start}-{self.end}")
        return _TS.pack(self.ts_type, _u8(self.protocol, "IP protocol"), 8 + 2 * width,
                        _u16(self.start_port, "port"), _u16(self.end_port, "port")) + \
            self.start.packed + self.end.packed


def _parse_selectors(mv: memoryview, count: int, name: str) -> list[TrafficSelector]:
    out: list[TrafficSelector] = []
    pos, n = 0, len(mv)
    while pos < n:
        if pos + 4 > n:
            raise ParseError(f"{name}: truncated traffic selector")
        ts_type, proto, length = _TS_HEAD.unpack_from(mv, pos)
        if length < 4 or pos + length > n:
            raise ParseError(f"{name}: traffic selector length {length} out of range")
        if ts_type in (TS_IPV4_ADDR_RANGE, TS_IPV6_ADDR_RANGE):
            width = 4 if ts_type == TS_IPV4_ADDR_RANGE else 16
            if length != 8 + 2 * width:
                raise ParseError(f"{name}: traffic selector type {ts_type} of {length} bytes")
            _, _, _, sport, eport = _TS.unpack_from(mv, pos)
            a = pos + 8
            start = ipaddress.ip_address(bytes(mv[a:a + width]))
            end = ipaddress.ip_address(bytes(mv[a + width:a + 2 * width]))
            out.append(TrafficSelector(start, end, proto, sport, eport, ts_type))
        else:
            out.append(TrafficSelector(ipaddress.IPv4Address(0), ipaddress.IPv4Address(0),
                                       proto, 0, 0, ts_type, bytes(mv[pos + 4:pos + length])))
        pos += length
    if len(out) != count:
        raise ParseError(f"{name}: {len(out)} traffic selectors, header says {count}")
    return out


@dataclass(slots=True)
class _TrafficSelectors:
    selectors: list[TrafficSelector] = field(default_factory=list)

    def body(self) -> bytes:
        if not self.selectors:
            raise ValueError("a TS payload needs at least one selector")
        return _TYPE_RES3.pack(_u8(len(self.selectors), "number of selectors")) + \
            b"".join(ts.build() for ts in self.selectors)

    @classmethod
    def parse_body(cls, mv: memoryview):
        if len(mv) < 4:
            raise ParseError(f"{cls.__name__} payload: truncated")
        count = mv[0]
        if count == 0:
            raise ParseError(f"{cls.__name__} payload without selectors")
        return cls(_parse_selectors(mv[4:], count, cls.__name__))


@dataclass(slots=True)
class TSi(_TrafficSelectors):
    TYPE: ClassVar[int] = PT_TSI


@dataclass(slots=True)
class TSr(_TrafficSelectors):
    TYPE: ClassVar[int] = PT_TSR


# -- SK, SKF ------------------------------------------------------------------------------

def _split_sealed(data: bytes, iv_len: int, icv_len: int, what: str) -> tuple[bytes, bytes, bytes]:
    if len(data) < iv_len + icv_len + 1:
        raise ParseError(f"{what}: {len(data)} bytes cannot hold IV, ciphertext and ICV")
    return data[:iv_len], data[iv_len:len(data) - icv_len], data[len(data) - icv_len:]


@dataclass(slots=True)
class SK:
    """The Encrypted payload: ``first_payload`` is the type of the first inner payload
    (its generic header's "next payload"), ``data`` is IV | ciphertext | ICV."""

    TYPE: ClassVar[int] = PT_SK
    HEADER_LEN: ClassVar[int] = 4
    first_payload: int
    data: bytes

    def split(self, iv_len: int, icv_len: int) -> tuple[bytes, bytes, bytes]:
        """(IV, ciphertext, ICV) for the negotiated cipher's sizes."""
        return _split_sealed(self.data, iv_len, icv_len, "SK payload")

    def body(self) -> bytes:
        return self.data

    @classmethod
    def parse_body(cls, mv: memoryview, first_payload: int = 0) -> SK:
        return cls(first_payload, bytes(mv))


@dataclass(slots=True)
class SKF:
    """The Encrypted Fragment payload (RFC 7383 section 2.5): fragment ``number`` of
    ``total`` (both from 1); ``first_payload`` is the first inner payload's type in
    fragment 1 and zero in the others."""

    TYPE: ClassVar[int] = PT_SKF
    HEADER_LEN: ClassVar[int] = 8
    first_payload: int
    number: int
    total: int
    data: bytes

    def split(self, iv_len: int, icv_len: int) -> tuple[bytes, bytes, bytes]:
        return _split_sealed(self.data, iv_len, icv_len, "SKF payload")

    def body(self) -> bytes:
        if not 1 <= self.number <= self.total <= 0xFFFF:
            raise ValueError(f"fragment {self.number} of {self.total}")
        if self.number > 1 and self.first_payload:
            raise ValueError("only fragment 1 names the first inner payload")
        return _U16x2.pack(self.number, self.total) + self.data

    @classmethod
    def parse_body(cls, mv: memoryview, first_payload: int = 0) -> SKF:
        if len(mv) < 4:
            raise ParseError("SKF payload: truncated")
        number, total = _U16x2.unpack_from(mv, 0)
        if not 1 <= number <= total:
            raise ParseError(f"SKF payload: fragment {number} of {total}")
        if number > 1 and first_payload:
            raise ParseError(f"SKF payload: fragment {number} names a first payload")
        return cls(first_payload, number, total, bytes(mv[4:]))


# -- CP, EAP ------------------------------------------------------------------------------

@dataclass(slots=True)
class ConfigAttribute:
    """A configuration attribute; ``value`` empty in a request for "any"."""

    type: int
    value: bytes = b""

    @classmethod
    def address(cls, atype: int, addr: str) -> ConfigAttribute:
        return cls(atype, ipaddress.ip_address(addr).packed)

    def text(self) -> str | None:
        """4/16-byte values as an address, INTERNAL_IP4_SUBNET as ``a.b.c.d/n``,
        INTERNAL_IP6_ADDRESS/SUBNET (address | prefix length) as ``addr/n``; else None."""
        v = self.value
        try:
            if self.type == INTERNAL_IP4_SUBNET and len(v) == 8:
                return str(ipaddress.ip_network(f"{ipaddress.ip_address(v[:4])}/"
                                                f"{ipaddress.ip_address(v[4:])}", strict=False))
            if self.type in (INTERNAL_IP6_ADDRESS, INTERNAL_IP6_SUBNET) and len(v) == 17:
                return f"{ipaddress.ip_address(v[:16])}/{v[16]}"
        except ValueError:
            return None
        if len(v) in (4, 16) and self.type != APPLICATION_VERSION:
            return str(ipaddress.ip_address(v))
        return None

    @classmethod
    def ip6_address(cls, addr: str, prefix: int = 64,
                    atype: int = INTERNAL_IP6_ADDRESS) -> ConfigAttribute:
        """INTERNAL_IP6_ADDRESS (or _SUBNET): the 16-byte address, then the prefix
        length (RFC 7296 section 3.15.1)."""
        if not 0 <= prefix <= 128:
            raise ValueError(f"IPv6 prefix length {prefix} (0 to 128)")
        return cls(atype, ipaddress.IPv6Address(addr).packed + bytes([prefix]))

    def parse_ip6_address(self) -> tuple[str, int]:
        """(address, prefix length) of an INTERNAL_IP6_ADDRESS/SUBNET value; ParseError
        unless it is 17 bytes with a prefix length of at most 128."""
        v = self.value
        if len(v) != 17:
            raise ParseError(f"CP attribute {self.type}: {len(v)} bytes (an IPv6 address "
                             "and its prefix length are 17)")
        if v[16] > 128:
            raise ParseError(f"CP attribute {self.type}: prefix length {v[16]} (at most 128)")
        return str(ipaddress.IPv6Address(v[:16])), v[16]

    def build(self) -> bytes:
        if not 0 <= self.type <= 0x7FFF:
            raise ValueError(f"attribute type {self.type} does not fit in 15 bits")
        return _U16x2.pack(self.type, _u16(len(self.value), "attribute length")) + self.value


@dataclass(slots=True)
class ConfigReply:
    """What a CFG_REPLY assigns, checked (:func:`parse_config_reply`): IPv4 virtual IPs,
    IPv6 ones with their prefix lengths, DNS servers of both families in the order
    the responder gave them, and a line for every attribute that was skipped."""

    ip4: list[str] = field(default_factory=list)
    ip6: list[tuple[str, int]] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


_ADDRESS_ATTRS = {INTERNAL_IP4_ADDRESS: 4, INTERNAL_IP4_DNS: 4, INTERNAL_IP6_DNS: 16}


def parse_config_reply(cp: CP) -> ConfigReply:
    """The addresses of a CFG_REPLY (RFC 7296 section 3.15.1): INTERNAL_IP4_ADDRESS (4
    bytes), INTERNAL_IP6_ADDRESS (16 bytes and a prefix length up to 128), INTERNAL_IP4_DNS
    (4) and INTERNAL_IP6_DNS (16).  A value of another length, an unspecified,
    multicast or loopback address is skipped with its reason in ``skipped`` (as charon
    skips an address it cannot make a host of); other attribute types are ignored."""
    out = ConfigReply()
    for a in cp.attributes:
        name = _CP_NAMES.get(a.type)
        if name is None:
            continue
        try:
            if a.type == INTERNAL_IP6_ADDRESS:
                addr, prefix = a.parse_ip6_address()
            else:
                width = _ADDRESS_ATTRS[a.type]
                if len(a.value) != width:
                    raise ParseError(f"{len(a.value)} bytes, not {width}")
                addr, prefix = str(ipaddress.ip_address(a.value)), None
        except ParseError as exc:
            out.skipped.append(f"{name}: {str(exc).split(': ', 1)[-1]}")
            continue
        ip = ipaddress.ip_address(addr)
        if ip.is_unspecified or ip.is_multicast or ip.is_loopback:
            out.skipped.append(f"{name}: {addr} is not a usable address")
            continue
        if a.type == INTERNAL_IP4_ADDRESS:
            out.ip4.append(addr)
        elif a.type == INTERNAL_IP6_ADDRESS:
            out.ip6.append((addr, prefix))
        else:
            out.dns.append(addr)
    return out


@dataclass(slots=True)
class CP:
    TYPE: ClassVar[int] = PT_CP
    cfg_type: int
    attributes: list[ConfigAttribute] = field(default_factory=list)

    def values(self, atype: int) -> list[bytes]:
        return [a.value for a in self.attributes if a.type == atype]

    def texts(self, atype: int) -> list[str]:
        """Every attribute of a type as text (addresses, subnets); others skipped."""
        out = []
        for a in self.attributes:
            if a.type == atype:
                t = a.text()
                if t is not None:
                    out.append(t)
        return out

    def body(self) -> bytes:
        return _TYPE_RES3.pack(_u8(self.cfg_type, "CFG type")) + \
            b"".join(a.build() for a in self.attributes)

    @classmethod
    def parse_body(cls, mv: memoryview) -> CP:
        if len(mv) < 4:
            raise ParseError("CP payload: truncated")
        attrs: list[ConfigAttribute] = []
        pos, n = 4, len(mv)
        while pos < n:
            if pos + 4 > n:
                raise ParseError("CP payload: truncated attribute")
            atype, length = _U16x2.unpack_from(mv, pos)
            if pos + 4 + length > n:
                raise ParseError(f"CP attribute {atype & 0x7FFF}: truncated value")
            attrs.append(ConfigAttribute(atype & 0x7FFF, bytes(mv[pos + 4:pos + 4 + length])))
            pos += 4 + length
        return cls(mv[0], attrs)


@dataclass(slots=True)
class EAP:
    TYPE: ClassVar[int] = PT_EAP
    data: bytes

    def body(self) -> bytes:
        return self.data

    @classmethod
    def parse_body(cls, mv: memoryview) -> EAP:
        if len(mv) < 4:
            raise ParseError("EAP payload: truncated")
        return cls(bytes(mv))


@dataclass(slots=True)
class UnknownPayload:
    """A payload type erebus does not know; ``critical`` is the sender's C bit."""

    type: int
    data: bytes
    critical: bool = False

    @property
    def TYPE(self) -> int:  # noqa: N802 (same attribute as the known payloads')
        return self.type

    def body(self) -> bytes:
        return self.data


Payload = Union[SA, KE, IDi, IDr, CERT, CERTREQ, AUTH, Nonce, Notify, Delete, VendorID,
                TSi, TSr, SK, CP, EAP, SKF, UnknownPayload]

_PAYLOAD_CLASSES = {cls.TYPE: cls for cls in (SA, KE, IDi, IDr, CERT, CERTREQ, AUTH, Nonce,
                                              Notify, Delete, VendorID, TSi, TSr, CP, EAP)}


# -- payload chains ----------------------------------------------------------------------

def parse_payloads(first_type: int, data: Buffer) -> list[Payload]:
    """A chain of payloads starting with ``first_type`` that fills ``data`` exactly
    (a message's payloads, or the plaintext of SK/SKF without its padding)."""
    mv = memoryview(data)
    out: list[Payload] = []
    ptype, pos, n = first_type, 0, len(mv)
    while ptype != PT_NONE:
        if pos + 4 > n:
            raise ParseError(f"{payload_name(ptype)}: truncated generic payload header")
        nxt, flags, length = GENERIC.unpack_from(mv, pos)
        if length < 4 or pos + length > n:
            raise ParseError(f"{payload_name(ptype)}: payload length {length} out of range")
        body = mv[pos + 4:pos + length]
        pos += length
        if ptype in (PT_SK, PT_SKF):
            if pos != n:
                raise ParseError(f"{payload_name(ptype)} is not the last payload")
            out.append((SK if ptype == PT_SK else SKF).parse_body(body, nxt))
            return out
        cls = _PAYLOAD_CLASSES.get(ptype)
        if cls is None:
            out.append(UnknownPayload(ptype, bytes(body), bool(flags & 0x80)))
        else:
            out.append(cls.parse_body(body))
        ptype = nxt
    if pos != n:
        raise ParseError(f"{n - pos} bytes after the last payload")
    return out


def build_payloads(payloads) -> tuple[int, bytes]:
    """(type of the first payload, the chain's bytes); SK/SKF must be last."""
    parts: list[bytes] = []
    payloads = list(payloads)
    for i, p in enumerate(payloads):
        body = p.body()
        if isinstance(p, (SK, SKF)):
            if i != len(payloads) - 1:
                raise ValueError(f"{payload_name(p.TYPE)} must be the last payload")
            nxt = p.first_payload
        else:
            nxt = payloads[i + 1].TYPE if i + 1 < len(payloads) else PT_NONE
        flags = 0x80 if isinstance(p, UnknownPayload) and p.critical else 0
        parts.append(GENERIC.pack(_u8(nxt, "payload type"), flags,
                                  _u16(4 + len(body), "payload length")))
        parts.append(body)
    return (payloads[0].TYPE if payloads else PT_NONE), b"".join(parts)


# -- messages ------------------------------------------------------------------------------

@dataclass(slots=True)
class IkeMessage:
    """A parsed or to-be-built message.  ``payloads`` are as on the wire: for a
    protected message the last is :class:`SK` (or :class:`SKF`), still encrypted."""

    spi_i: bytes
    spi_r: bytes
    exchange: int
    flags: int
    message_id: int
    payloads: list[Payload] = field(default_factory=list)
    version: int = IKE_VERSION

    @property
    def initiator(self) -> bool:
        """Sent by the original initiator of the IKE SA."""
        return bool(self.flags & FLAG_INITIATOR)

    @property
    def response(self) -> bool:
        return bool(self.flags & FLAG_RESPONSE)

    @property
    def first_payload(self) -> int:
        return self.payloads[0].TYPE if self.payloads else PT_NONE

    def get(self, cls):
        """The first payload of a class (SA, KE, Nonce, ...), or None."""
        for p in self.payloads:
            if type(p) is cls:
                return p
        return None

    def get_all(self, cls) -> list:
        return [p for p in self.payloads if type(p) is cls]

    def notify(self, ntype: int) -> Notify | None:
        for p in self.payloads:
            if isinstance(p, Notify) and p.type == ntype:
                return p
        return None

    def notifies(self) -> list[Notify]:
        return [p for p in self.payloads if isinstance(p, Notify)]

    def errors(self) -> list[Notify]:
        """The error notifies (types below 16384)."""
        return [p for p in self.payloads if isinstance(p, Notify) and p.error]

    def header(self, length: int) -> bytes:
        return build_header(self.spi_i, self.spi_r, self.first_payload, self.exchange,
                            self.flags, self.message_id, length, self.version)


def parse_message(data: Buffer) -> IkeMessage:
    """A whole message (the UDP payload, without the non-ESP marker on port 4500)."""
    hdr = parse_header(data)
    if hdr.length != len(data):
        raise ParseError(f"IKE header: length field {hdr.length}, message of {len(data)} bytes")
    payloads = parse_payloads(hdr.next_payload, memoryview(data)[HEADER_LEN:])
    return IkeMessage(hdr.spi_i, hdr.spi_r, hdr.exchange, hdr.flags, hdr.message_id,
                      payloads, hdr.version)


def build_message(message: IkeMessage) -> bytes:
    first, body = build_payloads(message.payloads)
    return build_header(message.spi_i, message.spi_r, first, message.exchange, message.flags,
                        message.message_id, HEADER_LEN + len(body), message.version) + body
