"""Flower ``Array``s in NumPy's ``.npy`` format, written and read without re-parsing headers.

Flower's ``Array.from_numpy_ndarray`` and ``Array.numpy`` go through ``np.save`` and
``np.load``, which write and parse (with ``ast``) a text header for every array of every
message: about a third of a millisecond per small model and client, as much as one
client's whole training step on logistic regression. The header depends only on the
dtype and shape, so it is built once (cached) here; the bytes are exactly what ``np.save``
writes (``tests/simulator/test_arrays.py``), so any Flower code reads them. Reading takes
the fast path only when an array's bytes start with the expected header and have the
expected length, and otherwise falls back to ``Array.numpy()``: a reply in any other
valid form still reads, and a malformed one still fails there.

``records_of`` reads a message's records of one kind without the views Flower's
``RecordDict.array_records`` (and friends) build and type-check on every access.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Mapping
from typing import TypeVar

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, RecordDict

NUMPY_STYPE = "numpy.ndarray"  # flwr.common.constant.SType.NUMPY
R = TypeVar("R")


@functools.lru_cache(maxsize=1024)
def npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    """The ``.npy`` (version 1.0) header ``np.save`` writes for a C-ordered array."""
    buffer = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def to_array(value: torch.Tensor | np.ndarray) -> Array:
    """A Flower ``Array`` holding ``value`` (as ``Array(ndarray)`` would, byte for byte)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
    header = npy_header(np.lib.format.dtype_to_descr(array.dtype), tuple(array.shape))
    return Array(
        dtype=str(array.dtype),
        shape=tuple(int(s) for s in array.shape),
        stype=NUMPY_STYPE,
        data=b"".join((header, array.data)),  # one copy of the values
    )


def to_array_record(state: Mapping[str, torch.Tensor | np.ndarray]) -> ArrayRecord:
    """An ``ArrayRecord`` of ``state`` in its order (e.g. a model's ``state_dict()``)."""
    record = ArrayRecord()  # filled item by item: ArrayRecord(dict) would copy every Array
    for name, value in state.items():
        record[name] = to_array(value)
    return record


def read_array(array: Array, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """``array`` as NumPy; a read-only view of its bytes when they are the expected form.

    ``dtype`` and ``shape`` are what the caller expects; other arrays are decoded by
    ``Array.numpy()`` (so the caller still sees, and can reject, their real shape).
    """
    if array.stype == NUMPY_STYPE:
        header = npy_header(np.lib.format.dtype_to_descr(dtype), shape)
        data = array.data
        if len(data) == len(header) + dtype.itemsize * math.prod(shape) and data.startswith(header):
            return np.frombuffer(data, dtype=dtype, offset=len(header)).reshape(shape)
    return array.numpy()


def records_of(content: RecordDict, kind: type[R]) -> list[R]:
    """The records of type ``kind`` in ``content``, in insertion order."""
    return [record for record in content.values() if isinstance(record, kind)]
