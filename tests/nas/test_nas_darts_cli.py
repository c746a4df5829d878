"""``autodisco nas darts``, ``autodisco nas train`` and ``autodisco resume`` of a DARTS run, in-process."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nas.darts import DartsConfig
from nas.genotypes import Genotype
from nas.spaces import SHARPDARTS_PRIMITIVES
from nas.supernet import SupernetConfig
from search.cli import main
from search.cli._main import build_parser
from search.cli._nas_darts import _darts_config
from search.jobs._darts import DartsJob, recorded_epochs
from search.store import Store

TINY_SEARCH = ["--dataset", "digits", "--limit", "32", "--epochs", "3", "--layers", "2", "--channels", "2",
               "--batch-size", "16", "--device", "cpu", "--seed", "2"]
TINY_TRAIN = ["--dataset", "digits", "--limit", "48", "--epochs", "2", "--layers", "2", "--channels", "2",
              "--batch-size", "16", "--device", "cpu"]


def _ok(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    status = main(argv)
    out, err = capsys.readouterr()
    assert status == 0, err
    return out


def _usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    return err


def _job(run: Path) -> Any:
    store = Store.for_run(run, create=False)
    return store, store.get_job(run.name)


def test_darts_prints_the_genotype_and_resume_ends_like_an_uninterrupted_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    straight = _ok(capsys, ["nas", "darts", *TINY_SEARCH, "--run", str(tmp_path / "straight")])
    genotype = Genotype.from_text(straight.strip())
    store, job = _job(tmp_path / "straight")
    with store:
        assert recorded_epochs(store, job)[-1].genotype == genotype and job.status == "finished"

    record = DartsJob._record_epoch

    def stop_at_2(self: DartsJob, runner: Any, r: Any, *, say: bool) -> None:
        record(self, runner, r, say=say)
        if r.epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(DartsJob, "_record_epoch", stop_at_2)
    run = str(tmp_path / "stopped")
    assert main(["nas", "darts", *TINY_SEARCH, "--run", run]) == 130
    assert f"autodisco resume {run}" in capsys.readouterr().err
    monkeypatch.setattr(DartsJob, "_record_epoch", record)
    assert _ok(capsys, ["resume", run]) == straight
    assert "already finished" in _usage_error(capsys, ["resume", run])
    assert "already exists" in _usage_error(capsys, ["nas", "darts", *TINY_SEARCH, "--run", run])


def test_sharpdarts_search_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _ok(capsys, ["nas", "darts", *TINY_SEARCH, "--epochs", "2", "--space", "sharpdarts",
                       "--run", str(tmp_path / "sharp"), "--quiet"])
    store, job = _job(tmp_path / "sharp")
    with store:
        config = job.config["search"]
    assert config["net"]["weighting"] == "max-w" and config["lr_schedule"] == "cosine_power"
    assert config["warmup_epochs"] == 1  # sharpDARTS's 5, capped at epochs - 1
    assert set(config["net"]["primitives"]) >= {"flood_conv_3x3", "choke_conv_3x3"}
    assert Genotype.from_text(out.strip())


def test_options_make_the_search_configuration() -> None:
    args = build_parser().parse_args(["nas", "darts", "--dataset", "digits", "--epochs", "30", "--order", "2",
                                      "--space", "sharpdarts", "--weighting", "softmax", "--schedule", "cosine",
                                      "--layers", "5", "--channels", "8", "--batch-size", "32", "--seed", "4",
                                      "--run", "r"])  # fmt: skip
    config = _darts_config(args)
    assert (config.arch.order, config.net.weighting, config.lr_schedule, config.warmup_epochs) == (2, "softmax",
                                                                                                    "cosine", 0)
    assert (config.net.layers, config.net.C, config.batch_size, config.seed, config.epochs) == (5, 8, 32, 4, 30)
    assert config.net.primitives == SHARPDARTS_PRIMITIVES
    default = _darts_config(build_parser().parse_args(["nas", "darts", "--dataset", "digits", "--run", "r"]))
    assert default == DartsConfig(net=SupernetConfig(), epochs=50)  # the paper's search


def test_train_a_search_result_and_a_published_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    searched = Genotype.from_text(_ok(capsys, ["nas", "darts", *TINY_SEARCH, "--run", "runs/s", "--quiet"]).strip())
    out = _ok(capsys, ["nas", "train", "runs/s", *TINY_TRAIN, "--run", "runs/t", "--crop-flip", "--cutout", "2",
                       "--drop-path", "0.1", "--auxiliary"])
    assert out.startswith("final validation accuracy")
    store, job = _job(tmp_path / "runs" / "t")
    with store:
        [candidate] = store.list_candidates(job.id)
        evaluations = store.list_evaluations(job.id)
    assert Genotype.from_text(candidate.text) == searched and candidate.mutation == "runs/s"
    assert [e.key for e in evaluations] == ["epoch-1", "epoch-2"] and job.status == "finished"
    assert evaluations[-1].metrics["params"] > 0 and job.config["train"]["auxiliary_weight"] == 0.4
    assert job.config["train"]["crop_flip"] and job.config["train"]["cutout"] == 2
    _ok(capsys, ["nas", "train", "DARTS_V2", *TINY_TRAIN, "--quiet"])
    [default] = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith("train-")]
    assert default.name.endswith("-digits")


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "Genotype(normal=[('sep_conv_3x3', 0)])", "--dataset", "digits", "--epochs", "1"], "lacks the field"),
    (["train", "Genotype(normal=[('conv_9x9', 0), ('sep_conv_3x3', 1)], normal_concat=[2], reduce=[('skip_connect', 0),"
      " ('skip_connect', 1)], reduce_concat=[2])", "--dataset", "digits", "--epochs", "1"], "unknown operation"),
    (["train", "DARTS_V9", "--dataset", "digits", "--epochs", "1"], "known genotype"),
    (["train", "DARTS_V2", "--dataset", "imagenet", "--epochs", "1"], "unknown dataset"),
    (["train", "DARTS_V2", "--dataset", "cifar10:{tmp}/none", "--epochs", "1"], "cifar-10-batches-py"),
    (["train", "DARTS_V2", "--dataset", "digits", "--epochs", "0"], "epochs"),
    (["train", "DARTS_V2", "--dataset", "digits", "--epochs", "1", "--drop-path", "1.5"], "drop_path"),
    (["train", "DARTS_V2", "--dataset", "digits", "--epochs", "1", "--limit", "1"], "limit"),
    (["train", "{tmp}", "--dataset", "digits", "--epochs", "1"], "results.db"),
    (["darts", "--dataset", "digits", "--epochs", "0", "--run", "{tmp}/r"], "epochs"),
    (["darts", "--dataset", "digits", "--epochs", "1", "--channels", "0", "--run", "{tmp}/r"], ">= 1"),
    (["darts", "--dataset", "mnist2d", "--epochs", "1", "--run", "{tmp}/r"], "unknown dataset"),
    (["darts", "--dataset", "digits", "--epochs", "1", "--device", "tpu", "--run", "{tmp}/r"], "--device"),
    (["darts", "--dataset", "digits", "--epochs", "1", "--threads", "0", "--run", "{tmp}/r"], "--threads"),
    (["train", "DARTS_V2", "--dataset", "digits", "--epochs", "1", "--threads", "-2", "--run", "{tmp}/r"], "--threads"),
])  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                          message: str) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert message in _usage_error(capsys, ["nas", *argv])
    assert not (tmp_path / "r").exists()


def test_threads_set_this_process_for_the_search_the_training_and_their_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    before = torch.get_num_threads()
    search = str(tmp_path / "search")
    try:
        _ok(capsys, ["nas", "darts", *TINY_SEARCH, "--epochs", "1", "--threads", "2", "--run", search])
        assert torch.get_num_threads() == 2
        _ok(capsys, ["nas", "train", search, *TINY_TRAIN, "--epochs", "1", "--threads", "3", "--run",
                     str(tmp_path / "t")])
        assert torch.get_num_threads() == 3
        _ok(capsys, ["nas", "train", search, *TINY_TRAIN, "--epochs", "1", "--run", str(tmp_path / "default")])
        assert torch.get_num_threads() == 1
        store, job = _job(tmp_path / "t")
        with store:  # a per-invocation setting, not part of the job: resume takes its own
            assert "threads" not in job.config and "threads" not in job.config["train"]
            store.set_job_status(job.id, "interrupted")
        _ok(capsys, ["resume", str(tmp_path / "t"), "--threads", "2"])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_malformed_number_is_an_argparse_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["nas", "darts", "--dataset", "digits", "--epochs", "x", "--run", str(tmp_path / "r")])
    assert exit_.value.code == 2 and "invalid int value: 'x'" in capsys.readouterr().err


def _fake_cifar(root: Path) -> None:
    """Four 32×32 images per batch in torchvision's folder layout (pickled dicts of uint8 rows and labels)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, size=(4, 3072), dtype=np.uint8),
                 "labels": [int(v) for v in rng.integers(0, 10, size=4)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))


def test_search_and_train_on_a_cifar10_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fake_cifar(tmp_path / "cifar")
    data = ["--dataset", f"cifar10:{tmp_path / 'cifar'}", "--layers", "2", "--channels", "2", "--batch-size", "8",
            "--device", "cpu", "--quiet"]
    searched = _ok(capsys, ["nas", "darts", *data, "--epochs", "1", "--run", str(tmp_path / "s")])
    _ok(capsys, ["nas", "train", searched.strip(), *data, "--epochs", "1", "--crop-flip", "--cutout", "16",
                 "--drop-path", "0.2", "--auxiliary", "--run", str(tmp_path / "t")])
    store, job = _job(tmp_path / "t")
    with store:
        [evaluation] = store.list_evaluations(job.id)
    assert evaluation.status == "ok" and evaluation.task == f"train:cifar10:{tmp_path / 'cifar'}"
