"""``fewshot``: few-shot NAS (``nas.fewshot``) as a recorded, resumable job (``autodisco nas fewshot``).

Schema use (job kind "architecture"):
  * ``jobs.config``: ``FewShotJobConfig.to_dict()`` — ``method: "fewshot"``, ``tasks: ["fewshot:<dataset>"]``, the
    base method, dataset, ``limit``, device, the ``FewShotConfig`` (``fewshot``) and the base method's whole
    configuration (``darts``: a ``DartsConfig``; or ``oneshot``: a ``OneShotConfig`` with the table path, the
    BatchNorm recalibration ``inherit`` and the numbers of architectures sampled to score / to pick from).
  * ``checkpoints``: after every event, ``{"subnets", "epochs", "splits", "rounds"}`` — every record so far (the
    newest checkpoint holds them all): each sub-supernet (id, parent, birth epoch, restrictions), each training
    epoch (sub-supernet, epoch, metrics, architecture text), each split (sub-supernet, epoch, edge, the two op
    groups, children, and for every candidate edge its ops, distance matrix, partition, within/cross distance and
    decisiveness) and each successive-halving round (ranking, kept); the last adds ``"result"``.
  * DARTS: one candidate per sub-supernet epoch — the genotype its α derives (DARTS text, functional hash; parent:
    the sub-supernet's previous epoch, or its parent's last one; mutation ``fewshot subnet S epoch N``) with one
    evaluation: key ``sS-epoch-N``, task ``fewshot:<dataset>``, fitness = validation accuracy, metrics = the epoch's
    metrics, sub-supernet and restrictions.
  * One-shot: at the end, one candidate per architecture sampled from the winner's subspace (NB201 text) with an
    evaluation ``inherited:<arch>``, fitness = inherited accuracy.
  * The result: an evaluation ``result`` (task ``fewshot-result:<dataset>``) on the winning architecture's
    candidate: winner, architecture text, the backend's metrics (validation accuracy; one-shot: Kendall τ etc.).

Resume replays the search deterministically from its seed (checkpointing 2^K live sub-supernets would cost more than
retraining them) and records only the events after the last recorded one: every recorded event is checked against
its replay, and the finished run equals one never stopped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any, Mapping

import hashing
from evaluators.data import get_dataset, split_dataset
from nas.darts import DartsConfig
from nas.errors import NasError
from nas.fewshot import (
    Event, FewShotBackend, FewShotConfig, FewShotResult, HalvingRound, SplitRecord, Subnet, SubnetEpoch, search,
)
from nas.fewshot_backends import DartsBackend, OneShotBackend
from nas.genotypes import Genotype
from nas.groundtruth import load_table
from nas.nb201 import NB201Genotype
from nas.oneshot import N_EDGES, N_OPS, InheritConfig
from nas.oneshot_train import OneShotConfig, supernet_data
from nas.supernet import n_edges
from search.jobs._base import Job, JobContext, JobError
from search.jobs._registry import register_job
from search.jobs._runner import Runner

METHOD = "fewshot"
BASES = ("darts", "oneshot")


@dataclass(frozen=True)
class FewShotJobConfig:
    """A few-shot job: ``base`` ("darts" with ``darts``, or "oneshot" with ``oneshot``), ``dataset`` (its first
    ``limit`` training examples if given), the splitting (``fewshot``), the ``device``; for the one-shot base the
    ground-truth ``table`` path (None: no τ), ``inherit`` and the architectures sampled per score / at the end."""

    base: str
    dataset: str
    fewshot: FewShotConfig = field(default_factory=FewShotConfig)
    darts: DartsConfig | None = None
    oneshot: OneShotConfig | None = None
    table: str | None = None
    inherit: InheritConfig = field(default_factory=InheritConfig)
    score_archs: int = 16
    final_archs: int = 64
    limit: int | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.base not in BASES:
            raise NasError(f"unknown base {self.base!r}; choose one of {', '.join(BASES)}")
        if (self.darts is None) == (self.oneshot is None) or (self.base == "darts") != (self.darts is not None):
            raise NasError(f"base {self.base!r} needs its own configuration (darts= or oneshot=) and no other")
        if self.limit is not None and self.limit < 4:
            raise NasError(f"limit must be at least 4 training examples, got {self.limit}")
        self.fewshot.round_lengths(self.epochs)  # NasError when the epochs are too few
        edges, ops = self.edges_and_ops()
        if self.fewshot.splits > edges or 2 * self.fewshot.min_group > ops:
            raise NasError(f"{self.fewshot.splits} splits into groups of >= {self.fewshot.min_group} need as many "
                           f"edges of >= {2 * self.fewshot.min_group} operations; the supernet has {edges} edges of "
                           f"{ops} operations")  # fmt: skip

    @property
    def epochs(self) -> int:
        return self.darts.epochs if self.darts is not None else self.oneshot.epochs  # type: ignore[union-attr]

    @property
    def task(self) -> str:
        return f"{METHOD}:{self.dataset}"

    def edges_and_ops(self) -> tuple[int, int]:
        """How many edges a lineage may split, and how many operations each has."""
        if self.darts is None:
            return N_EDGES, N_OPS
        net = self.darts.net
        cell_types = len({layer in net.reduction_layers() for layer in range(net.layers)})
        return cell_types * n_edges(net.steps), len(net.primitives)

    def to_dict(self) -> dict[str, Any]:
        return {"method": METHOD, "tasks": [self.task], **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FewShotJobConfig:
        if data.get("method") != METHOD:
            raise NasError(f"not a few-shot job configuration (method {data.get('method')!r})")
        darts = DartsConfig.from_dict(data["darts"]) if data.get("darts") is not None else None
        oneshot = OneShotConfig.from_dict(data["oneshot"]) if data.get("oneshot") is not None else None
        return cls(data["base"], data["dataset"], FewShotConfig(**data["fewshot"]), darts, oneshot, data["table"],
                   InheritConfig(**data["inherit"]), data["score_archs"], data["final_archs"], data["limit"],
                   data["device"])  # fmt: skip


def make_backend(config: FewShotJobConfig) -> FewShotBackend:
    """The job's backend with its data loaded (``NasError`` / ``DatasetError`` for a bad dataset or table)."""
    if config.darts is not None:
        data = get_dataset(config.dataset, config.limit)
        if data.num_classes != config.darts.net.num_classes:
            raise NasError(f"{config.dataset} has {data.num_classes} classes; the supernet has "
                           f"{config.darts.net.num_classes}")  # fmt: skip
        train, val = split_dataset(data.train, 0.5, seed=config.darts.seed)
        return DartsBackend(config.darts, train, val, config.device)
    table = load_table(config.table).accuracy if config.table is not None else None
    data = supernet_data(config.dataset, config.limit)
    return OneShotBackend(config.oneshot, data, score_archs=config.score_archs,  # type: ignore[arg-type]
                          final_archs=config.final_archs, inherit=config.inherit, table=table, device=config.device)


def _jsonable(value: Any) -> Any:
    """Records as JSON-safe values: dataclasses as dicts, tuples as lists, mappings with string keys."""
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


_EVENT_LISTS = {"Subnet": "subnets", "SubnetEpoch": "epochs", "SplitRecord": "splits", "HalvingRound": "rounds"}


@register_job
class FewShotJob(Job):
    """A few-shot search: one unit per event (sub-supernet, epoch, split, halving round), then the result."""

    method = METHOD
    config_type = FewShotJobConfig
    unit = "event"
    own_progress_lines = True

    def __init__(self, config: FewShotJobConfig, context: JobContext, backend: FewShotBackend | None = None) -> None:
        super().__init__(config, context)
        self.backend = backend
        self.state: dict[str, Any] = {"subnets": [], "epochs": [], "splits": [], "rounds": []}
        self.recorded: dict[str, int] = {}  # events of each list already recorded when the job resumed
        self.seen: dict[str, int] = {}
        self.parents: dict[int, int | None] = {}
        self.latest: dict[int, int] = {}  # sub-supernet -> its newest candidate
        self.restrictions: dict[int, Any] = {}

    @classmethod
    def seed_of(cls, config: FewShotJobConfig) -> int:
        return config.darts.seed if config.darts is not None else config.oneshot.seed  # type: ignore[union-attr]

    def prepare(self) -> None:
        if self.backend is None:
            self.backend = make_backend(self.config)

    def state_dict(self) -> dict[str, Any]:
        return self.state

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        if state is None:
            return
        if "result" in state:
            raise JobError(f"job {self.record.name!r} already has its result")
        self.state = {name: list(state.get(name, [])) for name in _EVENT_LISTS.values()}
        self.recorded = {name: len(values) for name, values in self.state.items()}

    def run(self, runner: Runner) -> FewShotResult:
        assert self.backend is not None
        if any(self.recorded.values()):
            self.context.say(f"replaying {sum(self.recorded.values())} recorded events from the seed, then going on")
        result = search(self.backend, self.config.fewshot, lambda event: self._event(runner, event))
        self._finish(runner, result)
        return result

    def progress(self) -> tuple[int, int | None, dict[str, Any]]:
        return sum(len(v) for v in self.state.values() if isinstance(v, list)), None, {}

    @classmethod
    def progress_of(cls, config: Mapping[str, Any], state: Mapping[str, Any]) -> tuple[int | None, int | None]:
        return sum(len(state.get(name) or []) for name in _EVENT_LISTS.values()), None

    def describe(self) -> str:
        config = self.config
        return (f"few-shot job {self.record.name!r}: {config.base} base, {config.fewshot.splits} splits, "
                f"{config.epochs} epochs per lineage on {config.dataset}, {config.device}")

    def report(self, result: FewShotResult) -> list[str]:
        metrics = result.metrics
        if "val_accuracy" in metrics:
            self.context.say(f"winner: subnet {result.winner} (validation accuracy {metrics['val_accuracy']:.4f}); "
                             "genotype:")
            return [result.text]
        self.context.say(f"winner: subnet {result.winner}; its best of {len(metrics['scores'])} sampled "
                         f"architectures (inherited accuracy {metrics['inherited_accuracy']:.4f}):")
        lines = [result.text]
        if "kendall_tau" in metrics:
            rank = metrics.get("top_pick_rank")
            lines.append(f"Kendall tau {metrics['kendall_tau']:.4f} (Spearman {metrics['spearman']:.4f}) over "
                         f"{metrics['n']} table architectures" + (f"; the leaves' top pick ranks {rank} of "
                                                                  f"{metrics['n']} in the table" if rank else ""))
        return lines

    # -- events -------------------------------------------------------------------------------------------------

    def _event(self, runner: Runner, event: Event) -> None:
        name = _EVENT_LISTS[type(event).__name__]
        value = _jsonable(event)
        index = self.seen.get(name, 0)
        self.seen[name] = index + 1
        if index < self.recorded.get(name, 0):  # replayed: the same event must come out again
            if _comparable(self.state[name][index]) != _comparable(value):
                raise JobError(f"job {self.record.name!r}: the replay differs from the recorded run at {name} "
                               f"#{index + 1} (another device or torch version?); start a new run")
            self._remember(event, replayed=True)
            return
        with runner.unit():
            self.state[name].append(value)
            self._remember(event, replayed=False)
        line = _event_line(event, self.config.epochs)
        if line:
            self.context.say(line)

    def _remember(self, event: Event, *, replayed: bool) -> None:
        if isinstance(event, SubnetEpoch) and event.architecture:
            if replayed:
                found = self.store.get_evaluation(self.record.id, _epoch_key(event))
                if found is not None:
                    self.latest[event.subnet] = found.candidate_id
            else:
                self._epoch_candidate(event)
        elif isinstance(event, Subnet):
            self.parents[event.id] = event.parent
            self.restrictions[event.id] = _jsonable(event.restrictions)

    def _finish(self, runner: Runner, result: FewShotResult) -> None:
        with runner.unit():
            if isinstance(result.architecture, NB201Genotype):
                scores = result.metrics["scores"]
                ids = {text: self._candidate(text, NB201Genotype.from_text(text), [], "fewshot winner's subspace",
                                             f"inherited:{text}", acc, {"inherited_accuracy": acc})
                       for text, acc in scores.items()}  # fmt: skip
                candidate, fitness = ids[result.text], result.metrics["inherited_accuracy"]
            else:
                candidate, fitness = self.latest[result.winner], result.metrics.get("val_accuracy")
            summary = {"winner": result.winner, "architecture": result.text, **_jsonable(result.metrics)}
            evaluation = self.store.add_evaluation(self.record.id, candidate, key="result",
                                                   task=f"fewshot-result:{self.config.dataset}", seed=self.record.seed)
            self.store.finish_evaluation(evaluation, status="ok", fitness=fitness, metrics=summary)
            self.state["result"] = summary

    def _epoch_candidate(self, event: SubnetEpoch) -> None:
        ancestor = event.subnet if event.subnet in self.latest else self.parents.get(event.subnet)
        parents = [self.latest[ancestor]] if ancestor in self.latest else []
        metrics = {**event.metrics, "subnet": event.subnet, "epoch": event.epoch, "genotype": event.architecture,
                   "restrictions": self.restrictions.get(event.subnet, [])}  # fmt: skip
        self.latest[event.subnet] = self._candidate(
            event.architecture, Genotype.from_text(event.architecture), parents,
            f"fewshot subnet {event.subnet} epoch {event.epoch}", _epoch_key(event),
            event.metrics.get("val_accuracy"), metrics, event.seconds,
        )  # fmt: skip

    def _candidate(self, text: str, architecture: Any, parents: list[int], mutation: str, key: str,
                   fitness: float | None, metrics: Mapping[str, Any], seconds: float | None = None) -> int:
        store, job = self.store, self.record
        candidate = store.add_candidate(job.id, kind="architecture", text=text,
                                        hash=hashing.functional_hash(architecture), parent_ids=parents,
                                        mutation=mutation)  # fmt: skip
        evaluation = store.add_evaluation(job.id, candidate, key=key, task=self.config.task, seed=job.seed)
        store.finish_evaluation(evaluation, status="ok", fitness=fitness, metrics=dict(metrics), wall_time=seconds)
        return candidate


def _epoch_key(event: SubnetEpoch) -> str:
    return f"s{event.subnet}-epoch-{event.epoch}"


def _comparable(value: Any) -> Any:
    """An event without its timings (seconds differ between a run and its replay)."""
    if isinstance(value, Mapping):
        return {k: _comparable(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


def _event_line(event: Event, epochs: int) -> str | None:
    """The line shown for a new event (an epoch, a split, a selection round; none for a new sub-supernet)."""
    if isinstance(event, SubnetEpoch):
        m = event.metrics
        line = (f"subnet {event.subnet} epoch {event.epoch}/{epochs} | train loss {m['train_loss']:.4f} "
                f"acc {m['train_accuracy']:.4f}")  # fmt: skip
        if "val_accuracy" in m:
            line += f" | val loss {m['val_loss']:.4f} acc {m['val_accuracy']:.4f}"
        return f"{line} | {event.seconds:.1f} s"
    if isinstance(event, SplitRecord):
        best = max(event.scores, key=lambda s: s.decisiveness)
        return (f"split subnet {event.subnet} after epoch {event.epoch} on {event.edge}: "
                f"{{{', '.join(event.groups[0])}}} | {{{', '.join(event.groups[1])}}} (decisiveness "
                f"{best.decisiveness:.4f}, {len(event.scores)} edges scored) -> subnets "
                f"{event.children[0]}, {event.children[1]} | {event.seconds:.1f} s")
    if isinstance(event, HalvingRound):
        ranking = ", ".join(f"{s} ({acc:.4f})" for s, acc, _ in event.ranking)
        return (f"selection round {event.round} after epoch {event.epoch}: {ranking}; kept "
                f"{', '.join(map(str, event.kept))}")
    return None
