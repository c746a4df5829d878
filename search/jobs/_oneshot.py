"""``oneshot``: one-shot supernet training (``nas.oneshot_train``) and ranking as a recorded, resumable job.

Schema use (job kind "architecture"):
  * ``jobs.config``: ``OneShotJobConfig.to_dict()`` — ``method: "oneshot"``, ``tasks: ["inherited:<dataset>"]``,
    the dataset, ``limit``, the ground-truth table's path and metadata, the BatchNorm recalibration settings
    (``inherit``), the device, and the whole ``OneShotConfig`` (``train``: net shape, sampler, epochs, SGD, seed).
  * ``checkpoints``: after every epoch ``{"epoch": N, "file": "supernet.pt", "history": [epoch records]}`` (the
    newest holds every epoch so far: lr, train loss/accuracy, distinct examples drawn, seconds, and the sampler's
    figures — PA&DA's τ and path probabilities); the last one adds ``"ranking"``: Kendall τ, Spearman ρ, n and
    p-values, the top pick and its rank in the table.
  * after training, one candidate per table architecture (NB201 text, functional hash, birth = table order) with
    one evaluation each: key ``inherited:<arch>``, task ``inherited:<dataset>``, status "ok", fitness = the
    ranking score (``inherit.metric``: minus the inherited validation loss by default, or the accuracy), metrics
    ``{"inherited_accuracy", "inherited_loss", "ground_truth"}`` — so ``autodisco runs top`` lists the
    architectures the supernet ranks best.

``<run>/supernet.pt`` (``save_supernet``) holds the weights with the ``allowed`` mask, the config, the optimizer
and sampler state and the epoch records; it is replaced atomically after every epoch before the epoch's checkpoint
row. ``autodisco resume`` after Ctrl-C or kill continues after the file's epoch, and the finished run equals one
never stopped (training draws nothing from torch's RNG; the sampler state is exact).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

import hashing
from nas.errors import NasError
from nas.groundtruth import GroundTruthTable, load_table
from nas.nb201 import NB201Genotype
from nas.oneshot import InheritConfig, OneShotSupernet
from nas.oneshot_train import (
    SUPERNET_FILE, OneShotConfig, OneShotEpoch, SupernetData, evaluate, new_optimizer, new_supernet, save_supernet,
    supernet_data, train_epoch,
)
from nas.pada import make_sampler
from nas.ranking import RankCorrelation, rank_correlation
from search.jobs._base import Job, JobContext
from search.jobs._registry import register_job
from search.jobs._runner import Runner

METHOD = "oneshot"


@dataclass(frozen=True)
class OneShotJobConfig:
    """A one-shot job: ``dataset``, its first ``limit`` examples per split (all if None), the ground-truth ``table``
    (a path, or None: no ranking), ``inherit`` (BatchNorm recalibration), the training, and the ``device``."""

    dataset: str
    train: OneShotConfig = field(default_factory=OneShotConfig)
    table: str | None = None
    inherit: InheritConfig = field(default_factory=InheritConfig)
    limit: int | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 2:
            raise NasError(f"limit must be at least 2 examples, got {self.limit}")

    @property
    def task(self) -> str:
        return f"inherited:{self.dataset}"

    def to_dict(self) -> dict[str, Any]:
        return {"method": METHOD, "tasks": [self.task], **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OneShotJobConfig:
        if data.get("method") != METHOD:
            raise NasError(f"not a one-shot job configuration (method {data.get('method')!r})")
        return cls(data["dataset"], OneShotConfig.from_dict(data["train"]), data["table"],
                   InheritConfig(**{"metric": "accuracy", **data["inherit"]}),  # stored before metric: accuracy
                   data["limit"], data["device"])


@dataclass(frozen=True)
class OneShotJobResult:
    """The epoch records, the ranking score of each table architecture (``InheritedScore.value`` of the job's
    ``inherit.metric``: −loss by default), and the rank correlation (None without a table)."""

    history: tuple[OneShotEpoch, ...]
    scores: dict[str, float]
    ranking: RankCorrelation | None


def open_table(config: OneShotJobConfig) -> GroundTruthTable | None:
    """The job's table (``NasError`` if it is unreadable or made for another dataset)."""
    if config.table is None:
        return None
    table = load_table(config.table)
    if table.dataset is not None and table.dataset != config.dataset:
        raise NasError(f"table {config.table} is for {table.dataset!r}, not {config.dataset!r}")
    return table


def _resume(path: Path, supernet: torch.nn.Module, optimizer: torch.optim.Optimizer,
            sampler: Any) -> list[OneShotEpoch]:
    """Load the training state of ``path`` into the fresh objects; the epochs it finished (none without a file)."""
    if not path.is_file():
        return []
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        supernet.load_state_dict(saved["state_dict"])
        optimizer.load_state_dict(saved["optimizer"])
        sampler.load_state_dict(json.loads(saved["sampler"]))
        return [OneShotEpoch(**r) for r in json.loads(saved["history"])]
    except Exception as error:  # torch raises many kinds for a damaged or foreign file
        raise NasError(f"{path}: cannot continue from it ({type(error).__name__}); delete the run folder to start "
                       "again") from None


SCORE_CHUNK = 8  # architectures scored between two looks at the clock for the ranking's status line


@register_job
class OneShotJob(Job):
    """A one-shot supernet: one unit per training epoch, then one unit that scores and records the table's
    architectures with the rank correlation."""

    method = METHOD
    config_type = OneShotJobConfig
    own_progress_lines = True

    def __init__(self, config: OneShotJobConfig, context: JobContext) -> None:
        super().__init__(config, context)
        self.history: list[OneShotEpoch] = []
        self.ranking: dict[str, Any] | None = None
        self.table: GroundTruthTable | None = None

    @classmethod
    def config_to_dict(cls, config: OneShotJobConfig) -> dict[str, Any]:
        values = config.to_dict()
        table = open_table(config)
        values["table_metadata"] = table.metadata if table is not None else None
        return values

    @classmethod
    def seed_of(cls, config: OneShotJobConfig) -> int:
        return config.train.seed

    def prepare(self) -> None:
        self.table = open_table(self.config)  # a bad or foreign table fails before anything runs

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"epoch": len(self.history), "file": SUPERNET_FILE,
                                 "history": [asdict(r) for r in self.history]}
        if self.ranking is not None:
            state["ranking"] = self.ranking
        return state

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        pass  # the supernet file holds the training state (and its epoch records); see run

    def run(self, runner: Runner) -> OneShotJobResult:
        config = self.config
        data = supernet_data(config.dataset, config.limit)
        train = config.train
        supernet = new_supernet(train, data.in_channels, data.dim).to(config.device)
        optimizer = new_optimizer(train, supernet)
        sampler = make_sampler(train.sampler, train.epochs, len(data.train[1]), train.seed)
        path = runner.file(SUPERNET_FILE)
        self.history = _resume(path, supernet, optimizer, sampler)
        for epoch in range(len(self.history) + 1, train.epochs + 1):
            record = train_epoch(supernet, optimizer, sampler, data.train, epoch, train, config.device)
            self.history.append(record)
            save_supernet(path, supernet, train, config.dataset, epoch, limit=config.limit, optimizer=optimizer,
                          sampler=sampler.state_dict(), history=[asdict(r) for r in self.history])
            runner.checkpoint()  # the checkpoint row (epoch records) commits after the file
            self.context.say(epoch_line(record))
        return self._rank(runner, data, supernet)

    def _rank(self, runner: Runner, data: SupernetData, supernet: OneShotSupernet) -> OneShotJobResult:
        config, table, store, job = self.config, self.table, self.store, self.record
        if table is None:
            runner.checkpoint()
            return OneShotJobResult(tuple(self.history), {}, None)
        self.context.say(f"ranking the table's {len(table.accuracy)} architectures with inherited weights")
        genotypes = [NB201Genotype.from_text(arch) for arch in table.accuracy]
        results: dict[str, Any] = {}
        for start in range(0, len(genotypes), SCORE_CHUNK):  # each architecture's score is its own: chunks are exact
            chunk = genotypes[start:start + SCORE_CHUNK]
            results.update(zip((g.to_text() for g in chunk), evaluate(supernet, chunk, data, config.inherit,
                                                                       config.device)))
            runner.heartbeat(lambda: f"ranking: scored {len(results)}/{len(genotypes)} architectures")
        scores = {arch: r.value(config.inherit.metric) for arch, r in results.items()}
        ranking = rank_correlation(scores, table.accuracy)
        with runner.unit():
            for birth, genotype in enumerate(genotypes):
                arch = genotype.to_text()
                candidate = store.add_candidate(job.id, kind="architecture", text=arch,
                                                hash=hashing.functional_hash(genotype), birth=birth,
                                                mutation="ground-truth table")
                evaluation = store.add_evaluation(job.id, candidate, key=f"inherited:{arch}", task=config.task,
                                                  seed=config.train.seed)
                store.finish_evaluation(evaluation, status="ok", fitness=scores[arch],
                                        metrics={"inherited_accuracy": results[arch].accuracy,
                                                 "inherited_loss": results[arch].loss,
                                                 "ground_truth": table.accuracy[arch]})
            self.ranking = ranking.to_dict()
        return OneShotJobResult(tuple(self.history), scores, ranking)

    def progress(self) -> tuple[int, int | None, dict[str, Any]]:
        return len(self.history), self.config.train.epochs, {}

    @classmethod
    def progress_of(cls, config: Mapping[str, Any], state: Mapping[str, Any]) -> tuple[int | None, int | None]:
        return int(state.get("epoch", 0)), int(config["train"]["epochs"])

    def describe(self) -> str:
        config, table = self.config, self.table
        return (f"one-shot supernet {self.record.name!r}: {config.train.sampler} sampling, {config.train.epochs} "
                f"epochs on {config.dataset}, seed {config.train.seed}; "
                f"{f'{len(table.accuracy)} table architectures' if table else 'no table'}")

    def report(self, result: OneShotJobResult) -> list[str]:
        where = self.context.run_dir / SUPERNET_FILE if self.context.run_dir else SUPERNET_FILE
        if result.ranking is None:
            return [f"trained {where}; no ground-truth table, so no ranking"]
        r = result.ranking
        return [f"{r.line()} (inherited {self.config.inherit.metric} vs {self.config.table}); supernet in {where}",
                f"top pick: {r.top_pick}"]


def epoch_line(record: OneShotEpoch) -> str:
    weight = record.sampler.get("tau")  # PA&DA's τ: the weight of importance against uniform sampling, not Kendall τ
    extra = f" | PA&DA importance weight {weight:.2f}" if weight is not None else ""
    return (f"[autodisco] epoch {record.epoch} | lr {record.lr:.4f} | train loss {record.train_loss:.4f} | "
            f"train acc {record.train_accuracy:.4f} | {record.seconds:.1f}s{extra}")
