"""The IKEv2 key schedule (RFC 7296 sections 2.13, 2.14, 2.17, 2.18)::

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
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ...crypto.seal import Rng, SealOpen
from .suites import IkeSuite, Prf, get_prf

__all__ = ["prf_plus", "IkeSaKeys", "skeyseed", "rekey_skeyseed", "derive_ike_sa_keys",
           "ike_sa_keys", "rekeyed_ike_sa_keys", "ChildSaKeys", "child_keymat",
           "child_sa_keys"]


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


@dataclass(slots=True, repr=False)
class IkeSaKeys:
    """The seven keys of an IKE SA (section 2.14) and the suite they are for; ``rng``
    gives the IVs of its SK payloads."""

    suite: IkeSuite
    sk_d: bytes
    sk_ai: bytes
    sk_ar: bytes
    sk_ei: bytes
    sk_er: bytes
    sk_pi: bytes
    sk_pr: bytes
    rng: Rng = field(default=os.urandom, compare=False)
    _sealers: dict = field(default_factory=dict, init=False, compare=False)

    def __repr__(self) -> str:
        return f"IkeSaKeys({self.suite.name})"

    def sealer(self, sender_initiator: bool) -> SealOpen:
        """The protection of what the IKE SA's initiator (True: SK_ei, SK_ai) or its
        responder (False: SK_er, SK_ar) sends; built at first use, then kept."""
        sealer = self._sealers.get(sender_initiator)
        if sealer is None:
            keys = (self.sk_ei, self.sk_ai) if sender_initiator else (self.sk_er, self.sk_ar)
            sealer = self._sealers[sender_initiator] = self.suite.sealer(*keys, self.rng)
        return sealer

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
                       spi_r: bytes, *, rng: Rng = os.urandom) -> IkeSaKeys:
    prf = suite.prf_function
    p, a, e = prf.size, suite.integ_key_len, suite.encr_key_len
    km = prf_plus(prf, seed, ni + nr + spi_i + spi_r, 3 * p + 2 * a + 2 * e)
    cuts, pos = [], 0
    for n in (p, a, a, e, e, p, p):
        cuts.append(km[pos:pos + n])
        pos += n
    return IkeSaKeys(suite, *cuts, rng=rng)


def ike_sa_keys(suite: IkeSuite, shared: bytes, ni: bytes, nr: bytes, spi_i: bytes,
                spi_r: bytes, *, rng: Rng = os.urandom) -> IkeSaKeys:
    """The keys after IKE_SA_INIT: ``shared`` is g^ir, ``ni``/``nr`` the nonce data,
    ``spi_i``/``spi_r`` the 8-byte SPIs of the header; ``rng`` for the SK IVs."""
    return derive_ike_sa_keys(suite, skeyseed(suite.prf, ni, nr, shared), ni, nr,
                              spi_i, spi_r, rng=rng)


def rekeyed_ike_sa_keys(old: IkeSaKeys, suite: IkeSuite, shared: bytes, ni: bytes,
                        nr: bytes, spi_i: bytes, spi_r: bytes, *,
                        rng: Rng | None = None) -> IkeSaKeys:
    """The new IKE SA's keys after a CREATE_CHILD_SA rekey: ``spi_i`` is the SPI of the
    rekey exchange's initiator (from its proposal), ``spi_r`` the responder's; the SK
    IVs come from ``rng``, by default the old SA's."""
    seed = rekey_skeyseed(old.prf, old.sk_d, shared, ni, nr)
    return derive_ike_sa_keys(suite, seed, ni, nr, spi_i, spi_r, rng=rng or old.rng)


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
