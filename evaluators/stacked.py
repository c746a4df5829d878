"""A task's model over stacked flat parameters ``W[k, P]``: the k rows' losses and gradients in one pass.

``stacked_model(setup)`` picks the form: a plain MLP (``Linear``/``ReLU``/``Flatten`` layers) of a classification
task gets ``StackedMLP``, whose forward and backward are written out as batched matmuls (no autograd graph, the
gradients written straight into ``g``); every other model gets ``StackedModel``, ``torch.func.functional_call``
under ``vmap`` with autograd. Rows are laid out as ``evaluators.loop.FlatParameters`` lays out one model, and each
row's loss and gradient equal the one-at-a-time ones up to float reassociation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from evaluators.loop import EVAL_CHUNK, Setup

Tensor = torch.Tensor
# relu's backward (the gradient where the output is > 0), written into a given tensor
_threshold_backward_out = torch.ops.aten.threshold_backward.grad_input


class _Stacked:
    """What both forms share: the per-row losses of stacked outputs and the validation pass."""

    setup: Setup

    def outputs(self, w: Tensor, x: Tensor) -> Tensor:
        """The model's outputs ``[k, n, ...]`` for every row of ``w`` on the shared input ``x``."""
        raise NotImplementedError

    def loss_and_grad(self, w: Tensor, g: Tensor, x: Tensor, y: Tensor) -> Tensor:
        """Each row's minibatch loss ``[k]``; each row's gradient written into ``g[k, P]``."""
        raise NotImplementedError

    def row_losses(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """``Setup.loss`` of each row ``[k]`` for outputs ``[k, n, ...]`` (outside ``vmap``, which would decompose the
        loss into many small kernels)."""
        k = outputs.shape[0]
        if self.setup.classification:
            per_example = F.cross_entropy(outputs.flatten(0, 1), targets.repeat(k), reduction="none")
        else:
            per_example = F.mse_loss(outputs, targets.expand_as(outputs), reduction="none")
        return per_example.reshape(k, -1).mean(dim=1)

    def scores(self, w: Tensor, x: Tensor, targets: Tensor) -> tuple[Tensor, Tensor | None]:
        """Each row's mean loss ``[k]`` on ``(x, targets)`` and its number of correct predictions (None for
        regression)."""
        outputs = self.outputs(w, x)
        correct = (outputs.argmax(dim=2) == targets).sum(dim=1) if self.setup.classification else None
        return self.row_losses(outputs, targets), correct

    @torch.no_grad()
    def validate(self, w: Tensor, chunk: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Each row's validation loss (float64) and accuracy (None for regression), as ``loop._validate`` sums them;
        ``chunk`` rows at a time (None: all), as training runs them (``evaluators.batched.chunk_rows``)."""
        setup = self.setup
        n = len(setup.y_val)
        total = torch.zeros(w.shape[0], dtype=torch.float64, device=w.device)
        correct = torch.zeros(w.shape[0], dtype=torch.int64, device=w.device)
        step = chunk or w.shape[0]
        for first in range(0, w.shape[0], step):
            rows = slice(first, first + step)
            for start in range(0, n, EVAL_CHUNK):
                targets = setup.y_val[start : start + EVAL_CHUNK]
                losses, hits = self.scores(w[rows], setup.x_val[start : start + EVAL_CHUNK], targets)
                total[rows] += losses.double() * len(targets)
                if hits is not None:
                    correct[rows] += hits
        accuracy = (correct.cpu().numpy() / n) if setup.classification else None
        return total.cpu().numpy() / n, accuracy


class StackedModel(_Stacked):
    """Any model, every row at once: ``functional_call`` under ``vmap`` over the stacked parameters, autograd."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        named = [(name, p) for name, p in setup.model.named_parameters() if p.requires_grad]
        self.names = [name for name, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        model = setup.model
        self._outputs = _math_attention(vmap(lambda params, x: functional_call(model, params, (x,)),
                                             in_dims=(0, None)))

    def views(self, w: Tensor) -> dict[str, Tensor]:
        """Each parameter of every row as a view ``[k, *shape]`` of ``w``."""
        views, offset = {}, 0
        for name, shape, size in zip(self.names, self.shapes, self.sizes):
            views[name] = w[:, offset : offset + size].view(w.shape[0], *shape)
            offset += size
        return views

    def outputs(self, w: Tensor, x: Tensor) -> Tensor:
        return self._outputs(self.views(w), x)

    def loss_and_grad(self, w: Tensor, g: Tensor, x: Tensor, y: Tensor) -> Tensor:
        params = {name: view.detach().requires_grad_() for name, view in self.views(w).items()}
        losses = self.row_losses(self._outputs(params, x), y)
        grads = torch.autograd.grad(losses.sum(), list(params.values()))  # rows are independent: d(sum)/dW_k = grad_k
        torch.cat([grad.reshape(w.shape[0], -1) for grad in grads], dim=1, out=g)
        return losses.detach()


def _math_attention(fn: Any) -> Any:
    """``fn`` with scaled-dot-product attention in its math form (matmuls and softmax), which ``vmap`` batches; the
    fused CPU kernel has no batching rule and would run once per row."""

    def wrapped(*args: Any) -> Tensor:
        with sdpa_kernel([SDPBackend.MATH]):
            return fn(*args)

    return wrapped


class StackedMLP(_Stacked):
    """A classifier made of ``Linear``/``ReLU``/``Flatten`` layers, forward and backward written out.

    Activations are kept transposed, ``[k, features, n]``: a layer is ``h = W h + b`` per row, one ``bmm`` for all
    rows (the first layer, whose input every row shares, is one plain matmul ``[k * out, in] @ [in, n]``), and the
    softmax runs along the class dimension of ``[k, classes, n]``, which a CPU's kernels handle 20× faster than a
    last dimension of 10.
    Backward of the mean cross-entropy: ``d = (softmax - onehot) / n`` at the logits, then per linear layer
    ``dW = d h^T`` and ``db = sum(d)`` written into the rows of ``g``, and ``d = W^T d`` masked by the ReLU before
    it. No autograd graph: on a CPU that is a third less time than autograd over batched matmuls.
    """

    def __init__(self, setup: Setup) -> None:
        assert setup.classification and is_plain_mlp(setup.model), "StackedMLP: a Linear/ReLU/Flatten classifier"
        self.setup = setup
        self.layers: list[tuple[str, int, int, int, int | None]] = []  # (kind, weight offset, out, in, bias offset)
        offset = 0
        for module in setup.model:
            if isinstance(module, nn.Linear):
                out, inputs = module.weight.shape
                bias = None if module.bias is None else offset + out * inputs
                self.layers.append(("linear", offset, out, inputs, bias))
                offset += out * inputs + (0 if bias is None else out)
            else:
                self.layers.append(("relu" if isinstance(module, nn.ReLU) else "flatten", 0, 0, 0, None))

    def _forward(self, w: Tensor, x: Tensor, kept: list[Tensor] | None) -> Tensor:
        """The transposed logits ``[k, classes, n]``; ``kept`` receives every layer's output (what backward reads).

        Until the first linear layer the input is shared by every row and not transposed (``[n, ...]``)."""
        k, h, stacked = w.shape[0], x, False
        for kind, offset, out, inputs, bias in self.layers:
            if kind == "flatten":
                h = h if stacked else h.flatten(start_dim=1)  # a stacked h [k, features, n] is flat already
            elif kind == "relu":
                h = torch.relu_(h) if stacked else torch.relu(h)
            else:
                weight = w[:, offset : offset + out * inputs].view(k, out, inputs)
                if stacked:
                    product = torch.bmm(weight, h)
                else:  # one matmul for every row: [k * out, in] @ [in, n]
                    product = torch.mm(weight.reshape(k * out, inputs), h.t()).view(k, out, -1)
                h = product if bias is None else product.add_(w[:, bias : bias + out].unsqueeze(2))
                stacked = True
            if kept is not None:
                kept.append(h)
        return h

    def outputs(self, w: Tensor, x: Tensor) -> Tensor:
        return self._forward(w, x, None).transpose(1, 2)

    def scores(self, w: Tensor, x: Tensor, targets: Tensor) -> tuple[Tensor, Tensor | None]:
        """On the transposed logits: cross-entropy along the class dimension, argmax along it (the fast layout)."""
        logits = self._forward(w, x, None)
        k, n = logits.shape[0], logits.shape[2]
        losses = F.cross_entropy(logits, targets.expand(k, n), reduction="none").mean(dim=1)
        # max(dim=1) gives argmax's index (the first of equal maxima) 6x faster along a dimension of 10
        return losses, (logits.max(dim=1).indices == targets).sum(dim=1)

    def loss_and_grad(self, w: Tensor, g: Tensor, x: Tensor, y: Tensor) -> Tensor:
        kept: list[Tensor] = []
        logits = self._forward(w, x, kept)
        k, n = logits.shape[0], logits.shape[2]
        targets = y.view(1, 1, n).expand(k, 1, n)
        log_p = torch.log_softmax(logits, dim=1)
        losses = log_p.gather(1, targets).squeeze(1).mean(dim=1).neg_()
        d = log_p.exp_().scatter_add_(1, targets, log_p.new_full((1, 1, 1), -1.0).expand(k, 1, n)).mul_(1.0 / n)
        for position in range(len(self.layers) - 1, -1, -1):
            kind, offset, out, inputs, bias = self.layers[position]
            if kind == "relu":
                d = _threshold_backward_out(d, kept[position], 0, grad_input=d)  # in place: d is ours
            elif kind == "linear":
                if bias is not None:
                    torch.sum(d, dim=2, out=g[:, bias : bias + out])
                grad = g[:, offset : offset + out * inputs].view(k, out, inputs)
                if position == 0 or kept[position - 1].dim() == 2:  # the shared input: no gradient goes further
                    h = kept[position - 1] if position else x.flatten(start_dim=1)
                    grad.copy_(torch.mm(d.view(k * out, n), h).view(k, out, inputs))
                    break
                torch.bmm(d, kept[position - 1].transpose(1, 2), out=grad)
                d = torch.bmm(w[:, offset : offset + out * inputs].view(k, out, inputs).transpose(1, 2), d)
        return losses


def is_plain_mlp(model: nn.Module) -> bool:
    """Linear, ReLU and Flatten layers (a Flatten of everything but the batch dimension) in a ``Sequential``."""
    return isinstance(model, nn.Sequential) and all(
        isinstance(m, (nn.Linear, nn.ReLU)) or (isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1)
        for m in model)


def stacked_model(setup: Setup) -> StackedModel | StackedMLP:
    """The fastest stacked form of ``setup``'s model (see the module docstring)."""
    model = setup.model
    if setup.classification and is_plain_mlp(model) and (setup.x_train.dim() == 2 or isinstance(model[0], nn.Flatten)):
        return StackedMLP(setup)
    return StackedModel(setup)
