"""The torch work behind the classifier proxies: probabilities, input-loss curvature, and the
held-out fine-tuned copy that `heldout_kl` compares against (METRICS.md §5).

Models enter as a `forward(module, inputs) -> logits` function over a module, so the same code
serves a built-in MLP on feature tensors and a Hugging Face classifier on token batches.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

Forward = Callable[[torch.nn.Module, Any], torch.Tensor]


@torch.inference_mode()
def predict_probs(module: torch.nn.Module, forward: Forward, batches: Sequence[Any]) -> np.ndarray:
    """Softmax outputs in float64, logits upcast to float32 first."""
    module.eval()
    out = [torch.softmax(forward(module, b).float(), dim=-1).double().cpu() for b in batches]
    return torch.cat(out).numpy() if out else np.zeros((0, 0))


def input_curvature(
    module: torch.nn.Module, forward: Forward, x: torch.Tensor, y: torch.Tensor, h: float = 0.01
) -> np.ndarray:
    """‖∇ₓ[ℓ(x+z) − ℓ(x)]‖₂ per example, z = h·sign(∇ₓℓ)/‖sign(∇ₓℓ)‖ (Garg et al. 2024).

    Continuous inputs only: a token id has no gradient.
    """
    module.eval()
    x = x.detach().float().requires_grad_(True)
    loss = F.cross_entropy(forward(module, x).float(), y, reduction="none")
    (grad,) = torch.autograd.grad(loss.sum(), x)
    direction = torch.sign(grad)
    norms = direction.flatten(1).norm(dim=1).clamp_min(1e-12)
    z = (h * direction / norms.view(-1, *([1] * (x.dim() - 1)))).detach()
    x2 = x.detach().clone().requires_grad_(True)
    shifted = F.cross_entropy(forward(module, x2 + z).float(), y, reduction="none")
    base = F.cross_entropy(forward(module, x2).float(), y, reduction="none")
    (difference,) = torch.autograd.grad((shifted - base).sum(), x2)
    return difference.flatten(1).norm(dim=1).double().cpu().numpy()


@dataclass(frozen=True)
class FineTuneResult:
    module: torch.nn.Module
    epochs_run: int
    best_epoch: int
    losses: list[float]  # held-out loss after each epoch


def finetune_copy(
    module: torch.nn.Module,
    forward: Forward,
    batches: Sequence[tuple[Any, torch.Tensor]],
    *,
    lr: float = 0.1,
    max_epochs: int = 30,
    patience: int = 4,
    seed: int = 0,
) -> FineTuneResult:
    """A copy fine-tuned on held-out data with SGD, stopped after `patience` epochs without a
    lower held-out loss; the best epoch's weights are kept. The original is untouched."""
    generator = torch.Generator().manual_seed(seed)
    tuned = copy.deepcopy(module)
    optimizer = torch.optim.SGD(tuned.parameters(), lr=lr)
    best_loss, best_epoch, best_state = float("inf"), 0, copy.deepcopy(tuned.state_dict())
    losses: list[float] = []
    epoch = 0
    for epoch in range(1, max_epochs + 1):
        tuned.train()
        for index in torch.randperm(len(batches), generator=generator).tolist():
            inputs, labels = batches[index]
            optimizer.zero_grad()
            F.cross_entropy(forward(tuned, inputs).float(), labels).backward()
            optimizer.step()
        losses.append(_mean_loss(tuned, forward, batches))
        if losses[-1] < best_loss - 1e-12:
            best_loss, best_epoch = losses[-1], epoch
            best_state = copy.deepcopy(tuned.state_dict())
        elif epoch - best_epoch >= patience:
            break
    tuned.load_state_dict(best_state)
    tuned.eval()
    return FineTuneResult(tuned, epoch, best_epoch, losses)


@torch.inference_mode()
def _mean_loss(
    module: torch.nn.Module, forward: Forward, batches: Sequence[tuple[Any, torch.Tensor]]
) -> float:
    module.eval()
    total = count = 0.0
    for inputs, labels in batches:
        total += float(F.cross_entropy(forward(module, inputs).float(), labels, reduction="sum"))
        count += len(labels)
    return total / max(count, 1.0)
