"""FLTrust: trust bootstrapped from a server update on a clean root set (Cao et al., NDSS 2021)."""

from __future__ import annotations

import torch

from strategies.base import Aggregate, singles_out
from strategies.checks import check_updates, check_vector


@singles_out
def fltrust(updates: torch.Tensor, server_update: torch.Tensor) -> Aggregate:
    """Mean of the client updates rescaled to the server update's norm, weighted by trust.

    Variant: Cao, Fang, Liu and Gong, "FLTrust: Byzantine-robust Federated Learning via
    Trust Bootstrapping", NDSS 2021, with ``g0`` the server's own update
    from its root set (same global model, same local training)::

        TS_i  = ReLU(cos(g_i, g0))
        g_i'  = g_i * ||g0|| / ||g_i||
        g     = sum_i TS_i g_i' / sum_i TS_i

    Exact formula, no epsilon terms (the authors' code adds 1e-9 to each denominator):
    a zero-norm client update has no direction, so it gets trust 0; when every trust is 0
    (every update points away from ``g0``, or ``g0`` itself is zero) the result is the
    zero update, not a fallback mean, as in the paper. The global model then stays put.

    Why: an update's influence is bounded by its angle to ``g0`` and never by its size
    (rescaling removes boosting), so no number of malicious clients can push the result
    beyond norm ``||g0||`` or against ``g0``. There is no breakdown point in the
    classical sense: the guarantee rests on the root set being clean and representative.

    Parameters
    ----------
    updates : torch.Tensor
        Shape ``(n, d)``, one flattened client update per row.
    server_update : torch.Tensor
        Shape ``(d,)``, finite: ``g0``, the server's update from its root set.

    Returns
    -------
    Aggregate
        ``weights = TS / sum(TS)``, each client's share of the trust-weighted mean of the
        rescaled updates (sums to 1; all zero when every trust is 0). The coefficient of
        the raw update ``g_i`` in ``update`` is ``weights_i * ||g0|| / ||g_i||``.
    """
    check_updates(updates)
    d = updates.shape[1]
    check_vector("fltrust", "server_update", server_update, d)

    # Norms and dots in at least float32 (half-precision sums over d lose the sign of cos).
    work = torch.promote_types(updates.dtype, torch.float32)
    g0 = server_update.to(dtype=work, device=updates.device)
    rows = updates.to(work)
    g0_norm = torch.linalg.vector_norm(g0)
    norms = torch.linalg.vector_norm(rows, dim=1)  # shape: (n,)
    if g0_norm > 0:
        usable = norms > 0  # a zero update has no direction: trust 0
        safe_norms = torch.where(usable, norms, torch.ones_like(norms))
        cosine = torch.where(usable, (rows @ g0) / (safe_norms * g0_norm), 0.0)
        trust = cosine.clamp_min(0.0)  # ReLU, shape: (n,)
    else:  # no server direction: nothing can be trusted
        safe_norms = torch.ones_like(norms)
        trust = torch.zeros_like(norms)
    total = trust.sum()
    share = trust / total if total > 0 else trust  # all zero when nobody is trusted
    coef = share * g0_norm / safe_norms  # coefficient of the raw g_i, shape: (n,)
    # shape: (d,)
    update = coef.to(updates.dtype) @ updates
    return Aggregate(update=update, weights=share.to(updates.dtype))
