"""tls-auth and tls-crypt wrapping against the REAL OpenVPN server, with raw UDP.

No erebus session is involved: a small script in the lab's client namespace builds a
P_CONTROL_HARD_RESET_CLIENT_V2 with :mod:`erebus.wire.openvpn`, wraps it with
:class:`erebus.openvpn.wrap.TlsAuth` (key direction 1) or
:class:`~erebus.openvpn.wrap.TlsCrypt` (client), and sends it to the stock server,
which must answer with a P_CONTROL_HARD_RESET_SERVER_V2 that our ``unwrap`` accepts.
It then sends the first TLS record (a ClientHello) in a wrapped P_CONTROL_V1, so
the server creates a session and answers from that session's own wrap context
(new packet-id time, ids continuing from 2): those packets must unwrap too.
An unwrapped reset, and resets wrapped with the wrong key or the wrong key
direction, must get no answer at all (the server drops them silently).

The stock client proves the lab modes themselves (both reach "Initialization
Sequence Completed"; the tls-crypt mode's username/password check really rejects
a wrong password).
"""

from __future__ import annotations

import json
import sys

import pytest

from tests.lab import REPO_ROOT, LabError, stop_process, tail, wait_for_log

pytestmark = pytest.mark.interop

_RAW_SCRIPT = r"""
import json, os, select, socket, ssl, struct, sys, time
from erebus.openvpn.statickey import parse_static_key
from erebus.openvpn.wrap import TlsAuth, TlsCrypt, WrapError
from erebus.wire import openvpn as w

kind, host, port, keyfile = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
with open(keyfile) as f:
    key = parse_static_key(f.read(), source=keyfile)
wrong_key = bytes(b ^ 0x5A for b in key)

def wrapper(k=key, right_side=True):
    if kind == "tls-auth":
        return TlsAuth(k, 1 if right_side else 0)
    return TlsCrypt(k, client=right_side)

def sock():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port))
    return s

def reset(sid):
    return w.build_control(w.P_CONTROL_HARD_RESET_CLIENT_V2, 0, sid, packet_id=0)

def drain(socks, seconds):
    # every datagram that arrives on any of socks within seconds: {index: [bytes]}
    got = {i: [] for i in range(len(socks))}
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select(socks, [], [], left)
        for s in ready:
            got[socks.index(s)].append(s.recv(4096))
    return got

out = {}

# 1. Negative cases, all at once: plain reset, wrong key, wrong key direction.
bad = {
    "unwrapped": lambda sid: reset(sid),
    "wrong key": lambda sid: wrapper(wrong_key).wrap(reset(sid), time.time()),
    "wrong direction": lambda sid: wrapper(right_side=False).wrap(reset(sid), time.time()),
}
socks = [sock() for _ in bad]
for s, make in zip(socks, bad.values()):
    s.send(make(os.urandom(8)))
got = drain(socks, 2.5)
out["negative"] = {name: len(got[i]) for i, name in enumerate(bad)}
for s in socks:
    s.close()

# 2. The real thing: our wrapped reset until the server answers (it does not retransmit).
wr = wrapper()
sid = os.urandom(8)
s = sock()
reply = None
for attempt in range(5):
    s.send(wr.wrap(reset(sid), time.time()))
    got = drain([s], 1.0)[0]
    if got:
        reply = got[0]
        break
out["reset_attempts"] = attempt + 1
if reply is None:
    out["reset"] = None
    print(json.dumps(out))
    sys.exit(0)

now = time.time()
# A corrupted copy must fail authentication (and must not spend the replay id).
tampered = bytearray(reply)
tampered[-1] ^= 1
try:
    wr.unwrap(bytes(tampered), now)
    out["tampered"] = "accepted"
except WrapError as exc:
    out["tampered"] = exc.kind

plain = wr.unwrap(reply, now)
pkt = w.parse_packet(plain)
out["reset"] = {
    "len": len(reply), "plain_len": len(plain), "opcode": pkt.opcode, "key_id": pkt.key_id,
    "acks": list(pkt.acks), "remote_sid_ok": pkt.remote_session_id == sid,
    "packet_id": pkt.packet_id, "payload": pkt.payload.hex(),
}
try:
    wr.unwrap(reply, now)
    out["replay"] = "accepted"
except WrapError as exc:
    out["replay"] = exc.kind
server_sid = pkt.session_id

# 3. First TLS record in P_CONTROL_V1 (acking the server's reset): the server now
#    creates the session and answers from it.
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
inc, outg = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(inc, outg)
try:
    tls.do_handshake()
except ssl.SSLWantReadError:
    pass
hello = outg.read()
s.send(wr.wrap(w.build_control(w.P_CONTROL_V1, 0, sid, [0], server_sid, 1, hello),
               time.time()))
packets, errors = [], []
for data in drain([s], 2.5)[0]:
    try:
        p = w.parse_packet(wr.unwrap(data, time.time()))
    except WrapError as exc:
        errors.append(f"{exc.kind}: {exc}")
        continue
    # the wrapped packet id and time (for the report): tls-auth after the HMAC,
    # tls-crypt right after the session id
    off = 9 + (wr.hmac_size if kind == "tls-auth" else 0)
    pid, ptime = struct.unpack_from("!II", data, off)
    packets.append({"opcode": p.opcode, "session_ok": p.session_id == server_sid,
                    "acks": list(p.acks), "packet_id": p.packet_id,
                    "tls": p.payload[:1].hex(), "wrap_id": pid, "wrap_time": ptime})
out["session"] = {"packets": packets, "errors": errors}
s.close()
print(json.dumps(out))
"""


def _raw_exchange(lab, server, kind: str) -> dict:
    cp = lab.run_ns(lab.ns_cli, [sys.executable, "-c", _RAW_SCRIPT, kind, server.host,
                                 str(server.port), str(lab.static_key())],
                    env={"PYTHONPATH": str(REPO_ROOT)}, timeout=60)
    assert cp.returncode == 0, f"raw script failed:\n{cp.stdout}\n{cp.stderr}\n" \
                               f"{server.describe()}"
    return json.loads(cp.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind", ["tls-auth", "tls-crypt"])
def test_raw_reset_against_stock_server(lab, ovpn_server, kind):
    server = ovpn_server(kind)
    res = _raw_exchange(lab, server, kind)
    context = f"{json.dumps(res, indent=1)}\n{server.describe()}"

    # The server silently drops what is not wrapped with the right key half.
    assert res["negative"] == {"unwrapped": 0, "wrong key": 0, "wrong direction": 0}, context

    reset = res["reset"]
    assert reset is not None, f"no answer to our wrapped reset\n{context}"
    assert reset["opcode"] == 8, context                     # P_CONTROL_HARD_RESET_SERVER_V2
    assert reset["key_id"] == 0, context
    assert reset["acks"] == [0] and reset["remote_sid_ok"], context
    assert reset["packet_id"] == 0, context
    overhead = 20 + 8 if kind == "tls-auth" else 40          # SHA1 HMAC + pid | pid + tag
    assert reset["len"] - reset["plain_len"] == overhead, context
    assert res["tampered"] == "auth", context
    assert res["replay"] == "replay", context

    session = res["session"]
    assert not session["errors"], context
    controls = [p for p in session["packets"] if p["opcode"] == 4]
    assert controls, f"no P_CONTROL_V1 from the server's session\n{context}"
    assert all(p["session_ok"] for p in session["packets"]), context
    assert controls[0]["packet_id"] == 1 and controls[0]["tls"] == "16", context  # handshake
    assert any(1 in p["acks"] for p in session["packets"]), context   # our ClientHello acked
    # The session's wrap packet ids continue after the reset's (session_skip_to_pre_start).
    assert min(p["wrap_id"] for p in session["packets"]) == 2, context


def _stock_client(lab, profile, log_name):
    log = lab.dir / log_name
    proc = lab.spawn_ns(lab.ns_cli, ["openvpn", "--config", str(profile), "--log", str(log)])
    return proc, log


@pytest.mark.parametrize("kind", ["tls-auth", "tls-crypt"])
def test_stock_client_completes(lab, ovpn_server, kind):
    server = ovpn_server(kind)
    proc, log = _stock_client(lab, server.profile, f"stock-client-{kind}.log")
    try:
        wait_for_log(log, "Initialization Sequence Completed", timeout=30, process=proc,
                     what=f"stock openvpn client ({kind})")
        assert lab.ping(lab.ns_cli, server.vpn_address, count=3) > 0, \
            f"{tail(log)}\n{server.describe()}"
    except LabError as exc:
        pytest.fail(f"{exc}\n{server.describe()}", pytrace=False)
    finally:
        stop_process(proc)
    if kind == "tls-crypt":
        text = server.log.read_text(errors="replace")
        assert "authentication succeeded for username 'alice'" in text, server.describe()
        assert "auth-token" in log.read_text(errors="replace"), tail(log)


def test_stock_client_wrong_password_refused(lab, ovpn_server):
    server = ovpn_server("tls-crypt")
    text = server.profile.read_text()
    assert "alice\ns3cret\n" in text
    profile = lab.dir / "client-tls-crypt-wrong-password.ovpn"
    profile.write_text(text.replace("alice\ns3cret\n", "alice\nwrong\n"))
    proc, log = _stock_client(lab, profile, "stock-client-tls-crypt-wrong.log")
    try:
        wait_for_log(log, "AUTH_FAILED", timeout=30, process=proc,
                     what="stock openvpn client (wrong password)")
    except LabError as exc:
        pytest.fail(f"{exc}\n{server.describe()}", pytrace=False)
    finally:
        stop_process(proc)
    assert "Initialization Sequence Completed" not in log.read_text(errors="replace")
