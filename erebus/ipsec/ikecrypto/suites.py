"""IKEv2 algorithms: the PRFs, the IKE suites (:class:`IkeSuite`, strongSwan's
proposal names) and their proposals, and the ESP proposals of IKE (RFC 7296 section
3.3, RFC 5282, RFC 7634)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from ...crypto.seal import AeadSeal, CbcHmacSeal, Rng, SealOpen
from ...errors import ParseError
from ...wire import ike as w
from ...wire.ike import Proposal, Transform
from .dh import DH_NAMES, KE_LENGTHS

__all__ = ["Prf", "PRFS", "get_prf", "IkeSuite", "ike_proposals", "ESP_TRANSFORM_IDS",
           "esp_proposal", "esp_transform_name", "esp_key_lengths"]


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
    aead: str | None           # None: AES-CBC; else the erebus.crypto.aead algorithm
    salt_len: int
    iv_len: int
    icv_len: int               # AEAD only
    block_len: int


_ENCRS = {
    w.ENCR_AES_CBC: _Encr("aes{bits}", (128, 192, 256), None, 0, 16, 0, 16),
    w.ENCR_AES_GCM_16: _Encr("aes{bits}gcm16", (128, 192, 256), "aes-gcm", 4, 8, 16, 1),
    w.ENCR_AES_CCM_8: _Encr("aes{bits}ccm8", (128, 192, 256), "aes-ccm", 3, 8, 8, 1),
    w.ENCR_AES_CCM_12: _Encr("aes{bits}ccm12", (128, 192, 256), "aes-ccm", 3, 8, 12, 1),
    w.ENCR_AES_CCM_16: _Encr("aes{bits}ccm16", (128, 192, 256), "aes-ccm", 3, 8, 16, 1),
    w.ENCR_CHACHA20_POLY1305: _Encr("chacha20poly1305", (256,), "chacha20-poly1305", 4, 8,
                                    16, 1),
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

    def sealer(self, enc_key: bytes, integ_key: bytes, rng: Rng) -> SealOpen:
        """The SK protection of one direction with its SK_e and SK_a (an AEAD's SK_e
        ends with its salt), built once per key; ``rng`` gives the IVs."""
        e = self._e
        if e.aead is None:
            return CbcHmacSeal(enc_key, integ_key, digest=_INTEGS[self.integ].digest,
                               tag_len=self.icv_len, rng=rng)
        k = self.key_bits // 8
        # iv_base 0: unused, every SK payload draws a random IV (counter None)
        return AeadSeal(e.aead, enc_key[:k], enc_key[k:], iv_len=e.iv_len,
                        tag_len=self.icv_len, iv_base=0, rng=rng)

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
