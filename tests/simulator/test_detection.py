"""The detection phase end to end: flagged clients leave the round and are measured."""

from __future__ import annotations

import csv
from pathlib import Path

from omegaconf import open_dict

from simulator.main import simulate
from tests.conftest import compose_config

DETECTOR = "tests.strategies.test_pipeline.LargestNorm"  # flags the largest-norm rows
ATTACKED = ("strategy=median", "attack=sign_flip", "malicious_fraction=0.2", "num_rounds=3",
            "progress=false")  # fmt: skip


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_detector_in_front_of_the_median_flags_and_is_scored(tmp_path: Path) -> None:
    cfg = compose_config(*ATTACKED)
    with open_dict(cfg):
        cfg.detect = {"name": "largest_norm", "_target_": DETECTOR, "count": 2}
    summary = simulate(cfg, tmp_path)
    malicious = set(summary["threat_model"]["malicious_clients"])
    assert summary["detection"] == "largest_norm" and len(malicious) == 2

    rounds = _rows(tmp_path / "rounds.csv")[1:]
    # sign flipping with scale 4: the attackers' updates are the two largest
    assert [float(r["detection_precision"]) for r in rounds] == [1.0, 1.0, 1.0]
    assert [float(r["detection_recall"]) for r in rounds] == [1.0, 1.0, 1.0]
    assert [float(r["detection_fpr"]) for r in rounds] == [0.0, 0.0, 0.0]
    clients = _rows(tmp_path / "clients.csv")
    flagged = {(int(r["round"]), int(r["client"])) for r in clients if r["flagged"]}
    assert flagged == {(r, c) for r in (1, 2, 3) for c in malicious}
    assert all(r["flagged"] == "filtered: largest_norm" for r in clients if r["flagged"])
    assert all(r["weight"] == "" for r in clients)  # the median defines no shares

    without = tmp_path / "without"
    clean = simulate(compose_config(*ATTACKED), without)
    assert all(r["detection_precision"] == "" for r in _rows(without / "rounds.csv")[1:])
    assert clean["final_accuracy"] != summary["final_accuracy"]  # the round saw 8 rows, not 10


def test_false_alarms_are_measured_in_rounds_without_attackers(tmp_path: Path) -> None:
    """No attacker: precision and recall have nothing to count, the false-positive rate
    is the share of the (all benign) clients the detector flagged."""
    cfg = compose_config("strategy=median", "num_rounds=2", "progress=false")
    with open_dict(cfg):
        cfg.detect = {"name": "largest_norm", "_target_": DETECTOR, "count": 3}
    simulate(cfg, tmp_path)
    rounds = _rows(tmp_path / "rounds.csv")[1:]
    assert [r["detection_precision"] for r in rounds] == ["0.0", "0.0"]  # 3 flagged, none bad
    assert [r["detection_recall"] for r in rounds] == ["", ""]  # no attacker to find
    assert [float(r["detection_fpr"]) for r in rounds] == [0.3, 0.3]  # 3 of 10 benign
