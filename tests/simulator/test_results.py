"""Results files: atomic writes, rounds.csv and clients.csv contents, and the run summary."""

from __future__ import annotations

import csv
import json
import math
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from simulator.results import (
    CLIENT_COLUMNS,
    ROUND_COLUMNS,
    RoundReport,
    RunRecorder,
    atomic_write_text,
    flag_reason,
    success_rate_summary,
    varying_summary,
)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def strict_json(text: str) -> Any:
    """Parse JSON, refusing the NaN/Infinity extensions Python's json module accepts."""

    def refuse(name: str) -> None:
        raise ValueError(f"not valid JSON: {name}")

    return json.loads(text, parse_constant=refuse)


# atomic_write_text -----------------------------------------------------------------


def test_atomic_write_replaces_content_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "rounds.csv"
    atomic_write_text(path, "first\n")
    assert path.read_text(encoding="utf-8") == "first\n"
    atomic_write_text(path, "second, longer\nline two\n")
    assert path.read_text(encoding="utf-8") == "second, longer\nline two\n"
    atomic_write_text(path, "x")  # shorter than before: no leftover tail
    assert path.read_text(encoding="utf-8") == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rounds.csv"]


def test_atomic_write_keeps_text_verbatim(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    text = "a\r\nb\nÄ µ ✓\n"
    atomic_write_text(path, text, durable=True)
    assert path.read_bytes() == text.encode("utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]


def test_atomic_write_file_is_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    atomic_write_text(path, "{}")
    mode = stat.S_IMODE(path.stat().st_mode)
    umask = current_umask()
    # not mkstemp's 0600: the mode a plain open() would have given
    assert mode == 0o666 & ~umask
    if not umask & 0o044:  # e.g. the default 022
        assert mode & 0o044


def test_failed_write_keeps_old_file_and_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "clients.csv"
    atomic_write_text(path, "old\n")
    with pytest.raises(TypeError):
        atomic_write_text(path, 123)  # type: ignore[arg-type]
    assert path.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clients.csv"]


def test_failed_first_write_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        atomic_write_text(tmp_path / "new.csv", b"bytes")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


# RunRecorder -----------------------------------------------------------------------


def report(
    server_round: int,
    *,
    sampled: list[int],
    clients: list[int],
    counts: list[int],
    losses: list[float],
    norms: list[float],
    weights: list[float] | None,
    failures: dict[int, str] | None = None,
    rejected: dict[int, str] | None = None,
    seconds: float = 0.25,
    note: str = "",
) -> RoundReport:
    return RoundReport(
        server_round=server_round,
        sampled=sampled,
        client_ids=clients,
        num_examples=counts,
        train_losses=losses,
        update_norms=norms,
        weights=weights,
        failures=failures or {},
        rejected=rejected or {},
        aggregation_seconds=seconds,
        note=note,
    )


REPORTS = {
    1: report(
        1,
        sampled=[0, 2, 3],
        clients=[0, 2, 3],
        counts=[10, 30, 60],
        losses=[1.0, 2.0, 0.5],
        norms=[0.1, 0.2, 0.3],
        weights=[0.1, 0.3, 0.6],
    ),
    2: report(
        2,
        sampled=[1, 2, 4],
        clients=[1, 4],
        counts=[20, 20],
        losses=[0.75, float("nan")],
        norms=[1.5, 2.5],
        weights=None,  # a coordinate-wise rule has no per-client share
        failures={2: "boom"},
        seconds=0.125,
    ),
    3: report(
        3,
        sampled=[0, 1, 4],
        clients=[],
        counts=[],
        losses=[],
        norms=[],
        weights=None,
        failures={0: "boom"},
        rejected={1: "update has non-finite values", 4: "array 'w' has shape (2,)"},
        seconds=0.5,
        note="no usable reply: global model kept",
    ),
}
ACCURACY = {0: 0.1, 1: 0.4, 2: 0.7, 3: 0.7}
LOSS = {0: 2.3, 1: 1.6, 2: 0.9, 3: 0.95}


def run_recorder(
    tmp_path: Path, accuracy: dict[int, float] = ACCURACY, rounds: int = 3
) -> tuple[RunRecorder, list[tuple[int, float]]]:
    calls: list[tuple[int, float]] = []
    recorder = RunRecorder(tmp_path, rounds, on_round=lambda r, a: calls.append((r, a)))
    recorder.on_evaluated(0, accuracy[0], LOSS[0])
    for r in range(1, rounds + 1):
        recorder.on_round_start(r)
        recorder.on_aggregated(REPORTS[r])
        recorder.on_evaluated(r, accuracy[r], LOSS[r])
    return recorder, calls


def test_rounds_csv_has_one_row_per_evaluation(tmp_path: Path) -> None:
    _, calls = run_recorder(tmp_path)
    assert calls == [(r, ACCURACY[r]) for r in range(4)]
    header, rows = read_csv(tmp_path / "rounds.csv")
    assert header == list(ROUND_COLUMNS)
    assert [int(row["round"]) for row in rows] == [0, 1, 2, 3]
    for row in rows:
        r = int(row["round"])
        assert float(row["test_accuracy"]) == ACCURACY[r]
        assert float(row["test_loss"]) == LOSS[r]

    # the initial evaluation has no training columns
    initial = rows[0]
    for column in ROUND_COLUMNS[3:]:
        assert initial[column] == "", column

    for row in rows[1:]:
        rep = REPORTS[int(row["round"])]
        assert int(row["clients_sampled"]) == len(rep.sampled)
        assert int(row["clients_trained"]) == len(rep.client_ids)
        assert int(row["failures"]) == len(rep.failures)
        assert int(row["rejected"]) == len(rep.rejected)
        assert float(row["aggregation_seconds"]) == rep.aggregation_seconds
        assert row["note"] == rep.note

    # round 1: example-weighted loss, written exactly (repr round-trips)
    assert float(rows[1]["train_loss"]) == (10 * 1.0 + 30 * 2.0 + 60 * 0.5) / 100
    # round 2 has a NaN client loss, round 3 no accepted client: both NaN, written empty
    assert rows[2]["train_loss"] == ""
    assert rows[3]["train_loss"] == ""


def test_rounds_csv_is_rewritten_after_every_round(tmp_path: Path) -> None:
    recorder = RunRecorder(tmp_path, 2)
    recorder.on_evaluated(0, 0.1, 2.0)
    assert len(read_csv(tmp_path / "rounds.csv")[1]) == 1
    assert read_csv(tmp_path / "clients.csv") == (list(CLIENT_COLUMNS), [])
    recorder.on_round_start(1)
    recorder.on_aggregated(REPORTS[1])
    # clients.csv is written when the round closes, with its evaluation
    assert read_csv(tmp_path / "clients.csv")[1] == []
    recorder.on_evaluated(1, 0.4, 1.6)
    assert len(read_csv(tmp_path / "rounds.csv")[1]) == 2
    assert len(read_csv(tmp_path / "clients.csv")[1]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clients.csv", "rounds.csv"]


def test_clients_csv_has_one_row_per_round_and_client(tmp_path: Path) -> None:
    recorder, _ = run_recorder(tmp_path)
    header, rows = read_csv(tmp_path / "clients.csv")
    assert header == list(CLIENT_COLUMNS)
    keys = [(int(row["round"]), int(row["client"])) for row in rows]
    # round 3's clients were rejected: they get a row saying why, and nothing else
    assert keys == [(1, 0), (1, 2), (1, 3), (2, 1), (2, 4), (3, 1), (3, 4)]
    assert recorder.clients_written == len(rows)
    for row in rows:
        rep = REPORTS[int(row["round"])]
        if int(row["client"]) in rep.rejected:
            assert row["flagged"] == f"rejected: {rep.rejected[int(row['client'])]}"
            assert row["weight"] == row["num_examples"] == row["update_norm"] == ""
            continue
        i = rep.client_ids.index(int(row["client"]))
        assert int(row["num_examples"]) == rep.num_examples[i]
        assert float(row["update_norm"]) == rep.update_norms[i]
        loss = rep.train_losses[i]
        assert row["train_loss"] == ("" if math.isnan(loss) else repr(loss))
        if rep.weights is None:
            assert row["weight"] == ""
        else:
            assert float(row["weight"]) == rep.weights[i]


def test_round_without_aggregation_leaves_training_columns_empty(tmp_path: Path) -> None:
    recorder = RunRecorder(tmp_path, 2)
    recorder.on_evaluated(0, 0.1, 2.0)
    recorder.on_round_start(1)
    recorder.on_aggregated(REPORTS[1])
    recorder.on_evaluated(1, 0.4, 1.6)
    recorder.on_round_start(2)  # round 2 never reaches on_aggregated
    recorder.on_evaluated(2, 0.4, 1.6)
    _, rows = read_csv(tmp_path / "rounds.csv")
    assert rows[2]["clients_sampled"] == ""  # not round 1's report carried over
    assert rows[2]["note"] == ""
    assert len(read_csv(tmp_path / "clients.csv")[1]) == 3


def test_summary_final_and_best(tmp_path: Path) -> None:
    recorder, _ = run_recorder(tmp_path)
    summary = recorder.summary({"strategy": "fedavg"})
    assert summary["final_accuracy"] == ACCURACY[3]
    assert summary["final_loss"] == LOSS[3]
    assert summary["initial_accuracy"] == ACCURACY[0]
    assert summary["best_accuracy"] == 0.7
    assert summary["best_round"] == 2  # tie between rounds 2 and 3: the first to reach it
    assert summary["rounds"] == 3
    assert summary["strategy"] == "fedavg"


def test_round_and_wall_seconds_come_from_the_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import simulator.results as results

    now = {"t": 100.0}
    monkeypatch.setattr(results.time, "perf_counter", lambda: now["t"])
    recorder = RunRecorder(tmp_path, 1)  # started at t = 100
    recorder.on_evaluated(0, ACCURACY[0], LOSS[0])
    now["t"] = 105.0
    recorder.on_round_start(1)
    recorder.on_aggregated(REPORTS[1])
    now["t"] = 107.5
    recorder.on_evaluated(1, ACCURACY[1], LOSS[1])
    _, rows = read_csv(tmp_path / "rounds.csv")
    assert rows[0]["round_seconds"] == ""
    assert float(rows[1]["round_seconds"]) == 2.5
    now["t"] = 110.0
    assert recorder.summary({})["wall_seconds"] == 10.0


def test_summary_best_ignores_round_zero(tmp_path: Path) -> None:
    # the initial model is best; best_* describe trained rounds only
    accuracy = {0: 0.9, 1: 0.3, 2: 0.5, 3: 0.2}
    summary = run_recorder(tmp_path, accuracy)[0].summary({})
    assert summary["best_accuracy"] == 0.5
    assert summary["best_round"] == 2
    assert summary["final_accuracy"] == 0.2
    assert summary["initial_accuracy"] == 0.9


def test_summary_nan_final_is_none_and_nan_round_is_not_best(tmp_path: Path) -> None:
    accuracy = {0: 0.1, 1: 0.4, 2: float("nan"), 3: float("nan")}
    summary = run_recorder(tmp_path, accuracy)[0].summary({})
    assert summary["final_accuracy"] is None
    assert summary["final_loss"] == LOSS[3]
    assert summary["best_accuracy"] == 0.4
    assert summary["best_round"] == 1


def test_summary_best_skips_nan_first_trained_round(tmp_path: Path) -> None:
    accuracy = {0: 0.1, 1: float("nan"), 2: 0.8, 3: 0.6}
    summary = run_recorder(tmp_path, accuracy)[0].summary({})
    assert summary["best_accuracy"] == 0.8
    assert summary["best_round"] == 2


def test_summary_of_an_untrained_run(tmp_path: Path) -> None:
    recorder = RunRecorder(tmp_path, 0)
    assert recorder.summary({})["final_accuracy"] is None
    recorder.on_evaluated(0, 0.25, 2.0)
    summary = recorder.summary({})
    assert summary["rounds"] == 0
    assert summary["final_accuracy"] == 0.25
    assert summary["initial_accuracy"] == 0.25
    assert summary["best_round"] == 0


def test_write_summary_writes_strict_json(tmp_path: Path) -> None:
    accuracy = {0: float("nan"), 1: 0.4, 2: 0.7, 3: float("nan")}
    recorder, _ = run_recorder(tmp_path, accuracy)
    summary = recorder.summary({"strategy": "fedavg", "seed": 3})
    path = recorder.write_summary(summary)
    assert path == tmp_path / "summary.json"
    loaded = strict_json(path.read_text(encoding="utf-8"))
    assert loaded == summary
    assert loaded["final_accuracy"] is None and loaded["initial_accuracy"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "clients.csv",
        "rounds.csv",
        "summary.json",
    ]


def test_flag_reasons_name_rejection_then_detector_then_weight() -> None:
    report = RoundReport(
        server_round=1, sampled=[0, 1, 2, 3], client_ids=[0, 1, 2],
        weights=[0.0, 1e-13, 0.5], flagged={0: "flame"},
        rejected={3: "update has non-finite values"},
    )  # fmt: skip
    assert flag_reason(report, 3, None, "krum") == "rejected: update has non-finite values"
    assert flag_reason(report, 0, 0.0, "krum") == "filtered: flame"
    assert flag_reason(report, 1, 1e-13, "krum") == "weight: 1e-13 (krum)"
    assert flag_reason(report, 2, 0.5, "krum") is None


def test_a_defence_that_flags_nobody_has_no_detection_figures(tmp_path: Path) -> None:
    """FedAvg's recall is "not a detector", not 0; a rejection still counts as a flag."""
    recorder = RunRecorder(tmp_path, 2, malicious=frozenset({1}), detector=False, rule="fedavg")
    recorder.on_evaluated(0, 0.1, 2.0)
    plain = RoundReport(1, [0, 1], [0, 1], [5, 5], [1.0, 1.0], [1.0, 1.0], weights=[0.5, 0.5])
    recorder.on_round_start(1)
    recorder.on_aggregated(plain)
    recorder.on_evaluated(1, 0.2, 1.9)
    rejected = RoundReport(2, [0, 1], [0], [5], [1.0], [1.0], weights=[1.0], rejected={1: "nan"})
    recorder.on_round_start(2)
    recorder.on_aggregated(rejected)
    recorder.on_evaluated(2, 0.3, 1.8)
    _, rows = read_csv(tmp_path / "rounds.csv")
    assert [rows[1][k] for k in ("detection_precision", "detection_recall")] == ["", ""]
    assert float(rows[2]["detection_precision"]) == float(rows[2]["detection_recall"]) == 1.0
    assert recorder.summary({})["detector"] is False


def test_success_rate_summary_shows_what_the_final_round_hides() -> None:
    rounds = [{"round": r, "attack_success_rate": r % 2} for r in range(1, 7)]  # 1, 0, 1, ...
    inside = success_rate_summary(rounds, lambda r: 2 <= r <= 5)
    assert inside == {"final": 1, "max": 1, "mean": 0.5, "rounds": 4, "window": [2, 5]}
    assert success_rate_summary([{"round": 1, "attack_success_rate": None}], bool) is None


def test_effective_values_are_one_number_or_their_spread() -> None:
    assert varying_summary([0.5, 0.5]) == 0.5
    spread = varying_summary([0.0, 0.2, 0.1])
    assert spread == pytest.approx({"mean": 0.1, "min": 0.0, "max": 0.2, "last": 0.1, "rounds": 3})
