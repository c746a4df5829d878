"""Optimizer programs as engine candidates: ``OptimizerKind``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from search.kinds._base import KINDS, CandidateKind


@dataclass(frozen=True)
class OptimizerKind(CandidateKind[Any]):
    """Optimizer programs (``programs.Program``); evaluated on proxy tasks, fitness normalised by AdamW's."""

    fcm: bool = True  # re-mutate until the child's functional hash differs from the parent's
    # fitness (README "Fitness that survives tuning"): reject children whose update does not scale with lr unless
    # lr_free; score each task at its best lr of base lr x lr_grid; aggregate per-task ratios with evaluators.fitness
    lr_free: bool = False
    lr_grid: tuple[float, ...] = (1.0,)
    aggregate: str = "geomean"
    # cascade (README "Hurdles"): with several tasks, the next task is trained only while the aggregate ratio to
    # AdamW over the tasks so far is at least this; None trains every task
    hurdle: float | None = None

    name = "optimizer"
    worker_fn = "search.kinds.workers:evaluate_optimizer"
    fitness_meaning = "AdamW = 1.0"
    preload = ("torch", "search.kinds.workers", "evaluators")

    @classmethod
    def from_job_config(cls, config: Mapping[str, Any]) -> OptimizerKind:
        options = dict(config.get("kind_options") or {})
        if "aggregate" not in options:  # a job stored before these options: it goes on with the fitness it began with
            options = {"lr_free": True, "aggregate": "mean", **options}
        return cls(fcm=bool(config.get("fcm", True)), **{k: options[k] for k in _OPTIONS if k in options})

    def __post_init__(self) -> None:  # no evaluators import here: it loads torch, and read-only commands build kinds
        try:
            grid = tuple(sorted({float(x) for x in self.lr_grid}))
        except (TypeError, ValueError):
            grid = ()
        if not grid or not all(0 < x < math.inf for x in grid) or self.aggregate not in ("geomean", "mean"):
            raise ValueError(f"an optimizer search needs an lr grid of positive multipliers and the aggregate 'geomean' "
                             f"or 'mean', got {self.lr_grid!r:.60} and {self.aggregate!r:.20}")
        object.__setattr__(self, "lr_grid", grid)
        if self.hurdle is not None:
            if isinstance(self.hurdle, bool) or not isinstance(self.hurdle, (int, float)) or \
                    not 0 < self.hurdle < math.inf:
                raise ValueError(f"a hurdle is a positive ratio to AdamW (e.g. 0.9), got {self.hurdle!r:.40}")
            object.__setattr__(self, "hurdle", float(self.hurdle))

    def options(self) -> dict[str, Any]:
        """The settings stored as the job's ``kind_options`` (``from_job_config`` reads them back; fcm aside)."""
        return {"lr_free": bool(self.lr_free), "lr_grid": list(self.lr_grid), "aggregate": self.aggregate,
                "hurdle": self.hurdle}

    def check_tasks(self, tasks: tuple[str, ...]) -> None:
        from evaluators.plugins import check

        for task in tasks:
            # TaskError (a ValueError) names the known tasks; a plug-in is resolved and built once (on resume too:
            # PluginError, one line, if it no longer imports or builds)
            check(task)

    def parse(self, text: str) -> Any:
        from programs import parse

        return parse(text)

    def to_text(self, candidate: Any) -> str:
        return candidate.to_text()

    def functional_hash(self, candidate: Any) -> str:
        from hashing import functional_hash

        return functional_hash(candidate)

    def mutate(self, candidate: Any, rng: np.random.Generator) -> tuple[Any, str]:
        from programs import MutationConfig, mutate_scaling

        child, mutation = mutate_scaling(candidate, rng, MutationConfig(fcm=self.fcm), allow_lr_free=self.lr_free)
        return child, mutation.detail

    def next_step(self, run: str, candidate_id: int) -> str | None:
        return f"export it: autodisco export {run} {candidate_id} -o my_optimizer.py"

    def baseline(self) -> Any:
        from programs import library

        return library.get("adamw")

    def simplify(self, candidate: Any) -> Any:
        from programs import simplify

        return simplify(candidate)

    cost_meaning = "optimizer state buffers"

    def cost(self, candidate: Any) -> float:
        """The state buffers (``m``, ``v``) the program really carries: its memory beyond the weights, in units of
        the weights' size (AdamW 2, Lion 1, SGD 0)."""
        from programs.simplify import simplify_report

        return float(simplify_report(candidate).buffers)

    def random_candidate(self, rng: np.random.Generator) -> Any:
        from programs import random_scaling_program

        return random_scaling_program(rng, allow_lr_free=self.lr_free, statements=(3, 13))

    def payload(self, candidate: Any, *, seed: int, context: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "program": candidate.to_text(),
            "tasks": list(context["tasks"]),
            "baselines": dict(context.get("baselines") or {}),
            "seed": int(seed),
            "lr": context.get("lr"),
            "lr_grid": list(self.lr_grid),
            "aggregate": self.aggregate,
            "hurdle": self.hurdle,
        }


_OPTIONS = ("lr_free", "lr_grid", "aggregate", "hurdle")


KINDS[OptimizerKind.name] = OptimizerKind
