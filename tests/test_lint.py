"""The code base passes ruff (rules in pyproject.toml): lint and format."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    """How to run ruff: the running interpreter's module, else a ``ruff`` on PATH."""
    if importlib.util.find_spec("ruff") is not None:
        return [sys.executable, "-m", "ruff"]
    found = shutil.which("ruff")
    if found is None:
        pytest.fail(
            f"ruff is not installed for {sys.executable} nor on PATH; it is in the test "
            "extra: pip install -e '.[test]'"
        )
    return [found]


def _run_ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_ruff(), *args, "--no-cache", str(REPO)], capture_output=True, text=True, timeout=120
    )


def test_ruff_check_is_clean() -> None:
    result = _run_ruff("check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_check_is_clean() -> None:
    result = _run_ruff("format", "--check")
    assert result.returncode == 0, result.stdout + result.stderr
