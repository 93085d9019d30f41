"""``reproduction.md``, ``reproduction.csv`` and ``reproduction.png`` for one table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from simulator.report.plots import save_figure
from simulator.reproduce.table import Table
from simulator.reproduce.verdict import tally
from simulator.results import atomic_write_text, csv_text

CSV_COLUMNS = (
    "row", "column", "paper", "oleander_mean", "oleander_std", "seeds", "band_low",
    "band_high", "verdict", "runs",
)  # fmt: skip
METRIC_NAMES = {
    "error": "test error rate",
    "accuracy": "test accuracy",
    "attack_success": "attack success rate",
}
STATISTIC_NAMES = {"final": "at the final round", "best": "best over the rounds"}


@dataclass(frozen=True)
class CellResult:
    """A cell's numbers: the paper's, Oleander's per seed, and its verdict."""

    row: str
    column: str
    paper: float | None
    values: tuple[float, ...]
    mean: float | None
    std: float | None
    verdict: str
    runs: str


def statistic_text(statistic: str) -> str:
    if statistic in STATISTIC_NAMES:
        return STATISTIC_NAMES[statistic]
    return f"mean of the last {statistic.rsplit('_', 1)[1]} rounds"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _band(paper: float, band: float) -> str:
    """The band around a paper value, within [0, 1] (every metric here is a rate)."""
    return f"{max(0.0, paper - band):.2f}-{min(1.0, paper + band):.2f}"


def _ours(result: CellResult) -> str:
    if result.mean is None:
        return "-"
    spread = f" ± {result.std:.3f}" if result.std is not None else ""
    return f"{result.mean:.3f}{spread} (n={len(result.values)})"


def csv_rows(results: Sequence[CellResult], band: float) -> list[dict[str, object]]:
    return [
        {
            "row": r.row,
            "column": r.column,
            "paper": r.paper,
            "oleander_mean": r.mean,
            "oleander_std": r.std,
            "seeds": len(r.values),
            "band_low": None if r.paper is None else max(0.0, r.paper - band),
            "band_high": None if r.paper is None else min(1.0, r.paper + band),
            "verdict": r.verdict,
            "runs": r.runs,
        }
        for r in results
    ]


@dataclass(frozen=True)
class Invocation:
    """How the results were produced: the command, whether it was ``--quick``, its wall
    time (None when nothing ran) and the cells whose runs failed (cell -> why)."""

    command: str
    quick: bool = False
    minutes: float | None = None
    failures: Mapping[str, str] = field(default_factory=dict)


def markdown(table: Table, results: Sequence[CellResult], how: Invocation) -> str:
    """The table's page: what was run, against what, and each cell's verdict."""
    command, quick, minutes, failures = how.command, how.quick, how.minutes, how.failures
    counts = tally({(r.row, r.column): r.verdict for r in results})
    metric = f"{METRIC_NAMES[table.metric]}, {statistic_text(table.statistic)}"
    lines = [
        f"# Reproduction: {table.name}",
        "",
        f"- Paper: {table.paper}",
        f"- Table: {table.table}" + (f" ({table.source})" if table.source else ""),
        f"- Metric: {metric}; paper values as printed.",
        f"- Paper's setting: {table.paper_setting}",
        f"- Command: `{command}`",
        f"- Seeds: {', '.join(str(s) for s in sorted({*table.seeds}))}"
        + ("; QUICK run (a cut-down grid): a smoke test, not a result" if quick else ""),
    ]
    if minutes is not None:
        lines.append(f"- Wall time of this invocation: {minutes:.1f} min")
    lines += ["", "## How it differs from the paper", ""]
    lines += [f"- {d}" for d in table.differences] or ["- Nothing stated."]
    judged = (
        "the digits: a cell should be within the band of the paper's value"
        if table.judge == "value"
        else "orderings: the setting differs, so what should hold is the order of the cells "
        "in each row and column, not the digits"
    )
    lines += [
        "",
        "## Verdicts",
        "",
        f"What this table judges: {judged}. Band: ± {table.band:g} (absolute); differences of "
        f"at most {table.tie:g} count as ties when comparing orderings. A cell is *within "
        "band*, else *same ordering* (ordered against every other cell of its row and column "
        "as in the paper), else *differs*.",
        "",
        "Summary: " + ", ".join(f"{n} {name}" for name, n in counts.items() if n),
        "",
        "| row | column | paper | Oleander (mean ± std) | band | verdict |",
        "| --- | --- | ---: | ---: | :---: | --- |",
    ]
    for r in results:
        band = "-" if r.paper is None else _band(r.paper, table.band)
        lines.append(
            f"| {r.row} | {r.column} | {_num(r.paper)} | {_ours(r)} | {band} | {r.verdict} |"
        )
    lines += _grid(table, results)
    if failures:
        lines += ["", "## Cells whose runs failed", ""]
        lines += [f"- {cell}: {why}" for cell, why in failures.items()]
    lines += ["", "Plot: reproduction.png (paper against Oleander, one point per cell)."]
    return "\n".join(lines) + "\n"


def _grid(table: Table, results: Sequence[CellResult]) -> list[str]:
    """The table in the paper's own shape: each cell 'paper / Oleander'."""
    by_cell = {(r.row, r.column): r for r in results}
    columns = [c.label for c in table.columns if any(r.column == c.label for r in results)]
    rows = [r.label for r in table.rows if any(x.row == r.label for x in results)]
    lines = [
        "",
        "## In the paper's layout (paper / Oleander)",
        "",
        "| | " + " | ".join(columns) + " |",
        "| --- |" + " ---: |" * len(columns),
    ]
    for row in rows:
        cells = []
        for col in columns:
            r = by_cell.get((row, col))
            cells.append("-" if r is None else f"{_num(r.paper)} / {_num(r.mean)}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def plot(table: Table, results: Sequence[CellResult], path: Path) -> bool:
    """Paper (x) against Oleander (y) with the band around the diagonal; False if nothing
    to draw. matplotlib is imported here only."""
    points = [r for r in results if r.paper is not None and r.mean is not None]
    if not points:
        return False
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 5.6), layout="constrained")
    ax = fig.subplots()
    labels = [c.label for c in table.columns]
    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    markers = "osD^v<>pPX*h"
    rows = [r.label for r in table.rows]
    for r in points:
        ax.errorbar(
            r.paper,
            r.mean,
            yerr=r.std or 0.0,
            fmt=markers[rows.index(r.row) % len(markers)],
            color=cmap(labels.index(r.column) % cmap.N),
            capsize=3,
        )
    numbers = [v for r in points for v in (r.paper, r.mean) if v is not None]
    low, high = min(numbers) - table.band, max(numbers) + table.band
    ax.plot([low, high], [low, high], color="black", lw=1)
    band = table.band
    ax.fill_between(
        [low, high], [low - band, high - band], [low + band, high + band], color="grey", alpha=0.2
    )
    ax.set_xlabel(f"paper: {METRIC_NAMES[table.metric]}")
    ax.set_ylabel(f"Oleander: {METRIC_NAMES[table.metric]} (mean ± std over seeds)")
    ax.set_title(f"{table.name}: {table.table}", fontsize=9, wrap=True)
    for row in sorted({r.row for r in points}, key=rows.index):
        ax.plot([], [], markers[rows.index(row) % len(markers)], color="grey", label=row)
    for col in sorted({r.column for r in points}, key=labels.index):
        ax.plot([], [], "s", color=cmap(labels.index(col) % cmap.N), label=col)
    ax.legend(fontsize=7, loc="best")
    save_figure(fig, path)
    return True


def write_all(out: Path, table: Table, results: Sequence[CellResult], how: Invocation) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = csv_rows(results, table.band)
    atomic_write_text(out / "reproduction.csv", csv_text(CSV_COLUMNS, rows))
    atomic_write_text(out / "reproduction.md", markdown(table, results, how))
    plot(table, results, out / "reproduction.png")
