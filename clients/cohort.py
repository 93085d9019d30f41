"""Many clients' local SGD at once: ``torch.func.vmap`` over clients of one model.

A round's honest clients usually start from the same global model and follow the same
recipe; only their data and minibatch order differ. Training them one after another
pays Python and dispatch overhead per client and per step, which dominates small models
(one step of logistic regression costs far less than the bookkeeping around it).
``train_cohort`` stacks the clients' parameters along a leading client axis and takes
every client's SGD step in one batched call: the clients' losses come from one
``vmap`` over ``functional_call``, and one backward pass through their sum gives each
client the gradient of its own loss (``torch.func.grad`` would do the same, but it
imports ``torch._dynamo``, 1.3 s on a 2-core machine, and measured slower here). The
minibatches are the ones ``clients.training.train`` draws, from the same generators.
Results equal the sequential path to floating-point rounding
(``tests/clients/test_cohort.py``).

Clients whose batch plans differ (a partial last batch, fewer examples, fewer steps)
are padded: padded examples carry weight 0 in the batch mean and padded steps leave
the client's parameters and momentum untouched.

It does not apply to models whose forward depends on train mode or carries state
(dropout, batch norm, any registered buffer), nor to recurrent layers (``vmap`` cannot
batch their fused kernels): ``supports_cohort`` says no and callers train such models
one client at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from clients.training import TrainConfig, _batches

__all__ = ["CohortResult", "cohort_pays_off", "supports_cohort", "train_cohort"]

# Modules whose forward differs between train and eval mode or between clients' batches.
_MODE_DEPENDENT = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._NormBase)
# Modules whose fused kernels have no vmap batching rule (aten::lstm and its kind).
_NO_VMAP = (nn.RNNBase,)


def supports_cohort(model: nn.Module) -> bool:
    """Whether ``train_cohort`` reproduces ``train`` for this model (stateless forward)."""
    if any(True for _ in model.buffers()):
        return False
    if not all(p.requires_grad for p in model.parameters()):
        return False  # SGD would leave frozen parameters alone; this path trains them
    if len(dict(model.named_parameters())) != len(model.state_dict()):
        return False  # tied (shared) parameters: replies must carry every alias
    return not any(isinstance(m, _MODE_DEPENDENT + _NO_VMAP) for m in model.modules())


def cohort_pays_off(model: nn.Module, device: torch.device | str = "cpu") -> bool:
    """Whether batching clients is expected to beat training them one at a time.

    ``vmap`` turns a convolution over many clients' weights into one grouped
    convolution, which PyTorch's CPU kernels ran several times slower than the clients'
    separate convolutions (FLTrust CNN, 100 clients of 80 images: 3x to 15x slower), so
    convolutional models train one client at a time; models of linear layers gain
    several-fold (``benchmarks/engines.py``). The same rule holds on GPUs, where it has
    not been measured: ``engine.cohort=always`` batches convolutions too. ``device`` is
    taken for rules that will depend on it.
    """
    del device
    return not any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())


@dataclass(frozen=True)
class CohortResult:
    """Trained parameters of every client (leading axis = client) and their mean losses."""

    params: dict[str, torch.Tensor]  # name -> (C, *shape)
    train_losses: list[float]
    num_steps: list[int]

    def state_of(self, client: int) -> dict[str, torch.Tensor]:
        """Client ``client``'s (position in the cohort) trained state dict."""
        return {name: value[client] for name, value in self.params.items()}


@dataclass(frozen=True)
class _Plan:
    """Every client's minibatches, padded to one ``(C, S, B)`` grid of pool indices."""

    index: torch.Tensor  # (C, S, B) int64 rows of the shared pool
    weight: torch.Tensor  # (C, S, B) float: 1 for a real example, 0 for padding
    active: torch.Tensor  # (C, S) float: 1 where the client takes step s
    num_steps: list[int]


def _plan(
    indices: Sequence[torch.Tensor], config: TrainConfig, generators: Sequence[torch.Generator]
) -> _Plan:
    # The same calls, in the same order, as ``train``: identical minibatches.
    plans = [
        [index[local] for local in _batches(len(index), config, generator)]
        for index, generator in zip(indices, generators, strict=True)
    ]
    clients = len(plans)
    steps = max(len(p) for p in plans)
    width = max(len(batch) for p in plans for batch in p)
    if all(len(p) == steps and all(len(b) == width for b in p) for p in plans):
        # Every client takes the same number of full batches (e.g. a fixed number of steps).
        index = torch.stack([torch.stack(p) for p in plans])
        return _Plan(index, torch.ones(index.shape), torch.ones(clients, steps), [steps] * clients)
    index = torch.zeros(clients, steps, width, dtype=torch.long)
    weight = torch.zeros(clients, steps, width)
    active = torch.zeros(clients, steps)
    for c, batches in enumerate(plans):
        active[c, : len(batches)] = 1.0
        for s, batch in enumerate(batches):
            index[c, s] = batch[0]  # padding repeats one of the client's own examples
            index[c, s, : len(batch)] = batch
            weight[c, s, : len(batch)] = 1.0
        if len(batches) < steps:
            index[c, len(batches) :] = batches[0][0]
    return _Plan(index, weight, active, [len(p) for p in plans])


def train_cohort(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    indices: Sequence[torch.Tensor],
    config: TrainConfig,
    generators: Sequence[torch.Generator],
    device: torch.device | str = "cpu",
) -> CohortResult:
    """Train ``len(indices)`` copies of ``model`` (its current weights) at once.

    Client ``c`` trains on ``x[indices[c]], y[indices[c]]`` with ``generators[c]``,
    exactly as ``train(model_copy, x[indices[c]], y[indices[c]], config, generators[c])``
    would: cross-entropy averaged over each minibatch, plain SGD with PyTorch's momentum
    and weight-decay formulas. ``model`` itself is not modified.

    Parameters
    ----------
    model : nn.Module
        The common starting point, already on ``device``; ``supports_cohort(model)``.
    x, y : torch.Tensor
        The pool the clients' examples are rows of (CPU), shapes ``(N, ...)`` and ``(N,)``.
    indices : Sequence[torch.Tensor]
        Each client's rows of the pool (int64, non-empty).
    config : TrainConfig
        The recipe every client follows.
    generators : Sequence[torch.Generator]
        Each client's minibatch-order generator (consumed as ``train`` would).
    device : torch.device | str (default: "cpu")
        Where the batched steps run.
    """
    if not indices:
        raise ValueError("train_cohort needs at least one client, got 0")
    if any(len(index) == 0 for index in indices):
        raise ValueError("every client needs at least one example (num_examples=0)")
    if not supports_cohort(model):
        raise ValueError(f"{type(model).__name__} has buffers or mode-dependent layers")
    plan = _plan(indices, config, generators)
    clients, steps = plan.active.shape

    def batch_loss(
        params: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor, wb: torch.Tensor
    ) -> torch.Tensor:
        losses = F.cross_entropy(functional_call(model, params, (xb,)), yb, reduction="none")
        # Mean over the real examples; a padded step (all weights 0) has zero gradient.
        # where(), not a product: a padded example's loss never reaches the sum.
        return torch.where(wb > 0, losses, 0.0).sum() / wb.sum().clamp_min(1.0)

    client_losses = vmap(batch_loss)
    params = {
        name: p.detach().to(device).unsqueeze(0).repeat(clients, *([1] * p.dim()))
        for name, p in model.named_parameters()
    }
    names = list(params)
    momentum: dict[str, torch.Tensor] = {}
    loss_sum = torch.zeros(clients, dtype=torch.float64)
    x_dtype = next(iter(params.values())).dtype
    for s in range(steps):
        rows = plan.index[:, s]  # (C, B)
        xb = x[rows].to(device=device, dtype=x_dtype)  # (C, B, ...)
        yb = y[rows].to(device=device, dtype=torch.long)  # (C, B)
        wb = plan.weight[:, s].to(device=device, dtype=x_dtype)  # (C, B)
        leaves = {name: p.requires_grad_() for name, p in params.items()}
        losses = client_losses(leaves, xb, yb, wb)  # (C,)
        # Client c's loss depends only on its own slice of the stacked parameters, so the
        # gradient of the sum is every client's own gradient, side by side.
        grads = dict(
            zip(names, torch.autograd.grad(losses.sum(), list(leaves.values())), strict=True)
        )
        loss_sum += losses.detach().cpu().double() * plan.active[:, s].double()
        active = plan.active[:, s].to(device).bool()  # (C,)
        with torch.no_grad():
            for name, p in leaves.items():
                take = active.view(-1, *([1] * (p.dim() - 1)))  # (C, 1, ...)
                d_p = grads[name]
                if config.weight_decay:
                    d_p = d_p + config.weight_decay * p
                if config.momentum:
                    if s == 0:  # every client takes step 0: torch.optim.SGD's first buffer
                        momentum[name] = d_p.clone()
                    else:
                        buffer = momentum[name]
                        momentum[name] = torch.where(take, config.momentum * buffer + d_p, buffer)
                    d_p = momentum[name]
                params[name] = torch.where(take, p - config.lr * d_p, p)
    counts = torch.tensor(plan.num_steps, dtype=torch.float64)
    return CohortResult(
        params={name: p.detach() for name, p in params.items()},
        train_losses=(loss_sum / counts).tolist(),
        num_steps=plan.num_steps,
    )
