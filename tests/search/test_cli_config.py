"""``--config FILE.toml`` (``search.cli._config``): every option settable in the file, the command line overriding it,
one clear line for a bad file. Parsing only: no search runs here (``test_plugin_cli`` runs one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from search.cli._common import UsageError
from search.cli._config import apply_config
from search.cli._main import build_parser, main


def _args(tmp_path: Path, text: str, *argv: str, kind: str = "optimizer") -> object:
    path = tmp_path / "search.toml"
    path.write_text(text)
    words = ["search", kind, "--config", str(path), *argv]
    return apply_config(build_parser().parse_args(words), words)


def test_the_file_sets_options_and_the_command_line_overrides_it(tmp_path: Path) -> None:
    text = ('run = "runs/a"\ntask = ["quadratic", "mnist1d-mlp"]\npopulation = 12\nwarm_start = "lion"\n'
            'no-fcm = true\nlr = 1\nbatch = 4\nworkers = 2\nevaluations = 30\nstrategy = "random"\n')
    args = _args(tmp_path, text)
    assert (args.run, args.tasks, args.population, args.warm_starts, args.no_fcm, args.lr, args.batch, args.workers,
            args.evaluations, args.hours, args.strategy) == (
        "runs/a", ["quadratic", "mnist1d-mlp"], 12, ["lion"], True, 1.0, "4", "2", 30, None, "random")
    assert args.config_file == {"path": str((tmp_path / "search.toml").resolve()), "text": text}
    over = _args(tmp_path, text, "--task", "digits-cnn", "--population", "100", "--hours", "0.5", "--seed", "0",
                 "--run", "runs/b")
    # the CLI wins, even where it repeats the default (population 100); its --task replaces the whole list; its
    # --hours drops the file's --evaluations (they exclude each other)
    assert (over.tasks, over.population, over.hours, over.evaluations, over.run, over.no_fcm) == (
        ["digits-cnn"], 100, 0.5, None, "runs/b", True)


def test_architecture_search_takes_a_config_too(tmp_path: Path) -> None:
    args = _args(tmp_path, 'run = "runs/nas"\nspace = "darts"\nepochs = 2\ntrain-examples = 64\n', kind="architecture")
    assert (args.run, args.space, args.epochs, args.train_examples, args.task) == ("runs/nas", "darts", 2, 64,
                                                                                   "mnist1d")


@pytest.mark.parametrize(("text", "words"), [
    ("populaton = 5\n", "unknown key 'populaton'; known keys: aggregate, allow_lr_free, batch, cache,"),
    ("config = 'other.toml'\n", "unknown key 'config'"),
    ("population = 'ten'\n", "population: invalid int value 'ten'"),
    ("population = 2.5\n", "population: invalid int value 2.5"),
    ("cache = 'sometimes'\n", "cache: 'sometimes' is not one of plain, aggregating, forgetful, off"),
    ("no_fcm = 'yes'\n", "no_fcm is a flag: true or false"),
    ("seed = true\n", "seed must be a string or a number"),
    ("task = []\n", "task: give at least one value"),
    ("evaluations = 3\nhours = 1\n", "evaluations and hours exclude each other"),
    ("task = ['quadratic']\ntasks = ['digits-cnn']\n", "is given twice"),
    ("population = \n", "not valid TOML"),
])
def test_a_bad_config_file_is_one_line(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(UsageError) as raised:
        _args(tmp_path, text)
    assert words in str(raised.value) and "\n" not in str(raised.value)


def test_the_cli_exits_2_for_a_bad_or_missing_file_and_a_missing_run(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "optimizer", "--config", str(tmp_path / "none.toml")]) == 2
    assert "none.toml: no such file" in capsys.readouterr().err
    (tmp_path / "c.toml").write_text("population = 4\n")
    assert main(["search", "optimizer", "--config", str(tmp_path / "c.toml")]) == 2
    assert "give the run folder: --run" in capsys.readouterr().err
