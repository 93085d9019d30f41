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
SUCCESS_PLOT = "success_over_rounds.png"  # drawn when a run measured an attack success rate


def plots_of(report: Report) -> tuple[str, ...]:
    """The plots the report gets: the success-rate plot only where there is a success rate."""
    return (*PLOTS, SUCCESS_PLOT) if report.success_curves else PLOTS


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
    _plot_over_rounds(
        report,
        report.curves,
        report.settings,
        path,
        ylabel="test accuracy (mean over seeds)",
        title="Test accuracy by round at the largest fraction (mean, band ± std)",
    )


def plot_success_over_rounds(report: Report, path: Path) -> None:
    """As the accuracy plot, for the attack success rate: one panel per attack that has one
    (the rounds where it was measured)."""
    settings = [s for s in report.settings if any(p[0] == s for p in report.success_curves)]
    _plot_over_rounds(
        report,
        report.success_curves,
        settings,
        path,
        ylabel="attack success rate (mean over seeds)",
        title="Attack success rate by round at the largest fraction (mean, band ± std)",
    )


def _plot_over_rounds(
    report: Report,
    curves: dict[Any, dict[int, Any]],
    settings: Sequence[Any],
    path: Path,
    *,
    ylabel: str,
    title: str,
) -> None:
    colors = _colors(report.rules)
    fig, axes = _panels(len(settings))
    for ax, setting in zip(axes, settings, strict=True):
        fractions = [
            f
            for f in report.fractions(setting)
            if any((setting, r, f) in curves for r in report.rules)
        ]
        fraction = fractions[-1]
        for rule in report.rules:
            curve = curves.get((setting, rule, fraction))
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
        ax.set_ylabel(ylabel)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=11)
    _legend(fig, axes)
    save_figure(fig, path)


def _wrap(label: str, width: int = 16) -> str:
    """A tick label on lines of about ``width`` characters, broken after commas or spaces."""
    import re
    import textwrap

    return "\n".join(textwrap.wrap(re.sub(r",(?! )", ", ", label), width)) or label


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
    labels = [_wrap(report.label(s, short=True)) for s in settings]
    # Room for the labels: each column as wide as its longest line, the figure as tall as
    # the most lines any label has.
    longest = max((len(line) for label in labels for line in label.split("\n")), default=8)
    lines = max((label.count("\n") + 1 for label in labels), default=1)
    fig = Figure(
        figsize=(
            max(5.0, max(1.4, 0.09 * longest) * len(settings) + 3.5),
            max(3.0, 0.7 * len(rules) + 2.0 + 0.18 * lines),
        ),
        layout="constrained",
    )
    ax = fig.subplots()
    low, high = heat_scale(grid)
    cmap = colormaps["viridis"].with_extremes(bad="0.85")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=low, vmax=high, aspect="auto")
    for i, rule in enumerate(rules):
        for j, setting in enumerate(settings):
            cell = report.cells.get((setting, rule, fraction))
            if cell is None or not cell.values:
                text, color = "no run" if cell is None else "no value", "black"
            else:
                std = "" if math.isnan(cell.std) else f"\n± {cell.std:.3f}"
                bright = (cell.mean - low) / (high - low) > 0.6
                text, color = f"{cell.mean:.3f}{std}", "black" if bright else "white"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=9)
    ax.set_xticks(range(len(settings)), labels, fontsize=8)
    ax.set_yticks(range(len(rules)), rules)
    ax.set_xlabel("attack")
    ax.set_ylabel("aggregation rule")
    metric = METRICS[report.metric]
    ax.set_title(f"{metric} at malicious fraction f = {fraction:g} (mean over seeds)", fontsize=10)
    fig.colorbar(image, ax=ax, label=f"{metric.lower()} (scale fitted to the cells)")
    save_figure(fig, path)


def heat_scale(grid: Any) -> tuple[float, float]:
    """The colour scale's ends: the smallest and largest cell, widened to at least 0.01 so
    equal cells do not divide by zero; (0, 1) with no value at all."""
    import numpy as np

    finite = grid[np.isfinite(grid)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    if high - low < 0.01:
        middle = (low + high) / 2
        low, high = middle - 0.005, middle + 0.005
    return low, high
