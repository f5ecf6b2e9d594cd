"""OpenVPN's data-channel CBC ciphers and HMAC digests, by every name 2.6 accepts.

OpenVPN 2.6 hands the ``cipher`` / ``data-ciphers`` / ``auth`` words to OpenSSL 3
(crypto_openssl.c ``cipher_get`` and ``md_get``: ``EVP_CIPHER_fetch`` and
``EVP_MD_fetch``), which matches any of an algorithm's names, aliases and OIDs without
regard to case, and reports the algorithm under OpenVPN's name (``cipher_kt_name``,
``md_kt_name`` with its translation table: "SHA256", not OpenSSL's "SHA2-256").  So
``auth sha-256``, ``auth SHA2-256`` and ``auth 2.16.840.1.101.3.4.2.1`` are all SHA256,
``cipher bf`` and ``cipher blowfish`` both BF-CBC (checked against the stock 2.6.14 client
on OpenSSL 3.0: "Cipher 'BF-CBC' initialized with 128 bit key").

Each cipher's key length is OpenSSL's default (``EVP_CIPHER_key_length``, what 2.6's
``cipher_kt_key_size`` returns and key method 2 takes from the key block): BF-CBC,
CAST5-CBC, IDEA-CBC, SEED-CBC, RC2-CBC 128 bits, DES-CBC 64, DES-EDE-CBC 128 (two keys),
DES-EDE3-CBC 192.  The IV is one cipher block.  A block under 128 bits makes the
cipher "insecure" in 2.6's words (``cipher_kt_insecure``: SWEET32).

What erebus can compute comes from ``cryptography`` (ciphers; the old ones from
``cryptography.hazmat.decrepit``) and ``hashlib`` (HMAC digests); an algorithm the
local libraries lack, or one 2.6 knows but erebus does not implement (ARIA, DESX, the
CFB/OFB modes that change the packet id format), is an :class:`AlgorithmError` naming it.
Data tables and lookups only: no state, no I/O.
"""

from __future__ import annotations

import hmac
import warnings
from dataclasses import dataclass
from functools import cache
from typing import Callable

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.ciphers import Cipher, modes

__all__ = ["AlgorithmError", "CbcCipher", "Digest", "CBC_CIPHER_NAMES", "DIGEST_NAMES",
           "cbc_cipher", "digest", "canonical_cipher", "canonical_digest"]


class AlgorithmError(ValueError):
    """A cipher or digest name that is unknown, or known but not usable by erebus."""


# -- digests ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Digest:
    name: str            # OpenVPN's name (md_kt_name): what the OCC string and logs show
    hashlib_name: str
    size: int            # bytes: the HMAC output and the HMAC key taken from the key slot


# OpenVPN name -> (hashlib name, size, OpenSSL 3's other names and OIDs).  The names are
# those of OpenSSL 3.0's providers (providers/implementations/include/prov/names.h).
_DIGESTS: dict[str, tuple[str | None, int, tuple[str, ...]]] = {
    "MD5": ("md5", 16, ("SSL3-MD5", "1.2.840.113549.2.5")),
    "SHA1": ("sha1", 20, ("SHA-1", "SSL3-SHA1", "1.3.14.3.2.26")),
    "SHA224": ("sha224", 28, ("SHA2-224", "SHA-224", "2.16.840.1.101.3.4.2.4")),
    "SHA256": ("sha256", 32, ("SHA2-256", "SHA-256", "2.16.840.1.101.3.4.2.1")),
    "SHA384": ("sha384", 48, ("SHA2-384", "SHA-384", "2.16.840.1.101.3.4.2.2")),
    "SHA512": ("sha512", 64, ("SHA2-512", "SHA-512", "2.16.840.1.101.3.4.2.3")),
    "SHA512-224": ("sha512_224", 28, ("SHA2-512/224", "SHA-512/224",
                                      "2.16.840.1.101.3.4.2.5")),
    "SHA512-256": ("sha512_256", 32, ("SHA2-512/256", "SHA-512/256",
                                      "2.16.840.1.101.3.4.2.6")),
    "SHA3-224": ("sha3_224", 28, ("2.16.840.1.101.3.4.2.7",)),
    "SHA3-256": ("sha3_256", 32, ("2.16.840.1.101.3.4.2.8",)),
    "SHA3-384": ("sha3_384", 48, ("2.16.840.1.101.3.4.2.9",)),
    "SHA3-512": ("sha3_512", 64, ("2.16.840.1.101.3.4.2.10",)),
    "RIPEMD160": ("ripemd160", 20, ("RIPEMD-160", "RIPEMD", "RMD160", "1.3.36.3.2.1")),
    "SM3": ("sm3", 32, ("1.2.156.10197.1.401",)),
    "BLAKE2s256": ("blake2s", 32, ("BLAKE2S-256", "1.3.6.1.4.1.1722.12.2.2.8")),
    "BLAKE2b512": ("blake2b", 64, ("BLAKE2B-512", "1.3.6.1.4.1.1722.12.2.1.16")),
    "MD5-SHA1": ("md5-sha1", 36, ()),
    "MD4": ("md4", 16, ("1.2.840.113549.2.4",)),
    "WHIRLPOOL": ("whirlpool", 64, ("1.0.10118.3.0.55",)),
    # extendable-output functions: OpenSSL lists them, HMAC cannot use them
    "SHAKE128": (None, 16, ("SHAKE-128", "2.16.840.1.101.3.4.2.11")),
    "SHAKE256": (None, 32, ("SHAKE-256", "2.16.840.1.101.3.4.2.12")),
}

_DIGEST_ALIASES: dict[str, str] = {
    alias.upper(): name for name, (_, _, aliases) in _DIGESTS.items()
    for alias in (name, *aliases)}

DIGEST_NAMES = tuple(_DIGESTS)


def canonical_digest(name: str) -> str | None:
    """OpenVPN's name of digest ``name`` (any spelling OpenSSL 3 takes), ``None`` if
    unknown.  ``none`` is not a digest here (the caller handles ``auth none``)."""
    return _DIGEST_ALIASES.get(name.upper())


@cache
def _hmac_works(hashlib_name: str) -> bool:
    try:
        hmac.new(b"k", b"", hashlib_name).digest()
    except (ValueError, TypeError):
        return False
    return True


def digest(name: str) -> Digest:
    """The HMAC digest ``name`` names, or :class:`AlgorithmError` saying why not."""
    canonical = canonical_digest(name)
    if canonical is None:
        raise AlgorithmError(f"unsupported digest {name}: OpenVPN 2.6 does not know it "
                             "either (Message hash algorithm not found)")
    lib, size, _ = _DIGESTS[canonical]
    if lib is None:
        raise AlgorithmError(f"digest {canonical} is an extendable-output function; an "
                             "HMAC cannot use it")
    if not _hmac_works(lib):
        raise AlgorithmError(f"digest {canonical} is not available in this Python's "
                             f"crypto library (hashlib {lib!r}): erebus cannot compute "
                             "its HMAC")
    return Digest(canonical, lib, size)


# -- CBC ciphers -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CbcCipher:
    name: str            # OpenVPN's name: BF-CBC, AES-256-CBC
    key_len: int         # bytes, cipher_kt_key_size
    block_len: int       # bytes; the IV is one block
    algorithm: Callable[[bytes], object] | None   # key -> a cryptography algorithm

    @property
    def insecure(self) -> bool:
        """crypto_openssl.c ``cipher_kt_insecure``: a block under 128 bits (SWEET32)."""
        return self.block_len < 16


def _decrepit(attr: str):
    try:
        from cryptography.hazmat.decrepit.ciphers import algorithms as decrepit
    except ImportError:     # cryptography older than 43: no decrepit module
        return None
    return getattr(decrepit, attr, None)


def _aes(key: bytes):
    from cryptography.hazmat.primitives.ciphers.algorithms import AES
    return AES(key)


def _sm4(key: bytes):
    from cryptography.hazmat.primitives.ciphers.algorithms import SM4
    return SM4(key)


def _named(attr: str) -> Callable[[bytes], object]:
    def make(key: bytes):
        cls = _decrepit(attr)
        if cls is None:
            raise UnsupportedAlgorithm(attr)
        return cls(key)
    return make


def _des(key: bytes):
    """DES-CBC (K) and DES-EDE-CBC (K1 K2) as three-key EDE: K K K is single DES,
    K1 K2 K1 is OpenSSL's two-key DES-EDE."""
    triple = key * 3 if len(key) == 8 else key + key[:8] if len(key) == 16 else key
    return _named("TripleDES")(triple)


# OpenVPN name -> (key bytes, block bytes, factory or None if erebus lacks it, aliases)
_CBC: dict[str, tuple[int, int, Callable[[bytes], object] | None, tuple[str, ...]]] = {
    "AES-128-CBC": (16, 16, _aes, ("AES128", "2.16.840.1.101.3.4.1.2")),
    "AES-192-CBC": (24, 16, _aes, ("AES192", "2.16.840.1.101.3.4.1.22")),
    "AES-256-CBC": (32, 16, _aes, ("AES256", "2.16.840.1.101.3.4.1.42")),
    "CAMELLIA-128-CBC": (16, 16, _named("Camellia"), ("CAMELLIA128",
                                                      "1.2.392.200011.61.1.1.1.2")),
    "CAMELLIA-192-CBC": (24, 16, _named("Camellia"), ("CAMELLIA192",
                                                      "1.2.392.200011.61.1.1.1.3")),
    "CAMELLIA-256-CBC": (32, 16, _named("Camellia"), ("CAMELLIA256",
                                                      "1.2.392.200011.61.1.1.1.4")),
    "SEED-CBC": (16, 16, _named("SEED"), ("SEED", "1.2.410.200004.1.4")),
    "SM4-CBC": (16, 16, _sm4, ("SM4", "1.2.156.10197.1.104.2")),
    "BF-CBC": (16, 8, _named("Blowfish"), ("BF", "BLOWFISH", "1.3.6.1.4.1.3029.1.2")),
    "CAST5-CBC": (16, 8, _named("CAST5"), ("CAST-CBC", "CAST", "1.2.840.113533.7.66.10")),
    "IDEA-CBC": (16, 8, _named("IDEA"), ("IDEA", "1.3.6.1.4.1.188.7.1.1.2")),
    "RC2-CBC": (16, 8, _named("RC2"), ("RC2", "RC2-128", "1.2.840.113549.3.2")),
    "DES-CBC": (8, 8, _des, ("DES", "1.3.14.3.2.7")),
    "DES-EDE-CBC": (16, 8, _des, ()),
    "DES-EDE3-CBC": (24, 8, _des, ("DES3", "1.2.840.113549.3.7")),
    # known to 2.6 (OpenSSL 3 with the legacy provider), not to cryptography
    "RC2-40-CBC": (5, 8, None, ("RC2-40",)),
    "RC2-64-CBC": (8, 8, None, ("RC2-64",)),
    "DESX-CBC": (24, 8, None, ("DESX",)),
    "ARIA-128-CBC": (16, 16, None, ("ARIA128", "1.2.410.200046.1.1.2")),
    "ARIA-192-CBC": (24, 16, None, ("ARIA192", "1.2.410.200046.1.1.7")),
    "ARIA-256-CBC": (32, 16, None, ("ARIA256", "1.2.410.200046.1.1.12")),
}

_CBC_ALIASES: dict[str, str] = {
    alias.upper(): name for name, (_, _, _, aliases) in _CBC.items()
    for alias in (name, *aliases)}

CBC_CIPHER_NAMES = tuple(_CBC)

# Modes OpenSSL names that 2.6 takes in TLS mode but erebus does not implement (they use
# the long packet-id form, ssl.c tls_session_update_crypto_params_do_work), and modes 2.6
# refuses ("Cipher '%s' mode not supported").
_OTHER_MODES = ("-CFB", "-CFB1", "-CFB8", "-OFB")


def canonical_cipher(name: str) -> str | None:
    """OpenVPN's name of CBC cipher ``name`` (any spelling OpenSSL 3 takes), else None."""
    return _CBC_ALIASES.get(name.upper())


@cache
def _cipher_works(name: str) -> str | None:
    """None if cryptography can run ``name`` in CBC mode, else why not."""
    key_len, block, factory, _ = _CBC[name]
    if factory is None:
        return "cryptography has no implementation of it"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Cipher(factory(bytes(key_len)), modes.CBC(bytes(block))).encryptor()
    except (UnsupportedAlgorithm, ValueError, TypeError, AttributeError) as exc:
        return f"this cryptography build cannot run it ({exc or type(exc).__name__})"
    return None


def block_len(name: str) -> int:
    """The block bytes of CBC cipher ``name`` (any spelling), usable or not; 16 for a
    name this table lacks (no CBC cipher 2.6 speaks has a larger block)."""
    canonical = canonical_cipher(name)
    return _CBC[canonical][1] if canonical else 16


def key_len(name: str) -> int:
    """The key bytes of CBC cipher ``name`` (OpenVPN's name), usable or not."""
    return _CBC[name][0]


def cbc_cipher(name: str) -> CbcCipher:
    """The CBC cipher ``name`` names, or :class:`AlgorithmError` saying why not."""
    canonical = canonical_cipher(name)
    if canonical is None:
        upper = name.upper()
        if upper.endswith(_OTHER_MODES):
            raise AlgorithmError(f"cipher {name}: CFB and OFB modes are not supported by "
                                 "erebus (only CBC and the AEAD ciphers)")
        raise AlgorithmError(f"unsupported data cipher {name}")
    key_len, block, factory, _ = _CBC[canonical]
    why = _cipher_works(canonical)
    if why is not None:
        raise AlgorithmError(f"cipher {canonical} is not supported by erebus: {why}")
    return CbcCipher(canonical, key_len, block, factory)


def make_cbc(spec: CbcCipher, key: bytes):
    """The cryptography algorithm object of ``spec`` with ``key`` (deprecation warnings
    about the old ciphers silenced: using them is the profile's choice, warned once by
    the session in 2.6's words)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return spec.algorithm(bytes(key))
