"""oleander-report over synthetic run directories: tables, report.md, plots, bad input."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import pickle
import statistics
import struct
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.report.cli import main

RULES = ("fedavg", "median")
FRACTIONS = (0.2, 0.4)
SEEDS = (0, 1)
ATTACKS = ("sign_flip", "backdoor")
NUM_ROUNDS = 3
ROUND_HEADER = (
    "round,test_accuracy,test_loss,train_loss,clients_sampled,malicious_sampled,"
    "clients_trained,failures,rejected,attack_success_rate,detection_precision,"
    "detection_recall,detection_fpr,round_seconds,aggregation_seconds,note"
)


def accuracy(rule: str, attack: str, fraction: float, seed: int) -> float:
    """Known final accuracies: no two cells alike, seeds differ."""
    drop = {"fedavg": 1.5, "median": 0.4}[rule] * (1.2 if attack == "backdoor" else 1.0)
    return round(0.9 - drop * fraction + 0.013 * seed + 0.002 * fraction * seed, 6)


def success(fraction: float, seed: int) -> float:
    return round(0.5 * fraction + 0.01 * seed, 6)


def cell(values: list[float]) -> str:
    """A table cell as the report should write it: mean ± 95% CI half-width (Student t,
    n - 1 degrees of freedom, from scipy.stats), the sample sd and n."""
    from scipy import stats

    n = len(values)
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    half = stats.t.ppf(0.975, n - 1) * sd / n**0.5
    return f"{mean:.3f} ± {half:.3f} (sd {sd:.3f}, n={n})"


def config(strategy: str, attack: str, fraction: float, seed: int, **extra: Any) -> dict[str, Any]:
    """A composed config as Hydra writes it: unresolved interpolations included."""
    cfg = {
        "dataset": {"_target_": "simulator.data.Digits", "name": "digits", "test_fraction": 0.25},
        "partition": {"_target_": "simulator.partition.iid", "_partial_": True, "name": "iid"},
        "model": {"_target_": "simulator.models.MLP", "name": "mlp", "hidden": [64]},
        "strategy": {"name": strategy, "num_malicious": None, "server_lr": 1.0},
        "pre": {"name": "none"},
        "detect": {"name": "none"},
        "attack": {
            "name": attack,
            "knowledge": "partial" if attack == "sign_flip" else None,
            **({"boost": "${num_clients}"} if attack == "backdoor" else {}),
        },
        "engine": {"name": "inline", "workers": 0},
        "seed": seed,
        "num_clients": 10,
        "clients_per_round": "${num_clients}",
        "num_rounds": NUM_ROUNDS,
        "lr": 0.3,
        "malicious_fraction": fraction,
        "progress": True,
    }
    cfg.update(extra)
    return cfg


def write_run(
    run: Path,
    cfg: dict[str, Any],
    *,
    final: float | None = None,
    asr: float | None = None,
    rounds: int = NUM_ROUNDS,
    summary: bool = True,
) -> None:
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    overrides = [f"strategy={cfg['strategy']['name']}", f"seed={cfg['seed']}"]
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    final = 0.5 if final is None else final
    lines = [ROUND_HEADER, "0,0.1,2.3,,,,,,,,,,,,,"]
    for r in range(1, rounds + 1):
        acc = final * (0.5 + 0.5 * r / NUM_ROUNDS)
        rate = "" if asr is None else repr(asr)
        # fedavg gives weights, so detection is defined; the median's is not.
        fedavg = cfg["strategy"]["name"] == "fedavg"
        precision, recall, fpr = ("0.5", "0.25", "0.125") if fedavg else ("", "", "")
        lines.append(f"{r},{acc!r},1.0,1.1,10,2,10,0,0,{rate},{precision},{recall},{fpr},0.1,0.01,")
    (run / "rounds.csv").write_text("\n".join(lines) + "\n")
    if summary:
        data = {
            "final_accuracy": final,
            "best_accuracy": final,
            "best_round": rounds,
            "final_loss": 1.0,
            "final_attack_success_rate": asr,
            # a backdoor that outlived its stop by seed + 1 rounds
            "backdoor_lifespan": None
            if asr is None
            else {
                "stop_round": 1,
                "threshold": 0.5,
                "rounds": cfg["seed"] + 1,
                "at_least": None,
            },
            "wall_seconds": 1.5,
            "config_digest": f"digest-{run.name}-{run.parent.name}",
            "seed": cfg["seed"],
            "strategy": cfg["strategy"]["name"],
            "threat_model": {
                "attack": cfg["attack"]["name"],
                "knowledge": cfg["attack"]["knowledge"],
                "malicious_fraction": cfg["malicious_fraction"],
                "malicious_clients": [3, 7],
            },
        }
        (run / "summary.json").write_text(json.dumps(data, indent=2))


def build_sweep(root: Path) -> None:
    """2 rules x 2 fractions x 2 seeds x 2 attacks, plus an unfinished, a skipped and a
    broken run, a planted pickle and a config with a Python tag."""
    for attack in ATTACKS:
        for rule in RULES:
            for fraction in FRACTIONS:
                for seed in SEEDS:
                    run = root / attack / f"{rule}_f{fraction}_s{seed}"
                    asr = success(fraction, seed) if attack == "backdoor" else None
                    final = accuracy(rule, attack, fraction, seed)
                    write_run(run, config(rule, attack, fraction, seed), final=final, asr=asr)
    write_run(
        root / "odd" / "unfinished", config("median", "sign_flip", 0.2, 5), rounds=2, summary=False
    )
    skipped = root / "odd" / "skipped"
    (skipped / ".hydra").mkdir(parents=True)
    (skipped / ".hydra" / "config.yaml").write_text(
        yaml.safe_dump(config("bulyan", "sign_flip", 0.4, 0))
    )
    (skipped / "skipped.json").write_text(
        json.dumps(
            {
                "reason": "bulyan needs n >= 4f + 3, got n=10, f=4",
                "overrides": ["strategy=bulyan", "malicious_fraction=0.4"],
                "config_digest": "abc",
            }
        )
    )
    broken = root / "odd" / "truncated"
    write_run(broken, config("fedavg", "sign_flip", 0.2, 7), final=0.3)
    text = (broken / "summary.json").read_text()
    (broken / "summary.json").write_text(text[: len(text) // 2])


class Boom:
    """Unpickling this creates a marker file: the report must never do it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("sweep")
    build_sweep(root)
    marker = root / "EXECUTED"
    planted = root / "sign_flip" / "fedavg_f0.2_s0"
    (planted / "summary.pkl").write_bytes(pickle.dumps(Boom(marker)))
    (planted / "rounds.pkl").write_bytes(pickle.dumps(Boom(marker)))
    tagged = root / "odd" / "tagged"
    write_run(tagged, config("median", "sign_flip", 0.2, 9))
    (tagged / ".hydra" / "config.yaml").write_text(
        f"!!python/object/apply:os.mkdir [{json.dumps(str(marker))}]\n"
    )
    out = root / "out"
    # capsys is function-scoped: capture this module-wide run by hand.
    stderr, stdout = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
        main([str(root), "--out", str(out)])
    return {
        "root": root,
        "out": out,
        "marker": marker,
        "stderr": stderr.getvalue(),
        "stdout": stdout.getvalue(),
    }


def test_results_csv_has_one_row_per_finished_run_with_values(sweep: dict[str, Any]) -> None:
    columns, rows = read_csv(sweep["out"] / "results.csv")
    identity = [
        "run", "dataset", "partition", "model", "strategy", "pre", "detect", "attack",
        "knowledge",
        "malicious_fraction", "num_clients", "clients_per_round", "num_rounds", "seed",
    ]  # fmt: skip
    results = [
        "final_accuracy", "best_accuracy", "best_round", "final_attack_success_rate",
        "attack_success_rate_final", "attack_success_rate_max", "attack_success_rate_mean",
        "detector", "mean_detection_precision", "mean_detection_recall", "mean_detection_fpr",
        "backdoor_lifespan", "wall_seconds", "config_digest",
    ]  # fmt: skip
    assert columns[: len(identity)] == identity
    assert columns[-len(results) :] == results
    # the settings in between: the core ones and each attack's own, none twice
    settings = columns[len(identity) : -len(results)]
    assert {"lr", "attack.boost"} <= set(settings) and "num_rounds" not in settings
    assert len(rows) == len(RULES) * len(FRACTIONS) * len(SEEDS) * len(ATTACKS)
    by_run = {row["run"]: row for row in rows}
    assert "odd/unfinished" not in by_run and "odd/truncated" not in by_run
    row = by_run["backdoor/median_f0.4_s1"]
    assert row["strategy"] == "median" and row["attack"] == "backdoor"
    assert float(row["malicious_fraction"]) == 0.4 and row["seed"] == "1"
    assert row["clients_per_round"] == "10"  # ${num_clients}, resolved
    assert float(row["final_accuracy"]) == accuracy("median", "backdoor", 0.4, 1)
    assert float(row["final_attack_success_rate"]) == success(0.4, 1)
    assert row["mean_detection_precision"] == "" and row["knowledge"] == ""
    fedavg = by_run["sign_flip/fedavg_f0.2_s0"]
    assert fedavg["knowledge"] == "partial" and fedavg["final_attack_success_rate"] == ""
    assert float(fedavg["mean_detection_precision"]) == 0.5
    assert float(fedavg["mean_detection_recall"]) == 0.25
    assert float(fedavg["mean_detection_fpr"]) == 0.125
    assert fedavg["detector"] == "1" and row["detector"] == "0"
    assert float(fedavg["lr"]) == 0.3 and fedavg["attack.boost"] == ""
    # boost=${num_clients} resolves to 10 everywhere: a setting, not a key that splits tables.
    assert row["attack.boost"] == "10"


def test_long_rounds_csv_has_every_round_of_every_finished_run(sweep: dict[str, Any]) -> None:
    columns, rows = read_csv(sweep["out"] / "rounds.csv")
    assert columns[:2] == ["run", "dataset"] and "seed" in columns
    for name in ROUND_HEADER.split(","):
        assert name in columns
    assert len(rows) == 16 * (NUM_ROUNDS + 1)
    run = [r for r in rows if r["run"] == "sign_flip/median_f0.4_s0"]
    assert [r["round"] for r in run] == ["0", "1", "2", "3"]
    assert float(run[-1]["test_accuracy"]) == accuracy("median", "sign_flip", 0.4, 0)
    assert {r["strategy"] for r in run} == {"median"}


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None]


def test_report_md_gives_mean_std_and_n_per_cell(sweep: dict[str, Any]) -> None:
    text = (sweep["out"] / "report.md").read_text()
    values = [accuracy("fedavg", "sign_flip", 0.4, s) for s in SEEDS]
    section = _section(text, "## Attack: sign_flip")
    row = next(line for line in section.splitlines() if line.startswith("| `fedavg`"))
    assert row.split(" | ")[-1].rstrip(" |") == cell(values)
    assert "| rule | f = 0.2 | f = 0.4 |" in section
    assert "Attack success rate" not in section
    backdoor = _section(text, "## Attack: backdoor")
    rates = [success(0.2, s) for s in SEEDS]
    assert "Attack success rate" in backdoor and cell(rates) in backdoor
    lifespan = backdoor.split("**Backdoor lifespan")[1].split("**")[1]
    assert f"| `fedavg` | {cell([1, 2])} | {cell([1, 2])} |" in lifespan
    assert "Backdoor lifespan" not in section
    assert f"`oleander-report {sweep['root']} --out {sweep['out']}`" in text


def test_unfinished_skipped_and_broken_runs_are_listed(sweep: dict[str, Any]) -> None:
    text = (sweep["out"] / "report.md").read_text()
    left = _section(text, "## Runs not in the tables")
    assert "### Unfinished (1)" in left and "`odd/unfinished`" in left
    assert "2 of 3 rounds recorded" in left
    assert "### Skipped (1)" in left
    assert "`odd/skipped`" in left and "bulyan needs n >= 4f + 3, got n=10, f=4" in left
    assert "### Broken (2)" in left
    assert "`odd/truncated`" in left and "summary.json: not valid JSON" in left
    assert "`odd/tagged`" in left and "config.yaml: not valid YAML" in left
    lines = sweep["stderr"].splitlines()
    assert len(lines) == 4
    assert sum("unfinished: odd/unfinished" in line for line in lines) == 1
    assert sum("skipped: odd/skipped" in line for line in lines) == 1
    assert sum("broken: odd/truncated" in line for line in lines) == 1


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize(
    "name", ["accuracy_vs_fraction.png", "accuracy_over_rounds.png", "heatmap.png"]
)
def test_plots_are_valid_pngs(sweep: dict[str, Any], name: str) -> None:
    path = sweep["out"] / name
    assert path.stat().st_size > 10_000
    width, height = png_size(path)
    assert width >= 400 and height >= 300


def test_nothing_in_a_run_directory_is_executed(sweep: dict[str, Any]) -> None:
    # A pickle beside the summary and a config with a Python tag: neither ran.
    assert not sweep["marker"].exists()
    _, rows = read_csv(sweep["out"] / "results.csv")
    assert "sign_flip/fedavg_f0.2_s0" in {row["run"] for row in rows}


def test_outputs_go_to_the_first_dir_by_default(tmp_path: Path) -> None:
    build_sweep(tmp_path)
    main([str(tmp_path), "--fraction", "0.2", "--metric", "best_accuracy"])
    text = (tmp_path / "report.md").read_text()
    assert "**Best accuracy (test set)**" in text
    assert "The heatmap is at f = 0.2." in text


def test_a_single_run_directory_keeps_its_own_rounds_csv(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_run(run, config("fedavg", "sign_flip", 0.2, 0), final=0.8)
    before = (run / "rounds.csv").read_text()
    main([str(run)])
    assert (run / "rounds.csv").read_text() == before
    assert (run / "report" / "report.md").is_file()
    with pytest.raises(SystemExit) as exit_info:
        main([str(run), "--out", str(run)])
    assert exit_info.value.code == 2


def test_runs_that_differ_in_other_settings_are_not_averaged(tmp_path: Path) -> None:
    for lr in (0.1, 0.3):
        for seed in SEEDS:
            cfg = config("fedavg", "sign_flip", 0.2, seed, lr=lr)
            write_run(tmp_path / f"lr{lr}_s{seed}", cfg, final=lr + 0.01 * seed)
    main([str(tmp_path)])
    columns, _ = read_csv(tmp_path / "results.csv")
    assert "lr" in columns
    text = (tmp_path / "report.md").read_text()
    assert "## Attack: sign_flip (knowledge: partial, lr=0.1)" in text
    assert "## Attack: sign_flip (knowledge: partial, lr=0.3)" in text
    assert cell([0.1, 0.11]) in text and cell([0.3, 0.31]) in text


def test_the_same_config_twice_counts_once(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_run(tmp_path / name, config("fedavg", "sign_flip", 0.2, 0), final=0.8)
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        summary["config_digest"] = "same"
        (tmp_path / name / "summary.json").write_text(json.dumps(summary))
    main([str(tmp_path)])
    text = (tmp_path / "report.md").read_text()
    assert "0.800 (n=1, no CI)" in text
    assert "- `b`: same config digest as `a`" in text


def test_an_empty_directory_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "empty")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no runs under" in err and "Traceback" not in err
    assert not (tmp_path / "empty" / "report.md").exists()


def test_a_nonexistent_path_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_sweep(tmp_path / "ok")
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "ok"), str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such directory" in err and "missing" in err


def test_a_fraction_with_no_runs_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_sweep(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--fraction", "0.3"])
    assert exit_info.value.code == 2
    assert "present: 0.2, 0.4" in capsys.readouterr().err


def test_no_finished_run_still_lists_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_run(tmp_path / "killed", config("fedavg", "sign_flip", 0.2, 0), rounds=1, summary=False)
    main([str(tmp_path)])
    text = (tmp_path / "report.md").read_text()
    assert "No finished runs" in text and "`killed`" in text and "1 of 3 rounds" in text
    assert not (tmp_path / "heatmap.png").exists()
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "oleander-report: unfinished: killed: no summary.json; 1 of 3 rounds recorded",
        "oleander-report: no finished runs: no tables and no plots",
    ]


def test_report_md_has_a_detection_table_for_rules_that_flag(sweep: dict[str, Any]) -> None:
    text = (sweep["out"] / "report.md").read_text()
    section = _section(text, "## Attack: sign_flip")
    precision = section.split("**Detection precision (mean over rounds)**")[1]
    recall = precision.split("**Detection recall (mean over rounds)**")[1]
    precision = precision.split("**Detection recall")[0]
    # the synthetic fedavg runs flag with precision 0.5 and recall 0.25 in every round
    assert f"| `fedavg` | {cell([0.5, 0.5])} | {cell([0.5, 0.5])} |" in precision
    assert f"| `fedavg` | {cell([0.25, 0.25])} | {cell([0.25, 0.25])} |" in recall
    title = "**Detection false-positive rate: benign clients flagged (mean over rounds)**"
    fpr = recall.split(title)[1]
    assert f"| `fedavg` | {cell([0.125] * 2)} | {cell([0.125] * 2)} |" in fpr
    # the median flagged nobody (an older run without the summary's "detector"): not a 0
    for table in (precision, recall, fpr):
        assert "| `median` | not a detector | not a detector |" in table
    assert "at most a / (n − m)" in section
