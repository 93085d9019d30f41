"""Checkpoints: what an interrupted run needs to end with the numbers it would have had.

Every draw is seeded by ``(seed, round, client id)``, so a run is resumable from the global
weights, the defence's state (``strategies.state``: centered clipping's centre, and
every other stage's memory), the results so far and the round number. Saved with
``torch.save`` through a temporary file and a rename (never half written); loaded with
``torch.load(weights_only=True)``, which unpickles nothing but tensors and plain
containers.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import torch
from flwr.app import Array, ArrayRecord

FILENAME = "checkpoint.pt"
FORMAT = 2  # 2: the defence state under "strategy"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used for this run (one line, says what to do)."""


def save(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically to ``path``."""
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        torch.save({"format": FORMAT, **payload}, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load(path: Path, config_digest: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if there is one for this config; None if there is none."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:  # truncated, or not a checkpoint at all
        raise CheckpointError(f"{path} cannot be read ({error}); delete it to start over") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a checkpoint of this Oleander version; delete it to start over"
        )
    if payload.get("config_digest") != config_digest:
        raise CheckpointError(
            f"{path} belongs to another configuration; use another output directory "
            "(hydra.run.dir=...) or delete it"
        )
    return payload


def arrays_to_tensors(arrays: ArrayRecord) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v.numpy().copy()) for k, v in arrays.items()}


def tensors_to_arrays(tensors: dict[str, torch.Tensor]) -> ArrayRecord:
    record = ArrayRecord()
    for key, tensor in tensors.items():
        record[key] = Array(tensor.numpy())
    return record
