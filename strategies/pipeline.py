"""Pre-aggregation steps, then a rule: one round's aggregation, with per-client shares.

Rules take different extra inputs (the number of attackers, the server's own update for
FLTrust, the previous aggregate for centered clipping, example counts for FedAvg, a
generator for bucketing). The caller offers everything it has; each step receives the
keywords its signature names and nothing else, so a new rule needs no adapter change.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch

from strategies.base import Aggregate


def accepted_keywords(fn: Callable[..., Any]) -> frozenset[str]:
    """The keyword names ``fn`` (a function or a ``functools.partial``) can take."""
    parameters = inspect.signature(fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return frozenset({"*"})
    return frozenset(
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    )


def accepts(fn: Callable[..., Any], name: str) -> bool:
    keywords = accepted_keywords(fn)
    return "*" in keywords or name in keywords


def call_with_available(fn: Callable[..., Any], updates: torch.Tensor, **available: Any) -> Any:
    """``fn(updates, **k)`` with ``k`` the entries of ``available`` that ``fn`` accepts."""
    keywords = accepted_keywords(fn)
    kwargs = {k: v for k, v in available.items() if "*" in keywords or k in keywords}
    return fn(updates, **kwargs)


def aggregate(
    updates: torch.Tensor,
    rule: Callable[..., Aggregate],
    pre: Sequence[Callable[..., Any]] = (),
    **available: Any,
) -> Aggregate:
    """Apply the pre-aggregation steps in order, then ``rule``; weights mapped back to clients.

    Each step returns ``Mixed(updates=(m, d), mixing=(m, n))``; the mixing matrices are
    chained so that a rule's weights over mixed rows become client shares
    ``weights @ mixing``. Example-count ``weights`` offered to the rule are mixed likewise.
    """
    x = updates
    mixing: torch.Tensor | None = None
    for step in pre:
        mixed = call_with_available(step, x, **available)
        x = mixed.updates
        mixing = mixed.mixing if mixing is None else mixed.mixing @ mixing
    offered = dict(available)
    if mixing is not None and offered.get("weights") is not None:
        weights = offered["weights"]
        offered["weights"] = mixing.to(weights.device, weights.dtype) @ weights
    result: Aggregate = call_with_available(rule, x, **offered)
    if mixing is None or result.weights is None:
        return result if mixing is None else Aggregate(update=result.update, weights=None)
    # shape: (n,)
    return Aggregate(update=result.update, weights=result.weights @ mixing.to(result.weights))
