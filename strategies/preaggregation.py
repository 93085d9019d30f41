"""Pre-aggregation that mixes updates before a robust rule: nearest-neighbour mixing, bucketing.

Nearest-neighbour mixing: Allouah et al., "Fixing by Mixing", AISTATS 2023. Bucketing:
Karimireddy, He and Jaggi, "Byzantine-Robust Learning on Heterogeneous Datasets via
Bucketing", ICLR 2022. Both replace the n updates by m averages of them and return the
``(m, n)`` matrix that made them, so a rule's weights over the mixed rows map back to the
clients as ``rule_weights @ mixing``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from strategies.base import pairwise_sq_distances
from strategies.checks import check_int, check_updates, is_int


@dataclass(frozen=True)
class Mixed:
    """Updates after pre-aggregation, and how each was made from the clients' updates.

    Attributes
    ----------
    updates : torch.Tensor
        Shape ``(m, d)``: what the rule then aggregates; ``mixing @ original updates``.
    mixing : torch.Tensor
        Shape ``(m, n)``, non-negative, rows sum to 1: row j is the share each original
        client has in mixed row j. A rule's per-row weights ``w`` (shape ``(m,)``) become
        per-client weights ``w @ mixing``.
    """

    updates: torch.Tensor
    mixing: torch.Tensor


def nearest_neighbor_mixing(updates: torch.Tensor, num_malicious: int) -> Mixed:
    """Replace every update by the mean of its n - f nearest updates, itself included.

    ``y_i = (1/(n-f)) sum_{j in N_i} x_j`` with ``N_i`` the n - f rows closest to ``x_i``
    in L2 (Allouah et al., AISTATS 2023, NNM). ``x_i`` itself always counts
    as its own first neighbour; ties among the others go to the lower index (a stable sort
    of squared distances from one Gram matrix, so "tie" means equal in float64). m = n.

    Why: averaging n - f neighbours shrinks the spread of the honest updates while a
    malicious row can enter an honest row's neighbourhood only by staying close to it,
    which lets rules such as Krum, coordinate median or geometric median reach the optimal
    error under heterogeneity. The rule behind it must still tolerate f of n rows (the
    paper's guarantees take n > 2f), and f must be given.

    Parameters
    ----------
    updates : torch.Tensor
        Shape ``(n, d)``, one flattened client update per row.
    num_malicious : int
        f, the number of malicious clients the defence assumes, 0 <= f < n (f = 0 makes
        every row the plain mean).
    """
    check_updates(updates)
    n = updates.shape[0]
    if not is_int(num_malicious) or not 0 <= num_malicious < n:
        raise ValueError(
            f"nearest_neighbor_mixing needs an integer 0 <= num_malicious < n, "
            f"got num_malicious={num_malicious}, n={n}"
        )
    k = n - int(num_malicious)
    sq_dist = pairwise_sq_distances(updates)  # shape: (n, n), float64
    sq_dist.fill_diagonal_(-1.0)  # below every distance: each row is its own first neighbour
    neighbours = torch.sort(sq_dist, dim=1, stable=True).indices[:, :k]  # shape: (n, k)
    mixing = torch.zeros((n, n), dtype=updates.dtype, device=updates.device)
    mixing.scatter_(1, neighbours.to(updates.device), 1.0 / k)
    # shape: (n, d)
    return Mixed(updates=mixing @ updates, mixing=mixing)


def bucketing(
    updates: torch.Tensor,
    bucket_size: int,
    generator: torch.Generator | None = None,
) -> Mixed:
    """Shuffle the updates, then average consecutive buckets of ``bucket_size`` of them.

    With a random permutation ``pi`` and s = ``bucket_size``, mixed row j is the mean of
    ``x_pi(js), ..., x_pi(js+s-1)``; m = ceil(n / s). When s does not divide n the last
    bucket holds the ``n mod s`` updates left and is their mean (as in the authors' code,
    which divides by the bucket's own length), so its rows are noisier than the others.

    Why: averaging random groups of s updates cuts the honest rows' heterogeneity by about
    a factor s, which is what lets a robust rule behind it converge on non-IID data; the
    price is that f malicious clients can now contaminate up to f of the m buckets, so the
    rule behind it must tolerate f of m = ceil(n/s) rows: the paper's guarantee needs
    s * f / n below the fraction the rule tolerates.

    Parameters
    ----------
    updates : torch.Tensor
        Shape ``(n, d)``, one flattened client update per row.
    bucket_size : int
        s, the number of updates averaged per bucket, >= 1 (s = 1 only shuffles;
        s >= n gives the plain mean).
    generator : torch.Generator | None (default: None)
        Source of the shuffle. Pass one seeded from ``(seed, round)`` for a reproducible
        run; None draws from torch's global generator.
    """
    check_updates(updates)
    n = updates.shape[0]
    s = check_int("bucketing", "bucket_size", bucket_size, 1)
    m = -(-n // s)  # ceil(n / s)
    device = generator.device if generator is not None else torch.device("cpu")
    order = torch.randperm(n, generator=generator, device=device).to(updates.device)
    bucket = torch.arange(n, device=updates.device) // s  # bucket of each shuffled position
    sizes = torch.bincount(bucket, minlength=m).to(updates.dtype)  # shape: (m,)
    mixing = torch.zeros((m, n), dtype=updates.dtype, device=updates.device)
    mixing[bucket, order] = 1.0 / sizes[bucket]
    # shape: (m, d)
    return Mixed(updates=mixing @ updates, mixing=mixing)
