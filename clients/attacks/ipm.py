"""Inner-product manipulation (Xie, Koyejo and Gupta, UAI 2019, "Fall of Empires")."""

from __future__ import annotations

import torch

from clients.attacks.basic import check_attack_args, repeat_rows
from clients.checks import check_real


def ipm(
    benign: torch.Tensor,
    num_malicious: int,
    num_clients: int,
    *,
    own: torch.Tensor | None = None,
    epsilon: float = 0.1,
) -> torch.Tensor:
    """Every malicious client sends ``-epsilon * mean(benign)``.

    The aggregate's inner product with the true mean gradient turns negative when the
    rule lets enough of it through. Small epsilon (0.1) keeps the update close to the
    benign cluster and defeats Krum; large values (e.g. 100) defeat median and trimmed
    mean. Mean computed in float64, returned in ``benign``'s dtype.

    Reference: Xie, Koyejo, Gupta, "Fall of Empires: Breaking Byzantine-tolerant SGD by
    Inner Product Manipulation", UAI 2019.

    Parameters
    ----------
    benign : torch.Tensor
        Shape ``(k, d)``, k >= 1. Not modified.
    num_malicious : int
        f, 0 <= f <= n.
    num_clients : int
        n, the clients aggregated this round.
    own : torch.Tensor | None (default: None)
        Accepted for the common signature; not used.
    epsilon : float (default: 0.1)
        Finite, > 0.

    Returns
    -------
    torch.Tensor
        Shape ``(f, d)``, identical rows, ``benign``'s dtype and device.
    """
    f = check_attack_args(benign, num_malicious, num_clients, own=own, min_rows=1)
    epsilon = check_real("epsilon", epsilon, above=0)
    mu = benign.to(torch.float64).mean(dim=0)  # shape: (d,)
    return repeat_rows(-epsilon * mu, f, benign)
