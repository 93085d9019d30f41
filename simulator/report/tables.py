"""Runs as rows (``results.csv`` and the long ``rounds.csv``), rows as means, standard
deviations and confidence intervals over seeds (``Cell``), all gathered in the ``Report``
the outputs are made from.
"""

from __future__ import annotations

import functools
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from simulator.report.collect import Run, Sweep, _float, _get, _int
from simulator.report.settings import (
    SettingRow,
    effective_number,
    effective_of,
    effective_rows,
    flatten,
    settings_rows,
)
from simulator.schema import GROUPS

METRICS = {"final_accuracy": "Final accuracy", "best_accuracy": "Best accuracy"}
# Columns read from the config (knowledge: the summary's, which fills in an attack's default).
# A config group's other keys are compared only between runs that chose the same option.
CONFIG_COLUMNS = (
    "dataset",
    "partition",
    "model",
    "strategy",
    "pre",
    "detect",
    "attack",
    "knowledge",
    "malicious_fraction",
    "num_clients",
    "clients_per_round",
    "num_rounds",
    "seed",
)
CONFIG_KEYS = {
    "dataset": "dataset.name",
    "partition": "partition.name",
    "model": "model.name",
    "strategy": "strategy.name",
    "pre": "pre.name",
    "detect": "detect.name",
    "attack": "attack.name",
    "knowledge": "attack.knowledge",
    "malicious_fraction": "malicious_fraction",
    "num_clients": "num_clients",
    "clients_per_round": "clients_per_round",
    "num_rounds": "num_rounds",
    "seed": "seed",
}
INT_COLUMNS = ("num_clients", "clients_per_round", "num_rounds", "seed")
# The attack success rate over the attack window (start_round..stop_round): its last, its
# largest and its mean value; final_attack_success_rate is the run's last round's.
SUCCESS_STATS = ("final", "max", "mean")
SUCCESS_COLUMNS = tuple(f"attack_success_rate_{stat}" for stat in SUCCESS_STATS)
SUCCESS_TITLES = {
    "final": "last round of the attack window",
    "max": "largest over the attack window",
    "mean": "mean over the attack window",
}
RESULT_COLUMNS = (
    "final_accuracy",
    "best_accuracy",
    "best_round",
    "final_attack_success_rate",
    *SUCCESS_COLUMNS,
    "detector",
    "mean_detection_precision",
    "mean_detection_recall",
    "mean_detection_fpr",
    "backdoor_lifespan",
    "wall_seconds",
    "config_digest",
)
# Columns that, with the attack, tell one table (and one plot panel) from another.
SETTING_COLUMNS = (
    "dataset",
    "partition",
    "model",
    "num_clients",
    "clients_per_round",
    "num_rounds",
)
# Keys that never change a run's numbers (simulator.run_names.NON_RESULT_KEYS), and the seed,
# which the tables average over: a difference in these does not split a table.
UNCOMPARED_KEYS = ("engine", "progress", "verbose", "seed", "hydra")
ROUND_METRICS = ("test_accuracy",)


def config_columns(run: Run) -> dict[str, Any]:
    """The columns that identify a run, from its config (and the summary's knowledge)."""
    row = {column: _get(run.config, key) for column, key in CONFIG_KEYS.items()}
    threat = run.summary.get("threat_model")
    if isinstance(threat, dict) and threat.get("knowledge") is not None:
        row["knowledge"] = threat["knowledge"]
    row["malicious_fraction"] = _float(row["malicious_fraction"])
    for column in INT_COLUMNS:
        row[column] = _int(row[column])
    return row


def varying_keys(runs: Sequence[Run]) -> tuple[str, ...]:
    """Config keys outside the standard columns whose values differ between the runs.

    A group's own keys (``strategy.beta``) are compared only between runs that chose the
    same option, so choosing another rule does not count as varying its settings. Such
    keys become extra columns and split the tables: runs that differ in them (``lr``) are
    never averaged together as if they were seeds.
    """
    covered = set(CONFIG_KEYS.values())
    contexts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        flat = {
            k: json.dumps(v, sort_keys=True, default=str)
            for k, v in flatten(run.config).items()
            if k.split(".")[0] not in UNCOMPARED_KEYS and k not in covered
        }
        for top in {k.split(".")[0] for k in flat}:
            option = _get(run.config, f"{top}.name") if top in GROUPS else None
            contexts[f"{top}={option}"].append(
                {k: v for k, v in flat.items() if k.split(".")[0] == top}
            )
    varying = set()
    for flats in contexts.values():
        for key in set().union(*flats):
            if len({flat.get(key) for flat in flats}) > 1:
                varying.add(key)
    return tuple(sorted(varying))


def success_stats(run: Run) -> dict[str, float | None]:
    """Final, largest and mean attack success rate over the attack window's rounds that
    have one: the summary's record, else computed from rounds.csv and the threat model's
    window (runs of older versions); all None when the run has no success metric."""
    record = run.summary.get("attack_success_rate")
    if isinstance(record, dict):
        return {stat: _float(record.get(stat)) for stat in SUCCESS_STATS}
    none: dict[str, float | None] = dict.fromkeys(SUCCESS_STATS)
    if "attack_success_rate" in run.summary:  # recorded as null: no success metric
        return none
    threat = run.summary.get("threat_model")
    threat = threat if isinstance(threat, dict) else {}
    start = _int(threat.get("start_round")) or 1
    stop = _int(threat.get("stop_round"))
    values = [
        value
        for row in run.rounds
        if (r := _int(row["round"]) or 0) >= max(start, 1) and (stop is None or r <= stop)
        if (value := _float(row.get("attack_success_rate"))) is not None
    ]
    if not values:
        return none
    return {"final": values[-1], "max": max(values), "mean": statistics.fmean(values)}


def is_detector(run: Run) -> bool:
    """Whether the run's defence singles out clients: the summary's ``detector``; for runs
    of older versions, whether any round flagged a client (recall or FPR above 0)."""
    flag = run.summary.get("detector")
    if isinstance(flag, bool):
        return flag
    return any(
        (_float(row.get("detection_recall")) or 0.0) > 0
        or (_float(row.get("detection_fpr")) or 0.0) > 0
        for row in run.rounds
    )


def _mean_defined(rows: Iterable[dict[str, str]], column: str) -> float | None:
    values = [
        v
        for row in rows
        if (_int(row["round"]) or 0) > 0
        if (v := _float(row.get(column))) is not None
    ]
    return statistics.fmean(values) if values else None


def _lifespan(record: Any) -> int | None:
    """Rounds a backdoor outlived its attack: the measured value, or the rounds it was
    still above the threshold when the run ended (a lower bound); None if undefined."""
    if not isinstance(record, dict):
        return None
    value = record.get("rounds")
    value = record.get("at_least") if value is None else value
    return _int(value)


def setting_columns(runs: Sequence[Run], extras: Sequence[str]) -> tuple[str, ...]:
    """The settings of every table (``settings_rows``) as results.csv columns, besides the
    identifying columns and ``extras``."""
    taken = {*CONFIG_KEYS.values(), *extras}
    keys = {row.source for row in settings_rows(runs, always=("attack",))}
    return tuple(sorted(k for k in keys if k and k not in taken))


def effective_columns(runs: Sequence[Run]) -> tuple[str, ...]:
    """``effective.<key>`` for every effective parameter any run recorded."""
    return tuple(sorted({f"effective.{k}" for run in runs for k in effective_of(run)}))


def results_rows(
    runs: Sequence[Run], extras: Sequence[str], settings: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """One row per finished run: its identifying columns, ``extras``, the ``settings``
    columns, its effective parameters and its results."""
    rows = []
    for run in runs:
        summary = run.summary
        row: dict[str, Any] = {"run": run.name, **config_columns(run)}
        row.update({key: _get(run.config, key) for key in (*extras, *settings)})
        row.update({f"effective.{k}": effective_number(v) for k, v in effective_of(run).items()})
        detector = is_detector(run)
        stats = success_stats(run)
        row.update(
            final_accuracy=_float(summary.get("final_accuracy")),
            best_accuracy=_float(summary.get("best_accuracy")),
            best_round=_int(summary.get("best_round")),
            final_attack_success_rate=_float(summary.get("final_attack_success_rate")),
            **{f"attack_success_rate_{k}": v for k, v in stats.items()},
            detector=int(detector),
            mean_detection_precision=_detection_mean(run, detector, "detection_precision"),
            mean_detection_recall=_detection_mean(run, detector, "detection_recall"),
            mean_detection_fpr=_detection_mean(run, detector, "detection_fpr"),
            backdoor_lifespan=_lifespan(summary.get("backdoor_lifespan")),
            wall_seconds=_float(summary.get("wall_seconds")),
            config_digest=summary.get("config_digest"),
        )
        rows.append(row)
    return rows


def _detection_mean(run: Run, detector: bool, column: str) -> float | None:
    """Mean over the rounds where defined; none for a defence that flags no one."""
    return _mean_defined(run.rounds, column) if detector else None


def rounds_rows(
    runs: Sequence[Run], extras: Sequence[str]
) -> tuple[list[str], list[dict[str, Any]]]:
    """The long table: one row per finished run and round, every rounds.csv column as read."""
    round_columns: dict[str, None] = {}
    for run in runs:
        round_columns.update(dict.fromkeys(run.round_columns))
    identity = ["run", *CONFIG_COLUMNS, *extras]
    columns = identity + [c for c in round_columns if c not in identity]
    rows = []
    for run in runs:
        ident: dict[str, Any] = {"run": run.name, **config_columns(run)}
        ident.update({key: _get(run.config, key) for key in extras})
        rows.extend({**row, **ident} for row in run.rounds)
    return columns, rows


# Aggregate -----------------------------------------------------------------------------

Setting = tuple[Any, ...]
Point = tuple[Setting, str, float]


@dataclass(frozen=True)
class Cell:
    """The values of one (setting, rule, fraction) point over seeds; ``runs`` counts every
    run at the point, ``values`` only those with a value (a diverged run has none)."""

    values: tuple[float, ...]
    runs: int

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        # Sample standard deviation (n - 1): the seeds are a sample of the seeds there are.
        return statistics.stdev(self.values) if len(self.values) > 1 else math.nan

    @property
    def ci(self) -> float:
        """Half-width of the 95% confidence interval of the mean (Student t, n - 1
        degrees of freedom); NaN for fewer than two values."""
        n = len(self.values)
        return t_quantile(n - 1) * self.std / math.sqrt(n) if n > 1 else math.nan

    def text(self) -> str:
        """``0.912 ± 0.010 (sd 0.004, n=3)``: ± the 95% CI; ``n=2 of 3`` when a run had
        no value; ``n=1, no CI`` for one value."""
        if not self.values:
            return f"– (n=0 of {self.runs})"
        n = len(self.values)
        count = f"n={n}" if n == self.runs else f"n={n} of {self.runs}"
        if n == 1:
            return f"{self.mean:.3f} ({count}, no CI)"
        return f"{self.mean:.3f} ± {self.ci:.3f} (sd {self.std:.3f}, {count})"


def t_quantile(df: int, level: float = 0.95) -> float:
    """Student's t quantile for a two-sided ``level`` interval (scipy, imported here: only
    tables with two or more seeds need it)."""
    from scipy.special import stdtrit

    return float(stdtrit(df, 0.5 + level / 2))


def rule_of(row: dict[str, Any]) -> str:
    """The aggregation rule with its detector and pre-aggregation step in front,
    ``nnm+krum`` (runs of a version without a ``detect`` group have none)."""
    stages = (row.get("detect"), row.get("pre"), row["strategy"])
    return "+".join(str(s) for s in stages if s not in (None, "none"))


def setting_of(row: dict[str, Any], extras: Sequence[str]) -> Setting:
    """What, besides rule, fraction and seed, tells one table from another."""
    return (
        row["attack"],
        row["knowledge"],
        *(_hashable(row.get(c)) for c in (*SETTING_COLUMNS, *extras)),
    )


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value


def _fraction_key(value: float | None) -> float:
    return math.nan if value is None else round(value, 9)


def deduplicate(
    rows: Sequence[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Rows with distinct config digests (the first of each), and (duplicate, first) names.

    The same config and seed run twice gives the same numbers; counting both would make
    one seed look like two.
    """
    first: dict[str, str] = {}
    kept, duplicates = [], []
    for row in rows:
        digest = row.get("config_digest")
        if digest and digest in first:
            duplicates.append((row["run"], first[digest]))
            continue
        if digest:
            first[digest] = row["run"]
        kept.append(row)
    return kept, duplicates


def aggregate(
    rows: Sequence[dict[str, Any]], metric: str, extras: Sequence[str]
) -> dict[Point, Cell]:
    """``metric`` over seeds for each (setting, rule, malicious fraction)."""
    grouped: dict[Point, list[float | None]] = defaultdict(list)
    for row in rows:
        point = (setting_of(row, extras), rule_of(row), _fraction_key(row["malicious_fraction"]))
        grouped[point].append(_float(row.get(metric)))
    return {
        point: Cell(tuple(v for v in values if v is not None), len(values))
        for point, values in grouped.items()
    }


def round_curves(
    rows: Sequence[dict[str, Any]],
    runs: dict[str, Run],
    extras: Sequence[str],
    column: str = "test_accuracy",
) -> dict[Point, dict[int, Cell]]:
    """``column`` of rounds.csv by round over seeds, for each (setting, rule, fraction)."""
    by_round: dict[Point, dict[int, list[float | None]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        point = (setting_of(row, extras), rule_of(row), _fraction_key(row["malicious_fraction"]))
        for record in runs[row["run"]].rounds:
            value = _float(record.get(column))
            if column != "test_accuracy" and value is None:
                continue  # the success rate is not measured in every round (round 0)
            by_round[point][int(_float(record["round"]) or 0)].append(value)
    return {
        point: {
            r: Cell(tuple(v for v in values if v is not None), len(values))
            for r, values in sorted(curve.items())
        }
        for point, curve in by_round.items()
    }


def _rule_order(rule: str) -> tuple[int, str]:
    return (0 if rule == "fedavg" else 1, rule)


def _attack_order(setting: Setting) -> tuple[Any, ...]:
    """No attack first, then by name, knowledge and the other columns."""
    return (setting[0] != "none", *(("" if v is None else str(v)) for v in setting))


@dataclass
class Report:
    """Everything the outputs are made from."""

    runs: list[Run]
    rows: list[dict[str, Any]]
    extras: tuple[str, ...]
    metric: str
    cells: dict[Point, Cell]
    success_stats: dict[str, dict[Point, Cell]]  # SUCCESS_STATS over the attack window
    detectors: dict[Point, bool]  # whether a run at the point singles out clients
    precision: dict[Point, Cell]  # detection precision, mean over rounds
    recall: dict[Point, Cell]  # detection recall, mean over rounds
    fpr: dict[Point, Cell]  # benign clients flagged, mean over rounds
    lifespan: dict[Point, Cell]  # rounds a backdoor outlived its attack
    curves: dict[Point, dict[int, Cell]]
    success_curves: dict[Point, dict[int, Cell]]
    duplicates: list[tuple[str, str]]
    shared: dict[str, Any]
    split_by: tuple[str, ...]
    heatmap_fraction: float | None
    command: str
    setting_columns: tuple[str, ...] = ()
    effective_columns: tuple[str, ...] = ()
    sweeps: tuple[Sweep, ...] = ()
    never_started: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (sweep, overrides)
    latex: bool = False
    plots: tuple[str, ...] = ()  # the PNGs drawn (simulator.report.plots.plots_of)

    @property
    def finished(self) -> list[Run]:
        return [r for r in self.runs if r.status == "finished"]

    def section_runs(self, setting: Setting) -> list[Run]:
        """The finished runs (duplicates left out) a section's tables are made from."""
        names = {row["run"] for row in self.kept if setting_of(row, self.extras) == setting}
        return [r for r in self.finished if r.name in names]

    @property
    def kept(self) -> list[dict[str, Any]]:
        dropped = {dup for dup, _ in self.duplicates}
        return [row for row in self.rows if row["run"] not in dropped]

    @functools.cached_property
    def common_settings(self) -> list[SettingRow]:
        """Settings with one value in every finished run: the core ones, those that differ
        from the defaults and the partition's own."""
        return [r for r in settings_rows(self.finished) if r.uniform]

    def section_settings(self, setting: Setting) -> list[SettingRow]:
        """The section's settings not already common to every run, its attack's own
        parameters always, then the parameters its runs found themselves."""
        common = {r.source for r in self.common_settings}
        runs = self.section_runs(setting)
        return [
            *settings_rows(runs, always=("attack",), skip=tuple(common)),
            *effective_rows(runs),
        ]

    @property
    def total_runs(self) -> int:
        """Runs found plus the sweep points never started: the sweeps' total."""
        return len(self.runs) + len(self.never_started)

    def warnings(self) -> dict[str, list[str]]:
        """Each warning a finished run's summary recorded, with the runs that recorded it."""
        found: dict[str, list[str]] = defaultdict(list)
        for run in self.finished:
            listed = run.summary.get("warnings")
            for warning in listed if isinstance(listed, list) else ():
                found[str(warning)].append(run.name)
        return dict(found)

    @property
    def settings(self) -> list[Setting]:
        return sorted({p[0] for p in self.cells}, key=_attack_order)

    @property
    def rules(self) -> list[str]:
        return sorted({p[1] for p in self.cells}, key=_rule_order)

    def fractions(self, setting: Setting | None = None) -> list[float]:
        return sorted({p[2] for p in self.cells if setting is None or p[0] == setting})

    def label(self, setting: Setting, short: bool = False) -> str:
        """``sign_flip (knowledge: partial)``, plus the columns that differ between tables."""
        attack, knowledge = setting[0], setting[1]
        named = dict(zip((*SETTING_COLUMNS, *self.extras), setting[2:], strict=True))
        parts = [f"{c}={_fmt(named[c])}" for c in self.split_by]
        if knowledge is not None:
            parts.insert(0, str(knowledge) if short else f"knowledge: {knowledge}")
        return f"{attack} ({', '.join(parts)})" if parts else str(attack)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "–" if value is None else str(value)
