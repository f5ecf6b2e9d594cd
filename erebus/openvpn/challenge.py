"""Challenge/response and pending authentication: the strings OpenVPN 2.6 exchanges
(doc/management-notes.txt, misc.c ``get_auth_challenge``, push.c
``parse_auth_pending_keywords``).  Parsing and formatting only, no I/O.

- static challenge (``static-challenge TEXT ECHO [FORMAT]``): the password sent is
  ``SCRV1:base64(password):base64(response)`` (or password + response, ``concat``);
- dynamic challenge: ``AUTH_FAILED,CRV1:flags:state_id:base64(username):text``; the next
  session sends the decoded username and ``CRV1::state_id::response``;
- pending auth: ``AUTH_PENDING[,timeout N]`` then ``INFO_PRE,WEB_AUTH:flags:url``,
  ``INFO_PRE,OPEN_URL:url`` or ``INFO_PRE,CR_TEXT:flags:text``; a CR_TEXT answer is
  ``CR_RESPONSE,base64(response)``.

Everything here comes from the server: every field is bounded, and text meant for a
terminal goes through :func:`printable` first (no escape sequences from a server).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from ..errors import ParseError

USER_PASS_LEN = 4096          # misc.h (ENABLE_PKCS11 / management builds): 2.6's buffer
MAX_STATE_ID = 1024           # erebus's bound on the opaque state id
MAX_USERNAME = 512            # the decoded username
MAX_TEXT = 1024               # challenge text / URL shown to the user (2.6: 1024 bytes
                              # for INFO_PRE,WEB_AUTH:flags:url together)
MAX_FLAGS = 64


def printable(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` safe for a terminal and a log line: control characters (ESC, CR, LF,
    BEL, C1 controls, DEL ...) become '?', at most ``limit`` characters."""
    cut = text[:limit]
    out = "".join(c if c.isprintable() else "?" for c in cut)
    return out + ("..." if len(text) > limit else "")


def _b64decode(field: str, what: str) -> bytes:
    try:
        return binascii.a2b_base64(field.encode("ascii"), strict_mode=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ParseError(f"{what} is not valid base64") from None


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _flags(field: str, what: str) -> tuple[bool, bool]:
    """(echo, response required) from comma-separated flags E and R (others ignored,
    as 2.6 does)."""
    if len(field) > MAX_FLAGS:
        raise ParseError(f"{what}: flags too long ({len(field)} characters)")
    parts = {p.strip() for p in field.split(",")}
    return "E" in parts, "R" in parts


# -- static challenge ----------------------------------------------------------------------

def static_response(password: str, response: str, fmt: str = "scrv1") -> str:
    """The password to send for a static challenge (misc.c ``get_user_pass_cr``)."""
    if fmt == "concat":
        packed = password + response
    else:
        packed = f"SCRV1:{b64(password)}:{b64(response)}"
    if len(packed) >= USER_PASS_LEN:
        raise ValueError(f"password and response too long together (at most "
                         f"{USER_PASS_LEN - 1} bytes once encoded)")
    return packed


# -- dynamic challenge (CRV1) ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DynamicChallenge:
    """What ``AUTH_FAILED,CRV1:...`` asks: ``text`` is already :func:`printable`."""

    echo: bool
    response_required: bool
    state_id: str
    username: str
    text: str

    def password(self, response: str) -> str:
        """The password of the next session (management-notes.txt: "CRV1::<state_id>::
        <response_text>")."""
        return f"CRV1::{self.state_id}::{response}"


def parse_crv1(reason: str) -> DynamicChallenge:
    """``CRV1:flags:state_id:username_base64:challenge text`` (the AUTH_FAILED reason);
    ParseError with a clear message for anything else."""
    if not reason.startswith("CRV1:"):
        raise ParseError("not a CRV1 challenge")
    parts = reason[len("CRV1:"):].split(":", 3)
    if len(parts) != 4:
        raise ParseError("the dynamic challenge (CRV1) is malformed: it needs "
                         "flags:state_id:username:text")
    flags, state_id, user64, text = parts
    echo, required = _flags(flags, "CRV1")
    if not state_id or len(state_id) > MAX_STATE_ID:
        raise ParseError(f"the dynamic challenge's state id is empty or longer than "
                         f"{MAX_STATE_ID} characters")
    if not state_id.isprintable() or any(c.isspace() for c in state_id):
        raise ParseError("the dynamic challenge's state id holds control characters "
                         "or spaces")
    if len(user64) > 4 * MAX_USERNAME // 3 + 4:
        raise ParseError(f"the dynamic challenge's username is longer than "
                         f"{MAX_USERNAME} bytes")
    raw = _b64decode(user64, "the dynamic challenge's username")
    try:
        username = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("the dynamic challenge's username is not UTF-8") from None
    if not username or not username.isprintable():
        raise ParseError("the dynamic challenge's username is empty or holds control "
                         "characters")
    return DynamicChallenge(echo, required, state_id, username, printable(text))


# -- pending auth ---------------------------------------------------------------------------

def parse_auth_pending(text: str) -> int | None:
    """The ``timeout N`` of ``AUTH_PENDING[,keyword,...]`` (push.c: other keywords are
    ignored), or None when the server gave none."""
    _, _, rest = text.partition(",")
    timeout = None
    for keyword in rest.split(","):
        m = re.fullmatch(r"\s*timeout\s+(\d{1,9})\s*", keyword)
        if m:
            timeout = int(m.group(1))
    return timeout


@dataclass(frozen=True, slots=True)
class WebAuth:
    """``WEB_AUTH:flags:url`` or ``OPEN_URL:url``: open this URL to continue."""

    url: str              # printable()
    flags: tuple[str, ...] = ()
    method: str = "webauth"


@dataclass(frozen=True, slots=True)
class CrText:
    """``CR_TEXT:flags:text``: answer with CR_RESPONSE."""

    echo: bool
    response_required: bool
    text: str             # printable()


def parse_info_pre(extra: str) -> WebAuth | CrText | None:
    """The EXTRA of ``INFO_PRE,EXTRA`` (management-notes.txt, client-pending-auth);
    None for a kind erebus does not know (shown as a plain server message)."""
    if extra.startswith("WEB_AUTH:"):
        flags, sep, url = extra[len("WEB_AUTH:"):].partition(":")
        if not sep:
            raise ParseError("INFO_PRE,WEB_AUTH needs flags:url")
        if len(flags) > MAX_FLAGS:
            raise ParseError("INFO_PRE,WEB_AUTH: flags too long")
        return WebAuth(_url(url), tuple(f for f in flags.split(",") if f))
    if extra.startswith("OPEN_URL:"):
        return WebAuth(_url(extra[len("OPEN_URL:"):]), method="openurl")
    if extra.startswith("CR_TEXT:"):
        flags, sep, text = extra[len("CR_TEXT:"):].partition(":")
        if not sep:
            raise ParseError("INFO_PRE,CR_TEXT needs flags:text")
        echo, required = _flags(flags, "INFO_PRE,CR_TEXT")
        return CrText(echo, required, printable(text))
    return None


def _url(url: str) -> str:
    url = url.strip()
    if not url:
        raise ParseError("the server sent an empty URL to open")
    if len(url) > MAX_TEXT:
        raise ParseError(f"the URL to open is longer than {MAX_TEXT} characters")
    return printable(url)


def cr_response(response: str) -> bytes:
    """The control message answering a CR_TEXT challenge (NUL-terminated)."""
    return f"CR_RESPONSE,{b64(response)}".encode("ascii") + b"\x00"
