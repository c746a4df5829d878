"""Proxy-task models, built by name from a ``ModelSpec`` (``MODELS``), always on the CPU: the caller moves them.

Models hold no device and no randomness of their own; ``build`` seeds torch's generator in a forked RNG scope,
so the same (spec, data, seed) gives the same initial weights on every machine and leaves the caller's RNG alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from evaluators.data import Arrays
from evaluators.errors import TaskError


@dataclass(frozen=True)
class ModelSpec:
    """``kind`` names a builder in ``MODELS``; ``width`` and ``depth`` size it (their meaning is per kind)."""

    kind: str
    width: int = 0
    depth: int = 1

    def scaled(self, width_multiplier: int) -> "ModelSpec":
        return ModelSpec(self.kind, self.width * width_multiplier, self.depth)


def linear(spec: ModelSpec, data: Arrays) -> nn.Module:
    """A linear map from the features to the target(s) (``width`` unused)."""
    return nn.Linear(data.x.shape[1], _n_outputs(data))


def mlp(spec: ModelSpec, data: Arrays) -> nn.Module:
    """``depth`` hidden layers of ``width`` ReLU units on the flattened input."""
    layers: list[nn.Module] = [nn.Flatten()]
    n_in = math.prod(data.x.shape[1:])
    for _ in range(spec.depth):
        layers += [nn.Linear(n_in, spec.width), nn.ReLU()]
        n_in = spec.width
    layers.append(nn.Linear(n_in, _n_outputs(data)))
    return nn.Sequential(*layers)


def cnn(spec: ModelSpec, data: Arrays) -> nn.Module:
    """``depth`` 3×3 convs of ``width`` channels, one stride-2 conv to 2·width, ReLU after each, a linear head."""
    channels, height, width = data.x.shape[1:]
    layers: list[nn.Module] = []
    for _ in range(spec.depth):
        layers += [nn.Conv2d(channels, spec.width, 3, padding=1), nn.ReLU()]
        channels = spec.width
    layers += [nn.Conv2d(channels, 2 * spec.width, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten()]
    features = 2 * spec.width * ((height + 1) // 2) * ((width + 1) // 2)
    layers.append(nn.Linear(features, _n_outputs(data)))
    return nn.Sequential(*layers)


class Transformer(nn.Module):
    """A decoder-only transformer without LayerNorm (as in Nanda et al.'s grokking study), read out at the last token.

    ``width`` is d_model, ``depth`` the number of blocks; 4 heads, MLP of 4·width, learned positional embeddings.
    """

    def __init__(self, spec: ModelSpec, vocab: int, length: int, n_out: int, heads: int = 4) -> None:
        super().__init__()
        assert spec.width % heads == 0, f"width {spec.width} must be a multiple of {heads} heads"
        self.heads = heads
        self.embed = nn.Embedding(vocab, spec.width)
        self.position = nn.Parameter(torch.randn(length, spec.width) / math.sqrt(spec.width))
        self.blocks = nn.ModuleList(_Block(spec.width, heads) for _ in range(spec.depth))
        self.unembed = nn.Linear(spec.width, n_out)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.position
        for index, block in enumerate(self.blocks):
            # Only the last position is read out, so the last block computes it alone (same function, less work).
            h = block(h, self.heads, last_only=index == len(self.blocks) - 1)
        return self.unembed(h[:, -1])


class _Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.ReLU(), nn.Linear(4 * width, width))

    def forward(self, h: torch.Tensor, heads: int, last_only: bool = False) -> torch.Tensor:
        """Causal self-attention and MLP, both residual; ``last_only``: compute the last position only."""
        batch, length, width = h.shape
        q, k, v = self.qkv(h).view(batch, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
        if last_only:  # the last query attends to every position: no mask needed
            h, q = h[:, -1:], q[:, :, -1:]
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=not last_only)
        h = h + self.out(attended.transpose(1, 2).reshape(batch, h.shape[1], width))
        return h + self.mlp(h)


def transformer(spec: ModelSpec, data: Arrays) -> nn.Module:
    return Transformer(spec, data.vocab, data.x.shape[1], _n_outputs(data))


class CharGRU(nn.Module):
    """A character-level GRU read out after the last character: embedding of ``width``, ``depth`` stacked GRU
    layers of ``width`` units, a linear head.

    The cell is written with ``nn.Linear`` (the equations of ``torch.nn.GRUCell``), not ``nn.GRU``: the fused kernel
    has no ``vmap`` rule, and batched evaluation runs the model under ``vmap`` over stacked parameters.
    """

    def __init__(self, spec: ModelSpec, vocab: int, n_out: int) -> None:
        super().__init__()
        self.width = spec.width
        self.embed = nn.Embedding(vocab, spec.width)
        self.inputs = nn.ModuleList(nn.Linear(spec.width, 3 * spec.width) for _ in range(spec.depth))
        self.hidden = nn.ModuleList(nn.Linear(spec.width, 3 * spec.width) for _ in range(spec.depth))
        self.head = nn.Linear(spec.width, n_out)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h_seq = self.embed(tokens)  # [batch, length, width]
        for inputs, hidden in zip(self.inputs, self.hidden):
            x_gates = inputs(h_seq)  # every step's input gates at once
            h = h_seq.new_zeros(h_seq.shape[0], self.width)
            steps = []
            for t in range(h_seq.shape[1]):
                x_r, x_z, x_n = x_gates[:, t].chunk(3, dim=-1)
                h_r, h_z, h_n = hidden(h).chunk(3, dim=-1)
                r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
                h = (1 - z) * torch.tanh(x_n + r * h_n) + z * h
                steps.append(h)
            h_seq = torch.stack(steps, dim=1)
        return self.head(h_seq[:, -1])


def gru(spec: ModelSpec, data: Arrays) -> nn.Module:
    return CharGRU(spec, data.vocab, _n_outputs(data))


def autoencoder(spec: ModelSpec, data: Arrays) -> nn.Module:
    """features → ``width`` → ``width // 4`` (the code) → ``width`` → features, ReLU between the layers.

    Only Linear and ReLU layers: batched evaluation runs such a stack as batched matmuls, its fast path."""
    n_in, code = data.x.shape[1], max(1, spec.width // 4)
    return nn.Sequential(
        nn.Linear(n_in, spec.width), nn.ReLU(), nn.Linear(spec.width, code), nn.ReLU(),
        nn.Linear(code, spec.width), nn.ReLU(), nn.Linear(spec.width, _n_outputs(data)),
    )


MODELS: dict[str, Callable[[ModelSpec, Arrays], nn.Module]] = {
    "linear": linear,
    "mlp": mlp,
    "cnn": cnn,
    "transformer": transformer,
    "gru": gru,
    "autoencoder": autoencoder,
}


def build(spec: ModelSpec, data: Arrays, seed: int) -> nn.Module:
    """The model of ``spec`` for ``data``, initialised from ``seed``, on the CPU, in float32."""
    if spec.kind not in MODELS:
        raise TaskError(f"unknown model {spec.kind!r}; known: {', '.join(sorted(MODELS))}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODELS[spec.kind](spec, data).float()


def _n_outputs(data: Arrays) -> int:
    return data.n_classes if data.n_classes else data.y.shape[1]
