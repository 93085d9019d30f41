"""Argument checks shared by the simulator's modules: one place, one wording.

Each names only the parameter it is given (``alpha=-1: must be > 0``); the config layer
adds the group in front (``partition.alpha=-1: ...``).
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np


def is_int(value: Any) -> bool:
    """An integer that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: Any, *, allow_nan: bool = False) -> bool:
    """An int that is not a bool, or a finite float (NaN too when ``allow_nan``); an int
    too large for a float is still a number, not an ``OverflowError``."""
    if not isinstance(value, float):
        return is_int(value)
    return math.isfinite(value) or (allow_nan and math.isnan(value))


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int; ``ValueError`` unless it is an integer (not a bool, not a float)
    >= ``minimum``."""
    try:
        number = operator.index(value)
    except TypeError:
        number = None
    if isinstance(value, bool) or number is None or number < minimum:
        raise ValueError(f"{name}={value!r}: must be an integer >= {minimum}")
    return number


def check_float(name: str, value: Any) -> float:
    """``value`` as a finite float; ``ValueError`` otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{name}={value!r}: must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r}: must be a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{name}={value!r}: must be finite")
    return number


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a bool; ``ValueError`` unless it is one (numpy's included)."""
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name}={value!r}: must be true or false")
    return bool(value)
