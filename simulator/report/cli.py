"""The command line: arguments, building the ``Report``, writing its files."""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from simulator.report.collect import ReportError, _float, collect
from simulator.report.markdown import render_markdown
from simulator.report.plots import (
    PLOTS,
    plot_accuracy_over_rounds,
    plot_accuracy_vs_fraction,
    plot_heatmap,
)
from simulator.report.tables import (
    CONFIG_COLUMNS,
    METRICS,
    RESULT_COLUMNS,
    SETTING_COLUMNS,
    Report,
    _fraction_key,
    _hashable,
    aggregate,
    deduplicate,
    results_rows,
    round_curves,
    rounds_rows,
    varying_keys,
)
from simulator.results import csv_text

PROG = "oleander-report"


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
        precision=aggregate(kept, "mean_detection_precision", extras),
        recall=aggregate(kept, "mean_detection_recall", extras),
        fpr=aggregate(kept, "mean_detection_fpr", extras),
        lifespan=aggregate(kept, "backdoor_lifespan", extras),
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
