from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nas import DatasetError, NasError
from nas.genotypes import DARTS_V2
from nas.network import NetworkConfig
from nas.schedules import cosine_annealing
from nas.train import TrainConfig, TrainEpoch, TrainResult, crop_flip, cutout, load_dataset, train_genotype

NET = NetworkConfig(C=4, layers=3, num_classes=2)


def _data(n: int, shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes told apart by the sign of a fixed pattern added to noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    pattern = torch.linspace(-1, 1, shape[-1]).expand(shape)
    return 0.5 * torch.randn(n, *shape, generator=g) + (2.0 * y - 1).view(-1, *[1] * len(shape)) * pattern, y


def _split(shape: tuple[int, ...]) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    return _data(96, shape, 1), _data(64, shape, 2)


def test_training_learns_a_tiny_problem_and_records_every_epoch() -> None:
    config = TrainConfig(net=NET, epochs=6, batch_size=16, lr=0.05)
    seen: list[TrainEpoch] = []
    result = train_genotype(DARTS_V2, _split((1, 16)), config, on_epoch=seen.append)
    assert result.status == "ok" and result.reason is None
    assert list(result.history) == seen and [e.epoch for e in seen] == [1, 2, 3, 4, 5, 6]
    assert [e.lr for e in seen] == [cosine_annealing(k, 6, 0.05, 0.0) for k in range(1, 7)]
    assert result.val_accuracy == seen[-1].val_accuracy > 0.85  # chance is 0.5
    assert result.params > 0


def test_options_on_images_run_with_drop_path_ramp_and_auxiliary_head() -> None:
    config = TrainConfig(net=NetworkConfig(C=4, layers=3, num_classes=2), epochs=2, batch_size=32, cutout=3,
                         drop_path=0.2, auxiliary_weight=0.4, crop_flip=True)
    assert config.net.auxiliary
    result = train_genotype(DARTS_V2, _split((1, 8, 8)), config)
    assert result.status == "ok"
    assert [e.drop_path_prob for e in result.history] == [0.0, 0.1]
    without = train_genotype(DARTS_V2, _split((1, 8, 8)), TrainConfig(net=NET, epochs=2, batch_size=32, cutout=3,
                                                                       drop_path=0.2))
    assert without.params == result.params  # the auxiliary head is not counted
    assert without.history[0].train_loss != result.history[0].train_loss


def test_training_is_deterministic_and_leaves_the_global_rng_alone() -> None:
    config = TrainConfig(net=NET, epochs=2, batch_size=16, drop_path=0.3, cutout=4)
    state = torch.random.get_rng_state()
    a, b = (train_genotype(DARTS_V2, _split((1, 16)), config) for _ in range(2))
    assert torch.equal(torch.random.get_rng_state(), state)
    strip = [{**e.to_dict(), "seconds": 0} for e in a.history]
    assert strip == [{**e.to_dict(), "seconds": 0} for e in b.history]
    other = train_genotype(DARTS_V2, _split((1, 16)), TrainConfig(net=NET, epochs=2, batch_size=16, seed=1))
    assert other.history[0].train_loss != a.history[0].train_loss


def test_a_non_finite_loss_is_a_failure_with_its_place() -> None:
    (x, y), val = _split((1, 16))
    x[40] = float("nan")  # in the third batch of 16 (order from the seed) or another: some step of epoch 1
    result = train_genotype(DARTS_V2, ((x, y), val), TrainConfig(net=NET, epochs=3, batch_size=16))
    assert result.status == "failed" and result.val_accuracy is None and result.history == ()
    assert result.reason is not None and "epoch 1, step" in result.reason and "nan" in result.reason


def test_cutout_zeroes_a_clipped_square_per_example() -> None:
    g = torch.Generator().manual_seed(0)
    out = cutout(torch.ones(50, 2, 9, 9), 4, g)
    zeros = (out == 0).float()
    assert torch.equal(zeros[:, 0], zeros[:, 1])  # the same square on every channel
    counts = zeros[:, 0].sum(dim=(1, 2))
    assert counts.max() == 16 and counts.min() >= 4  # 4×4 inside, clipped at a border down to 2×2
    rows, cols = zeros[:, 0].amax(dim=2), zeros[:, 0].amax(dim=1)
    assert torch.equal(zeros[:, 0], rows[:, :, None] * cols[:, None, :])  # a rectangle
    sequence = cutout(torch.ones(20, 1, 30), 6, g)
    assert ((sequence == 0).sum(dim=2) <= 6).all() and ((sequence == 0).sum(dim=2) >= 3).all()


def test_crop_flip_is_a_shifted_window_of_the_padded_image_maybe_mirrored() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 2, 6, 6, generator=g)
    out = crop_flip(x, 2, g)
    assert out.is_contiguous()  # not channels-last: the network's convolutions get the usual layout
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    flipped, shifts = 0, set()
    for i in range(60):
        windows = [(dy, dx, f) for dy in range(5) for dx in range(5) for f in (False, True)
                   if torch.equal(out[i], (lambda w: w.flip(-1) if f else w)(padded[i, :, dy:dy + 6, dx:dx + 6]))]
        assert windows, i
        flipped += windows[0][2]
        shifts.add(windows[0][:2])
    assert 15 < flipped < 45 and len(shifts) > 10
    unpadded = crop_flip(x, 0, g)
    assert all(torch.equal(u, v) or torch.equal(u, v.flip(-1)) for u, v in zip(unpadded, x))


def test_configs_and_results_round_trip_through_json() -> None:
    config = TrainConfig(net=NET, epochs=2, batch_size=16, cutout=2, drop_path=0.1, auxiliary_weight=0.4,
                         lr_schedule="cosine_power")
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    result = train_genotype(DARTS_V2, _split((1, 16)), config)
    assert TrainResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    assert result.history[-1].lr == pytest.approx(0.0)  # cosine power annealing ends at lr_min


@pytest.mark.parametrize("bad", [dict(epochs=0), dict(lr=0), dict(lr_schedule="step"), dict(drop_path=1.0),
                                 dict(auxiliary_weight=2), dict(cutout=-1), dict(lr_min=1.0)])
def test_bad_configurations_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(NasError):
        TrainConfig(net=NET, **bad)  # type: ignore[arg-type]


def test_bad_data_is_refused() -> None:
    (x, y), val = _split((1, 16))
    with pytest.raises(NasError, match="labels"):
        train_genotype(DARTS_V2, ((x, y + 5), val), TrainConfig(net=NET, epochs=1))
    with pytest.raises(NasError, match="differ in shape"):
        train_genotype(DARTS_V2, ((x, y), _data(8, (1, 12), 3)), TrainConfig(net=NET, epochs=1))


def test_dataset_specs(tmp_path: Path) -> None:
    assert load_dataset("digits").input_shape == (1, 8, 8)
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("imagenet")
    with pytest.raises(DatasetError, match="cifar-10-batches-py"):
        load_dataset(f"cifar10:{tmp_path}")


def test_a_training_job_records_each_epoch_and_a_divergence(tmp_path: Path) -> None:
    from nas.datasets import DataSplits
    from search.jobs import create_job, job_type_of, run_job
    from search.jobs._train import TrainJob, TrainJobConfig
    from search.store import Store
    from torch.utils.data import TensorDataset

    (x, y), (xv, yv) = _split((1, 16))
    x[5:] = float("inf")  # one batch of all 96 examples: the first step diverges
    data = DataSplits("made-up", TensorDataset(x, y), TensorDataset(xv, yv), 2)
    config = TrainJobConfig(DARTS_V2.to_text(), "made-up", TrainConfig(net=NET, epochs=2, batch_size=96), "DARTS_V2")
    assert TrainJobConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with Store.for_run(tmp_path / "t") as store:
        job = create_job(store, "t", TrainJob, config, factory=lambda c, context: TrainJob(c, context, data),
                         show_progress=False)
        result = run_job(job)
        job = store.get_job("t")
        [evaluation] = store.list_evaluations(job.id)
    assert job_type_of(job) is TrainJob and job.status == "finished" and result.status == "failed"
    assert evaluation.key == "epoch-1" and evaluation.status == "failed" and evaluation.error == result.reason
    assert evaluation.metrics["params"] == result.params and evaluation.task == "train:made-up"
