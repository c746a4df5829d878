from __future__ import annotations

import copy
import dataclasses
import itertools
import json

import numpy as np
import pytest
import torch

from nas import NasError
from nas.architect import ArchitectConfig
from nas.darts import DartsConfig
from nas.fewshot import FewShotConfig, HalvingRound, split_children, successive_halving
from nas.fewshot import search as fewshot_search
from nas.fewshot_backends import DartsBackend, OneShotBackend, subspace_sample
from nas.genotypes import Genotype
from nas.nb201 import NB201Genotype, all_nb201
from nas.nb201_network import NB201NetConfig
from nas.oneshot import InheritConfig
from nas.oneshot_train import OneShotConfig, SupernetData
from nas.spaces import NB201_PRIMITIVES
from search.cli import main as cli_main
from search.store import Store
from nas.gradient_matching import (
    DartsSplitSpace,
    EdgeId,
    OneShotSplitSpace,
    Partition,
    choose_split,
    cosine_distances,
    gradient_distances,
    partition_ops,
    plan_split,
    similarity_graph,
)
from nas.supernet import MixedOp, Supernet, SupernetConfig, derive_genotype, mix_weights

PRIMS = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3")
NET = SupernetConfig(layers=3, C=4, steps=2, multiplier=2, num_classes=3, primitives=PRIMS)


def _net(seed: int = 0, config: SupernetConfig = NET) -> Supernet:
    torch.manual_seed(seed)
    return Supernet(config, in_channels=1, dim=1)


# -- the restriction hook of nas.supernet -------------------------------------------------------------------------


@pytest.mark.parametrize("weighting", ["softmax", "max-w"])
def test_masked_mix_weights_run_over_the_allowed_operations(weighting: str) -> None:
    alpha = torch.tensor([[0.3, -1.0, 2.0, 0.5], [1.0, 1.0, 1.0, 1.0]], requires_grad=True)
    mask = torch.tensor([[True, False, True, False], [True, True, True, True]])
    w = mix_weights(alpha, weighting, mask)
    expected = mix_weights(alpha[0, [0, 2]][None], weighting)[0]
    assert torch.equal(w[0, [1, 3]], torch.zeros(2)) and torch.allclose(w[0, [0, 2]], expected)
    assert torch.equal(w[1], mix_weights(alpha[1:], weighting)[0])  # an unrestricted row is unchanged
    w.sum().backward()
    assert torch.isfinite(alpha.grad).all() and torch.equal(alpha.grad[0, [1, 3]], torch.zeros(2))


def test_restrict_edge_computes_only_the_allowed_operations() -> None:
    net = _net()
    x = torch.randn(2, 1, 12)
    before = net(x)
    net.restrict_edge("normal", 1, [2, 3])
    assert net.mask_normal[1].tolist() == [False, False, True, True] and net.mask_reduce.all()
    for cell in net.cells:
        assert cell.edges[1].active == ((2, 3) if not cell.reduction else (0, 1, 2, 3))
    assert not torch.allclose(net(x), before)
    net.restrict_edge("normal", 1, range(len(PRIMS)))  # lifted: the same function again
    assert torch.allclose(net(x), before) and net.mask_normal.all()
    op = MixedOp(4, 1, PRIMS, dim=1)
    op.active = (3,)
    assert torch.equal(op(x.repeat(1, 4, 1), torch.tensor([9.0, 9.0, 9.0, 0.5])), 0.5 * op.ops[3](x.repeat(1, 4, 1)))
    for bad in ([], [4], [-1]):
        with pytest.raises(NasError, match="indices"):
            net.restrict_edge("reduce", 0, bad)
    with pytest.raises(NasError, match="edge must be"):
        net.restrict_edge("reduce", 5, [0])
    with pytest.raises(NasError, match="cell must be"):
        net.restrict_edge("middle", 0, [0])
    assert "mask_normal" not in net.state_dict()  # masks stay out of state dicts (loading never desyncs them)


def test_derive_genotype_respects_masks() -> None:
    alpha = np.zeros((5, len(PRIMS)))
    alpha[:, PRIMS.index("sep_conv_3x3")] = 3.0  # sep_conv everywhere, unless masked
    mask = np.ones_like(alpha, dtype=bool)
    mask[0, PRIMS.index("sep_conv_3x3")] = False  # edge 0 -> 2: pools/skip only
    mask[1] = [True, False, False, False]  # edge 1 -> 2: only none, so the node must keep it as none
    g = derive_genotype(alpha, alpha, PRIMS, steps=2, multiplier=2, mask_normal=mask)
    assert g.normal[:2] == (("max_pool_3x3", 0), ("none", 1))
    assert g.reduce == derive_genotype(alpha, alpha, PRIMS, steps=2, multiplier=2).reduce
    net = _net()
    net.restrict_edge("reduce", 0, [PRIMS.index("skip_connect")])
    assert net.genotype().reduce[0] == ("skip_connect", 0) or net.genotype().reduce[1] == ("skip_connect", 0)


def test_restriction_travels_with_deepcopy_and_device_moves() -> None:
    net = _net()
    net.restrict_edge("normal", 0, [1])
    twin = copy.deepcopy(net)
    assert twin.cells[0].edges[0].active == (1,) and torch.equal(twin.mask_normal, net.mask_normal)
    twin.restrict_edge("normal", 0, [2])
    assert net.cells[0].edges[0].active == (1,) and net.mask_normal[0, 1]  # the copy is independent
    assert net.to(torch.float64).mask_normal.dtype == torch.bool


# -- gradient-matching distances ----------------------------------------------------------------------------------

TINY = SupernetConfig(layers=3, C=4, steps=1, multiplier=1, num_classes=3,
                      primitives=("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3"))


def _batches(count: int, n: int = 12, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 1, 10, generator=g), torch.randint(0, 3, (n,), generator=g)) for _ in range(count)]


def test_distances_are_symmetric_zero_on_the_diagonal_and_leave_the_model_as_it_was() -> None:
    net = _net(config=TINY)
    net.eval()
    space = DartsSplitSpace()
    buffers = {k: v.clone() for k, v in net.named_buffers()}
    d = gradient_distances(net, space, EdgeId("normal", 0), _batches(2), torch.Generator().manual_seed(0))
    assert d.shape == (4, 4) and np.array_equal(d, d.T) and np.all(np.diag(d) == 0)
    assert d.min() >= 0 and d.max() <= 2 and (d[~np.eye(4, dtype=bool)] > 1e-3).all()  # parameter-free ops too
    assert not net.training and all(p.grad is None for p in net.parameters())
    assert all(torch.equal(v, buffers[k]) for k, v in net.named_buffers()) and net.mask_normal.all()
    assert net.cells[0].edges[0].active == (0, 1, 2, 3)


def test_gradients_exclude_the_edge_own_weights_and_alpha() -> None:
    net = _net(config=TINY)
    space = DartsSplitSpace()
    own = space.edge_parameters(net, EdgeId("reduce", 1))
    assert own and {id(p) for p in own} == {id(p) for c in net.cells[1:] for p in c.edges[1].parameters()}
    assert not {id(p) for p in space.weights(net)} & {id(a) for a in net.arch_parameters()}
    assert list(space.edges(net)) == [EdgeId(c, i) for c in ("normal", "reduce") for i in range(2)]


def test_identical_operations_are_at_distance_zero_and_grouped() -> None:
    net = _net(config=TINY)
    for cell in net.cells:  # op 2 (skip) of edge normal:1 becomes an exact copy of op 3 (sep_conv, same weights)
        if not cell.reduction:
            cell.edges[1].ops[2] = copy.deepcopy(cell.edges[1].ops[3])
    space = DartsSplitSpace()
    d = gradient_distances(net, space, EdgeId("normal", 1), _batches(2), torch.Generator().manual_seed(0))
    assert d[2, 3] < 1e-6 and d[0, 1] > 1e-3
    partition = partition_ops(d, (0, 1, 2, 3))
    assert any({2, 3} <= set(group) for group in partition.groups)


def test_cosine_distances_edge_cases() -> None:
    v = torch.tensor([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0], [0.0, 3.0], [0.0, 0.0], [0.0, 0.0]])
    d = cosine_distances(v)
    assert d[0, 1] == 0 and d[0, 2] == 2 and d[0, 3] == pytest.approx(1) and d[4, 5] == 0 and d[0, 4] == 1


# -- partition and the choice of edge -----------------------------------------------------------------------------


def _brute_force(d: np.ndarray, min_group: int) -> float:
    n, best = len(d), np.inf
    for bits in range(1, 2**n - 1):
        side = np.array([(bits >> i) & 1 for i in range(n)], bool)
        if min(side.sum(), (~side).sum()) >= min_group:
            best = min(best, d[np.ix_(side, side)].sum() / 2 + d[np.ix_(~side, ~side)].sum() / 2)
    return best


@pytest.mark.parametrize("min_group", [1, 2, 3])
def test_partition_minimises_within_group_distance(min_group: int) -> None:
    rng = np.random.default_rng(min_group)
    a = rng.uniform(0, 2, (7, 7))
    d = np.triu(a, 1) + np.triu(a, 1).T
    ops = (0, 2, 3, 4, 5, 6, 7)
    p = partition_ops(d, ops, min_group)
    index = {o: i for i, o in enumerate(ops)}
    within = sum(d[index[i], index[j]] for g in p.groups for i in g for j in g if i < j)
    assert within == pytest.approx(_brute_force(d, min_group))
    assert sorted(p.groups[0] + p.groups[1]) == list(ops) and 0 in p.groups[0]
    assert min(map(len, p.groups)) >= min_group and p == partition_ops(d, ops, min_group)  # deterministic
    graph = similarity_graph(d, ops)
    assert graph.number_of_edges() == 21 and graph[0][2]["similarity"] == pytest.approx(1 - d[0, 1])


def test_partition_of_two_clusters_and_its_decisiveness() -> None:
    d = np.full((4, 4), 1.5)
    d[0, 2] = d[2, 0] = d[1, 3] = d[3, 1] = 0.1
    np.fill_diagonal(d, 0)
    p = partition_ops(d, (0, 1, 2, 3))
    assert p.groups == ((0, 2), (1, 3)) and p.within == pytest.approx(0.1) and p.cross == pytest.approx(1.5)
    assert p.decisiveness == pytest.approx(1.4)


@pytest.mark.parametrize(
    ("distances", "ops", "min_group", "fragment"),
    [
        (np.zeros((3, 3)), (0, 1, 2), 2, "two groups of at least 2"),
        (np.zeros((2, 3)), (0, 1), 1, "matrix"),
        (np.array([[0.0, 1.0], [0.5, 0.0]]), (0, 1), 1, "symmetric"),
        (np.array([[0.0, 3.0], [3.0, 0.0]]), (0, 1), 1, "within"),
        (np.zeros((17, 17)), tuple(range(17)), 1, "at most 16"),
    ],
)
def test_partition_refuses_bad_input(distances: np.ndarray, ops: tuple, min_group: int, fragment: str) -> None:
    with pytest.raises(NasError, match=fragment):
        partition_ops(distances, ops, min_group)


def test_the_split_edge_is_the_most_decisive() -> None:
    def partition(cross: float, within: float) -> Partition:
        return Partition(((0,), (1,)), within, cross)

    partitions = {EdgeId("reduce", 0): partition(1.5, 0.5), EdgeId("normal", 0): partition(0.75, 0.5),
                  EdgeId("reduce", 1): partition(0.5, 0.25), EdgeId("normal", 1): partition(1.25, 0.25)}
    assert choose_split(partitions) == EdgeId("normal", 1)  # 1.0 beats 0.25 twice; the tie goes to the first edge
    with pytest.raises(NasError, match="no edge left"):
        choose_split({})


def test_plan_split_chooses_the_edge_whose_partition_is_most_decisive() -> None:
    net = _net(config=TINY)
    net.restrict_edge("normal", 0, [0, 1])  # already split: not a candidate
    plan = plan_split(net, DartsSplitSpace(), _batches(1), torch.Generator().manual_seed(0))
    assert EdgeId("normal", 0) not in plan.partitions and len(plan.partitions) == 3
    assert plan.edge == max(plan.partitions, key=lambda e: plan.partitions[e].decisiveness)
    assert set(plan.distances) == set(plan.partitions)


# -- splitting, successive halving, the whole search --------------------------------------------------------------


def _backend(epochs: int = 3, seed: int = 0, order: int = 1) -> DartsBackend:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(48, 1, 10, generator=g), torch.randint(0, 3, (48,), generator=g)
    config = DartsConfig(net=TINY, epochs=epochs, batch_size=12, seed=seed, arch=ArchitectConfig(order=order))
    return DartsBackend(config, (x[:24], y[:24]), (x[24:], y[24:]))


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [v for state in optimizer.state_dict()["state"].values() for v in state.values() if torch.is_tensor(v)]


def test_children_inherit_weights_alpha_and_optimizer_state_and_differ_only_on_the_edge() -> None:
    backend = _backend()
    parent = backend.root()
    backend.train_epoch(parent, 1)  # momentum buffers and Adam moments exist now
    edge = EdgeId("reduce", 1)
    children = split_children(backend, parent, edge, [(0, 2), (1, 3)])
    for child, group in zip(children, [(0, 2), (1, 3)]):
        for name, tensor in parent.model.state_dict().items():
            assert torch.equal(child.model.state_dict()[name], tensor), name
            assert child.model.state_dict()[name].data_ptr() != tensor.data_ptr()  # copies, not shared
        for ours, theirs in [(child.w_optimizer, parent.w_optimizer), (child.architect.optimizer,
                                                                       parent.architect.optimizer)]:
            assert ours.state_dict()["param_groups"] == theirs.state_dict()["param_groups"]
            mine, others = _optimizer_tensors(ours), _optimizer_tensors(theirs)
            assert len(mine) == len(others) > 0 and all(torch.equal(a, b) for a, b in zip(mine, others))
        assert child.w_optimizer.param_groups[0]["params"][0] is child.model.weights()[0]
        assert child.architect.model is child.model and child.architect.w_optimizer is child.w_optimizer
        assert torch.equal(child.generator.get_state(), parent.generator.get_state())
        differs = child.model.mask_reduce != parent.model.mask_reduce
        assert differs[1].tolist() == [i not in group for i in range(4)] and not differs[0].any()
        assert torch.equal(child.model.mask_normal, parent.model.mask_normal)
    backend.train_epoch(children[0], 2)  # training a child leaves the parent and its sibling alone
    assert torch.equal(children[1].model.alpha_normal, parent.model.alpha_normal)
    assert not torch.equal(children[0].model.alpha_normal, parent.model.alpha_normal)


def test_successive_halving_keeps_the_best_half_each_round() -> None:
    quality = {0: 0.2, 1: 0.9, 2: 0.5, 3: 0.7, 4: 0.1, 5: 0.8, 6: 0.3, 7: 0.6}
    trained = {c: 0 for c in quality}
    rounds: list[HalvingRound] = []

    def advance(c: int, epochs: int) -> None:
        trained[c] += epochs

    def score(c: int) -> tuple[float, float]:
        return (quality[c] if c != 5 else 0.9, 1.0 if c == 5 else 2.0)  # 5 ties 1 on accuracy, wins on loss

    winner = successive_halving(list(quality), (1, 2, 3), advance, score, lambda c: c, rounds.append)
    assert winner == 5
    assert [r.kept for r in rounds] == [(5, 1, 3, 7), (5, 1), (5,)]
    assert [r.epoch for r in rounds] == [1, 3, 6] and rounds[0].ranking[0] == (5, 0.9, 1.0)
    assert trained == {0: 1, 1: 6, 2: 1, 3: 3, 4: 1, 5: 6, 6: 1, 7: 3}  # the eliminated stop training
    assert successive_halving([3], (2,), advance, score, lambda c: c) == 3


def test_schedule_of_splits_and_rounds() -> None:
    config = FewShotConfig(splits=3, split_every=2)
    assert config.split_epochs() == (2, 4, 6) and config.round_lengths(50) == (14, 14, 16)
    assert config.round_lengths(9) == (1, 1, 1)
    assert FewShotConfig(splits=3, halving=False).round_lengths(10) == (4,)
    assert FewShotConfig(splits=0).round_lengths(5) == (5,)
    with pytest.raises(NasError, match="need at least 9"):
        config.round_lengths(8)
    with pytest.raises(NasError, match="splits must be"):
        FewShotConfig(splits=-1)


def test_fewshot_darts_end_to_end_on_made_up_data() -> None:
    events: list = []
    result = fewshot_search(_backend(epochs=4), FewShotConfig(splits=2, split_every=1, distance_batches=1),
                            events.append)
    assert [s.id for s in result.subnets] == list(range(7)) and len(result.splits) == 3
    first = result.splits[0]
    assert first.subnet == 0 and first.children == (1, 2) and first.epoch == 1 and len(first.scores) == 4
    assert {s.edge for s in first.scores} >= {first.edge}
    chosen = max(first.scores, key=lambda s: s.decisiveness)
    assert chosen.edge == first.edge and chosen.groups == first.groups
    assert sorted(first.groups[0] + first.groups[1]) == sorted(TINY.primitives)
    for split in result.splits[1:]:  # each child splits along an edge its parent had not split
        assert split.edge != first.edge and split.epoch == 2
    leaves = [s for s in result.subnets if s.born == 2]
    assert len(leaves) == 4 and all(len(s.restrictions) == 2 for s in leaves)
    assert [len(r.ranking) for r in result.rounds] == [4, 2] and result.rounds[-1].kept == (result.winner,)
    assert set(result.rounds[1].kept) <= set(result.rounds[0].kept) and result.rounds[1].epoch == 4
    genotype = result.architecture
    assert isinstance(genotype, Genotype) and result.text == genotype.to_text()
    winner = result.subnets[result.winner]
    for edge, ops in winner.restrictions:  # the genotype only uses what the winner's edges allow
        cell, index = edge.split(":")
        pairs = getattr(genotype, cell)
        kept = {k for k in range(len(pairs)) if _edge_row(pairs[k], k) == int(index)}
        assert all(pairs[k][0] in ops or pairs[k][0] == "none" and "none" in ops for k in kept)
    epochs = [(e.subnet, e.epoch) for e in result.history]
    assert (0, 1) in epochs and (result.winner, 4) in epochs and all(0 <= e.metrics["val_accuracy"] <= 1
                                                                    for e in result.history)
    assert len(events) == 7 + 3 + 2 + len(result.history) and events[0] == result.subnets[0]


def _edge_row(pair: tuple[str, int], k: int) -> int:
    """The α row of the k-th (op, input) pair of a genotype of 1 or 2 steps: node k // 2, input pair[1]."""
    node = k // 2
    return sum(2 + i for i in range(node)) + pair[1]


def test_fewshot_is_reproducible() -> None:
    config = FewShotConfig(splits=1, split_every=1, distance_batches=1)
    first, second = (fewshot_search(_backend(epochs=2, seed=3), config) for _ in range(2))
    assert first.text == second.text and first.rounds == second.rounds
    assert [dataclasses.replace(s, seconds=0) for s in first.splits] == [
        dataclasses.replace(s, seconds=0) for s in second.splits]


# -- the one-shot NAS-Bench-201 supernet --------------------------------------------------------------------------


def _oneshot_backend(table: dict[str, float] | None = None, epochs: int = 2) -> OneShotBackend:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(48, 1, 8, generator=g), torch.randint(0, 3, (48,), generator=g)
    data = SupernetData("toy", (x[:32], y[:32]), (x[32:], y[32:]), 1, 1, 3)
    config = OneShotConfig(net=NB201NetConfig(C=2, num_classes=3), epochs=epochs, batch_size=16)
    return OneShotBackend(config, data, score_archs=2, final_archs=3, table=table,
                          inherit=InheritConfig(calibration_batches=1, batch_size=16))


def test_oneshot_distances_compare_every_operation_on_one_sampled_path() -> None:
    backend = _oneshot_backend()
    state, space = backend.root(), OneShotSplitSpace()
    net = state.supernet
    net.restrict(4, ["none", "nor_conv_3x3"])
    assert space.edges(net)[EdgeId("cell", 4)] == (0, 3) and not space.full(net, EdgeId("cell", 4))
    assert {id(p) for p in space.edge_parameters(net, EdgeId("cell", 1))} == {
        id(p) for op in NB201_PRIMITIVES for p in net.op_parameters(1, op)}
    seen: list[str] = []
    net.register_forward_pre_hook(lambda module, args: seen.append(args[1].to_text()))
    state_before = {k: v.clone() for k, v in net.state_dict().items()}
    d = gradient_distances(net, space, EdgeId("cell", 1), backend.batches(1, torch.Generator()),
                           torch.Generator().manual_seed(0))
    assert d.shape == (5, 5) and np.array_equal(d, d.T) and (np.diag(d) == 0).all() and 0 <= d.min() <= d.max() <= 2
    paths = [NB201Genotype.from_text(t).edges() for t in seen]
    assert [p[1][0] for p in paths] == list(NB201_PRIMITIVES)  # edge 1 runs each operation in turn ...
    assert len({tuple(p[:1] + p[2:]) for p in paths}) == 1  # ... on one path of the other edges
    assert paths[0][4][0] in ("none", "nor_conv_3x3")  # which keeps to their restrictions
    assert all(torch.equal(v, state_before[k]) for k, v in net.state_dict().items())


def test_oneshot_children_inherit_supernet_optimizer_and_sampler() -> None:
    backend = _oneshot_backend()
    parent = backend.root()
    backend.train_epoch(parent, 1)
    children = split_children(backend, parent, EdgeId("cell", 3), [(0, 1), (2, 3, 4)])
    for child, group in zip(children, [(0, 1), (2, 3, 4)]):
        own, theirs = child.supernet.state_dict(), parent.supernet.state_dict()
        assert all(torch.equal(own[k], v) for k, v in theirs.items() if k != "allowed")
        mask = child.supernet.allowed_mask() != parent.supernet.allowed_mask()
        assert np.flatnonzero(mask.any(axis=1)).tolist() == [3] and child.supernet.allowed_ops()[3] == tuple(
            NB201_PRIMITIVES[o] for o in group)
        mine, others = _optimizer_tensors(child.optimizer), _optimizer_tensors(parent.optimizer)
        assert len(mine) == len(others) > 0 and all(torch.equal(a, b) for a, b in zip(mine, others))
        assert child.sampler.state_dict() == parent.sampler.state_dict() and child.sampler is not parent.sampler


def test_fewshot_oneshot_end_to_end_with_a_ground_truth_table() -> None:
    table = {g.to_text(): float(i % 5) for i, g in enumerate(itertools.islice(all_nb201(), 0, 15625, 997))}
    backend = _oneshot_backend(table)
    result = fewshot_search(backend, FewShotConfig(splits=1, split_every=1, distance_batches=1))
    assert isinstance(result.architecture, NB201Genotype) and result.metrics["n"] == len(table)
    assert -1 <= result.metrics["kendall_tau"] <= 1 or np.isnan(result.metrics["kendall_tau"])
    winner = result.subnets[result.winner]
    edge, ops = winner.restrictions[0]
    assert result.architecture.edges()[int(edge.split(":")[1])][0] in ops  # the result lies in the winner's subspace
    assert len(result.rounds) == 1 and len(result.rounds[0].ranking) == 2


def test_subspace_sample_is_distinct_allowed_and_seeded() -> None:
    net = _oneshot_backend().root().supernet
    for k in range(5):
        net.restrict(k, ["skip_connect"])
    assert [g.to_text() for g in subspace_sample(net, 10, 0)] == [
        g.to_text() for g in subspace_sample(net, 5, 1)]  # 5 architectures: all of them, in order
    net.restrict(0, ["none", "nor_conv_1x1"])
    sample = subspace_sample(net, 7, 3)
    assert len({g.to_text() for g in sample}) == 7 and all(net.allows(g) for g in sample)
    assert sample == subspace_sample(net, 7, 3)


# -- autodisco nas fewshot ------------------------------------------------------------------------------------------

TINY_CLI = ["--dataset", "digits", "--limit", "40", "--channels", "2", "--batch-size", "20", "--splits", "1",
            "--split-every", "1", "--epochs", "2", "--distance-batches", "1", "--quiet"]


def test_cli_fewshot_darts_records_splits_epochs_and_the_genotype(tmp_path, capsys) -> None:
    run = tmp_path / "gm"
    argv = ["nas", "fewshot", "--base", "darts", "--layers", "3", "--steps", "1", *TINY_CLI, "--run", str(run)]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out.strip()
    genotype = Genotype.from_text(printed)
    with Store.for_run(run, create=False) as store:
        job = store.get_job("gm")
        assert job.kind == "architecture" and job.status == "finished" and job.config["method"] == "fewshot"
        state = store.latest_checkpoint(job.id).state
        evaluations = {e.key: e for e in store.list_evaluations(job.id)}
        candidates = store.list_candidates(job.id)
    assert [s["id"] for s in state["subnets"]] == [0, 1, 2] and len(state["epochs"]) == 3
    split = state["splits"][0]
    assert split["children"] == [1, 2] and len(split["scores"]) == 4 and len(split["scores"][0]["distances"]) == 8
    assert state["result"]["architecture"] == printed and state["rounds"][0]["kept"] == [state["result"]["winner"]]
    assert set(evaluations) == {"s0-epoch-1", "s1-epoch-2", "s2-epoch-2", "result"}
    winner = state["result"]["winner"]
    result = evaluations["result"]
    assert result.metrics["winner"] == winner and result.fitness == evaluations[f"s{winner}-epoch-2"].fitness
    assert [c.text for c in candidates if c.id == result.candidate_id] == [genotype.to_text()]
    first = candidates[0].id
    assert all(c.parent_ids == (first,) for c in candidates[1:])  # both children descend from the root's epoch
    assert evaluations["s1-epoch-2"].metrics["restrictions"][0][0] == split["edge"]


def test_cli_fewshot_oneshot_reports_kendall_tau(tmp_path, capsys) -> None:
    table = tmp_path / "table.json"
    archs = [g.to_text() for g in itertools.islice(all_nb201(), 0, 15625, 1303)]
    table.write_text(json.dumps({"metadata": {"dataset": "digits"}, "accuracy": {a: i / 20 for i, a in
                                                                                 enumerate(archs)}}))
    argv = ["nas", "fewshot", "--base", "oneshot", *TINY_CLI, "--score-archs", "2", "--final-archs", "3",
            "--table", str(table), "--run", str(tmp_path / "os")]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert NB201Genotype.from_text(out[0]) and out[1].startswith("Kendall tau") and f"over {len(archs)}" in out[1]
    with Store.for_run(tmp_path / "os", create=False) as store:
        job = store.get_job("os")
        result = store.get_evaluation(job.id, "result")
        assert result.metrics["n"] == len(archs) and set(result.metrics["table_scores"]) == set(archs)
        assert len(store.list_candidates(job.id)) == 3  # the winner's sampled architectures


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--base", "darts", "--epochs", "1", "--splits", "1", "--split-every", "1"], "too few"),
        (["--base", "darts", "--epochs", "12", "--splits", "5", "--split-every", "1", "--steps", "1"], "5 splits"),
        (["--base", "oneshot", "--epochs", "30", "--splits", "7", "--split-every", "1"], "has 6 edges"),
        (["--base", "oneshot", "--epochs", "9", "--min-group", "3"], "5 operations"),
        (["--base", "darts", "--epochs", "9", "--dataset", "imagenet"], "--dataset must be"),
        (["--base", "darts", "--epochs", "0"], "--epochs must be at least 1"),
        (["--base", "oneshot", "--epochs", "9", "--table", "missing.json"], "not a file"),
        (["--base", "darts", "--epochs", "9", "--device", "tpu"], "--device"),
        (["--base", "darts", "--epochs", "9", "--limit", "1"], "limit"),
        (["--base", "darts", "--epochs", "9", "--threads", "0"], "--threads"),
    ],
)
def test_cli_fewshot_bad_input_is_one_line_and_exit_2(tmp_path, capsys, extra: list[str], fragment: str) -> None:
    small = ["--limit", "40", "--channels", "2", "--layers", "3", "--steps", "1", "--batch-size", "20"]  # if it ran
    argv = ["nas", "fewshot", "--dataset", "digits", "--run", str(tmp_path / "bad"), "--quiet", *small, *extra]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad" / "results.db").exists()  # nothing recorded for refused input


def test_cli_fewshot_refuses_an_existing_run(tmp_path, capsys) -> None:
    run = tmp_path / "taken"
    with Store.for_run(run) as store:
        store.create_job("taken", kind="architecture", config={}, seed=0)
    argv = ["nas", "fewshot", "--base", "darts", *TINY_CLI, "--run", str(run)]
    assert cli_main(argv) == 2 and "already exists" in capsys.readouterr().err
