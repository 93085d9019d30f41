"""Set-ups that test nothing get one warning each, and the suite's own configs get none."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from simulator.components import threat_model
from simulator.pitfalls import end_warnings, start_warnings
from simulator.preflight import CONFIG_DIR, compose_point
from tests.conftest import compose_config, run_oleander
from tests.golden.runs import BASE, CONFIGS


def warnings_of(*overrides: str, asked: tuple[str, ...] = ()) -> list[str]:
    cfg = compose_config(*overrides)
    return start_warnings(cfg, threat_model(cfg), asked)


@pytest.mark.parametrize(
    ("overrides", "asked", "expected"),
    [
        (("attack=alie",), (), "attack=alie with no attacker"),
        (("attack=alie", "num_clients=20", "malicious_fraction=0.1"), (), "z=0 (the paper's"),
        (("attack=alie", "malicious_fraction=0.2", "attack.z=0.05"), (), "z=0.05 (attack.z)"),
        (
            ("attack=backdoor", "malicious_fraction=0.2", "attack.boost=${torch_threads}"),
            (),
            "attack.boost=${torch_threads} is 1",
        ),
        (
            ("attack=backdoor", "malicious_fraction=0.2", "attack.boost=1"),
            ("attack.boost=1",),
            "attack.boost=1 is 1",
        ),
    ],
)
def test_each_set_up_that_tests_nothing_gets_one_warning(
    overrides: tuple[str, ...], asked: tuple[str, ...], expected: str
) -> None:
    found = warnings_of(*overrides, asked=asked)
    assert len(found) == 1, found
    assert expected in found[0]


def test_no_warning_for_set_ups_that_test_something() -> None:
    assert warnings_of("attack=alie", "num_clients=20", "malicious_fraction=0.3") == []
    assert warnings_of("attack=backdoor", "malicious_fraction=0.2") == []  # no boost asked
    assert warnings_of() == []


def test_the_suites_golden_configs_and_presets_warn_about_nothing() -> None:
    for name, overrides in CONFIGS.items():
        assert warnings_of(*BASE, *overrides) == [], name
    for preset in sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml")):
        # each point of the preset's own sweep, with the overrides its job is given
        # (the rule and the seed change no warning: their first values stand for all)
        params = compose_point([f"experiment={preset}"]).hydra.sweeper.params or {}
        first_only = ("strategy", "seed")
        values = [
            [f"{k}={v}" for v in str(params[k]).split(",")][: 1 if k in first_only else None]
            for k in params
        ]
        for point in itertools.product(*values):
            typed = (f"experiment={preset}", *point)
            assert warnings_of(*typed, asked=typed) == [], typed


def test_a_sweeps_clean_baseline_is_asked_for() -> None:
    typed = ("attack=alie", "malicious_fraction=0")
    assert warnings_of(*typed, asked=typed) == []


def test_a_z_that_sampling_made_small_is_warned_at_the_end() -> None:
    small = {"attack.z": {"mean": 0.02, "min": 0.0, "max": 0.05, "last": 0.0, "rounds": 3}}
    assert "z=0.05 (as computed" in end_warnings([], small)[0]
    assert end_warnings([], {"attack.z": 1.5}) == []
    assert end_warnings(["x"], {}) == ["x"]


def test_the_start_line_names_the_attack_and_the_warning_lands_in_the_summary(
    tmp_path: Path,
) -> None:
    import json

    result = run_oleander(
        tmp_path, "debug=tiny", "attack=alie", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "attack alie by 0 of 5 (malicious_fraction=0), f=0 told" in result.stderr
    assert "warning: attack=alie with no attacker" in result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert len(summary["warnings"]) == 1 and "no attacker" in summary["warnings"][0]
