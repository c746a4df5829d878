"""``darts``: a DARTS / sharpDARTS search (``nas.darts``) as a recorded, resumable job.

Schema use (job kind "architecture"):
  * ``jobs.config``: ``DartsJobConfig.to_dict()`` — ``method: "darts"``, ``tasks: ["darts:<dataset>"]``, the dataset
    spec, split, device, and the whole ``DartsConfig`` (``search``: net, arch, schedule, seed).
  * one candidate per finished epoch: the genotype the epoch's α derives (DARTS text; functional hash; birth =
    epoch − 1; parent = the previous epoch's candidate; mutation "darts epoch N");
  * one evaluation per epoch on that candidate: key ``epoch-N``, task ``darts:<dataset>``, status "ok", fitness =
    the supernet's validation accuracy after the epoch, metrics = lr, train/val loss and accuracy, α of the normal
    and reduction cells (raw logits, rows = edges, columns = the config's primitives), the genotype text, seconds;
  * ``checkpoints``: ``{"epoch": N, "file": "darts_checkpoint.pt"}`` in the same transaction as the epoch's rows.

The full search state (``nas.darts_state``: w, α, BatchNorm statistics, both optimizers, the batch-order generator,
the epoch records) goes to ``<run>/darts_checkpoint.pt`` after every epoch, written atomically by the runner *before*
the epoch's rows. On resume the job first records any epoch the file has and the database lacks, then continues
after the file's epoch: the finished search equals one never stopped (same device).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

import torch

import hashing
from evaluators.data import DataSplits, get_dataset, split_dataset
from nas.darts import DartsConfig, DartsResult, EpochRecord, search
from nas.darts_state import record_from_dict, record_to_dict
from nas.errors import NasError
from search.jobs._base import Job, JobContext
from search.jobs._registry import register_job
from search.jobs._runner import Runner
from search.store import JobRecord, Store

METHOD = "darts"
CHECKPOINT_FILE = "darts_checkpoint.pt"
HASH_SHOWN = 10


@dataclass(frozen=True)
class DartsJobConfig:
    """What a DARTS job searches: ``dataset`` ("mnist1d", "digits", "cifar10:PATH"), its first ``limit`` training
    examples (all if None) split ``split_fraction`` / rest into w-data / α-data (seeded by ``search.seed``), the
    search itself, and the ``device`` it runs on."""

    dataset: str
    search: DartsConfig = field(default_factory=DartsConfig)
    split_fraction: float = 0.5
    limit: int | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not 0 < self.split_fraction < 1:
            raise NasError(f"split_fraction must be in (0, 1), got {self.split_fraction}")
        if self.limit is not None and self.limit < 2:
            raise NasError(f"limit must be at least 2 training examples, got {self.limit}")

    @property
    def task(self) -> str:
        return f"{METHOD}:{self.dataset}"

    def to_dict(self) -> dict[str, Any]:
        return {"method": METHOD, "tasks": [self.task], **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DartsJobConfig:
        if data.get("method") != METHOD:
            raise NasError(f"not a DARTS job configuration (method {data.get('method')!r})")
        return cls(data["dataset"], DartsConfig.from_dict(data["search"]), data["split_fraction"], data["limit"],
                   data["device"])  # fmt: skip


def load_data(config: DartsJobConfig) -> DataSplits:
    """The job's dataset with its training split cut to ``limit``; ``NasError`` if its classes do not match."""
    data = get_dataset(config.dataset, config.limit)
    if data.num_classes != config.search.net.num_classes:
        raise NasError(f"{config.dataset} has {data.num_classes} classes; the supernet has "
                       f"{config.search.net.num_classes}")  # fmt: skip
    return data


def recorded_epochs(store: Store, job: JobRecord) -> list[EpochRecord]:
    """The epochs recorded for ``job`` so far, in order (from the evaluations' metrics)."""
    found = [e for e in store.list_evaluations(job.id, status="ok") if e.key.startswith("epoch-")]
    return sorted((record_from_dict(e.metrics) for e in found), key=lambda r: r.epoch)


@register_job
class DartsJob(Job):
    """A DARTS search; one unit per epoch (its genotype, metrics and α), the search state in a file beside."""

    method = METHOD
    config_type = DartsJobConfig
    own_progress_lines = True

    def __init__(self, config: DartsJobConfig, context: JobContext, data: DataSplits | None = None) -> None:
        super().__init__(config, context)
        self.data = data
        self.epochs_done = 0
        self.last: EpochRecord | None = None

    @classmethod
    def seed_of(cls, config: DartsJobConfig) -> int:
        return config.search.seed

    def prepare(self) -> None:
        if self.data is None:
            self.data = load_data(self.config)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epochs_done, "file": CHECKPOINT_FILE}

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        self.epochs_done = int(state.get("epoch", 0)) if isinstance(state, Mapping) else 0

    def run(self, runner: Runner) -> DartsResult:
        config = self.config
        assert self.data is not None
        use_threads(self.context)
        train, val = split_dataset(self.data.train, config.split_fraction, seed=config.search.seed)
        state = runner.load_file(CHECKPOINT_FILE)
        if state is not None:
            for record in state["history"]:
                self._record_epoch(runner, record_from_dict(record), say=False)

        def finished(record: EpochRecord) -> None:
            self._record_epoch(runner, record, say=True)

        batches = min(batches_per_epoch(len(train), config.search.batch_size),  # one (w, α) batch pair a step
                      batches_per_epoch(len(val), config.search.batch_size))
        return search(config.search, train, val, config.device, finished, resume=state,
                      on_state=lambda s: runner.save_file(CHECKPOINT_FILE, s),
                      on_batch=batch_heartbeat(runner, config.search.epochs, batches))  # fmt: skip

    def progress(self) -> tuple[int, int | None, dict[str, Any]]:
        return self.epochs_done, self.config.search.epochs, {}

    @classmethod
    def progress_of(cls, config: Mapping[str, Any], state: Mapping[str, Any]) -> tuple[int | None, int | None]:
        return int(state.get("epoch", 0)), int(config["search"]["epochs"])

    def describe(self) -> str:
        search_config = self.config.search
        return (f"DARTS job {self.record.name!r}: order {search_config.arch.order}, {search_config.net.weighting}, "
                f"{len(search_config.net.primitives)} operations, on {self.config.dataset}, {search_config.epochs} "
                f"epochs, {self.config.device}; {self.epochs_done} done")

    def report(self, result: DartsResult) -> list[str]:
        where = self.context.run_dir or self.record.name
        self.context.say(f"finished {len(result.history)} epochs; final validation accuracy of the supernet "
                         f"{result.history[-1].val_accuracy:.4f}. Genotype (train it: autodisco nas train {where} "
                         f"--dataset {self.config.dataset} --epochs N):")
        return [result.genotype.to_text()]

    def _record_epoch(self, runner: Runner, record: EpochRecord, *, say: bool) -> None:
        """The epoch's candidate, evaluation and checkpoint in one unit; nothing new if already there."""
        store, job = self.store, self.record
        text = record.genotype.to_text()
        with runner.unit():
            parents = [c.id for c in store.list_candidates(job.id) if c.birth == record.epoch - 2]
            candidate = store.add_candidate(job.id, kind="architecture", text=text,
                                            hash=hashing.functional_hash(record.genotype), parent_ids=parents,
                                            mutation=f"{METHOD} epoch {record.epoch}", birth=record.epoch - 1)
            evaluation = store.add_evaluation(job.id, candidate, key=f"epoch-{record.epoch}", task=self.config.task,
                                              seed=self.config.search.seed)
            store.finish_evaluation(evaluation, status="ok", fitness=record.val_accuracy,
                                    metrics=record_to_dict(record), wall_time=record.seconds)
            self.epochs_done = max(self.epochs_done, record.epoch)
        if say:
            self.context.say(epoch_line(record, self.config.search.epochs, self.last))
        self.last = record


def use_threads(context: JobContext) -> None:
    """Set this process's torch threads to the command's ``--threads`` (``nas darts|train``; ``resume --threads N``;
    1 where the command gave none or 'auto', as ``nas darts|train`` default to), as the jobs that train in the CLI's own
    process start. A job built in Python (no command options) leaves the caller's setting alone."""
    if context.options is None:
        return
    threads = context.options.get("threads")
    torch.set_num_threads(1 if threads in (None, "auto") else int(threads))


def batches_per_epoch(examples: int, batch_size: int) -> int:
    return math.ceil(examples / batch_size)


def batch_heartbeat(runner: Runner, epochs: int, batches: int, note: Callable[[int], str] = lambda epoch: ""
                    ) -> Callable[[Any, Any, Any], None]:
    """``on_batch`` for ``evaluators.fit.fit``: inside a long epoch, a status line every few seconds — "epoch 3/50 |
    batch 40/120 | loss 1.2345" (the loss is read off the device only for the line); ``note(epoch)`` is appended."""

    def on_batch(epoch: int, batch: int, loss: Any) -> None:
        runner.heartbeat(lambda: f"epoch {epoch}/{epochs} | batch {batch}/{batches} | loss {float(loss):.4f}"
                                 f"{note(epoch)}")

    return on_batch


def epoch_line(record: Any, epochs: int, previous: Any = None) -> str:
    """One line per finished epoch of a training job (DARTS, genotype training)."""
    line = (f"epoch {record.epoch}/{epochs} | lr {record.lr:.5f} | train loss {record.train_loss:.4f} "
            f"acc {record.train_accuracy:.4f} | val loss {record.val_loss:.4f} acc {record.val_accuracy:.4f} | "
            f"{record.seconds:.1f} s")  # fmt: skip
    genotype = getattr(record, "genotype", None)
    if genotype is not None:
        digest = hashing.functional_hash(genotype)[:HASH_SHOWN]
        changed = previous is not None and hashing.functional_hash(previous.genotype)[:HASH_SHOWN] != digest
        line += f" | genotype {digest}{' (changed)' if changed else ''}"
    return line
