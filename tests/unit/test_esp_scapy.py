"""Known answers against an independent ESP implementation, scapy's
``scapy.layers.ipsec.SecurityAssociation``, for every transform, both directions:
what we seal scapy decrypts, what scapy encrypts we open; given the same IV the bytes
are identical (so padding, trailer, AAD and ICV are RFC 4303/4106/4868/7634's); with
ESN the high sequence bits are authenticated where the RFCs put them."""

from __future__ import annotations

import random

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.ipsec import ESP
from scapy.layers.ipsec import SecurityAssociation as ScapySA
from scapy.packet import Raw

from erebus.ipsec.esp import AuthFailed, SecurityAssociation
from erebus.ipsec.transforms import TRANSFORMS
from erebus.wire.esp import NH_IPV4

# our transform -> (scapy crypt_algo, scapy auth_algo)
SCAPY = {
    "aes128gcm16": ("AES-GCM", None),
    "aes192gcm16": ("AES-GCM", None),
    "aes256gcm16": ("AES-GCM", None),
    "chacha20poly1305": ("CHACHA20-POLY1305", None),
    "aes128-sha256": ("AES-CBC", "SHA2-256-128"),
    "aes192-sha256": ("AES-CBC", "SHA2-256-128"),
    "aes256-sha256": ("AES-CBC", "SHA2-256-128"),
    "aes256-sha384": ("AES-CBC", "SHA2-384-192"),
    "aes256-sha512": ("AES-CBC", "SHA2-512-256"),
}
assert set(SCAPY) == set(TRANSFORMS)

CLIENT, PEER = "198.18.101.2", "198.18.101.1"
SPI = 0x00001001
HIGH = 5                 # ESN high bits used in the ESN cases


def keys(name: str, seed: int = 1) -> tuple[bytes, bytes]:
    t = TRANSFORMS[name]
    rng = random.Random(f"{name}-{seed}")
    return rng.randbytes(t.key_len), rng.randbytes(t.integrity_key_len)


def scapy_sa(name: str, key: bytes, ikey: bytes, *, esn: bool, seq: int = 1) -> ScapySA:
    crypt, auth = SCAPY[name]
    return ScapySA(ESP, spi=SPI, seq_num=seq, crypt_algo=crypt, crypt_key=key,
                   auth_algo=auth, auth_key=ikey or None,
                   tunnel_header=IP(src=PEER, dst=CLIENT), esn_en=esn, esn=HIGH if esn else 0)


def outer(esp_bytes: bytes):
    """An outer IPv4/ESP packet as scapy parses it (what its decrypt() wants)."""
    return IP(bytes(IP(src=CLIENT, dst=PEER, proto=50) / Raw(esp_bytes)))


def inner_packets():
    yield bytes(IP(src="198.19.11.2", dst="198.19.20.5") / ICMP(id=7, seq=1) / b"ping")
    yield bytes(IP(src="198.19.11.2", dst="198.19.20.5") / UDP(sport=5353, dport=53) / b"")
    for size in (20, 21, 22, 23, 37, 100, 1400):
        pkt = IP(src="198.19.11.2", dst="198.19.20.5", proto=253) / Raw(b"\x5a" * (size - 20))
        yield bytes(pkt)


CASES = [(name, esn) for name in TRANSFORMS for esn in (False, True)]


def ids(case):
    return f"{case[0]}{'-esn' if case[1] else ''}"


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_we_seal_scapy_decrypts(case):
    name, esn = case
    key, ikey = keys(name)
    first = ((HIGH << 32) | 0xFFFFFFF0) if esn else 41
    ours = SecurityAssociation(SPI, name, key, ikey, esn=esn, seq=first - 1)
    theirs = scapy_sa(name, key, ikey, esn=esn)
    for i, inner in enumerate(inner_packets()):
        wire = ours.seal(inner)
        assert int.from_bytes(wire[4:8], "big") == (first + i) & 0xFFFFFFFF
        t = TRANSFORMS[name]
        assert (len(wire) - 8 - t.iv_len - t.icv_len) % t.align == 0
        decrypted = theirs.decrypt(outer(wire))
        assert bytes(decrypted) == inner
    assert ours.packets == i + 1


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_scapy_encrypts_we_open(case):
    name, esn = case
    key, ikey = keys(name)
    low = 0xFFFFFFF0 if esn else 41
    theirs = scapy_sa(name, key, ikey, esn=esn, seq=low)
    ours = SecurityAssociation(SPI, name, key, ikey, esn=esn)
    if esn:
        ours.replay.update((HIGH << 32) | (low - 1))   # where our window already is
    for inner in inner_packets():
        wire = bytes(theirs.encrypt(IP(inner))[ESP])
        next_header, payload = ours.open(wire)
        assert next_header == NH_IPV4
        assert payload == inner
    assert ours.replay.top >> 32 == (HIGH if esn else 0)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_same_iv_same_bytes(case):
    """Given our IV, scapy produces exactly our packet: the layouts agree bit for bit."""
    name, esn = case
    key, ikey = keys(name, seed=2)
    t = TRANSFORMS[name]
    seq = ((HIGH << 32) | 77) if esn else 77
    ours = SecurityAssociation(SPI, name, key, ikey, esn=esn, seq=seq - 1,
                               iv_base=0x0102030405060708)
    inner = next(inner_packets())
    wire = ours.seal(inner)
    iv = wire[8:8 + t.iv_len]
    if t.aead:
        assert iv == (0x0102030405060708 + seq).to_bytes(8, "big")
    theirs = scapy_sa(name, key, ikey, esn=esn, seq=seq & 0xFFFFFFFF)
    assert bytes(theirs.encrypt(IP(inner), iv=iv)[ESP]) == wire


@pytest.mark.parametrize("name", ["aes256gcm16", "aes256-sha256"])
def test_esn_high_bits_are_authenticated(name):
    """The same packet opened with the wrong high bits fails its ICV (they are never
    sent, only authenticated)."""
    key, ikey = keys(name)
    theirs = scapy_sa(name, key, ikey, esn=True, seq=100)
    wire = bytes(theirs.encrypt(IP(next(inner_packets())))[ESP])
    ours = SecurityAssociation(SPI, name, key, ikey, esn=True)
    ours.replay.update(((HIGH + 1) << 32) | 99)          # a window one epoch ahead
    with pytest.raises(AuthFailed):
        ours.open(wire)
