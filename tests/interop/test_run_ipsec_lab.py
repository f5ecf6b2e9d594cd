"""``erebus run`` over the IPsec families, as nobody: the user's swanctl.conf against
strongSwan (IKEv2, PSK; and the dual-stack mode: IPv6 inside the namespace too) and a
manual-SA ESP profile against the scapy ESP peer.  The command's own kernel TCP, UDP
and ICMP reach the web host behind the tunnel, byte-exact, with the exit status of
the command.
"""

from __future__ import annotations

import hashlib
import re
import shlex

import pytest

from tests.esp_lab import BIG_FILE

pytestmark = pytest.mark.interop




def run(lab, profile, script: str, *, timeout=180):
    cp = lab.run_client([lab.python, "-m", "erebus", "run", str(profile), "--",
                         "sh", "-c", script], timeout=timeout, text=False)
    return cp, cp.stdout.decode(errors="replace") + cp.stderr.decode(errors="replace")


def _checks(web: str, name: str) -> str:
    """One command doing what a user would: a download by curl (hashed), three pings,
    a name through glibc (UDP to the VPN's DNS), then exit 7."""
    return (f"curl -sS --fail --max-time 60 http://{web}/blob.bin | sha256sum && "
            f"ping -n -c 3 -W 5 {web} && getent ahostsv4 {name} && exit 7")


def test_ikev2_swanctl_conf(swan_lab):
    conf = swan_lab.profile("psk").conf
    name = next(iter(swan_lab.dns_names))
    try:
        cp, out = run(swan_lab, conf, _checks(swan_lab.web_addr, name))
    finally:
        swan_lab.terminate_all()
    assert cp.returncode == 7, out + swan_lab.logs_tail()
    assert swan_lab.blob_sha256 in out
    assert "3 packets transmitted, 3 received" in out
    assert re.search(rf"^{re.escape(swan_lab.web_addr)}\s+STREAM {re.escape(name)}$", out,
                     re.M), out


def test_ikev2_dual_stack_inside(swan_lab):
    """The v6 mode assigns an IPv6 address too: curl and ping over IPv6 inside."""
    conf = swan_lab.profile("v6").conf
    web6 = swan_lab.web_addr6
    script = (f"ip -6 -o addr show dev erebus0 && "
              f"curl -sS --fail --max-time 60 http://[{web6}]/blob.bin | sha256sum && "
              f"ping -6 -n -c 2 -W 5 {web6}")
    try:
        cp, out = run(swan_lab, conf, script)
    finally:
        swan_lab.terminate_all()
    assert cp.returncode == 0, out + swan_lab.logs_tail()
    assert swan_lab.blob_sha256 in out and "2 packets transmitted, 2 received" in out


def test_manual_esp_profile(esp_lab):
    peer = esp_lab.start_peer("gcm")
    name = "web.esp.test"
    big = esp_lab.dir / "www" / BIG_FILE
    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    script = (_checks(esp_lab.web_addr, name)
              .replace(" && exit 7", "")
              + f" && curl -sS --fail --max-time 120 {shlex.quote(esp_lab.big_url)} | "
              "sha256sum && exit 7")
    cp, out = run(esp_lab, peer.profile, script, timeout=240)
    assert cp.returncode == 7, out + esp_lab.logs_tail()
    assert esp_lab.blob_sha256 in out and digest in out
    assert "3 packets transmitted, 3 received" in out
