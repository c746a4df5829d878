from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import hashing
from nas import NasError
from nas.darts import DartsConfig, EpochRecord
from nas.genotypes import Genotype
from nas.supernet import SupernetConfig
from search.jobs import JobError, create_job, job_type_of, open_job, run_job
from search.jobs._darts import CHECKPOINT_FILE, DartsJob, DartsJobConfig, recorded_epochs
from search.store import Store

NET = SupernetConfig(layers=2, C=2, steps=2, multiplier=2, primitives=("none", "max_pool_3x3", "skip_connect",
                                                                           "sep_conv_3x3"))
CONFIG = DartsJobConfig("digits", DartsConfig(net=NET, epochs=3, batch_size=16, seed=3), limit=48)


def _run(run: Path, config: DartsJobConfig = CONFIG, on_epoch: Any = None) -> list[EpochRecord]:
    """Create or resume the job of ``run`` and run it; ``on_epoch(epoch number)`` after each new epoch's rows."""
    say = (lambda line: on_epoch(int(line.split()[1].split("/")[0]))) if on_epoch else (lambda line: None)
    with Store.for_run(run) as store:
        record = store.get_job(run.name)
        context = {"run_dir": run, "say": say, "show_progress": False}
        job = open_job(store, record, **context) if record else create_job(store, run.name, DartsJob, config, **context)
        return list(run_job(job).history)


def _comparable(records: list[EpochRecord]) -> list[dict[str, Any]]:
    from nas.darts_state import record_to_dict

    return [{**record_to_dict(r), "seconds": 0.0} for r in records]


def _stop_at(epoch: int) -> Any:
    def on_epoch(number: int) -> None:
        if number == epoch:
            raise KeyboardInterrupt

    return on_epoch


def test_a_job_records_every_epoch_with_alpha_metrics_and_genotype(tmp_path: Path) -> None:
    run = tmp_path / "search"
    history = _run(run)
    with Store.for_run(run, create=False) as store:
        job = store.get_job("search")
        assert job is not None and job.kind == "architecture" and job.status == "finished" and job_type_of(job) is DartsJob
        assert DartsJobConfig.from_dict(job.config) == CONFIG
        candidates = store.list_candidates(job.id)
        evaluations = store.list_evaluations(job.id)
        assert [c.birth for c in candidates] == [0, 1, 2]
        assert [c.parent_ids for c in candidates] == [(), (candidates[0].id,), (candidates[1].id,)]
        assert [e.key for e in evaluations] == ["epoch-1", "epoch-2", "epoch-3"]
        assert all(e.task == "darts:digits" and e.status == "ok" for e in evaluations)
        assert store.latest_checkpoint(job.id).state == {"epoch": 3, "file": CHECKPOINT_FILE,
                                                         "progress": {"done": 3, "total": 3, "unit": "epoch"}}
        assert recorded_epochs(store, job) == history
    last = evaluations[-1].metrics
    assert len(last["alpha_normal"]) == 5 and len(last["alpha_normal"][0]) == len(NET.primitives)
    assert evaluations[-1].fitness == last["val_accuracy"] == history[-1].val_accuracy
    genotype = Genotype.from_text(candidates[-1].text)
    assert genotype == history[-1].genotype and candidates[-1].hash == hashing.functional_hash(genotype)
    assert (run / CHECKPOINT_FILE).is_file() and not (run / (CHECKPOINT_FILE + ".tmp")).exists()


def test_resume_after_ctrl_c_continues_and_ends_like_an_uninterrupted_run(tmp_path: Path) -> None:
    reference = _run(tmp_path / "straight")
    run = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        _run(run, on_epoch=_stop_at(2))
    with Store.for_run(run, create=False) as store:
        job = store.get_job("stopped")
        assert job.status == "interrupted" and len(recorded_epochs(store, job)) == 2
    resumed: list[int] = []
    history = _run(run, on_epoch=resumed.append)
    assert resumed == [3]  # epochs 1-2 were not run again
    assert _comparable(history) == _comparable(reference)
    with Store.for_run(run, create=False) as store:
        job = store.get_job("stopped")
        assert job.status == "finished" and _comparable(recorded_epochs(store, job)) == _comparable(reference)
        assert len(store.list_evaluations(job.id)) == 3


def test_a_kill_between_the_checkpoint_file_and_the_database_loses_nothing(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    reference = _run(tmp_path / "straight")
    record = DartsJob._record_epoch

    def killed_at_epoch_2(self: DartsJob, runner: Any, r: EpochRecord, *, say: bool) -> None:
        if r.epoch == 2:
            raise KeyboardInterrupt  # the file holds epoch 2, the database does not
        record(self, runner, r, say=say)

    monkeypatch.setattr(DartsJob, "_record_epoch", killed_at_epoch_2)
    run = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        _run(run)
    monkeypatch.setattr(DartsJob, "_record_epoch", record)
    resumed: list[int] = []
    history = _run(run, on_epoch=resumed.append)
    assert resumed == [3]
    with Store.for_run(run, create=False) as store:
        recorded = recorded_epochs(store, store.get_job("killed"))
    assert _comparable(recorded) == _comparable(history) == _comparable(reference)


def test_a_damaged_checkpoint_or_another_configuration_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "damaged"
    with pytest.raises(KeyboardInterrupt):
        _run(run, on_epoch=_stop_at(1))
    state = torch.load(run / CHECKPOINT_FILE, weights_only=True)
    (run / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(JobError, match="unreadable job state"):
        _run(run)
    wider = DartsJobConfig("digits", DartsConfig(net=SupernetConfig(layers=2, C=4, steps=2, multiplier=2,
                                                                    primitives=NET.primitives), epochs=3), limit=48)
    other = tmp_path / "other"
    other.mkdir()
    torch.save(state, other / CHECKPOINT_FILE)
    with pytest.raises(NasError, match="does not fit"):
        _run(other, wider)
    with Store.for_run(other, create=False) as store:
        assert store.get_job("other").status == "failed"


def test_config_round_trips_through_json_and_checks_values() -> None:
    text = json.dumps(CONFIG.to_dict())
    assert DartsJobConfig.from_dict(json.loads(text)) == CONFIG
    with pytest.raises(NasError):
        DartsJobConfig("digits", split_fraction=1.0)
    with pytest.raises(NasError, match="not a DARTS job"):
        DartsJobConfig.from_dict({"method": "train"})
