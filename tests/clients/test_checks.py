"""``clients.checks``: what counts as an integer and a real number, and the one wording."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clients.checks import check_int, check_matrix, check_real, is_int, is_real
from clients.poisoning import Backdoor, LabelFlip


@pytest.mark.parametrize(
    ("value", "integer", "real"),
    [
        (3, True, True),
        (2.0, False, True),
        (np.float64(0.5), False, True),  # a float subclass
        (10**400, True, True),  # too large for a float, still a number
        (True, False, False),
        (np.int64(3), False, False),
        (np.float32(0.5), False, False),
        (math.nan, False, False),
        (math.inf, False, False),
        ("1", False, False),
        (None, False, False),
    ],
)
def test_what_counts_as_a_number(value: object, integer: bool, real: bool) -> None:
    assert is_int(value) is integer
    assert is_real(value) is real


def test_checks_return_the_value_or_name_it() -> None:
    assert check_int("k", 0) == 0
    assert check_real("z", 2) == 2.0 and isinstance(check_real("z", 2), float)
    with pytest.raises(ValueError, match=r"^k must be an integer >= 1, got True$"):
        check_int("k", True, 1)
    with pytest.raises(ValueError, match=r"^z must be a finite real number, got inf$"):
        check_real("z", math.inf)
    with pytest.raises(ValueError, match=r"^z must be > 0, got 0$"):
        check_real("z", 0, above=0)
    with pytest.raises(ValueError, match=r"^z must be >= 1, got 0.5$"):
        check_real("z", 0.5, at_least=1)
    with pytest.raises(ValueError, match=r"^x must have shape \(k, d\), got \(3,\)$"):
        check_matrix("x", torch.ones(3))


@pytest.mark.parametrize("boost", [0, -1.0, math.inf, math.nan, True, "2"])
def test_boost_must_be_a_finite_number_above_zero(boost: object) -> None:
    for poisoning in (LabelFlip, Backdoor):
        with pytest.raises(ValueError, match=r"^boost=.*: must be a finite number > 0$"):
            poisoning(boost=boost)  # type: ignore[arg-type]
