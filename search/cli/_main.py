"""``autodisco`` entry point: argument parsing, dispatch, and the one place user errors become exit status 2."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from search.cli import _dashboard, _export, _nas, _runs, _search, _validate  # noqa: F401
from search.cli._common import UsageError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors: one line, exit 2
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="autodisco", description="Discover optimizers and architectures by search.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    _search.register(commands)
    _runs.register(commands)
    _export.register(commands)
    _nas.register(commands)
    _validate.register(commands)
    _dashboard.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    _working_directory_on_path()
    try:
        if getattr(args, "config", None) is not None:
            from search.cli._config import apply_config

            args = apply_config(args, argv)
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("autodisco: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `autodisco runs top ... | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (UsageError, ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as error:
        print(f"autodisco: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USAGE


def _working_directory_on_path() -> None:
    """Put the current directory on ``sys.path``, as ``python -m`` does, so that ``--task my_tasks:regression`` finds
    ``./my_tasks.py`` (the console script's own folder is there instead); workers inherit the driver's path."""
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)


def _one_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
