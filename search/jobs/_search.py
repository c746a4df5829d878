"""The search job: the long-lived loop ask → functional hash → FEC lookup → dispatch → record → tell.

Crash safety comes from the runner: an ask records its candidate and its pending evaluation (or its cache hit) as one
unit, a result records the finished evaluation as one unit, each with the job's checkpoint (strategy state, cache
counters, RNG states) in the same transaction; the FEC cache's entries are upserted in that transaction as they change.
After a kill at any moment, resume reloads the last checkpoint, re-dispatches the evaluations that were pending, and
finishes the budget exactly: nothing recorded is lost or recorded twice.

In-flight dedup (with a cache): a candidate whose functional hash is being evaluated already (sent, or waiting to be
sent, alone or in a batch) is not evaluated again. Its evaluation row stays pending and *waits*; when the first one's
result is recorded, the waiters are recorded in the same transaction as cache hits of it and told to the strategy.
A waiter pending when the job stopped waits again on resume (the first of the pending evaluations of a hash is
re-dispatched, the others wait for it), so it still gets its result and nothing is evaluated or recorded twice.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterator, Mapping

import numpy as np

from hashing import CacheAction, CachePolicy, FECache
from search.executor import EvalOutcome, EvalRequest, Executor
from search.jobs._batching import AUTO, Batcher, auto_batch, batch_function, check_batch
from search.jobs._base import Job, JobContext, JobError
from search.jobs._registry import register_job
from search.jobs._runner import Runner
from search.kinds import KINDS, CandidateKind
from search.store._open import describe
from search.strategies import (
    NSGA2, NSGA2Config, RandomSearch, RegularizedEvolution, RegularizedEvolutionConfig, Strategy, StrategyError,
)

STRATEGIES = ("evolution", "random", "nsga2")
CACHE_FAILURE = -math.inf  # fitness the cache keeps for candidates whose evaluation failed


@dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a search job; stored as the job's config and reused on resume."""

    tasks: tuple[str, ...] = ("mnist1d-mlp",)
    strategy: str = "evolution"
    population: int = 100
    tournament: int = 2
    evaluations: int | None = 200
    hours: float | None = None
    seed: int = 0
    warm_start: tuple[str, ...] = ()  # candidate texts (resolved by the CLI from names or files)
    fcm: bool = True
    cache: str = "plain"  # plain | aggregating | forgetful | off
    cache_samples: int = 3  # aggregating: evaluations averaged per functional hash
    cache_forget: float = 0.1  # forgetful: probability of forgetting an entry on a hit
    plateau_restart: int | None = None
    islands: int = 1  # evolution: the population split into islands (RegularizedEvolutionConfig)
    migration_interval: int | None = None  # evolution with islands: results between migrations (None: never)
    lr: float | None = None
    max_candidates_per_evaluation: int = 50  # stop asking if cache hits alone go on this long
    batch: int | str = 1  # evaluations per worker request (search.jobs._batching); "auto": evaluators.max_batch
    kind_options: dict[str, Any] = field(default_factory=dict)  # the kind's settings: CandidateKind.from_job_config

    def __post_init__(self) -> None:
        _check_types(self)  # a stored config (resume) may have been edited: check what argparse checks for search
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "warm_start", tuple(self.warm_start))
        if not self.tasks or not all(isinstance(t, str) for t in self.tasks):
            raise JobError("give at least one task (--task)")
        if self.strategy not in STRATEGIES:
            raise JobError(f"unknown strategy {self.strategy!r}; choose from {', '.join(STRATEGIES)}")
        if self.evaluations is None and self.hours is None:
            raise JobError("give a budget: --evaluations N or --hours H")
        if self.evaluations is not None and (not isinstance(self.evaluations, int) or self.evaluations <= 0):
            raise JobError(f"--evaluations must be a positive integer, got {self.evaluations!r}")
        if self.hours is not None and not (isinstance(self.hours, (int, float)) and self.hours > 0):
            raise JobError(f"--hours must be positive, got {self.hours!r}")
        if self.population < 1 or self.tournament < 1:
            raise JobError("--population and --tournament must be at least 1")
        if self.tournament > self.population:
            raise JobError(f"--tournament ({self.tournament}) cannot exceed --population ({self.population})")
        if self.cache not in ("plain", "aggregating", "forgetful", "off"):
            raise JobError(f"unknown cache policy {self.cache!r}; choose plain, aggregating, forgetful or off")
        if self.strategy in ("evolution", "nsga2") and not self.warm_start:
            raise JobError(f"{self.strategy} needs a warm start (e.g. --warm-start adamw)")
        if self.islands != 1 or self.migration_interval is not None:
            if self.strategy != "evolution":
                raise JobError("--islands and --migration-interval are for --strategy evolution")
            try:
                RegularizedEvolutionConfig(population_size=self.population, tournament_size=self.tournament,
                                           islands=self.islands, migration_interval=self.migration_interval)
            except StrategyError as error:
                raise JobError(f"--islands {self.islands}: {error}") from None
        try:
            check_batch(self.batch)
        except ValueError as error:
            raise JobError(str(error)) from None

        if self.cache_samples < 1 or not 0.0 <= self.cache_forget <= 1.0 or self.max_candidates_per_evaluation < 1:
            raise JobError("cache_samples and max_candidates_per_evaluation must be >= 1, cache_forget in [0, 1]")
        if self.seed < 0 or (self.plateau_restart is not None and self.plateau_restart < 1):
            raise JobError(f"--seed must be >= 0 and --plateau-restart >= 1, got {self.seed}, {self.plateau_restart}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise JobError(f"--lr must be a positive number, got {self.lr!r}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SearchConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        try:
            return cls(**known)
        except TypeError as error:
            raise JobError(f"the stored search configuration is malformed: {error}") from None

    def cache_policy(self) -> CachePolicy | None:
        if self.cache == "off":
            return None
        if self.cache == "aggregating":
            return CachePolicy.aggregating(self.cache_samples)
        if self.cache == "forgetful":
            return CachePolicy.forgetful(self.cache_forget)
        return CachePolicy.plain()


@dataclass
class _Flight:
    evaluation_id: int
    candidate_id: int
    proposal_id: int
    hash: str


@dataclass
class _Asked:
    """A candidate asked in the current unit; ``hit`` (a cache hit's result), ``payload`` (to dispatch) or neither
    (its hash is being evaluated: it waits for that result)."""

    proposal_id: int
    text: str
    hash: str
    parent_ids: tuple[int, ...]
    mutation: str
    seed: int
    hit: dict[str, Any] | None = None
    payload: dict[str, Any] | None = None


@dataclass
class JobSummary:
    """What a run of the loop achieved (the store has the details)."""

    status: str
    evaluations: int
    candidates: int
    cache_hits: int
    failed: int
    best_fitness: float | None
    best_candidate_id: int | None
    best_text: str | None
    elapsed_s: float
    extra: dict[str, Any] = field(default_factory=dict)


@register_job
class SearchJob(Job):
    """A search over a ``CandidateKind`` (optimizer programs or architectures); the only writer of its rows.

    The context's ``executor_factory`` builds the executor when the loop starts (workers are started per run). Create
    one with ``SearchJob.create``; on resume the candidate kind is rebuilt from the job's row and config
    (``CandidateKind.from_job_config``).
    """

    method = "search"
    unit = "eval"
    # CPython's collector runs a young collection every 700 net allocations and, every 100 of those (once a quarter
    # as many objects as it holds have survived since the last), a full one that walks every tracked object. A search
    # driver keeps half a million alive (torch's import alone leaves ~165k; then the hash memo's programs, the cached
    # plans, the FEC cache's entries) and a proposal allocates hundreds that live a while in those caches: with the
    # defaults a full collection took 0.5 s at 20,000 results, and the collector 0.31 ms per result over the first
    # 30,000 (a sixth of the driver); with these 0.04 ms, at the same peak memory (the driver makes little cyclic
    # garbage). Its workers are other processes, with their own.
    gc_thresholds = (50_000, 20, 10)

    def __init__(self, config: SearchConfig, context: JobContext, kind: CandidateKind[Any] | None = None) -> None:
        super().__init__(config, context)
        if kind is None:
            kind_type = KINDS.get(context.record.kind)
            if kind_type is None:
                raise JobError(f"job {context.record.name!r} searches {context.record.kind!r} candidates; known: "
                               f"{', '.join(KINDS)}")
            kind = kind_type.from_job_config(config.to_json())
        self.kind: CandidateKind[Any] = kind

        self.strategy = self._new_strategy()
        policy = config.cache_policy()
        self.cache = None if policy is None else FECache(policy, np.random.default_rng([config.seed, 1]))
        self.context_values: dict[str, Any] = {"tasks": list(config.tasks), "lr": config.lr, "baselines": None}
        self.elapsed_before = 0.0
        self.started = time.monotonic()
        self.candidate_by_birth: dict[int, int] = {}
        self.runs = 0  # evaluations run (ok + failed), cache hits excluded
        self.failed = 0  # of those, failed
        self.inflight: dict[Future[EvalOutcome], _Flight | list[_Flight]] = {}  # a list: one batch request
        self.batcher: Batcher | None = None  # with --batch, built when the loop starts (auto needs the workers)
        self.logged = 0  # strategy logbook records already in the store
        self._asked: list[_Asked] = []  # asked in the current unit, rows not yet written
        self._unwritten: set[int] = set()  # their proposal ids
        self._queued: list[tuple[_Flight, dict[str, Any]]] = []  # recorded, to dispatch once the unit commits
        # in-flight dedup: hash -> the candidates waiting for its evaluation, for every hash being evaluated
        self._evaluating: dict[str, list[_Flight]] = {}

    @classmethod
    def create(cls, store: Any, name: str, kind: CandidateKind[Any], config: SearchConfig,
               **context: Any) -> SearchJob:
        """A new search job of ``kind`` (see ``create_job``); ``context``: the other ``JobContext`` fields."""
        from search.jobs._registry import create_job

        # the kind's settings are part of the job: a resume rebuilds the same kind from them
        config = replace(config, kind_options={**config.kind_options, **kind.options()})
        job = create_job(store, name, cls, config, kind=kind.name, factory=lambda c, ctx: cls(c, ctx, kind), **context)
        assert isinstance(job, SearchJob)
        return job

    # -- configuration --------------------------------------------------------------------------------------------

    @classmethod
    def config_from_dict(cls, data: Mapping[str, Any]) -> SearchConfig:
        return SearchConfig.from_json(data)

    @classmethod
    def config_to_dict(cls, config: SearchConfig) -> dict[str, Any]:
        return {"method": cls.method, **config.to_json()}

    def prepare(self) -> None:
        self.kind.check_tasks(self.config.tasks)
        if self.config.strategy == "nsga2" and self.kind.cost_meaning is None:
            raise JobError(f"--strategy nsga2 needs a cost objective, which {self.kind.name} candidates do not have")
        if self.config.batch != 1 and batch_function(self.kind.worker_fn) is None:
            raise JobError(f"{self.kind.name} candidates are evaluated one at a time; --batch is for optimizers")
        for text in self.config.warm_start:
            self.kind.parse(text)  # a malformed warm start (or stored config) fails here, before anything runs

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        if state is None:
            raise JobError(f"job {self.record.name!r} has no checkpoint to resume from")
        candidates = self.store.list_candidates(self.record.id)
        self._load_state(state, {c.birth: c.text for c in candidates})
        self.candidate_by_birth = {c.birth: c.id for c in candidates}
        counts = self.store.counts(self.record.id, task=self.search_task)
        self.runs, self.failed = counts.evaluations, counts.failed

    def describe(self) -> str:
        config = self.config
        budget = f"{config.evaluations} evaluations" if config.evaluations else f"{config.hours} h"
        return (f"job {self.record.name!r}: {config.strategy} search of {self.kind.name}s on "
                f"{', '.join(config.tasks)}, budget {budget}; results in {describe(self.store.url)}")

    # -- the loop -------------------------------------------------------------------------------------------------

    def run(self, runner: Runner) -> JobSummary:
        """Run until the budget is spent."""
        self.started = time.monotonic()
        if self.context.executor_factory is None:
            raise JobError("a search job needs an executor")
        with self.context.executor_factory(preload=self.kind.preload) as executor:
            runner.status(f"{executor.num_workers} worker{'s' if executor.num_workers != 1 else ''} starting (each "
                          "loads torch and the task before its first evaluation)")
            baseline = self.kind.baseline()
            if self.context_values["baselines"] is None and baseline is not None:
                self._measure_baselines(runner, executor, baseline)
            self.batcher = self._new_batcher(executor)
            self._redispatch(executor)
            done: set[Future[EvalOutcome]] = set()
            while True:
                self._advance(runner, executor, done)
                if not self.inflight:
                    break
                done, _ = wait(list(self.inflight), timeout=0.5, return_when=FIRST_COMPLETED)
                runner.show_progress()
        return self.summary("finished")

    def _advance(self, runner: Runner, executor: Executor, done: set[Future[EvalOutcome]]) -> None:
        """Record the results that arrived together and ask for the candidates that refill the workers, all in one
        unit (one transaction, one checkpoint; the new rows written in bulk); then dispatch the new evaluations, once
        they are recorded."""
        finished: list[tuple[_Flight, EvalOutcome]] = []
        # in the order they were dispatched, not the set's (memory addresses): results that arrive together are
        # told to the strategy in the same order in every run
        popped = [(self.inflight.pop(future), future) for future in done]
        popped.sort(key=lambda item: (item[0][0] if isinstance(item[0], list) else item[0]).evaluation_id)
        for flights, future in popped:
            if isinstance(flights, list):  # a batch: one outcome per candidate, in request order
                keys = [f"c{flight.candidate_id}" for flight in flights]
                finished.extend(zip(flights, Batcher.split(future.result(), flights, keys)))
            else:
                finished.append((flights, future.result()))
        if not finished and not self._ask_more(executor):
            if self.batcher is not None:
                self.batcher.dispatch(self, executor, final=not self._can_ask())
            return
        with self._unit(runner):
            self._record(finished)
            while self._ask_more(executor):
                self._ask()
            self._write_asked()
        queued, self._queued = self._queued, []
        for flight, payload in queued:
            self._submit(executor, flight, payload)
        if self.batcher is not None:  # full batches go; a short one only once nothing more can be asked
            self.batcher.dispatch(self, executor, final=not self._can_ask())

    @contextmanager
    def _unit(self, runner: Runner) -> Iterator[None]:
        """A unit of the runner; the FEC cache's changed entries and the strategy's new logbook records are written
        in its transaction too (the checkpoint keeps neither: it stays small however long the run)."""
        with runner.unit():
            yield
            if self.cache is not None:
                changes = self.cache.drain_changes()
                self.store.save_cache_entries(self.record.id, {k: v for k, v in changes.items() if v is not None})
                self.store.delete_cache_entries(self.record.id, [k for k, v in changes.items() if v is None])
            logbook = self.strategy.logbook
            if len(logbook) > self.logged:
                self.store.append_logbook(self.record.id, self.logged, logbook[self.logged:])
                self.logged = len(logbook)

    def _ask_more(self, executor: Executor) -> bool:
        """Whether to ask for another candidate: until every worker has a request (with ``--batch K``: a full batch)
        in flight or waiting, and while the budget allows."""
        waiting = len(self._queued) + sum(a.payload is not None for a in self._asked)
        capacity = executor.num_workers * (self.batcher.size if self.batcher is not None else 1)
        return self._evaluations_in_flight() + waiting < capacity and self._can_ask(waiting)

    def _new_batcher(self, executor: Executor) -> Batcher | None:
        size, fn = self.config.batch, batch_function(self.kind.worker_fn)
        if size == AUTO:
            size = auto_batch(self.config.tasks, self.config.population, executor.num_workers)
        return None if size == 1 or fn is None else Batcher(int(size), fn)

    def _evaluations_in_flight(self) -> int:
        """Evaluations sent (a batch counts its candidates) or waiting in a batch not yet sent."""
        sent = sum(len(f) if isinstance(f, list) else 1 for f in self.inflight.values())
        return sent + (len(self.batcher.pending) if self.batcher is not None else 0)

    def _can_ask(self, waiting: int = 0) -> bool:
        config = self.config
        if config.hours is not None and self.elapsed() >= config.hours * 3600:
            return False
        if config.evaluations is not None:
            if self.runs + self._evaluations_in_flight() + waiting >= config.evaluations:
                return False
            if len(self.candidate_by_birth) + len(self._asked) >= config.evaluations * config.max_candidates_per_evaluation:
                return False
        return True

    def _ask(self) -> None:
        """Ask for one candidate (inside the caller's unit): a cache hit is told at once, anything else waits for
        dispatch; its rows are written with the unit's others by ``_write_asked``."""
        proposal = self.strategy.ask()
        if any(p in self._unwritten for p in proposal.parent_ids):
            self._write_asked()  # its parent was asked in this unit: the parent's row (and id) comes first
        digest = self.kind.functional_hash(proposal.candidate)
        waits = self.cache is not None and digest in self._evaluating  # in-flight dedup: no lookup, no evaluation
        decision = self.cache.lookup(digest) if self.cache is not None and not waits else None
        seed = self.config.seed + (decision.count if decision is not None else 0)
        asked = _Asked(proposal.id, self.kind.to_text(proposal.candidate), digest, proposal.parent_ids,
                       proposal.mutation, seed)
        if decision is not None and decision.action == CacheAction.HIT:
            failed = decision.fitness is None or not math.isfinite(decision.fitness)
            asked.hit = {"status": "cached", "fitness": None if failed else decision.fitness,
                         "metrics": dict(decision.metrics or {}),
                         "error": "an equivalent candidate failed" if failed else None}
            self._tell(proposal.id, None if failed else decision.fitness)
        elif not waits:  # a waiter is recorded as a cache hit when the evaluation of its hash is
            asked.payload = self.kind.payload(proposal.candidate, seed=seed, context=self.context_values)
            if self.cache is not None:
                self._evaluating[digest] = []
        self._asked.append(asked)
        self._unwritten.add(proposal.id)

    def _write_asked(self) -> None:
        """Write the candidates asked since the last call and their evaluations, the cache hits' already finished:
        a few statements however many."""
        asked, self._asked = self._asked, []
        self._unwritten.clear()
        if not asked:
            return
        candidate_ids = self.store.add_candidates(self.record.id, [
            {"kind": self.kind.name, "text": a.text, "hash": a.hash, "mutation": a.mutation, "birth": a.proposal_id,
             "parent_ids": [self.candidate_by_birth[p] for p in a.parent_ids if p in self.candidate_by_birth]}
            for a in asked])
        for a, candidate_id in zip(asked, candidate_ids):
            self.candidate_by_birth[a.proposal_id] = candidate_id
        evaluation_ids = self.store.add_evaluations(self.record.id, [  # cache hits are written finished
            {"candidate_id": c, "key": f"c{c}", "task": self.search_task, "seed": a.seed, **(a.hit or {})}
            for a, c in zip(asked, candidate_ids)])
        for a, c, e in zip(asked, candidate_ids, evaluation_ids):
            if a.payload is not None:
                self._queued.append((_Flight(e, c, a.proposal_id, a.hash), a.payload))
            elif a.hit is None:
                self._evaluating[a.hash].append(_Flight(e, c, a.proposal_id, a.hash))

    def _submit(self, executor: Executor, flight: _Flight, payload: dict[str, Any]) -> None:
        if self.batcher is not None:
            self.batcher.add(flight, payload, f"c{flight.candidate_id}")
            return
        request = EvalRequest(key=f"c{flight.candidate_id}", fn=self.kind.worker_fn, payload=payload)
        self.inflight[executor.submit(request)] = flight

    def _redispatch(self, executor: Executor) -> None:
        """Send again the evaluations that were in flight when the job last stopped."""
        for record in self.store.unfinished_evaluations(self.record.id):
            candidate = self.store.get_candidate(record.candidate_id)
            flight = _Flight(record.id, candidate.id, candidate.birth, candidate.hash)
            if self.cache is not None:  # the first pending evaluation of a hash is sent again; the others wait
                if candidate.hash in self._evaluating:
                    self._evaluating[candidate.hash].append(flight)
                    continue
                self._evaluating[candidate.hash] = []
            payload = self.kind.payload(self.kind.parse(candidate.text), seed=record.seed, context=self.context_values)
            self._submit(executor, flight, payload)
        if self.batcher is not None:  # the batches that were in flight, sent again whole
            self.batcher.flush(self, executor)

    def _record(self, finished: list[tuple[_Flight, EvalOutcome]]) -> None:
        """Record finished evaluations (inside the caller's unit, in one statement), then the candidates that waited
        for them as cache hits (one more), and tell the strategy."""
        rows, told = [], []
        for flight, outcome in finished:
            result = outcome.result or {}
            task_ran = outcome.ok and result.get("status") in ("ok", "failed")
            ok = task_ran and result.get("status") == "ok" and _finite(result.get("fitness"))
            fitness = float(result["fitness"]) if ok else None
            error = None if ok else (result.get("error") or outcome.error or "non-finite fitness")
            rows.append({"evaluation_id": flight.evaluation_id, "status": "ok" if ok else "failed", "fitness": fitness,
                         "metrics": _recorded_metrics(result) if task_ran else None, "error": error,
                         "worker": outcome.worker, "wall_time": outcome.wall_time, "attempts": outcome.attempts})
            told.append((flight, ok, task_ran, fitness, error))
        waiters: list[tuple[_Flight, dict[str, Any]]] = []
        for (flight, ok, task_ran, fitness, error), recorded in zip(
                told, self.store.finish_evaluations(self.record.id, rows)):
            if recorded:
                self.runs += 1
                self.failed += not ok
                if self.cache is not None and task_ran:  # executor failures (timeouts, crashes) are not cached
                    self.cache.record(flight.hash, fitness if ok else CACHE_FAILURE)
                self._tell(flight.proposal_id, fitness)
            waiting = self._evaluating.pop(flight.hash, None)
            if waiting:
                hit = self._hit_for(flight.hash, task_ran, error)
                waiters.extend((waiter, hit) for waiter in waiting)
        recorded_waiters = self.store.finish_evaluations(
            self.record.id, [{"evaluation_id": waiter.evaluation_id, **hit} for waiter, hit in waiters])
        for (waiter, hit), recorded in zip(waiters, recorded_waiters):
            if recorded:
                self._tell(waiter.proposal_id, hit["fitness"])

    def _hit_for(self, digest: str, task_ran: bool, error: str | None) -> dict[str, Any]:
        """The cache-hit row of a candidate that waited for the evaluation of ``digest``, just recorded: the cache's
        entry for it (the running mean under ``--cache aggregating``), or that evaluation's failure."""
        entry = self.cache.get(digest) if self.cache is not None and task_ran else None
        if entry is None or not math.isfinite(entry.fitness):
            return {"status": "cached", "fitness": None, "metrics": {},
                    "error": f"an equivalent candidate failed ({error})" if error else "an equivalent candidate failed"}
        return {"status": "cached", "fitness": entry.fitness, "metrics": dict(entry.metrics), "error": None}

    def _measure_baselines(self, runner: Runner, executor: Executor, baseline: Any) -> None:
        """The baseline's raw fitness on each task (optimizers: AdamW's): the denominators of the normalised fitness."""
        started = time.monotonic()
        runner.status(f"measuring the baseline ({self.kind.fitness_meaning}) on {', '.join(self.config.tasks)}")
        futures = {task: executor.submit(EvalRequest(
            key=f"baseline:{task}", fn=self.kind.worker_fn,
            payload=self.kind.payload(baseline, seed=self.config.seed, context={**self.context_values, "tasks": [task]})))
            for task in self.config.tasks}
        baselines = {}
        for task, future in futures.items():
            outcome = future.result()
            result = outcome.result or {}
            if not outcome.ok or result.get("status") != "ok":
                reason = result.get("error") or outcome.error
                raise JobError(f"the baseline ({self.kind.fitness_meaning}) failed on task {task!r}: {reason}")
            baselines[task] = float(result["fitness"])
        self.context_values["baselines"] = baselines
        measured = ", ".join(f"{task} {fitness:.6g}" for task, fitness in baselines.items())
        runner.status(f"baseline measured in {time.monotonic() - started:.1f} s ({measured}); searching")
        with self._unit(runner):
            pass

    # -- state ----------------------------------------------------------------------------------------------------

    def elapsed(self) -> float:
        return self.elapsed_before + (time.monotonic() - self.started)

    def state_dict(self) -> dict[str, Any]:
        """The strategy, the cache's counters and RNG (its entries live in ``cache_entries``), the baselines, the
        elapsed time."""
        return {
            # candidates by proposal id (= birth: their texts are rows of the candidates table), logbook by length
            "strategy": self.strategy.state_dict(texts=False, logbook=False),
            "cache": None if self.cache is None else self.cache.to_dict(entries=False),
            "context": self.context_values,
            "elapsed_s": self.elapsed(),
        }

    def _load_state(self, state: dict[str, Any], texts: Mapping[int, str]) -> None:
        strategy = state["strategy"]
        logbook = self.store.load_logbook(self.record.id) if "logbook" not in strategy else None
        self.strategy.load_state_dict(strategy, texts=texts, logbook=logbook)
        self.logged = len(self.strategy.logbook) if logbook is not None else 0
        if self.cache is not None and state.get("cache") is not None:
            self.cache = FECache.from_dict(state["cache"], entries=self.store.load_cache_entries(self.record.id))
        self.context_values = dict(state["context"])
        self.elapsed_before = float(state.get("elapsed_s", 0.0))

    def _new_strategy(self) -> Strategy[Any]:
        config, kind = self.config, self.kind
        codec = {"to_text": kind.to_text, "from_text": kind.parse}
        if config.strategy == "random":
            return RandomSearch(kind.random_candidate, config.seed, **codec)
        initial = [kind.parse(text) for text in config.warm_start]
        if config.strategy == "nsga2":  # (fitness, cost): maximise the one, minimise the other
            return NSGA2(NSGA2Config(population_size=config.population, weights=(1.0, -1.0)), initial, kind.mutate,
                         config.seed, **codec)
        evolution = RegularizedEvolutionConfig(population_size=config.population, tournament_size=config.tournament,
                                               plateau_restart=config.plateau_restart, islands=config.islands,
                                               migration_interval=config.migration_interval)
        return RegularizedEvolution(evolution, initial, kind.mutate, config.seed, **codec)

    def _tell(self, proposal_id: int, fitness: float | None) -> None:
        """Tell the strategy a result; NSGA-II gets ``(fitness, cost)`` (e.g. optimizer state buffers)."""
        if fitness is not None and self.config.strategy == "nsga2":
            self.strategy.tell(proposal_id, (fitness, self.kind.cost(self.strategy.proposal(proposal_id).candidate)))
        else:
            self.strategy.tell(proposal_id, fitness)

    # -- reporting ------------------------------------------------------------------------------------------------

    def progress(self) -> tuple[int, int | None, dict[str, Any]]:
        return self.runs, self.config.evaluations, self._status_fields()

    @classmethod
    def progress_of(cls, config: Mapping[str, Any], state: Mapping[str, Any]) -> tuple[int | None, int | None]:
        evaluations = config.get("evaluations")
        return None, None if evaluations is None else int(evaluations)  # done: the evaluations the store counts

    def report(self, result: JobSummary) -> list[str]:
        lines = [f"finished: {result.evaluations} evaluations, {result.cache_hits} cache hits, {result.failed} failed, "
                 f"{result.candidates} candidates in {result.elapsed_s:.0f} s"]
        if result.best_text is not None:
            lines.append(f"best fitness {result.best_fitness:.4f} ({self.kind.fitness_meaning}), "
                         f"candidate #{result.best_candidate_id}:")
            lines.append(result.best_text.rstrip())
            run = str(self.context.run_dir) if self.context.run_dir is not None else self.record.name
            note = self.kind.next_step(run, result.best_candidate_id)
            if note is not None:
                lines.append(note + self.db_option())
        return lines

    def _status_fields(self) -> dict[str, Any]:
        stats = self.cache.stats if self.cache is not None else None
        best = self.strategy.best
        return {
            "candidates": len(self.candidate_by_birth),
            "hit_rate": None if stats is None else stats.hit_rate,
            "best": None if best is None else _first(best.fitness),
            "best_id": None if best is None else self.candidate_by_birth.get(best.id),
            "failed": self.failed,
        }

    @property
    def search_task(self) -> str:
        """The task string of this job's own evaluations (``autodisco validate`` records others)."""
        return "+".join(self.config.tasks)

    def summary(self, status: str) -> JobSummary:
        counts = self.store.counts(self.record.id, task=self.search_task)
        best = self.strategy.best
        return JobSummary(
            status=status, evaluations=counts.evaluations, candidates=counts.candidates,
            cache_hits=counts.cache_hits, failed=counts.failed,
            best_fitness=None if best is None else _first(best.fitness),
            best_candidate_id=None if best is None else self.candidate_by_birth.get(best.id),
            best_text=None if best is None else self.kind.to_text(self.kind.simplify(best.candidate)),
            elapsed_s=self.elapsed(), extra={"baselines": self.context_values.get("baselines")})


def _recorded_metrics(result: Mapping[str, Any]) -> dict[str, Any]:
    """An evaluation's metrics as stored: per task, the raw scores, and where the kind cascades its tasks (hurdles)
    how far the candidate went."""
    metrics = {"tasks": result.get("metrics"), "scores": result.get("scores")}
    if result.get("hurdle") is not None:
        metrics["hurdle"] = result["hurdle"]
    return metrics


def _first(fitness: float | tuple[float, ...]) -> float:
    """The fitness of a member (NSGA-II members carry (fitness, cost))."""
    return float(fitness[0]) if isinstance(fitness, tuple) else float(fitness)


_INTS = ("population", "tournament", "islands", "seed", "cache_samples", "max_candidates_per_evaluation")
_OPTIONAL_INTS = ("evaluations", "plateau_restart", "migration_interval")
_OPTIONAL_NUMBERS = ("hours", "lr")


def _check_types(config: SearchConfig) -> None:
    """``JobError`` naming the first field whose value has the wrong type (bools are not numbers here)."""
    def bad(name: str, wanted: str) -> JobError:
        return JobError(f"search configuration: {name} must be {wanted}, got {getattr(config, name)!r:.60}")

    def is_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    for name in _INTS + _OPTIONAL_INTS:
        value = getattr(config, name)
        if not is_int(value) and not (value is None and name in _OPTIONAL_INTS):
            raise bad(name, "an integer")
    for name in _OPTIONAL_NUMBERS + ("cache_forget",):
        value = getattr(config, name)
        if not (is_int(value) or isinstance(value, float)) and not (value is None and name != "cache_forget"):
            raise bad(name, "a number")
    for name in ("strategy", "cache"):
        if not isinstance(getattr(config, name), str):
            raise bad(name, "a string")
    if not isinstance(config.fcm, bool):
        raise bad("fcm", "true or false")
    for name in ("tasks", "warm_start"):
        value = getattr(config, name)
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or \
                not all(isinstance(item, str) for item in value):
            raise bad(name, "a list of strings")
    if not isinstance(config.kind_options, Mapping):
        raise bad("kind_options", "an object")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
