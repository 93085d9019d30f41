"""Min-Max and Min-Sum (Shejwalkar and Houmansadr, NDSS 2021): the AGR-agnostic attacks."""

from __future__ import annotations

from collections.abc import Callable

import torch

from clients.attacks.basic import check_attack_args, repeat_rows
from clients.checks import check_int, check_real


def _unit(x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    norm = torch.linalg.vector_norm(mu)
    if norm == 0:  # no direction to oppose: the crafted update stays the mean
        return torch.zeros_like(mu)
    return -mu / norm


def _std(x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    if x.shape[0] < 2:
        raise ValueError(f"perturbation 'std' needs >= 2 benign updates, got k={x.shape[0]}")
    return -x.std(dim=0, correction=1)  # sample std (torch.std), as the paper's code


def _sign(x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    return -torch.sign(mu)


# name -> p(benign float64 (k, d), mean (d,)) -> (d,); the crafted update is mean + gamma * p
PERTURBATIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "unit": _unit,
    "std": _std,
    "sign": _sign,
}


def halving_search(
    feasible: Callable[[float], bool],
    *,
    gamma_init: float = 10.0,
    tol: float = 1e-5,
    max_iter: int = 200,
) -> float:
    """The largest gamma found feasible by the paper's halving search.

    Transcribed from the authors' code (``our_attack_dist`` / ``our_attack_score`` in
    github.com/vrt1shjwlkr/NDSS21-Model-Poisoning; Algorithm 1 of the paper)::

        gamma <- gamma_init; step <- gamma_init; gamma_succ <- 0
        while |gamma_succ - gamma| > tol:
            if feasible(gamma): gamma_succ <- gamma; gamma <- gamma + step / 2
            else:               gamma <- gamma - step / 2
            step <- step / 2
        return gamma_succ

    (``lamda``, ``lamda_fail`` and ``lamda_succ`` there.) Each tested gamma is the midpoint
    of a bracket of width ``2 step``, starting at ``(0, 2 gamma_init)``, so the result lies
    in ``[0, 2 gamma_init)``. Where the feasible set is an interval ``[0, gamma*]`` (it is
    for both conditions here) the result is within ``2 tol`` below ``gamma*``, and
    ``result + 2 tol`` is infeasible unless the search reached its upper end
    (``result > 2 gamma_init - 2 tol``). 0 when nothing tested was feasible. Stops after
    ``max_iter`` tests even if the tolerance is not met (about ``log2(gamma_init / tol)``
    are needed: 20 for the defaults).

    A transcription that starts with ``step <- gamma_init / 2`` moves by a quarter first and
    confines gamma to ``(gamma_init / 2, 3 gamma_init / 2)``: it could never return a gamma
    below ``gamma_init / 2`` and would spin until ``max_iter``. We follow the code.

    Parameters
    ----------
    feasible : Callable[[float], bool]
        The oracle: does the update crafted with this gamma pass the condition?
    gamma_init : float (default: 10.0)
        Finite, > 0.
    tol : float (default: 1e-5)
        Finite, > 0.
    max_iter : int (default: 200)
        >= 1, the most oracle calls.
    """
    gamma = check_real("gamma_init", gamma_init, above=0)
    tol = check_real("tol", tol, above=0)
    max_iter = check_int("max_iter", max_iter, 1)
    step = gamma
    gamma_succ = 0.0
    for _ in range(max_iter):
        if abs(gamma_succ - gamma) <= tol:
            break
        if feasible(gamma):
            gamma_succ = gamma
            gamma = gamma + step / 2
        else:
            gamma = gamma - step / 2
        step = step / 2
    return gamma_succ


def _minmax_oracle(
    sq_to_mean: torch.Tensor, cross: torch.Tensor, p_sq: float, pair_sq: torch.Tensor
) -> Callable[[float], bool]:
    # max_i ||crafted - b_i||^2 <= max_{i,j} ||b_i - b_j||^2 (squares: same order)
    bound = float(pair_sq.max())

    def feasible(gamma: float) -> bool:
        return float((sq_to_mean - 2.0 * gamma * cross + gamma * gamma * p_sq).max()) <= bound

    return feasible


def _minsum_oracle(
    sq_to_mean: torch.Tensor, cross: torch.Tensor, p_sq: float, pair_sq: torch.Tensor
) -> Callable[[float], bool]:
    # sum_i ||crafted - b_i||^2 <= max_i sum_j ||b_i - b_j||^2
    bound = float(pair_sq.sum(dim=1).max())
    k = sq_to_mean.shape[0]
    base, lin = float(sq_to_mean.sum()), float(cross.sum())

    def feasible(gamma: float) -> bool:
        return base - 2.0 * gamma * lin + k * gamma * gamma * p_sq <= bound

    return feasible


ORACLES = {"min-max": _minmax_oracle, "min-sum": _minsum_oracle}


def _search(
    benign: torch.Tensor,
    condition: str,
    perturbation: str,
    gamma_init: float,
    tol: float,
    max_iter: int,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(mean, p, gamma) in float64 for ``condition``, a key of ``ORACLES``."""
    if perturbation not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {perturbation!r}; valid: {sorted(PERTURBATIONS)}")
    x = benign.to(torch.float64)
    mu = x.mean(dim=0)  # shape: (d,)
    p = PERTURBATIONS[perturbation](x, mu)  # shape: (d,)
    centered = x - mu  # shape: (k, d); row i is b_i - mu
    # Everything from one Gram matrix of the centred rows and one product with p:
    # ||b_i - b_j||^2 = G_ii + G_jj - 2 G_ij and, with crafted = mu + gamma p,
    # ||crafted - b_i||^2 = G_ii - 2 gamma (b_i - mu).p + gamma^2 ||p||^2.
    gram = centered @ centered.T  # shape: (k, k)
    sq_to_mean = gram.diagonal()  # shape: (k,)
    pair_sq = (sq_to_mean[:, None] + sq_to_mean[None, :] - 2.0 * gram).clamp_min(0.0)
    pair_sq.fill_diagonal_(0.0)
    cross = centered @ p  # shape: (k,)
    p_sq = float(p @ p)
    oracle = ORACLES[condition](sq_to_mean, cross, p_sq, pair_sq)
    gamma = halving_search(oracle, gamma_init=gamma_init, tol=tol, max_iter=max_iter)
    return mu, p, gamma


def minmax_gamma(
    benign: torch.Tensor,
    *,
    perturbation: str = "unit",
    gamma_init: float = 10.0,
    tol: float = 1e-5,
    max_iter: int = 200,
) -> float:
    """The gamma ``minmax`` uses: ``halving_search`` under the Min-Max condition.

    ``max_i ||mu + gamma p - b_i|| <= max_{i,j} ||b_i - b_j||`` over the k benign updates.
    The left side is convex in gamma and holds at gamma = 0 (the mean is no farther from a
    benign update than the farthest other one), so the feasible set is ``[0, gamma*]``.

    Parameters
    ----------
    benign : torch.Tensor
        Shape ``(k, d)``, k >= 1. Not modified.
    perturbation, gamma_init, tol, max_iter
        As in ``minmax``.
    """
    _check_benign(benign)
    return _search(benign, "min-max", perturbation, gamma_init, tol, max_iter)[2]


def minsum_gamma(
    benign: torch.Tensor,
    *,
    perturbation: str = "unit",
    gamma_init: float = 10.0,
    tol: float = 1e-5,
    max_iter: int = 200,
) -> float:
    """The gamma ``minsum`` uses: ``halving_search`` under the Min-Sum condition.

    ``sum_i ||mu + gamma p - b_i||^2 <= max_i sum_j ||b_i - b_j||^2``. The left side is
    ``sum_i ||mu - b_i||^2 + k gamma^2 ||p||^2`` (the cross term vanishes about the mean),
    at gamma = 0 half the average right-hand sum, so the feasible set is ``[0, gamma*]``.

    Parameters
    ----------
    benign : torch.Tensor
        Shape ``(k, d)``, k >= 1. Not modified.
    perturbation, gamma_init, tol, max_iter
        As in ``minsum``.
    """
    _check_benign(benign)
    return _search(benign, "min-sum", perturbation, gamma_init, tol, max_iter)[2]


def _check_benign(benign: torch.Tensor) -> None:
    check_attack_args(benign, 0, 0, min_rows=1)


def minmax(
    benign: torch.Tensor,
    num_malicious: int,
    num_clients: int,
    *,
    own: torch.Tensor | None = None,
    perturbation: str = "unit",
    gamma_init: float = 10.0,
    tol: float = 1e-5,
    max_iter: int = 200,
    record: dict[str, float] | None = None,
) -> torch.Tensor:
    """Every malicious client sends ``mu + gamma p``, no farther from any benign update than
    the two farthest benign updates are from each other.

    ``mu`` is the mean of ``benign``; gamma is the largest value ``halving_search`` finds
    with ``max_i ||mu + gamma p - b_i|| <= max_{i,j} ||b_i - b_j||`` (``minmax_gamma``).
    Distances come from one Gram matrix of the centred benign updates, in float64; the
    search costs O(k) per step. Agnostic of the aggregation rule: the crafted update hides
    inside the benign cloud's diameter, so distance-based rules (Krum, Bulyan) keep it.

    Reference: Shejwalkar and Houmansadr, "Manipulating the Byzantine: Optimizing Model
    Poisoning Attacks and Defenses for Federated Learning", NDSS 2021 (Min-Max, Algorithm 1);
    code: github.com/vrt1shjwlkr/NDSS21-Model-Poisoning.

    Parameters
    ----------
    benign : torch.Tensor
        Shape ``(k, d)``, k >= 1 (k >= 2 for ``perturbation="std"``). Not modified; NaN or
        inf there gives a non-finite result, which the server rejects.
    num_malicious : int
        f, 0 <= f <= n.
    num_clients : int
        n, the clients aggregated this round.
    own : torch.Tensor | None (default: None)
        Accepted for the common signature; not used.
    perturbation : str (default: "unit")
        A key of ``PERTURBATIONS``: ``"unit"`` (``p = -mu / ||mu||``, 0 when mu = 0),
        ``"std"`` (``p = -sigma``, the sample std per coordinate, as ``torch.std`` in the
        paper's code) or ``"sign"`` (``p = -sign(mu)``).
    gamma_init : float (default: 10.0)
        > 0; the search covers ``[0, 2 gamma_init)``.
    tol : float (default: 1e-5)
        > 0, the search's stopping tolerance.
    max_iter : int (default: 200)
        >= 1, a cap on the search's oracle calls.
    record : dict | None (default: None)
        Filled with the effective parameters this call used (``gamma``): what ``summary.json``
        reports as the run's ``effective`` values.

    Returns
    -------
    torch.Tensor
        Shape ``(f, d)``, identical rows ``mu + gamma p``, ``benign``'s dtype and device.
    """
    f = check_attack_args(benign, num_malicious, num_clients, own=own, min_rows=1)
    mu, p, gamma = _search(benign, "min-max", perturbation, gamma_init, tol, max_iter)
    if record is not None:
        record["gamma"] = gamma
    return repeat_rows(mu + gamma * p, f, benign)


def minsum(
    benign: torch.Tensor,
    num_malicious: int,
    num_clients: int,
    *,
    own: torch.Tensor | None = None,
    perturbation: str = "unit",
    gamma_init: float = 10.0,
    tol: float = 1e-5,
    max_iter: int = 200,
    record: dict[str, float] | None = None,
) -> torch.Tensor:
    """Every malicious client sends ``mu + gamma p``, whose summed squared distance to the
    benign updates is no larger than that of the most outlying benign update.

    gamma is the largest value ``halving_search`` finds with
    ``sum_i ||mu + gamma p - b_i||^2 <= max_i sum_j ||b_i - b_j||^2`` (``minsum_gamma``).
    REFERENCES.md bounds by the largest benign sum; the authors' published code
    (``our_attack_score``) compares with the smallest (``min_score``), a stricter, smaller
    gamma. We follow REFERENCES.md. Distances from one Gram matrix, in float64.

    Reference: Shejwalkar and Houmansadr, NDSS 2021 (Min-Sum, Algorithm 1).

    Parameters
    ----------
    benign : torch.Tensor
        Shape ``(k, d)``, k >= 1 (k >= 2 for ``perturbation="std"``). Not modified; NaN or
        inf there gives a non-finite result, which the server rejects.
    num_malicious : int
        f, 0 <= f <= n.
    num_clients : int
        n, the clients aggregated this round.
    own : torch.Tensor | None (default: None)
        Accepted for the common signature; not used.
    perturbation : str (default: "unit")
        A key of ``PERTURBATIONS``: ``"unit"`` (``p = -mu / ||mu||``, 0 when mu = 0),
        ``"std"`` (``p = -sigma``, the sample std per coordinate, as ``torch.std`` in the
        paper's code) or ``"sign"`` (``p = -sign(mu)``).
    gamma_init : float (default: 10.0)
        > 0; the search covers ``[0, 2 gamma_init)``.
    tol : float (default: 1e-5)
        > 0, the search's stopping tolerance.
    max_iter : int (default: 200)
        >= 1, a cap on the search's oracle calls.
    record : dict | None (default: None)
        Filled with the effective parameters this call used (``gamma``): what ``summary.json``
        reports as the run's ``effective`` values.

    Returns
    -------
    torch.Tensor
        Shape ``(f, d)``, identical rows ``mu + gamma p``, ``benign``'s dtype and device.
    """
    f = check_attack_args(benign, num_malicious, num_clients, own=own, min_rows=1)
    mu, p, gamma = _search(benign, "min-sum", perturbation, gamma_init, tol, max_iter)
    if record is not None:
        record["gamma"] = gamma
    return repeat_rows(mu + gamma * p, f, benign)
