"""Randomness is a parameter of every core (issue 14): two cores built with the same
seeded rng send byte-identical datagrams, so no CBC IV, AEAD IV base, SK IV, nonce,
SPI or DH secret comes from anywhere but the rng the core was given.  A third core
with another seed sends other bytes: the rng is really used."""

from __future__ import annotations

import random
import struct

import pytest

from erebus.ipsec.esp import SecurityAssociation
from erebus.ipsec.ike import IkeInitiator
from erebus.ipsec.profile import load_esp_profile
from erebus.ipsec.transforms import get_transform
from erebus.openvpn.data import DataKey
from erebus.openvpn.static import StaticKeySession, StaticKeySettings

from tests.unit.test_ike_initiator import FakeResponder, profile
from tests.unit.test_ipsec_profile import EXAMPLE, write

KEYS = random.Random(14).randbytes(256)


def seeded(seed: int):
    return random.Random(seed).randbytes


def ipv4(n: int, dst: str = "198.19.20.9") -> bytes:
    """An IPv4 packet from 198.19.11.2 (the ESP profile's local_ip) to ``dst``."""
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + n, 1, 0, 64, 17, 0,
                         bytes((198, 19, 11, 2)), bytes(int(b) for b in dst.split(".")))
    return header + bytes(i & 0xFF for i in range(n))


def three(make, send) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """What ``send`` gives for cores made by ``make(rng)``: seed 1 twice, then seed 2."""
    return tuple(send(make(seeded(seed))) for seed in (1, 1, 2))


@pytest.mark.parametrize("name", ["aes256-sha256", "aes128gcm16", "chacha20poly1305"])
def test_esp_sas(name):
    t = get_transform(name)
    key, ikey = KEYS[:t.key_len], KEYS[64:64 + t.integrity_key_len]
    a, b, c = three(lambda rng: SecurityAssociation(0x1001, name, key, ikey, rng=rng),
                    lambda sa: [sa.seal(ipv4(n)) for n in (0, 40, 1400)])
    assert a == b and a != c


def test_esp_profile_sas(tmp_path):
    p = load_esp_profile(write(tmp_path, EXAMPLE))
    a, b, c = three(lambda rng: p.security_associations(rng=rng)[0],
                    lambda sa: [sa.seal(ipv4(n)) for n in (20, 1000)])
    assert a == b and a != c


@pytest.mark.parametrize("cipher, auth", [("AES-256-CBC", "SHA256"), ("AES-128-CBC", "none")])
def test_openvpn_data_channel(cipher, auth):
    a, b, c = three(lambda rng: DataKey(0, cipher, KEYS, auth=auth, peer_id=7, rng=rng),
                    lambda key: [key.encrypt(ipv4(n)) for n in (0, 100, 1400)])
    assert a == b and a != c


def test_static_key_session():
    def make(rng):
        return StaticKeySession(StaticKeySettings(
            key=KEYS, direction=1, cipher="AES-256-CBC", auth="SHA256",
            local_ip="198.19.8.2", remote_ip="198.19.8.1"), 0.0, rng=rng,
            clock=lambda: 1_700_000_000)

    def send(s):          # an OCC_REQUEST at once, then every 10 s
        return [d for now in (0.0, 10.0, 20.0) for d in s.datagrams_to_send(now)]
    a, b, c = three(make, send)
    assert len(a) == 3
    assert a == b and a != c


@pytest.mark.parametrize("proposal, esp", [
    ("aes256gcm16-prfsha256-ecp256", "aes256gcm16"),
    ("aes128-sha256-prfsha256-x25519", "aes256-sha256"),
    ("aes256-sha384-prfsha384-modp2048", "chacha20poly1305"),
    ("aes128ccm16-prfsha256-ecp384", "aes128gcm16"),
    ("aes256gcm16-prfsha512-ecp521", "aes256gcm16"),
])
def test_ike_initiator(proposal, esp):
    """IKE_SA_INIT (SPI, nonce, KE), IKE_AUTH (its SK IV) and the first ESP packet of the
    Child SA: the same for two initiators with one seed, answered with the same bytes."""
    answers: list[bytes] = []

    def run(rng, responder):
        ini = IkeInitiator(profile(proposals=[proposal], esp_proposals=[esp]), 0.0, rng=rng)
        sent = []
        for step in range(2):
            (out,) = ini.datagrams_to_send(0.0)
            sent.append(out)
            if responder is not None:
                answers.append(responder.ike_sa_init(out) if step == 0
                               else responder.ike_auth(out))
            ini.receive_datagram(answers[step], 0.0)
        events = []
        while (e := ini.next_event()) is not None:
            events.append(e)
        sent.append(events[-1].outbound.seal(ipv4(60)))
        return sent

    first = run(seeded(1), FakeResponder())
    assert run(seeded(1), None) == first
    other = IkeInitiator(profile(proposals=[proposal], esp_proposals=[esp]), 0.0,
                         rng=seeded(2)).datagrams_to_send(0.0)
    assert other != first[:1]
