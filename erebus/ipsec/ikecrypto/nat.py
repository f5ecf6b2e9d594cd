"""NAT detection (RFC 7296 section 2.23)."""

from __future__ import annotations

import hashlib
import ipaddress

__all__ = ["nat_detection_hash"]


def nat_detection_hash(spi_i: bytes, spi_r: bytes, address: str | bytes, port: int) -> bytes:
    """NAT_DETECTION_*_IP data: SHA-1(SPIi | SPIr | IP | port) (section 2.23); SPIr is
    zero in the IKE_SA_INIT request."""
    if isinstance(address, str):
        address = ipaddress.ip_address(address).packed
    return hashlib.sha1(spi_i + spi_r + bytes(address) + port.to_bytes(2, "big")).digest()
