"""The TLS 1.0 PRF and OpenVPN's key-method-2 key block, checked against OpenSSL's own
TLS1-PRF (``openssl kdf``), an implementation that shares no code with ours."""

from __future__ import annotations

import os
import random
import shutil
import subprocess

import pytest

from erebus.crypto.prf import (EXPANSION_LABEL, KEY_BLOCK_LEN, MASTER_LABEL,
                               openvpn_key_block, tls1_prf)

OPENSSL = shutil.which("openssl")


def _require_openssl() -> str:
    if OPENSSL:
        return OPENSSL
    if os.environ.get("CI") == "true":
        pytest.fail("openssl command line tool missing (required under CI=true)")
    pytest.skip("openssl command line tool not installed: no independent PRF to compare with")


def openssl_tls1_prf(secret: bytes, seed: bytes, length: int) -> bytes:
    """OpenSSL's TLS1-PRF with the MD5-SHA1 digest, i.e. the TLS 1.0/1.1 PRF.

    OpenSSL takes no separate label: the label is the start of the seed."""
    exe = _require_openssl()
    out = subprocess.run(
        [exe, "kdf", "-keylen", str(length), "-binary",
         "-kdfopt", "digest:MD5-SHA1",
         "-kdfopt", f"hexsecret:{secret.hex()}",
         "-kdfopt", f"hexseed:{seed.hex()}",
         "TLS1-PRF"],
        check=True, capture_output=True, timeout=30)
    assert len(out.stdout) == length, out.stderr
    return out.stdout


def test_openssl_agrees_with_itself_in_hex_mode():
    # Guards the helper: -binary and the default hex output describe the same bytes.
    exe = _require_openssl()
    out = subprocess.run([exe, "kdf", "-keylen", "16", "-kdfopt", "digest:MD5-SHA1",
                          "-kdfopt", "hexsecret:0102", "-kdfopt", "hexseed:0304",
                          "TLS1-PRF"], check=True, capture_output=True, text=True, timeout=30)
    assert bytes.fromhex(out.stdout.strip().replace(":", "")) == openssl_tls1_prf(
        b"\x01\x02", b"\x03\x04", 16)


# Odd secret lengths matter: S1 and S2 then share the middle byte (RFC 2246 5).
@pytest.mark.parametrize("case", range(6))
def test_tls1_prf_matches_openssl(case):
    rng = random.Random(1000 + case)
    secret = rng.randbytes([1, 7, 32, 47, 48, 65][case])
    label = rng.choice([b"OpenVPN master secret", b"OpenVPN key expansion", b"test label"])
    seed = rng.randbytes(rng.randrange(1, 100))
    length = [1, 20, 48, 100, 256, 333][case]
    assert tls1_prf(secret, label, seed, length) == openssl_tls1_prf(secret, label + seed, length)


def test_prf_output_is_a_prefix_of_longer_output():
    secret, seed = b"s" * 48, b"seed"
    assert tls1_prf(secret, b"L", seed, 256)[:48] == tls1_prf(secret, b"L", seed, 48)


def test_openvpn_key_block_matches_openssl_two_step_derivation():
    rng = random.Random(2024)
    pre_master = rng.randbytes(48)
    c_r1, s_r1, c_r2, s_r2 = (rng.randbytes(32) for _ in range(4))
    c_sid, s_sid = rng.randbytes(8), rng.randbytes(8)

    master = openssl_tls1_prf(pre_master, MASTER_LABEL + c_r1 + s_r1, 48)
    expected = openssl_tls1_prf(master, EXPANSION_LABEL + c_r2 + s_r2 + c_sid + s_sid,
                                KEY_BLOCK_LEN)

    block = openvpn_key_block(pre_master, c_r1, s_r1, c_r2, s_r2, c_sid, s_sid)
    assert len(block) == 256
    assert block == expected


def test_key_block_depends_on_every_input_in_its_place():
    rng = random.Random(7)
    args = [rng.randbytes(48)] + [rng.randbytes(32) for _ in range(4)] + [
        rng.randbytes(8), rng.randbytes(8)]
    base = openvpn_key_block(*args)
    for i in range(len(args)):
        changed = list(args)
        changed[i] = bytes([changed[i][0] ^ 1]) + changed[i][1:]
        assert openvpn_key_block(*changed) != base
    # client and server inputs are not interchangeable
    swapped = list(args)
    swapped[1], swapped[2] = swapped[2], swapped[1]
    assert openvpn_key_block(*swapped) != base
    swapped = list(args)
    swapped[5], swapped[6] = swapped[6], swapped[5]
    assert openvpn_key_block(*swapped) != base
