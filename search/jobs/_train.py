"""``train``: training a genotype from scratch (``nas.train``) as a recorded, resumable job (``autodisco nas train``).

Schema use (job kind "architecture"):
  * ``jobs.config``: ``TrainJobConfig.to_dict()`` — ``method: "train"``, ``tasks: ["train:<dataset>"]``, the genotype
    text, where it came from, the dataset spec, the device and the whole ``TrainConfig``;
  * one candidate: the genotype (DARTS text, functional hash, birth 0, ``mutation`` = its source);
  * one evaluation per finished epoch on it: key ``epoch-N``, status "ok", fitness = validation accuracy, metrics =
    ``TrainEpoch`` fields plus ``params`` (without the auxiliary head); a diverging run adds one "failed"
    evaluation ``epoch-N`` whose error is the reason.
  * ``checkpoints``: ``{"epoch": N}`` with each epoch's rows.
Resume replays the training deterministically from its seed (the network, its batches and augmentations are all
drawn from it) and records only the epochs after the last recorded one: the finished run equals one never stopped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import hashing
from evaluators.data import DataSplits, get_dataset
from nas.errors import NasError
from nas.genotypes import Genotype
from nas.network import Network, count_parameters
from nas.train import TrainConfig, TrainEpoch, TrainResult, train_genotype
from search.jobs._base import Job, JobContext
from search.jobs._darts import batch_heartbeat, batches_per_epoch, epoch_line, use_threads
from search.jobs._registry import register_job
from search.jobs._runner import Runner

METHOD = "train"


@dataclass(frozen=True)
class TrainJobConfig:
    """What a training job trains: ``genotype`` (DARTS text) from ``source`` (a name, a run, "text"), on ``dataset``
    ("mnist1d", "digits", "cifar10:PATH"; its first ``limit`` training examples if given), how (``train``), and on
    which ``device``."""

    genotype: str
    dataset: str
    train: TrainConfig
    source: str = "text"
    device: str = "cpu"
    limit: int | None = None

    def __post_init__(self) -> None:
        Genotype.from_text(self.genotype)  # GenotypeError if malformed
        if self.limit is not None and self.limit < 2:
            raise NasError(f"limit must be at least 2 training examples, got {self.limit}")

    @property
    def task(self) -> str:
        return f"{METHOD}:{self.dataset}"

    def to_dict(self) -> dict[str, Any]:
        return {"method": METHOD, "tasks": [self.task], **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainJobConfig:
        if data.get("method") != METHOD:
            raise NasError(f"not a training job configuration (method {data.get('method')!r})")
        return cls(data["genotype"], data["dataset"], TrainConfig.from_dict(data["train"]), data["source"],
                   data["device"], data["limit"])  # fmt: skip


@register_job
class TrainJob(Job):
    """Training one genotype; one unit per epoch."""

    method = METHOD
    config_type = TrainJobConfig
    own_progress_lines = True

    def __init__(self, config: TrainJobConfig, context: JobContext, data: DataSplits | None = None) -> None:
        super().__init__(config, context)
        self.data = data
        self.epochs_done = 0

    @classmethod
    def seed_of(cls, config: TrainJobConfig) -> int:
        return config.train.seed

    def prepare(self) -> None:
        if self.data is None:
            self.data = get_dataset(self.config.dataset, self.config.limit)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epochs_done}

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        self.epochs_done = int(state.get("epoch", 0)) if isinstance(state, Mapping) else 0

    def run(self, runner: Runner) -> TrainResult:
        config, store, job = self.config, self.store, self.record
        assert self.data is not None
        use_threads(self.context)
        genotype = Genotype.from_text(config.genotype)
        recorded = store.list_candidates(job.id)
        if recorded:  # resumed: the one candidate is there already
            candidate = recorded[0].id
        else:
            with runner.unit():
                candidate = store.add_candidate(job.id, kind="architecture", text=genotype.to_text(),
                                                hash=hashing.functional_hash(genotype), mutation=config.source, birth=0)
        shape = self.data.input_shape
        params = count_parameters(Network(genotype, config.train.net, in_channels=shape[0], dim=len(shape) - 1))
        replayed = self.epochs_done

        def finished(epoch: TrainEpoch) -> None:
            if epoch.epoch <= replayed:
                return  # recorded before the job stopped; the replay reaches the same state
            with runner.unit():
                _record(store, job.id, candidate, config, f"epoch-{epoch.epoch}", "ok", epoch.val_accuracy,
                        {**epoch.to_dict(), "params": params}, None)
                self.epochs_done = epoch.epoch
            self.context.say(epoch_line(epoch, config.train.epochs))

        if replayed:
            self.context.say(f"replaying epochs 1-{replayed} from the seed (they are recorded), then going on")
        def replay(epoch: int) -> str:
            return " (replay)" if epoch <= replayed else ""

        batches = batches_per_epoch(len(self.data.train), config.train.batch_size)
        result = train_genotype(genotype, self.data, config.train, config.device, finished,
                                on_batch=batch_heartbeat(runner, config.train.epochs, batches, replay))
        if result.status != "ok":
            with runner.unit():
                _record(store, job.id, candidate, config, f"epoch-{len(result.history) + 1}", "failed", None,
                        {"params": params}, result.reason)
        return result

    def progress(self) -> tuple[int, int | None, dict[str, Any]]:
        return self.epochs_done, self.config.train.epochs, {}

    @classmethod
    def progress_of(cls, config: Mapping[str, Any], state: Mapping[str, Any]) -> tuple[int | None, int | None]:
        return int(state.get("epoch", 0)), int(config["train"]["epochs"])

    def describe(self) -> str:
        config = self.config
        return (f"training job {self.record.name!r}: {config.source} on {config.dataset} for {config.train.epochs} "
                f"epochs, {config.device}; {self.epochs_done} done")

    def exit_status(self, result: TrainResult) -> int:
        return 0 if result.status == "ok" else 1

    def report(self, result: TrainResult) -> list[str]:
        if result.status != "ok":
            return [f"training failed: {result.reason}"]
        return [f"final validation accuracy {result.val_accuracy:.4f} after {self.config.train.epochs} epochs; "
                f"{result.params:,} parameters (auxiliary head not counted); {result.seconds:.0f} s"]


def _record(store: Any, job_id: int, candidate: int, config: TrainJobConfig, key: str, status: str,
            fitness: float | None, metrics: dict[str, Any], error: str | None) -> None:
    evaluation = store.add_evaluation(job_id, candidate, key=key, task=config.task, seed=config.train.seed)
    store.finish_evaluation(evaluation, status=status, fitness=fitness, metrics=metrics, error=error,
                            wall_time=metrics.get("seconds"))
