"""MPAF (Cao and Gong, CVPR Workshops 2022): fake clients drag the model to a base model."""

from __future__ import annotations

import torch

from clients.attacks.basic import check_attack_args, repeat_rows
from clients.checks import check_real

# The paper's scale: large, so that an update clipped to any norm bound is still as long
# as the bound allows, in the base model's direction.
PAPER_SCALE = 1e6


def _check_vector(name: str, x: object, d: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"{name} must be a floating torch.Tensor, got {type(x).__name__}")
    if tuple(x.shape) != (d,):
        raise ValueError(f"{name} must have shape (d,) = ({d},), got {tuple(x.shape)}")
    return x


def mpaf(
    benign: torch.Tensor,
    num_malicious: int,
    num_clients: int,
    *,
    global_model: torch.Tensor,
    base_model: torch.Tensor,
    own: torch.Tensor | None = None,
    scale: float | None = PAPER_SCALE,
    record: dict[str, float] | None = None,
) -> torch.Tensor:
    """Every malicious client sends ``scale * (base_model - global_model)``.

    ``m_i = lambda (w' - w_t)``: the update that points from the round's global model
    ``w_t`` to the attacker's base model ``w'`` (a random initialisation in the paper, of
    chance accuracy), scaled up by ``lambda``. Needs no benign update: it is the attack of
    fake clients, which hold no data (``benign`` may have 0 rows; only its width, dtype
    and device are used). Computed in float64, returned in ``benign``'s dtype.

    ``scale`` (lambda) defaults to the paper's 10^6, chosen with norm clipping in mind:
    clipped to any bound, the update still points at ``w'`` with the largest norm allowed.
    Against a plain mean it overshoots: with f of n rows, FedAvg moves the model to
    ``w_t + (lambda f / n)(w' - w_t)``, far beyond ``w'`` (its distance to ``w'`` grows by
    ``lambda f / n - 1`` each round, until the weights overflow and the replies are
    rejected); accuracy falls to chance either way. ``scale=None`` gives
    ``lambda = n / f``, the model-replacement scale (Bagdasaryan et al., AISTATS 2020),
    with which a plain mean lands on ``w'`` plus the honest clients' share of the step.
    Robust rules bound the pull per round whatever lambda is (a coordinate's median moves
    a few ranks); the drag builds up over rounds because the direction never changes.

    Reference: Cao and Gong, "MPAF: Model Poisoning Attacks to Federated Learning based
    on Fake Clients", CVPR Workshops 2022 (Eq. for the fake update; lambda = 10^6).

    Parameters
    ----------
    benign : torch.Tensor
        Shape ``(k, d)``, k >= 0; used for d, dtype and device only. Not modified.
    num_malicious : int
        f, 0 <= f <= n.
    num_clients : int
        n, the clients aggregated this round.
    global_model : torch.Tensor
        Shape ``(d,)``: the round's global model ``w_t``, flat. Not modified.
    base_model : torch.Tensor
        Shape ``(d,)``: the attacker's base model ``w'``, flat. Not modified.
    own : torch.Tensor | None (default: None)
        Accepted for the common signature; not used.
    scale : float | None (default: 1e6)
        lambda, finite, > 0; ``None`` means ``n / f``.
    record : dict | None (default: None)
        Filled with the effective parameters this call used (``scale``): what
        ``summary.json`` reports as the run's ``effective`` values.

    Returns
    -------
    torch.Tensor
        Shape ``(f, d)``, identical rows, ``benign``'s dtype and device.

    Examples
    --------
    >>> w, base = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0])
    >>> mpaf(torch.zeros(0, 2), 2, 10, global_model=w, base_model=base, scale=3.0)
    tensor([[-3.,  6.],
            [-3.,  6.]])
    """
    f = check_attack_args(benign, num_malicious, num_clients, own=own)
    d = benign.shape[1]
    w = _check_vector("global_model", global_model, d)
    base = _check_vector("base_model", base_model, d)
    # n / f when scale is None (f = 0: no row to craft, any lambda)
    lam = check_real("scale", scale, above=0) if scale is not None else num_clients / max(f, 1)
    if record is not None:
        record["scale"] = lam
    direction = base.to(torch.float64) - w.to(torch.float64)  # shape: (d,)
    return repeat_rows(lam * direction.to(benign.device), f, benign)
