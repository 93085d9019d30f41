"""The threat model: the malicious set, the rounding rule, f told, the adversary's view."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from simulator.adversary import Adversary
from simulator.threat import SITES, ThreatModel, count_for, malicious_clients
from tests.conftest import compose_config


@pytest.mark.parametrize(
    ("fraction", "n", "expected"),
    [(0.0, 10, 0), (0.2, 10, 2), (0.25, 10, 3), (0.15, 10, 2), (0.3, 10, 3), (0.2, 100, 20),
     (0.24, 50, 12), (0.49, 3, 1)],
)  # fmt: skip
def test_count_rounds_half_up(fraction: float, n: int, expected: int) -> None:
    assert count_for(fraction, n) == expected


def _threat(**changes: object) -> ThreatModel:
    settings = dict(
        seed=3, num_clients=50, clients_per_round=20, malicious_fraction=0.2,
        num_malicious_told=None, attack="alie", site="adversary", knowledge=None,
        parameters={"z": None},
    )  # fmt: skip
    settings.update(changes)
    return ThreatModel.build(**settings)  # type: ignore[arg-type]


def test_defence_is_told_the_configured_f_or_the_expected_count_per_round() -> None:
    assert _threat().num_malicious_told == 4  # 0.2 of the 20 sampled per round
    assert _threat(num_malicious_told=7).num_malicious_told == 7
    assert _threat().num_malicious == 10  # 0.2 of all 50 clients


def test_malicious_set_is_fixed_by_the_seed() -> None:
    first = malicious_clients(3, 50, 10)
    assert first == malicious_clients(3, 50, 10)
    assert len(set(first)) == 10 and all(0 <= c < 50 for c in first)
    assert list(first) == sorted(first)
    assert malicious_clients(4, 50, 10) != first
    assert malicious_clients(3, 50, 0) == ()
    assert _threat().malicious_clients == first


def test_colluding_attack_without_knowledge_gets_full_and_client_side_gets_none() -> None:
    assert _threat().knowledge == "full"
    assert _threat(knowledge="partial").knowledge == "partial"
    client_side = _threat(site="client", attack="backdoor")
    assert client_side.knowledge is None and client_side.where == SITES["client"]
    with pytest.raises(ValueError, match="knowledge=some: must be one of partial, full"):
        _threat(knowledge="some")


def test_summary_is_the_threat_model_as_is_and_json_ready() -> None:
    threat = _threat()
    summary = threat.summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["malicious_clients"] == list(threat.malicious_clients)
    assert {f.name for f in dataclasses.fields(ThreatModel)} | {"policies"} == set(summary)
    assert summary["fake_clients"] == 0 and summary["rounding"].startswith("round half up")


def test_a_run_builds_its_threat_model_once_from_the_config() -> None:
    from simulator.components import threat_model

    cfg = compose_config("attack=sign_flip", "malicious_fraction=0.3", "clients_per_round=5")
    threat = threat_model(cfg)
    assert threat.attack == "sign_flip" and threat.knowledge == "partial"
    assert threat.num_malicious == 3 and threat.num_malicious_told == 2  # 1.5 rounds up
    assert threat.malicious_per_round == 2
    assert threat_model(compose_config("attack=backdoor")).where == SITES["client"]
    assert threat.parameters == {"scale": 4.0}


def _craft_recorder() -> tuple[list[dict], object]:
    seen: list[dict] = []

    def craft(benign, num_malicious, num_clients, *, own, generator):
        seen.append({"benign": benign.clone(), "own": own.clone(), "f": num_malicious,
                     "n": num_clients})  # fmt: skip
        return torch.full((num_malicious, benign.shape[1]), -1.0)

    return seen, craft


def _with(malicious: tuple[int, ...], knowledge: str) -> ThreatModel:
    return dataclasses.replace(
        ThreatModel.clean(10), malicious_clients=malicious, knowledge=knowledge
    )


@pytest.mark.parametrize("knowledge", ["partial", "full"])
def test_adversary_rewrites_only_its_rows_with_the_knowledge_it_has(knowledge: str) -> None:
    seen, craft = _craft_recorder()
    adversary = Adversary(craft, _with((2, 5), knowledge), seed=0)
    updates = torch.arange(12.0).reshape(4, 3)  # rows for clients 1, 2, 4, 5
    result = adversary(updates, [1, 2, 4, 5], server_round=1)
    assert torch.equal(updates, torch.arange(12.0).reshape(4, 3)), "input unchanged"
    assert torch.equal(result[[0, 2]], updates[[0, 2]])
    assert (result[[1, 3]] == -1).all()
    (call,) = seen
    assert (call["f"], call["n"]) == (2, 4)
    assert torch.equal(call["own"], updates[[1, 3]])
    expected = updates[[0, 2]] if knowledge == "full" else updates[[1, 3]]
    assert torch.equal(call["benign"], expected)


def test_adversary_without_attackers_in_the_round_changes_nothing() -> None:
    seen, craft = _craft_recorder()
    updates = torch.ones(3, 2)
    assert Adversary(craft, _with((9,), "full"), 0)(updates, [0, 1, 2], 1) is updates
    assert seen == []
