"""What every benchmark script shares: machine description, formatting, BENCHMARKS.md
sections, and running the ``oleander`` command in a child process with its timings.

Shared machines are noisy: scripts report medians of repetitions that alternate between
the things compared, and ratios between timings taken side by side.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "BENCHMARKS.md"
MNIST_ENV = "OLEANDER_MNIST_DIR"


def mnist_dir() -> Path | None:
    """The shared MNIST test files (``$OLEANDER_MNIST_DIR`` or ``../shared/data/mnist``)."""
    candidates = [os.environ.get(MNIST_ENV), REPO.parent / "shared" / "data" / "mnist"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "t10k-images-idx3-ubyte.gz").exists():
            return Path(candidate).resolve()
    return None


# ---------------------------------------------------------------------------- machine


def load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "n/a"


def machine_line() -> str:
    import numpy as np
    import torch

    model = platform.processor() or platform.machine()
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                model = text.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cpus = len(os.sched_getaffinity(0))  # what `nproc` prints
    except AttributeError:
        cpus = os.cpu_count() or 0
    import flwr

    return (
        f"{cpus} CPUs (nproc), {model}; Python {platform.python_version()}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"flwr {flwr.__version__}, numpy {np.__version__}"
    )


def command_line(module: str, argv: Sequence[str]) -> str:
    """How this benchmark was started, as a command to paste."""
    spec = sys.modules["__main__"].__spec__
    if spec is not None and spec.name == module:
        prog = f"python -m {module}"
    else:
        script = Path(sys.argv[0]).resolve()
        with contextlib.suppress(ValueError):
            script = script.relative_to(Path.cwd())
        prog = f"python {script}"
    return " ".join([prog, *(shlex.quote(a) for a in argv)])


# ---------------------------------------------------------------------------- formatting


def fmt_s(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= 0.01:
        return f"{seconds * 1e3:.0f} ms"
    return f"{seconds * 1e3:.2f} ms"


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None or not math.isfinite(ratio):
        return "—"
    return f"{ratio:.2f}" if ratio < 10 else f"{ratio:.1f}" if ratio < 100 else f"{ratio:.0f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    """A Markdown table; columns in ``right`` are right-aligned."""
    widths = [max(len(header[j]), *(len(r[j]) for r in rows)) for j in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = (
            c.rjust(w) if j in right else c.ljust(w)
            for j, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        "-" * (w + 1) + ":" if j in right else "-" * (w + 2) for j, w in enumerate(widths)
    )
    return [line(header), rule + "|", *(line(r) for r in rows)]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


# ---------------------------------------------------------------------------- BENCHMARKS.md


def replace_section(text: str, title: str, section: list[str]) -> str:
    """``text`` with its ``## title`` section (up to the next ``## ``) replaced or appended."""
    lines = text.splitlines()
    heading = f"## {title}"
    start = next((i for i, line in enumerate(lines) if line.strip() == heading), None)
    if start is None:
        while lines and not lines[-1].strip():
            lines.pop()
        return "\n".join([*lines, "", *section]) + "\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    after = lines[end:]
    return "\n".join([*lines[:start], *section, *(["", *after] if after else [])]) + "\n"


def write_section(path: Path, title: str, section: list[str], machine: str) -> None:
    """Replace (or add) ``## title`` in the benchmarks file at ``path``."""
    if path.exists():
        text = path.read_text()
    else:
        text = "\n".join(
            [
                "# Benchmarks",
                "",
                "Timings of Oleander's hot paths, each against a reference timed in the same "
                "run on the same input. Every section is written by the command it names "
                "(with `--write`) and gives medians of several repetitions and ratios: the "
                "machines these run on are noisy, and absolute times do not carry from one "
                "machine to another, so rerun a section on your own machine to compare.",
                "",
                f"Machine when this file was created: {machine}.",
                "",
            ]
        )
    path.write_text(replace_section(text, title, section))


def finish(
    args: Any,
    *,
    title: str,
    command: str,
    machine: str,
    elapsed: float,
    load: str,
    notes: Sequence[str],
    lines: Sequence[str],
    goals: Sequence[str],
) -> None:
    """Print the table and the goals; with ``args.write``, replace ``## title`` in
    ``args.output`` with them, the command, the machine and ``notes``."""
    print("\n" + "\n".join(lines) + "\n\n" + "\n".join(goals))
    print(f"\n{load}; total {elapsed:.0f} s; command: {command}")
    if not args.write:
        return
    section = [
        *section_header(title, command, elapsed, machine, load),
        *notes,
        "",
        *lines,
        "",
        f"Goal{'s' if len(goals) > 1 else ''} (from the issue):",
        "",
        "```",
        *goals,
        "```",
    ]
    write_section(args.output, title, section, machine)
    print(f"wrote the '{title}' section of {args.output}")


def section_header(title: str, command: str, elapsed: float, machine: str, load: str) -> list[str]:
    today = datetime.date.today().isoformat()
    return [
        f"## {title}",
        "",
        f"`{command}` on {today}, {elapsed:.0f} s in all.",
        "",
        f"Machine: {machine}; {load}.",
        "",
    ]


# ---------------------------------------------------------------------------- runs


@dataclass
class Run:
    """One ``oleander`` process: its timings and what it wrote."""

    overrides: list[str]
    wall: float  # process start to exit, seconds
    startup: float | None  # process start to the first round's start
    peak_rss_mib: float  # the child's peak resident memory
    summary: dict[str, Any]
    rounds: list[dict[str, str]] = field(default_factory=list)

    @property
    def simulation(self) -> float:
        """Seconds ``simulate`` took (data, model, rounds, files), from summary.json."""
        return float(self.summary["wall_seconds"])

    @property
    def round_seconds(self) -> list[float]:
        return [float(r["round_seconds"]) for r in self.rounds[1:] if r.get("round_seconds")]

    @property
    def client_tasks(self) -> int:
        return sum(int(r["clients_trained"] or 0) for r in self.rounds[1:])


def run_oleander(overrides: Sequence[str], workdir: Path, name: str) -> Run:
    """Run ``python -m simulator OVERRIDES`` from ``workdir``; raise if it fails."""
    out = workdir / name
    command = [
        sys.executable, "-m", "simulator", f"hydra.run.dir={out}", "progress=false",
        *overrides,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started_unix = time.time()
    started = time.perf_counter()
    with open(workdir / f"{name}.stderr", "w") as stderr:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=stderr, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = (workdir / f"{name}.stderr").read_text()[-2000:]
        raise RuntimeError(f"{shlex.join(command)} failed ({process.returncode}):\n{tail}")
    summary = json.loads((out / "summary.json").read_text())
    with open(out / "rounds.csv", newline="") as handle:
        rounds = list(csv.DictReader(handle))
    first = summary.get("first_round_started_unix")
    return Run(
        overrides=list(overrides),
        wall=wall,
        startup=None if first is None else first - started_unix,
        peak_rss_mib=usage.ru_maxrss / 1024,  # Linux reports KiB
        summary=summary,
        rounds=rounds,
    )
