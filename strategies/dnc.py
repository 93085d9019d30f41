"""DnC, divide and conquer: spectral outlier removal on random coordinates (Shejwalkar and
Houmansadr, NDSS 2021)."""

from __future__ import annotations

import torch

from strategies.base import Aggregate
from strategies.checks import check_int, check_num_malicious, check_real, check_updates
from strategies.mean import fedavg


class DnCDetector:
    """DnC's filtering: flag the rows outside the intersection of the spectral good sets.

    Variant: Shejwalkar and Houmansadr, "Manipulating the Byzantine: Optimizing Model
    Poisoning Attacks and Defenses for Federated Learning", NDSS 2021, Algorithm 2::

        repeat `iterations` times:
            r     = b = min(subsample, d) coordinates drawn without replacement
            x     = updates[:, r] - mean_i updates[i, r]          (centred, float64)
            v     = top right singular vector of x
            s_i   = <x_i, v>^2
            good &= the floor(n - c f) rows with the lowest s     (c = filter_frac)
        flag every row outside `good`

    Defaults: ``iterations = 5`` (the authors' public code; the paper also shows 1),
    ``subsample = 10000`` (the paper's b), ``filter_frac = 1`` (the paper's c). The
    coordinates come from ``torch.randperm`` on ``generator``; ``floor(n - c f)`` is the
    count the public code keeps (``int(n - c f)``). Ties in s (a zero matrix) keep the
    lower row index (a stable sort); identical non-zero rows tie only up to the rounding of
    the matrix products, so each iteration may remove other ones. The singular vector's
    sign does not matter (the score is squared). ``c f = 0`` flags nobody and draws
    nothing. With n = 2 the centred rows are opposite, their scores tie exactly and the
    second row is the one removed.

    Why: a poisoning update has to move the mean, which puts it far out along the
    updates' top principal direction; random coordinates keep the SVD cheap and make
    the direction hard to predict. Breakdown: f is what the defence is told, and each
    iteration removes ``n - floor(n - c f)`` rows whether or not anyone attacks; the good
    set is the intersection of the iterations, so a round removes up to ``iterations``
    times that many, honest rows when nobody attacks (n = 20, f = 4, five iterations on
    i.i.d. honest updates: 10 to 15 of 20 removed). Attackers in excess of ``c f``, or
    whose deviation is spread across directions other than the top one, stay in. Needs
    ``c f <= n - 1`` (a row left): ``ValueError`` otherwise.

    Parameters
    ----------
    iterations : int (default: 5)
        niters, >= 1.
    subsample : int (default: 10000)
        b, coordinates per iteration (all of them when d is smaller), >= 1.
    filter_frac : float (default: 1.0)
        c >= 0, finite: each iteration keeps ``floor(n - c f)`` rows.
    """

    def __init__(self, iterations: int = 5, subsample: int = 10000, filter_frac: float = 1.0):
        check_int("dnc", "iterations", iterations, 1)
        check_int("dnc", "subsample", subsample, 1)
        check_real("dnc", "filter_frac", filter_frac, at_least=0, finite=True)
        self.iterations = iterations
        self.subsample = subsample
        self.filter_frac = filter_frac
        self.name = "dnc"

    def __call__(
        self,
        updates: torch.Tensor,
        *,
        num_malicious: int,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Flags, bool ``(n,)``: True outside the good set. ``generator`` draws the
        coordinates; None draws from torch's global generator."""
        check_updates(updates)
        f = check_num_malicious(num_malicious)
        n, d = updates.shape
        kept = int(n - self.filter_frac * f)
        if kept < 1:
            raise ValueError(
                f"dnc needs filter_frac * num_malicious <= n - 1 to keep a row, got "
                f"filter_frac={self.filter_frac}, num_malicious={f} with n={n}"
            )
        good = torch.ones(n, dtype=torch.bool, device=updates.device)
        if kept >= n:
            return ~good
        b = min(self.subsample, d)
        device = generator.device if generator is not None else torch.device("cpu")
        for _ in range(self.iterations):
            coordinates = torch.randperm(d, generator=generator, device=device)[:b]
            sub = updates[:, coordinates.to(updates.device)].to(torch.float64)  # shape: (n, b)
            centred = sub - sub.mean(dim=0)
            top = torch.linalg.svd(centred, full_matrices=False).Vh[0]  # shape: (b,)
            scores = (centred @ top).square()  # shape: (n,)
            lowest = torch.argsort(scores, stable=True)[:kept]
            chosen = torch.zeros_like(good)
            chosen[lowest] = True
            good &= chosen
        return ~good


class DnC:
    """DnC: ``DnCDetector``, then the mean of the good set (Algorithm 2's aggregate).

    The pipeline runs ``detectors`` first, so the call sees the good set only and returns
    its mean, weighted by example counts when ``weights`` is offered
    (``strategy.weighting=examples``), as ``fedavg``. Breakdown: as ``DnCDetector``.

    Parameters
    ----------
    iterations : int (default: 5)
        As ``DnCDetector``.
    subsample : int (default: 10000)
        As ``DnCDetector``.
    filter_frac : float (default: 1.0)
        As ``DnCDetector``.
    """

    singles_out = True  # its zero weights single clients out (strategies.base)

    def __init__(self, iterations: int = 5, subsample: int = 10000, filter_frac: float = 1.0):
        self.detectors = (
            DnCDetector(iterations=iterations, subsample=subsample, filter_frac=filter_frac),
        )
        self.name = "dnc"

    def __call__(self, updates: torch.Tensor, *, weights: torch.Tensor | None = None) -> Aggregate:
        return fedavg(updates, weights=weights)
