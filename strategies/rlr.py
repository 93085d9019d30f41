"""Robust learning rate (Ozdayi, Kantarcioglu and Gel, AAAI 2021): sign agreement per coordinate."""

from __future__ import annotations

import torch

from strategies.base import Aggregate
from strategies.checks import check_client_weights, check_int, check_updates


def robust_learning_rate(
    updates: torch.Tensor, threshold: int, weights: torch.Tensor | None = None
) -> Aggregate:
    """The mean of the updates with each coordinate's sign flipped where too few clients agree.

    Variant: Ozdayi, Kantarcioglu and Gel, "Defending against Backdoors in Federated
    Learning with Robust Learning Rate", AAAI 2021. Per coordinate j::

        s_j = |sum_i sign(x_ij)|,    f_j = +1 if s_j >= theta else -1,
        update_j = f_j * mean_i x_ij

    (``sign(0) = 0``), with the example-weighted mean when ``weights`` are given (the
    paper's server averages by data size) and the plain mean otherwise. The paper's server
    learning rate for coordinate j is ``f_j * eta``; here ``eta`` is the run's
    ``strategy.server_lr``, applied after this rule, so the step is the same.

    Default threshold: theta = 4 for 10 clients per round, the paper's Fashion-MNIST setting
    (10 agents, 1 corrupt); the authors' code (``src/runner.sh`` of
    github.com/TinfoilHat0/Defending-Against-Backdoors-with-Robust-Learning-Rate) uses
    ``--robustLR_threshold=4`` there and 8 for CIFAR-10 (40 agents, 4 corrupt) and for
    Federated EMNIST (about 34 agents per round). theta has to be set for the number of
    clients per round: it should exceed the number of attackers f and stay below the
    agreement of the honest clients.

    Why: a backdoor needs coordinates that honest clients do not push, or push weakly in no
    common direction; there the attackers' signs dominate a weak majority, and flipping
    the step moves the model away from the backdoor instead of towards it, while
    coordinates on which at least theta more clients agree than disagree step normally.

    Breakdown: f attackers can hold a coordinate at ``s_j >= theta`` only where honest
    clients are split; with f >= theta they unlock every coordinate the honest clients
    leave at zero agreement, and on coordinates they oppose they can pull ``s_j`` below
    theta and reverse the honest step (f attackers change ``s_j`` by up to 2f). It bounds
    no magnitude: a boosted update passes in full on the coordinates that are not flipped.
    theta > n flips every coordinate (the model walks backwards); it is refused.

    Weights: None. The result is not a combination of rows with one coefficient per row
    (each flipped coordinate takes every row with the opposite sign), so no per-client
    share describes it.

    Parameters
    ----------
    updates : torch.Tensor
        Shape ``(n, d)``, one flattened client update per row.
    threshold : int
        theta, the sign agreement a coordinate needs to step forwards, 1 <= theta <= n.
    weights : torch.Tensor | None (default: None)
        Shape ``(n,)``, non-negative example counts or shares for the mean.
    """
    check_updates(updates)
    n = updates.shape[0]
    threshold = check_int("robust_learning_rate", "threshold", threshold, 1)
    if threshold > n:
        raise ValueError(
            f"robust_learning_rate needs threshold <= {n} (the number of updates; above it "
            f"every coordinate is flipped), got threshold={threshold}"
        )
    weights = check_client_weights(weights, n)
    if weights is None:
        mean = updates.mean(dim=0)
    else:
        share = (weights / weights.sum()).to(device=updates.device, dtype=updates.dtype)
        mean = share @ updates
    agreement = torch.sign(updates).sum(dim=0).abs()  # shape: (d,), exact small integers
    flip = torch.where(agreement >= threshold, 1.0, -1.0).to(updates.dtype)
    # shape: (d,)
    return Aggregate(update=flip * mean, weights=None)
