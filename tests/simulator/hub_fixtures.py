"""Tiny stand-ins for the Hub's FEMNIST, Shakespeare and CIFAR-100, built in a test's tmp_path.

Each has the Hub's column names and types (``datasets`` features), a handful of random rows,
and is written in both offline formats: a folder of parquet files named as on the Hub, and a
``save_to_disk`` folder. Nothing here is real data.
"""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
from PIL import Image

from simulator.data import SHAKESPEARE_LETTERS


def femnist_rows(writers: int = 4, per_writer: int = 6, seed: int = 0) -> datasets.Dataset:
    """``writers`` writers with ``per_writer`` random 28x28 grey images each, rows interleaved."""
    rng = np.random.default_rng(seed)
    n = writers * per_writer
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "writer_id": datasets.Value("string"),
            "hsf_id": datasets.Value("int64"),
            "character": datasets.ClassLabel(num_classes=62),
        }
    )
    return datasets.Dataset.from_dict(
        {
            "image": [
                Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)) for _ in range(n)
            ],
            # interleaved, so a writer's rows are not contiguous
            "writer_id": [f"f{i % writers:04d}_{i % writers:02d}" for i in range(n)],
            "hsf_id": [0] * n,
            "character": rng.integers(0, 62, n).tolist(),
        },
        features=features,
    )


def shakespeare_rows(roles: int = 3, per_role: int = 200, seed: int = 0) -> datasets.Dataset:
    """Each role a random text; its rows are the 80-character windows and the next character.

    The alphabet includes one character outside LEAF's (``é``), which maps to the extra id.
    """
    rng = np.random.default_rng(seed)
    letters = np.array([*SHAKESPEARE_LETTERS, "é"])
    rows: dict[str, list[str]] = {"character_id": [], "x": [], "y": []}
    for role in range(roles):
        text = "".join(rng.choice(letters, per_role + 80))
        for i in range(per_role):
            rows["character_id"].append(f"THE_PLAY_ROLE{role}")
            rows["x"].append(text[i : i + 80])
            rows["y"].append(text[i + 80])
    return datasets.Dataset.from_dict(rows)


def cifar100_rows(train: int = 12, test: int = 5, seed: int = 0) -> datasets.DatasetDict:
    rng = np.random.default_rng(seed)
    features = datasets.Features(
        {
            "img": datasets.Image(),
            "fine_label": datasets.ClassLabel(num_classes=100),
            "coarse_label": datasets.ClassLabel(num_classes=20),
        }
    )

    def split(n: int) -> datasets.Dataset:
        return datasets.Dataset.from_dict(
            {
                "img": [
                    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
                    for _ in range(n)
                ],
                "fine_label": rng.integers(0, 100, n).tolist(),
                "coarse_label": rng.integers(0, 20, n).tolist(),
            },
            features=features,
        )

    return datasets.DatasetDict({"train": split(train), "test": split(test)})


def write_parquet(data: datasets.Dataset | datasets.DatasetDict, folder: Path) -> Path:
    """The Hub's layout: ``data/<split>-00000-of-00001.parquet`` (train only for a Dataset)."""
    splits = data if isinstance(data, datasets.DatasetDict) else {"train": data}
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for name, split in splits.items():
        split.to_parquet(str(folder / "data" / f"{name}-00000-of-00001.parquet"))
    return folder


def write_saved(data: datasets.Dataset | datasets.DatasetDict, folder: Path) -> Path:
    data.save_to_disk(str(folder))
    return folder


def both_formats(data: datasets.Dataset | datasets.DatasetDict, root: Path) -> dict[str, Path]:
    return {
        "parquet": write_parquet(data, root / "parquet"),
        "save_to_disk": write_saved(data, root / "saved"),
    }
