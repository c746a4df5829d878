"""The dataset registry: one source of MNIST-1D / digits / modadd / quadratic / CIFAR-10 for proxy tasks and NAS."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from evaluators import data
from evaluators.errors import DatasetError, TaskError


def _digest(array: np.ndarray | torch.Tensor) -> str:
    if isinstance(array, torch.Tensor):
        array = array.numpy()
    return f"{hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]}{array.dtype}{array.shape}"


# Digests of the arrays the two dataset layers made before they became one registry (evaluators/data.py and
# nas/datasets.py at d8e02ea): the registry must give the same bytes.
POOLS = {
    "digits": ("9f578524b6cec1fcfloat32(1797, 1, 8, 8)", "a3c91c262eddcf7bint64(1797,)", 10, 0),
    "mnist1d": ("0b2b548d14a498bffloat32(5000, 40)", "6feec4a017698c7fint64(5000,)", 10, 0),
    "modadd": ("d8e57ef00d670f71int64(2209, 3)", "2b210923d95883a0int64(2209,)", 47, 48),
    "quadratic": ("c1387ca8549e1adffloat32(2048, 32)", "115c8608db7f5362float32(2048, 1)", 0, 0),
}
SPLITS = {
    "digits": ("db992a327b335a43float32(1438, 1, 8, 8)", "4d0aadf94d39e687int64(1438,)",
               "68a636b9dff3cae3float32(359, 1, 8, 8)", "356b82d388a4a048int64(359,)"),
    "mnist1d": ("d53506bddd12d3b7float32(4000, 1, 40)", "d97dc7aecec8ad6bint64(4000,)",
                "30addc43827c82aafloat32(1000, 1, 40)", "8de99be3ff9dab15int64(1000,)"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(POOLS))
def test_pools_are_bit_identical_to_the_old_proxy_layer(name: str) -> None:
    pool = data.load(name)
    assert (_digest(pool.x), _digest(pool.y), pool.n_classes, pool.vocab) == POOLS[name]


@pytest.mark.parametrize("name", sorted(SPLITS))
def test_nas_splits_are_bit_identical_to_the_old_nas_layer(name: str) -> None:
    splits = data.get_dataset(name)
    tensors = (*splits.train.tensors, *splits.test.tensors)
    assert tuple(_digest(t) for t in tensors) == SPLITS[name] and splits.num_classes == 10
    assert data.get_dataset(name) is splits  # made once per process, from the same pool as the proxy tasks


def test_limit_keeps_the_first_training_examples_and_the_whole_test_split() -> None:
    full, limited = data.get_dataset("digits"), data.get_dataset("digits", limit=10)
    assert torch.equal(limited.train.tensors[0], full.train.tensors[0][:10]) and limited.test is full.test
    assert limited.input_shape == (1, 8, 8) and limited.dim == 2


@pytest.mark.parametrize(("spec", "fragment"), [
    ("imagenet", "unknown dataset 'imagenet'; choose one of mnist1d, digits, cifar10:PATH"),
    ("modadd", "unknown dataset 'modadd'"),  # a proxy-task pool of tokens, not an architecture-search dataset
    ("cifar10", "unknown dataset 'cifar10'"),  # needs its folder
    ("digits:/tmp", "unknown dataset"),
])  # fmt: skip
def test_get_dataset_refuses_other_specs_naming_the_choices(spec: str, fragment: str) -> None:
    with pytest.raises(DatasetError, match=fragment):
        data.get_dataset(spec)


def test_errors_are_one_class_for_both_layers() -> None:
    import nas

    assert nas.DatasetError is DatasetError and issubclass(DatasetError, TaskError)
    with pytest.raises(DatasetError, match="at least 2"):
        data.get_dataset("digits", limit=1)
    with pytest.raises(DatasetError, match="unknown dataset 'cifar10'; known: digits, digits-ae, markov, mnist1d, modadd, quadratic"):
        data.load("cifar10")
    with pytest.raises(DatasetError, match="cifar-10-batches-py"):
        data.get_dataset("cifar10:/nonexistent")


@pytest.mark.parametrize("name", sorted(SPLITS))
def test_image_tensors_have_the_strides_of_new_tensors_so_convolutions_stay_channels_first(name: str) -> None:
    """The one-channel digit images once came with stride 1 on their channel axis (a broadcast numpy view, indexed):
    a convolution then read them as channels-last and ran the whole network so, and on AVX2-only CPUs oneDNN's
    backward of DARTS's 1x1 stride-2 convolution corrupted the heap (a segfault in ``nas darts``)."""
    for tensor in (*data.get_dataset(name).train.tensors, *data.get_dataset(name).test.tensors):
        assert tensor.stride() == torch.empty(tensor.shape).stride()
    images = data.get_dataset("digits").train.tensors[0][:4]
    assert torch.nn.Conv2d(1, 6, 3, padding=1)(images).is_contiguous()  # not channels-last
    assert data.load("digits").x.strides[1] != 0


def test_the_proxy_loop_gives_its_tensors_the_strides_of_new_tensors(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool whose one-channel axis is a broadcast view (stride 0, as the digits once were) reaches the proxy loop's
    tensors with standard strides, not numpy's (torch would read the images as channels-last)."""
    from evaluators import loop, tasks

    digits = data.load("digits")
    view = data.Arrays(digits.x[:, 0][:, None], digits.y, digits.n_classes)  # (N, 1, 8, 8), stride 0 on axis 1
    assert view.x.strides[1] == 0
    monkeypatch.setattr(data, "load", lambda name, cache_dir=None: view)
    setup = loop.prepare(tasks.TASKS["digits-cnn"], 0)
    for tensor in (setup.x_train, setup.x_val):
        assert tensor.stride() == torch.empty(tensor.shape).stride()
