"""Outer proxies: the .ovpn lines (2.6's rules and messages), ``erebus check``'s
report, and the connectors against small proxies on loopback: what each answer
means (stage, recoverable, the proxy named, never the password), the stream handed
to OpenVPN's TCP framing, a SOCKS5 UDP association with its header and drops."""

from __future__ import annotations

import asyncio
import struct

import pytest

from erebus.check import render, settings as check_settings
from erebus.errors import SessionError
from erebus.openvpn.config import parse_profile
from erebus.openvpn.profile import OuterProxy, ProfileError
from erebus.runtime.openvpn import TcpFraming
from erebus.runtime.outer import OuterConnector
from erebus.runtime.tunnel import Endpoint
from erebus.session import Stage
from erebus.wire import socks5
from tests.profiles.pki import Pki
from tests.unit.waiting import until

_PKI = Pki()
PKI = f"<ca>\n{_PKI.ca_pem}</ca>\n<cert>\n{_PKI.client_pem}</cert>\n<key>\n" \
      f"{_PKI.client_key_pem}</key>\n"
PASSWORD = "pa55-w0rd:with colon"


def profile(body: str, remote: str = "remote vpn.example 443 tcp-client") -> str:
    return f"client\ndev tun\n{remote}\n" + body + PKI


def problems(text: str, path: str = "p.ovpn") -> list[str]:
    with pytest.raises(ProfileError) as e:
        parse_profile(text, path)
    return [str(x) for x in e.value.problems]


@pytest.fixture
def authfile(tmp_path):
    f = tmp_path / "proxy.auth"
    f.write_text(f"alice\n{PASSWORD}\n")
    return f


# -- the profile -------------------------------------------------------------------------

def test_http_proxy_with_authfile_and_options(tmp_path, authfile):
    text = profile(f"http-proxy proxy.example 3128 {authfile}\n"
                   "http-proxy-option VERSION 1.1\nhttp-proxy-option AGENT \"Mozilla/5.0\"\n"
                   "http-proxy-option CUSTOM-HEADER X-Foo bar\n"
                   "http-proxy-option CUSTOM-HEADER \"X-Bar: baz\"\n")
    (r,) = parse_profile(text, str(tmp_path / "p.ovpn")).remotes
    assert r.proxy == OuterProxy("http", "proxy.example", 3128, 4, "alice", PASSWORD, "basic",
                                 "1.1", "Mozilla/5.0", (("X-Foo", "bar"), ("X-Bar", "baz")))
    assert PASSWORD not in repr(r.proxy)
    report = check_settings(parse_profile(text, str(tmp_path / "p.ovpn")))
    assert report["remotes"][0]["proxy"] == {"kind": "http", "host": "proxy.example",
                                             "port": 3128, "line": 4, "auth": "basic",
                                             "credentials": True}
    shown = render({"ok": True, "format": "openvpn", "profile": "p.ovpn",
                    "settings": report, "warnings": []})
    assert "through the HTTP proxy proxy.example:3128" in shown and PASSWORD not in shown


def test_http_proxy_with_proto_udp_is_26s_usage_error():
    (got,) = problems(profile("http-proxy proxy.example 3128\n",
                              remote="remote vpn.example 1194"))
    assert got == ("p.ovpn:4: http-proxy: --http-proxy MUST be used in TCP Client mode "
                   "(i.e. --proto tcp-client)")
    (got,) = problems(profile("http-proxy proxy.example 3128\nproto udp\n",
                              remote="remote vpn.example 1194"))
    assert got.startswith("p.ovpn:4: http-proxy: --http-proxy MUST")


@pytest.mark.parametrize("line, words", [
    ("http-proxy proxy.example", "http-proxy port number not defined"),
    ("http-proxy proxy.example 3128 f ntlm2", "NTLM proxy authentication ('ntlm2')"),
    ("http-proxy proxy.example 3128 f ntlm-less", "unknown HTTP authentication method: "
                                                 "'ntlm-less'"),
    ("http-proxy proxy.example 3128 stdin", "on the terminal"),
    ("http-proxy proxy.example 3128 missing.auth", "cannot read"),
    ("http-proxy-option VERSION 2.0", "VERSION must be 1.0 or 1.1"),
    ("http-proxy-option FOO bar", "Bad http-proxy-option or missing or extra parameter"),
    ("http-proxy-option CUSTOM-HEADER \"X y\" z", "Illegal header name"),
    ("http-proxy-option AGENT x", "--http-proxy not specified but other http proxy options"),
    ("socks-proxy s.example 1080 missing.auth", "cannot read"),
])
def test_proxy_lines_refused_like_26(line, words):
    got = problems(profile(line + "\n"))
    assert len(got) == 1 and got[0].startswith("p.ovpn:4: " + line.split()[0]) \
        and words in got[0], got


def test_http_and_socks_together_and_a_short_authfile(tmp_path):
    (got,) = problems(profile("http-proxy h.example 1\nsocks-proxy s.example\n"))
    assert "can not be used together with --socks-proxy" in got
    f = tmp_path / "u"
    f.write_text("bob\n")
    (got,) = problems(profile(f"socks-proxy s.example 1080 {f}\n"))
    assert "password on the second" in got


def test_socks_proxy_default_port_auto_and_user_pass_override(tmp_path, authfile):
    p = parse_profile(profile("socks-proxy s.example\n", remote="remote vpn.example 1194"),
                      "p.ovpn")
    assert p.remotes[0].proxy == OuterProxy("socks", "s.example", 1080, 4)
    p = parse_profile(profile(f"http-proxy h.example 8080 auto\nhttp-proxy-user-pass "
                              f"{authfile}\n"), "p.ovpn")
    proxy = p.remotes[0].proxy
    assert (proxy.auth, proxy.username, proxy.password) == ("auto", "alice", PASSWORD)


def test_a_connection_block_has_its_own_proxy():
    text = ("client\ndev tun\n<connection>\nremote a.example 443 tcp-client\n"
            "http-proxy h.example 3128\n</connection>\n<connection>\nremote b.example 1194\n"
            "</connection>\n" + PKI)
    a, b = parse_profile(text, "p.ovpn").remotes
    assert a.proxy.host == "h.example" and b.proxy is None


# -- the connectors, against proxies on loopback ------------------------------------------

class Driver:
    def stream_link(self, on_datagram, on_batch_end, on_lost):
        return TcpFraming(on_datagram, on_batch_end, on_lost)


async def serve(handler):
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def open_through(proxy: OuterProxy, proto: str = "tcp-client",
                       host: str = "vpn.example", port: int = 443):
    got, lost = [], []
    endpoint = Endpoint(host, port, proto, proxy=proxy)
    connector = OuterConnector()
    addr = (await connector.resolve(endpoint))[0]
    link = await connector.open(endpoint, addr, got.append, lambda: None, lambda e: None,
                                lost.append, Driver())
    return link, got, lost


def http_proxy(port, **kw) -> OuterProxy:
    return OuterProxy("http", "127.0.0.1", port, 4, **kw)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def http_server(answers: list[bytes], seen: list[bytes]):
    async def handler(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head)
        answer = answers.pop(0)
        writer.write(answer)
        if answer.startswith(b"HTTP/1.0 200") and not answers:
            data = await reader.readexactly(5)          # one framed packet: echo it
            writer.write(data)
            await writer.drain()
        writer.close()
    return handler


def test_http_connect_200_hands_the_stream_to_the_tcp_framing():
    async def main():
        seen = []
        server, port = await serve(http_server(
            [b"HTTP/1.0 200 Connection established\r\nProxy-agent: t\r\n\r\n"], seen))
        async with server:
            link, got, _ = await open_through(http_proxy(port, agent="erebus"))
            link.send(b"abc")
            await until(lambda: got)
            link.close()
        return seen, got
    seen, got = run(main())
    assert seen[0].startswith(b"CONNECT vpn.example:443 HTTP/1.0\r\nHost: vpn.example\r\n")
    assert b"User-Agent: erebus" in seen[0] and got == [b"abc"]


@pytest.mark.parametrize("answer, auth, stage, recoverable, words", [
    (b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", "basic", Stage.AUTH, False,
     "refused the username and password"),
    (b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", "none", Stage.AUTH, False,
     "the profile gives none"),
    (b"HTTP/1.1 401 Unauthorized\r\n\r\n", "basic", Stage.AUTH, False,
     "refused the username and password"),
    (b"HTTP/1.1 403 Forbidden\r\n\r\n", "none", Stage.AUTH, True, "does not let"),
    (b"HTTP/1.1 502 Bad Gateway\r\n\r\n", "none", Stage.UNREACHABLE, True, "could not reach"),
    (b"HTTP/1.1 405 Method Not Allowed\r\n\r\n", "none", Stage.PROTOCOL, False, "405"),
    (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "none", Stage.PROTOCOL, False, "illegal status line"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 20000, "none", Stage.PROTOCOL, False, "too long"),
    (b"", "none", Stage.CONNECTION_LOST, True, "closed the connection"),
])
def test_http_refusals_name_the_proxy_and_its_status(answer, auth, stage, recoverable, words):
    async def main():
        server, port = await serve(http_server([answer], []))
        async with server:
            with pytest.raises(SessionError) as e:
                await open_through(http_proxy(port, auth=auth, username="alice",
                                              password=PASSWORD))
            return port, e.value
    port, err = run(main())
    assert (err.stage, err.recoverable) == (stage, recoverable)
    assert str(err).startswith(f"vpn.example:443: HTTP proxy 127.0.0.1:{port}: ")
    assert words in str(err) and PASSWORD not in str(err)


@pytest.mark.parametrize("auth, challenge, words", [
    ("auto", b"Basic realm=\"x\"", None),
    ("auto-nct", b"Basic realm=\"x\"", "auto-nct"),
    ("auto", b"NTLM", "no Basic"),
])
def test_auto_answers_a_basic_challenge_on_a_new_connection(auth, challenge, words):
    async def main():
        seen = []
        answers = [b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: " +
                   challenge + b"\r\nContent-Length: 0\r\n\r\n",
                   b"HTTP/1.1 200 Connection established\r\n\r\n"]
        server, port = await serve(http_server(answers, seen))
        async with server:
            try:
                link, _, _ = await open_through(http_proxy(port, auth=auth, username="alice",
                                                           password=PASSWORD))
            except SessionError as exc:
                return seen, exc
            link.close()
            return seen, None
    seen, err = run(main())
    assert b"Proxy-Authorization" not in seen[0]
    if words is None:
        assert err is None and len(seen) == 2 and b"Proxy-Authorization: Basic" in seen[1]
    else:
        assert err.stage == Stage.AUTH and words in str(err) and len(seen) == 1


def socks_server(method: int, *, auth_ok=True, rep=0, relay_port=0, seen=None):
    async def handler(reader, writer):
        hello = await reader.readexactly(3)
        seen is not None and seen.append(hello)
        writer.write(bytes((5, method)))
        if method == socks5.USER_PASS:
            ulen = (await reader.readexactly(2))[1]
            user = await reader.readexactly(ulen)
            plen = (await reader.readexactly(1))[0]
            password = await reader.readexactly(plen)
            seen is not None and seen.append((user, password))
            writer.write(b"\x01" + (b"\x00" if auth_ok else b"\x01"))
            if not auth_ok:
                writer.close()
                return
        elif method == socks5.NO_ACCEPTABLE:
            writer.close()
            return
        head = await reader.readexactly(5)
        rest = await reader.readexactly(reader_len(head[3], head[4:]))
        seen is not None and seen.append(head + rest)
        writer.write(bytes((5, rep, 0, 1, 0, 0, 0, 0)) + struct.pack("!H", relay_port))
        if rep == 0 and head[1] == socks5.CMD_CONNECT:
            writer.write(b"\x00\x02hi")                    # the server's first packet
        await writer.drain()
        if head[1] == socks5.CMD_UDP_ASSOCIATE:
            await reader.read(1)                           # held until the client closes
        await asyncio.sleep(0.2)
        writer.close()
    return handler


def reader_len(atyp: int, first: bytes) -> int:
    # the rest of a request after its first address byte (returned as part of it)
    return {1: 3, 3: first[0]}[atyp] + 2 if atyp in (1, 3) else 17


def socks_proxy(port, user=None) -> OuterProxy:
    return OuterProxy("socks", "127.0.0.1", port, 4, user, PASSWORD if user else None)


def test_socks_connect_with_username_and_the_name_as_domain():
    async def main():
        seen = []
        server, port = await serve(socks_server(socks5.USER_PASS, seen=seen))
        async with server:
            link, got, _ = await open_through(socks_proxy(port, "alice"))
            await until(lambda: got)
            link.close()
        return seen, got
    seen, got = run(main())
    assert seen[0] == b"\x05\x01\x02" and seen[1] == (b"alice", PASSWORD.encode())
    assert seen[2] == b"\x05\x01\x00\x03\x0bvpn.example\x01\xbb" and got == [b"hi"]


@pytest.mark.parametrize("kw, user, stage, words", [
    (dict(method=socks5.NO_ACCEPTABLE), None, Stage.AUTH, "give socks-proxy HOST PORT "
                                                          "AUTHFILE"),
    (dict(method=socks5.USER_PASS, auth_ok=False), "alice", Stage.AUTH, "refused the user"),
    (dict(method=0, rep=socks5.REP_NOT_ALLOWED), None, Stage.UNREACHABLE,
     "connection not allowed by ruleset"),
    (dict(method=0, rep=socks5.REP_COMMAND_NOT_SUPPORTED), None, Stage.PROTOCOL,
     "command not supported"),
])
def test_socks_refusals(kw, user, stage, words):
    async def main():
        server, port = await serve(socks_server(**kw))
        async with server:
            with pytest.raises(SessionError) as e:
                await open_through(socks_proxy(port, user))
            return port, e.value
    port, err = run(main())
    assert err.stage == stage and words in str(err)
    assert str(err).startswith(f"vpn.example:443: SOCKS proxy 127.0.0.1:{port}: ")
    assert PASSWORD not in str(err)


def test_socks_udp_association_adds_checks_and_strips_the_header():
    async def main():
        loop = asyncio.get_running_loop()
        relay_seen = []

        class Relay(asyncio.DatagramProtocol):
            def connection_made(self, transport):
                self.transport = transport

            def datagram_received(self, data, addr):
                relay_seen.append(data)
                ip, port = data[4:8], data[8:10]
                echo = data[10:]
                self.transport.sendto(b"\0\0\0\x01" + ip + port + echo, addr)
                self.transport.sendto(b"\0\0\x01\x01" + ip + port + b"frag", addr)
                self.transport.sendto(b"\0\0\0\x01" + bytes(4) + port + b"foreign", addr)
                self.transport.sendto(b"\0\0\0", addr)
        transport, _ = await loop.create_datagram_endpoint(Relay, local_addr=("127.0.0.1", 0))
        relay_port = transport.get_extra_info("sockname")[1]
        server, port = await serve(socks_server(0, relay_port=relay_port))
        async with server:
            link, got, lost = await open_through(socks_proxy(port), "udp", "127.0.0.9", 1194)
            link.send(b"P_CONTROL_HARD_RESET")
            await until(lambda: got and link.dropped_malformed)
            counts = (link.dropped_fragment, link.dropped_foreign, link.dropped_malformed)
            link.control.transport.close()         # the proxy ends the association
            await until(lambda: lost, what="the end of the association")
        transport.close()
        return relay_seen, got, counts, lost, link
    relay_seen, got, counts, lost, link = run(main())
    assert relay_seen == [b"\0\0\0\x01\x7f\0\0\x09\x04\xaaP_CONTROL_HARD_RESET"]
    assert got == [b"P_CONTROL_HARD_RESET"] and counts == (1, 1, 1)
    assert link.closed and lost[0].stage == Stage.CONNECTION_LOST
    assert "control connection" in str(lost[0])
