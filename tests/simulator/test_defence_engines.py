"""Every defence of the second wave, and the attacks of the second wave that take their own
paths through a run, run from the command line on both engines with the same numbers:
Ray's runtime and the inline engine run the same ServerApp, ClientApp, adversary and
defence state, one client at a time (``engine.cohort=never`` on the inline side).

Four runs per engine cover every kind: a rule that keeps state behind a detector that
keeps state; a paper's own detection (FLAME's) behind another detector, against
Neurotoxin (a node's memory in Flower's Context.state); a stateful rule behind a
randomised detector, against the AGR-tailored attack (dry runs of that defence); a
stateless rule behind FLAME's detection, against the edge-case backdoor (data the server
and the clients derive alike). The strategy forms of DnC and SignGuard, weak DP's noise,
DBA and PGD (Neurotoxin's path) and Mimic (the tailored attack's) reuse those pieces;
MPAF with fake clients has its own test.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.simulator.test_engines import _assert_close, _metrics, _run

BASE = ("num_rounds=4", "num_clients=10", "progress=false", "malicious_fraction=0.2")
PAIRS = {
    "foolsgold+fldetector": (
        "strategy=foolsgold", "detect=fldetector", "detect.window=1", "attack=sign_flip",
    ),
    "flame+dnc-neurotoxin": ("strategy=flame", "detect=dnc", "attack=neurotoxin"),
    "adaptive_clipping+signguard-tailored": (
        "strategy=adaptive_clipping", "detect=signguard", "attack=tailored",
    ),
    "rlr+flame-edge_case": ("strategy=rlr", "detect=flame", "attack=edge_case"),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PAIRS))
def test_defence_gives_the_same_numbers_on_ray_and_inline(tmp_path, name: str) -> None:
    overrides = (*BASE, *PAIRS[name])
    inline, inline_summary = _run(tmp_path, "inline", *overrides, "engine.cohort=never")
    ray, ray_summary = _run(tmp_path, "ray", *overrides, "engine=ray")
    assert ray_summary["engine"] == "ray" and inline_summary["engine"] == "inline"
    _assert_close(_metrics(ray), _metrics(inline))
    assert len(ray) == 5  # round 0 and four rounds, none lost
    flags = _flags(tmp_path / "ray")
    assert flags == _flags(tmp_path / "inline")
    assert any(flagged for _, _, flagged in flags), "the detector flagged nobody: no test"


def _flags(run: Path) -> list[tuple[str, str, str]]:
    """(round, client, detector that flagged it) of every client row."""
    with open(run / "clients.csv", newline="") as handle:
        return [(r["round"], r["client"], r["flagged"]) for r in csv.DictReader(handle)]
