"""Per-round results of one run, written only inside the run's output directory.

``rounds.csv`` and ``clients.csv`` are rewritten whole after every round through a
temporary file and a rename, so a killed run never leaves a half-written file;
``summary.json`` is written last, the same way, so its presence means the run finished.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

ROUND_COLUMNS = (
    "round",
    "test_accuracy",
    "test_loss",
    "train_loss",
    "clients_sampled",
    "malicious_sampled",
    "clients_trained",
    "failures",
    "rejected",
    "attack_success_rate",
    "detection_precision",
    "detection_recall",
    "detection_fpr",
    "round_seconds",
    "aggregation_seconds",
    "note",
)
CLIENT_COLUMNS = (
    "round",
    "client",
    "malicious",
    "num_examples",
    "train_loss",
    "update_norm",
    "weight",
    "flagged",
)

# A weight at or below this counts as "left out" by the rule.
FLAGGED_WEIGHT = 1e-12


@dataclass
class RoundReport:
    """What one round's aggregation saw and did, for ``clients.csv`` and ``rounds.csv``."""

    server_round: int
    sampled: list[int]
    client_ids: list[int] = field(default_factory=list)  # accepted rows, ascending id
    num_examples: list[int] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)
    update_norms: list[float] = field(default_factory=list)
    weights: list[float] | None = None
    failures: dict[int, str] = field(default_factory=dict)  # client id -> error reason
    rejected: dict[int, str] = field(default_factory=dict)  # client id -> why
    # client id -> the detector that flagged it; None where no detector ran
    flagged: dict[int, str] | None = None
    aggregation_seconds: float = 0.0
    note: str = ""
    attack_failed: bool = False
    # what the adversary's attack computed this round, e.g. {"attack.z": 0.16}
    effective: dict[str, float] = field(default_factory=dict)

    def add_note(self, text: str) -> None:
        self.note = f"{self.note}; {text}" if self.note else text

    @property
    def train_loss(self) -> float:
        """Example-weighted mean training loss over the accepted replies (NaN if none)."""
        return self.mean_train_loss()

    def mean_train_loss(self, untrained: frozenset[int] = frozenset()) -> float:
        """``train_loss`` without the clients in ``untrained`` (fake clients: they hold
        no data, report no loss, and their example count is nominal)."""
        rows = [
            (n, loss)
            for c, n, loss in zip(
                self.client_ids, self.num_examples, self.train_losses, strict=True
            )
            if c not in untrained
        ]
        total = sum(n for n, _ in rows)
        if not total:
            return float("nan")
        return sum(n * loss for n, loss in rows) / total


class RoundObserver(Protocol):
    """Receives what the strategy saw each round (``RunRecorder`` implements it)."""

    def on_round_start(self, server_round: int) -> None: ...

    def on_aggregated(self, report: RoundReport) -> None: ...


def flag_reason(report: RoundReport, client: int, weight: float | None, rule: str) -> str | None:
    """Why ``client`` counts as flagged in the round (``clients.csv``'s ``flagged``), or None.

    ``rejected: <why>`` (a non-finite or malformed update), ``filtered: <detector>`` (a
    detection stage removed it), ``weight: <w> (<rule>)`` (the rule gave it a share of at
    most ``FLAGGED_WEIGHT``: Krum's unselected, FLTrust's zero trust), checked in that order.
    """
    if client in report.rejected:
        return f"rejected: {report.rejected[client]}"
    if report.flagged and client in report.flagged:
        return f"filtered: {report.flagged[client]}"
    if weight is not None and weight <= FLAGGED_WEIGHT:
        return f"weight: {weight:.3g} ({rule})"
    return None


def detection(report: RoundReport, malicious: frozenset[int]) -> tuple[float, float, float]:
    """Precision, recall and false-positive rate of "flagged" in one round.

    Flagged: rejected (non-finite or malformed), flagged by a detector, or given weight 0
    by the rule (Krum's unselected, FLTrust's zero trust). Precision: the malicious share
    of the flagged; recall: the share of the round's malicious clients flagged; FPR: the
    share of its benign clients flagged, defined in rounds without attackers too (false
    alarms). Only defined where a detector ran or the rule gives per-client weights; NaN
    otherwise, and NaN for a ratio with nothing to count.
    """
    if report.weights is None and report.flagged is None:
        return float("nan"), float("nan"), float("nan")
    rejected = {c for c in report.rejected if c >= 0}  # -1: a node that is no client
    flagged = rejected | set(report.flagged or ())
    if report.weights is not None:
        flagged |= {
            c for c, w in zip(report.client_ids, report.weights, strict=True) if w <= FLAGGED_WEIGHT
        }
    clients = set(report.client_ids) | rejected
    present = clients & malicious
    benign = clients - malicious
    hits = len(flagged & malicious)
    precision = hits / len(flagged) if flagged else float("nan")
    recall = hits / len(present) if present else float("nan")
    fpr = len(flagged & benign) / len(benign) if benign else float("nan")
    return precision, recall, fpr


def backdoor_lifespan(
    rounds: Sequence[dict[str, Any]], stop_round: int | None, threshold: float
) -> dict[str, Any] | None:
    """How long a backdoor outlives its attack (BackFed's lifespan: the rounds from the
    attack's stop until its success rate first falls below ``threshold``).

    None without a stop round or without a success rate after it. ``implanted`` False
    (and no rounds) when the rate was already below the threshold in the stop round: the
    backdoor never took. ``rounds``: the number of rounds, or None while the rate never
    fell below the threshold before the run ended (``at_least`` then says how many rounds
    it survived at least).
    """
    if stop_round is None:
        return None
    before = [
        r
        for r in rounds
        if 0 < r["round"] <= stop_round
        and _finite_or_none(r.get("attack_success_rate")) is not None
    ]
    if before and before[-1]["attack_success_rate"] < threshold:
        # below the threshold when the attack stopped: never implanted, nothing to outlive
        return {"stop_round": stop_round, "threshold": threshold, "implanted": False,
                "rounds": None, "at_least": None}  # fmt: skip
    after = [
        r
        for r in rounds
        if r["round"] > stop_round and _finite_or_none(r.get("attack_success_rate")) is not None
    ]
    if not after:
        return None
    below = next((r["round"] for r in after if r["attack_success_rate"] < threshold), None)
    last = after[-1]["round"]
    return {
        "stop_round": stop_round,
        "threshold": threshold,
        "implanted": True,
        "rounds": None if below is None else below - stop_round,
        "at_least": last - stop_round if below is None else None,
    }


def atomic_write_text(path: Path, text: str, *, durable: bool = False) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename.

    A killed process leaves either the old file or the new one, never half of one.
    ``durable`` adds an fsync, for files that must also survive a power loss.
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    # os.open applies the umask to 0o666, as for any file the user creates.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def csv_text(columns: Sequence[str], rows: Iterable[dict[str, Any]], header: bool = True) -> str:
    """``rows`` as CSV with ``columns`` (other keys ignored): None and NaN as empty cells,
    floats written exactly (``repr`` round-trips), lists and dicts as JSON."""
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore"
    )
    if header:
        writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return value


def varying_summary(values: Sequence[float]) -> float | dict[str, float]:
    """One value where every round had the same, else its mean, min, max, last and count."""
    if len(set(values)) == 1:
        return values[0]
    return {
        "mean": sum(values) / len(values), "min": min(values), "max": max(values),
        "last": values[-1], "rounds": len(values),
    }  # fmt: skip


def success_rate_summary(
    rounds: Sequence[dict[str, Any]], attacking: Callable[[int], bool]
) -> dict[str, Any] | None:
    """The attack success rate over the attack window: final, max and mean over its rounds
    that have one (a rate that alternates 1/0 shows in max and mean, not in final); None
    where no round of the window has one."""
    rates = [
        (r["round"], r["attack_success_rate"])
        for r in rounds
        if attacking(r["round"]) and _finite_or_none(r.get("attack_success_rate")) is not None
    ]
    if not rates:
        return None
    values = [v for _, v in rates]
    return {
        "final": values[-1], "max": max(values), "mean": sum(values) / len(values),
        "rounds": len(values), "window": [rates[0][0], rates[-1][0]],
    }  # fmt: skip


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


class RunRecorder:
    """Collects what each round did and writes the run's files.

    The strategy reports round starts and aggregations (``RoundObserver``); the server's
    evaluation reports accuracy and loss, which closes the round's row.
    """

    def __init__(
        self,
        output_dir: Path,
        num_rounds: int,
        on_round: Callable[[int, float], None] | None = None,
        malicious: frozenset[int] = frozenset(),
        fake: frozenset[int] = frozenset(),
        attacking: Callable[[int], bool] = lambda server_round: True,
        on_row: Callable[[dict[str, Any]], None] | None = None,
        detector: bool = True,
        rule: str = "",
    ) -> None:
        self.output_dir = Path(output_dir)
        # False for a defence that never singles clients out (FedAvg, median, ...): its
        # detection precision, recall and FPR are left empty, not 0, except in rounds
        # where the server rejected an update (non-finite, malformed), a flag of its own.
        self.detector = detector
        self.rule = rule  # names the rule in a weight flag's reason
        self.effective: dict[str, list[float]] = {}  # attack.<name> -> one value per round
        self.on_row = on_row  # receives each rounds.csv row once it is written
        # Rounds inside the attack window: outside it nobody attacks, so detection counts
        # every client as benign there (flags are false alarms).
        self.attacking = attacking
        # Fake clients are malicious too; they are left out of the round's training loss.
        self.malicious = frozenset(malicious) | frozenset(fake)
        self.fake = frozenset(fake)
        self.attack_failed_rounds = 0
        self.num_rounds = num_rounds
        self.on_round = on_round
        self.rounds: list[dict[str, Any]] = []
        self.clients_written = 0
        # clients.csv grows by n rows a round: keep its rendered text rather than re-render.
        self._clients_text = csv_text(CLIENT_COLUMNS, [])
        self._new_clients: list[dict[str, Any]] = []
        self._round_start: float | None = None
        self._pending: RoundReport | None = None
        self.started = time.perf_counter()
        self.first_round_started: float | None = None  # Unix time, for startup benchmarks

    # RoundObserver -----------------------------------------------------------------
    def on_round_start(self, server_round: int) -> None:
        if self.first_round_started is None:
            self.first_round_started = time.time()
        self._round_start = time.perf_counter()
        self._pending = None

    def on_aggregated(self, report: RoundReport) -> None:
        self._pending = report
        self.attack_failed_rounds += int(report.attack_failed)
        for key, value in report.effective.items():
            self.effective.setdefault(key, []).append(value)
        weights = report.weights or [None] * len(report.client_ids)
        rows = {
            client: {
                "num_examples": report.num_examples[i],
                "train_loss": report.train_losses[i],
                "update_norm": report.update_norms[i],
                "weight": weights[i],
            }
            for i, client in enumerate(report.client_ids)
        }
        # rejected clients get a row too (their flag says why); -1: a node that is no client
        rows.update({c: {} for c in report.rejected if c >= 0 and c not in rows})
        for client in sorted(rows):
            row = rows[client]
            self._new_clients.append(
                {
                    "round": report.server_round,
                    "client": client,
                    "malicious": int(client in self.malicious),
                    **row,
                    "flagged": flag_reason(report, client, row.get("weight"), self.rule),
                }
            )

    # Server evaluation -------------------------------------------------------------
    def on_evaluated(
        self,
        server_round: int,
        accuracy: float,
        loss: float,
        attack_success_rate: float | None = None,
    ) -> None:
        row: dict[str, Any] = {
            "round": server_round,
            "test_accuracy": accuracy,
            "test_loss": loss,
            "attack_success_rate": attack_success_rate,
        }
        report = self._pending
        if server_round > 0 and report is not None:
            attackers = self.malicious if self.attacking(server_round) else frozenset()
            # The server's own check (non-finite, malformed) flags for every defence.
            judged = self.detector or any(c >= 0 for c in report.rejected)
            precision, recall, fpr = detection(report, attackers) if judged else (math.nan,) * 3
            row.update(
                malicious_sampled=len(set(report.sampled) & self.malicious),
                detection_precision=precision,
                detection_recall=recall,
                detection_fpr=fpr,
                train_loss=report.mean_train_loss(self.fake),
                clients_sampled=len(report.sampled),
                clients_trained=len(report.client_ids),
                failures=len(report.failures),
                rejected=len(report.rejected),
                aggregation_seconds=report.aggregation_seconds,
                note=report.note,
            )
        if server_round > 0 and self._round_start is not None:
            row["round_seconds"] = time.perf_counter() - self._round_start
        self.rounds.append(row)
        self._write_tables()
        if self.on_row is not None:
            self.on_row(dict(row))
        if self.on_round is not None:
            self.on_round(server_round, accuracy)

    def _write_tables(self) -> None:
        self._clients_text += csv_text(CLIENT_COLUMNS, self._new_clients, header=False)
        self.clients_written += len(self._new_clients)
        self._new_clients = []
        atomic_write_text(self.output_dir / "rounds.csv", csv_text(ROUND_COLUMNS, self.rounds))
        atomic_write_text(self.output_dir / "clients.csv", self._clients_text)

    # Checkpoints -------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the results so far (plain containers only)."""
        return {
            "rounds": self.rounds,
            "clients_text": self._clients_text,
            "clients_written": self.clients_written,
            "attack_failed_rounds": self.attack_failed_rounds,
            "elapsed": time.perf_counter() - self.started,
            "effective": {k: list(v) for k, v in self.effective.items()},
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's results; the files are rewritten to match it."""
        self.rounds = list(state["rounds"])
        self._clients_text = state["clients_text"]
        self.clients_written = state["clients_written"]
        self.attack_failed_rounds = state["attack_failed_rounds"]
        self.effective = {k: list(v) for k, v in state.get("effective", {}).items()}
        self.started = time.perf_counter() - state["elapsed"]
        self._new_clients = []
        self._write_tables()

    # End of run --------------------------------------------------------------------
    def summary(self, extra: dict[str, Any]) -> dict[str, Any]:
        trained = [r for r in self.rounds if r["round"] > 0]
        final = trained[-1] if trained else (self.rounds[-1] if self.rounds else {})
        scored = [r for r in trained if math.isfinite(r["test_accuracy"])]
        best = max(scored, key=lambda r: r["test_accuracy"], default=final)
        return {
            "final_attack_success_rate": _finite_or_none(final.get("attack_success_rate")),
            "final_accuracy": _finite_or_none(final.get("test_accuracy")),
            "final_loss": _finite_or_none(final.get("test_loss")),
            "best_accuracy": _finite_or_none(best.get("test_accuracy")),
            "best_round": best.get("round"),
            "initial_accuracy": _finite_or_none(
                self.rounds[0]["test_accuracy"] if self.rounds else None
            ),
            "rounds": len(trained),
            "rounds_attack_failed": self.attack_failed_rounds,
            "attack_success_rate": success_rate_summary(trained, self.attacking),
            "detector": self.detector,
            "effective": {k: varying_summary(v) for k, v in sorted(self.effective.items())},
            "wall_seconds": time.perf_counter() - self.started,
            "first_round_started_unix": self.first_round_started,
            **extra,
        }

    def write_summary(self, summary: dict[str, Any]) -> Path:
        path = self.output_dir / "summary.json"
        text = json.dumps(summary, indent=2, sort_keys=True) + "\n"
        atomic_write_text(path, text, durable=True)
        return path
