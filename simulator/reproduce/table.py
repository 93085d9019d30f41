"""Reading and checking a reproduction table file (one published table, as data).

A table file names the paper, the table, the metric and statistic it reports, the paper's
setting and every way Oleander's run differs from it, how a cell is judged (``value``: the
digits should hold within ``band``; ``ordering``: only the order of the cells within each row
and column should hold), the Hydra overrides of every row, column and cell, and the paper's
value of every cell. The format is documented in ``tables/README.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TABLES_DIR = Path(__file__).resolve().parent / "tables"
METRICS = ("error", "accuracy", "attack_success")
JUDGES = ("value", "ordering")
_STATISTIC = re.compile(r"^(final|best|mean_last_(\d+))$")
_REQUIRED = ("paper", "table", "metric", "statistic", "paper_setting", "judge", "band", "data")


class TableError(ValueError):
    """A table file or name that cannot be used: one line naming the file, key and rule."""


@dataclass(frozen=True)
class Axis:
    """One row (a compared defence) or column (an attack or setting) of a table."""

    label: str
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    """One published table: its values and how to run and judge each cell."""

    name: str
    path: Path
    paper: str
    table: str
    metric: str
    statistic: str
    paper_setting: str
    judge: str
    band: float
    data: str
    rows: tuple[Axis, ...]
    columns: tuple[Axis, ...]
    cells: dict[tuple[str, str], float | None]
    overrides: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0,)
    tie: float = 0.0
    rounds: int | None = None
    minutes: float | None = None
    time_note: str = ""
    source: str = ""
    differences: tuple[str, ...] = ()
    cell_overrides: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)

    def cell_keys(self) -> list[tuple[str, str]]:
        """Every (row, column) label pair, row by row."""
        return [(row.label, col.label) for row in self.rows for col in self.columns]


def available() -> list[str]:
    """The names of the bundled tables, sorted."""
    return sorted(path.stem for path in TABLES_DIR.glob("*.yaml"))


def _fail(where: str, message: str) -> TableError:
    return TableError(f"{where}: {message}")


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and "=" in v for v in value):
        raise _fail(where, f"{value!r}: must be a list of Hydra overrides key=value")
    return tuple(value)


def _number(value: Any, where: str, *, low: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= low:
        raise _fail(where, f"{value!r}: must be a number >= {low:g}")
    return float(value)


def _axes(value: Any, where: str) -> tuple[Axis, ...]:
    if not isinstance(value, list) or not value:
        raise _fail(where, "must be a non-empty list of {label, overrides}")
    axes = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("label"), str):
            raise _fail(f"{where}[{i}]", f"{item!r}: needs a label (a string) and overrides")
        axes.append(Axis(item["label"], _strings(item.get("overrides"), f"{where}[{i}]")))
    labels = [a.label for a in axes]
    if len(set(labels)) != len(labels):
        raise _fail(where, f"labels {labels}: must be distinct")
    return tuple(axes)


def _by_cell(value: Any, where: str, rows: set[str], cols: set[str]) -> dict[tuple[str, str], Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(where, "must map row label -> column label -> value")
    out = {}
    for row, inner in value.items():
        if row not in rows:
            raise _fail(where, f"row {row!r} is not one of the rows {sorted(rows)}")
        if not isinstance(inner, dict):
            raise _fail(f"{where}.{row}", "must map column label -> value")
        for col, item in inner.items():
            if col not in cols:
                raise _fail(f"{where}.{row}", f"column {col!r} is not one of {sorted(cols)}")
            out[(row, col)] = item
    return out


def parse(raw: Any, path: Path) -> Table:
    """Check ``raw`` (a table file's YAML) and build the ``Table``; ``TableError`` if bad."""
    name = path.stem
    if not isinstance(raw, dict):
        raise _fail(str(path), "must be a YAML mapping")
    missing = [key for key in _REQUIRED if key not in raw]
    if missing:
        raise _fail(str(path), f"missing keys {missing}")
    where = f"{name}.yaml"
    if raw["metric"] not in METRICS:
        raise _fail(f"{where} metric", f"{raw['metric']!r}: must be one of {list(METRICS)}")
    if not isinstance(raw["statistic"], str) or not _STATISTIC.match(raw["statistic"]):
        raise _fail(
            f"{where} statistic", f"{raw['statistic']!r}: must be final, best or mean_last_K"
        )
    if raw["judge"] not in JUDGES:
        raise _fail(f"{where} judge", f"{raw['judge']!r}: must be one of {list(JUDGES)}")
    rows = _axes(raw.get("rows"), f"{where} rows")
    columns = _axes(raw.get("columns"), f"{where} columns")
    row_labels, col_labels = {r.label for r in rows}, {c.label for c in columns}
    cells: dict[tuple[str, str], float | None] = {}
    for key, value in _by_cell(raw.get("cells"), f"{where} cells", row_labels, col_labels).items():
        cells[key] = None if value is None else _number(value, f"{where} cells.{key[0]}.{key[1]}")
    absent = [f"{r}/{c}" for r in row_labels for c in col_labels if (r, c) not in cells]
    if absent:
        raise _fail(f"{where} cells", f"no paper value (or null) for {sorted(absent)}")
    extra = {
        key: _strings(value, f"{where} cell_overrides.{key[0]}.{key[1]}")
        for key, value in _by_cell(
            raw.get("cell_overrides"), f"{where} cell_overrides", row_labels, col_labels
        ).items()
    }
    seeds = raw.get("seeds", [0])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
    ):
        raise _fail(f"{where} seeds", f"{seeds!r}: must be a non-empty list of integers >= 0")
    rounds = raw.get("rounds")
    if rounds is not None and (not isinstance(rounds, int) or rounds < 1):
        raise _fail(f"{where} rounds", f"{rounds!r}: must be a positive integer")
    minutes = raw.get("minutes")
    differences = raw.get("differences") or []
    if not isinstance(differences, list) or not all(isinstance(d, str) for d in differences):
        raise _fail(f"{where} differences", "must be a list of strings")
    return Table(
        name=name,
        path=path,
        paper=str(raw["paper"]).strip(),
        table=str(raw["table"]).strip(),
        metric=raw["metric"],
        statistic=raw["statistic"],
        paper_setting=" ".join(str(raw["paper_setting"]).split()),
        judge=raw["judge"],
        band=_number(raw["band"], f"{where} band"),
        tie=_number(raw.get("tie", 0.0), f"{where} tie"),
        data=str(raw["data"]),
        rows=rows,
        columns=columns,
        cells=cells,
        overrides=_strings(raw.get("overrides"), f"{where} overrides"),
        quick=_strings(raw.get("quick"), f"{where} quick"),
        seeds=tuple(seeds),
        rounds=rounds,
        minutes=None if minutes is None else _number(minutes, f"{where} minutes"),
        time_note=" ".join(str(raw.get("time_note", "")).split()),
        source=str(raw.get("source", "")).strip(),
        differences=tuple(" ".join(d.split()) for d in differences),
        cell_overrides=extra,
    )


def load(name_or_path: str) -> Table:
    """A bundled table by name, or a table file by path (a ``.yaml`` file of one's own)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise TableError(f"{name_or_path}: no such table file")
    else:
        path = TABLES_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            names = ", ".join(available()) or "none"
            raise TableError(
                f"{name_or_path!r}: not a reproducible table (oleander-reproduce --list): {names}"
            )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TableError(f"{path}: cannot be read as YAML: {first}") from None
    return parse(raw, path)
