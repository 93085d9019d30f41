"""The AGR-tailored attack end to end on non-IID digits, against the rules it tailors itself to.

Setting: digits, 10 clients, bias 0.5 (Fang et al. / FLTrust's non-IID split), 20%
malicious (2 clients, every round), 3 rounds, seed 0. The margins quoted were measured at
seeds 0-4 (``python -m simulator ... seed=S``); see each test.
"""

from __future__ import annotations

import csv
from pathlib import Path

from simulator.main import simulate
from tests.conftest import compose_config

SETTING = ("num_clients=10", "num_rounds=3", "partition=bias", "malicious_fraction=0.2",
           "progress=false")  # fmt: skip


def _run(tmp_path: Path, *overrides: str) -> tuple[dict, list[dict[str, str]], list[dict]]:
    summary = simulate(compose_config(*SETTING, *overrides), tmp_path)
    with open(tmp_path / "rounds.csv", newline="") as handle:
        rounds = list(csv.DictReader(handle))
    with open(tmp_path / "clients.csv", newline="") as handle:
        clients = list(csv.DictReader(handle))
    return summary, rounds, clients


def _mean_accuracy(rounds: list[dict[str, str]]) -> float:
    """Test accuracy averaged over rounds 1..R: the damage over the whole run."""
    values = [float(r["test_accuracy"]) for r in rounds[1:]]
    return sum(values) / len(values)


def _malicious_weights(clients: list[dict]) -> list[float]:
    return [float(r["weight"]) for r in clients if r["malicious"] == "1"]


def test_tailored_hurts_fltrust_more_than_the_krum_and_trim_attacks(tmp_path: Path) -> None:
    # Cao et al. 2021, Table III: FLTrust's adaptive attack raises its error more than Fang's
    # Krum and trim attacks do. Fang's updates point against the benign direction, so
    # FLTrust's ReLU(cosine) gives them (almost) no trust; the tailored search keeps a
    # positive cosine while moving the aggregate: its rows get a share of 0.04-0.07 each
    # round (benign rows 0.06-0.17). Final accuracy, seed 0: tailored 0.598,
    # fang_krum and fang_trmean 0.624 (clean 0.718: under any attack FLTrust also loses the
    # two attackers' data); tailored below both at seeds 0-4 (margins 0.007-0.026), final
    # loss above both at every seed (margins 0.06-0.07).
    tailored, rounds, tailored_clients = _run(tmp_path / "t", "strategy=fltrust", "attack=tailored")
    assert [r["note"] for r in rounds[1:]] == ["", "", ""]  # the search ran (no failure)
    for attack in ("fang_krum", "fang_trmean"):
        fang, _, fang_clients = _run(tmp_path / attack, "strategy=fltrust", f"attack={attack}")
        assert max(_malicious_weights(fang_clients)) < 0.01, attack  # (almost) no trust
        assert tailored["final_accuracy"] < fang["final_accuracy"] - 0.01, attack
        assert tailored["final_loss"] > fang["final_loss"] + 0.03, attack
    assert min(_malicious_weights(tailored_clients)) > 0.03  # trusted every round


def test_tailored_lowers_robust_rules_accuracy_at_least_as_much_as_minmax(tmp_path: Path) -> None:
    # Both with their defaults (tailored: sign direction, gamma searched against the rule;
    # Min-Max: std perturbation, gamma bounded by the benign diameter). Accuracy averaged
    # over rounds 1-3, seed 0: Krum 0.156 vs 0.250, median 0.569 vs 0.684, trimmed mean
    # 0.558 vs 0.717; tailored lower at each of seeds 0-4 on each rule (with 5 rounds too).
    # Final accuracy alone is noisier: Krum's at seed 3 is 0.267 tailored vs 0.204 Min-Max.
    # On a Dirichlet(0.5) split Krum's ordering does not hold (see the report: tailored
    # 0.289 vs 0.291 mean over seeds, lower at 2 of 5).
    for rule in ("krum", "median", "trimmed_mean"):
        _, tailored, _ = _run(tmp_path / f"{rule}_t", f"strategy={rule}", "attack=tailored")
        _, minmax, _ = _run(tmp_path / f"{rule}_m", f"strategy={rule}", "attack=minmax")
        assert _mean_accuracy(tailored) < _mean_accuracy(minmax), rule
