"""What a malicious client does to its weights after every local step.

Two published constraints, both applied by ``clients.training.train``'s ``after_step``:

- the L2 ball around the global model (projected gradient descent; Sun et al. 2019,
  "Can you really backdoor federated learning?"; Wang et al., NeurIPS 2020):
  ``w <- g + (w - g) * min(1, E / ||w - g||)``, so the update the client trains stays
  within norm ``E`` of the model it received and passes norm bounding at ``E``;
- Neurotoxin's mask (Zhang et al., ICML 2022): the coordinates where the last global
  update was largest (its top-k% by magnitude) are reset to the global model's values,
  so the update on them stays exactly zero and the backdoor lives in the coordinates
  honest clients rarely change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from clients.checks import is_real
from clients.training import StepHook

__all__ = ["BallProjection", "CoordinateMask", "chain", "top_k_mask"]

# Float32 rounding of g + scale * (w - g) can leave the norm a hair above E; each retry
# shrinks the target by a larger margin (none on the first try).
_RETRY_MARGINS = (0.0, 1e-6, 1e-5, 1e-4)


class BallProjection:
    """Project a model onto ``{w : ||w - g|| <= radius}`` (PGD; Sun et al. 2019).

    The norm is over every floating-point entry of the model's ``state_dict`` (the
    parameters and float buffers such as batch norm's running statistics: all that a
    reply carries and the server measures), summed in float64. Integer buffers (batch
    norm's step counter) cannot be projected; a model that has one sends their change as
    well, so its update norm can exceed ``radius`` by that change.

    After projecting, the norm is measured again on the float32 weights as stored; where
    rounding leaves it above ``radius`` the projection is repeated towards a radius a
    relative 1e-6, then 1e-5, then 1e-4 smaller. It breaks down only where ``radius`` is
    below the float32 resolution of the weights themselves (about 1e-7 of their norm).

    Parameters
    ----------
    centre : Mapping[str, torch.Tensor]
        The global model's state dict (read only; moved to the model's device once).
    radius : float
        ``E`` > 0.
    """

    def __init__(self, centre: Mapping[str, torch.Tensor], radius: float) -> None:
        if not is_real(radius) or radius <= 0:
            raise ValueError(f"radius={radius}: must be a finite number > 0")
        self.centre = centre
        self.radius = float(radius)
        self._centre64: dict[str, torch.Tensor] | None = None

    def _centre_on(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self._centre64 is None:
            self._centre64 = {
                name: self.centre[name].to(device=value.device, dtype=torch.float64)
                for name, value in state.items()
                if value.is_floating_point()
            }
        return self._centre64

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> None:
        state = model.state_dict()  # tensors that share the model's storage
        centre = self._centre_on(state)
        for margin in _RETRY_MARGINS:
            sq = sum(float((state[k].double() - c).square().sum()) for k, c in centre.items())
            norm = math.sqrt(sq)
            if norm <= self.radius:
                return
            scale = self.radius * (1.0 - margin) / norm
            for k, c in centre.items():
                state[k].copy_(c + (state[k].double() - c) * scale)


def top_k_mask(
    update: Mapping[str, torch.Tensor], names: Sequence[str], percent: float
) -> dict[str, torch.Tensor]:
    """Boolean masks of the top ``percent``% coordinates of ``|update|``, taken jointly
    over the entries ``names`` (Neurotoxin's top-k over all layers at once).

    ``ceil(percent * d / 100)`` coordinates are masked, ``d`` the entries' total size;
    ties go to the coordinate that comes first (entries in ``names`` order, each
    flattened in row-major order), so the mask is deterministic.
    """
    flat = torch.cat([update[name].detach().reshape(-1).abs().double().cpu() for name in names])
    d = flat.numel()
    count = min(d, math.ceil(round(percent * d / 100, 9)))
    chosen = torch.argsort(flat, descending=True, stable=True)[:count]
    mask = torch.zeros(d, dtype=torch.bool)
    mask[chosen] = True
    masks: dict[str, torch.Tensor] = {}
    offset = 0
    for name in names:
        size = update[name].numel()
        masks[name] = mask[offset : offset + size].reshape(update[name].shape)
        offset += size
    return masks


class CoordinateMask:
    """Reset the masked coordinates of a model's parameters to the global model's values.

    After every step ``w[mask] = g[mask]``: the update on masked coordinates stays exactly
    zero whatever the optimiser does there (momentum, weight decay), which is Neurotoxin's
    projection of the step onto the unmasked coordinates (Zhang et al. 2022).

    Parameters
    ----------
    centre : Mapping[str, torch.Tensor]
        The global model's state dict (read only).
    masks : Mapping[str, torch.Tensor]
        Boolean masks by parameter name (``top_k_mask``); True where the weight is frozen.
    """

    def __init__(
        self, centre: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]
    ) -> None:
        self.masks = masks
        # Only the frozen values are kept: (name, mask, values) per masked entry.
        self._frozen = [
            (name, mask, centre[name][mask]) for name, mask in masks.items() if bool(mask.any())
        ]
        self._on: torch.device | None = None

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        device = next(iter(params.values())).device if params else torch.device("cpu")
        if self._on != device:
            self._frozen = [(n, m.to(device), v.to(device)) for n, m, v in self._frozen]
            self._on = device
        for name, mask, values in self._frozen:
            params[name][mask] = values.to(params[name].dtype)


def chain(*hooks: StepHook | None) -> StepHook | None:
    """One hook calling ``hooks`` (Nones left out) in order; None when there are none."""
    active = [hook for hook in hooks if hook is not None]
    if not active:
        return None
    if len(active) == 1:
        return active[0]

    def run(model: nn.Module) -> None:
        for hook in active:
            hook(model)

    return run
