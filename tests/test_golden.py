"""Golden runs: every config in ``tests/golden/runs.py`` gives its recorded numbers (1e-6).

A change that is meant to alter results re-records them (``python -m tests.golden.runs
--record``) in the same commit, and says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.golden.runs import CONFIGS, DATA, differences, run

GOLDEN = json.loads(DATA.read_text())


def test_every_config_has_a_recording() -> None:
    assert sorted(GOLDEN) == sorted(CONFIGS)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_golden_run_is_unchanged(tmp_path: Path, name: str) -> None:
    diffs = differences(GOLDEN[name], run(name, tmp_path), name)
    assert not diffs, "\n".join(diffs[:10])


def test_differences_sees_a_change_in_the_last_digit_that_matters() -> None:
    recorded = GOLDEN["fedavg"]
    changed = json.loads(json.dumps(recorded))
    changed["rounds"][-1]["test_loss"] *= 1 + 1e-5
    assert differences(recorded, changed)
    changed["rounds"][-1]["test_loss"] = recorded["rounds"][-1]["test_loss"] * (1 + 1e-8)
    assert not differences(recorded, changed)
