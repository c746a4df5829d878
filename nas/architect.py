"""The architecture step of DARTS: one Adam step on α from the validation loss (Liu et al. 2019, DARTS).

- First order: ``∇α L_val(w, α)``.
- Second order: with the virtual step ``w′ = w − ξ·(∇w L_train(w, α) + λw + μ·momentum)`` of the weights' own
  SGD optimizer (ξ its current learning rate, λ its weight decay, μ its momentum — with μ = λ = 0 this is the
  paper's ``w − ξ∇w L_train``), the gradient is
  ``∇α L_val(w′, α) − ξ·(∇α L_train(w⁺, α) − ∇α L_train(w⁻, α)) / 2ε`` with ``w± = w ± ε∇w′L_val(w′, α)`` and
  ``ε = r / ‖∇w′L_val‖`` (DARTS: r = 0.01) — a finite-difference Hessian-vector product.

The unrolled and perturbed weights are used through ``torch.func.functional_call`` on copies of the BatchNorm
buffers, so the model's own weights and running statistics are never modified by the architecture step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch.func import functional_call

from nas.errors import NasError
from nas.supernet import Supernet

@dataclass(frozen=True)
class ArchitectConfig:
    """α's optimizer (DARTS: Adam, lr 3e-4, betas (0.5, 0.999), weight decay 1e-3), the order (1 or 2) and, for
    the second order, the norm ``r`` of the finite-difference perturbation (``fd_radius``, DARTS: 0.01)."""

    order: int = 1
    lr: float = 3e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 1e-3
    fd_radius: float = 0.01

    def __post_init__(self) -> None:
        if self.order not in (1, 2):
            raise NasError(f"ArchitectConfig.order must be 1 or 2, got {self.order!r}")
        if self.lr <= 0 or self.weight_decay < 0 or self.fd_radius <= 0:
            raise NasError("ArchitectConfig: lr and fd_radius must be > 0, weight_decay >= 0")


class Architect:
    """Updates ``model``'s α. ``w_optimizer`` is the weights' SGD optimizer (read, never stepped, here: the second
    order uses its learning rate, momentum, weight decay and momentum buffers for the virtual step)."""

    def __init__(self, model: Supernet, w_optimizer: torch.optim.SGD, config: ArchitectConfig) -> None:
        self.model, self.w_optimizer, self.config = model, w_optimizer, config
        self.optimizer = torch.optim.Adam(
            model.arch_parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
        )
        self._names = [name for name, _ in model.named_parameters() if not name.startswith("alpha_")]

    def step(self, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor) -> None:
        """One α update (Adam) from ``hypergradient``."""
        grads = self.hypergradient(x_train, y_train, x_val, y_val)
        for alpha, grad in zip(self.model.arch_parameters(), grads):
            alpha.grad = grad
        self.optimizer.step()

    def hypergradient(
        self, x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor
    ) -> list[torch.Tensor]:
        """The gradient of the validation loss with respect to α, first or second order (see the module doc)."""
        alphas = self.model.arch_parameters()
        if self.config.order == 1:
            return list(_grad(self._loss(None, x_val, y_val), alphas))
        xi = self.w_optimizer.param_groups[0]["lr"]
        unrolled = [w.requires_grad_() for w in self._virtual_step(x_train, y_train)]
        grads = _grad(self._loss(unrolled, x_val, y_val), alphas + unrolled)
        direct, vector = grads[: len(alphas)], grads[len(alphas) :]
        implicit = self._hessian_vector_product(vector, x_train, y_train)
        return [d - xi * h for d, h in zip(direct, implicit)]

    def _virtual_step(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        weights = self.model.weights()
        grads = _grad(self._loss(None, x, y), weights)
        group = self.w_optimizer.param_groups[0]
        lr, momentum, decay = group["lr"], group.get("momentum", 0.0), group.get("weight_decay", 0.0)
        stepped = []
        with torch.no_grad():
            for w, g in zip(weights, grads):
                direction = g + decay * w
                buffer = self.w_optimizer.state.get(w, {}).get("momentum_buffer")
                if buffer is not None and momentum:
                    direction = direction + momentum * buffer
                stepped.append(w - lr * direction)
        return stepped

    def _hessian_vector_product(
        self, vector: Sequence[torch.Tensor], x: torch.Tensor, y: torch.Tensor
    ) -> list[torch.Tensor]:
        alphas = self.model.arch_parameters()
        norm = torch.linalg.vector_norm(torch.cat([v.reshape(-1) for v in vector]))
        if norm == 0:
            return [torch.zeros_like(a) for a in alphas]
        eps = self.config.fd_radius / norm
        weights = [w.detach() for w in self.model.weights()]
        plus = _grad(self._loss([w + eps * v for w, v in zip(weights, vector)], x, y), alphas)
        minus = _grad(self._loss([w - eps * v for w, v in zip(weights, vector)], x, y), alphas)
        return [(p - m) / (2 * eps) for p, m in zip(plus, minus)]

    def _loss(self, weights: Sequence[torch.Tensor] | None, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the model on (x, y), with ``weights`` in place of w when given (BatchNorm running
        statistics go to throwaway copies)."""
        if weights is None:
            return F.cross_entropy(self.model(x), y)
        state = {name: b.clone() for name, b in self.model.named_buffers()}
        state.update(zip(self._names, weights))
        return F.cross_entropy(functional_call(self.model, state, (x,)), y)


def _grad(loss: torch.Tensor, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Gradients of ``loss``; zeros for inputs it does not use (e.g. the normal α of a net of reduction cells)."""
    return torch.autograd.grad(loss, list(inputs), allow_unused=True, materialize_grads=True)
