"""From a table to runs: each cell's Hydra overrides, its sweep command and where it writes.

A cell runs as one ordinary ``oleander -m`` sweep over the table's seeds, into
``OUT/runs/<row>/<column>/seed_<S>``: directory names are short slugs of the labels, never a
path or an override, and the same command run again finds each finished seed (its
``summary.json`` with the same config digest) and skips it.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from simulator.reproduce.table import Table

# Settings that cannot change a run's numbers, set for every cell.
QUIET = ("progress=false",)


@dataclass(frozen=True)
class Cell:
    """One (row, column) of a table: the overrides of one seed's run and its directory."""

    row: str
    column: str
    overrides: tuple[str, ...]
    directory: Path
    seeds: tuple[int, ...]

    def run_dir(self, seed: int) -> Path:
        return self.directory / f"seed_{seed}"

    def command(self, parallel: int = 1) -> list[str]:
        """The ``oleander -m`` sweep over this cell's seeds (as a Python module call);
        ``parallel > 1`` runs that many seeds at once (Hydra's joblib launcher), unless the
        overrides already choose a launcher."""
        launcher = []
        chosen = any(override_key(o) == "hydra/launcher" for o in self.overrides)
        if parallel > 1 and len(self.seeds) > 1 and not chosen:
            jobs = min(parallel, len(self.seeds))
            launcher = ["hydra/launcher=local", f"hydra.launcher.n_jobs={jobs}"]
        return [
            sys.executable,
            "-m",
            "simulator",
            "-m",
            *self.overrides,
            *QUIET,
            *launcher,
            f"seed={','.join(str(s) for s in self.seeds)}",
            f"hydra.sweep.dir={self.directory}",
            "hydra.sweep.subdir=seed_${seed}",
        ]


def override_key(override: str) -> str:
    """``strategy.beta=0.2`` -> ``strategy.beta`` (a ``+``/``~``/``++`` prefix kept apart)."""
    return override.split("=", 1)[0].lstrip("+~")


def merge(*groups: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Overrides in order, a later value of the same key replacing an earlier one in place
    (Hydra refuses the same key twice on one command line)."""
    merged: dict[str, str] = {}
    for group in groups:
        for override in group:
            key = override_key(override)
            merged.pop(key, None)
            merged[key] = override
    return tuple(merged.values())


def slug(label: str, index: int) -> str:
    """A short, safe directory name for a row or column label, unique by its index."""
    text = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:32].rstrip("-")
    return f"{index:02d}-{text or 'x'}"


def cells(
    table: Table, out: Path, *, quick: bool = False, extra: tuple[str, ...] = ()
) -> list[Cell]:
    """Every cell to run, row by row. ``quick``: the first two rows and columns, the first
    seed and the table's ``quick`` overrides (a smoke test of the whole path, not a result).
    User overrides (``extra``) come last and win."""
    rows = table.rows[:2] if quick else table.rows
    columns = table.columns[:2] if quick else table.columns
    seeds = table.seeds[:1] if quick else table.seeds
    found = []
    for i, row in enumerate(rows):
        for j, column in enumerate(columns):
            overrides = merge(
                table.overrides,
                row.overrides,
                column.overrides,
                table.cell_overrides.get((row.label, column.label), ()),
                table.quick if quick else (),
                extra,
            )
            directory = out / "runs" / slug(row.label, i) / slug(column.label, j)
            found.append(Cell(row.label, column.label, overrides, directory, seeds))
    return found
