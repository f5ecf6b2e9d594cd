"""The TLS layer's view of a ``.ovpn`` profile: the :class:`~erebus.openvpn.tls.TlsSettings`
its options make, and the one :class:`~erebus.openvpn.tls.TlsContext` a tunnel builds
from them before anything is sent (``Profile.tls_settings()`` / ``Profile.tls_context()``
call these)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError
from .tls import TlsContext, TlsSettings

if TYPE_CHECKING:
    from .profile import Profile

__all__ = ["tls_settings", "tls_context"]


def tls_settings(profile: Profile) -> TlsSettings:
    """Everything the TLS layer checks, from ``profile``."""
    p = profile
    return TlsSettings(ca=p.ca, cert=p.cert, key=p.key, extra_certs=p.extra_certs,
                       remote_cert_tls=p.remote_cert_tls,
                       verify_x509_name=p.verify_x509_name,
                       tls_version_min=p.tls_version_min, tls_version_max=p.tls_version_max,
                       tls_cipher=p.tls_cipher, tls_ciphersuites=p.tls_ciphersuites,
                       remote_cert_ku=p.remote_cert_ku, remote_cert_eku=p.remote_cert_eku,
                       ns_cert_type=p.ns_cert_type, crl=p.crl, crl_dir=p.crl_dir,
                       capath=p.capath, capath_certs=tuple(p.capath_certs),
                       capath_crls=tuple(p.capath_crls), verify_hash=tuple(p.verify_hash),
                       verify_hash_depth=p.verify_hash_depth,
                       verify_hash_algo=p.verify_hash_algo, tls_groups=p.tls_groups,
                       tls_cert_profile=p.tls_cert_profile)


def tls_context(profile: Profile) -> TlsContext:
    """The one TLS context of a tunnel (every session and renegotiation uses it): the
    CA, CRLs, client certificate and key loaded into OpenSSL before anything is sent.
    A ConfigError names the profile's file and the option OpenSSL refused."""
    try:
        return TlsContext(tls_settings(profile))
    except ConfigError as exc:
        if exc.path is not None or not profile.path:
            raise
        message = str(exc)
        if exc.option and message.startswith(f"{exc.option}: "):
            message = message[len(exc.option) + 2:]
        raise ConfigError(message, path=profile.path, option=exc.option) from None
