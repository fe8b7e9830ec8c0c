"""The ``candor`` command: one entry point, a verb per job.

Each part of Candor registers its own verbs; a verb whose extra is not
installed says which extra to install instead of failing on an import.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence

from candor import __version__


class UsageError(Exception):
    """A mistake in what the user asked for: printed as one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that answers a mistake in one line and where to look, not with the whole usage first.
    Subparsers are of the same class (argparse makes them with the parent's)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")

    def parse_args(self, args=None, namespace=None):
        """As argparse's, but an unknown flag is reported by the verb it was given to, so its help is the one named."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            verbs = next((a.choices for a in self._actions if isinstance(a, argparse._SubParsersAction)), {})
            verbs.get(getattr(parsed, "verb", None), self).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


def _missing_module(*names: str) -> str | None:
    """The first of ``names`` that is not installed, found without importing anything."""
    return next((n for n in names if importlib.util.find_spec(n) is None), None)


def _add_trainer_verbs(sub: argparse._SubParsersAction) -> None:
    missing = _missing_module("torch", "onnx", "onnxruntime", "sklearn", "matplotlib", "tqdm")
    if missing:  # these come with the [train] extra, onnxruntime with [cpu] or [gpu]
        for verb in ("train", "calibrate", "evaluate", "split", "export", "sweep"):
            p = sub.add_parser(verb, help=f"(needs `pip install 'candor[train,cpu]'`: {missing} is missing)")
            p.set_defaults(handler=lambda _args, m=missing: _missing_extra("train", m))
        return
    from candor.trainer.cli import register

    register(sub)


def _add_server_verbs(sub: argparse._SubParsersAction) -> None:
    missing = _missing_module("onnxruntime", "prometheus_client", "grpc_reflection")
    if missing:  # these come with the [server] extra, onnxruntime with [cpu] or [gpu]
        p = sub.add_parser("serve", help=f"(needs `pip install 'candor[server,cpu]'`: {missing} is missing)")
        p.set_defaults(handler=lambda _args, m=missing: _missing_extra("server", m))
        return
    from candor.server.cli import register

    register(sub)


def _missing_extra(extra: str, module: str) -> int:
    if module == "onnxruntime":  # a runtime of one's choice, never both (pyproject.toml)
        raise UsageError(f"this verb needs an ONNX runtime (onnxruntime is not installed): pip install 'candor[{extra},cpu]', "
                         f"or 'candor[{extra},gpu]' on an NVIDIA GPU")  # fmt: skip
    raise UsageError(f"this verb needs the [{extra}] extra ({module} is not installed): pip install 'candor[{extra},cpu]'")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="candor", description="Train, calibrate and serve classifiers whose confidence can be trusted."
    )
    parser.add_argument("--version", action="version", version=f"candor {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    _add_trainer_verbs(sub)
    _add_server_verbs(sub)
    from candor.client.cli import register as register_client

    register_client(sub)
    if not _missing_module("torch", "onnxruntime", "prometheus_client"):
        from candor.demo import register as register_demo

        register_demo(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from candor.client import CandorError

    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("candor: interrupted", file=sys.stderr)
        return 130
    except (CandorError, TimeoutError) as e:
        # The server said no (its status code and message), or never became ready: one line, exit 1.
        print(f"candor {args.verb}: {e}", file=sys.stderr)
        return 1
    except (UsageError, ValueError, OSError) as e:
        # Bad flags, bad data and unreadable files end in one line, never a traceback.
        print(f"candor {args.verb}: error: {e}", file=sys.stderr)
        return 2
