"""The fast .npy path for Flower Arrays writes np.save's bytes and reads any valid Array."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from simulator.arrays import read_array, records_of, to_array, to_array_record

ARRAYS = [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.arange(5, dtype=np.int64),
    np.ones((), dtype=np.float32),  # 0-d
    np.zeros((0, 3), dtype=np.float64),  # empty
    np.linspace(0, 1, 7, dtype=np.float16),
]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{a.shape}")
def test_to_array_writes_exactly_what_flower_writes(array: np.ndarray) -> None:
    ours, flowers = to_array(array), Array(array)
    assert (ours.dtype, ours.shape, ours.stype, ours.data) == (
        flowers.dtype,
        flowers.shape,
        flowers.stype,
        flowers.data,
    )
    got = read_array(flowers, array.dtype, array.shape)
    assert got.dtype == array.dtype and got.shape == array.shape
    np.testing.assert_array_equal(got, array)


def test_fortran_ordered_input_is_written_in_c_order_with_the_same_values() -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3).T
    np.testing.assert_array_equal(to_array(array).numpy(), array)


def test_other_forms_fall_back_to_flower_and_malformed_bytes_still_fail() -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    # Expected shape differs: the real array comes back, for the caller to reject.
    assert read_array(Array(array), np.dtype(np.float32), (3, 2)).shape == (2, 3)
    # Another dtype than expected: decoded as what it is.
    assert read_array(Array(array.astype(np.float64)), np.dtype(np.float32), (2, 3)).dtype == (
        np.float64
    )
    truncated = Array(dtype="float32", shape=(2, 3), stype="numpy.ndarray", data=b"\x93NUMPY")
    with pytest.raises(ValueError):
        read_array(truncated, np.dtype(np.float32), (2, 3))
    other = Array(dtype="float32", shape=(2, 3), stype="torch.Tensor", data=b"")
    with pytest.raises(TypeError):
        read_array(other, np.dtype(np.float32), (2, 3))


def test_state_dicts_round_trip_in_order() -> None:
    state = {"b.weight": torch.randn(4, 3), "a.bias": torch.randn(4)}
    record = to_array_record(state)
    assert list(record.keys()) == ["b.weight", "a.bias"]
    back = record.to_torch_state_dict()
    for name, value in state.items():
        assert torch.equal(back[name], value)


def test_records_of_finds_each_kind_in_order() -> None:
    content = RecordDict(
        {
            "m1": MetricRecord({"x": 1.0}),
            "arrays": ArrayRecord({"w": Array(np.zeros(2))}),
            "config": ConfigRecord({"k": 1}),
            "m2": MetricRecord({"y": 2.0}),
        }
    )
    assert [r["x" if "x" in r else "y"] for r in records_of(content, MetricRecord)] == [1.0, 2.0]
    assert len(records_of(content, ArrayRecord)) == 1
    assert records_of(RecordDict(), ConfigRecord) == []


def test_startup_skips_plotting_and_torch_compiler_imports() -> None:
    """flwr_datasets' plotting stack and torch._dynamo are not imported to run clients,
    and the plotting helpers still import when someone asks for them."""
    code = """
import sys, torch
import simulator.partition
from clients.cohort import train_cohort
from clients.training import TrainConfig
from simulator.models import MLP
x, y = torch.rand(20, 1, 8, 8), torch.randint(0, 10, (20,))
train_cohort(MLP(input_shape=(1, 8, 8), num_classes=10), x, y,
             [torch.arange(10), torch.arange(10, 20)], TrainConfig(lr=0.1, batch_size=4),
             [torch.Generator(), torch.Generator()])
heavy = [m for m in ("seaborn", "matplotlib", "scipy.stats", "torch._dynamo") if m in sys.modules]
assert not heavy, heavy
import flwr_datasets
import flwr_datasets.visualization.bar_plot  # a submodule imports through the stand-in
from flwr_datasets.visualization import plot_label_distributions
assert callable(plot_label_distributions)
assert callable(flwr_datasets.visualization.plot_comparison_label_distribution)
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"
