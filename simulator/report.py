"""The ``oleander-report`` command: tables, a Markdown report and plots over a sweep of runs.

A run is a folder holding ``.hydra/config.yaml`` (or a ``skipped.json``). Only five files
of a run are read, and only as data: ``.hydra/config.yaml`` and ``.hydra/overrides.yaml``
(``yaml.safe_load``; ``${key}`` interpolations are resolved here by lookup, no OmegaConf
resolver runs), ``summary.json``, ``skipped.json`` and ``rounds.csv``. Nothing found in a
run directory is unpickled, imported or executed.

The pipeline is ``collect`` (folders -> ``Run``) -> ``results_rows`` / ``rounds_rows`` (one row
per finished run / per finished run and round) -> ``aggregate`` (mean and sample standard
deviation over seeds) -> ``render_markdown`` and the ``plot_*`` functions.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import math
import os
import re
import shlex
import statistics
import sys
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import yaml

if TYPE_CHECKING:
    from matplotlib.axes import Axes

PROG = "oleander-report"
METRICS = {"final_accuracy": "Final accuracy", "best_accuracy": "Best accuracy"}
# Config groups: their other keys are compared only between runs that chose the same option.
GROUPS = ("dataset", "partition", "model", "strategy", "pre", "attack", "engine")
# Columns read from the config (knowledge: the summary's, which fills in an attack's default).
CONFIG_COLUMNS = (
    "dataset",
    "partition",
    "model",
    "strategy",
    "pre",
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
PLOTS = ("accuracy_vs_fraction.png", "accuracy_over_rounds.png", "heatmap.png")


class ReportError(Exception):
    """Bad input to the command: one line on stderr, exit status 2."""


class BrokenFile(Exception):
    """A run's file that cannot be read as what it should be (names the file and why)."""


@dataclass
class Run:
    """One run directory as found on disk.

    ``status`` is ``finished`` (a valid summary.json), ``skipped`` (skipped.json),
    ``unfinished`` (neither) or ``broken`` (a file that does not parse); ``reason`` says why
    a run is not finished.
    """

    path: Path
    name: str
    status: str = "finished"
    reason: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    rounds: list[dict[str, str]] = field(default_factory=list)
    round_columns: tuple[str, ...] = ()
    overrides: list[str] = field(default_factory=list)


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


# Collect -------------------------------------------------------------------------------


def _natural_key(text: str) -> list[Any]:
    """Sort ``2`` before ``10``: Hydra numbers a sweep's runs 0, 1, ..., 10."""
    return [
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)
    ]


def find_run_dirs(root: Path) -> list[Path]:
    """Every folder under ``root`` (itself included) that holds a run; symlinks not followed."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if (here / ".hydra" / "config.yaml").is_file() or "skipped.json" in filenames:
            found.append(here)
        dirnames[:] = [d for d in dirnames if d != ".hydra"]
    return found


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise BrokenFile(f"{path.name}: {error}") from error


def _first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def load_yaml(path: Path) -> Any:
    """Parse YAML with the safe loader (no ``!!python`` tags), as plain data."""
    try:
        return yaml.safe_load(_read_text(path))
    except yaml.YAMLError as error:
        raise BrokenFile(f"{path.name}: not valid YAML: {_first_line(error)}") from error


def load_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``; None when there is no such file."""
    if not path.is_file():
        return None
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as error:
        raise BrokenFile(f"{path.name}: not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise BrokenFile(f"{path.name}: expected a JSON object, got {type(data).__name__}")
    return data


def load_rounds(path: Path) -> tuple[list[dict[str, str]], tuple[str, ...]]:
    """The rows and columns of a rounds.csv (no file: none); every row must fit the header."""
    if not path.is_file():
        return [], ()
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    columns = tuple(reader.fieldnames or ())
    if "round" not in columns or "test_accuracy" not in columns:
        raise BrokenFile(f"{path.name}: no header with 'round' and 'test_accuracy'")
    rows = []
    try:
        for row in reader:
            # DictReader fills a short row with None and puts a long row's rest under None.
            if None in row or None in row.values():
                raise BrokenFile(
                    f"{path.name}: line {reader.line_num} does not have {len(columns)} fields"
                )
            if _int(row["round"]) is None:
                raise BrokenFile(f"{path.name}: line {reader.line_num}: round {row['round']!r}")
            rows.append(row)
    except csv.Error as error:
        raise BrokenFile(f"{path.name}: line {reader.line_num}: {error}") from error
    return rows, columns


_INTERPOLATION = re.compile(r"^\$\{([A-Za-z_][\w.]*)\}$")


def resolve(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with every value that is exactly ``${a.b}`` replaced by that key's value.

    Hydra writes the composed config unresolved (``clients_per_round: ${num_clients}``).
    Only plain absolute references are followed; anything else (a resolver such as
    ``${oc.env:X}``, a cycle) stays as written, so no resolver ever runs.
    """
    return _resolve(config, config, 0)


def _resolve(config: dict[str, Any], node: Any, depth: int) -> Any:
    if isinstance(node, dict):
        return {k: _resolve(config, v, depth) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(config, v, depth) for v in node]
    if isinstance(node, str) and depth < 10 and (match := _INTERPOLATION.match(node)):
        found, value = _lookup(config, match.group(1))
        return _resolve(config, value, depth + 1) if found else node
    return node


def _lookup(config: Any, dotted: str) -> tuple[bool, Any]:
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def load_run(path: Path, name: str) -> Run:
    """Read one run directory; a file that does not parse makes the run ``broken``."""
    run = Run(path=path, name=name)
    try:
        config_path = path / ".hydra" / "config.yaml"
        if config_path.is_file():
            config = load_yaml(config_path)
            if not isinstance(config, dict):
                raise BrokenFile("config.yaml: expected a mapping of keys")
            run.config = resolve(config)
        overrides_path = path / ".hydra" / "overrides.yaml"
        if overrides_path.is_file():
            overrides = load_yaml(overrides_path)
            run.overrides = [str(o) for o in overrides] if isinstance(overrides, list) else []
        skipped = load_json(path / "skipped.json")
        if skipped is not None:
            run.status = "skipped"
            run.reason = _first_line(skipped.get("reason") or "") or "no reason given"
            if not run.overrides and isinstance(skipped.get("overrides"), list):
                run.overrides = [str(o) for o in skipped["overrides"]]
            return run
        if not run.config:
            raise BrokenFile("config.yaml: missing")
        for key in ("strategy.name", "attack.name"):
            if not isinstance(_get(run.config, key), str):
                raise BrokenFile(f"config.yaml: no {key}")
        if _float(_get(run.config, "malicious_fraction")) is None:
            raise BrokenFile("config.yaml: malicious_fraction is not a number")
        summary = load_json(path / "summary.json")
        run.rounds, run.round_columns = load_rounds(path / "rounds.csv")
    except BrokenFile as error:
        run.status, run.reason = "broken", str(error)
        return run
    if summary is None:
        trained = sum(1 for row in run.rounds if (_int(row["round"]) or 0) > 0)
        total = _get(run.config, "num_rounds")
        run.status = "unfinished"
        run.reason = f"no summary.json; {trained} of {total} rounds recorded"
        return run
    for key in ("final_accuracy", "best_accuracy"):
        value = summary.get(key)
        if value is not None and _float(value) is None:
            run.status, run.reason = "broken", f"summary.json: {key} is not a number: {value!r}"
            return run
    run.summary = summary
    return run


def collect(dirs: Sequence[Path]) -> list[Run]:
    """Every run under ``dirs``, each once, named relative to the folder the dirs share.

    A folder that does not exist or holds no run is a ``ReportError``.
    """
    roots = []
    for d in dirs:
        if not d.is_dir():
            raise ReportError(f"not a directory: {d}" if d.exists() else f"no such directory: {d}")
        roots.append(d.resolve())
    base = Path(os.path.commonpath(roots))
    found: dict[Path, None] = {}
    for d, root in zip(dirs, roots, strict=True):
        paths = find_run_dirs(root)
        if not paths:
            raise ReportError(f"no runs under {d} (no folder with .hydra/config.yaml)")
        found.update(dict.fromkeys(paths))
    runs = [load_run(p, p.relative_to(base).as_posix() or ".") for p in found]
    return sorted(runs, key=lambda r: _natural_key(r.name))


# Tables --------------------------------------------------------------------------------


def _get(config: dict[str, Any], dotted: str) -> Any:
    return _lookup(config, dotted)[1]


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    number = _float(value)
    return int(number) if number is not None and number == int(number) else None


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


def csv_text(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return value


# Aggregate -----------------------------------------------------------------------------

Setting = tuple[Any, ...]
Point = tuple[Setting, str, float]


def rule_of(row: dict[str, Any]) -> str:
    """The aggregation rule with its pre-aggregation step in front, ``nnm+krum``."""
    pre = row.get("pre")
    return str(row["strategy"]) if pre in (None, "none") else f"{pre}+{row['strategy']}"


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


# Render --------------------------------------------------------------------------------


@dataclass
class Report:
    """Everything the outputs are made from."""

    runs: list[Run]
    rows: list[dict[str, Any]]
    extras: tuple[str, ...]
    metric: str
    cells: dict[Point, Cell]
    success: dict[Point, Cell]
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


def _markdown_table(header: Sequence[str], body: Iterable[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [line(header), line(["---"] * len(header)), *(line(r) for r in body)]


def _grid(report: Report, cells: dict[Point, Cell], setting: Setting, title: str) -> list[str]:
    fractions = report.fractions(setting)
    rules = [r for r in report.rules if any((setting, r, f) in cells for f in fractions)]
    body = [
        [
            f"`{rule}`",
            *(
                cells[(setting, rule, f)].text() if (setting, rule, f) in cells else ""
                for f in fractions
            ),
        ]
        for rule in rules
    ]
    return [
        f"**{title}**",
        "",
        *_markdown_table(["rule", *(f"f = {f:g}" for f in fractions)], body),
        "",
    ]


def render_markdown(report: Report) -> str:
    """report.md: per-attack tables over seeds, the plots, and the runs left out."""
    counts = defaultdict(int)
    for run in report.runs:
        counts[run.status] += 1
    metric = METRICS[report.metric]
    lines = [
        "# Oleander report",
        "",
        f"Produced by: `{report.command}`",
        "",
        f"Runs: {counts['finished']} finished, {counts['unfinished']} unfinished, "
        f"{counts['skipped']} skipped, {counts['broken']} broken.",
        "",
        "Each cell: mean ± sample standard deviation over seeds (n = runs with a value; "
        "`n=2 of 3`: one run ended without one). Rows: aggregation rule (`pre+rule` with a "
        "pre-aggregation step); columns: f = malicious fraction of all clients.",
        "",
    ]
    if report.shared:
        shared = ", ".join(f"{k}={_fmt(v)}" for k, v in report.shared.items())
        lines += [f"Common to every finished run: {shared}.", ""]
    for setting in report.settings:
        lines += [f"## Attack: {report.label(setting)}", ""]
        lines += _grid(report, report.cells, setting, f"{metric} (test set)")
        if any(p[0] == setting and c.values for p, c in report.success.items()):
            lines += _grid(report, report.success, setting, "Attack success rate (final round)")
    if report.rows:
        lines += ["## Plots", ""]
        if report.heatmap_fraction is not None:
            lines += [f"The heatmap is at f = {report.heatmap_fraction:g}.", ""]
        lines += [f"![{name[:-4]}]({name})" for name in PLOTS] + [""]
    else:
        lines += ["No finished runs: no tables and no plots.", ""]
    lines += _left_out(report)
    return "\n".join(lines).rstrip() + "\n"


def _left_out(report: Report) -> list[str]:
    lines = ["## Runs not in the tables", ""]
    any_left = False
    for status, title in (
        ("unfinished", "Unfinished"),
        ("skipped", "Skipped"),
        ("broken", "Broken"),
    ):
        runs = [r for r in report.runs if r.status == status]
        if not runs:
            continue
        any_left = True
        lines += [f"### {title} ({len(runs)})", ""]
        for run in runs:
            overrides = f" [{' '.join(run.overrides)}]" if run.overrides else ""
            lines.append(f"- `{run.name}`{overrides}: {run.reason}")
        lines.append("")
    if report.duplicates:
        any_left = True
        lines += [f"### Duplicates ({len(report.duplicates)}), counted once", ""]
        lines += [f"- `{dup}`: same config digest as `{first}`" for dup, first in report.duplicates]
        lines.append("")
    if not any_left:
        lines += ["None: every run finished.", ""]
    return lines


# Plots ---------------------------------------------------------------------------------


def _colors(rules: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(rules) <= 10 else "tab20"]
    return {rule: cmap(i % cmap.N) for i, rule in enumerate(rules)}


def _panels(count: int, width: float = 4.8, height: float = 3.6) -> tuple[Any, list[Axes]]:
    from matplotlib.figure import Figure

    cols = min(3, count)
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(max(6.4, width * cols), height * rows + 0.8), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for extra in axes[count:]:
        extra.set_visible(False)
    return fig, axes[:count]


def _legend(fig: Any, axes: Sequence[Axes]) -> None:
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(
            handles.values(),
            handles.keys(),
            loc="outside lower center",
            ncols=min(len(handles), 6),
            title="aggregation rule",
            frameon=False,
        )


def save_figure(fig: Any, path: Path) -> None:
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp.png"
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def plot_accuracy_vs_fraction(report: Report, path: Path) -> None:
    """One panel per attack, one line per rule: mean metric over seeds against f."""
    settings, colors = report.settings, _colors(report.rules)
    fig, axes = _panels(len(settings))
    metric = METRICS[report.metric]
    for ax, setting in zip(axes, settings, strict=True):
        fractions = report.fractions(setting)
        rules = [r for r in report.rules if any((setting, r, f) in report.cells for f in fractions)]
        # Rules side by side at each f, so error bars do not hide one another.
        gap = min((b - a for a, b in itertools.pairwise(fractions)), default=0.1)
        spread = 0.08 * gap
        for i, rule in enumerate(rules):
            offset = (i - (len(rules) - 1) / 2) * spread / max(len(rules) - 1, 1)
            points = [
                (f, report.cells[(setting, rule, f)])
                for f in fractions
                if (setting, rule, f) in report.cells
            ]
            points = [(f, c) for f, c in points if c.values]
            ax.errorbar(
                [f + offset for f, _ in points],
                [c.mean for _, c in points],
                yerr=[0.0 if math.isnan(c.std) else c.std for _, c in points],
                label=rule,
                color=colors[rule],
                marker="o",
                markersize=4,
                capsize=3,
                linewidth=1.5,
            )
        ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(report.label(setting), fontsize=10)
        ax.set_xlabel("malicious fraction f")
        ax.set_ylabel(f"{metric.lower()} (mean ± std)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{metric} against the malicious fraction (mean ± std over seeds)", fontsize=11)
    _legend(fig, axes)
    save_figure(fig, path)


def plot_accuracy_over_rounds(report: Report, path: Path) -> None:
    """One panel per attack, one line per rule at the panel's largest f: mean over seeds."""
    settings, colors = report.settings, _colors(report.rules)
    fig, axes = _panels(len(settings))
    for ax, setting in zip(axes, settings, strict=True):
        fraction = report.fractions(setting)[-1]
        for rule in report.rules:
            curve = report.curves.get((setting, rule, fraction))
            if not curve:
                continue
            points = [(r, c) for r, c in curve.items() if c.values]
            xs, means = [r for r, _ in points], [c.mean for _, c in points]
            stds = [0.0 if math.isnan(c.std) else c.std for _, c in points]
            ax.plot(xs, means, label=rule, color=colors[rule], marker="o", markersize=3)
            ax.fill_between(
                xs,
                [m - s for m, s in zip(means, stds, strict=True)],
                [m + s for m, s in zip(means, stds, strict=True)],
                color=colors[rule],
                alpha=0.15 if len(report.rules) <= 4 else 0.07,
            )
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{report.label(setting)}, f = {fraction:g}", fontsize=10)
        ax.set_xlabel("round (0: initial model)")
        ax.set_ylabel("test accuracy (mean over seeds)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    fig.suptitle("Test accuracy by round at the largest fraction (mean, band ± std)", fontsize=11)
    _legend(fig, axes)
    save_figure(fig, path)


def plot_heatmap(report: Report, path: Path) -> None:
    """Rule x attack at ``report.heatmap_fraction``: mean metric, annotated with its std."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    fraction = report.heatmap_fraction
    settings = [
        s for s in report.settings if any(p[0] == s and p[2] == fraction for p in report.cells)
    ]
    rules = [r for r in report.rules if any((s, r, fraction) in report.cells for s in settings)]
    grid = np.full((len(rules), len(settings)), np.nan)  # shape: (rules, attacks)
    for i, rule in enumerate(rules):
        for j, setting in enumerate(settings):
            cell = report.cells.get((setting, rule, fraction))
            if cell is not None and cell.values:
                grid[i, j] = cell.mean
    labels = [report.label(s, short=True) for s in settings]
    fig = Figure(
        figsize=(max(5.0, 1.5 * len(settings) + 3.0), max(3.0, 0.7 * len(rules) + 2.0)),
        layout="constrained",
    )
    ax = fig.subplots()
    cmap = colormaps["viridis"].with_extremes(bad="0.85")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    for i, rule in enumerate(rules):
        for j, setting in enumerate(settings):
            cell = report.cells.get((setting, rule, fraction))
            if cell is None or not cell.values:
                text, color = "no run" if cell is None else "no value", "black"
            else:
                std = "" if math.isnan(cell.std) else f"\n± {cell.std:.2f}"
                text, color = f"{cell.mean:.2f}{std}", "black" if cell.mean > 0.6 else "white"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=9)
    rotate = len(settings) > 3
    ax.set_xticks(
        range(len(settings)),
        labels,
        rotation=30 if rotate else 0,
        ha="right" if rotate else "center",
    )
    ax.set_yticks(range(len(rules)), rules)
    ax.set_xlabel("attack")
    ax.set_ylabel("aggregation rule")
    metric = METRICS[report.metric]
    ax.set_title(f"{metric} at malicious fraction f = {fraction:g} (mean over seeds)", fontsize=10)
    fig.colorbar(image, ax=ax, label=metric.lower())
    save_figure(fig, path)


# Command -------------------------------------------------------------------------------


def fail(message: str) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _unit_fraction(text: str) -> float:
    value = _float(text)
    if value is None or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a number in [0, 1]")
    return value


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Tables, a Markdown report and plots over Oleander runs and sweeps.",
    )
    parser.add_argument(
        "dirs",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="run or sweep folders (searched recursively)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="OUTDIR",
        help="where to write (default: the first DIR; DIR/report when DIR is one run)",
    )
    parser.add_argument(
        "--fraction",
        type=_unit_fraction,
        metavar="F",
        help="malicious fraction of the heatmap (default: the largest present above 0)",
    )
    parser.add_argument(
        "--metric",
        choices=sorted(METRICS),
        default="final_accuracy",
        help="accuracy in the tables and plots",
    )
    return parser.parse_args(argv)


def _output_dir(args: argparse.Namespace) -> Path:
    """--out, or the first DIR; never a run directory, whose own rounds.csv would be replaced."""
    is_run = (args.out or args.dirs[0]).joinpath(".hydra", "config.yaml").is_file()
    if args.out is not None:
        if is_run:
            raise ReportError(
                f"--out {args.out} is a run directory: its rounds.csv would be overwritten"
            )
        return args.out
    return args.dirs[0] / "report" if is_run else args.dirs[0]


def _heatmap_fraction(fractions: Sequence[float], wanted: float | None) -> float | None:
    if not fractions:
        return None
    if wanted is None:
        return max(fractions) if max(fractions) > 0 else fractions[-1]
    for f in fractions:
        if math.isclose(f, wanted, abs_tol=1e-9):
            return f
    present = ", ".join(f"{f:g}" for f in fractions)
    raise ReportError(
        f"--fraction {wanted:g}: no finished run at that fraction (present: {present})"
    )


def build_report(args: argparse.Namespace, command: str) -> Report:
    runs = collect(args.dirs)
    finished = [r for r in runs if r.status == "finished"]
    extras = varying_keys(finished)
    rows = results_rows(finished, extras)
    kept, duplicates = deduplicate(rows)
    shared, split_by = {}, []
    for column in (*SETTING_COLUMNS, *extras):
        values = {_hashable(row.get(column)) for row in kept}
        if len(values) == 1:
            shared[column] = next(iter(values))
        elif values:
            split_by.append(column)
    fractions = sorted({_fraction_key(r["malicious_fraction"]) for r in kept})
    return Report(
        runs=runs,
        rows=rows,
        extras=extras,
        metric=args.metric,
        cells=aggregate(kept, args.metric, extras),
        success=aggregate(kept, "final_attack_success_rate", extras),
        curves=round_curves(kept, {r.name: r for r in finished}, extras),
        duplicates=duplicates,
        shared=shared,
        split_by=tuple(split_by),
        heatmap_fraction=_heatmap_fraction(fractions, args.fraction),
        command=command,
    )


def write_text(path: Path, text: str) -> None:
    """Through a temporary file and a rename: a reader never sees half a file."""
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        tmp.write_text(text, encoding="utf-8", newline="")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_outputs(report: Report, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    finished = [r for r in report.runs if r.status == "finished"]
    columns = ["run", *CONFIG_COLUMNS, *report.extras, *RESULT_COLUMNS]
    write_text(out / "results.csv", csv_text(columns, report.rows))
    long_columns, long_rows = rounds_rows(finished, report.extras)
    write_text(out / "rounds.csv", csv_text(long_columns, long_rows))
    write_text(out / "report.md", render_markdown(report))
    written = [out / "results.csv", out / "rounds.csv", out / "report.md"]
    if report.rows:
        plot_accuracy_vs_fraction(report, out / PLOTS[0])
        plot_accuracy_over_rounds(report, out / PLOTS[1])
        plot_heatmap(report, out / PLOTS[2])
        written += [out / name for name in PLOTS]
    return written


def main(argv: Sequence[str] | None = None) -> None:
    """Console script ``oleander-report``."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(args_list)
    try:
        report = build_report(args, shlex.join([PROG, *args_list]))
        out = _output_dir(args)
        for run in report.runs:
            if run.status != "finished":
                print(f"{PROG}: {run.status}: {run.name}: {run.reason}", file=sys.stderr)
        written = write_outputs(report, out)
    except ReportError as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot write the report: {error}")
    finished = sum(r.status == "finished" for r in report.runs)
    if not finished:
        print(f"{PROG}: no finished runs: no tables and no plots", file=sys.stderr)
    names = ", ".join(p.name for p in written)
    print(f"{PROG}: {finished} of {len(report.runs)} runs in the tables; wrote {names} to {out}")


if __name__ == "__main__":
    main()
