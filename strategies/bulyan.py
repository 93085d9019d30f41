"""Bulyan (El Mhamdi, Guerraoui, Rouault, ICML 2018): iterated Krum, then a trimmed median."""

from __future__ import annotations

import torch

from strategies.base import Aggregate, pairwise_sq_distances, singles_out
from strategies.checks import check_num_malicious, check_updates
from strategies.coordinate import coordinate_median
from strategies.krum import krum_scores


def _check(updates: torch.Tensor, num_malicious: int) -> int:
    check_updates(updates)
    f = check_num_malicious(num_malicious)
    n = updates.shape[0]
    if n < 4 * f + 3:
        raise ValueError(f"bulyan needs n >= 4f + 3, got n={n}, f={f}")
    return f


def _select(distances: torch.Tensor, f: int) -> torch.Tensor:
    """Iterated Krum over a shrinking set; indices in the order they were chosen."""
    n = distances.shape[0]
    remaining = torch.arange(n, device=distances.device)
    chosen = []
    # theta = n - 2f steps, each over an (r, r) matrix: at most n iterations, never over d
    for _ in range(n - 2 * f):
        among = distances[remaining][:, remaining]
        scores = krum_scores(among, f)
        # With r - f - 2 < 2 neighbours (the last steps when f <= 2) the two rows nearest
        # each other always tie exactly; break ties by the summed distance to the whole
        # remaining set, which does not depend on row order, and only then by index.
        tied = scores == scores.min()
        totals = torch.where(tied, among.sum(dim=1), torch.full_like(scores, float("inf")))
        best = int(torch.argmin(totals))
        chosen.append(remaining[best])
        remaining = torch.cat([remaining[:best], remaining[best + 1 :]])
    return torch.stack(chosen)


def bulyan_selection(updates: torch.Tensor, num_malicious: int) -> torch.Tensor:
    """The ``theta = n - 2f`` rows Bulyan's first stage selects, in the order chosen.

    Each step runs Krum (``krum_scores`` with the same f, so ``r - f - 2`` neighbours in a
    set of ``r`` remaining updates, at least 1) on the updates not yet chosen and moves the
    winner into the selection. Exact score ties (always present in the last steps when
    f <= 2, where one neighbour is counted) go to the row with the smaller summed distance
    to all remaining rows, then to the lower index, so the selection does not depend on
    the order of the rows.

    Parameters
    ----------
    updates : torch.Tensor
        Shape ``(n, d)``, one flattened client update per row (finite values).
    num_malicious : int
        f, the number of Byzantine updates to tolerate, >= 0, with ``n >= 4f + 3``.

    Returns
    -------
    torch.Tensor
        int64, shape ``(n - 2f,)``, row indices into ``updates``.
    """
    f = _check(updates, num_malicious)
    return _select(pairwise_sq_distances(updates), f)


@singles_out
def bulyan(updates: torch.Tensor, num_malicious: int) -> Aggregate:
    """Bulyan over Krum.

    1. Selection: ``theta = n - 2f`` updates by applying Krum repeatedly to what remains
       (each step Krum with the same f on the ``r`` updates left, i.e. ``r - f - 2``
       nearest neighbours; where that drops below 1, in the last steps when f <= 1, the
       nearest neighbour counts, as in Flower's ``aggregate_bulyan``); see
       ``bulyan_selection``. Where one neighbour counts (f <= 2, last steps), the two
       remaining updates nearest each other tie exactly and the lower index wins, so for
       f in {1, 2} the selection can depend on the order of the rows.
    2. Aggregation, per coordinate j: ``m_j`` = median of the theta selected values (even
       theta: mean of the two middle ones); the result is the mean of the
       ``beta = theta - 2f`` selected values closest to ``m_j`` (``|x_ij - m_j|``).

    Ties in "closest" (two distinct values at exactly the same distance from ``m_j``
    competing for the last place, possible only with exactly symmetric values) are broken
    by ``torch.topk``'s order, which is deterministic for a given input but unspecified:
    such a result may change when rows are permuted. Equal values tied at the cut change
    nothing. Flower breaks the same ties by ``numpy.argpartition``'s order.

    Precondition (the paper's): ``n >= 4f + 3``. Under the paper's assumptions Bulyan is
    (alpha, f)-Byzantine resilient and, unlike Krum alone, limits the attacker's leeway on
    each single coordinate (the paper's ``O(1/sqrt(d))`` bound).

    Reference: El Mhamdi, Guerraoui, Rouault, "The Hidden Vulnerability of Distributed
    Learning in Byzantium", ICML 2018.

    Parameters
    ----------
    updates : torch.Tensor
        Shape ``(n, d)``, one flattened client update per row (finite values).
    num_malicious : int
        f, the number of Byzantine updates to tolerate, >= 0.

    Returns
    -------
    Aggregate
        ``update`` of shape ``(d,)`` in the input's dtype and device. ``weights``
        ``1/theta`` on the selected rows, 0 on the 2f rows left out: it marks the
        selection, which is what detection measures; each selected row's actual share
        varies by coordinate (between 0 and ``1/beta``).
    """
    f = _check(updates, num_malicious)
    n = updates.shape[0]
    theta, beta = n - 2 * f, n - 4 * f
    chosen = _select(pairwise_sq_distances(updates), f).to(updates.device)
    weights = torch.zeros(n, dtype=updates.dtype, device=updates.device)
    weights[chosen] = 1.0 / theta
    # shape: (theta, d), a fresh copy (index_select), so in-place work below is safe
    selected = updates.index_select(0, chosen)
    if f == 0:  # theta = beta = n: every value is kept
        return Aggregate(update=selected.mean(dim=0), weights=weights)
    gap = (selected - coordinate_median(selected)).abs_()  # shape: (theta, d)
    if beta <= 2 * f:
        # gather the beta closest values
        keep = gap.topk(beta, dim=0, largest=False, sorted=False).indices  # shape: (beta, d)
        update = selected.gather(0, keep).mean(dim=0)
    else:
        # zero the 2f farthest (fewer to find); zeroing, not subtracting, so that
        # huge far values never enter the sum
        drop = gap.topk(2 * f, dim=0, largest=True, sorted=False).indices  # shape: (2f, d)
        update = selected.scatter_(0, drop, 0.0).sum(dim=0) / beta
    return Aggregate(update=update, weights=weights)
