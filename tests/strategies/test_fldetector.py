"""FLDetector: the L-BFGS Hessian-vector product, the gap statistic, the state across rounds,
and the detector end to end on digits against a boosted backdoor."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from simulator.main import simulate
from strategies.fldetector import (
    FLDetector,
    gap_statistic,
    lbfgs_hvp,
    upper_cluster,
    within_cluster_sums,
)
from strategies.state import DefenceState
from tests.conftest import compose_config, rows_of
from tests.simulator.test_resume import interrupted

F64 = torch.float64


# L-BFGS ---------------------------------------------------------------------------------
def test_one_pair_by_hand() -> None:
    # s = (1, 0), y = (2, 1): sigma = y.s / s.s = 2, B0 = 2I;
    # B = B0 - B0 s s^T B0 / s^T B0 s + y y^T / y^T s
    #   = [[2, 0], [0, 2]] - [[2, 0], [0, 0]] + [[4, 2], [2, 1]] / 2 = [[2, 1], [1, 2.5]]
    s, y = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 1.0]])
    torch.testing.assert_close(
        lbfgs_hvp(s, y, torch.tensor([0.0, 1.0])), torch.tensor([1.0, 2.5], dtype=F64)
    )
    # the secant equation B s = y
    torch.testing.assert_close(lbfgs_hvp(s, y, s[0]), y[0].to(F64))


def _conjugate_directions(a: torch.Tensor) -> torch.Tensor:
    """Gram-Schmidt of e_1..e_d in the inner product <u, v> = u^T A v (rows)."""
    directions: list[torch.Tensor] = []
    for e in torch.eye(a.shape[0], dtype=F64):
        p = e.clone()
        for q in directions:
            p = p - (q @ a @ e) / (q @ a @ q) * q
        directions.append(p)
    return torch.stack(directions)


def test_d_conjugate_pairs_of_a_quadratic_recover_its_hessian() -> None:
    # f(w) = w^T A w / 2 has gradient A w, so a step s changes it by y = A s
    a = torch.tensor([[4.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 2.0]], dtype=F64)
    s = _conjugate_directions(a)
    assert abs(float(s[0] @ a @ s[2])) < 1e-12  # A-conjugate, and they span R^3
    v = torch.tensor([0.3, -1.0, 2.0], dtype=F64)
    # A v = (4*0.3 - 1, 0.3 - 3 + 2, -1 + 4) = (0.2, -0.7, 3)
    torch.testing.assert_close(lbfgs_hvp(s, s @ a, v), torch.tensor([0.2, -0.7, 3.0], dtype=F64))
    for column in torch.eye(3, dtype=F64):
        torch.testing.assert_close(lbfgs_hvp(s, s @ a, column), a @ column)


def _bfgs(s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The BFGS matrix by its recursive definition, from sigma I (the textbook form)."""
    sigma = (y[-1] @ s[-1]) / (s[-1] @ s[-1])
    b = sigma * torch.eye(s.shape[1], dtype=F64)
    for sk, yk in zip(s, y, strict=True):
        bs = b @ sk
        b = b - torch.outer(bs, bs) / (sk @ bs) + torch.outer(yk, yk) / (yk @ sk)
    return b


def test_compact_form_matches_the_recursive_bfgs_and_flips_with_the_sign_of_y() -> None:
    g = torch.Generator().manual_seed(0)
    root = torch.randn(6, 6, generator=g, dtype=F64)
    a = root @ root.T + torch.eye(6, dtype=F64)  # positive definite: y.s > 0
    s = torch.randn(4, 6, generator=g, dtype=F64)
    y = s @ a
    v = torch.randn(6, generator=g, dtype=F64)
    torch.testing.assert_close(lbfgs_hvp(s, y, v), _bfgs(s, y) @ v)
    # update space: y = -lr A s; the approximation is minus the gradient-space one
    torch.testing.assert_close(lbfgs_hvp(s, -y, v), -lbfgs_hvp(s, y, v))


def test_degenerate_pairs_give_finite_products() -> None:
    v = torch.tensor([1.0, 2.0])
    assert torch.equal(
        lbfgs_hvp(torch.zeros(2, 2), torch.zeros(2, 2), v), torch.zeros(2, dtype=F64)
    )
    repeated = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert torch.isfinite(lbfgs_hvp(repeated, 2 * repeated, v)).all()
    with pytest.raises(ValueError, match="lbfgs_hvp"):
        lbfgs_hvp(torch.zeros(2, 3), torch.zeros(2, 2), v)


# Gap statistic and 2-means --------------------------------------------------------------
def test_exact_one_dimensional_kmeans_by_hand() -> None:
    # {0, 1, 10, 11}: one cluster, mean 5.5: 5.5^2 + 4.5^2 + 4.5^2 + 5.5^2 = 101;
    # two, {0, 1} and {10, 11}: 4 * 0.5^2 = 1; three, {0, 1}, {10}, {11}: 2 * 0.5^2 = 0.5
    values = torch.tensor([[11.0, 0.0, 10.0, 1.0]], dtype=F64)
    torch.testing.assert_close(
        within_cluster_sums(values, 3), torch.tensor([[101.0, 1.0, 0.5]], dtype=F64)
    )


def test_gap_statistic_one_cluster_against_two_separated_groups() -> None:
    g = torch.Generator().manual_seed(1)
    honest = 0.1 + 0.005 * torch.randn(8, generator=g, dtype=F64)
    # evenly spread values: no structure beyond the uniform reference
    assert (
        gap_statistic(torch.linspace(0.09, 0.11, 10), generator=torch.Generator().manual_seed(0))
        == 1
    )
    assert gap_statistic(honest, generator=torch.Generator().manual_seed(0)) == 1
    two = torch.cat([honest, torch.tensor([0.3, 0.31], dtype=F64)])
    assert gap_statistic(two, generator=torch.Generator().manual_seed(0)) >= 2
    assert upper_cluster(two).tolist() == [False] * 8 + [True, True]
    # the references come from the generator: the same seed, the same answer
    answers = {gap_statistic(two, generator=torch.Generator().manual_seed(5)) for _ in range(3)}
    assert len(answers) == 1


def test_gap_statistic_without_enough_values_or_spread_says_one() -> None:
    assert gap_statistic(torch.tensor([0.1, 0.9])) == 1  # K = min(10, n - 1) = 1
    assert gap_statistic(torch.full((6,), 0.2)) == 1
    assert not upper_cluster(torch.full((6,), 0.2)).any()
    # two distinct values: W_2 = 0, floored, so the gap finds the two groups
    assert gap_statistic(torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0])) >= 2
    assert upper_cluster(torch.tensor([1.0, 0.0, 1.0, 0.0])).tolist() == [True, False, True, False]


# The detector across rounds -------------------------------------------------------------
ATTACKERS = (3, 7)
D = 12


def _stream(
    detector: FLDetector,
    rounds: int,
    *,
    absent: dict[int, int] | None = None,
    honest_from: int | None = None,
) -> tuple[list[set[int]], list[dict[int, list[float]]]]:
    """Ten clients; honest updates follow Δ_i^t = Δ_i^{t-1} + A (w_t - w_{t-1}) + noise,
    A negative definite (a quadratic in update space: the updates shrink like gradient
    steps); clients 3 and 7 send fresh random vectors (until ``honest_from``). The server
    moves by the mean of the honest updates. ``absent``: round -> a client not sampled.
    Returns each round's flagged ids and each round's committed scores."""
    g = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=F64))
    a = -(basis * torch.linspace(0.1, 0.5, D, dtype=F64)) @ basis.T
    honest = torch.randn(10, D, generator=g, dtype=F64)  # each client's first update
    model = torch.zeros(D, dtype=F64)
    previous_model = model.clone()
    state = DefenceState()
    flagged, scores = [], []
    for t in range(1, rounds + 1):
        if t > 1:
            noise = 1e-3 * torch.randn(10, D, generator=g, dtype=F64)
            honest = honest + (model - previous_model) @ a.T + noise
        sent = honest.clone()
        if honest_from is None or t < honest_from:
            sent[list(ATTACKERS)] = 2 * torch.randn(len(ATTACKERS), D, generator=g, dtype=F64)
        ids = [c for c in range(10) if (absent or {}).get(t) != c]
        flags = detector(
            sent[ids].float(),
            client_ids=ids,
            global_model=model.float(),
            state=state.stage("detect.0"),
            server_round=t,
            generator=torch.Generator().manual_seed(t),
        )
        state.commit()
        flagged.append({c for c, f in zip(ids, flags.tolist(), strict=True) if f})
        view = state.stage("detect.0")
        scores.append({c: list(view.get_client(c, "scores", [])) for c in range(10)})
        benign = [c for c in range(10) if c not in ATTACKERS]
        previous_model, model = model, model + honest[benign].mean(dim=0)
    return flagged, scores


def test_attackers_are_flagged_once_the_window_fills_and_stay_removed() -> None:
    # window 3: pairs from round 3 on, three of them in round 5, the first detection
    flagged, _ = _stream(FLDetector(window=3), 9, honest_from=7)
    assert flagged[:4] == [set()] * 4
    assert flagged[4] == set(ATTACKERS)
    # removed: still flagged after they turn honest in round 7
    assert flagged[5:] == [set(ATTACKERS)] * 4


def test_detection_ends_at_the_first_detection_with_removal() -> None:
    # The honest prediction errors here are noise of one size: after the attackers leave,
    # a gap statistic run on the honest clients alone would split them (and with removal
    # take them out one false alarm after another). Algorithm 1 stops at its detection.
    flagged, _ = _stream(FLDetector(window=3), 20)
    assert flagged[4:] == [set(ATTACKERS)] * 16


def test_without_removal_a_client_is_flagged_only_while_detection_picks_it() -> None:
    flagged, scores = _stream(FLDetector(window=3, remove=False), 12, honest_from=7)
    assert flagged[4] == set(ATTACKERS)
    # honest from round 7: round 7 still compares with the random update of round 6;
    # from round 10 the window (rounds 8-10) holds consistent updates only
    assert not flagged[-1] & set(ATTACKERS)
    assert max(scores[-1][3]) < 0.2


def test_a_client_absent_last_round_gets_no_score() -> None:
    _, scores = _stream(FLDetector(window=3, remove=False), 8, absent={5: 4})
    # client 4 is not sampled in round 5: no score in round 5 (nothing to compare with),
    # none in round 6 either (no update from round 5), scored again from round 7
    assert scores[5][4] == scores[4][4] == scores[3][4]
    assert scores[6][4] != scores[5][4]
    assert len(scores[3][4]) == 2 and len(scores[6][4]) == 3
    assert scores[5][0] != scores[4][0]  # the others are scored every round


def test_same_generator_same_flags_and_inputs_untouched() -> None:
    first, _ = _stream(FLDetector(window=3), 7)
    again, _ = _stream(FLDetector(window=3), 7)
    assert first == again
    updates = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    model = torch.randn(4, generator=torch.Generator().manual_seed(1))
    saved = (updates.clone(), model.clone())
    detector, state = FLDetector(window=1), DefenceState()
    for t in (1, 2, 3, 4):
        detector(updates, client_ids=list(range(5)), global_model=model + t,
                 state=state.stage("detect.0"), server_round=t)  # fmt: skip
        state.commit()
    assert torch.equal(updates, saved[0]) and torch.equal(model, saved[1])


def test_zero_updates_never_crash_or_flag() -> None:
    detector, state = FLDetector(), DefenceState()
    for t in range(1, 15):
        flags = detector(torch.zeros(4, 2), client_ids=[0, 1, 2, 3], global_model=torch.zeros(2),
                         state=state.stage("detect.0"), server_round=t)  # fmt: skip
        state.commit()
        assert flags.dtype == torch.bool and flags.shape == (4,) and not flags.any()
    # zero distances: each scored client gets 1/m
    assert state.stage("detect.0").get_client(0, "scores") == [0.25] * 10


def test_state_holds_only_tensors_and_plain_values_on_the_cpu() -> None:
    _stream(FLDetector(window=3), 6)
    detector, state = FLDetector(window=2), DefenceState()
    for t in (1, 2, 3, 4):
        detector(torch.randn(3, 5), client_ids=[0, 1, 2], global_model=torch.randn(5),
                 state=state.stage("detect.0"), server_round=t)  # fmt: skip
        state.commit()
    saved = state.state_dict()
    restored = DefenceState()
    restored.load_state_dict(saved)  # checks every value
    shared = saved["detect.0"]["shared"]
    assert shared["s"].shape == (2, 5) and shared["s"].dtype == torch.float32
    assert shared["round"] == 4 and shared["model"].device.type == "cpu"


@pytest.mark.parametrize(
    "settings",
    [{"window": 0}, {"window": 1.5}, {"gap_samples": 0}, {"max_clusters": 1},
     {"start_round": 0}, {"remove": "yes"}, {"window": True}],
)  # fmt: skip
def test_bad_settings_are_refused_in_one_line(settings: dict) -> None:
    ((key, value),) = settings.items()
    with pytest.raises(ValueError, match=rf"{key}={value}") as info:
        FLDetector(**settings)
    assert "\n" not in str(info.value)


def test_bad_calls_are_refused() -> None:
    detector, state = FLDetector(), DefenceState().stage("detect.0")
    with pytest.raises(ValueError, match="global model"):
        detector(
            torch.zeros(2, 2), client_ids=[0, 1], global_model=None, state=state, server_round=1
        )
    with pytest.raises(ValueError, match="client ids"):
        detector(torch.zeros(2, 2), client_ids=[0, 0], global_model=torch.zeros(2), state=state,
                 server_round=1)  # fmt: skip


def test_check_run_refuses_a_window_longer_than_the_run() -> None:
    FLDetector(window=8).check_run(num_rounds=10, clients_per_round=10)  # detects in round 10
    with pytest.raises(ValueError, match=r"^window=9: .*num_rounds=10$"):
        FLDetector(window=9).check_run(num_rounds=10, clients_per_round=10)
    with pytest.raises(ValueError, match=r"^start_round=11: .*num_rounds=10"):
        FLDetector(window=3, start_round=11).check_run(num_rounds=10, clients_per_round=10)


def test_the_config_refuses_a_window_longer_than_the_run() -> None:
    from simulator.config import ConfigError, validate

    with pytest.raises(ConfigError, match=r"^detect\.window=20: .*num_rounds=10"):
        validate(compose_config("detect=fldetector", "detect.window=20", "num_rounds=10"))
    validate(compose_config("detect=fldetector", "detect.window=3", "num_rounds=10"))


# End to end on digits -------------------------------------------------------------------
# One attacker of ten (client 5 with seed 0), boosted 10x; all clients every round. Window
# 3 keeps the run at 10 rounds (a few seconds): FLDetector detects from round 5 on.
BACKDOOR = ("attack=backdoor", "attack.boost=10", "malicious_fraction=0.1", "num_rounds=10",
            "progress=false")  # fmt: skip
WITH_FLDETECTOR = ("detect=fldetector", "detect.window=3")


def test_fldetector_flags_the_backdoor_and_lowers_its_success_against_fedavg(
    tmp_path: Path,
) -> None:
    fedavg = simulate(compose_config(*BACKDOOR), tmp_path / "fedavg")
    summary = simulate(compose_config(*BACKDOOR, *WITH_FLDETECTOR), tmp_path / "fld")
    malicious = set(summary["threat_model"]["malicious_clients"])
    assert summary["detection"] == "fldetector" and len(malicious) == 1

    clients = rows_of(tmp_path / "fld" / "clients.csv")
    flagged = {(int(r["round"]), int(r["client"])) for r in clients if r["flagged"]}
    assert flagged == {(t, c) for t in range(5, 11) for c in malicious}
    rounds = rows_of(tmp_path / "fld" / "rounds.csv")
    assert [float(r["detection_recall"]) for r in rounds[5:]] == [1.0] * 6
    # the backdoor keeps its hold under FedAvg; removed, it fades
    assert fedavg["final_attack_success_rate"] > 0.9
    assert summary["final_attack_success_rate"] < fedavg["final_attack_success_rate"] - 0.2
    assert summary["final_accuracy"] > fedavg["final_accuracy"]


def test_a_resumed_run_ends_with_the_uninterrupted_numbers(tmp_path: Path) -> None:
    # killed in round 7, after detection removed the attacker: the window, the scores and
    # the removed client come back from the checkpoint
    cfg = compose_config(*BACKDOOR, *WITH_FLDETECTOR, "engine.cohort=never")
    saved, resume = interrupted(cfg, tmp_path, at=7)
    shared = saved["strategy"]["defence"]["detect.0"]["shared"]
    assert shared["removed"] == [5] and shared["s"].shape[0] == 3
    resume()
