"""SignGuard (Xu et al., ICDCS 2022): the norm and sign filters, the clipped mean, and
sign-flipping and scaling attackers on digits that FedAvg follows and SignGuard removes."""

from __future__ import annotations

import pytest
import torch

from strategies.pipeline import Defence
from strategies.signguard import SignGuard, SignGuardDetector

# 7 positive and 3 negative entries: sign statistics (0.7, 0, 0.3), norm sqrt(10)
H = torch.tensor([1.0, 1, 1, 1, 1, 1, 1, -1, -1, -1])


def test_the_norm_band_around_the_median_norm() -> None:
    # All rows are positive multiples of H: identical sign statistics, one cluster.
    # norms sqrt(10) x (1, 1, 1, 1, 4, 0.05): M = sqrt(10); ratios 4 > 3 and 0.05 < 0.1
    rows = torch.stack([H * s for s in (1.0, 1, 1, 1, 4, 0.05)])
    flags = SignGuardDetector(coordinate_fraction=1.0)(rows)
    assert flags.tolist() == [False] * 4 + [True, True]
    # the band is closed: ratios exactly at its ends stay (powers of two, so that the
    # float32 norms are exact multiples of M)
    rows = torch.stack([H * s for s in (1.0, 1, 1, 1, 4, 0.125)])
    detector = SignGuardDetector(lower=0.125, upper=4.0, coordinate_fraction=1.0)
    assert not detector(rows).any()


def test_sign_flipped_rows_of_the_same_norm_form_their_own_cluster() -> None:
    # honest: rotations of H, (0.7, 0, 0.3); flipped: (0.3, 0, 0.7); same norms, so the
    # norm filter keeps all; MeanShift puts the 4 honest rows in the largest cluster.
    rows = torch.stack([H, H.roll(1), H.roll(2), H.roll(3), -H, -H.roll(1)])
    flags = SignGuardDetector(coordinate_fraction=1.0)(rows)
    assert flags.tolist() == [False] * 4 + [True, True]


def test_zero_shares_count() -> None:
    # two rows with half their entries exactly zero: (0.35, 0.5, 0.15) vs (0.7, 0, 0.3)
    sparse = H * torch.tensor([1.0, 0] * 5)
    rows = torch.stack(
        [H, H.roll(1), H.roll(2), H.roll(3), sparse * 2**0.5, sparse.roll(2) * 2**0.5]
    )
    flags = SignGuardDetector(coordinate_fraction=1.0)(rows)
    assert flags.tolist() == [False] * 4 + [True, True]


@pytest.mark.parametrize("n", [1, 2, 3, 6])
def test_zero_and_identical_rows_flag_nobody(n: int) -> None:
    # M = 0 keeps exactly the zero rows; identical features: bandwidth 0, one cluster
    assert not SignGuardDetector()(torch.zeros(n, 20)).any()
    assert not SignGuardDetector()(H.repeat(n, 1)).any()
    result = SignGuard()(torch.zeros(n, 20))
    assert torch.equal(result.update, torch.zeros(20))


def test_clip_to_the_median_norm_of_every_received_row() -> None:
    received = torch.tensor([[3.0, 4], [0, 1], [0, 2], [6, 8]])  # norms 5, 1, 2, 10
    admitted = received[:3]
    result = SignGuard()(admitted, received=received)
    # M = (2 + 5) / 2 = 3.5; factors 0.7, 1, 1; mean = (0.7 [3, 4] + [0, 1] + [0, 2]) / 3
    torch.testing.assert_close(result.update, torch.tensor([0.7, 5.8 / 3]))
    torch.testing.assert_close(result.weights, torch.tensor([0.7 / 3, 1 / 3, 1 / 3]))


def test_the_defence_runs_the_detector_first() -> None:
    rows = torch.stack([H * s for s in (1.0, 1, 1, 2, 40, 50)])
    outcome = Defence(SignGuard())(rows, [0, 1, 2, 3, 4, 5], server_round=1)
    assert outcome.flagged == {4: "signguard", 5: "signguard"}
    # M over all six norms: sqrt(10) x (1 + 2) / 2 = 1.5 sqrt(10); row 3 (2 sqrt(10)) is
    # clipped by 0.75: mean = H (1 + 1 + 1 + 1.5) / 4
    torch.testing.assert_close(outcome.aggregate, H * 4.5 / 4)


def test_same_generator_same_flags_and_no_mutation() -> None:
    x = torch.randn(10, 300, generator=torch.Generator().manual_seed(0))
    x[:3] *= -1.0
    before = x.clone()
    a = SignGuardDetector()(x, generator=torch.Generator().manual_seed(4))
    b = SignGuardDetector()(x, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    SignGuard()(x, received=x)
    assert torch.equal(x, before)


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match=r"lower >= 0, got lower=-0\.1"):
        SignGuardDetector(lower=-0.1)
    with pytest.raises(ValueError, match=r"upper >= 0\.5, got upper=0\.2"):
        SignGuard(lower=0.5, upper=0.2)
    with pytest.raises(ValueError, match="coordinate_fraction > 0, got coordinate_fraction=0"):
        SignGuardDetector(coordinate_fraction=0.0)
    with pytest.raises(ValueError, match="coordinate_fraction <= 1, got coordinate_fraction=2"):
        SignGuardDetector(coordinate_fraction=2.0)
    with pytest.raises(ValueError, match="signguard needs received with 2 columns"):
        SignGuard()(torch.ones(3, 2), received=torch.ones(3, 5))
