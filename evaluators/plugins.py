"""Your own proxy tasks: a dataset, a model builder, a budget and a fitness, registered from your own module.

Write a ``Task`` with ``user_task`` in a module of yours and name it ``MODULE:ATTRIBUTE``::

    # my_tasks.py
    from evaluators import NEG_LOSS, user_task

    def data(seed):                # -> (x_train, y_train, x_val, y_val): tensors or numpy arrays
        ...
    def model():                   # -> a torch.nn.Module (initialised from torch's RNG, which is seeded for you)
        ...
    regression = user_task(data, model, steps=200, batch_size=64, base_lr=1e-2, fitness=NEG_LOSS)

    $ autodisco search optimizer --run runs/mine --task my_tasks:regression

or publish it from an installed package as an entry point of the group ``autodisco.tasks`` (``name = "pkg.mod:attr"``
in ``[project.entry-points."autodisco.tasks"]``) and use ``--task name``. The name travels to workers, which resolve it
the same way (``resolve``): a plug-in runs on local workers, batched or not, and on any executor where the module
imports.

The contract (checked when the task is first built, ``check``; a violation is a ``PluginError``, one line):

- ``data(seed)`` returns ``(x_train, y_train, x_val, y_val)``; ``seed`` is the evaluation's seed. Floating inputs
  become float32; integer inputs (tokens) int64. Integer labels ``y`` (one per example) make a classification task
  (cross-entropy on the model's ``(N, classes)`` logits; fitness ``ACCURACY`` or ``NEG_LOSS``); floating targets a
  regression (mean squared error against outputs of the targets' shape; fitness ``NEG_LOSS``). It is called once per
  (task, seed) in each process and kept.
- ``model()`` returns the ``nn.Module`` to train, on the CPU, with at least one trainable parameter; torch's
  generator is seeded from the evaluation's seed around the call, so initial weights are reproducible. It is trained in
  float32 with its parameters viewed into one flat buffer.
- the budget: ``steps`` minibatches of ``batch_size``, base learning rate ``base_lr`` (warm-up over ``warmup`` steps,
  then cosine decay), as for the built-in tasks (``evaluators.Task``).
- ``scales`` (optional): the ``@scale`` variants the meta-validation funnel trains on (``autodisco validate`` uses
  ``@10x`` and ``@100x``), as ``{"10x": (width multiplier, steps multiplier), ...}``; a width multiplier other than 1
  is passed to the builder as ``model(width=multiplier)``. A task without scales has no variants: the funnel cannot
  validate on it, and ``TASK@10x`` is an error naming this.

Population-batched evaluation (``--batch``) trains K programs at once through ``torch.func.functional_call`` under
``vmap``. A model that ``vmap`` cannot batch (in-place buffer updates such as BatchNorm's running statistics,
dropout, data-dependent control flow), or whose batched gradients differ from its own, is trained one program at a
time instead; ``batch_problem`` says why.

Security: a task name from a run's database is only ever imported as a module and looked up as one attribute, which
must be a ``Task`` instance — nothing named there is called. Importing a module runs its top-level code, as running the
search did.
"""

from __future__ import annotations

import inspect
import re
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from evaluators.errors import TaskError
from evaluators.models import ModelSpec
from evaluators.tasks import ACCURACY, NEG_LOSS, Task

ENTRY_POINT_GROUP = "autodisco.tasks"
PLUGIN_DATASET = "plugin"  # the placeholder ``Task.dataset`` of a plug-in task (its data is ``make_data``)
PLUGIN_MODEL = "plugin"  # the placeholder ``ModelSpec.kind``; its ``width`` is the width multiplier of a scale
_REFERENCE = re.compile(r"^(?P<module>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):(?P<attribute>[A-Za-z_]\w*)$")
_SCALE = re.compile(r"^[A-Za-z0-9_]+$")
_DATA_CACHE = 4  # (task, seed) data sets kept per process
_FORWARD_STREAM = 3  # the forward pass's randomness: torch seeded from SeedSequence([seed, 3])


class PluginError(TaskError):
    """A plug-in task that cannot be used: not importable, not a ``Task``, or its data or model breaking the contract
    (the module docstring). One line, naming the task and what to fix."""


def user_task(
    data: Callable[[int], Any],
    model: Callable[..., nn.Module],
    *,
    steps: int,
    batch_size: int,
    base_lr: float,
    fitness: str = ACCURACY,
    warmup: int = 0,
    lr_range: tuple[float, float] = (1e-5, 1.0),
    diverge_factor: float = 100.0,
    scales: Mapping[str, tuple[int, int]] | None = None,
) -> Task:
    """A plug-in ``Task`` training ``model()`` on ``data(seed)`` (see the module docstring for the contract).

    Its name is given when it is resolved (``MODULE:ATTRIBUTE`` or the entry point's name). Raises ``PluginError``
    for a bad budget, fitness or scale.
    """
    if not callable(data) or not callable(model):
        raise PluginError("user_task(data, model, ...): data and model must be callables (functions)")
    _check_budget(steps, batch_size, base_lr, warmup, fitness)
    low, high = lr_range
    if not 0 < low < high < float("inf") or not diverge_factor > 1:
        raise PluginError(f"user_task: lr_range must be (low, high) with 0 < low < high and diverge_factor > 1, got "
                          f"{lr_range!r} and {diverge_factor!r}")
    table = _scales(scales or {}, model)
    return Task("", PLUGIN_DATASET, ModelSpec(PLUGIN_MODEL, 1), steps=steps, batch_size=batch_size,
                base_lr=float(base_lr), n_val=0, fitness=fitness, warmup=warmup,
                lr_range=(float(low), float(high)), diverge_factor=float(diverge_factor),
                make_data=data, make_model=model, scales=table)  # fmt: skip


def _check_budget(steps: Any, batch_size: Any, base_lr: Any, warmup: Any, fitness: Any) -> None:
    def positive_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    if not positive_int(steps) or not positive_int(batch_size):
        raise PluginError(f"user_task: steps and batch_size must be positive integers, got {steps!r}, {batch_size!r}")
    if isinstance(base_lr, bool) or not isinstance(base_lr, (int, float)) or not 0 < base_lr < float("inf"):
        raise PluginError(f"user_task: base_lr must be a positive number, got {base_lr!r}")
    if not isinstance(warmup, int) or not 0 <= warmup < steps:
        raise PluginError(f"user_task: warmup must be an integer in 0..steps-1, got {warmup!r}")
    if fitness not in (ACCURACY, NEG_LOSS):
        raise PluginError(f"user_task: fitness must be {ACCURACY!r} or {NEG_LOSS!r}, got {fitness!r}")


def _scales(scales: Mapping[str, Any], model: Callable[..., nn.Module]) -> tuple[tuple[str, int, int], ...]:
    table = []
    for scale, multipliers in scales.items():
        ok = isinstance(multipliers, (tuple, list)) and len(multipliers) == 2 and all(
            isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in multipliers)
        if not isinstance(scale, str) or not _SCALE.match(scale) or not ok:
            raise PluginError(f"user_task: scales maps a name like '10x' to (width multiplier, steps multiplier), "
                              f"integers >= 1; got {scale!r}: {multipliers!r}")
        table.append((scale, int(multipliers[0]), int(multipliers[1])))
    if any(width != 1 for _, width, _ in table) and not _takes_width(model):
        raise PluginError("user_task: a scale widens the model, so the model builder must take width= "
                          "(e.g. def model(width=1): ...)")
    return tuple(table)


def _takes_width(model: Callable[..., Any]) -> bool:
    try:
        inspect.signature(model).bind(width=2)
    except TypeError:
        return False
    except ValueError:  # no signature (a builtin): let the first build tell
        return True
    return True


# -- resolving names ---------------------------------------------------------------------------------------------

_RESOLVED: dict[str, Task] = {}


def is_plugin_name(name: str) -> bool:
    """Whether ``name`` names a plug-in: a ``MODULE:ATTRIBUTE`` reference or an installed entry point (``@scale``
    suffixes allowed)."""
    base = name.partition("@")[0]
    return ":" in base or base in _entry_points()


def resolve(name: str) -> Task:
    """The plug-in task called ``name`` (``MODULE:ATTRIBUTE[@scale]`` or ``ENTRY_POINT[@scale]``), named so; kept per
    process. ``PluginError`` (one line) if it does not import, is not a ``Task``, or has no such scale."""
    if name not in _RESOLVED:
        base, _, scale = name.partition("@")
        task = _base_task(base)
        _RESOLVED[name] = _scaled(task, scale) if scale else task
    return _RESOLVED[name]


def _base_task(base: str) -> Task:
    if ":" not in base:
        entry = _entry_points().get(base)
        if entry is None:
            raise PluginError(f"unknown task {base!r}: not built in, not a MODULE:ATTRIBUTE reference, and no "
                              f"installed '{ENTRY_POINT_GROUP}' entry point has that name")
        try:
            found = entry.load()
        except Exception as error:  # noqa: BLE001 - whatever the package raises on import, say it in one line
            raise PluginError(f"task {base!r}: loading the entry point {entry.value!r} raised "
                              f"{_one_line(error)}") from None
        return _named(found, base, f"entry point {base!r} ({entry.value})")
    match = _REFERENCE.match(base)
    if match is None:
        raise PluginError(f"task {base!r}: a plug-in is named MODULE:ATTRIBUTE, e.g. my_pkg.tasks:my_task "
                          "(a dotted module path, a colon, a name)")
    module = _import(match["module"], base)
    attribute = match["attribute"]
    missing = object()
    found = getattr(module, attribute, missing)  # an attribute, never called: it must be a Task instance
    if found is missing:
        here = [k for k, v in vars(module).items() if isinstance(v, Task)]
        raise PluginError(f"task {base!r}: module {match['module']!r} has no attribute {attribute!r} (tasks there: "
                          f"{', '.join(here) or 'none'})")
    return _named(found, base, base)


def _import(module: str, name: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is not None and (module == error.name or module.startswith(error.name + ".")):
            raise PluginError(f"task {name!r}: cannot import module {module!r} (not found on sys.path); the "
                              "autodisco command puts the current directory on the path, so run it from the folder "
                              "that holds the module, or set PYTHONPATH to that folder, or pip install your "
                              "package") from None
        raise PluginError(f"task {name!r}: importing module {module!r} failed: {_one_line(error)}") from None
    except Exception as error:  # noqa: BLE001 - the user's module raised while importing
        raise PluginError(f"task {name!r}: importing module {module!r} raised {_one_line(error)}") from None


def _named(found: Any, name: str, where: str) -> Task:
    if not isinstance(found, Task):
        raise PluginError(f"task {name!r}: {where} is a {type(found).__name__}, not an evaluators.Task; make it "
                          "with evaluators.user_task(data, model, steps=..., batch_size=..., base_lr=...)")
    if found.make_data is None or found.make_model is None:
        raise PluginError(f"task {name!r}: {where} is a Task without its own data and model; make it with "
                          "evaluators.user_task (built-in tasks are named by their own names)")
    return replace(found, name=name)


def _scaled(task: Task, scale: str) -> Task:
    for name, width, steps in task.scales:
        if name == scale:
            return task.scaled(scale, width, steps)
    offered = ", ".join(f"@{name}" for name, _, _ in task.scales) or "none"
    raise PluginError(f"task {task.name!r} has no scale {scale!r} (it defines: {offered}); give it with "
                      f"user_task(..., scales={{'{scale}': (width multiplier, steps multiplier)}})")


_ENTRY_POINTS: dict[str, Any] | None = None


def _entry_points() -> dict[str, Any]:
    """The installed ``autodisco.tasks`` entry points by name (read once per process)."""
    global _ENTRY_POINTS
    if _ENTRY_POINTS is None:
        from importlib.metadata import entry_points

        _ENTRY_POINTS = {entry.name: entry for entry in entry_points(group=ENTRY_POINT_GROUP)}
    return _ENTRY_POINTS


def installed_hint() -> str:
    """``"; installed plug-ins: a, b"`` for an error message listing the known tasks ("" when none is installed)."""
    names = sorted(_entry_points())
    return f"; installed plug-ins: {', '.join(names)}" if names else ""


def forget() -> None:
    """Drop what this process resolved and built (tests; a plug-in module edited while the process runs)."""
    global _ENTRY_POINTS
    _RESOLVED.clear()
    _CHECKED.clear()
    _PROBLEMS.clear()
    _DATA.clear()
    _ENTRY_POINTS = None


# -- building --------------------------------------------------------------------------------------------------

_DATA: OrderedDict[tuple[Any, int], tuple[torch.Tensor, ...]] = OrderedDict()


def materialize(task: Task, seed: int, init_seed: int) -> tuple[nn.Module, tuple[torch.Tensor, ...], bool]:
    """``(model, (x_train, y_train, x_val, y_val), classification)`` of plug-in ``task`` on the CPU: its data for
    ``seed`` (kept per process) and its model initialised from ``init_seed``. ``PluginError`` naming what broke."""
    arrays = _data(task, seed)
    classification = not torch.is_floating_point(arrays[1])
    if not classification and task.fitness == ACCURACY:
        raise PluginError(f"task {task.name!r}: its targets are floating point (a regression) but its fitness is "
                          f"accuracy; use fitness=NEG_LOSS, or integer class labels")
    return _model(task, init_seed), arrays, classification


def _data(task: Task, seed: int) -> tuple[torch.Tensor, ...]:
    key = (task.make_data, seed)
    if key in _DATA:
        _DATA.move_to_end(key)
        return _DATA[key]
    assert task.make_data is not None, "not a plug-in task"
    try:
        made = task.make_data(seed)
    except Exception as error:  # noqa: BLE001 - the user's data function: its failure, in one line
        raise PluginError(f"task {task.name!r}: its data({seed}) raised {_one_line(error)}") from None
    arrays = _arrays(task.name, made)
    _DATA[key] = arrays
    while len(_DATA) > _DATA_CACHE:
        _DATA.popitem(last=False)
    return arrays


def _arrays(name: str, made: Any) -> tuple[torch.Tensor, ...]:
    if not isinstance(made, (tuple, list)) or len(made) != 4:
        raise PluginError(f"task {name!r}: data(seed) must return (x_train, y_train, x_val, y_val), got "
                          f"{_describe(made)}")
    tensors = []
    for label, value in zip(("x_train", "y_train", "x_val", "y_val"), made):
        try:
            tensor = torch.as_tensor(value.copy() if isinstance(value, np.ndarray) else value).detach().cpu()
        except (TypeError, ValueError, RuntimeError) as error:
            raise PluginError(f"task {name!r}: data(seed)'s {label} is not an array ({_one_line(error)})") from None
        if tensor.dtype == torch.bool or tensor.is_complex() or tensor.ndim == 0:
            raise PluginError(f"task {name!r}: data(seed)'s {label} must be a real or integer array of examples, "
                              f"got {tensor.dtype} of shape {tuple(tensor.shape)}")
        tensors.append(tensor.float() if tensor.is_floating_point() else tensor.long())
    x_train, y_train, x_val, y_val = tensors
    for part, x, y in (("train", x_train, y_train), ("val", x_val, y_val)):
        if len(x) != len(y) or len(x) == 0:
            raise PluginError(f"task {name!r}: x_{part} and y_{part} must hold the same number (> 0) of examples, got "
                              f"{len(x)} and {len(y)}")
    if x_train.is_floating_point() != x_val.is_floating_point() or y_train.dtype != y_val.dtype:
        raise PluginError(f"task {name!r}: the training and validation arrays must have the same kinds of values")
    if not y_train.is_floating_point() and (y_train.ndim != 1 or y_val.ndim != 1 or int(y_train.min()) < 0):
        raise PluginError(f"task {name!r}: integer labels must be one class index >= 0 per example (shape (N,)), got "
                          f"shape {tuple(y_train.shape)}")
    return tuple(tensors)


def _model(task: Task, init_seed: int) -> nn.Module:
    width = task.model.width
    assert task.make_model is not None, "not a plug-in task"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        try:
            model = task.make_model() if width == 1 else task.make_model(width=width)
        except Exception as error:  # noqa: BLE001 - the user's builder: its failure, in one line
            raise PluginError(f"task {task.name!r}: its model builder raised {_one_line(error)}") from None
    if not isinstance(model, nn.Module):
        raise PluginError(f"task {task.name!r}: the model builder must return a torch.nn.Module, got "
                          f"{_describe(model)}")
    if not any(p.requires_grad for p in model.parameters()):
        raise PluginError(f"task {task.name!r}: the model has no trainable parameters")
    return model.float()


@contextmanager
def forward_randomness(task: Task, seed: int, device: torch.device) -> Iterator[None]:
    """Around a plug-in task's training and validation: torch's generator (of ``device``) seeded from the
    evaluation's seed, so a model that draws in its forward pass (dropout) trains the same every time; the caller's
    generator is given back. Nothing for a built-in task (its models draw nothing)."""
    if task.make_data is None:
        yield
        return
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(int(np.random.SeedSequence([seed, _FORWARD_STREAM]).generate_state(1)[0]))
        yield


# -- the up-front check and batching -----------------------------------------------------------------------------

_CHECKED: dict[tuple[str, int], Task] = {}


def check(name: str, seed: int = 0) -> Task:
    """The task called ``name`` (``get_task``); a plug-in is also built as an evaluation would build it (data for
    ``seed``, the model, one training minibatch forward and backward): ``PluginError`` in one line for anything that
    breaks, before a search spends a budget on it. Kept per process."""
    key = (name, seed)
    if key not in _CHECKED:
        from evaluators.loop import prepare
        from evaluators.tasks import get_task

        task = get_task(name)
        if task.make_data is None:  # a built-in task: nothing of the user's to check
            return task
        setup = prepare(task, seed)
        index = setup.batches[0]
        x, y = setup.x_train[index], setup.y_train[index]
        try:
            outputs = setup.model(x)
        except Exception as error:  # noqa: BLE001
            raise PluginError(f"task {name!r}: the model raised on a training minibatch of shape {tuple(x.shape)}: "
                              f"{_one_line(error)}") from None
        _check_outputs(name, outputs, y, setup.classification)
        loss = setup.loss(outputs, y)
        try:
            loss.backward()
        except Exception as error:  # noqa: BLE001
            raise PluginError(f"task {name!r}: backward through the model raised {_one_line(error)}") from None
        if not torch.isfinite(loss):
            raise PluginError(f"task {name!r}: the loss of the initial model on a minibatch is {float(loss)}")
        _CHECKED[key] = task
    return _CHECKED[key]


def _check_outputs(name: str, outputs: Any, y: torch.Tensor, classification: bool) -> None:
    if not isinstance(outputs, torch.Tensor) or not outputs.is_floating_point():
        raise PluginError(f"task {name!r}: the model must return a floating-point tensor, got {_describe(outputs)}")
    shape = tuple(outputs.shape)
    if classification:
        classes = int(y.max()) + 1
        if len(shape) != 2 or shape[0] != len(y) or shape[1] < classes:
            raise PluginError(f"task {name!r}: for integer labels the model must return logits of shape (N, classes) "
                              f"= ({len(y)}, >= {classes}), got {shape}")
    elif shape != tuple(y.shape):
        raise PluginError(f"task {name!r}: the model's outputs {shape} must have the targets' shape "
                          f"{tuple(y.shape)} (mean squared error); reshape y or the model's output")


_PROBLEMS: dict[Task, str | None] = {}


def batch_problem(task: Task) -> str | None:
    """Why ``task``'s model cannot be trained K programs at once (``evaluators.batched``), or None if it can (always
    None for a built-in task). Decided once per process: two stacked copies of the initial model must give the
    model's own loss and gradient on the first minibatch under ``vmap``."""
    if task.make_data is None:
        return None
    if task not in _PROBLEMS:
        _PROBLEMS[task] = _batch_problem(task)
    return _PROBLEMS[task]


def _batch_problem(task: Task) -> str | None:
    from evaluators.stacked import StackedModel
    from evaluators.loop import FlatParameters, prepare

    setup = prepare(task, 0)
    flat = FlatParameters(setup.model)
    index = setup.batches[0]
    x, y = setup.x_train[index], setup.y_train[index]
    w = flat.w.detach().expand(2, -1).clone()
    g = torch.empty_like(w)
    try:
        losses = StackedModel(setup).loss_and_grad(w, g, x, y)
    except Exception as error:  # noqa: BLE001 - vmap refuses the model: train it one program at a time
        return f"torch.func.vmap cannot batch its model ({_one_line(error)})"
    loss = setup.loss(setup.model(x), y)
    loss.backward()
    same = torch.allclose(losses, loss.detach().expand(2), rtol=1e-4, atol=1e-6) and torch.allclose(
        g, flat.g.expand(2, -1), rtol=1e-3, atol=1e-5)
    if not same:
        return "its batched loss or gradients differ from its own (state or randomness in the forward pass?)"
    return None


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text[:300]


def _describe(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"
