"""OpenVPN over TCP through an HTTP proxy (``http-proxy``), as OpenVPN 2.6 does it
(proxy.c): CONNECT server:port, and on 200 the stream carries OpenVPN's TCP framing.
An IPv6 server address goes in brackets (``CONNECT [2001:2::1]:1194``, RFC 9110's
authority form; 2.6 writes it bare, which a proxy cannot split from the port).

Credentials go in ``Proxy-Authorization: Basic`` at once with an authfile, or with
'auto' only after a 407 whose ``Proxy-Authenticate`` offers Basic (a new connection,
as 2.6 makes; 'auto-nct' refuses to send them in clear).  The password is never
logged.  What an answer means for the next try:

- 407 (or 401, tinyproxy's answer to a wrong password) after credentials were sent,
  or with none to send: stage auth, not recoverable;
- 403: the proxy's policy for this destination (stage auth, recoverable: the next
  remote may be allowed);
- 5xx (502 Bad Gateway: the proxy cannot reach the server): recoverable;
- any other status, or an answer that is not HTTP: a protocol error, not recoverable.
"""

from __future__ import annotations

import logging

from ..session import Stage
from ..wire.httpconnect import Answer, connect_request, offers_basic
from .outer import ProxyStream, open_stream, proxy_error
from .tunnel import Endpoint, host_port

__all__ = ["HttpProxyConnector", "refusal"]

log = logging.getLogger("erebus.proxy")


def refusal(endpoint: Endpoint, answer: Answer, *, sent_credentials: bool):
    """The SessionError for an answer other than 2xx (None for a 2xx)."""
    status = answer.status
    said = f"answered '{answer.status_line}' to CONNECT {endpoint.name}"
    if 200 <= status < 300:
        return None
    if status in (401, 407):                # tinyproxy says 401 to wrong credentials
        why = ("the proxy refused the username and password" if sent_credentials else
               "the proxy asks for a username and password and the profile gives none "
               "(http-proxy HOST PORT AUTHFILE, or 'auto' with http-proxy-user-pass)")
        return proxy_error(Stage.AUTH, endpoint, f"{said}: {why}", recoverable=False)
    if status == 403:
        return proxy_error(Stage.AUTH, endpoint, f"{said}: the proxy does not let this "
                           "client reach the server", recoverable=True)
    if 500 <= status < 600:
        return proxy_error(Stage.UNREACHABLE, endpoint, f"{said}: the proxy could not "
                           "reach the server", recoverable=True)
    return proxy_error(Stage.PROTOCOL, endpoint, said, recoverable=False)


class HttpProxyConnector:
    """A "tcp-client" endpoint through its HTTP proxy."""

    async def open(self, endpoint: Endpoint, addr, on_datagram, on_batch_end, on_error,
                   on_lost, driver):
        proxy = endpoint.proxy
        credentials = None
        if proxy.auth == "basic" and proxy.username is not None:
            credentials = (proxy.username, proxy.password or "")
        while True:
            stream = await open_stream(endpoint, addr)
            try:
                answer = await self._connect(stream, endpoint, credentials)
                if answer.status == 407 and credentials is None \
                        and proxy.auth in ("auto", "auto-nct"):
                    credentials = self._answer_challenge(endpoint, answer)
                    stream.close()
                    continue            # 2.6 asks again on a new connection
                error = refusal(endpoint, answer, sent_credentials=credentials is not None)
                if error is not None:
                    raise error
                stream.buf[:0] = answer.rest
                return stream.hand_over(driver.stream_link(on_datagram, on_batch_end,
                                                           on_lost), addr)
            except BaseException:
                stream.close()
                raise

    @staticmethod
    async def _connect(stream: ProxyStream, endpoint: Endpoint, credentials) -> Answer:
        proxy = endpoint.proxy
        request, parser = connect_request(endpoint.host, endpoint.port,
                                          version=proxy.http_version,
                                          headers=proxy.headers, agent=proxy.agent,
                                          credentials=credentials)
        log.debug("%s: CONNECT %s HTTP/%s%s", proxy.name, host_port(endpoint.host,
                                                                   endpoint.port),
                  proxy.http_version, " (Proxy-Authorization: Basic)" if credentials else "")
        stream.write(request)
        answer = await stream.read(lambda data: (parser.receive(data), len(data)),
                                   "its answer to CONNECT")
        log.debug("%s: answered '%s'", proxy.name, answer.status_line)
        return answer

    @staticmethod
    def _answer_challenge(endpoint: Endpoint, answer: Answer) -> tuple[str, str]:
        """'auto': the credentials to send after a 407, or the SessionError why not."""
        proxy = endpoint.proxy
        said = f"answered '{answer.status_line}'"
        if not offers_basic(answer):
            raise proxy_error(Stage.AUTH, endpoint, f"{said} and offers no Basic "
                              "authentication (erebus speaks no NTLM nor Digest)",
                              recoverable=False)
        if proxy.auth == "auto-nct":
            raise proxy_error(Stage.AUTH, endpoint, f"{said} and offers only Basic, which "
                              "sends the password in clear: 'auto-nct' forbids it",
                              recoverable=False)
        if proxy.username is None:
            raise proxy_error(Stage.AUTH, endpoint, f"{said}: the proxy asks for a "
                              "username and password and the profile gives none "
                              "(http-proxy-user-pass FILE)", recoverable=False)
        log.info("%s asks for Basic authentication: sending the username %r",
                 proxy.name, proxy.username)
        return proxy.username, proxy.password or ""
