"""AGR-tailored attack (Shejwalkar and Houmansadr, NDSS 2021, Section IV-A): the benign mean
pushed along a direction as far as the run's own defence lets it move the aggregate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from clients.attacks.basic import check_attack_args, repeat_rows
from clients.attacks.minmax import PERTURBATIONS, halving_search
from clients.checks import check_int, check_real
from strategies.base import Aggregate


def _alie(x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    # ALIE's mu - z sigma with the population std (Baruch et al.'s code); gamma is z.
    return -x.std(dim=0, correction=0)


def _ipm(x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    # IPM's -epsilon mu = mu + gamma (-mu) with gamma = 1 + epsilon.
    return -mu


# name -> p(benign float64 (k, d), mean (d,)) -> (d,); the crafted update is mean + gamma * p.
# unit, std and sign are the paper's (``minmax.PERTURBATIONS``); alie and ipm are the
# directions of those attacks, here with a searched scale instead of their fixed z or epsilon.
DIRECTIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    **PERTURBATIONS,
    "alie": _alie,
    "ipm": _ipm,
}


@dataclass(frozen=True)
class Verdict:
    """What the defence made of a round with the crafted rows in it, seen from those rows.

    Attributes
    ----------
    aggregate : torch.Tensor | None
        Shape ``(d,)``: the rule's output (before post-processing, so the server learning
        rate does not enter); None when the defence would keep the global model.
    weights : torch.Tensor | None
        Shape ``(f,)``: each crafted row's share in ``aggregate`` (0 when flagged), or None
        where the rule defines no share (median, trimmed mean, RLR).
    flagged : torch.Tensor
        Shape ``(f,)``, bool: the crafted rows a detector removed.
    """

    aggregate: torch.Tensor | None
    weights: torch.Tensor | None
    flagged: torch.Tensor

    @property
    def accepted(self) -> bool:
        """The crafted update is in the aggregate: the defence aggregates, and at least one
        crafted row is not flagged and (where the rule defines shares) has a share > 0.

        The crafted rows are one update repeated, so one of them counted is the update
        counted: Krum picks one of the identical rows; FLTrust gives them all trust
        ReLU(cos) or none. A rule without shares (median, trimmed mean) accepts every row
        it is given; there the search's second condition, a larger deviation, decides.
        """
        if self.aggregate is None:
            return False
        kept = ~self.flagged
        if not bool(kept.any()):
            return False
        return self.weights is None or bool((self.weights[kept] > 0).any())


Defend = Callable[[torch.Tensor], Verdict]


def defend_with(rule: Callable[[torch.Tensor], Any], benign: torch.Tensor) -> Defend:
    """A ``defend`` for a plain rule without detection: ``rule(cat([benign, crafted]))``.

    ``rule`` returns an ``Aggregate`` or a bare ``(d,)`` tensor (no shares); a rule's
    ``ValueError`` reads as "keeps the global model". For tests and for using ``tailored``
    outside a run (a run passes its own defence through ``simulator.adversary``).
    """
    k = benign.shape[0]

    def defend(crafted: torch.Tensor) -> Verdict:
        f = crafted.shape[0]
        none = torch.zeros(f, dtype=torch.bool)
        try:
            result = rule(torch.cat([benign, crafted.to(benign)]))
        except ValueError:
            return Verdict(aggregate=None, weights=None, flagged=none)
        if isinstance(result, Aggregate):
            weights = None if result.weights is None else result.weights[k:]
            return Verdict(aggregate=result.update, weights=weights, flagged=none)
        return Verdict(aggregate=result, weights=None, flagged=none)

    return defend


@dataclass(frozen=True)
class TailoredSearch:
    """What ``tailored_search`` found.

    Attributes
    ----------
    update : torch.Tensor
        Shape ``(d,)``, float64: ``mu + gamma p``, what every attacker sends.
    gamma : float
        The scale found; 0 when no tested gamma was accepted with a deviation above 0's.
    deviation : float
        ``||AGR(benign + crafted) - mu||`` at ``gamma``; -1 when ``gamma`` is 0 by default
        (no tested gamma was accepted).
    tested : int
        How many gammas were tried (calls of ``defend``).
    """

    update: torch.Tensor
    gamma: float
    deviation: float
    tested: int


def _check_direction(direction: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r}: must be one of {', '.join(DIRECTIONS)}")
    return DIRECTIONS[direction]


def tailored_search(
    benign: torch.Tensor,
    num_malicious: int,
    defend: Defend,
    *,
    direction: str = "sign",
    gamma_init: float = 10.0,
    tol: float = 1e-5,
    max_iter: int = 200,
) -> TailoredSearch:
    """The paper's halving search for gamma against ``defend``.

    ``halving_search`` (Algorithm 1, transcribed from the authors' code) with the oracle:
    gamma succeeds when ``defend(f copies of mu + gamma p)`` accepts the crafted update
    (``Verdict.accepted``) and moves the aggregate farther from ``mu`` than the best
    success so far, ``||AGR - mu|| > ||AGR(gamma_succ) - mu||``.

    The authors' code has one condition per rule: Krum and Multi-Krum succeed when they
    select the attackers (``our_attack_mkrum``), trimmed mean and median when the
    deviation exceeds that of the gamma tested just before (``our_attack_trmean``). The
    oracle here is both at once for any defence: acceptance is Krum's condition, and where
    every accepted gamma moves the aggregate farther the larger it is (Krum, Multi-Krum),
    the deviation test never fails; where every row is accepted (median, trimmed mean) it
    is the deviation test, compared with the best success rather than the last gamma tried,
    so a failure does not lower the bar.

    Parameters
    ----------
    benign : torch.Tensor
        Shape ``(k, d)``: the round's benign updates. Not modified.
    num_malicious : int
        f >= 1, the crafted rows ``defend`` is given.
    defend : Callable[[torch.Tensor], Verdict]
        The defence on the round with the ``(f, d)`` crafted rows in the attackers' places.
    direction, gamma_init, tol, max_iter
        As in ``tailored``.
    """
    p_of = _check_direction(direction)
    gamma_init = check_real("gamma_init", gamma_init, above=0)
    f = check_int("num_malicious", num_malicious, 1)
    x = benign.to(torch.float64)
    mu = x.mean(dim=0)  # shape: (d,)
    p = p_of(x, mu)  # shape: (d,)
    best = -1.0  # the deviation at the last success (gamma_succ)
    tested = 0

    def feasible(gamma: float) -> bool:
        nonlocal best, tested
        tested += 1
        crafted = (mu + gamma * p).to(benign.dtype).expand(f, -1)  # shape: (f, d)
        verdict = defend(crafted)
        if verdict.aggregate is None or not verdict.accepted:
            return False
        deviation = float(torch.linalg.vector_norm(verdict.aggregate.to(torch.float64) - mu))
        if not deviation > best:
            return False
        best = deviation
        return True

    gamma = halving_search(feasible, gamma_init=gamma_init, tol=tol, max_iter=max_iter)
    return TailoredSearch(update=mu + gamma * p, gamma=gamma, deviation=best, tested=tested)


def tailored(
    benign: torch.Tensor,
    num_malicious: int,
    num_clients: int,
    *,
    own: torch.Tensor | None = None,
    knowledge: str = "full",
    defend: Defend | None = None,
    direction: str = "sign",
    gamma_init: float = 10.0,
    tol: float = 1e-5,
    max_iter: int = 200,
    record: dict[str, float] | None = None,
) -> torch.Tensor:
    """Every malicious client sends ``mu + gamma p``, gamma searched to move the run's own
    defence's aggregate as far from the benign mean as the defence lets it.

    ``mu`` is the mean of the benign updates and ``p`` a direction (``direction``). gamma
    maximises ``||AGR(benign + f copies of mu + gamma p) - mu||`` subject to the defence
    accepting the crafted update, by the paper's halving search from ``gamma_init``
    (``tailored_search``). ``AGR`` is the whole defence of the run, detection,
    pre-aggregation and rule with its state, called without keeping state through
    ``defend`` (``simulator.adversary`` builds it from ``Defence.preview``, with the
    generators the round will use: the adversary knows the server's randomness). "Accepted"
    means the crafted update has a part in the aggregate (``Verdict.accepted``): not
    flagged by detection, a share > 0 under a rule with shares (Krum's selection,
    FLTrust's trust), any row under median and trimmed mean.

    Directions (``DIRECTIONS``): ``unit`` ``-mu/||mu||``, ``std`` ``-sigma`` (sample std per
    coordinate, as the authors' code), ``sign`` ``-sign(mu)`` (the paper's three); ``alie``
    ``-sigma`` with the population std, so gamma is ALIE's z (Baruch et al. 2019), and
    ``ipm`` ``-mu``, so gamma is 1 + IPM's epsilon (Xie et al. 2019): their attacks with an
    optimised scale, as other libraries ship them. Defaults: ``gamma_init=10``,
    ``tol=1e-5`` (the authors' code, ``lamda`` and ``threshold_diff``).
    ``direction="sign"``: on non-IID digits (bias 0.5, 2 attackers of 10) it hurt median
    and trimmed mean as much as any direction and FLTrust most; ``unit`` (the authors'
    code's default) and ``ipm`` hurt Krum most but cannot hurt FLTrust: ``mu + gamma p`` is
    a positive multiple of mu up to gamma = ||mu||, which FLTrust rescales to its own norm,
    and beyond it has a negative cosine, so no trust.

    Needs full knowledge: the search runs the defence on the round's benign updates. It
    breaks down where no gamma in ``(0, 2 gamma_init)`` is accepted with a deviation above
    the first success (a defence that flags everything off the benign cloud): the attackers
    then send ``mu``, the benign mean. Each tested gamma costs one run of the defence
    (about ``log2(gamma_init / tol)``, 21 for the defaults).

    Reference: Shejwalkar and Houmansadr, "Manipulating the Byzantine: Optimizing Model
    Poisoning Attacks and Defenses for Federated Learning", NDSS 2021 (AGR-tailored,
    Section IV-A); code: github.com/vrt1shjwlkr/NDSS21-Model-Poisoning.

    Parameters
    ----------
    benign : torch.Tensor
        Shape ``(k, d)``, k >= 1 (k >= 2 for ``std``): the round's benign updates. Not
        modified.
    num_malicious : int
        f, 0 <= f <= n.
    num_clients : int
        n, the clients aggregated this round.
    own : torch.Tensor | None (default: None)
        Accepted for the common signature; not used.
    knowledge : str (default: "full")
        Must be ``"full"``.
    defend : Callable[[torch.Tensor], Verdict] | None (default: None)
        The defence on the round with ``(f, d)`` crafted rows in the attackers' places
        (``defend_with`` for a plain rule). Required; a run passes its own.
    direction : str (default: "sign")
        A key of ``DIRECTIONS``.
    gamma_init : float (default: 10.0)
        > 0; the search covers ``[0, 2 gamma_init)``.
    tol : float (default: 1e-5)
        > 0, the search's stopping tolerance.
    max_iter : int (default: 200)
        >= 1, a cap on the search's calls of ``defend``.
    record : dict | None (default: None)
        Filled with the effective parameters this call used (``gamma``): what ``summary.json``
        reports as the run's ``effective`` values.

    Returns
    -------
    torch.Tensor
        Shape ``(f, d)``, identical rows ``mu + gamma p``, ``benign``'s dtype and device.
    """
    f = check_attack_args(benign, num_malicious, num_clients, own=own, min_rows=1)
    _check_direction(direction)
    check_real("gamma_init", gamma_init, above=0)
    check_real("tol", tol, above=0)
    check_int("max_iter", max_iter, 1)
    if knowledge != "full":
        raise ValueError(
            f"knowledge={knowledge!r}: tailored needs full knowledge (its search runs the "
            "defence on the round's benign updates)"
        )
    if defend is None:
        raise ValueError("tailored needs defend=, the defence to search against")
    if f == 0:
        return benign.new_empty((0, benign.shape[1]))
    found = tailored_search(
        benign, f, defend, direction=direction, gamma_init=gamma_init, tol=tol, max_iter=max_iter
    )
    if record is not None:
        record["gamma"] = found.gamma
    return repeat_rows(found.update, f, benign)
