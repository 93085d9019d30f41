"""Names of a sweep's run directories: short, safe, and the same for the same point.

A sweep point's directory is named by the overrides that can change its numbers, sorted
as Hydra sorts them (``attack=alie,malicious_fraction=0.2,seed=1``). Keys that only say
how a run is executed or shown (the engine, the logger, progress) and keys that hold a
path (``dataset.path``) never name a directory; an interpolation (``${num_clients}``) is
named by its value. A name that would still be unsafe (a character outside
``A-Za-z0-9._,=+-``) or longer than ``MAX_NAME`` becomes ``run-<digest>``; every sweep
keeps ``runs.csv`` at its root, one row per point: the directory's name and the point's
full overrides as typed.

The name is computed by the resolver ``oleander_run_name`` (``hydra.sweep.subdir`` in
``conf/config.yaml``), registered when ``simulator.main`` is imported, in every process
that runs a sweep point.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

RESOLVER = "oleander_run_name"
INDEX = "runs.csv"
MAX_NAME = 200  # file names may hold 255 bytes
_SAFE = re.compile(r"[A-Za-z0-9._,=+\-]*")
# Top-level keys (with everything under them) that change how a run is executed or shown,
# never its numbers: left out of the config digest (simulator.main.config_digest) ...
NON_RESULT_KEYS = ("engine", "progress", "verbose", "checkpoint_every", "logger")
# ... and out of directory names, with the thread count (it may move the last float bits,
# so the digest keeps it) and Hydra's own node.
UNNAMED = (*NON_RESULT_KEYS, "torch_threads", "hydra")


def is_path_key(key: str) -> bool:
    """``dataset.path``, ``attack.path``, ``logger.log_dir``: keys that hold a location."""
    last = key.rsplit(".", 1)[-1]
    return last in ("path", "dir", "root") or last.endswith(("_path", "_dir", "_root"))


def names_run(key: str) -> bool:
    """Whether an override of ``key`` takes part in the run directory's name."""
    key = key.lstrip("+~")
    return key.split(".")[0].split("/")[0] not in UNNAMED and not is_path_key(key)


def _render(value: Any) -> str:
    """An override's value as its name shows it (``null``, ``true``, JSON for containers)."""
    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value, resolve=True)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def name_part(line: str, root: DictConfig | None) -> str | None:
    """One override's part of the name; None for an override that names nothing.

    ``line`` as typed (``key=value``, ``+key=value``, ``~key``); with ``root`` (the
    composed config, Hydra's node included) a value holding an interpolation is replaced
    by what it resolved to, and a group by the option chosen.
    """
    key, sep, text = line.partition("=")
    if not names_run(key):
        return None
    if not sep or "$" not in text or root is None:  # Hydra escapes braces: $\{key\}
        return line
    bare = key.lstrip("+~").split("@")[0]
    choices: Mapping[str, Any] = OmegaConf.select(root, "hydra.runtime.choices", default={})
    if bare in choices:
        value: Any = choices[bare]
    else:
        value = OmegaConf.select(root, bare, default=text, throw_on_resolution_failure=False)
    return f"{key}={_render(value)}"


def digest_name(parts: Sequence[str]) -> str:
    """``run-`` and 12 hex digits of the parts: the same point, the same name."""
    return "run-" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def run_name(overrides: Sequence[str], root: DictConfig | None = None) -> str:
    """The directory name of the sweep point with ``overrides`` (see the module's doc)."""
    parts = sorted(p for p in (name_part(line, root) for line in overrides) if p is not None)
    name = ",".join(parts)
    if len(name) > MAX_NAME or not _SAFE.fullmatch(name):
        return digest_name(parts)
    return name


def _resolve_run_name(*, _root_: DictConfig) -> str:
    overrides = OmegaConf.select(_root_, "hydra.overrides.task", default=[])
    return run_name([str(line) for line in overrides], _root_)


def register_resolver() -> None:
    """Make ``${oleander_run_name:}`` available (idempotent)."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, _resolve_run_name, use_cache=False)


def record_run(sweep_dir: Path, name: str, overrides: Sequence[str]) -> None:
    """Add the point to the sweep's ``runs.csv`` (once; safe for parallel sweep jobs)."""
    typed = shlex.join(overrides)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with open(sweep_dir / INDEX, "a+", encoding="utf-8", newline="") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        handle.seek(0)
        rows = list(csv.reader(handle))
        if [name, typed] in rows[1:]:
            return
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if not rows:
            writer.writerow(["name", "overrides"])
        writer.writerow([name, typed])
        handle.write(buffer.getvalue())
