"""The syntax of strongSwan's ``swanctl.conf``: text (and the files it includes) into
a tree of :class:`Section` and :class:`Setting`, every one with its file and line.

Syntax follows strongSwan's settings parser (``settings_lexer.l`` and
``settings_parser.y``): sections ``name { ... }`` (the ``{`` may be on the next
line), settings ``key = value`` where the value runs to the end of the line, a
``#`` or a ``}`` (parts separated by white space are joined by one space; quoted
strings keep their spaces and take the escapes ``\\n``, ``\\r``, ``\\t``,
``\\<newline>`` (joins lines) and ``\\<any>``); ``#`` starts a comment; ``include
PATTERN`` (a glob, relative to the including file's folder, quoted or with ``\\``
escapes) reads files in place, in sorted order.  A section given twice is merged; a
key given twice keeps its last value.  Section references (``name : other {``) are
refused.  Every error is a :class:`erebus.errors.ConfigError` naming file and line.

What the keys mean is :mod:`erebus.ipsec.swanctl`'s business.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..files import read_limited

__all__ = ["MAX_INCLUDE_DEPTH", "Setting", "Section", "Lexer", "parse"]

MAX_INCLUDE_DEPTH = 10


@dataclass
class Setting:
    key: str
    value: str | None
    path: str
    line: int


@dataclass
class Section:
    name: str
    path: str
    line: int
    settings: dict[str, Setting] = field(default_factory=dict)
    sections: dict[str, "Section"] = field(default_factory=dict)

    def merge(self, other: "Section") -> None:
        for key, s in other.settings.items():
            self.settings[key] = s
        for name, sec in other.sections.items():
            if name in self.sections:
                self.sections[name].merge(sec)
            else:
                self.sections[name] = sec


# token kinds
_NAME, _OPEN, _CLOSE, _EQ, _VALUE, _NL, _EOF = "name", "{", "}", "=", "value", "newline", "eof"
_NAME_CHARS = re.compile(r'[^#{}=":\r\n\t ]+')
_VALUE_CHARS = re.compile(r'[^#}"\r\n\t ]+')
_GLOB_CHARS = re.compile(r"[*?\[]")


class Lexer:
    """Tokens of one file and, spliced in place, of the files it includes."""

    def __init__(self, path: str, depth: int = 0, included_at: tuple[Lexer, int] | None = None,
                 *, text: str | None = None):
        """The file ``path``, or ``text`` as if it were that file's (includes are then
        still read relative to its folder)."""
        self.path = path
        self.depth = depth
        if text is not None:
            self.text = text.removeprefix("\ufeff")
        else:
            try:
                data = read_limited(path)
            except OSError as exc:
                if included_at is not None:          # name the include line that named it
                    parent, line = included_at
                    raise parent.error(f"cannot read {path}: {exc.strerror or exc}", line,
                                       "include") from None
                raise ConfigError(f"cannot read: {exc.strerror or exc}", path=path) from None
            try:
                self.text = data.decode("utf-8").removeprefix("\ufeff")
            except UnicodeDecodeError:
                self.text = data.decode("latin-1")
        self.pos = 0
        self.line = 1

    def error(self, message: str, line: int | None = None, option: str | None = None):
        return ConfigError(message, path=self.path, line=line or self.line, option=option)

    def tokens(self):
        text, n = self.text, len(self.text)
        while self.pos < n:
            c = text[self.pos]
            if c in " \t\r":
                self.pos += 1
            elif c == "#":
                while self.pos < n and text[self.pos] != "\n":
                    self.pos += 1
            elif c == "\n":
                yield (_NL, None, self.path, self.line)
                self.line += 1
                self.pos += 1
            elif c in "{}":
                yield (c, c, self.path, self.line)
                self.pos += 1
            elif c == "=":
                line = self.line
                self.pos += 1
                yield (_EQ, "=", self.path, line)
                yield (_VALUE, self._value(), self.path, line)
            elif c == '"':
                raise self.error("unexpected quoted string (quotes are for values)")
            elif c == ":":
                raise self.error("section references ('name : other { ... }') are not "
                                 "supported: write the section out in full")
            else:
                m = _NAME_CHARS.match(text, self.pos)
                word = m.group()
                after = m.end()
                if word == "include" and after < n and text[after] in " \t":
                    rest = after
                    while rest < n and text[rest] in " \t":
                        rest += 1
                    if rest < n and text[rest] != "=":
                        line = self.line
                        self.pos = rest
                        pattern = self._include_pattern()
                        yield from self._include(pattern, line)
                        continue
                self.pos = after
                yield (_NAME, word, self.path, self.line)
        if self.depth == 0:            # an included file's end is not the end
            yield (_EOF, None, self.path, self.line)

    def _string(self) -> str:
        """A quoted string; self.pos is just after the opening quote."""
        text, n = self.text, len(self.text)
        start_line = self.line
        out = []
        while True:
            if self.pos >= n:
                raise self.error("unterminated string", start_line)
            c = text[self.pos]
            if c == '"':
                self.pos += 1
                return "".join(out)
            if c == "\r":
                self.pos += 1
            elif c == "\\":
                if self.pos + 1 >= n:
                    raise self.error("unterminated string", start_line)
                nxt = text[self.pos + 1]
                if nxt == "\r" and text[self.pos + 2:self.pos + 3] == "\n":
                    self.pos += 3
                    self.line += 1
                elif nxt == "\n":
                    self.pos += 2
                    self.line += 1
                else:
                    out.append({"n": "\n", "r": "\r", "t": "\t"}.get(nxt, nxt))
                    self.pos += 2
            else:
                if c == "\n":
                    self.line += 1
                out.append(c)
                self.pos += 1

    def _value(self) -> str | None:
        text, n = self.text, len(self.text)
        parts = []
        while self.pos < n:
            c = text[self.pos]
            if c in " \t\r":
                self.pos += 1
            elif c in "#}\n":
                break
            elif c == '"':
                self.pos += 1
                parts.append(self._string())
            else:
                m = _VALUE_CHARS.match(text, self.pos)
                parts.append(m.group())
                self.pos = m.end()
        return " ".join(parts) if parts else None

    def _include_pattern(self) -> str:
        text, n = self.text, len(self.text)
        if self.pos < n and text[self.pos] == '"':
            self.pos += 1
            return self._string()
        out = []
        while self.pos < n:
            c = text[self.pos]
            if c in "#}\n\t ":
                break
            if c == "\r":
                self.pos += 1
            elif c == "\\" and text[self.pos + 1:self.pos + 2] in ('"', "#", "}", " "):
                out.append(text[self.pos + 1])
                self.pos += 2
            elif c == '"':
                raise self.error("unexpected quote in include pattern")
            else:
                out.append(c)
                self.pos += 1
        return "".join(out)

    def _include(self, pattern: str, line: int):
        if not pattern:
            raise self.error("include without a file name", line, "include")
        if self.depth >= MAX_INCLUDE_DEPTH:
            raise self.error(f"includes nested deeper than {MAX_INCLUDE_DEPTH} levels",
                             line, "include")
        full = pattern if os.path.isabs(pattern) else \
            os.path.join(os.path.dirname(self.path) or ".", pattern)
        if _GLOB_CHARS.search(pattern):
            files = sorted(glob.glob(full))        # no match: nothing included (strongSwan)
        else:
            if not os.path.exists(full):
                raise self.error(f"included file {full} does not exist", line, "include")
            files = [full]
        for f in files:
            if os.path.isdir(f):
                continue
            yield from Lexer(f, self.depth + 1, (self, line)).tokens()


def parse(path: str, source: str | None = None) -> Section:
    """The settings tree of the swanctl.conf ``path`` (or of the text ``source``, read as
    that file), with its includes."""
    root = Section("", path, 0)
    stack = [root]
    toks = Lexer(path, text=source).tokens()
    tok = next(toks)
    while True:
        kind, text, tpath, tline = tok
        if kind == _EOF:
            break
        if kind == _NL:
            tok = next(toks)
            continue
        if kind == _CLOSE:
            if len(stack) == 1:
                raise ConfigError("'}' without a section to close", path=tpath, line=tline)
            done = stack.pop()
            parent = stack[-1]
            if done.name in parent.sections:
                parent.sections[done.name].merge(done)
            else:
                parent.sections[done.name] = done
            tok = next(toks)
            continue
        if kind != _NAME:
            raise ConfigError(f"unexpected {text!r}: a name was expected", path=tpath,
                              line=tline)
        tok = next(toks)
        while tok[0] == _NL:
            tok = next(toks)
        if tok[0] == _EQ:
            value = next(toks)[1]
            stack[-1].settings[text] = Setting(text, value, tpath, tline)
            tok = next(toks)
        elif tok[0] == _OPEN:
            stack.append(Section(text, tpath, tline))
            tok = next(toks)
        else:
            found = "the end of the file" if tok[0] == _EOF else repr(tok[1] or "")
            raise ConfigError(f"'=' or '{{' expected after {text!r}, found {found}",
                              path=tok[2], line=tok[3], option=text)
    if len(stack) > 1:
        sec = stack[-1]
        raise ConfigError(f"section {sec.name!r} is never closed (missing '}}')",
                          path=sec.path, line=sec.line, option=sec.name)
    return root
