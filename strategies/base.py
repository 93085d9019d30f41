"""The result type every aggregation rule returns, and the distances several rules share."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

R = TypeVar("R")


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


def singles_out(rule: R) -> R:
    """Mark a rule that can give a client no share at all (a selection, a filter, zero
    trust): its zero weights single clients out, so its detection precision, recall and
    FPR mean something. Rules that only average, clip or take medians never flag anyone:
    for them those figures are "not a detector", not 0."""
    rule.singles_out = True  # type: ignore[attr-defined]
    return rule


def can_single_out(stage: Callable[..., Any]) -> bool:
    """Whether ``stage`` (a function, a ``functools.partial`` of one, or a rule object) is
    marked with ``singles_out``."""
    func = stage.func if isinstance(stage, functools.partial) else stage
    return bool(getattr(func, "singles_out", False))
