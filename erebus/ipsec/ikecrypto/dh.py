"""IKEv2 key exchange (:class:`DiffieHellman`, RFC 7296 section 2.14).

MODP-2048 (group 14, RFC 3526; Python ints), ECP-256/384/521 (groups 19/20/21, RFC
5903: the KE data is x | y, each padded to the field size, and the shared secret is
x alone) and Curve25519 (group 31, RFC 8031).  Peer values are checked (RFC 6989,
RFC 8031 section 2.1): 1 < y < p-1 for MODP, coordinates below p and the point on
the curve for ECP, a non-zero result for X25519; a bad one raises
:class:`InvalidKeyExchange`.

The private value comes from the ``rng`` (``n -> n bytes``) the caller passes, so an
initiator driven with a seeded rng sends the same KE data every run: the MODP
exponent and the EC scalar are 64 bits longer than the group's order before they
are reduced into range (a bias below 2**-64), the X25519 key is 32 bytes as drawn.
"""

from __future__ import annotations

import os
from typing import Callable

from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ...wire import ike as w
from .errors import InvalidKeyExchange

__all__ = ["DiffieHellman", "KE_LENGTHS", "MODP_2048_PRIME", "DH_STRENGTH", "DH_NAMES"]


MODP_2048_PRIME = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A0879"
    "8E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B"
    "0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA4836"
    "1C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804"
    "F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6"
    "955817183995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF", 16)  # RFC 3526

# group: (curve, coordinate bytes, field prime, order of the base point) (SEC 2, FIPS 186)
_ECP = {
    w.DH_ECP_256: (ec.SECP256R1, 32, 2**256 - 2**224 + 2**192 + 2**96 - 1,
                   0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551),
    w.DH_ECP_384: (ec.SECP384R1, 48, 2**384 - 2**128 - 2**96 + 2**32 - 1,
                   int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
                       "581A0DB248B0A77AECEC196ACCC52973", 16)),
    w.DH_ECP_521: (ec.SECP521R1, 66, 2**521 - 1,
                   int("01FF" + "FFFFFFFF" * 7 + "FFFFFFFA51868783BF2F966B7FCC0148F709A5D0"
                       "3BB5C9B8899C47AEBB6FB71E91386409", 16)),
}
_MARGIN = 8            # extra random bytes before reducing into a range

KE_LENGTHS = {w.DH_MODP_2048: 256, w.DH_ECP_256: 64, w.DH_ECP_384: 96, w.DH_ECP_521: 132,
              w.DH_CURVE25519: 32}
# Security strength in bits (NIST SP 800-57 part 1, table 2): what "weaker" means.
DH_STRENGTH = {w.DH_MODP_2048: 112, w.DH_ECP_256: 128, w.DH_CURVE25519: 128, w.DH_ECP_384: 192,
               w.DH_ECP_521: 256}
DH_NAMES = {w.DH_MODP_2048: "modp2048", w.DH_ECP_256: "ecp256", w.DH_ECP_384: "ecp384",
            w.DH_ECP_521: "ecp521", w.DH_CURVE25519: "curve25519"}


def _below(rng: Callable[[int], bytes], n: int) -> int:
    """A number in [0, n) from the rng, with a bias below 2**-64."""
    return int.from_bytes(rng((n.bit_length() + 7) // 8 + _MARGIN), "big") % n


class DiffieHellman:
    """One side's ephemeral key for ``group``, drawn from ``rng``; ``private`` (tests):
    the MODP exponent or EC scalar as an int or big-endian bytes, or the X25519
    private key bytes."""

    __slots__ = ("group", "_key")

    def __init__(self, group: int, private: int | bytes | None = None, *,
                 rng: Callable[[int], bytes] = os.urandom):
        if group not in KE_LENGTHS:
            raise ValueError(f"DH group {group} not supported (supported: "
                             f"{', '.join(map(str, sorted(KE_LENGTHS)))})")
        self.group = group
        if group == w.DH_MODP_2048:
            if private is None:
                private = _below(rng, MODP_2048_PRIME - 3) + 2
            elif isinstance(private, bytes):
                private = int.from_bytes(private, "big")
            if not 1 < private < MODP_2048_PRIME - 1:
                raise ValueError("MODP exponent out of range")
            self._key = private
        elif group == w.DH_CURVE25519:
            if private is None:
                private = rng(32)
            elif isinstance(private, int):
                private = private.to_bytes(32, "little")
            self._key = x25519.X25519PrivateKey.from_private_bytes(private)
        else:
            curve_cls, _, _, order = _ECP[group]
            if private is None:
                private = _below(rng, order - 1) + 1
            elif isinstance(private, bytes):
                private = int.from_bytes(private, "big")
            self._key = ec.derive_private_key(private, curve_cls())

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
        curve_cls, width, p, _ = _ECP[self.group]
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
