"""Figures of a search: fitness against evaluation order, and the FEC cache hit rate over time.

Headless: figures are drawn on matplotlib's Agg canvas directly (``matplotlib.figure.Figure``), never through
``pyplot``, so nothing depends on a display, a global backend or pyplot's figure registry.

The x axis counts evaluations as ``autodisco runs show`` does: evaluations run (ok + failed), in the order results
were recorded; a cache hit runs nothing, so it is drawn at the count reached so far, with the cached fitness the
strategy saw. Failed evaluations have no fitness and are marked.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import blended_transform_factory

from search.store import CurvePoint

_CHUNK = 8192  # rows per block of the rolling median: bounds memory at _CHUNK * window floats


@dataclass(frozen=True)
class PlotConfig:
    """How ``plot_search`` draws: ``window`` finished evaluations per rolling statistic, figure size and dpi."""

    window: int = 50
    title: str | None = None
    width_in: float = 8.0
    height_in: float = 6.0
    dpi: int = 120

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"window must be at least 1 evaluation, got {self.window}")
        if self.dpi < 1 or self.width_in <= 0 or self.height_in <= 0:
            raise ValueError(f"figure size must be positive, got {self.width_in}x{self.height_in} in at {self.dpi} dpi")


@dataclass(frozen=True)
class SearchCurves:
    """The numbers behind the figure, one entry per finished evaluation (NaN where undefined).

    ``order`` is the result's ``finished_order``; ``evaluations`` the x axis: evaluations run so far (ok + failed,
    cache hits not counted, as ``runs show`` counts them), so its last value is ``runs show``'s count. ``fitness``
    is NaN for failed evaluations; ``best`` is NaN before the first success; ``median`` is the median fitness of the
    last ``window`` evaluations that have one; ``hit_rate`` the fraction of cache hits among the last
    ``window`` evaluations and ``cumulative_hit_rate`` among all so far.
    """

    order: np.ndarray
    evaluations: np.ndarray
    fitness: np.ndarray
    best: np.ndarray
    median: np.ndarray
    failed: np.ndarray
    cached: np.ndarray
    hit_rate: np.ndarray
    cumulative_hit_rate: np.ndarray


def search_curves(points: Sequence[CurvePoint], window: int) -> SearchCurves:
    """The curves of ``points`` (as ``Store.best_so_far`` returns them) with rolling statistics over ``window``."""
    if window < 1:
        raise ValueError(f"window must be at least 1 evaluation, got {window}")
    fitness = np.array([_finite(p.fitness) for p in points], dtype=np.float64)
    cached = np.array([p.status == "cached" for p in points], dtype=bool)
    seen = np.arange(1, len(points) + 1)
    return SearchCurves(
        order=np.array([p.order for p in points], dtype=np.int64),
        evaluations=np.cumsum(~cached, dtype=np.int64),
        fitness=fitness,
        best=np.fmax.accumulate(fitness) if len(points) else fitness,
        median=rolling_nanmedian(fitness, window),
        failed=np.array([p.status == "failed" for p in points], dtype=bool),
        cached=cached,
        hit_rate=rolling_mean(cached.astype(np.float64), window),
        cumulative_hit_rate=np.cumsum(cached) / seen if len(points) else np.zeros(0),
    )


def rolling_nanmedian(values: np.ndarray, window: int) -> np.ndarray:
    """Median of the non-NaN values among each entry and the ``window - 1`` before it (NaN if there are none)."""
    values = np.asarray(values, dtype=np.float64)
    padded = np.concatenate([np.full(window - 1, np.nan), values])
    out = np.empty(len(values))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows are expected: they give NaN
        for start in range(0, len(values), _CHUNK):
            block = padded[start:start + _CHUNK + window - 1]
            out[start:start + _CHUNK] = np.nanmedian(np.lib.stride_tricks.sliding_window_view(block, window), axis=1)
    return out


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of each entry and the ``window - 1`` before it (fewer at the start)."""
    totals = np.cumsum(np.concatenate([[0.0], np.asarray(values, dtype=np.float64)]))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (totals[ends] - totals[starts]) / (ends - starts)


def check_figure_path(path: str | Path) -> None:
    """``ValueError`` unless ``path`` is in an existing folder and its suffix names a format matplotlib writes."""
    path = Path(path)
    formats = FigureCanvasAgg.get_supported_filetypes()
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in formats:
        raise ValueError(f"cannot tell the figure format of {str(path)!r}; end it with one of "
                         f"{', '.join('.' + f for f in sorted(formats))}")
    if not path.parent.is_dir():
        raise ValueError(f"no folder {str(path.parent)!r} to write {path.name!r} into; create it first")
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a folder; give a file name such as {str(path / 'search.png')!r}")


def plot_search(points: Sequence[CurvePoint], path: str | Path, config: PlotConfig = PlotConfig()) -> Path:
    """Draw the search of ``points`` and save it to ``path`` (format from the suffix: png, pdf, svg ...).

    Top panel: fitness of each evaluation, best so far and the rolling median, failed evaluations as red crosses on
    the bottom edge. Bottom panel: rolling and cumulative cache hit rate. ``ValueError`` if there is no finished
    evaluation or ``check_figure_path`` refuses ``path``. Returns the path written.
    """
    if not points:
        raise ValueError("no finished evaluations to plot yet")
    path = Path(path)
    check_figure_path(path)
    curves = search_curves(points, config.window)
    figure = Figure(figsize=(config.width_in, config.height_in), dpi=config.dpi, layout="constrained")
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    _draw_fitness(top, curves, config.window)
    _draw_hit_rate(bottom, curves, config.window)
    if config.title:
        figure.suptitle(config.title)
    figure.savefig(path)
    return path


def _draw_fitness(axes: Axes, curves: SearchCurves, window: int) -> None:
    ok = ~np.isnan(curves.fitness)
    size, alpha = (6, 0.3) if len(curves.order) > 2000 else (16, 0.6)  # many points: small and faint
    groups = ((ok & ~curves.cached, "tab:blue", "evaluated"), (ok & curves.cached, "tab:gray", "cache hit"))
    for mask, color, label in groups:
        if mask.any():
            axes.scatter(curves.evaluations[mask], curves.fitness[mask], s=size, color=color, alpha=alpha, linewidths=0,
                         label=label, rasterized=True)
    axes.plot(curves.evaluations, curves.median, color="tab:orange", label=f"median (last {window})")
    axes.step(curves.evaluations, curves.best, where="post", color="tab:green", linewidth=2, label="best so far")
    if curves.failed.any():
        edge = blended_transform_factory(axes.transData, axes.transAxes)
        failed = curves.evaluations[curves.failed]
        axes.scatter(failed, np.full(len(failed), 0.02), transform=edge, marker="x", s=14, color="tab:red",
                     label=f"failed ({len(failed)})", clip_on=False)
    axes.set_ylabel("fitness (higher is better)")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")


def _draw_hit_rate(axes: Axes, curves: SearchCurves, window: int) -> None:
    axes.plot(curves.evaluations, curves.hit_rate, color="tab:purple", label=f"last {window}")
    axes.plot(curves.evaluations, curves.cumulative_hit_rate, color="tab:purple", linestyle="--", label="cumulative")
    axes.set_ylim(-0.02, 1.02)
    axes.set_ylabel("cache hit rate")
    axes.set_xlabel("evaluations run (cache hits not counted, as in runs show)")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")


def _finite(value: float | None) -> float:
    return float(value) if value is not None and np.isfinite(value) else np.nan


def nas_panels(figures: dict[str, Any]) -> list[str]:
    """The panels ``plot_nas`` draws for ``figures`` (``search.epochs.nas_figures``), top to bottom: "loss" and
    "accuracy" (per-epoch curves with such metrics), "ranking" (predicted vs true accuracy of a ranked table) and
    "table" (a ground-truth table's accuracies, best first)."""
    metrics = {m for s in (figures.get("epochs") or {}).get("series", []) for m in s["metrics"]}
    panels = [name for name, word in (("loss", "loss"), ("accuracy", "acc")) if any(word in m for m in metrics)]
    ranking = figures.get("ranking")
    if ranking is not None and ranking["truth"]:
        panels.append("ranking")
    if figures.get("table") is not None and figures["table"]["accuracies"]:
        panels.append("table")
    return panels


def ranking_text(ranking: dict[str, Any] | None) -> str | None:
    """``"Kendall τ 0.61, Spearman ρ 0.80 over 64 architectures; top pick: true rank 3 of 64"``, or None."""
    if ranking is None:
        return None
    text = f"Kendall τ {ranking['kendall_tau']:.3f}"
    if ranking.get("spearman") is not None:
        text += f", Spearman ρ {ranking['spearman']:.3f}"
    text += f" over {ranking['n']} architectures"
    pick = ranking.get("top_pick")
    if pick is not None:
        text += f"; top pick: true rank {pick['rank']} of {pick['of']} (accuracy {pick['truth']:.4f}, best " \
                f"{pick['best_truth']:.4f})"
    return text


def plot_nas(figures: dict[str, Any], path: str | Path, config: PlotConfig = PlotConfig()) -> Path:
    """Draw a NAS job's figures (``search.epochs.nas_figures``): per-epoch loss and accuracy curves (one line per
    metric and sub-supernet), the ranking against the table with its Kendall τ and top pick, or a ground-truth
    table's accuracies. ``ValueError`` if there is nothing to draw yet or ``check_figure_path`` refuses ``path``."""
    path = Path(path)
    check_figure_path(path)
    panels = nas_panels(figures)
    if not panels:
        raise ValueError("no epochs, ranking or table recorded yet")
    figure = Figure(figsize=(config.width_in, max(config.height_in, 2.6 * len(panels))), dpi=config.dpi,
                    layout="constrained")
    FigureCanvasAgg(figure)
    axes = np.atleast_1d(figure.subplots(len(panels), 1))
    for ax, panel in zip(axes, panels):
        if panel in ("loss", "accuracy"):
            _draw_epochs(ax, figures["epochs"]["series"], "loss" if panel == "loss" else "acc", panel)
        elif panel == "ranking":
            _draw_ranking(ax, figures["ranking"])
        else:
            _draw_table(ax, figures["table"])
    title = config.title or ""
    summary = ranking_text(figures.get("ranking"))
    if summary:
        title = f"{title}\n{summary}" if title else summary
    if title:
        figure.suptitle(title, fontsize="medium")
    figure.savefig(path)
    return path


def _draw_epochs(axes: Axes, series: list[dict[str, Any]], word: str, label: str) -> None:
    for curve in series:
        for metric, values in sorted(curve["metrics"].items()):
            if word in metric:
                y = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
                name = f"{curve['name']}: {metric}" if curve["name"] else metric
                axes.plot(curve["epochs"], y, marker="o", markersize=3, label=name)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs
    axes.set_xlabel("epoch")
    axes.set_ylabel(label)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")


def _draw_ranking(axes: Axes, ranking: dict[str, Any]) -> None:
    axes.scatter(ranking["truth"], ranking["predicted"], s=12, color="tab:blue", alpha=0.7, label="architecture")
    pick = ranking.get("top_pick")
    if pick is not None:
        axes.scatter([pick["truth"]], [pick["predicted"]], s=80, marker="*", color="tab:red",
                     label=f"top pick (true rank {pick['rank']} of {pick['of']})")
    axes.set_xlabel("ground-truth accuracy")
    axes.set_ylabel("predicted (inherited) accuracy")
    axes.set_title(f"Kendall τ {ranking['kendall_tau']:.3f}", fontsize="small")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")


def _draw_table(axes: Axes, table: dict[str, Any]) -> None:
    accuracies = table["accuracies"]
    axes.plot(np.arange(1, len(accuracies) + 1), accuracies, marker=".", color="tab:green",
              label=f"{len(accuracies)} trained" + (f", {table['failed']} failed" if table["failed"] else ""))
    axes.set_xlabel("architecture rank (best first)")
    axes.set_ylabel("test accuracy")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")


_COMPARE_PANELS = {  # panel -> (y label, x label)
    "adamw": ("best fitness so far (×AdamW)", "evaluations run (cache hits not counted)"),
    "accuracy": ("best accuracy so far", "evaluations run (cache hits not counted)"),
    "fitness": ("best fitness so far", "evaluations run (cache hits not counted)"),
    "epochs": ("accuracy per epoch", "epoch"),
}


def plot_compare(curves: Sequence[dict[str, Any]], path: str | Path | None,
                 config: PlotConfig = PlotConfig()) -> Path | str:
    """Overlay the runs' curves (``runs compare``: ``{"run", "panel", "x", "y"}`` each), one panel per kind of
    y axis — optimizer searches (×AdamW), architecture searches and tables (accuracy), NAS training (accuracy per
    epoch) — so that no axis mixes ratios and accuracies. Saves to ``path``, or with None returns the SVG text."""
    panels = [p for p in _COMPARE_PANELS if any(c["panel"] == p for c in curves)]
    figure = Figure(figsize=(config.width_in, max(config.height_in / 1.5, 3.2 * len(panels))), dpi=config.dpi,
                    layout="constrained")
    FigureCanvasAgg(figure)
    axes = np.atleast_1d(figure.subplots(len(panels), 1)) if panels else []
    for ax, panel in zip(axes, panels):
        for curve in (c for c in curves if c["panel"] == panel):
            y = np.array([np.nan if v is None else v for v in curve["y"]], dtype=np.float64)
            if panel == "epochs":
                metric = f" ({curve['metric']})" if curve.get("metric") else ""
                ax.plot(curve["x"], y, marker="o", markersize=3, label=curve["run"] + metric)
            else:
                ax.step(curve["x"], y, where="post", linewidth=2, label=curve["run"])
        ylabel, xlabel = _COMPARE_PANELS[panel]
        ax.set_ylabel(ylabel)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    if config.title:
        figure.suptitle(config.title)
    if path is None:
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg")
        text = buffer.getvalue()
        return text[text.index("<svg"):]  # without the XML prolog: the page embeds it
    figure.savefig(Path(path))
    return Path(path)
