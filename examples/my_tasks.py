"""Two tasks of your own, for ``autodisco search optimizer --task my_tasks:regression`` (see the README, "Your own
task"). Each is a ``user_task``: a data function of the seed, a model builder, a budget and a fitness.

- ``regression``: a smooth non-linear function of 8 inputs with noise, fitted by a small tanh MLP (fitness: minus the
  validation MSE); ``@10x`` / ``@100x`` widen the MLP and lengthen the run, so ``autodisco validate`` can run on it.
- ``next_char``: a character-level model on generated text (words from a small grammar): predict the next character
  from the previous eight with an embedding and an MLP (fitness: validation accuracy).

Everything is generated from the seed; nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from evaluators import ACCURACY, NEG_LOSS, user_task

FEATURES = 8


def regression_data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_val, y_val)``: 2,048 + 512 examples of ``y = sin(x·a) + (x·b)² / 2 + noise``; the
    function is fixed, the samples come from ``seed``."""
    a, b = np.random.default_rng(1234).standard_normal((2, FEATURES)) / np.sqrt(FEATURES)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, (2560, FEATURES)).astype(np.float32)
    y = np.sin(x @ a) + 0.5 * (x @ b) ** 2 + 0.05 * rng.standard_normal(len(x))
    y = y.astype(np.float32)[:, None]  # targets shaped like the model's output: (N, 1)
    return x[:2048], y[:2048], x[2048:], y[2048:]


def regression_model(width: int = 1) -> nn.Module:
    """A tanh MLP 8 → 32·width → 32·width → 1 (``width``: the ``@10x``/``@100x`` multiplier)."""
    hidden = 32 * width
    return nn.Sequential(nn.Linear(FEATURES, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                         nn.Linear(hidden, 1))


regression = user_task(regression_data, regression_model, steps=300, batch_size=64, base_lr=1e-2, fitness=NEG_LOSS,
                       scales={"10x": (2, 3), "100x": (4, 8)})

CONTEXT = 8
WORDS = ("a", "data", "model", "trains", "learns", "on", "the", "more", "markets", "stone", "is", "bold", "slim")
ALPHABET = "".join(sorted(set("".join(WORDS)) | {" ", "."}))


def text_data(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sentences of random words ending in '.', as character indices: each example is the previous ``CONTEXT``
    characters (int64 tokens) and the next one (the class)."""
    rng = np.random.default_rng(seed)
    sentences = (" ".join(rng.choice(WORDS, size=int(rng.integers(3, 8)))) + ". " for _ in range(700))
    ids = torch.tensor([ALPHABET.index(c) for c in "".join(sentences)], dtype=torch.int64)
    windows = ids.unfold(0, CONTEXT + 1, 1)
    x, y = windows[:, :CONTEXT], windows[:, CONTEXT]
    cut = int(0.8 * len(y))
    return x[:cut], y[:cut], x[cut:], y[cut:]


def text_model() -> nn.Module:
    """Embed each of the ``CONTEXT`` characters in 16 dimensions, then an MLP to the next character's logits."""
    return nn.Sequential(nn.Embedding(len(ALPHABET), 16), nn.Flatten(), nn.Linear(16 * CONTEXT, 128), nn.ReLU(),
                         nn.Linear(128, len(ALPHABET)))


next_char = user_task(text_data, text_model, steps=300, batch_size=64, base_lr=3e-3, fitness=ACCURACY)
