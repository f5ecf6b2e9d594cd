"""What an IKEv2 client connection needs, whatever file it came from (today: a
strongSwan swanctl.conf, read by erebus/ipsec/swanctl.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

# swanctl.conf's defaults (swanctl.opt; vici_config.c): connections.<conn>.rekey_time
# and children.<child>.rekey_time.
IKE_REKEY_TIME = 4 * 3600.0
CHILD_REKEY_TIME = 3600.0


@dataclass
class IkeProfile:
    path: str                                   # the file it came from (for messages)
    name: str                                   # connections.<name>
    remote_addrs: list[str]                     # host names or IPv4 addresses, tried in order
    remote_port: int = 500                      # IKE_SA_INIT goes here; then NAT-T to 4500
    natt_port: int = 4500
    local_port: int = 0                         # 0: an ephemeral port (never 500: no root)
    vips: bool = True                           # ask for a virtual IPv4 address (CP
                                                # CFG_REQUEST: INTERNAL_IP4_ADDRESS/DNS)
    vips6: bool = False                         # ask for a virtual IPv6 address too
                                                # (INTERNAL_IP6_ADDRESS/DNS): vips = ::
    proposals: list[str] = field(default_factory=lambda: ["aes256gcm16-prfsha256-ecp256"])
    esp_proposals: list[str] = field(default_factory=lambda: ["aes256gcm16"])
    local_auth: str = "psk"                     # "psk" or "pubkey"
    local_id: str | None = None
    local_cert: bytes | None = None             # PEM
    local_key: bytes | None = None              # PEM (unencrypted)
    remote_auth: str = "psk"                    # "psk" or "pubkey"
    remote_id: str | None = None                # expected IDr (also sent as IDr when set)
    cacerts: list[bytes] = field(default_factory=list)        # PEM trust anchors
    psk: bytes | None = None
    child: str = "child"                        # children.<name>
    remote_ts: list[str] = field(default_factory=lambda: ["0.0.0.0/0"])   # either family
    local_ts: list[str] = field(default_factory=list)          # empty: dynamic (our VIPs)
    encap: bool = True                          # always UDP-encapsulate ESP (we must)
    dpd_delay: float | None = None              # our liveness checks (None: only answer)
    fragmentation: bool = True                  # announce IKE fragmentation (RFC 7383)
    # Our own rekeying, seconds: None is charon's default (IKE_REKEY_TIME,
    # CHILD_REKEY_TIME below), 0.0 never.
    rekey_time: float | None = None             # IKE SA
    child_rekey_time: float | None = None       # CHILD_SA
    mtu: int = 1400
    connect_timeout: float = 30.0
    warnings: list[str] = field(default_factory=list)           # "FILE:LINE: option: ..."
