"""Finding run directories and reading them as ``Run`` objects.

A run is a folder holding ``.hydra/config.yaml`` (or a ``skipped.json``). Only five files
of a run are read, and only as data: ``.hydra/config.yaml`` and ``.hydra/overrides.yaml``
(``yaml.safe_load``; ``${key}`` interpolations are resolved here by lookup, no OmegaConf
resolver runs), ``summary.json``, ``skipped.json`` and ``rounds.csv``. Nothing found in a
run directory is unpickled, imported or executed.
"""

from __future__ import annotations

import csv
import io
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
