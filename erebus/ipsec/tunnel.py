"""The asyncio shell around :class:`erebus.ipsec.esp.EspSession`: ESP in UDP to one peer.

Like :class:`erebus.runtime.openvpn.OpenVPNTunnel` it only moves bytes: datagrams
from a connected UDP socket (read in batches) go into the session, inner packets
it returns go to the receiver the network stack set; packets from the stack come
in through :meth:`EspTunnel.send_packet`.  One timer follows the session's next
NAT keepalive.

Manual SAs have no handshake: :meth:`EspTunnel.connect` resolves the peer, opens
the socket, sends a NAT keepalive and reports.  The SAs (sequence numbers, replay
windows, lifetimes) live as long as the tunnel object: :meth:`EspTunnel.reconnect`
only opens a new socket.  The session ends when an SA reaches a hard limit
(:meth:`wait_closed` raises ``SessionError("sa-expired", ...)``) or on :meth:`close`.

With ``-vv`` the SAs are logged in the form of Wireshark's ``esp_sa`` table (see
:func:`wireshark_esp_sa`), so a capture written with ``--pcap`` can be decrypted.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import shlex
import socket
from typing import Callable

from ..errors import SessionError
from ..runtime.ratelimit import DropReporter
from ..runtime.shell import LinkShell
from ..runtime.udp import BatchedUdpLink
from ..tunnel import TunnelInfo
from .esp import Closed, EspSession, SaExpired, SaSoftLimit, SequenceReset
from .profile import EspProfile, SaConfig

__all__ = ["EspTunnel", "wireshark_esp_sa", "tshark_esp_options"]

log = logging.getLogger("erebus.ipsec")


# -- Wireshark ----------------------------------------------------------------------------

def _uat_line(sa: SaConfig, src: str, dst: str) -> str | None:
    t = sa.transform
    if t.wireshark_encryption is None:
        return None
    auth_key = "0x" + sa.integrity_key.hex() if sa.integrity_key else ""
    fields = ("IPv4", src, dst, f"0x{sa.spi:08x}", t.wireshark_encryption,
              "0x" + sa.key.hex(), t.wireshark_authentication, auth_key)
    return ",".join(f'"{f}"' for f in fields)


def wireshark_esp_sa(profile: EspProfile, local: str = "*", remote: str = "*") -> list[str]:
    """The profile's SAs as lines of Wireshark's ``esp_sa`` UAT file (Preferences >
    Protocols > ESP > ESP SAs; or ``-o uat:esp_sa:LINE`` for tshark).  ChaCha20 is
    left out: Wireshark 4.0 cannot decrypt it."""
    lines = [_uat_line(profile.outbound, local, remote),
             _uat_line(profile.inbound, remote, local)]
    return [line for line in lines if line is not None]


def tshark_esp_options(profile: EspProfile, local: str = "*", remote: str = "*") -> list[str]:
    """tshark arguments that decode and decrypt this profile's ESP-in-UDP: port 4500 is
    decoded as ESP by default; any other peer port needs ``-d udp.port==N,udpencap``."""
    args = ["-o", "esp.enable_encryption_decode:TRUE",
            "-o", "esp.enable_authentication_check:TRUE"]
    for line in wireshark_esp_sa(profile, local, remote):
        args += ["-o", f"uat:esp_sa:{line}"]
    if profile.peer_port != 4500:
        args += ["-d", f"udp.port=={profile.peer_port},udpencap"]
    return args


# What a dropped datagram was, per counter of EspCounters (rate-limited, see
# erebus.runtime.ratelimit): a warning when someone on the path may be sending it.
DROP_KINDS = {
    "malformed": (logging.WARNING, "a malformed ESP datagram"),
    "unknown_spi": (logging.WARNING, "an ESP packet for an unknown SPI"),
    "replayed": (logging.WARNING, "a replayed or too old ESP packet"),
    "auth_failed": (logging.WARNING, "an ESP packet that failed authentication "
                    "(corrupted or forged)"),
    "bad_padding": (logging.WARNING, "an ESP packet with bad padding"),
    "bad_next_header": (logging.WARNING, "an ESP packet that does not carry IPv4"),
    "policy_in": (logging.WARNING, "an inner packet outside the traffic selectors"),
    "expired_in": (logging.INFO, "an ESP packet after its SA reached its hard limit"),
}


# -- the tunnel ---------------------------------------------------------------------------

class EspTunnel(LinkShell):
    """Manually keyed ESP-in-UDP to one peer, as an :class:`erebus.tunnel.Tunnel`."""

    def __init__(self, profile: EspProfile, *, pcap=None,
                 session_factory: Callable[[float], EspSession] | None = None):
        self.profile = profile
        self.warnings: list[str] = profile.warnings
        self.pcap = pcap
        self.info: TunnelInfo | None = None
        self.session: EspSession | None = None
        self._session_factory = session_factory or profile.new_session
        self._receiver: Callable[[bytes], None] | None = None
        self._link: BatchedUdpLink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._done: asyncio.Future | None = None
        self._local = ("0.0.0.0", 0)
        self._remote = ("0.0.0.0", 0)
        self.sessions = 0            # sockets opened (connect + reconnects)
        self.dropped_down = 0        # packets the stack sent while the tunnel was down
        self.link_errors = 0         # ICMP errors on the socket (port unreachable, ...)
        self._drops = DropReporter(log, DROP_KINDS)

    @property
    def counters(self):
        return self.session.counters if self.session is not None else None

    @property
    def up(self) -> bool:
        return self._link is not None and self.session is not None \
            and self.session.established

    # -- Tunnel interface ------------------------------------------------------------------

    def send_packet(self, packet: bytes) -> None:
        s = self.session
        link = self._link
        if s is None or link is None:
            self.dropped_down += 1
            return
        datagram = s.send_ip(packet, self._loop.time())
        if datagram is None:
            if s.has_events:
                self._events()
            return
        self._inner_out(packet)
        self._send(datagram)
        if s.has_events:
            self._events()

    async def close(self) -> None:
        s = self.session
        if s is not None and not s.finished:
            s.close(self._loop.time() if self._loop else 0.0)
            self._events()
        if s is not None:
            self._log_counters(log)
        self._teardown()

    async def wait_closed(self) -> str:
        """Until the session ends: "closed" after :meth:`close`; raises the
        SessionError that ended it otherwise (an SA reached a hard limit)."""
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
        return await asyncio.shield(self._done)

    # -- connecting ------------------------------------------------------------------------

    async def connect(self, timeout: float | None = None) -> TunnelInfo:
        """Open the UDP socket to the peer, send a NAT keepalive, report."""
        p = self.profile
        try:
            return await asyncio.wait_for(self._connect(), timeout)
        except asyncio.TimeoutError:
            self._teardown()
            raise SessionError("resolve", f"{p.peer}: resolving the peer timed out after "
                               f"{timeout:g} s") from None

    async def reconnect(self, *, timeout: float | None = None, attempts: int | None = None,
                        stop: asyncio.Event | None = None) -> TunnelInfo:
        """A new socket (a new local port), the same SAs."""
        self._teardown()
        return await self.connect(timeout=timeout)

    async def _connect(self) -> TunnelInfo:
        p = self.profile
        loop = self._loop = asyncio.get_running_loop()
        started = loop.time()
        if self._done is None:
            self._done = loop.create_future()
        if self._done.done():
            raise SessionError("closed", f"{p.peer}: the ESP session is over")
        try:
            infos = await loop.getaddrinfo(p.peer_host, p.peer_port, family=socket.AF_INET,
                                           type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise SessionError("resolve", f"cannot resolve {p.peer_host}: {exc}") from None
        addr = infos[0][4][:2]
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            if p.local_port:
                sock.bind(("0.0.0.0", p.local_port))
            sock.connect(addr)
        except OSError as exc:
            sock.close()
            raise SessionError("unreachable", f"{p.peer}: {exc.strerror or exc}") from None
        self._link = BatchedUdpLink(sock, loop, on_datagram=self._on_datagram,
                                    on_error=self._on_link_error,
                                    on_batch_end=self._check_drops)
        self._local = sock.getsockname()[:2]
        self._remote = addr
        now = loop.time()
        if self.session is None:
            self.session = self._session_factory(now)
        self.sessions += 1
        if log.isEnabledFor(logging.DEBUG):
            for line in wireshark_esp_sa(p, self._local[0], self._remote[0]):
                log.debug("Wireshark esp_sa: %s", line)
            log.debug("tshark: tshark -r FILE %s", " ".join(shlex.quote(arg) for arg in
                      tshark_esp_options(p, self._local[0], self._remote[0])))
        self._send(self.session.keepalive(now))
        self._arm_timer()
        self.info = TunnelInfo(
            kind="ipsec", server=p.peer, virtual_ip=p.local_ip, netmask=p.netmask,
            gateway=None, routes=list(p.remote_ts), mtu=p.mtu, dns=list(p.dns),
            cipher=p.outbound.transform.name,
            setup_ms=round((loop.time() - started) * 1000, 1))
        log.info("ESP to %s (%s:%d) from %s:%d: virtual IP %s, remote %s, out SPI %#010x "
                 "%s, in SPI %#010x %s", p.peer, addr[0], addr[1], *self._local, p.local_ip,
                 ", ".join(p.remote_ts), p.outbound.spi, p.outbound.transform.name,
                 p.inbound.spi, p.inbound.transform.name)
        return self.info

    # -- the pump --------------------------------------------------------------------------

    def _on_datagram(self, data: bytes) -> None:
        s = self.session
        if s is None:
            return
        self._outer_in(data)
        packet = s.receive_datagram(data, self._loop.time())
        if packet is not None:
            self._deliver(packet)
        if s.has_events:
            self._events()

    def _on_link_error(self, exc: Exception) -> None:
        self.link_errors += 1
        code = getattr(exc, "errno", None)
        if code in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
            if self.link_errors == 1:
                log.warning("%s: %s (is the ESP peer listening there?)", self.profile.peer,
                            exc.strerror or exc)
        else:
            log.debug("socket error: %s", exc)

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.session.get_timer() if self.session is not None else None
        if deadline is not None and self._link is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        s = self.session
        if s is None:
            return
        for datagram in s.handle_timer(self._loop.time()):
            self._send(datagram)
        self._arm_timer()

    def _events(self) -> None:
        s = self.session
        while (event := s.next_event()) is not None:
            if isinstance(event, SaExpired):
                self._end(SessionError(
                    "sa-expired", f"{self.profile.peer}: {event.direction} SA "
                    f"{event.spi:#010x}: {event.reason}; manual SAs cannot be renewed "
                    "(new keys on both ends)"))
            elif isinstance(event, SaSoftLimit):
                log.warning("%s SA %#010x: %s (the session ends at the limit)",
                            event.direction, event.spi, event.reason)
            elif isinstance(event, SequenceReset):
                log.warning("inbound SA %#010x: the peer's sequence numbers went back from "
                            "%d to %d (did it restart with the same keys?); its packets are "
                            "dropped as replays: give both ends new keys and restart "
                            "both", event.spi, event.highest, event.received)
            elif isinstance(event, Closed):
                if self._done is not None and not self._done.done():
                    self._done.set_result(event.reason)

    def _end(self, error: SessionError) -> None:
        log.info("%s", error)
        s = self.session
        if s is not None and not s.finished:
            s.close(self._loop.time())
        if self._done is not None and not self._done.done():
            self._done.set_exception(error)
            self._done.exception()            # retrieved: nobody has to await it
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _teardown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._link is not None:
            self._link.close()
            self._link = None
