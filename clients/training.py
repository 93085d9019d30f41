"""Honest local training (plain minibatch SGD) and evaluation, with no Flower import.

Every minibatch is drawn from the caller's ``torch.Generator`` (seeded from
``(seed, round, client id)``), never from the global torch RNG, so a client's update does not
depend on what else ran in the process or in which order clients were trained.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from clients.checks import is_int, is_real

__all__ = ["StepHook", "TrainConfig", "evaluate", "train"]


@dataclass(frozen=True)
class TrainConfig:
    """Local SGD settings of an honest client.

    Parameters
    ----------
    lr : float
        SGD learning rate, > 0.
    batch_size : int
        Examples per minibatch, >= 1.
    local_epochs : int (default: 1)
        Passes over the local data; ignored when ``local_steps`` is set.
    local_steps : int | None (default: None)
        When set, exactly this many minibatch SGD steps (Fang et al. 2020 and FLTrust take one
        step per round), walking through successive shuffles of the data.
    momentum : float (default: 0.0)
        SGD momentum in [0, 1); the optimiser is rebuilt each round, so it never carries over.
    weight_decay : float (default: 0.0)
        L2 penalty, >= 0.
    """

    lr: float
    batch_size: int
    local_epochs: int = 1
    local_steps: int | None = None
    momentum: float = 0.0
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if not is_real(self.lr) or not self.lr > 0:
            raise ValueError(f"lr={self.lr!r} must be a finite number > 0")
        if not is_int(self.batch_size) or self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size!r} must be an int >= 1")
        if not is_int(self.local_epochs) or self.local_epochs < 1:
            raise ValueError(f"local_epochs={self.local_epochs!r} must be an int >= 1")
        if self.local_steps is not None and (not is_int(self.local_steps) or self.local_steps < 1):
            raise ValueError(f"local_steps={self.local_steps!r} must be None or an int >= 1")
        if not is_real(self.momentum) or not (0 <= self.momentum < 1):
            raise ValueError(f"momentum={self.momentum!r} must be a number in [0, 1)")
        if not is_real(self.weight_decay) or self.weight_decay < 0:
            raise ValueError(f"weight_decay={self.weight_decay!r} must be a finite number >= 0")


def _check_data(x: torch.Tensor, y: torch.Tensor) -> int:
    n = len(x)
    if n == 0:
        raise ValueError("need at least one example, got 0 (num_examples=0)")
    if len(y) != n:
        raise ValueError(f"x has {n} examples but y has {len(y)} labels")
    return n


def _batches(n: int, config: TrainConfig, generator: torch.Generator) -> list[torch.Tensor]:
    """Index tensors of the minibatches, drawn only from ``generator``.

    Epochs mode: a fresh shuffle per epoch, ``ceil(n / batch_size)`` batches, the last one
    partial. Steps mode: successive shuffles are concatenated into one stream and cut into
    batches of ``min(batch_size, n)``, so every step sees the same number of examples (a batch
    that straddles two shuffles may repeat an example).
    """
    if config.local_steps is None:
        return [
            batch
            for _ in range(config.local_epochs)
            for batch in torch.randperm(n, generator=generator).split(config.batch_size)
        ]
    size = min(config.batch_size, n)
    num_shuffles = math.ceil(config.local_steps * size / n)
    # shape: (num_shuffles * n,)
    stream = torch.cat([torch.randperm(n, generator=generator) for _ in range(num_shuffles)])
    return list(stream[: config.local_steps * size].split(size))


StepHook = Callable[[nn.Module], None]


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    after_step: StepHook | None = None,
) -> dict[str, float]:
    """Plain minibatch SGD on ``(x, y)``, in place on ``model`` (already on ``device``).

    Cross-entropy, mean over each batch; a fresh ``torch.optim.SGD`` each call. ``x`` and ``y``
    may be shared between clients and are never modified. The model trains in train mode and
    is left in eval mode.

    Parameters
    ----------
    model : nn.Module
        The model to train, already on ``device``.
    x : torch.Tensor
        Float inputs, shape ``(n, C, H, W)``.
    y : torch.Tensor
        Integer labels, shape ``(n,)``.
    config : TrainConfig
        Learning rate, batch size and how long to train.
    generator : torch.Generator
        CPU generator that draws the minibatch order, and nothing else.
    device : torch.device | str (default: "cpu")
        Where the batches are moved.
    after_step : StepHook | None (default: None)
        Called with ``model`` after every optimiser step, under ``torch.no_grad``: a
        projection of the weights (a norm-constrained backdoor projects onto a ball around
        the global model; Neurotoxin resets its masked coordinates). It may change the
        weights in place and nothing else.

    Returns
    -------
    dict[str, float]
        ``train_loss`` (mean of the per-step batch losses), ``num_steps``, ``num_examples``.
    """
    n = _check_data(x, y)
    batches = _batches(n, config, generator)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    total_loss = 0.0
    model.train()
    try:
        for idx in batches:
            # Indexing copies, so the shared x and y are only read.
            xb = x[idx].to(device)  # shape: (b, C, H, W)
            yb = y[idx].to(device=device, dtype=torch.long)  # shape: (b,)
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
            if after_step is not None:
                with torch.no_grad():
                    after_step(model)
            total_loss += loss.item()
    finally:
        model.eval()
    return {
        "train_loss": total_loss / len(batches),
        "num_steps": len(batches),
        "num_examples": n,
    }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` on ``(x, y)``, in eval mode, without grad.

    Returns
    -------
    dict[str, float]
        ``accuracy`` (share of argmax predictions equal to the label), ``loss`` (cross-entropy
        averaged over examples, not batches) and ``num_examples``.
    """
    n = _check_data(x, y)
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be an int >= 1")
    model.eval()
    loss_sum = 0.0
    correct = 0
    for start in range(0, n, batch_size):
        xb = x[start : start + batch_size].to(device)  # shape: (b, C, H, W)
        yb = y[start : start + batch_size].to(device=device, dtype=torch.long)  # shape: (b,)
        logits = model(xb)  # shape: (b, K)
        loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += int((logits.argmax(dim=1) == yb).sum().item())
    return {"accuracy": correct / n, "loss": loss_sum / n, "num_examples": n}
