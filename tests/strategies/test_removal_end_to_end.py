"""DnC and SignGuard remove sign-flipping and scaled attackers on digits, where FedAvg
collapses: 3 of 10 clients attack for 5 rounds; each defence in both forms (the paper's
strategy and the detector in front of FedAvg). One FedAvg run per attack serves both."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import rows_of, simulate_each

BASE = ("malicious_fraction=0.3", "num_clients=10", "num_rounds=5", "progress=false")
RUNS = {
    ("sign_flip", "fedavg"): ("attack=sign_flip", "strategy=fedavg"),
    ("scaling", "fedavg"): ("attack=scaling", "strategy=fedavg"),
    ("sign_flip", "dnc"): ("attack=sign_flip", "strategy=dnc"),
    ("scaling", "detect=dnc"): ("attack=scaling", "detect=dnc", "strategy=fedavg"),
    ("sign_flip", "detect=signguard"): (
        "attack=sign_flip", "detect=signguard", "strategy=fedavg",
    ),
    ("scaling", "signguard"): ("attack=scaling", "strategy=signguard"),
}  # fmt: skip

Runs = dict[tuple[str, str], tuple[dict, Path]]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    return simulate_each(tmp_path_factory, BASE, RUNS)


@pytest.mark.parametrize(
    ("attack", "defence"), [key for key in RUNS if key[1] != "fedavg"], ids="-".join
)
def test_the_attackers_are_removed_and_accuracy_kept(runs: Runs, attack: str, defence: str) -> None:
    fedavg, _ = runs[(attack, "fedavg")]
    summary, out = runs[(attack, defence)]
    assert fedavg["final_accuracy"] < 0.5
    assert summary["final_accuracy"] > 0.85
    rounds = rows_of(out / "rounds.csv")[1:]
    # every attacker is flagged every round
    assert [float(r["detection_recall"]) for r in rounds] == [1.0] * 5
    if "dnc" in defence:  # f = 3 told, 3 attackers: exactly the attackers are removed
        assert [float(r["detection_precision"]) for r in rounds] == [1.0] * 5
    # (SignGuard's sign clusters also take a few honest rows: precision below 1)
