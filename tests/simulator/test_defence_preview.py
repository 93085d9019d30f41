"""The defence's dry run (``Defence.preview``) and how the adversary gets it (``defend``).

A preview must return what the round would, leave every state entry as it was (centered
clipping's center, FoolsGold's histories, the last aggregate), and not disturb the round
that follows: a defence that previewed and one that did not end the round identically.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch

from clients.attacks.tailored import Verdict
from simulator.adversary import Adversary
from simulator.config import ConfigError, validate
from simulator.threat import ThreatModel
from strategies import CenteredClipping, FLDetector, FoolsGold, bucketing, fedavg, fltrust, krum
from strategies.base import Aggregate
from strategies.pipeline import Defence, Outcome
from strategies.post import ServerLearningRate
from strategies.state import StageState
from tests.conftest import compose_config

IDS = [3, 0, 7, 5, 1]


def _rows(seed: int, n: int = 5, d: int = 6) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def _snapshot(defence: Defence) -> dict:
    return defence.state.state_dict()


def _same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _seeded(kind: str, server_round: int) -> torch.Generator:
    return torch.Generator().manual_seed(1000 * server_round + len(kind))


DEFENCES = {
    "centered_clipping": lambda: Defence(CenteredClipping(tau=0.5, iterations=2)),
    "foolsgold": lambda: Defence(FoolsGold()),
    "fldetector": lambda: Defence(fedavg, detect=[FLDetector(window=2, gap_samples=4)]),
}


@pytest.mark.parametrize("name", sorted(DEFENCES))
def test_preview_keeps_the_state_and_the_next_round(name: str) -> None:
    defence, twin = DEFENCES[name](), DEFENCES[name]()
    model = torch.zeros(6)
    for server_round in (1, 2, 3):  # build up state (FLDetector: rounds of history)
        for d in (defence, twin):
            d(_rows(server_round), IDS, server_round=server_round, global_model=model)
        model = model + 0.1
    before = _snapshot(defence)
    assert before, "the defence keeps state"
    for seed in (10, 11, 12):
        defence.preview(_rows(seed), IDS, server_round=4, global_model=model)
    assert _same(_snapshot(defence), before)
    real = defence(_rows(4), IDS, server_round=4, global_model=model)
    expected = twin(_rows(4), IDS, server_round=4, global_model=model)
    assert torch.equal(real.step, expected.step)
    assert _same(_snapshot(defence), _snapshot(twin))


def test_centered_clipping_center_and_foolsgold_histories_by_name() -> None:
    clipping = Defence(CenteredClipping(tau=0.5))
    clipping(_rows(1), IDS, server_round=1)
    center = clipping.state.stage("rule").get("center").clone()
    preview = clipping.preview(_rows(2) + 5.0, IDS, server_round=2)
    assert not torch.equal(preview.aggregate, center)  # the preview moved the center...
    assert torch.equal(clipping.state.stage("rule").get("center"), center)  # ...not kept

    foolsgold = Defence(FoolsGold())
    foolsgold(_rows(1), IDS, server_round=1)
    histories = {c: foolsgold.state.stage("rule").get_client(c, "history").clone() for c in IDS}
    foolsgold.preview(_rows(2), [*IDS[:4], 99], server_round=2)  # a new client id too
    stage = foolsgold.state.stage("rule")
    assert all(torch.equal(stage.get_client(c, "history"), histories[c]) for c in IDS)
    assert stage.get_client(99, "history") is None
    assert list(stage.clients()) == sorted(IDS)


def test_preview_returns_what_the_round_returns() -> None:
    defence = Defence(  # random buckets: the preview draws what the round draws
        functools.partial(krum, num_malicious=0),
        pre=[functools.partial(bucketing, bucket_size=2)],
        generator=_seeded,
    )
    rows = _rows(3, n=8)
    ids = list(range(8))
    preview = defence.preview(rows, ids, server_round=2)
    outcome = defence(rows, ids, server_round=2)
    assert torch.equal(preview.aggregate, outcome.aggregate)
    assert torch.equal(preview.weights, outcome.weights)


def test_preview_computes_the_run_s_inputs_once_per_round() -> None:
    calls: list[int] = []

    def server_update(server_round: int, global_model: torch.Tensor | None) -> torch.Tensor:
        calls.append(server_round)
        return torch.ones(6)

    defence = Defence(fltrust, inputs={"server_update": server_update})
    model = torch.zeros(6)
    for _ in range(3):
        defence.preview(_rows(1), IDS, server_round=1, global_model=model)
    assert calls == [1]
    defence(_rows(1), IDS, server_round=1, global_model=model)  # the round computes its own
    defence.preview(_rows(1), IDS, server_round=2, global_model=model + 1)
    assert calls == [1, 1, 2]


@pytest.mark.parametrize("fails", [False, True])
def test_a_preview_keeps_no_write_whether_or_not_it_aggregates(fails: bool) -> None:
    def rule(updates: torch.Tensor, *, state: StageState) -> Aggregate:
        state.set("seen", int(updates.shape[0]))
        if fails:
            raise ValueError("too few rows")
        return fedavg(updates)

    defence = Defence(rule, post=[ServerLearningRate(1.0)])
    outcome = defence.preview(_rows(1), IDS, server_round=1)
    assert (outcome.step is None) is fails
    assert not defence.state
    defence(_rows(1), IDS, server_round=1)
    assert bool(defence.state) is not fails


# -------------------------------------------------------------------- the adversary's view


def _threat(malicious: tuple[int, ...], knowledge: str) -> ThreatModel:
    threat = ThreatModel.build(
        seed=0, num_clients=8, clients_per_round=5, malicious_fraction=0.25,
        num_malicious_told=None, attack="tailored", site="adversary", knowledge=knowledge,
        parameters={},
    )  # fmt: skip
    return dataclasses.replace(threat, malicious_clients=malicious)


def test_adversary_gives_the_attack_the_defence_on_its_crafted_rows() -> None:
    updates = _rows(5)  # clients 3, 0, 7, 5, 1; attackers 0 and 5 (rows 1 and 3)
    matrices: list[torch.Tensor] = []
    verdicts: list[Verdict] = []

    def defend(matrix: torch.Tensor) -> Outcome:
        matrices.append(matrix.clone())
        flagged = {5: "detector"}
        weights = torch.tensor([0.1, 0.2, 0.3, 0.0, 0.4])
        return Outcome(step=matrix[0], aggregate=matrix[0], weights=weights, flagged=flagged)

    def craft(benign, num_malicious, num_clients, *, defend):
        verdicts.append(defend(torch.full((num_malicious, benign.shape[1]), 9.0)))
        return torch.full((num_malicious, benign.shape[1]), 7.0)

    adversary = Adversary(craft, _threat((0, 5), "full"), seed=0)
    result = adversary(updates, IDS, 1, defend=defend)
    (matrix,) = matrices
    assert torch.equal(matrix[[0, 2, 4]], updates[[0, 2, 4]])  # the benign rows as sent
    assert (matrix[[1, 3]] == 9.0).all()  # the candidate in the attackers' places
    (verdict,) = verdicts
    assert verdict.weights.tolist() == pytest.approx([0.2, 0.0])
    assert verdict.flagged.tolist() == [False, True]
    assert torch.equal(verdict.aggregate, updates[0])
    assert (result[[1, 3]] == 7.0).all()


def test_partial_knowledge_gets_no_view_of_the_defence() -> None:
    seen: list[object] = []

    def craft(benign, num_malicious, num_clients, *, defend=None):
        seen.append(defend)
        return torch.zeros(num_malicious, benign.shape[1])

    Adversary(craft, _threat((0, 5), "partial"), seed=0)(_rows(5), IDS, 1, defend=lambda m: None)
    assert seen == [None]


def test_tailored_with_partial_knowledge_is_refused_before_the_run() -> None:
    cfg = compose_config("attack=tailored", "attack.knowledge=partial", "malicious_fraction=0.2")
    with pytest.raises(ConfigError, match="tailored needs full knowledge") as info:
        validate(cfg)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("attack.direction=up", "direction='up': must be one of unit, std, sign, alie, ipm"),
        ("attack.gamma_init=0", "gamma_init must be > 0"),
        ("attack.gamma_init=-2.5", "gamma_init must be > 0"),
    ],
)
def test_tailored_bad_settings_are_refused_before_the_run(override: str, message: str) -> None:
    cfg = compose_config("attack=tailored", override, "malicious_fraction=0.2",
                         "strategy=krum")  # fmt: skip
    with pytest.raises(ConfigError, match=message) as info:
        validate(cfg)
    assert "\n" not in str(info.value)
    assert not info.value.combination


def test_mimic_bad_setting_is_refused_before_the_run() -> None:
    cfg = compose_config("attack=mimic", "attack.power_iterations=0", "malicious_fraction=0.2")
    with pytest.raises(ConfigError, match="power_iterations must be an integer >= 1") as info:
        validate(cfg)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("strategy", ["fltrust", "foolsgold", "centered_clipping", "median"])
def test_tailored_config_check_runs_against_each_defence(strategy: str) -> None:
    validate(compose_config("attack=tailored", "malicious_fraction=0.2", f"strategy={strategy}"))
