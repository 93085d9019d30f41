"""Config: every group entry composes and builds; every bad value is one clear line, exit 2."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import get_object, instantiate
from omegaconf import OmegaConf

from simulator.config import ConfigError, validate
from simulator.data import Mnist
from simulator.preflight import CONFIG_DIR, _points, check_point
from simulator.schema import build, parameters_of
from simulator.threat import ThreatModel
from strategies.pipeline import accepted_keywords
from tests.conftest import compose_config, group_entries


def test_default_config_is_valid() -> None:
    cfg = compose_config()
    validate(cfg)
    assert cfg.dataset.name == "digits"
    assert cfg.clients_per_round == cfg.num_clients


@pytest.mark.parametrize("entry", group_entries("dataset"))
def test_every_dataset_entry_builds(entry: str) -> None:
    dataset = instantiate(compose_config(f"dataset={entry}").dataset)
    assert dataset.name == entry
    assert len(dataset.input_shape) in (1, 3)  # (L,) text or (C, H, W) images


@pytest.mark.parametrize("entry", group_entries("partition"))
def test_every_partition_entry_builds(entry: str) -> None:
    """A flwr-datasets partitioner or one of Oleander's own (same interface)."""
    factory = build("partition", compose_config(f"partition={entry}").partition)
    partitioner = factory(num_partitions=10, seed=0)
    assert callable(partitioner.load_partition)
    assert hasattr(type(partitioner), "num_partitions") and hasattr(type(partitioner), "dataset")


@pytest.mark.parametrize("entry", group_entries("model"))
def test_every_model_entry_builds(entry: str) -> None:
    shape = {
        "fltrust_cnn": (1, 28, 28),
        "femnist_cnn": (1, 28, 28),
        "cifar_cnn": (3, 32, 32),
        "char_lstm": (80,),
    }.get(entry, (1, 8, 8))
    factory = build("model", compose_config(f"model={entry}").model)
    model = factory(input_shape=shape, num_classes=10)
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("entry", group_entries("strategy"))
def test_every_strategy_entry_builds_a_defence_that_aggregates(entry: str) -> None:
    from simulator.components import build_defence

    cfg = compose_config(f"strategy={entry}")
    inputs = {"server_update": lambda server_round, global_model: torch.ones(3)}
    threat = dataclasses.replace(ThreatModel.clean(7), num_malicious_told=1)
    defence = build_defence(cfg, threat, inputs=inputs)
    assert defence.name == entry
    updates = torch.randn(7, 3, generator=torch.Generator().manual_seed(0))
    outcome = defence(updates, list(range(7)), server_round=1, num_examples=[1] * 7)
    assert outcome.step is not None and outcome.step.shape == (3,), outcome.note
    # every parameter of the entry is one its component takes (none is a setting)
    component = get_object(cfg.strategy._target_)
    assert set(parameters_of("strategy", cfg.strategy)) <= accepted_keywords(component)


@pytest.mark.parametrize("group", ["pre", "detect"])
def test_every_pre_and_detect_entry_builds(group: str) -> None:
    for entry in group_entries(group):
        component = build(group, compose_config(f"{group}={entry}")[group])
        assert (component is None) == (entry == "none"), entry


@pytest.mark.parametrize("entry", group_entries("engine"))
def test_every_engine_entry_builds(entry: str) -> None:
    engine = build("engine", compose_config(f"engine={entry}").engine)
    assert type(engine).__name__.lower().startswith(entry)


@pytest.mark.parametrize("entry", group_entries("attack"))
def test_every_attack_entry_builds_where_it_runs(entry: str) -> None:
    from simulator.components import attack_site

    cfg = compose_config(f"attack={entry}")
    assert cfg.attack.name == entry
    site = attack_site(build("attack", cfg.attack))
    assert site == ("none" if entry == "none" else site)
    client_side = ("label_flip", "backdoor", "dba", "neurotoxin", "edge_case")
    assert (site == "client") == (entry in client_side)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (["num_clients=0"], "num_clients=0: must be an integer >= 1"),
        (["clients_per_round=11"], "clients_per_round=11: must be <= num_clients (10)"),
        (["lr=-0.1"], "lr=-0.1: must be a number > 0"),
        (["malicious_fraction=1.0"], "malicious_fraction=1.0: must be in [0, 1)"),
        (["malicious_fraction=-0.1"], "malicious_fraction=-0.1: must be in [0, 1)"),
        (["malicious_fraction=0.2"], "malicious_fraction=0.2: needs an attack"),
        (["num_rounds=0"], "num_rounds=0: must be an integer >= 1"),
        (["local_epochs=0"], "local_epochs=0: must be an integer >= 1"),
        (["local_steps=0"], "local_steps=0: must be null or >= 1"),
        (["batch_size=0"], "batch_size=0: must be an integer >= 1"),
        (["momentum=1"], "momentum=1.0: must be in [0, 1)"),
        (["weight_decay=-1"], "weight_decay=-1.0: must be a number >= 0"),
        (["seed=-1"], "seed=-1: must be an integer >= 0"),
        (["torch_threads=0"], "torch_threads=0: must be an integer in [1, 1024]"),
        (["device=tpu"], "device=tpu: must be cpu, cuda or cuda:N"),
        (["num_clients=abc"], "num_clients=abc: must be of type integer"),
        (["lr=fast"], "lr=fast: must be of type float"),
        (
            ["strategy=nope"],
            "strategy=nope: no such strategy: choose one of adaptive_clipping, bulyan, ",
        ),
        (["engine=nope"], "engine=nope: no such engine"),
        (["num_client=5"], "num_client=5: no such key; did you mean num_clients?"),
        (["strategy.server_lr=0"], "strategy.server_lr=0: must be a number > 0"),
        (["engine.workers=-2"], "engine.workers=-2: must be an integer in [0, 1024]"),
        (["engine.cohort=yes"], "engine.cohort=yes: must be one of auto, always, never"),
        (["engine=ray", "engine.num_cpus=0"], "engine.num_cpus=0.0: must be a finite number > 0"),
        (["partition=dirichlet", "partition.alpha=0"], "partition.alpha=0.0"),
        (["partition=bias", "partition.bias=1.5"], "partition.bias=1.5"),
        (["model=fltrust_cnn"], "model=fltrust_cnn needs 1x28x28 inputs"),
        (["model.hidden=[0]"], "hidden"),
        (["dataset=mnist", "dataset.path=/no/such/dir"], "dataset.path='/no/such/dir'"),
        (["dataset.test_fraction=1.5"], "dataset.test_fraction=1.5"),
        (
            ["strategy=bulyan", "strategy.num_malicious=3"],
            "bulyan needs n >= 4f + 3, got n=10, f=3",
        ),
        (["strategy=krum", "strategy.num_malicious=4"], "krum needs n > 2f + 2, got n=10, f=4"),
        (["strategy=trimmed_mean", "strategy.beta=0.5"], "beta=0.5"),
        (["strategy=fltrust", "strategy.root_size=0"], "strategy.root_size=0"),
        (["strategy=centered_clipping", "strategy.tau=-1"], "tau=-1"),
        (["pre=bucketing", "pre.bucket_size=0"], "bucket_size=0"),
        (["strategy.num_malicious=-1"], "strategy.num_malicious=-1"),
    ],
)
def test_bad_value_is_one_line_naming_key_and_value(override: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_point(override)
    message = str(info.value)
    assert expected in message, message
    assert "\n" not in message
    assert "Traceback" not in message


C_INT = 2**31  # torch.set_num_threads and process pools take a C int


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (["torch_threads=1025"], "torch_threads=1025: must be an integer in [1, 1024]"),
        ([f"torch_threads={C_INT}"], f"torch_threads={C_INT}: must be an integer in [1, 1024]"),
        (["engine.workers=1025"], "engine.workers=1025: must be an integer in [0, 1024]"),
        ([f"engine.workers={C_INT}"], f"engine.workers={C_INT}: must be an integer in [0, 1024]"),
        (["engine=ray", "engine.num_cpus=inf"], "engine.num_cpus=inf: must be a finite number > 0"),
        (["engine=ray", "engine.num_cpus=nan"], "engine.num_cpus=nan: must be a finite number > 0"),
        (
            ["engine=ray", "engine.num_gpus=inf"],
            "engine.num_gpus=inf: must be a finite number >= 0",
        ),
        (
            ["engine=ray", "engine.num_gpus=nan"],
            "engine.num_gpus=nan: must be a finite number >= 0",
        ),
        (["+lrr=0.1"], "lrr=0.1: no such key; did you mean lr?"),
        (["++lrr=0.1"], "lrr=0.1: no such key; did you mean lr?"),
        (["+num_clientss=5"], "num_clientss=5: no such key; did you mean num_clients?"),
        (["++zzz=1"], "zzz=1: no such key"),
        (
            ["++faults.client_failure=0.5"],
            "faults.client_failure=0.5: no such key; did you mean faults.client_failure_rate?",
        ),
        (["+strategy.server_l=2"], "strategy.server_l=2: no such key for strategy=fedavg; did you"),
        (["engine=ray", "engine.workers=2"], "engine.workers=2: no such key for engine=ray"),
        (["+lr=0.1"], "+lr=0.1: lr is already set; change it without the +: lr=0.1"),
    ],
)
def test_bounds_and_unknown_keys_are_refused(override: list[str], expected: str) -> None:
    """Values a C int or Ray cannot take, and keys added with + or ++ that do not exist."""
    with pytest.raises(ConfigError) as info:
        check_point(override)
    message = str(info.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_an_unknown_key_is_not_suggested_as_itself() -> None:
    # engine.workers exists for engine=inline only; suggesting it back would be no help.
    with pytest.raises(ConfigError) as info:
        check_point(["engine=ray", "engine.workers=2"])
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize(
    "override",
    [["torch_threads=1024"], ["engine.workers=1024"], ["engine=ray", "engine.num_gpus=0"]],
)
def test_values_at_the_bounds_are_accepted(override: list[str]) -> None:
    cfg = check_point(override)
    key, value = override[-1].split("=")
    assert str(OmegaConf.select(cfg, key)) in (value, f"{value}.0")


def test_unknown_keys_are_refused_in_every_typed_node() -> None:
    cfg = compose_config()
    for key in ("lrr", "faults.rate", "strategy.foo"):
        bad = compose_config(f"+{key}=1")
        with pytest.raises(ConfigError, match=rf"^{re.escape(key)}=1: no such key"):
            validate(bad)
    validate(cfg)  # the same config without the added key passes


def test_data_path_without_the_files_is_refused_by_the_check(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        check_point(["dataset=mnist", f"dataset.path={tmp_path}"])
    message = str(info.value)
    assert message.startswith(f"dataset.path={str(tmp_path)!r}: mnist lacks "), message
    assert "t10k-images-idx3-ubyte.gz" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["torch_threads=2147483648"], "torch_threads=2147483648: must be an integer in [1, 1024]"),
        (
            ["engine.workers=2147483648"],
            "engine.workers=2147483648: must be an integer in [0, 1024]",
        ),
        (
            ["engine=ray", "engine.num_gpus=inf"],
            "engine.num_gpus=inf: must be a finite number >= 0",
        ),
        (["+lrr=0.1"], "lrr=0.1: no such key; did you mean lr?"),
        (["dataset=mnist", "dataset.path=EMPTY"], "dataset.path='EMPTY': mnist lacks "),
    ],
)
def test_cli_refuses_before_hydra_writes_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], line: str
) -> None:
    """In process: exit 2, one line, and the (existing) run directory stays as it was."""
    from simulator.main import cli

    empty = tmp_path / "empty"
    empty.mkdir()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    args = [arg.replace("EMPTY", str(empty)) for arg in args]
    with pytest.raises(SystemExit) as exited:
        cli([*args, f"hydra.run.dir={run_dir}"])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("oleander: error: " + line.replace("EMPTY", str(empty))), err
    assert list(run_dir.iterdir()) == []
    assert list(empty.iterdir()) == []


def test_rule_precondition_with_too_many_attackers_is_a_combination_error() -> None:
    with pytest.raises(ConfigError) as info:
        check_point(["strategy=bulyan", "strategy.num_malicious=3"])
    assert info.value.combination
    with pytest.raises(ConfigError) as info:
        check_point(["strategy=trimmed_mean", "strategy.beta=0.7"])
    assert not info.value.combination


def test_sweep_points_vary_one_value_at_a_time() -> None:
    points = _points(["lr=0.1,0.2", "num_rounds=3", "seed=0,1,2"])
    assert points[0] == ["lr=0.1", "num_rounds=3", "seed=0"]
    assert ["lr=0.2", "num_rounds=3", "seed=0"] in points
    assert ["lr=0.1", "num_rounds=3", "seed=2"] in points
    assert len(points) == 4


def _oleander(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "-m", "simulator", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["num_clients=0"],
        ["clients_per_round=50"],
        ["lr=-1"],
        ["malicious_fraction=1.5"],
        ["strategy=nope"],
        ["-m", "lr=0.1,-1"],
    ],
)
def test_cli_bad_value_exits_2_without_traceback_or_output(tmp_path: Path, args: list[str]) -> None:
    result = _oleander(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("oleander: error: ")
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == [], "bad input must not create an output directory"


def test_config_digest_ignores_engine_but_not_lr() -> None:
    from simulator.main import config_digest

    base = config_digest(compose_config())
    assert config_digest(compose_config("engine=ray")) == base
    assert config_digest(compose_config("progress=false")) == base
    assert config_digest(compose_config("lr=0.01")) != base


def test_structured_schema_rejects_wrong_type_at_composition() -> None:
    cfg = compose_config()
    with pytest.raises(Exception):  # noqa: B017 - OmegaConf's ValidationError
        OmegaConf.update(cfg, "num_rounds", "many", merge=True)


@pytest.mark.parametrize("entry", group_entries("experiment"))
def test_every_experiment_preset_composes_and_validates(entry: str, tmp_path: Path) -> None:
    overrides = [f"experiment={entry}"]
    if "mnist" in entry:
        # The presets name no data path; the check looks for the files, not into them.
        for name in Mnist._files:
            (tmp_path / name).write_bytes(b"")
        overrides.append(f"dataset.path={tmp_path}")
    cfg = compose_config(*overrides)
    validate(cfg)
    header = (Path(CONFIG_DIR) / "experiment" / f"{entry}.yaml").read_text().splitlines()
    assert header[0] == "# @package _global_"
    assert any("oleander" in line for line in header[1:6]), "the header says how to run it"


def test_output_dir_that_cannot_be_written_is_reported_before_any_work(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("")
    result = _oleander(tmp_path, f"hydra.run.dir={a_file / 'run'}")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"oleander: error: hydra.run.dir={a_file / 'run'}: cannot be written "
        "(Not a directory); choose another directory"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


# Keys one level under their group; Hydra conventions -------------------------------------
@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            ["strategy=trimmed_mean", "strategy.rule.beta=0.1"],
            "strategy.rule.beta=0.1: the key is now strategy.beta",
        ),
        (
            ["attack=backdoor", "attack.poison.boost=3"],
            "attack.poison.boost=3: the key is now attack.boost",
        ),
        (["attack=alie", "attack.craft.z=1.5"], "attack.craft.z=1.5: the key is now attack.z"),
        (["pre=bucketing", "pre.steps=[]"], "pre.steps=[]: parameters now sit directly under pre"),
        (
            ["strategy=trimmed_mean", "strategy.betaa=0.1"],
            "strategy.betaa=0.1: no such key for strategy=trimmed_mean; "
            "did you mean strategy.beta?",
        ),
        (
            ["strategy=krum", "strategy.beta=0.1"],
            "strategy.beta=0.1: no such key for strategy=krum",
        ),
        (
            ["strategy=krum", "+strategy.beta=0.1"],
            "strategy.beta=0.1: no such key for strategy=krum",
        ),
        (
            ["attack=backdoor", "malicious_fraction=0.1", "attack.boost=-3"],
            "attack.boost=-3: must be a finite number > 0",
        ),
        (
            ["attack=label_flip", "malicious_fraction=0.1", "attack.source=3"],
            "attack.source=3, target=None: set both (targeted) or neither",
        ),
        (["attack.knowledge=some"], "attack.knowledge=some: must be null or one of partial, full"),
        (
            ["strategy=trimmed_mean", "+strategy.rule.beta=0.3"],
            "strategy.rule={'beta': 0.3}: parameters now sit directly under strategy: "
            "strategy.beta",
        ),
        # what the run passes at each call is not a setting (it would be replaced silently)
        (["strategy=fltrust", "+strategy.server_update=1"], "strategy.server_update=1: no such"),
        (["attack=alie", "+attack.own=1"], "attack.own=1: no such key for attack=alie"),
        (["attack=alie", "attack._target_=nope.nope"], "attack._target_=nope.nope: cannot be"),
        (["pre=bucketing", "pre.bucket_size=0"], "pre=bucketing with clients_per_round=10: "),
        (
            ["attack=backdoor", "malicious_fraction=0.1", "attack.pattern=pixels"],
            "attack.pixels=None: pattern=pixels needs a list",
        ),
        (["strategy.weighting=2"], "strategy.weighting=2: must be one of examples, uniform"),
    ],
)
def test_parameters_sit_one_level_under_their_group(override: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_point(override)
    assert str(info.value).startswith(expected), str(info.value)


def test_a_parameter_reaches_its_component_under_its_own_name() -> None:
    cfg = check_point(["strategy=trimmed_mean", "strategy.beta=0.3"])
    rule = build("strategy", cfg.strategy)
    assert rule.keywords == {"beta": 0.3}
    attack = build("attack", check_point(["attack=backdoor", "attack.boost=7"]).attack)
    assert attack.boost == 7


def test_experiment_and_debug_need_no_plus(tmp_path: Path) -> None:
    from simulator.main import normalise

    assert compose_config("experiment=quickstart").num_rounds == 5
    assert compose_config("debug=tiny").num_rounds == 2
    assert normalise(["+experiment=quickstart", "+debug=tiny", "+lr=1"]) == [
        "experiment=quickstart",
        "debug=tiny",
        "+lr=1",
    ]
    result = _oleander(tmp_path, "+experiment=quickstart", "--cfg", "job")
    assert result.returncode == 0, result.stderr
    assert "num_rounds: 5" in result.stdout


def test_debug_tiny_runs_a_small_fast_run(tmp_path: Path) -> None:
    result = _oleander(tmp_path, "debug=tiny", "progress=false")
    assert result.returncode == 0, result.stderr
    (summary,) = (tmp_path / "outputs" / "debug").rglob("summary.json")
    assert json.loads(summary.read_text())["rounds"] == 2


def test_help_lists_the_groups_and_their_options_not_hydra_internals(tmp_path: Path) -> None:
    result = _oleander(tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for group in ("strategy", "attack", "pre", "detect", "experiment", "debug"):
        assert re.search(rf"^  {group}\s", text, re.MULTILINE), group
    assert "fedavg*" in text and "trimmed_mean" in text and "fang_mnist" in text
    assert "schema" not in text and "powered by Hydra" not in text
    assert "strategy.server_lr" in text and "malicious_fraction=0.0" in text
    assert list(tmp_path.iterdir()) == []


# The second wave of defences: bad settings end before the run, in one line -------------
@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            ["detect=flame", "detect.min_cluster_size=11"],
            "detect=flame with clients_per_round=10: flame needs min_cluster_size <= the 10 "
            "clients aggregated, got min_cluster_size=11",
        ),
        (
            ["strategy=flame", "strategy.min_cluster_size=11"],
            "strategy=flame with clients_per_round=10: flame needs min_cluster_size",
        ),
        (
            ["detect=fldetector", "detect.window=20"],
            "detect.window=20: fldetector needs window + 2 = 22 rounds before it can detect, "
            "but num_rounds=10",
        ),
        (
            ["strategy=norm_bound", "strategy.noise_std=-0.1"],
            "strategy=norm_bound with clients_per_round=10: norm_bound needs finite noise_std",
        ),
        (["detect=signguard", "detect.upper=0.01"], "detect=signguard: signguard needs"),
        (
            ["strategy=dnc", "strategy.filter_frac=5", "attack=sign_flip",
             "malicious_fraction=0.3"],
            "strategy=dnc with clients_per_round=10: dnc needs filter_frac * num_malicious",
        ),
        (["strategy=rlr", "strategy.threshold=11"], "strategy=rlr with clients_per_round=10:"),
        (["strategy=foolsgold", "strategy.kappa=0"], "strategy=foolsgold"),
        (
            ["strategy=adaptive_clipping", "strategy.target_quantile=1.5"],
            "strategy=adaptive_clipping",
        ),
    ],
)  # fmt: skip
def test_second_wave_settings_are_checked_before_the_run(
    override: list[str], expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        check_point(override)
    message = str(info.value)
    assert message.startswith(expected), message
    assert "\n" not in message
