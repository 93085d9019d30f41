"""Many clients: 1,000 digits clients with 100 sampled per round; time per round and memory.

Run from the repository root::

    python -m benchmarks.scale                  # 1,000 clients, 100 per round, 3 repetitions
    python -m benchmarks.scale --clients 5000 --per-round 200
    python -m benchmarks.scale --write          # also replace "## Scale" in BENCHMARKS.md

Each repetition runs two ``oleander`` processes that differ only in their number of
rounds (``--rounds`` and four times as many). Peak resident memory is the child
process's own (``wait4``'s ``ru_maxrss``). If the server or the clients kept a model
copy per client between rounds, memory would grow with the number of distinct clients
trained, and so with the rounds: the longer run trains many more distinct clients (the
table counts them), so equal peaks mean no such growth.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import (
    DEFAULT_OUTPUT,
    command_line,
    finish,
    fmt_s,
    load_average,
    machine_line,
    median,
    run_oleander,
    table,
)

SECTION_TITLE = "Scale"
GOAL_PEAK_MIB = 3 * 1024


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scale",
        description="Many clients on digits: time per round and peak resident memory.",
    )
    parser.add_argument("--clients", type=int, default=1000, help="clients (default 1000)")
    parser.add_argument("--per-round", type=int, default=100, help="sampled per round (100)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the short run (5)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--write", action="store_true", help=f"replace '## {SECTION_TITLE}'")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="BENCHMARKS.md path")
    args = parser.parse_args(argv)
    for name in ("clients", "per_round", "rounds", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}={getattr(args, name)}: must be >= 1")
    if args.per_round > args.clients:
        parser.error(f"--per-round={args.per_round}: must be at most --clients={args.clients}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    command = command_line("benchmarks.scale", argv)
    machine = machine_line()
    print(f"$ {command}\nmachine: {machine}", flush=True)
    load_before = load_average()
    started = time.perf_counter()
    lengths = (args.rounds, 4 * args.rounds)
    results: dict[int, dict[str, list[float]]] = {
        n: {"round": [], "peak": [], "wall": [], "distinct": []} for n in lengths
    }
    with tempfile.TemporaryDirectory(prefix="oleander-scale-") as tmp:
        for rep in range(args.repeat):
            for rounds in lengths:
                print(f"[{rep + 1}/{args.repeat}] {rounds} rounds", flush=True)
                run = run_oleander(
                    [f"num_clients={args.clients}", f"clients_per_round={args.per_round}",
                     f"num_rounds={rounds}"],
                    Path(tmp), f"r{rep}-{rounds}",
                )  # fmt: skip
                clients_csv = (Path(tmp) / f"r{rep}-{rounds}" / "clients.csv").read_text()
                distinct = {line.split(",")[1] for line in clients_csv.splitlines()[1:]}
                results[rounds]["round"].append(median(run.round_seconds))
                results[rounds]["peak"].append(run.peak_rss_mib)
                results[rounds]["wall"].append(run.wall)
                results[rounds]["distinct"].append(float(len(distinct)))
    elapsed = time.perf_counter() - started
    load = f"load average (1 min) {load_average()} after, {load_before} before"
    header = ["clients", "per round", "rounds", "distinct clients trained", "time per round",
              "process wall", "peak RSS", "reps"]  # fmt: skip
    rows = []
    for rounds, r in results.items():
        rows.append([
            str(args.clients), str(args.per_round), str(rounds),
            f"{median(r['distinct']):.0f}", fmt_s(median(r["round"])), fmt_s(median(r["wall"])),
            f"{median(r['peak']):.0f} MiB", str(args.repeat),
        ])  # fmt: skip
    lines = table(header, rows, right={0, 1, 2, 3, 4, 5, 6, 7})
    short, long = (median(results[n]["peak"]) for n in lengths)
    worst = max(max(r["peak"]) for r in results.values())
    goals = [
        f"{'MET ' if worst < GOAL_PEAK_MIB else 'MISS'}  peak resident memory under 3 GiB at "
        f"{args.clients} clients: {worst:.0f} MiB at most",
        f"{'MET ' if long <= short * 1.1 else 'MISS'}  no per-client copies kept between rounds: "
        f"peak {short:.0f} MiB after {lengths[0]} rounds, {long:.0f} MiB after {lengths[1]} "
        f"({long / short - 1:+.1%})",
    ]
    notes = [
        f"- `oleander num_clients={args.clients} clients_per_round={args.per_round} "
        "num_rounds=R` on digits (MLP, 2 local epochs at batch 16), inline engine. "
        "Time per round: median of rounds.csv's `round_seconds` (training, aggregation, "
        "evaluation, files). Peak RSS: the process's maximum resident set size.",
    ]
    finish(args, title=SECTION_TITLE, command=command, machine=machine, elapsed=elapsed,
           load=load, notes=notes, lines=lines, goals=goals)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
