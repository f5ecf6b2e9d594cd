"""The errors of IKEv2's cryptography: a peer value that fails a check is dropped
(:class:`IkeCryptoError`, a ParseError); an AUTH that fails ends the IKE SA
(:class:`AuthFailed`)."""

from __future__ import annotations

from ...crypto.seal import AuthenticationError
from ...errors import ErebusError, ParseError

__all__ = ["IkeCryptoError", "InvalidKeyExchange", "IntegrityError", "AuthFailed",
           "HashRefused"]


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
