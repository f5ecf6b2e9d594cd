"""What every tunnel's asyncio shell does with the bytes it moves, whatever the VPN
family: record them in the pcap, send outer datagrams over the link, hand inner IPv4
packets to the receiver (the network stack)."""

from __future__ import annotations

import time
from typing import Callable


class LinkShell:
    """Mixed into OpenVPNTunnel, EspTunnel and IkeTunnel; they set ``pcap``, ``_link``,
    ``_local`` and ``_remote`` (``(ip, port)`` of the outer socket's two ends)."""

    pcap = None
    _link = None
    _receiver: Callable[[bytes], None] | None = None
    _local = _remote = ("0.0.0.0", 0)
    datagrams_in = datagrams_out = 0

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
