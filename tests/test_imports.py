"""The package boundaries: ``clients`` and ``strategies`` are plain torch/numpy libraries.

Every import of every module is read from its source (imports inside functions and
``TYPE_CHECKING`` blocks included), so a boundary cannot be crossed by a lazy import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Top-level packages a plain library may not import.
FRAMEWORKS = {"flwr", "flwr_datasets", "hydra", "omegaconf", "simulator", "ray"}
# package (folder) -> what it may not import besides FRAMEWORKS
FORBIDDEN = {
    "strategies": {"clients"},
    "clients": {"strategies"},  # but clients.attacks may simulate the rule it targets
    "clients/attacks": set(),
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in ``path``, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", None) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.append((node.lineno, str(node.args[0].value)))
    return found


def _rule_for(path: Path) -> tuple[str, set[str]]:
    relative = path.relative_to(REPO).parent.as_posix()
    key = max((k for k in FORBIDDEN if relative == k or relative.startswith(f"{k}/")), key=len)
    return key, FRAMEWORKS | FORBIDDEN[key]


LIBRARY_FILES = sorted(
    p for package in ("clients", "strategies") for p in (REPO / package).rglob("*.py")
)


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_plain_libraries_import_no_framework_and_no_simulator(path: Path) -> None:
    package, forbidden = _rule_for(path)
    crossings = [
        f"{path.relative_to(REPO)}:{line}: imports {module}"
        for line, module in imported_modules(path)
        if module.split(".")[0] in forbidden
    ]
    assert not crossings, f"{package} is a plain library:\n" + "\n".join(crossings)


def test_the_walk_sees_imports_inside_functions(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "import torch\n"
        "def f():\n"
        "    from simulator.seeding import Stream\n"
        "    import flwr.app\n"
        "    return importlib.import_module('hydra.utils')\n"
    )
    modules = [m for _, m in imported_modules(source)]
    assert modules == ["torch", "simulator.seeding", "flwr.app", "hydra.utils"]


def test_message_keys_are_spelled_once() -> None:
    """Every record key of the message protocol appears in ``simulator/protocol.py`` only."""
    keys = ('"partition-id"', '"num-partitions"', '"client-id"', '"num-examples"',
            '"server-round"', '"batch-size"', '"local-epochs"', '"local-steps"',
            '"weight-decay"')  # fmt: skip
    sources = [p for p in (REPO / "simulator").rglob("*.py") if p.name != "protocol.py"]
    sources += [
        p for d in ("clients", "strategies", "benchmarks") for p in (REPO / d).rglob("*.py")
    ]
    spelled = [
        f"{path.relative_to(REPO)}: {key}"
        for path in sources
        for key in keys
        if key in path.read_text()
    ]
    assert not spelled
