"""The ``.ovpn`` profile reader, by its old name: every name it offered, from the
modules it is split into (erebus's own code imports those directly).

- :mod:`erebus.openvpn.options`: the option registry (``OPTIONS``), data only;
- :mod:`erebus.openvpn.lexer`: lines into words and directives, inline blocks;
- :mod:`erebus.openvpn.material`: PEM and PKCS#12 material, checked as bytes;
- :mod:`erebus.openvpn.profile`: what a profile says (``Profile``, ``Remote``);
- :mod:`erebus.openvpn.reader`: directives into a ``Profile``, every problem at once;
- :mod:`erebus.openvpn.tlssettings`: the TLS settings and context of a profile.
"""

from __future__ import annotations

from .lexer import MAX_PARMS, OPTION_LINE_SIZE, Directive, lex, split_line
from .material import PemBlock, PemError, key_matches_certificate, pem_blocks, unlock_key
from .options import CLASSES, IGNORED, IMPLEMENTED, OPTIONS, REFUSED, REMOVED, OptionSpec
from .profile import DEFAULT_DATA_CIPHERS, KU_REQUIRED, Ignored, Profile, ProfileError, Remote
from .reader import (MAX_CONFIG_DEPTH, MAX_INCLUDED, REMOTE_CERT_TLS_EKU, Reading, _Reader,
                     load_profile, openssl_cipher_name, parse_profile, read_profile, unlock)

__all__ = ["MAX_PARMS", "OPTION_LINE_SIZE", "Directive", "lex", "split_line",
           "PemBlock", "PemError", "key_matches_certificate", "pem_blocks", "unlock_key",
           "CLASSES", "IGNORED", "IMPLEMENTED", "OPTIONS", "REFUSED", "REMOVED",
           "OptionSpec", "DEFAULT_DATA_CIPHERS", "KU_REQUIRED", "Ignored", "Profile",
           "ProfileError", "Remote", "MAX_CONFIG_DEPTH", "MAX_INCLUDED",
           "REMOTE_CERT_TLS_EKU", "Reading", "_Reader", "load_profile",
           "openssl_cipher_name", "parse_profile", "read_profile", "unlock"]
