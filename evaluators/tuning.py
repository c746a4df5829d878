"""Learning-rate tuning of the meta-validation funnel, with Optuna.

Each candidate that reaches a bigger task gets its base lr tuned (Chen et al. 2023: searched programs carry their own
scale, e.g. Lion wants a 3–10× smaller lr than AdamW): a log-uniform lr, a seeded TPE sampler, one evaluation per
trial at the same seed. Studies live in an Optuna RDB storage (the results database's URL), so they survive the
process and can be inspected with Optuna's tools.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

from evaluators.errors import EvaluationFailed
from evaluators.evaluate import evaluate_program
from evaluators.tasks import get_task
from programs import parse

def tune_lr(
    program_text: str,
    task: str,
    n_trials: int,
    seed: int,
    storage: str | None = None,
    study_name: str | None = None,
    *,
    lr_range: tuple[float, float] | None = None,
    device: str = "cpu",
    cache_dir: Path | str | None = None,
) -> tuple[float, dict[str, Any]]:
    """Search the base lr of ``program_text`` on ``task``; return ``(best_lr, best_metrics)``.

    ``lr`` is drawn log-uniformly from ``lr_range`` (default: the task's ``lr_range``) by ``TPESampler(seed)``;
    every trial evaluates at ``seed``. A failed evaluation is recorded as a FAIL trial with its reason in the
    user attribute ``error`` (metrics of completed trials are in ``metrics``). With ``storage`` (an RDB URL) and
    ``study_name`` an existing study is resumed: only the trials still missing from ``n_trials`` are run, and trials
    a killed process left RUNNING are marked FAIL and redone. The study name should identify (program, task, seed);
    one process tunes a given study at a time.
    Raises ``ProgramError``/``TaskError`` for bad input, and ``EvaluationFailed`` if no trial succeeded.
    """
    program = parse(program_text)
    spec = get_task(task)
    low, high = lr_range if lr_range is not None else spec.lr_range
    if not 0 < low < high:
        raise ValueError(f"lr_range must satisfy 0 < low < high, got {(low, high)}")
    if n_trials < 1:
        raise ValueError(f"n_trials must be at least 1, got {n_trials}")
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(1, n_trials // 2)))
    study = optuna.create_study(
        storage=storage, study_name=study_name, direction="maximize", sampler=sampler, load_if_exists=True
    )

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", low, high, log=True)
        try:
            metrics = evaluate_program(program, spec, seed=seed, lr=lr, device=device, cache_dir=cache_dir)
        except EvaluationFailed as failure:
            trial.set_user_attr("error", failure.reason)
            raise
        trial.set_user_attr("metrics", metrics)
        return float(metrics["fitness"])

    _fail_interrupted(study)
    study.optimize(objective, n_trials=max(0, n_trials - _evaluated(study)), catch=(EvaluationFailed,))
    return _best(study, task)


def _fail_interrupted(study: optuna.Study) -> None:
    """Mark trials left RUNNING by a killed process as FAIL (one process tunes a study at a time)."""
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)


def _evaluated(study: optuna.Study) -> int:
    """Trials that finished their evaluation (completed, or failed with a reason); interrupted ones are redone."""
    return sum("metrics" in t.user_attrs or "error" in t.user_attrs for t in study.get_trials(deepcopy=False))


def _best(study: optuna.Study, task: str) -> tuple[float, dict[str, Any]]:
    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not completed:
        errors = [t.user_attrs.get("error", "interrupted") for t in study.trials]
        first = errors[0] if errors else "none"
        raise EvaluationFailed(f"all {len(errors)} lr trials failed on {task}; first: {first}")
    best = study.best_trial
    return float(best.params["lr"]), dict(best.user_attrs["metrics"])
