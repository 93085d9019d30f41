"""FoolsGold: hand-computed weights, settings, state across rounds, sybils on digits, resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from flwr.app import Context, Message, MessageType
from flwr.clientapp.typing import ClientAppCallable

from simulator.components import threat_model
from simulator.config import ConfigError
from simulator.main import simulate
from simulator.preflight import check_point
from simulator.protocol import PARTITION_ID
from strategies.foolsgold import FoolsGold, cosine_matrix, foolsgold, foolsgold_weights
from strategies.state import DefenceState
from tests.conftest import compose_config, rows_of
from tests.simulator.test_resume import interrupted

F64 = torch.float64


def rows_with_cosines(gram: list[list[float]], norms: list[float]) -> torch.Tensor:
    """Rows whose pairwise cosines are ``gram`` (a correlation matrix) and norms ``norms``:
    the rows of its Cholesky factor L (L L^T = gram, so each row has norm 1), scaled."""
    factor = torch.linalg.cholesky(torch.tensor(gram, dtype=F64))
    return factor * torch.tensor(norms, dtype=F64)[:, None]


# ------------------------------------------------------------------------- known values


def test_two_identical_sybils_get_nothing_and_the_odd_one_everything() -> None:
    x = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]], dtype=F64)
    # cs_12 = 1, cs_13 = cs_23 = 0; v = (1, 1, 0); pardoning row 3: cs_3j * 0/1 = 0.
    # alpha = 1 - max_j cs_ij = (0, 0, 1); / max = (0, 0, 1); 1 -> 0.99;
    # logit: ln(0) = -inf -> 0, ln(0.99/0.01) + 0.5 = 5.09 -> 1.
    assert foolsgold_weights(x).tolist() == [0.0, 0.0, 1.0]
    result = foolsgold(x)
    assert result.weights.tolist() == [0.0, 0.0, 1.0]
    assert result.update.tolist() == [0.0, 1.0]


def test_pardoning_and_logit_by_hand() -> None:
    # cos 12 = 0.6, cos 13 = 0.2, cos 23 = 0.1: v = (0.6, 0.6, 0.2).
    x = rows_with_cosines([[1, 0.6, 0.2], [0.6, 1, 0.1], [0.2, 0.1, 1]], [1.0, 3.0, 0.5])
    # Pardoning row 3 (v_3 = 0.2 < v_1 = v_2 = 0.6): cs_31 = 0.2 * 0.2/0.6 = 1/15,
    # cs_32 = 0.1 * 0.2/0.6 = 1/30. Rows 1, 2: nobody has a larger v.
    # alpha = (1 - 0.6, 1 - 0.6, 1 - 1/15) = (0.4, 0.4, 14/15); / max: (3/7, 3/7, 1);
    # 1 -> 0.99 -> logit >= 1 -> 1; 3/7 -> ln((3/7)/(4/7)) + 0.5 = ln(0.75) + 0.5.
    low = math.log(0.75) + 0.5  # 0.2123...
    expected = torch.tensor([low, low, 1.0], dtype=F64)
    torch.testing.assert_close(foolsgold_weights(x), expected, rtol=1e-12, atol=1e-12)
    result = foolsgold(x)
    torch.testing.assert_close(result.weights, expected / expected.sum())
    torch.testing.assert_close(result.update, (expected / expected.sum()) @ x)
    # kappa scales the logit before clipping: 2 * 0.2123 = 0.4246; the 1 stays 1.
    doubled = torch.tensor([2 * low, 2 * low, 1.0], dtype=F64)
    torch.testing.assert_close(foolsgold_weights(x, kappa=2.0), doubled)


def test_anti_aligned_clients_are_not_punished_by_pardoning() -> None:
    # Sybils 1, 2 (cos 0.9); client 3 unlike everyone (cos -0.5, -0.4, -0.2); client 4
    # mildly like 1 and 2 (cos 0.1). v = max(0, max_{j != i} cs_ij) = (0.9, 0.9, 0, 0.1).
    gram = [[1, 0.9, -0.5, 0.1], [0.9, 1, -0.4, 0.1], [-0.5, -0.4, 1, -0.2], [0.1, 0.1, -0.2, 1]]
    x = rows_with_cosines(gram, [1.0, 2.0, 1.0, 0.5])
    # Row 3: every other v is larger, factor 0/v_j = 0: alpha_3 = 1 - 0 = 1.
    # Row 4: pardoned towards 1, 2: 0.1 * 0.1/0.9 = 1/90; alpha_4 = 89/90.
    # alpha_1 = alpha_2 = 1 - 0.9 = 0.1. / max: (0.1, 0.1, 1, 89/90); logit:
    # ln(0.1/0.9) + 0.5 < 0 -> 0; 1 -> 0.99 -> 1; ln(89) + 0.5 > 1 -> 1.
    # (The literal v_3 = -0.2 would give factors -0.2/0.9 and -2: cs_34 = -0.2 * -2 = 0.4,
    # alpha_3 = 0.6, and after the logit 0.93 instead of 1.)
    torch.testing.assert_close(
        foolsgold_weights(x), torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=F64), rtol=0, atol=1e-12
    )


def test_identical_inputs_do_not_pass_through() -> None:
    """Documented: n identical rows are n perfect sybils; every alpha is 0, zero update."""
    x = torch.tensor([[0.3, -1.2, 2.0]] * 4)
    result = foolsgold(x)
    assert result.update.tolist() == [0.0, 0.0, 0.0]
    assert result.weights.tolist() == [0.0] * 4


def test_single_client_and_orthogonal_clients_get_the_mean() -> None:
    one = torch.tensor([[1.0, -2.0]])
    assert foolsgold(one).update.tolist() == [1.0, -2.0]
    # orthogonal: every cs is 0, alpha = 1 -> 0.99 -> 1 for all: the plain mean
    x = torch.tensor([[2.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 6.0]])
    result = foolsgold(x)
    torch.testing.assert_close(result.update, torch.tensor([2 / 3, 4 / 3, 2.0]))
    torch.testing.assert_close(result.weights, torch.full((3,), 1 / 3))


def test_zero_rows_have_no_direction_and_do_not_crash() -> None:
    zeros = torch.zeros(5, 2)
    assert torch.equal(cosine_matrix(zeros), torch.zeros(5, 5, dtype=F64))
    result = foolsgold(zeros)
    assert torch.isfinite(result.weights).all() and result.update.tolist() == [0.0, 0.0]
    # a zero row among others: similarity 0 to all; it keeps alpha 1
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    assert foolsgold_weights(x).tolist() == [1.0, 0.0, 0.0]


def test_inputs_are_not_mutated() -> None:
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    h = torch.randn(6, 5, generator=torch.Generator().manual_seed(1))
    x0, h0 = x.clone(), h.clone()
    foolsgold(x, h)
    state = DefenceState()
    FoolsGold()(x, client_ids=list(range(6)), state=state.stage("rule"))
    assert torch.equal(x, x0) and torch.equal(h, h0)


def test_permuting_clients_permutes_weights() -> None:
    x = torch.randn(7, 4, generator=torch.Generator().manual_seed(2), dtype=F64)
    order = torch.tensor([3, 0, 6, 1, 5, 2, 4])
    torch.testing.assert_close(foolsgold(x[order]).weights, foolsgold(x).weights[order])


# ------------------------------------------------------------------------- settings


@pytest.mark.parametrize("kappa", [0, -1.0, math.nan, math.inf, True, "1"])
def test_bad_kappa_is_refused(kappa: object) -> None:
    with pytest.raises(ValueError, match=r"foolsgold needs finite kappa > 0, got kappa=") as info:
        FoolsGold(kappa=kappa)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="kappa"):
        foolsgold(torch.ones(2, 2), kappa=kappa)  # type: ignore[arg-type]


def test_histories_of_the_wrong_shape_are_refused() -> None:
    with pytest.raises(ValueError, match=r"histories of shape \(2, 3\), got \(2, 2\)"):
        foolsgold(torch.ones(2, 3), torch.ones(2, 2))


def test_client_ids_must_match_therows_of() -> None:
    with pytest.raises(ValueError, match="one client id per update"):
        FoolsGold()(torch.ones(3, 2), client_ids=[0, 1], state=DefenceState().stage("rule"))


def test_config_entry_builds_and_a_bad_kappa_is_one_line() -> None:
    check_point(["strategy=foolsgold"])
    with pytest.raises(ConfigError, match=r"kappa=-1") as info:
        check_point(["strategy=foolsgold", "strategy.kappa=-1"])
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------- state


def test_histories_accumulate_across_committed_rounds_only() -> None:
    state = DefenceState()
    rule = FoolsGold()
    first = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    second = torch.tensor([[1.0, 0.0], [0.0, 1.0]])

    # Round 1, discarded (the round kept the global model): nothing is remembered.
    rule(first, client_ids=[3, 8], state=state.stage("rule"))
    state.discard()
    assert list(state.stage("rule").clients()) == []

    # Round 1 committed: each history is the client's update.
    result = rule(first, client_ids=[3, 8], state=state.stage("rule"))
    state.commit()
    assert result.weights.tolist() == [0.5, 0.5]  # orthogonal: the mean
    assert state.stage("rule").get_client(3, "history").tolist() == [0.0, 1.0]

    # Round 2: alone, the rows are orthogonal (the mean); but H_3 = H_8 = (1, 1): identical
    # histories, cs = 1, alpha = 0 for both: the zero update.
    assert foolsgold(second).weights.tolist() == [0.5, 0.5]
    result = rule(second, client_ids=[3, 8], state=state.stage("rule"))
    state.commit()
    assert result.weights.tolist() == [0.0, 0.0]
    assert result.update.tolist() == [0.0, 0.0]
    assert state.stage("rule").get_client(8, "history").tolist() == [1.0, 1.0]


def test_a_client_missing_a_round_keeps_its_history_and_a_new_one_starts_fresh() -> None:
    state = DefenceState()
    rule = FoolsGold()
    rule(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), client_ids=[0, 1], state=state.stage("rule"))
    state.commit()
    x = torch.tensor([[1.0, 1.0], [5.0, -1.0]])
    result = rule(x, client_ids=[1, 7], state=state.stage("rule"))
    state.commit()
    stage = state.stage("rule")
    assert stage.get_client(0, "history").tolist() == [1.0, 0.0]  # absent: unchanged
    assert stage.get_client(1, "history").tolist() == [1.0, 3.0]  # (0, 2) + (1, 1)
    assert stage.get_client(7, "history").tolist() == [5.0, -1.0]  # new: its update
    expected = foolsgold(x, torch.tensor([[1.0, 3.0], [5.0, -1.0]]))
    assert torch.equal(result.weights, expected.weights)


def test_state_survives_a_checkpoint_round_trip(tmp_path: Path) -> None:
    state = DefenceState()
    rule = FoolsGold()
    rule(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), client_ids=[0, 1], state=state.stage("rule"))
    state.commit()
    torch.save(state.state_dict(), tmp_path / "state.pt")
    loaded = DefenceState()
    loaded.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    x = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    a = rule(x, client_ids=[0, 1], state=state.stage("rule"))
    b = rule(x, client_ids=[0, 1], state=loaded.stage("rule"))
    assert torch.equal(a.update, b.update) and torch.equal(a.weights, b.weights)


# ------------------------------------------------------------------------- end to end

# A targeted label flip (1 -> 7) on non-IID data (Fang et al.'s bias partition, q = 0.5) by
# 3 sybils of 10: the paper's setting, where sybils are copies of one poisoned client.
SYBIL_RUN = (
    "num_clients=10", "num_rounds=5", "progress=false", "partition=bias", "attack=label_flip",
    "attack.source=1", "attack.target=7", "malicious_fraction=0.3",
)  # fmt: skip


def sybil_mod(malicious: set[int]):
    """Every malicious client trains as the first one (its data, its seed): sybils sharing
    one poisoned data set, as in the paper. (Attackers that each flip their own data are
    no more alike than honest clients: FoolsGold does not single them out.)"""
    first = min(malicious)

    def mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
        client = int(context.node_config[PARTITION_ID])
        if message.metadata.message_type != MessageType.TRAIN or client not in malicious:
            return call_next(message, context)
        context.node_config[PARTITION_ID] = first
        try:
            return call_next(message, context)
        finally:
            context.node_config[PARTITION_ID] = client

    return mod


def _sybil_run(tmp_path: Path, strategy: str) -> tuple[list[dict], list[dict], set[int]]:
    cfg = compose_config(*SYBIL_RUN, f"strategy={strategy}")
    malicious = set(threat_model(cfg).malicious_clients)
    simulate(cfg, tmp_path, client_mods=[sybil_mod(malicious)])
    return rows_of(tmp_path / "rounds.csv")[1:], rows_of(tmp_path / "clients.csv"), malicious


def test_sybils_get_zero_weight_where_fedavg_gives_them_their_share(tmp_path: Path) -> None:
    rounds, clients, malicious = _sybil_run(tmp_path / "foolsgold", "foolsgold")
    assert len(malicious) == 3
    sybil = [float(r["weight"]) for r in clients if int(r["client"]) in malicious]
    honest = [float(r["weight"]) for r in clients if int(r["client"]) not in malicious]
    assert max(sybil) < 1e-6, sybil
    assert min(honest) > 0.1, honest  # 1/7 each (the honest clients' histories differ)
    asr = [float(r["attack_success_rate"]) for r in rounds]

    fed_rounds, fed_clients, _ = _sybil_run(tmp_path / "fedavg", "fedavg")
    fed_sybil = [float(r["weight"]) for r in fed_clients if int(r["client"]) in malicious]
    assert min(fed_sybil) > 0.09  # about 1/10 (example-weighted)
    fed_asr = [float(r["attack_success_rate"]) for r in fed_rounds]
    # measured: FoolsGold 0.0 every round; FedAvg 0.93 after round 1, then falling
    assert max(asr) < 0.05 and max(fed_asr) > 0.5, (asr, fed_asr)


# ------------------------------------------------------------------------- resume


def test_interrupted_run_resumes_with_the_histories(tmp_path: Path) -> None:
    cfg = compose_config(
        "num_clients=10", "clients_per_round=8", "num_rounds=5", "progress=false",
        "engine.cohort=never", "strategy=foolsgold", "attack=alie", "malicious_fraction=0.2",
    )  # fmt: skip
    saved, resume = interrupted(cfg, tmp_path, at=4)
    histories = saved["strategy"]["defence"]["rule"]["clients"]
    assert histories and all(e["history"].ndim == 1 for e in histories.values())
    resume()
