"""``--config FILE.toml``: a search's options from a TOML file; the command line overrides the file.

Every long option of the command is a key, spelt with ``-`` or ``_`` (``warm-start`` or ``warm_start``); ``task``
(or ``tasks``) takes a list of task names, a flag (``no-fcm``, ``quiet``) ``true`` or ``false``. Values go through the
option's own conversion and choices, as if given on the command line. An option given on the command line replaces the
file's (for ``--task``: the whole list; for ``--evaluations`` / ``--hours``: the other one too). An unknown key, a
value of the wrong kind or an unreadable file is a ``UsageError`` (one line, exit status 2).

The file's path and text are recorded in the job's configuration (``config_file``), next to the resolved settings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from search.cli._common import UsageError

PARSER_KEY = "options_parser"  # set_defaults key: the sub-command's parser, whose options the file may set
RECORD_KEY = "config_file"  # the job config's key for {"path", "text"}
_NOT_GIVEN = object()
_SKIP = {"help", "config"}


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` on ``parser`` (a sub-command whose options the file may set)."""
    parser.add_argument("--config", metavar="FILE.toml",
                        help="read options from a TOML file (keys: the long options, e.g. population = 50, "
                             "task = [\"quadratic\"]); options on the command line override it")
    parser.set_defaults(**{PARSER_KEY: parser})


def apply_config(args: argparse.Namespace, argv: Sequence[str]) -> argparse.Namespace:
    """``args`` with the options of ``args.config`` filled in where the command line (``argv``, the whole command
    line) did not give them; ``args.config_file`` holds the file's path and text for the run's record."""
    parser: argparse.ArgumentParser = getattr(args, PARSER_KEY)
    path = Path(args.config)
    values = _read(path)
    actions = _actions(parser)
    chosen: dict[str, Any] = {}
    for key, value in values.items():
        action = actions.get(key)
        if action is None:
            known = ", ".join(sorted({a.option_strings[-1].lstrip("-").replace("-", "_") for a in actions.values()}))
            raise UsageError(f"--config {path}: unknown key {key!r}; known keys: {known}")
        if action.dest in chosen:
            raise UsageError(f"--config {path}: {key!r} is given twice (as {action.dest} and {key})")
        chosen[action.dest] = _convert(path, key, action, value)
    given = _given_on_command_line(parser, argv, args)
    for group in parser._mutually_exclusive_groups:  # --evaluations / --hours: the command line's choice wins
        members = {a.dest for a in group._group_actions}
        in_file = members & set(chosen)
        if len(in_file) > 1:
            raise UsageError(f"--config {path}: {' and '.join(sorted(in_file))} exclude each other; give one")
        if members & given:
            for dest in in_file:
                del chosen[dest]
    merged = argparse.Namespace(**vars(args))
    for dest, value in chosen.items():
        if dest not in given:
            setattr(merged, dest, value)
    setattr(merged, RECORD_KEY, {"path": str(path.resolve()), "text": path.read_text(encoding="utf-8")})
    return merged


def _read(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10 (the tomli dependency)
        import tomli as tomllib

    try:
        with path.open("rb") as file:
            values = tomllib.load(file)
    except FileNotFoundError:
        raise UsageError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"--config {path}: cannot read it ({error})") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"--config {path}: not valid TOML ({error})") from None
    return values


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The parser's options by every key that names them: each long option with ``-`` and with ``_``, and the
    destination (``tasks`` for ``--task``)."""
    keys: dict[str, argparse.Action] = {}
    for action in parser._actions:
        longs = [o[2:] for o in action.option_strings if o.startswith("--")]
        if not longs or action.dest in _SKIP or action.dest == argparse.SUPPRESS:
            continue
        for name in longs:
            keys[name] = keys[name.replace("-", "_")] = action
        keys[action.dest] = action
    return keys


def _convert(path: Path, key: str, action: argparse.Action, value: Any) -> Any:
    where = f"--config {path}: {key}"
    if action.nargs == 0:  # a flag: --no-fcm, --quiet
        if not isinstance(value, bool):
            raise UsageError(f"{where} is a flag: true or false, got {value!r}")
        return action.const if value else action.default
    if isinstance(action, argparse._AppendAction):
        items = value if isinstance(value, list) else [value]
        if not items:
            raise UsageError(f"{where}: give at least one value")
        return [_scalar(where, action, item) for item in items]
    return _scalar(where, action, value)


def _scalar(where: str, action: argparse.Action, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UsageError(f"{where} must be a string or a number, got {value!r}")
    text = str(value)
    try:
        converted = action.type(text) if callable(action.type) else text
    except (TypeError, ValueError):
        kind = getattr(action.type, "__name__", "value")
        raise UsageError(f"{where}: invalid {kind} value {value!r}") from None
    if action.choices is not None and converted not in action.choices:
        raise UsageError(f"{where}: {value!r} is not one of {', '.join(map(str, action.choices))}")
    return converted


def _given_on_command_line(parser: argparse.ArgumentParser, argv: Sequence[str],
                           args: argparse.Namespace) -> set[str]:
    """The destinations the command line set: its options parsed again into a namespace whose every option starts
    as a marker (argparse fills in defaults only for names it does not find there)."""
    words = list(argv)
    prefix = 0
    for name in (args.command, getattr(args, "kind", None)):  # skip "search optimizer"
        if name is not None and name in words[prefix:]:
            prefix = words.index(name, prefix) + 1
    marked = argparse.Namespace()
    for action in parser._actions:
        if action.dest not in (argparse.SUPPRESS, "help"):
            # an append starts from None (it copies and extends what it finds); None is also --task's default
            setattr(marked, action.dest, None if isinstance(action, argparse._AppendAction) else _NOT_GIVEN)
    parsed = parser.parse_args(words[prefix:], namespace=marked)
    return {dest for dest, value in vars(parsed).items()
            if value is not _NOT_GIVEN and not (value is None and isinstance(_action_of(parser, dest),
                                                                              argparse._AppendAction))}


def _action_of(parser: argparse.ArgumentParser, dest: str) -> argparse.Action | None:
    return next((a for a in parser._actions if a.dest == dest), None)
