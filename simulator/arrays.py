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
``ArrayLayout`` flattens a model's ArrayRecord into the one float32 vector the defences
work on, and rebuilds it.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class ArrayLayout:
    """Names, shapes and dtypes of a model's arrays, to flatten and rebuild them."""

    keys: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[np.dtype, ...]

    @classmethod
    def of(cls, record: ArrayRecord) -> ArrayLayout:
        # From each Array's own metadata: the global model is not decoded for this.
        arrays = [record[k] for k in record]
        return cls(
            keys=tuple(record.keys()),
            shapes=tuple(tuple(int(n) for n in a.shape) for a in arrays),
            dtypes=tuple(np.dtype(a.dtype) for a in arrays),
        )

    @property
    def size(self) -> int:
        return int(sum(int(np.prod(s)) for s in self.shapes))

    def flatten(self, record: ArrayRecord, out: np.ndarray | None = None) -> torch.Tensor:
        """One float32 vector of every array in layout order; ``ValueError`` if mis-shaped.

        ``out``: a float32 array of shape ``(d,)`` to write into (a row of the round's
        update matrix) instead of a new one.
        """
        if set(record.keys()) != set(self.keys):
            missing = sorted(set(self.keys) - set(record.keys()))
            extra = sorted(set(record.keys()) - set(self.keys))
            raise ValueError(f"arrays do not match the model: missing {missing}, extra {extra}")
        parts = []
        for key, shape, dtype in zip(self.keys, self.shapes, self.dtypes, strict=True):
            try:
                array = read_array(record[key], dtype, shape)
            except (TypeError, ValueError) as error:  # e.g. not numpy-serialised
                raise ValueError(f"array {key!r} cannot be read: {error}") from None
            if array.shape != shape:
                raise ValueError(f"array {key!r} has shape {array.shape}, the model {shape}")
            parts.append(array.reshape(-1))
        if not parts:
            return torch.zeros(0)
        # One copy, into float32: the parts may be read-only views of the message's bytes.
        try:
            if out is None:
                flat = np.concatenate(parts, dtype=np.float32, casting="unsafe")
            else:
                flat = np.concatenate(parts, out=out, casting="unsafe")
        except (TypeError, ValueError) as error:  # e.g. an array of strings
            raise ValueError(f"arrays cannot be read as numbers: {error}") from None
        return torch.from_numpy(flat)  # shape: (d,)

    def unflatten(self, vector: torch.Tensor) -> ArrayRecord:
        """Inverse of ``flatten``, casting each array back to its own dtype."""
        flat = vector.detach().to("cpu", torch.float32).numpy()
        record = ArrayRecord()
        offset = 0
        for key, shape, dtype in zip(self.keys, self.shapes, self.dtypes, strict=True):
            size = int(np.prod(shape))
            record[key] = to_array(flat[offset : offset + size].reshape(shape).astype(dtype))
            offset += size
        return record
