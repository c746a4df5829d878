"""The figures of a NAS job (DARTS, ``nas train``, one-shot, few-shot, ground-truth tables) as JSON-ready values:
per-epoch curves, α and genotypes per epoch, and its ranking against a ground-truth table (Kendall τ, the top
pick's true rank). ``runs plot`` draws them and the dashboard shows them; everything here only reads, and every
value read is checked (a database is untrusted)."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the store imports SQLAlchemy: only when a command runs
    from search.store import JobRecord, Store


NAS_METHODS = ("darts", "train", "oneshot", "fewshot", "groundtruth")
ALPHA_EPOCHS = 200  # α of at most the last this many epochs
ALPHA_MAX_ROWS, ALPHA_MAX_COLUMNS = 256, 64
_EPOCH_KEY = re.compile(r"^(?:s(\d+)-)?epoch-(\d+)$")  # DARTS/train: epoch-N; few-shot sub-supernets: sS-epoch-N


def is_nas_job(job: JobRecord) -> bool:
    """Whether ``job`` is a NAS job (epochs or a table), not a search (whose unit is an evaluation)."""
    return isinstance(job.config, dict) and job.config.get("method") in NAS_METHODS


def epoch_curves(store: Store, job: JobRecord, evaluations: list[Any]) -> dict[str, Any] | None:
    """Per-epoch figures of a NAS job, or None for a search: from its ``epoch-N`` evaluations (DARTS, genotype
    training; few-shot ``sS-epoch-N`` per sub-supernet), else from the epoch history its checkpoint holds (one-shot
    supernets, with the ranking's Kendall τ once trained)."""
    series: dict[str, dict[int, dict[str, float]]] = {}
    genotypes: list[dict[str, Any]] = []
    alphas: list[dict[str, Any]] = []
    for evaluation in evaluations:
        found = _EPOCH_KEY.match(evaluation.key)
        if found is None or not isinstance(evaluation.metrics, dict):
            continue
        name = "" if found.group(1) is None else f"sub-supernet {found.group(1)}"
        epoch = int(found.group(2))
        series.setdefault(name, {})[epoch] = _numbers(evaluation.metrics)
        if isinstance(evaluation.metrics.get("genotype"), str):
            genotypes.append({"series": name, "epoch": epoch, "candidate": evaluation.candidate_id,
                              "genotype": evaluation.metrics["genotype"]})
        cells = {cell: _matrix(evaluation.metrics.get(f"alpha_{cell}")) for cell in ("normal", "reduce")}
        if name == "" and all(m is not None for m in cells.values()):
            alphas.append({"epoch": epoch, **cells})
    ranking = None
    if not series:
        checkpoint = store.latest_checkpoint(job.id)
        state = checkpoint.state if checkpoint is not None and isinstance(checkpoint.state, dict) else {}
        history = state.get("history")
        if isinstance(history, list):
            rows = [r for r in history if isinstance(r, dict) and isinstance(r.get("epoch"), int)]
            series[""] = {r["epoch"]: _numbers(r) for r in rows}
        ranking = _numbers(state.get("ranking"))
    if not series:
        return None
    curves = []
    for name, by_epoch in sorted(series.items()):
        epochs = sorted(by_epoch)
        metrics = sorted({m for values in by_epoch.values() for m in values} - {"epoch"})
        curves.append({"name": name, "epochs": epochs,
                       "metrics": {m: [by_epoch[e].get(m) for e in epochs] for m in metrics}})
    alphas.sort(key=lambda a: a["epoch"])
    return {"series": curves, "genotypes": _changes(genotypes), "ranking": ranking or None,
            "alpha": {"primitives": _primitives(job.config), "epochs": alphas[-ALPHA_EPOCHS:]} if alphas else None}


def _matrix(value: Any) -> list[list[float]] | None:
    """α of one cell as softmax weights per edge (rows), or None unless ``value`` is a small matrix of finite
    numbers (a database is untrusted)."""
    if not isinstance(value, list) or not 0 < len(value) <= ALPHA_MAX_ROWS:
        return None
    rows = []
    for row in value:
        if (not isinstance(row, list) or not 0 < len(row) <= ALPHA_MAX_COLUMNS or len(row) != len(value[0])
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in row)):
            return None
        top = max(row)
        weights = [math.exp(v - top) for v in row]
        rows.append([w / sum(weights) for w in weights])
    return rows


def _primitives(config: Any) -> list[str] | None:
    """The operation names of a DARTS job's supernet (its α's columns), if its config holds them."""
    try:
        names = config["search"]["net"]["primitives"]
    except (KeyError, TypeError):
        return None
    return list(names) if isinstance(names, list) and all(isinstance(n, str) for n in names) else None


def _changes(genotypes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each epoch's genotype, marked ``changed`` when it differs from the previous epoch's of the same series."""
    last: dict[str, str] = {}
    for row in sorted(genotypes, key=lambda r: (r["series"], r["epoch"])):
        row["changed"] = row["series"] in last and last[row["series"]] != row["genotype"]
        last[row["series"]] = row["genotype"]
    return sorted(genotypes, key=lambda r: (r["series"], r["epoch"]))


def _numbers(values: Any) -> dict[str, float]:
    """The finite real-number entries of a metrics dict (booleans, text, lists and nested values left out)."""
    if not isinstance(values, dict):
        return {}
    return {str(k): float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def ranking_of(store: Store, job: JobRecord, evaluations: list[Any]) -> dict[str, Any] | None:
    """How well the job ranks a ground-truth table's architectures, or None when it ranks none: Kendall τ and
    Spearman ρ (as the job recorded them: a one-shot job's checkpoint, a few-shot job's ``result``; else computed
    from the pairs), the (predicted, true) accuracy pairs of its ``inherited:<arch>`` evaluations, and the top
    pick — the architecture it predicts best — with its rank in the table (1: the truly best)."""
    predicted, truth, archs = [], [], []
    recorded: dict[str, float] = {}
    for evaluation in evaluations:
        metrics = _numbers(evaluation.metrics)
        if evaluation.key.startswith("inherited:") and {"inherited_accuracy", "ground_truth"} <= set(metrics):
            predicted.append(metrics["inherited_accuracy"])
            truth.append(metrics["ground_truth"])
            archs.append(evaluation.key[len("inherited:"):])
        elif evaluation.key == "result" and "kendall_tau" in metrics:
            recorded = metrics
    if not recorded:
        checkpoint = store.latest_checkpoint(job.id)
        state = checkpoint.state if checkpoint is not None and isinstance(checkpoint.state, dict) else {}
        recorded = _numbers(state.get("ranking"))
    if "kendall_tau" not in recorded and len(truth) >= 2:
        from nas.ranking import rank_correlation_of  # scipy: only for a ranking without its recorded figures

        recorded = rank_correlation_of(predicted, truth).to_dict()
    if "kendall_tau" not in recorded:
        return None
    top_pick = None
    if truth:
        pick = max(range(len(predicted)), key=lambda i: (predicted[i], -i))  # ties: the first recorded
        top_pick = {"arch": archs[pick], "predicted": predicted[pick], "truth": truth[pick],
                    "rank": 1 + sum(t > truth[pick] for t in truth), "of": len(truth), "best_truth": max(truth)}
    return {"kendall_tau": recorded["kendall_tau"], "spearman": recorded.get("spearman"),
            "n": int(recorded.get("n", len(truth))), "predicted": predicted, "truth": truth, "top_pick": top_pick}


def table_accuracies(evaluations: list[Any]) -> dict[str, Any]:
    """A ground-truth job's table so far: each trained architecture's accuracy (sorted, best first) and how many
    failed."""
    accuracies = sorted((float(e.fitness) for e in evaluations if e.status == "ok" and e.fitness is not None
                         and math.isfinite(e.fitness)), reverse=True)
    return {"accuracies": accuracies, "failed": sum(e.status == "failed" for e in evaluations)}


def nas_figures(store: Store, job: JobRecord) -> dict[str, Any]:
    """What ``runs plot`` draws for a NAS job: its method, per-epoch curves (None without epochs), its ranking
    against a table (None without one) and, for a ground-truth job, the table's accuracies."""
    evaluations = store.list_evaluations(job.id)
    method = job.config.get("method") if isinstance(job.config, dict) else None
    return {"method": method, "epochs": epoch_curves(store, job, evaluations),
            "ranking": ranking_of(store, job, evaluations),
            "table": table_accuracies(evaluations) if method == "groundtruth" else None}
