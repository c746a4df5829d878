"""Optimizer programs: the language (parse/print), abstract execution, execution, simplification, mutation,
compilation to torch and export to ``torch.optim``.

A program is a straight-line function ``train(w, g, m, v, lr[, t]) -> (update, m, v)`` over the 45 primitives of
the Lion paper's search space; the caller applies ``w = w - update``.
"""

from __future__ import annotations

from programs.analysis import check, infer_types, is_valid
from programs.compile import CompiledProgram, compile
from programs.errors import ProgramError
from programs.execute import Plan, reference_step
from programs.mutation import Mutation, MutationConfig, mutate, mutate_with_info, random_program
from programs.parser import parse
from programs.primitives import PRIMITIVES
from programs.program import Program, Statement
from programs.simplify import SimplifyReport, redundancy_fraction, simplify, simplify_report

import programs.probe  # registers the probe runner with hashing  # noqa: E402,F401
from programs.lr_probe import LrScaling, lr_scaling, mutate_scaling, random_scaling_program  # noqa: E402

__all__ = [
    "CompiledProgram",
    "LrScaling",
    "Mutation",
    "MutationConfig",
    "PRIMITIVES",
    "Plan",
    "Program",
    "ProgramError",
    "SimplifyReport",
    "Statement",
    "check",
    "compile",
    "infer_types",
    "is_valid",
    "lr_scaling",
    "mutate",
    "mutate_scaling",
    "mutate_with_info",
    "parse",
    "random_program",
    "random_scaling_program",
    "redundancy_fraction",
    "reference_step",
    "simplify",
    "simplify_report",
]
