"""Runs as rows (``results.csv`` and the long ``rounds.csv``), rows as means and standard
deviations over seeds (``Cell``), all gathered in the ``Report`` the outputs are made from.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from simulator.report.collect import Run, _float, _get, _int
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
RESULT_COLUMNS = (
    "final_accuracy",
    "best_accuracy",
    "best_round",
    "final_attack_success_rate",
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
# Keys that never change a run's numbers (simulator.main.NON_RESULT_KEYS), and the seed,
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


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict) and node:
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: node}


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
            for k, v in _flatten(run.config).items()
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


def results_rows(runs: Sequence[Run], extras: Sequence[str]) -> list[dict[str, Any]]:
    """One row per finished run: its identifying columns, ``extras`` and its results."""
    rows = []
    for run in runs:
        summary = run.summary
        row: dict[str, Any] = {"run": run.name, **config_columns(run)}
        row.update({key: _get(run.config, key) for key in extras})
        row.update(
            final_accuracy=_float(summary.get("final_accuracy")),
            best_accuracy=_float(summary.get("best_accuracy")),
            best_round=_int(summary.get("best_round")),
            final_attack_success_rate=_float(summary.get("final_attack_success_rate")),
            mean_detection_precision=_mean_defined(run.rounds, "detection_precision"),
            mean_detection_recall=_mean_defined(run.rounds, "detection_recall"),
            mean_detection_fpr=_mean_defined(run.rounds, "detection_fpr"),
            backdoor_lifespan=_lifespan(summary.get("backdoor_lifespan")),
            wall_seconds=_float(summary.get("wall_seconds")),
            config_digest=summary.get("config_digest"),
        )
        rows.append(row)
    return rows


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

    def text(self) -> str:
        """``0.912 ± 0.004 (n=3)``; ``(n=2 of 3)`` when a run had no value."""
        if not self.values:
            return f"– (n=0 of {self.runs})"
        n = len(self.values)
        count = f"n={n}" if n == self.runs else f"n={n} of {self.runs}"
        if n == 1:
            return f"{self.mean:.3f} ({count})"
        return f"{self.mean:.3f} ± {self.std:.3f} ({count})"


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
    rows: Sequence[dict[str, Any]], runs: dict[str, Run], extras: Sequence[str]
) -> dict[Point, dict[int, Cell]]:
    """Test accuracy by round over seeds, for each (setting, rule, fraction)."""
    by_round: dict[Point, dict[int, list[float | None]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        point = (setting_of(row, extras), rule_of(row), _fraction_key(row["malicious_fraction"]))
        for record in runs[row["run"]].rounds:
            by_round[point][int(_float(record["round"]) or 0)].append(
                _float(record["test_accuracy"])
            )
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
    success: dict[Point, Cell]
    precision: dict[Point, Cell]  # detection precision, mean over rounds
    recall: dict[Point, Cell]  # detection recall, mean over rounds
    fpr: dict[Point, Cell]  # benign clients flagged, mean over rounds
    lifespan: dict[Point, Cell]  # rounds a backdoor outlived its attack
    curves: dict[Point, dict[int, Cell]]
    duplicates: list[tuple[str, str]]
    shared: dict[str, Any]
    split_by: tuple[str, ...]
    heatmap_fraction: float | None
    command: str

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
