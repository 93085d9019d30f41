"""Threat-model policies that decide what a colluding adversary can do each round.

- With full knowledge it sees this round's benign updates only: never a stale update of a
  client not sampled this round.
- A round without a sampled attacker calls no attack at all; rounds.csv says how many
  attackers were sampled, and the attack success rate is measured every round anyway.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import open_dict

from simulator.main import simulate
from tests.conftest import compose_config, rows_of

CALLS: list[tuple[int, int, int]] = []  # (benign rows seen, attackers, d) per call


def record(benign: torch.Tensor, num_malicious: int, num_clients: int) -> torch.Tensor:
    """A colluding attack that sends the benign mean, keeping what it was shown."""
    CALLS.append((benign.shape[0], num_malicious, benign.shape[1]))
    return benign.mean(dim=0, keepdim=True).expand(num_malicious, -1).clone()


def test_full_knowledge_is_this_rounds_benign_updates_only(tmp_path: Path) -> None:
    cfg = compose_config(
        "num_clients=10", "clients_per_round=4", "num_rounds=6", "progress=false",
        "malicious_fraction=0.2", "attack=backdoor",
    )  # fmt: skip
    with open_dict(cfg):
        cfg.attack = {"name": "record", "_target_": f"{__name__}.record", "_partial_": True,
                      "knowledge": "full", "start_round": 1, "stop_round": None,
                      "lifespan_threshold": 0.5}  # fmt: skip
    CALLS.clear()
    simulate(cfg, tmp_path)
    rounds = rows_of(tmp_path / "rounds.csv")[1:]
    attacked = [r for r in rounds if int(r["malicious_sampled"]) > 0]
    assert 0 < len(attacked) < len(rounds), "the seed must give rounds with and without"
    # one call per round with an attacker sampled, none otherwise; the adversary saw the
    # round's sampled benign clients and no one else
    expected = [
        (int(r["clients_trained"]) - int(r["malicious_sampled"]), int(r["malicious_sampled"]))
        for r in attacked
    ]
    # (the config check calls the attack on a small stand-in matrix before the run)
    calls = [(seen, bad) for seen, bad, d in CALLS if d > 8]
    assert calls == expected
    assert all(seen <= 4 - bad for seen, bad in calls)


def test_the_policies_are_stated_in_the_summary(tmp_path: Path) -> None:
    summary = simulate(compose_config("num_rounds=1", "progress=false"), tmp_path)
    policies = summary["threat_model"]["policies"]
    assert set(policies) == {"poisoned_examples", "knowledge", "not_sampled", "buffers", "window"}
    assert "once per run" in policies["poisoned_examples"]


def test_a_client_that_adds_poisoned_examples_claims_only_its_own(tmp_path: Path) -> None:
    """The edge-case attackers train on their data plus edge examples, but report their
    own example count: poisoning buys no extra weight where counts weight the mean."""
    cfg = compose_config("num_rounds=1", "progress=false", "attack=edge_case",
                         "malicious_fraction=0.3")  # fmt: skip
    simulate(cfg, tmp_path)
    clients = rows_of(tmp_path / "clients.csv")
    honest = [int(r["num_examples"]) for r in clients if r["malicious"] == "0"]
    malicious = [int(r["num_examples"]) for r in clients if r["malicious"] == "1"]
    assert malicious and max(malicious) <= max(honest)  # an IID split: all about 134
