"""Argument checks shared by the rules and stages: one place, one wording.

Integers may be numpy's, never bools: ``True`` passed as f or a radius is a mistake, not 1.
A rule's own parameter is named with the rule (``trimmed_mean needs 0 <= beta < 0.5, got
beta=0.7``); the config layer says which key it came from.
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any

import torch


def is_int(value: Any) -> bool:
    """An integer (numpy's included) that is not a bool."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """An integer as ``is_int`` or a float; NaN and inf included, each caller bounds it."""
    return is_int(value) or isinstance(value, float)


def check_int(rule: str, name: str, value: Any, minimum: int) -> int:
    """``value`` as an int; ``ValueError`` unless it is an integer >= ``minimum``."""
    if not is_int(value) or value < minimum:
        raise ValueError(f"{rule} needs an integer {name} >= {minimum}, got {name}={value}")
    return int(value)


def check_real(
    rule: str,
    name: str,
    value: Any,
    *,
    above: float | None = None,
    at_least: float | None = None,
    finite: bool = False,
) -> None:
    """``ValueError`` unless ``value`` is a real ``> above`` (or ``>= at_least``), and
    finite if asked (an infinite radius or tolerance is a valid limit: the plain mean)."""
    if above is not None:
        bound, within = f"> {above}", is_real(value) and value > above
    else:
        bound, within = f">= {at_least}", is_real(value) and value >= at_least
    if not within or (finite and not math.isfinite(value)):
        qualifier = "finite " if finite else ""
        raise ValueError(f"{rule} needs {qualifier}{name} {bound}, got {name}={value}")


def check_num_malicious(num_malicious: Any) -> int:
    """f, the number of malicious clients a rule tolerates, as an int; ``ValueError`` unless
    it is an integer >= 0."""
    if not is_int(num_malicious) or num_malicious < 0:
        raise ValueError(f"num_malicious must be an integer >= 0, got {num_malicious!r}")
    return int(num_malicious)


def check_updates(updates: torch.Tensor, *, min_rows: int = 1) -> None:
    """Raise ``ValueError`` unless ``updates`` is a floating ``(n, d)`` matrix, n >= min_rows."""
    if not isinstance(updates, torch.Tensor):
        raise ValueError(f"updates must be a torch.Tensor, got {type(updates).__name__}")
    if updates.ndim != 2:
        raise ValueError(f"updates must have shape (n, d), got {tuple(updates.shape)}")
    if not updates.is_floating_point():
        raise ValueError(f"updates must be a floating tensor, got dtype {updates.dtype}")
    if updates.shape[0] < min_rows:
        raise ValueError(f"updates has {updates.shape[0]} rows; this rule needs >= {min_rows}")


def check_client_weights(weights: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """Validate optional non-negative per-client weights of shape ``(n,)`` with a positive sum."""
    if weights is None:
        return None
    weights = torch.as_tensor(weights)
    if weights.shape != (n,):
        raise ValueError(f"weights must have shape ({n},), got {tuple(weights.shape)}")
    if not torch.isfinite(weights).all() or (weights < 0).any():
        raise ValueError("weights must be finite and >= 0")
    if float(weights.sum()) <= 0:
        raise ValueError("weights must have a positive sum")
    return weights


def check_vector(rule: str, name: str, value: Any, d: int) -> torch.Tensor:
    """``value`` if it is a finite floating ``(d,)`` tensor (a center, a server update)."""
    if not isinstance(value, torch.Tensor) or value.shape != (d,):
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{rule} needs {name} of shape ({d},), got {shape}")
    if not value.is_floating_point():
        raise ValueError(f"{rule} needs a floating {name}, got dtype {value.dtype}")
    if not torch.isfinite(value).all():
        bad = int((~torch.isfinite(value)).sum())
        raise ValueError(f"{rule} needs a finite {name}, got {bad} non-finite values")
    return value
