"""``strategies.checks``: what counts as an integer and a real number, and the one wording."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from strategies.checks import check_int, check_real, check_vector, is_int, is_real
from strategies.clipping import centered_clipping, norm_bound
from strategies.geometric_median import geometric_median


@pytest.mark.parametrize(
    ("value", "integer", "real"),
    [
        (3, True, True),
        (np.int64(3), True, True),  # numpy integers count, as every rule took them
        (2.0, False, True),
        (np.float64(0.5), False, True),
        (math.inf, False, True),  # a limit some parameters allow; each check bounds it
        (True, False, False),
        (np.float32(0.5), False, False),
        ("1", False, False),
        (None, False, False),
    ],
)
def test_what_counts_as_a_number(value: object, integer: bool, real: bool) -> None:
    assert is_int(value) is integer
    assert is_real(value) is real


def test_checks_name_the_rule_the_parameter_and_the_value() -> None:
    assert check_int("rule", "k", np.int64(2), 1) == 2
    with pytest.raises(ValueError, match=r"^rule needs an integer k >= 1, got k=True$"):
        check_int("rule", "k", True, 1)
    with pytest.raises(ValueError, match=r"^rule needs finite nu > 0, got nu=inf$"):
        check_real("rule", "nu", math.inf, above=0, finite=True)
    with pytest.raises(ValueError, match=r"^rule needs tol >= 0, got tol=nan$"):
        check_real("rule", "tol", math.nan, at_least=0)
    with pytest.raises(ValueError, match=r"^rule needs a floating c, got dtype torch.int64$"):
        check_vector("rule", "c", torch.zeros(2, dtype=torch.int64), 2)
    with pytest.raises(ValueError, match=r"^rule needs c of shape \(2,\), got list$"):
        check_vector("rule", "c", [0.0, 0.0], 2)


@pytest.mark.parametrize(
    "call",
    [
        lambda x: centered_clipping(x, tau=True),
        lambda x: norm_bound(x, max_norm=True),
        lambda x: geometric_median(x, nu=True),
        lambda x: geometric_median(x, tol=False),
    ],
)
def test_a_bool_is_not_a_radius_or_a_tolerance(call) -> None:
    with pytest.raises(ValueError, match=r"got \w+=(True|False)$"):
        call(torch.ones(4, 3))


def test_an_infinite_radius_is_the_mean() -> None:
    updates = torch.tensor([[1.0, 0.0], [3.0, 4.0]])
    assert norm_bound(updates, max_norm=math.inf).update.tolist() == [2.0, 2.0]
    assert centered_clipping(updates, tau=math.inf).update.tolist() == [2.0, 2.0]
