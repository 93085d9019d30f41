"""SignGuard: norm and sign-statistics filters, then a clipped mean (Xu et al., ICDCS 2022)."""

from __future__ import annotations

import torch

from strategies.base import Aggregate
from strategies.checks import check_client_weights, check_real, check_updates
from strategies.clipping import clipped_shares
from strategies.flame import median_bound, row_norms


class SignGuardDetector:
    """SignGuard's filters: a norm band around the median norm and the largest MeanShift
    cluster of sign statistics; rows outside either are flagged.

    Variant: Xu, Huang, Song and Lan, "SignGuard: Byzantine-robust Federated Learning
    through Collaborative Malicious Gradient Filtering", ICDCS 2022, its plain
    SignGuard (no similarity feature)::

        M      = median_i ||delta_i||                        (the rows this call sees)
        norm   : keep  lower * M <= ||delta_i|| <= upper * M
        r      = floor(coordinate_fraction * d) coordinates drawn from `generator`
        s_i    = (share of delta_i[r] > 0, share == 0, share < 0)        (n, 3)
        sign   : keep the largest MeanShift cluster of s, bandwidth estimated from s
        admit  = norm and sign;  flag the rest

    Both filters see every row the call gets and run independently (the authors' code
    intersects two index sets computed on all rows). Choices where the paper leaves
    details open, after the authors' public code (github.com/JianXu95/SignGuard):
    ``M`` is ``numpy.median`` there, the mean of the two middle norms for an even count,
    as here; the band is written without division (``M = 0`` keeps exactly the zero rows)
    and closed (the code's comparisons are strict); MeanShift is scikit-learn's with
    ``estimate_bandwidth(quantile=0.5)`` on all rows (the code subsamples 50 rows with a
    fixed seed, which only matters above 50 clients), ``bin_seeding=True`` and
    ``cluster_all=False``, so a row within no cluster's bandwidth (an orphan) is
    flagged. Two differences from that code: the coordinates are a random subset
    (``torch.randperm``; the code takes a contiguous block at a random offset), and the
    features are the raw shares (the code divides each feature by its maximum over the
    clients). A bandwidth of 0 (every row has as many exact duplicates as the estimate's
    neighbours, e.g. identical features, or n <= 3, where the one neighbour counted is
    the row itself; below half the features' resolution 1/k counts as 0, as rounding
    leaves such a distance about 1e-9) puts every row in one cluster: the sign filter
    then flags nobody. On i.i.d. honest updates the sign filter flags a share of them
    (about 40% a round on Gaussian rows, n = 10 to 50; the authors' feature pipeline
    does the same): precision suffers, the admitted mean stays honest.
    Ties between clusters of the largest size go to the lowest MeanShift label (the
    densest). Defaults ``lower = 0.1``, ``upper = 3.0``, ``coordinate_fraction = 0.1``
    are the paper's and the code's.

    Why: scaling and boosting attacks leave the norm band; attacks that cancel or invert
    the honest mean (sign flipping, ALIE, IPM) change the balance of positive and
    negative coordinates. Breakdown: needs an honest majority, both for ``M`` (half or
    more large rows move the band to them) and for the largest sign cluster; an attack
    that keeps norm and sign statistics (small, sign-balanced perturbations) passes.

    Parameters
    ----------
    lower : float (default: 0.1)
        L >= 0, finite: the smallest norm kept, relative to M.
    upper : float (default: 3.0)
        R >= L, finite: the largest norm kept, relative to M.
    coordinate_fraction : float (default: 0.1)
        Share of the d coordinates the sign statistics use, in (0, 1] (at least one).
    """

    def __init__(
        self, lower: float = 0.1, upper: float = 3.0, coordinate_fraction: float = 0.1
    ) -> None:
        check_real("signguard", "lower", lower, at_least=0, finite=True)
        check_real("signguard", "upper", upper, at_least=lower, finite=True)
        check_real("signguard", "coordinate_fraction", coordinate_fraction, above=0)
        if coordinate_fraction > 1:
            raise ValueError(
                "signguard needs coordinate_fraction <= 1, "
                f"got coordinate_fraction={coordinate_fraction}"
            )
        self.lower = lower
        self.upper = upper
        self.coordinate_fraction = coordinate_fraction
        self.name = "signguard"

    def __call__(
        self, updates: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Flags, bool ``(n,)``. ``generator`` draws the coordinates; None draws from
        torch's global generator."""
        check_updates(updates)
        n, d = updates.shape
        norms = row_norms(updates)  # shape: (n,)
        bound = torch.quantile(norms, 0.5)  # M, as median_norm
        in_band = (norms >= self.lower * bound) & (norms <= self.upper * bound)

        k = max(1, int(self.coordinate_fraction * d))
        device = generator.device if generator is not None else torch.device("cpu")
        coordinates = torch.randperm(d, generator=generator, device=device)[:k]
        signs = torch.sign(updates[:, coordinates.to(updates.device)])  # shape: (n, k)
        features = (
            torch.stack(
                [(signs > 0).sum(dim=1), (signs == 0).sum(dim=1), (signs < 0).sum(dim=1)], dim=1
            ).to(torch.float64)
            / k
        )  # shape: (n, 3)
        labels = _meanshift_labels(features, resolution=1.0 / k)
        clusters = labels[labels >= 0]
        if clusters.numel() == 0:
            in_cluster = torch.zeros(n, dtype=torch.bool)
        else:
            in_cluster = labels == int(torch.bincount(clusters).argmax())
        return ~(in_band.cpu() & in_cluster).to(updates.device)


def _meanshift_labels(features: torch.Tensor, resolution: float) -> torch.Tensor:
    """MeanShift labels (``-1``: an orphan) of ``(n, k)`` features; all 0 when the
    estimated bandwidth is 0.

    The features are shares of ``1 / resolution`` coordinates, so two distinct rows are at
    least ``resolution`` apart: a bandwidth below half of it is a distance of a row to
    itself left by rounding (about 1e-9 where n <= 3), and counts as 0.
    """
    from sklearn.cluster import MeanShift, estimate_bandwidth

    x = features.cpu().numpy()
    bandwidth = float(estimate_bandwidth(x, quantile=0.5)) if x.shape[0] > 1 else 0.0
    if not bandwidth >= 0.5 * resolution:
        return torch.zeros(x.shape[0], dtype=torch.int64)
    clusterer = MeanShift(bandwidth=bandwidth, bin_seeding=True, cluster_all=False)
    return torch.as_tensor(clusterer.fit(x).labels_, dtype=torch.int64)


class SignGuard:
    """SignGuard: ``SignGuardDetector``, then the mean of the admitted updates clipped to
    the median norm of all received updates.

    ``v = (1 / n_admitted) sum_{i admitted} delta_i * min(1, M / ||delta_i||)`` with
    ``M`` the median norm over every row of the round as received (``received``; the
    rows given when called without it), as the authors' code clips with the median of
    all clients' norms (``torch.median`` there, the lower middle for an even count; here
    the mean of the two middle norms, as the detector's). A zero row keeps factor 1.

    Weights: ``min(1, M / ||delta_i||) / n_admitted``, the coefficient of each admitted
    row (``update == weights @ updates``); they sum to at most 1. Breakdown: as
    ``SignGuardDetector``.

    Parameters
    ----------
    lower : float (default: 0.1)
        As ``SignGuardDetector``.
    upper : float (default: 3.0)
        As ``SignGuardDetector``.
    coordinate_fraction : float (default: 0.1)
        As ``SignGuardDetector``.
    """

    singles_out = True  # its zero weights single clients out (strategies.base)

    def __init__(
        self, lower: float = 0.1, upper: float = 3.0, coordinate_fraction: float = 0.1
    ) -> None:
        self.detectors = (
            SignGuardDetector(lower=lower, upper=upper, coordinate_fraction=coordinate_fraction),
        )
        self.name = "signguard"

    def __call__(
        self,
        updates: torch.Tensor,
        *,
        received: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
    ) -> Aggregate:
        bound = median_bound(updates, received, "signguard")
        w = check_client_weights(weights, updates.shape[0])
        norms = row_norms(updates)  # shape: (m,)
        share = clipped_shares(norms, bound, w).to(updates.dtype)  # shape: (m,)
        return Aggregate(update=share @ updates, weights=share)
