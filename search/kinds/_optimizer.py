"""Optimizer programs as engine candidates: ``OptimizerKind``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from search.kinds._base import KINDS, CandidateKind


@dataclass(frozen=True)
class OptimizerKind(CandidateKind[Any]):
    """Optimizer programs (``programs.Program``); evaluated on proxy tasks, fitness normalised by AdamW's."""

    fcm: bool = True  # re-mutate until the child's functional hash differs from the parent's

    name = "optimizer"
    worker_fn = "search.kinds.workers:evaluate_optimizer"
    fitness_meaning = "AdamW = 1.0"
    preload = ("torch", "search.kinds.workers", "evaluators")

    @classmethod
    def from_job_config(cls, config: Mapping[str, Any]) -> OptimizerKind:
        return cls(fcm=bool(config.get("fcm", True)))

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
        from programs import MutationConfig, mutate_with_info

        child, mutation = mutate_with_info(candidate, rng, MutationConfig(fcm=self.fcm))
        return child, mutation.detail

    def next_step(self, run: str, candidate_id: int) -> str | None:
        return f"export it: autodisco export {run} {candidate_id} -o my_optimizer.py"

    def baseline(self) -> Any:
        from programs import library

        return library.get("adamw")

    def simplify(self, candidate: Any) -> Any:
        from programs import simplify

        return simplify(candidate)

    def random_candidate(self, rng: np.random.Generator) -> Any:
        from programs import random_program

        return random_program(rng, int(rng.integers(3, 13)))

    def payload(self, candidate: Any, *, seed: int, context: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "program": candidate.to_text(),
            "tasks": list(context["tasks"]),
            "baselines": dict(context.get("baselines") or {}),
            "seed": int(seed),
            "lr": context.get("lr"),
        }


KINDS[OptimizerKind.name] = OptimizerKind
