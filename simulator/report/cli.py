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

from simulator.report import runinfo
from simulator.report.collect import ReportError, Run, Sweep, _float, collect_all
from simulator.report.latex import to_latex
from simulator.report.markdown import document, to_markdown
from simulator.report.plots import (
    SUCCESS_PLOT,
    plot_accuracy_over_rounds,
    plot_accuracy_vs_fraction,
    plot_heatmap,
    plot_success_over_rounds,
    plots_of,
)
from simulator.report.tables import (
    CONFIG_COLUMNS,
    METRICS,
    RESULT_COLUMNS,
    SETTING_COLUMNS,
    SUCCESS_STATS,
    Report,
    _fraction_key,
    _hashable,
    aggregate,
    deduplicate,
    effective_columns,
    results_rows,
    round_curves,
    rounds_rows,
    setting_columns,
    varying_keys,
)
from simulator.results import csv_text

PROG = runinfo.PROG


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
        epilog=(
            f"One run: `{PROG} show RUN` prints its config, effective parameters, warnings "
            f"and results; `{PROG} flagged RUN [--round R]` the clients its defence flagged "
            "against the true attackers."
        ),
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
    parser.add_argument(
        "--latex",
        action="store_true",
        help="also write the tables as booktabs LaTeX (report.tex beside report.md)",
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


def never_started(
    runs: Sequence[Run], sweeps: Sequence[Sweep]
) -> list[tuple[str, tuple[str, ...]]]:
    """The points of each sweep's record with no run directory under the sweep's root."""
    missing = []
    for sweep in sweeps:
        seen = {
            frozenset(r.overrides)
            for r in runs
            if r.path == sweep.path or sweep.path in r.path.parents
        }
        missing += [(sweep.name, p) for p in sweep.points if frozenset(p) not in seen]
    return missing


def build_report(args: argparse.Namespace, command: str) -> Report:
    runs, sweeps = collect_all(args.dirs)
    finished = [r for r in runs if r.status == "finished"]
    extras = varying_keys(finished)
    settings = setting_columns(finished, extras)
    rows = results_rows(finished, extras, settings)
    kept, duplicates = deduplicate(rows)
    shared, split_by = {}, []
    for column in (*SETTING_COLUMNS, *extras):
        values = {_hashable(row.get(column)) for row in kept}
        if len(values) == 1:
            shared[column] = next(iter(values))
        elif values:
            split_by.append(column)
    fractions = sorted({_fraction_key(r["malicious_fraction"]) for r in kept})
    detector_cells = aggregate(kept, "detector", extras)
    by_name = {r.name: r for r in finished}
    report = Report(
        runs=runs,
        rows=rows,
        extras=extras,
        metric=args.metric,
        cells=aggregate(kept, args.metric, extras),
        success_stats={
            stat: aggregate(kept, f"attack_success_rate_{stat}", extras) for stat in SUCCESS_STATS
        },
        detectors={p: any(v > 0 for v in c.values) for p, c in detector_cells.items()},
        precision=aggregate(kept, "mean_detection_precision", extras),
        recall=aggregate(kept, "mean_detection_recall", extras),
        fpr=aggregate(kept, "mean_detection_fpr", extras),
        lifespan=aggregate(kept, "backdoor_lifespan", extras),
        curves=round_curves(kept, by_name, extras),
        success_curves={
            p: curve
            for p, curve in round_curves(kept, by_name, extras, "attack_success_rate").items()
            if curve
        },
        duplicates=duplicates,
        shared=shared,
        split_by=tuple(split_by),
        heatmap_fraction=_heatmap_fraction(fractions, args.fraction),
        command=command,
        setting_columns=settings,
        effective_columns=effective_columns(finished),
        sweeps=tuple(sweeps),
        never_started=tuple(never_started(runs, sweeps)),
        latex=args.latex,
    )
    report.plots = plots_of(report)
    return report


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
    columns = [
        "run",
        *CONFIG_COLUMNS,
        *report.extras,
        *report.setting_columns,
        *report.effective_columns,
        *RESULT_COLUMNS,
    ]
    write_text(out / "results.csv", csv_text(columns, report.rows))
    long_columns, long_rows = rounds_rows(finished, report.extras)
    write_text(out / "rounds.csv", csv_text(long_columns, long_rows))
    blocks = document(report)
    write_text(out / "report.md", to_markdown(blocks))
    written = [out / "results.csv", out / "rounds.csv", out / "report.md"]
    if report.latex:
        write_text(out / "report.tex", to_latex(blocks, report.command))
        written.append(out / "report.tex")
    if report.rows:
        draw = {
            "accuracy_vs_fraction.png": plot_accuracy_vs_fraction,
            "accuracy_over_rounds.png": plot_accuracy_over_rounds,
            "heatmap.png": plot_heatmap,
            SUCCESS_PLOT: plot_success_over_rounds,
        }
        for name in report.plots:
            draw[name](report, out / name)
            written.append(out / name)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    """Console script ``oleander-report``: a report over DIRs, or ``show``/``flagged`` RUN."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in runinfo.COMMANDS:
        runinfo.main(args_list)
        return
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
    warned = sum(1 for names in report.warnings().values() for _ in names)
    if warned:
        print(f"{PROG}: {warned} warning(s) recorded by the runs: see report.md", file=sys.stderr)
    names = ", ".join(p.name for p in written)
    print(f"{PROG}: {finished} of {report.total_runs} runs in the tables; wrote {names} to {out}")
