"""Hostile input to IkeInitiator.receive_datagram in each state (issue 13 item 5):
random bytes, and random IKE messages with a well-formed header for our IKE SA (in the
IKE_SA_INIT response's clear, or sealed with the real keys so that they reach the
handlers), fragments shuffled, duplicated and left out.  Nothing but the package's own
errors may escape, a refusal is one line, and afterwards the core still does its job:
the real answer connects, a DPD is answered."""

from __future__ import annotations

import ipaddress
import os

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from erebus.errors import ErebusError
from erebus.ipsec import ikecrypto as c
from erebus.ipsec.ike import NON_ESP_MARKER, Connected, Failed, State
from erebus.wire import ike as w
from erebus.wire.ike import (
    AUTH, CERT, CERTREQ, CP, KE, SA, ConfigAttribute, Delete, IDr, IkeMessage, Nonce, Notify,
    Proposal, TrafficSelector, Transform, TSi, TSr, UnknownPayload, VendorID)

from tests.unit.test_ike_initiator import FakeResponder, _new, connect

FUZZ = settings(max_examples=int(os.environ.get("EREBUS_FUZZ_EXAMPLES", "150")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

STAGES = {"unreachable", "timeout", "proposal", "auth", "certificate", "config", "restart"}
SUITES = [c.IkeSuite.parse(p) for p in ("aes256gcm16-prfsha256-ecp256",
                                        "aes256gcm16-prfsha256-x25519")]

u8 = st.integers(0, 255)
u16 = st.integers(0, 0xFFFF)
blob = st.binary(max_size=64)


def _interesting(values, bits=16):
    return st.sampled_from(values) | st.integers(0, (1 << bits) - 1)


NOTIFY_TYPES = _interesting([
    w.NO_PROPOSAL_CHOSEN, w.INVALID_KE_PAYLOAD, w.COOKIE, w.AUTHENTICATION_FAILED,
    w.TEMPORARY_FAILURE, w.CHILD_SA_NOT_FOUND, w.INVALID_SYNTAX, w.REKEY_SA,
    w.SIGNATURE_HASH_ALGORITHMS, w.IKEV2_FRAGMENTATION_SUPPORTED, w.INTERNAL_ADDRESS_FAILURE,
    w.FAILED_CP_REQUIRED, w.NO_ADDITIONAL_SAS, w.NAT_DETECTION_SOURCE_IP,
    w.NAT_DETECTION_DESTINATION_IP, w.TS_UNACCEPTABLE, w.SINGLE_PAIR_REQUIRED])

GROUPS = _interesting([0, 14, 15, 19, 20, 21, 31, 32])
transforms = st.builds(
    Transform, _interesting([1, 2, 3, 4, 5], 8),
    _interesting([w.ENCR_AES_GCM_16, w.ENCR_AES_CBC, w.ENCR_CHACHA20_POLY1305,
                  w.PRF_HMAC_SHA2_256, w.INTEG_HMAC_SHA2_256_128, 14, 19, 31, 0, 1]),
    st.none() | st.sampled_from([128, 256]) | u16)
proposals = st.builds(Proposal, st.integers(0, 3) | u8, _interesting([1, 3], 8),
                      st.sampled_from([b"", bytes(4), b"\x01\x02\x03\x04", bytes(8)]) | blob,
                      st.lists(transforms, max_size=6)) | \
    st.sampled_from(SUITES).map(lambda s: s.proposal(1)) | \
    st.sampled_from(SUITES).map(lambda s: s.proposal(1, b"\x11" * 8)) | \
    st.builds(lambda n, dhs: _with_dh(c.esp_proposal(n, 0x1000_0002), dhs),
              st.sampled_from(["aes256gcm16", "aes256-sha256", "aes128gcm16"]),
              st.lists(GROUPS, max_size=2))


def _with_dh(prop: Proposal, groups) -> Proposal:
    prop.transforms += [Transform(w.TRANSFORM_DH, g) for g in groups]
    return prop


def _ke(group: int, valid: bool, data: bytes) -> KE:
    if valid and group in c.KE_LENGTHS:
        return KE(group, c.DiffieHellman(group).public_bytes())
    return KE(group, data)


ipv4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
selectors = st.builds(TrafficSelector, ipv4, ipv4, u8 | st.just(0), u16, u16)
attributes = st.builds(ConfigAttribute, _interesting([1, 3, 8, 13, 7], 15), blob)

payloads = st.one_of(
    st.builds(SA, st.lists(proposals, min_size=0, max_size=3)),
    st.builds(_ke, GROUPS, st.booleans(), st.binary(max_size=300)),
    st.builds(Nonce, st.binary(min_size=16, max_size=64) | blob),
    st.builds(Notify, NOTIFY_TYPES, blob | u16.map(lambda v: v.to_bytes(2, "big")),
              st.sampled_from([0, 1, 3]), st.sampled_from([b"", bytes(4), b"\x10\0\0\1"])),
    st.builds(Delete, _interesting([1, 3], 8),
              st.lists(st.sampled_from([b"\x10\0\0\1", b"\x20\0\0\2", bytes(4)]), max_size=3)),
    st.builds(TSi, st.lists(selectors, max_size=3)),
    st.builds(TSr, st.lists(selectors, max_size=3)),
    st.builds(CP, _interesting([1, 2, 3, 4], 8), st.lists(attributes, max_size=4)),
    st.builds(IDr, _interesting([1, 2, 3, 9, 11], 8), st.just(b"vpn.swan.test") | blob),
    st.builds(AUTH, _interesting([1, 2, 9, 14], 8), blob),
    st.builds(CERT, _interesting([4], 8), blob),
    st.builds(CERTREQ, _interesting([4], 8), st.just(b"") | st.binary(min_size=20,
                                                                       max_size=20)),
    st.builds(VendorID, blob),
    st.builds(UnknownPayload, st.integers(1, 255).filter(lambda t: t not in range(33, 55)),
              blob, st.booleans()),
)
@st.composite
def plausible_requests(draw):
    """What the responder's CREATE_CHILD_SA requests look like (CHILD_SA rekey, with or
    without PFS; IKE SA rekey), each part perturbed or left out."""
    group = draw(GROUPS)
    out = []
    if draw(st.integers(0, 3)):
        out.append(Notify(w.REKEY_SA, b"", draw(st.sampled_from([3, 3, 1])),
                          draw(st.sampled_from([b"\x10\0\0\1", b"\x10\0\0\1", bytes(4)]))))
    if draw(st.booleans()):
        prop = _with_dh(c.esp_proposal(draw(st.sampled_from(["aes256gcm16", "aes256-sha256"])),
                                       0x1000_0002), draw(st.lists(GROUPS, max_size=2)) + [group])
    else:
        prop = draw(st.sampled_from(SUITES)).proposal(1, draw(st.sampled_from(
            [b"\x11" * 8, bytes(4)])))
    out.append(SA([prop] + draw(st.lists(proposals, max_size=1))))
    out.append(Nonce(draw(st.binary(min_size=16, max_size=32))))
    if draw(st.integers(0, 3)):
        out.append(_ke(group, draw(st.booleans()), draw(blob)))
    if draw(st.integers(0, 3)):
        out += [TSi([TrafficSelector.from_network("198.19.230.0/24")]),
                TSr([TrafficSelector.from_network("198.19.231.7")])]
    out += draw(st.lists(payloads, max_size=2))
    if draw(st.booleans()):
        draw(st.randoms(use_true_random=False)).shuffle(out)
    return out


payload_lists = st.lists(payloads, max_size=6) | plausible_requests()
EXCHANGES = _interesting([w.IKE_SA_INIT, w.IKE_AUTH, w.CREATE_CHILD_SA, w.INFORMATIONAL], 8)


def _build(message: IkeMessage) -> bytes:
    try:
        return w.build_message(message)
    except (ValueError, ErebusError):
        assume(False)


def _feed(ini, datagrams, now) -> None:
    """Deliver; only erebus's own errors may escape (none should: they are dropped)."""
    for d in datagrams:
        try:
            ini.receive_datagram(d, now)
        except ErebusError:
            pass
    for ev in iter(ini.next_event, None):
        if isinstance(ev, Failed):
            assert ev.stage in STAGES and "\n" not in ev.message, ev


@FUZZ
@given(garbage=st.lists(st.binary(max_size=200), max_size=4),
       messages=st.lists(st.tuples(EXCHANGES, st.sampled_from([w.FLAG_RESPONSE, 0, 0x28]),
                                   st.sampled_from([0, 1]) | st.integers(0, 2**32 - 1),
                                   st.sampled_from([b"\x22" * 8, bytes(8)]), payload_lists),
                         max_size=4))
def test_ike_sa_init_sent(garbage, messages):
    ini = _new()
    (init,) = ini.datagrams_to_send(0.0)
    spi_i = w.parse_message(init).spi_i
    data = [_build(IkeMessage(spi_i, spi_r, ex, flags, mid, pl))
            for ex, flags, mid, spi_r, pl in messages]
    _feed(ini, garbage + data, 0.01)
    if ini.state is State.IKE_SA_INIT_SENT:
        # whatever came, the real responder's answer to our latest request connects
        out = ini.datagrams_to_send(0.02) or [init]
        fr = FakeResponder()
        ini.receive_datagram(fr.ike_sa_init(out[-1]), 0.03)
        (auth,) = ini.datagrams_to_send(0.03)
        ini.receive_datagram(fr.ike_auth(auth), 0.04)
        assert isinstance(list(iter(ini.next_event, None))[-1], Connected)


@FUZZ
@given(garbage=st.lists(st.binary(max_size=200), max_size=3),
       messages=st.lists(st.tuples(EXCHANGES, st.sampled_from([w.FLAG_RESPONSE, 0]),
                                   st.sampled_from([1, 0, 2]), payload_lists), max_size=3))
def test_ike_auth_sent(garbage, messages):
    ini = _new()
    fr = FakeResponder()
    (init,) = ini.datagrams_to_send(0.0)
    ini.receive_datagram(fr.ike_sa_init(init), 0.0)
    (auth,) = ini.datagrams_to_send(0.0)
    list(iter(ini.next_event, None))
    sealed = []
    for ex, flags, mid, pl in messages:
        try:
            sealed.append(fr.seal(ex, flags, mid, pl))
        except (ValueError, ErebusError):
            assume(False)
    _feed(ini, [NON_ESP_MARKER + g for g in garbage] + sealed, 0.01)
    if ini.state is State.IKE_AUTH_SENT:
        ini.receive_datagram(fr.ike_auth(auth), 0.02)
        assert isinstance(list(iter(ini.next_event, None))[-1], Connected)
    else:
        assert ini.state in (State.CLOSED, State.ESTABLISHED)


def _dpd_is_answered(ini, fr, now) -> None:
    """Still up on the same IKE SA (a random but valid rekey may have replaced it): the
    responder's next DPD is answered."""
    if not ini.established or ini.spi_i != fr.spi_i:
        return
    mid = ini._peer_mid
    ini.receive_datagram(fr.seal(w.INFORMATIONAL, 0, mid, []), now)
    answers = [fr.decrypt(d) for d in ini.datagrams_to_send(now)]
    assert any(a.response and a.message_id == mid for a in answers), answers


def _seal_all(fr, messages, fragments, order) -> list[bytes]:
    sealed = []
    for ex, flags, mid, pl in messages:
        msg = IkeMessage(fr.spi_i, fr.spi_r, ex, flags, mid, pl)
        try:
            if fragments:
                pieces = [NON_ESP_MARKER + p for p in c.encrypt_sk_fragments(
                    fr.keys, msg, initiator=False, max_size=200)]
                pieces += order.sample(pieces, k=min(len(pieces), 2))   # duplicates
                order.shuffle(pieces)
                sealed += pieces[:-1] if len(pieces) > 2 and order.random() < 0.3 else pieces
            else:
                sealed.append(fr.seal(ex, flags, mid, pl))
        except (ValueError, ErebusError):
            assume(False)
    return sealed


@FUZZ
@given(requests=st.lists(st.tuples(
           st.sampled_from([w.CREATE_CHILD_SA] * 4 + [w.INFORMATIONAL, w.IKE_AUTH, 0]),
           plausible_requests() | payload_lists), min_size=1, max_size=4),
       fragments=st.booleans(), order=st.randoms(use_true_random=False))
def test_established_requests_of_the_responder(requests, fragments, order):
    """Authentic requests in order (message ids 0, 1 ...): each is answered or dropped,
    and the IKE SA goes on."""
    ini = _new()
    fr = FakeResponder()
    connect(ini, fr)
    messages = [(ex, 0, mid, pl) for mid, (ex, pl) in enumerate(requests)]
    _feed(ini, _seal_all(fr, messages, fragments and len(requests) < 3, order), 1.0)
    ini.datagrams_to_send(1.0)
    _dpd_is_answered(ini, fr, 2.0)


@FUZZ
@given(garbage=st.lists(st.binary(max_size=200), max_size=3),
       messages=st.lists(st.tuples(EXCHANGES, st.sampled_from([0, w.FLAG_RESPONSE, 0x28]),
                                   st.integers(0, 4) | st.integers(0, 2**32 - 1),
                                   payload_lists), max_size=5),
       fragments=st.booleans(), order=st.randoms(use_true_random=False))
def test_established_noise(garbage, messages, fragments, order):
    """Garbage, responses to nothing, requests out of order, fragments shuffled,
    duplicated and missing."""
    ini = _new()
    fr = FakeResponder()
    connect(ini, fr)
    sealed = _seal_all(fr, messages, fragments, order)
    _feed(ini, [NON_ESP_MARKER + g for g in garbage] + sealed, 1.0)
    ini.datagrams_to_send(1.0)
    _dpd_is_answered(ini, fr, 2.0)


@FUZZ
@given(messages=st.lists(st.tuples(st.sampled_from([w.CREATE_CHILD_SA, w.INFORMATIONAL]),
                                   payload_lists), min_size=1, max_size=3),
       ike=st.booleans())
def test_answers_to_our_own_rekey(messages, ike):
    """Our CHILD_SA or IKE SA rekey in flight: random (authentic) answers to it are
    survived; the IKE SA still answers a DPD."""
    ini = _new(child_rekey_time=10.0, rekey_time=10.0 if ike else None)
    fr = FakeResponder()
    connect(ini, fr)
    ini.handle_timer(10.5)
    (req,) = ini.datagrams_to_send(10.5)
    mid = fr.decrypt(req).message_id
    sealed = []
    for ex, pl in messages:
        try:
            sealed.append(fr.seal(ex, w.FLAG_RESPONSE, mid, pl))
        except (ValueError, ErebusError):
            assume(False)
    _feed(ini, sealed, 10.6)
    ini.datagrams_to_send(10.6)
    _dpd_is_answered(ini, fr, 11.0)
