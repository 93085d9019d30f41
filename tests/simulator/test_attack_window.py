"""The attack window (attack.start_round / attack.stop_round) and the backdoor lifespan.

Attackers attack only inside the window and train honestly outside it; the attack success
rate is measured every round; summary.json records how many rounds a backdoor outlived
its attack (BackFed's lifespan)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator.config import ConfigError
from simulator.main import simulate
from simulator.preflight import check_point
from simulator.results import backdoor_lifespan
from tests.conftest import compose_config, rows_of

WINDOW = ("num_clients=10", "num_rounds=4", "progress=false", "attack.start_round=2",
          "attack.stop_round=3")  # fmt: skip


def _norms(out: Path, malicious: set[int]) -> dict[int, float]:
    """The attackers' largest update norm and the honest clients' largest, by round."""
    ratio = {}
    for r in range(1, 5):
        rows = [row for row in rows_of(out / "clients.csv") if int(row["round"]) == r]
        bad = max(float(x["update_norm"]) for x in rows if int(x["client"]) in malicious)
        good = max(float(x["update_norm"]) for x in rows if int(x["client"]) not in malicious)
        ratio[r] = bad / good
    return ratio


@pytest.mark.parametrize(
    "attack",
    [("attack=backdoor", "attack.boost=10"), ("attack=sign_flip", "attack.scale=10")],
    ids=["client-side", "adversary"],
)
def test_attackers_attack_only_inside_the_window(tmp_path: Path, attack: tuple) -> None:
    summary = simulate(compose_config(*WINDOW, *attack, "malicious_fraction=0.2"), tmp_path)
    malicious = set(summary["threat_model"]["malicious_clients"])
    assert summary["threat_model"]["start_round"] == 2
    assert summary["threat_model"]["stop_round"] == 3
    ratio = _norms(tmp_path, malicious)
    # inside the window the boosted / scaled update is several times an honest one (10x
    # when the model is settled; honest updates grow after a boosted round)
    assert ratio[2] > 3 and ratio[3] > 3, ratio
    assert ratio[1] < 2 and ratio[4] < 2, ratio
    rounds = rows_of(tmp_path / "rounds.csv")[1:]
    assert [int(r["malicious_sampled"]) for r in rounds] == [2, 2, 2, 2]


def test_success_is_measured_every_round_and_the_lifespan_recorded(tmp_path: Path) -> None:
    cfg = compose_config(
        "num_clients=10", "num_rounds=6", "progress=false", "attack=backdoor",
        "attack.boost=10", "malicious_fraction=0.1", "attack.stop_round=2",
        "attack.lifespan_threshold=0.99",
    )  # fmt: skip
    summary = simulate(cfg, tmp_path)
    rates = [r["attack_success_rate"] for r in rows_of(tmp_path / "rounds.csv")]
    assert all(rate != "" for rate in rates)  # before, inside and after the window
    recorded = json.loads((tmp_path / "summary.json").read_text())["backdoor_lifespan"]
    assert recorded == summary["backdoor_lifespan"]
    expected = backdoor_lifespan(
        [{"round": i, "attack_success_rate": float(v)} for i, v in enumerate(rates)], 2, 0.99
    )
    assert recorded == expected and recorded["stop_round"] == 2


def test_lifespan_known_values() -> None:
    rounds = [{"round": r, "attack_success_rate": a} for r, a in
              enumerate([0.1, 0.9, 1.0, 0.8, 0.6, 0.4, 0.7])]  # fmt: skip
    # stopped after round 2: 0.8 (3), 0.6 (4), 0.4 (5) < 0.5 -> 5 - 2 = 3 rounds
    assert backdoor_lifespan(rounds, 2, 0.5) == {
        "stop_round": 2, "threshold": 0.5, "implanted": True, "rounds": 3, "at_least": None,
    }  # fmt: skip
    # never below 0.3 after the stop: at least 6 - 2 = 4 rounds
    assert backdoor_lifespan(rounds, 2, 0.3)["at_least"] == 4
    assert backdoor_lifespan(rounds, None, 0.5) is None  # no stop: no lifespan
    # below 0.95 already when stopped after round 3 (0.8): never implanted, no lifespan
    never = backdoor_lifespan(rounds, 3, 0.95)
    assert never is not None and never["implanted"] is False and never["rounds"] is None
    assert backdoor_lifespan(rounds, 6, 0.5) is None  # no round after the stop


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["attack.start_round=5", "attack.stop_round=3"],
         "attack.stop_round=3: the window ends before it starts (attack.start_round=5)"),
        (["attack.start_round=20"], "attack.start_round=20: after the last round"),
        (["attack.start_round=0"], "attack.start_round=0: must be an integer >= 1"),
        (["attack.lifespan_threshold=1.5"], "attack.lifespan_threshold=1.5: must be a number"),
    ],
)  # fmt: skip
def test_bad_windows_are_refused_before_the_run(overrides: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_point(["attack=backdoor", "malicious_fraction=0.1", *overrides])
    assert str(info.value).startswith(expected), str(info.value)


def test_outside_the_window_detection_counts_every_client_as_benign(tmp_path: Path) -> None:
    cfg = compose_config(*WINDOW, "attack=sign_flip", "attack.scale=10",
                         "malicious_fraction=0.2", "detect=dnc")  # fmt: skip
    simulate(cfg, tmp_path)
    rounds = rows_of(tmp_path / "rounds.csv")[1:]
    # nobody attacks in rounds 1 and 4: no recall to measure, DnC's flags are false alarms
    assert [r["detection_recall"] for r in (rounds[0], rounds[3])] == ["", ""]
    assert all(float(r["detection_fpr"]) > 0 for r in (rounds[0], rounds[3]))
    # inside the window the two attackers are found
    assert [float(r["detection_recall"]) for r in rounds[1:3]] == [1.0, 1.0]
    assert [int(r["malicious_sampled"]) for r in rounds] == [2, 2, 2, 2]
