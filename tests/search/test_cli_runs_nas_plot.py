"""``autodisco runs plot`` of NAS jobs: per-epoch curves, the ranking's Kendall τ and top pick, a ground-truth table —
checked on the figure's data (``search.epochs.nas_figures``), and the file written."""

from __future__ import annotations

from pathlib import Path

import pytest

from search.cli import main
from search.epochs import is_nas_job, nas_figures
from search.plot import nas_panels
from search.store import Store

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TRUTH = {"arch-a": 0.90, "arch-b": 0.80, "arch-c": 0.95, "arch-d": 0.70}  # c is the truly best
PREDICTED = {"arch-a": 0.60, "arch-b": 0.50, "arch-c": 0.55, "arch-d": 0.40}  # a is predicted best: true rank 2


def _darts_run(root: Path) -> Path:
    with Store.for_run(root / "darts-run") as store:
        job = store.create_job("darts-run", kind="architecture", config={"method": "darts", "tasks": ["darts:x"]},
                               seed=0)
        cid = store.add_candidate(job.id, kind="architecture", text="g", hash="ab" * 16, birth=0)
        for epoch in (1, 2, 3):
            metrics = {"epoch": epoch, "train_loss": 2.0 / epoch, "val_loss": 2.2 / epoch,
                       "train_accuracy": 0.3 * epoch, "val_accuracy": 0.25 * epoch, "lr": 0.025, "genotype": "g"}
            ev = store.add_evaluation(job.id, cid, key=f"epoch-{epoch}", task="darts:x", seed=0)
            store.finish_evaluation(ev, status="ok", fitness=0.25 * epoch, metrics=metrics)
        store.save_checkpoint(job.id, {"epoch": 3})
    return root / "darts-run"


def _oneshot_run(root: Path) -> Path:
    with Store.for_run(root / "oneshot-run") as store:
        job = store.create_job("oneshot-run", kind="architecture", config={"method": "oneshot"}, seed=0)
        for birth, arch in enumerate(TRUTH):
            cid = store.add_candidate(job.id, kind="architecture", text=arch, hash=f"{birth:02d}" * 16, birth=birth)
            ev = store.add_evaluation(job.id, cid, key=f"inherited:{arch}", task="inherited:x", seed=0)
            store.finish_evaluation(ev, status="ok", fitness=PREDICTED[arch],
                                    metrics={"inherited_accuracy": PREDICTED[arch], "ground_truth": TRUTH[arch]})
        history = [{"epoch": e, "lr": 0.1, "train_loss": 3.0 - e, "train_accuracy": 0.2 * e, "seconds": 1.0,
                    "distinct_examples": 10, "sampler": {"tau": e / 2}} for e in (1, 2)]
        ranking = {"kendall_tau": 0.3333, "spearman": 0.4, "n": 4, "kendall_p": 0.7, "spearman_p": 0.6}
        store.save_checkpoint(job.id, {"epoch": 2, "file": "supernet.pt", "history": history, "ranking": ranking})
    return root / "oneshot-run"


def _groundtruth_run(root: Path) -> Path:
    with Store.for_run(root / "table-run") as store:
        job = store.create_job("table-run", kind="architecture", config={"method": "groundtruth"}, seed=0)
        for birth, (arch, accuracy) in enumerate([*TRUTH.items(), ("arch-e", None)]):
            cid = store.add_candidate(job.id, kind="architecture", text=arch, hash=f"{birth:02d}" * 16, birth=birth)
            ev = store.add_evaluation(job.id, cid, key=arch, task="groundtruth:x", seed=0)
            store.finish_evaluation(ev, status="ok" if accuracy else "failed", fitness=accuracy,
                                    error=None if accuracy else "out of memory")
        store.save_checkpoint(job.id, {"done": 5})
    return root / "table-run"


def _figures(run: Path) -> dict:
    with Store.for_run(run, create=False, read_only=True) as store:
        job = store.get_job(run.name)
        assert job is not None and is_nas_job(job)
        return nas_figures(store, job)


def test_darts_job_plots_its_epochs_not_a_search(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _darts_run(tmp_path)
    figures = _figures(run)
    (series,) = figures["epochs"]["series"]
    assert series["epochs"] == [1, 2, 3]
    assert series["metrics"]["val_accuracy"] == pytest.approx([0.25, 0.5, 0.75])
    assert series["metrics"]["train_loss"] == pytest.approx([2.0, 1.0, 2 / 3])
    assert figures["ranking"] is None and figures["table"] is None
    assert nas_panels(figures) == ["loss", "accuracy"]
    out_file = tmp_path / "darts.png"
    assert main(["runs", "plot", str(run), "-o", str(out_file)]) == 0
    assert capsys.readouterr().out == f"wrote {out_file}: a darts job; 3 epochs; panels loss, accuracy\n"
    assert out_file.read_bytes().startswith(PNG_SIGNATURE)


def test_oneshot_job_plots_epochs_kendall_tau_and_the_top_picks_rank(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    run = _oneshot_run(tmp_path)
    figures = _figures(run)
    assert figures["epochs"]["series"][0]["metrics"]["train_loss"] == [2.0, 1.0]
    ranking = figures["ranking"]
    assert ranking["kendall_tau"] == 0.3333 and ranking["n"] == 4  # as the job recorded it
    assert sorted(zip(ranking["truth"], ranking["predicted"])) == sorted((TRUTH[a], PREDICTED[a]) for a in TRUTH)
    assert ranking["top_pick"] == {"arch": "arch-a", "predicted": 0.60, "truth": 0.90, "rank": 2, "of": 4,
                                   "best_truth": 0.95}
    assert nas_panels(figures) == ["loss", "accuracy", "ranking"]
    out_file = tmp_path / "oneshot.svg"
    assert main(["runs", "plot", str(run), "-o", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert "a oneshot job; 2 epochs; panels loss, accuracy, ranking; Kendall τ 0.333" in out
    assert "top pick: true rank 2 of 4" in out
    assert "Kendall τ 0.333" in out_file.read_text()


def test_ranking_without_recorded_figures_is_computed_from_the_pairs(tmp_path: Path) -> None:
    run = _oneshot_run(tmp_path)
    with Store.for_run(run, create=False) as store:
        job = store.get_job(run.name)
        assert job is not None
        store.save_checkpoint(job.id, {"epoch": 2, "history": []})  # no "ranking" in the state
    ranking = _figures(run)["ranking"]
    # pairs (truth, predicted): 6 pairs, concordant: (a,b) (a,d) (b,d) (c,b) (c,d); discordant: (a,c) -> 4/6
    assert ranking["kendall_tau"] == pytest.approx(4 / 6) and ranking["top_pick"]["rank"] == 2


def test_groundtruth_job_plots_its_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _groundtruth_run(tmp_path)
    figures = _figures(run)
    assert figures["table"] == {"accuracies": [0.95, 0.90, 0.80, 0.70], "failed": 1}
    assert figures["epochs"] is None and figures["ranking"] is None
    out_file = tmp_path / "table.png"
    assert main(["runs", "plot", str(run), "-o", str(out_file)]) == 0
    assert capsys.readouterr().out == f"wrote {out_file}: a groundtruth job; panels table\n"


def test_a_nas_job_with_nothing_recorded_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Store.for_run(tmp_path / "early") as store:
        store.create_job("early", kind="architecture", config={"method": "train"}, seed=0)
    assert main(["runs", "plot", str(tmp_path / "early"), "-o", str(tmp_path / "f.png")]) == 2
    err = capsys.readouterr().err
    assert "a train job" in err and "nothing to plot" in err and not (tmp_path / "f.png").exists()
