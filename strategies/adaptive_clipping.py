"""Adaptive clipping (Andrew, Thakkar, McMahan and Ramaswamy, NeurIPS 2021), non-private."""

from __future__ import annotations

import math

import torch

from strategies.base import Aggregate
from strategies.checks import check_real, check_updates, is_real
from strategies.clipping import norm_bound
from strategies.state import StageState


def next_clip(clip: float, unclipped: float, target_quantile: float, clip_lr: float) -> float:
    """The geometric update ``C_{t+1} = C_t * exp(-eta_C (b - gamma))``.

    ``b`` (``unclipped``) is the share of this round's updates with norm <= ``C_t``: above
    the target ``gamma`` the clip shrinks, below it the clip grows, by at most a factor
    ``exp(eta_C)`` a round; it is still when exactly the share ``gamma`` is unclipped.
    """
    return clip * math.exp(-clip_lr * (unclipped - target_quantile))


class AdaptiveClipping:
    """Norm bounding to a clip that follows a quantile of the update norms, kept in the state.

    Variant: Andrew, Thakkar, McMahan and Ramaswamy, "Differentially Private Learning with
    Adaptive Clipping", NeurIPS 2021, with the geometric update and without privacy. In
    round t::

        update = (1/n) sum_i x_i * min(1, C_t / ||x_i||)        (norm_bound with M = C_t)
        b = (1/n) #{i : ||x_i|| <= C_t}
        C_{t+1} = C_t * exp(-eta_C (b - gamma))

    so that C tracks the gamma-quantile of the update norms. With ``weights`` (example
    counts) the mean is weighted as ``norm_bound``'s; b counts clients, unweighted, as in
    the paper. The paper's private version adds Gaussian noise to the count behind b (and
    to the sum of clipped updates); this is the non-private one: no noise at all (use
    ``norm_bound``'s ``noise_std`` for noise on a fixed bound). ``C_{t+1}`` is the
    stage's ``clip`` entry, written only when the round's aggregate is accepted, so a
    checkpoint keeps it and a resumed run continues from it.

    Defaults: ``gamma = 0.5`` (clip to the median) and ``eta_C = 0.2``, the values the paper
    recommends (so TensorFlow Privacy's ``QuantileAdaptiveClipSumQuery`` documents them);
    ``C_0 = 0.1``, TensorFlow Federated's ``gaussian_adaptive`` default (the authors'
    library), small on purpose: C grows by up to ``exp(0.2 * 0.5)``, about 1.105, a round
    while every update is clipped, so it reaches the median of norms ~1 in about 23 rounds.

    Why: a fixed bound has to be tuned to the update norms, which change with the model,
    the data and the learning rate. Clipping to the median norm bounds every client's pull
    on the result to ``C_t / n`` with no tuning. Breakdown: as norm bounding at ``C_t``
    (breakdown point 0: f attackers still move the result by ``f C_t / n``), and attackers
    move ``C_t`` itself: f >= n/2 attackers with huge (or tiny) norms steer b and so
    drive the clip up (or down) by ``exp(eta_C / 2)`` a round without bound; fewer than
    n/2 move the median norm only as far as the honest norms around it allow.

    Weights: as ``norm_bound``: ``s_i / n`` with ``s_i = min(1, C_t / ||x_i||)``, the exact
    coefficient of each row (``update == weights @ updates``).

    Parameters
    ----------
    initial_clip : float (default: 0.1)
        C_0, the clip in the first round, finite and > 0.
    target_quantile : float (default: 0.5)
        gamma, the share of updates the clip should leave unclipped, in [0, 1].
    clip_lr : float (default: 0.2)
        eta_C, the learning rate of the geometric update, finite and >= 0 (0: a fixed clip).
    """

    def __init__(
        self, initial_clip: float = 0.1, target_quantile: float = 0.5, clip_lr: float = 0.2
    ) -> None:
        check_real("adaptive_clipping", "initial_clip", initial_clip, above=0, finite=True)
        if not is_real(target_quantile) or not 0 <= target_quantile <= 1:
            raise ValueError(
                "adaptive_clipping needs 0 <= target_quantile <= 1, "
                f"got target_quantile={target_quantile}"
            )
        check_real("adaptive_clipping", "clip_lr", clip_lr, at_least=0, finite=True)
        self.initial_clip = initial_clip
        self.target_quantile = target_quantile
        self.clip_lr = clip_lr
        self.name = "adaptive_clipping"

    def __call__(
        self,
        updates: torch.Tensor,
        *,
        state: StageState,
        weights: torch.Tensor | None = None,
    ) -> Aggregate:
        check_updates(updates)
        clip = float(state.get("clip", self.initial_clip))
        result = norm_bound(updates, clip, weights=weights)
        norms = torch.linalg.vector_norm(updates, dim=1)  # shape: (n,)
        unclipped = float((norms <= clip).to(torch.float64).mean())
        state.set("clip", next_clip(clip, unclipped, self.target_quantile, self.clip_lr))
        return result
