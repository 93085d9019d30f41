"""``report.md``: per-attack settings and tables over seeds, the plots, and the runs left out.

The report is first a list of blocks (headings, paragraphs, tables, images), then Markdown;
``simulator.report.latex`` writes the same tables as LaTeX.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from simulator.report.settings import SettingRow
from simulator.report.tables import (
    METRICS,
    SUCCESS_STATS,
    SUCCESS_TITLES,
    Cell,
    Point,
    Report,
    Setting,
)

NOT_A_DETECTOR = "not a detector"
CELL_NOTE = (
    "Each cell: mean ± half-width of its 95% confidence interval over seeds (Student t, "
    "n − 1 degrees of freedom), then the sample standard deviation (sd) and n, the runs with a "
    "value (`n=2 of 3`: one run ended without one; `n=1, no CI`: one seed gives no interval). "
    "Rows: aggregation rule (`detect+pre+rule` with a detector or a pre-aggregation step); "
    "columns: f = malicious fraction of all clients."
)
DETECTION_NOTE = (
    "Detection: a client counts as flagged in a round when its reply was rejected, a "
    "detection stage removed it or the rule gave it weight 0 (Krum's unselected, FLTrust's "
    "zero trust); precision, recall and the false-positive rate are means over the rounds "
    "where they are defined, then over seeds. A rule that keeps m of the n updates it gets "
    "flags the other n − m whatever they are (Krum keeps 1): with a attackers among the n, "
    "its precision is at most a / (n − m). `not a detector`: the defence singles out no "
    "client (FedAvg, the median, the trimmed mean, ...), so nothing is measured."
)


@dataclass(frozen=True)
class Table:
    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Block:
    """``kind``: ``h1``, ``h2``, ``h3``, ``p`` (a paragraph), ``table`` or ``image``."""

    kind: str
    text: str = ""
    table: Table | None = None


def _p(text: str) -> Block:
    return Block("p", text)


def _table(table: Table) -> Block:
    return Block("table", table=table)


def _grid(
    report: Report,
    cells: dict[Point, Cell],
    setting: Setting,
    title: str,
    blank: str = "",
    rules: Sequence[str] | None = None,
) -> Table:
    fractions = report.fractions(setting)
    if rules is None:
        rules = [r for r in report.rules if any((setting, r, f) in cells for f in fractions)]
    body = tuple(
        (
            f"`{rule}`",
            *(
                cells[(setting, rule, f)].text() if (setting, rule, f) in cells else blank
                for f in fractions
            ),
        )
        for rule in rules
    )
    return Table(title, ("rule", *(f"f = {f:g}" for f in fractions)), body)


def settings_table(title: str, rows: Sequence[SettingRow]) -> Table:
    body = tuple((f"`{r.key}`", r.value, r.default) for r in rows)
    return Table(title, ("setting", "value", "default"), body)


def _has(cells: dict[Point, Cell], setting: Setting) -> bool:
    return any(p[0] == setting and c.values for p, c in cells.items())


def _detection(report: Report, setting: Setting) -> list[Block]:
    """Precision, recall and FPR of every rule of the section; non-detectors say so."""
    fractions = report.fractions(setting)
    rules = [r for r in report.rules if any((setting, r, f) in report.cells for f in fractions)]
    detecting = [r for r in rules if any(report.detectors.get((setting, r, f)) for f in fractions)]
    if not detecting:
        names = ", ".join(f"`{r}`" for r in rules)
        return [_p(f"Detection: no defence here singles out clients ({names}: not detectors).")]
    blocks = [_p(DETECTION_NOTE)]
    for cells, title in (
        (report.precision, "Detection precision (mean over rounds)"),
        (report.recall, "Detection recall (mean over rounds)"),
        (report.fpr, "Detection false-positive rate: benign clients flagged (mean over rounds)"),
    ):
        shown = {p: c for p, c in cells.items() if p[0] == setting and report.detectors.get(p)}
        if cells is report.fpr and not any(c.values for c in shown.values()):
            continue  # runs of versions without the column have none
        table = _grid(report, shown, setting, title, blank=NOT_A_DETECTOR, rules=rules)
        blocks.append(_table(table))
    return blocks


def _section(report: Report, setting: Setting) -> list[Block]:
    metric = METRICS[report.metric]
    blocks = [Block("h2", f"Attack: {report.label(setting)}")]
    rows = report.section_settings(setting)
    if rows:
        blocks.append(_table(settings_table(f"Settings of {report.label(setting)}", rows)))
    blocks.append(_table(_grid(report, report.cells, setting, f"{metric} (test set)")))
    for stat in SUCCESS_STATS:
        cells = report.success_stats[stat]
        if _has(cells, setting):
            title = f"Attack success rate: {SUCCESS_TITLES[stat]}"
            blocks.append(_table(_grid(report, cells, setting, title)))
    if _has(report.lifespan, setting):
        title = (
            "Backdoor lifespan: rounds from the attack's stop until its success rate "
            "fell below the threshold (a run still above it at its end counts the rounds "
            "it lasted: a lower bound)"
        )
        blocks.append(_table(_grid(report, report.lifespan, setting, title)))
    has_columns = any(p[0] == setting for p in report.precision)
    if has_columns:
        blocks += _detection(report, setting)
    return blocks


def document(report: Report) -> list[Block]:
    """The report as blocks: what report.md and report.tex are written from."""
    counts: dict[str, int] = defaultdict(int)
    for run in report.runs:
        counts[run.status] += 1
    never = len(report.never_started)
    runs_line = (
        f"Runs: {counts['finished']} finished, {counts['unfinished']} unfinished, "
        f"{counts['skipped']} skipped, {counts['broken']} broken"
    )
    if report.sweeps:
        runs_line += f", {never} never started ({report.total_runs} in all)"
    blocks = [
        Block("h1", "Oleander report"),
        _p(f"Produced by: `{report.command}`"),
        _p(runs_line + "."),
        _p(CELL_NOTE),
    ]
    common = report.common_settings if report.rows else []
    if common:
        blocks += [
            Block("h2", "Settings common to every finished run"),
            _p(
                "The core training settings, the partition's own, and every setting that "
                "differs from its default (conf/ with the run's own group choices); settings "
                "that differ between runs are listed in each attack's section."
            ),
            _table(settings_table("Common to every finished run", common)),
        ]
    blocks += _warnings(report)
    for setting in report.settings:
        blocks += _section(report, setting)
    if report.rows:
        blocks.append(Block("h2", "Plots"))
        if report.heatmap_fraction is not None:
            blocks.append(_p(f"The heatmap is at f = {report.heatmap_fraction:g}."))
        blocks += [Block("image", name) for name in report.plots]
    else:
        blocks.append(_p("No finished runs: no tables and no plots."))
    blocks += _left_out(report)
    return blocks


def _warnings(report: Report) -> list[Block]:
    found = report.warnings()
    if not found:
        return []
    lines = [
        f"- {warning} ({len(runs)} run{'s' if len(runs) > 1 else ''}: "
        f"{', '.join(f'`{r}`' for r in runs)})"
        for warning, runs in sorted(found.items())
    ]
    return [
        Block("h2", "Warnings"),
        _p("Set-ups that test nothing or less than asked for, as the runs recorded them:"),
        _p("\n".join(lines)),
    ]


def _left_out(report: Report) -> list[Block]:
    blocks = [Block("h2", "Runs not in the tables")]
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
        lines = []
        for run in runs:
            overrides = f" [{' '.join(run.overrides)}]" if run.overrides else ""
            lines.append(f"- `{run.name}`{overrides}: {run.reason}")
        blocks += [Block("h3", f"{title} ({len(runs)})"), _p("\n".join(lines))]
    if report.never_started:
        any_left = True
        lines = [
            f"- [{' '.join(point)}] (sweep `{sweep}`)" for sweep, point in report.never_started
        ]
        blocks += [
            Block("h3", f"Never started ({len(report.never_started)})"),
            _p("Points of the sweep's own record (multirun.yaml) with no run directory:"),
            _p("\n".join(lines)),
        ]
    unreadable = [s for s in report.sweeps if s.error]
    if unreadable:
        lines = [f"- `{s.name}`: {s.error}" for s in unreadable]
        blocks += [Block("h3", "Sweeps whose points cannot be listed"), _p("\n".join(lines))]
    if report.duplicates:
        any_left = True
        lines = [f"- `{dup}`: same config digest as `{first}`" for dup, first in report.duplicates]
        blocks += [
            Block("h3", f"Duplicates ({len(report.duplicates)}), counted once"),
            _p("\n".join(lines)),
        ]
    if not any_left:
        blocks.append(_p("None: every run finished."))
    return blocks


def _markdown_table(header: Sequence[str], body: Iterable[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [line(header), line(["---"] * len(header)), *(line(r) for r in body)]


def to_markdown(blocks: Sequence[Block]) -> str:
    lines: list[str] = []
    for block in blocks:
        if block.kind == "h1":
            lines += [f"# {block.text}", ""]
        elif block.kind == "h2":
            lines += [f"## {block.text}", ""]
        elif block.kind == "h3":
            lines += [f"### {block.text}", ""]
        elif block.kind == "p":
            lines += [block.text, ""]
        elif block.kind == "image":
            lines += [f"![{block.text.rsplit('.', 1)[0]}]({block.text})", ""]
        elif block.table is not None:
            lines += [f"**{block.table.title}**", ""]
            lines += [*_markdown_table(block.table.header, block.table.rows), ""]
    return "\n".join(lines).rstrip() + "\n"


def render_markdown(report: Report) -> str:
    """report.md: settings, per-attack tables over seeds, the plots, and the runs left out;
    it ends with a newline."""
    return to_markdown(document(report))
