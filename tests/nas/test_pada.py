from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nas import NasError
from nas.oneshot import N_EDGES, N_OPS, op_indices
from nas.pada import (
    FairSampler, PADASampler, UniformSampler, data_probabilities, make_sampler, pada_tau, path_probabilities,
    sample_importance,
)
from nas.spaces import NB201_PRIMITIVES

ALL = np.ones((N_EDGES, N_OPS), dtype=bool)
CONV3 = NB201_PRIMITIVES.index("nor_conv_3x3")
CONV1 = NB201_PRIMITIVES.index("nor_conv_1x1")


def test_tau_schedule_is_epoch_over_epochs() -> None:
    assert [pada_tau(e, 4) for e in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(NasError, match="epoch"):
        pada_tau(5, 4)


def test_path_probabilities_mix_importance_with_uniform() -> None:
    g = np.tile([1.0, 2.0, 3.0, 4.0, 0.0], (N_EDGES, 1))
    p = path_probabilities(g, 0.5, ALL)
    assert np.allclose(p[0], 0.5 * np.array([0.1, 0.2, 0.3, 0.4, 0.0]) + 0.5 * 0.2)
    assert np.allclose(p.sum(axis=1), 1.0)
    assert np.allclose(path_probabilities(g, 0.0, ALL), 0.2)  # τ = 0: uniform
    assert np.allclose(path_probabilities(g, 1.0, ALL)[3], [0.1, 0.2, 0.3, 0.4, 0.0])


def test_path_probabilities_respect_the_allowed_mask() -> None:
    allowed = ALL.copy()
    allowed[2] = [False, False, True, True, False]  # edge 2: only the two convolutions
    g = np.tile([5.0, 5.0, 1.0, 3.0, 5.0], (N_EDGES, 1))
    p = path_probabilities(g, 0.5, allowed)
    assert np.allclose(p[2], [0, 0, 0.5 * 0.25 + 0.25, 0.5 * 0.75 + 0.25, 0])
    assert np.allclose(path_probabilities(np.full((N_EDGES, N_OPS), np.nan), 0.9, allowed)[2], [0, 0, 0.5, 0.5, 0])
    with pytest.raises(NasError, match="mask"):
        path_probabilities(g, 0.5, np.zeros((N_EDGES, N_OPS), dtype=bool))


def test_data_importance_from_known_logits() -> None:
    logits = torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    y = torch.tensor([0, 0, 0])
    g = sample_importance(logits, y)
    assert np.allclose(g, [np.sqrt(0.5), 0.0, np.sqrt(2.0)], atol=1e-6)  # (−½, ½), (0, 0), (−1, 1)
    p = data_probabilities(g, 0.25)
    assert np.allclose(p, 0.25 * g / g.sum() + 0.75 / 3)
    assert np.isclose(p.sum(), 1.0)
    assert np.allclose(data_probabilities(np.zeros(4), 0.7), 0.25)


def test_pada_epoch_update_from_gradient_norms_and_logits() -> None:
    sampler = PADASampler(epochs=4, n_train=3, seed=0)
    genotype = sampler.sample(ALL)
    sampler.epoch_indices(1)
    conv_path = type(genotype).from_text("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+"
                                         "|skip_connect~0|nor_conv_3x3~1|none~2|")
    norms = np.array([2.0, 4.0, 1.0, np.nan, 3.0, np.nan])
    sampler.observe(conv_path, norms, np.array([0, 1, 2]), torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]]),
                    torch.tensor([0, 0, 0]))
    sampler.observe(conv_path, norms * 3, np.array([0]), torch.tensor([[0.0, 0.0]]), torch.tensor([0]))
    sampler.end_epoch(1)
    assert sampler.tau == 0.25
    assert sampler.path_importance[0, CONV3] == pytest.approx(4.0)  # mean of 2 and 6
    assert sampler.path_importance[2, CONV1] == pytest.approx(2.0)
    # unmeasured operations (no weights, or not sampled) take the mean of the edge's measured ones
    assert sampler.path_importance[0, CONV1] == pytest.approx(4.0)
    assert np.isnan(sampler.path_importance[3]).all()  # edge 3 saw no parametric operation
    p = sampler.probabilities(ALL)
    assert np.allclose(p[3], 0.2) and np.allclose(p[0], 0.2)  # equal importances: still uniform
    g = np.array([np.sqrt(0.5), 0.0, np.sqrt(2.0)])
    assert np.allclose(sampler.data_p, 0.25 * g / g.sum() + 0.75 / 3)


def test_pada_next_epoch_draws_n_indices_with_replacement_from_p_data() -> None:
    sampler = PADASampler(epochs=2, n_train=1000, seed=0)
    assert sorted(sampler.epoch_indices(1)) == list(range(1000))  # epoch 1: a permutation
    sampler.data_importance[:] = 0.0
    sampler.data_importance[:10] = 1.0
    sampler.end_epoch(1)  # τ = 0.5: half the mass on the first 10 examples
    drawn = sampler.epoch_indices(2)
    assert len(drawn) == 1000 and len(np.unique(drawn)) < 1000
    assert 0.4 < np.mean(drawn < 10) < 0.6


def test_samplers_are_deterministic_and_resume_exactly() -> None:
    def draws(sampler: PADASampler | UniformSampler, n: int = 20) -> list[tuple[int, ...]]:
        return [op_indices(sampler.sample(ALL)) for _ in range(n)]

    for name in ("uniform", "fair", "pada"):
        a, b = make_sampler(name, 5, 50, seed=3), make_sampler(name, 5, 50, seed=3)
        assert draws(a) == draws(b)
        assert list(a.epoch_indices(1)) == list(b.epoch_indices(1))
        assert draws(make_sampler(name, 5, 50, seed=4)) != draws(a)
        copy = make_sampler(name, 5, 50, seed=99)
        copy.load_state_dict(json.loads(json.dumps(a.state_dict())))
        assert draws(copy) == draws(a)
    with pytest.raises(NasError, match="sampler"):
        make_sampler("greedy", 5, 50, 0)


def test_samplers_draw_only_allowed_operations() -> None:
    allowed = ALL.copy()
    allowed[5] = False
    allowed[5, CONV1] = True
    allowed[0, 0] = False
    for sampler in (UniformSampler(3, 10, 0), FairSampler(3, 10, 0), PADASampler(3, 10, 0)):
        seen = np.array([op_indices(sampler.sample(allowed)) for _ in range(300)])
        assert (seen[:, 5] == CONV1).all() and (seen[:, 0] != 0).all()
        assert len(np.unique(seen[:, 1])) == N_OPS  # unrestricted edges still see every operation


def test_fair_sampler_runs_every_operation_once_per_block() -> None:
    sampler = FairSampler(3, 10, seed=0)
    seen = np.array([op_indices(sampler.sample(ALL)) for _ in range(4 * N_OPS)])
    for block in seen.reshape(4, N_OPS, N_EDGES):
        assert all(sorted(block[:, k]) == list(range(N_OPS)) for k in range(N_EDGES))
    assert len({tuple(b.ravel()) for b in seen.reshape(4, -1)}) == 4  # each block in a fresh order
    uniform = np.array([op_indices(UniformSampler(3, 10, seed=0).sample(ALL)) for _ in range(N_OPS)])
    assert not all(sorted(uniform[:, k]) == list(range(N_OPS)) for k in range(N_EDGES))  # not so by chance


def test_fair_sampler_on_a_narrowed_edge_and_resumed_mid_block() -> None:
    allowed = ALL.copy()
    allowed[2] = False
    allowed[2, [CONV1, CONV3]] = True
    sampler = FairSampler(3, 10, seed=5)
    seen = np.array([op_indices(sampler.sample(allowed)) for _ in range(2 * N_OPS)])
    assert set(seen[:, 2]) == {CONV1, CONV3}
    for block in seen.reshape(2, N_OPS, N_EDGES):  # 5 steps over 2 operations: 3 and 2, cycling one permutation
        assert sorted(np.bincount(block[:, 2], minlength=N_OPS)[[CONV1, CONV3]]) == [2, 3]
        assert sorted(block[:, 0]) == list(range(N_OPS))
    sampler.sample(allowed), sampler.sample(allowed)  # two steps into a block
    twin = FairSampler(3, 10, seed=99)
    twin.load_state_dict(json.loads(json.dumps(sampler.state_dict())))
    assert [op_indices(twin.sample(allowed)) for _ in range(7)] == [op_indices(sampler.sample(allowed))
                                                                      for _ in range(7)]
    narrower = allowed.copy()
    narrower[0] = False
    narrower[0, CONV3] = True  # a split narrows an edge mid-block: a new block starts, within the new mask
    assert all(op_indices(sampler.sample(narrower))[0] == CONV3 for _ in range(N_OPS))
