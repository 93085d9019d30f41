"""Where a run's time goes: client training and server evaluation against everything else.

Run from the repository root::

    python -m benchmarks.overhead               # the MNIST FLTrust CNN workload, 3 repetitions
    python -m benchmarks.overhead --workload fang_mnist --rounds 100
    python -m benchmarks.overhead --write       # also replace "## Overhead" in BENCHMARKS.md

One run of ``simulator.main.simulate`` in this process (inline engine, no worker
processes), with timers wrapped around the functions that do each kind of work; a timer's
time excludes the timers nested inside it, so the parts add up to the run's wall time:

- client training: ``clients.training.train`` and ``clients.cohort.train_cohort``;
- server evaluation: test accuracy and loss, and the attack success rate;
- messages and serialisation: the inline Grid's ``send_and_receive`` (building,
  delivering and answering Flower Messages, the clients' reading of the global model and
  writing of their replies) and the strategy's ``configure_train``;
- replies: parsing and stacking: ``OleanderStrategy.aggregate_train`` apart from the
  defence (reading every reply's arrays, the ``(n, d)`` matrix, row checks);
- aggregation: the defence itself (``strategies.pipeline.Defence``: detection,
  pre-aggregation, the rule, the server learning rate);
- attack: the colluding adversary crafting its rows (``simulator.adversary.Adversary``);
- bookkeeping: results files, checkpoints, the progress display;
- set-up: loading and partitioning the data, building the model, finding the clients;
- other: the rest (Flower's round loop, Python between the timed calls).

Overhead is everything but client training and server evaluation, as a share of the
run's wall time (set-up included and, separately, of the rounds alone).
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import (
    DEFAULT_OUTPUT,
    command_line,
    finish,
    fmt_s,
    load_average,
    machine_line,
    median,
    mnist_dir,
    table,
)

SECTION_TITLE = "Overhead"
GOAL_SHARE = 0.10
WORK = ("client training", "server evaluation")
ORDER = (
    "client training",
    "server evaluation",
    "messages and serialisation",
    "replies: parsing and stacking",
    "aggregation",
    "attack (colluding adversary)",
    "bookkeeping",
    "set-up",
    "other",
)


class Timers:
    """Exclusive time per category: a timer's time minus that of the timers inside it."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[list[float]] = []  # [start, time spent in nested timers]

    def wrap(self, category: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            frame = [time.perf_counter(), 0.0]
            self._stack.append(frame)
            try:
                return fn(*args, **kwargs)
            finally:
                self._stack.pop()
                elapsed = time.perf_counter() - frame[0]
                self.seconds[category] += elapsed - frame[1]
                if self._stack:
                    self._stack[-1][1] += elapsed

        return timed


def _patch(timers: Timers, stack: list[tuple[Any, str, Any]], owner: Any, name: str, cat: str):
    original = getattr(owner, name)
    stack.append((owner, name, original))
    setattr(owner, name, timers.wrap(cat, original))


def instrument(timers: Timers) -> list[tuple[Any, str, Any]]:
    """Wrap the functions of each category; returns what to restore."""
    import simulator.adversary
    import simulator.client_app as client_app
    import simulator.engines.inline as inline
    import simulator.federation
    import simulator.main
    import simulator.models
    import simulator.progress
    import simulator.results
    import simulator.server_app as server_app
    import simulator.strategy as strategy
    from strategies.pipeline import Defence

    patched: list[tuple[Any, str, Any]] = []
    for owner, name, category in [
        (client_app, "train", "client training"),
        (client_app, "train_cohort", "client training"),
        (server_app, "evaluate", "server evaluation"),
        (server_app, "attack_success_rate", "server evaluation"),
        (inline.InlineGrid, "send_and_receive", "messages and serialisation"),
        (strategy.OleanderStrategy, "configure_train", "messages and serialisation"),
        (strategy.OleanderStrategy, "aggregate_train", "replies: parsing and stacking"),
        (Defence, "__call__", "aggregation"),
        (simulator.adversary.Adversary, "__call__", "attack (colluding adversary)"),
        (simulator.results.RunRecorder, "on_evaluated", "bookkeeping"),
        (simulator.results.RunRecorder, "on_aggregated", "bookkeeping"),
        (server_app.Checkpointer, "maybe_save", "bookkeeping"),
        (simulator.progress.RoundProgress, "update", "bookkeeping"),
        (server_app, "discover_clients", "set-up"),
        (simulator.federation, "load_federation", "set-up"),  # imported inside simulate
        (simulator.models, "build_model", "set-up"),
        (simulator.main, "validate", "set-up"),
    ]:
        _patch(timers, patched, owner, name, category)
    return patched


def profile_run(overrides: Sequence[str], workdir: Path) -> tuple[dict[str, float], float, float]:
    """(seconds per category, wall seconds, seconds of the rounds) of one run."""
    from hydra import compose, initialize_config_dir

    import simulator.federation
    import simulator.main
    from simulator.preflight import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", ["progress=false", *overrides])
    simulator.federation._load_federation.cache_clear()  # every repetition loads the data
    timers = Timers()
    patched = instrument(timers)
    try:
        started = time.perf_counter()
        summary = simulator.main.simulate(cfg, workdir)
        wall = time.perf_counter() - started
    finally:
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)
    seconds = dict(timers.seconds)
    seconds["other"] = wall - sum(seconds.values())
    rounds = wall - seconds.get("set-up", 0.0)
    del summary
    return seconds, wall, rounds


def workload(name: str, rounds: int | None) -> list[str]:
    if name == "mnist_cnn":
        mnist = mnist_dir()
        if mnist is None:
            raise SystemExit("needs the MNIST files: set $OLEANDER_MNIST_DIR (or ../shared)")
        return [
            "dataset=mnist", f"dataset.path={mnist}", "model=fltrust_cnn", "num_clients=100",
            "local_epochs=1", "batch_size=32", "lr=0.05", f"num_rounds={rounds or 5}",
        ]  # fmt: skip
    if name == "fang_mnist":
        mnist = mnist_dir()
        if mnist is None:
            raise SystemExit("needs the MNIST files: set $OLEANDER_MNIST_DIR (or ../shared)")
        return ["experiment=fang_mnist", f"dataset.path={mnist}", f"num_rounds={rounds or 100}"]
    return ["num_clients=50", f"num_rounds={rounds or 10}"]  # digits


DESCRIPTIONS = {
    "mnist_cnn": "FLTrust CNN on the shared MNIST set, 100 clients (80 images each), one "
    "local epoch at batch 32, FedAvg",
    "fang_mnist": "`experiment=fang_mnist` (logistic regression, one step of batch 32, "
    "100 clients, Krum, Fang's attack)",
    "digits": "digits MLP, 50 clients, defaults otherwise",
}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.overhead",
        description="Break a run's wall time down into training, evaluation and overhead.",
    )
    parser.add_argument("--workload", choices=sorted(DESCRIPTIONS), default="mnist_cnn")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default per workload)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="engine.workers (default 0); with workers, client training happens in them and "
        "counts under messages (the parent's wait)",
    )
    parser.add_argument("--write", action="store_true", help=f"replace '## {SECTION_TITLE}'")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="BENCHMARKS.md path")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat={args.repeat}: must be >= 1")
    if args.workers < 0:
        parser.error(f"--workers={args.workers}: must be >= 0")
    if args.rounds is not None and args.rounds < 1:
        parser.error(f"--rounds={args.rounds}: must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    overrides = [*workload(args.workload, args.rounds), f"engine.workers={args.workers}"]
    command = command_line("benchmarks.overhead", argv)
    machine = machine_line()
    print(f"$ {command}\nmachine: {machine}", flush=True)
    load_before = load_average()
    started = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory(prefix="oleander-overhead-") as tmp:
        for rep in range(args.repeat):
            print(f"[{rep + 1}/{args.repeat}] {args.workload}", flush=True)
            runs.append(profile_run(overrides, Path(tmp) / f"r{rep}"))
    elapsed = time.perf_counter() - started
    load = f"load average (1 min) {load_average()} after, {load_before} before"
    walls = [w for _, w, _ in runs]
    round_walls = [r for _, _, r in runs]
    rows = []
    for category in ORDER:
        values = [s.get(category, 0.0) for s, _, _ in runs]
        share = median([v / w for v, w in zip(values, walls, strict=True)])
        rows.append([category, fmt_s(median(values)), f"{100 * share:.1f}%"])
    rows.append(["wall time", fmt_s(median(walls)), "100%"])
    lines = table(["part", "seconds (median)", "share of wall"], rows, right={1, 2})
    work = [sum(s.get(c, 0.0) for c in WORK) for s, _, _ in runs]
    overhead = [1 - done / wall for done, wall in zip(work, walls, strict=True)]
    # Of the rounds alone: set-up is neither work nor part of the rounds.
    loop_overhead = [1 - done / r for done, r in zip(work, round_walls, strict=True)]
    share, loop_share = median(overhead), median(loop_overhead)
    goal = (
        f"{'MET ' if share <= GOAL_SHARE else 'MISS'}  overhead at most {GOAL_SHARE:.0%} of "
        f"wall time ({args.workload}, inline): {share:.1%} of the run, {loop_share:.1%} of "
        f"the rounds (median of {args.repeat}; rounds {fmt_s(median(round_walls))})"
    )
    where = f"{args.workers} worker processes" if args.workers else "this process (no workers)"
    notes = [
        f"- Workload: {DESCRIPTIONS[args.workload]}; `{' '.join(overrides)}`, inline "
        f"engine, clients in {where}.",
        "- Parts are exclusive times of timers wrapped around the functions that do each "
        "kind of work (see `benchmarks/overhead.py`); they add up to the wall time of "
        "`simulate` (imports and config composition are not in it).",
    ]
    finish(args, title=SECTION_TITLE, command=command, machine=machine, elapsed=elapsed,
           load=load, notes=notes, lines=lines, goals=[goal])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
