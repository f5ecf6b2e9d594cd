"""What every tunnel's asyncio shell does with the bytes it moves, whatever the VPN
family: record them in the pcap, send outer datagrams over the link, hand inner IPv4
packets to the receiver (the network stack)."""

from __future__ import annotations

import logging
import time
from typing import Callable

from .ratelimit import DropReporter, counters_summary


class LinkShell:
    """Mixed into OpenVPNTunnel, EspTunnel and IkeTunnel; they set ``pcap``, ``_link``,
    ``_local`` and ``_remote`` (``(ip, port)`` of the outer socket's two ends)."""

    pcap = None
    _link = None
    _receiver: Callable[[bytes], None] | None = None
    _local = _remote = ("0.0.0.0", 0)
    datagrams_in = datagrams_out = 0
    session = None
    _drops: DropReporter | None = None    # the family's drop kinds, logged rate-limited

    def _check_drops(self) -> None:
        """Log (rate-limited) what the session dropped since the last look: once per
        batch of datagrams, never once per packet."""
        drops = self._drops
        if drops is not None:
            drops.check(getattr(self.session, "counters", None))

    def _log_counters(self, logger: logging.Logger, what: str = "counters") -> None:
        """At the end of a session: what is still suppressed, then one line of counters
        (the drops by kind are there, for ``erebus up``'s log as for probe's report)."""
        counters = getattr(self.session, "counters", None)
        if self._drops is not None:
            self._drops.flush(counters)
        logger.info("%s: %s", what, counters_summary(counters, {
            "datagrams_in": self.datagrams_in, "datagrams_out": self.datagrams_out}))

    def set_receiver(self, receiver: Callable[[bytes], None]) -> None:
        self._receiver = receiver

    def _send(self, datagram: bytes) -> None:
        """One outer datagram to the peer (dropped while there is no link)."""
        link = self._link
        if link is None:
            return
        self.datagrams_out += 1
        if self.pcap:
            self.pcap.write_outer(datagram, self._local, self._remote, time.time(),
                                  inbound=False)
        link.send(datagram)

    def _outer_in(self, data: bytes) -> None:
        """Account for (and record) one outer datagram from the peer."""
        self.datagrams_in += 1
        if self.pcap:
            self.pcap.write_outer(data, self._remote, self._local, time.time(),
                                  inbound=True)

    def _inner_out(self, packet: bytes) -> None:
        """Record one inner packet going into the tunnel."""
        if self.pcap:
            self.pcap.write_inner(packet, time.time(), inbound=False)

    def _deliver(self, packet: bytes) -> None:
        """One inner packet out of the tunnel: recorded, then given to the receiver."""
        if self.pcap:
            self.pcap.write_inner(packet, time.time(), inbound=True)
        receiver = self._receiver
        if receiver is not None:
            receiver(packet)
