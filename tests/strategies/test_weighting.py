"""strategy.weighting: example counts weight a mean-type rule only when asked.

Clients report their own example counts, so a small malicious client can claim a huge one;
every robust rule is uniform by default and FedAvg (the paper's control) weights by counts.
"""

from __future__ import annotations

import pytest
import torch

from simulator.config import ConfigError
from simulator.preflight import check_point
from strategies import centered_clipping, fedavg, geometric_median, multikrum, norm_bound
from strategies.pipeline import Defence, accepts
from tests.conftest import compose_config, group_entries

# Three honest clients near 1, one claiming a huge example count near -10.
UPDATES = torch.tensor([[1.0], [1.2], [0.8], [-10.0]], dtype=torch.float64)
CLAIMS = [10, 10, 10, 970]  # shares 0.01, 0.01, 0.01, 0.97


def _outcome(rule, weighting: bool) -> float:
    defence = Defence(rule, weight_by_examples=weighting)
    result = defence(UPDATES, [0, 1, 2, 3], server_round=1, num_examples=CLAIMS)
    assert result.step is not None
    return float(result.step[0])


def test_fedavg_by_examples_follows_the_claims_and_uniform_does_not() -> None:
    # by examples: 0.01 * (1 + 1.2 + 0.8) + 0.97 * (-10) = 0.03 - 9.7 = -9.67
    assert _outcome(fedavg, True) == pytest.approx(-9.67)
    # uniform: (1 + 1.2 + 0.8 - 10) / 4 = -7 / 4
    assert _outcome(fedavg, False) == pytest.approx(-1.75)


def test_multikrum_weights_the_selected_rows_by_their_claims() -> None:
    rows = torch.tensor([[1.0], [2.0], [1.5], [1.2], [40.0]], dtype=torch.float64)
    weights = torch.tensor([0.1, 0.3, 0.2, 0.2, 0.2], dtype=torch.float64)
    # f = 1 (n = 5 > 2f + 2): n - f = 4 selected, the outlier 40 left out;
    # shares 0.1, 0.3, 0.2, 0.2 over 0.8
    result = multikrum(rows, num_malicious=1, weights=weights)
    expected = (0.1 * 1.0 + 0.3 * 2.0 + 0.2 * 1.5 + 0.2 * 1.2) / 0.8  # = 1.24 / 0.8
    assert float(result.update[0]) == pytest.approx(expected)
    assert result.weights.tolist() == pytest.approx([0.125, 0.375, 0.25, 0.25, 0.0])
    # equal weights are the unweighted rule
    uniform = multikrum(rows, num_malicious=1, weights=torch.full((5,), 0.2))
    assert torch.allclose(uniform.update, multikrum(rows, num_malicious=1).update)


def test_centered_clipping_weights_each_clipped_offset() -> None:
    rows = torch.tensor([[1.0], [3.0]], dtype=torch.float64)
    # tau = 2, center 0: offsets 1 and 3 -> clipped to 1 and 2; weights 0.75 / 0.25
    # v = 0.75 * 1 + 0.25 * 2 = 1.25; shares 0.75 * 1 and 0.25 * 2/3
    result = centered_clipping(rows, tau=2.0, weights=torch.tensor([0.75, 0.25]))
    assert float(result.update[0]) == pytest.approx(1.25)
    assert result.weights.tolist() == pytest.approx([0.75, 0.25 * 2 / 3])
    assert float(result.weights @ rows[:, 0]) == pytest.approx(1.25)
    equal = centered_clipping(rows, tau=2.0, weights=torch.tensor([1.0, 1.0]))
    assert torch.allclose(equal.update, centered_clipping(rows, tau=2.0).update)


@pytest.mark.parametrize(
    "rule", [fedavg, multikrum, centered_clipping, geometric_median, norm_bound], ids=str
)
def test_mean_type_rules_take_client_weights(rule) -> None:
    assert accepts(rule, "weights")


def test_only_the_papers_that_weight_by_examples_do_so_by_default() -> None:
    # FedAvg (McMahan et al.) and RLR (Ozdayi et al. apply it to FedAvg's mean)
    for entry in group_entries("strategy"):
        cfg = compose_config(f"strategy={entry}")
        expected = "examples" if entry in ("fedavg", "rlr") else "uniform"
        assert cfg.strategy.weighting == expected, entry


@pytest.mark.parametrize(
    "entry",
    ["fedavg", "multikrum", "geometric_median", "norm_bound", "centered_clipping", "rlr",
     "adaptive_clipping", "flame", "dnc", "signguard"],
)  # fmt: skip
def test_weighting_can_be_switched_for_mean_type_rules(entry: str) -> None:
    check_point([f"strategy={entry}", "strategy.weighting=examples"])
    check_point([f"strategy={entry}", "strategy.weighting=uniform"])


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["strategy=median", "strategy.weighting=examples"],
            "strategy.weighting=examples: strategy=median takes no client weights; use uniform",
        ),
        (
            ["strategy=krum", "strategy.weighting=examples"],
            "strategy.weighting=examples: strategy=krum takes no client weights; use uniform",
        ),
        (["strategy.weighting=counts"], "strategy.weighting=counts: must be one of examples,"),
        (
            ["+strategy.weight_by_examples=true"],
            "strategy.weight_by_examples=true: the setting is now "
            "strategy.weighting=examples|uniform",
        ),
    ],
)
def test_weighting_errors_name_the_value(overrides: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_point(overrides)
    assert str(info.value).startswith(expected), str(info.value)
