"""The meta-validation funnel (Chen et al. 2023): proxy → task at 10× → only those that beat AdamW → task at 100×.

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

The last stage, ``unseen`` (``UNSEEN``), is the meta-validation proper: tasks the search never used (``unseen_tasks``:
by default every built-in task of ``evaluators.TASKS``, base names only, that is not among the run's tasks). Every
entrant that reached it and AdamW get an lr sweep on each unseen task (at its proxy size) for each of ``seeds`` seeds
(the funnel's seed, +1, ...; key ``validate:c<id>:unseen:<task>:s<seed>``, study ``validate:<job>:<id>:unseen:<task>:
s<seed>``). Per task, the entrant's ratio to AdamW at the same seed is averaged over the seeds with a 95 % confidence
interval (Student's t over the seeds; a normal approximation, said so, if scipy is missing); a **win** is a mean
ratio strictly above 1 (the interval is shown beside it, so a win inside the noise is visible as one). An entrant
passes the stage when it wins at least half of the unseen tasks; its stage ``ratio`` is the geometric mean of its
per-task mean ratios, clipped as ``evaluators.normalized_fitness`` clips them. Every stage also reports each task's
own ratio (``StageOutcome.tasks``).
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
UNSEEN = "unseen"  # the final stage: tasks the search never used (always last)
ALL_STAGES = (*STAGES, UNSEEN)
DEFAULT_STAGES = ALL_STAGES  # `autodisco validate`'s default; FunnelConfig / ValidateConfig keep STAGES (as before)
DEFAULT_SEEDS = 3
WORKER_FN = "search.kinds.workers:tune_lr_sweep"
BASELINE = "adamw"  # programs.library name of the baseline
BASELINE_BIRTH = -1  # birth given to AdamW when the run never proposed it (search proposals count from 0)
SQLITE_TIMEOUT_S = 60.0  # how long a worker's Optuna connection waits for the SQLite write lock


class FunnelError(ValueError):
    """The funnel cannot run as asked (bad configuration, a run without results, a failing baseline)."""


@dataclass(frozen=True)
class FunnelConfig:
    """``k`` candidates from the proxy search, ``trials`` lr trials per sweep, the ``stages`` in order, the
    ``seed`` of every sweep (None: the job's seed); ``unseen``: the unseen stage's tasks (None: ``unseen_tasks``'s
    default), each swept at ``seeds`` seeds."""

    k: int = 5
    trials: int = 8
    stages: tuple[str, ...] = STAGES
    seed: int | None = None
    unseen: tuple[str, ...] | None = None
    seeds: int = DEFAULT_SEEDS

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        if self.unseen is not None:
            object.__setattr__(self, "unseen", tuple(self.unseen))
        if self.seeds < 1:
            raise FunnelError(f"--seeds (seeds per unseen task) must be at least 1, got {self.seeds}")
        if self.k < 1:
            raise FunnelError(f"-k (candidates to validate) must be at least 1, got {self.k}")
        if self.trials < 1:
            raise FunnelError(f"--trials (lr trials per sweep) must be at least 1, got {self.trials}")
        if not self.stages:
            raise FunnelError(f"--stages is empty; give some of {','.join(ALL_STAGES)}")
        unknown = [s for s in self.stages if s not in ALL_STAGES]
        if unknown:
            raise FunnelError(f"unknown stage {unknown[0]!r} in --stages; stages are {', '.join(ALL_STAGES)}")
        if len(set(self.stages)) != len(self.stages):
            raise FunnelError(f"--stages lists a stage twice: {','.join(self.stages)}")
        if UNSEEN in self.stages and self.stages[-1] != UNSEEN:
            raise FunnelError(f"--stages: {UNSEEN} must be the last stage, got {','.join(self.stages)}")
        if self.unseen is not None:
            if not self.unseen:
                raise FunnelError("--unseen is empty; give task names, or leave unseen out of --stages")
            bad = [t for t in self.unseen if not t or "@" in t]
            if bad:
                raise FunnelError(f"--unseen takes base task names (no @scale), got {bad[0]!r}")
            if len(set(self.unseen)) != len(self.unseen):
                raise FunnelError(f"--unseen lists a task twice: {','.join(self.unseen)}")


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
    seed: int | None = None


@dataclass(frozen=True)
class TaskRatio:
    """A candidate's ratio to AdamW on one task of a stage: ``ratio`` the mean over ``seeds`` (each seed's ratio to
    AdamW at that seed; None if a sweep failed), ``low``/``high`` its 95 % interval over the seeds (None with one
    seed), ``win`` iff ``ratio > 1``."""

    task: str
    ratio: float | None
    low: float | None
    high: float | None
    seeds: tuple[float | None, ...]
    win: bool


@dataclass(frozen=True)
class StageOutcome:
    """A candidate on one stage: ``ratio`` is its tuned fitness normalised by AdamW's (the aggregate over the stage's
    tasks, None if a sweep failed); ``passed`` iff ``ratio > 1`` (on the unseen stage: iff it wins at least half of
    the tasks). ``tasks``: each task's own ratio; ``wins``: how many of them are above 1."""

    stage: str
    status: str  # "ok" | "failed"
    ratio: float | None
    passed: bool
    sweeps: tuple[Sweep, ...]
    tasks: tuple[TaskRatio, ...] = ()
    wins: int = 0


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
    unseen: tuple[str, ...] = ()
    seeds: int = 1
    interval: str = ""  # how the unseen stage's 95 % intervals are computed (interval_method)

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
        self.unseen: tuple[str, ...] = unseen_tasks(self.tasks, config.unseen) if UNSEEN in config.stages else ()
        # with no unseen task left (the search used every built-in one) the stage has nothing to do: it is dropped
        self.stages = tuple(s for s in config.stages if s != UNSEEN or self.unseen)
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
            for stage in self.stages:
                if not alive:
                    break
                units = self._units(stage)
                sweeps = self._run_stage(stage, _unique([baseline, *alive]), units)
                baseline_sweeps[stage] = self._baseline_sweeps(stage, sweeps, baseline.id, units)
                scores = {(s.task, s.seed): s.fitness for s in baseline_sweeps[stage]}  # all ok
                for candidate in alive:
                    own = [sweeps[candidate.id, task, seed] for task, seed in units]
                    if stage == UNSEEN:
                        history[candidate.id].append(_judge_unseen(own, scores))
                    else:
                        history[candidate.id].append(_judge(stage, own, {t: f for (t, _), f in scores.items()}))
                alive = [c for c in alive if history[c.id][-1].passed]
        outcomes = tuple(self._outcome(r, history[r.candidate.id]) for r in ranked)
        return FunnelResult(job=self.job.name, tasks=self.tasks, stages=self.stages, trials=self.config.trials,
                            seed=self.seed, baseline_id=baseline.id, baseline=baseline_sweeps, candidates=outcomes,
                            unseen=self.unseen, seeds=self.config.seeds if self.unseen else 1,
                            interval=interval_method() if self.unseen else "")

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

    def _units(self, stage: str) -> list[tuple[str, int]]:
        """The (task, seed) sweeps every entrant of ``stage`` gets."""
        if stage == UNSEEN:
            return [(task, self.seed + i) for task in self.unseen for i in range(self.config.seeds)]
        return [(task, self.seed) for task in self._tasks_at(stage)]

    def _key(self, stage: str, candidate_id: int, task: str, seed: int) -> str:
        return unseen_key(candidate_id, task, seed) if stage == UNSEEN else evaluation_key(candidate_id, task)

    def _run_stage(self, stage: str, candidates: Sequence[CandidateRecord],
                   units: Sequence[tuple[str, int]]) -> dict[tuple[int, str, int], Sweep]:
        """Every (candidate, task, seed) sweep of ``stage``: recorded ones read back, the others run in parallel."""
        sweeps: dict[tuple[int, str, int], Sweep] = {}
        missing: list[tuple[CandidateRecord, str, int]] = []
        for candidate in candidates:
            for task, seed in units:
                recorded = self.store.get_evaluation(self.job.id, self._key(stage, candidate.id, task, seed))
                if recorded is not None and recorded.status in ("ok", "failed"):
                    self._check_settings(recorded, seed)
                    self._done(sweeps, _sweep_of(recorded, stage))
                else:
                    missing.append((candidate, task, seed))
        pending = {self._submit(stage, *unit): unit for unit in missing}
        for future in as_completed(pending):
            candidate, task, seed = pending[future]
            self._done(sweeps, self._record(candidate.id, stage, task, seed, future.result()))
        return sweeps

    def _submit(self, stage: str, candidate: CandidateRecord, task: str, seed: int) -> Future[EvalOutcome]:
        payload = {"program": candidate.text, "task": task, "n_trials": self.config.trials, "seed": seed,
                   "storage": self.storage, "study_name": self._study(stage, candidate.id, task, seed)}
        request = EvalRequest(key=self._key(stage, candidate.id, task, seed), fn=WORKER_FN, payload=payload)
        return self._executor_now().submit(request)

    def _check_settings(self, recorded: EvaluationRecord, seed: int) -> None:
        """A recorded sweep is reused only under the settings it ran with (it is recorded once, never twice)."""
        trials = (recorded.metrics or {}).get("n_trials")
        if recorded.seed != seed or trials != self.config.trials:
            raise FunnelError(f"candidate #{recorded.candidate_id} was validated on {recorded.task} with --seed "
                              f"{recorded.seed} --trials {trials}; sweeps are recorded once per candidate, stage and "
                              f"task, so re-run with those settings to resume (or validate in another database)")

    def _done(self, sweeps: dict[tuple[int, str, int], Sweep], sweep: Sweep) -> None:
        sweeps[sweep.candidate_id, sweep.task, int(sweep.seed if sweep.seed is not None else self.seed)] = sweep
        if self.on_sweep is not None:
            self.on_sweep(sweep)

    def _record(self, candidate_id: int, stage: str, task: str, seed: int, outcome: EvalOutcome) -> Sweep:
        """Record a finished sweep as the candidate's evaluation on ``task`` (one transaction) and return it."""
        result = outcome.result or {}
        ok = outcome.ok and result.get("status") == "ok" and _finite(result.get("fitness"))
        error = None if ok else (result.get("error") or outcome.error or "non-finite fitness")
        fitness = float(result["fitness"]) if ok else None
        lr = result.get("lr") if ok else None
        metrics = {"stage": stage, "lr": lr, "best": result.get("metrics") or {}, "trials": result.get("trials") or {},
                   "n_trials": self.config.trials, "study": self._study(stage, candidate_id, task, seed)}

        def write() -> None:
            key = self._key(stage, candidate_id, task, seed)
            with self.unit():
                evaluation_id = self.store.add_evaluation(self.job.id, candidate_id, key=key, task=task, seed=seed)
                self.store.finish_evaluation(evaluation_id, status="ok" if ok else "failed", fitness=fitness,
                                             metrics=metrics, error=error, worker=outcome.worker,
                                             wall_time=outcome.wall_time, attempts=outcome.attempts)

        write()  # the store waits for and retries a locked SQLite database itself
        return Sweep(candidate_id=candidate_id, stage=stage, task=task, status="ok" if ok else "failed",
                     fitness=fitness, lr=lr, error=error, resumed=False, seed=seed)

    def _baseline_sweeps(self, stage: str, sweeps: dict[tuple[int, str, int], Sweep], baseline_id: int,
                         units: Sequence[tuple[str, int]]) -> tuple[Sweep, ...]:
        found = tuple(sweeps[baseline_id, task, seed] for task, seed in units)
        for sweep in found:
            if sweep.status != "ok":
                raise FunnelError(f"the {BASELINE} baseline failed on {sweep.task} at seed {sweep.seed} "
                                  f"({sweep.error}); the funnel cannot "
                                  f"judge stage {stage} (try other --trials or --seed)")
        return found

    # -- naming ---------------------------------------------------------------------------------------------------

    def _tasks_at(self, stage: str) -> tuple[str, ...]:
        return scaled_tasks(self.tasks, stage)

    def study_name(self, candidate_id: int, task: str) -> str:
        """The Optuna study of a candidate's sweep on ``task`` (e.g. ``validate:lion-hunt:12:quadratic@10x``)."""
        return f"validate:{self.job.name}:{candidate_id}:{task}"

    def _study(self, stage: str, candidate_id: int, task: str, seed: int) -> str:
        """``study_name``; on the unseen stage ``validate:<job>:<id>:unseen:<task>:s<seed>``."""
        return self.study_name(candidate_id, f"{UNSEEN}:{task}:s{seed}" if stage == UNSEEN else task)

    def _executor_now(self) -> Executor:
        if self._executor is None:
            assert self._stack is not None, "the executor is only started inside run()"
            self._executor = self._stack.enter_context(self.executor_factory())
        return self._executor

    def _outcome(self, ranked: Ranked, stages: list[StageOutcome]) -> CandidateOutcome:
        last = stages[-1] if stages else None
        if last is not None and last.passed and len(stages) == len(self.stages):
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


def scaled_tasks(tasks: Iterable[str], stage: str) -> tuple[str, ...]:
    """A run's tasks at scale ``stage`` (``"10x"``), by base name and each once: a search that cascades to
    ``digits-cnn@10x`` is validated on ``digits-cnn@10x`` at 10x, not on ``digits-cnn@10x@10x``."""
    return tuple(dict.fromkeys(f"{task.split('@')[0]}@{stage}" for task in tasks))


def unseen_key(candidate_id: int, task: str, seed: int) -> str:
    """The store key of a candidate's unseen-stage sweep on ``task`` at ``seed``."""
    return f"validate:c{candidate_id}:{UNSEEN}:{task}:s{seed}"


def unseen_tasks(run_tasks: Iterable[str], requested: Iterable[str] | None = None) -> tuple[str, ...]:
    """The unseen stage's tasks for a search over ``run_tasks``: ``requested`` (checked: known tasks the search did
    not use), or by default every built-in task of ``evaluators.TASKS`` (base names, in registry order; plug-in tasks
    are never picked by default) whose base name is not among the run's tasks. May be empty."""
    from evaluators import TASKS, TaskError, get_task

    seen = {task.split("@")[0] for task in run_tasks}
    if requested is None:
        return tuple(name for name in TASKS if "@" not in name and name not in seen)
    chosen = tuple(requested)
    for task in chosen:
        if task in seen:
            raise FunnelError(f"--unseen {task}: the search used that task; unseen tasks must be new to it")
        try:
            get_task(task)
        except TaskError as error:
            raise FunnelError(f"--unseen: {error}") from None
    return chosen


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
    from evaluators.fitness import task_ratio

    tasks = []
    for s in sweeps:
        ratio = task_ratio(s.task, s.fitness, baseline)
        tasks.append(TaskRatio(task=s.task, ratio=ratio, low=None, high=None, seeds=(ratio,),
                               win=ratio is not None and ratio > 1.0))
    wins = sum(t.win for t in tasks)
    if any(s.status != "ok" for s in sweeps):
        return StageOutcome(stage=stage, status="failed", ratio=None, passed=False, sweeps=tuple(sweeps),
                            tasks=tuple(tasks), wins=wins)
    ratio = normalized_fitness({s.task: s.fitness for s in sweeps}, baseline)
    return StageOutcome(stage=stage, status="ok", ratio=ratio, passed=ratio > 1.0, sweeps=tuple(sweeps),
                        tasks=tuple(tasks), wins=wins)


def _judge_unseen(sweeps: Sequence[Sweep], baseline: dict[tuple[str, int | None], float | None]) -> StageOutcome:
    """The unseen stage: per task, the seeds' ratios to AdamW at the same seed, their mean and 95 % interval; a win
    is a mean above 1, the stage is passed with wins on at least half of the tasks (module docstring)."""
    from evaluators.fitness import MAX_RATIO, MIN_RATIO, task_ratio

    by_task: dict[str, list[Sweep]] = {}
    for s in sweeps:
        by_task.setdefault(s.task, []).append(s)
    tasks = []
    for task, own in by_task.items():
        ratios = tuple(task_ratio(task, s.fitness, {task: baseline[task, s.seed]}) for s in own)
        if any(r is None for r in ratios):
            tasks.append(TaskRatio(task=task, ratio=None, low=None, high=None, seeds=ratios, win=False))
            continue
        mean, low, high = mean_interval([float(r) for r in ratios if r is not None])
        tasks.append(TaskRatio(task=task, ratio=mean, low=low, high=high, seeds=ratios, win=mean > 1.0))
    wins = sum(t.win for t in tasks)
    passed = 2 * wins >= len(tasks)
    means = [t.ratio for t in tasks]
    logs = [math.log(MIN_RATIO if r is None else min(max(r, MIN_RATIO), MAX_RATIO)) for r in means]
    ratio = math.exp(sum(logs) / len(logs))
    status = "failed" if any(s.status != "ok" for s in sweeps) else "ok"
    return StageOutcome(stage=UNSEEN, status=status, ratio=ratio, passed=passed, sweeps=tuple(sweeps),
                        tasks=tuple(tasks), wins=wins)


def _t_quantile(df: int) -> tuple[float, str]:
    """The two-sided 95 % quantile with ``df`` degrees of freedom, and how it was found."""
    try:
        from scipy import stats
    except ImportError:  # scipy is a dependency; without it, say that the interval is only approximate
        return 1.959964, "normal approximation (1.96 standard errors; scipy missing)"
    return float(stats.t.ppf(0.975, df)), "Student's t over the seeds"


def interval_method() -> str:
    """How ``mean_interval`` computes its 95 % intervals here (scipy's t quantiles, else a normal approximation)."""
    return _t_quantile(2)[1]


def mean_interval(values: Sequence[float]) -> tuple[float, float | None, float | None]:
    """The mean of ``values`` and its 95 % confidence interval (t-interval; None bounds for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None, None
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    quantile, _ = _t_quantile(n - 1)
    half = quantile * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def _sweep_of(record: EvaluationRecord, stage: str) -> Sweep:
    metrics = record.metrics or {}
    return Sweep(candidate_id=record.candidate_id, stage=stage, task=record.task, status=record.status,
                 fitness=record.fitness, lr=metrics.get("lr"), error=record.error, resumed=True, seed=record.seed)


def _unique(candidates: Iterable[CandidateRecord]) -> list[CandidateRecord]:
    seen: dict[int, CandidateRecord] = {}
    for candidate in candidates:
        seen.setdefault(candidate.id, candidate)
    return list(seen.values())


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
