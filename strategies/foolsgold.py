"""FoolsGold (Fung, Yoon and Beschastnikh, RAID 2020): down-weight clients whose histories agree."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from strategies.base import Aggregate
from strategies.checks import check_real, check_updates
from strategies.state import StageState


def cosine_matrix(rows: torch.Tensor) -> torch.Tensor:
    """Cosine similarity between all rows, shape ``(n, n)``, from one Gram matrix, float64.

    ``cos(x, y) = x.y / (||x|| ||y||)``; a zero row has no direction, so its similarity to
    every row (itself included) is defined as 0. Values are clamped to ``[-1, 1]``. Rows
    of any finite size are fine: each is first scaled by a power of two (exact).
    """
    x = rows.to(torch.float64)
    # Rows with entries above 2^256 are scaled by a power of two near their largest entry:
    # exact (identical rows stay identical), leaves every cosine as it is, and keeps the
    # Gram finite (an attacker sending 1e154 would otherwise make every alpha NaN).
    largest = x.abs().amax(dim=1, keepdim=True)  # shape: (n, 1)
    if bool((largest > 2.0**256).any()):  # rare: squares could overflow
        x = torch.ldexp(x, -torch.frexp(largest).exponent.to(x.dtype))
    gram = x @ x.T  # shape: (n, n)
    sq_norms = gram.diagonal()
    # sqrt(||x||^2 ||y||^2), not ||x|| ||y||: exact for parallel rows, so cos(x, x) == 1
    denominator = (sq_norms[:, None] * sq_norms[None, :]).sqrt()
    cosine = torch.where(denominator > 0, gram / denominator.clamp_min(1e-300), 0.0)
    return cosine.clamp_(-1.0, 1.0)


def foolsgold_weights(histories: torch.Tensor, kappa: float = 1.0) -> torch.Tensor:
    """FoolsGold's learning rates alpha, shape ``(n,)`` in ``[0, 1]``, float64.

    Algorithm 1 of the paper on the clients' histories ``H`` (one row each):

    1. ``cs_ij = cos(H_i, H_j)`` (0 for a zero history), ``v_i = max_{j != i} cs_ij``.
    2. Pardoning: ``cs_ij <- cs_ij * v_i / v_j`` where ``v_j > v_i``.
    3. ``alpha_i = 1 - max_{j != i} cs_ij``, clipped to ``[0, 1]``; ``alpha <- alpha / max
       alpha`` (left at 0 if every alpha is 0); ``alpha_i = 0.99`` where ``alpha_i = 1``.
    4. ``alpha_i <- kappa (ln(alpha_i / (1 - alpha_i)) + 0.5)``, clipped to ``[0, 1]``
       (``alpha_i = 0`` gives ``ln 0 = -inf``, hence 0).

    ``v_i`` is taken as ``max(0, max_{j != i} cs_ij)``, as the authors' code does
    (``cs - I``, then the row maximum): it changes nothing in step 3 (a negative maximum
    gives ``alpha_i > 1``, clipped to 1), and in step 2 it keeps the factor ``v_i / v_j``
    in ``[0, 1)``; with a negative ``v_i`` the literal factor would be negative and turn a
    client's dissimilarity to everyone into similarity. A single history gets ``alpha = 1``.
    """
    cs = cosine_matrix(histories)  # shape: (n, n)
    cs.fill_diagonal_(0.0)  # so that the row maximum is max(0, max_{j != i} cs_ij)
    v = cs.max(dim=1).values  # shape: (n,), >= 0
    # pardon i towards j when j is the more sybil-like: factor v_i / v_j < 1 (v_j > v_i >= 0)
    larger = v[None, :] > v[:, None]
    pardon = torch.where(larger, v[:, None] / v[None, :].clamp_min(1e-300), 1.0)
    alpha = (1.0 - (cs * pardon).max(dim=1).values).clamp(0.0, 1.0)
    top = alpha.max()
    if top > 0:
        alpha = alpha / top
    alpha = torch.where(alpha == 1.0, torch.full_like(alpha, 0.99), alpha)
    # logit around 0.5; alpha = 0 gives -inf, clipped to 0 (kappa > 0: no 0 * inf)
    alpha = kappa * (torch.log(alpha / (1.0 - alpha)) + 0.5)
    return alpha.clamp(0.0, 1.0)


def foolsgold(
    updates: torch.Tensor, histories: torch.Tensor | None = None, kappa: float = 1.0
) -> Aggregate:
    """FoolsGold: the alpha-weighted mean of the updates, alpha from the clients' histories.

    Variant: Fung, Yoon and Beschastnikh, "The Limitations of Federated Learning in Sybil
    Settings", RAID 2020, Algorithm 1 (alpha as ``foolsgold_weights``), with confidence
    ``kappa = 1`` (the paper's and its code's value) and without the optional
    feature-importance weighting of the output layer. The paper applies
    ``sum_i alpha_i x_i``; we take ``sum_i alpha_i x_i / sum_i alpha_i`` so that the step
    has FedAvg's scale whatever the number of clients the rule trusts (the unnormalised
    sum grows with n and would move the model n times as far as FedAvg); the zero update
    if every alpha is 0.

    Why: sybils that pursue one goal send updates pointing the same way round after round,
    so their histories are far more similar to each other than honest clients' histories
    (which differ with their data); FoolsGold gives the most similar clients the smallest
    learning rate. Pardoning keeps an honest client that happens to resemble a sybil from
    being punished as hard as the sybils themselves.

    Breakdown: it is not a bound on a malicious share. A single attacker (no sybil to
    resemble) is not caught: its alpha is that of an honest client. Attackers that make
    their updates dissimilar (noise, orthogonal components, taking turns) evade it.
    Honest clients with similar data (IID partitions) look like sybils and are
    down-weighted; identical honest updates get alpha = 0: the property "identical inputs
    give that input" does NOT hold (n identical rows give the zero update).

    Weights: ``alpha / sum(alpha)`` (all zero if every alpha is 0): the exact share of each
    row, ``update == weights @ updates``; a client FoolsGold trusts not at all gets 0.

    Parameters
    ----------
    updates : torch.Tensor
        Shape ``(n, d)``, one flattened client update per row.
    histories : torch.Tensor | None (default: None)
        Shape ``(n, d)``: each client's summed updates over the rounds it took part in,
        this round's included; None: the updates themselves (a single round).
    kappa : float (default: 1.0)
        Confidence of the logit, finite and > 0.
    """
    check_updates(updates)
    n, d = updates.shape
    check_real("foolsgold", "kappa", kappa, above=0, finite=True)
    if histories is None:
        histories = updates
    elif not isinstance(histories, torch.Tensor) or histories.shape != (n, d):
        shape = tuple(histories.shape) if isinstance(histories, torch.Tensor) else histories
        raise ValueError(f"foolsgold needs histories of shape ({n}, {d}), got {shape}")
    alpha = foolsgold_weights(histories, kappa)  # shape: (n,), float64
    total = alpha.sum()
    share = alpha / total if total > 0 else alpha
    share = share.to(device=updates.device, dtype=updates.dtype)
    # shape: (d,)
    return Aggregate(update=share @ updates, weights=share)


class FoolsGold:
    """``foolsgold`` on the clients' summed updates, kept per client in the defence state.

    The stage the ``foolsgold`` strategy runs: each client's history ``H_i`` (the sum of its
    updates over the rounds it took part in, this round's included) is the per-client
    entry ``history``; the similarities are taken between the histories of this round's
    clients. A checkpoint keeps the histories (one d-vector per client seen, in the
    updates' dtype), so a resumed run continues from them.

    Parameters
    ----------
    kappa : float (default: 1.0)
        Confidence of the logit, finite and > 0 (the paper: 1).
    """

    singles_out = True  # its zero weights single clients out (strategies.base)

    def __init__(self, kappa: float = 1.0) -> None:
        check_real("foolsgold", "kappa", kappa, above=0, finite=True)
        self.kappa = kappa
        self.name = "foolsgold"

    def __call__(
        self, updates: torch.Tensor, *, client_ids: Sequence[int], state: StageState
    ) -> Aggregate:
        check_updates(updates)
        if len(client_ids) != updates.shape[0]:
            raise ValueError(
                f"foolsgold needs one client id per update, got {len(client_ids)} ids "
                f"for {updates.shape[0]} updates"
            )
        histories = torch.stack(
            [
                update if (past := state.get_client(client, "history")) is None
                else past.to(updates) + update
                for client, update in zip(client_ids, updates, strict=True)
            ]
        )  # fmt: skip  # shape: (n, d)
        result = foolsgold(updates, histories, kappa=self.kappa)
        for client, history in zip(client_ids, histories, strict=True):
            state.set_client(int(client), "history", history.detach())  # a fresh stack
        return result
