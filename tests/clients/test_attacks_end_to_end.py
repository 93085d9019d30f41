"""Attacks end to end on digits: they hurt FedAvg, and the robust rules answer them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from simulator.main import simulate
from tests.conftest import compose_config

BASE = ("num_clients=10", "num_rounds=5", "progress=false")


def _run(tmp_path: Path, *overrides: str) -> tuple[dict, list[dict[str, str]]]:
    summary = simulate(compose_config(*BASE, *overrides), tmp_path)
    with open(tmp_path / "rounds.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return summary, rows


def test_sign_flip_at_20_percent_breaks_fedavg_but_not_median(tmp_path: Path) -> None:
    clean, _ = _run(tmp_path / "clean", "strategy=fedavg")
    fedavg, _ = _run(tmp_path / "fedavg", "attack=sign_flip", "malicious_fraction=0.2")
    median, _ = _run(tmp_path / "median", "attack=sign_flip", "malicious_fraction=0.2",
                     "strategy=median")  # fmt: skip
    assert fedavg["final_accuracy"] < 0.5 * clean["final_accuracy"]
    assert median["final_accuracy"] > 0.8


def test_boosted_backdoor_succeeds_on_fedavg_and_fails_on_fltrust(tmp_path: Path) -> None:
    # One attacker of ten boosting by the number of clients: model replacement.
    attack = ("attack=backdoor", "malicious_fraction=0.1", "attack.poison.boost=10",
              "num_rounds=8")  # fmt: skip
    fedavg, _ = _run(tmp_path / "fedavg", *attack)
    fltrust, _ = _run(tmp_path / "fltrust", *attack, "strategy=fltrust")
    norm_bound, _ = _run(tmp_path / "nb", *attack, "strategy=norm_bound")
    assert fedavg["final_attack_success_rate"] > 0.5
    assert fltrust["final_attack_success_rate"] < 0.2
    assert norm_bound["final_attack_success_rate"] < 0.2


def test_malicious_set_is_recorded_and_fixed_across_rounds(tmp_path: Path) -> None:
    summary, rows = _run(tmp_path, "attack=sign_flip", "malicious_fraction=0.3",
                         "strategy=krum")  # fmt: skip
    malicious = summary["threat_model"]["malicious_clients"]
    assert len(malicious) == 3
    assert summary["threat_model"]["knowledge"] == "partial"
    stored = json.loads((tmp_path / "summary.json").read_text())
    assert stored["threat_model"]["malicious_clients"] == malicious
    with open(tmp_path / "clients.csv", newline="") as handle:
        flags = {(int(r["client"]), int(r["malicious"])) for r in csv.DictReader(handle)}
    assert {c for c, m in flags if m} == set(malicious)
    assert all(int(r["malicious_sampled"]) == 3 for r in rows[1:])
    # Krum picks one honest update, so every malicious client is flagged: recall 1.
    assert all(float(r["detection_recall"]) == 1.0 for r in rows[1:])


def test_nonfinite_updates_are_rejected_on_every_rule(tmp_path: Path) -> None:
    for rule in ("fedavg", "median", "krum", "fltrust"):
        summary, rows = _run(tmp_path / rule, "attack=nonfinite", "malicious_fraction=0.2",
                             f"strategy={rule}", "num_rounds=2")  # fmt: skip
        assert all(int(r["rejected"]) == 2 for r in rows[1:]), rule
        assert summary["final_accuracy"] > 0.5, rule


@pytest.mark.parametrize(
    "attack", ["alie", "ipm", "minmax", "minsum", "gaussian", "scaling", "label_flip"]
)
def test_every_attack_runs_end_to_end(tmp_path: Path, attack: str) -> None:
    summary, rows = _run(tmp_path, f"attack={attack}", "malicious_fraction=0.2",
                         "strategy=median", "num_rounds=2")  # fmt: skip
    assert summary["threat_model"]["attack"] == attack
    assert summary["final_accuracy"] is not None
    assert all(int(r["malicious_sampled"]) == 2 for r in rows[1:])


def test_fang_attacks_run_against_their_rules(tmp_path: Path) -> None:
    krum, _ = _run(tmp_path / "k", "attack=fang_krum", "malicious_fraction=0.2",
                   "strategy=krum", "num_rounds=2")  # fmt: skip
    trmean, _ = _run(tmp_path / "t", "attack=fang_trmean", "malicious_fraction=0.2",
                     "strategy=trimmed_mean", "num_rounds=2")  # fmt: skip
    assert krum["final_accuracy"] is not None and trmean["final_accuracy"] is not None


def test_targeted_label_flip_records_attack_success_rate(tmp_path: Path) -> None:
    summary, rows = _run(tmp_path, "attack=label_flip", "attack.poison.source=1",
                         "attack.poison.target=7", "malicious_fraction=0.3")  # fmt: skip
    rates = [float(r["attack_success_rate"]) for r in rows]
    assert all(0.0 <= r <= 1.0 for r in rates)
    assert summary["final_attack_success_rate"] == rates[-1]
