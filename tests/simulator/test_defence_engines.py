"""Every defence of the second wave, and the attacks of the second wave that take their own
paths through a run, run from the command line across processes with the same numbers:
Ray's runtime, the inline engine's worker processes and the inline engine in-process run
the same ServerApp, ClientApp, adversary and defence state, one client at a time
(``engine.cohort=never``).

Four pairs of runs cover every kind: a rule that keeps state behind a detector that
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


# Where each pair crosses a process boundary: Flower's Simulation Runtime on Ray (a
# SuperLink, Flower's ServerApp process, Ray's actors) for the two that keep state on
# the client side (Neurotoxin's node memory) or in the adversary (the tailored attack's
# dry runs); the inline engine's worker processes (messages and node state pickled there
# and back) for the other two. Each run costs a Ray start-up of about 20 s on two cores.
ENGINES = {
    "foolsgold+fldetector": ("engine.workers=2", "engine.cohort=never"),
    "flame+dnc-neurotoxin": ("engine=ray",),
    "adaptive_clipping+signguard-tailored": ("engine=ray",),
    "rlr+flame-edge_case": ("engine.workers=2", "engine.cohort=never"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PAIRS))
def test_defence_gives_the_same_numbers_across_processes(tmp_path, name: str) -> None:
    overrides = (*BASE, *PAIRS[name])
    inline, inline_summary = _run(tmp_path, "inline", *overrides, "engine.cohort=never")
    other, other_summary = _run(tmp_path, "other", *overrides, *ENGINES[name])
    assert inline_summary["engine"] == "inline"
    assert other_summary["engine"] == ("ray" if "engine=ray" in ENGINES[name] else "inline")
    _assert_close(_metrics(other), _metrics(inline))
    assert len(other) == 5  # round 0 and four rounds, none lost
    flags = _flags(tmp_path / "other")
    assert flags == _flags(tmp_path / "inline")
    assert any(flagged for _, _, flagged in flags), "the detector flagged nobody: no test"


def _flags(run: Path) -> list[tuple[str, str, str]]:
    """(round, client, detector that flagged it) of every client row."""
    with open(run / "clients.csv", newline="") as handle:
        return [(r["round"], r["client"], r["flagged"]) for r in csv.DictReader(handle)]
