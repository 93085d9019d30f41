"""Coordinate-wise median and trimmed mean (Yin et al., ICML 2018)."""

from __future__ import annotations

import math

import torch

from strategies.base import Aggregate
from strategies.checks import check_updates, is_real


def coordinate_median(values: torch.Tensor) -> torch.Tensor:
    """Median along dim 0 of ``(n, d)``; for even n the mean of the two middle values.

    One partial selection (``topk`` of the ``floor(n/2) + 1`` smallest, unsorted) instead
    of a full sort, and no second selection for even n: the largest of those is
    ``s_{n/2}``; the largest left after removing one copy of it is ``s_{n/2-1}`` (exact
    with ties). ``torch.median`` would return the lower middle value for even n.
    """
    n = values.shape[0]
    half = values.topk(n // 2 + 1, dim=0, largest=False, sorted=False).values
    top = half.max(dim=0)
    if n % 2 == 1:
        return top.values
    # `half` is topk's own output, so filling it in place leaves `values` untouched
    below = half.scatter_(0, top.indices.unsqueeze(0), float("-inf")).amax(dim=0)
    # 0.5a + 0.5b rather than (a + b) / 2: no overflow near the dtype's max
    return 0.5 * below + 0.5 * top.values


def median(updates: torch.Tensor) -> Aggregate:
    """Coordinate-wise median.

    ``out_j = median_i x_ij``; for even n the mean of the two middle values, as
    ``numpy.median`` and Flower's FedMedian. Breakdown point 1/2 per coordinate: with
    fewer than n/2 Byzantine values each coordinate stays within the honest values'
    range. Inputs are finite (the Flower adapter rejects non-finite rows before any rule
    runs); NaN handling is therefore not defined here.

    Reference: Yin, Chen, Ramchandran, Bartlett, "Byzantine-Robust Distributed Learning:
    Towards Optimal Statistical Rates", ICML 2018.

    Parameters
    ----------
    updates : torch.Tensor
        Shape ``(n, d)``, one flattened client update per row (finite values).

    Returns
    -------
    Aggregate
        ``update`` of shape ``(d,)`` in the input's dtype and device; ``weights`` None
        (a coordinate-wise rule defines no per-client share).
    """
    check_updates(updates)
    return Aggregate(update=coordinate_median(updates), weights=None)


def trimmed_mean(updates: torch.Tensor, beta: float) -> Aggregate:
    """Coordinate-wise trimmed mean.

    Per coordinate, drop the ``k = floor(beta * n)`` largest and ``k`` smallest values and
    average the ``n - 2k`` left (``k`` computed as Flower's and scipy's
    ``int(beta * n)``); ``k = 0`` is the plain mean. Precondition ``0 <= beta < 0.5``
    (as Flower's FedTrimmedAvg). Robust when the Byzantine count f <= k. The FLTrust and
    Fang papers trim k = f per side: pass ``beta = (f + 0.5) / n``, not ``f / n``, whose
    product with n can round below f (0.29 * 100 = 28.999999999999996, so k = 28).

    Computed without sorting and without cancellation: ``L = s_k`` and ``U = s_{n-k-1}``
    (the (k+1)-th smallest and largest, by two unsorted ``topk``), then
    ``sum_i clamp(x_i, L, U) - k (L + U)`` is exactly the sum of the kept values, ties
    included, and never mixes in the magnitude of the trimmed (possibly huge) values,
    which ``sum - top-k sums`` would.

    Reference: Yin et al., ICML 2018.

    Parameters
    ----------
    updates : torch.Tensor
        Shape ``(n, d)``, one flattened client update per row (finite values).
    beta : float
        Fraction trimmed from each side, ``0 <= beta < 0.5``.

    Returns
    -------
    Aggregate
        ``update`` of shape ``(d,)`` in the input's dtype and device; ``weights`` None.
    """
    check_updates(updates)
    if not is_real(beta) or not 0.0 <= float(beta) < 0.5:
        raise ValueError(f"trimmed_mean needs 0 <= beta < 0.5, got beta={beta!r}")
    n = updates.shape[0]
    k = math.floor(float(beta) * n)  # == int(beta * n) for beta >= 0, as Flower
    if k == 0:
        return Aggregate(update=updates.mean(dim=0), weights=None)
    upper = updates.topk(k + 1, dim=0, largest=True, sorted=False).values.amin(dim=0)
    lower = updates.topk(k + 1, dim=0, largest=False, sorted=False).values.amax(dim=0)
    # clamp maps the k smallest to L and the k largest to U, and keeps the rest
    kept_sum = updates.clamp(min=lower, max=upper).sum(dim=0) - k * (lower + upper)
    return Aggregate(update=kept_sum / (n - 2 * k), weights=None)
