"""Finding run directories and reading them as ``Run`` objects.

A run is a folder holding ``.hydra/config.yaml`` (or a ``skipped.json``). Only these files
of a run are read, and only as data: ``.hydra/config.yaml``, ``.hydra/overrides.yaml`` and
``.hydra/hydra.yaml`` (``yaml.safe_load``; ``${key}`` interpolations are resolved here by
lookup, no OmegaConf resolver runs), ``summary.json``, ``skipped.json``, ``rounds.csv`` and,
for ``oleander-report flagged``, ``clients.csv``. A sweep's own record, ``multirun.yaml`` at
its root, is read the same way. Nothing found in a run directory is unpickled, imported or
executed.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


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
    # Group choices as Hydra recorded them (hydra.runtime.choices), e.g. {"strategy": "krum"}.
    choices: dict[str, str] = field(default_factory=dict)


@dataclass
class Sweep:
    """A sweep's own record: the points its ``multirun.yaml`` asked for, each an override set.

    ``error`` says why the points could not be listed (a sweep type the basic sweeper does
    not run); ``points`` is then empty.
    """

    path: Path
    name: str
    points: list[tuple[str, ...]] = field(default_factory=list)
    error: str = ""


def _natural_key(text: str) -> list[Any]:
    """Sort ``2`` before ``10``: Hydra numbers a sweep's runs 0, 1, ..., 10."""
    return [
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)
    ]


def find_run_dirs(root: Path) -> list[Path]:
    """Every folder under ``root`` (itself included) that holds a run; symlinks not followed."""
    return find_dirs(root)[0]


def find_dirs(root: Path) -> tuple[list[Path], list[Path]]:
    """The run folders and the sweep roots (folders with ``multirun.yaml``) under ``root``."""
    runs, sweeps = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if (here / ".hydra" / "config.yaml").is_file() or "skipped.json" in filenames:
            runs.append(here)
        if "multirun.yaml" in filenames:
            sweeps.append(here)
        dirnames[:] = [d for d in dirnames if d != ".hydra"]
    return runs, sweeps


def is_run_dir(path: Path) -> bool:
    return (path / ".hydra" / "config.yaml").is_file()


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


def load_choices(path: Path) -> dict[str, str]:
    """The group choices of ``.hydra/hydra.yaml`` (Hydra's own groups left out); none when
    the file is missing or unreadable: the choices only refine the settings table."""
    try:
        data = load_yaml(path)
    except BrokenFile:
        return {}
    choices = _get(data, "hydra.runtime.choices") if isinstance(data, dict) else None
    if not isinstance(choices, dict):
        return {}
    return {
        str(k): str(v)
        for k, v in choices.items()
        if v is not None and not str(k).startswith("hydra/")
    }


def load_run(path: Path, name: str) -> Run:
    """Read one run directory; a file that does not parse makes the run ``broken``."""
    run = Run(path=path, name=name)
    run.choices = load_choices(path / ".hydra" / "hydra.yaml")
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
    return collect_all(dirs)[0]


def collect_all(dirs: Sequence[Path]) -> tuple[list[Run], list[Sweep]]:
    """The runs under ``dirs`` (as ``collect``) and the sweeps whose roots lie under them."""
    roots = []
    for d in dirs:
        if not d.is_dir():
            raise ReportError(f"not a directory: {d}" if d.exists() else f"no such directory: {d}")
        roots.append(d.resolve())
    base = Path(os.path.commonpath(roots))
    found: dict[Path, None] = {}
    sweep_roots: dict[Path, None] = {}
    for d, root in zip(dirs, roots, strict=True):
        paths, sweeps = find_dirs(root)
        if not paths:
            raise ReportError(f"no runs under {d} (no folder with .hydra/config.yaml)")
        found.update(dict.fromkeys(paths))
        sweep_roots.update(dict.fromkeys(sweeps))
    runs = [load_run(p, p.relative_to(base).as_posix() or ".") for p in found]
    sweeps = [load_sweep(p, p.relative_to(base).as_posix() or ".") for p in sweep_roots]
    return sorted(runs, key=lambda r: _natural_key(r.name)), sweeps


def load_sweep(path: Path, name: str) -> Sweep:
    """The points ``multirun.yaml`` asked for, expanded as Hydra's basic sweeper does:
    ``hydra.sweeper.params`` first, then the command line's overrides, a later value of a
    key replacing an earlier one; comma lists, ``range()`` and ``choice()`` are expanded."""
    sweep = Sweep(path=path, name=name)
    try:
        record = load_yaml(path / "multirun.yaml")
    except BrokenFile as error:
        sweep.error = str(error)
        return sweep
    task = _get(record, "hydra.overrides.task") if isinstance(record, dict) else None
    params = _get(record, "hydra.sweeper.params") if isinstance(record, dict) else None
    if not isinstance(task, list):
        sweep.error = "multirun.yaml: no hydra.overrides.task"
        return sweep
    lines = [f"{k}={v}" for k, v in (params or {}).items()] if isinstance(params, dict) else []
    lines += [str(t) for t in task]
    try:
        sweep.points = expand_sweep(lines)
    except ValueError as error:
        sweep.error = f"multirun.yaml: {error}"
    return sweep


def expand_sweep(lines: Sequence[str]) -> list[tuple[str, ...]]:
    """Every point of a sweep: the product of each key's values, in Hydra's own spelling."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(lines))
    except HydraException as error:
        raise ValueError(f"cannot parse the sweep's overrides: {_first_line(error)}") from None
    values: dict[str, list[str]] = {}
    for override in parsed:
        key = override.get_key_element()
        if not override.is_sweep_override():
            values[key] = [f"{key}={override.get_value_element_as_str()}"]
            continue
        if not override.is_discrete_sweep():
            raise ValueError(f"{override.input_line}: not a sweep the basic sweeper runs")
        try:
            values[key] = [f"{key}={v}" for v in override.sweep_string_iterator()]
        except (HydraException, ValueError, TypeError) as error:
            raise ValueError(f"{override.input_line}: cannot expand: {error}") from None
    return [tuple(point) for point in itertools.product(*values.values())]


def load_clients(path: Path) -> list[dict[str, str]]:
    """The rows of a run's clients.csv (``BrokenFile`` if missing or malformed)."""
    if not path.is_file():
        raise BrokenFile(f"no {path.name} in {path.parent}")
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    columns = tuple(reader.fieldnames or ())
    missing = [c for c in ("round", "client", "malicious") if c not in columns]
    if missing:
        raise BrokenFile(f"{path.name}: no column {', '.join(missing)}")
    rows = []
    try:
        for row in reader:
            if None in row or None in row.values() or _int(row["round"]) is None:
                raise BrokenFile(f"{path.name}: line {reader.line_num} is malformed")
            rows.append(row)
    except csv.Error as error:
        raise BrokenFile(f"{path.name}: line {reader.line_num}: {error}") from error
    return rows
