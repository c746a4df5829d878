"""Datasets for architecture search: the registry of ``evaluators.data`` (nothing is ever downloaded).

``get_dataset(spec, limit)`` gives the splits of "mnist1d", "digits" or "cifar10:PATH"; ``mnist1d`` / ``digits``
here also take the generators' arguments; ``split`` is DARTS's seeded cut of a training set into two parts.
"""

from __future__ import annotations

from evaluators.data import (
    CIFAR_FOLDER, CIFAR_LAYOUT, CIFAR_MEAN, CIFAR_STD, DIGITS_TEST_FRACTION, SPECS, Arrays, DataSplits, cifar10,
    digits_splits, generate_mnist1d, get_dataset, load, mnist1d_splits,
)
from evaluators.data import split_dataset as split

__all__ = ["CIFAR_FOLDER", "CIFAR_LAYOUT", "CIFAR_MEAN", "CIFAR_STD", "SPECS", "DataSplits", "cifar10", "digits",
           "get_dataset", "mnist1d", "split"]


def mnist1d(num_samples: int = 5000, seed: int = 42) -> DataSplits:
    """MNIST-1D with the package's default arguments (5,000 sequences, 80 % train, its seed 42); ``num_samples`` /
    ``seed`` change the package's arguments. Leaves the global RNGs as they were."""
    if (num_samples, seed) == (5000, 42):
        return get_dataset("mnist1d")
    x, y, n_train = generate_mnist1d(num_samples, seed)
    return mnist1d_splits(Arrays(x, y, 10), n_train)


def digits(test_fraction: float = DIGITS_TEST_FRACTION, seed: int = 0) -> DataSplits:
    """scikit-learn's 1,797 8×8 digit images scaled to [0, 1], split at random (``seed``) into train / test."""
    return digits_splits(load("digits"), test_fraction, seed)
