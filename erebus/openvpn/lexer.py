"""The ``.ovpn`` lexer: lines into words and directives, as OpenVPN 2.6 reads them.

Lexing follows OpenVPN 2.6's ``read_config_file`` and ``parse_line`` (options.c):
a profile is read line by line (a line ends at ``\\n``; ``\\r`` is white space, so
CRLF, LF and mixed endings read alike; a UTF-8 BOM on the first line is skipped);
words split on white space; ``#`` or ``;`` where a word would start begins a
comment; double quotes group a word and allow the escapes ``\\\\``, ``\\"`` and
``\\ ``; single quotes group a word literally; a backslash outside single quotes
escapes the next character, and any other escape is an error, as it is for the
stock client.  A line of 256 bytes or more is an error (the stock client reads
lines into a 256-byte buffer and refuses longer ones); at most 16 words of a line
count.  An option may be written with a leading ``--``.  A line holding only
``<name>`` starts inline material that ends at the first line starting (after white
space) with ``</name>``.

:func:`split_line` splits one line; :func:`lex` turns a whole text into
:class:`Directive` objects (inline blocks attached), recording every line that does
not lex as a :class:`~erebus.errors.ConfigError` and going on.  What the options
mean is the reader's business (:mod:`erebus.openvpn.reader`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigError
from .options import OPTIONS

__all__ = ["OPTION_LINE_SIZE", "MAX_PARMS", "Directive", "split_line", "lex"]

OPTION_LINE_SIZE = 256        # options.h: a line must be shorter than this (bytes)
MAX_PARMS = 16                # options.h: words of a line that count

_INITIAL, _UNQUOTED, _DQUOTED, _SQUOTED = range(4)
_SPACE = frozenset(" \t\n\v\f\r")


def split_line(line: str, path: str, lineno: int, *,
               warnings: list[str] | None = None) -> list[str]:
    """The words of one line, as OpenVPN's ``parse_line`` splits them.

    Raises :class:`ConfigError` where the stock client refuses the line (an escape other
    than ``\\\\``, ``\\"`` or ``\\ ``, an unterminated quote, a word too long)."""
    end = line.find("\0")
    if end >= 0:
        line = line[:end]              # a C string ends at its first NUL
    words: list[str] = []
    word: list[str] = []
    state = _INITIAL
    escaped = False
    for ch in line + "\0":
        at_end = ch == "\0"
        if not escaped and ch == "\\" and state != _SQUOTED:
            escaped = True
            continue
        out = ""
        space = at_end or ch in _SPACE
        if state == _INITIAL:
            if not space:
                if ch in "#;":
                    break
                if not escaped and ch == '"':
                    state = _DQUOTED
                elif not escaped and ch == "'":
                    state = _SQUOTED
                else:
                    out, state = ch, _UNQUOTED
        elif state == _UNQUOTED:
            if not escaped and space:
                words.append("".join(word))
                word, state = [], _INITIAL
            elif not at_end:
                out = ch
        elif state == _DQUOTED:
            if not escaped and ch == '"':
                words.append("".join(word))
                word, state = [], _INITIAL
            elif not at_end:
                out = ch
        else:
            if ch == "'":
                words.append("".join(word))
                word, state = [], _INITIAL
            elif not at_end:
                out = ch
        if escaped and out and not (out in '\\"' or out in _SPACE):
            raise ConfigError(f"bad backslash: '\\{out}' (only \\\\, \\\" and '\\ ' are "
                              "escapes; write a Windows path with double backslashes or "
                              "in single quotes)", path=path, line=lineno)
        escaped = False
        if out:
            if len(word) >= OPTION_LINE_SIZE:
                raise ConfigError(f"a word is longer than {OPTION_LINE_SIZE} characters",
                                  path=path, line=lineno)
            word.append(out)
        if len(words) >= MAX_PARMS:
            if warnings is not None and line[line.find(words[-1]):].strip():
                warnings.append(f"{path}:{lineno}: only the first {MAX_PARMS} words of "
                                "a line count (as for the stock client)")
            break
    if state == _DQUOTED:
        raise ConfigError("unterminated quote (\")", path=path, line=lineno)
    if state == _SQUOTED:
        raise ConfigError("unterminated quote (')", path=path, line=lineno)
    if state != _INITIAL:
        raise ConfigError("the line ends in a backslash", path=path, line=lineno)
    return words


@dataclass(slots=True)
class Directive:
    line: int
    name: str
    args: list[str]
    inline: str | None = None     # the text between <name> and </name>
    path: str = "<profile>"       # the file it was read from
    text: str = ""                # the words as written, for listing


def _is_tag_line(stripped: str) -> str | None:
    """The tag name of a line holding ``<tag>`` or ``</tag>`` (None otherwise)."""
    if len(stripped) > 2 and stripped[0] == "<" and stripped[-1] == ">":
        inner = stripped[1:-1].lstrip("/")
        if re.fullmatch(r"[a-z0-9-]+", inner):
            return inner
    return None


def lex(text: str, path: str, *, first_line: int = 1, problems: list[ConfigError] | None
        = None, warnings: list[str] | None = None) -> list[Directive]:
    """Directives in file order, inline blocks attached.

    With ``problems`` given, a line that does not lex is recorded there and skipped;
    without, the first one raises."""
    def fail(exc: ConfigError) -> None:
        if problems is None:
            raise exc
        problems.append(exc)

    if first_line == 1 and text.startswith("\ufeff"):
        text = text[1:]
    raw = re.findall(r"[^\n]*\n|[^\n]+$", text)     # lines keep their "\n", as fgets's do
    out: list[Directive] = []
    i = 0
    while i < len(raw):
        lineno = first_line + i
        line = raw[i]
        i += 1
        if len(line.encode("utf-8", "surrogatepass")) >= OPTION_LINE_SIZE:
            fail(ConfigError(f"the line is {len(line.rstrip())} characters long; OpenVPN "
                             f"reads at most {OPTION_LINE_SIZE - 1} (put long values in a "
                             "file)", path=path, line=lineno))
            continue
        try:
            words = split_line(line, path, lineno, warnings=warnings)
        except ConfigError as exc:
            guess = line.split()[0].removeprefix("--") if line.split() else None
            if guess and re.fullmatch(r"[a-z0-9-]+", guess) and exc.option is None:
                exc = ConfigError(str(exc).removeprefix(f"{path}:{lineno}: "), path=path,
                                  line=lineno, option=guess)
            fail(exc)
            continue
        if not words:
            continue
        name = words[0]
        if len(name) >= 3 and name.startswith("--"):
            name = name[2:]
        if len(words) == 1 and len(name) >= 2 and name[0] == "<" and name[-1] == ">":
            tag = name[1:-1]
            if tag.startswith("/"):
                fail(ConfigError(f"stray end tag {name} (no <{tag[1:]}> block is open)",
                                 path=path, line=lineno, option=tag[1:] or None))
                continue
            close = f"</{tag}>"
            body: list[str] = []
            closed = False
            suspicious = None
            while i < len(raw):
                content = raw[i]
                i += 1
                stripped = content.lstrip(" \t\n\v\f\r")
                if stripped.startswith(close):
                    closed = True
                    break
                inner = _is_tag_line(stripped.strip())
                if (suspicious is None and tag != "connection" and inner is not None
                        and inner in OPTIONS and OPTIONS[inner].inline):
                    suspicious = (first_line + i - 1, stripped.strip())
                body.append(content)
            if suspicious is not None:
                at, seen = suspicious
                fail(ConfigError(f"the inline block <{tag}> opened at line {lineno} meets "
                                 f"{seen} before its {close}: an end tag is missing",
                                 path=path, line=at, option=tag))
                if not closed:
                    i = at - first_line           # read on from the unexpected tag
                continue
            if not closed:
                fail(ConfigError(f"inline block <{tag}> has no {close}", path=path,
                                 line=lineno, option=tag))
                continue
            out.append(Directive(lineno, tag, [], "".join(body), path, f"<{tag}>"))
            continue
        if name.startswith("</") and name.endswith(">"):
            fail(ConfigError(f"stray end tag {name} (no {name.replace('/', '', 1)} block "
                             "is open)", path=path, line=lineno, option=name[2:-1] or None))
            continue
        out.append(Directive(lineno, name, words[1:], None, path,
                             " ".join([name, *words[1:]])))
    return out