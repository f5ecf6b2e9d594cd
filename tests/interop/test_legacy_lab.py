"""Legacy data-channel ciphers and HMAC digests against stock OpenVPN 2.6 servers in the
lab (OpenSSL 3 with ``providers legacy default``), erebus running as ``nobody``.

How a 2.6 server comes to use BF-CBC (multi.c ``multi_client_set_protocol_options``,
ssl_ncp.c ``ncp_get_best_cipher``): it takes the first of its ``data-ciphers`` that the
client lists in IV_CIPHERS, and pushes it.  Its ``data-ciphers-fallback`` serves only a
client that sends no IV_CIPHERS / IV_NCP at all (2.3 and older): a 2.6 client (and
erebus) always sends IV_CIPHERS, so with no common cipher the server answers
``AUTH_FAILED,Data channel cipher negotiation failed (no shared cipher)`` whatever the
client's ``cipher`` or ``data-ciphers-fallback`` says.  So BF-CBC is reached by listing it
in the client's ``data-ciphers``; the fallback path itself (a server that pushes no
cipher) needs an old server and is covered by the unit tests.

1. A BF-CBC + HMAC-MD5 server: erebus fetches the web host's blob through ``-L`` with an
   intact hash, warns about SWEET32 in 2.6's words, and the server's log shows BF-CBC
   with a 128-bit key and the 128-bit MD5 HMAC.
2. The same server and a profile whose only BF-CBC is ``cipher`` (or the fallback):
   refused with the server's AUTH_FAILED, exactly as the stock 2.6 client is.
3. tls-auth with ``auth SHA384`` and AES-256-CBC (HMAC-SHA384 on both channels).
4. One server with several CBC ciphers and ``auth SHA224``; a client per cipher.
5. An AEAD server and a profile's ``cipher BF-CBC``: 2.6's warning, AES-256-GCM used.
6. Static-key mode with BF-CBC (2.6's default there) and ``auth RIPEMD160``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.interop.util import Up, _fetch, _free_port, erebus, outdir
from tests.lab import MODES, WEB_ADDR, Mode, stop_process, tail, wait_for_log

pytestmark = pytest.mark.interop

# what 2.6 on OpenSSL 3 needs for Blowfish, CAST5, DES (the stock client refuses
# 'data-ciphers-fallback BF-CBC' without it: "Cipher BF-CBC not supported"); erebus
# accepts the line and needs nothing
LEGACY = ("providers legacy default",)

MODES.setdefault("legacy-bf", Mode(
    40, data_ciphers="BF-CBC",
    server_lines=(*LEGACY, "auth MD5", "data-ciphers-fallback BF-CBC"),
    client_lines=(*LEGACY, "data-ciphers AES-256-GCM:bf", "auth md5")))
MODES.setdefault("legacy-tls-auth", Mode(
    41, data_ciphers="AES-256-CBC",
    server_lines=("tls-auth {static_key} 0", "auth SHA384"),
    client_lines=("key-direction 1", "<tls-auth>\n{static_key_text}</tls-auth>",
                  "auth SHA2-384")))
CBC_LIST = ("DES-EDE3-CBC", "CAST5-CBC", "CAMELLIA-256-CBC", "SEED-CBC", "AES-128-CBC")
MODES.setdefault("legacy-cbc", Mode(
    42, data_ciphers=":".join(CBC_LIST), server_lines=(*LEGACY, "auth SHA224"),
    client_lines=(*LEGACY, "auth sha-224",)))
MODES.setdefault("legacy-static", Mode(
    43, data_ciphers="BF-CBC", static_key_mode=True,
    server_lines=(*LEGACY, "auth RIPEMD160"), client_lines=(*LEGACY, "auth rmd160")))


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    os.chmod(path, 0o644)
    return path


def _variant(lab, server, name: str, drop: tuple[str, ...] = (), add: str = "") -> Path:
    """The server's lab profile without the lines starting with ``drop``, plus ``add``."""
    lines = [line for line in server.profile.read_text().splitlines(keepends=True)
             if not line.startswith(drop)]
    return _write(outdir(lab) / name, "".join(lines) + add)


def _probe(lab, profile, *extra):
    """``erebus -v probe --json``: (the process, the report)."""
    cp = erebus(lab, "-v", "probe", profile, "--json", *extra)
    try:
        return cp, json.loads(cp.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"probe printed no JSON (exit {cp.returncode}):\n{cp.stdout}\n"
                    f"{cp.stderr}\n{lab.logs_tail()}", pytrace=False)


def _stock_client(lab, profile: Path, needle: str) -> str:
    """Run the stock 2.6 client on ``profile`` until its log shows ``needle``."""
    log = profile.with_suffix(".stock.log")
    proc = lab.spawn_ns(lab.ns_cli, ["openvpn", "--config", str(profile), "--log", str(log),
                                     "--verb", "4"])
    try:
        wait_for_log(log, needle, timeout=30, process=proc, what="the stock client")
    finally:
        stop_process(proc)
    return log.read_text()


def test_bf_cbc_with_md5_carries_the_blob(lab, ovpn_server):
    server = ovpn_server("legacy-bf")
    cp, report = _probe(lab, server.profile, "--ping", WEB_ADDR)
    assert report["ok"] is True and report["cipher"] == "BF-CBC", (report, cp.stderr,
                                                                   server.describe())
    assert report["ping_ms"] is not None
    # crypto.c warn_insecure_key_type and ssl.c tls_limit_reneg_bytes, in 2.6's words
    assert "WARNING: INSECURE cipher (BF-CBC) with block size less than 128 bit (64 bit).  " \
        "This allows attacks like SWEET32." in cp.stderr, cp.stderr
    assert "reducing reneg-bytes to 64MB to mitigate SWEET32 attacks." in cp.stderr
    port = _free_port()
    up = Up(lab, server.profile, f"{port}:{WEB_ADDR}:80", log_name="up-legacy-bf.log")
    try:
        got, err, _ = _fetch(lab, f"http://127.0.0.1:{port}/blob.bin")
        assert got == lab.blob_sha256, f"{err}\n{tail(up.log)}\n{server.describe()}"
    finally:
        code = up.stop()
    assert code == 0, tail(up.log)
    # the server really ran Blowfish with a 128-bit key and HMAC-MD5 (crypto.c, verb 4)
    log = server.log_tail(2000)
    assert "Incoming Data Channel: Cipher 'BF-CBC' initialized with 128 bit key" in log, log
    assert "Incoming Data Channel: Using 128 bit message hash 'MD5' for HMAC " \
        "authentication" in log


@pytest.mark.parametrize("line", ["cipher BF-CBC", "data-ciphers-fallback BF-CBC"])
def test_a_cipher_or_fallback_line_does_not_reach_a_bf_cbc_only_server(lab, ovpn_server,
                                                                      line):
    server = ovpn_server("legacy-bf")
    profile = _variant(lab, server, f"legacy-{line.split()[0]}.ovpn",
                       drop=("data-ciphers ",), add=line + "\n")
    _, report = _probe(lab, profile)
    assert report["ok"] is False and report["stage"] == "auth", report
    assert "Data channel cipher negotiation failed (no shared cipher)" in report["error"]
    if line.startswith("cipher"):
        assert any("DEPRECATED OPTION: --cipher set to 'BF-CBC' but missing in "
                   "--data-ciphers (AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305). OpenVPN "
                   "ignores --cipher for cipher negotiations." in w
                   for w in report["warnings"]), report["warnings"]
    # the stock 2.6 client gets the same answer from the same server
    stock = _stock_client(lab, profile, "AUTH_FAILED")
    assert "Data channel cipher negotiation failed (no shared cipher)" in stock


def test_tls_auth_with_sha384_and_a_cbc_data_channel(lab, ovpn_server):
    server = ovpn_server("legacy-tls-auth")
    cp, report = _probe(lab, server.profile, "--ping", WEB_ADDR)
    assert report["ok"] is True and report["cipher"] == "AES-256-CBC", (report, cp.stderr)
    assert report["ping_ms"] is not None
    log = server.log_tail(2000)
    assert "Control Channel Authentication: Using 384 bit message hash 'SHA384'" in log, log
    assert "Data Channel: Using 384 bit message hash 'SHA384' for HMAC authentication" in log
    # a tls-auth key direction mismatch is what a wrong digest would look like
    assert "TLS Error: cannot locate HMAC" not in log
    port = _free_port()
    up = Up(lab, server.profile, f"{port}:{WEB_ADDR}:80", log_name="up-legacy-ta.log")
    try:
        got, err, _ = _fetch(lab, f"http://127.0.0.1:{port}/blob.bin")
        assert got == lab.blob_sha256, f"{err}\n{tail(up.log)}"
    finally:
        assert up.stop() == 0, tail(up.log)


@pytest.mark.parametrize("cipher", CBC_LIST)
def test_each_cbc_cipher_with_sha224(lab, ovpn_server, cipher):
    server = ovpn_server("legacy-cbc")
    profile = _variant(lab, server, f"legacy-{cipher}.ovpn", drop=("data-ciphers ",),
                       add=f"data-ciphers {cipher}\n")
    cp, report = _probe(lab, profile, "--ping", WEB_ADDR)
    assert report["ok"] is True and report["cipher"] == cipher, (report, cp.stderr,
                                                                 server.describe())
    assert report["ping_ms"] is not None
    assert ("INSECURE cipher" in cp.stderr) == (cipher in ("DES-EDE3-CBC", "CAST5-CBC"))
    bits = {"DES-EDE3-CBC": 192, "CAMELLIA-256-CBC": 256}.get(cipher, 128)
    log = server.log_tail(4000)
    assert f"Data Channel: Cipher '{cipher}' initialized with {bits} bit key" in log, log
    assert "Data Channel: Using 224 bit message hash 'SHA224'" in log


def test_an_aead_server_and_a_cipher_bf_cbc_line(lab, ovpn_server):
    server = ovpn_server("gcm")
    profile = _variant(lab, server, "legacy-cipher-on-gcm.ovpn", drop=("data-ciphers ",),
                       add="cipher BF-CBC\n")
    cp, report = _probe(lab, profile, "--ping", WEB_ADDR)
    assert report["ok"] is True and report["cipher"] == "AES-256-GCM", (report, cp.stderr)
    assert report["ping_ms"] is not None
    assert any(re.search(r":\d+: cipher: DEPRECATED OPTION: --cipher set to 'BF-CBC' but "
                         r"missing in --data-ciphers \(AES-256-GCM:AES-128-GCM:"
                         r"CHACHA20-POLY1305\)\. OpenVPN ignores --cipher for cipher "
                         r"negotiations\.", w) for w in report["warnings"]), report
    assert "SWEET32" not in cp.stderr
    # the stock client says the same and comes up with GCM too
    stock = _stock_client(lab, profile, "Initialization Sequence Completed")
    assert "DEPRECATED OPTION: --cipher set to 'BF-CBC' but missing in --data-ciphers" in stock
    assert "Data Channel: Cipher 'AES-256-GCM' initialized" in stock


def test_static_key_mode_defaults_to_bf_cbc(lab, ovpn_server):
    server = ovpn_server("legacy-static")
    # no 'cipher' line: BF-CBC, 2.6's default without pull (the server says it outright)
    profile = _variant(lab, server, "legacy-static.ovpn", drop=("cipher ",))
    cp, report = _probe(lab, profile, "--ping", WEB_ADDR)
    assert report["ok"] is True and report["cipher"] == "BF-CBC", (report, cp.stderr,
                                                                   server.describe())
    assert report["ping_ms"] is not None
    assert "INSECURE cipher (BF-CBC)" in cp.stderr
    log = server.log_tail(2000)
    assert "Incoming Static Key Encryption: Cipher 'BF-CBC' initialized with 128 bit key" \
        in log, log
    assert "Incoming Static Key Encryption: Using 160 bit message hash 'RIPEMD160'" in log
    assert "OCC exit message received by peer" in log    # our packets authenticated
