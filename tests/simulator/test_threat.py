"""The threat model: the malicious set, the rounding rule, the adversary's view."""

from __future__ import annotations

import pytest
import torch

from simulator.adversary import Adversary
from simulator.threat import attackers_told, count_for, malicious_clients


@pytest.mark.parametrize(
    ("fraction", "n", "expected"),
    [(0.0, 10, 0), (0.2, 10, 2), (0.25, 10, 3), (0.15, 10, 2), (0.3, 10, 3), (0.2, 100, 20),
     (0.24, 50, 12), (0.49, 3, 1)],
)  # fmt: skip
def test_count_rounds_half_up(fraction: float, n: int, expected: int) -> None:
    assert count_for(fraction, n) == expected


def test_rule_is_told_the_configured_f_or_the_expected_count() -> None:
    assert attackers_told(None, 0.2, 20) == 4
    assert attackers_told(7, 0.2, 20) == 7


def test_malicious_set_is_fixed_by_the_seed() -> None:
    first = malicious_clients(3, 50, 0.2)
    assert first == malicious_clients(3, 50, 0.2)
    assert len(first) == 10 and len(set(first)) == 10
    assert all(0 <= c < 50 for c in first)
    assert first == sorted(first)
    assert malicious_clients(4, 50, 0.2) != first
    assert malicious_clients(3, 50, 0.0) == []


def _craft_recorder() -> tuple[list[dict], object]:
    seen: list[dict] = []

    def craft(benign, num_malicious, num_clients, *, own, generator):
        seen.append({"benign": benign.clone(), "own": own.clone(), "f": num_malicious,
                     "n": num_clients})  # fmt: skip
        return torch.full((num_malicious, benign.shape[1]), -1.0)

    return seen, craft


@pytest.mark.parametrize("knowledge", ["partial", "full"])
def test_adversary_rewrites_only_its_rows_with_the_knowledge_it_has(knowledge: str) -> None:
    seen, craft = _craft_recorder()
    adversary = Adversary(craft, malicious={2, 5}, knowledge=knowledge, seed=0)
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
    assert Adversary(craft, {9}, "full", 0)(updates, [0, 1, 2], 1) is updates
    assert seen == []


def test_bad_knowledge_is_refused() -> None:
    with pytest.raises(ValueError, match=r"attack\.knowledge=some"):
        Adversary(lambda *a, **k: None, {1}, "some", 0)
