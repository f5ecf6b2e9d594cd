"""IKEv2 key material and message protection (RFC 7296), sans-IO, by seam:

- :mod:`.dh`: the key exchange (:class:`DiffieHellman`, MODP, ECP, Curve25519);
- :mod:`.suites`: PRFs, IKE suites and proposals, ESP proposals;
- :mod:`.keys`: the key schedule (SKEYSEED, prf+, the IKE SA's and Child SAs' keys);
- :mod:`.sk`: SK/SKF payload protection and fragment reassembly;
- :mod:`.auth`: AUTH (signed octets, PSK, signatures and their checks);
- :mod:`.nat`: NAT detection hashes;
- :mod:`.errors`: what a failed check raises.

Every public name is re-exported here: ``from erebus.ipsec.ikecrypto import X``.
"""

from __future__ import annotations

from .auth import (
    ALGID_ECDSA_WITH_SHA256, ALGID_ECDSA_WITH_SHA384, ALGID_ECDSA_WITH_SHA512, ALGID_ED25519,
    ALGID_RSASSA_PSS_SHA256, ALGID_RSASSA_PSS_SHA384, ALGID_RSASSA_PSS_SHA512,
    ALGID_SHA256_WITH_RSA, ALGID_SHA384_WITH_RSA, ALGID_SHA512_WITH_RSA, HASH_NAMES, KEY_PAD,
    psk_auth, sign_auth, signed_octets, verify_auth)
from .dh import DH_NAMES, DH_STRENGTH, KE_LENGTHS, MODP_2048_PRIME, DiffieHellman
from .errors import AuthFailed, HashRefused, IkeCryptoError, IntegrityError, InvalidKeyExchange
from .keys import (
    ChildSaKeys, IkeSaKeys, child_keymat, child_sa_keys, derive_ike_sa_keys, ike_sa_keys,
    prf_plus, rekey_skeyseed, rekeyed_ike_sa_keys, skeyseed)
from .nat import nat_detection_hash
from .sk import (
    FragmentCollector, SkDecrypted, decrypt_message, decrypt_sk, encrypt_sk,
    encrypt_sk_fragments)
from .suites import (
    ESP_TRANSFORM_IDS, PRFS, IkeSuite, Prf, esp_key_lengths, esp_proposal, esp_transform_name,
    get_prf, ike_proposals)

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
    "HASH_NAMES", "DH_STRENGTH", "DH_NAMES",
    "ALGID_SHA256_WITH_RSA", "ALGID_SHA384_WITH_RSA", "ALGID_SHA512_WITH_RSA",
    "ALGID_RSASSA_PSS_SHA256", "ALGID_RSASSA_PSS_SHA384", "ALGID_RSASSA_PSS_SHA512",
    "ALGID_ECDSA_WITH_SHA256", "ALGID_ECDSA_WITH_SHA384", "ALGID_ECDSA_WITH_SHA512",
    "ALGID_ED25519",
    "nat_detection_hash",
]
