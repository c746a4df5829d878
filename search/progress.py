"""Progress of a running job: a tqdm bar on a terminal, a periodic one-line status otherwise (logs, CI); and status
lines for the long silences between units (workers starting, a baseline being measured, the batches of a long epoch,
architectures being scored)."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, TextIO


class Progress:
    """Shows the units done (evaluations, epochs, sweeps, ...), their rate and the job's fields: for a search the
    cache hit rate, failures and the best fitness with its candidate id; for other jobs whatever they report.

    Between units, ``status`` says at once what a silence is spent on and ``heartbeat`` repeats a line inside a long
    unit every ``interval_s``; both print ``[autodisco] ...`` lines like the periodic status (above the bar on a
    terminal). ``status_lines`` turns them on or off separately (default: as ``enabled``): a job that prints its own
    line per unit has no progress line but still its status lines. ``clock`` is for tests.
    """

    def __init__(self, total: int | None, *, enabled: bool = True, done: int = 0, interval_s: float = 10.0,
                 stream: TextIO | None = None, unit: str = "eval", status_lines: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.unit = unit
        self.stream = sys.stderr if stream is None else stream
        self.total = total
        self.enabled = enabled
        self.status_lines = enabled if status_lines is None else status_lines
        self.interval_s = interval_s
        self.clock = clock
        self.start, self.start_done = clock(), done
        self.last_line = -float("inf")  # the first update always prints
        self.last_news = self.start  # the last line or finished unit: a heartbeat waits interval_s after it
        self.bar = None
        if enabled and self.stream.isatty():
            from tqdm import tqdm  # only on a terminal: listings that import the jobs stay light

            self.bar = tqdm(total=total, initial=done, unit=unit, file=self.stream, dynamic_ncols=True)

    def update(self, done: int, fields: dict[str, Any]) -> None:
        now = self.clock()
        self.last_news = now
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.n = done
            self.bar.set_postfix_str(_postfix(fields), refresh=True)
            return
        if now - self.last_line >= self.interval_s:
            self.last_line = now
            rate = (done - self.start_done) / max(now - self.start, 1e-9)
            total = f"/{self.total}" if self.total else ""
            plural = _PLURAL.get(self.unit, self.unit + "s")
            print(f"[autodisco] {plural} {done}{total} | {rate:.2f} {self.unit}s/s | {_postfix(fields)}",
                  file=self.stream, flush=True)

    def status(self, text: str) -> None:
        """Say what the job does now, as one line at once (e.g. "4 workers starting; measuring AdamW's fitness")."""
        self.last_news = self.clock()
        if self.status_lines:
            self._write(f"[autodisco] {text}")

    def heartbeat(self, text: Callable[[], str]) -> None:
        """Inside a long unit: ``text()`` as a status line once ``interval_s`` passed since the last line or finished
        unit. ``text`` is called only then, so it may do what costs (read a loss off the GPU)."""
        if self.status_lines and self.clock() - self.last_news >= self.interval_s:
            self.status(text())

    def _write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.stream)  # above the bar, which is drawn again below
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


_PLURAL = {"eval": "evaluations"}


def _postfix(fields: dict[str, Any]) -> str:
    if "candidates" not in fields:  # another job's fields (e.g. a ground-truth table's "failed", "best"): as they are
        return " | ".join(f"{key} {value}" for key, value in fields.items())
    parts = [f"candidates {fields.get('candidates', 0)}"]
    if fields.get("hit_rate") is not None:
        parts.append(f"cache hits {100 * fields['hit_rate']:.0f}%")
    parts.append(f"failed {fields.get('failed', 0)}")
    if fields.get("best") is not None:
        parts.append(f"best {fields['best']:.4f} (#{fields.get('best_id')})")
    return " | ".join(parts)
