"""Typed errors, named after what the user did or what the peer sent."""


class ErebusError(Exception):
    """Base class of every error erebus raises on purpose."""


class ParseError(ErebusError, ValueError):
    """Bytes from a peer (or a file) that do not parse. Always dropped and counted, never fatal."""


class ConfigError(ErebusError):
    """A profile problem; the message names file, line and option."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 option: str | None = None):
        self.path, self.line, self.option = path, line, option
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        if option is not None:
            where += f"{option}: "
        super().__init__(where + message)


class ConfigProblems(ConfigError):
    """Every problem found in one profile (a list of ConfigError); reads as the first,
    with how many more there are."""

    def __init__(self, problems: list[ConfigError]):
        self.problems = list(problems)
        first = self.problems[0]
        self.path, self.line, self.option = first.path, first.line, first.option
        text = str(first)
        if len(self.problems) > 1:
            more = len(self.problems) - 1
            text += f" (and {more} more problem{'s' if more > 1 else ''}: 'erebus check' " \
                    "lists them all)"
        Exception.__init__(self, text)


class SessionError(ErebusError):
    """A session that failed; ``stage`` (an :class:`erebus.session.Stage`) says what
    failed (unreachable, tls, certificate, auth, push-timeout, halted, ...);
    ``recoverable``: whether a new session may well succeed (the stage's default
    unless the family knows better); ``immediate``: the next session answers what this
    one was asked (a challenge) and starts at once, on the same server."""

    def __init__(self, stage: str, message: str, *, recoverable: bool | None = None,
                 immediate: bool = False):
        from .session import Stage       # errors is imported by everything: keep it light
        self.stage = Stage(stage)
        self.recoverable = self.stage.recoverable if recoverable is None else recoverable
        self.immediate = immediate
        super().__init__(message)
