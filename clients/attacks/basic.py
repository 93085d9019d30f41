"""Simple model-poisoning attacks: sign flipping, scaling, Gaussian noise, non-finite updates.

Every attack in ``clients.attacks`` has one signature::

    attack(benign, num_malicious, num_clients, *, own=None, **params) -> torch.Tensor

``benign`` is the ``(k, d)`` matrix of benign updates the adversary knows: under partial
knowledge only its own clients' honest updates (then ``k = f``), under full knowledge all
benign updates of the round. ``own`` is the ``(f, d)`` matrix of the malicious clients' own
honest updates, in malicious-client order; attacks that act per client (sign flip, scaling)
use it, the others accept and ignore it. When ``own`` is None those per-client attacks take
``benign[:f]`` as the clients' own updates: right under partial knowledge, where the
adversary passes its own updates as ``benign``; under full knowledge pass ``own``. The result
has shape ``(num_malicious, d)`` in ``benign``'s dtype and device; inputs are never modified.
The contract's check and helpers live here (``check_attack_args``, ``own_updates``,
``repeat_rows``); the number checks are ``clients.checks``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from clients.checks import check_int, check_matrix, check_real

# What a colluding adversary sees: "partial", its own clients' honest updates; "full",
# every benign update of the round.
KNOWLEDGE = ("partial", "full")


def check_attack_args(
    benign: torch.Tensor,
    num_malicious: int,
    num_clients: int,
    *,
    own: torch.Tensor | None = None,
    min_rows: int = 0,
) -> int:
    """Validate the arguments every attack takes; return f as an int.

    Raises ``ValueError`` unless ``benign`` is a floating ``(k, d)`` tensor with
    ``k >= min_rows``, ``0 <= num_malicious <= num_clients`` (integers), and ``own`` is
    None or a floating ``(f, d)`` tensor.
    """
    check_matrix("benign", benign)
    if benign.shape[0] < min_rows:
        raise ValueError(f"benign has {benign.shape[0]} rows; this attack needs >= {min_rows}")
    f = check_int("num_malicious", num_malicious)
    n = check_int("num_clients", num_clients)
    if f > n:
        raise ValueError(f"num_malicious must be <= num_clients, got f={f}, n={n}")
    if own is not None:
        if not isinstance(own, torch.Tensor) or not own.is_floating_point():
            raise ValueError(f"own must be a floating torch.Tensor, got {own!r:.60}")
        if own.shape != (f, benign.shape[1]):
            raise ValueError(
                f"own must have shape (f, d) = ({f}, {benign.shape[1]}), got {tuple(own.shape)}"
            )
    return f


def own_updates(benign: torch.Tensor, own: torch.Tensor | None, num_malicious: int) -> torch.Tensor:
    """The malicious clients' own honest updates, ``(f, d)``, in ``benign``'s dtype and device.

    ``own`` when given, else ``benign[:f]`` (partial knowledge: the adversary's known benign
    updates are its own). ``ValueError`` when neither has f rows.
    """
    if own is not None:
        return own.to(dtype=benign.dtype, device=benign.device)
    if benign.shape[0] < num_malicious:
        raise ValueError(
            f"own is None and benign has {benign.shape[0]} rows < num_malicious={num_malicious}; "
            "pass own=(f, d) honest updates"
        )
    return benign[:num_malicious]


def repeat_rows(update: torch.Tensor, num_malicious: int, like: torch.Tensor) -> torch.Tensor:
    """``update`` (d,) as ``num_malicious`` independent rows in ``like``'s dtype and device."""
    row = update.to(dtype=like.dtype, device=like.device)
    return row.unsqueeze(0).repeat(num_malicious, 1)  # shape: (f, d)


def sign_flip(
    benign: torch.Tensor,
    num_malicious: int,
    num_clients: int,
    *,
    own: torch.Tensor | None = None,
    scale: float = 1.0,
) -> torch.Tensor:
    """Each malicious client sends minus ``scale`` times its own honest update.

    ``m_i = -scale * g_i`` with ``g_i`` client i's honest update (``own``, or ``benign[:f]``
    when ``own`` is None; see the module docstring). Needs no other client's update.

    Reference: REFERENCES.md, "Sign flipping".

    Parameters
    ----------
    benign : torch.Tensor
        Shape ``(k, d)``, the benign updates the adversary knows. Not modified.
    num_malicious : int
        f, 0 <= f <= n.
    num_clients : int
        n, the clients aggregated this round.
    own : torch.Tensor | None (default: None)
        Shape ``(f, d)``, the malicious clients' own honest updates.
    scale : float (default: 1.0)
        Finite.

    Returns
    -------
    torch.Tensor
        Shape ``(f, d)``, ``benign``'s dtype and device.
    """
    f = check_attack_args(benign, num_malicious, num_clients, own=own)
    scale = check_real("scale", scale)
    return own_updates(benign, own, f) * (-scale)


def scaling(
    benign: torch.Tensor,
    num_malicious: int,
    num_clients: int,
    *,
    own: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Each malicious client sends ``scale`` times its own honest update.

    ``m_i = scale * g_i``: the boost of model replacement (Bagdasaryan et al., AISTATS 2020)
    and of FLTrust's scaling attack, where ``scale`` is the number of clients (the default
    here: ``scale = n``). Combined with a backdoored ``own`` it is the scaled backdoor; with
    honest updates it inflates norms, which norm-based rules must catch.

    Reference: Bagdasaryan et al., "How To Backdoor Federated Learning", AISTATS 2020;
    Cao et al., "FLTrust", NDSS 2021 (scaling attack).

    Parameters
    ----------
    benign : torch.Tensor
        Shape ``(k, d)``. Not modified.
    num_malicious : int
        f, 0 <= f <= n.
    num_clients : int
        n, the clients aggregated this round.
    own : torch.Tensor | None (default: None)
        Shape ``(f, d)``, the malicious clients' own (honest or backdoored) updates;
        ``benign[:f]`` when None.
    scale : float | None (default: None)
        Finite boost factor; ``None`` means ``num_clients`` (FLTrust's choice).

    Returns
    -------
    torch.Tensor
        Shape ``(f, d)``, ``benign``'s dtype and device.
    """
    f = check_attack_args(benign, num_malicious, num_clients, own=own)
    boost = float(num_clients) if scale is None else check_real("scale", scale)
    return own_updates(benign, own, f) * boost


def _blanchard_noise(
    benign: torch.Tensor, shape: tuple[int, int], generator: torch.Generator, std, mean
) -> torch.Tensor:
    std = 200.0 if std is None else check_real("std", std, at_least=0)
    mean = 0.0 if mean is None else check_real("mean", mean)
    noise = torch.randn(shape, generator=generator, dtype=torch.float64, device=generator.device)
    return mean + std * noise


def _fang_noise(
    benign: torch.Tensor, shape: tuple[int, int], generator: torch.Generator, std, mean
) -> torch.Tensor:
    if std is not None or mean is not None:
        raise ValueError(
            "gaussian variant 'fang' takes mean and std from the benign updates; "
            f"got std={std!r}, mean={mean!r} (leave them None)"
        )
    if benign.shape[0] < 1:
        raise ValueError("gaussian variant 'fang' needs >= 1 benign update, got k=0")
    x = benign.to(torch.float64)
    mu = x.mean(dim=0)  # shape: (d,)
    sigma = x.std(dim=0, correction=0)  # population std, as ALIE's code
    noise = torch.randn(shape, generator=generator, dtype=torch.float64, device=generator.device)
    return mu + sigma * noise.to(x.device)


# name -> noise(benign, (f, d), generator, std, mean), float64
GAUSSIAN_VARIANTS: dict[str, Callable[..., torch.Tensor]] = {
    "blanchard": _blanchard_noise,
    "fang": _fang_noise,
}


def gaussian(
    benign: torch.Tensor,
    num_malicious: int,
    num_clients: int,
    *,
    own: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    variant: str = "blanchard",
    std: float | None = None,
    mean: float | None = None,
) -> torch.Tensor:
    """Each malicious client sends a Gaussian random vector.

    Variants (``GAUSSIAN_VARIANTS``):

    - ``"blanchard"`` (default): every coordinate i.i.d. ``N(mean, std^2)`` with
      ``mean = 0``, ``std = 200`` unless given (Blanchard et al., NeurIPS 2017). Uses no
      benign statistics.
    - ``"fang"``: coordinate j ``N(mu_j, sigma_j^2)`` with ``mu_j`` the mean and ``sigma_j``
      the population std (divisor k) of coordinate j over ``benign`` (Fang et al., USENIX
      Security 2020); ``std`` and ``mean`` must then be left None. Needs k >= 1.

    Draws are float64 standard normals on ``generator``'s device, so a seeded generator
    gives the same vectors for every input dtype and device; the result is then cast.
    Each malicious client gets its own draw.

    Parameters
    ----------
    benign : torch.Tensor
        Shape ``(k, d)``. Not modified.
    num_malicious : int
        f, 0 <= f <= n.
    num_clients : int
        n, the clients aggregated this round.
    own : torch.Tensor | None (default: None)
        Accepted for the common signature; not used.
    generator : torch.Generator
        Required: the only source of randomness.
    variant : str (default: "blanchard")
        A key of ``GAUSSIAN_VARIANTS``.
    std, mean : float | None (default: None)
        Blanchard's noise parameters (200 and 0 when None); must be None for ``"fang"``.

    Returns
    -------
    torch.Tensor
        Shape ``(f, d)``, ``benign``'s dtype and device.
    """
    f = check_attack_args(benign, num_malicious, num_clients, own=own)
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"gaussian needs generator=torch.Generator, got {generator!r}")
    if variant not in GAUSSIAN_VARIANTS:
        raise ValueError(
            f"unknown gaussian variant {variant!r}; valid: {sorted(GAUSSIAN_VARIANTS)}"
        )
    noise = GAUSSIAN_VARIANTS[variant](benign, (f, benign.shape[1]), generator, std, mean)
    return noise.to(dtype=benign.dtype, device=benign.device)


NON_FINITE_VALUES: dict[str, float] = {"nan": math.nan, "inf": math.inf}


def nan(
    benign: torch.Tensor,
    num_malicious: int,
    num_clients: int,
    *,
    own: torch.Tensor | None = None,
    value: str = "nan",
) -> torch.Tensor:
    """Each malicious client sends an update full of NaN (``value="nan"``) or +inf.

    Not an attack on a rule but on the server: it exercises the rejection of non-finite
    updates, which must be recorded, never crash a run, nor reach an aggregation rule.

    Parameters
    ----------
    benign : torch.Tensor
        Shape ``(k, d)``, used for d, dtype and device. Not modified.
    num_malicious : int
        f, 0 <= f <= n.
    num_clients : int
        n, the clients aggregated this round.
    own : torch.Tensor | None (default: None)
        Accepted for the common signature; not used.
    value : str (default: "nan")
        A key of ``NON_FINITE_VALUES``: ``"nan"`` or ``"inf"``.

    Returns
    -------
    torch.Tensor
        Shape ``(f, d)``, ``benign``'s dtype and device, every entry non-finite.
    """
    f = check_attack_args(benign, num_malicious, num_clients, own=own)
    if value not in NON_FINITE_VALUES:
        raise ValueError(f"unknown value {value!r}; valid: {sorted(NON_FINITE_VALUES)}")
    return torch.full(
        (f, benign.shape[1]), NON_FINITE_VALUES[value], dtype=benign.dtype, device=benign.device
    )
