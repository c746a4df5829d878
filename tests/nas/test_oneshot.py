from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nas import NasError, NB201Genotype
from nas.nb201_network import NB201NetConfig, NB201Network, build_network
from nas.oneshot import (
    InheritConfig, InheritedScore, OneShotSupernet, inherited_accuracy, inherited_scores, path_grad_norms,
)
from nas.oneshot_train import OneShotConfig, SinglePathStep, load_supernet, train_supernet
from nas.pada import make_sampler
from search.jobs import create_job, open_job, run_job
from search.jobs._oneshot import OneShotJob, OneShotJobConfig
from nas.spaces import NB201_PRIMITIVES
from search.store import Store

TINY = NB201NetConfig(C=4, cells_per_stage=1, stages=2, num_classes=3)
MIXED = NB201Genotype.from_text(
    "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|")
EMPTY = NB201Genotype.from_text("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
CONVS = NB201Genotype.from_text("|nor_conv_1x1~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|nor_conv_1x1~2|")


def _data(dim: int, n: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (n, 1, 12) if dim == 1 else (n, 1, 6, 6)
    return torch.randn(shape, generator=g), torch.randint(0, 3, (n,), generator=g)


def _supernet(dim: int, seed: int = 0) -> OneShotSupernet:
    torch.manual_seed(seed)
    return OneShotSupernet(TINY, 1, dim)


def _standalone_from(supernet: OneShotSupernet, genotype: NB201Genotype) -> NB201Network:
    """The standalone network of ``genotype`` carrying the supernet's weights of that path."""
    net = NB201Network(genotype, supernet.config, supernet.in_channels, supernet.dim)
    choice = {k: NB201_PRIMITIVES.index(op) for k, (op, _) in enumerate(genotype.edges())}
    state = {}
    for name, value in supernet.state_dict().items():
        parts = name.split(".")
        if ".edges." in name:  # layers.i.edges.k.o.rest -> layers.i.edges.k.rest for the chosen o
            k, o = int(parts[3]), int(parts[4])
            if choice[k] != o:
                continue
            name = ".".join(parts[:4] + parts[5:])
        if name != "allowed":
            state[name] = value
    net.load_state_dict(state)
    return net


@pytest.mark.parametrize("dim", [1, 2])
def test_a_supernet_path_is_the_standalone_network(dim: int) -> None:
    supernet = _supernet(dim).eval()
    x, _ = _data(dim)
    for genotype in (MIXED, CONVS):
        out = supernet(x, genotype)
        assert out.shape == (len(x), 3)
        assert torch.allclose(out, _standalone_from(supernet, genotype).eval()(x), atol=1e-6)
    empty = supernet(x, EMPTY)  # cells output zeros: every input gets the same logits
    assert torch.allclose(empty, empty[:1].expand_as(empty))


def test_standalone_network_init_is_seeded() -> None:
    a, b, c = (build_network(MIXED, TINY, 1, 1, seed) for seed in (5, 5, 6))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))
    assert build_network(MIXED, NB201NetConfig(C=4, reduction="resnet"), 1, 2, 0)(_data(2)[0]).shape == (24, 10)
    with pytest.raises(NasError, match="reduction"):
        NB201NetConfig(reduction="maxpool")


def test_only_the_sampled_path_gets_gradients() -> None:
    supernet = _supernet(1)
    x, y = _data(1)
    torch.nn.functional.cross_entropy(supernet(x, CONVS), y).backward()
    for k, (op, _) in enumerate(CONVS.edges()):
        for other in ("nor_conv_1x1", "nor_conv_3x3"):
            grads = [p.grad for p in supernet.op_parameters(k, other)]
            assert all(g is not None for g in grads) == (other == op)
    norms = path_grad_norms(supernet, CONVS)
    assert np.isnan(norms[3]) and np.isnan(norms[4])  # none has no weights
    assert (norms[[0, 1, 2, 5]] > 0).all()


def test_restriction_is_respected_and_travels_with_the_state() -> None:
    supernet = _supernet(1)
    supernet.restrict(4, ["none", "skip_connect"])
    assert supernet.allowed_ops()[4] == ("none", "skip_connect")
    bad = NB201Genotype.from_text("|none~0|+|none~0|none~1|+|none~0|nor_conv_3x3~1|none~2|")
    assert supernet.allows(CONVS) and supernet.allows(MIXED) and not supernet.allows(bad)
    with pytest.raises(NasError, match="allow"):
        supernet(_data(1)[0], bad)
    twin = copy.deepcopy(supernet)
    fresh = _supernet(1, seed=1)
    fresh.load_state_dict(supernet.state_dict())
    assert twin.allowed_ops() == fresh.allowed_ops() == supernet.allowed_ops()
    assert torch.equal(fresh(_data(1)[0], CONVS), supernet(_data(1)[0], CONVS))
    for edge, ops in ((6, ["none"]), (0, []), (0, ["sep_conv_3x3"])):
        with pytest.raises(NasError):
            supernet.restrict(edge, ops)


def test_inherited_accuracy_recalibrates_batchnorm_and_leaves_the_supernet_alone() -> None:
    supernet = _supernet(1)
    x, y = _data(1, n=64)
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    config = InheritConfig(calibration_batches=2, batch_size=16, seed=0)
    first = inherited_accuracy(supernet, [MIXED, CONVS, EMPTY], x, (x, y), config)
    assert all(0.0 <= a <= 1.0 for a in first)
    assert all(torch.equal(v, supernet.state_dict()[k]) for k, v in before.items())
    for module in supernet.modules():  # the supernet's own running statistics do not matter
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.fill_(7.0)
            module.running_var.fill_(0.01)
    assert inherited_accuracy(supernet, [MIXED, CONVS, EMPTY], x, (x, y), config) == first


def test_inherited_loss_is_the_validation_cross_entropy_and_ranks_by_default() -> None:
    supernet = _supernet(1)
    x, y = _data(1, n=64)
    config = InheritConfig(calibration_batches=2, batch_size=16, seed=0)
    scores = inherited_scores(supernet, [MIXED, CONVS], x, (x, y), config)
    assert [s.accuracy for s in scores] == inherited_accuracy(supernet, [MIXED, CONVS], x, (x, y), config)
    model = copy.deepcopy(supernet)  # the same recalibration by hand, then the loss over the whole set at once
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    order = torch.from_numpy(np.random.default_rng(0).permutation(64))
    model.train()
    with torch.no_grad():
        for i in range(2):
            model(x[order[16 * i : 16 * (i + 1)]], CONVS)
        model.eval()
        expected = float(torch.nn.functional.cross_entropy(model(x, CONVS), y))
    assert scores[1].loss == pytest.approx(expected, rel=1e-5)
    assert InheritConfig().metric == "loss" and scores[1].value("loss") == -scores[1].loss
    assert scores[1].value("accuracy") == scores[1].accuracy
    with pytest.raises(NasError, match="metric"):
        InheritConfig(metric="f1")
    with pytest.raises(NasError, match="metric"):
        InheritedScore(0.5, 1.0).value("f1")


def test_paths_per_step_sums_the_gradients_of_a_fair_block() -> None:
    x, y = _data(1, n=16)
    for paths, trained in ((1, 1), (5, 2)):  # one path: one conv per edge; a fair block of 5: both convs
        supernet = _supernet(1)
        config = OneShotConfig(net=TINY, sampler="fair", epochs=1, batch_size=16, paths_per_step=paths)
        optimizer = config.optimizer(supernet.parameters())
        step = SinglePathStep(supernet, optimizer, make_sampler("fair", 1, 16, 0), (x, y), config, "cpu")
        loss, hits, n = step(step.batches(1)[0])
        assert n == 16 and 0 <= int(hits) <= 16 and torch.isfinite(loss)
        for k in range(6):
            with_grad = [op for op in ("nor_conv_1x1", "nor_conv_3x3")
                         if any(p.grad is not None for p in supernet.op_parameters(k, op))]
            assert len(with_grad) <= trained and (paths == 1 or len(with_grad) == 2)
    with pytest.raises(NasError, match="paths_per_step"):
        OneShotConfig(paths_per_step=0)


def test_training_is_deterministic_for_every_sampler() -> None:
    x, y = _data(1, n=40)
    for sampler in ("uniform", "fair", "pada"):
        config = OneShotConfig(net=TINY, sampler=sampler, epochs=2, batch_size=8, seed=1)
        (a, history), (b, _) = (train_supernet(config, (x, y), in_channels=1, dim=1) for _ in range(2))
        assert len(history) == 2 and history[0].distinct_examples == 40
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert "tau" in history[-1].sampler and history[-1].sampler["tau"] == 1.0
    with pytest.raises(NasError, match="sampler"):
        OneShotConfig(sampler="greedy")


def test_an_interrupted_job_continues_to_the_same_supernet(tmp_path: Path) -> None:
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"metadata": {"dataset": "digits"},
                                 "accuracy": {MIXED.to_text(): 0.5, CONVS.to_text(): 0.9, EMPTY.to_text(): 0.1}}))
    train = OneShotConfig(net=NB201NetConfig(C=4, stages=2), sampler="pada", epochs=3, batch_size=16)
    config = OneShotJobConfig("digits", train, str(table), InheritConfig(2, 16), limit=48)

    def run(name: str, stop_after: int | None) -> dict[str, torch.Tensor]:
        store = Store.for_run(tmp_path / name)

        def stop(line: str) -> None:
            if line.startswith(f"[autodisco] epoch {stop_after} "):
                raise KeyboardInterrupt

        job = create_job(store, name, OneShotJob, config, run_dir=tmp_path / name, say=stop, show_progress=False)
        if stop_after is not None:
            with pytest.raises(KeyboardInterrupt):
                run_job(job)
            assert store.get_job(name).status == "interrupted"
        result = run_job(open_job(store, store.get_job(name), run_dir=tmp_path / name, show_progress=False))
        job = store.get_job(name)
        assert len(result.history) == 3 and result.ranking is not None and result.ranking.n == 3
        evaluations = store.list_evaluations(job.id, status="ok")
        assert {e.key for e in evaluations} == {f"inherited:{a}" for a in result.scores}
        assert store.get_job(name).status == "finished"
        assert store.latest_checkpoint(job.id).state["ranking"]["n"] == 3
        return load_supernet(tmp_path / name / "supernet.pt").supernet.state_dict()

    whole, resumed = run("whole", None), run("resumed", 1)
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
