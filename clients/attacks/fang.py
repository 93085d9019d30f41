"""Fang et al. (USENIX Security 2020): local model poisoning attacks on Krum and trimmed mean.

Every function here follows the attack contract of ``clients.attacks``::

    attack(benign, num_malicious, num_clients, *, own=None, **params) -> (num_malicious, d)

in update space (client weights minus global weights). ``knowledge="full"``: ``benign`` holds
all ``n - f`` benign updates of the round. ``knowledge="partial"``: the adversary knows only
the malicious clients' own honest updates, ``own`` (or ``benign`` when ``own`` is None).
Inputs are never modified; the result has ``benign``'s dtype and device; every random draw
comes from the ``generator`` keyword. ``num_malicious == 0`` returns an empty ``(0, d)``
tensor (after the inputs are checked), so a round that sampled no malicious client needs no
special case in the caller.

Reference: Fang, Cao, Jia, Gong, "Local Model Poisoning Attacks to Byzantine-Robust
Federated Learning", USENIX Security 2020 (arXiv:1911.11815).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from clients.attacks.basic import KNOWLEDGE, check_attack_args
from clients.checks import check_int, check_matrix, check_real
from strategies.base import Aggregate, pairwise_sq_distances
from strategies.krum import krum

# ---------------------------------------------------------------------------------------
# input checks (one-line ValueErrors naming the values)
# ---------------------------------------------------------------------------------------


def _check_finite(name: str, x: torch.Tensor) -> torch.Tensor:
    """``x``, a checked matrix, if it has a row, a column and only finite values: the
    formulas below take signs, extremes and norms of it, which NaN or no data leave
    undefined."""
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must have at least one row and one column, got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must be finite; it holds NaN or inf")
    return x


def _check_generator(generator: object, attack: str) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise ValueError(
            f"{attack} draws random values and needs generator=torch.Generator, got {generator!r}"
        )
    return generator


def _known_updates(
    benign: torch.Tensor,
    num_malicious: int,
    num_clients: int,
    own: torch.Tensor | None,
    knowledge: str,
) -> tuple[torch.Tensor, int, int]:
    """Validate the contract's arguments; return (the updates the adversary uses, f, n).

    Full knowledge: ``benign`` must hold exactly the ``n - f`` benign updates of the round.
    Partial knowledge: ``own`` when given, else ``benign``. ``own``, when given, must be
    ``(f, d)`` in either mode (full knowledge does not use it).
    """
    f = check_attack_args(benign, num_malicious, num_clients, own=own, min_rows=1)
    n = int(num_clients)
    _check_finite("benign", benign)
    if own is not None:
        _check_finite("own", own)
    if knowledge not in KNOWLEDGE:
        raise ValueError(f"knowledge must be one of {KNOWLEDGE}, got {knowledge!r}")
    if knowledge == "full":
        if benign.shape[0] != n - f:
            raise ValueError(
                f"full knowledge needs all n - f = {n - f} benign updates, "
                f"got benign with {benign.shape[0]} rows (n={n}, f={f})"
            )
        return benign, f, n
    return (benign if own is None else own), f, n


def _empty(benign: torch.Tensor) -> torch.Tensor:
    return benign.new_empty((0, benign.shape[1]))


# ---------------------------------------------------------------------------------------
# attack on Krum
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FangKrumSearch:
    """What the lambda search of ``fang_krum_search`` found.

    Attributes
    ----------
    updates : torch.Tensor
        Shape ``(f, d)``: the crafted updates ``-lam * s`` (row 0) and its ``f - 1``
        supporters (rows 1..f-1); what ``fang_krum`` returns.
    lam : float
        The lambda of row 0: the first of ``lam_init, lam_init/2, ...`` for which the check
        selected a crafted row, or, when none did, the last one tried.
    lam_init : float
        The start of the search, Theorem 1's bound (``fang_krum_lambda_bound``).
    selected : bool
        Whether the check selected a crafted row at ``lam``.
    num_tried : int
        How many lambdas were tried (``lam == lam_init / 2 ** (num_tried - 1)``).
    """

    updates: torch.Tensor
    lam: float
    lam_init: float
    selected: bool
    num_tried: int


def fang_krum_lambda_bound(known: torch.Tensor, num_malicious: int, num_clients: int) -> float:
    """Theorem 1's upper bound on lambda, the start of Fang's search against Krum.

    ``lam_init = sqrt( min_i sum_{j in N_i} ||g_i - g_j||^2 / ((n - 2f - 1) d) )
    + max_i ||g_i|| / sqrt(d)`` over the known benign updates ``g_i`` (update space, so the
    paper's ``D(w_i, w_Re)`` is ``||g_i||``), with ``N_i`` the ``q`` nearest other known
    updates, ``q = min(n - f - 2, k - 1)``. With full knowledge ``k = n - f`` and ``q`` is the
    paper's ``n - f - 2``; with partial knowledge (``k`` own updates, usually ``k = f``) fewer
    neighbours exist and all ``k - 1`` are summed. Needs ``n > 2f + 1``.

    Parameters
    ----------
    known : torch.Tensor
        Shape ``(k, d)``, the benign updates the adversary knows (finite). Not modified.
    num_malicious : int
        f.
    num_clients : int
        n, the clients aggregated this round (honest + malicious).

    Returns
    -------
    float
        ``lam_init >= 0``.
    """
    known = _check_finite("known", check_matrix("known", known))
    f = check_int("num_malicious", num_malicious)
    n = check_int("num_clients", num_clients)
    if n <= 2 * f + 1:
        raise ValueError(f"Fang's lambda bound needs n > 2f + 1, got n={n}, f={f}")
    k, d = known.shape
    q = min(n - f - 2, k - 1)
    x = known.to(torch.float64)
    if q >= 1:
        distances = pairwise_sq_distances(x)  # shape: (k, k), float64
        distances.fill_diagonal_(float("inf"))  # a row is never its own neighbour
        sums = distances.topk(q, dim=1, largest=False, sorted=False).values.sum(dim=1)
        min_sum = float(sums.min())
    else:  # a single known update has no neighbour: the first term is 0
        min_sum = 0.0
    max_norm = float(x.norm(dim=1).max())
    return math.sqrt(min_sum / ((n - 2 * f - 1) * d)) + max_norm / math.sqrt(d)


def _partial_told(rows: int, f: int) -> int:
    """The f the simulated Krum of partial knowledge is told: the largest ``f' <= f`` with
    ``rows > 2f' + 2`` (Krum told f would break its precondition on so few rows)."""
    told = min(f, (rows - 3) // 2)
    if told < 0:
        raise ValueError(
            f"partial-knowledge fang_krum simulates Krum on {rows} rows (f={f}); Krum needs >= 3"
        )
    return told


def _search_lambda(
    lam: float,
    threshold: float,
    check: Callable[[torch.Tensor], Aggregate],
    rows_for: Callable[[float], tuple[torch.Tensor, torch.Tensor]],
    num_known: int,
) -> tuple[float, bool, int]:
    """Halve ``lam`` until ``check`` selects a crafted row or the next halving would fall
    below ``threshold``; returns (lambda, selected, lambdas tried)."""
    tried = 0
    while True:
        tried += 1
        rows, crafted = rows_for(lam)
        selected = _crafted_selected(check(rows), crafted, num_known)
        if selected or lam / 2.0 < threshold:
            return lam, selected, tried
        lam /= 2.0


def _crafted_selected(result: Aggregate, crafted: torch.Tensor, num_known: int) -> bool:
    """Whether the check's result is a crafted row (rows ``num_known..`` of its input).

    With weights: every positive weight is on a crafted row (Krum: its one-hot weight).
    Without: the returned update equals a crafted row exactly.
    """
    if result.weights is not None:
        positive = result.weights > 0
        return bool(positive.any()) and not bool(positive[:num_known].any())
    return any(torch.equal(result.update, row) for row in crafted)


def fang_krum_search(
    benign: torch.Tensor,
    num_malicious: int,
    num_clients: int,
    *,
    own: torch.Tensor | None = None,
    knowledge: str = "full",
    epsilon: float = 0.01,
    threshold: float = 1e-5,
    aggregator: Callable[[torch.Tensor], Aggregate] | None = None,
    generator: torch.Generator | None = None,
) -> FangKrumSearch:
    """Fang's attack on Krum, with the details of its lambda search; see ``fang_krum``.

    Returns
    -------
    FangKrumSearch
        The crafted updates (``(f, d)``, ``benign``'s dtype and device) and the lambdas.
    """
    known, f, n = _known_updates(benign, num_malicious, num_clients, own, knowledge)
    epsilon = check_real("epsilon", epsilon, at_least=0)
    threshold = check_real("threshold", threshold, above=0)
    if aggregator is not None and not callable(aggregator):
        raise ValueError(f"aggregator must be callable, got {aggregator!r}")
    d = benign.shape[1]
    if f == 0:
        return FangKrumSearch(_empty(benign), lam=0.0, lam_init=0.0, selected=False, num_tried=0)
    # s: the sign of the estimated direction of change, in update space sign(mean update)
    s = torch.sign(known.to(torch.float64).mean(dim=0))  # shape: (d,)
    # The f - 1 supporters: w1 + noise_i, noise_i uniform in the ball of radius epsilon
    # (direction: a normalised standard normal; radius: epsilon * U^(1/d)). Drawn once,
    # before the search, so the draws do not depend on how many lambdas are tried.
    noise = torch.zeros((f - 1, d), dtype=torch.float64)  # shape: (f - 1, d)
    if f >= 2 and epsilon > 0.0:
        gen = _check_generator(generator, "fang_krum with f >= 2 and epsilon > 0")
        z = torch.randn((f - 1, d), generator=gen, dtype=torch.float64, device=gen.device)
        u = torch.rand((f - 1, 1), generator=gen, dtype=torch.float64, device=gen.device)
        noise = (z / z.norm(dim=1, keepdim=True) * (epsilon * u ** (1.0 / d))).cpu()
    s, noise = s.to(benign.device), noise.to(benign.device)
    known_rows = known.to(dtype=benign.dtype, device=benign.device)
    k = known_rows.shape[0]

    def supporters(lam: float) -> torch.Tensor:
        w1 = -lam * s  # shape: (d,)
        return torch.cat([w1[None, :], w1[None, :] + noise]).to(benign.dtype)  # (f, d)

    if knowledge == "full":
        # Equation 2: the server's Krum over the benign rows and the f crafted rows.
        lam = lam_init = fang_krum_lambda_bound(known, f, n)
        check = aggregator or functools.partial(krum, num_malicious=f)
        lam, selected, num_tried = _search_lambda(
            lam,
            threshold,
            check,
            lambda x: (torch.cat([known_rows, supporters(x)]), supporters(x)),
            k,
        )
        return FangKrumSearch(
            supporters(lam), lam=lam, lam_init=lam_init, selected=selected, num_tried=num_tried
        )
    # Equation 4: Krum over the k own updates and m copies of w1 (the paper's w2' = w1'),
    # m = 1 first, one more copy each time no lambda above the threshold is selected.
    num_tried, lam_init = 0, None
    for m in range(1, f + 1):
        rows = k + m
        told = _partial_told(rows, f)
        lam = fang_krum_lambda_bound(known, told, rows)  # Theorem 1 on the simulated Krum
        lam_init = lam if lam_init is None else lam_init
        check = aggregator or functools.partial(krum, num_malicious=told)

        def copies(x: float, m: int = m) -> tuple[torch.Tensor, torch.Tensor]:
            crafted = (-x * s).to(benign.dtype)[None, :].expand(m, -1)  # shape: (m, d)
            return torch.cat([known_rows, crafted]), crafted

        lam, selected, tried = _search_lambda(lam, threshold, check, copies, k)
        num_tried += tried
        if selected:
            break
    return FangKrumSearch(
        supporters(lam), lam=lam, lam_init=float(lam_init), selected=selected, num_tried=num_tried
    )


def fang_krum(
    benign: torch.Tensor,
    num_malicious: int,
    num_clients: int,
    *,
    own: torch.Tensor | None = None,
    knowledge: str = "full",
    epsilon: float = 0.01,
    threshold: float = 1e-5,
    aggregator: Callable[[torch.Tensor], Aggregate] | None = None,
    generator: torch.Generator | None = None,
    record: dict[str, float] | None = None,
) -> torch.Tensor:
    """Fang's attack on Krum: one update pushed against the benign direction, plus supporters.

    Formula (update space): ``s = sign(mean_i g_i)`` over the known benign updates; the main
    crafted update is ``w1 = -lam * s``; the other ``f - 1`` attackers send
    ``w1 + noise_i`` with ``noise_i`` uniform in the L2 ball of radius ``epsilon``
    (direction a normalised standard normal, radius ``epsilon * U^(1/d)``, ``U ~ U[0, 1)``;
    drawn once from ``generator``: first the normals ``(f - 1, d)``, then ``U`` ``(f - 1,)``).
    ``lam`` starts at Theorem 1's bound (``fang_krum_lambda_bound``) and is halved until the
    check, ``aggregator`` applied to the known benign rows followed by the ``f`` crafted rows,
    selects a crafted row (every positive weight on a crafted row; without weights, the
    returned update equals a crafted row), or until the next halving would fall below
    ``threshold`` (1e-5): then the last lambda tried (the smallest ``>= threshold``) is used,
    not selected. At least one lambda is always tried. ``fang_krum_search`` reports ``lam``.

    Variant. Full knowledge (the paper's default, its Equation 2): all ``n - f`` benign
    updates; the check is ``strategies.krum.krum(num_malicious=f)`` on ``n`` rows (the benign
    ones and the ``f`` crafted ones), the server's Krum. Partial knowledge (the paper's
    Equation 4 and the search after it): the malicious clients' own honest updates (``own``,
    or ``benign`` when ``own`` is None, ``k`` of them) stand in for the benign ones, in ``s``
    and in the check, which is Krum over the ``k`` own updates and ``m`` exact copies of
    ``w1``: ``m = 1`` first, and one more copy whenever no lambda down to ``threshold`` is
    selected (the paper adds ``w2' = w1'``, then more), up to ``m = f``. On ``k + m`` rows
    Krum told f would break its precondition ``rows > 2f + 2``, so the simulated Krum is told
    ``min(f, (k + m - 3) // 2)``, and each ``m``'s search starts at Theorem 1's bound for
    that simulated Krum (``fang_krum_lambda_bound`` with ``n = k + m`` and that f).
    ``epsilon = 0`` makes the supporters exact copies of ``w1`` and needs no generator.

    Breakdown: the attack wins Krum's selection when the benign updates are spread widely
    relative to their mean (noisy, non-IID clients); when they sit tightly around a mean far
    from zero, no lambda is selected and the result is the small-lambda fallback (an update
    near zero, ``selected`` False in ``fang_krum_search``). Krum needs ``n > 2f + 2``.

    Reference: Fang et al., USENIX Security 2020 (the attack on Krum and its Theorem 1);
    Blanchard et al., NeurIPS 2017 (Krum).

    Parameters
    ----------
    benign : torch.Tensor
        Shape ``(k, d)``; full knowledge: all ``k = n - f`` benign updates of the round.
    num_malicious : int
        f >= 0; f = 0 returns an empty ``(0, d)`` tensor.
    num_clients : int
        n, the clients aggregated this round (honest + malicious).
    own : torch.Tensor | None (default: None)
        Shape ``(f, d)``, the malicious clients' own honest updates (partial knowledge).
    knowledge : str (default: "full")
        ``"full"`` or ``"partial"``.
    epsilon : float (default: 0.01)
        Radius of the ball the supporters are drawn in, >= 0.
    threshold : float (default: 1e-5)
        The search stops before lambda falls below this, > 0.
    aggregator : Callable[[torch.Tensor], Aggregate] | None (default: None)
        The rule the check simulates, called on the stacked rows (full knowledge: the ``k``
        benign and ``f`` crafted ones; partial: the ``k`` own ones and ``m`` copies of
        ``w1``). Default: Krum told f (full), or told ``min(f, (k + m - 3) // 2)`` (partial).
    generator : torch.Generator | None (default: None)
        Source of the supporters' noise; required when ``f >= 2`` and ``epsilon > 0``.
    record : dict | None (default: None)
        Filled with the effective parameters this call used: ``lambda``, and ``selected``
        (1 when the simulated Krum chose a crafted row); ``summary.json`` reports them as
        the run's ``effective`` values.

    Returns
    -------
    torch.Tensor
        Shape ``(f, d)`` in ``benign``'s dtype and device: row 0 is ``-lam * s``.
    """
    found = fang_krum_search(
        benign,
        num_malicious,
        num_clients,
        own=own,
        knowledge=knowledge,
        epsilon=epsilon,
        threshold=threshold,
        aggregator=aggregator,
        generator=generator,
    )
    if record is not None:
        record.update({"lambda": found.lam, "selected": float(found.selected)})
    return found.updates


# ---------------------------------------------------------------------------------------
# attack on trimmed mean and median
# ---------------------------------------------------------------------------------------


def fang_trimmed_mean_intervals(
    benign: torch.Tensor,
    num_malicious: int,
    num_clients: int,
    *,
    own: torch.Tensor | None = None,
    knowledge: str = "full",
    b: float = 2.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-coordinate intervals ``[low_j, high_j]`` Fang's trimmed-mean attack draws from.

    Full knowledge, with ``s_j = sign(mean_i g_ij)`` and ``max_j``, ``min_j`` over the benign
    updates: ``s_j < 0``: ``[max_j, b max_j]`` if ``max_j > 0`` else ``[max_j, max_j / b]``;
    otherwise (``s_j >= 0``): ``[min_j / b, min_j]`` if ``min_j > 0`` else
    ``[b min_j, min_j]``. Partial knowledge, with ``mu_j`` and ``sigma_j`` (sample standard
    deviation, ``correction=1``; needs >= 2 known updates) of the known own updates and
    ``s_j = sign(mu_j)``: ``[mu_j + 3 sigma_j, mu_j + 4 sigma_j]`` if ``s_j < 0``, else
    ``[mu_j - 4 sigma_j, mu_j - 3 sigma_j]``.

    Returns
    -------
    tuple[torch.Tensor, torch.Tensor]
        ``(low, high)``, each shape ``(d,)``, float64, on ``benign``'s device.
    """
    known, _, _ = _known_updates(benign, num_malicious, num_clients, own, knowledge)
    b = check_real("b", b, at_least=1)
    x = known.to(torch.float64)
    if knowledge == "full":
        s = torch.sign(x.mean(dim=0))
        hi_val, lo_val = x.amax(dim=0), x.amin(dim=0)
        # s_j < 0: above the largest benign value; else: below the smallest
        up_low, up_high = hi_val, torch.where(hi_val > 0, b * hi_val, hi_val / b)
        down_low, down_high = torch.where(lo_val > 0, lo_val / b, b * lo_val), lo_val
    else:
        if x.shape[0] < 2:
            raise ValueError(
                f"partial-knowledge fang_trimmed_mean needs >= 2 known updates for sigma, "
                f"got {x.shape[0]}"
            )
        mu, sigma = x.mean(dim=0), x.std(dim=0, correction=1)
        s = torch.sign(mu)
        up_low, up_high = mu + 3.0 * sigma, mu + 4.0 * sigma
        down_low, down_high = mu - 4.0 * sigma, mu - 3.0 * sigma
    negative = s < 0
    low = torch.where(negative, up_low, down_low).to(benign.device)
    return low, torch.where(negative, up_high, down_high).to(benign.device)


def fang_trimmed_mean(
    benign: torch.Tensor,
    num_malicious: int,
    num_clients: int,
    *,
    own: torch.Tensor | None = None,
    knowledge: str = "full",
    b: float = 2.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fang's attack on trimmed mean and median: values just past the benign extremes.

    Formula: per coordinate j, every one of the f attackers draws independently and
    uniformly from ``[low_j, high_j]`` (``fang_trimmed_mean_intervals``): with full knowledge
    beyond the benign maximum when ``s_j = sign(mean_j) < 0`` (``[max_j, b max_j]`` or
    ``[max_j, max_j / b]``) and beyond the benign minimum otherwise (``[min_j / b, min_j]``
    or ``[b min_j, min_j]``), ``b = 2``; with partial knowledge ``mu_j + [3, 4] sigma_j``
    when ``s_j < 0`` and ``mu_j - [4, 3] sigma_j`` otherwise, from the malicious clients'
    own honest updates. ``value = low + U (high - low)``, ``U ~ U[0, 1)`` of shape
    ``(f, d)`` from ``generator`` (one draw, row-major), computed in float64 and kept inside
    ``[low, high]`` against rounding before the cast to ``benign``'s dtype.

    Variant: the paper's attack on trimmed mean, also used unchanged against the median, as
    in the paper. ``s_j = 0`` takes the ``s_j >= 0`` side, as REFERENCES.md writes it.

    Breakdown: every crafted value lies on the side opposite ``s_j``; a trimmed mean that
    trims ``k >= f`` per side discards them but, with them, ``f`` extra benign values on the
    ``s_j`` side are no longer the extremes, so the kept values and the result shift against
    ``s_j``; the median moves ``f/2`` order statistics against ``s_j``.

    Reference: Fang et al., USENIX Security 2020 (the attack on trimmed mean, reused on the
    median).

    Parameters
    ----------
    benign : torch.Tensor
        Shape ``(k, d)``; full knowledge: all ``k = n - f`` benign updates of the round.
    num_malicious : int
        f >= 0; f = 0 returns an empty ``(0, d)`` tensor.
    num_clients : int
        n, the clients aggregated this round (honest + malicious).
    own : torch.Tensor | None (default: None)
        Shape ``(f, d)``, the malicious clients' own honest updates (partial knowledge).
    knowledge : str (default: "full")
        ``"full"`` or ``"partial"``.
    b : float (default: 2.0)
        How far past the extreme the full-knowledge interval reaches, >= 1.
    generator : torch.Generator
        Required (also when f = 0, so a missing generator is caught on the first round).

    Returns
    -------
    torch.Tensor
        Shape ``(f, d)`` in ``benign``'s dtype and device.
    """
    low, high = fang_trimmed_mean_intervals(
        benign, num_malicious, num_clients, own=own, knowledge=knowledge, b=b
    )
    generator = _check_generator(generator, "fang_trimmed_mean")
    f = int(num_malicious)
    if f == 0:
        return _empty(benign)
    d = benign.shape[1]
    u = torch.rand((f, d), generator=generator, dtype=torch.float64, device=generator.device)
    u = u.to(benign.device)
    values = (low + u * (high - low)).clamp(min=low, max=high)  # shape: (f, d)
    # rounding to a narrower dtype is monotone, so the values stay in the rounded interval
    return values.to(benign.dtype)
