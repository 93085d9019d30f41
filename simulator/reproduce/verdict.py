"""Oleander's number for a cell and its verdict against the paper's, as pure functions.

A cell's verdict is, in order: ``within band`` (Oleander's mean over seeds is within
``band`` of the paper's value), ``same ordering`` (not within band, but ordered against
every other cell of its row and of its column as in the paper; differences of at most
``tie`` on either side count as ties and agree with anything), or ``differs``. A cell
without a paper value or without a finished run has no verdict.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

WITHIN = "within band"
ORDERING = "same ordering"
DIFFERS = "differs"
NO_PAPER = "no paper value"
NOT_RUN = "not run"


def _column(rows: Sequence[Mapping[str, str]], name: str, first_round: int) -> list[float]:
    values = []
    for row in rows:
        try:
            if int(row.get("round", "0")) < first_round:
                continue
            value = float(row.get(name) or "nan")
        except ValueError:
            continue
        if math.isfinite(value):
            values.append(value)
    return values


def run_value(rows: Sequence[Mapping[str, str]], metric: str, statistic: str) -> float | None:
    """One run's value of ``metric`` (error, accuracy, attack_success) under ``statistic``
    (final, best, mean_last_K) from its rounds.csv rows; None if the run recorded none.

    ``best`` is the best of the trained rounds (round 0, the initial model, excluded):
    the highest accuracy, the lowest error, the highest attack success."""
    source = "attack_success_rate" if metric == "attack_success" else "test_accuracy"
    values = _column(rows, source, first_round=1)
    if not values:
        return None
    if statistic == "final":
        value = values[-1]
    elif statistic == "best":
        value = max(values)
    else:
        last = int(statistic.rsplit("_", 1)[1])
        value = statistics.fmean(values[-last:])
    return 1.0 - value if metric == "error" else value


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None for fewer than two values)."""
    if not values:
        return None, None
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else None


def _agrees(paper: float, ours: float, tie: float) -> bool:
    """Two differences (paper's and ours, between the same two cells) agree in sign."""
    if abs(paper) <= tie or abs(ours) <= tie:
        return True
    return (paper > 0) == (ours > 0)


def verdicts(
    paper: Mapping[tuple[str, str], float | None],
    ours: Mapping[tuple[str, str], float | None],
    band: float,
    tie: float,
) -> dict[tuple[str, str], str]:
    """Each cell's verdict; cells are (row, column) label pairs."""
    out = {}
    for cell, theirs in paper.items():
        mine = ours.get(cell)
        if theirs is None:
            out[cell] = NO_PAPER
            continue
        if mine is None:
            out[cell] = NOT_RUN
            continue
        if abs(mine - theirs) <= band + 1e-12:
            out[cell] = WITHIN
            continue
        peers = [
            other
            for other in paper
            if other != cell
            and (other[0] == cell[0] or other[1] == cell[1])
            and paper[other] is not None
            and ours.get(other) is not None
        ]
        same = all(
            _agrees(theirs - paper[p], mine - ours[p], tie)  # type: ignore[operator]
            for p in peers
        )
        out[cell] = ORDERING if peers and same else DIFFERS
    return out


def tally(found: Mapping[tuple[str, str], str]) -> dict[str, int]:
    """How many cells got each verdict, in the verdicts' order."""
    order = (WITHIN, ORDERING, DIFFERS, NO_PAPER, NOT_RUN)
    return {name: sum(v == name for v in found.values()) for name in order}
