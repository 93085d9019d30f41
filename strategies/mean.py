"""Federated averaging (McMahan et al., AISTATS 2017): the non-robust control."""

from __future__ import annotations

import torch

from strategies.base import Aggregate
from strategies.checks import check_client_weights, check_updates


def fedavg(updates: torch.Tensor, weights: torch.Tensor | None = None) -> Aggregate:
    """Weighted mean of the updates.

    ``sum_i w_i x_i / sum_i w_i`` with ``w`` the clients' example counts in FedAvg, or
    the plain mean when ``weights`` is None. Breakdown point 0: a single client can move
    the result arbitrarily far, which is why it is the control in every comparison.

    Parameters
    ----------
    updates : torch.Tensor
        Shape ``(n, d)``, one flattened client update per row.
    weights : torch.Tensor | None (default: None)
        Shape ``(n,)``, non-negative, positive sum.
    """
    check_updates(updates)
    n = updates.shape[0]
    w = check_client_weights(weights, n)
    if w is None:
        share = torch.full((n,), 1.0 / n, dtype=updates.dtype, device=updates.device)
    else:
        w = w.to(dtype=updates.dtype, device=updates.device)
        share = w / w.sum()
    # shape: (d,)
    return Aggregate(update=share @ updates, weights=share)
