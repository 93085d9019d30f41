"""Argument checks shared by ``clients`` (its attacks included): one place, one wording.

Numbers are Python's (numpy's float64 is a float), never bools: ``True`` passed as a count
or a factor is a mistake, not 1. Each message names only the parameter it is given; the
caller (the config layer, an attack's caller) says where it came from.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def is_int(value: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """An int that is not a bool, or a finite float."""
    return is_int(value) or (isinstance(value, float) and math.isfinite(value))


def check_int(name: str, value: Any, minimum: int = 0) -> int:
    """``value`` as an int; ``ValueError`` unless it is an integer >= ``minimum``."""
    if not is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_real(
    name: str, value: Any, *, above: float | None = None, at_least: float | None = None
) -> float:
    """``value`` as a float; ``ValueError`` unless it is a finite real, ``> above`` and
    ``>= at_least`` where given."""
    if not is_real(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    if above is not None and not value > above:
        raise ValueError(f"{name} must be > {above}, got {value!r}")
    if at_least is not None and not value >= at_least:
        raise ValueError(f"{name} must be >= {at_least}, got {value!r}")
    return float(value)


def check_matrix(name: str, x: Any) -> torch.Tensor:
    """``x`` if it is a floating ``(k, d)`` tensor; ``ValueError`` naming ``name`` otherwise."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (k, d), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got dtype {x.dtype}")
    return x
