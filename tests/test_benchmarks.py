"""The benchmark scripts' shared helpers, and one tiny end-to-end run of a script."""

from __future__ import annotations

import re
import shlex
import sys
from importlib.machinery import ModuleSpec
from pathlib import Path

import pytest

from benchmarks.common import replace_section, table
from benchmarks.scale import main as scale_main


def test_replace_section_replaces_only_its_own_section_or_appends() -> None:
    text = "# Benchmarks\n\nintro\n\n## A\n\nold a\n\n## B\n\nold b\n"
    replaced = replace_section(text, "A", ["## A", "", "new a"])
    assert replaced == "# Benchmarks\n\nintro\n\n## A\n\nnew a\n\n## B\n\nold b\n"
    appended = replace_section(text, "C", ["## C", "", "c"])
    assert appended.endswith("## B\n\nold b\n\n## C\n\nc\n")
    assert replace_section(replaced, "A", ["## A", "", "new a"]) == replaced


def test_table_aligns_numbers_right() -> None:
    lines = table(["name", "s"], [["x", "1.5"], ["longer", "10"]], right={1})
    assert lines == [
        "| name   |   s |",
        "|--------|----:|",
        "| x      | 1.5 |",
        "| longer |  10 |",
    ]


def test_scale_script_runs_and_writes_its_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # As started with `python -m benchmarks.scale` (the documented way): the command line
    # the section names is read from __main__'s spec.
    monkeypatch.setattr(sys.modules["__main__"], "__spec__", ModuleSpec("benchmarks.scale", None))
    output = tmp_path / "BENCHMARKS.md"
    argv = ["--clients", "20", "--per-round", "5", "--rounds", "1", "--repeat", "1",
            "--write", "--output", str(output)]  # fmt: skip
    command = f"python -m benchmarks.scale {shlex.join(argv)}"
    assert scale_main(argv) == 0
    text = output.read_text()
    lines = text.splitlines()
    assert lines[0] == "# Benchmarks"  # a new file gets the file's header first
    assert lines.count("## Scale") == 1
    start = lines.index("## Scale")
    assert lines[start + 1] == ""
    dated = rf"`{re.escape(command)}` on \d{{4}}-\d{{2}}-\d{{2}}, \d+ s in all\."
    assert re.fullmatch(dated, lines[start + 2]), lines[start + 2]
    assert lines[start + 3] == ""
    machine = r"Machine: .+; load average \(1 min\) \S+ after, \S+ before\."
    assert re.fullmatch(machine, lines[start + 4]), lines[start + 4]
    assert lines[start + 5] == ""
    notes = "- `oleander num_clients=20 clients_per_round=5 num_rounds=R` on digits"
    assert lines[start + 6].startswith(notes)
    rows = [line for line in text.splitlines() if line.startswith("|      20 |")]
    assert [row.split("|")[3].strip() for row in rows] == ["1", "4"]  # rounds of both runs
    assert "MET   peak resident memory under 3 GiB" in text
    out = capsys.readouterr().out
    assert out.startswith(f"$ {command}\n")
    assert f"wrote the 'Scale' section of {output}" in out
