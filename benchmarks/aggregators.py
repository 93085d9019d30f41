"""Time Oleander's aggregation rules against Flower's equivalents on the same input, same run.

Run from the repository root::

    python -m benchmarks.aggregators            # the full grid (a few minutes on 2 cores)
    python -m benchmarks.aggregators --quick    # n=20, d=1e5, 3 repetitions: a smoke run
    python -m benchmarks.aggregators --rules krum,median --repeat 7
    python -m benchmarks.aggregators --write    # also replace "## Aggregators" in BENCHMARKS.md

Every rule sees the same float32 matrix of updates, shape ``(n, d)``. Where Flower has an
equivalent (the legacy numpy functions in ``flwr.server.strategy.aggregate``) it gets the
same rows, converted once, outside the timed region, to the ``(list_of_ndarrays,
num_examples)`` tuples it takes. Where it has none, Oleander's time is reported against two
references measured in the same run: one plain pass over the matrix (``updates.sum(0)``)
and one Gram product (``updates @ updates.T``). Shared machines are noisy, so the report
is medians of several repetitions and ratios between timings taken side by side (the
repetitions of a rule and of its reference are interleaved); an absolute time from one
machine says little about another.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.server.strategy import aggregate as flower

REPO = Path(__file__).resolve().parents[1]
if not __package__ and str(REPO) not in sys.path:  # `python benchmarks/aggregators.py`
    sys.path.insert(0, str(REPO))

from benchmarks.common import (  # noqa: E402  (after the path set-up above)
    DEFAULT_OUTPUT,
    command_line,
    fmt_ratio,
    fmt_s,
    load_average,
    machine_line,
    table,
    write_section,
)
from strategies.base import Aggregate  # noqa: E402
from strategies.mean import fedavg  # noqa: E402
from strategies.pipeline import Defence  # noqa: E402
from strategies.state import DefenceState  # noqa: E402

SECTION_TITLE = "Aggregators"

# The goals, all at the largest size of the grid.
GOAL_N, GOAL_D = 100, 1_000_000
GOAL_KRUM_SPEEDUP = 5.0
GOAL_COORDINATE_SPEEDUP = 1.0
GOAL_MAX_SECONDS = 1.5

# A reference call faster than this is warmed up once, untimed, and repeated like
# Oleander's; a slower one counts its first call and repeats only within --ref-budget.
SLOW_REFERENCE_S = 0.2

TRIM_BETA = 0.2
CLIP_TAU = 10.0  # Karimireddy et al.'s MNIST setting: tau = 10, L = 3
CLIP_ITERATIONS = 3
BUCKET_SIZE = 2  # Karimireddy, He and Jaggi's s = 2
BOOST = 10.0  # the first f rows are scaled by this: boosted attackers
RLR_THRESHOLD = 4  # Ozdayi et al.'s theta for 10 agents
WEAK_DP_STD = 0.025  # Sun et al.'s EMNIST sigma
FLDETECTOR_WINDOW = 10  # Zhang et al.'s N
# New defences, each within this many times Multi-Krum's cost (FLDetector: its own goal).
GOAL_VS_MULTIKRUM = 3.0
GOAL_FLDETECTOR_VS_MULTIKRUM = 10.0
SECOND_WAVE = ("foolsgold", "rlr", "adaptive_clipping", "weak_dp", "flame", "dnc", "signguard")


@dataclass
class Cell:
    """One size of the grid: the input, in both forms, and every rule's parameters."""

    n: int
    d: int
    seed: int
    updates: torch.Tensor  # shape: (n, d), float32
    results: list[tuple[list[np.ndarray], int]]  # Flower's form: the same rows, not copies
    server_update: torch.Tensor  # shape: (d,)
    max_norm: float
    multikrum_keep: int | None = None  # set from Oleander's Multi-Krum before Flower's runs
    primed: dict[str, Any] = field(default_factory=dict)  # stateful defences, warmed up

    @property
    def ids(self) -> list[int]:
        return list(range(self.n))

    @property
    def f(self) -> int:
        return self.n // 5

    @property
    def f_bulyan(self) -> int:
        # Bulyan needs n >= 4f + 3.
        return max(0, min((self.n - 3) // 4, self.n // 5))

    @classmethod
    def make(cls, n: int, d: int, seed: int) -> Cell:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + n * 7919 + d)
        updates = torch.randn(n, d, generator=gen, dtype=torch.float32)
        updates[: n // 5] *= BOOST
        server_update = torch.randn(d, generator=gen, dtype=torch.float32)
        max_norm = float(torch.linalg.vector_norm(updates, dim=1).median())
        rows = updates.numpy()  # shares memory with `updates`
        results = [([rows[i]], 1) for i in range(n)]
        return cls(n, d, seed, updates, results, server_update, max_norm)


@dataclass(frozen=True)
class Rule:
    """An Oleander rule, how to call it on a cell, and Flower's equivalent if any."""

    name: str
    module: str
    function: str
    call: Callable[[Callable[..., Any], Cell], Any]
    settings: Callable[[Cell], str]
    flower: Callable[[Cell], Any] | None = None
    flower_name: str = ""
    # Vector pairs Flower's pairwise-distance loop visits: to estimate a call's time.
    flower_pairs: Callable[[Cell], int] | None = None


def _bulyan_pairs(cell: Cell) -> int:
    # aggregate_bulyan runs aggregate_krum n - 2f times, on n, n-1, ... rows.
    theta = cell.n - 2 * cell.f_bulyan
    return sum(k * k for k in range(cell.n - theta + 1, cell.n + 1))


def _multikrum_keep(cell: Cell) -> int:
    return cell.multikrum_keep if cell.multikrum_keep is not None else cell.n - cell.f


def _seeded(kind: str, server_round: int) -> torch.Generator:
    return torch.Generator().manual_seed(server_round)


def _defended(make: Callable[[], Any], cell: Cell, **kwargs: Any) -> Any:
    """One round of a defence that carries its detection, as a run calls it (the
    detector, the kept rows, the rule), told f = n // 5."""
    defence = Defence(make(), num_malicious=cell.f, generator=_seeded, **kwargs)
    return defence(cell.updates, cell.ids, server_round=1, global_model=cell.server_update)


def _fldetector(cls: Callable[..., Any], cell: Cell) -> Any:
    """A round of FLDetector in its steady state: the window full, every client scored,
    the gap statistic run (``remove=False``: it keeps detecting). The first call warms it
    up over ``FLDETECTOR_WINDOW + 2`` rounds of the cell's rows, slightly changed."""
    if "fldetector" not in cell.primed:
        detector = cls(window=FLDETECTOR_WINDOW, remove=False)
        defence = Defence(fedavg, detect=(detector,), num_malicious=cell.f, generator=_seeded)
        model = torch.zeros(cell.d)
        for r in range(1, FLDETECTOR_WINDOW + 3):
            rows = cell.updates * (1.0 + 0.01 * r)
            outcome = defence(rows, cell.ids, server_round=r, global_model=model)
            model = model + outcome.step
        cell.primed["fldetector"] = [defence, model, FLDETECTOR_WINDOW + 3]
    defence, model, r = cell.primed["fldetector"]
    outcome = defence(cell.updates, cell.ids, server_round=r, global_model=model)
    cell.primed["fldetector"][1:] = [model + outcome.step, r + 1]
    return Aggregate(update=outcome.step, weights=outcome.weights)


def _fresh_state() -> Any:
    return DefenceState().stage("rule")


RULES: tuple[Rule, ...] = (
    Rule(
        "fedavg",
        "strategies.mean",
        "fedavg",
        call=lambda fn, c: fn(c.updates),
        settings=lambda c: "uniform weights",
        flower=lambda c: flower.aggregate(c.results),
        flower_name="aggregate",
    ),
    Rule(
        "krum",
        "strategies.krum",
        "krum",
        call=lambda fn, c: fn(c.updates, c.f),
        settings=lambda c: f"f={c.f}",
        flower=lambda c: flower.aggregate_krum(c.results, c.f, 0),
        flower_name="aggregate_krum",
        flower_pairs=lambda c: c.n * c.n,
    ),
    Rule(
        "multikrum",
        "strategies.krum",
        "multikrum",
        call=lambda fn, c: fn(c.updates, c.f),
        settings=lambda c: f"f={c.f}, m={_multikrum_keep(c)}",
        flower=lambda c: flower.aggregate_krum(c.results, c.f, _multikrum_keep(c)),
        flower_name="aggregate_krum(to_keep=m)",
        flower_pairs=lambda c: c.n * c.n,
    ),
    Rule(
        "median",
        "strategies.coordinate",
        "median",
        call=lambda fn, c: fn(c.updates),
        settings=lambda c: "",
        flower=lambda c: flower.aggregate_median(c.results),
        flower_name="aggregate_median",
    ),
    Rule(
        "trimmed_mean",
        "strategies.coordinate",
        "trimmed_mean",
        call=lambda fn, c: fn(c.updates, TRIM_BETA),
        settings=lambda c: f"beta={TRIM_BETA}",
        flower=lambda c: flower.aggregate_trimmed_avg(c.results, TRIM_BETA),
        flower_name="aggregate_trimmed_avg",
    ),
    Rule(
        "bulyan",
        "strategies.bulyan",
        "bulyan",
        call=lambda fn, c: fn(c.updates, c.f_bulyan),
        settings=lambda c: (
            f"f={c.f_bulyan}" + ("" if c.f_bulyan == c.f else f" (n >= 4f+3; not {c.f})")
        ),
        flower=lambda c: flower.aggregate_bulyan(
            list(c.results), c.f_bulyan, flower.aggregate_krum, to_keep=0
        ),
        flower_name="aggregate_bulyan(krum)",
        flower_pairs=_bulyan_pairs,
    ),
    Rule(
        "geometric_median",
        "strategies.geometric_median",
        "geometric_median",
        call=lambda fn, c: fn(c.updates),
        settings=lambda c: "defaults (nu=0.1)",
    ),
    Rule(
        "centered_clipping",
        "strategies.clipping",
        "centered_clipping",
        call=lambda fn, c: fn(c.updates, CLIP_TAU, CLIP_ITERATIONS),
        settings=lambda c: f"tau={CLIP_TAU:g}, L={CLIP_ITERATIONS}",
    ),
    Rule(
        "norm_bound",
        "strategies.clipping",
        "norm_bound",
        call=lambda fn, c: fn(c.updates, c.max_norm),
        settings=lambda c: "M=median norm",
    ),
    Rule(
        "fltrust",
        "strategies.fltrust",
        "fltrust",
        call=lambda fn, c: fn(c.updates, c.server_update),
        settings=lambda c: "random g0",
    ),
    Rule(
        "foolsgold",
        "strategies.foolsgold",
        "FoolsGold",
        call=lambda cls, c: cls()(c.updates, client_ids=c.ids, state=_fresh_state()),
        settings=lambda c: "kappa=1, first round",
    ),
    Rule(
        "rlr",
        "strategies.rlr",
        "robust_learning_rate",
        call=lambda fn, c: fn(c.updates, RLR_THRESHOLD),
        settings=lambda c: f"theta={RLR_THRESHOLD}",
    ),
    Rule(
        "adaptive_clipping",
        "strategies.adaptive_clipping",
        "AdaptiveClipping",
        call=lambda cls, c: cls()(c.updates, state=_fresh_state()),
        settings=lambda c: "C0=0.1",
    ),
    Rule(
        "weak_dp",
        "strategies.clipping",
        "norm_bound",
        call=lambda fn, c: fn(
            c.updates, c.max_norm, noise_std=WEAK_DP_STD, generator=torch.Generator()
        ),
        settings=lambda c: f"M=median norm, sigma={WEAK_DP_STD}",
    ),
    Rule(
        "flame",
        "strategies.flame",
        "Flame",
        call=lambda cls, c: _defended(cls, c),
        settings=lambda c: "HDBSCAN + clip + noise",
    ),
    Rule(
        "dnc",
        "strategies.dnc",
        "DnC",
        call=lambda cls, c: _defended(cls, c),
        settings=lambda c: f"f={c.f}, 5 x b=1e4",
    ),
    Rule(
        "signguard",
        "strategies.signguard",
        "SignGuard",
        call=lambda cls, c: _defended(cls, c),
        settings=lambda c: "10% coordinates",
    ),
    Rule(
        "fldetector",
        "strategies.fldetector",
        "FLDetector",
        call=_fldetector,
        settings=lambda c: f"N={FLDETECTOR_WINDOW}, steady state, + fedavg",
    ),
    Rule(
        "nnm",
        "strategies.preaggregation",
        "nearest_neighbor_mixing",
        call=lambda fn, c: fn(c.updates, c.f),
        settings=lambda c: f"f={c.f}",
    ),
    Rule(
        "bucketing",
        "strategies.preaggregation",
        "bucketing",
        call=lambda fn, c: fn(c.updates, BUCKET_SIZE, torch.Generator().manual_seed(c.seed)),
        settings=lambda c: f"s={BUCKET_SIZE}",
    ),
)
RULE_NAMES = tuple(r.name for r in RULES)


@dataclass
class Row:
    """One rule at one size: medians, counts and how its output compares to Flower's."""

    rule: str
    n: int
    d: int
    settings: str = ""
    oleander: list[float] = field(default_factory=list)
    flower: list[float] = field(default_factory=list)
    flower_estimate: float | None = None  # seconds, when Flower's call was not run
    has_flower: bool = False
    max_abs_diff: float | None = None
    note: str = ""

    @property
    def oleander_s(self) -> float | None:
        return statistics.median(self.oleander) if self.oleander else None

    @property
    def flower_s(self) -> float | None:
        return statistics.median(self.flower) if self.flower else None


# ---------------------------------------------------------------------------- timing


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _time_only(fn: Callable[[], Any]) -> float:
    seconds, out = _timed(fn)
    del out
    return seconds


def _flat(result: Any) -> np.ndarray:
    """The aggregated vector of an Oleander ``Aggregate``/``Mixed`` or a Flower NDArrays."""
    if isinstance(result, list):
        return np.asarray(result[0], dtype=np.float64).ravel()
    tensor = result.update if hasattr(result, "update") else result.updates
    return tensor.detach().to(torch.float64).numpy().ravel()


def _flower_pair_seconds(cell: Cell) -> float | None:
    """Seconds per vector pair of Flower's ``_compute_distances``, timed on a few rows."""
    compute = getattr(flower, "_compute_distances", None)
    if compute is None:
        return None
    m = min(cell.n, 6)
    weights = [w for w, _ in cell.results[:m]]
    return min(_time_only(lambda: compute(weights)) for _ in range(2)) / (m * m)


def _load(rule: Rule) -> Callable[..., Any]:
    return getattr(importlib.import_module(rule.module), rule.function)


def measure(rule: Rule, cell: Cell, args: argparse.Namespace, pair_s: float | None) -> Row:
    row = Row(rule.name, cell.n, cell.d, has_flower=rule.flower is not None)
    try:
        fn = _load(rule)
    except (ImportError, AttributeError) as exc:
        row.note = f"not available: {exc}"
        return row
    try:
        warm = rule.call(fn, cell)  # warm-up, untimed; its output is compared below
    except Exception as exc:  # report and go on: one broken rule shouldn't sink the run
        row.note = f"failed: {type(exc).__name__}: {exc}"
        return row
    if rule.name == "multikrum":
        weights = getattr(warm, "weights", None)
        cell.multikrum_keep = int((weights > 0).sum()) if weights is not None else None
    row.settings = rule.settings(cell)

    flower_more = 0
    if rule.flower is not None and not args.no_flower:
        estimate = pair_s * rule.flower_pairs(cell) if pair_s and rule.flower_pairs else None
        if estimate is not None and estimate > args.max_ref_seconds:
            row.flower_estimate = estimate
            row.note = (
                f"Flower not run: estimated {estimate:.0f} s a call "
                f"> --max-ref-seconds {args.max_ref_seconds:g}"
            )
        else:
            first, reference = _timed(lambda: rule.flower(cell))
            row.max_abs_diff = float(np.max(np.abs(_flat(warm) - _flat(reference))))
            del reference
            if first < SLOW_REFERENCE_S:
                flower_more = args.repeat  # the first call was the warm-up
            else:
                row.flower.append(first)
                flower_more = max(1, min(args.repeat, int(args.ref_budget // first))) - 1
    del warm

    # Interleaved, so that a slow spell of the machine hits both sides alike.
    for i in range(max(args.repeat, flower_more)):
        if i < args.repeat:
            row.oleander.append(_time_only(lambda: rule.call(fn, cell)))
        if i < flower_more:
            row.flower.append(_time_only(lambda: rule.flower(cell)))
    return row


def measure_baselines(cell: Cell, repeat: int, sums: list[float], grams: list[float]) -> None:
    x = cell.updates
    _time_only(lambda: x.sum(0))
    _time_only(lambda: x @ x.T)
    for _ in range(repeat):
        sums.append(_time_only(lambda: x.sum(0)))
        grams.append(_time_only(lambda: x @ x.T))


# ---------------------------------------------------------------------------- report


def _fmt_d(d: int) -> str:
    exponent = math.log10(d)
    return f"1e{exponent:.0f}" if exponent.is_integer() else str(d)


@dataclass
class CellResult:
    cell_n: int
    cell_d: int
    sum_s: float
    gram_s: float
    rows: list[Row]


def table_lines(results: Sequence[CellResult]) -> list[str]:
    header = [
        "rule",
        "n",
        "d",
        "settings",
        "Oleander",
        "Flower",
        "Flower ÷ Oleander",
        "Oleander ÷ sum",
        "Oleander ÷ Gram",
        "reps O/F",
        "max abs diff",
    ]
    body: list[list[str]] = []
    for res in results:
        n, d = str(res.cell_n), _fmt_d(res.cell_d)
        for label, seconds in (("(sum pass)", res.sum_s), ("(Gram X Xᵀ)", res.gram_s)):
            body.append([label, n, d, "reference", fmt_s(seconds)] + ["—"] * 4 + ["", "—"])
        for row in res.rows:
            ole = row.oleander_s
            if ole is None:
                body.append([row.rule, n, d, "(see below)"] + ["—"] * 7)
                continue
            if row.flower_s is not None:
                fl, speedup = fmt_s(row.flower_s), fmt_ratio(row.flower_s / ole)
            elif row.flower_estimate is not None:
                fl = f"~{fmt_s(row.flower_estimate)} (est.)"
                speedup = f"~{fmt_ratio(row.flower_estimate / ole)} (est.)"
            else:
                fl, speedup = ("not run" if row.has_flower else "none"), "—"
            reps = (
                f"{len(row.oleander)}/{len(row.flower)}" if row.flower else str(len(row.oleander))
            )
            diff = "—" if row.max_abs_diff is None else f"{row.max_abs_diff:.1e}"
            body.append(
                [
                    row.rule,
                    n,
                    d,
                    row.settings,
                    fmt_s(ole),
                    fl,
                    speedup,
                    fmt_ratio(ole / res.sum_s),
                    fmt_ratio(ole / res.gram_s),
                    reps,
                    diff,
                ]
            )
    return table(header, body, right={1, 4, 5, 6, 7, 8, 9, 10})


def row_notes(results: Sequence[CellResult]) -> list[str]:
    """One line per rule and size that was not measured, or whose Flower call was not run."""
    return [
        f"- {row.rule} at n={row.n}, d={_fmt_d(row.d)}: {row.note}"
        for res in results
        for row in res.rows
        if row.note
    ]


def goal_lines(results: Sequence[CellResult]) -> list[str]:
    cell = next((r for r in results if (r.cell_n, r.cell_d) == (GOAL_N, GOAL_D)), None)
    where = f"n={GOAL_N}, d={_fmt_d(GOAL_D)}"
    if cell is None:
        return [f"n/a   goals are measured at {where}, which this run did not include"]
    rows = {r.rule: r for r in cell.rows}
    lines: list[str] = []

    def speed_goal(rule: str, label: str, at_least: float, wording: str) -> None:
        row = rows.get(rule)
        if row is None or row.oleander_s is None or row.flower_s is None:
            why = "not measured" if row is None else (row.note or "Flower's call not run")
            lines.append(f"n/a   {label} {wording} at {where}: {why}")
            return
        ratio = row.flower_s / row.oleander_s
        verdict = "PASS" if ratio >= at_least else "MISS"
        lines.append(
            f"{verdict}  {label} {wording} at {where}: {ratio:.2f}x "
            f"({fmt_s(row.oleander_s)} vs {fmt_s(row.flower_s)})"
        )

    faster = f">= {GOAL_KRUM_SPEEDUP:g}x faster than Flower"
    speed_goal("krum", "Krum", GOAL_KRUM_SPEEDUP, faster)
    speed_goal("multikrum", "Multi-Krum", GOAL_KRUM_SPEEDUP, faster)
    speed_goal("median", "Median", GOAL_COORDINATE_SPEEDUP, "no slower than Flower")
    speed_goal("trimmed_mean", "Trimmed mean", GOAL_COORDINATE_SPEEDUP, "no slower than Flower")

    multikrum = rows.get("multikrum")
    base = multikrum.oleander_s if multikrum is not None else None
    for rule, goal in [
        *((r, GOAL_VS_MULTIKRUM) for r in SECOND_WAVE),
        ("fldetector", GOAL_FLDETECTOR_VS_MULTIKRUM),
    ]:
        row = rows.get(rule)
        label = f"{rule} within {goal:g}x Multi-Krum's time at {where}"
        if row is None or row.oleander_s is None or base is None:
            lines.append(f"n/a   {label}: not measured")
            continue
        ratio = row.oleander_s / base
        verdict = "PASS" if ratio <= goal else "MISS"
        lines.append(f"{verdict}  {label}: {ratio:.2f}x ({fmt_s(row.oleander_s)})")

    timed_rows = [r for r in cell.rows if r.oleander_s is not None]
    missing = [r for r in RULE_NAMES if r not in {t.rule for t in timed_rows}]
    if not timed_rows:
        lines.append(f"n/a   no rule above {GOAL_MAX_SECONDS:g} s at {where}: nothing measured")
    else:
        slowest = max(timed_rows, key=lambda r: r.oleander_s or 0.0)
        slow = [r.rule for r in timed_rows if (r.oleander_s or 0.0) > GOAL_MAX_SECONDS]
        verdict = "MISS" if slow else "PASS"
        detail = f"slowest {slowest.rule} {fmt_s(slowest.oleander_s)}"
        if slow:
            detail += f"; above: {', '.join(slow)}"
        if missing:
            detail += f"; not measured: {', '.join(missing)}"
        lines.append(f"{verdict}  no rule above {GOAL_MAX_SECONDS:g} s at {where}: {detail}")
    return lines


def notes(args: argparse.Namespace) -> list[str]:
    return [
        f"- Input: float32 `(n, d)` rows drawn N(0, 1), the first n // 5 scaled by {BOOST:g} "
        f"(boosted attackers); seed {args.seed}. Flower gets the same rows as "
        "`[([row], 1), ...]`, built once outside the timed region.",
        f"- Times are medians: Oleander's of {args.repeat} runs after one untimed warm-up. "
        f"A Flower call under {SLOW_REFERENCE_S:g} s is warmed up and repeated as often; a "
        f"slower one counts its first call and repeats only within {args.ref_budget:g} s "
        "(reps O/F gives both counts); one estimated above "
        f"{args.max_ref_seconds:g} s is not run, and its time is estimated from Flower's own "
        "pairwise-distance loop timed on 6 rows (marked est.).",
        "- Flower ÷ Oleander above 1: Oleander is faster. Oleander ÷ sum and ÷ Gram: "
        "Oleander's time in units of one pass over the matrix (`updates.sum(0)`) and one Gram "
        "product (`updates @ updates.T`), timed in the same run (medians, taken before and "
        "after each size's rules); the reference for the rules Flower has no equivalent for.",
        "- f = n // 5, except Bulyan: it needs n >= 4f + 3, so f = min((n - 3) // 4, n // 5). "
        "Multi-Krum's m (Flower's to_keep) is the number of rows Oleander's multikrum kept. "
        "max abs diff: largest coordinate difference between the two results (float32 "
        "rounding when both compute the same thing).",
    ]


# ---------------------------------------------------------------------------- main


def _int_list(text: str) -> list[int]:
    try:
        values = [int(float(v)) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas: {text}") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers: {text}")
    return values


def _rule_list(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in names if v not in RULE_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown rule(s) {', '.join(unknown) or '(none)'}: choose from {', '.join(RULE_NAMES)}"
        )
    return names


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.aggregators",
        description="Time Oleander's aggregation rules against Flower's on the same input.",
    )
    parser.add_argument("--repeat", type=int, default=None, help="repetitions (default 5)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: n=20, d=1e5, 3 repetitions"
    )
    parser.add_argument(
        "--rules", type=_rule_list, default=list(RULE_NAMES), help="comma-separated subset"
    )
    parser.add_argument("--n", type=_int_list, default=None, help="clients (default 20,100)")
    parser.add_argument(
        "--d", type=_int_list, default=None, help="dimensions (default 100000,1000000)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--ref-budget",
        type=float,
        default=25.0,
        help="seconds a slow Flower reference may take per rule and size (default 25)",
    )
    parser.add_argument(
        "--max-ref-seconds",
        type=float,
        default=60.0,
        help="skip a Flower call estimated above this, reporting the estimate (default 60)",
    )
    parser.add_argument("--no-flower", action="store_true", help="time Oleander's rules only")
    parser.add_argument(
        "--write", action="store_true", help=f"replace '## {SECTION_TITLE}' in --output"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="BENCHMARKS.md path")
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 3 if args.quick else 5
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    if args.n is None:
        args.n = [20] if args.quick else [20, 100]
    if args.d is None:
        args.d = [100_000] if args.quick else [100_000, 1_000_000]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    command = command_line("benchmarks.aggregators", argv)
    machine = machine_line()
    print(f"$ {command}")
    print(f"machine: {machine}", flush=True)
    rules = [r for r in RULES if r.name in args.rules]
    load_before = load_average()
    started = time.perf_counter()
    cpu_started = time.process_time()

    results: list[CellResult] = []
    for n in args.n:
        for d in args.d:
            cell = Cell.make(n, d, args.seed)
            print(f"[n={n}, d={_fmt_d(d)}]", end="", flush=True)
            pair_s = None if args.no_flower else _flower_pair_seconds(cell)
            sums: list[float] = []
            grams: list[float] = []
            measure_baselines(cell, args.repeat, sums, grams)
            rows = []
            for rule in rules:
                print(f" {rule.name}", end="", flush=True)
                rows.append(measure(rule, cell, args, pair_s))
            measure_baselines(cell, args.repeat, sums, grams)
            print(flush=True)
            results.append(
                CellResult(n, d, statistics.median(sums), statistics.median(grams), rows)
            )
            del cell
            gc.collect()

    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    # Other processes competing for the cores skew absolute times (ratios less so).
    load = (
        f"load average (1 min) {load_before} before, {load_average()} after; this process "
        f"used {cpu:.0f} CPU-s in {elapsed:.0f} s"
    )
    table = table_lines(results)
    table_notes = row_notes(results)
    goals = goal_lines(results)
    print()
    print("\n".join(table))
    print()
    if table_notes:
        print("\n".join(table_notes))
        print()
    print("\n".join(goals))
    print(f"\n{load}")
    print(f"total {elapsed:.0f} s; command: {command}")

    if args.write:
        today = datetime.date.today().isoformat()
        section = [
            f"## {SECTION_TITLE}",
            "",
            f"`{command}` on {today}, {elapsed:.0f} s in all.",
            "",
            f"Machine: {machine}; {load}.",
            "",
            *notes(args),
            "",
            *table,
            "",
            *([*table_notes, ""] if table_notes else []),
            "Goals (from the issue):",
            "",
            "```",
            *goals,
            "```",
        ]
        write_section(args.output, SECTION_TITLE, section, machine)
        print(f"wrote the '{SECTION_TITLE}' section of {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
