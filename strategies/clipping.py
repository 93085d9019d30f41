"""Centered clipping (Karimireddy et al., ICML 2021) and norm bounding (Sun et al., 2019)."""

from __future__ import annotations

import torch

from strategies.base import Aggregate
from strategies.checks import (
    check_client_weights,
    check_int,
    check_real,
    check_updates,
    check_vector,
)
from strategies.state import StageState


def _clip_factors(norms: torch.Tensor, bound: float) -> torch.Tensor:
    """``min(1, bound / norm)`` per row, exactly 1 for a zero row (no division by zero)."""
    return torch.where(norms > bound, bound / norms, torch.ones_like(norms))


def add_gaussian_noise(
    update: torch.Tensor, std: float, generator: torch.Generator | None
) -> torch.Tensor:
    """``update`` plus N(0, std^2) per coordinate (weak DP's and FLAME's noise), drawn in
    float64 whatever the update's dtype (the same seed gives the same noise) from
    ``generator`` (torch's global one when None)."""
    device = generator.device if generator is not None else torch.device("cpu")
    noise = torch.randn(update.shape[0], generator=generator, dtype=torch.float64, device=device)
    return update + (std * noise).to(update.device, update.dtype)


def clipped_shares(
    norms: torch.Tensor, bound: float | torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Each row's coefficient in the mean of the rows clipped to ``bound``: ``min(1, bound /
    norm_i) / n``, or ``min(1, bound / norm_i) * w_i / sum(w)`` with client ``weights``."""
    scale = _clip_factors(norms, bound)  # shape: (n,)
    if weights is None:
        return scale / norms.shape[0]
    return scale * (weights / weights.sum()).to(device=scale.device, dtype=scale.dtype)


def centered_clipping(
    updates: torch.Tensor,
    tau: float,
    iterations: int = 1,
    center: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> Aggregate:
    """Centered clipping: average the updates' offsets from a center, each clipped to ``tau``.

    Variant: Karimireddy, He and Jaggi, "Learning from History for Byzantine Robust
    Optimization", ICML 2021, with ``L = iterations``::

        v <- v + (1/n) sum_i clip_tau(x_i - v),    clip_tau(y) = y * min(1, tau / ||y||)

    repeated L times from ``v = center``. The published settings are tau=100, L=1 (CIFAR)
    and tau=10, L=3 (MNIST); the paper's center is the server momentum; Oleander's stage
    ``CenteredClipping`` passes the previous round's aggregate (zero in round 1).

    Why: each client moves ``v`` by at most ``tau / n`` per iteration, however large its
    update, so f malicious clients move it about ``L f tau / n`` at most from where the
    honest ones alone would pull it. Breakdown: no fixed point; the paper proves robustness
    for a malicious fraction below a small constant (well under 1/2) given a good center,
    and the error scales with tau: a tau far above the honest updates' distance to the
    center makes it the plain mean (breakdown 0).

    Weights. Each step is ``v <- (1 - mean_i s_i) v + (1/n) sum_i s_i x_i`` with
    ``s_i = min(1, tau / ||x_i - v||)`` in ``(0, 1]``, so the result is a convex combination
    of the center and the updates, ``v_L = alpha * center + sum_i c_i x_i``; ``weights`` is
    ``c``, tracked exactly (``c <- (1 - mean s) c + s / n``). It is the share client i had
    in the result (a clipped client gets less than 1/n), which is what detection needs;
    ``1 - sum(c) = alpha`` is the center's share, so the weights sum to at most 1. The
    coefficients depend on the data (clipping is not linear), as for every robust rule.

    Parameters
    ----------
    updates : torch.Tensor
        Shape ``(n, d)``, one flattened client update per row.
    tau : float
        Clipping radius around the current center, > 0 (``inf`` gives the mean).
    iterations : int (default: 1)
        L, the number of clipping steps, >= 1.
    center : torch.Tensor | None (default: None)
        Shape ``(d,)``, floating and finite: where v starts (zero when None).
    weights : torch.Tensor | None (default: None)
        Shape ``(n,)``, non-negative: example-count weights ``w`` (normalised here); the
        step becomes ``v <- v + sum_i w_i clip_tau(x_i - v)``. None: ``w_i = 1/n``.
    """
    check_updates(updates)
    n, d = updates.shape
    check_real("centered_clipping", "tau", tau, above=0)
    iterations = check_int("centered_clipping", "iterations", iterations, 1)
    w = check_client_weights(weights, n)
    if w is None:
        w = torch.full((n,), 1.0 / n, dtype=torch.float64, device=updates.device)
    else:
        w = w.to(dtype=torch.float64, device=updates.device)
        w = w / w.sum()
    if center is None:
        v = torch.zeros(d, dtype=updates.dtype, device=updates.device)
    else:
        center = check_vector("centered_clipping", "center", center, d)
        v = center.to(dtype=updates.dtype, device=updates.device)

    share = torch.zeros(n, dtype=torch.float64, device=updates.device)  # the c_i
    for _ in range(iterations):
        offsets = updates - v  # shape: (n, d)
        scale = _clip_factors(torch.linalg.vector_norm(offsets, dim=1), tau)  # shape: (n,)
        # unweighted: the paper's step as written, (1/n) sum_i
        coef = scale / n if weights is None else scale * w.to(scale)
        v = v + coef @ offsets
        step = scale.to(torch.float64) * w  # shape: (n,)
        share = (1.0 - step.sum()) * share + step
    return Aggregate(update=v, weights=share.to(updates.dtype))


class CenteredClipping:
    """``centered_clipping`` around the previous round's aggregate, kept in the defence state.

    The stage the ``centered_clipping`` strategy runs: the center is the aggregate of the
    last round whose aggregate was accepted (zero before the first), stored as the stage's
    ``center`` entry, so a checkpoint keeps it and a resumed run continues from it.

    Parameters
    ----------
    tau : float
        Clipping radius, > 0.
    iterations : int (default: 1)
        L, the number of clipping steps, >= 1.
    """

    def __init__(self, tau: float, iterations: int = 1) -> None:
        self.tau = tau
        self.iterations = iterations
        self.name = "centered_clipping"

    def __call__(
        self, updates: torch.Tensor, *, state: StageState, weights: torch.Tensor | None = None
    ) -> Aggregate:
        result = centered_clipping(
            updates,
            tau=self.tau,
            iterations=self.iterations,
            center=state.get("center"),
            weights=weights,
        )
        state.set("center", result.update.detach())
        return result


def norm_bound(
    updates: torch.Tensor,
    max_norm: float,
    noise_std: float = 0.0,
    generator: torch.Generator | None = None,
    weights: torch.Tensor | None = None,
) -> Aggregate:
    """Scale every update to L2 norm at most ``max_norm``, take the mean, add Gaussian noise.

    ``(1/n) sum_i x_i * min(1, M / ||x_i||) + N(0, sigma^2 I)`` (Sun, Kairouz, Suresh and
    McMahan, "Can You Really Backdoor Federated Learning?", 2019: norm bounding, and "weak
    differential privacy" with ``sigma = noise_std > 0``; the paper's EMNIST setting uses
    sigma = 0.025). The default ``noise_std = 0`` is norm bounding alone and draws nothing,
    so runs without noise are unchanged. It is centered clipping around zero with one
    iteration. No update is ever scaled up. With ``weights`` (example counts) the mean is
    ``sum_i w_i s_i x_i / sum_i w_i``.

    Why: a boosted (model-replacement) backdoor needs a large update; bounding norms caps
    any one client's pull on the result at ``M / n``, so f attackers move it at most
    ``f M / n``. The noise blurs what little a bounded backdoor adds, at a cost in main-task
    accuracy. Breakdown point 0 in the classical sense (f unbounded clients still move
    the result by ``f M / n``), and it does nothing against attacks that stay within M.

    Weights: ``s_i / n`` with ``s_i = min(1, M / ||x_i||)`` (``s_i w_i / sum w`` when
    weighted), the exact coefficient of ``x_i`` in the mean: ``update == weights @ updates``
    without noise, plus the noise vector with it (noise is no client's share). They sum to
    at most 1 (the rest is the zero vector's share); a clipped client gets less than 1/n,
    which is the "how much did client i count" that detection reads. Normalising them to
    sum 1 would describe a different rule (``sum s_i x_i / sum s_i``), so they are left as
    they are.

    Parameters
    ----------
    updates : torch.Tensor
        Shape ``(n, d)``, one flattened client update per row.
    max_norm : float
        M, the largest L2 norm an update keeps, > 0.
    noise_std : float (default: 0.0)
        sigma, the standard deviation of the Gaussian noise per coordinate, finite and >= 0.
    generator : torch.Generator | None (default: None)
        Where the noise is drawn from (the round's generator); required when
        ``noise_std > 0``.
    weights : torch.Tensor | None (default: None)
        Shape ``(n,)``, non-negative example counts or shares for the mean.
    """
    check_updates(updates)
    n = updates.shape[0]
    check_real("norm_bound", "max_norm", max_norm, above=0)
    check_real("norm_bound", "noise_std", noise_std, at_least=0, finite=True)
    if noise_std > 0 and generator is None:
        raise ValueError(f"norm_bound needs a generator to draw noise_std={noise_std} noise")
    weights = check_client_weights(weights, n)
    share = clipped_shares(torch.linalg.vector_norm(updates, dim=1), max_norm, weights)
    update = share @ updates  # shape: (d,)
    if noise_std > 0:  # checked above: a generator is given
        update = add_gaussian_noise(update, noise_std, generator)
    return Aggregate(update=update, weights=share)
