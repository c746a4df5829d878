"""The proxy tasks: a registry ``TASKS`` of name → ``Task`` (data, model, budget, default lr, fitness).

Every base task comes with meta-validation variants ``<name>@10x`` and ``<name>@100x`` (Chen et al. 2023, Lion, funnel
selection): the model is widened and the run lengthened so that model compute × steps grows about 10× and 100×.
``get_task(name)`` also resolves the user's own tasks (``evaluators.plugins``): ``my_pkg.tasks:my_task`` (a module
and a ``Task`` in it, made with ``evaluators.user_task``) or the name of an ``autodisco.tasks`` entry point, each with
its ``@scale`` variants when the task defines them; it raises ``TaskError`` (a ``ValueError``) listing the known names
for anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from evaluators.errors import TaskError
from evaluators.models import ModelSpec

ACCURACY = "accuracy"  # fitness = validation accuracy
NEG_LOSS = "neg_loss"  # fitness = -validation loss (for regression, or where accuracy saturates)


@dataclass(frozen=True)
class Task:
    """A proxy task. ``evaluators.train`` runs it; everything random in it flows from the evaluation's seed.

    - ``dataset``: a name in ``evaluators.data.DATASETS``; ``n_val`` examples of it are held out for validation.
    - ``model``: what to train; ``steps`` × ``batch_size`` is the budget.
    - ``base_lr``: the default base learning rate (AdamW's good value); the schedule is linear warm-up over
      ``warmup`` steps, then cosine decay to 0.
    - ``fitness``: ``ACCURACY`` or ``NEG_LOSS``; higher is better either way.
    - ``lr_range``: the log-uniform range ``tune_lr`` searches.
    - ``diverge_factor``: a minibatch loss above this multiple of the first step's loss counts as divergence.
    - ``make_data``, ``make_model``, ``scales``: a plug-in task's own data and model (``evaluators.user_task``
      makes them; ``dataset`` and ``model`` are then placeholders) and its ``@scale`` variants as
      ``(scale, width multiplier, steps multiplier)``; None / empty for the built-in tasks.
    """

    name: str
    dataset: str
    model: ModelSpec
    steps: int
    batch_size: int
    base_lr: float
    n_val: int
    fitness: str = ACCURACY
    warmup: int = 0
    lr_range: tuple[float, float] = (1e-5, 1.0)
    diverge_factor: float = 100.0
    make_data: Callable[[int], Any] | None = None
    make_model: Callable[..., Any] | None = None
    scales: tuple[tuple[str, int, int], ...] = ()

    def __post_init__(self) -> None:
        assert self.fitness in (ACCURACY, NEG_LOSS), f"fitness must be {ACCURACY!r} or {NEG_LOSS!r}"
        assert 0 <= self.warmup < self.steps, "warm-up must be shorter than the run"

    @property
    def base_name(self) -> str:
        """The name without its scale suffix (``mnist1d-mlp@10x`` → ``mnist1d-mlp``)."""
        return self.name.split("@")[0]

    def scaled(self, scale: str, width_multiplier: int, steps_multiplier: int) -> "Task":
        return replace(
            self,
            name=f"{self.name}@{scale}",
            model=self.model.scaled(width_multiplier),
            steps=self.steps * steps_multiplier,
            warmup=self.warmup * steps_multiplier,
        )


# (width multiplier, steps multiplier) per scale, chosen so that forward FLOPs per example × steps grow ≈10× and
# ≈100× (counted with torch.utils.flop_counter: the ratios are 10.3/101, 10.3/101, 11.7/93 and 10/100).
_BASE: list[tuple[Task, dict[str, tuple[int, int]]]] = [
    # MLP 40→128→128→10, 23k parameters; widths 256 / 512: 3.4× / 12.6× the FLOPs per example
    (
        Task("mnist1d-mlp", "mnist1d", ModelSpec("mlp", 128, 2), steps=500, batch_size=128, base_lr=3e-3, n_val=1000),
        {"10x": (2, 3), "100x": (4, 8)},
    ),
    # conv 1→8, conv 8→16 stride 2, linear 256→10, 3.8k parameters; accuracy saturates (95–99%): fitness -loss
    (
        Task(
            "digits-cnn", "digits", ModelSpec("cnn", 8, 1), steps=300, batch_size=64, base_lr=3e-3, n_val=360,
            fitness=NEG_LOSS,
        ),
        {"10x": (2, 3), "100x": (4, 8)},
    ),
    # one block of width 64 (4 heads, MLP 256), 56k parameters, on (a, b, '=') mod 47 with half the table held out.
    # AdamW memorises and reaches ≈0.5 validation accuracy (commutativity); beyond that needs grokking, which strong
    # decoupled weight decay brings within this budget — the kind of difference the search should find.
    (
        Task(
            "modadd-transformer", "modadd", ModelSpec("transformer", 64, 1), steps=600, batch_size=128,
            base_lr=3e-3, n_val=1100, warmup=30,
        ),
        {"10x": (2, 3), "100x": (4, 6)},
    ),
    # for tests: 32-dim ill-conditioned linear regression (condition number 1e3), 33 parameters; only steps scale
    (
        Task(
            "quadratic", "quadratic", ModelSpec("linear"), steps=60, batch_size=32, base_lr=3e-2, n_val=512,
            fitness=NEG_LOSS,
        ),
        {"10x": (1, 10), "100x": (1, 100)},
    ),
    # a recurrent model: a character GRU (width 32, 7.4k parameters) reads 8 characters of a sparse order-2 Markov
    # chain over 16 characters and predicts the next (best possible accuracy ≈0.55); widths 64 / 128 cost ≈3.6× /
    # 14× the FLOPs per example
    (
        Task("markov-gru", "markov", ModelSpec("gru", 32, 1), steps=200, batch_size=64, base_lr=1e-2, n_val=1024),
        {"10x": (2, 3), "100x": (4, 7)},
    ),
    # autoencoding: scikit-learn's digits through 64→32→8→32→64 (ReLU; 4.7k parameters), fitness
    # -reconstruction MSE; widths 64 / 128 cost 2.2× / 5.3× the FLOPs per example
    (
        Task(
            "digits-autoencoder", "digits-ae", ModelSpec("autoencoder", 32, 1), steps=300, batch_size=64,
            base_lr=1e-2, n_val=360, fitness=NEG_LOSS,
        ),
        {"10x": (2, 5), "100x": (4, 19)},
    ),
]


def _registry() -> dict[str, Task]:
    tasks: dict[str, Task] = {}
    for task, scales in _BASE:
        tasks[task.name] = task
        for scale, (width, steps) in scales.items():
            variant = task.scaled(scale, width, steps)
            tasks[variant.name] = variant
    return tasks


TASKS: dict[str, Task] = _registry()


def get_task(name: str) -> Task:
    """The task called ``name``: a built-in one, or a plug-in (``evaluators.plugins.resolve``: a ``MODULE:ATTRIBUTE``
    reference or an ``autodisco.tasks`` entry point). ``TaskError`` (a ``ValueError``) lists the known names
    otherwise."""
    if isinstance(name, str) and name in TASKS:
        return TASKS[name]
    from evaluators import plugins  # imports the user's module: only for names that are not built in

    if isinstance(name, str) and plugins.is_plugin_name(name):
        return plugins.resolve(name)
    raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}; or your own task as "
                    f"MODULE:ATTRIBUTE (e.g. my_tasks:regression){plugins.installed_hint()}")
