"""oleander-report's outputs for a paper: settings against the defaults, confidence
intervals, LaTeX, success rate over the attack window, detection, warnings, the sweep's own
record, and the ``show`` / ``flagged`` commands.

The run directories are written here from configs composed from the real ``conf/`` (as
Hydra writes them), with known rounds; one test runs a real two-point ``debug=tiny`` sweep.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf

from simulator.preflight import compose_point, job_config
from simulator.report.cli import main
from simulator.report.collect import expand_sweep
from simulator.report.plots import heat_scale

REPO = Path(__file__).resolve().parents[2]
DATA = "/abs/data/mnist"
ROUNDS = 4
ALIE_TASK = [
    "partition=bias",
    "strategy=krum,median",
    "attack=alie",
    "malicious_fraction=0.1,0.2",
    "seed=range(0,3)",  # seed 2 never started
    f"dataset.path={DATA}",
    "dataset=mnist",
    "lr=0.05",
    f"num_rounds={ROUNDS}",
]
BACKDOOR_TASK = [
    "partition=bias",
    "strategy=fedavg,krum",
    "attack=backdoor",
    "attack.boost=10",
    "malicious_fraction=0.2",
    "seed=0,1",
    f"dataset.path={DATA}",
    "dataset=mnist",
    "lr=0.05",
    f"num_rounds={ROUNDS}",
]
# ALIE's z as the run computed it, by malicious fraction (attack.z: null)
ALIE_Z = {0.1: 0.05, 0.2: 0.164}
# The backdoor's success rate alternates 1, 0 from round 1: last 0, largest 1, mean 0.5.
SUCCESS = [1.0, 0.0, 1.0, 0.0]
KRUM_DETECTION = ("0.25", "1.0", "0.1875")  # precision, recall, FPR in every round
WARNING = "alie: z = 0.05 is below 0.1: the attackers send almost their own mean"


def _value(override: str) -> str:
    return override.split("=", 1)[1]


def write_run(
    run: Path, overrides: list[str], *, new_format: bool = True, summary: bool = True
) -> dict[str, Any]:
    """A run directory for ``overrides``: composed config, Hydra's records, rounds.csv,
    clients.csv and summary.json (``new_format``: with the keys later versions record)."""
    cfg = compose_point(overrides)
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(job_config(cfg)))
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    hydra = {"hydra": {"runtime": {"choices": choices}}}
    (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    rule, attack = cfg.strategy.name, cfg.attack.name
    fraction, seed = float(cfg.malicious_fraction), int(cfg.seed)
    detector = rule == "krum"
    rows = ["round,test_accuracy,attack_success_rate,detection_precision,detection_recall,"
            "detection_fpr"]  # fmt: skip
    rows.append("0,0.1,,,,")
    for r in range(1, ROUNDS + 1):
        rate = SUCCESS[r - 1] if attack == "backdoor" else ""
        detection = KRUM_DETECTION if detector else ("", "", "")
        accuracy = 0.9 - fraction / 2 + 0.01 * seed - 0.1 * (ROUNDS - r)
        rows.append(f"{r},{accuracy!r},{rate},{','.join(detection)}")
    (run / "rounds.csv").write_text("\n".join(rows) + "\n")
    # Round 2: client 3 rejected, 1 filtered, 0 and 4 weighted 0; 1 and 2 are the attackers.
    clients = ["round,client,malicious,num_examples,weight,flagged"]
    for r in (1, 2):
        clients += [
            f"{r},0,0,10,0.0,{'weight: 0 (krum)' if r == 2 else ''}",
            f"{r},1,1,10,0.0,filtered: flame",
            f"{r},2,1,10,0.5,",
            f"{r},3,0,10,,rejected: non-finite update",
            f"{r},4,0,10,0.5,",
        ]
    (run / "clients.csv").write_text("\n".join(clients) + "\n")
    if not summary:
        return {"rule": rule, "fraction": fraction, "seed": seed}
    data: dict[str, Any] = {
        "final_accuracy": 0.9 - fraction / 2 + 0.01 * seed,
        "best_accuracy": 0.9 - fraction / 2 + 0.01 * seed,
        "best_round": ROUNDS,
        "final_attack_success_rate": SUCCESS[-1] if attack == "backdoor" else None,
        "config_digest": f"digest-{run.parent.name}-{run.name}",
        "threat_model": {"attack": attack, "knowledge": cfg.attack.get("knowledge"),
                         "start_round": 1, "stop_round": None, "malicious_clients": [1, 2]},
    }  # fmt: skip
    if new_format:
        effective: dict[str, Any] = {"num_malicious_told": 2}
        if attack == "alie":
            effective["attack.z"] = ALIE_Z[fraction]
        data.update(
            warnings=[WARNING] if attack == "alie" and fraction == 0.1 else [],
            effective=effective,
            detector=detector,
            attack_success_rate=(
                {"final": 0.0, "max": 1.0, "mean": 0.5, "rounds": ROUNDS, "window": [1, None]}
                if attack == "backdoor"
                else None
            ),
        )
    (run / "summary.json").write_text(json.dumps(data))
    return {"rule": rule, "fraction": fraction, "seed": seed}


def write_sweep(root: Path, task: list[str], skip_seed: int | None = None) -> list[Path]:
    """A sweep directory: its multirun.yaml and a run per point (short names), but the
    points with ``seed=skip_seed``; seed 1's summaries are in the older format."""
    root.mkdir(parents=True)
    record = {"hydra": {"overrides": {"task": task}, "sweeper": {"params": None}}}
    (root / "multirun.yaml").write_text(yaml.safe_dump(record))
    runs = []
    for i, point in enumerate(expand_sweep(task)):
        seed = int(next(_value(o) for o in point if o.startswith("seed=")))
        if seed == skip_seed:
            continue
        write_run(root / f"run{i}", list(point), new_format=seed != 1)
        runs.append(root / f"run{i}")
    return runs


def run_main(argv: list[str]) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        main(argv)
    return out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def paper(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("paper")
    alie = write_sweep(root / "alie", ALIE_TASK, skip_seed=2)
    backdoor = write_sweep(root / "backdoor", BACKDOOR_TASK)
    out = root / "report"
    stdout, stderr = run_main([str(root), "--out", str(out), "--latex"])
    return {
        "root": root,
        "out": out,
        "alie": alie,
        "backdoor": backdoor,
        "stdout": stdout,
        "stderr": stderr,
        "md": (out / "report.md").read_text(),
    }


def section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None]


def table(text: str, title: str) -> dict[str, list[str]]:
    """The rows of the Markdown table titled ``title``, by their first cell."""
    block = text.split(f"**{title}**", 1)[1].split("\n\n", 2)[1]
    rows = {}
    for line in block.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        rows[cells[0]] = cells[1:]
    return rows


def test_settings_tables_show_what_was_held_fixed(paper: dict[str, Any]) -> None:
    common = table(paper["md"], "Common to every finished run")
    # core training settings, with their defaults from conf/
    assert common["`lr`"] == ["0.05", "0.3"]
    assert common["`local_epochs`"] == ["2", "2"] and common["`batch_size`"] == ["16", "16"]
    assert common["`num_rounds`"] == [str(ROUNDS), "10"]
    # the partition's own parameter, and the group choices against the primary config's
    assert common["`partition.bias`"] == ["0.5", "0.5"]
    assert common["`partition`"] == ["bias", "iid"] and common["`dataset`"] == ["mnist", "digits"]
    assert common["`dataset.path`"][0] == DATA  # a setting, never a run name
    alie = section(paper["md"], "## Attack: alie")
    settings = table(alie, "Settings of alie (knowledge: partial)")
    assert settings["`attack.z`"] == ["–", "–"]
    assert settings["`attack.z (effective)`"][0] == "f=0.1: 0.05; f=0.2: 0.164"
    assert settings["`num_malicious_told (effective)`"][0] == "2"
    assert settings["`seed (averaged over)`"][0] == "0, 1"
    assert "`lr`" not in settings  # common to every run: listed once, above
    backdoor = section(paper["md"], "## Attack: backdoor")
    boost = table(backdoor, "Settings of backdoor")["`attack.boost`"]
    assert boost == ["10", "1"]


def test_results_csv_names_runs_by_directory_with_settings_as_columns(
    paper: dict[str, Any],
) -> None:
    with (paper["out"] / "results.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        columns = reader.fieldnames or []
    assert len(rows) == 12
    assert {row["run"].split("/")[0] for row in rows} == {"alie", "backdoor"}
    assert all(DATA not in row["run"] for row in rows)
    assert {row["dataset.path"] for row in rows} == {DATA}
    assert {"lr", "partition.bias", "attack.boost", "effective.attack.z"} <= set(columns)
    z = {
        (float(r["malicious_fraction"]), r["effective.attack.z"]) for r in rows if r["seed"] == "0"
    }
    assert z == {(0.1, "0.05"), (0.2, "0.164"), (0.2, "")}  # "": the backdoor runs


def test_success_rate_over_the_attack_window(paper: dict[str, Any]) -> None:
    backdoor = section(paper["md"], "## Attack: backdoor")
    two = " ± 0.000 (sd 0.000, n=2)"  # seed 0 records the statistics, seed 1 is computed
    for stat, expected in (
        ("last round of the attack window", "0.000"),
        ("largest over the attack window", "1.000"),
        ("mean over the attack window", "0.500"),
    ):
        rows = table(backdoor, f"Attack success rate: {stat}")
        assert rows["`fedavg`"] == [expected + two]
    assert "Attack success rate" not in section(paper["md"], "## Attack: alie")
    assert "![success_over_rounds](success_over_rounds.png)" in paper["md"]
    assert (paper["out"] / "success_over_rounds.png").read_bytes()[:4] == b"\x89PNG"


def test_detection_tables_say_not_a_detector(paper: dict[str, Any]) -> None:
    alie = section(paper["md"], "## Attack: alie")
    precision = table(alie, "Detection precision (mean over rounds)")
    assert precision["`krum`"][0].startswith("0.250 ± 0.000")
    assert precision["`median`"] == ["not a detector", "not a detector"]
    recall = table(alie, "Detection recall (mean over rounds)")
    assert recall["`median`"] == ["not a detector", "not a detector"]
    fpr = table(alie, "Detection false-positive rate: benign clients flagged (mean over rounds)")
    assert fpr["`krum`"][1].startswith("0.188 ± 0.000")
    assert "Krum keeps 1" in alie


def test_warnings_are_listed_with_their_runs(paper: dict[str, Any]) -> None:
    warnings = section(paper["md"], "## Warnings")
    line = next(x for x in warnings.splitlines() if WARNING in x)
    # f = 0.1 with seed 0 (seed 1's older summary records none): krum and median
    assert line.count("`alie/run") == 2 and "2 runs" in line
    assert "warning(s)" in paper["stderr"]


def test_points_never_started_are_listed_and_counted(paper: dict[str, Any]) -> None:
    left = section(paper["md"], "## Runs not in the tables")
    assert "### Never started (4)" in left
    assert left.count("seed=2") == 4 and "(sweep `alie`)" in left
    assert "12 of 16 runs in the tables" in paper["stdout"]
    assert "4 never started (16 in all)" in paper["md"]


def test_report_md_ends_with_one_newline(paper: dict[str, Any]) -> None:
    assert paper["md"].endswith("\n") and not paper["md"].endswith("\n\n")


def test_latex_tables_are_booktabs_and_escaped(paper: dict[str, Any]) -> None:
    tex = (paper["out"] / "report.tex").read_text()
    tables = paper["md"].count("\n| --- |")
    assert tex.count(r"\toprule") == tex.count(r"\bottomrule") == tables > 5
    assert tex.count(r"\midrule") == tables
    body = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
    cells = [c for line in body.splitlines() if line.endswith(r"\\") for c in line.split(" & ")]
    assert len(cells) > 50
    for text in cells:
        assert not re.search(r"(?<!\\)[_&%#]", text.removesuffix(r" \\")), text
    assert r"\texttt{local\_epochs}" in body and r"$\pm$" in body and "±" not in body
    assert tex.endswith("\n")


def test_heatmap_scale_fits_the_data() -> None:
    assert heat_scale(np.array([[0.95, 0.951], [0.97, np.nan]])) == (0.95, 0.97)
    low, high = heat_scale(np.array([[0.95, 0.95]]))
    assert math.isclose(high - low, 0.01) and low < 0.95 < high
    assert heat_scale(np.array([[np.nan]])) == (0.0, 1.0)


def test_expand_sweep_follows_hydra() -> None:
    points = expand_sweep(["a=1,2", "b=range(0,3)", "c=choice(x,y)", "d=true", "a=3,4"])
    assert len(points) == 2 * 3 * 2
    assert points[0] == ("a=3", "b=0", "c=x", "d=True")  # a later value of a key replaces
    with pytest.raises(ValueError, match="not a sweep the basic sweeper runs"):
        expand_sweep(["lr=interval(0,1)"])


def flagged(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    main(["flagged", *argv])
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_flagged_prints_a_round_against_the_attackers(
    paper: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    run = paper["alie"][0]
    out, _ = flagged([str(run), "--round", "2"], capsys)
    lines = out.splitlines()
    assert "krum under alie" in lines[0]
    assert "attackers sampled: 1, 2" in out
    assert any(re.fullmatch(r"\s*0\s+no\s+weight: 0 \(krum\)", x) for x in lines)
    assert any(re.fullmatch(r"\s*1\s+yes\s+filtered: flame", x) for x in lines)
    assert any(re.fullmatch(r"\s*3\s+no\s+rejected: non-finite update", x) for x in lines)
    assert "attackers not flagged: 2" in out
    # flagged 0, 1, 3: one attacker of two, two of three benign
    assert lines[-1] == (
        "flagged 3 (attackers 1, benign 2); attackers flagged 1 of 2; "
        "precision 0.333, recall 0.500, FPR 0.667"
    )
    out, _ = flagged([str(run)], capsys)
    assert [x.split(":")[0] for x in out.splitlines() if x.startswith("round")] == [
        "round 1",
        "round 2",
    ]


def test_flagged_rejects_a_round_not_in_the_run_and_a_directory_that_is_no_run(
    paper: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    for argv, message in (
        ([str(paper["alie"][0]), "--round", "9"], "--round 9: not in"),
        ([str(paper["root"])], "not a run directory"),
        ([str(paper["root"] / "nowhere")], "no such directory"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            flagged(argv, capsys)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_show_prints_config_effective_parameters_and_warnings(
    paper: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    main(["show", str(paper["alie"][0])])
    out = capsys.readouterr().out
    assert "malicious_fraction: 0.1" in out and f"path: {DATA}" in out
    assert "clients_per_round: 10" in out  # ${num_clients}, resolved
    assert "attack.z: 0.05" in out and WARNING in out
    assert "detection (mean over rounds): precision 0.25, recall 1, FPR 0.1875" in out


@pytest.mark.skipif(sys.platform == "win32", reason="runs the oleander command in a shell")
def test_a_real_sweep_flagged_agrees_with_rounds_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tmp_path / "sweep"
    command = [
        sys.executable, "-m", "simulator", "-m", "strategy=krum,median", "attack=sign_flip",
        "malicious_fraction=0.2", "seed=0", "debug=tiny", "progress=false",
        f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True, timeout=300)
    main([str(sweep)])
    text = (sweep / "report.md").read_text()
    assert "Common to every finished run" in text and "| `median` | not a detector |" in text
    krum = next(p.parent for p in sweep.glob("*/summary.json") if "krum" in p.parent.name)
    with (krum / "rounds.csv").open(newline="") as handle:
        rounds = {row["round"]: row for row in csv.DictReader(handle)}
    capsys.readouterr()
    main(["flagged", str(krum), "--round", "2"])
    last = capsys.readouterr().out.splitlines()[-1]
    found = dict(re.findall(r"(precision|recall|FPR) ([\d.]+|undefined)", last))
    for name, column in (("precision", "detection_precision"), ("recall", "detection_recall"),
                         ("FPR", "detection_fpr")):  # fmt: skip
        recorded = rounds["2"][column]
        if recorded:
            assert math.isclose(float(found[name]), float(recorded), abs_tol=5e-4), name
        else:
            assert found[name] == "undefined"
