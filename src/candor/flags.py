"""Flag spellings every ``candor`` verb shares, so one thing has one name across verbs.

- the input file: a positional argument where a verb reads one file, or ``--input FILE``;
- the model and version a verb acts on: ``--model NAME`` and ``--version``;
- the repository: ``--model-repository``;
- a duration: ``--<what>-seconds``, a number of seconds (:func:`add_seconds`). The two tuning knobs below a
  millisecond name their own unit instead (``serve --max-queue-delay-ms``, ``--inline-run-us``).

Spellings a release renamed stay for one release as hidden aliases (:class:`Renamed`): they work, and
say once on stderr what to write instead.
"""

from __future__ import annotations

import argparse
import sys


class Renamed(argparse.Action):
    """An old spelling of a flag: stores into the new flag's destination, hidden from --help, with a note."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: note: {option_string} is now {self.new}; the old spelling goes away in the next release",
              file=sys.stderr)  # fmt: skip
        setattr(namespace, self.dest, values)


def add_input(p: argparse.ArgumentParser, what: str, default: str | None = "-") -> None:
    """The verb's one input file, as a positional argument or as ``--input`` (the same destination)."""
    p.add_argument("input", nargs="?", default=argparse.SUPPRESS, metavar="INPUT", help=f"{what} (or --input)")
    shown = f" (default: {default})" if default is not None else ""
    p.add_argument("--input", dest="input", default=default, metavar="FILE", help=f"{what}{shown}")


def add_renamed(p: argparse.ArgumentParser, old: str, new: str, dest: str, type=None) -> None:
    """``old`` as a hidden alias of ``new``; ``type`` is the new flag's, so the value is read the same way."""
    p.add_argument(old, dest=dest, action=Renamed, new=new, type=type)


def add_seconds(p: argparse.ArgumentParser, what: str, dest: str, default: float, text: str, old: str) -> None:
    """``--<what>-seconds``, a duration in seconds, with the release's old spelling ``old`` as a hidden alias."""
    p.add_argument(f"--{what}-seconds", dest=dest, type=float, default=default, metavar="SECONDS",
                   help=f"{text} (default: {default:g})")  # fmt: skip
    add_renamed(p, old, f"--{what}-seconds", dest=dest, type=float)


def version_number(text: str) -> int:
    """A model version: a positive integer, as the repository's folder names are."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a model version, a positive integer such as 1, got {text!r}")
    return value


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
