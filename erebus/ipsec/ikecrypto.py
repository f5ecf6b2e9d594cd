"""IKEv2 key material and message protection (RFC 7296), sans-IO.

Key exchange (:class:`DiffieHellman`): MODP-2048 (group 14, RFC 3526; Python ints),
ECP-256/384/521 (groups 19/20/21, RFC 5903: the KE data is x | y, each padded to
the field size, and the shared secret is x alone) and Curve25519 (group 31, RFC
8031).  Peer values are checked (RFC 6989, RFC 8031 section 2.1): 1 < y < p-1 for
MODP, coordinates below p and the point on the curve for ECP, a non-zero result
for X25519; a bad one raises :class:`InvalidKeyExchange`.

Keys (section 2.14, 2.17, 2.18)::

    SKEYSEED = prf(Ni | Nr, g^ir)
    SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)
    rekeyed IKE SA:  SKEYSEED = prf_old(SK_d_old, g^ir_new | Ni | Nr), then prf+ with the new
                     PRF, the new SPIs and the CREATE_CHILD_SA nonces
    Child SA:        KEYMAT = prf+(SK_d, [g^ir_new |] Ni | Nr)
                     = encr_i | integ_i | encr_r | integ_r   (i: the exchange's initiator)

    prf+(K, S) = T1 | T2 | ...,  T1 = prf(K, S | 0x01),  Tn = prf(K, Tn-1 | S | n)

SK_d, SK_pi and SK_pr are as long as the PRF's output; an AEAD's SK_e carries its
salt after the key (4 bytes for GCM and ChaCha20-Poly1305, 3 for CCM: RFC 5282
section 7.1, RFC 7634) and there are no SK_a.

Protection of SK/SKF payloads (section 3.14, RFC 5282, RFC 7383)::

    SK payload = generic header | IV | E(inner payloads | padding | pad length) | ICV

* AES-CBC + HMAC: 16-byte random IV, zero padding to the 16-byte block; the ICV is
  the truncated HMAC (SK_a of the sender) over the whole message from the first
  byte of the IKE header (with its final length) to the pad length byte.
* AEAD (AES-GCM-16, AES-CCM, ChaCha20-Poly1305): an 8-byte explicit IV (random: at
  most a few thousand messages per key, so no birthday risk), nonce = salt | IV,
  pad length 0; the AAD is the message from the IKE header through the SK
  payload's generic header (SKF: through Total Fragments), IV excluded.

``initiator`` everywhere is *our* role as the original initiator of the IKE SA: we
encrypt with SK_ei/SK_ai and decrypt with SK_er/SK_ar when it is True.  A failed
ICV raises :class:`IntegrityError` (an :class:`erebus.crypto.seal.AuthenticationError`,
so a :class:`~erebus.errors.ParseError`: drop the message, RFC 7296 section 2.21.2);
anything malformed raises ParseError.

AUTH (section 2.15, RFC 7427)::

    InitiatorSignedOctets = RealMessage1 | NonceRData | prf(SK_pi, RestOfInitIDPayload)
    ResponderSignedOctets = RealMessage2 | NonceIData | prf(SK_pr, RestOfRespIDPayload)
    PSK: AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)

RealMessage is the IKE_SA_INIT message exactly as sent; RestOfIDPayload is the ID
payload without its generic header.  A peer AUTH that does not verify raises
:class:`AuthFailed` (fatal for the IKE SA, not a ParseError).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature, encode_dss_signature)
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ..crypto.seal import AuthenticationError
from ..errors import ErebusError, ParseError
from ..wire import ike as w
from ..wire.ike import (
    AUTH, HEADER_LEN, SK, SKF, IkeHeader, IkeMessage, Proposal, Transform, build_header,
    build_payloads, parse_header, parse_payloads)

__all__ = [
    "IkeCryptoError", "InvalidKeyExchange", "IntegrityError", "AuthFailed",
    "DiffieHellman", "KE_LENGTHS", "MODP_2048_PRIME",
    "Prf", "PRFS", "get_prf", "prf_plus", "IkeSuite", "ike_proposals",
    "ESP_TRANSFORM_IDS", "esp_proposal", "esp_transform_name", "esp_key_lengths",
    "IkeSaKeys", "skeyseed", "rekey_skeyseed", "derive_ike_sa_keys", "ike_sa_keys",
    "rekeyed_ike_sa_keys", "ChildSaKeys", "child_keymat", "child_sa_keys",
    "SkDecrypted", "encrypt_sk", "encrypt_sk_fragments", "decrypt_sk", "decrypt_message",
    "FragmentCollector",
    "KEY_PAD", "signed_octets", "psk_auth", "sign_auth", "verify_auth", "HashRefused",
    "HASH_NAMES", "DH_STRENGTH",
    "ALGID_SHA256_WITH_RSA", "ALGID_SHA384_WITH_RSA", "ALGID_SHA512_WITH_RSA",
    "ALGID_RSASSA_PSS_SHA256", "ALGID_RSASSA_PSS_SHA384", "ALGID_RSASSA_PSS_SHA512",
    "ALGID_ECDSA_WITH_SHA256", "ALGID_ECDSA_WITH_SHA384", "ALGID_ECDSA_WITH_SHA512",
    "ALGID_ED25519",
    "nat_detection_hash", "new_ike_spi", "new_esp_spi", "new_nonce",
]


# -- errors -----------------------------------------------------------------------------

class IkeCryptoError(ParseError):
    """A peer's value that fails a cryptographic check: drop it (the base class)."""


class InvalidKeyExchange(IkeCryptoError):
    """A KE public value that is malformed or unsafe (wrong length, out of range, not
    on the curve, a low-order X25519 point)."""


class IntegrityError(AuthenticationError, IkeCryptoError):
    """An SK/SKF payload whose ICV does not verify."""


class AuthFailed(ErebusError):
    """The peer's AUTH payload does not verify, or uses a method or algorithm erebus
    does not accept: the IKE SA must not be established."""


class HashRefused(AuthFailed):
    """The peer's AUTH signature uses a hash outside the ones SIGNATURE_HASH_ALGORITHMS
    negotiated (RFC 7427), e.g. SHA-1 (AUTH method 1) when SHA-2 was agreed."""


# -- Diffie-Hellman ------------------------------------------------------------------------

MODP_2048_PRIME = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A0879"
    "8E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B"
    "0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA4836"
    "1C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804"
    "F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6"
    "955817183995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF", 16)  # RFC 3526

# group: (curve, coordinate bytes, field prime)
_ECP = {
    w.DH_ECP_256: (ec.SECP256R1, 32, 2**256 - 2**224 + 2**192 + 2**96 - 1),
    w.DH_ECP_384: (ec.SECP384R1, 48, 2**384 - 2**128 - 2**96 + 2**32 - 1),
    w.DH_ECP_521: (ec.SECP521R1, 66, 2**521 - 1),
}

KE_LENGTHS = {w.DH_MODP_2048: 256, w.DH_ECP_256: 64, w.DH_ECP_384: 96, w.DH_ECP_521: 132,
              w.DH_CURVE25519: 32}
# Security strength in bits (NIST SP 800-57 part 1, table 2): what "weaker" means.
DH_STRENGTH = {w.DH_MODP_2048: 112, w.DH_ECP_256: 128, w.DH_CURVE25519: 128, w.DH_ECP_384: 192,
               w.DH_ECP_521: 256}
DH_NAMES = {w.DH_MODP_2048: "modp2048", w.DH_ECP_256: "ecp256", w.DH_ECP_384: "ecp384",
            w.DH_ECP_521: "ecp521", w.DH_CURVE25519: "curve25519"}


class DiffieHellman:
    """One side's ephemeral key for ``group``; ``private`` (tests): the MODP exponent
    or EC scalar as an int or big-endian bytes, or the X25519 private key bytes."""

    __slots__ = ("group", "_key")

    def __init__(self, group: int, private: int | bytes | None = None):
        if group not in KE_LENGTHS:
            raise ValueError(f"DH group {group} not supported (supported: "
                             f"{', '.join(map(str, sorted(KE_LENGTHS)))})")
        self.group = group
        if group == w.DH_MODP_2048:
            if private is None:
                private = secrets.randbelow(MODP_2048_PRIME - 3) + 2
            elif isinstance(private, bytes):
                private = int.from_bytes(private, "big")
            if not 1 < private < MODP_2048_PRIME - 1:
                raise ValueError("MODP exponent out of range")
            self._key = private
        elif group == w.DH_CURVE25519:
            if private is None:
                self._key = x25519.X25519PrivateKey.generate()
            else:
                if isinstance(private, int):
                    private = private.to_bytes(32, "little")
                self._key = x25519.X25519PrivateKey.from_private_bytes(private)
        else:
            curve = _ECP[group][0]()
            if private is None:
                self._key = ec.generate_private_key(curve)
            else:
                if isinstance(private, bytes):
                    private = int.from_bytes(private, "big")
                self._key = ec.derive_private_key(private, curve)

    def __repr__(self) -> str:
        return f"DiffieHellman({DH_NAMES[self.group]})"

    def public_bytes(self) -> bytes:
        """The key exchange data of our KE payload."""
        if self.group == w.DH_MODP_2048:
            return pow(2, self._key, MODP_2048_PRIME).to_bytes(256, "big")
        if self.group == w.DH_CURVE25519:
            return self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return self._key.public_key().public_bytes(Encoding.X962,
                                                   PublicFormat.UncompressedPoint)[1:]

    def shared_secret(self, peer_public: bytes) -> bytes:
        """g^ir as the key derivation takes it, from the peer's KE data."""
        want = KE_LENGTHS[self.group]
        if len(peer_public) != want:
            raise InvalidKeyExchange(f"{DH_NAMES[self.group]}: public value of "
                                     f"{len(peer_public)} bytes (want {want})")
        if self.group == w.DH_MODP_2048:
            y = int.from_bytes(peer_public, "big")
            if not 1 < y < MODP_2048_PRIME - 1:
                raise InvalidKeyExchange("modp2048: public value out of range (RFC 6989)")
            return pow(y, self._key, MODP_2048_PRIME).to_bytes(256, "big")
        if self.group == w.DH_CURVE25519:
            try:
                secret = self._key.exchange(x25519.X25519PublicKey.from_public_bytes(
                    bytes(peer_public)))
            except ValueError:
                raise InvalidKeyExchange("curve25519: low-order public value") from None
            if not any(secret):
                raise InvalidKeyExchange("curve25519: all-zero shared secret (RFC 8031)")
            return secret
        curve_cls, width, p = _ECP[self.group]
        x = int.from_bytes(peer_public[:width], "big")
        y = int.from_bytes(peer_public[width:], "big")
        if x >= p or y >= p:
            raise InvalidKeyExchange(f"{DH_NAMES[self.group]}: coordinate not below p")
        try:
            peer = ec.EllipticCurvePublicKey.from_encoded_point(
                curve_cls(), b"\x04" + bytes(peer_public))
        except ValueError:
            raise InvalidKeyExchange(f"{DH_NAMES[self.group]}: point not on the curve "
                                     "(RFC 6989)") from None
        return self._key.exchange(ec.ECDH(), peer)


# -- PRF, integrity, encryption ------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Prf:
    id: int
    name: str
    digest: str
    size: int                  # output (and preferred key) length in bytes

    def __call__(self, key: bytes, data: bytes) -> bytes:
        return hmac.digest(key, data, self.digest)


PRFS = {p.id: p for p in (
    Prf(w.PRF_HMAC_SHA1, "prfsha1", "sha1", 20),
    Prf(w.PRF_HMAC_SHA2_256, "prfsha256", "sha256", 32),
    Prf(w.PRF_HMAC_SHA2_384, "prfsha384", "sha384", 48),
    Prf(w.PRF_HMAC_SHA2_512, "prfsha512", "sha512", 64),
)}


def get_prf(prf: Prf | int) -> Prf:
    if isinstance(prf, Prf):
        return prf
    try:
        return PRFS[prf]
    except KeyError:
        raise ValueError(f"PRF {prf} not supported") from None


def prf_plus(prf: Prf | int, key: bytes, seed: bytes, length: int) -> bytes:
    """prf+ (section 2.13): at most 255 blocks."""
    prf = get_prf(prf)
    if length > 255 * prf.size:
        raise ValueError(f"prf+ yields at most {255 * prf.size} bytes with {prf.name}")
    out, t, n = [], b"", 1
    have = 0
    while have < length:
        t = prf(key, t + seed + bytes((n,)))
        out.append(t)
        have += len(t)
        n += 1
    return b"".join(out)[:length]


@dataclass(frozen=True, slots=True)
class _Integ:
    name: str
    digest: str
    key_len: int
    icv_len: int


_INTEGS = {
    w.INTEG_HMAC_SHA1_96: _Integ("sha1", "sha1", 20, 12),
    w.INTEG_HMAC_SHA2_256_128: _Integ("sha256", "sha256", 32, 16),
    w.INTEG_HMAC_SHA2_384_192: _Integ("sha384", "sha384", 48, 24),
    w.INTEG_HMAC_SHA2_512_256: _Integ("sha512", "sha512", 64, 32),
}


@dataclass(frozen=True, slots=True)
class _Encr:
    name: str                  # strongSwan's name, {bits} for the key length
    key_bits: tuple[int, ...]
    aead: str | None           # None: AES-CBC
    salt_len: int
    iv_len: int
    icv_len: int               # AEAD only
    block_len: int


_ENCRS = {
    w.ENCR_AES_CBC: _Encr("aes{bits}", (128, 192, 256), None, 0, 16, 0, 16),
    w.ENCR_AES_GCM_16: _Encr("aes{bits}gcm16", (128, 192, 256), "gcm", 4, 8, 16, 1),
    w.ENCR_AES_CCM_8: _Encr("aes{bits}ccm8", (128, 192, 256), "ccm", 3, 8, 8, 1),
    w.ENCR_AES_CCM_12: _Encr("aes{bits}ccm12", (128, 192, 256), "ccm", 3, 8, 12, 1),
    w.ENCR_AES_CCM_16: _Encr("aes{bits}ccm16", (128, 192, 256), "ccm", 3, 8, 16, 1),
    w.ENCR_CHACHA20_POLY1305: _Encr("chacha20poly1305", (256,), "chacha", 4, 8, 16, 1),
}


@dataclass(frozen=True, slots=True)
class IkeSuite:
    """The algorithms of an IKE SA: encryption (with its key length in bits), integrity
    (INTEG_NONE with an AEAD), PRF and DH group.  ``IkeSuite.parse("aes256gcm16-
    prfsha256-curve25519")`` takes strongSwan's proposal names."""

    encr: int
    key_bits: int
    integ: int
    prf: int
    dh: int

    def __post_init__(self) -> None:
        e = _ENCRS.get(self.encr)
        if e is None:
            raise ValueError(f"IKE encryption {self.encr} not supported")
        if self.key_bits not in e.key_bits:
            raise ValueError(f"{e.name.format(bits='')}: key of {self.key_bits} bits")
        if e.aead is None and self.integ not in _INTEGS:
            raise ValueError(f"AES-CBC needs an integrity algorithm (not {self.integ})")
        if e.aead is not None and self.integ != w.INTEG_NONE:
            raise ValueError("an AEAD cipher takes no integrity algorithm")
        get_prf(self.prf)
        if self.dh not in KE_LENGTHS:
            raise ValueError(f"DH group {self.dh} not supported")

    @property
    def _e(self) -> _Encr:
        return _ENCRS[self.encr]

    @property
    def aead(self) -> bool:
        return self._e.aead is not None

    @property
    def encr_key_len(self) -> int:
        """Length of SK_ei/SK_er: the key and, for an AEAD, its salt."""
        return self.key_bits // 8 + self._e.salt_len

    @property
    def integ_key_len(self) -> int:
        return _INTEGS[self.integ].key_len if self.integ else 0

    @property
    def iv_len(self) -> int:
        return self._e.iv_len

    @property
    def icv_len(self) -> int:
        return self._e.icv_len if self.aead else _INTEGS[self.integ].icv_len

    @property
    def block_len(self) -> int:
        return self._e.block_len

    @property
    def prf_function(self) -> Prf:
        return PRFS[self.prf]

    @property
    def name(self) -> str:
        parts = [self._e.name.format(bits=self.key_bits)]
        if self.integ:
            parts.append(_INTEGS[self.integ].name)
        parts += [PRFS[self.prf].name, DH_NAMES[self.dh]]
        return "-".join(parts)

    def __str__(self) -> str:
        return self.name

    def transforms(self) -> list[Transform]:
        key_length = None if self.encr == w.ENCR_CHACHA20_POLY1305 else self.key_bits
        out = [Transform(w.TRANSFORM_ENCR, self.encr, key_length),
               Transform(w.TRANSFORM_PRF, self.prf)]
        if self.integ:
            out.append(Transform(w.TRANSFORM_INTEG, self.integ))
        out.append(Transform(w.TRANSFORM_DH, self.dh))
        return out

    def proposal(self, number: int = 1, spi: bytes = b"") -> Proposal:
        """The IKE proposal offering exactly this suite (``spi``: the new IKE SPI when
        rekeying the IKE SA, 8 bytes; empty in IKE_SA_INIT)."""
        return Proposal(number, w.PROTO_IKE, spi, self.transforms())

    @classmethod
    def from_proposal(cls, proposal: Proposal) -> IkeSuite:
        """The suite a responder chose: exactly one transform of each type (and no
        INTEG with an AEAD).  ParseError if that is not what the proposal says, or it
        names an algorithm erebus does not speak (it cannot have been offered)."""
        if proposal.protocol != w.PROTO_IKE:
            raise ParseError(f"proposal for protocol {proposal.protocol}, not IKE")
        chosen: dict[int, Transform] = {}
        for t in proposal.transforms:
            if t.type in chosen:
                raise ParseError(f"chosen proposal has two transforms of type {t.type}")
            chosen[t.type] = t
        for need in (w.TRANSFORM_ENCR, w.TRANSFORM_PRF, w.TRANSFORM_DH):
            if need not in chosen:
                raise ParseError(f"chosen proposal lacks a transform of type {need}")
        encr = chosen[w.TRANSFORM_ENCR]
        key_bits = encr.key_length
        if key_bits is None and encr.id == w.ENCR_CHACHA20_POLY1305:
            key_bits = 256
        integ = chosen.get(w.TRANSFORM_INTEG)
        try:
            return cls(encr.id, key_bits if key_bits is not None else -1,
                       integ.id if integ else w.INTEG_NONE,
                       chosen[w.TRANSFORM_PRF].id, chosen[w.TRANSFORM_DH].id)
        except ValueError as exc:
            raise ParseError(f"chosen proposal: {exc}") from None

    @classmethod
    def parse(cls, text: str) -> IkeSuite:
        """strongSwan-style ``encr[-integ][-prf]-dh``: ``aes128``/``aes192``/``aes256``
        (CBC), ``aes256gcm16``, ``aes128ccm12``, ``chacha20poly1305``; ``sha1``,
        ``sha256``, ``sha384``, ``sha512``; ``prfsha256`` ... (default: the integrity
        algorithm's hash, or prfsha256 with an AEAD); ``modp2048``, ``ecp256``,
        ``ecp384``, ``ecp521``, ``curve25519`` (alias ``x25519``)."""
        tokens = text.strip().lower().split("-")
        encr_names = {e.name.format(bits=b): (eid, b) for eid, e in _ENCRS.items()
                      for b in e.key_bits}
        if not tokens or tokens[0] not in encr_names:
            raise ValueError(f"{text!r}: unknown encryption {tokens[0]!r} (known: "
                             f"{', '.join(sorted(encr_names))})")
        encr, bits = encr_names[tokens[0]]
        integ = prf = dh = None
        integ_names = {i.name: iid for iid, i in _INTEGS.items()}
        prf_names = {p.name: pid for pid, p in PRFS.items()}
        dh_names = {n: g for g, n in DH_NAMES.items()} | {"x25519": w.DH_CURVE25519}
        for tok in tokens[1:]:
            if tok in integ_names and integ is None and prf is None and dh is None:
                integ = integ_names[tok]
            elif tok in prf_names and prf is None and dh is None:
                prf = prf_names[tok]
            elif tok in dh_names and dh is None:
                dh = dh_names[tok]
            else:
                raise ValueError(f"{text!r}: unexpected {tok!r} (encr-[integ-][prf-]dh)")
        if dh is None:
            raise ValueError(f"{text!r}: no DH group")
        if prf is None:
            prf = w.PRF_HMAC_SHA2_256 if integ is None else \
                prf_names["prf" + _INTEGS[integ].name]
        return cls(encr, bits, integ if integ is not None else w.INTEG_NONE, prf, dh)


def ike_proposals(suites, spi: bytes = b"") -> list[Proposal]:
    """One proposal per suite, numbered from 1 (for IKE_SA_INIT's SA payload)."""
    return [s.proposal(i + 1, spi) for i, s in enumerate(suites)]


# -- ESP proposals (names as in erebus.ipsec.transforms) -----------------------------------

ESP_TRANSFORM_IDS: dict[str, tuple[int, int | None, int]] = {
    "aes128gcm16": (w.ENCR_AES_GCM_16, 128, w.INTEG_NONE),
    "aes192gcm16": (w.ENCR_AES_GCM_16, 192, w.INTEG_NONE),
    "aes256gcm16": (w.ENCR_AES_GCM_16, 256, w.INTEG_NONE),
    "chacha20poly1305": (w.ENCR_CHACHA20_POLY1305, None, w.INTEG_NONE),
    "aes128-sha256": (w.ENCR_AES_CBC, 128, w.INTEG_HMAC_SHA2_256_128),
    "aes192-sha256": (w.ENCR_AES_CBC, 192, w.INTEG_HMAC_SHA2_256_128),
    "aes256-sha256": (w.ENCR_AES_CBC, 256, w.INTEG_HMAC_SHA2_256_128),
    "aes256-sha384": (w.ENCR_AES_CBC, 256, w.INTEG_HMAC_SHA2_384_192),
    "aes256-sha512": (w.ENCR_AES_CBC, 256, w.INTEG_HMAC_SHA2_512_256),
}


def esp_key_lengths(name: str) -> tuple[int, int]:
    """(encryption key length with the salt, integrity key length) of an ESP transform,
    as :class:`erebus.ipsec.transforms.Transform` has them (``key_len``,
    ``integrity_key_len``)."""
    encr, bits, integ = ESP_TRANSFORM_IDS[name.lower()]
    e = _ENCRS[encr]
    return (bits or 256) // 8 + e.salt_len, _INTEGS[integ].key_len if integ else 0


def esp_proposal(name: str, spi: bytes | int, *, number: int = 1, esn: bool | None = False,
                 dh: int = w.DH_NONE) -> Proposal:
    """An ESP proposal for one transform: ``spi`` is our inbound SPI (4 bytes), ``esn``
    True/False to require or refuse extended sequence numbers, None to let the
    responder choose; ``dh`` a group for PFS in CREATE_CHILD_SA (none in IKE_AUTH)."""
    encr, bits, integ = ESP_TRANSFORM_IDS[name.lower()]
    if isinstance(spi, int):
        spi = spi.to_bytes(4, "big")
    if len(spi) != 4:
        raise ValueError("an ESP SPI is 4 bytes")
    ts = [Transform(w.TRANSFORM_ENCR, encr, bits)]
    if integ:
        ts.append(Transform(w.TRANSFORM_INTEG, integ))
    if dh:
        ts.append(Transform(w.TRANSFORM_DH, dh))
    if esn is None:
        ts += [Transform(w.TRANSFORM_ESN, w.ESN_YES), Transform(w.TRANSFORM_ESN, w.ESN_NO)]
    else:
        ts.append(Transform(w.TRANSFORM_ESN, w.ESN_YES if esn else w.ESN_NO))
    return Proposal(number, w.PROTO_ESP, spi, ts)


def esp_transform_name(proposal: Proposal) -> tuple[str, bool]:
    """The ESP transform a responder chose (a name of ``ESP_TRANSFORM_IDS``) and whether
    it chose ESN; ParseError if the proposal is not a single known choice."""
    if proposal.protocol != w.PROTO_ESP or len(proposal.spi) != 4:
        raise ParseError("chosen proposal is not ESP with a 4-byte SPI")
    by_type: dict[int, Transform] = {}
    for t in proposal.transforms:
        if t.type in by_type:
            raise ParseError(f"chosen ESP proposal has two transforms of type {t.type}")
        by_type[t.type] = t
    encr = by_type.get(w.TRANSFORM_ENCR)
    if encr is None:
        raise ParseError("chosen ESP proposal lacks an encryption transform")
    integ = by_type.get(w.TRANSFORM_INTEG)
    key = (encr.id, encr.key_length, integ.id if integ else w.INTEG_NONE)
    for name, ids in ESP_TRANSFORM_IDS.items():
        if ids == key:
            esn = by_type.get(w.TRANSFORM_ESN)
            return name, bool(esn and esn.id == w.ESN_YES)
    raise ParseError(f"chosen ESP transform {key} is not one erebus speaks")


# -- key derivation ---------------------------------------------------------------------

@dataclass(slots=True, repr=False)
class IkeSaKeys:
    """The seven keys of an IKE SA (section 2.14) and the suite they are for."""

    suite: IkeSuite
    sk_d: bytes
    sk_ai: bytes
    sk_ar: bytes
    sk_ei: bytes
    sk_er: bytes
    sk_pi: bytes
    sk_pr: bytes

    def __repr__(self) -> str:
        return f"IkeSaKeys({self.suite.name})"

    @property
    def prf(self) -> Prf:
        return self.suite.prf_function


def skeyseed(prf: Prf | int, ni: bytes, nr: bytes, shared: bytes) -> bytes:
    return get_prf(prf)(ni + nr, shared)


def rekey_skeyseed(old_prf: Prf | int, old_sk_d: bytes, shared: bytes, ni: bytes,
                   nr: bytes) -> bytes:
    """Section 2.18: with the *old* IKE SA's PRF and SK_d, the new g^ir and the nonces
    of the CREATE_CHILD_SA exchange (Ni from its initiator)."""
    return get_prf(old_prf)(old_sk_d, shared + ni + nr)


def derive_ike_sa_keys(suite: IkeSuite, seed: bytes, ni: bytes, nr: bytes, spi_i: bytes,
                       spi_r: bytes) -> IkeSaKeys:
    prf = suite.prf_function
    p, a, e = prf.size, suite.integ_key_len, suite.encr_key_len
    km = prf_plus(prf, seed, ni + nr + spi_i + spi_r, 3 * p + 2 * a + 2 * e)
    cuts, pos = [], 0
    for n in (p, a, a, e, e, p, p):
        cuts.append(km[pos:pos + n])
        pos += n
    return IkeSaKeys(suite, *cuts)


def ike_sa_keys(suite: IkeSuite, shared: bytes, ni: bytes, nr: bytes, spi_i: bytes,
                spi_r: bytes) -> IkeSaKeys:
    """The keys after IKE_SA_INIT: ``shared`` is g^ir, ``ni``/``nr`` the nonce data,
    ``spi_i``/``spi_r`` the 8-byte SPIs of the header."""
    return derive_ike_sa_keys(suite, skeyseed(suite.prf, ni, nr, shared), ni, nr,
                              spi_i, spi_r)


def rekeyed_ike_sa_keys(old: IkeSaKeys, suite: IkeSuite, shared: bytes, ni: bytes,
                        nr: bytes, spi_i: bytes, spi_r: bytes) -> IkeSaKeys:
    """The new IKE SA's keys after a CREATE_CHILD_SA rekey: ``spi_i`` is the SPI of the
    rekey exchange's initiator (from its proposal), ``spi_r`` the responder's."""
    seed = rekey_skeyseed(old.prf, old.sk_d, shared, ni, nr)
    return derive_ike_sa_keys(suite, seed, ni, nr, spi_i, spi_r)


@dataclass(slots=True, repr=False)
class ChildSaKeys:
    """KEYMAT split (section 2.17): the initiator-to-responder SA's encryption and
    integrity keys, then the other direction's.  "Initiator" is the initiator of the
    exchange that created the Child SA (IKE_AUTH: the IKE SA's initiator)."""

    encr_i: bytes
    integ_i: bytes
    encr_r: bytes
    integ_r: bytes

    def __repr__(self) -> str:
        return f"ChildSaKeys({len(self.encr_i)}+{len(self.integ_i)} bytes per direction)"

    def outbound(self, initiator: bool = True) -> tuple[bytes, bytes]:
        """(key, integrity_key) of the SA we send on, as
        ``SecurityAssociation(peer_spi, transform, key, integrity_key)`` takes them."""
        return (self.encr_i, self.integ_i) if initiator else (self.encr_r, self.integ_r)

    def inbound(self, initiator: bool = True) -> tuple[bytes, bytes]:
        return (self.encr_r, self.integ_r) if initiator else (self.encr_i, self.integ_i)


def child_keymat(prf: Prf | int, sk_d: bytes, ni: bytes, nr: bytes, length: int,
                 shared: bytes | None = None) -> bytes:
    """KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr)."""
    return prf_plus(prf, sk_d, (shared or b"") + ni + nr, length)


def child_sa_keys(ike: IkeSaKeys, ni: bytes, nr: bytes, key_len: int, integ_key_len: int,
                  shared: bytes | None = None) -> ChildSaKeys:
    """The ESP keys of a Child SA: ``key_len``/``integ_key_len`` per direction (an
    AEAD's salt included: use ``Transform.key_len``/``integrity_key_len`` or
    :func:`esp_key_lengths`); ``shared``: g^ir of a CREATE_CHILD_SA with PFS."""
    km = child_keymat(ike.prf, ike.sk_d, ni, nr, 2 * (key_len + integ_key_len), shared)
    a, b = key_len, key_len + integ_key_len
    return ChildSaKeys(km[:a], km[a:b], km[b:b + key_len], km[b + key_len:])


# -- SK / SKF protection ---------------------------------------------------------------------

_FRAGMENT = struct.Struct("!HH")     # SKF: fragment number, total fragments


def _direction_keys(keys: IkeSaKeys, sender_initiator: bool) -> tuple[bytes, bytes]:
    if sender_initiator:
        return keys.sk_ei, keys.sk_ai
    return keys.sk_er, keys.sk_ar


def _aead(suite: IkeSuite, enc_key: bytes):
    kind = suite._e.aead
    key = enc_key[:suite.key_bits // 8]
    if kind == "gcm":
        return AESGCM(key)
    if kind == "ccm":
        return AESCCM(key, tag_length=suite.icv_len)
    return ChaCha20Poly1305(key)


def _seal(suite: IkeSuite, enc_key: bytes, integ_key: bytes, prefix: bytes, inner: bytes,
          iv: bytes | None) -> bytes:
    """IV | ciphertext | ICV for the SK/SKF payload whose preceding bytes (header with
    final length, outer payloads, the payload's own header) are ``prefix``."""
    bs = suite.block_len
    pad = (-(len(inner) + 1)) % bs
    plain = inner + bytes(pad) + bytes((pad,))
    if iv is None:
        iv = os.urandom(suite.iv_len)
    elif len(iv) != suite.iv_len:
        raise ValueError(f"{suite.name}: IV of {len(iv)} bytes (want {suite.iv_len})")
    if suite.aead:
        salt = enc_key[suite.key_bits // 8:]
        return iv + _aead(suite, enc_key).encrypt(salt + iv, plain, prefix)
    enc = Cipher(algorithms.AES(enc_key), modes.CBC(iv)).encryptor()
    ct = enc.update(plain) + enc.finalize()
    icv = hmac.digest(integ_key, prefix + iv + ct, _INTEGS[suite.integ].digest)
    return iv + ct + icv[:suite.icv_len]


def _sealed_len(suite: IkeSuite, inner_len: int) -> int:
    bs = suite.block_len
    return suite.iv_len + inner_len + 1 + (-(inner_len + 1)) % bs + suite.icv_len


def _check_role(message: IkeMessage, initiator: bool) -> None:
    if message.initiator != initiator:
        raise ValueError("the Initiator flag does not match our role "
                         f"({'initiator' if initiator else 'responder'})")


def encrypt_sk(keys: IkeSaKeys, message: IkeMessage, *, initiator: bool,
               iv: bytes | None = None) -> bytes:
    """The protected message: ``message``'s header and, in one SK payload, its
    ``payloads`` (the plaintext inner payloads).  ``initiator``: our role (must agree
    with the Initiator flag); ``iv``: for tests, else random."""
    _check_role(message, initiator)
    first, inner = build_payloads(message.payloads)
    suite = keys.suite
    enc_key, integ_key = _direction_keys(keys, initiator)
    sk_len = SK.HEADER_LEN + _sealed_len(suite, len(inner))
    header = build_header(message.spi_i, message.spi_r, w.PT_SK, message.exchange,
                          message.flags, message.message_id, HEADER_LEN + sk_len,
                          message.version)
    prefix = header + w.GENERIC.pack(first, 0, sk_len)
    return prefix + _seal(suite, enc_key, integ_key, prefix, inner, iv)


def encrypt_sk_fragments(keys: IkeSaKeys, message: IkeMessage, *, initiator: bool,
                         max_size: int) -> list[bytes]:
    """The message cut into SKF messages of at most ``max_size`` bytes each (RFC 7383
    section 2.5; the IKE message, not counting IP/UDP headers or the non-ESP marker:
    1280 - 20 - 8 - 4 over IPv4 is a safe start)."""
    _check_role(message, initiator)
    first, inner = build_payloads(message.payloads)
    suite = keys.suite
    enc_key, integ_key = _direction_keys(keys, initiator)
    room = max_size - HEADER_LEN - SKF.HEADER_LEN - suite.iv_len - suite.icv_len
    room -= room % suite.block_len        # the padded plaintext, a whole number of blocks
    chunk = room - 1                       # at least the pad length byte
    if chunk < 1:
        raise ValueError(f"fragments of {max_size} bytes cannot carry data")
    pieces = [inner[i:i + chunk] for i in range(0, len(inner), chunk)] or [b""]
    if len(pieces) > 0xFFFF:
        raise ValueError("too many fragments")
    out = []
    for number, piece in enumerate(pieces, 1):
        skf_len = SKF.HEADER_LEN + _sealed_len(suite, len(piece))
        header = build_header(message.spi_i, message.spi_r, w.PT_SKF, message.exchange,
                              message.flags, message.message_id, HEADER_LEN + skf_len,
                              message.version)
        prefix = header + w.GENERIC.pack(first if number == 1 else 0, 0, skf_len) + \
            _FRAGMENT.pack(number, len(pieces))
        out.append(prefix + _seal(suite, enc_key, integ_key, prefix, piece, None))
    return out


@dataclass(slots=True)
class SkDecrypted:
    """A decrypted SK or SKF message: ``plaintext`` is the inner payload chain (padding
    removed) starting with ``first_payload``; ``fragment_number`` is 0 for SK."""

    header: IkeHeader
    outer: list
    first_payload: int
    plaintext: bytes
    fragment_number: int = 0
    total_fragments: int = 0

    def message(self) -> IkeMessage:
        """The message with its inner payloads parsed (not for a fragment)."""
        if self.fragment_number:
            raise ParseError("an SKF fragment: reassemble it with FragmentCollector")
        h = self.header
        return IkeMessage(h.spi_i, h.spi_r, h.exchange, h.flags, h.message_id,
                          self.outer + parse_payloads(self.first_payload, self.plaintext),
                          h.version)


def decrypt_sk(keys: IkeSaKeys, data: bytes, *, initiator: bool) -> SkDecrypted:
    """Check and decrypt a message protected by the peer (whose role is the opposite of
    ``initiator``: its Initiator flag must say so)."""
    header = parse_header(data)
    if header.length != len(data):
        raise ParseError(f"IKE header: length field {header.length}, "
                         f"message of {len(data)} bytes")
    if header.initiator == initiator:
        raise ParseError("the Initiator flag says this message is from our own side")
    payloads = parse_payloads(header.next_payload, memoryview(data)[HEADER_LEN:])
    if not payloads or not isinstance(payloads[-1], (SK, SKF)):
        raise ParseError("message has no SK or SKF payload")
    sk = payloads[-1]
    suite = keys.suite
    iv, ct, icv = sk.split(suite.iv_len, suite.icv_len)
    if len(ct) % suite.block_len:
        raise ParseError(f"SK payload: ciphertext of {len(ct)} bytes, not whole blocks")
    prefix_end = len(data) - len(sk.data)
    enc_key, integ_key = _direction_keys(keys, header.initiator)
    data = bytes(data)
    if suite.aead:
        salt = enc_key[suite.key_bits // 8:]
        try:
            plain = _aead(suite, enc_key).decrypt(salt + iv, ct + icv, data[:prefix_end])
        except InvalidTag:
            raise IntegrityError("SK payload: ICV does not verify") from None
    else:
        want = hmac.digest(integ_key, data[:len(data) - suite.icv_len],
                           _INTEGS[suite.integ].digest)[:suite.icv_len]
        if not hmac.compare_digest(want, icv):
            raise IntegrityError("SK payload: ICV does not verify")
        dec = Cipher(algorithms.AES(enc_key), modes.CBC(iv)).decryptor()
        plain = dec.update(ct) + dec.finalize()
    pad = plain[-1]
    if pad + 1 > len(plain):
        raise ParseError(f"SK payload: pad length {pad} in {len(plain)} bytes")
    plain = plain[:len(plain) - pad - 1]
    if isinstance(sk, SKF):
        return SkDecrypted(header, payloads[:-1], sk.first_payload, plain, sk.number, sk.total)
    return SkDecrypted(header, payloads[:-1], sk.first_payload, plain)


def decrypt_message(keys: IkeSaKeys, data: bytes, *, initiator: bool) -> IkeMessage:
    """:func:`decrypt_sk` and the inner payloads parsed; ParseError for a fragment."""
    return decrypt_sk(keys, data, initiator=initiator).message()


class FragmentCollector:
    """Reassembles the SKF fragments of one message at a time (RFC 7383 section 2.6):
    feed every :class:`SkDecrypted` of the expected message id; a whole message comes
    back once (SK messages come back at once).  A fragment with a larger total than
    the ones collected restarts the collection; one with a smaller total is dropped
    (ParseError)."""

    MAX_FRAGMENTS = 128

    def __init__(self) -> None:
        self._mid: int | None = None
        self._total = 0
        self._parts: dict[int, SkDecrypted] = {}

    def add(self, piece: SkDecrypted) -> IkeMessage | None:
        if not piece.fragment_number:
            return piece.message()
        if piece.total_fragments > self.MAX_FRAGMENTS:
            raise ParseError(f"SKF: {piece.total_fragments} fragments (at most "
                             f"{self.MAX_FRAGMENTS})")
        mid = piece.header.message_id
        if mid != self._mid or piece.total_fragments > self._total:
            self._mid, self._total, self._parts = mid, piece.total_fragments, {}
        elif piece.total_fragments < self._total:
            raise ParseError(f"SKF: total {piece.total_fragments} below {self._total}")
        self._parts.setdefault(piece.fragment_number, piece)
        if len(self._parts) < self._total:
            return None
        parts = [self._parts[i] for i in range(1, self._total + 1)]
        self._mid, self._total, self._parts = None, 0, {}
        first = parts[0]
        h = first.header
        inner = b"".join(p.plaintext for p in parts)
        return IkeMessage(h.spi_i, h.spi_r, h.exchange, h.flags, h.message_id,
                          first.outer + parse_payloads(first.first_payload, inner), h.version)


# -- AUTH (section 2.15, RFC 7427) ----------------------------------------------------------

KEY_PAD = b"Key Pad for IKEv2"

ALGID_SHA256_WITH_RSA = bytes.fromhex("300d06092a864886f70d01010b0500")
ALGID_SHA384_WITH_RSA = bytes.fromhex("300d06092a864886f70d01010c0500")
ALGID_SHA512_WITH_RSA = bytes.fromhex("300d06092a864886f70d01010d0500")
# RSASSA-PSS: hash, MGF1 with the same hash, salt as long as the hash; no trailerField
# (DEFAULT 1), NULL hash parameters, as strongSwan encodes them (RFC 7427 appendix A.4)
ALGID_RSASSA_PSS_SHA256 = bytes.fromhex(
    "304106092a864886f70d01010a3034a00f300d06096086480165030402010500a11c301a06092a864886"
    "f70d010108300d06096086480165030402010500a203020120")
ALGID_RSASSA_PSS_SHA384 = bytes.fromhex(
    "304106092a864886f70d01010a3034a00f300d06096086480165030402020500a11c301a06092a864886"
    "f70d010108300d06096086480165030402020500a203020130")
ALGID_RSASSA_PSS_SHA512 = bytes.fromhex(
    "304106092a864886f70d01010a3034a00f300d06096086480165030402030500a11c301a06092a864886"
    "f70d010108300d06096086480165030402030500a203020140")
ALGID_ECDSA_WITH_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")
ALGID_ECDSA_WITH_SHA384 = bytes.fromhex("300a06082a8648ce3d040303")
ALGID_ECDSA_WITH_SHA512 = bytes.fromhex("300a06082a8648ce3d040304")
ALGID_ED25519 = bytes.fromhex("300506032b6570")

HASH_NAMES = {w.HASH_SHA1: "sha1", w.HASH_SHA2_256: "sha256", w.HASH_SHA2_384: "sha384",
              w.HASH_SHA2_512: "sha512", w.HASH_IDENTITY: "identity"}
_SHA2 = frozenset((w.HASH_SHA2_256, w.HASH_SHA2_384, w.HASH_SHA2_512))
_HASHES = {w.HASH_SHA1: hashes.SHA1, w.HASH_SHA2_256: hashes.SHA256,
           w.HASH_SHA2_384: hashes.SHA384, w.HASH_SHA2_512: hashes.SHA512}
_OID_HASH = {bytes.fromhex("608648016503040201"): w.HASH_SHA2_256,
             bytes.fromhex("608648016503040202"): w.HASH_SHA2_384,
             bytes.fromhex("608648016503040203"): w.HASH_SHA2_512}
_OID_PKCS1 = {bytes.fromhex("2a864886f70d010105"): w.HASH_SHA1,      # sha1WithRSAEncryption
              bytes.fromhex("2a864886f70d01010b"): w.HASH_SHA2_256,
              bytes.fromhex("2a864886f70d01010c"): w.HASH_SHA2_384,
              bytes.fromhex("2a864886f70d01010d"): w.HASH_SHA2_512}
_OID_ECDSA = {bytes.fromhex("2a8648ce3d0401"): w.HASH_SHA1,          # ecdsa-with-SHA1
              bytes.fromhex("2a8648ce3d040302"): w.HASH_SHA2_256,
              bytes.fromhex("2a8648ce3d040303"): w.HASH_SHA2_384,
              bytes.fromhex("2a8648ce3d040304"): w.HASH_SHA2_512}
_OID_PSS = bytes.fromhex("2a864886f70d01010a")
_OID_MGF1 = bytes.fromhex("2a864886f70d010108")
_OID_ED25519 = bytes.fromhex("2b6570")
_ALGID_PKCS1 = {w.HASH_SHA2_256: ALGID_SHA256_WITH_RSA, w.HASH_SHA2_384: ALGID_SHA384_WITH_RSA,
                w.HASH_SHA2_512: ALGID_SHA512_WITH_RSA}
_ALGID_PSS = {w.HASH_SHA2_256: ALGID_RSASSA_PSS_SHA256, w.HASH_SHA2_384: ALGID_RSASSA_PSS_SHA384,
              w.HASH_SHA2_512: ALGID_RSASSA_PSS_SHA512}
_ALGID_ECDSA = {w.HASH_SHA2_256: ALGID_ECDSA_WITH_SHA256, w.HASH_SHA2_384: ALGID_ECDSA_WITH_SHA384,
                w.HASH_SHA2_512: ALGID_ECDSA_WITH_SHA512}
# RFC 4754 methods: (curve, hash, coordinate bytes)
_ECDSA_METHODS = {w.AUTH_ECDSA_256: (ec.SECP256R1, w.HASH_SHA2_256, 32),
                  w.AUTH_ECDSA_384: (ec.SECP384R1, w.HASH_SHA2_384, 48),
                  w.AUTH_ECDSA_521: (ec.SECP521R1, w.HASH_SHA2_512, 66)}


def signed_octets(keys: IkeSaKeys, *, initiator: bool, message: bytes, nonce: bytes,
                  identity) -> bytes:
    """The octets an AUTH payload signs or MACs.  ``initiator=True``: the initiator's
    (its IKE_SA_INIT request as sent, the responder's nonce, IDi, SK_pi); False: the
    responder's (its IKE_SA_INIT response, the initiator's nonce, IDr, SK_pr).
    ``identity`` is the IDi/IDr payload or its body (RestOfIDPayload)."""
    rest = identity if isinstance(identity, (bytes, bytearray)) else identity.body()
    sk_p = keys.sk_pi if initiator else keys.sk_pr
    return bytes(message) + bytes(nonce) + keys.prf(sk_p, bytes(rest))


def psk_auth(prf: Prf | int, secret: bytes, octets: bytes) -> bytes:
    """AUTH data of method 2: prf(prf(secret, "Key Pad for IKEv2"), octets)."""
    prf = get_prf(prf)
    return prf(prf(secret, KEY_PAD), octets)


def _hash(hash_id: int) -> hashes.HashAlgorithm:
    try:
        return _HASHES[hash_id]()
    except KeyError:
        raise ValueError(f"hash algorithm {hash_id} not supported") from None


def sign_auth(private_key, octets: bytes, *, method: int = w.AUTH_DIGITAL_SIGNATURE,
              hash_alg: int = w.HASH_SHA2_256, pss: bool = False) -> AUTH:
    """An AUTH payload signing ``octets`` with an RSA, EC or Ed25519 private key.
    Method 14 (default): RFC 7427 with ``hash_alg`` (RSA: PKCS#1 v1.5, or PSS with
    ``pss``; ECDSA: DER signature; Ed25519: no hash).  Method 1: RSA PKCS#1 v1.5
    with SHA-1; methods 9/10/11: ECDSA r | s on the curve the method names."""
    if method == w.AUTH_DIGITAL_SIGNATURE:
        if isinstance(private_key, rsa.RSAPrivateKey):
            h = _hash(hash_alg)
            if pss:
                sig = private_key.sign(octets, padding.PSS(padding.MGF1(h), h.digest_size), h)
                algid = _ALGID_PSS[hash_alg]
            else:
                sig = private_key.sign(octets, padding.PKCS1v15(), h)
                algid = _ALGID_PKCS1[hash_alg]
        elif isinstance(private_key, ec.EllipticCurvePrivateKey):
            sig = private_key.sign(octets, ec.ECDSA(_hash(hash_alg)))
            algid = _ALGID_ECDSA[hash_alg]
        elif isinstance(private_key, ed25519.Ed25519PrivateKey):
            sig, algid = private_key.sign(octets), ALGID_ED25519
        else:
            raise ValueError(f"cannot sign with {type(private_key).__name__}")
        return AUTH(method, w.join_digital_signature(algid, sig))
    if method == w.AUTH_RSA_SIG:
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise ValueError("AUTH method 1 needs an RSA key")
        return AUTH(method, private_key.sign(octets, padding.PKCS1v15(), hashes.SHA1()))
    if method in _ECDSA_METHODS:
        curve, hash_id, width = _ECDSA_METHODS[method]
        if not isinstance(private_key, ec.EllipticCurvePrivateKey) or \
                not isinstance(private_key.curve, curve):
            raise ValueError(f"AUTH method {method} needs a {curve.name} key")
        r, s = decode_dss_signature(private_key.sign(octets, ec.ECDSA(_hash(hash_id))))
        return AUTH(method, r.to_bytes(width, "big") + s.to_bytes(width, "big"))
    raise ValueError(f"AUTH method {method} is not a signature method erebus makes")


def _der_tlv(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """(tag, content, next position) of the DER element at ``pos``."""
    if pos + 2 > len(data):
        raise AuthFailed("AlgorithmIdentifier: truncated")
    tag, n = data[pos], data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 2 or pos + k > len(data):
            raise AuthFailed("AlgorithmIdentifier: bad length")
        n = int.from_bytes(data[pos:pos + k], "big")
        pos += k
    if pos + n > len(data):
        raise AuthFailed("AlgorithmIdentifier: truncated")
    return tag, data[pos:pos + n], pos + n


def _algorithm_identifier(der: bytes) -> tuple[bytes, bytes | None]:
    tag, seq, end = _der_tlv(der, 0)
    if tag != 0x30 or end != len(der):
        raise AuthFailed("AlgorithmIdentifier: not one SEQUENCE")
    tag, oid, pos = _der_tlv(seq, 0)
    if tag != 0x06:
        raise AuthFailed("AlgorithmIdentifier: no OID")
    if pos == len(seq):
        return oid, None
    _, _, end = _der_tlv(seq, pos)
    if end != len(seq):
        raise AuthFailed("AlgorithmIdentifier: trailing data")
    return oid, seq[pos:]


def _pss_parameters(params: bytes | None) -> tuple[int, int]:
    """(hash id, salt length) of RSASSA-PSS-params; SHA-1 defaults are refused."""
    if params is None:
        raise AuthFailed("RSASSA-PSS without parameters (SHA-1) is not accepted")
    tag, seq, end = _der_tlv(params, 0)
    if tag != 0x30 or end != len(params):
        raise AuthFailed("RSASSA-PSS parameters: not a SEQUENCE")
    hash_id = mgf_hash = None
    salt, pos = 20, 0
    while pos < len(seq):
        tag, content, pos = _der_tlv(seq, pos)
        if tag == 0xA0:
            oid, _ = _algorithm_identifier(content)
            hash_id = _OID_HASH.get(oid)
        elif tag == 0xA1:
            oid, inner = _algorithm_identifier(content)
            if oid != _OID_MGF1 or inner is None:
                raise AuthFailed("RSASSA-PSS: mask generation is not MGF1")
            mgf_hash = _OID_HASH.get(_algorithm_identifier(inner)[0])
        elif tag == 0xA2:
            itag, value, _ = _der_tlv(content, 0)
            if itag != 0x02 or not 0 < len(value) <= 2:
                raise AuthFailed("RSASSA-PSS: bad salt length")
            salt = int.from_bytes(value, "big")
        elif tag == 0xA3:
            itag, value, _ = _der_tlv(content, 0)
            if itag != 0x02 or value != b"\x01":
                raise AuthFailed("RSASSA-PSS: trailer field other than 1")
        else:
            raise AuthFailed(f"RSASSA-PSS parameters: unexpected tag {tag:#x}")
    if hash_id is None or mgf_hash != hash_id:
        raise AuthFailed("RSASSA-PSS: hash or MGF1 hash not SHA-2, or not the same")
    return hash_id, salt


def verify_auth(auth: AUTH, octets: bytes, *, public_key=None, psk: bytes | None = None,
                prf: Prf | int | None = None, allowed_hashes=None) -> int | None:
    """Check the peer's AUTH payload over ``octets`` (from :func:`signed_octets`) with
    its certificate's ``public_key`` or the ``psk`` (and the IKE SA's ``prf``).
    Returns the hash algorithm (HASH_*) a signature used (None for PSK, Ed25519
    gives HASH_IDENTITY).  ``allowed_hashes``: the hashes SIGNATURE_HASH_ALGORITHMS
    negotiated (None: the responder sent no such notify; an empty set: it did, with
    nothing in common).  Held to them, raising :class:`HashRefused` before anything is
    checked: a method 14 signature, whose AlgorithmIdentifier must name a negotiated
    hash (RFC 7427 section 4), and RSA-SHA1 (method 1) once a SHA-2 hash was
    negotiated.  The ECDSA methods 9-11 fix their hash by the method itself (RFC 7296
    section 3.8) and are not held to the notify.  Raises :class:`AuthFailed`."""
    method, data = auth.method, auth.data

    def refuse(what: str):
        names = ", ".join(HASH_NAMES.get(h, str(h)) for h in sorted(allowed_hashes)) or \
            "no hash in common"
        return HashRefused(f"{what} although SIGNATURE_HASH_ALGORITHMS negotiated "
                           f"{names} (RFC 7427)")

    def allow(hash_id: int, what: str) -> None:       # method 14 only
        if allowed_hashes is not None and hash_id not in allowed_hashes:
            raise refuse(what)
    try:
        if method == w.AUTH_PSK:
            if psk is None or prf is None:
                raise AuthFailed("peer authenticates with a PSK, none is configured")
            if not hmac.compare_digest(psk_auth(prf, psk, octets), data):
                raise AuthFailed("PSK AUTH does not verify")
            return None
        if public_key is None:
            raise AuthFailed(f"AUTH method {method} needs the peer's public key")
        if method == w.AUTH_RSA_SIG:
            if allowed_hashes is not None and allowed_hashes & _SHA2:
                raise refuse("an RSA-SHA1 signature (AUTH method 1, PKCS#1 v1.5 with SHA-1)")
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise AuthFailed("AUTH method 1 (RSA) with a non-RSA key")
            public_key.verify(data, octets, padding.PKCS1v15(), hashes.SHA1())
            return w.HASH_SHA1
        if method in _ECDSA_METHODS:
            curve, hash_id, width = _ECDSA_METHODS[method]
            if not isinstance(public_key, ec.EllipticCurvePublicKey) or \
                    not isinstance(public_key.curve, curve):
                raise AuthFailed(f"AUTH method {method} needs a {curve.name} key")
            if len(data) != 2 * width:
                raise AuthFailed(f"ECDSA signature of {len(data)} bytes (want {2 * width})")
            sig = encode_dss_signature(int.from_bytes(data[:width], "big"),
                                       int.from_bytes(data[width:], "big"))
            public_key.verify(sig, octets, ec.ECDSA(_hash(hash_id)))
            return hash_id
        if method != w.AUTH_DIGITAL_SIGNATURE:
            raise AuthFailed(f"AUTH method {method} not supported")
        try:
            algid, sig = w.split_digital_signature(data)
        except ParseError as exc:
            raise AuthFailed(str(exc)) from None
        oid, params = _algorithm_identifier(algid)
        if oid in _OID_PKCS1:
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise AuthFailed("RSA signature, non-RSA key")
            hash_id = _OID_PKCS1[oid]
            allow(hash_id, f"an RSA PKCS#1 v1.5 signature with {HASH_NAMES[hash_id]} "
                  "(AUTH method 14)")
            public_key.verify(sig, octets, padding.PKCS1v15(), _hash(hash_id))
            return hash_id
        if oid == _OID_PSS:
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise AuthFailed("RSASSA-PSS signature, non-RSA key")
            hash_id, salt = _pss_parameters(params)
            allow(hash_id, f"an RSASSA-PSS signature with {HASH_NAMES[hash_id]} "
                  "(AUTH method 14)")
            h = _hash(hash_id)
            public_key.verify(sig, octets, padding.PSS(padding.MGF1(h), salt), h)
            return hash_id
        if oid in _OID_ECDSA:
            if not isinstance(public_key, ec.EllipticCurvePublicKey):
                raise AuthFailed("ECDSA signature, non-EC key")
            hash_id = _OID_ECDSA[oid]
            allow(hash_id, f"an ECDSA signature with {HASH_NAMES[hash_id]} (AUTH method 14)")
            public_key.verify(sig, octets, ec.ECDSA(_hash(hash_id)))
            return hash_id
        if oid == _OID_ED25519:
            if not isinstance(public_key, ed25519.Ed25519PublicKey):
                raise AuthFailed("Ed25519 signature, non-Ed25519 key")
            allow(w.HASH_IDENTITY, "an Ed25519 signature (hash 'identity', RFC 8420)")
            public_key.verify(sig, octets)
            return w.HASH_IDENTITY
        raise AuthFailed(f"signature algorithm {algid.hex()} not supported")
    except InvalidSignature:
        raise AuthFailed(f"AUTH (method {method}) signature does not verify") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise AuthFailed(f"AUTH (method {method}): {exc}") from None


# -- NAT detection, SPIs and nonces ----------------------------------------------------------

def nat_detection_hash(spi_i: bytes, spi_r: bytes, address: str | bytes, port: int) -> bytes:
    """NAT_DETECTION_*_IP data: SHA-1(SPIi | SPIr | IP | port) (section 2.23); SPIr is
    zero in the IKE_SA_INIT request."""
    if isinstance(address, str):
        address = ipaddress.ip_address(address).packed
    return hashlib.sha1(spi_i + spi_r + bytes(address) + port.to_bytes(2, "big")).digest()


def new_ike_spi() -> bytes:
    while True:
        spi = os.urandom(8)
        if any(spi):
            return spi


def new_esp_spi() -> int:
    """A random inbound ESP SPI (0 to 255 are reserved)."""
    return 256 + secrets.randbelow(0xFFFFFFFF - 255)


def new_nonce(size: int = 32) -> bytes:
    """A nonce: at least 16 bytes and half the PRF key size (section 2.10)."""
    if not 16 <= size <= 256:
        raise ValueError("nonces are 16 to 256 bytes")
    return os.urandom(size)
