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
    args = build_parser().parse_args(argv)
    try:
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


def _one_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
