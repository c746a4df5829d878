"""The dataset registry of proxy tasks and architecture search alike; everything offline, nothing is downloaded.

``DATASETS`` maps a name to a ``Dataset``: how to make its data *pool* (``Arrays``: every example, for proxy tasks,
which split it themselves with their seed — ``load`` / ``split``) and, for datasets an architecture can be trained
on, its fixed train / test *splits* (``DataSplits`` of tensors — ``get_dataset``). The splits are cut from the pool,
so MNIST-1D is generated once per process for both (and cached on disk under ``cache_dir`` when one is given):

- ``mnist1d``: MNIST-1D (Greydanus 2020), the package's default arguments: 5,000 sequences of length 40, 10 classes;
  splits ``(N, 1, 40)``: the package's own 4,000 / 1,000.
- ``digits``: scikit-learn's bundled 8×8 digits scaled to [0, 1]; splits ``(N, 1, 8, 8)``: a seeded 80 / 20 cut.
- ``modadd``: every ``(a, b, '=')`` of Z_47, labelled ``(a + b) mod 47`` (tokens; proxy tasks only).
- ``quadratic``: ill-conditioned noisy linear regression (proxy tasks only).
- ``markov``: character windows of a seeded sparse order-2 Markov chain over 16 characters, labelled with the next
  character (tokens; proxy tasks only).
- ``digits-ae``: scikit-learn's digits flattened to 64 values in [0, 1], the target being the input (autoencoding;
  proxy tasks only).
- ``cifar10:PATH``: CIFAR-10 from a folder the user names, in torchvision's on-disk layout (``CIFAR_LAYOUT``):
  splits ``(N, 3, 32, 32)`` normalised per channel (architecture search only).

The CIFAR-10 batches are Python pickles — a format that can run code when loaded. They are read with a restricted
unpickler that only rebuilds plain containers and numpy arrays (it refuses every other global), so a tampered
file fails with ``DatasetError`` instead of executing anything.
"""

from __future__ import annotations

import pickle
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import TensorDataset

from evaluators.errors import DatasetError, TaskError
from evaluators.files import atomic_write

MODADD_P = 47  # modulus of the modular-addition task; inputs are the tokens (a, b, '=') with '=' encoded as p
QUADRATIC_DIM = 32
QUADRATIC_CONDITION = 1e3  # ratio of the largest to the smallest eigenvalue of the input covariance
QUADRATIC_NOISE = 0.1  # standard deviation of the label noise
QUADRATIC_SAMPLES = 2048
MARKOV_VOCAB = 16  # characters of the generated language
MARKOV_LENGTH = 8  # characters a model reads before predicting the next one
MARKOV_SAMPLES = 4096
MARKOV_CONCENTRATION = 0.1  # Dirichlet concentration of each context's next-character distribution: ~2-3 likely
DATA_SEED = 0  # the synthetic pools are fixed; a task's seed only decides the split, the init and the batch order
MNIST1D_TRAIN = 4000  # the package's default split: the first 4,000 sequences train, the last 1,000 test
DIGITS_TEST_FRACTION = 0.2
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = "test_batch"
CIFAR_LAYOUT = f"<root>/{CIFAR_FOLDER}/{{{', '.join(CIFAR_TRAIN)}, {CIFAR_TEST}}}"
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
_CIFAR_PIXELS = 3 * 32 * 32


@dataclass(frozen=True, eq=False)
class Arrays:
    """A supervised data pool.

    ``x``: inputs (float32 features, or int64 tokens); ``y``: int64 class labels, or float32 regression targets
    shaped ``(N, 1)``; ``n_classes``: the number of classes, 0 for regression; ``vocab``: the token vocabulary size
    for token inputs, else 0.
    """

    x: np.ndarray
    y: np.ndarray
    n_classes: int
    vocab: int = 0

    def __len__(self) -> int:
        return len(self.y)

    def take(self, index: np.ndarray) -> "Arrays":
        return Arrays(self.x[index], self.y[index], self.n_classes, self.vocab)


@dataclass(frozen=True, eq=False)
class DataSplits:
    """A dataset's training and test splits as ``TensorDataset``s of (float32 inputs, int64 labels)."""

    name: str
    train: TensorDataset
    test: TensorDataset
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """``(channels, *S)`` of one example."""
        return tuple(self.train.tensors[0].shape[1:])

    @property
    def dim(self) -> int:
        """Spatial axes: 1 for sequences, 2 for images."""
        return len(self.input_shape) - 1

    def limited(self, limit: int | None) -> "DataSplits":
        """These splits with only the first ``limit`` training examples (all if None)."""
        if limit is None:
            return self
        if limit < 2:
            raise DatasetError(f"limit must be at least 2 training examples, got {limit}")
        return DataSplits(self.name, TensorDataset(*(t[:limit] for t in self.train.tensors)), self.test,
                          self.num_classes)  # fmt: skip


def split(pool: Arrays, n_val: int, rng: np.random.Generator) -> tuple[Arrays, Arrays]:
    """A random (train, validation) partition of ``pool`` with ``n_val`` validation examples."""
    if not 0 < n_val < len(pool):
        raise TaskError(f"validation size {n_val} must be between 1 and {len(pool) - 1} (pool of {len(pool)})")
    order = rng.permutation(len(pool))
    return pool.take(order[n_val:]), pool.take(order[:n_val])


def mnist1d(cache_dir: Path | None) -> Arrays:
    """MNIST-1D (Greydanus 2020) with the package's default arguments: 5,000 sequences of length 40, 10 classes
    (its training part first)."""
    path = None if cache_dir is None else Path(cache_dir) / "mnist1d-default-5000.npz"
    if path is not None and path.exists():
        with np.load(path) as stored:
            return Arrays(stored["x"], stored["y"], 10)
    x, y, _ = generate_mnist1d()
    if path is not None:
        _save_atomically(path, x=x, y=y)
    return Arrays(x, y, 10)


def generate_mnist1d(num_samples: int | None = None, seed: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """``(x, y, n_train)``: MNIST-1D made by the package (its defaults unless ``num_samples`` / ``seed`` are given),
    training part first; float32 / int64. Leaves the global RNGs as they were."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    if num_samples is not None:
        args.num_samples = num_samples
    if seed is not None:
        args.seed = seed
    # make_dataset reseeds the global `random` and `numpy.random` generators; give the caller theirs back.
    saved_numpy, saved_random = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(saved_numpy)
        random.setstate(saved_random)
    x = np.concatenate([data["x"], data["x_test"]]).astype(np.float32)
    y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
    return x, y, len(data["y"])


def _save_atomically(path: Path, **arrays: np.ndarray) -> None:
    atomic_write(path, lambda stream: np.savez(stream, **arrays))


def digits(cache_dir: Path | None) -> Arrays:
    """scikit-learn's 8×8 handwritten digits (1,797 images, shipped with the package), scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    x = images.reshape(len(images), 1, *images.shape[1:])  # not [:, None]: a stride-0 axis (see _dense)
    return Arrays(x, bunch.target.astype(np.int64), 10)


def modadd(cache_dir: Path | None) -> Arrays:
    """Every pair (a, b) in Z_p × Z_p as tokens ``(a, b, '=')``, labelled ``(a + b) mod p`` (Power et al. 2022)."""
    a, b = np.meshgrid(np.arange(MODADD_P), np.arange(MODADD_P), indexing="ij")
    a, b = a.ravel(), b.ravel()
    x = np.stack([a, b, np.full_like(a, MODADD_P)], axis=1).astype(np.int64)
    return Arrays(x, ((a + b) % MODADD_P).astype(np.int64), MODADD_P, vocab=MODADD_P + 1)


def quadratic(cache_dir: Path | None) -> Arrays:
    """Ill-conditioned noisy linear regression: ``y = x·w* + noise`` with feature scales spanning sqrt(condition)."""
    rng = np.random.default_rng(DATA_SEED)
    scales = QUADRATIC_CONDITION ** (-0.5 * np.linspace(0.0, 1.0, QUADRATIC_DIM))
    x = rng.standard_normal((QUADRATIC_SAMPLES, QUADRATIC_DIM)) * scales
    w_star = rng.standard_normal(QUADRATIC_DIM)
    y = x @ w_star + QUADRATIC_NOISE * rng.standard_normal(QUADRATIC_SAMPLES)
    return Arrays(x.astype(np.float32), y.astype(np.float32)[:, None], 0)


def markov(cache_dir: Path | None) -> Arrays:
    """Windows of ``MARKOV_LENGTH`` characters from one stream of a fixed random order-2 Markov chain (each pair of
    characters has its own sparse next-character distribution), each labelled with the character that follows it.

    Predicting well needs the last two characters, so a recurrent model must carry them through its state; the
    best possible accuracy is about 0.55 (each context's most likely next character, weighted by how often it
    occurs).
    """
    rng = np.random.default_rng(DATA_SEED)
    v = MARKOV_VOCAB
    table = rng.dirichlet(np.full(v, MARKOV_CONCENTRATION), size=(v, v))
    cumulative = np.cumsum(table, axis=2)
    n = MARKOV_SAMPLES + MARKOV_LENGTH
    stream = np.empty(n, dtype=np.int64)
    stream[:2] = rng.integers(v, size=2)
    draws = rng.random(n)
    for i in range(2, n):
        stream[i] = min(int(np.searchsorted(cumulative[stream[i - 2], stream[i - 1]], draws[i])), v - 1)
    windows = np.lib.stride_tricks.sliding_window_view(stream[:-1], MARKOV_LENGTH)[:MARKOV_SAMPLES]
    labels = stream[MARKOV_LENGTH : MARKOV_LENGTH + MARKOV_SAMPLES]
    return Arrays(np.ascontiguousarray(windows), labels.copy(), v, vocab=v)


def digits_autoencoding(cache_dir: Path | None) -> Arrays:
    """scikit-learn's 8×8 digits as 64 values in [0, 1], each its own target (regression of the input)."""
    from sklearn.datasets import load_digits

    x = (load_digits().data / 16.0).astype(np.float32)
    return Arrays(x, x.copy(), 0)


def mnist1d_splits(pool: Arrays, n_train: int = MNIST1D_TRAIN) -> DataSplits:
    """MNIST-1D's sequences ``(N, 1, 40)``: the first ``n_train`` of ``pool`` train, the rest test."""
    x = pool.x[:, None, :]
    return DataSplits("mnist1d", _tensors(x[:n_train], pool.y[:n_train]), _tensors(x[n_train:], pool.y[n_train:]),
                      pool.n_classes)  # fmt: skip


def digits_splits(pool: Arrays, test_fraction: float = DIGITS_TEST_FRACTION, seed: int = 0) -> DataSplits:
    """The digit images ``(N, 1, 8, 8)`` split at random (``seed``) into train / test."""
    if not 0 < test_fraction < 1:
        raise DatasetError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(len(pool))
    n_test = int(round(len(pool) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return DataSplits("digits", _tensors(pool.x[train], pool.y[train]), _tensors(pool.x[test], pool.y[test]),
                      pool.n_classes)  # fmt: skip


@dataclass(frozen=True)
class Dataset:
    """A registry entry: ``pool`` makes every example (proxy tasks; None: none), ``splits`` cuts the pool into
    fixed train / test splits for architecture search (None: not an architecture-search dataset)."""

    pool: Callable[[Path | None], Arrays] | None
    splits: Callable[[Arrays], DataSplits] | None = None
    needs_path: bool = False


DATASETS: dict[str, Dataset] = {
    "mnist1d": Dataset(mnist1d, mnist1d_splits),
    "digits": Dataset(digits, digits_splits),
    "modadd": Dataset(modadd),
    "quadratic": Dataset(quadratic),
    "markov": Dataset(markov),
    "digits-ae": Dataset(digits_autoencoding),
    "cifar10": Dataset(None, needs_path=True),
}
SPECS = tuple(f"{name}:PATH" if d.needs_path else name for name, d in DATASETS.items() if d.splits or d.needs_path)
"""The dataset specs ``get_dataset`` takes (architecture search)."""

_POOLS: dict[str, Arrays] = {}  # per-process cache: every pool is a pure function of its name
_SPLITS: dict[str, DataSplits] = {}


def load(name: str, cache_dir: Path | str | None = None) -> Arrays:
    """The data pool called ``name`` (cached per process; MNIST-1D also on disk under ``cache_dir``)."""
    entry = DATASETS.get(name)
    if entry is None or entry.pool is None:
        known = sorted(n for n, d in DATASETS.items() if d.pool is not None)
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(known)}")
    if name not in _POOLS:
        _POOLS[name] = entry.pool(None if cache_dir is None else Path(cache_dir))
    return _POOLS[name]


def get_dataset(spec: str, limit: int | None = None, cache_dir: Path | str | None = None) -> DataSplits:
    """The train / test splits named by ``spec`` ("mnist1d", "digits" or "cifar10:PATH"), keeping only the first
    ``limit`` training examples if given (quick trials). Generated once per process; callers must not modify the
    tensors. ``DatasetError`` for anything else, naming the choices."""
    if limit is not None and limit < 2:
        raise DatasetError(f"limit must be at least 2 training examples, got {limit}")
    name, _, path = str(spec).partition(":")
    entry = DATASETS.get(name)
    if entry is not None and entry.needs_path and path:
        return cifar10(path).limited(limit)
    if entry is None or entry.splits is None or path:
        raise DatasetError(f"unknown dataset {spec!r}; choose one of {', '.join(SPECS)}")
    if name not in _SPLITS:
        _SPLITS[name] = entry.splits(load(name, cache_dir))
    return _SPLITS[name].limited(limit)


def split_dataset(data: TensorDataset, fraction: float = 0.5, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """A random partition of ``data`` into (the first ``fraction``, the rest) — DARTS's 50/50 split of the training
    set into data for the weights and data for the architecture."""
    n = len(data)
    k = int(n * fraction)
    if not 0 < k < n:
        raise DatasetError(f"split fraction {fraction} leaves an empty part of {n} examples")
    order = torch.from_numpy(np.random.default_rng(seed).permutation(n))
    return TensorDataset(*(t[order[:k]] for t in data.tensors)), TensorDataset(*(t[order[k:]] for t in data.tensors))


def cifar10(root: str | Path, normalize: bool = True, limit: int | None = None) -> DataSplits:
    """CIFAR-10 from ``root`` (the folder holding ``cifar-10-batches-py``, or that folder itself).

    ``normalize`` standardises each channel with CIFAR-10's mean and standard deviation (else values are in
    [0, 1]); ``limit`` keeps the first ``limit`` training images. Raises ``DatasetError`` naming the expected layout
    when files are missing, and naming the file when one is malformed or holds anything but arrays.
    """
    folder = _cifar_folder(Path(root))
    x_train, y_train = zip(*(_cifar_batch(folder / name) for name in CIFAR_TRAIN))
    x_test, y_test = _cifar_batch(folder / CIFAR_TEST)
    x, y = np.concatenate(x_train), np.concatenate(y_train)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return DataSplits(
        "cifar10", _tensors(_cifar_images(x, normalize), y), _tensors(_cifar_images(x_test, normalize), y_test), 10
    )


def _tensors(x: np.ndarray, y: Any) -> TensorDataset:
    return TensorDataset(_dense(torch.as_tensor(np.asarray(x, dtype=np.float32))),
                         torch.as_tensor(np.asarray(y, np.int64)))


def _dense(t: torch.Tensor) -> torch.Tensor:
    """``t`` with the strides of a new tensor of its shape. numpy may give a size-1 axis any stride (the channel axis
    of the one-channel digit images, a broadcast view, gets 1 after indexing); torch's convolutions then read such
    ``(N, 1, H, W)`` batches as channels-last and run every layer after them so, and oneDNN's backward of a 1x1
    stride-2 convolution on channels-last inputs corrupts the heap on AVX2-only CPUs (DARTS's FactorizedReduce)."""
    expected, step = [], 1
    for size in reversed(t.shape):
        expected.append(step)
        step *= size
    return t if t.stride() == tuple(reversed(expected)) else t.clone(memory_format=torch.contiguous_format)


def _cifar_folder(root: Path) -> Path:
    folder = root if root.name == CIFAR_FOLDER else root / CIFAR_FOLDER
    missing = [name for name in (*CIFAR_TRAIN, CIFAR_TEST) if not (folder / name).is_file()]
    if missing:
        raise DatasetError(
            f"CIFAR-10 not found under {root}: missing {', '.join(missing)}; expected torchvision's layout "
            f"{CIFAR_LAYOUT} (the python version of CIFAR-10, extracted; nothing is downloaded)"
        )
    return folder


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as file:
            batch = _ArrayUnpickler(file, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as err:
        raise DatasetError(f"{path}: not a CIFAR-10 python batch ({err})") from None
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: expected a dict with 'data' and 'labels', got {type(batch).__name__}")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), np.asarray(batch.get("labels", []))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _CIFAR_PIXELS:
        raise DatasetError(f"{path}: 'data' must be a uint8 array of shape (N, {_CIFAR_PIXELS})")
    in_range = labels.dtype.kind in "iu" and labels.min(initial=0) >= 0 and labels.max(initial=0) <= 9
    if labels.shape != (len(data),) or not in_range:
        raise DatasetError(f"{path}: 'labels' must be {len(data)} integers in 0..9")
    return data, labels


def _cifar_images(data: np.ndarray, normalize: bool) -> np.ndarray:
    images = data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
    if normalize:
        mean = np.array(CIFAR_MEAN, np.float32)[:, None, None]
        images = (images - mean) / np.array(CIFAR_STD, np.float32)[:, None, None]
    return images


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds only builtin containers/scalars and numpy arrays: any other global is refused."""

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        return super().find_class(module, name)
