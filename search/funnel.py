"""The meta-validation funnel (PAPERS.md §1): proxy → task at 10× → only those that beat AdamW → task at 100×.

The top-k candidates of a run's proxy search (one per functional hash) and AdamW enter the first stage. On each stage
every entrant gets, for each of the run's tasks ``T``, an Optuna lr sweep on ``T@<stage>`` (``evaluators.tune_lr``:
log-uniform lr over the task's ``lr_range``, a TPE sampler seeded with the funnel's seed, every trial at that same
seed, so all candidates are compared on the same data, initialisation and first lrs). A candidate goes on to the
next stage only if its tuned fitness, normalised by AdamW's tuned fitness (``evaluators.normalized_fitness``, AdamW
= 1.0), is strictly greater than 1.0.

Everything lives in the run's database: each sweep is recorded as an evaluation of its candidate (task
``T@<stage>``, key ``validate:c<id>:T@<stage>``) and its Optuna study (``validate:<job>:<id>:T@<stage>``) sits in
the same database through Optuna's RDB storage. Re-running the funnel reads recorded sweeps back instead of running
them again, and a sweep interrupted half-way resumes its study: nothing is recorded twice.
"""

from __future__ import annotations

import math
from concurrent.futures import Future, as_completed
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Sequence


from search.executor import EvalOutcome, EvalRequest, Executor
from search.store import CandidateRecord, EvaluationRecord, JobRecord, Ranked, Store

STAGES = ("10x", "100x")  # the task scales evaluators.TASKS defines for every proxy task
WORKER_FN = "search.kinds.workers:tune_lr_sweep"
BASELINE = "adamw"  # programs.library name of the baseline
BASELINE_BIRTH = -1  # birth given to AdamW when the run never proposed it (search proposals count from 0)
SQLITE_TIMEOUT_S = 60.0  # how long a worker's Optuna connection waits for the SQLite write lock


class FunnelError(ValueError):
    """The funnel cannot run as asked (bad configuration, a run without results, a failing baseline)."""


@dataclass(frozen=True)
class FunnelConfig:
    """``k`` candidates from the proxy search, ``trials`` lr trials per sweep, the ``stages`` in order, the
    ``seed`` of every sweep (None: the job's seed)."""

    k: int = 5
    trials: int = 8
    stages: tuple[str, ...] = STAGES
    seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        if self.k < 1:
            raise FunnelError(f"-k (candidates to validate) must be at least 1, got {self.k}")
        if self.trials < 1:
            raise FunnelError(f"--trials (lr trials per sweep) must be at least 1, got {self.trials}")
        if not self.stages:
            raise FunnelError(f"--stages is empty; give some of {','.join(STAGES)}")
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown:
            raise FunnelError(f"unknown stage {unknown[0]!r} in --stages; stages are {', '.join(STAGES)}")
        if len(set(self.stages)) != len(self.stages):
            raise FunnelError(f"--stages lists a stage twice: {','.join(self.stages)}")


@dataclass(frozen=True)
class Sweep:
    """One lr sweep: ``candidate_id`` on ``task`` (e.g. ``quadratic@10x``) at ``stage``. ``fitness`` is the best
    trial's raw task fitness (None if failed), ``lr`` its base lr; ``resumed``: read back from the store."""

    candidate_id: int
    stage: str
    task: str
    status: str  # "ok" | "failed"
    fitness: float | None
    lr: float | None
    error: str | None
    resumed: bool


@dataclass(frozen=True)
class StageOutcome:
    """A candidate on one stage: ``ratio`` is its tuned fitness normalised by AdamW's (mean over the run's tasks,
    None if a sweep failed); ``passed`` iff ``ratio > 1``."""

    stage: str
    status: str  # "ok" | "failed"
    ratio: float | None
    passed: bool
    sweeps: tuple[Sweep, ...]


@dataclass(frozen=True)
class CandidateOutcome:
    """How far one candidate went: ``verdict`` is "passed" (every stage), "stopped" or "failed" at ``stages[-1]``."""

    candidate_id: int
    hash: str
    proxy_fitness: float
    stages: tuple[StageOutcome, ...]
    verdict: str


@dataclass(frozen=True)
class FunnelResult:
    """The funnel's outcome. ``baseline`` maps each stage run to AdamW's sweeps on it."""

    job: str
    tasks: tuple[str, ...]
    stages: tuple[str, ...]
    trials: int
    seed: int
    baseline_id: int
    baseline: dict[str, tuple[Sweep, ...]]
    candidates: tuple[CandidateOutcome, ...]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Funnel:
    """Runs the funnel of one optimizer job; the only writer of its validation evaluations.

    ``executor_factory`` is called at most once, and only if some sweep is not recorded yet. ``on_sweep`` is called
    with every sweep as it finishes (or is read back). ``unit``: the transaction each sweep's rows are written in
    (default ``store.transaction``; the validate job passes its runner's ``unit``, which adds its checkpoint). Ctrl-C
    stops the workers; what finished stays recorded.
    """

    def __init__(self, store: Store, job: JobRecord, config: FunnelConfig,
                 executor_factory: Callable[[], Executor], *, on_sweep: Callable[[Sweep], None] | None = None,
                 unit: Callable[[], ContextManager[Any]] | None = None) -> None:
        if job.kind != "optimizer":
            raise FunnelError(f"job {job.name!r} searched {job.kind}s; the funnel validates optimizers")
        tasks = (job.config or {}).get("tasks")
        if not tasks:
            raise FunnelError(f"job {job.name!r} has no tasks in its config; is it an optimizer search job?")
        self.store, self.job, self.config = store, job, config
        self.tasks: tuple[str, ...] = tuple(tasks)
        self.seed = job.seed if config.seed is None else config.seed
        self.storage = optuna_storage_url(store)
        self.executor_factory = executor_factory
        self.on_sweep = on_sweep
        self.unit = unit or store.transaction  # the validate job's runner.unit: the sweep's rows and its checkpoint
        self._stack: ExitStack | None = None
        self._executor: Executor | None = None

    # -- the funnel -----------------------------------------------------------------------------------------------

    def run(self) -> FunnelResult:
        """Run every stage (see the module docstring); ``FunnelError`` if AdamW's own sweep fails on a stage."""
        ranked = self.entrants()
        baseline = self.baseline_candidate()
        prepare_optuna_storage(self.storage)
        history: dict[int, list[StageOutcome]] = {r.candidate.id: [] for r in ranked}
        baseline_sweeps: dict[str, tuple[Sweep, ...]] = {}
        alive = [r.candidate for r in ranked]
        with ExitStack() as stack:
            self._stack, self._executor = stack, None
            for stage in self.config.stages:
                if not alive:
                    break
                sweeps = self._run_stage(stage, _unique([baseline, *alive]))
                baseline_sweeps[stage] = self._baseline_sweeps(stage, sweeps, baseline.id)
                scores = {s.task: s.fitness for s in baseline_sweeps[stage] if s.fitness is not None}  # all ok
                for candidate in alive:
                    own = [sweeps[candidate.id, task] for task in self._tasks_at(stage)]
                    history[candidate.id].append(_judge(stage, own, scores))
                alive = [c for c in alive if history[c.id][-1].passed]
        outcomes = tuple(self._outcome(r, history[r.candidate.id]) for r in ranked)
        return FunnelResult(job=self.job.name, tasks=self.tasks, stages=self.config.stages, trials=self.config.trials,
                            seed=self.seed, baseline_id=baseline.id, baseline=baseline_sweeps, candidates=outcomes)

    def entrants(self) -> list[Ranked]:
        """The top-k of the proxy search (evaluations on the job's own task), one per functional hash."""
        proxy = "+".join(self.tasks)
        ranked = self.store.top_k(self.job.id, self.config.k, task=proxy)
        if not ranked:
            raise FunnelError(f"job {self.job.name!r} has no successful evaluation on {proxy} yet; "
                              "run or resume the search first")
        return ranked

    def baseline_candidate(self) -> CandidateRecord:
        """AdamW as a candidate of the job: the run's own if it evaluated one that behaves the same, else added."""
        from programs import library
        from search.kinds import OptimizerKind

        found = baseline_of(self.store, self.job)
        if found is not None:
            return found
        program = library.get(BASELINE)
        digest = OptimizerKind().functional_hash(program)
        candidate_id = self.store.add_candidate(self.job.id, kind="optimizer", text=program.to_text(), hash=digest,
                                                mutation="AdamW, baseline of the validation funnel",
                                                birth=BASELINE_BIRTH)
        return self.store.get_candidate(candidate_id)

    # -- one stage ------------------------------------------------------------------------------------------------

    def _run_stage(self, stage: str, candidates: Sequence[CandidateRecord]) -> dict[tuple[int, str], Sweep]:
        """Every (candidate, task) sweep of ``stage``: recorded ones read back, the others run in parallel."""
        sweeps: dict[tuple[int, str], Sweep] = {}
        missing: list[tuple[CandidateRecord, str]] = []
        for candidate in candidates:
            for task in self._tasks_at(stage):
                recorded = self.store.get_evaluation(self.job.id, evaluation_key(candidate.id, task))
                if recorded is not None and recorded.status in ("ok", "failed"):
                    self._check_settings(recorded)
                    self._done(sweeps, _sweep_of(recorded, stage))
                else:
                    missing.append((candidate, task))
        pending = {self._submit(candidate, task): (candidate, task) for candidate, task in missing}
        for future in as_completed(pending):
            candidate, task = pending[future]
            self._done(sweeps, self._record(candidate.id, stage, task, future.result()))
        return sweeps

    def _submit(self, candidate: CandidateRecord, task: str) -> Future[EvalOutcome]:
        payload = {"program": candidate.text, "task": task, "n_trials": self.config.trials, "seed": self.seed,
                   "storage": self.storage, "study_name": self.study_name(candidate.id, task)}
        request = EvalRequest(key=evaluation_key(candidate.id, task), fn=WORKER_FN, payload=payload)
        return self._executor_now().submit(request)

    def _check_settings(self, recorded: EvaluationRecord) -> None:
        """A recorded sweep is reused only under the settings it ran with (it is recorded once, never twice)."""
        trials = (recorded.metrics or {}).get("n_trials")
        if recorded.seed != self.seed or trials != self.config.trials:
            raise FunnelError(f"candidate #{recorded.candidate_id} was validated on {recorded.task} with --seed "
                              f"{recorded.seed} --trials {trials}; sweeps are recorded once per candidate, stage and "
                              f"task, so re-run with those settings to resume (or validate in another database)")

    def _done(self, sweeps: dict[tuple[int, str], Sweep], sweep: Sweep) -> None:
        sweeps[sweep.candidate_id, sweep.task] = sweep
        if self.on_sweep is not None:
            self.on_sweep(sweep)

    def _record(self, candidate_id: int, stage: str, task: str, outcome: EvalOutcome) -> Sweep:
        """Record a finished sweep as the candidate's evaluation on ``task`` (one transaction) and return it."""
        result = outcome.result or {}
        ok = outcome.ok and result.get("status") == "ok" and _finite(result.get("fitness"))
        error = None if ok else (result.get("error") or outcome.error or "non-finite fitness")
        fitness = float(result["fitness"]) if ok else None
        lr = result.get("lr") if ok else None
        metrics = {"stage": stage, "lr": lr, "best": result.get("metrics") or {}, "trials": result.get("trials") or {},
                   "n_trials": self.config.trials, "study": self.study_name(candidate_id, task)}

        def write() -> None:
            key = evaluation_key(candidate_id, task)
            with self.unit():
                evaluation_id = self.store.add_evaluation(self.job.id, candidate_id, key=key, task=task, seed=self.seed)
                self.store.finish_evaluation(evaluation_id, status="ok" if ok else "failed", fitness=fitness,
                                             metrics=metrics, error=error, worker=outcome.worker,
                                             wall_time=outcome.wall_time, attempts=outcome.attempts)

        write()  # the store waits for and retries a locked SQLite database itself
        return Sweep(candidate_id=candidate_id, stage=stage, task=task, status="ok" if ok else "failed",
                     fitness=fitness, lr=lr, error=error, resumed=False)

    def _baseline_sweeps(self, stage: str, sweeps: dict[tuple[int, str], Sweep], baseline_id: int) -> tuple[Sweep, ...]:
        found = tuple(sweeps[baseline_id, task] for task in self._tasks_at(stage))
        for sweep in found:
            if sweep.status != "ok":
                raise FunnelError(f"the {BASELINE} baseline failed on {sweep.task} ({sweep.error}); the funnel cannot "
                                  f"judge stage {stage} (try other --trials or --seed)")
        return found

    # -- naming ---------------------------------------------------------------------------------------------------

    def _tasks_at(self, stage: str) -> tuple[str, ...]:
        return tuple(f"{task}@{stage}" for task in self.tasks)

    def study_name(self, candidate_id: int, task: str) -> str:
        """The Optuna study of a candidate's sweep on ``task`` (e.g. ``validate:lion-hunt:12:quadratic@10x``)."""
        return f"validate:{self.job.name}:{candidate_id}:{task}"

    def _executor_now(self) -> Executor:
        if self._executor is None:
            assert self._stack is not None, "the executor is only started inside run()"
            self._executor = self._stack.enter_context(self.executor_factory())
        return self._executor

    def _outcome(self, ranked: Ranked, stages: list[StageOutcome]) -> CandidateOutcome:
        last = stages[-1] if stages else None
        if last is not None and last.passed and len(stages) == len(self.config.stages):
            verdict = "passed"
        else:
            verdict = "failed" if last is not None and last.status == "failed" else "stopped"
        return CandidateOutcome(candidate_id=ranked.candidate.id, hash=ranked.candidate.hash,
                                proxy_fitness=float(ranked.evaluation.fitness or math.nan), stages=tuple(stages),
                                verdict=verdict)


def baseline_of(store: Store, job: JobRecord) -> CandidateRecord | None:
    """The job's candidate that behaves as AdamW (the funnel's baseline), if it has one."""
    from programs import library
    from search.kinds import OptimizerKind

    digest = OptimizerKind().functional_hash(library.get(BASELINE))
    return next((c for c in store.first_by_hash(job.id, digest, limit=1) if c.hash == digest), None)


def evaluation_key(candidate_id: int, task: str) -> str:
    """The store key of a candidate's sweep on ``task``: one per (candidate, stage, task)."""
    return f"validate:c{candidate_id}:{task}"


def optuna_storage_url(store: Store) -> str:
    """The store's database as a URL worker processes can open: absolute SQLite path with a lock wait."""
    url = store.url
    if url.get_backend_name() != "sqlite":
        return url.render_as_string(hide_password=False)
    if url.database in (None, "", ":memory:") or "mode=memory" in str(url):
        raise FunnelError("the funnel needs a database file or server: Optuna studies cannot share an in-memory "
                          "SQLite database with worker processes")
    path = Path(url.database or "").resolve()
    url = url.set(database=str(path)).update_query_dict({"timeout": f"{SQLITE_TIMEOUT_S:g}"})
    return url.render_as_string(hide_password=False)


def prepare_optuna_storage(url: str) -> None:
    """Create Optuna's tables once, in the driver, so that workers starting together never race to create them."""
    import optuna

    storage = optuna.storages.RDBStorage(url)
    storage.engine.dispose()


def _judge(stage: str, sweeps: Sequence[Sweep], baseline: dict[str, float]) -> StageOutcome:
    from evaluators import normalized_fitness

    if any(s.status != "ok" for s in sweeps):
        return StageOutcome(stage=stage, status="failed", ratio=None, passed=False, sweeps=tuple(sweeps))
    ratio = normalized_fitness({s.task: s.fitness for s in sweeps}, baseline)
    return StageOutcome(stage=stage, status="ok", ratio=ratio, passed=ratio > 1.0, sweeps=tuple(sweeps))


def _sweep_of(record: EvaluationRecord, stage: str) -> Sweep:
    metrics = record.metrics or {}
    return Sweep(candidate_id=record.candidate_id, stage=stage, task=record.task, status=record.status,
                 fitness=record.fitness, lr=metrics.get("lr"), error=record.error, resumed=True)


def _unique(candidates: Iterable[CandidateRecord]) -> list[CandidateRecord]:
    seen: dict[int, CandidateRecord] = {}
    for candidate in candidates:
        seen.setdefault(candidate.id, candidate)
    return list(seen.values())


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
