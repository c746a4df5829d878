"""Ranking quality of a one-shot supernet: how well its inherited-weight scores order the ground truth.

Three figures, the ones a user acts on: Kendall's τ (τ-b, which accounts for ties — many NAS-Bench-201 cells share
chance accuracy) and Spearman's ρ, both from ``scipy.stats``, over the architectures the two mappings share; and the
**top pick's rank** — where the architecture the supernet scores best stands in the ground truth (1 = the table's
best; tied ground truths share the better rank). Over several supernet seeds, ``SeedSpread`` gives the mean, the
sample standard deviation and the range of each (``summarize``); ``RankCorrelation.line()`` and
``SeedSpread.line()`` are the one-line forms every command prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

from nas.errors import NasError


@dataclass(frozen=True)
class RankCorrelation:
    """Kendall τ and Spearman ρ (NaN when either side is constant) over ``n`` architectures, with p-values; the
    supernet's ``top_pick`` (its best-scored architecture, ties broken by order of appearance) and that pick's
    ``top_pick_rank`` in the ground truth (1-based; None when the architectures have no names)."""

    kendall_tau: float
    spearman: float
    n: int
    kendall_p: float
    spearman_p: float
    top_pick: str | None = None
    top_pick_rank: int | None = None

    def to_dict(self) -> dict[str, float | int | str | None]:
        return {"kendall_tau": self.kendall_tau, "spearman": self.spearman, "n": self.n,
                "kendall_p": self.kendall_p, "spearman_p": self.spearman_p, "top_pick": self.top_pick,
                "top_pick_rank": self.top_pick_rank}

    @property
    def top_pick_percentile(self) -> float | None:
        """The top pick's rank as a fraction of ``n`` (0.04: in the table's best 4 %)."""
        return None if self.top_pick_rank is None else self.top_pick_rank / self.n

    def line(self) -> str:
        """``Kendall tau 0.4512, Spearman rho 0.6321, top pick ranks 7 of 250 (top 2.8 %)``."""
        text = f"Kendall tau {self.kendall_tau:.4f}, Spearman rho {self.spearman:.4f}"
        if self.top_pick_rank is not None:
            text += f", top pick ranks {self.top_pick_rank} of {self.n} (top {100 * self.top_pick_percentile:.1f} %)"
        return text


@dataclass(frozen=True)
class Spread:
    """Mean, sample standard deviation (0 for one value) and range of one figure over seeds."""

    mean: float
    std: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        v = np.asarray(values, dtype=np.float64)
        if len(v) == 0:
            raise NasError("a spread needs at least one value")
        return cls(float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, float(v.min()), float(v.max()))


@dataclass(frozen=True)
class SeedSpread:
    """Ranking quality over supernet seeds: the spread of Kendall τ, Spearman ρ and the top pick's rank."""

    seeds: int
    n: int
    kendall_tau: Spread
    spearman: Spread
    top_pick_rank: Spread | None

    def line(self) -> str:
        """``Kendall tau 0.452 ± 0.031 (0.420–0.483), ..., top pick rank 9.3 ± 4.0 (5–14) of 250, over 3
        seeds``."""
        t, r = self.kendall_tau, self.spearman
        text = (f"Kendall tau {t.mean:.3f} ± {t.std:.3f} ({t.low:.3f}–{t.high:.3f}), "
                f"Spearman rho {r.mean:.3f} ± {r.std:.3f}")
        if self.top_pick_rank is not None:
            k = self.top_pick_rank
            text += f", top pick rank {k.mean:.1f} ± {k.std:.1f} ({k.low:.0f}–{k.high:.0f}) of {self.n}"
        return text + f", over {self.seeds} seed{'s' if self.seeds != 1 else ''}"


def summarize(rankings: Sequence[RankCorrelation]) -> SeedSpread:
    """The spread of ``rankings`` (one per supernet seed, over the same architectures)."""
    if not rankings:
        raise NasError("summarize needs at least one ranking")
    ranks = [r.top_pick_rank for r in rankings]
    return SeedSpread(len(rankings), rankings[0].n, Spread.of([r.kendall_tau for r in rankings]),
                      Spread.of([r.spearman for r in rankings]),
                      None if any(k is None for k in ranks) else Spread.of([float(k) for k in ranks]))


def kendall_tau(predicted: Sequence[float], truth: Sequence[float]) -> float:
    """Kendall's τ-b of two equally long sequences (``scipy.stats.kendalltau``)."""
    return rank_correlation_of(predicted, truth).kendall_tau


def rank_correlation_of(predicted: Sequence[float], truth: Sequence[float],
                        names: Sequence[str] | None = None) -> RankCorrelation:
    """Kendall τ-b, Spearman ρ and the top pick of two equally long sequences of at least 2 values (``names``,
    if given, name the architectures)."""
    if len(predicted) != len(truth):
        raise NasError(f"rank correlation needs sequences of equal length, got {len(predicted)} and {len(truth)}")
    if len(truth) < 2:
        raise NasError(f"rank correlation needs at least 2 architectures, got {len(truth)}")
    kendall = stats.kendalltau(predicted, truth)
    spearman = stats.spearmanr(predicted, truth)
    pick = int(np.argmax(np.asarray(predicted, dtype=np.float64)))  # the first of tied maxima
    truth_values = np.asarray(truth, dtype=np.float64)
    rank = 1 + int((truth_values > truth_values[pick]).sum())
    return RankCorrelation(float(kendall.statistic), float(spearman.statistic), len(truth), float(kendall.pvalue),
                           float(spearman.pvalue), None if names is None else names[pick], rank)


def rank_correlation(predicted: Mapping[str, float], truth: Mapping[str, float]) -> RankCorrelation:
    """Rank correlation and top pick over the architectures (keys) present in both mappings."""
    common = [arch for arch in truth if arch in predicted]
    return rank_correlation_of([predicted[a] for a in common], [truth[a] for a in common], common)
