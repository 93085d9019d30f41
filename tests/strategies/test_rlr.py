"""Robust learning rate: hand-computed sign flips, the threshold's range, a backdoor on digits."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from simulator.config import ConfigError
from simulator.main import simulate
from simulator.preflight import check_point
from strategies.rlr import robust_learning_rate
from tests.conftest import compose_config

X = torch.tensor([[1.0, 2.0, 0.0], [3.0, -1.0, 1.0], [2.0, -4.0, 1.0]])


def test_known_values_plain_mean() -> None:
    # signs per column: (+,+,+) -> |3| = 3; (+,-,-) -> |-1| = 1; (0,+,+) -> |2| = 2.
    # mean = (6/3, -3/3, 2/3) = (2, -1, 2/3).
    # threshold 2: 3 >= 2 keep, 1 < 2 flip, 2 >= 2 keep -> (2, 1, 2/3)
    result = robust_learning_rate(X, threshold=2)
    torch.testing.assert_close(result.update, torch.tensor([2.0, 1.0, 2 / 3]))
    assert result.weights is None
    # threshold 3: only the first column has |3| >= 3 -> (2, 1, -2/3)
    torch.testing.assert_close(
        robust_learning_rate(X, threshold=3).update, torch.tensor([2.0, 1.0, -2 / 3])
    )
    # threshold 1: every column has agreement >= 1 -> the plain mean
    torch.testing.assert_close(robust_learning_rate(X, threshold=1).update, X.mean(dim=0))


def test_known_values_example_weighted_mean() -> None:
    # weights (1, 1, 2)/4: mean = ((1 + 3 + 4)/4, (2 - 1 - 8)/4, (0 + 1 + 2)/4)
    #                           = (2, -7/4, 3/4); threshold 2 flips the middle: (2, 7/4, 3/4)
    for weights in (torch.tensor([1.0, 1.0, 2.0]), torch.tensor([0.25, 0.25, 0.5])):
        result = robust_learning_rate(X, threshold=2, weights=weights)
        torch.testing.assert_close(result.update, torch.tensor([2.0, 1.75, 0.75]))


def test_a_lone_attacker_coordinate_is_reversed() -> None:
    # 4 honest clients agree on coordinate 0 and are split on coordinate 1, where one
    # attacker pushes hard: the mean moves towards it, RLR moves away (threshold 3).
    honest = torch.tensor([[1.0, 0.1], [1.0, -0.1], [1.0, 0.1], [1.0, -0.1]])
    x = torch.cat([honest, torch.tensor([[1.0, 5.0]])])
    # coordinate 1: signs (+,-,+,-,+) -> |1| < 3: flipped; mean 5/5 = 1 -> -1
    assert robust_learning_rate(x, threshold=3).update.tolist() == [1.0, -1.0]


def test_zero_matrix_does_not_crash() -> None:
    result = robust_learning_rate(torch.zeros(4, 2), threshold=4)
    assert result.update.abs().tolist() == [0.0, 0.0]


def test_inputs_are_not_mutated() -> None:
    x, w = X.clone(), torch.tensor([1.0, 2.0, 3.0])
    robust_learning_rate(x, threshold=2, weights=w)
    assert torch.equal(x, X) and w.tolist() == [1.0, 2.0, 3.0]


def test_float64_and_permutation_invariance() -> None:
    x = torch.randn(9, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    order = torch.randperm(9, generator=torch.Generator().manual_seed(1))
    a = robust_learning_rate(x, threshold=5).update
    assert a.dtype == torch.float64
    torch.testing.assert_close(robust_learning_rate(x[order], threshold=5).update, a)


@pytest.mark.parametrize("threshold", [0, -1, 2.5, True, math.nan, "2"])
def test_bad_threshold_is_refused(threshold: object) -> None:
    with pytest.raises(ValueError, match="robust_learning_rate needs an integer threshold >= 1"):
        robust_learning_rate(X, threshold=threshold)  # type: ignore[arg-type]


def test_threshold_above_n_is_refused() -> None:
    # above n every coordinate would be flipped: the model would walk backwards
    with pytest.raises(ValueError, match=r"threshold <= 3 .*got threshold=4") as info:
        robust_learning_rate(X, threshold=4)
    assert "\n" not in str(info.value)
    robust_learning_rate(X, threshold=3)  # n itself: unanimity, allowed


def test_bad_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="weights"):
        robust_learning_rate(X, threshold=2, weights=torch.tensor([1.0, -1.0, 1.0]))


def test_config_refuses_a_threshold_above_the_clients_per_round_in_one_line() -> None:
    check_point(["strategy=rlr"])  # threshold 4 with 10 clients per round
    with pytest.raises(ConfigError) as info:
        check_point(["strategy=rlr", "num_clients=3"])
    message = str(info.value)
    assert "strategy=rlr with clients_per_round=3" in message and "threshold=4" in message
    assert "\n" not in message


# ------------------------------------------------------------------------- end to end

BACKDOOR = ("num_clients=10", "num_rounds=5", "progress=false", "attack=backdoor",
            "malicious_fraction=0.3")  # fmt: skip


def _success(tmp_path: Path, *overrides: str) -> tuple[list[float], float]:
    summary = simulate(compose_config(*BACKDOOR, *overrides), tmp_path)
    with open(tmp_path / "rounds.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))[1:]
    return [float(r["attack_success_rate"]) for r in rows], summary["final_accuracy"]


def test_rlr_keeps_the_backdoor_out_where_fedavg_lets_it_in(tmp_path: Path) -> None:
    fedavg, _ = _success(tmp_path / "fedavg", "strategy=fedavg")
    # threshold 6 for 3 attackers of 10: above what the attackers plus an honest minority
    # reach. Measured with the paper's threshold 4 instead: success 0.14-0.32 over 8
    # rounds (FedAvg 0.46-0.83), slowed but growing.
    rlr, accuracy = _success(tmp_path / "rlr", "strategy=rlr", "strategy.threshold=6")
    assert min(fedavg) > 0.4, fedavg  # measured 0.43-0.82
    # Measured 0.057 in round 1, then 0.0 (0.0 throughout while the poisoned examples
    # were redrawn every minibatch; chosen once per run, they agree more in round 1).
    assert max(rlr) < 0.1 and max(rlr[1:]) < 0.01, rlr
    assert accuracy > 0.85  # the main task still learns (measured 0.92; FedAvg 0.92)
