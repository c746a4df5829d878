"""Learning-rate schedules by epoch (epochs counted 1..epochs), as in ``evaluators.schedule`` but raising ``NasError``.

- ``cosine_annealing``: DARTS's schedule, ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=epochs, eta_min)``
  stepped once per epoch.
- ``cosine_power_annealing``: sharpDARTS's schedule (Hundt et al. 2019), which reaches ``lr_min`` in the last epoch.

Training runs them through ``evaluators.fit.SGDConfig.scheduler`` (a torch ``LambdaLR``).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

from evaluators import schedule
from evaluators.schedule import SCHEDULES, ScheduleError
from nas.errors import NasError

__all__ = ["SCHEDULES", "cosine_annealing", "cosine_power_annealing", "scheduled_lr"]
F = TypeVar("F", bound=Callable[..., Any])


def _nas_errors(function: F) -> F:
    @functools.wraps(function)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except ScheduleError as error:
            raise NasError(str(error)) from None

    return wrapped  # type: ignore[return-value]


cosine_annealing = _nas_errors(schedule.cosine_annealing)
cosine_power_annealing = _nas_errors(schedule.cosine_power_annealing)
scheduled_lr = _nas_errors(schedule.scheduled_lr)
