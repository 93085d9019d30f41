"""One run on the terminal: ``oleander-report show RUN`` and ``oleander-report flagged RUN``.

``show`` prints the run's config as it ran (``.hydra/config.yaml``, interpolations resolved),
the parameters it found itself, its warnings and its key results. ``flagged`` prints the
clients its defence singled out in a round (``--round R``), each against the truth
(``clients.csv``'s ``malicious``), with the round's precision, recall and false-positive
rate; without ``--round``, one line per round.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import yaml

from simulator.report.collect import (
    BrokenFile,
    ReportError,
    Run,
    _float,
    _get,
    _int,
    is_run_dir,
    load_clients,
    load_run,
)
from simulator.report.settings import effective_of, effective_text
from simulator.report.tables import SUCCESS_STATS, _mean_defined, is_detector, success_stats
from simulator.results import FLAGGED_WEIGHT  # a weight at or below it: left out

PROG = "oleander-report"
COMMANDS = ("show", "flagged")


def fail(message: str) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _round_number(text: str) -> int:
    value = _int(text)
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a round number >= 1")
    return value


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description="One Oleander run on the terminal.")
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser(
        "show",
        help="the run's config, effective parameters, warnings and key results",
        description="The run's config as it ran, its effective parameters, warnings, results.",
    )
    show.add_argument("run", type=Path, metavar="RUN", help="a run directory")
    flagged = commands.add_parser(
        "flagged",
        help="the clients the defence flagged, against the true attackers",
        description=(
            "The clients the defence flagged (rejected, filtered by a detection stage, or "
            "weight 0 from the rule) against the attackers sampled. With --round R: each "
            "flagged client and the reason; without: one line per round."
        ),
    )
    flagged.add_argument("run", type=Path, metavar="RUN", help="a run directory")
    flagged.add_argument("--round", type=_round_number, metavar="R", help="one round in detail")
    return parser.parse_args(argv)


def open_run(path: Path) -> Run:
    """The run in ``path``; ``ReportError`` for a directory that holds no run."""
    if not path.is_dir():
        raise ReportError(
            f"not a directory: {path}" if path.exists() else f"no such directory: {path}"
        )
    if not is_run_dir(path):
        raise ReportError(f"{path}: not a run directory (no .hydra/config.yaml)")
    run = load_run(path, path.name)
    if run.status == "broken":
        raise ReportError(f"{path}: {run.reason}")
    return run


# flagged -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Client:
    """One client's row of one round: whether it is an attacker, and why it was flagged."""

    client: int
    malicious: bool
    reason: str | None  # None: not flagged


def flag_reason(row: dict[str, str]) -> str | None:
    """``flagged`` as recorded (``filtered: flame``; older runs: a detector's name), else
    ``weight: 0`` for a weight the rule zeroed, as rounds.csv's detection columns count it."""
    recorded = (row.get("flagged") or "").strip()
    if recorded:
        return recorded
    weight = _float(row.get("weight"))
    if weight is not None and weight <= FLAGGED_WEIGHT:
        return f"weight: {weight:g}"
    return None


def clients_by_round(rows: Sequence[dict[str, str]]) -> dict[int, list[Client]]:
    rounds: dict[int, list[Client]] = defaultdict(list)
    for row in rows:
        malicious = (row.get("malicious") or "").strip().lower() in ("1", "true")
        client = _int(row.get("client"))
        rounds[_int(row["round"]) or 0].append(
            Client(-1 if client is None else client, malicious, flag_reason(row))
        )
    return dict(sorted(rounds.items()))


@dataclass(frozen=True)
class RoundCounts:
    flagged: int
    hits: int  # attackers flagged
    attackers: int
    benign: int
    false_alarms: int

    @property
    def precision(self) -> float | None:
        return self.hits / self.flagged if self.flagged else None

    @property
    def recall(self) -> float | None:
        return self.hits / self.attackers if self.attackers else None

    @property
    def fpr(self) -> float | None:
        return self.false_alarms / self.benign if self.benign else None


def count(clients: Sequence[Client]) -> RoundCounts:
    flagged = [c for c in clients if c.reason is not None]
    return RoundCounts(
        flagged=len(flagged),
        hits=sum(c.malicious for c in flagged),
        attackers=sum(c.malicious for c in clients),
        benign=sum(not c.malicious for c in clients),
        false_alarms=sum(not c.malicious for c in flagged),
    )


def _ratio(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def _ids(clients: Sequence[Client]) -> str:
    return ", ".join(str(c.client) for c in clients) or "none"


def counts_line(counts: RoundCounts) -> str:
    return (
        f"flagged {counts.flagged} (attackers {counts.hits}, benign {counts.false_alarms}); "
        f"attackers flagged {counts.hits} of {counts.attackers}; "
        f"precision {_ratio(counts.precision)}, recall {_ratio(counts.recall)}, "
        f"FPR {_ratio(counts.fpr)}"
    )


def describe(run: Run) -> str:
    rule = "+".join(
        str(s)
        for s in (
            _get(run.config, "detect.name"),
            _get(run.config, "pre.name"),
            _get(run.config, "strategy.name"),
        )
        if s not in (None, "none")
    )
    attack = _get(run.config, "attack.name")
    fraction = _get(run.config, "malicious_fraction")
    return f"{run.path}: {rule} under {attack} at f={fraction}, seed {_get(run.config, 'seed')}"


def flagged_text(run: Run, rounds: dict[int, list[Client]], wanted: int | None) -> str:
    lines = [describe(run)]
    if run.summary and not is_detector(run):
        lines.append("the defence is not a detector: it singles out no client")
    if wanted is not None:
        if wanted not in rounds:
            span = f"rounds {min(rounds)}-{max(rounds)}" if rounds else "no rounds"
            raise ReportError(f"--round {wanted}: not in {run.path} (clients.csv has {span})")
        clients = rounds[wanted]
        attackers = [c for c in clients if c.malicious]
        lines.append(
            f"round {wanted}: {len(clients)} clients, attackers sampled: {_ids(attackers)}"
        )
        flagged = [c for c in clients if c.reason is not None]
        if flagged:
            lines.append(f"{'client':>6}  {'attacker':<8}  reason")
            lines += [
                f"{c.client:>6}  {'yes' if c.malicious else 'no':<8}  {c.reason}" for c in flagged
            ]
        missed = [c for c in attackers if c.reason is None]
        lines.append(f"attackers not flagged: {_ids(missed)}")
        lines.append(counts_line(count(clients)))
        return "\n".join(lines) + "\n"
    lines.append("one line per round (--round R: the flagged clients of round R and why)")
    for number, clients in rounds.items():
        attackers = [c for c in clients if c.malicious]
        hit = [c for c in attackers if c.reason is not None]
        lines.append(
            f"round {number}: attackers {_ids(attackers)}, flagged of them: {_ids(hit)}; "
            + counts_line(count(clients))
        )
    return "\n".join(lines) + "\n"


# show ----------------------------------------------------------------------------------


def _number(value: object) -> str:
    number = _float(value)
    return "–" if number is None else f"{number:.4g}"


def show_text(run: Run) -> str:
    lines = [
        f"run: {run.path}",
        f"status: {run.status}" + (f" ({run.reason})" if run.reason else ""),
    ]
    lines += ["", "config (.hydra/config.yaml, interpolations resolved):"]
    dumped = yaml.safe_dump(run.config, sort_keys=False, default_flow_style=None, width=100)
    lines += ["  " + line for line in dumped.rstrip().splitlines()]
    if run.overrides:
        lines += ["", f"overrides: {' '.join(run.overrides)}"]
    summary = run.summary
    if not summary:
        return "\n".join(lines) + "\n"
    effective = effective_of(run)
    lines += ["", "effective parameters (summary.json):"]
    lines += [f"  {k}: {effective_text(v)}" for k, v in sorted(effective.items())] or [
        "  none recorded"
    ]
    warnings = summary.get("warnings")
    lines += ["", "warnings:"]
    lines += (
        [f"  {w}" for w in warnings]
        if isinstance(warnings, list) and warnings
        else ["  none" if isinstance(warnings, list) else "  not recorded (an older run)"]
    )
    lines += ["", "results:"]
    lines.append(
        f"  final accuracy {_number(summary.get('final_accuracy'))} "
        f"(best {_number(summary.get('best_accuracy'))} at round {summary.get('best_round')})"
    )
    stats = success_stats(run)
    if any(v is not None for v in stats.values()):
        window = ", ".join(f"{s} {_number(stats[s])}" for s in SUCCESS_STATS)
        lines.append(f"  attack success rate over the attack window: {window}")
        lines.append(
            f"  attack success rate at the last round: "
            f"{_number(summary.get('final_attack_success_rate'))}"
        )
    if is_detector(run):
        means = ", ".join(
            f"{name} {_number(_mean_defined(run.rounds, f'detection_{column}'))}"
            for name, column in (("precision", "precision"), ("recall", "recall"), ("FPR", "fpr"))
        )
        lines.append(f"  detection (mean over rounds): {means}")
    else:
        lines.append("  detection: not a detector (the defence singles out no client)")
    threat = summary.get("threat_model")
    if isinstance(threat, dict):
        lines.append(
            f"  malicious clients: {threat.get('malicious_clients')} "
            f"(f told to the rule: {threat.get('num_malicious_told')})"
        )
    lines.append(f"  wall time {_number(summary.get('wall_seconds'))} s")
    lines.append(f"  config digest {summary.get('config_digest')}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> None:
    """``oleander-report show RUN`` / ``oleander-report flagged RUN [--round R]``."""
    args = parse_args(argv)
    try:
        run = open_run(args.run)
        if args.command == "show":
            text = show_text(run)
        else:
            try:
                rounds = clients_by_round(load_clients(run.path / "clients.csv"))
            except BrokenFile as error:
                raise ReportError(f"{run.path}: {error}") from None
            text = flagged_text(run, rounds, args.round)
    except ReportError as error:
        fail(str(error))
    sys.stdout.write(text)
