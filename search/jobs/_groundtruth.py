"""``groundtruth``: a NAS-Bench-201 ground-truth table (``nas.groundtruth``) built on the engine's workers, as a
recorded, resumable job (``autodisco nas groundtruth``).

Schema use (job kind "architecture"):
  * ``jobs.config``: ``GroundTruthConfig`` — ``method: "groundtruth"``, ``tasks: ["groundtruth:<dataset>"]``, the
    dataset, how many architectures and from which seed, the training budget, the table file it writes (``output``)
    and ``limit`` (examples per split; tests);
  * one candidate per trained architecture (NB201 text, functional hash, birth = its place in the sample) with one
    evaluation: key = the architecture text, status "ok" with fitness = test accuracy and the worker's metrics, or
    "failed" with the reason;
  * ``checkpoints``: ``{"done": N, "seconds": S}`` with each result's rows (S: training wall time so far).
The table file (``nas.groundtruth.GroundTruthTable``) is rewritten atomically after every result from what is
recorded, so it is complete up to the last recorded result; ``autodisco resume`` trains only what is not recorded.
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import hashing
from nas.groundtruth import GroundTruthTable, TrainBudget, sample_architectures, write_table
from nas.nb201 import NB201Genotype
from nas.oneshot_train import DATASETS
from search.executor import EvalOutcome, EvalRequest
from search.jobs._base import Job, JobContext, JobError
from search.jobs._registry import register_job
from search.jobs._runner import Runner

METHOD = "groundtruth"
WORKER_FN = "search.kinds.workers:train_nb201"
PRELOAD = ("torch", "nas", "search.kinds.workers")


@dataclass(frozen=True)
class GroundTruthConfig:
    """Train ``archs`` NAS-Bench-201 architectures sampled with ``seed`` (``nas.groundtruth.sample_architectures``)
    from scratch on ``dataset`` with ``budget``, and write their test accuracies to the table file ``output``."""

    dataset: str
    archs: int
    output: str
    seed: int = 0
    budget: TrainBudget = field(default_factory=TrainBudget)
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise JobError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}")
        if self.archs < 1:
            raise JobError(f"the number of architectures must be at least 1, got {self.archs}")
        if self.limit is not None and self.limit < 2:
            raise JobError(f"limit must be at least 2 examples, got {self.limit}")

    @property
    def task(self) -> str:
        return f"{METHOD}:{self.dataset}"

    def command(self) -> str:
        return (f"autodisco nas groundtruth --dataset {self.dataset} --archs {self.archs} --seed {self.seed} "
                f"--epochs {self.budget.epochs} --C {self.budget.C} -o {self.output}")


def table_from(config: GroundTruthConfig, results: Mapping[str, tuple[str, Any]], seconds: float) -> GroundTruthTable:
    """The table of ``config`` holding ``results`` (arch → ("ok", accuracy) or ("failed", reason))."""
    metadata = {"command": config.command(), "dataset": config.dataset, "seed": config.seed, "archs": config.archs,
                "budget": config.budget.to_dict(), "metric": "test accuracy after training from scratch",
                "date": time.strftime("%Y-%m-%d", time.gmtime()), "seconds": round(seconds, 1)}
    table = GroundTruthTable(metadata)
    for arch, (status, value) in results.items():
        if status == "ok":
            table.accuracy[arch] = float(value)
        else:
            table.failed[arch] = str(value)
    return table


@register_job
class GroundTruthJob(Job):
    """A ground-truth table; one unit per trained architecture (its candidate and evaluation), on the workers."""

    method = METHOD
    unit = "arch"

    def __init__(self, config: GroundTruthConfig, context: JobContext) -> None:
        super().__init__(config, context)
        self.genotypes: list[NB201Genotype] = []
        self.results: dict[str, tuple[str, Any]] = {}
        self.seconds = 0.0

    @classmethod
    def config_from_dict(cls, data: Mapping[str, Any]) -> GroundTruthConfig:
        values = {k: data[k] for k in ("dataset", "archs", "output", "seed", "limit")}
        return GroundTruthConfig(**values, budget=TrainBudget(**data["budget"]))

    def prepare(self) -> None:
        self.genotypes = sample_architectures(self.config.archs, self.config.seed)

    def state_dict(self) -> dict[str, Any]:
        return {"done": len(self.results), "seconds": round(self.seconds, 3)}

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        self.seconds = float(state.get("seconds", 0.0)) if isinstance(state, Mapping) else 0.0
        for evaluation in self.store.list_evaluations(self.record.id):
            if evaluation.status == "ok":
                self.results[evaluation.key] = ("ok", evaluation.fitness)
            elif evaluation.status == "failed":
                self.results[evaluation.key] = ("failed", evaluation.error)

    def run(self, runner: Runner) -> GroundTruthTable:
        if self.context.executor_factory is None:
            raise JobError("a ground-truth job trains on workers; run it with an executor")
        births = {g.to_text(): birth for birth, g in enumerate(self.genotypes)}
        todo = [g for g in self.genotypes if g.to_text() not in self.results]
        started, before = time.monotonic(), self.seconds
        if todo:
            with self.context.executor_factory(preload=PRELOAD, recycle_every=None) as executor:
                pending: dict[Future[Any], NB201Genotype] = {}
                for genotype in todo:
                    request = EvalRequest(key=genotype.to_text(), fn=WORKER_FN, payload=self._payload(genotype))
                    pending[executor.submit(request)] = genotype
                while pending:
                    done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                    for future in done:
                        genotype = pending.pop(future)
                        self.seconds = before + time.monotonic() - started
                        self._record(runner, genotype, births[genotype.to_text()], future.result())
        table = table_from(self.config, self.results, self.seconds)
        write_table(table, self.config.output)
        return table

    def _payload(self, genotype: NB201Genotype) -> dict[str, Any]:
        config = self.config
        return {"arch": genotype.to_text(), "dataset": config.dataset, "budget": config.budget.to_dict(),
                "limit": config.limit}

    def _record(self, runner: Runner, genotype: NB201Genotype, birth: int, outcome: EvalOutcome) -> None:
        """The architecture's candidate and evaluation in one unit, then the table file from what is recorded."""
        result = outcome.result if outcome.ok and isinstance(outcome.result, dict) else {
            "status": "failed", "error": outcome.error or "no result"}
        store, job, arch = self.store, self.record, genotype.to_text()
        ok = result.get("status") == "ok"
        with runner.unit():
            candidate = store.add_candidate(job.id, kind="architecture", text=arch,
                                            hash=hashing.functional_hash(genotype), birth=birth,
                                            mutation="ground-truth sample")
            evaluation = store.add_evaluation(job.id, candidate, key=arch, task=self.config.task,
                                              seed=self.config.budget.seed)
            store.finish_evaluation(evaluation, status="ok" if ok else "failed",
                                    fitness=float(result["accuracy"]) if ok else None,
                                    metrics={k: v for k, v in result.items() if k not in ("status", "error")},
                                    error=None if ok else str(result.get("error")), wall_time=result.get("seconds"),
                                    attempts=getattr(outcome, "attempts", 0))
            self.results[arch] = ("ok", float(result["accuracy"])) if ok else ("failed", str(result.get("error")))
        write_table(table_from(self.config, self.results, self.seconds), self.config.output)

    def progress(self) -> tuple[int, int | None, dict[str, Any]]:
        accuracies = [value for status, value in self.results.values() if status == "ok"]
        failed = sum(status != "ok" for status, _ in self.results.values())
        best = f"{max(accuracies):.4f}" if accuracies else "-"
        return len(self.results), self.config.archs, {"failed": failed, "best": best}

    @classmethod
    def progress_of(cls, config: Mapping[str, Any], state: Mapping[str, Any]) -> tuple[int | None, int | None]:
        return int(state.get("done", 0)), int(config["archs"])

    def describe(self) -> str:
        config = self.config
        return (f"ground-truth job {self.record.name!r}: {config.archs} NB201 architectures (seed {config.seed}) "
                f"on {config.dataset}, {config.budget.epochs} epochs at C = {config.budget.C}; table "
                f"{config.output}; {len(self.results)} done")

    def report(self, result: GroundTruthTable) -> list[str]:
        return [f"wrote {self.config.output}: {len(result.accuracy)} architectures, {len(result.failed)} failed, "
                f"{result.metadata['seconds']:.0f}s of training"]


def output_path(path: str) -> str:
    """The table file a new job writes, absolute (the job may be resumed from elsewhere)."""
    return str(Path(path).resolve())
