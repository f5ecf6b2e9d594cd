"""IKEv2 authentication (RFC 7296 section 2.15, RFC 7427)::

    InitiatorSignedOctets = RealMessage1 | NonceRData | prf(SK_pi, RestOfInitIDPayload)
    ResponderSignedOctets = RealMessage2 | NonceIData | prf(SK_pr, RestOfRespIDPayload)
    PSK: AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)

RealMessage is the IKE_SA_INIT message exactly as sent; RestOfIDPayload is the ID
payload without its generic header.  A peer AUTH that does not verify raises
:class:`AuthFailed` (fatal for the IKE SA, not a ParseError).
"""

from __future__ import annotations

import hmac

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature, encode_dss_signature)

from ...errors import ParseError
from ...wire import der
from ...wire import ike as w
from ...wire.ike import AUTH
from .errors import AuthFailed, HashRefused
from .keys import IkeSaKeys
from .suites import Prf, get_prf

__all__ = [
    "KEY_PAD", "signed_octets", "psk_auth", "sign_auth", "verify_auth", "HASH_NAMES",
    "ALGID_SHA256_WITH_RSA", "ALGID_SHA384_WITH_RSA", "ALGID_SHA512_WITH_RSA",
    "ALGID_RSASSA_PSS_SHA256", "ALGID_RSASSA_PSS_SHA384", "ALGID_RSASSA_PSS_SHA512",
    "ALGID_ECDSA_WITH_SHA256", "ALGID_ECDSA_WITH_SHA384", "ALGID_ECDSA_WITH_SHA512",
    "ALGID_ED25519",
]


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
    try:
        return der.tlv(data, pos)
    except ParseError as exc:
        raise AuthFailed(f"AlgorithmIdentifier: {exc}") from None


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
