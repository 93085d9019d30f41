"""Properties every detector keeps over a run of rounds, state included.

A detector judges clients, not rows: the order in which a round's replies arrive must not
change who is flagged (its state is keyed by client id), it must not write into the
updates it reads, and a round of identical honest updates flags nobody (DnC excepted: it
removes c * f rows every round by design, so it is checked for that count instead).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies.dnc import DnCDetector
from strategies.flame import FlameDetector
from strategies.fldetector import FLDetector
from strategies.mean import fedavg
from strategies.pipeline import Defence, Outcome
from strategies.signguard import SignGuardDetector

N, D, ROUNDS, ATTACKERS = 10, 40, 8, (2, 7)
DETECTORS: dict[str, Callable[[], object]] = {
    "flame": FlameDetector,
    "dnc": DnCDetector,
    "signguard": SignGuardDetector,
    "fldetector": lambda: FLDetector(window=2),  # detects from round 4 of 8
}


def _defence(detector: object, f: int = len(ATTACKERS)) -> Defence:
    return Defence(
        fedavg,
        detect=(detector,),
        num_malicious=f,
        generator=lambda kind, server_round: torch.Generator().manual_seed(server_round),
    )


def _rounds(seed: int) -> list[torch.Tensor]:
    """Honest clients follow a shared direction, each with its own steady offset and a
    little noise (so each is predictable from its past, as FLDetector assumes); two
    attackers send the flipped direction, boosted by a factor drawn anew each round."""
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(D, generator=g, dtype=torch.float64)
    offsets = 0.3 * torch.randn(N, D, generator=g, dtype=torch.float64)
    rounds = []
    for _ in range(ROUNDS):
        x = direction + offsets + 0.01 * torch.randn(N, D, generator=g, dtype=torch.float64)
        boost = 5.0 + 5.0 * torch.rand(len(ATTACKERS), 1, generator=g, dtype=torch.float64)
        x[list(ATTACKERS)] = -boost * direction
        rounds.append(x)
    return rounds


def _run(
    defence: Defence, rounds: list[torch.Tensor], orders: list[torch.Tensor]
) -> list[tuple[Outcome, list[int]]]:
    """Each round's rows in the given order (client ids with them); the global model moves
    by each accepted step."""
    model = torch.zeros(D, dtype=torch.float64)
    outcomes = []
    for r, (x, order) in enumerate(zip(rounds, orders, strict=True), start=1):
        ids = order.tolist()
        rows = x[order]
        before = rows.clone()
        outcome = defence(rows, ids, server_round=r, num_examples=[1] * N, global_model=model)
        assert torch.equal(rows, before), "the detector wrote into the updates"
        if outcome.step is not None:
            model = model + outcome.step
        outcomes.append((outcome, ids))
    return outcomes


@pytest.mark.parametrize("name", list(DETECTORS))
@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_who_is_flagged_does_not_depend_on_reply_order(name: str, seed: int) -> None:
    rounds = _rounds(seed)
    g = torch.Generator().manual_seed(seed + 1)
    in_order = _run(_defence(DETECTORS[name]()), rounds, [torch.arange(N)] * ROUNDS)
    shuffled = _run(
        _defence(DETECTORS[name]()), rounds, [torch.randperm(N, generator=g) for _ in rounds]
    )
    for (a, ids_a), (b, ids_b) in zip(in_order, shuffled, strict=True):
        assert a.flagged == b.flagged
        assert (a.step is None) == (b.step is None)
        if a.step is not None:
            torch.testing.assert_close(a.step, b.step)
            weight_a = dict(zip(ids_a, a.weights.tolist(), strict=True))
            weight_b = dict(zip(ids_b, b.weights.tolist(), strict=True))
            assert weight_a == pytest.approx(weight_b)


@pytest.mark.parametrize("name", list(DETECTORS))
def test_the_attackers_of_the_stream_are_flagged(name: str) -> None:
    """The stream above is each detector's easy case: by the last round both attackers
    are flagged (FLDetector once its window fills; it keeps them out afterwards)."""
    outcomes = _run(_defence(DETECTORS[name]()), _rounds(0), [torch.arange(N)] * ROUNDS)
    last, _ = outcomes[-1]
    assert set(ATTACKERS) <= set(last.flagged), last.flagged


@pytest.mark.parametrize("name", list(DETECTORS))
def test_identical_honest_updates_are_not_flagged(name: str) -> None:
    v = torch.linspace(-1.0, 1.0, D, dtype=torch.float64)
    rounds = [v.expand(N, D).clone() for _ in range(ROUNDS)]
    f = 2
    outcomes = _run(_defence(DETECTORS[name](), f=f), rounds, [torch.arange(N)] * ROUNDS)
    for outcome, _ in outcomes:
        assert outcome.step is not None
        torch.testing.assert_close(outcome.step, v)  # the mean of what is left is v
        if name == "dnc":  # DnC removes c * f rows an iteration whatever they hold (rounding
            # breaks the ties of identical rows, so the iterations may remove different ones)
            assert f <= len(outcome.flagged) <= f * DnCDetector().iterations
        else:
            assert outcome.flagged == {}
