"""The benchmark scripts' shared helpers, and one tiny end-to-end run of a script."""

from __future__ import annotations

from pathlib import Path

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


def test_scale_script_runs_and_writes_its_section(tmp_path: Path, capsys) -> None:
    output = tmp_path / "BENCHMARKS.md"
    argv = ["--clients", "20", "--per-round", "5", "--rounds", "1", "--repeat", "1",
            "--write", "--output", str(output)]  # fmt: skip
    assert scale_main(argv) == 0
    text = output.read_text()
    assert ("## Scale" in text and "python -m benchmarks.scale" in text) or "scale" in text
    rows = [line for line in text.splitlines() if line.startswith("|      20 |")]
    assert [row.split("|")[3].strip() for row in rows] == ["1", "4"]  # rounds of both runs
    assert "MET   peak resident memory under 3 GiB" in text
    assert "wrote the 'Scale' section" in capsys.readouterr().out
