"""``oleander-reproduce``: table files, verdicts, the grid, and one real quick reproduction."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import yaml

from simulator.reproduce import cli, grid, table, verdict
from simulator.reproduce.table import TableError

TOY = {
    "paper": "A paper",
    "table": "Table 1",
    "metric": "error",
    "statistic": "final",
    "paper_setting": "digits, 10 clients",
    "differences": ["fewer rounds"],
    "judge": "ordering",
    "band": 0.05,
    "tie": 0.02,
    "data": "digits",
    "rounds": 2,
    "seeds": [0, 1],
    "overrides": ["num_rounds=2", "num_clients=5"],
    "quick": ["num_rounds=1"],
    "rows": [
        {"label": "FedAvg", "overrides": ["strategy=fedavg"]},
        {"label": "Median", "overrides": ["strategy=median"]},
    ],
    "columns": [
        {"label": "No attack", "overrides": ["attack=none", "malicious_fraction=0"]},
        {"label": "Sign flip", "overrides": ["attack=sign_flip", "malicious_fraction=0.4"]},
    ],
    "cells": {
        "FedAvg": {"No attack": 0.1, "Sign flip": 0.9},
        "Median": {"No attack": 0.1, "Sign flip": None},
    },
}


def write_table(tmp_path: Path, raw: dict, name: str = "toy") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


# --- the bundled tables -------------------------------------------------------------------


def test_at_least_four_tables_from_three_papers() -> None:
    tables = [table.load(name) for name in table.available()]
    assert len(tables) >= 4
    assert len({t.paper for t in tables}) >= 3


@pytest.mark.parametrize("name", table.available())
def test_every_cell_of_every_bundled_table_composes(name: str, tmp_path: Path) -> None:
    t = table.load(name)
    assert t.source and t.differences, "a table says where its numbers come from and how it differs"
    for quick in (False, True):
        cells = grid.cells(t, tmp_path, quick=quick)
        warned: list[str] = []
        done = cli.check_cells(cells, warned)  # raises TableError naming the cell if one cannot run
        assert len(done) == len(cells)
        assert warned == [], "no cell of a packaged table is a set-up that tests nothing"
        assert not any(any(flags) for flags in done.values())


def test_list_names_every_table_with_its_setting(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["--list"])
    out = capsys.readouterr().out
    for name in table.available():
        t = table.load(name)
        assert f"\n{name}\n" in f"\n{out}"
        assert t.table in out and t.data in out
        if t.minutes is not None:
            assert f"{t.minutes:g} min on 2 cores" in out and t.time_note in out
    assert any(table.load(name).minutes is not None for name in table.available())


# --- table files: bad input names the key ---------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"metric": "loss"}, "metric"),
        ({"statistic": "median"}, "statistic"),
        ({"judge": "vibes"}, "judge"),
        ({"band": -1}, "band"),
        ({"seeds": []}, "seeds"),
        ({"cells": {"FedAvg": {"No attack": 0.1, "Sign flip": 0.9}}}, "Median/"),
        ({"cells": {**TOY["cells"], "Krum": {"No attack": 0.1}}}, "'Krum'"),
        ({"rows": [{"label": "A"}, {"label": "A"}]}, "distinct"),
        ({"overrides": ["num_rounds"]}, "key=value"),
    ],
)
def test_bad_table_names_what_is_wrong(tmp_path: Path, change: dict, message: str) -> None:
    path = write_table(tmp_path, {**TOY, **change})
    with pytest.raises(TableError, match=message) as caught:
        table.load(str(path))
    assert "\n" not in str(caught.value)


def test_missing_keys_and_unknown_names_are_one_line(tmp_path: Path) -> None:
    raw = {k: v for k, v in TOY.items() if k != "paper"}
    with pytest.raises(TableError, match=r"missing keys \['paper'\]"):
        table.load(str(write_table(tmp_path, raw)))
    with pytest.raises(TableError, match="not a reproducible table"):
        table.load("no_such_table")


def test_a_cell_that_cannot_run_is_refused_before_any_run(tmp_path: Path) -> None:
    path = write_table(tmp_path, {**TOY, "overrides": ["strategy.beta=2"]})
    with pytest.raises(SystemExit) as stopped:
        cli.main([str(path), "--out", str(tmp_path / "out")])
    assert stopped.value.code == 2
    assert not (tmp_path / "out").exists()


def test_seed_and_folder_are_the_commands_own(tmp_path: Path) -> None:
    path = write_table(tmp_path, TOY)
    with pytest.raises(SystemExit):
        cli.main([str(path), "seed=3", "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


# --- the grid -------------------------------------------------------------------------------


def test_later_overrides_replace_earlier_ones_in_place() -> None:
    merged = grid.merge(["a=1", "b=2"], ["a=3"], ["+c=4", "c=5"])
    assert merged == ("b=2", "a=3", "c=5")


def test_directory_names_are_short_and_safe() -> None:
    name = grid.slug("Trimmed mean / ../x, $y {z} " + "w" * 80, 3)
    assert name.startswith("03-") and len(name) <= 35
    assert all(ch.isalnum() or ch == "-" for ch in name)


def test_quick_grid_is_two_by_two_one_seed(tmp_path: Path) -> None:
    t = table.parse({**TOY, "rows": [*TOY["rows"], {"label": "Krum", "overrides": []}],
                     "cells": {**TOY["cells"], "Krum": {"No attack": 0.1, "Sign flip": 0.2}}},
                    tmp_path / "t.yaml")  # fmt: skip
    full, quick = grid.cells(t, tmp_path), grid.cells(t, tmp_path, quick=True)
    assert len(full) == 6 and len(quick) == 4
    assert all(c.seeds == (0,) for c in quick) and all(c.seeds == (0, 1) for c in full)
    assert "num_rounds=1" in quick[0].overrides and "num_rounds=2" not in quick[0].overrides
    extra = grid.cells(t, tmp_path, extra=("num_rounds=7",))
    assert extra[0].overrides.count("num_rounds=7") == 1


# --- verdicts -------------------------------------------------------------------------------


def rows(*accuracies: float) -> list[dict[str, str]]:
    out = [{"round": "0", "test_accuracy": "0.05", "attack_success_rate": ""}]
    for i, acc in enumerate(accuracies, start=1):
        out.append({"round": str(i), "test_accuracy": str(acc), "attack_success_rate": str(acc)})
    return out


def test_run_value_statistics() -> None:
    r = rows(0.5, 0.9, 0.7)
    assert verdict.run_value(r, "accuracy", "final") == pytest.approx(0.7)
    assert verdict.run_value(r, "error", "final") == pytest.approx(0.3)
    assert verdict.run_value(r, "accuracy", "best") == pytest.approx(0.9)
    assert verdict.run_value(r, "error", "best") == pytest.approx(0.1)
    assert verdict.run_value(r, "accuracy", "mean_last_2") == pytest.approx(0.8)
    assert verdict.run_value(r, "attack_success", "best") == pytest.approx(0.9)
    assert verdict.run_value(rows(), "accuracy", "final") is None  # round 0 is not a result


def test_verdicts_band_ordering_and_ties() -> None:
    paper = {("A", "x"): 0.1, ("A", "y"): 0.9, ("B", "x"): 0.1, ("B", "y"): 0.2, ("C", "x"): None}
    ours = {("A", "x"): 0.12, ("A", "y"): 0.5, ("B", "x"): 0.3, ("B", "y"): 0.6, ("C", "x"): 0.4}
    found = verdict.verdicts(paper, ours, band=0.05, tie=0.02)
    assert found[("A", "x")] == verdict.WITHIN
    assert found[("C", "x")] == verdict.NO_PAPER
    # A/y: above A/x in its row (as in the paper), below B/y in its column (paper: above).
    assert found[("A", "y")] == verdict.DIFFERS
    # B/x: B/x > A/x here, paper ties them; B/x < B/y in both.
    assert found[("B", "x")] == verdict.ORDERING
    assert verdict.verdicts(paper, {}, 0.05, 0.0)[("A", "x")] == verdict.NOT_RUN


def test_mean_std() -> None:
    mean, std = verdict.mean_std([0.1, 0.3])
    assert mean == pytest.approx(0.2) and std == pytest.approx(math.sqrt(0.02))
    assert verdict.mean_std([0.4]) == (0.4, None)


# --- a real reproduction, end to end ------------------------------------------------------


@pytest.mark.slow
def test_reproduce_runs_judges_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_table(tmp_path, TOY)
    out = tmp_path / "out"
    cli.main([str(path), "--quick", "--out", str(out)])
    first = capsys.readouterr().out
    assert "running 4" in first
    with (out / "reproduction.csv").open() as handle:
        found = list(csv.DictReader(handle))
    assert [(r["row"], r["column"]) for r in found] == [
        ("FedAvg", "No attack"), ("FedAvg", "Sign flip"),
        ("Median", "No attack"), ("Median", "Sign flip"),
    ]  # fmt: skip
    for r in found:
        run = Path(r["runs"]) / "seed_0"
        assert (run / "summary.json").is_file() and r["seeds"] == "1"
        acc = float(list(csv.DictReader((run / "rounds.csv").open()))[-1]["test_accuracy"])
        assert float(r["oleander_mean"]) == pytest.approx(1 - acc)
    assert found[3]["verdict"] == verdict.NO_PAPER
    assert {r["verdict"] for r in found[:3]} <= {verdict.WITHIN, verdict.ORDERING, verdict.DIFFERS}
    page = (out / "reproduction.md").read_text()
    assert "QUICK run" in page and "fewer rounds" in page and page.endswith("\n")
    assert (out / "reproduction.png").stat().st_size > 0
    # The same command again starts nothing and writes the same verdicts.
    cli.main([str(path), "--quick", "--out", str(out)])
    assert "4 of 4 cells already finished; running 0" in capsys.readouterr().out
    with (out / "reproduction.csv").open() as handle:
        assert list(csv.DictReader(handle)) == found


def test_seeds_run_side_by_side_only_when_asked(tmp_path: Path) -> None:
    t = table.parse(TOY, tmp_path / "t.yaml")
    cell = grid.cells(t, tmp_path)[0]
    assert "hydra/launcher=local" not in cell.command()
    assert {"hydra/launcher=local", "hydra.launcher.n_jobs=2"} <= set(cell.command(4))
    own = grid.cells(t, tmp_path, extra=("hydra/launcher=basic",))[0]
    assert "hydra/launcher=local" not in own.command(4)  # the user's launcher is kept
    assert "seed=0,1" in cell.command() and f"hydra.sweep.dir={cell.directory}" in cell.command()
