"""DnC (Shejwalkar and Houmansadr, NDSS 2021): the detector, the defence, and sign-flipping
and scaling attackers on digits that FedAvg follows and DnC removes."""

from __future__ import annotations

import pytest
import torch

from strategies.dnc import DnC, DnCDetector
from strategies.pipeline import Defence

# Six rows on the x axis: x = 1, 2, 3, 4, 5, 15 (mean 5). The top singular vector of the
# centred rows is the x axis, so s_i = (x_i - 5)^2 = 16, 9, 4, 1, 0, 100.
LINE = torch.tensor([[1.0, 0], [2, 0], [3, 0], [4, 0], [5, 0], [15, 0]])


def test_scores_are_squared_projections_on_the_top_direction() -> None:
    # f = 2: keep the 4 lowest scores (9, 4, 1, 0): rows 1-4; flag rows 0 (16) and 5 (100)
    flags = DnCDetector()(LINE, num_malicious=2, generator=torch.Generator().manual_seed(0))
    assert flags.tolist() == [True, False, False, False, False, True]


def test_filter_frac_scales_how_many_are_removed() -> None:
    # c = 0.5, f = 2: keep int(6 - 1) = 5 rows; only the largest score (row 5) goes
    flags = DnCDetector(filter_frac=0.5)(LINE, num_malicious=2)
    assert flags.tolist() == [False] * 5 + [True]
    # c = 0.75, f = 2: keep int(6 - 1.5) = 4 (the public code's int(n - c f))
    assert DnCDetector(filter_frac=0.75)(LINE, num_malicious=2).sum() == 2


def test_no_attacker_told_flags_nobody() -> None:
    assert not DnCDetector()(LINE, num_malicious=0).any()


def test_ties_keep_the_lower_rows_and_a_zero_matrix_works() -> None:
    # every score is 0: a stable sort keeps rows 0..3, flags the last two
    flags = DnCDetector()(torch.zeros(6, 4), num_malicious=2)
    assert flags.tolist() == [False] * 4 + [True] * 2
    assert torch.equal(DnC()(torch.zeros(4, 4)).update, torch.zeros(4))


def test_intersection_over_random_coordinates() -> None:
    # Two attackers sit far out on coordinates 0-9 only; each draw of b = 50 of 100
    # coordinates sees some of them, so they are flagged whatever the draw.
    g = torch.Generator().manual_seed(0)
    x = 0.1 * torch.randn(10, 100, generator=g)
    x[[3, 7], :10] += 5.0
    detector = DnCDetector(iterations=3, subsample=50)
    flags = detector(x, num_malicious=2, generator=torch.Generator().manual_seed(1))
    assert flags.nonzero().flatten().tolist() == [3, 7]


def test_same_generator_same_flags_and_no_mutation() -> None:
    x = torch.randn(12, 200, generator=torch.Generator().manual_seed(2))
    before = x.clone()
    detector = DnCDetector(subsample=20)
    a = detector(x, num_malicious=3, generator=torch.Generator().manual_seed(5))
    b = detector(x, num_malicious=3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and int(a.sum()) >= 3
    DnC()(x, weights=torch.ones(12))
    assert torch.equal(x, before)


def test_the_defence_averages_the_good_set_weighted_by_examples() -> None:
    defence = Defence(DnC(), num_malicious=2, weight_by_examples=True)
    outcome = defence(LINE, list(range(6)), server_round=1, num_examples=[9, 1, 1, 1, 1, 9])
    assert outcome.flagged == {0: "dnc", 5: "dnc"}
    # rows 1-4 with 1 example each: the plain mean of x = 2, 3, 4, 5 is 3.5
    torch.testing.assert_close(outcome.aggregate, torch.tensor([3.5, 0.0]))
    torch.testing.assert_close(outcome.weights, torch.tensor([0, 0.25, 0.25, 0.25, 0.25, 0]))
    # weighted: the good set's weights renormalised over it
    weighted = DnC()(LINE[1:5], weights=torch.tensor([1.0, 1, 1, 5]))
    torch.testing.assert_close(weighted.update, torch.tensor([(2 + 3 + 4 + 25) / 8, 0.0]))


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="integer iterations >= 1, got iterations=0"):
        DnCDetector(iterations=0)
    with pytest.raises(ValueError, match="integer subsample >= 1, got subsample=0"):
        DnC(subsample=0)
    with pytest.raises(ValueError, match="filter_frac >= 0, got filter_frac=-1"):
        DnCDetector(filter_frac=-1.0)
    with pytest.raises(ValueError, match="num_malicious must be an integer >= 0"):
        DnCDetector()(LINE, num_malicious=-1)
    # c f >= n (and c f > n - 1) would keep no row
    for c, f in ((1.0, 6), (1.0, 7), (2.75, 2)):
        with pytest.raises(ValueError, match=f"filter_frac={c}, num_malicious={f} with n=6"):
            DnCDetector(filter_frac=c)(LINE, num_malicious=f)
