"""``validate``: the meta-validation funnel (``search.funnel``) over an optimizer search's best candidates, as a job.

The job is recorded beside the search it validates, in the same database, named ``<search job>/validate``
(``validation_name``); ``jobs.config`` holds ``method: "validate"``, the searched job's name (``target``) and the
funnel's settings. Its sweeps are evaluations of the *search* job's candidates (task ``T@<stage>``, see
``search.funnel``; on the unseen stage the unseen task at one of several seeds), each written with the validate
job's checkpoint (``{"sweeps": N}``) in one transaction.
``autodisco resume RUN`` continues an interrupted validation (recorded sweeps are read back, a half-done Optuna study
goes on); ``autodisco validate RUN`` on a finished one reads every sweep back and prints the table again.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from search.funnel import (
    DEFAULT_SEEDS, STAGES, UNSEEN, Funnel, FunnelConfig, FunnelResult, Sweep, scaled_tasks, unseen_tasks,
)
from search.jobs._base import Job, JobContext, JobError
from search.jobs._registry import register_job
from search.jobs._runner import Runner

METHOD = "validate"
PRELOAD = ("torch", "optuna", "evaluators", "search.kinds.workers")


def validation_name(target: str) -> str:
    """The name of the validate job of the search job ``target``."""
    return f"{target}/{METHOD}"


@dataclass(frozen=True)
class ValidateConfig:
    """Validate the search job ``target`` with the funnel's settings (``search.funnel.FunnelConfig``)."""

    target: str
    k: int = 5
    trials: int = 8
    stages: tuple[str, ...] = STAGES  # the CLI's default adds the unseen stage (search.funnel.DEFAULT_STAGES)
    seed: int | None = None
    unseen: tuple[str, ...] | None = None  # None: search.funnel.unseen_tasks's default (the CLI stores them resolved)
    seeds: int = DEFAULT_SEEDS

    def funnel(self) -> FunnelConfig:
        return FunnelConfig(k=self.k, trials=self.trials, stages=tuple(self.stages), seed=self.seed,
                            unseen=None if self.unseen is None else tuple(self.unseen), seeds=self.seeds)


@register_job
class ValidateJob(Job):
    """The funnel; one unit per lr sweep."""

    method = METHOD
    kind = "optimizer"
    unit = "sweep"
    own_progress_lines = True

    def __init__(self, config: ValidateConfig, context: JobContext) -> None:
        super().__init__(config, context)
        self.sweeps = 0

    @classmethod
    def config_from_dict(cls, data: Mapping[str, Any]) -> ValidateConfig:
        unseen = data.get("unseen")  # absent in validations recorded before the unseen stage existed
        if unseen is not None and not isinstance(unseen, list):
            raise JobError(f"the stored unseen tasks are not a list: {unseen!r}")
        config = ValidateConfig(str(data["target"]), int(data["k"]), int(data["trials"]), tuple(data["stages"]),
                                None if data["seed"] is None else int(data["seed"]),
                                None if unseen is None else tuple(str(t) for t in unseen),
                                int(data.get("seeds", DEFAULT_SEEDS)))
        config.funnel()  # FunnelError (a ValueError) for edited settings
        return config

    @classmethod
    def seed_of(cls, config: ValidateConfig) -> int:
        return int(config.seed or 0)

    def prepare(self) -> None:
        self.config.funnel()
        target = self.store.get_job(self.config.target)
        if target is None:
            raise JobError(f"no job {self.config.target!r} to validate in this database")
        from evaluators import get_task

        tasks = target.config.get("tasks") if isinstance(target.config, Mapping) else None
        for stage in self.config.stages:
            if stage != UNSEEN:
                for task in scaled_tasks(tasks or (), stage):
                    get_task(task)  # TaskError before any worker starts (a plug-in task without scales)
        if UNSEEN in self.config.stages:
            unseen_tasks(tasks or (), self.config.unseen)  # FunnelError: an unknown task, or one the search used

    def state_dict(self) -> dict[str, Any]:
        return {"sweeps": self.sweeps}

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        self.sweeps = int(state.get("sweeps", 0)) if isinstance(state, Mapping) else 0

    def run(self, runner: Runner) -> FunnelResult:
        if self.context.executor_factory is None:
            raise JobError("the validation funnel runs its sweeps on workers; run it with an executor")
        factory = self.context.executor_factory
        target = self.store.get_job(self.config.target)
        assert target is not None

        @contextmanager
        def unit() -> Iterator[None]:
            self.sweeps += 1
            try:
                with runner.unit():
                    yield
            except BaseException:
                self.sweeps -= 1
                raise

        funnel = Funnel(self.store, target, self.config.funnel(), lambda: factory(preload=PRELOAD, recycle_every=None),
                        on_sweep=self._say, unit=unit)
        config = self.config
        runner.status(f"validating the top {config.k} of {config.target!r} against AdamW, stage {config.stages[0]} "
                      f"first: the workers start, then each sweep ({config.trials} lr trials) prints a line as it "
                      "finishes")
        return funnel.run()

    def read_back(self) -> FunnelResult:
        """The finished funnel's result from its recorded sweeps alone (no worker, no new row)."""
        target = self.store.get_job(self.config.target)
        assert target is not None

        def no_executor() -> Any:
            raise JobError(f"job {self.record.name!r} is finished but misses a sweep; the database was edited")

        return Funnel(self.store, target, self.config.funnel(), no_executor, on_sweep=self._say).run()

    def progress(self) -> tuple[int, int | None, dict[str, Any]]:
        return self.sweeps, None, {}

    @classmethod
    def progress_of(cls, config: Mapping[str, Any], state: Mapping[str, Any]) -> tuple[int | None, int | None]:
        return int(state.get("sweeps", 0)), None

    def describe(self) -> str:
        config = self.config
        unseen = ""
        if UNSEEN in config.stages:
            names = "the built-in tasks the search did not use" if config.unseen is None else ",".join(config.unseen)
            unseen = f" (unseen: {names or 'none left'}, {config.seeds} seeds each)"
        return (f"validation of {config.target!r}: top {config.k}, {config.trials} lr trials per sweep, stages "
                f"{','.join(config.stages)}{unseen}; {self.sweeps} sweeps recorded")

    def report(self, result: FunnelResult) -> list[str]:
        from search.cli._validate import report  # the table is the CLI's (jobs do not format tables)

        return [report(result)]

    def _say(self, sweep: Sweep) -> None:
        where = f"validate {sweep.stage}: #{sweep.candidate_id} on {sweep.task}"
        if sweep.stage == UNSEEN:
            where += f" (seed {sweep.seed})"
        failed = f"failed ({sweep.error})"
        what = f"fitness {sweep.fitness:.6g} at lr {sweep.lr:.3g}" if sweep.status == "ok" else failed
        self.context.say(f"{where}: {what}{' (recorded earlier)' if sweep.resumed else ''}")
