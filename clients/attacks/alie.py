"""A Little Is Enough (Baruch et al., NeurIPS 2019): shift every coordinate by z sigma."""

from __future__ import annotations

from statistics import NormalDist

import torch

from clients.attacks.basic import check_attack_args, repeat_rows
from clients.checks import check_int, check_real


def alie_z(num_clients: int, num_malicious: int) -> float:
    """The paper's z_max for n clients of which f are malicious.

    ``s = floor(n/2 + 1) - f`` (benign clients the attackers need on their side for a
    majority) and ``z = Phi^{-1}((n - f - s) / (n - f))``, Phi the standard normal CDF
    (computed with ``statistics.NormalDist().inv_cdf``). n=50, f=24 gives about 1.43;
    n=100, f=20 about 0.286. z < 0 where the argument is below 1/2 (few attackers).

    Reference: Baruch et al., "A Little Is Enough: Circumventing Defenses For Distributed
    Learning", NeurIPS 2019 (the attack's z_max).

    Parameters
    ----------
    num_clients : int
        n, the clients aggregated this round.
    num_malicious : int
        f, 0 <= f < n.

    Raises
    ------
    ValueError
        Where the CDF argument is not strictly inside (0, 1): ``f >= floor(n/2) + 1``
        (the attackers are a majority; s <= 0) or ``n <= 2``. Give ``z`` to ``alie`` then.
    """
    n = check_int("num_clients", num_clients)
    f = check_int("num_malicious", num_malicious)
    if n - f < 1:
        raise ValueError(f"alie_z needs at least one benign client, got n={n}, f={f}")
    s = n // 2 + 1 - f
    p = (n - f - s) / (n - f)
    if not 0.0 < p < 1.0:
        raise ValueError(
            f"alie_z needs 0 < (n-f-s)/(n-f) < 1, got {p:.4g} for n={n}, f={f}, s={s}; "
            "give z explicitly"
        )
    return NormalDist().inv_cdf(p)


def alie(
    benign: torch.Tensor,
    num_malicious: int,
    num_clients: int,
    *,
    own: torch.Tensor | None = None,
    z: float | None = None,
    record: dict[str, float] | None = None,
) -> torch.Tensor:
    """Every malicious client sends ``mu - z * sigma`` per coordinate.

    ``mu_j`` and ``sigma_j`` are the mean and the *population* standard deviation
    (divisor k, ``np.var(grads, axis=0) ** 0.5`` as in the paper's published code) of
    coordinate j over ``benign``: the attackers' own honest updates under partial knowledge
    (the paper's setting), all benign updates under full knowledge (many libraries).
    The paper subtracts (``mu - z sigma``); several libraries add. ``z = alie_z(n, f)``
    unless given (the paper's experiments also used a fixed z = 1.5).
    Computed in float64, returned in ``benign``'s dtype. With k = 1, sigma = 0 and every
    attacker sends that one update.

    Reference: Baruch et al., NeurIPS 2019.

    Parameters
    ----------
    benign : torch.Tensor
        Shape ``(k, d)``, k >= 1. Not modified.
    num_malicious : int
        f, 0 <= f <= n.
    num_clients : int
        n, the clients aggregated this round.
    own : torch.Tensor | None (default: None)
        Accepted for the common signature; not used (pass the own updates as ``benign`` for
        partial knowledge).
    z : float | None (default: None)
        Finite; ``None`` means ``alie_z(num_clients, num_malicious)``.
    record : dict | None (default: None)
        Filled with the effective parameters this call used (``z``): what ``summary.json``
        reports as the run's ``effective`` values.

    Returns
    -------
    torch.Tensor
        Shape ``(f, d)``, identical rows, ``benign``'s dtype and device.
    """
    f = check_attack_args(benign, num_malicious, num_clients, own=own, min_rows=1)
    z = alie_z(num_clients, f) if z is None else check_real("z", z)
    if record is not None:
        record["z"] = z
    x = benign.to(torch.float64)
    mu = x.mean(dim=0)  # shape: (d,)
    sigma = x.std(dim=0, correction=0)  # shape: (d,); population std
    return repeat_rows(mu - z * sigma, f, benign)
