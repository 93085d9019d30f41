"""FedAvg (strategies.fedavg): the example-weighted mean, against numpy's average."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from strategies import fedavg

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@settings(max_examples=50, deadline=None)
@given(
    data=st.data(),
    n=st.integers(1, 6),
    d=st.integers(1, 5),
)
def test_fedavg_matches_numpy_average(data: st.DataObject, n: int, d: int) -> None:
    updates = data.draw(hnp.arrays(np.float64, (n, d), elements=finite))
    weights = data.draw(hnp.arrays(np.float64, (n,), elements=st.floats(0.01, 100.0)) | st.none())
    x = torch.from_numpy(updates.copy())
    w = None if weights is None else torch.from_numpy(weights.copy())
    result = fedavg(x, w)
    np.testing.assert_allclose(
        result.update.numpy(), np.average(updates, axis=0, weights=weights), rtol=1e-9, atol=1e-9
    )
    assert result.weights is not None
    assert float(result.weights.sum()) == pytest.approx(1.0)
    # inputs untouched
    np.testing.assert_array_equal(x.numpy(), updates)
    if w is not None:
        np.testing.assert_array_equal(w.numpy(), weights)


def test_fedavg_known_values() -> None:
    updates = torch.tensor([[1.0, 0.0], [3.0, 4.0]])
    np.testing.assert_allclose(fedavg(updates).update.numpy(), [2.0, 2.0])
    weighted = fedavg(updates, torch.tensor([3.0, 1.0]))
    np.testing.assert_allclose(weighted.update.numpy(), [1.5, 1.0])
    np.testing.assert_allclose(weighted.weights.numpy(), [0.75, 0.25])


def test_fedavg_zero_weight_leaves_a_client_out() -> None:
    updates = torch.tensor([[1.0, 2.0], [1e6, -1e6]])
    result = fedavg(updates, torch.tensor([1.0, 0.0]))
    np.testing.assert_array_equal(result.update.numpy(), [1.0, 2.0])


@pytest.mark.parametrize(
    "weights, match",
    [
        (torch.ones(2), r"shape \(3,\)"),
        (torch.ones(3, 1), r"shape \(3,\)"),
        (torch.tensor([1.0, -1.0, 1.0]), ">= 0"),
        (torch.tensor([1.0, float("nan"), 1.0]), "finite"),
        (torch.zeros(3), "positive sum"),
    ],
)
def test_fedavg_rejects_bad_weights(weights: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fedavg(torch.ones(3, 2), weights)


@pytest.mark.parametrize(
    "updates",
    [torch.ones(3), torch.ones(2, 2, 2), torch.ones(2, 3, dtype=torch.int64), torch.ones(0, 3)],
)
def test_fedavg_rejects_bad_updates(updates: torch.Tensor) -> None:
    with pytest.raises(ValueError):
        fedavg(updates)
