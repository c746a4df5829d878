"""The job's progress line: what a researcher reads in a log."""

from __future__ import annotations

import io

from search.progress import Progress


def test_status_line_in_a_log_shows_evaluations_rate_hits_failures_and_best() -> None:
    stream = io.StringIO()  # not a terminal: periodic lines instead of a bar
    progress = Progress(200, stream=stream, interval_s=0.0)
    progress.update(45, {"candidates": 63, "hit_rate": 0.27, "failed": 15, "best": 1.0688, "best_id": 13})
    line = stream.getvalue().strip()
    assert line.startswith("[autodisco] evaluations 45/200 |")
    for part in ("evals/s", "candidates 63", "cache hits 27%", "failed 15", "best 1.0688 (#13)"):
        assert part in line


def test_disabled_progress_prints_nothing() -> None:
    stream = io.StringIO()
    progress = Progress(10, stream=stream, enabled=False, interval_s=0.0)
    progress.update(3, {"candidates": 3})
    progress.close()
    assert stream.getvalue() == ""


def test_lines_are_rate_limited() -> None:
    stream = io.StringIO()
    progress = Progress(None, stream=stream, interval_s=3600.0)
    for done in range(5):
        progress.update(done, {"candidates": done})
    assert len(stream.getvalue().splitlines()) == 1


class _Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_status_line_comes_at_once_even_for_a_job_that_prints_its_own_unit_lines() -> None:
    stream = io.StringIO()
    progress = Progress(5, stream=stream, enabled=False, status_lines=True, interval_s=3600.0)
    progress.status("2 workers starting")
    progress.status("measuring the baseline (AdamW = 1.0) on mnist1d-mlp")
    assert stream.getvalue().splitlines() == ["[autodisco] 2 workers starting",
                                              "[autodisco] measuring the baseline (AdamW = 1.0) on mnist1d-mlp"]


def test_quiet_silences_status_lines_and_heartbeats() -> None:
    stream, clock = io.StringIO(), _Clock()
    progress = Progress(5, stream=stream, enabled=False, interval_s=1.0, clock=clock)  # --quiet: neither
    progress.status("starting")
    clock.now = 100.0
    progress.heartbeat(lambda: "epoch 1/2 | batch 3/9 | loss 2.3026")
    assert stream.getvalue() == ""


def test_a_heartbeat_comes_every_interval_after_the_last_line_or_unit_and_computes_its_text_only_then() -> None:
    stream, clock = io.StringIO(), _Clock()
    progress = Progress(3, stream=stream, enabled=False, status_lines=True, interval_s=10.0, clock=clock)
    asked: list[int] = []

    def text(batch: int) -> str:
        asked.append(batch)
        return f"epoch 1/3 | batch {batch}/100 | loss 1.5"

    for batch, now in ((1, 4.0), (2, 9.9), (3, 10.0), (4, 15.0), (5, 20.5)):
        clock.now = now
        progress.heartbeat(lambda: text(batch))
    assert asked == [3, 5]  # due at 10 s after the start, then 10 s after that line
    clock.now = 29.0
    progress.update(1, {})  # a finished unit is news: the next heartbeat waits a whole interval again
    clock.now = 35.0
    progress.heartbeat(lambda: text(6))
    clock.now = 39.0
    progress.heartbeat(lambda: text(7))
    assert asked == [3, 5, 7]
    assert stream.getvalue().splitlines() == [f"[autodisco] epoch 1/3 | batch {b}/100 | loss 1.5" for b in (3, 5, 7)]


def test_another_job_s_fields_are_shown_as_they_are_even_when_named_like_a_search_s() -> None:
    """A ground-truth table reports "failed" and a formatted "best": once read as a search's fields, its first
    progress line raised (``nas groundtruth`` without --quiet died on its first architecture)."""
    stream = io.StringIO()
    Progress(4, unit="arch", stream=stream, interval_s=0.0).update(1, {"failed": 0, "best": "0.4123"})
    assert stream.getvalue().strip().endswith("| failed 0 | best 0.4123")
    assert "candidates" not in stream.getvalue()
