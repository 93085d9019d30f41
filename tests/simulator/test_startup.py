"""Start-up: what ``oleander`` imports before it answers, and what a single run writes.

``--help``, Hydra's printing flags and every bad value the config alone reveals (an
unknown group option, a wrong type, a value out of range, values that do not fit
together, an attack window outside the run, an output directory that cannot be written)
are answered without importing torch, Flower, flwr-datasets, datasets or Ray: importing
them takes seconds on two cores. Each case runs ``oleander`` in a fresh interpreter and
reads ``sys.modules`` at its exit; a control case (an error found only by running the
rule) shows that the probe does see torch when it is imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "flwr", "flwr_datasets", "datasets", "ray")
# Runs oleander's own entry point (python -m simulator), then prints the heavy packages
# imported by then as the last line of stdout, and exits with oleander's status.
PROBE = f"""
import json, runpy, sys
sys.argv = ["oleander", *sys.argv[1:]]
status = 0
try:
    runpy.run_module("simulator", run_name="__main__", alter_sys=True)
except SystemExit as stop:
    status = stop.code
imported = sorted({{name.split(".")[0] for name in sys.modules}} & set({HEAVY!r}))
print("\\nIMPORTED " + json.dumps(imported))
sys.exit(status)
"""


def _probe(cwd: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run ``oleander ARGS`` in ``cwd``; the process and the heavy packages it imported."""
    env = {
        **os.environ,
        "HYDRA_FULL_ERROR": "0",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    last = result.stdout.rstrip().splitlines()[-1] if result.stdout.strip() else ""
    assert last.startswith("IMPORTED "), (result.stdout, result.stderr)
    return result, json.loads(last.removeprefix("IMPORTED "))


@pytest.mark.parametrize(
    ("args", "printed"),
    [
        (["--help"], "usage: oleander"),
        (["--cfg", "job"], "num_clients: 10"),
        (["--cfg", "job", "strategy=trimmed_mean"], "name: trimmed_mean"),
        (["--cfg", "all"], "hydra:"),
        (["--info", "defaults"], "Defaults List"),
        (["--hydra-help"], "Hydra"),
    ],
)
def test_help_and_printing_flags_import_no_heavy_package(
    tmp_path: Path, args: list[str], printed: str
) -> None:
    result, imported = _probe(tmp_path, *args)
    assert result.returncode == 0, result.stderr
    assert printed in result.stdout
    assert imported == [], f"oleander {' '.join(args)} imported {imported}"
    assert list(tmp_path.iterdir()) == []


BAD = [
    (["dataset=nope"], "dataset=nope: no such dataset"),
    (["strategy=nope"], "strategy=nope: no such strategy"),
    (["lr=abc"], "lr=abc: must be of type float"),
    (["num_clients=many"], "num_clients=many: must be of type int"),
    (["lr=-1"], "lr=-1.0: must be a number > 0"),
    (["num_clients=0"], "num_clients=0: must be an integer >= 1"),
    (["+lrr=0.1"], "lrr=0.1: no such key; did you mean lr?"),
    (["+engine.wrokers=2"], "engine.wrokers=2: no such key for engine=inline"),
    (["progress=-10"], "progress=-10: must be true or false"),
    (["dataset=3"], "dataset=3: dataset needs an option name"),
    (["lr=0.1,0.2"], "lr=0.1,0.2: a sweep runs with -m"),
    (["-m", "lr=0.1,-1"], "lr=-1.0: must be a number > 0"),
    (["attack.knowledge=some"], "attack.knowledge=some: must be null or one of partial, full"),
    (["engine=ray", "engine.num_cpus=0"], "engine.num_cpus=0.0: must be a finite number > 0"),
    (["num_clients=3", "clients_per_round=5"], "clients_per_round=5: must be <= num_clients"),
    (["malicious_fraction=0.2"], "malicious_fraction=0.2: needs an attack"),
    (["attack=sign_flip", "attack.start_round=20"], "attack.start_round=20: after the last"),
    (["hydra.run.dir=FILE/run"], "hydra.run.dir=FILE/run: cannot be written"),
]


@pytest.mark.parametrize(("args", "line"), BAD)
def test_bad_input_is_answered_without_heavy_packages(
    tmp_path: Path, args: list[str], line: str
) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    args = [arg.replace("FILE", str(a_file)) for arg in args]
    result, imported = _probe(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("oleander: error: " + line.replace("FILE", str(a_file)))
    assert imported == [], f"oleander {' '.join(args)} imported {imported}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_the_probe_sees_torch_when_a_check_runs_the_rule(tmp_path: Path) -> None:
    """Control: Bulyan's n >= 4f + 3 is found by running the rule, which imports torch."""
    result, imported = _probe(tmp_path, "strategy=bulyan", "strategy.num_malicious=3")
    assert result.returncode == 2, result.stderr
    assert "strategy=bulyan with clients_per_round=10" in result.stderr
    assert "torch" in imported


def test_knowledge_levels_of_the_checks_are_the_attacks_own() -> None:
    from clients.attacks import KNOWLEDGE
    from simulator.schema import KNOWLEDGE as CHECKED

    assert tuple(CHECKED) == tuple(KNOWLEDGE)


def test_a_single_run_writes_what_hydra_main_writes(tmp_path: Path) -> None:
    """The single run's config is composed once, by the preflight, and handed to Hydra's
    own run_job. ``hydra.mode=RUN`` given on the command line sends the same run through
    ``hydra.main`` instead (a config that sets the mode is left to Hydra): both write the
    same Hydra files, the same log and the same results."""
    runs = {}
    for name, extra in (("composed", []), ("hydra_main", ["hydra.mode=RUN"])):
        run_dir = tmp_path / name
        args = ["num_rounds=2", "num_clients=4", "progress=false", f"hydra.run.dir={run_dir}"]
        result, imported = _probe(tmp_path, *args, *extra)
        assert result.returncode == 0, result.stderr
        assert "torch" in imported
        runs[name] = run_dir
    composed, reference = runs["composed"], runs["hydra_main"]
    hydra = yaml.safe_load((composed / ".hydra" / "hydra.yaml").read_text())["hydra"]
    assert hydra["mode"] == "RUN"
    assert hydra["job"]["name"] == "main"
    assert hydra["runtime"]["output_dir"] == str(composed)
    assert hydra["overrides"]["hydra"] == [f"hydra.run.dir={composed}", "hydra.mode=RUN"]
    for name in ("hydra.yaml", "config.yaml", "overrides.yaml"):
        ours = (composed / ".hydra" / name).read_text().replace(str(composed), "RUN_DIR")
        theirs = (reference / ".hydra" / name).read_text().replace(str(reference), "RUN_DIR")
        assert ours == theirs, name
    assert (composed / "rounds.csv").read_text().count("\n") == 4  # header, rounds 0-2
    for name in ("main.log", "rounds.csv"):
        ours, theirs = ((run / name).read_text().splitlines() for run in (composed, reference))
        assert len(ours) == len(theirs), name
    summaries = [json.loads((run / "summary.json").read_text()) for run in (composed, reference)]
    assert summaries[0]["final_accuracy"] == summaries[1]["final_accuracy"]
    assert summaries[0]["config_digest"] == summaries[1]["config_digest"]
