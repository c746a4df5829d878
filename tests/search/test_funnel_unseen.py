"""The funnel's last stage, `unseen`: the unseen task set rule, a tiny end-to-end on `quadratic` (a run that searched
on digits-cnn, validated straight on the unseen quadratic task at 2 seeds, 1 lr trial), per-seed records read back on
resume, the 95 % interval, and `autodisco validate`'s table with per-task ratios and wins (the worker-process CLI
path is covered by test_funnel.py; bad `--unseen` input is checked here).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterator

import pytest

from evaluators import TASKS
from search.cli import main
from search.executor import InlineExecutor
from search.funnel import (UNSEEN, Funnel, FunnelConfig, FunnelError, FunnelResult, mean_interval, unseen_key,
                           unseen_tasks)
from search.store import Store
from tests.search.test_funnel import SLOW_SGD, _make_run, _source

UnseenRun = tuple[Path, dict[str, int], FunnelResult]
CONFIG = FunnelConfig(k=3, trials=1, stages=(UNSEEN,), unseen=("quadratic",), seeds=2)


def test_the_unseen_tasks_are_the_built_in_ones_the_search_did_not_use() -> None:
    builtin = [name for name in TASKS if "@" not in name]
    assert unseen_tasks(("quadratic", "digits-cnn@10x")) == tuple(n for n in builtin
                                                                   if n not in ("quadratic", "digits-cnn"))
    assert "mnist1d-mlp" in unseen_tasks(("quadratic",)) and not any("@" in t for t in unseen_tasks(()))
    assert unseen_tasks(builtin) == ()
    assert unseen_tasks(("digits-cnn",), ("quadratic", "markov-gru")) == ("quadratic", "markov-gru")
    with pytest.raises(FunnelError, match="the search used that task"):
        unseen_tasks(("quadratic",), ("quadratic",))
    with pytest.raises(FunnelError, match="unknown task"):
        unseen_tasks(("quadratic",), ("no-such-task",))


@pytest.mark.parametrize("config", [{"unseen": ("quadratic@10x",)}, {"unseen": ()}, {"seeds": 0},
                                    {"unseen": ("quadratic", "quadratic")}, {"stages": (UNSEEN, "10x")}])
def test_bad_unseen_settings_are_refused(config: dict) -> None:
    with pytest.raises(FunnelError):
        FunnelConfig(**config)


def test_the_parser_knows_the_funnel_stages() -> None:
    from search import funnel
    from search.cli import _validate

    assert (_validate.UNSEEN, _validate.DEFAULT_STAGES) == (funnel.UNSEEN, funnel.DEFAULT_STAGES)


def test_the_interval_is_a_t_interval_over_the_seeds() -> None:
    mean, low, high = mean_interval([1.0, 2.0, 3.0])
    half = 4.302653 / math.sqrt(3)  # t(0.975, 2 degrees of freedom) × sd 1 / √3
    assert mean == 2.0 and low == pytest.approx(2.0 - half, rel=1e-5) and high == pytest.approx(2.0 + half, rel=1e-5)
    assert mean_interval([1.5]) == (1.5, None, None)


@pytest.fixture(scope="module")
def unseen_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UnseenRun]:
    folder = tmp_path_factory.mktemp("runs") / "blind"
    ids = _make_run(folder, [(_source("lion"), 1.3), (SLOW_SGD, 1.2), (_source("adamw"), 1.0)], tasks=("digits-cnn",))
    with Store.for_run(folder, create=False) as store:
        result = Funnel(store, store.get_job("blind"), CONFIG, InlineExecutor).run()
    yield folder, ids, result


def test_every_entrant_and_adamw_get_a_sweep_per_unseen_task_and_seed(unseen_run: UnseenRun) -> None:
    folder, ids, result = unseen_run
    assert result.stages == (UNSEEN,) and result.unseen == ("quadratic",) and result.seeds == 2
    assert "t" in result.interval
    assert [(s.task, s.seed, s.status) for s in result.baseline[UNSEEN]] == [("quadratic", 0, "ok"),
                                                                             ("quadratic", 1, "ok")]
    by_id = {c.candidate_id: c for c in result.candidates}
    slow = by_id[ids[SLOW_SGD]].stages[0]
    [task] = slow.tasks
    assert task.task == "quadratic" and len(task.seeds) == 2 and task.ratio == pytest.approx(sum(task.seeds) / 2)
    assert task.low is not None and task.low <= task.ratio <= task.high
    assert task.ratio < 1 and not task.win and slow.wins == 0 and not slow.passed
    assert by_id[ids[SLOW_SGD]].verdict == "stopped"
    adamw = by_id[ids[_source("adamw")]].stages[0]  # the baseline against itself: ratio 1, a tie is not a win
    assert adamw.tasks[0].seeds == (1.0, 1.0) and adamw.wins == 0
    lion = by_id[ids[_source("lion")]]
    assert lion.verdict == ("passed" if lion.stages[0].tasks[0].ratio > 1 else "stopped")
    with Store.for_run(folder, create=False) as store:
        job = store.get_job("blind")
        for seed in (0, 1):
            record = store.get_evaluation(job.id, unseen_key(ids[SLOW_SGD], "quadratic", seed))
            assert (record.task, record.seed, record.status) == ("quadratic", seed, "ok")
            assert record.metrics["study"] == f"validate:blind:{ids[SLOW_SGD]}:unseen:quadratic:s{seed}"


def test_running_it_again_reads_the_unseen_sweeps_back(unseen_run: UnseenRun) -> None:
    folder, _, first = unseen_run
    started: list[int] = []

    def no_executor():
        started.append(1)
        return InlineExecutor()

    with Store.for_run(folder, create=False) as store:
        before = store.list_evaluations(store.get_job("blind").id)
        again = Funnel(store, store.get_job("blind"), CONFIG, no_executor).run()
        after = store.list_evaluations(store.get_job("blind").id)
    assert not started and after == before
    assert [c.stages[0].tasks for c in again.candidates] == [c.stages[0].tasks for c in first.candidates]
    assert all(s.resumed for c in again.candidates for st in c.stages for s in st.sweeps)


def test_the_table_shows_per_task_ratios_their_intervals_and_the_wins(unseen_run: UnseenRun) -> None:
    from search.cli._validate import report

    _, ids, result = unseen_run
    text = report(result)
    slow = next(c for c in result.candidates if c.candidate_id == ids[SLOW_SGD]).stages[0].tasks[0]
    assert "quadratic (unseen)" in text and "unseen wins" in text
    assert f"{slow.ratio:.3f} [{slow.low:.3f}, {slow.high:.3f}]" in text
    assert f"#{ids[SLOW_SGD]} wins 0 of 1 unseen tasks" in text and "a win = mean ratio > 1" in text
    assert "quadratic seed 1" in text  # AdamW's own sweeps, one per seed
    data = json.loads(json.dumps(result.to_json()))
    assert data["unseen"] == ["quadratic"] and len(data["baseline"]["unseen"]) == 2


@pytest.mark.parametrize("extra, message", [
    (["--unseen", "digits-cnn"], "the search used that task"), (["--stages", "10x", "--unseen", "quadratic"],
                                                                "--unseen needs the unseen stage"),
    (["--seeds", "0"], "--seeds"), (["--stages", "unseen,10x"], "must be the last stage"),
])
def test_validate_rejects_bad_unseen_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
                                           message: str) -> None:
    _make_run(tmp_path / "r", [(SLOW_SGD, 1.0)], tasks=("digits-cnn",))
    assert main(["validate", str(tmp_path / "r"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
