"""The second wave of attacks runs from the command line on both engines, with the same
numbers: Ray's runtime and the inline engine (one client at a time) run the same
ClientApp (client-side poisoning, a node's memory in Flower's Context.state) and the same
adversary (a search against the run's defence).

Three runs per engine cover the paths: Neurotoxin (the node remembers the last global
model it received), the edge-case backdoor (data the server and the clients derive alike)
and the AGR-tailored attack (the adversary's dry runs of the defence). DBA and PGD take
Neurotoxin's path, Mimic the tailored attack's, MPAF has its own test with fake clients.
"""

from __future__ import annotations

import pytest

from tests.simulator.test_defence_engines import _flags
from tests.simulator.test_engines import _assert_close, _metrics, _run

BASE = ("num_rounds=3", "num_clients=10", "progress=false", "malicious_fraction=0.2")
ATTACKS = {
    "neurotoxin": ("attack=neurotoxin",),
    "edge_case": ("attack=edge_case",),
    "tailored-krum": ("attack=tailored", "strategy=krum"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_gives_the_same_numbers_on_ray_and_inline(tmp_path, name: str) -> None:
    overrides = (*BASE, *ATTACKS[name])
    inline, _ = _run(tmp_path, "inline", *overrides, "engine.cohort=never")
    ray, summary = _run(tmp_path, "ray", *overrides, "engine=ray")
    assert summary["engine"] == "ray" and summary["threat_model"]["attack"] == name.split("-")[0]
    _assert_close(_metrics(ray), _metrics(inline))
    assert _flags(tmp_path / "ray") == _flags(tmp_path / "inline")
    rates = [r["attack_success_rate"] for r in ray]
    if name != "tailored-krum":  # the backdoors' success is measured every round
        assert all(rate != "" for rate in rates)
