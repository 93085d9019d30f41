"""Mimic and the AGR-tailored attack: known values on hand-made rows, contract, bad settings.

Expected values are worked out by hand in the comments: the principal direction of four 2-D
rows from their 2 x 2 covariance, and the halving search's trace against the coordinate
median and Krum on five 1-D benign updates.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch

from clients.attacks import DIRECTIONS
from clients.attacks.mimic import mimic, mimic_choice
from clients.attacks.tailored import Verdict, defend_with, tailored, tailored_search
from strategies import fedavg, krum, median

# Centred rows c_i (the mean is added below): covariance C^T C = [[16.18, 2], [2, 12]],
#   xx = 0.25 + 7.84 + 7.84 + 0.25, yy = 9 + 1 + 1 + 1, xy = 1.5 - 2.8 + 2.8 + 0.5.
# Top eigenvalue 14.09 + sqrt(2.09^2 + 4) = 16.9828; eigenvector z ~ (1, 0.4014)
# ((16.18 - 16.9828) z_x + 2 z_y = 0). The start, the largest row c_0 (|c_0|^2 = 9.25 >
# 8.84, 8.84, 1.25), has <c_0, z> = 0.5 + 3 * 0.4014 > 0, so z keeps that sign.
# Projections <c_i, z>: 1.704, 2.399, -3.201, -0.901: i* = 1. Not the start row (0) and
# not the largest |projection| (row 2, on the other side of the spread).
CENTRED = torch.tensor([[0.5, 3.0], [2.8, -1.0], [-2.8, -1.0], [-0.5, -1.0]], dtype=torch.float64)
MIMIC_ROWS = CENTRED + torch.tensor([1.0, -2.0], dtype=torch.float64)

# Five 1-D benign updates, mean 3; direction sign: p = -sign(3) = -1; f = 2 crafted rows
# at c = 3 - gamma.
BENIGN = torch.tensor([[1.0], [2.0], [3.0], [4.0], [5.0]])


# ----------------------------------------------------------------------------- mimic


def test_mimic_picks_the_extreme_update_along_the_top_direction() -> None:
    assert mimic_choice(MIMIC_ROWS) == 1
    crafted = mimic(MIMIC_ROWS, 3, 7)
    assert crafted.shape == (3, 2)
    assert torch.equal(crafted, MIMIC_ROWS[1].expand(3, -1))


def test_mimic_few_power_steps_are_not_yet_converged() -> None:
    # One step from c_0: z ~ C^T C c_0 = (16.18 * 0.5 + 2 * 3, 2 * 0.5 + 12 * 3) = (14.09, 37);
    # projections: c_0: 7.045 + 111 = 118.0, c_1: 39.45 - 37 = 2.45, ... so i* = 0.
    assert mimic_choice(MIMIC_ROWS, power_iterations=1) == 0
    # The other eigenvalue is 27.18 - 16.98 = 11.20: the start's part off z shrinks by
    # 11.20 / 16.98 = 0.66 a step, and row 1's projection overtakes row 0's at step 6
    # (step 5: 2.070 vs 1.786; step 6: 1.915 vs 1.942, z normalised).
    assert mimic_choice(MIMIC_ROWS, power_iterations=5) == 0
    assert mimic_choice(MIMIC_ROWS, power_iterations=6) == 1


def test_mimic_is_invariant_to_row_order_and_a_shift() -> None:
    order = [2, 0, 3, 1]  # row 1 is now at position 3
    assert mimic_choice(MIMIC_ROWS[order]) == 3
    assert mimic_choice(MIMIC_ROWS + 100.0) == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mimic_keeps_dtype_and_inputs(dtype: torch.dtype) -> None:
    rows = MIMIC_ROWS.to(dtype)
    copy = rows.clone()
    crafted = mimic(rows, 2, 6)
    assert crafted.dtype == dtype
    assert torch.equal(rows, copy)
    crafted[0, 0] = 99.0  # independent rows, not a view of the input
    assert torch.equal(rows, copy)


def test_mimic_without_spread_copies_the_first_row() -> None:
    same = torch.ones(4, 3)
    assert mimic_choice(same) == 0
    assert mimic_choice(torch.tensor([[2.0, 5.0]])) == 0
    assert mimic(torch.tensor([[2.0, 5.0]]), 1, 2).tolist() == [[2.0, 5.0]]
    assert mimic(MIMIC_ROWS, 0, 4).shape == (0, 2)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_mimic_power_iterations_must_be_a_positive_integer(bad: object) -> None:
    with pytest.raises(ValueError, match=r"power_iterations must be an integer >= 1") as info:
        mimic(MIMIC_ROWS, 1, 5, power_iterations=bad)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- tailored


def test_tailored_search_against_themedian_by_hand() -> None:
    # Median of the 7 values {1..5, c, c}, c = 3 - gamma <= 3: the 4th smallest, max(c, 2);
    # deviation |median - 3| = min(gamma, 1). Every row is accepted (no shares), so a gamma
    # succeeds when its deviation beats the best so far. gamma_init 0.75 (step 0.75):
    #   0.75: dev 0.75 > -1 -> success; next 0.75 + 0.375 = 1.125
    #   1.125: dev 1 > 0.75 -> success; next 1.125 + 0.1875 = 1.3125
    #   1.3125, 1.21875, ...: dev 1, not > 1 -> fail, halving down towards 1.125.
    found = tailored_search(BENIGN, 2, defend_with(median, BENIGN), gamma_init=0.75)
    assert found.gamma == 1.125
    assert found.deviation == 1.0
    assert found.update.tolist() == [3.0 - 1.125]
    # |gamma_succ - gamma| = 0.1875 / 2^j <= 1e-5 first at j = 15: 2 successes + 15 fails
    assert found.tested == 17


def test_tailored_search_against_krum_by_hand() -> None:
    # Krum, n = 7, f = 2: a row's score sums its n - f - 2 = 3 smallest squared distances.
    # For 1 <= c <= 3 (gamma in [0, 2]) the crafted score is (c - a)^2 + (b - c)^2 <= 1 with
    # a <= c <= b the benign neighbours one apart (plus 0 to the other crafted row), every
    # benign score >= 1: Krum picks the crafted row. For 0 <= c < 1, u = 1 - c: crafted
    # u^2 + (1 + u)^2 > benign 1's 1 + 2u^2: Krum picks 1, the crafted row gets share 0.
    # Accepted on [0, 2] and the deviation (gamma) grows with gamma: gamma* = 2.
    rule = functools.partial(krum, num_malicious=2)
    defend = defend_with(rule, BENIGN)
    found = tailored_search(BENIGN, 2, defend, gamma_init=10.0, tol=1e-5)
    assert 2.0 - 2e-5 <= found.gamma < 2.0
    assert found.deviation == pytest.approx(found.gamma, abs=1e-6)
    crafted = (BENIGN.mean(dim=0) - found.gamma).expand(2, -1)
    assert defend(crafted).accepted
    assert not defend(crafted - 3e-5).accepted  # gamma + 3e-5 > 2: Krum picks benign 1


def test_tailored_sends_the_searched_update_and_leaves_inputs_alone() -> None:
    benign = BENIGN.clone()
    crafted = tailored(benign, 2, 7, defend=defend_with(median, benign), gamma_init=0.75)
    assert torch.equal(benign, BENIGN)
    assert crafted.shape == (2, 1)
    assert crafted.dtype == BENIGN.dtype
    assert crafted.tolist() == [[1.875], [1.875]]
    assert tailored(benign, 0, 5, defend=defend_with(median, benign)).shape == (0, 1)


def test_tailored_without_any_accepted_gamma_sends_the_mean() -> None:
    def refuse(crafted: torch.Tensor) -> Verdict:  # a defence that flags every crafted row
        flagged = torch.ones(crafted.shape[0], dtype=torch.bool)
        return Verdict(aggregate=torch.zeros(1), weights=None, flagged=flagged)

    found = tailored_search(BENIGN, 2, refuse)
    assert (found.gamma, found.deviation) == (0.0, -1.0)
    assert found.update.tolist() == [3.0]


def test_directions() -> None:
    x = torch.tensor([[1.0, -2.0], [3.0, -6.0]], dtype=torch.float64)
    mu = x.mean(dim=0)  # (2, -4); population std (1, 2), sample std (sqrt 2, 2 sqrt 2)
    expected = {
        "unit": [-2 / math.sqrt(20), 4 / math.sqrt(20)],
        "std": [-math.sqrt(2), -2 * math.sqrt(2)],
        "sign": [-1.0, 1.0],
        "alie": [-1.0, -2.0],  # gamma is ALIE's z: mu - z sigma
        "ipm": [-2.0, 4.0],  # gamma is 1 + epsilon: mu - gamma mu = -epsilon mu
    }
    assert set(DIRECTIONS) == set(expected)
    for name, values in expected.items():
        assert DIRECTIONS[name](x, mu).tolist() == pytest.approx(values), name


def test_ipm_direction_reproduces_ipm_for_a_fixed_gamma() -> None:
    # With a mean that accepts everything and moves without bound, the search runs to its
    # upper end: gamma -> 2 gamma_init; crafted = (1 - gamma) mu = -epsilon mu, eps = gamma - 1.
    benign = torch.tensor([[1.0, 2.0], [3.0, 2.0]])
    found = tailored_search(benign, 1, defend_with(fedavg, benign), direction="ipm", gamma_init=1)
    assert found.gamma == pytest.approx(2.0, abs=3e-5)
    assert found.update.tolist() == pytest.approx((-(found.gamma - 1) * benign.mean(0)).tolist())


@pytest.mark.parametrize(
    ("verdict", "accepted"),
    [
        (Verdict(None, None, torch.tensor([False, False])), False),  # global model kept
        (Verdict(torch.zeros(1), None, torch.tensor([True, True])), False),  # all flagged
        (Verdict(torch.zeros(1), None, torch.tensor([True, False])), True),  # one counted
        (Verdict(torch.zeros(1), torch.tensor([0.0, 0.0]), torch.tensor([False, False])), False),
        (Verdict(torch.zeros(1), torch.tensor([0.0, 0.2]), torch.tensor([False, False])), True),
        (Verdict(torch.zeros(1), torch.tensor([0.0, 0.2]), torch.tensor([False, True])), False),
    ],
)
def test_what_accepted_means(verdict: Verdict, accepted: bool) -> None:
    assert verdict.accepted is accepted


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"direction": "up"}, r"direction='up': must be one of unit, std, sign, alie, ipm"),
        ({"gamma_init": 0}, r"gamma_init must be > 0, got 0"),
        ({"gamma_init": -1.0}, r"gamma_init must be > 0, got -1.0"),
        ({"tol": 0.0}, r"tol must be > 0"),
        ({"max_iter": 0}, r"max_iter must be an integer >= 1"),
        ({"knowledge": "partial"}, r"knowledge='partial': tailored needs full knowledge"),
        ({"defend": None}, r"tailored needs defend="),
    ],
)
def test_tailored_bad_settings_are_one_line_errors(kwargs: dict, message: str) -> None:
    settings = {"defend": defend_with(median, BENIGN), **kwargs}
    with pytest.raises(ValueError, match=message) as info:
        tailored(BENIGN, 2, 7, **settings)
    assert "\n" not in str(info.value)
