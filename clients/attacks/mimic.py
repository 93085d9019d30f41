"""Mimic (Karimireddy, He and Jaggi, ICLR 2022): every attacker copies one honest update."""

from __future__ import annotations

import torch

from clients.attacks.basic import check_attack_args, repeat_rows
from clients.checks import check_int

_CONVERGED = 1e-12  # change of the normalised projections below which the iteration stops


def mimic_choice(benign: torch.Tensor, *, power_iterations: int = 100) -> int:
    """i* = argmax_i <b_i - mu, z>, z the top principal direction of the rows of ``benign``.

    z is the power iteration ``z <- C^T C z / ||C^T C z||`` on the centred rows ``C = B -
    mu`` ``(k, d)``, started at the centred row of largest norm, run in the row space:
    with ``a = C z`` (the rows' projections on z), one step is ``a <- G a / ||G a||``, G =
    ``C C^T`` the ``(k, k)`` Gram matrix, so each step costs O(k^2) after one O(k^2 d)
    product, and i* is the argmax of ``a`` (z itself is never formed). Stops after
    ``power_iterations`` steps or once ``a`` changes by less than 1e-12. In float64; ties go
    to the first row. The start fixes z's sign, the side of the spread the attackers join:
    that of the most outlying honest update. All rows equal (or k = 1): row 0.

    Parameters
    ----------
    benign : torch.Tensor
        Shape ``(k, d)``, k >= 1. Not modified.
    power_iterations : int (default: 100)
        >= 1, the most power-iteration steps.
    """
    check_attack_args(benign, 0, 0, min_rows=1)
    steps = check_int("power_iterations", power_iterations, 1)
    x = benign.to(torch.float64)
    centred = x - x.mean(dim=0)  # shape: (k, d)
    gram = centred @ centred.T  # shape: (k, k)
    a = gram[:, int(gram.diagonal().argmax())]  # shape: (k,); C z_0, z_0 the largest row
    norm = torch.linalg.vector_norm(a)
    if norm == 0:  # no spread: every row is the mean
        return 0
    a = a / norm
    for _ in range(steps):
        nxt = gram @ a  # shape: (k,); C (C^T a), the projections after one step
        size = torch.linalg.vector_norm(nxt)  # > 0 in exact arithmetic: a is in G's range
        if size == 0:
            break
        nxt = nxt / size
        converged = float(torch.linalg.vector_norm(nxt - a)) < _CONVERGED
        a = nxt
        if converged:
            break
    return int(a.argmax())


def mimic(
    benign: torch.Tensor,
    num_malicious: int,
    num_clients: int,
    *,
    own: torch.Tensor | None = None,
    power_iterations: int = 100,
) -> torch.Tensor:
    """Every malicious client sends ``b_{i*}``, the honest update farthest along the honest
    updates' top principal direction.

    ``i* = argmax_i <b_i - mu, z>`` (``mimic_choice``), mu the mean of ``benign``, z the
    top eigenvector of their covariance. Every crafted row is an honest update, so no
    rule can tell it from one; repeating it f times over-weights that client's data and
    under-weights the rest, a bias that grows with heterogeneity (the paper's non-IID
    setting). It breaks down with IID data (the honest updates barely differ) and under
    rules that already discard one side of the spread.

    The paper estimates mu and z online, averaged over a warm-up of rounds (one power
    step per round from a fixed random start), then keeps mimicking the same client; here
    both come from each round's updates alone (power iteration to convergence), so the
    client mimicked may change from round to round. Full knowledge (the default,
    ``conf/attack/mimic.yaml``) is the paper's omniscient attacker; with partial knowledge
    the attackers mimic one of their own clients' honest updates (one attacker: its own).

    Reference: Karimireddy, He, Jaggi, "Byzantine-Robust Learning on Heterogeneous Datasets
    via Bucketing", ICLR 2022 (the mimic attack); code:
    github.com/epfml/byzantine-robust-noniid-optimizer.

    Parameters
    ----------
    benign : torch.Tensor
        Shape ``(k, d)``, k >= 1. Not modified.
    num_malicious : int
        f, 0 <= f <= n.
    num_clients : int
        n, the clients aggregated this round.
    own : torch.Tensor | None (default: None)
        Accepted for the common signature; not used (partial knowledge passes the own
        updates as ``benign``).
    power_iterations : int (default: 100)
        >= 1, the most power-iteration steps (``mimic_choice``).

    Returns
    -------
    torch.Tensor
        Shape ``(f, d)``, copies of ``benign[i*]``, ``benign``'s dtype and device.
    """
    f = check_attack_args(benign, num_malicious, num_clients, own=own, min_rows=1)
    chosen = mimic_choice(benign, power_iterations=power_iterations)
    return repeat_rows(benign[chosen], f, benign)
