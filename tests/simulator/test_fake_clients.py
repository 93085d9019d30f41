"""Fake clients (``fake_clients=K``, Cao and Gong 2022): ids after the real ones, sampled
like them, no data, never trained, malicious in every record; what the adversary knows
with them; bad settings refused before the run; the same numbers on both engines."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch
from flwr.app import ArrayRecord, Context, Message, MessageType, RecordDict

from clients.training import TrainConfig
from simulator import client_app, protocol
from simulator.adversary import Adversary, NoKnowledge
from simulator.client_app import make_client_app, nominal_examples
from simulator.config import ConfigError, validate
from simulator.engines.inline import set_task_identity
from simulator.federation import load_federation
from simulator.main import simulate
from simulator.models import MLP
from simulator.results import FLAGGED_WEIGHT
from simulator.strategy import sample_clients
from simulator.threat import ThreatModel, count_for
from tests.conftest import compose_config
from tests.simulator.test_client_app import SPEC as CLIENT_APP_SPEC


def _threat(**changes: object) -> ThreatModel:
    settings = dict(
        seed=3, num_clients=10, clients_per_round=13, malicious_fraction=0.2,
        num_malicious_told=None, attack="mpaf", site="adversary", knowledge="partial",
        parameters={}, fake_clients=3,
    )  # fmt: skip
    settings.update(changes)
    return ThreatModel.build(**settings)  # type: ignore[arg-type]


# The threat model ------------------------------------------------------------------------
def test_fake_ids_follow_the_real_ones_and_are_malicious() -> None:
    threat = _threat()
    assert threat.fake_client_ids == (10, 11, 12) and threat.total_clients == 13
    assert threat.num_malicious == 2 and all(c < 10 for c in threat.malicious_clients)
    assert threat.malicious == {*threat.malicious_clients, 10, 11, 12}
    assert [c for c in range(14) if threat.is_fake(c)] == [10, 11, 12]
    # Expected attackers per round: (0.2 * 10 + 3) / 13 of the 13 sampled = 5.
    assert threat.malicious_per_round == 5 == threat.num_malicious_told
    summary = json.loads(json.dumps(threat.summary()))
    assert summary["fake_clients"] == 3 and summary["fake_client_ids"] == [10, 11, 12]
    assert summary["malicious_clients"] == list(threat.malicious_clients)
    assert "never train" in summary["fake_reply"]


def test_fake_clients_leave_the_compromised_draw_and_counts_as_they_were() -> None:
    with_fakes, without = _threat(), _threat(fake_clients=0, clients_per_round=10)
    assert with_fakes.malicious_clients == without.malicious_clients  # same seeded draw
    assert without.fake_client_ids == () and without.malicious == set(without.malicious_clients)
    assert without.malicious_per_round == count_for(0.2, 10) == 2


@pytest.mark.parametrize("bad", [-1, True, 1.5])
def test_fake_clients_is_a_count(bad: object) -> None:
    with pytest.raises(ValueError, match=r"fake_clients=.*: must be an integer >= 0"):
        _threat(fake_clients=bad)


def test_sampling_draws_fake_ids_like_real_ones_from_the_seed() -> None:
    draws = [sample_clients(0, r, 13, 5) for r in range(1, 401)]
    assert draws == [sample_clients(0, r, 13, 5) for r in range(1, 401)]  # seeded
    assert draws != [sample_clients(1, r, 13, 5) for r in range(1, 401)]
    counts = Counter(c for draw in draws for c in draw)
    assert sorted(counts) == list(range(13))
    # every id is drawn with probability 5/13: 400 * 5/13 = 153.8, sd about 9.7
    assert all(abs(counts[c] - 400 * 5 / 13) < 40 for c in range(13))


# The adversary ---------------------------------------------------------------------------
def _recorder():
    seen: list[dict] = []

    def craft(benign, num_malicious, num_clients, *, own=None, global_model=None):
        seen.append({"benign": benign, "own": own, "global_model": global_model})
        if benign.shape[0] == 0:
            raise ValueError("benign has 0 rows; this attack needs >= 1")
        return torch.full((num_malicious, benign.shape[1]), -1.0)

    return seen, craft


def _view(compromised: tuple[int, ...], knowledge: str) -> ThreatModel:
    # Clients 0-5 real (compromised: ``compromised``), 6 and 7 fake.
    return dataclasses.replace(
        ThreatModel.clean(6), malicious_clients=compromised, knowledge=knowledge, fake_clients=2
    )


@pytest.mark.parametrize("knowledge", ["partial", "full"])
def test_fake_rows_add_nothing_to_what_the_adversary_knows(knowledge: str) -> None:
    seen, craft = _recorder()
    updates = torch.arange(15.0).reshape(5, 3)  # clients 1, 2, 4, 6, 7
    updates[3:] = 0  # fake clients send the global model back: zero updates
    result = Adversary(craft, _view((2,), knowledge), seed=0)(updates, [1, 2, 4, 6, 7], 1)
    assert (result[[1, 3, 4]] == -1).all() and torch.equal(result[[0, 2]], updates[[0, 2]])
    (call,) = seen
    assert torch.equal(call["own"], updates[[1, 3, 4]])
    expected = updates[[0, 2]] if knowledge == "full" else updates[[1]]
    assert torch.equal(call["benign"], expected)


def test_partial_knowledge_with_only_fake_attackers_sampled_sends_the_rows_as_received() -> None:
    seen, craft = _recorder()
    updates = torch.ones(3, 2)
    updates[2] = 0
    adversary = Adversary(craft, _view((2,), "partial"), seed=0)
    with pytest.raises(NoKnowledge, match="the attackers sampled are fake clients"):
        adversary(updates, [0, 1, 6], server_round=1)
    assert seen[0]["benign"].shape == (0, 2)
    # An attack that needs no benign update (MPAF) runs from the global model alone.
    from clients.attacks import mpaf

    inputs = {"base_model": lambda server_round, global_model: torch.tensor([1.0, 3.0])}
    adversary = Adversary(mpaf, _view((), "partial"), seed=0, inputs=inputs)
    result = adversary(updates, [0, 1, 6], 1, global_model=torch.tensor([1.0, 1.0]))
    # scale 1e6 * ([1, 3] - [1, 1]) = [0, 2e6] for the fake client 6
    assert torch.equal(result[2], torch.tensor([0.0, 2e6])) and torch.equal(result[:2], updates[:2])


# The ClientApp ---------------------------------------------------------------------------
# the ClientApp tests' spec, with clients 6 and 7 fake
SPEC = dataclasses.replace(CLIENT_APP_SPEC, threat=_view((), "partial"))


def _round(clients: list[int]) -> list[tuple[Message, Context]]:
    set_task_identity(1)
    model = MLP(input_shape=load_federation(SPEC.federation).data.input_shape, num_classes=10)
    config = protocol.train_config_record(TrainConfig(lr=0.1, batch_size=16, local_epochs=1))
    content = protocol.train_content(ArrayRecord(model.state_dict()), config, server_round=2)
    return [
        (
            Message(content, 10 + c, MessageType.TRAIN),
            Context(
                run_id=1,
                node_id=10 + c,
                node_config=protocol.node_config(c, 8),
                state=RecordDict(),
                run_config={},
            ),
        )
        for c in clients
    ]


def test_a_fake_client_never_trains_and_sends_the_global_model_back(monkeypatch) -> None:
    app = make_client_app(SPEC)
    batch = _round([0, 1, 6, 7])
    assert sorted(app.train_many(batch, force=True)) == [0, 1]  # the real ones only

    def no_training(*args, **kwargs):
        raise AssertionError("a fake client trained")

    monkeypatch.setattr(client_app, "train", no_training)
    monkeypatch.setattr(client_app, "train_cohort", no_training)
    assert app.train_many(batch[2:], force=True) == {}
    federation = load_federation(SPEC.federation)
    sizes = [len(p) for p in federation.partitions]
    assert nominal_examples(federation) == math.floor(sum(sizes) / 6 + 0.5)
    for message, context in batch[2:]:
        reply = app(message, context)
        assert not reply.has_error()
        sent = protocol.train_payload(message)[0].to_torch_state_dict()
        back = reply.content[protocol.ARRAYS].to_torch_state_dict()
        assert all(torch.equal(back[k], v) for k, v in sent.items())
        metrics = reply.content[protocol.METRICS]
        assert metrics[protocol.NUM_EXAMPLES] == nominal_examples(federation) >= 1
        assert math.isnan(metrics[protocol.TRAIN_LOSS])


# End to end ------------------------------------------------------------------------------
RUN = ("num_clients=10", "fake_clients=3", "clients_per_round=6", "malicious_fraction=0.2",
       "num_rounds=4", "progress=false", "checkpoint_every=0")  # fmt: skip


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def mpaf_run(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("mpaf")
    summary = simulate(compose_config(*RUN, "attack=mpaf", "strategy=fltrust"), out)
    return summary, _rows(out / "rounds.csv"), _rows(out / "clients.csv")


def test_summary_and_tables_record_fake_clients_as_malicious(mpaf_run) -> None:
    summary, rounds, clients = mpaf_run
    threat = summary["threat_model"]
    assert summary["fake_clients"] == 3 and summary["num_clients"] == 10
    assert threat["fake_clients"] == 3 and threat["fake_client_ids"] == [10, 11, 12]
    malicious = {*threat["malicious_clients"], 10, 11, 12}
    assert len(malicious) == 5
    sampled_fake = False
    for r in range(1, 5):
        rows = [row for row in clients if int(row["round"]) == r]
        sampled = sample_clients(0, r, 13, 6)  # from all 13 ids, seeded
        assert [int(row["client"]) for row in rows] == sampled
        assert all(int(row["malicious"]) == (int(row["client"]) in malicious) for row in rows)
        fake = [row for row in rows if int(row["client"]) >= 10]
        sampled_fake |= bool(fake)
        assert all(row["train_loss"] == "" for row in fake)  # it did not train
        round_row = rounds[r]
        assert int(round_row["malicious_sampled"]) == len(set(sampled) & malicious)
        # Training loss: example-weighted over the clients that trained.
        real = [row for row in rows if int(row["client"]) < 10]
        weighted = sum(int(x["num_examples"]) * float(x["train_loss"]) for x in real)
        expected = weighted / sum(int(x["num_examples"]) for x in real)
        assert float(round_row["train_loss"]) == pytest.approx(expected, rel=1e-12)
        # Detection counts fake clients: FLTrust's zero trust against the attackers present.
        flagged = {int(x["client"]) for x in rows if float(x["weight"]) <= FLAGGED_WEIGHT}
        present = set(sampled) & malicious
        if present:
            recall = len(flagged & present) / len(present)
            assert float(round_row["detection_recall"]) == pytest.approx(recall)
    assert sampled_fake, "no fake client sampled: the test checks nothing about them"


def test_mpaf_rows_point_at_the_base_model_and_fltrust_drops_them(mpaf_run) -> None:
    summary, _, clients = mpaf_run
    malicious = {*summary["threat_model"]["malicious_clients"], 10, 11, 12}
    attackers = [row for row in clients if int(row["client"]) in malicious]
    assert attackers and summary["rounds_attack_failed"] == 0
    # lambda = 1e6 times ||w' - w_t||, several units: norms of millions; weight 0.
    assert all(float(row["update_norm"]) > 1e5 for row in attackers)
    assert all(float(row["weight"]) <= FLAGGED_WEIGHT for row in attackers)
    assert summary["final_accuracy"] > 0.8


def test_alie_runs_with_fake_clients_and_says_what_they_send(tmp_path: Path) -> None:
    base = ("num_clients=10", "fake_clients=3", "num_rounds=2", "progress=false",
            "checkpoint_every=0", "attack=alie")  # fmt: skip
    # Partial knowledge (ALIE's default) and no compromised real client: nothing to
    # craft from; the fake clients send their zero updates, recorded as attack failed.
    summary = simulate(compose_config(*base), tmp_path / "partial")
    rounds = _rows(tmp_path / "partial/rounds.csv")
    clients = _rows(tmp_path / "partial/clients.csv")
    fake = [row for row in clients if int(row["client"]) >= 10]
    assert fake and all(float(row["update_norm"]) == 0.0 for row in fake)
    assert summary["rounds_attack_failed"] == 2
    assert all("the attackers sampled are fake clients" in r["note"] for r in rounds[1:])
    # Full knowledge: they send mu - z sigma of the round's benign updates.
    summary = simulate(compose_config(*base, "attack.knowledge=full"), tmp_path / "full")
    fake = [row for row in _rows(tmp_path / "full/clients.csv") if int(row["client"]) >= 10]
    assert summary["rounds_attack_failed"] == 0
    assert fake and all(float(row["update_norm"]) > 0 for row in fake)
    by_round = Counter(row["round"] for row in fake)
    for r in by_round:  # identical rows within a round
        assert len({row["update_norm"] for row in fake if row["round"] == r}) == 1


# Bad settings ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("fake_clients=-1",), "fake_clients=-1: must be an integer >= 0"),
        (("fake_clients=2",), "fake_clients=2: fake clients hold no data; they need an attack"),
        (
            ("fake_clients=2", "attack=backdoor"),
            "fake_clients=2: fake clients hold no data; they need a colluding attack, not "
            "attack=backdoor",
        ),
        (
            ("fake_clients=2", "attack=mpaf", "clients_per_round=13"),
            r"clients_per_round=13: must be <= num_clients \+ fake_clients \(12\)",
        ),
        (
            ("fake_clients=1048576", "attack=mpaf"),
            r"fake_clients=1048576: num_clients \+ fake_clients must be <= 1048576",
        ),
        (
            # (0 + 30) / 40 of 2 sampled = 1.5, rounds to 2: nobody honest is left
            ("fake_clients=30", "attack=mpaf", "clients_per_round=2"),
            r"fake_clients=30: with the compromised clients, the expected attackers per "
            r"round \(2\) reach clients_per_round \(2\)",
        ),
        (("fake_clients=1", "attack=mpaf", "attack.scale=0"), "scale must be > 0, got 0"),
        (("attack=mpaf", "+attack.base_model=1"), "attack.base_model=1: no such key"),
    ],
)
def test_bad_fake_client_settings_are_one_line_errors(overrides, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        validate(compose_config(*overrides))
    assert "\n" not in str(error.value)


def test_good_fake_client_settings_pass() -> None:
    for overrides in (
        ("fake_clients=3", "attack=alie"),  # partial knowledge: zero updates, recorded
        ("fake_clients=3", "attack=alie", "attack.knowledge=full", "clients_per_round=13"),
        ("fake_clients=1", "attack=mpaf", "malicious_fraction=0.2", "strategy=krum"),
        ("fake_clients=2", "attack=sign_flip"),
    ):
        validate(compose_config(*overrides))


# Engines ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_fake_clients_give_the_same_numbers_on_ray_and_inline(tmp_path: Path) -> None:
    from tests.simulator.test_engines import _assert_close, _metrics, _run

    overrides = ("num_rounds=3", "num_clients=8", "fake_clients=2", "clients_per_round=7",
                 "malicious_fraction=0.2", "attack=mpaf", "strategy=median",
                 "progress=false")  # fmt: skip
    inline, inline_summary = _run(tmp_path, "inline", *overrides, "engine.cohort=never")
    ray, ray_summary = _run(tmp_path, "ray", *overrides, "engine=ray")
    assert ray_summary["engine"] == "ray" and inline_summary["engine"] == "inline"
    assert ray_summary["threat_model"] == inline_summary["threat_model"]
    _assert_close(_metrics(ray), _metrics(inline))
    assert len(ray) == 4
    assert [r["malicious_sampled"] for r in ray] == [r["malicious_sampled"] for r in inline]
    columns = ("round", "client", "malicious", "num_examples")
    tables = [
        [tuple(row[c] for c in columns) for row in _rows(tmp_path / name / "clients.csv")]
        for name in ("ray", "inline")
    ]
    assert tables[0] == tables[1]
    assert any(int(row[1]) >= 8 for row in tables[0]), "no fake client sampled: no test"
