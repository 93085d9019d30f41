"""FLAME: clustering, median-norm clipping and noise against backdoors (Nguyen et al., 2022)."""

from __future__ import annotations

import warnings

import torch

from strategies.base import Aggregate
from strategies.checks import (
    check_client_weights,
    check_int,
    check_real,
    check_updates,
    check_vector,
)
from strategies.clipping import add_gaussian_noise, clipped_shares

CLUSTER_ON = ("models", "updates")


# Cosine distances below this may be rounding between identical rows (d * 1e-16 at most).
NEAR_DUPLICATE = 1e-9


def cosine_distances(rows: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
    """``1 - cos(x_i, x_j)`` between all rows (or all ``x_i + shift``), ``(n, n)``, float64.

    From one float64 Gram matrix ``G`` of the rows: ``cos = G_ij / sqrt(G_ii G_jj)``,
    clamped to ``[0, 2]``, exact zeros on the diagonal. With ``shift`` (FLAME's local models
    ``g + delta_i``) the Gram of the shifted rows is ``G_ij + a_i + a_j + g.g`` with
    ``a = rows @ g``: the shifted ``(n, d)`` matrix is never formed. A zero row has no
    direction: two zero rows are at distance 0 (they are the same point), a zero row and
    a non-zero row at distance 1 (cosine 0, as orthogonal). Identical rows are at
    distance exactly 0: the Gram product leaves them about 1e-16 apart, which HDBSCAN
    would split (sybils sending one crafted update would then get arbitrary flags);
    where any pair is that close, equal rows are found exactly.
    """
    x = rows.to(torch.float64)
    gram = x @ x.T  # shape: (n, n)
    if shift is not None:
        g = shift.to(x.device, torch.float64)
        a = x @ g  # shape: (n,)
        gram = gram + a[:, None] + a[None, :] + g @ g
    sq_norms = gram.diagonal().clamp_min(0.0)
    zero = sq_norms == 0
    denominator = (sq_norms[:, None] * sq_norms[None, :]).sqrt()
    cosine = torch.where(denominator > 0, gram / denominator.clamp_min(1e-300), 0.0)
    distances = (1.0 - cosine).clamp_(0.0, 2.0)  # shape: (n, n)
    distances[zero[:, None] & zero[None, :]] = 0.0
    distances.fill_diagonal_(0.0)
    near = distances < NEAR_DUPLICATE
    near.fill_diagonal_(False)
    if bool(near.any()):  # rare: only then pay for the exact comparison of rows
        groups = torch.unique(rows, dim=0, return_inverse=True)[1].to(distances.device)
        distances[groups[:, None] == groups[None, :]] = 0.0
    return distances


def median_bound(updates: torch.Tensor, received: torch.Tensor | None, rule: str) -> torch.Tensor:
    """The clipping bound of FLAME and SignGuard: the median norm over every row the round
    received (``received``, flagged rows included), or over ``updates`` when not given."""
    check_updates(updates)
    if received is not None:
        check_updates(received)
        if received.shape[1] != updates.shape[1]:
            raise ValueError(
                f"{rule} needs received with {updates.shape[1]} columns, "
                f"got {tuple(received.shape)}"
            )
    return median_norm(updates if received is None else received)


def median_norm(rows: torch.Tensor) -> torch.Tensor:
    """The median of the rows' L2 norms (float64 scalar); for an even count, the mean of
    the two middle norms (the repository's convention for medians, as ``median``)."""
    return torch.quantile(row_norms(rows), 0.5)


def row_norms(rows: torch.Tensor) -> torch.Tensor:
    """The rows' L2 norms in float64, computed in the rows' own dtype (a float64 copy of
    the matrix costs 30 times the norms at d = 1e6; float32 sums are exact to ~1e-7)."""
    return torch.linalg.vector_norm(rows, dim=1).to(torch.float64)


class FlameDetector:
    """FLAME's filtering step: admit the largest HDBSCAN cluster of cosine distances.

    Variant: Nguyen et al., "FLAME: Taming Backdoors in Federated Learning", USENIX
    Security 2022, Algorithm 1, lines 1-5::

        W_i    = g + delta_i                  (the local models; cluster_on="models")
        c_ij   = 1 - cos(W_i, W_j)            (float64, (n, n))
        labels = HDBSCAN(metric="precomputed", min_cluster_size=floor(n/2) + 1,
                         min_samples=1, allow_single_cluster=True)(c)
        admit the largest cluster; flag every other row, HDBSCAN's noise (-1) included

    The paper clusters the local models; many implementations cluster the updates
    ``delta_i`` instead (``cluster_on="updates"``). With ``cluster_on="models"`` and no
    ``global_model`` offered (a direct call), ``g`` is taken as zero, so both coincide.
    A ``min_cluster_size`` above ``n/2`` (the default, the paper's) allows at most one
    cluster; with a smaller one, ties between clusters of the largest size go to the
    lowest HDBSCAN label. The clustering is scikit-learn's ``HDBSCAN`` (the algorithm of
    the ``hdbscan`` package most implementations call). Edge cases: one row is never
    flagged (HDBSCAN needs two points); identical rows are at distance 0 and form one
    cluster, so nobody is flagged; zero rows as in ``cosine_distances``.

    Expect false positives: when the whole round is one cluster, HDBSCAN with
    ``allow_single_cluster`` labels as noise the points that leave it before its densest
    core does, so often only about ``min_cluster_size`` rows are admitted (on 10 digits
    clients with one boosted backdoor, the attacker and 3 honest clients a round).

    Why: backdoored models point in a direction the benign majority does not share, and
    cosine distance ignores the boost a model-replacement attacker applies. Breakdown: it
    assumes more than half of the clients are benign and mutually similar. With
    ``n/2`` or more attackers (or a colluding attacker set that is cosine-close to the
    benign ones) the admitted cluster can be theirs; under strongly non-IID data benign
    clients can fall outside the cluster (false positives). When ``||g||`` dwarfs the
    updates, model cosines are all near 1; HDBSCAN uses relative density, so the
    clustering still separates them, but ``cluster_on="updates"`` is more sensitive.

    Parameters
    ----------
    min_cluster_size : int | None (default: None)
        HDBSCAN's smallest cluster, >= 2; None: ``floor(n/2) + 1`` for the n rows of the
        call (the paper). Above n: ``ValueError`` at call time.
    cluster_on : str (default: "models")
        ``models`` (``g + delta_i``, the paper) or ``updates`` (``delta_i``).
    """

    def __init__(self, min_cluster_size: int | None = None, cluster_on: str = "models") -> None:
        if min_cluster_size is not None:
            check_int("flame", "min_cluster_size", min_cluster_size, 2)
        if cluster_on not in CLUSTER_ON:
            raise ValueError(
                f"flame needs cluster_on in {', '.join(CLUSTER_ON)}, got cluster_on={cluster_on!r}"
            )
        self.min_cluster_size = min_cluster_size
        self.cluster_on = cluster_on
        self.name = "flame"

    def __call__(
        self, updates: torch.Tensor, *, global_model: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Flags, bool ``(n,)``: True outside the largest cluster."""
        check_updates(updates)
        n, d = updates.shape
        size = n // 2 + 1 if self.min_cluster_size is None else self.min_cluster_size
        if size > n:
            raise ValueError(
                f"flame needs min_cluster_size <= the {n} clients aggregated, "
                f"got min_cluster_size={size}"
            )
        flags = torch.zeros(n, dtype=torch.bool, device=updates.device)
        if n == 1:
            return flags
        shift = None
        if self.cluster_on == "models" and global_model is not None:
            shift = check_vector("flame", "global_model", global_model, d)
        labels = _hdbscan_labels(cosine_distances(updates, shift), size)
        clusters = labels[labels >= 0]
        if clusters.numel() == 0:  # no cluster at all: nothing is admitted
            return torch.ones_like(flags)
        largest = int(torch.bincount(clusters).argmax())  # first maximum: lowest label
        return (labels != largest).to(updates.device)


def _hdbscan_labels(distances: torch.Tensor, min_cluster_size: int) -> torch.Tensor:
    """HDBSCAN labels (``-1`` noise) of a precomputed ``(n, n)`` distance matrix."""
    from sklearn.cluster import HDBSCAN

    clusterer = HDBSCAN(
        metric="precomputed",
        min_cluster_size=min_cluster_size,
        min_samples=1,
        allow_single_cluster=True,
        copy=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # only the future default of copy
        labels = clusterer.fit_predict(distances.cpu().numpy())
    return torch.as_tensor(labels, dtype=torch.int64)


class Flame:
    """FLAME: ``FlameDetector``, then the mean of the admitted updates clipped to the
    median norm, plus Gaussian noise.

    Variant: Nguyen et al., USENIX Security 2022, Algorithm 1, lines 6-12, on the rows the
    detector admitted (the pipeline runs ``detectors`` first)::

        e_i = ||delta_i||,   S = median of e over ALL received rows (flagged included)
        c_i = min(1, S / e_i)                       (1 for a zero row)
        v   = (1 / n_admitted) sum_{i admitted} c_i delta_i
        v  += N(0, (lambda S)^2) per coordinate,    drawn from ``generator``

    The paper clips and averages local models around ``g``; in update space that is the
    formula above. ``S`` is taken over every row of the round as received (``received``;
    the rows given when called without it). For an even count, the median is the mean of
    the two middle norms. Defaults from the paper: ``noise_lambda = 0.001`` for image
    classification (0.01 for its NLP task), clustering as ``FlameDetector``.

    Weights: ``c_i / n_admitted``, the coefficient of each admitted row in ``v`` before
    the noise (``v - noise == weights @ updates``); they sum to at most 1.

    Why: clipping to the median norm caps a boosted (model-replacement) update that the
    clustering missed at the size of a typical one; the noise, scaled by ``S``, blurs the
    small remaining backdoor contribution. Breakdown: as ``FlameDetector``; if half or
    more of the received rows are large, ``S`` is the attackers' norm and clipping no
    longer bounds them. The noise costs accuracy when ``lambda`` is large for the model.

    Parameters
    ----------
    min_cluster_size : int | None (default: None)
        As ``FlameDetector`` (None: ``floor(n/2) + 1``, the paper).
    cluster_on : str (default: "models")
        As ``FlameDetector``.
    noise_lambda : float (default: 0.001)
        lambda >= 0, finite; the noise standard deviation is ``lambda * S`` (0: no noise).
    """

    singles_out = True  # its zero weights single clients out (strategies.base)

    def __init__(
        self,
        min_cluster_size: int | None = None,
        cluster_on: str = "models",
        noise_lambda: float = 0.001,
    ) -> None:
        check_real("flame", "noise_lambda", noise_lambda, at_least=0, finite=True)
        self.detectors = (FlameDetector(min_cluster_size=min_cluster_size, cluster_on=cluster_on),)
        self.noise_lambda = noise_lambda
        self.name = "flame"

    def __call__(
        self,
        updates: torch.Tensor,
        *,
        received: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        weights: torch.Tensor | None = None,
    ) -> Aggregate:
        """Aggregate the admitted ``updates`` ``(m, d)``; ``received`` ``(n, d)`` gives S;
        ``weights`` (example counts, ``strategy.weighting=examples``) weight the mean.

        ``generator`` draws the noise; None draws from torch's global generator.
        """
        bound = median_bound(updates, received, "flame")  # S, float64
        m = updates.shape[0]
        w = check_client_weights(weights, m)
        norms = row_norms(updates)  # shape: (m,)
        share = clipped_shares(norms, bound, w)  # shape: (m,)
        update = share.to(updates.dtype) @ updates  # shape: (d,)
        sigma = self.noise_lambda * float(bound)
        if sigma > 0:
            update = add_gaussian_noise(update, sigma, generator)
        return Aggregate(update=update, weights=share.to(updates.dtype))
