"""``mssfix``: the TCP MSS that keeps the VPN's outer packets within a size, as OpenVPN
2.6 computes it (mtu.c ``frame_calculate_protocol_header_size``, mss.c
``frame_calculate_mssfix``, crypto.c ``calculate_crypto_overhead``).

The stock client rewrites the MSS option of TCP SYNs crossing its TUN device in both
directions; erebus's own TCP is the only TCP on its side of the tunnel, so it announces
this MSS in its SYNs and never sends larger segments (the peer's announced MSS is capped
by it too, which is what clamping the peer's SYN-ACK achieves).

The option (``mssfix [N [mtu|fixed]]``, also inside ``<connection>``)::

    absent, or no N   the default: 'mssfix 1492 mtu' with tun-mtu 1500, else
                      'mssfix TUN-MTU fixed' (options.c)
    mssfix 0          no clamping (segments fill the tunnel's MTU)
    mssfix N          the VPN's datagram (UDP payload, or the TCP frame with its 2-byte
                      length) is at most N bytes
    mssfix N mtu      the outer IP packet is at most N bytes (IP and UDP/TCP headers
                      included)
    mssfix N fixed    the MSS is N - 40 (N is the inner IPv4 packet's size)

Pure arithmetic: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from .algorithms import block_len

__all__ = ["MSSFIX_DEFAULT", "MssFix", "mss_fix", "cipher_block_size"]

MSSFIX_DEFAULT = 1492          # mtu.h
TUN_MTU_DEFAULT = 1500
_IPV4_TCP = 20 + 20            # the inner headers the MSS excludes (RFC 879)
_AEAD_TAG = 16
_SHORT_PACKET_ID = 4           # TLS mode (packet_id_size(false))
_LONG_PACKET_ID = 8            # static-key mode: id and time
_SOCKS_UDP_HEADER = 10         # socks-proxy over UDP (IPv4 address form)

@dataclass(frozen=True, slots=True)
class MssFix:
    """One ``mssfix`` setting: ``value`` None is the default (no N given)."""

    value: int | None = None
    mode: str = ""              # "", "mtu" or "fixed"

    def __str__(self) -> str:
        if self.value is None:
            return "mssfix (default)"
        return " ".join(["mssfix", str(self.value), *([self.mode] if self.mode else [])])

    def resolved(self, tun_mtu: int) -> "MssFix":
        """The default made explicit, as options.c does it for the profile's tun-mtu."""
        if self.value is not None:
            return self
        if tun_mtu == TUN_MTU_DEFAULT:
            return MssFix(MSSFIX_DEFAULT, "mtu")
        return MssFix(tun_mtu, "fixed")


def cipher_block_size(cipher: str) -> int:
    return block_len(cipher)


def _is_cbc(cipher: str) -> bool:
    return cipher.upper().endswith("-CBC")


def mss_fix(setting: MssFix, *, tun_mtu: int, cipher: str, digest_size: int,
            tls: bool = True, peer_id: bool = True, tcp: bool = False, ipv6: bool = False,
            socks_udp: bool = False, compression_overhead: int = 0) -> int | None:
    """The MSS for IPv4 inner TCP (IPv6 inner: 20 less), or None for 'mssfix 0'.

    ``cipher`` is the data channel's ("AES-256-GCM", "AES-128-CBC", "none"),
    ``digest_size`` its HMAC's length (0 for AEAD ciphers or 'auth none'), ``tls`` False
    for static-key mode (no opcode, long packet ids), ``peer_id`` whether DATA_V2 (a
    pushed peer-id) carries the packets, ``tcp``/``ipv6`` the outer transport,
    ``socks_udp`` whether a SOCKS5 relay's header rides on each datagram, and
    ``compression_overhead`` the framing byte of the V1 compression methods.
    """
    s = setting.resolved(tun_mtu)
    if not s.value:
        return None
    if s.mode == "fixed":
        return max(0, s.value - _IPV4_TCP)
    cipher = cipher.upper()
    cbc = _is_cbc(cipher)
    aead = not cbc and cipher != "NONE"
    packet_id = _SHORT_PACKET_ID if tls else _LONG_PACKET_ID
    # frame_calculate_protocol_header_size
    overhead = (_SOCKS_UDP_HEADER if socks_udp and not tcp else 0) + (2 if tcp else 0)
    if tls:
        overhead += 4 if peer_id else 1
    if not cbc:
        overhead += packet_id          # in CBC mode the id is encrypted (payload overhead)
    if aead:
        overhead += _AEAD_TAG
    else:
        overhead += digest_size
        if cbc:
            overhead += cipher_block_size(cipher)         # the IV
    if s.mode == "mtu":
        overhead += (20 if tcp else 8) + (40 if ipv6 else 20)
    # frame_calculate_payload_overhead, plus the inner IPv4 and TCP headers
    payload_overhead = compression_overhead + (packet_id if cbc else 0) + _IPV4_TCP
    target = s.value - overhead
    if cbc:                            # adjust_payload_max_cbc: padding to whole blocks
        block = cipher_block_size(cipher)
        target = target // block * block - 1
    return max(0, target - payload_overhead)
