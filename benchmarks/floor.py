"""Oleander on the ``fang_mnist`` logistic-regression workload against a bare torch loop.

Run from the repository root (needs the shared MNIST files)::

    python -m benchmarks.floor                  # 500 rounds, as the preset, 3 repetitions
    python -m benchmarks.floor --rounds 100 --repeat 1
    python -m benchmarks.floor --write          # also replace "## Floor" in BENCHMARKS.md

The workload is ``experiment=fang_mnist``: 100 clients of Fang et al.'s bias-0.5
partition, every client every round, one SGD step of batch 32 on multinomial logistic
regression, Krum told f = 20, and the test set evaluated after every round. It is timed
twice: as configured (20 clients run Fang's attack on Krum) and without attackers
(``attack=none malicious_fraction=0``).

The floor is the same maths with no framework, written here: the clients' gradients of
one round in one batched operation (closed-form softmax-regression gradients over a
``(clients, batch, 784)`` tensor), the attack and Krum called as the same pure functions
Oleander calls (``clients.attacks.fang.fang_krum``, ``strategies.krum.krum``), and the
same evaluation, on the same data and partitions (loaded before the clock starts).
Its minibatches are drawn from one generator, not per client: it has the arithmetic of
the workload, not its exact numbers. The ratio Oleander ÷ floor uses Oleander's
simulation time (summary.json's ``wall_seconds``: data, model, every round, files), so
process start-up (imports, config checks) is left out of both; the process wall time is
shown beside it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks.common import (
    DEFAULT_OUTPUT,
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

SECTION_TITLE = "Floor"
GOAL_RATIO = 5.0
NUM_CLIENTS, NUM_MALICIOUS, BATCH, LR = 100, 20, 32, 0.1


def _federation(mnist: Path) -> tuple[object, list[torch.Tensor]]:
    """The preset's data and partitions, exactly as Oleander builds them."""
    from hydra import compose, initialize_config_dir

    from simulator.components import federation_spec
    from simulator.federation import load_federation
    from simulator.preflight import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", ["experiment=fang_mnist", f"dataset.path={mnist}"])
    federation = load_federation(federation_spec(cfg))
    return federation, [torch.from_numpy(p) for p in federation.partitions]


def floor_loop(mnist: Path, rounds: int, attack: bool, seed: int = 0) -> float:
    """Seconds the bare loop takes for ``rounds`` rounds (data loaded before the clock)."""
    from clients.attacks.fang import fang_krum
    from strategies.krum import krum

    federation, parts = _federation(mnist)
    train, test = federation.data.train, federation.data.test  # type: ignore[attr-defined]
    x = train.x.reshape(len(train.x), -1)  # (N, 784)
    y = train.y
    x_test, y_test = test.x.reshape(len(test.x), -1), test.y
    sizes = torch.tensor([len(p) for p in parts])
    offsets = torch.cumsum(sizes, 0) - sizes
    flat = torch.cat(parts)
    classes = int(y.max()) + 1
    weight = torch.zeros(classes, x.shape[1])  # the global model, flattened below
    bias = torch.zeros(classes)
    f = NUM_MALICIOUS if attack else 0
    gen = torch.Generator().manual_seed(seed)
    torch.set_num_threads(1)  # as the preset's runs (torch_threads=1)
    start = time.perf_counter()
    for _ in range(rounds):
        # Each client's batch: BATCH random rows of its own partition.
        pick = (torch.rand(NUM_CLIENTS, BATCH, generator=gen) * sizes[:, None]).long()
        rows = flat[offsets[:, None] + pick]  # (C, B)
        xb, yb = x[rows], y[rows]  # (C, B, 784), (C, B)
        probs = torch.softmax(xb @ weight.T + bias, dim=-1)  # (C, B, K)
        probs[torch.arange(NUM_CLIENTS)[:, None], torch.arange(BATCH), yb] -= 1.0
        grad_w = probs.transpose(1, 2) @ xb / BATCH  # (C, K, 784)
        grad_b = probs.mean(dim=1)  # (C, K)
        updates = -LR * torch.cat([grad_w.reshape(NUM_CLIENTS, -1), grad_b], dim=1)  # (C, d)
        if f:
            crafted = fang_krum(updates[f:], f, NUM_CLIENTS, generator=gen)
            updates = torch.cat([crafted, updates[f:]])
        step = krum(updates, num_malicious=NUM_MALICIOUS).update
        weight += step[: weight.numel()].reshape(weight.shape)
        bias += step[weight.numel() :]
        logits = x_test @ weight.T + bias
        _ = (logits.argmax(1) == y_test).float().mean().item()
        _ = torch.nn.functional.cross_entropy(logits, y_test).item()
    return time.perf_counter() - start


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.floor",
        description="Oleander on fang_mnist (logistic regression) against a bare torch loop.",
    )
    parser.add_argument("--rounds", type=int, default=500, help="rounds (default 500)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--write", action="store_true", help=f"replace '## {SECTION_TITLE}'")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="BENCHMARKS.md path")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds={args.rounds}: must be >= 1")
    if args.repeat < 1:
        parser.error(f"--repeat={args.repeat}: must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    mnist = mnist_dir()
    if mnist is None:
        print("needs the MNIST files: set $OLEANDER_MNIST_DIR or put them in ../shared/data/mnist")
        return 2
    command = command_line("benchmarks.floor", argv)
    machine = machine_line()
    print(f"$ {command}\nmachine: {machine}", flush=True)
    load_before = load_average()
    started = time.perf_counter()
    variants = {
        "Fang's attack on Krum (as the preset)": (True, ()),
        "no attackers": (False, ("attack=none", "malicious_fraction=0")),
    }
    results: dict[str, dict[str, list[float]]] = {
        name: {"floor": [], "sim": [], "wall": []} for name in variants
    }
    with tempfile.TemporaryDirectory(prefix="oleander-floor-") as tmp:
        for rep in range(args.repeat):
            for i, (name, (attack, extra)) in enumerate(variants.items()):
                print(f"[{rep + 1}/{args.repeat}] {name}", flush=True)
                results[name]["floor"].append(floor_loop(mnist, args.rounds, attack))
                run = run_oleander(
                    ["experiment=fang_mnist", f"dataset.path={mnist}",
                     f"num_rounds={args.rounds}", *extra],
                    Path(tmp), f"r{rep}-v{i}",
                )  # fmt: skip
                results[name]["sim"].append(run.simulation)
                results[name]["wall"].append(run.wall)
    elapsed = time.perf_counter() - started
    load = f"load average (1 min) {load_average()} after, {load_before} before"
    header = ["workload", "rounds", "floor", "Oleander (simulation)", "Oleander ÷ floor",
              "Oleander (process wall)", "reps"]  # fmt: skip
    rows, ratios = [], []
    for name, r in results.items():
        ratio = median(r["sim"]) / median(r["floor"])
        ratios.append(ratio)
        rows.append([
            name, str(args.rounds), fmt_s(median(r["floor"])), fmt_s(median(r["sim"])),
            fmt_ratio(ratio), fmt_s(median(r["wall"])), str(args.repeat),
        ])  # fmt: skip
    lines = table(header, rows, right={1, 2, 3, 4, 5, 6})
    worst = max(ratios)
    goal = (
        f"{'MET ' if worst <= GOAL_RATIO else 'MISS'}  fang_mnist (logistic regression) within "
        f"{GOAL_RATIO:g}x of the bare-loop floor: {fmt_ratio(worst)}x at worst"
    )
    notes = [
        "- The floor: the same maths in a bare loop (see `benchmarks/floor.py`): all "
        "clients' gradients in one batched operation, Fang's attack and Krum through the "
        "same pure functions, evaluation every round, data loaded before the clock.",
        "- Oleander: `oleander experiment=fang_mnist dataset.path=DIR num_rounds=R` "
        "(plus `attack=none malicious_fraction=0` for the second row), inline engine; "
        "simulation = summary.json's `wall_seconds`.",
    ]
    finish(args, title=SECTION_TITLE, command=command, machine=machine, elapsed=elapsed,
           load=load, notes=notes, lines=lines, goals=[goal])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
