"""The IKEv2 initiator (RFC 7296), sans-IO.

:class:`IkeInitiator` is one IKE SA and its CHILD_SA, from our side as the original
initiator.  Like :class:`erebus.openvpn.session.ClientSession` it never touches a
socket or a clock::

    ike = IkeInitiator(profile, now, local_addr=("198.18.130.2", 40000),
                       remote_addr=("198.18.130.1", 500))
    ike.datagrams_to_send(now)     # IKE datagrams (non-ESP marker included on NAT-T)
    ike.remote_port                # where they go: 500, then profile.natt_port
    ike.receive_datagram(data, now)
    ike.get_timer() / ike.handle_timer(now)
    ike.next_event()               # Connected, ChildRekeyed, ChildDeleted, Failed, Closed

States (named after the exchanges of RFC 7296 section 1)::

    INITIAL -> IKE_SA_INIT_SENT -> IKE_AUTH_SENT -> ESTABLISHED -> DELETING -> CLOSED
                (COOKIE / INVALID_KE_PAYLOAD: IKE_SA_INIT again)        (any: CLOSED)

After IKE_SA_INIT every message goes to ``profile.natt_port`` behind the non-ESP
marker (RFC 3948; section 2.23): ESP must be UDP-encapsulated for a user-space
client, so we behave as if a NAT were always there.  Requests are retransmitted
after 2, 4, 8, 16 and 32 s (section 2.1), with a window of one; the responder's
requests (DPD, DELETE, CHILD_SA rekey) are answered, and a retransmitted request is
answered with the same response.

A CHILD_SA rekey started by the responder (section 1.3.3, CREATE_CHILD_SA with
N(REKEY_SA)) yields :class:`ChildRekeyed` with the new pair of SAs: the shell
sends on the new outbound SA at once and keeps the old inbound SA until the
responder deletes the old CHILD_SA (:class:`ChildDeleted`).
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import ipaddress
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field

from ..errors import ParseError
from ..session import Closed, Failed
from ..wire import ike as w
from ..wire.ike import (
    AUTH, CERT, CERTREQ, CP, IDi, IDr, KE, SA, ConfigAttribute, Delete, IkeMessage, Nonce,
    Notify, TrafficSelector, TSi, TSr)
from . import ikecrypto as c
from .esp import SecurityAssociation
from .identity import certificate_identity, identity, same_identity
from .ikeprofile import CHILD_REKEY_TIME, IKE_REKEY_TIME, IkeProfile

__all__ = ["IkeInitiator", "State", "Connected", "ChildRekeyed", "ChildDeleted", "Failed",
           "Closed", "NattSwitched", "IkeRekeyed", "NON_ESP_MARKER", "RETRANSMIT_TIMEOUT",
           "RETRANSMIT_TRIES"]

log = logging.getLogger("erebus.ipsec.ike")

NON_ESP_MARKER = b"\x00\x00\x00\x00"
RETRANSMIT_TIMEOUT = 2.0          # first retransmission; doubled every time
RETRANSMIT_TRIES = 5              # retransmissions before giving up (2+4+8+16+32 s)
DELETE_TRIES = 1                  # a DELETE on close is retransmitted once, then we leave
MAX_COOKIES = 3
# An unauthenticated refusal of IKE_SA_INIT (an error notify, an INVALID_KE_PAYLOAD for a
# group we may not use, a choice we did not offer) may be forged (RFC 7296 section 2.21.1):
# keep retransmitting and waiting for a real answer: one more retransmission and its
# whole (doubled) timeout, i.e. until sent + 3 x the timeout in force; then fail with it.
INIT_REFUSAL_WAIT = 3
# The CIDR prefixes a CHILD_SA's selectors may expand to (RFC 7296 ranges are summarized
# into prefixes, checked for every packet): a responder's TSr beyond it is refused.
MAX_TS_NETWORKS = 256
FRAGMENT_SIZE = 1280 - 20 - 8 - 4  # RFC 7383: an IKE message per fragment over IPv4
# What we send in SIGNATURE_HASH_ALGORITHMS (RFC 7427): SHA-2 and Ed25519's "identity".
OUR_SIGNATURE_HASHES = (w.HASH_SHA2_256, w.HASH_SHA2_384, w.HASH_SHA2_512, w.HASH_IDENTITY)


class State(enum.Enum):
    INITIAL = "initial"
    IKE_SA_INIT_SENT = "ike-sa-init-sent"
    IKE_AUTH_SENT = "ike-auth-sent"
    ESTABLISHED = "established"
    DELETING = "deleting"
    CLOSED = "closed"


# -- events ------------------------------------------------------------------------------

@dataclass(slots=True)
class NattSwitched:
    """From now on IKE (and ESP) go to ``port`` behind the non-ESP marker."""

    port: int


@dataclass(slots=True)
class Connected:
    """IKE_AUTH done: the first CHILD_SA is up."""

    virtual_ip: str | None
    dns: list[str]                  # both families, in the responder's order
    remote_ts: list[str]            # CIDR prefixes of both families (what EspSession takes)
    local_ts: list[str]
    esp_transform: str              # a name of erebus.ipsec.transforms
    ike_suite: str
    outbound: SecurityAssociation
    inbound: SecurityAssociation
    remote_id: str
    setup_time: float
    virtual_ip6: str | None = None  # INTERNAL_IP6_ADDRESS (when asked for: vips6)
    prefix6: int | None = None      # its prefix length
    warnings: list[str] = field(default_factory=list)   # a family asked for and not given


@dataclass(slots=True)
class ChildRekeyed:
    """New SAs for the CHILD_SA: send on ``outbound`` now, accept ``inbound`` too; the
    old inbound SA (``old_inbound_spi``) stays until :class:`ChildDeleted`."""

    old_inbound_spi: int
    outbound: SecurityAssociation
    inbound: SecurityAssociation


@dataclass(slots=True)
class IkeRekeyed:
    """The IKE SA was rekeyed (by either side): these are the new SPIs, and our role."""

    spi_i: bytes
    spi_r: bytes
    initiator: bool


@dataclass(slots=True)
class ChildDeleted:
    inbound_spi: int


@dataclass(slots=True)
class _Child:
    inbound_spi: int                # ours
    outbound_spi: int               # the responder's
    transform: str
    esn: bool
    created: float = 0.0


@dataclass(slots=True)
class _OldSa:
    """An IKE SA replaced by a rekey, kept until its DELETE exchange is over."""

    spi_i: bytes
    spi_r: bytes
    keys: object
    role_initiator: bool
    next_mid: int
    peer_mid: int
    last_response: tuple | None
    collector: object
    expires: float
    delete: _Request | None = None
    deleted: bool = False           # its DELETE is done: only kept for retransmissions


@dataclass(slots=True)
class _PendingRekey:
    """A CREATE_CHILD_SA of ours in flight: IKE SA rekey (``child`` None) or CHILD_SA."""

    nonce: bytes
    spi: bytes | int
    dh: object = None
    suite: object = None
    child: object = None


@dataclass(slots=True)
class _Request:
    message_id: int
    datagrams: list[bytes]
    sent: float
    timeout: float
    tries: int = 0
    max_tries: int = RETRANSMIT_TRIES
    kind: str = ""


# -- the initiator --------------------------------------------------------------------------

def _load_certs(pem: bytes) -> list:
    from cryptography import x509
    return x509.load_pem_x509_certificates(pem)


def _subject(cert) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


class IkeInitiator:
    """One IKE SA with one CHILD_SA, as the original initiator (sans-IO)."""

    def __init__(self, profile: IkeProfile, now: float, *, rng=os.urandom,
                 local_addr: tuple[str, int] = ("0.0.0.0", 0),
                 remote_addr: tuple[str, int] = ("0.0.0.0", 500),
                 wall_clock=time.time):
        """``rng`` gives SPIs, nonces and DH secrets; ``wall_clock`` (epoch seconds)
        the time at which the responder's certificate must be valid."""
        self.profile = profile
        # None: charon's defaults; 0.0: never
        self.rekey_time = IKE_REKEY_TIME if profile.rekey_time is None else profile.rekey_time
        self.child_rekey_time = (CHILD_REKEY_TIME if profile.child_rekey_time is None
                                 else profile.child_rekey_time)
        self.rng = rng
        self.wall_clock = wall_clock
        self.local_addr = local_addr
        self.remote_addr = remote_addr
        self.remote_port = remote_addr[1]
        self.natt = False
        self.state = State.INITIAL
        self.started = now
        try:
            self.suites = [c.IkeSuite.parse(p) for p in profile.proposals]
        except ValueError as exc:
            raise ValueError(f"{profile.path}: proposals: {exc}") from None
        if not self.suites:
            raise ValueError(f"{profile.path}: no IKE proposals")
        self.esp_names = [n.lower() for n in profile.esp_proposals]
        for name in self.esp_names:
            if name not in c.ESP_TRANSFORM_IDS:
                raise ValueError(f"{profile.path}: esp_proposals: {name!r} is not one of "
                                 f"{', '.join(c.ESP_TRANSFORM_IDS)}")
        self.spi_i = self._new_ike_spi()
        self.spi_r = bytes(8)
        self.group = self.suites[0].dh
        self.keys: c.IkeSaKeys | None = None
        self.suite: c.IkeSuite | None = None
        self.ni = b""
        self.nr = b""
        self.cookie: bytes | None = None
        self.cookies = 0
        self.dropped = 0                 # peer messages dropped (malformed, unauthentic ...)
        self.refusals_ignored = 0        # unauthenticated IKE_SA_INIT refusals waited out
        self._refusal: tuple[str, str] | None = None   # the first one, (stage, message)
        self._refusal_deadline = 0.0
        self._groups_tried: set[int] = set()
        self.peer_fragmentation = False
        self.signature_hashes: set[int] | None = None   # negotiated (RFC 7427); None: not
        self.children: list[_Child] = []
        self.retransmits = 0
        self._dh: c.DiffieHellman | None = None
        self._init_request = b""
        self._init_response = b""
        self._child_spi = 0
        self._next_mid = 0
        self._peer_mid = 0               # the next request id we expect from the responder
        self._last_response: tuple[int, list[bytes]] | None = None
        self._request: _Request | None = None
        self._out: list[bytes] = []
        self._events: deque = deque()
        self._collector = c.FragmentCollector()
        self._last_heard = now
        self.role_initiator = True       # our role in the current IKE SA (a rekey may flip it)
        self.ike_rekeys = 0
        self._sa_started = now
        self._old: _OldSa | None = None
        self._rekey: _PendingRekey | None = None
        self._tsi: list = []
        self._tsr: list = []
        self._send_ike_sa_init(now)

    # -- helpers ----------------------------------------------------------------------

    def _new_ike_spi(self) -> bytes:
        while True:
            spi = self.rng(8)
            if any(spi):
                return spi

    def _new_esp_spi(self) -> int:
        while True:
            spi = int.from_bytes(self.rng(4), "big")
            if spi >= 256 and all(ch.inbound_spi != spi for ch in self.children):
                return spi

    def _frame(self, message: bytes) -> bytes:
        return NON_ESP_MARKER + message if self.natt else message

    def _send_request(self, datagrams: list[bytes], now: float, kind: str,
                      max_tries: int = RETRANSMIT_TRIES) -> None:
        self._request = _Request(self._next_mid, datagrams, now, RETRANSMIT_TIMEOUT,
                                 max_tries=max_tries, kind=kind)
        self._next_mid += 1
        self._out.extend(datagrams)

    def _protect(self, message: IkeMessage) -> list[bytes]:
        data = c.encrypt_sk(self.keys, message, initiator=self.role_initiator)
        if len(data) > FRAGMENT_SIZE and self.peer_fragmentation:
            pieces = c.encrypt_sk_fragments(self.keys, message, initiator=self.role_initiator,
                                            max_size=FRAGMENT_SIZE)
            return [self._frame(p) for p in pieces]
        return [self._frame(data)]

    def _fail(self, stage: str, message: str) -> None:
        if self.state is State.CLOSED:
            return
        log.info("IKE SA failed (%s): %s", stage, message)
        self.state = State.CLOSED
        self._request = None
        self._events.append(Failed(stage, message))

    def _tell_delete(self) -> None:
        """One unretransmitted INFORMATIONAL with D(IKE) (after we refused the peer)."""
        if self.keys is None:
            return
        msg = IkeMessage(self.spi_i, self.spi_r, w.INFORMATIONAL, w.FLAG_INITIATOR,
                         self._next_mid, [Delete(w.PROTO_IKE)])
        self._next_mid += 1
        self._out.extend(self._protect(msg))

    # -- IKE_SA_INIT ------------------------------------------------------------------

    def _send_ike_sa_init(self, now: float) -> None:
        self._dh = c.DiffieHellman(self.group, rng=self.rng)
        self._groups_tried.add(self.group)
        self._refusal = None
        self.ni = self.rng(32)
        local_ip, local_port = self.local_addr
        remote_ip, remote_port = self.remote_addr
        payloads = []
        if self.cookie is not None:
            payloads.append(Notify(w.COOKIE, self.cookie))
        payloads += [
            SA(c.ike_proposals(self.suites)),
            KE(self.group, self._dh.public_bytes()),
            Nonce(self.ni),
            Notify(w.NAT_DETECTION_SOURCE_IP,
                   c.nat_detection_hash(self.spi_i, bytes(8), local_ip, local_port)),
            Notify(w.NAT_DETECTION_DESTINATION_IP,
                   c.nat_detection_hash(self.spi_i, bytes(8), remote_ip, remote_port)),
            *([Notify(w.IKEV2_FRAGMENTATION_SUPPORTED)] if self.profile.fragmentation else []),
            Notify(w.SIGNATURE_HASH_ALGORITHMS, w.build_hash_algorithms(OUR_SIGNATURE_HASHES)),
        ]
        msg = IkeMessage(self.spi_i, bytes(8), w.IKE_SA_INIT, w.FLAG_INITIATOR, 0, payloads)
        self._init_request = w.build_message(msg)
        self._next_mid = 0
        self.state = State.IKE_SA_INIT_SENT
        self._send_request([self._init_request], now, "IKE_SA_INIT")

    def _on_ike_sa_init_response(self, data: bytes, now: float) -> None:
        msg = w.parse_message(data)
        cookie = msg.notify(w.COOKIE)
        if cookie is not None:
            self.cookies += 1
            if self.cookies > MAX_COOKIES:
                self._fail("unreachable", "the responder keeps asking for a COOKIE")
                return
            log.debug("IKE_SA_INIT: the responder wants a COOKIE; sending it")
            self.cookie = cookie.data
            self._send_ike_sa_init(now)
            return
        invalid_ke = msg.notify(w.INVALID_KE_PAYLOAD)
        if invalid_ke is not None:
            group = w.parse_u16_notify(invalid_ke.data)
            why = self._unusable_group(group)
            if why is not None:
                self._refused("proposal", f"the responder wants DH group {group}, {why}", now)
                return
            log.info("IKE_SA_INIT: the responder wants DH group %d; retrying", group)
            self.group = group
            self._send_ike_sa_init(now)
            return
        errors = msg.errors()
        if errors:
            names = ", ".join(n.name for n in errors)
            if any(n.type == w.NO_PROPOSAL_CHOSEN for n in errors):
                self._refused("proposal", f"the responder accepts none of our IKE proposals "
                              f"({', '.join(self.profile.proposals)}): NO_PROPOSAL_CHOSEN", now)
            else:
                self._refused("proposal", f"IKE_SA_INIT refused: {names}", now)
            return
        if msg.spi_r == bytes(8):
            raise ParseError("IKE_SA_INIT response without a responder SPI")
        sa, ke, nonce = msg.get(SA), msg.get(KE), msg.get(Nonce)
        if sa is None or ke is None or nonce is None:
            raise ParseError("IKE_SA_INIT response lacks SA, KE or Nonce")
        if len(sa.proposals) != 1:
            raise ParseError(f"IKE_SA_INIT response with {len(sa.proposals)} proposals")
        suite = c.IkeSuite.from_proposal(sa.proposals[0])
        if suite not in self.suites:
            self._refused("proposal", f"the responder chose {suite}, which we did not offer",
                          now)
            return
        if suite.dh != self.group or ke.group != self.group:
            self._refused("proposal", f"the responder chose DH group {ke.group}, our KE is "
                          f"for {self.group}", now)
            return
        try:
            shared = self._dh.shared_secret(ke.data)
        except c.InvalidKeyExchange as exc:
            self._refused("proposal", f"the responder's KE payload is unusable: {exc}", now)
            return
        hash_algs = msg.notify(w.SIGNATURE_HASH_ALGORITHMS)
        theirs = None if hash_algs is None else set(w.parse_hash_algorithms(hash_algs.data))
        keys = c.ike_sa_keys(suite, shared, self.ni, nonce.data, self.spi_i, msg.spi_r,
                             rng=self.rng)
        # everything that can fail is done: only now does the response change our state
        # (a forged one that is dropped halfway must leave none of it behind)
        self.spi_r = msg.spi_r
        self.suite = suite
        self.nr = nonce.data
        self.keys = keys
        self._init_response = bytes(data)
        self.peer_fragmentation = msg.notify(w.IKEV2_FRAGMENTATION_SUPPORTED) is not None
        # RFC 7427 section 4: what both sent (None: the responder sent no notify; an
        # empty set: it did, with nothing in common); the responder's AUTH signs this
        # message, so the negotiation cannot have been stripped unnoticed
        self.signature_hashes = None if theirs is None else theirs & set(OUR_SIGNATURE_HASHES)
        self._request = None
        log.info("IKE_SA_INIT done: %s, SPIs %s/%s", suite, self.spi_i.hex(), self.spi_r.hex())
        # NAT-T always (section 2.23): a user-space client needs UDP-encapsulated ESP.
        self.natt = True
        self.remote_port = self.profile.natt_port
        self._events.append(NattSwitched(self.remote_port))
        self._send_ike_auth(now)

    def _unusable_group(self, group: int) -> str | None:
        """Why an INVALID_KE_PAYLOAD's group must not be taken (None: take it): only a
        group of the profile's proposals (so never one weaker than the weakest the
        profile allows), each group once (no ping-pong between two)."""
        if group not in {s.dh for s in self.suites}:
            return (f"which we did not offer ({', '.join(sorted(str(s) for s in self.suites))})")
        if group in self._groups_tried:
            return "which we tried already"
        return None

    def _refused(self, stage: str, message: str, now: float) -> None:
        """An unauthenticated refusal of our IKE_SA_INIT: anyone on the path can forge
        one (RFC 7296 section 2.21.1), so keep retransmitting and waiting for a real
        answer; fail with it only if none comes (see INIT_REFUSAL_WAIT)."""
        self.refusals_ignored += 1
        if self._refusal is not None:
            return
        req = self._request
        self._refusal = (stage, message)
        self._refusal_deadline = req.sent + req.timeout * INIT_REFUSAL_WAIT
        log.info("IKE_SA_INIT: %s (unauthenticated: waiting until +%.0f s for another "
                 "answer)", message, self._refusal_deadline - now)

    # -- IKE_AUTH ---------------------------------------------------------------------

    def _local_identity(self) -> IDi:
        """local.id as charon types it; without one, as charon does: the subject DN of
        the certificate we authenticate with, else our IP address."""
        p = self.profile
        if p.local_id:
            return identity(p.local_id, IDi)
        if p.local_auth == "pubkey" and p.local_cert:
            return certificate_identity(_load_certs(p.local_cert)[0], IDi)
        return IDi.from_value(self.local_addr[0])

    def _send_ike_auth(self, now: float) -> None:
        p = self.profile
        idi = self._local_identity()
        self._idi = idi
        octets = c.signed_octets(self.keys, initiator=True, message=self._init_request,
                                 nonce=self.nr, identity=idi)
        payloads: list = [idi]
        if p.local_auth == "pubkey":
            from cryptography.hazmat.primitives.serialization import (
                Encoding, load_pem_private_key)
            if not p.local_cert or not p.local_key:
                self._fail("config", f"{p.path}: pubkey authentication needs a certificate "
                           "and its private key")
                return
            for cert in _load_certs(p.local_cert):
                payloads.append(CERT(w.CERT_X509_SIGNATURE, cert.public_bytes(Encoding.DER)))
            key = load_pem_private_key(p.local_key, password=None)
            auth = c.sign_auth(key, octets)
        else:
            if p.psk is None:
                self._fail("config", f"{p.path}: no pre-shared key for {idi.text()}")
                return
            auth = AUTH(w.AUTH_PSK, c.psk_auth(self.keys.prf, p.psk, octets))
        if p.remote_auth == "pubkey" and p.cacerts:
            payloads.append(CERTREQ(w.CERT_X509_SIGNATURE, b"".join(
                self._key_hash(ca) for pem in p.cacerts for ca in _load_certs(pem))))
        if p.remote_id:
            payloads.append(identity(p.remote_id, IDr))
        payloads.append(auth)
        if p.vips or p.vips6:
            # as charon: the virtual IPs asked for (empty: any), then their DNS servers
            asked = ([w.INTERNAL_IP4_ADDRESS] if p.vips else []) + \
                ([w.INTERNAL_IP6_ADDRESS] if p.vips6 else []) + \
                ([w.INTERNAL_IP4_DNS] if p.vips else []) + \
                ([w.INTERNAL_IP6_DNS] if p.vips6 else [])
            payloads.append(CP(w.CFG_REQUEST, [ConfigAttribute(t) for t in asked]))
        self._child_spi = self._new_esp_spi()
        payloads += [
            SA([c.esp_proposal(name, self._child_spi, number=i + 1)
                for i, name in enumerate(self.esp_names)]),
            TSi([TrafficSelector.from_network(n) for n in self._local_ts()]),
            TSr([TrafficSelector.from_network(n) for n in p.remote_ts]),
        ]
        msg = IkeMessage(self.spi_i, self.spi_r, w.IKE_AUTH, w.FLAG_INITIATOR,
                         self._next_mid, payloads)
        self.state = State.IKE_AUTH_SENT
        self._send_request(self._protect(msg), now, "IKE_AUTH")

    def _local_ts(self) -> list[str]:
        """local_ts, or 'dynamic' as charon proposes it: the whole family of every
        virtual IP we ask for (0.0.0.0/0, ::/0), else our own address."""
        p = self.profile
        if p.local_ts:
            return p.local_ts
        if p.vips or p.vips6:
            return (["0.0.0.0/0"] if p.vips else []) + (["::/0"] if p.vips6 else [])
        if ipaddress.ip_address(self.local_addr[0]).is_unspecified:
            return ["0.0.0.0/0"]
        return [f"{self.local_addr[0]}/32"]

    @staticmethod
    def _key_hash(cert) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
        return hashlib.sha1(cert.public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).digest()

    def _verify_certificate(self, msg: IkeMessage, idr: IDr):
        """The responder's end-entity certificate, checked against the CAs and IDr;
        None after a Failed event."""
        from cryptography import x509
        from cryptography.x509 import verification as v
        p = self.profile
        ders = [cp.data for cp in msg.get_all(CERT) if cp.encoding == w.CERT_X509_SIGNATURE]
        if not ders:
            self._fail("auth", "the responder sent no certificate (it authenticates with a "
                       "signature)")
            return None
        try:
            certs = [x509.load_der_x509_certificate(d) for d in ders]
        except ValueError as exc:
            self._fail("auth", f"the responder's certificate does not parse: {exc}")
            return None
        leaf, extra = certs[0], certs[1:]
        anchors = [ca for pem in p.cacerts for ca in _load_certs(pem)]
        if not anchors:
            self._fail("config", f"{p.path}: no CA certificate to check the responder's "
                       "certificate with (cacerts)")
            return None
        try:
            verifier = (v.PolicyBuilder().store(v.Store(anchors))
                        .time(datetime.datetime.fromtimestamp(self.wall_clock(),
                                                        datetime.timezone.utc))
                        .extension_policies(ca_policy=v.ExtensionPolicy.webpki_defaults_ca(),
                                            ee_policy=v.ExtensionPolicy.permit_all())
                        .build_client_verifier())
            verifier.verify(leaf, extra)
        except v.VerificationError as exc:
            trusted = "; ".join(_subject(ca) for ca in anchors)
            if all(ca.subject != leaf.issuer for ca in anchors) and not extra:
                why = f"its issuer is not among our CAs ({trusted})"
            else:
                why = f"it does not verify against our CAs ({trusted}): {exc}"
            self._fail("certificate", f"the responder's certificate {_subject(leaf)} "
                       f"(issued by {leaf.issuer.rfc4514_string()}) is not trusted: {why}")
            return None
        # The identity must be in the certificate (RFC 4945 section 3.1).
        try:
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns_names = [n.lower() for n in san.get_values_for_type(x509.DNSName)]
            ips = [str(a) for a in san.get_values_for_type(x509.IPAddress)]
            emails = san.get_values_for_type(x509.RFC822Name)
        except x509.ExtensionNotFound:
            dns_names, ips, emails = [], [], []
        ident = idr.text()
        ok = (idr.id_type == w.ID_FQDN and ident.lower() in dns_names) or \
            (idr.id_type in (w.ID_IPV4_ADDR, w.ID_IPV6_ADDR) and ident in ips) or \
            (idr.id_type == w.ID_RFC822_ADDR and ident in emails) or \
            (idr.id_type == w.ID_DER_ASN1_DN and
             same_identity(idr, certificate_identity(leaf, IDr)))
        if not ok:
            self._fail("certificate", f"the responder's certificate {_subject(leaf)} does "
                       f"not name its identity {ident!r}")
            return None
        return leaf

    def _on_ike_auth_response(self, msg: IkeMessage, now: float) -> None:
        p = self.profile
        errors = msg.errors()
        if any(n.type == w.AUTHENTICATION_FAILED for n in errors):
            self._fail("auth", "the responder refused our authentication"
                       + (" (wrong PSK or identity?)" if p.local_auth == "psk" else
                          " (is our certificate's CA trusted there?)"))
            return
        idr, auth = msg.get(IDr), msg.get(AUTH)
        if idr is None or auth is None:
            names = ", ".join(n.name for n in errors) or "no IDr/AUTH"
            self._fail("auth", f"IKE_AUTH refused: {names}")
            return
        if p.remote_id:
            if not same_identity(identity(p.remote_id, IDr), idr):
                self._fail("auth", f"the responder identifies as {idr.text()!r}, not "
                           f"{p.remote_id!r}")
                self._tell_delete()
                return
        octets = c.signed_octets(self.keys, initiator=False, message=self._init_response,
                                 nonce=self.ni, identity=idr)
        if p.remote_auth == "pubkey":
            if auth.method == w.AUTH_PSK:
                self._fail("auth", "the responder authenticates with a PSK; we expect a "
                           "certificate")
                self._tell_delete()
                return
            leaf = self._verify_certificate(msg, idr)
            if leaf is None:
                self._tell_delete()
                return
            try:
                c.verify_auth(auth, octets, public_key=leaf.public_key(),
                              allowed_hashes=self.signature_hashes)
            except c.HashRefused as exc:
                self._fail("auth", f"the responder's AUTH is {exc}: refused")
                self._tell_delete()
                return
            except c.AuthFailed as exc:
                self._fail("auth", f"the responder's AUTH does not verify with its "
                           f"certificate {_subject(leaf)}: {exc}")
                self._tell_delete()
                return
        else:
            if auth.method != w.AUTH_PSK:
                self._fail("auth", f"the responder authenticates with AUTH method "
                           f"{auth.method}; we expect a PSK")
                self._tell_delete()
                return
            try:
                c.verify_auth(auth, octets, psk=p.psk, prf=self.keys.prf)
            except c.AuthFailed:
                self._fail("auth", "the responder's AUTH does not verify: wrong PSK?")
                self._tell_delete()
                return
        log.info("IKE_AUTH: the responder %r is authenticated", idr.text())
        if errors:                       # IKE SA up, CHILD_SA refused
            names = ", ".join(n.name for n in errors)
            stage = "config" if any(n.type in (w.INTERNAL_ADDRESS_FAILURE,
                                               w.FAILED_CP_REQUIRED) for n in errors) \
                else "proposal"
            self._fail(stage, f"the responder refused the CHILD_SA: {names}")
            self._tell_delete()
            return
        sa, tsi, tsr = msg.get(SA), msg.get(TSi), msg.get(TSr)
        if sa is None or tsi is None or tsr is None or len(sa.proposals) != 1 \
                or len(sa.proposals[0].spi) != 4:
            self._fail("proposal", "the responder's IKE_AUTH response lacks a CHILD_SA (one "
                       "ESP proposal with a 4-byte SPI, TSi and TSr)")
            self._tell_delete()
            return
        try:
            name, esn = c.esp_transform_name(sa.proposals[0])
        except ParseError as exc:
            self._fail("proposal", f"the responder chose an ESP proposal we cannot use: {exc}")
            self._tell_delete()
            return
        if name not in self.esp_names or esn:
            self._fail("proposal", f"the responder chose ESP {name}{' with ESN' if esn else ''}"
                       f", which we did not offer")
            self._tell_delete()
            return
        peer_spi = int.from_bytes(sa.proposals[0].spi, "big")
        vip, vip6, dns, warnings = self._assigned(msg.get(CP))
        if (p.vips or p.vips6) and vip is None and vip6 is None:
            asked = " or ".join((["INTERNAL_IP4_ADDRESS"] if p.vips else []) +
                                (["INTERNAL_IP6_ADDRESS"] if p.vips6 else []))
            self._fail("config", f"the responder assigned no virtual IP (no {asked} in its "
                       "CP reply)")
            self._tell_delete()
            return
        remote_ts = [n for ts in tsr.selectors for n in ts.networks()]
        local_ts = [n for ts in tsi.selectors for n in ts.networks()]
        if len(remote_ts) > MAX_TS_NETWORKS or len(local_ts) > MAX_TS_NETWORKS:
            self._fail("proposal", f"the responder's traffic selectors cover "
                       f"{max(len(remote_ts), len(local_ts))} networks (erebus takes at "
                       f"most {MAX_TS_NETWORKS})")
            self._tell_delete()
            return
        families = {ipaddress.ip_network(n).version for n in remote_ts}
        if vip6 is not None and 6 not in families:
            warnings.append(f"IPv6 virtual IP {vip6[0]} but the responder's TSr has no IPv6 "
                            f"network ({', '.join(remote_ts) or 'none'}): nothing is "
                            "reached over IPv6")
        outbound, inbound = self._child_sas(name, esn, peer_spi, self._child_spi, self.ni,
                                            self.nr, initiator=True)
        self.children = [_Child(self._child_spi, peer_spi, name, esn, now)]
        self._tsi, self._tsr = list(tsi.selectors), list(tsr.selectors)
        self._request = None
        self.state = State.ESTABLISHED
        self._last_heard = now
        self._sa_started = now
        log.info("IKE SA established with %s: %s, ESP %s, in %#010x out %#010x, VIP %s%s",
                 idr.text(), self.suite, name, self._child_spi, peer_spi, vip,
                 f", {vip6[0]}/{vip6[1]}" if vip6 else "")
        self._events.append(Connected(
            virtual_ip=vip, dns=dns, remote_ts=remote_ts, local_ts=local_ts,
            esp_transform=name, ike_suite=self.suite.name, outbound=outbound,
            inbound=inbound, remote_id=idr.text(), setup_time=now - self.started,
            virtual_ip6=vip6[0] if vip6 else None, prefix6=vip6[1] if vip6 else None,
            warnings=warnings))

    def _assigned(self, cp: CP | None):
        """(IPv4 VIP, (IPv6 VIP, prefix length), DNS servers, warnings) of the CFG_REPLY,
        for the families we asked for; what is malformed or unusable is skipped."""
        p = self.profile
        if cp is None or cp.cfg_type not in (w.CFG_REPLY, w.CFG_REQUEST) \
                or not (p.vips or p.vips6):
            return None, None, [], []
        reply = w.parse_config_reply(cp)
        warnings = [f"the responder's CP reply: {why} (skipped)" for why in reply.skipped]
        vip = reply.ip4[0] if reply.ip4 and p.vips else None
        vip6 = reply.ip6[0] if reply.ip6 and p.vips6 else None
        dns = [d for d in reply.dns if (":" in d and p.vips6) or (":" not in d and p.vips)]
        if p.vips and p.vips6:
            for family, got in (("IPv4", vip), ("IPv6", vip6)):
                if got is None:
                    warnings.append(f"the responder assigned no {family} virtual IP: the "
                                    f"tunnel carries no {family}")
        return vip, vip6, dns, warnings

    def _child_sas(self, name: str, esn: bool, out_spi: int, in_spi: int, ni: bytes,
                   nr: bytes, *, initiator: bool, shared: bytes | None = None):
        key_len, integ_len = c.esp_key_lengths(name)
        ck = c.child_sa_keys(self.keys, ni, nr, key_len, integ_len, shared)
        outbound = SecurityAssociation(out_spi, name, *ck.outbound(initiator), esn=esn,
                                       rng=self.rng)
        inbound = SecurityAssociation(in_spi, name, *ck.inbound(initiator), esn=esn,
                                      rng=self.rng)
        return outbound, inbound

    # -- the responder's requests -----------------------------------------------------

    def _respond(self, request: IkeMessage, exchange: int, payloads: list) -> None:
        msg = IkeMessage(self.spi_i, self.spi_r, exchange,
                         self._role_flag | w.FLAG_RESPONSE, request.message_id, payloads)
        datagrams = self._protect(msg)
        self._last_response = (request.message_id, datagrams)
        self._out.extend(datagrams)

    def _on_request(self, msg: IkeMessage, now: float) -> None:
        if msg.exchange == w.INFORMATIONAL:
            self._on_informational(msg, now)
        elif msg.exchange == w.CREATE_CHILD_SA:
            self._on_create_child_sa(msg, now)
        else:
            self._respond(msg, msg.exchange, [Notify(w.INVALID_SYNTAX)])

    def _on_informational(self, msg: IkeMessage, now: float) -> None:
        deletes = msg.get_all(Delete)
        if any(d.protocol == w.PROTO_IKE for d in deletes):
            self._respond(msg, w.INFORMATIONAL, [])
            self._fail("restart", "the responder deleted the IKE SA")
            return
        answer: list = []
        for d in deletes:
            if d.protocol != w.PROTO_ESP:
                continue
            ours = []
            for spi in d.spis:
                value = int.from_bytes(spi, "big")
                for child in list(self.children):
                    if child.outbound_spi == value:
                        self.children.remove(child)
                        ours.append(child.inbound_spi.to_bytes(4, "big"))
                        self._events.append(ChildDeleted(child.inbound_spi))
                        log.info("CHILD_SA in %#010x/out %#010x deleted by the responder",
                                 child.inbound_spi, child.outbound_spi)
            if ours:
                answer.append(Delete(w.PROTO_ESP, ours))
        self._respond(msg, w.INFORMATIONAL, answer)
        if deletes and not self.children:
            self._fail("restart", "the responder deleted the CHILD_SA")

    def _pfs_groups(self) -> set[int]:
        """DH groups we accept for a CHILD_SA's PFS: those erebus implements, no weaker
        than the weakest group of the profile's IKE proposals."""
        weakest = min(c.DH_STRENGTH[s.dh] for s in self.suites)
        return {g for g, bits in c.DH_STRENGTH.items() if bits >= weakest}

    def _choose_esp(self, sa: SA, group: int | None):
        """The first of the responder's proposals that offers one of our ESP transforms
        (without ESN), with the DH group of its KE payload (``group``; None: no PFS):
        ``(proposal number, name, peer SPI)``; or ``int``, the group we want instead
        (answered with INVALID_KE_PAYLOAD, RFC 7296 section 1.3); or None."""
        want = None
        allowed = self._pfs_groups()
        for prop in sa.proposals:
            if prop.protocol != w.PROTO_ESP or len(prop.spi) != 4:
                continue
            esns = {t.id for t in prop.of_type(w.TRANSFORM_ESN)}
            if esns and w.ESN_NO not in esns:
                continue
            encrs = {(t.id, t.key_length) for t in prop.of_type(w.TRANSFORM_ENCR)}
            integs = {t.id for t in prop.of_type(w.TRANSFORM_INTEG)} or {w.INTEG_NONE}
            name = next((n for n in self.esp_names
                         if c.ESP_TRANSFORM_IDS[n][:2] in encrs
                         and c.ESP_TRANSFORM_IDS[n][2] in integs), None)
            if name is None:
                continue
            dh_ids = [t.id for t in prop.of_type(w.TRANSFORM_DH)]
            usable = [g for g in dh_ids if g in allowed]
            if group is None:
                if dh_ids and w.DH_NONE not in dh_ids:
                    continue        # PFS required, but no KE payload: NO_PROPOSAL_CHOSEN
            elif group not in usable:
                if want is None and usable:
                    want = usable[0]
                continue
            return prop.number, name, int.from_bytes(prop.spi, "big")
        return want

    def _on_create_child_sa(self, msg: IkeMessage, now: float) -> None:
        rekey = next((n for n in msg.notifies() if n.type == w.REKEY_SA
                      and n.protocol == w.PROTO_ESP), None)
        sa, nonce, tsi, tsr = msg.get(SA), msg.get(Nonce), msg.get(TSi), msg.get(TSr)
        if sa is None or nonce is None:
            raise ParseError("CREATE_CHILD_SA request lacks SA or Nonce")
        if any(p.protocol == w.PROTO_IKE for p in sa.proposals):
            self._on_ike_rekey_request(msg, sa, nonce, now)
            return
        if rekey is None:
            self._respond(msg, w.CREATE_CHILD_SA, [Notify(w.NO_ADDITIONAL_SAS)])
            return
        old_out = int.from_bytes(rekey.spi, "big")
        old = next((ch for ch in self.children if ch.outbound_spi == old_out), None)
        if old is None or tsi is None or tsr is None:
            self._respond(msg, w.CREATE_CHILD_SA,
                          [Notify(w.CHILD_SA_NOT_FOUND, protocol=w.PROTO_ESP, spi=rekey.spi)])
            return
        pending = self._rekey
        if pending is not None and (pending.child is None or pending.child is old):
            # our IKE SA rekey, or our rekey or DELETE of this CHILD_SA, is in flight: the
            # responder retries later (RFC 7296 section 2.25); ours goes on
            log.info("CHILD_SA rekey by the responder while our %s is under way: "
                     "TEMPORARY_FAILURE", self._request.kind if self._request else "rekey")
            self._respond(msg, w.CREATE_CHILD_SA, [Notify(w.TEMPORARY_FAILURE)])
            return
        ke = msg.get(KE)
        choice = self._choose_esp(sa, ke.group if ke is not None else None)
        if choice is None:
            log.info("CHILD_SA rekey by the responder: no acceptable proposal")
            self._respond(msg, w.CREATE_CHILD_SA, [Notify(w.NO_PROPOSAL_CHOSEN)])
            return
        if isinstance(choice, int):
            log.info("CHILD_SA rekey by the responder with a KE for DH group %d: we want "
                     "%d (INVALID_KE_PAYLOAD)", ke.group, choice)
            self._respond(msg, w.CREATE_CHILD_SA,
                          [Notify(w.INVALID_KE_PAYLOAD, choice.to_bytes(2, "big"))])
            return
        number, name, peer_spi = choice
        shared = None
        reply_ke = None
        if ke is not None:
            dh = c.DiffieHellman(ke.group, rng=self.rng)
            try:
                shared = dh.shared_secret(ke.data)
            except c.InvalidKeyExchange:
                self._respond(msg, w.CREATE_CHILD_SA, [Notify(w.NO_PROPOSAL_CHOSEN)])
                return
            reply_ke = KE(ke.group, dh.public_bytes())
        our_spi = self._new_esp_spi()
        nr = self.rng(32)
        payloads: list = [SA([c.esp_proposal(name, our_spi, number=number,
                                             dh=ke.group if ke is not None else w.DH_NONE)]),
                          Nonce(nr)]
        if reply_ke is not None:
            payloads.append(reply_ke)
        # Their TSi is their side (our TSr) and the other way round: echo them.
        payloads += [TSi(tsi.selectors), TSr(tsr.selectors)]
        self._respond(msg, w.CREATE_CHILD_SA, payloads)
        # The responder of the IKE SA initiated this exchange: keys from its point of view.
        outbound, inbound = self._child_sas(name, False, peer_spi, our_spi, nonce.data, nr,
                                            initiator=False, shared=shared)
        self.children.append(_Child(our_spi, peer_spi, name, False, now))
        log.info("CHILD_SA rekeyed by the responder: in %#010x out %#010x (old in %#010x)",
                 our_spi, peer_spi, old.inbound_spi)
        self._events.append(ChildRekeyed(old.inbound_spi, outbound, inbound))

    # -- IKE SA rekey (sections 1.3.2, 2.18) -----------------------------------------

    @property
    def _role_flag(self) -> int:
        return w.FLAG_INITIATOR if self.role_initiator else 0

    def _choose_ike(self, sa: SA):
        """(proposal, our suite) of the first of the peer's IKE proposals that offers
        every algorithm of one of our suites."""
        for prop in sa.proposals:
            if prop.protocol != w.PROTO_IKE or len(prop.spi) != 8:
                continue
            offered = {(t.type, t.id, t.key_length) for t in prop.transforms}
            for suite in self.suites:
                if all((t.type, t.id, t.key_length) in offered for t in suite.transforms()):
                    return prop, suite
        return None

    def _switch_sa(self, spi_i: bytes, spi_r: bytes, keys, suite, role_initiator: bool,
                   now: float) -> None:
        """Make the new IKE SA current (message ids from 0); keep the old one until its
        DELETE exchange is over.  The CHILD_SAs move along."""
        self._old = _OldSa(self.spi_i, self.spi_r, self.keys, self.role_initiator,
                           self._next_mid, self._peer_mid, self._last_response,
                           self._collector, now + 60.0)
        self.spi_i, self.spi_r, self.keys, self.suite = spi_i, spi_r, keys, suite
        self.role_initiator = role_initiator
        self._next_mid = 0
        self._peer_mid = 0
        self._last_response = None
        self._collector = c.FragmentCollector()
        self._request = None
        self._rekey = None
        self._sa_started = now
        self._last_heard = now
        self.ike_rekeys += 1
        self._events.append(IkeRekeyed(spi_i, spi_r, role_initiator))

    def _on_ike_rekey_request(self, msg: IkeMessage, sa: SA, nonce: Nonce, now: float) -> None:
        ke = msg.get(KE)
        if self._rekey is not None or (self._old is not None and not self._old.deleted):
            log.info("IKE SA rekey by the responder while a rekey is under way: "
                     "TEMPORARY_FAILURE")
            self._respond(msg, w.CREATE_CHILD_SA, [Notify(w.TEMPORARY_FAILURE)])
            return
        choice = self._choose_ike(sa)
        if choice is None or ke is None:
            log.info("IKE SA rekey by the responder: no acceptable proposal")
            self._respond(msg, w.CREATE_CHILD_SA, [Notify(w.NO_PROPOSAL_CHOSEN)])
            return
        prop, suite = choice
        if ke.group != suite.dh:
            self._respond(msg, w.CREATE_CHILD_SA, [Notify(
                w.INVALID_KE_PAYLOAD, suite.dh.to_bytes(2, "big"))])
            return
        dh = c.DiffieHellman(ke.group, rng=self.rng)
        try:
            shared = dh.shared_secret(ke.data)
        except c.InvalidKeyExchange:
            self._respond(msg, w.CREATE_CHILD_SA, [Notify(w.NO_PROPOSAL_CHOSEN)])
            return
        new_spi = self._new_ike_spi()
        nr = self.rng(32)
        self._respond(msg, w.CREATE_CHILD_SA, [SA([suite.proposal(prop.number, new_spi)]),
                                               Nonce(nr), KE(ke.group, dh.public_bytes())])
        keys = c.rekeyed_ike_sa_keys(self.keys, suite, shared, nonce.data, nr, prop.spi,
                                     new_spi)
        log.info("IKE SA rekeyed by the responder: %s, SPIs %s/%s", suite, prop.spi.hex(),
                 new_spi.hex())
        # The initiator of the rekey is the initiator of the new IKE SA; it deletes the old.
        self._switch_sa(prop.spi, new_spi, keys, suite, False, now)

    def _start_ike_rekey(self, now: float) -> None:
        suite = self.suite
        dh = c.DiffieHellman(suite.dh, rng=self.rng)
        spi = self._new_ike_spi()
        ni = self.rng(32)
        self._rekey = _PendingRekey(ni, spi, dh=dh, suite=suite)
        msg = IkeMessage(self.spi_i, self.spi_r, w.CREATE_CHILD_SA, self._role_flag,
                         self._next_mid, [SA([suite.proposal(1, spi)]), Nonce(ni),
                                          KE(suite.dh, dh.public_bytes())])
        log.info("rekeying the IKE SA (%s)", suite)
        self._send_request(self._protect(msg), now, "REKEY_IKE")

    def _on_ike_rekey_response(self, msg: IkeMessage, now: float) -> None:
        pending, self._rekey = self._rekey, None
        sa, ke, nonce = msg.get(SA), msg.get(KE), msg.get(Nonce)
        errors = msg.errors()
        if pending is None or errors or sa is None or ke is None or nonce is None \
                or len(sa.proposals) != 1:
            names = ", ".join(n.name for n in errors) or "no SA, KE or Nonce"
            log.warning("the responder refused to rekey the IKE SA (%s); retrying later",
                        names)
            self._sa_started = now - (self.rekey_time or 0) + 30.0
            return
        prop = sa.proposals[0]
        try:
            suite = c.IkeSuite.from_proposal(prop)
            shared = pending.dh.shared_secret(ke.data)
        except (ParseError, c.InvalidKeyExchange) as exc:
            log.warning("unusable IKE SA rekey response (%s); retrying later", exc)
            self._sa_started = now - (self.rekey_time or 0) + 30.0
            return
        if suite != pending.suite or ke.group != suite.dh or len(prop.spi) != 8:
            log.warning("the responder answered our IKE SA rekey with %s; retrying later",
                        suite)
            self._sa_started = now - (self.rekey_time or 0) + 30.0
            return
        keys = c.rekeyed_ike_sa_keys(self.keys, suite, shared, pending.nonce, nonce.data,
                                     pending.spi, prop.spi)
        log.info("IKE SA rekeyed: SPIs %s/%s", pending.spi.hex(), prop.spi.hex())
        self._switch_sa(pending.spi, prop.spi, keys, suite, True, now)
        old = self._old
        # We started the rekey: we delete the old IKE SA (on the old SA).
        message = IkeMessage(old.spi_i, old.spi_r, w.INFORMATIONAL,
                             w.FLAG_INITIATOR if old.role_initiator else 0, old.next_mid,
                             [Delete(w.PROTO_IKE)])
        datagrams = [self._frame(c.encrypt_sk(old.keys, message,
                                              initiator=old.role_initiator))]
        old.delete = _Request(old.next_mid, datagrams, now, RETRANSMIT_TIMEOUT,
                              max_tries=3, kind="DELETE_OLD_IKE")
        old.next_mid += 1
        self._out.extend(datagrams)

    def _receive_old(self, old: _OldSa, header, data: bytes, now: float) -> None:
        """A message on the IKE SA a rekey replaced: the DELETE of it (either way)."""
        if header.initiator == old.role_initiator:
            raise ParseError("our own role's message on the old IKE SA")
        piece = c.decrypt_sk(old.keys, data, initiator=old.role_initiator)
        msg = old.collector.add(piece)
        if msg is None:
            return
        if header.response:
            if old.delete is not None and header.message_id == old.delete.message_id:
                log.info("the old IKE SA %s/%s is deleted", old.spi_i.hex(), old.spi_r.hex())
                self._old = None
            return
        mid = header.message_id
        if old.last_response is not None and old.last_response[0] == mid:
            self._out.extend(old.last_response[1])
            return
        if mid != old.peer_mid:
            raise ParseError(f"request {mid} on the old IKE SA, expected {old.peer_mid}")
        old.peer_mid += 1
        deletes = msg.get_all(Delete)
        reply = IkeMessage(old.spi_i, old.spi_r, msg.exchange,
                           (w.FLAG_INITIATOR if old.role_initiator else 0) | w.FLAG_RESPONSE,
                           mid, [] if msg.exchange == w.INFORMATIONAL
                           else [Notify(w.TEMPORARY_FAILURE)])
        datagrams = [self._frame(c.encrypt_sk(old.keys, reply, initiator=old.role_initiator))]
        old.last_response = (mid, datagrams)
        self._out.extend(datagrams)
        if any(d.protocol == w.PROTO_IKE for d in deletes):
            log.info("the responder deleted the old IKE SA %s/%s", old.spi_i.hex(),
                     old.spi_r.hex())
            # keep answering a retransmitted DELETE for a little while
            old.deleted = True
            old.expires = min(old.expires, now + 10.0)

    # -- CHILD_SA rekey by us (section 1.3.3) ------------------------------------------

    def _start_child_rekey(self, child: _Child, now: float) -> None:
        spi = self._new_esp_spi()
        ni = self.rng(32)
        self._rekey = _PendingRekey(ni, spi, child=child)
        payloads = [Notify(w.REKEY_SA, protocol=w.PROTO_ESP,
                           spi=child.inbound_spi.to_bytes(4, "big")),
                    SA([c.esp_proposal(child.transform, spi, number=1)]), Nonce(ni),
                    TSi(self._tsi), TSr(self._tsr)]
        msg = IkeMessage(self.spi_i, self.spi_r, w.CREATE_CHILD_SA, self._role_flag,
                         self._next_mid, payloads)
        log.info("rekeying the CHILD_SA in %#010x/out %#010x", child.inbound_spi,
                 child.outbound_spi)
        self._send_request(self._protect(msg), now, "REKEY_CHILD")

    def _on_child_rekey_response(self, msg: IkeMessage, now: float) -> None:
        pending, self._rekey = self._rekey, None
        sa, nonce = msg.get(SA), msg.get(Nonce)
        errors = msg.errors()
        old = pending.child if pending is not None else None
        if old is None or errors or sa is None or nonce is None or len(sa.proposals) != 1 \
                or old not in self.children:
            names = ", ".join(n.name for n in errors) or "no SA or Nonce"
            log.warning("the responder refused to rekey the CHILD_SA (%s); retrying later",
                        names)
            if old is not None:
                old.created = now - (self.child_rekey_time or 0) + 30.0
            return
        try:
            name, esn = c.esp_transform_name(sa.proposals[0])
        except ParseError as exc:
            log.warning("unusable CHILD_SA rekey response (%s)", exc)
            old.created = now - (self.child_rekey_time or 0) + 30.0
            return
        if name not in self.esp_names or esn or len(sa.proposals[0].spi) != 4:
            log.warning("the responder rekeyed the CHILD_SA with %s: not ours", name)
            old.created = now - (self.child_rekey_time or 0) + 30.0
            return
        peer_spi = int.from_bytes(sa.proposals[0].spi, "big")
        outbound, inbound = self._child_sas(name, esn, peer_spi, pending.spi, pending.nonce,
                                            nonce.data, initiator=True)
        self.children.append(_Child(pending.spi, peer_spi, name, esn, now))
        log.info("CHILD_SA rekeyed: in %#010x out %#010x (old in %#010x)", pending.spi,
                 peer_spi, old.inbound_spi)
        self._events.append(ChildRekeyed(old.inbound_spi, outbound, inbound))
        # we started the rekey: we delete the old CHILD_SA
        self._rekey = _PendingRekey(b"", 0, child=old)
        dmsg = IkeMessage(self.spi_i, self.spi_r, w.INFORMATIONAL, self._role_flag,
                          self._next_mid,
                          [Delete(w.PROTO_ESP, [old.inbound_spi.to_bytes(4, "big")])])
        self._send_request(self._protect(dmsg), now, "DELETE_CHILD")

    def _on_child_delete_response(self, msg: IkeMessage, now: float) -> None:
        pending, self._rekey = self._rekey, None
        old = pending.child if pending is not None else None
        if old is not None and old in self.children:
            self.children.remove(old)
            log.info("old CHILD_SA in %#010x/out %#010x deleted", old.inbound_spi,
                     old.outbound_spi)
            self._events.append(ChildDeleted(old.inbound_spi))

    def _rekey_due(self, now: float) -> float | None:
        """When our next rekey (IKE SA or CHILD_SA) is due (only when idle)."""
        if self.state is not State.ESTABLISHED or self._rekey is not None \
                or (self._old is not None and not self._old.deleted):
            return None
        due = []
        if self.rekey_time:
            due.append(self._sa_started + self.rekey_time)
        if self.child_rekey_time and self.children:
            due.append(self.children[-1].created + self.child_rekey_time)
        return min(due) if due else None

    # -- input ------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, now: float) -> None:
        """One IKE datagram from the responder (with or without the non-ESP marker).
        Anything malformed, unauthentic or unexpected is dropped (logged at debug)."""
        if data[:4] == NON_ESP_MARKER:
            data = data[4:]
        try:
            self._receive(bytes(data), now)
        except ParseError as exc:
            self.dropped += 1
            log.debug("IKE message dropped: %s", exc)

    def _receive(self, data: bytes, now: float) -> None:
        if self.state in (State.CLOSED, State.INITIAL):
            return
        header = w.parse_header(data)
        old = self._old
        if old is not None and header.spi_i == old.spi_i and header.spi_r == old.spi_r:
            self._receive_old(old, header, data, now)
            return
        if header.spi_i != self.spi_i or header.initiator == self.role_initiator:
            raise ParseError("not for our IKE SA")
        if header.response:
            req = self._request
            if req is None or header.message_id != req.message_id:
                raise ParseError(f"response {header.message_id} to no request of ours")
            if self.state is State.IKE_SA_INIT_SENT:
                if header.exchange != w.IKE_SA_INIT:
                    raise ParseError("expected an IKE_SA_INIT response")
                self._on_ike_sa_init_response(data, now)
                return
            if header.spi_r != self.spi_r:
                raise ParseError("responder SPI does not match")
            msg = self._decrypt(data)
            if msg is None:
                return
            self._last_heard = now
            if self.state is State.IKE_AUTH_SENT and req.kind == "IKE_AUTH":
                self._on_ike_auth_response(msg, now)
            elif req.kind == "REKEY_IKE":
                self._request = None
                self._on_ike_rekey_response(msg, now)
            elif req.kind == "REKEY_CHILD":
                self._request = None
                self._on_child_rekey_response(msg, now)
            elif req.kind == "DELETE_CHILD":
                self._request = None
                self._on_child_delete_response(msg, now)
            else:
                self._request = None
                if self.state is State.DELETING:
                    self.state = State.CLOSED
                    self._events.append(Closed("closed"))
            return
        # a request from the responder
        if self.keys is None or header.spi_r != self.spi_r:
            raise ParseError("request for an IKE SA we do not have")
        mid = header.message_id
        if mid == self._peer_mid - 1 and self._last_response is not None \
                and self._last_response[0] == mid:
            msg = self._decrypt(data)       # authentic? then answer it again
            if msg is not None:
                self._out.extend(self._last_response[1])
            return
        if mid != self._peer_mid:
            raise ParseError(f"request {mid}, expected {self._peer_mid}")
        msg = self._decrypt(data, check_critical=False)
        if msg is None:
            return
        self._peer_mid += 1
        self._last_heard = now
        critical = self._unknown_critical(msg)
        if critical is not None:
            # section 2.5: the request is rejected, the IKE SA stays
            self.dropped += 1
            log.info("%s request with unknown critical payload %d: "
                     "UNSUPPORTED_CRITICAL_PAYLOAD", w.exchange_name(msg.exchange), critical)
            self._respond(msg, msg.exchange,
                          [Notify(w.UNSUPPORTED_CRITICAL_PAYLOAD, bytes([critical]))])
            return
        if self.state is not State.ESTABLISHED and self.state is not State.DELETING:
            self._respond(msg, msg.exchange, [Notify(w.TEMPORARY_FAILURE)])
            return
        try:
            self._on_request(msg, now)
        except ParseError as exc:
            # authentic but malformed: this exchange ends with an error, the IKE SA stays
            self.dropped += 1
            log.info("malformed %s request from the responder (%s): INVALID_SYNTAX",
                     w.exchange_name(msg.exchange), exc)
            self._respond(msg, msg.exchange, [Notify(w.INVALID_SYNTAX)])

    def _decrypt(self, data: bytes, check_critical: bool = True) -> IkeMessage | None:
        piece = c.decrypt_sk(self.keys, data, initiator=self.role_initiator)
        msg = self._collector.add(piece)
        if msg is None:
            return None
        critical = self._unknown_critical(msg)
        if check_critical and critical is not None:
            raise ParseError(f"unknown critical payload {critical}")
        return msg

    @staticmethod
    def _unknown_critical(msg: IkeMessage) -> int | None:
        return next((p.type for p in msg.payloads
                     if isinstance(p, w.UnknownPayload) and p.critical), None)

    # -- output, timers, events -------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        if self.state is State.CLOSED:
            return None
        deadlines = []
        old = self._old
        if old is not None:
            deadlines.append(old.expires)
            if old.delete is not None:
                deadlines.append(old.delete.sent + old.delete.timeout)
        req = self._request
        if self.state is State.IKE_SA_INIT_SENT and self._refusal is not None:
            deadlines.append(self._refusal_deadline)
        if req is not None:
            deadlines.append(req.sent + req.timeout)
        else:
            if self.state is State.ESTABLISHED and self.profile.dpd_delay:
                deadlines.append(self._last_heard + self.profile.dpd_delay)
            due = self._rekey_due(0.0)
            if due is not None:
                deadlines.append(due)
        return min(deadlines) if deadlines else None

    def _old_timer(self, now: float) -> None:
        old = self._old
        if old is None:
            return
        if now >= old.expires:
            self._old = None
            return
        d = old.delete
        if d is not None and now >= d.sent + d.timeout:
            if d.tries >= d.max_tries:
                log.info("no answer to the DELETE of the old IKE SA; forgetting it")
                self._old = None
                return
            d.tries += 1
            d.sent = now
            d.timeout *= 2
            self._out.extend(d.datagrams)

    def handle_timer(self, now: float) -> None:
        self._old_timer(now)
        if self.state is State.IKE_SA_INIT_SENT and self._refusal is not None and \
                now >= self._refusal_deadline:
            self._fail(*self._refusal)
            return
        req = self._request
        if req is not None:
            if now < req.sent + req.timeout:
                return
            if req.tries >= req.max_tries:
                self._give_up(req)
                return
            req.tries += 1
            req.sent = now
            req.timeout *= 2
            self.retransmits += 1
            log.debug("retransmitting %s (message %d, try %d)", req.kind, req.message_id,
                      req.tries + 1)
            self._out.extend(req.datagrams)
            return
        due = self._rekey_due(now)
        if due is not None and now >= due:
            if self.rekey_time and \
                    now >= self._sa_started + self.rekey_time:
                self._start_ike_rekey(now)
            else:
                self._start_child_rekey(self.children[-1], now)
            return
        if self.state is State.ESTABLISHED and self.profile.dpd_delay and \
                now >= self._last_heard + self.profile.dpd_delay:
            msg = IkeMessage(self.spi_i, self.spi_r, w.INFORMATIONAL, self._role_flag,
                             self._next_mid, [])
            self._send_request(self._protect(msg), now, "DPD")

    def _give_up(self, req: _Request) -> None:
        waited = sum(RETRANSMIT_TIMEOUT * 2 ** i for i in range(req.tries + 1))
        if self.state is State.DELETING:
            self.state = State.CLOSED
            self._request = None
            self._events.append(Closed("closed (the responder did not confirm the DELETE)"))
        elif self.state is State.IKE_SA_INIT_SENT and self._refusal is not None:
            self._fail(*self._refusal)
        elif self.state is State.IKE_SA_INIT_SENT:
            self._fail("unreachable", f"no answer to IKE_SA_INIT from {self.remote_addr[0]}:"
                       f"{self.remote_addr[1]} in {waited:g} s (is an IKEv2 responder there?)")
        else:
            self._fail("timeout", f"no answer to {req.kind} (message {req.message_id}) in "
                       f"{waited:g} s")

    def next_event(self):
        return self._events.popleft() if self._events else None

    @property
    def has_events(self) -> bool:
        return bool(self._events)

    @property
    def established(self) -> bool:
        return self.state is State.ESTABLISHED

    @property
    def finished(self) -> bool:
        return self.state is State.CLOSED

    def close(self, now: float) -> None:
        """Delete the IKE SA (INFORMATIONAL with D); :class:`Closed` follows once the
        responder confirms it (or after one retransmission)."""
        if self.state is State.ESTABLISHED:
            msg = IkeMessage(self.spi_i, self.spi_r, w.INFORMATIONAL, self._role_flag,
                             self._next_mid, [Delete(w.PROTO_IKE)])
            self.state = State.DELETING
            self._send_request(self._protect(msg), now, "DELETE", max_tries=DELETE_TRIES)
        elif self.state is not State.CLOSED and self.state is not State.DELETING:
            if self.state is State.IKE_AUTH_SENT:
                self._tell_delete()
            self.state = State.CLOSED
            self._request = None
            self._events.append(Closed("closed"))
