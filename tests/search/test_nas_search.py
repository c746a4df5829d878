"""Evolutionary NAS through the engine: the architecture kind, its worker, ``autodisco search architecture``, resume
and the ``runs`` commands on an architecture run. Tiny budgets: 4 channels, 1 epoch, a few hundred examples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import search.cli._architecture as cli_architecture
import search.cli._jobs as cli_jobs
from nas import Genotype, NB201Genotype
from nas.genotypes import DARTS_V2
from search.cli import main
from search.cli._main import build_parser
from search.executor import InlineExecutor
from search.jobs import run_job
from search.jobs._search import SearchConfig, SearchJob
from search.kinds import KINDS
from search.kinds import ArchitectureKind, ArchitectureKindError, ScratchBudget
from search.kinds.workers import evaluate_architecture
from search.store import Store

TINY = ScratchBudget(epochs=1, train_examples=192, valid_examples=96, channels=4)
TINY_ARGS = ["--epochs", "1", "--train-examples", "192", "--valid-examples", "96", "--channels", "4"]
SPARSE = "|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|"  # most mutations of it change nothing


@pytest.fixture()
def inline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's executor runs evaluations in this process (the same JSON round trip as worker processes)."""
    monkeypatch.setattr(cli_jobs, "executors", lambda args: (lambda **options: InlineExecutor()))


def _search(tmp_path: Path, name: str, *extra: str) -> int:
    return main(["search", "architecture", "--space", "nb201", "--task", "digits", "--population", "4",
                 "--tournament", "2", "--run", str(tmp_path / "runs" / name), "--quiet", *TINY_ARGS, *extra])


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


# -- the kind -----------------------------------------------------------------------------------------------------


def test_kind_round_trips_text_and_is_registered_for_resume() -> None:
    for kind, genotype in ((ArchitectureKind("nb201"), NB201Genotype.from_text(SPARSE)),
                           (ArchitectureKind("darts"), DARTS_V2)):
        assert kind.parse(kind.to_text(genotype)) == genotype
        child, description = kind.mutate(genotype, np.random.default_rng(0))
        assert type(child) is type(genotype) and description
        assert kind.functional_hash(child) != kind.functional_hash(genotype)  # fcm is on by default
        assert type(kind.random_candidate(np.random.default_rng(0))) is type(genotype)
    kind = ArchitectureKind("nb201", budget=TINY, fcm=False)
    config = SearchConfig(tasks=("digits",), warm_start=(SPARSE,), fcm=False, kind_options=kind.options())
    assert KINDS["architecture"].from_job_config(json.loads(json.dumps(config.to_json()))) == kind
    with pytest.raises(ArchitectureKindError, match="not made by 'autodisco search architecture'"):
        KINDS["architecture"].from_job_config({"method": "oneshot", "tasks": ["inherited:digits"]})


def test_hash_merges_genotypes_that_differ_only_on_dead_edges() -> None:
    kind = ArchitectureKind("nb201")
    dead_edge_changed = "|skip_connect~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|"  # node 1 feeds nothing
    assert kind.functional_hash(kind.parse(dead_edge_changed)) == kind.functional_hash(kind.parse(SPARSE))
    live_edge_changed = "|none~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|none~2|"
    assert kind.functional_hash(kind.parse(live_edge_changed)) != kind.functional_hash(kind.parse(SPARSE))


def test_bad_kind_settings_are_refused_with_a_reason() -> None:
    with pytest.raises(ArchitectureKindError, match="unknown search space"):
        ArchitectureKind("resnet")
    with pytest.raises(ArchitectureKindError, match="needs --space nb201"):
        ArchitectureKind("darts", fitness="supernet:runs/x")
    with pytest.raises(ArchitectureKindError, match="scratch"):
        ArchitectureKind("nb201", fitness="oracle")
    with pytest.raises(ArchitectureKindError, match="epochs"):
        ScratchBudget(epochs=0)
    with pytest.raises(ValueError):
        ArchitectureKind("nb201").parse("Genotype(normal=[])")


# -- the worker ---------------------------------------------------------------------------------------------------


def test_worker_trains_both_spaces_deterministically_on_a_fixed_split() -> None:
    for space, genotype in (("nb201", SPARSE), ("darts", DARTS_V2.to_text())):
        kind = ArchitectureKind(space, budget=TINY)
        payload = json.loads(json.dumps(kind.payload(kind.parse(genotype), seed=3, context={"tasks": ["digits"]})))
        first, second = evaluate_architecture(payload), evaluate_architecture(payload)
        assert first["status"] == "ok" and first == {**second, "metrics": first["metrics"]}
        metrics = first["metrics"]["digits"]
        assert 0.0 <= first["fitness"] <= 1.0 and first["fitness"] == metrics["val_accuracy"]
        assert metrics["train_examples"] == 192 and metrics["valid_examples"] == 96 and metrics["params"] > 0


def test_worker_reports_divergence_as_a_failure_with_its_reason() -> None:
    kind = ArchitectureKind("nb201", budget=ScratchBudget(epochs=1, train_examples=192, valid_examples=96,
                                                          channels=4, lr=1e9))
    conv = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    result = evaluate_architecture(kind.payload(kind.parse(conv), seed=0, context={"tasks": ["digits"]}))
    assert result["status"] == "failed" and result["fitness"] is None
    assert result["error"].startswith("digits: ") and "nan" in result["error"]


# -- the command --------------------------------------------------------------------------------------------------


def test_search_architecture_records_candidates_evaluations_and_cache_hits(
        tmp_path: Path, inline: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert _search(tmp_path, "evo", "--evaluations", "6", "--warm-start", SPARSE, "--no-fcm") == 0
    run = str(tmp_path / "runs" / "evo")
    with Store.for_run(Path(run), create=False) as store:
        job = store.get_job("evo")
        assert job.kind == "architecture" and job.status == "finished"
        candidates = store.list_candidates(job.id)
        evaluations = store.list_evaluations(job.id)
    assert all(c.kind == "architecture" for c in candidates) and candidates[0].text == SPARSE
    assert all(NB201Genotype.from_text(c.text) for c in candidates)
    ran = [e for e in evaluations if e.status in ("ok", "failed")]
    cached = [e for e in evaluations if e.status == "cached"]
    assert len(ran) == 6 and cached, "a sparse cell's mutants must hit the cache"
    fitness_of_hash = {c.hash: e.fitness for c in candidates for e in ran if e.candidate_id == c.id}
    hash_of = {c.id: c.hash for c in candidates}
    assert all(e.fitness == fitness_of_hash[hash_of[e.candidate_id]] for e in cached)

    shown = _json(capsys, "runs", "show", run, "--json")
    assert shown["kind"] == "architecture" and shown["evaluations"] == 6
    assert shown["cache_hits"] == len(cached) and shown["candidates"] == len(candidates)
    assert shown["config"]["kind_options"]["space"] == "nb201"
    assert NB201Genotype.from_text(shown["best"]["program"])
    top = _json(capsys, "runs", "top", run, "-k", "3", "--json")
    assert len({row["hash"] for row in top}) == len(top) >= 1
    lineage = _json(capsys, "runs", "lineage", run, str(candidates[-1].id), "--json")
    assert lineage
    assert main(["runs", "plot", run, "-o", str(tmp_path / "fig.png")]) == 0 and (tmp_path / "fig.png").stat().st_size
    assert main(["export", run, str(top[0]["id"]), "-o", str(tmp_path / "x.py")]) == 2


def test_resumed_job_makes_the_same_decisions_as_an_uninterrupted_one(tmp_path: Path, inline: None) -> None:
    assert _search(tmp_path, "whole", "--evaluations", "5", "--seed", "4") == 0
    # the same job created but not run (as if killed before its first result), then resumed by the CLI
    argv = ["search", "architecture", "--space", "nb201", "--task", "digits", "--population", "4", "--tournament",
            "2", "--run", str(tmp_path / "runs" / "cut"), "--evaluations", "5", "--seed", "4", *TINY_ARGS]
    parsed = build_parser().parse_args(argv)
    kind = cli_architecture._kind(parsed)
    config = SearchConfig(tasks=("digits",), population=4, tournament=2, evaluations=5, seed=4,
                       warm_start=cli_architecture._warm_start(parsed, kind), kind_options=kind.options())
    with Store.for_run(tmp_path / "runs" / "cut") as store:
        SearchJob.create(store, "cut", kind, config, executor_factory=lambda **_: InlineExecutor(), show_progress=False)
    assert main(["resume", str(tmp_path / "runs" / "cut"), "--quiet"]) == 0
    rows = {}
    for name in ("whole", "cut"):
        with Store.for_run(tmp_path / "runs" / name, create=False) as store:
            job = store.get_job(name)
            assert job.status == "finished"
            fitness = {e.candidate_id: e.fitness for e in store.list_evaluations(job.id)}
            rows[name] = [(c.text, c.mutation, fitness[c.id]) for c in store.list_candidates(job.id)]
    assert rows["whole"] == rows["cut"]


def test_bad_architecture_options_exit_2_with_one_line(tmp_path: Path, inline: None,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (["--warm-start", "DARTS_V2"], "DARTS-space cell"),
        (["--warm-start", "|bogus~0|"], "not a nb201 genotype"),
        (["--fitness", "supernet:" + str(tmp_path / "nowhere")], "no supernet.pt there"),
        (["--epochs", "0"], "epochs must be a positive integer"),
    ]
    for extra, message in cases:
        capsys.readouterr()
        assert _search(tmp_path, "bad", "--evaluations", "2", *extra) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "runs" / "bad" / "results.db").exists()


def _saved_supernet(folder: Path) -> None:
    """An untrained one-shot supernet (C = 4) on the first 64 digits, as 'autodisco nas oneshot' leaves it."""
    from nas.nb201_network import NB201NetConfig
    from nas.oneshot_train import SUPERNET_FILE, OneShotConfig, new_supernet, save_supernet, supernet_data

    config = OneShotConfig(net=NB201NetConfig(C=4), epochs=1)
    data = supernet_data("digits", 64)
    folder.mkdir(parents=True)
    save_supernet(folder / SUPERNET_FILE, new_supernet(config, data.in_channels, data.dim), config, "digits", 0,
                  limit=64)


def test_fitness_by_inherited_supernet_weights(tmp_path: Path, inline: None,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from nas.oneshot_train import evaluate, load_supernet, supernet_data
    from search.kinds.workers import evaluate_architecture

    oneshot = tmp_path / "runs" / "oneshot"
    _saved_supernet(oneshot)
    assert _search(tmp_path, "inherit", "--evaluations", "3", "--fitness", f"supernet:{oneshot}") == 0
    with Store.for_run(tmp_path / "runs" / "inherit", create=False) as store:
        job = store.get_job("inherit")
        assert job.config["kind_options"]["fitness"] == f"supernet:{oneshot.resolve()}"
        texts = {c.id: c.text for c in store.list_candidates(job.id)}
        evaluations = [e for e in store.list_evaluations(job.id) if e.status == "ok"]
    assert len(evaluations) == 3
    saved = load_supernet(oneshot / "supernet.pt")
    genotypes = [NB201Genotype.from_text(texts[e.candidate_id]) for e in evaluations]
    inherited = evaluate(saved.supernet, genotypes, supernet_data("digits", 64))
    assert job.config["kind_options"]["supernet_metric"] == "loss"  # the default: minus the inherited loss
    assert [e.fitness for e in evaluations] == [-s.loss for s in inherited]
    assert [e.metrics["tasks"]["digits"]["val_accuracy"] for e in evaluations] == [s.accuracy for s in inherited]
    payload = {"space": "nb201", "genotype": genotypes[0].to_text(), "tasks": ["digits"], "seed": 0,
               "fitness": f"supernet:{oneshot.resolve()}", "supernet_metric": "accuracy"}
    assert evaluate_architecture(payload)["fitness"] == inherited[0].accuracy
    # a search recorded before the option scored inherited weights by accuracy, and goes on doing so
    old = ArchitectureKind.from_job_config({"kind_options": {"space": "nb201", "fitness": f"supernet:{oneshot}"}})
    assert old.supernet_metric == "accuracy" and old.fitness_meaning == "validation accuracy"
    assert ArchitectureKind(fitness=f"supernet:{oneshot}").fitness_meaning.startswith("minus")
    capsys.readouterr()
    assert main(["search", "architecture", "--task", "mnist1d", "--fitness", f"supernet:{oneshot}", "--run",
                 str(tmp_path / "runs" / "wrong"), "--quiet"]) == 2
    assert "trained on digits; use --task digits" in capsys.readouterr().err


def test_darts_space_search_warm_started_from_the_published_cell(tmp_path: Path, inline: None) -> None:
    assert main(["search", "architecture", "--space", "darts", "--task", "digits", "--warm-start", "DARTS_V2",
                 "--population", "2", "--tournament", "1", "--evaluations", "3", "--layers", "3",
                 "--run", str(tmp_path / "runs" / "darts"), "--quiet", *TINY_ARGS]) == 0
    with Store.for_run(tmp_path / "runs" / "darts", create=False) as store:
        job = store.get_job("darts")
        candidates = store.list_candidates(job.id)
        evaluations = store.list_evaluations(job.id)
    assert candidates[0].text == DARTS_V2.to_text() and candidates[0].mutation == "initial"
    assert tuple(candidates[1].parent_ids) == (candidates[0].id,)  # the population fills with mutants of the warm start
    assert all(Genotype.from_text(c.text) for c in candidates) and len(candidates) == 3
    assert [e.status for e in evaluations] == ["ok"] * 3
