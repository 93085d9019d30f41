"""``report.md``: per-attack tables over seeds, the plots, and the runs left out."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from simulator.report.plots import PLOTS
from simulator.report.tables import METRICS, Cell, Point, Report, Setting, _fmt


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


def _detection(report: Report, setting: Setting) -> list[str]:
    """Detection precision and recall (mean over rounds) of the rows that flag clients."""
    flagging = {
        (s, r, f): c
        for (s, r, f), c in report.recall.items()
        if s == setting and report.precision[(s, r, f)].values
    }
    lines = [
        "Detection: a client counts as flagged when a detector flagged it, the rule gave it "
        "weight 0 (Krum's unselected, FLTrust's zero trust) or its reply was rejected. "
        "Rows that flagged no client in any round (FedAvg and the coordinate-wise rules are "
        "no detectors) are left out. "
        "Krum selects one client, so its precision is bounded by the share of the n - 1 "
        "clients it leaves out that are malicious.",
        "",
    ]
    precision = {p: report.precision[p] for p in flagging}
    lines += _grid(report, precision, setting, "Detection precision (mean over rounds)")
    lines += _grid(report, flagging, setting, "Detection recall (mean over rounds)")
    fpr = {p: report.fpr[p] for p in flagging if report.fpr[p].values}
    if fpr:  # runs of versions without the column have none
        title = "False-positive rate: benign clients flagged (mean over rounds)"
        lines += _grid(report, fpr, setting, title)
    return lines


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
        "`n=2 of 3`: one run ended without one). Rows: aggregation rule (`detect+pre+rule` with a "
        "detector or a pre-aggregation step); columns: f = malicious fraction of all clients.",
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
        if any(p[0] == setting and c.values for p, c in report.lifespan.items()):
            title = (
                "Backdoor lifespan: rounds from the attack's stop until its success rate "
                "fell below the threshold (a run still above it at its end counts the rounds "
                "it lasted: a lower bound)"
            )
            lines += _grid(report, report.lifespan, setting, title)
        if any(p[0] == setting and c.values for p, c in report.precision.items()):
            lines += _detection(report, setting)
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
