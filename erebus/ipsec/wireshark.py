"""The SAs of a manual ESP profile in Wireshark's terms, so a capture written with
``--pcap`` can be decrypted (erebus logs these lines with ``-vv``)."""

from __future__ import annotations

from .profile import EspProfile, SaConfig

__all__ = ["wireshark_esp_sa", "tshark_esp_options"]


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
