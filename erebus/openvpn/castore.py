"""``capath DIR``: a directory of CA certificates and CRLs in OpenSSL's hashed layout,
read once, when the profile is read, as a hostile directory cannot abuse it.

2.6 hands the directory to OpenSSL's hashed-directory lookup (ssl_openssl.c
``tls_ctx_load_ca``: ``X509_LOOKUP_hash_dir``, PEM, and X509_V_FLAG_CRL_CHECK |
X509_V_FLAG_CRL_CHECK_ALL), which, when it needs the issuer named N, reads the files
``HASH.0``, ``HASH.1``, ... (and the CRLs ``HASH.r0``, ``HASH.r1``, ...) where HASH is
OpenSSL's hash of N in eight lowercase hex digits, stopping at the first one missing;
``openssl rehash`` (``c_rehash``) makes those names.  erebus reads the same files up
front, into the TLS context's store: at most :data:`MAX_ENTRIES` directory entries
looked at, :data:`MAX_FILES` hashed files, each at most ``files.MAX_FILE_SIZE`` and
:data:`MAX_TOTAL` bytes in all; a file that does not parse is a problem naming it (the
lookup would skip it without a word); a file OpenSSL's lookup would never open (not
under its subject's hash, or after a gap in the numbers) is left out with a warning.
The directory is not read again (2.6 reads it at each handshake).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from cryptography import x509
from OpenSSL import crypto

from ..files import MAX_FILE_SIZE, read_limited
from .material import CERT_LABELS, PemError, pem_blocks, short_reason

__all__ = ["MAX_ENTRIES", "MAX_FILES", "MAX_TOTAL", "CaPath", "CaPathError", "read_capath"]

MAX_ENTRIES = 10000          # directory entries looked at
MAX_FILES = 512              # hashed files read
MAX_TOTAL = 16 * 1024 * 1024  # bytes read from them in all
_HASHED = re.compile(r"([0-9a-f]{8})\.(r?)([0-9]{1,9})")


class CaPathError(ValueError):
    """A capath directory erebus will not use; ``file``: the file at fault, if one."""

    def __init__(self, message: str, file: str | None = None):
        super().__init__(message)
        self.file = file


@dataclass
class CaPath:
    directory: str
    certificates: list[bytes] = field(default_factory=list)     # DER
    crls: list[bytes] = field(default_factory=list)             # DER
    warnings: list[str] = field(default_factory=list)


def read_capath(directory: str) -> CaPath:
    """The certificates and CRLs OpenSSL's hashed lookup can find in ``directory``."""
    out = CaPath(directory)
    try:
        names = _hashed_names(directory)
    except OSError as exc:
        raise CaPathError(f"cannot read the directory {directory}: "
                          f"{exc.strerror or exc}") from None
    chains: dict[tuple[str, bool], list[int]] = {}
    for name in names:
        m = _HASHED.fullmatch(name)
        chains.setdefault((m.group(1), m.group(2) == "r"), []).append(int(m.group(3)))
    chosen = []
    for (hash_hex, is_crl), numbers in sorted(chains.items()):
        numbers.sort()
        run = 0
        while run < len(numbers) and numbers[run] == run:
            run += 1
        for n in numbers[run:]:
            name = f"{hash_hex}.{'r' if is_crl else ''}{n}"
            out.warnings.append(f"{os.path.join(directory, name)}: never read by OpenSSL's "
                                f"lookup (no {hash_hex}.{'r' if is_crl else ''}{run} "
                                "before it): left out; run 'openssl rehash' on the "
                                "directory")
        chosen += [(hash_hex, is_crl, n) for n in numbers[:run]]
    if len(chosen) > MAX_FILES:
        raise CaPathError(f"{directory} holds {len(chosen)} hashed files, more than the "
                          f"{MAX_FILES} erebus reads")
    total = 0
    for hash_hex, is_crl, n in chosen:
        path = os.path.join(directory, f"{hash_hex}.{'r' if is_crl else ''}{n}")
        if total >= MAX_TOTAL:
            raise CaPathError(f"{directory}: its hashed files hold more than the "
                              f"{MAX_TOTAL // (1024 * 1024)} MiB erebus reads", path)
        try:
            data = read_limited(path, min(MAX_FILE_SIZE, MAX_TOTAL - total))
        except OSError as exc:
            raise CaPathError(f"cannot read {path}: {exc.strerror or exc}", path) from None
        total += len(data)
        (_read_crls if is_crl else _read_certificates)(out, path, data, int(hash_hex, 16))
    return out


def _hashed_names(directory: str) -> list[str]:
    names = []
    with os.scandir(directory) as entries:
        for i, entry in enumerate(entries):
            if i >= MAX_ENTRIES:
                raise CaPathError(f"{directory} has more than {MAX_ENTRIES} entries")
            if _HASHED.fullmatch(entry.name):
                names.append(entry.name)
    return names


def _blocks(path: str, data: bytes, labels: tuple[bytes, ...], what: str) -> list:
    try:
        blocks = [b for b in pem_blocks(data) if b.label in labels]
    except PemError as exc:
        raise CaPathError(f"{path}: {exc}", path) from None
    if not blocks:
        raise CaPathError(f"{path}: no PEM {what} found (OpenSSL's lookup reads PEM)", path)
    return blocks


def _read_certificates(out: CaPath, path: str, data: bytes, named: int) -> None:
    certs = []
    for b in _blocks(path, data, CERT_LABELS, "certificate (-----BEGIN CERTIFICATE-----)"):
        try:
            certs.append((b.der, crypto.load_certificate(crypto.FILETYPE_ASN1, b.der)))
        except crypto.Error as exc:
            raise CaPathError(f"{path}: a certificate that does not parse "
                              f"({short_reason(exc) or 'OpenSSL cannot read it'})",
                              path) from None
    if not any(c.subject_name_hash() & 0xFFFFFFFF == named for _, c in certs):
        out.warnings.append(f"{path}: no certificate in it has the subject hash "
                            f"{named:08x} it is named by, so OpenSSL's lookup never "
                            "finds it: left out; run 'openssl rehash' on the directory")
        return
    out.certificates += [der for der, _ in certs]


def _read_crls(out: CaPath, path: str, data: bytes, named: int) -> None:
    from .tls import check_crl_der, name_hash      # OpenSSL's parser and name hash
    crls = []
    for b in _blocks(path, data, (b"X509 CRL",), "CRL (-----BEGIN X509 CRL-----)"):
        try:
            check_crl_der(b.der)
            issuer = x509.load_der_x509_crl(b.der).issuer.public_bytes()
            crls.append((b.der, name_hash(issuer)))
        except Exception as exc:     # noqa: BLE001 - OpenSSL's or cryptography's refusal
            raise CaPathError(f"{path}: a CRL that does not parse ({short_reason(exc)})",
                              path) from None
    if not any(h == named for _, h in crls):
        out.warnings.append(f"{path}: no CRL in it has the issuer hash {named:08x} it "
                            "is named by, so OpenSSL's lookup never finds it: left out; "
                            "run 'openssl rehash' on the directory")
        return
    out.crls += [der for der, _ in crls]
