"""``oleander-reproduce``: list the reproducible tables, or run one and judge it.

    oleander-reproduce --list
    oleander-reproduce NAME [--quick] [--out DIR] [--jobs N] [--seeds 0,1] [OVERRIDES ...]

Every cell is checked (composed and validated) before the first run starts. Cells run as
``oleander -m`` sweeps over the seeds, ``--jobs`` at a time, each writing its log to
``OUT/logs``; a cell whose seeds all finished with the same config is not started again, so
the same command resumes an interrupted reproduction and rewrites the verdicts.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NoReturn

from simulator.reproduce import grid, table, verdict, write
from simulator.reproduce.grid import Cell
from simulator.reproduce.table import Table, TableError

PROG = "oleander-reproduce"
# Keys the command sets itself for every cell.
RESERVED = ("seed", "hydra.sweep.dir", "hydra.sweep.subdir", "hydra.run.dir")


def fail(message: str, status: int = 2) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(status)


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        seeds = ()
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r}: must be distinct integers >= 0, e.g. 0,1,2")
    return seeds


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a positive integer")
    return int(text)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run a published table's grid and compare every cell with the paper.",
        epilog="Example: oleander-reproduce fang2020_mnist_lr dataset.path=../shared/data/mnist",
    )
    parser.add_argument("name", nargs="?", help="a table (see --list) or a table .yaml file")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every cell")
    parser.add_argument("--list", action="store_true", help="list the reproducible tables")
    parser.add_argument(
        "--quick", action="store_true", help="a cut-down grid (2 rows x 2 columns, one seed)"
    )
    parser.add_argument("--out", type=Path, help="output directory (default reproduce/NAME)")
    parser.add_argument("--jobs", type=_positive, default=2, help="cells run at once (2)")
    parser.add_argument("--seeds", type=_seeds, help="seeds instead of the table's, e.g. 0,1,2")
    parser.add_argument(
        "--no-run", action="store_true", help="only write the verdicts from the runs on disk"
    )
    args = parser.parse_args(argv)
    if not args.list and not args.name:
        parser.error("give a table NAME or --list")
    return args


def listing(names: Sequence[str]) -> str:
    """One block per table: paper, table, setting, rounds, data and measured time."""
    blocks = []
    for name in names:
        t = table.load(name)
        minutes = f"{t.minutes:g} min on 2 cores" if t.minutes is not None else "not timed yet"
        if t.time_note:
            minutes += f" ({t.time_note})"
        cells = len(t.rows) * len(t.columns)
        blocks.append(
            "\n".join(
                [
                    f"{name}",
                    f"  paper:   {t.paper}",
                    f"  table:   {t.table} ({write.METRIC_NAMES[t.metric]})",
                    textwrap.fill(
                        t.paper_setting,
                        96,
                        initial_indent="  setting: ",
                        subsequent_indent=" " * 11,
                    ),
                    f"  grid:    {len(t.rows)} rows x {len(t.columns)} columns = {cells} cells x "
                    f"{len(t.seeds)} seeds, {t.rounds or '?'} rounds each; judged on {t.judge}",
                    f"  data:    {t.data}"
                    + ("" if t.data == "digits" else " (offline: add dataset.path=DIR)"),
                    f"  time:    {minutes}",
                ]
            )
        )
    return "\n\n".join(blocks)


def check_extra(overrides: Sequence[str]) -> None:
    for override in overrides:
        if "=" not in override:
            raise TableError(f"{override!r}: an override is key=value")
        if grid.override_key(override) in RESERVED:
            raise TableError(
                f"{override}: set by {PROG} itself (seeds with --seeds, the folder with --out)"
            )


def check_cells(
    cells: Sequence[Cell], warned: list[str] | None = None
) -> dict[tuple[str, str], list[bool]]:
    """Compose and validate every cell before any run; for each cell, which seeds already
    finished with this very config (their summary.json carries its digest). ``warned``
    receives each cell's set-up warnings (``simulator.pitfalls``), named by the cell."""
    from simulator.components import threat_model
    from simulator.config import ConfigError
    from simulator.main import finished_summary
    from simulator.pitfalls import start_warnings
    from simulator.preflight import check_point

    done = {}
    for cell in cells:
        try:
            cfg = check_point([*cell.overrides, *grid.QUIET, f"seed={cell.seeds[0]}"])
        except ConfigError as error:
            raise TableError(f"cell {cell.row} / {cell.column}: {error}") from None
        if warned is not None:
            found = start_warnings(cfg, threat_model(cfg), cell.overrides)
            warned.extend(f"cell {cell.row} / {cell.column}: {w}" for w in found)
        flags = []
        for seed in cell.seeds:  # the seed is a plain integer: no need to compose again
            cfg.seed = seed
            flags.append(finished_summary(cell.run_dir(seed), cfg) is not None)
        done[(cell.row, cell.column)] = flags
    return done


def run_cell(cell: Cell, logs: Path, parallel: int = 1) -> tuple[Cell, int, float]:
    """One cell's sweep as a child process (``parallel`` seeds at once); its output goes to
    a log file."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{cell.directory.parent.name}_{cell.directory.name}.log"
    command = cell.command(parallel)
    start = time.monotonic()
    with log.open("a", encoding="utf-8") as handle:
        handle.write("$ " + shlex.join(command) + "\n")
        handle.flush()
        code = subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT)
    return cell, code, time.monotonic() - start


def skipped_reason(cell: Cell) -> str | None:
    """Why a cell's runs were skipped (their skipped.json), if every seed was."""
    reasons = []
    for seed in cell.seeds:
        try:
            reasons.append(json.loads((cell.run_dir(seed) / "skipped.json").read_text())["reason"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
    return reasons[0] if reasons else None


def run_all(cells: Sequence[Cell], todo: Sequence[Cell], jobs: int, logs: Path) -> dict[str, str]:
    """Run the cells not finished yet; returns the failures (cell -> why)."""
    failures: dict[str, str] = {}
    total = len(todo)
    print(f"{PROG}: {len(cells) - total} of {len(cells)} cells already finished; running {total}")

    def report(count: int, cell: Cell, code: int, seconds: float) -> bool:
        name = f"{cell.row} / {cell.column}"
        reason = skipped_reason(cell)
        if code != 0 or reason:
            why = reason or f"exit status {code}"
            failures[name] = f"{why} (log: {logs})"
            print(f"[{count}/{total}] {name}: FAILED: {why}", flush=True)
            return False
        print(f"[{count}/{total}] {name}: done in {seconds:.0f} s", flush=True)
        return True

    if not todo:
        return failures
    # The first cell alone, its seeds side by side: a failure every cell shares (data not
    # found, say) stops here.
    if not report(1, *run_cell(todo[0], logs, jobs)) and skipped_reason(todo[0]):
        print(f"{PROG}: stopped after the first cell: its runs were skipped", file=sys.stderr)
        return failures
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for count, result in enumerate(pool.map(lambda c: run_cell(c, logs), todo[1:]), 2):
            report(count, *result)
    return failures


def results(t: Table, cells: Sequence[Cell]) -> list[write.CellResult]:
    from simulator.report.collect import BrokenFile, load_rounds

    ours: dict[tuple[str, str], float | None] = {}
    per_cell: dict[tuple[str, str], tuple[float, ...]] = {}
    for cell in cells:
        values = []
        for seed in cell.seeds:
            if not (cell.run_dir(seed) / "summary.json").is_file():
                continue  # unfinished: its rounds so far are not a result
            try:
                rows, _ = load_rounds(cell.run_dir(seed) / "rounds.csv")
            except (BrokenFile, OSError):
                continue
            value = verdict.run_value(rows, t.metric, t.statistic)
            if value is not None:
                values.append(value)
        per_cell[(cell.row, cell.column)] = tuple(values)
        ours[(cell.row, cell.column)] = verdict.mean_std(values)[0]
    paper = {key: t.cells[key] for key in per_cell}
    found = verdict.verdicts(paper, ours, t.band, t.tie)
    out = []
    for cell in cells:
        key = (cell.row, cell.column)
        mean, std = verdict.mean_std(per_cell[key])
        out.append(
            write.CellResult(
                cell.row, cell.column, t.cells[key], per_cell[key], mean, std, found[key],
                str(cell.directory),
            )
        )  # fmt: skip
    return out


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.list:
            print(listing(table.available()))
            return
        t = table.load(args.name)
        check_extra(args.overrides)
        if args.seeds:
            t = _with_seeds(t, args.seeds)
        out = args.out or Path("reproduce") / (t.name + ("-quick" if args.quick else ""))
        cells = grid.cells(t, out, quick=args.quick, extra=tuple(args.overrides))
        warned: list[str] = []
        done = check_cells(cells, warned)
    except TableError as error:
        fail(str(error))
    for warning in warned:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    # The command that produces these runs (--no-run only rewrites the page: not recorded).
    given = argv if argv is not None else sys.argv[1:]
    command = shlex.join([PROG, *(a for a in given if a != "--no-run")])
    start = time.monotonic()
    failures: dict[str, str] = {}
    if not args.no_run:
        todo = [c for c in cells if not all(done[(c.row, c.column)])]
        try:
            failures = run_all(cells, todo, args.jobs, out / "logs")
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted; run the same command again to resume", file=sys.stderr)
            raise SystemExit(130) from None
    minutes = None if args.no_run else (time.monotonic() - start) / 60
    found = results(t, cells)
    how = write.Invocation(command, args.quick, minutes, failures)
    write.write_all(out, t, found, how)
    counts = verdict.tally({(r.row, r.column): r.verdict for r in found})
    summary = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
    print(f"{PROG}: {summary}; {out / 'reproduction.md'}")
    if failures:
        raise SystemExit(1)


def _with_seeds(t: Table, seeds: tuple[int, ...]) -> Table:
    from dataclasses import replace

    return replace(t, seeds=seeds)
