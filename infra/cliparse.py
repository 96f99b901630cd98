"""The command line's parser, shared by ``antirelou`` and ``antirelou simulate``: a user error
is one line and exit 2, never a traceback.

- ``Parser``: argparse without abbreviations (``--f`` is not ``--force``), an error in one
  line naming the command (``antirelou up: --web-port: 99999 is not a port (1 to 65535)``)
  with "did you mean" for a mistyped command, choice or option, and help texts without
  ``(default: None)`` or reST markup.
- Value types that refuse what cannot work, before anything starts: ``port``,
  ``positive_int``, ``positive_float``, ``non_negative_int``, ``non_negative_float``,
  ``bootstrap_servers``.
"""

from __future__ import annotations

import argparse
import difflib
import re
from typing import Any, NoReturn


class Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown only when there is one to show; no reST backticks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, [], argparse.SUPPRESS) or "%(default)" in text:
            return text
        return super()._get_help_string(action) or text

    def _expand_help(self, action: argparse.Action) -> str:
        return super()._expand_help(action).replace("`", "")

    def _format_text(self, text: str) -> str:
        return super()._format_text(text.replace("``", "").replace("`", ""))


_CHOICE = re.compile(r"invalid choice: '(?P<given>[^']*)' \(choose from (?P<known>.*)\)")


def did_you_mean(given: str, known: list[str]) -> str:
    """`` (did you mean 'policy'?)`` for the closest of ``known``, or nothing."""
    starting = [k for k in known if k.startswith(given)] if len(given) > 1 else []
    close = starting if len(starting) == 1 else difflib.get_close_matches(given, known, n=1,
                                                                           cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors and no abbreviations (the subcommands' parsers too)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", Help)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        message = message.removeprefix("argument ")
        m = _CHOICE.search(message)
        if m:
            known = re.findall(r"'([^']*)'", m.group("known"))
            message = (message[:m.start()] + f"invalid choice {m.group('given')!r}"
                       + did_you_mean(m.group("given"), known) + f"; one of {', '.join(known)}")
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            parser = self.chosen(ns)
            options = [o for a in parser._actions for o in a.option_strings]
            first = extras[0].split("=", 1)[0]
            hint = did_you_mean(first, options) if first.startswith("-") else ""
            parser.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
        return ns

    def chosen(self, ns: argparse.Namespace) -> argparse.ArgumentParser:
        """The (sub)command parser the parsed arguments went to."""
        parser: argparse.ArgumentParser = self
        while True:
            subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
            name = getattr(ns, subs[0].dest, None) if subs else None
            if name is None or name not in subs[0].choices:
                return parser
            parser = subs[0].choices[name]


# --- value types: argparse says "argument --web-port: <what the type raised>" -----------


def _number(text: str, kind: type, what: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def port(text: str) -> int:
    value = _number(text, int, "a port number")
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (1 to 65535)")
    return value


def positive_int(text: str) -> int:
    value = _number(text, int, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def non_negative_int(text: str) -> int:
    value = _number(text, int, "a whole number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must not be negative")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float, "a number")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a number above 0")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text, float, "a number")
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a number, 0 or more")
    return value


def bootstrap_servers(text: str) -> str:
    """``HOST:PORT[,HOST:PORT...]`` (what aiokafka would otherwise fail on with a traceback)."""
    for server in text.split(","):
        host, sep, number = server.strip().rpartition(":")
        if not sep or not host:
            raise argparse.ArgumentTypeError(f"{server.strip()!r} is not HOST:PORT "
                                             "(e.g. 127.0.0.1:9092)")
        try:
            port(number)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"{server.strip()!r}: {number!r} is not a port "
                                             "(1 to 65535)") from None
    return text
