"""IKEv2 messages (erebus.wire.ike): real strongSwan messages, scapy's IKEv2 layer as an
independent parser and builder, round trips for every payload, and hostile input
(ParseError and nothing else)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scapy.contrib.ikev2 import (
    IKEv2, IKEv2_AUTH, IKEv2_CERTREQ, IKEv2_CP, IKEv2_KE, IKEv2_SA, ConfigurationAttribute,
    IKEv2_Delete, IKEv2_Encrypted, IKEv2_Encrypted_Fragment, IKEv2_IDi, IKEv2_IDr,
    IKEv2_Nonce, IKEv2_Notify, IKEv2_Proposal, IKEv2_Transform, IKEv2_TSi, IKEv2_TSr,
    IKEv2_VendorID, IPv4TrafficSelector, IPv6TrafficSelector)
from scapy.packet import raw

from erebus.errors import ParseError
from erebus.wire import ike as w

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Real messages from strongSwan, captured in Wireshark's test/captures/
# ikev2-decrypt-aes128ccm12.pcap (the UDP payloads; the same frames are in scapy's
# test/contrib/ikev2.uts): IKE_SA_INIT request and response, then an INFORMATIONAL
# exchange (Delete of the IKE SA) protected with AES-CCM-12.
SS_INIT_REQUEST = bytes.fromhex(
    "ea684d21597afd3600000000000000002120220800000000000000f82200002800000024010100030300000c"
    "0100000f800e008003000008020000050000000804000013280000480013000032c6dffe5c43b0d5811f7eaa"
    "a84c9f78bf99b9069c2b072e0b82f46bf6f66dd45f97ef89ee285fd5df527a44776b529fc9d8a909d842a6fb"
    "59b96a095395617229000024b655462d6f4b66f872ccd7f0f4b4857732921339cbaa5237edba244f262b6823"
    "2900001c00004004949c9db5739d75a974a49c184618369b34b7f9422900001c000040053e721b46be07d531"
    "11425d7f80d2c6e220c6072e000000100000402f0001000200030004")
SS_INIT_RESPONSE = bytes.fromhex(
    "ea684d21597afd36d9fe2ab22dac23ac2120222000000000000000f02200002800000024010100030300000c"
    "0100000f800e00800300000802000005000000080400001328000048001300002c66beadb6ce8535d6218cb4"
    "01aa5a1eb4035b97caddaf36374a979c0446b8800506bf9d6f950952326bf3011913da93bb8e40f815376be1"
    "a06801c0a63e3b54290000249e5d267379e681e7d38d81c710d383401de7e3607b926d90a9958adcb52831aa"
    "2900001c000040047a0785273d59203829a697550f31cbb94eb72b432900001c00004005c3e58a8cc9933ce0"
    "b78f2a50e8de80134e12ce310000000800004014")
SS_INFO_REQUEST = bytes.fromhex(
    "ea684d21597afd36d9fe2ab22dac23ac2e202508000000020000003d2a000021cca0b35de5abc51c9987cbf1"
    "f5ecff210eb767cdb85179383b964d78e2")
SS_INFO_RESPONSE = bytes.fromhex(
    "ea684d21597afd36d9fe2ab22dac23ac2e202520000000020000003500000019a80c957bac15c3f8afdf315a"
    "81cc4b7c40e8660d44")
REAL = [SS_INIT_REQUEST, SS_INIT_RESPONSE, SS_INFO_REQUEST, SS_INFO_RESPONSE]

SPI_I = bytes.fromhex("0123456789abcdef")
SPI_R = bytes.fromhex("fedcba9876543210")


# --- real strongSwan messages -------------------------------------------------------------

def test_strongswan_ike_sa_init_request():
    msg = w.parse_message(SS_INIT_REQUEST)
    assert msg.spi_i == bytes.fromhex("ea684d21597afd36") and msg.spi_r == bytes(8)
    assert (msg.exchange, msg.flags, msg.message_id) == (w.IKE_SA_INIT, w.FLAG_INITIATOR, 0)
    assert msg.initiator and not msg.response
    assert [type(p) for p in msg.payloads] == [w.SA, w.KE, w.Nonce, w.Notify, w.Notify, w.Notify]
    (prop,) = msg.get(w.SA).proposals
    assert (prop.number, prop.protocol, prop.spi) == (1, w.PROTO_IKE, b"")
    assert prop.transforms == [w.Transform(w.TRANSFORM_ENCR, w.ENCR_AES_CCM_12, 128),
                               w.Transform(w.TRANSFORM_PRF, w.PRF_HMAC_SHA2_256),
                               w.Transform(w.TRANSFORM_DH, w.DH_ECP_256)]
    ke = msg.get(w.KE)
    assert ke.group == w.DH_ECP_256 and len(ke.data) == 64
    assert len(msg.get(w.Nonce).data) == 32
    assert [n.type for n in msg.notifies()] == [w.NAT_DETECTION_SOURCE_IP,
                                                w.NAT_DETECTION_DESTINATION_IP,
                                                w.SIGNATURE_HASH_ALGORITHMS]
    assert msg.notify(w.NAT_DETECTION_SOURCE_IP).data.hex() == \
        "949c9db5739d75a974a49c184618369b34b7f942"
    assert w.parse_hash_algorithms(msg.notify(w.SIGNATURE_HASH_ALGORITHMS).data) == (1, 2, 3, 4)
    assert msg.errors() == []
    assert w.build_message(msg) == SS_INIT_REQUEST


def test_strongswan_ike_sa_init_response():
    msg = w.parse_message(SS_INIT_RESPONSE)
    assert msg.spi_r == bytes.fromhex("d9fe2ab22dac23ac")
    assert msg.response and not msg.initiator and msg.flags == w.FLAG_RESPONSE
    assert msg.notifies()[-1] == w.Notify(w.MULTIPLE_AUTH_SUPPORTED)
    assert msg.notify(w.MULTIPLE_AUTH_SUPPORTED).name == "MULTIPLE_AUTH_SUPPORTED"
    assert w.build_message(msg) == SS_INIT_RESPONSE


def test_strongswan_informational_sk_containers():
    req = w.parse_message(SS_INFO_REQUEST)
    assert (req.exchange, req.message_id, req.flags) == (w.INFORMATIONAL, 2, w.FLAG_INITIATOR)
    (sk,) = req.payloads
    assert isinstance(sk, w.SK) and sk.first_payload == w.PT_DELETE
    iv, ct, icv = sk.split(8, 12)                 # AES-CCM: 8-byte IV, 12-byte ICV
    assert (len(iv), len(ct), len(icv)) == (8, 9, 12)
    assert w.build_message(req) == SS_INFO_REQUEST
    resp = w.parse_message(SS_INFO_RESPONSE)
    assert resp.payloads[0].first_payload == w.PT_NONE   # an empty INFORMATIONAL response
    assert w.build_message(resp) == SS_INFO_RESPONSE
    with pytest.raises(ParseError):
        resp.payloads[0].split(8, 16)


def test_parse_header_alone():
    h = w.parse_header(SS_INIT_RESPONSE)
    assert (h.spi_i, h.next_payload, h.version, h.exchange, h.length) == (
        bytes.fromhex("ea684d21597afd36"), w.PT_SA, 0x20, w.IKE_SA_INIT, 0xF0)
    assert h.response and not h.initiator
    assert w.build_header(h.spi_i, h.spi_r, h.next_payload, h.exchange, h.flags,
                          h.message_id, h.length) == SS_INIT_RESPONSE[:28]


# --- an IKE_SA_INIT request as strongSwan sends it, read by scapy ---------------------------

def strongswan_like_init() -> w.IkeMessage:
    """Two proposals like strongSwan's defaults (AEAD and non-AEAD ciphers cannot share one),
    KE, a 32-byte nonce, NAT detection, fragmentation, RFC 7427 hashes, redirects."""
    t = w.Transform
    cbc = w.Proposal(1, w.PROTO_IKE, b"", [
        t(w.TRANSFORM_ENCR, w.ENCR_AES_CBC, 128), t(w.TRANSFORM_ENCR, w.ENCR_AES_CBC, 256),
        t(w.TRANSFORM_INTEG, w.INTEG_HMAC_SHA2_256_128),
        t(w.TRANSFORM_INTEG, w.INTEG_HMAC_SHA2_512_256),
        t(w.TRANSFORM_PRF, w.PRF_HMAC_SHA2_256), t(w.TRANSFORM_PRF, w.PRF_HMAC_SHA2_512),
        t(w.TRANSFORM_DH, w.DH_CURVE25519), t(w.TRANSFORM_DH, w.DH_ECP_256),
        t(w.TRANSFORM_DH, w.DH_MODP_2048)])
    aead = w.Proposal(2, w.PROTO_IKE, b"", [
        t(w.TRANSFORM_ENCR, w.ENCR_AES_GCM_16, 128), t(w.TRANSFORM_ENCR, w.ENCR_AES_GCM_16, 256),
        t(w.TRANSFORM_ENCR, w.ENCR_CHACHA20_POLY1305),
        t(w.TRANSFORM_PRF, w.PRF_HMAC_SHA2_256), t(w.TRANSFORM_PRF, w.PRF_HMAC_SHA2_512),
        t(w.TRANSFORM_DH, w.DH_CURVE25519), t(w.TRANSFORM_DH, w.DH_ECP_256),
        t(w.TRANSFORM_DH, w.DH_MODP_2048)])
    return w.IkeMessage(SPI_I, bytes(8), w.IKE_SA_INIT, w.FLAG_INITIATOR, 0, [
        w.SA([cbc, aead]),
        w.KE(w.DH_CURVE25519, bytes(range(32))),
        w.Nonce(bytes(range(100, 132))),
        w.Notify(w.NAT_DETECTION_SOURCE_IP, b"\x11" * 20),
        w.Notify(w.NAT_DETECTION_DESTINATION_IP, b"\x22" * 20),
        w.Notify(w.IKEV2_FRAGMENTATION_SUPPORTED),
        w.Notify(w.SIGNATURE_HASH_ALGORITHMS, w.build_hash_algorithms(
            [w.HASH_SHA2_256, w.HASH_SHA2_384, w.HASH_SHA2_512, w.HASH_IDENTITY])),
        w.Notify(w.REDIRECT_SUPPORTED),
    ])


def scapy_chain(first):
    """The payload layers of a scapy packet, in order."""
    out, layer = [], first
    while layer is not None and layer.__class__.__name__ != "NoPayload":
        if layer.__class__.__name__ == "Raw":
            break
        out.append(layer)
        layer = layer.payload
    return out


def test_our_ike_sa_init_reads_in_scapy():
    msg = strongswan_like_init()
    data = w.build_message(msg)
    pkt = IKEv2(data)
    assert raw(pkt) == data                       # scapy re-serialises it byte for byte
    assert (pkt.init_SPI, pkt.resp_SPI, pkt.exch_type, pkt.id, pkt.length) == (
        SPI_I, bytes(8), 34, 0, len(data))
    assert int(pkt.flags) == w.FLAG_INITIATOR and pkt.version == 0x20
    layers = scapy_chain(pkt.payload)
    assert [type(x) for x in layers] == [IKEv2_SA, IKEv2_KE, IKEv2_Nonce] + [IKEv2_Notify] * 5
    proposals = scapy_chain(layers[0].prop)
    assert [p.proposal for p in proposals] == [1, 2]
    for ours, theirs in zip(msg.payloads[0].proposals, proposals):
        assert theirs.proto == 1 and theirs.SPIsize == 0
        assert theirs.trans_nb == len(ours.transforms)
        got = [(t.transform_type, t.transform_id, t.key_length if t.length > 8 else None)
               for t in scapy_chain(theirs.trans)]
        assert got == [(t.type, t.id, t.key_length) for t in ours.transforms]
    assert layers[1].group == w.DH_CURVE25519 and layers[1].ke == bytes(range(32))
    assert layers[2].nonce == bytes(range(100, 132))
    assert [n.type for n in layers[3:]] == [16388, 16389, 16430, 16431, 16406]
    assert layers[3].notify == b"\x11" * 20
    assert layers[6].notify == bytes.fromhex("0002000300040005")
    assert w.parse_message(data) == msg


def test_scapy_ike_auth_chain_reads_in_ours():
    trans = (IKEv2_Transform(transform_type=1, transform_id=20, length=12, key_length=256)
             / IKEv2_Transform(transform_type=5, transform_id=0))
    pkt = (IKEv2(init_SPI=SPI_I, resp_SPI=SPI_R, exch_type=35, flags="Initiator", id=1)
           / IKEv2_IDi(IDtype=2, ID=b"client.example")
           / IKEv2_IDr(IDtype=1, ID="198.51.100.1")
           / IKEv2_AUTH(auth_type=2, load=b"\xaa" * 32)
           / IKEv2_CP(CFGType=1, attributes=[ConfigurationAttribute(type=1, value=b""),
                                             ConfigurationAttribute(type=3, value=b"")])
           / IKEv2_SA(prop=IKEv2_Proposal(proto=3, SPI=b"\xc0\x01\x02\x03", trans_nb=2,
                                          trans=trans))
           / IKEv2_TSi(traffic_selector=[IPv4TrafficSelector(
               IP_protocol_ID=0, starting_address_v4="0.0.0.0",
               ending_address_v4="255.255.255.255")])
           / IKEv2_TSr(traffic_selector=[
               IPv4TrafficSelector(IP_protocol_ID=6, start_port=80, end_port=443,
                                   starting_address_v4="10.1.0.0",
                                   ending_address_v4="10.1.255.255"),
               # scapy's default length for an IPv6 selector is 20, not 40 (RFC 7296 3.13.1)
               IPv6TrafficSelector(length=40, starting_address_v6="2001:db8::",
                                   ending_address_v6="2001:db8::ffff")])
           / IKEv2_Notify(type=16384)
           / IKEv2_Notify(proto=3, SPI=b"\x00\x00\x10\x01", type=16393)
           / IKEv2_CERTREQ(cert_encoding=4, cert_authority=b"\x01" * 40)
           / IKEv2_VendorID(vendorID=b"erebus-test")
           # scapy would put the size of the whole SPI list in SPIsize
           / IKEv2_Delete(proto=3, SPIsize=4, SPI=[b"\x00\x00\x10\x01", b"\x00\x00\x10\x02"],
                          SPInum=2))
    data = raw(pkt)
    msg = w.parse_message(data)
    p = msg.payloads
    assert p[0] == w.IDi(w.ID_FQDN, b"client.example") and p[0].text() == "client.example"
    assert p[1] == w.IDr(w.ID_IPV4_ADDR, bytes([198, 51, 100, 1]))
    assert p[1].text() == "198.51.100.1"
    assert p[2] == w.AUTH(w.AUTH_PSK, b"\xaa" * 32)
    assert p[3] == w.CP(w.CFG_REQUEST, [w.ConfigAttribute(w.INTERNAL_IP4_ADDRESS),
                                        w.ConfigAttribute(w.INTERNAL_IP4_DNS)])
    (prop,) = p[4].proposals
    assert (prop.protocol, prop.spi) == (w.PROTO_ESP, b"\xc0\x01\x02\x03")
    assert prop.transforms == [w.Transform(w.TRANSFORM_ENCR, w.ENCR_AES_GCM_16, 256),
                               w.Transform(w.TRANSFORM_ESN, w.ESN_NO)]
    assert p[5].selectors[0].networks() == ["0.0.0.0/0"]
    ts = p[6].selectors
    assert (ts[0].protocol, ts[0].start_port, ts[0].end_port) == (6, 80, 443)
    assert ts[0].networks() == ["10.1.0.0/16"]
    assert ts[1].ts_type == w.TS_IPV6_ADDR_RANGE and ts[1].networks() == ["2001:db8::/112"]
    assert p[7] == w.Notify(w.INITIAL_CONTACT)
    assert p[8] == w.Notify(w.REKEY_SA, b"", w.PROTO_ESP, b"\x00\x00\x10\x01")
    assert p[9].authorities == [b"\x01" * 20] * 2
    assert p[10] == w.VendorID(b"erebus-test")
    assert p[11] == w.Delete(w.PROTO_ESP, [b"\x00\x00\x10\x01", b"\x00\x00\x10\x02"])
    assert w.build_message(msg) == data


def test_sk_and_skf_containers_against_scapy():
    sk = w.IkeMessage(SPI_I, SPI_R, w.IKE_AUTH, w.FLAG_INITIATOR, 1,
                      [w.SK(w.PT_IDI, b"\x01" * 8 + b"\x02" * 32 + b"\x03" * 16)])
    data = w.build_message(sk)
    pkt = IKEv2(data)
    enc = pkt[IKEv2_Encrypted]
    assert pkt.next_payload == 46 and enc.next_payload == w.PT_IDI
    assert enc.length == 4 + 56 and enc.load == sk.payloads[0].data
    frag = w.IkeMessage(SPI_I, SPI_R, w.IKE_AUTH, w.FLAG_INITIATOR, 1,
                        [w.SKF(0, 2, 3, b"\x04" * 40)])
    pkt = IKEv2(w.build_message(frag))
    f = pkt[IKEv2_Encrypted_Fragment]
    assert (f.next_payload, f.frag_number, f.frag_total, f.load) == (0, 2, 3, b"\x04" * 40)
    theirs = raw(IKEv2(init_SPI=SPI_I, resp_SPI=SPI_R, exch_type=35, id=1)
                 / IKEv2_Encrypted_Fragment(next_payload=w.PT_IDI, frag_number=1, frag_total=3,
                                            load=b"\x05" * 33))
    assert w.parse_message(theirs).payloads == [w.SKF(w.PT_IDI, 1, 3, b"\x05" * 33)]


# --- round trips --------------------------------------------------------------------------

u8 = st.integers(0, 255)
u16 = st.integers(0, 0xFFFF)
small = st.binary(max_size=40)
attributes = st.lists(st.one_of(
    st.builds(w.Attribute, st.integers(0, 0x7FFF).filter(lambda t: t != w.ATTR_KEY_LENGTH),
              u16),
    st.builds(w.Attribute, st.integers(0, 0x7FFF), st.binary(max_size=12))), max_size=2)
transforms = st.builds(w.Transform, st.integers(1, 5), u16, st.none() | u16,
                       attributes.map(tuple))
proposals = st.builds(w.Proposal, u8, u8, st.sampled_from([b"", b"\x00\x00\x10\x01", SPI_I]),
                      st.lists(transforms, max_size=6))
ipv4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
ipv6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)
selectors = st.one_of(
    st.builds(w.TrafficSelector, ipv4, ipv4, u8, u16, u16),
    st.builds(w.TrafficSelector, ipv6, ipv6, u8, u16, u16),
    st.builds(lambda t, p, raw_: w.TrafficSelector("0.0.0.0", "0.0.0.0", p, 0, 0, t, raw_),
              st.integers(9, 255), u8, small))
plain_payloads = st.one_of(
    st.builds(w.SA, st.lists(proposals, min_size=1, max_size=3)),
    st.builds(w.KE, u16, st.binary(max_size=300)),
    st.builds(w.IDi, u8, small), st.builds(w.IDr, u8, small),
    st.builds(w.CERT, u8, small), st.builds(w.CERTREQ, u8, small),
    st.builds(w.AUTH, u8, small),
    st.builds(w.Nonce, st.binary(min_size=16, max_size=256)),
    st.builds(w.Notify, u16, small, u8, st.sampled_from([b"", b"\x00\x00\x10\x01", SPI_I])),
    st.builds(w.Delete, u8, st.lists(st.just(b"\x00\x00\x10\x01"), max_size=3), st.just(4)),
    st.builds(w.Delete, st.just(w.PROTO_IKE), st.just([]), st.just(0)),
    st.builds(w.VendorID, small),
    st.builds(w.TSi, st.lists(selectors, min_size=1, max_size=3)),
    st.builds(w.TSr, st.lists(selectors, min_size=1, max_size=3)),
    st.builds(w.CP, u8, st.lists(st.builds(w.ConfigAttribute, st.integers(0, 0x7FFF), small),
                                 max_size=4)),
    st.builds(w.EAP, st.binary(min_size=4, max_size=40)),
    st.builds(w.UnknownPayload, st.integers(1, 32) | st.integers(54, 255), small, st.booleans()),
)
last_payloads = st.one_of(
    st.builds(w.SK, u8, small),
    st.builds(lambda n, t, d, f: w.SKF(f if n == 1 else 0, n, max(n, t), d),
              st.integers(1, 9), st.integers(1, 9), small, u8),
)
messages = st.builds(
    w.IkeMessage, st.binary(min_size=8, max_size=8), st.binary(min_size=8, max_size=8),
    u8, u8, st.integers(0, 2**32 - 1),
    st.tuples(st.lists(plain_payloads, max_size=6), st.lists(last_payloads, max_size=1))
    .map(lambda t: t[0] + t[1]),
    st.sampled_from([0x20, 0x21, 0x2F]))


@FUZZ
@given(messages)
def test_every_payload_round_trips(msg):
    data = w.build_message(msg)
    parsed = w.parse_message(data)
    assert parsed == msg
    assert w.build_message(parsed) == data


@given(st.lists(plain_payloads, max_size=5))
@settings(deadline=None)
def test_payload_chains_round_trip(payloads):
    first, data = w.build_payloads(payloads)
    assert w.parse_payloads(first, data) == payloads


def test_unknown_critical_payload_is_kept_with_its_bit():
    msg = w.IkeMessage(SPI_I, SPI_R, w.IKE_AUTH, 0, 1,
                       [w.UnknownPayload(200, b"xyz", critical=True), w.Nonce(bytes(16))])
    data = w.build_message(msg)
    assert data[28 + 1] == 0x80
    assert w.parse_message(data).payloads[0] == w.UnknownPayload(200, b"xyz", True)
    assert w.parse_message(data).payloads[0].TYPE == 200


# --- helpers ------------------------------------------------------------------------------

def test_identities_from_text():
    assert w.IDi.from_value("198.51.100.7") == w.IDi(w.ID_IPV4_ADDR, bytes([198, 51, 100, 7]))
    assert w.IDr.from_value("2001:db8::1").id_type == w.ID_IPV6_ADDR
    assert w.IDi.from_value("carol@example.org") == w.IDi(w.ID_RFC822_ADDR, b"carol@example.org")
    assert w.IDi.from_value("@vpn.example.org") == w.IDi(w.ID_FQDN, b"vpn.example.org")
    assert w.IDi.from_value("vpn.example.org") == w.IDi(w.ID_FQDN, b"vpn.example.org")
    assert w.IDi.from_value("@#0a0b") == w.IDi(w.ID_KEY_ID, b"\x0a\x0b")
    assert w.IDi(w.ID_KEY_ID, b"\x0a\x0b").text() == "0a0b"
    # RestOfIDPayload (the AUTH computation): type, three reserved bytes, data
    assert w.IDi(w.ID_FQDN, b"a.b").body() == b"\x02\x00\x00\x00a.b"


def test_traffic_selectors_and_networks():
    ts = w.TrafficSelector.from_network("10.20.0.0/16")
    assert (str(ts.start), str(ts.end), ts.ts_type) == ("10.20.0.0", "10.20.255.255", 7)
    assert w.TrafficSelector("10.0.0.1", "10.0.0.6").networks() == [
        "10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]
    assert w.TrafficSelector("10.0.0.9", "10.0.0.1").networks() == []
    assert w.TrafficSelector.from_network("0.0.0.0/0").build() == bytes.fromhex(
        "0700" "0010" "0000" "ffff" "00000000" "ffffffff")
    with pytest.raises(ValueError):
        w.TrafficSelector("10.0.0.1", "2001:db8::1").build()
    with pytest.raises(ValueError):
        w.TSi([]).body()


def test_configuration_reply_texts():
    cp = w.CP(w.CFG_REPLY, [
        w.ConfigAttribute.address(w.INTERNAL_IP4_ADDRESS, "100.64.0.7"),
        w.ConfigAttribute.address(w.INTERNAL_IP4_NETMASK, "255.255.255.0"),
        w.ConfigAttribute.address(w.INTERNAL_IP4_DNS, "100.64.0.1"),
        w.ConfigAttribute.address(w.INTERNAL_IP4_DNS, "100.64.0.2"),
        w.ConfigAttribute(w.INTERNAL_IP4_SUBNET, bytes([10, 1, 0, 0, 255, 255, 0, 0])),
        w.ConfigAttribute(w.INTERNAL_IP6_ADDRESS,
                          ipaddress.IPv6Address("fd00::5").packed + b"\x40"),
        w.ConfigAttribute(w.INTERNAL_DNS_DOMAIN, b"corp.example"),
        w.ConfigAttribute(w.APPLICATION_VERSION, b"abcd"),
    ])
    assert cp.texts(w.INTERNAL_IP4_ADDRESS) == ["100.64.0.7"]
    assert cp.texts(w.INTERNAL_IP4_DNS) == ["100.64.0.1", "100.64.0.2"]
    assert cp.texts(w.INTERNAL_IP4_SUBNET) == ["10.1.0.0/16"]
    assert cp.texts(w.INTERNAL_IP6_ADDRESS) == ["fd00::5/64"]
    assert cp.texts(w.APPLICATION_VERSION) == []
    assert cp.values(w.INTERNAL_DNS_DOMAIN) == [b"corp.example"]
    # the R bit of an attribute type is reserved: ignored on input
    raw_cp = bytes.fromhex("02000000" "8001" "0004" "64400007")
    assert w.CP.parse_body(memoryview(raw_cp)).attributes == [
        w.ConfigAttribute(1, bytes([100, 64, 0, 7]))]


def test_notify_helpers():
    assert w.parse_u16_notify(b"\x00\x13") == w.DH_ECP_256
    for bad in (b"", b"\x00", b"\x00\x13\x00"):
        with pytest.raises(ParseError):
            w.parse_u16_notify(bad)
    assert w.parse_hash_algorithms(b"\x00\x02\x00") == (2,)    # stray byte ignored
    assert w.parse_hash_algorithms(b"\x00") == ()
    assert w.Notify(w.AUTHENTICATION_FAILED).error
    assert not w.Notify(w.COOKIE, b"c" * 8).error
    assert w.notify_name(12345) == "notify 12345"
    assert w.payload_name(w.PT_SKF) == "SKF" and w.exchange_name(w.IKE_AUTH) == "IKE_AUTH"


def test_digital_signature_layout():
    algid = bytes.fromhex("300a06082a8648ce3d040302")
    data = w.join_digital_signature(algid, b"SIG")
    assert data == b"\x0c" + algid + b"SIG"
    assert w.split_digital_signature(data) == (algid, b"SIG")
    for bad in (b"", b"\x0c" + algid[:5], b"\x00sig"):
        with pytest.raises(ParseError):
            w.split_digital_signature(bad)


def test_delete_spi_size_follows_the_spis():
    assert w.Delete(w.PROTO_IKE) == w.Delete(w.PROTO_IKE, [], 0)
    assert w.Delete(w.PROTO_ESP, [b"\x00\x00\x10\x01"]).spi_size == 4
    with pytest.raises(ValueError):
        w.Delete(w.PROTO_ESP, [b"\x00\x00\x10\x01", b"\x01"]).body()


# --- malformed input ----------------------------------------------------------------------

def hdr(next_payload: int, body: bytes, *, version: int = 0x20, extra: int = 0) -> bytes:
    return w.build_header(SPI_I, SPI_R, next_payload, w.IKE_AUTH, 0, 0,
                          28 + len(body) + extra, version) + body


@pytest.mark.parametrize("data, why", [
    (b"", "empty"),
    (SS_INIT_REQUEST[:27], "short header"),
    (SS_INIT_REQUEST[:100], "truncated (length field says more)"),
    (SS_INIT_REQUEST + b"\x00", "trailing byte beyond the length field"),
    (hdr(0, b"", version=0x10), "IKEv1"),
    (hdr(0, b"", version=0x30), "major version 3"),
    (hdr(w.PT_NONCE, b"\x00\x00\x00\x03"), "payload length below 4"),
    (hdr(w.PT_NONCE, b"\x00\x00\x00\x20" + bytes(16)), "payload beyond the message"),
    (hdr(w.PT_NONCE, b"\x00\x00\x00\x0c" + bytes(8)), "nonce too short"),
    (hdr(w.PT_NONCE, b"\x00\x00\x00\x14" + bytes(16) + b"\x00"), "trailing bytes"),
    (hdr(w.PT_SK, b"\x00\x00\x00\x08abcd" + b"\x00\x00\x00\x08"), "SK not last"),
    (hdr(w.PT_SKF, b"\x00\x00\x00\x08\x00\x00\x00\x01"), "SKF fragment 0"),
    (hdr(w.PT_SKF, b"\x00\x00\x00\x08\x00\x03\x00\x02"), "SKF fragment 3 of 2"),
    (hdr(w.PT_SKF, b"\x23\x00\x00\x08\x00\x02\x00\x02"), "SKF 2 names a first payload"),
    (hdr(w.PT_SA, b"\x00\x00\x00\x04"), "SA without proposals"),
    (hdr(w.PT_SA, b"\x00\x00\x00\x0c" + b"\x00\x00\x00\x08\x01\x01\x00\x01"),
     "transform count mismatch"),
    (hdr(w.PT_SA, b"\x00\x00\x00\x0c" + b"\x05\x00\x00\x08\x01\x01\x00\x00"),
     "bad last-substruc"),
    (hdr(w.PT_SA, b"\x00\x00\x00\x14" + b"\x00\x00\x00\x10\x01\x01\x00\x01"
         + b"\x00\x00\x00\x0c\x01\x00\x00\x0c"), "transform length beyond the proposal"),
    (hdr(w.PT_SA, b"\x00\x00\x00\x18" + b"\x00\x00\x00\x14\x01\x01\x00\x01"
         + b"\x00\x00\x00\x0c\x01\x00\x00\x0c\x00\x0e\x00\x10"), "TLV attribute truncated"),
    (hdr(w.PT_SA, b"\x00\x00\x00\x1c" + b"\x00\x00\x00\x18\x01\x01\x00\x01"
         + b"\x00\x00\x00\x10\x01\x00\x00\x0c\x80\x0e\x00\x80\x80\x0e\x01\x00"),
     "two key lengths"),
    (hdr(w.PT_TSI, b"\x00\x00\x00\x08\x00\x00\x00\x00"), "TS without selectors"),
    (hdr(w.PT_TSI, b"\x00\x00\x00\x18\x01\x00\x00\x00" + b"\x07\x00\x00\x20" + bytes(12)),
     "selector length beyond the payload"),
    (hdr(w.PT_TSI, b"\x00\x00\x00\x14\x01\x00\x00\x00" + b"\x07\x00\x00\x0c" + bytes(8)),
     "IPv4 selector of 12 bytes"),
    (hdr(w.PT_TSI, b"\x00\x00\x00\x18\x02\x00\x00\x00" + b"\x07\x00\x00\x10" + bytes(12)),
     "selector count mismatch"),
    (hdr(w.PT_DELETE, b"\x00\x00\x00\x0a\x03\x04\x00\x01\x00\x00"), "delete SPIs truncated"),
    (hdr(w.PT_NOTIFY, b"\x00\x00\x00\x08\x03\x04\x40\x09"), "notify SPI truncated"),
    (hdr(w.PT_CP, b"\x00\x00\x00\x0a\x01\x00\x00\x00\x00\x01"), "CP attribute truncated"),
    (hdr(w.PT_CP, b"\x00\x00\x00\x0c\x01\x00\x00\x00\x00\x01\x00\x04"), "CP value truncated"),
    (hdr(w.PT_KE, b"\x00\x00\x00\x06\x00\x13"), "KE truncated"),
    (hdr(w.PT_AUTH, b"\x00\x00\x00\x06\x02\x00"), "AUTH truncated"),
    (hdr(w.PT_IDI, b"\x00\x00\x00\x07\x02\x00\x00"), "ID truncated"),
    (hdr(w.PT_CERT, b"\x00\x00\x00\x04"), "CERT without encoding"),
    (hdr(w.PT_EAP, b"\x00\x00\x00\x06\x01\x02"), "EAP truncated"),
])
def test_malformed_messages(data, why):
    with pytest.raises(ParseError):
        w.parse_message(data)


def test_builders_refuse_bad_values():
    with pytest.raises(ValueError):
        w.build_payloads([w.SK(w.PT_IDI, b"x"), w.Nonce(bytes(16))])
    with pytest.raises(ValueError):
        w.Nonce(b"short").body()
    with pytest.raises(ValueError):
        w.SKF(w.PT_IDI, 2, 3, b"x").body()
    with pytest.raises(ValueError):
        w.SKF(0, 4, 3, b"x").body()
    with pytest.raises(ValueError):
        w.KE(70000, b"").body()
    with pytest.raises(ValueError):
        w.build_header(b"short", SPI_R, 0, w.IKE_AUTH, 0, 0, 28)
    with pytest.raises(ValueError):
        w.Transform(w.TRANSFORM_ENCR, w.ENCR_AES_CBC, 1 << 16).build(True)


# --- fuzzing: ParseError and nothing else ---------------------------------------------------

@FUZZ
@given(st.binary(max_size=300))
@example(b"\x00" * 28)
def test_arbitrary_bytes_only_raise_parse_error(data):
    try:
        w.parse_message(data)
    except ParseError:
        pass


@FUZZ
@given(st.sampled_from([0, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 53,
                        99]),
       st.binary(max_size=200))
def test_arbitrary_payload_chains_only_raise_parse_error(first, data):
    try:
        payloads = w.parse_payloads(first, data)
    except ParseError:
        return
    for p in payloads:               # the accessors never raise anything but ParseError
        if isinstance(p, (w.IDi, w.IDr)):
            p.text()
        elif isinstance(p, w.CP):
            [a.text() for a in p.attributes]
        elif isinstance(p, w.TSi | w.TSr):
            [ts.networks() for ts in p.selectors]
        elif isinstance(p, w.CERTREQ):
            try:
                p.authorities
            except ParseError:
                pass


@FUZZ
@given(st.sampled_from(REAL + [w.build_message(strongswan_like_init())]),
       st.lists(st.tuples(st.integers(0, 2000), u8), min_size=1, max_size=4),
       st.integers(0, 300), st.booleans())
def test_mutated_messages_only_raise_parse_error(base, flips, cut, fix_length):
    data = bytearray(base)
    for pos, value in flips:
        data[28 + pos % (len(data) - 28)] = value
    if cut:
        data = data[:max(28, len(data) - cut)]
    if fix_length:                     # keep the header consistent to reach the payloads
        data[24:28] = len(data).to_bytes(4, "big")
    try:
        msg = w.parse_message(bytes(data))
    except ParseError:
        return
    w.build_message(msg)               # whatever parses can be built again
