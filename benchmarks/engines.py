"""The same runs on the inline engine and on Flower's Ray simulation runtime, side by side.

Run from the repository root::

    python -m benchmarks.engines                # digits MLP and the MNIST CNN, 3 repetitions
    python -m benchmarks.engines --quick        # digits only, 1 repetition
    python -m benchmarks.engines --write        # also replace "## Engines" in BENCHMARKS.md
    python -m benchmarks.engines --startup --write   # the "## Start-up" section instead

Every configuration is a real ``oleander`` process (``python -m simulator``), so the times
include imports, composing the config and loading the data, as a user sees them; the
simulation time (summary.json's ``wall_seconds``) and the time to the first round are
reported beside the process wall time. Repetitions alternate between configurations, and
the table gives medians (every other repetition runs them in reverse order, with a pause
after each run). Workloads:

- digits MLP, 50 clients x 10 rounds (2 local epochs at batch 16, every client every
  round): inline (clients trained as one cohort), inline training one client at a time
  (``engine.cohort=never``), and ray;
- the FLTrust CNN on the shared MNIST set (8,000 training images, so 80 per client),
  100 clients x 5 rounds, one local epoch at batch 32: inline, inline with two worker
  processes (``engine.workers=2``), and ray. Skipped when the MNIST files are absent.

``--startup`` times the default run (``oleander``: digits, 10 clients x 10 rounds, inline)
and the inline digits workload above against a yardstick that does no more than import
what any run must, ``python -c "import torch, flwr.app, flwr.serverapp"``: the processes
run back to back, in rotating order, and each round gives one ratio per command; the
section reports the median ratios and walls.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import (
    DEFAULT_OUTPUT,
    REPO,
    Run,
    command_line,
    finish,
    fmt_ratio,
    fmt_s,
    load_average,
    machine_line,
    median,
    mnist_dir,
    run_oleander,
    table,
)

SECTION_TITLE = "Engines"
GOAL_DIGITS_SPEEDUP = 5.0  # inline at least 5x faster than ray on digits
GOAL_WORKERS_SPEEDUP = 1.6  # engine.workers=2 vs one process on the MNIST CNN
GOAL_STARTUP_S = 5.0  # from `oleander` to the first round, inline
GOAL_WALL_SPEEDUP = 5.0  # ray's whole command at least 5x inline's on digits
STARTUP_TITLE = "Start-up"
GOAL_STARTUP_RATIO = 1.5  # the default run over importing torch and Flower's apps
# What every run imports before it can do anything: the yardstick of the default run.
YARDSTICK = ("-c", "import torch, flwr.app, flwr.serverapp")
SETTLE_S = 3.0  # pause after each run: what it started (Ray's daemons) winds down


@dataclass(frozen=True)
class Config:
    workload: str
    label: str
    overrides: tuple[str, ...]


DIGITS_WORKLOAD = ("num_clients=50", "num_rounds=10")


def workloads(mnist: Path | None, quick: bool) -> list[Config]:
    digits = DIGITS_WORKLOAD
    configs = [
        Config("digits MLP, 50 clients x 10 rounds", "inline", digits),
        Config("digits MLP, 50 clients x 10 rounds", "inline, one client at a time",
               (*digits, "engine.cohort=never")),
        Config("digits MLP, 50 clients x 10 rounds", "ray", (*digits, "engine=ray")),
    ]  # fmt: skip
    if mnist is not None and not quick:
        cnn = (
            "dataset=mnist", f"dataset.path={mnist}", "model=fltrust_cnn", "num_clients=100",
            "num_rounds=5", "local_epochs=1", "batch_size=32", "lr=0.05",
        )  # fmt: skip
        name = "MNIST FLTrust CNN, 100 clients x 5 rounds"
        configs += [
            Config(name, "inline", cnn),
            Config(name, "inline, engine.workers=2", (*cnn, "engine.workers=2")),
            Config(name, "ray", (*cnn, "engine=ray")),
        ]
    return configs


def measure(configs: Sequence[Config], repeat: int, workdir: Path) -> dict[Config, list[Run]]:
    runs: dict[Config, list[Run]] = {c: [] for c in configs}
    for rep in range(repeat):
        # Every other repetition runs the configurations in reverse order, so none always
        # follows a Ray run (whose processes take a few seconds to go) or a cold start.
        order = list(enumerate(configs))
        for i, config in order if rep % 2 == 0 else reversed(order):
            print(f"[{rep + 1}/{repeat}] {config.workload}: {config.label}", flush=True)
            runs[config].append(run_oleander(config.overrides, workdir, f"r{rep}-c{i}"))
            time.sleep(SETTLE_S)
    return runs


def table_lines(runs: dict[Config, list[Run]]) -> list[str]:
    header = ["workload", "engine", "wall", "simulation", "to 1st round", "client tasks/s",
              "ray ÷ this (sim.)", "final acc.", "reps"]  # fmt: skip
    ray_sim = {
        c.workload: median([r.simulation for r in rs]) for c, rs in runs.items() if c.label == "ray"
    }
    rows = []
    for config, rs in runs.items():
        simulation = median([r.simulation for r in rs])
        tasks = median([r.client_tasks / r.simulation for r in rs])
        accuracy = median([float(r.summary["final_accuracy"]) for r in rs])
        ray = ray_sim.get(config.workload)
        rows.append([
            config.workload, config.label, fmt_s(median([r.wall for r in rs])), fmt_s(simulation),
            fmt_s(median([r.startup for r in rs if r.startup is not None])), f"{tasks:.0f}",
            fmt_ratio(None if ray is None else ray / simulation), f"{accuracy:.4f}", str(len(rs)),
        ])  # fmt: skip
    return table(header, rows, right={2, 3, 4, 5, 6, 7, 8})


def _sim(runs: dict[Config, list[Run]], workload: str, label: str) -> float | None:
    for config, rs in runs.items():
        if config.workload.startswith(workload) and config.label == label:
            return median([r.simulation for r in rs])
    return None


def _wall(runs: dict[Config, list[Run]], workload: str, label: str) -> float | None:
    for config, rs in runs.items():
        if config.workload.startswith(workload) and config.label == label:
            return median([r.wall for r in rs])
    return None


def goal_lines(runs: dict[Config, list[Run]]) -> list[str]:
    def verdict(ok: bool | None) -> str:
        return "n/a " if ok is None else "MET " if ok else "MISS"

    lines = []
    inline, ray = _sim(runs, "digits", "inline"), _sim(runs, "digits", "ray")
    ratio = None if inline is None or ray is None else ray / inline
    lines.append(
        f"{verdict(None if ratio is None else ratio >= GOAL_DIGITS_SPEEDUP)}  inline >= "
        f"{GOAL_DIGITS_SPEEDUP:g}x faster than ray on digits (simulation time): "
        f"{fmt_ratio(ratio)}x"
    )
    inline, ray = _sim(runs, "MNIST", "inline"), _sim(runs, "MNIST", "ray")
    ratio = None if inline is None or ray is None else ray / inline
    lines.append(
        f"{verdict(None if ratio is None else ratio > 1)}  inline faster than ray on the MNIST "
        f"CNN: {fmt_ratio(ratio)}x"
    )
    workers = _sim(runs, "MNIST", "inline, engine.workers=2")
    ratio = None if inline is None or workers is None else inline / workers
    lines.append(
        f"{verdict(None if ratio is None else ratio >= GOAL_WORKERS_SPEEDUP)}  engine.workers=2 "
        f">= {GOAL_WORKERS_SPEEDUP:g}x one process on the MNIST CNN: {fmt_ratio(ratio)}x"
    )
    startups = [
        r.startup
        for c, rs in runs.items()
        if c.label == "inline"
        for r in rs
        if r.startup is not None
    ]
    worst = max(startups) if startups else None
    typical = median(startups) if startups else None
    inline_wall, ray_wall = _wall(runs, "digits", "inline"), _wall(runs, "digits", "ray")
    ratio = None if inline_wall is None or ray_wall is None else ray_wall / inline_wall
    lines.append(
        f"{verdict(None if ratio is None else ratio >= GOAL_WALL_SPEEDUP)}  `oleander "
        f"engine=ray` >= {GOAL_WALL_SPEEDUP:g}x `oleander engine=inline` on digits, whole "
        f"command (wall): {fmt_ratio(ratio)}x ({fmt_s(ray_wall)} / {fmt_s(inline_wall)})"
    )
    lines.append(
        f"{verdict(None if typical is None else typical < GOAL_STARTUP_S)}  oleander to the "
        f"first round under {GOAL_STARTUP_S:g} s on inline (median of every inline run): "
        f"{fmt_s(typical)}, slowest {fmt_s(worst)}"
    )
    return lines


# ---------------------------------------------------------------------------- start-up


def time_yardstick() -> float:
    """Wall seconds of ``python -c "import torch, flwr.app, flwr.serverapp"``."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    subprocess.run([sys.executable, *YARDSTICK], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def measure_startup(repeat: int, workdir: Path) -> dict[str, list[float]]:
    """Wall seconds of ``repeat`` rounds of: the default run, the inline side of the
    engines' digits workload and the yardstick, back to back. The order rotates from one
    round to the next; every run writes into a new directory (a finished one would be
    skipped). One untimed round first (file caches)."""
    commands = {
        "default": lambda name: run_oleander((), workdir, name).wall,
        "inline": lambda name: run_oleander(DIGITS_WORKLOAD, workdir, name).wall,
        "yardstick": lambda name: time_yardstick(),
    }
    walls: dict[str, list[float]] = {key: [] for key in commands}
    keys = list(commands)
    for rep in range(-1, repeat):
        print(f"[{rep + 1}/{repeat}] the default run, inline 50 x 10, the yardstick", flush=True)
        shift = rep % len(keys)
        for key in keys[shift:] + keys[:shift]:
            wall = commands[key](f"startup-{rep}-{key}")
            if rep >= 0:
                walls[key].append(wall)
    return walls


def startup_lines(walls: dict[str, list[float]]) -> tuple[list[str], list[str]]:
    """The table (each command's median wall and its ratio to the yardstick, taken round
    by round) and the goal line."""
    yardstick = walls["yardstick"]

    def ratios(key: str) -> list[float]:
        return [wall / y for wall, y in zip(walls[key], yardstick, strict=True)]

    def row(label: str, key: str) -> list[str]:
        r = ratios(key)
        return [label, fmt_s(median(walls[key])), fmt_ratio(median(r)),
                f"{fmt_ratio(min(r))}-{fmt_ratio(max(r))}"]  # fmt: skip

    rows = [
        row("`oleander` (the default run: digits, 10 clients x 10 rounds)", "default"),
        row(f"`oleander {' '.join(DIGITS_WORKLOAD)}` (inline)", "inline"),
        row(f'`python {YARDSTICK[0]} "{YARDSTICK[1]}"` (yardstick)', "yardstick"),
    ]
    header = ["command", "wall (median)", "÷ yardstick (median)", "÷ yardstick (range)"]
    lines = table(header, rows, right={1, 2, 3})
    ratio = median(ratios("default"))
    met = "MET " if ratio <= GOAL_STARTUP_RATIO else "MISS"
    goals = [
        f"{met}  the default run within {GOAL_STARTUP_RATIO:g}x importing torch and "
        f"Flower's apps (wall, median of {len(yardstick)} rounds): {fmt_ratio(ratio)}x"
    ]
    return lines, goals


STARTUP_NOTES = [
    "- Whole processes, start to exit, each `oleander` with `progress=false` and a new "
    "`hydra.run.dir`. The yardstick imports what every run needs before it can do "
    "anything. The three commands run back to back in rotating order, after one untimed "
    "round; ratios are taken round by round, then the median.",
    "- The inline row is the inline side of `oleander engine=ray num_clients=50 "
    "num_rounds=10` over `oleander engine=inline num_clients=50 num_rounds=10` (goal >= 5x), "
    "measured with ray in the Engines section (`python -m benchmarks.engines`).",
]


NOTES = [
    "- wall: the `oleander` process from start to exit. simulation: summary.json's "
    "`wall_seconds` (data, partitions, model, every round with evaluation, result files). "
    "to 1st round: process start to the start of round 1 (imports, config checks, data).",
    "- client tasks/s: clients trained over all rounds ÷ simulation time. ray ÷ this: ray's "
    "simulation time ÷ this configuration's, same workload.",
    "- Every configuration computes the same numbers: one client at a time on both engines "
    "(bit for bit, `tests/simulator/test_flower_runtimes.py`), and as one cohort to floating-point "
    "rounding (`tests/clients/test_cohort.py`); final acc. shows it.",
]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.engines",
        description="Time the same runs on the inline and the Ray engine.",
    )
    parser.add_argument("--repeat", type=int, default=None, help="repetitions (default 3)")
    parser.add_argument("--quick", action="store_true", help="digits only, 1 repetition")
    parser.add_argument("--write", action="store_true", help=f"replace '## {SECTION_TITLE}'")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="BENCHMARKS.md path")
    parser.add_argument(
        "--startup",
        action="store_true",
        help=f"only the default run against importing torch and Flower (default 9 rounds); "
        f"--write replaces '## {STARTUP_TITLE}'",
    )
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 9 if args.startup else 1 if args.quick else 3
    if args.repeat < 1:
        parser.error(f"--repeat={args.repeat}: must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    command = command_line("benchmarks.engines", argv)
    machine = machine_line()
    print(f"$ {command}\nmachine: {machine}", flush=True)
    mnist = mnist_dir()
    if mnist is None:
        print("MNIST files not found ($OLEANDER_MNIST_DIR or ../shared/data/mnist): digits only")
    load_before = load_average()
    started = time.perf_counter()
    if args.startup:
        with tempfile.TemporaryDirectory(prefix="oleander-bench-") as tmp:
            walls = measure_startup(args.repeat, Path(tmp))
        lines, goals = startup_lines(walls)
        load = f"load average (1 min) {load_average()} after, {load_before} before"
        finish(args, title=STARTUP_TITLE, command=command, machine=machine,
               elapsed=time.perf_counter() - started, load=load, notes=STARTUP_NOTES,
               lines=lines, goals=goals)  # fmt: skip
        return 0
    with tempfile.TemporaryDirectory(prefix="oleander-bench-") as tmp:
        runs = measure(workloads(mnist, args.quick), args.repeat, Path(tmp))
    elapsed = time.perf_counter() - started
    load = f"load average (1 min) {load_average()} after, {load_before} before"
    lines = table_lines(runs)
    goals = goal_lines(runs)
    finish(args, title=SECTION_TITLE, command=command, machine=machine, elapsed=elapsed,
           load=load, notes=NOTES, lines=lines, goals=goals)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
