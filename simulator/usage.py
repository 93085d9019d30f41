"""``oleander --help``: the groups a user chooses from, their options, the top-level knobs.

Read from ``conf/`` itself, so a new group entry appears here without a change to this file.
Hydra's own help (``--hydra-help``) stays available.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from simulator.schema import EXTRA_GROUPS, GROUPS, SETTINGS

WHAT = {
    "dataset": "the data set; the server keeps its test split",
    "partition": "how the training split is divided among clients",
    "model": "the model every client trains",
    "strategy": "the server's aggregation rule (its parameters: strategy.<parameter>)",
    "pre": "pre-aggregation in front of the rule",
    "detect": "detection in front of the rule: flagged clients leave the round",
    "attack": "what malicious clients do (its parameters: attack.<parameter>)",
    "engine": "how messages reach the clients: in-process, Flower's runtimes",
    "logger": "experiment tracking beside the run's own files",
    "experiment": "a preset (its header says what it reproduces)",
    "debug": "a small, fast run to try a change",
}


def _options(config_dir: Path, group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir / group).glob("*.yaml"))


def _default(primary: dict[str, Any], group: str) -> str | None:
    for entry in primary.get("defaults", []):
        if isinstance(entry, dict) and group in entry:
            return entry[group]
    return None


def _show(value: Any) -> str:
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _flat(node: dict[str, Any], prefix: str = "") -> list[str]:
    items = []
    for key, value in node.items():
        if isinstance(value, dict):
            items += _flat(value, f"{prefix}{key}.")
        else:
            items.append(f"{prefix}{key}={_show(value)}")
    return items


def help_text(config_dir: Path) -> str:
    """The text ``oleander --help`` prints."""
    primary = OmegaConf.to_container(OmegaConf.load(config_dir / "config.yaml"), resolve=False)
    assert isinstance(primary, dict)
    lines = [
        "usage: oleander [KEY=VALUE ...]          one run",
        "       oleander -m KEY=A,B [KEY=C,D ...]  a sweep: one run per combination",
        "",
        "A federated-learning poisoning simulator: honest and malicious clients, robust",
        "defences, per-round robustness metrics. Every key can be set on the command line;",
        "a group's own parameters sit one level under it (strategy.beta, attack.z).",
        "",
        "Groups (GROUP=OPTION; * marks the default):",
    ]
    for group in (*GROUPS, *EXTRA_GROUPS):
        default = _default(primary, group)
        options = [f"{o}*" if o == default else o for o in _options(config_dir, group)]
        lines.append(f"  {group:<11}{WHAT.get(group, '')}")
        lines += _wrap(options, width=88, indent=" " * 13)
    lines += ["", "Settings of the groups:"]
    for group, settings in SETTINGS.items():
        names = ", ".join(f"{group}.{name}" for name in settings if name != "name")
        if names:
            lines.append(f"  {names}")
    lines += ["", "Top-level keys (default):"]
    knobs = _flat({k: v for k, v in primary.items() if k not in ("defaults", "hydra")})
    lines += _wrap(knobs, width=88, indent="  ")
    lines += [
        "",
        "Examples:",
        "  oleander strategy=krum attack=sign_flip malicious_fraction=0.2",
        "  oleander -m strategy=fedavg,median,krum malicious_fraction=0,0.1,0.2 seed=0,1",
        "  oleander experiment=fang_mnist dataset.path=../shared/data/mnist",
        "  oleander --cfg job strategy=trimmed_mean   (print the composed config)",
        "",
        "Results go to outputs/DATE/TIME (sweeps: multirun/); compare runs with oleander-report.",
        "Hydra's own options: oleander --hydra-help",
    ]
    return "\n".join(lines)


def _wrap(items: list[str], width: int, indent: str) -> list[str]:
    return textwrap.wrap(
        " ".join(items), width, initial_indent=indent, subsequent_indent=indent,
        break_long_words=False, break_on_hyphens=False,
    )  # fmt: skip
