"""The result type every aggregation rule returns, and the input checks they share."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Aggregate:
    """What a rule made of one round's updates.

    Attributes
    ----------
    update : torch.Tensor
        The aggregated update, shape ``(d,)``.
    weights : torch.Tensor | None
        Shape ``(n,)``: the share each client had in ``update`` (sums to 1 where the
        rule is a convex combination, 0 for a client the rule left out), or ``None``
        where a rule defines no per-client share (coordinate-wise rules).
    """

    update: torch.Tensor
    weights: torch.Tensor | None = None


def check_updates(updates: torch.Tensor, *, min_rows: int = 1) -> None:
    """Raise ``ValueError`` unless ``updates`` is a floating ``(n, d)`` matrix, n >= min_rows."""
    if not isinstance(updates, torch.Tensor):
        raise ValueError(f"updates must be a torch.Tensor, got {type(updates).__name__}")
    if updates.ndim != 2:
        raise ValueError(f"updates must have shape (n, d), got {tuple(updates.shape)}")
    if not updates.is_floating_point():
        raise ValueError(f"updates must be a floating tensor, got dtype {updates.dtype}")
    if updates.shape[0] < min_rows:
        raise ValueError(f"updates has {updates.shape[0]} rows; this rule needs >= {min_rows}")


def check_client_weights(weights: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """Validate optional non-negative per-client weights of shape ``(n,)`` with a positive sum."""
    if weights is None:
        return None
    weights = torch.as_tensor(weights)
    if weights.shape != (n,):
        raise ValueError(f"weights must have shape ({n},), got {tuple(weights.shape)}")
    if not torch.isfinite(weights).all() or (weights < 0).any():
        raise ValueError("weights must be finite and >= 0")
    if float(weights.sum()) <= 0:
        raise ValueError("weights must have a positive sum")
    return weights


def pairwise_sq_distances(updates: torch.Tensor) -> torch.Tensor:
    """Squared L2 distances between all rows, shape ``(n, n)``, from one Gram matrix.

    ``||x-y||^2 = ||x||^2 + ||y||^2 - 2 x.y``: one ``(n, d) @ (d, n)`` product instead of
    n^2 vector differences. Computed in float64 (cancellation is exact enough for ranking
    neighbours of nearly equal updates), clamped at 0, exact zeros on the diagonal.
    """
    x = updates.to(torch.float64)
    gram = x @ x.T  # shape: (n, n)
    sq_norms = gram.diagonal()
    distances = (sq_norms[:, None] + sq_norms[None, :] - 2.0 * gram).clamp_min_(0.0)
    distances.fill_diagonal_(0.0)
    return distances
