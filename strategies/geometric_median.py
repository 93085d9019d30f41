"""Geometric median by smoothed Weiszfeld: RFA (Pillutla, Kakade and Harchaoui, IEEE TSP 2022)."""

from __future__ import annotations

import math
from numbers import Real

import torch

from strategies.base import (
    Aggregate,
    check_client_weights,
    check_updates,
    pairwise_sq_distances,
)


def geometric_median(
    updates: torch.Tensor,
    weights: torch.Tensor | None = None,
    nu: float = 0.1,
    max_iter: int = 100,
    tol: float = 1e-6,
) -> Aggregate:
    """Approximate weighted geometric median ``argmin_z sum_i a_i ||z - x_i||``.

    Variant: RFA's smoothed Weiszfeld iteration (Pillutla et al., "Robust Aggregation for
    Federated Learning", IEEE TSP 2022; ``geometric_median_update`` in their code)::

        z <- sum_i b_i x_i / sum_i b_i,    b_i = a_i / max(nu, ||z - x_i||)

    started at the weighted mean, with ``a_i`` the client weights (uniform when ``None``).
    It stops when the relative change of the objective ``sum_i a_i ||z - x_i||`` between
    two iterates is at most ``tol`` (RFA's ``ftol`` test), or after ``max_iter`` updates
    of ``z``. Each step is the majorise-minimise step of the nu-smoothed objective, so
    that objective never increases; ``max(nu, .)`` keeps a step finite when ``z`` lands on
    an update. Where every distance is below ``nu`` all ``b_i`` equal ``a_i / nu`` and the
    result is the weighted mean: nu is an absolute length in update space, and it should
    be small against the spread of honest updates.

    Breakdown point 1/2: while the malicious clients hold less than half the total weight
    the result stays within a bounded distance of the honest updates, however far the
    malicious ones are. That, with no need to know f, is why RFA is a baseline.

    Every iterate is a convex combination ``z = sum_i c_i x_i`` of the rows, so the
    iteration runs on the ``(n, n)`` matrix of squared distances ``D`` (one Gram product),
    never on ``(n, d)`` differences: ``||x_i - z||^2 = (D c)_i - c^T D c / 2``.

    Parameters
    ----------
    updates : torch.Tensor
        Shape ``(n, d)``, one flattened client update per row.
    weights : torch.Tensor | None (default: None)
        Shape ``(n,)``, the ``a_i``: non-negative, positive sum (example counts, say).
    nu : float (default: 0.1)
        Smoothing floor on distances, > 0. 0.1 is what REFERENCES.md fixes and what
        Karimireddy et al.'s RFA baseline uses (``RFA(T, nu=0.1)`` in their ICLR 2022
        code); RFA's own code floors at ``eps = 1e-5``, other ports at 1e-6.
    max_iter : int (default: 100)
        Cap on Weiszfeld updates, >= 1. RFA's code stops at ``maxiter = 4``; 100 lets
        ``tol`` decide, which is cheap here: ``O(n^2)`` per iteration.
    tol : float (default: 1e-6)
        Relative objective change that ends the iteration, >= 0 (RFA's ``ftol = 1e-6``).

    Returns
    -------
    Aggregate
        ``update = weights @ updates``, with ``weights = b / sum(b)`` of the last
        iteration: the exact share each client has in the result (sums to 1; 0 for a
        client with ``a_i = 0``).
    """
    check_updates(updates)
    n = updates.shape[0]
    a = check_client_weights(weights, n)
    if not (isinstance(nu, Real) and math.isfinite(nu) and nu > 0):
        raise ValueError(f"geometric_median needs finite nu > 0, got nu={nu}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"geometric_median needs an integer max_iter >= 1, got max_iter={max_iter}")
    if not (isinstance(tol, Real) and tol >= 0):
        raise ValueError(f"geometric_median needs tol >= 0, got tol={tol}")

    sq_dist = pairwise_sq_distances(updates)  # shape: (n, n), float64
    if a is None:
        alpha = torch.full((n,), 1.0 / n, dtype=torch.float64, device=sq_dist.device)
    else:
        alpha = a.to(dtype=torch.float64, device=sq_dist.device)
        alpha = alpha / alpha.sum()

    def distances(coef: torch.Tensor) -> torch.Tensor:
        # ||x_i - z||^2 = sum_j c_j ||x_i - x_j||^2 - (1/2) sum_jk c_j c_k ||x_j - x_k||^2
        d_c = sq_dist @ coef  # shape: (n,)
        return (d_c - 0.5 * (coef @ d_c)).clamp_min(0.0).sqrt()

    coef = alpha  # the weighted mean
    dist = distances(coef)
    objective = float(alpha @ dist)
    for _ in range(max_iter):
        beta = alpha / dist.clamp_min(nu)  # shape: (n,)
        coef = beta / beta.sum()
        dist = distances(coef)
        new_objective = float(alpha @ dist)
        converged = abs(objective - new_objective) <= tol * new_objective
        objective = new_objective
        if converged:
            break

    share = coef.to(dtype=updates.dtype, device=updates.device)
    # shape: (d,)
    return Aggregate(update=share @ updates, weights=share)
