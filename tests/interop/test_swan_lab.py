"""The strongSwan lab itself works: a STOCK strongSwan initiator connects and reaches
the web host.

This proves the PKI, the responder's connections, kernel-libipsec in a namespace,
forwarding/routing and the web host, so that a failure of erebus's IKEv2 initiator
against :class:`tests.swan_lab.SwanLab` can be blamed on erebus and not on the lab.
The stock initiator is a second charon (also kernel-libipsec) in the client
namespace, fed the client ``swanctl.conf`` the lab generates for each mode: the very
files erebus will read. It runs as root with a TUN device: fine, it is not erebus.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import stat
import time
from collections.abc import Iterator

import pytest

from tests.lab import SYSTEM_PYTHON
from tests.swan_lab import MODES, SwanLab

pytestmark = pytest.mark.interop



@pytest.fixture
def initiators(swan_lab: SwanLab) -> Iterator[list]:
    """Stock initiators started by a test; stopped (and the responder's SAs closed) after it."""
    started: list = []
    yield started
    for ini in started:
        ini.terminate()
        ini.stop()
    swan_lab.terminate_all()


def _connect(lab: SwanLab, mode: str, initiators: list):
    ini = lab.start_initiator(mode)
    initiators.append(ini)
    cp = ini.initiate(timeout=30, check=False)
    if cp.returncode != 0:
        pytest.fail(f"stock initiator could not connect in mode {mode!r}:\n{cp.stdout}{cp.stderr}"
                    f"\n{ini.describe()}\n{lab.logs_tail()}", pytrace=False)
    return ini


def _fetch_blob(lab: SwanLab, context) -> None:
    got = lab.run_ns(lab.ns_cli, ["curl", "-sS", "--fail", "--max-time", "30", lab.blob_url],
                     text=False, timeout=60)
    assert got.returncode == 0, f"curl failed: {got.stderr.decode()}\n{context()}"
    assert len(got.stdout) == lab.blob_size, context()
    assert hashlib.sha256(got.stdout).hexdigest() == lab.blob_sha256, context()


_DNS_QUERY = r"""
import socket, struct, sys
name, server = sys.argv[1], sys.argv[2]
q = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
q += struct.pack("!HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(q, (server, 53))
r = s.recv(512)
print(socket.inet_ntoa(r[-4:]) if struct.unpack("!H", r[6:8])[0] else "")
"""


def _check_connected(lab: SwanLab, mode: str, ini) -> None:
    """Virtual IP from the pool, NAT-T on 4500, the blob through the tunnel."""
    def context() -> str:
        return f"{ini.describe()}\n{lab.logs_tail()}\n{lab.list_sas()}"

    vip = ini.virtual_ip()
    assert vip is not None, context()
    assert ipaddress.ip_address(vip) in ipaddress.ip_network(lab.pool), context()

    # The responder's view: the connection of this mode, the same virtual IP, UDP
    # encapsulation on port 4500, the CHILD_SA for the protected network.
    sa = lab.wait_established(mode, timeout=10)
    assert sa["remote-vips"] == [vip], context()
    assert sa["local-host"] == MODES[mode].address, context()
    assert sa["local-port"] == "4500", context()
    (child,) = sa["child-sas"].values()
    assert child["encap"] == "yes", context()
    assert child["local-ts"] == [lab.protected_net], context()
    assert child["remote-ts"] == [f"{vip}/32"], context()
    assert child["encr-alg"] == "AES_GCM_16" and child["encr-keysize"] == "256", context()

    # IKE_SA_INIT to 500, then (NAT-T forced by encap = yes) IKE_AUTH to 4500, both from
    # the initiator's random high ports.
    log = lab.responder_log.read_text(errors="replace")
    addr = re.escape(MODES[mode].address)
    assert re.search(rf"received packet: from {re.escape(lab.client_addr)}\[\d+\] to {addr}\[500\]",
                     log), context()
    assert re.search(rf"received packet: from {re.escape(lab.client_addr)}\[\d+\] to "
                     rf"{addr}\[4500\]", log), context()

    _fetch_blob(lab, context)
    assert int(lab.ike_sas(mode)[0]["child-sas"].popitem()[1]["bytes-out"]) >= lab.blob_size, \
        context()

    # The pool's DNS attribute names the web host, whose dnsmasq answers through the tunnel.
    ini_log = ini.charon.log.read_text(errors="replace")
    assert "processing INTERNAL_IP4_DNS attribute" in ini_log, context()
    dns = lab.run_ns(lab.ns_cli, [SYSTEM_PYTHON, "-c", _DNS_QUERY, "web.swan.test", lab.dns_addr],
                     timeout=20)
    assert dns.stdout.strip() == lab.web_addr, f"{dns.stdout}{dns.stderr}\n{context()}"


def test_client_files_readable_by_nobody(swan_lab: SwanLab):
    """The client side of every mode is where erebus (as nobody) will read it."""
    for mode in MODES:
        p = swan_lab.profile(mode)
        assert p.conf == p.dir / "swanctl.conf"
        for sub in ("x509", "x509ca", "private"):
            assert (p.dir / sub).is_dir()
        files = [p.conf] + ([p.cert, p.key, p.cacert] if p.auth == "pubkey" else [])
        for f in files:
            assert f.stat().st_mode & stat.S_IROTH, f
        got = swan_lab.run_client(["cat", *map(str, files)], timeout=20)
        assert got.returncode == 0, got.stderr
        text = p.conf.read_text()
        assert f"remote_addrs = {p.address}" in text and "vips = 0.0.0.0" in text
        assert (f'secret = "{swan_lab.psk}"' in text) == (p.auth == "psk")
    for pem in (swan_lab.ca_cert, swan_lab.client_cert, swan_lab.client_key):
        assert swan_lab.run_client(["cat", str(pem)], timeout=20).returncode == 0


def test_psk_stock_initiator(swan_lab: SwanLab, initiators):
    ini = _connect(swan_lab, "psk", initiators)
    _check_connected(swan_lab, "psk", ini)
    log = swan_lab.responder_log.read_text(errors="replace")
    assert "authentication of 'client.swan.test' with pre-shared key successful" in log


def test_cert_stock_initiator(swan_lab: SwanLab, initiators):
    ini = _connect(swan_lab, "cert", initiators)
    _check_connected(swan_lab, "cert", ini)
    ini_log = ini.charon.log.read_text(errors="replace")
    assert "authentication of 'vpn.swan.test' with ECDSA" in ini_log, ini.describe()


@pytest.mark.parametrize("mode, subject", [("cert-dn", "CN=client.swan.test"),
                                           ("cert-rsa-dn", "CN=rsa-client.swan.test")])
def test_cert_without_local_id_stock_initiator(swan_lab: SwanLab, initiators, mode, subject):
    """The stock initiator with no local.id: charon identifies with the certificate's
    subject DN, which the responder's remote.id expects (erebus must do the same)."""
    ini = _connect(swan_lab, mode, initiators)
    _check_connected(swan_lab, mode, ini)
    ini_log = ini.charon.log.read_text(errors="replace")
    assert f"id not specified, defaulting to cert subject '{subject}'" in ini_log, \
        ini.describe()
    log = swan_lab.responder_log.read_text(errors="replace")
    assert re.search(rf"<{re.escape(mode)}\|\d+> authentication of '{re.escape(subject)}' "
                     r"with \w+[^\n]* successful", log), swan_lab.logs_tail()


def test_foreign_ca_refused(swan_lab: SwanLab, initiators):
    """The same client configuration as "cert", but the responder's certificate comes
    from another CA: the stock initiator refuses it."""
    ini = swan_lab.start_initiator("foreign-ca")
    initiators.append(ini)
    cp = ini.initiate(timeout=20, check=False)
    context = f"{cp.stdout}{cp.stderr}\n{ini.describe()}\n{swan_lab.logs_tail()}"
    assert cp.returncode != 0, context
    assert ini.virtual_ip() is None, context
    ini_log = ini.charon.log.read_text(errors="replace")
    assert "no trusted ECDSA public key found for 'vpn.swan.test'" in ini_log, context
    # The responder did present the rogue certificate (and dropped the SA afterwards).
    log = swan_lab.responder_log.read_text(errors="replace")
    assert re.search(r'<foreign-ca\|\d+> sending end entity cert "CN=vpn.swan.test"', log), \
        context
    deadline = time.monotonic() + 15
    while swan_lab.established("foreign-ca") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not swan_lab.established("foreign-ca"), swan_lab.list_sas()
    got = swan_lab.run_ns(swan_lab.ns_cli, ["curl", "-sS", "--max-time", "3", swan_lab.blob_url],
                          text=False, timeout=20)
    assert got.returncode != 0, "the web host is reachable without a tunnel"


def test_rekey_mode_rekeys_child_sa(swan_lab: SwanLab, initiators):
    """In mode "rekey" the responder rekeys the CHILD_SA every ~10 s; traffic goes on."""
    ini = _connect(swan_lab, "rekey", initiators)
    _check_connected(swan_lab, "rekey", ini)
    first = swan_lab.ike_sas("rekey")[0]
    (child,) = first["child-sas"].values()
    spi = child["spi-in"]

    def rekeyed() -> bool:
        sas = swan_lab.established("rekey")
        return bool(sas) and all(c["spi-in"] != spi for c in sas[0]["child-sas"].values()
                                 if c.get("state") == "INSTALLED")
    deadline = time.monotonic() + 25
    while not rekeyed() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert rekeyed(), \
        f"no CHILD_SA rekey within 25 s\n{swan_lab.list_sas()}\n{swan_lab.logs_tail()}"
    sa = swan_lab.established("rekey")[0]
    assert sa["uniqueid"] == first["uniqueid"], "the IKE_SA itself was replaced"
    log = swan_lab.responder_log.read_text(errors="replace")
    assert "CREATE_CHILD_SA request" in log
    _fetch_blob(swan_lab, lambda: f"{ini.describe()}\n{swan_lab.logs_tail()}")


def test_v6_stock_initiator_dual_stack_inside(swan_lab: SwanLab, initiators):
    """Mode "v6": the stock initiator (vips = 0.0.0.0, ::) gets an address from each pool,
    one CHILD_SA carries both protected networks, and the blob comes over IPv6 from the
    web host's IPv6 address byte-exact: the responder side of erebus's IPv6 tests."""
    lab = swan_lab
    ini = _connect(lab, "v6", initiators)

    def context() -> str:
        return f"{ini.describe()}\n{lab.logs_tail()}\n{lab.list_sas()}"

    (sa,) = [s for s in ini.ike_sas() if s.get("state") == "ESTABLISHED"]
    vips = sa.get("local-vips") or []
    v4 = [v for v in vips if ":" not in v]
    v6 = [v for v in vips if ":" in v]
    assert len(v4) == 1 and ipaddress.ip_address(v4[0]) in ipaddress.ip_network(lab.pool), \
        context()
    assert len(v6) == 1 and ipaddress.ip_address(v6[0]) in ipaddress.ip_network(lab.pool6), \
        context()
    resp = lab.wait_established("v6", timeout=10)
    assert sorted(resp["remote-vips"]) == sorted(vips), context()
    (child,) = resp["child-sas"].values()
    assert child["local-ts"] == [lab.protected_net, lab.protected_net6], context()
    assert child["remote-ts"] == [f"{v4[0]}/32", f"{v6[0]}/128"], context()
    got = lab.run_ns(lab.ns_cli, ["curl", "-sS", "--fail", "--max-time", "30", "-g",
                                  lab.blob_url6], text=False, timeout=60)
    assert got.returncode == 0, f"curl failed: {got.stderr.decode()}\n{context()}"
    assert hashlib.sha256(got.stdout).hexdigest() == lab.blob_sha256, context()
    ini_log = ini.charon.log.read_text(errors="replace")
    assert "processing INTERNAL_IP6_ADDRESS attribute" in ini_log, context()
