"""The report's plots, one PNG each.

matplotlib is imported inside the functions that draw, not here: it is slow to import, and
reading runs and writing the tables should not wait for it (with no finished run, nothing is
drawn at all).
"""

from __future__ import annotations

import itertools
import math
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulator.report.tables import METRICS, Report

if TYPE_CHECKING:
    from matplotlib.axes import Axes

PLOTS = ("accuracy_vs_fraction.png", "accuracy_over_rounds.png", "heatmap.png")


def _colors(rules: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(rules) <= 10 else "tab20"]
    return {rule: cmap(i % cmap.N) for i, rule in enumerate(rules)}


def _panels(count: int, width: float = 4.8, height: float = 3.6) -> tuple[Any, list[Axes]]:
    from matplotlib.figure import Figure

    cols = min(3, count)
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(max(6.4, width * cols), height * rows + 0.8), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for extra in axes[count:]:
        extra.set_visible(False)
    return fig, axes[:count]


def _legend(fig: Any, axes: Sequence[Axes]) -> None:
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(
            handles.values(),
            handles.keys(),
            loc="outside lower center",
            ncols=min(len(handles), 6),
            title="aggregation rule",
            frameon=False,
        )


def save_figure(fig: Any, path: Path) -> None:
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp.png"
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def plot_accuracy_vs_fraction(report: Report, path: Path) -> None:
    """One panel per attack, one line per rule: mean metric over seeds against f."""
    settings, colors = report.settings, _colors(report.rules)
    fig, axes = _panels(len(settings))
    metric = METRICS[report.metric]
    for ax, setting in zip(axes, settings, strict=True):
        fractions = report.fractions(setting)
        rules = [r for r in report.rules if any((setting, r, f) in report.cells for f in fractions)]
        # Rules side by side at each f, so error bars do not hide one another.
        gap = min((b - a for a, b in itertools.pairwise(fractions)), default=0.1)
        spread = 0.08 * gap
        for i, rule in enumerate(rules):
            offset = (i - (len(rules) - 1) / 2) * spread / max(len(rules) - 1, 1)
            points = [
                (f, report.cells[(setting, rule, f)])
                for f in fractions
                if (setting, rule, f) in report.cells
            ]
            points = [(f, c) for f, c in points if c.values]
            ax.errorbar(
                [f + offset for f, _ in points],
                [c.mean for _, c in points],
                yerr=[0.0 if math.isnan(c.std) else c.std for _, c in points],
                label=rule,
                color=colors[rule],
                marker="o",
                markersize=4,
                capsize=3,
                linewidth=1.5,
            )
        ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(report.label(setting), fontsize=10)
        ax.set_xlabel("malicious fraction f")
        ax.set_ylabel(f"{metric.lower()} (mean ± std)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{metric} against the malicious fraction (mean ± std over seeds)", fontsize=11)
    _legend(fig, axes)
    save_figure(fig, path)


def plot_accuracy_over_rounds(report: Report, path: Path) -> None:
    """One panel per attack, one line per rule at the panel's largest f: mean over seeds."""
    settings, colors = report.settings, _colors(report.rules)
    fig, axes = _panels(len(settings))
    for ax, setting in zip(axes, settings, strict=True):
        fraction = report.fractions(setting)[-1]
        for rule in report.rules:
            curve = report.curves.get((setting, rule, fraction))
            if not curve:
                continue
            points = [(r, c) for r, c in curve.items() if c.values]
            xs, means = [r for r, _ in points], [c.mean for _, c in points]
            stds = [0.0 if math.isnan(c.std) else c.std for _, c in points]
            ax.plot(xs, means, label=rule, color=colors[rule], marker="o", markersize=3)
            ax.fill_between(
                xs,
                [m - s for m, s in zip(means, stds, strict=True)],
                [m + s for m, s in zip(means, stds, strict=True)],
                color=colors[rule],
                alpha=0.15 if len(report.rules) <= 4 else 0.07,
            )
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{report.label(setting)}, f = {fraction:g}", fontsize=10)
        ax.set_xlabel("round (0: initial model)")
        ax.set_ylabel("test accuracy (mean over seeds)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    fig.suptitle("Test accuracy by round at the largest fraction (mean, band ± std)", fontsize=11)
    _legend(fig, axes)
    save_figure(fig, path)


def plot_heatmap(report: Report, path: Path) -> None:
    """Rule x attack at ``report.heatmap_fraction``: mean metric, annotated with its std."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    fraction = report.heatmap_fraction
    settings = [
        s for s in report.settings if any(p[0] == s and p[2] == fraction for p in report.cells)
    ]
    rules = [r for r in report.rules if any((s, r, fraction) in report.cells for s in settings)]
    grid = np.full((len(rules), len(settings)), np.nan)  # shape: (rules, attacks)
    for i, rule in enumerate(rules):
        for j, setting in enumerate(settings):
            cell = report.cells.get((setting, rule, fraction))
            if cell is not None and cell.values:
                grid[i, j] = cell.mean
    labels = [report.label(s, short=True) for s in settings]
    fig = Figure(
        figsize=(max(5.0, 1.5 * len(settings) + 3.0), max(3.0, 0.7 * len(rules) + 2.0)),
        layout="constrained",
    )
    ax = fig.subplots()
    cmap = colormaps["viridis"].with_extremes(bad="0.85")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    for i, rule in enumerate(rules):
        for j, setting in enumerate(settings):
            cell = report.cells.get((setting, rule, fraction))
            if cell is None or not cell.values:
                text, color = "no run" if cell is None else "no value", "black"
            else:
                std = "" if math.isnan(cell.std) else f"\n± {cell.std:.2f}"
                text, color = f"{cell.mean:.2f}{std}", "black" if cell.mean > 0.6 else "white"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=9)
    rotate = len(settings) > 3
    ax.set_xticks(
        range(len(settings)),
        labels,
        rotation=30 if rotate else 0,
        ha="right" if rotate else "center",
    )
    ax.set_yticks(range(len(rules)), rules)
    ax.set_xlabel("attack")
    ax.set_ylabel("aggregation rule")
    metric = METRICS[report.metric]
    ax.set_title(f"{metric} at malicious fraction f = {fraction:g} (mean over seeds)", fontsize=10)
    fig.colorbar(image, ax=ax, label=metric.lower())
    save_figure(fig, path)
