"""The settings a table was made under: what differs from the defaults, what varies, and the
core training settings, each beside its default; plus the parameters a run found itself
(``summary.json``'s ``effective``: ALIE's z when ``attack.z`` is null, Fang's lambda, ...).

"The defaults" of a run are ``conf/`` composed with the run's own group choices and no
other override (Hydra's compose API, once per set of choices), so a rule's or an attack's
own defaults count as defaults, while whatever an experiment preset or ``debug=tiny`` sets
shows as a difference.
"""

from __future__ import annotations

import functools
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from simulator.report.collect import Run, _float, _get
from simulator.run_names import UNNAMED
from simulator.schema import GROUPS

# The table axes: rows (the rule and its stages), sections (the attack), columns (f).
AXES = ("strategy.name", "pre.name", "detect.name", "attack.name", "malicious_fraction")
# Listed whether or not they differ from the defaults: what a paper's set-up must state.
CORE = (
    "lr",
    "local_epochs",
    "local_steps",
    "batch_size",
    "momentum",
    "weight_decay",
    "num_rounds",
    "num_clients",
    "clients_per_round",
)
# Groups whose choice and own parameters are always listed (the partition's q or alpha),
# and groups whose choice is (the data set and the model).
CORE_GROUPS = ("partition",)
CORE_CHOICES = ("dataset.name", "model.name")
# Averaged over, never a setting of one table; listed with the seeds there are.
SEED = "seed"
NOT_IN_CONF = "(not in conf)"


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; an empty mapping stays one value."""
    if isinstance(node, dict) and node:
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: node}


def is_setting(key: str) -> bool:
    """A key a reader of the results needs: not Hydra's, not how a run is shown, not a
    ``_target_``; a group's ``name`` is its choice (``dataset.name`` reads ``dataset``)."""
    parts = key.split(".")
    # how a run is executed or shown (what names no run directory) is no setting
    if parts[0] in UNNAMED or any(p.startswith("_") for p in parts):
        return False
    return key not in AXES


def choices_of(run: Run) -> tuple[tuple[str, str], ...]:
    """The run's group choices: Hydra's record, else each group's ``name`` in the config."""
    chosen = {g: c for g, c in run.choices.items() if g in GROUPS}
    for group in GROUPS:
        name = _get(run.config, f"{group}.name")
        if group not in chosen and isinstance(name, str):
            chosen[group] = name
    return tuple(sorted(chosen.items()))


@functools.cache
def defaults_for(choices: tuple[tuple[str, str], ...]) -> dict[str, Any] | None:
    """``conf/`` composed with ``choices`` only, flattened and resolved; None if it cannot
    be composed (an option this version no longer has): nothing then counts as a default."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from simulator.preflight import CONFIG_DIR, CONFIG_NAME

    overrides = [f"{group}={choice}" for group, choice in choices]
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name=CONFIG_NAME, overrides=overrides)
        container = OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException, ValueError):
        return None
    return flatten(container) if isinstance(container, dict) else None


def defaults_of(run: Run) -> dict[str, Any] | None:
    return defaults_for(choices_of(run))


def _key(value: Any) -> str:
    """Values compared as JSON: 1 and 1.0 alike, lists and mappings by content."""
    number = _float(value)
    if number is not None and not isinstance(value, str):
        return json.dumps(number)
    return json.dumps(value, sort_keys=True, default=str)


def text(value: Any) -> str:
    """A value as the tables show it: numbers with up to 4 significant digits."""
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)


def differs(run: Run, key: str, value: Any) -> bool:
    """Whether ``value`` differs from the default: a group choice from the primary config's
    choice, any other key from the default under the run's own choices."""
    if key == SEED:
        return False
    defaults = defaults_for(()) if _is_choice(key) else defaults_of(run)
    if defaults is None:
        return False
    return key not in defaults or _key(defaults[key]) != _key(value)


@dataclass(frozen=True)
class SettingRow:
    """One line of a settings table."""

    key: str
    value: str
    default: str
    changed: bool  # differs from the default in some run
    source: str = ""  # the config key ("" for an effective parameter)
    uniform: bool = False  # one value, set in every run


def _by_option(runs: Sequence[Run], key: str, values: dict[str, Any]) -> str:
    """The distinct values of ``key``; when the runs chose several options of the key's
    group (rules with different own parameters), each value with the options it belongs to."""
    top = key.split(".")[0]
    options = {str(_get(r.config, f"{top}.name")) for r in runs if r.name in values}
    distinct = sorted({_key(v): v for v in values.values()}.items(), key=lambda kv: kv[0])
    if top in GROUPS and len(options) > 1:
        parts = []
        for k, value in distinct:
            owners = sorted(
                {
                    str(_get(r.config, f"{top}.name"))
                    for r in runs
                    if r.name in values and _key(values[r.name]) == k
                }
            )
            parts.append(f"{text(value)} ({', '.join(owners)})")
        return "; ".join(parts)
    return ", ".join(text(v) for _, v in _sorted_values(distinct))


def _sorted_values(items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    def order(item: tuple[str, Any]) -> tuple[int, float, str]:
        number = _float(item[1])
        return (0, number, "") if number is not None else (1, math.inf, item[0])

    return sorted(items, key=order)


def settings_rows(
    runs: Sequence[Run], *, always: Sequence[str] = (), skip: Sequence[str] = ()
) -> list[SettingRow]:
    """The settings of ``runs`` worth stating: the core ones, every group choice and key
    that differs from its default in some run, every one that varies between them, and the
    keys under the ``always`` prefixes; none of ``skip``."""
    values: dict[str, dict[str, Any]] = defaultdict(dict)
    for run in runs:
        for key, value in flatten(run.config).items():
            if is_setting(key) and key not in skip:
                values[key][run.name] = value
    rows = []
    for key in sorted(values, key=_setting_order):
        found = values[key]
        distinct = {_key(v) for v in found.values()}
        top = key.split(".")[0]
        changed = any(differs(r, key, found[r.name]) for r in runs if r.name in found)
        listed = (
            key in (*CORE, *CORE_CHOICES, SEED)
            or top in CORE_GROUPS
            or any(key.startswith(f"{p}.") or key == p for p in always)
            or changed
            or _varies(runs, key, found)
        )
        if not listed:
            continue
        defaults = {_default(r, key) for r in runs if r.name in found}
        label = top if _is_choice(key) else key
        label = "seed (averaged over)" if key == SEED else label
        rows.append(
            SettingRow(
                key=label,
                value=_by_option(runs, key, found),
                default=", ".join(sorted(defaults)),
                changed=changed,
                source=key,
                uniform=len(distinct) == 1 and len(found) == len(runs),
            )
        )
    return rows


def _is_choice(key: str) -> bool:
    return key.endswith(".name") and key.split(".")[0] in GROUPS


def _varies(runs: Sequence[Run], key: str, found: dict[str, Any]) -> bool:
    """Whether ``key`` takes more than one value; a group's own key only within one option
    (the median's weighting differs from FedAvg's by default: not a setting that varies)."""
    top = key.split(".")[0]
    groups: dict[str, set[str]] = defaultdict(set)
    for run in runs:
        if run.name in found:
            option = str(_get(run.config, f"{top}.name")) if top in GROUPS else ""
            groups[option].add(_key(found[run.name]))
    return any(len(values) > 1 for values in groups.values())


def _default(run: Run, key: str) -> str:
    if key == SEED:
        return "–"
    defaults = defaults_for(()) if _is_choice(key) else defaults_of(run)
    if defaults is None:
        return "?"
    return text(defaults[key]) if key in defaults else NOT_IN_CONF


def _setting_order(key: str) -> tuple[int, str]:
    """Group choices first, then the core keys, then the rest by name."""
    top = key.split(".")[0]
    if _is_choice(key):
        return (0, f"{GROUPS.index(top):02d}")
    if key in CORE:
        return (1, f"{CORE.index(key):02d}")
    return (2, key)


# Effective parameters ------------------------------------------------------------------


def effective_of(run: Run) -> dict[str, Any]:
    """``summary.json``'s ``effective``: a flat mapping (older runs: none)."""
    found = run.summary.get("effective")
    return {str(k): v for k, v in found.items()} if isinstance(found, dict) else {}


def effective_number(value: Any) -> float | str | None:
    """One number for a results.csv column: the value, or its mean over rounds."""
    if isinstance(value, dict):
        return _float(value.get("mean"))
    number = _float(value)
    return number if number is not None else (None if value is None else str(value))


def effective_text(value: Any) -> str:
    """``0.164``, or ``mean 0.2 (0.1 to 0.3 over 10 rounds, last 0.3)`` when it changed."""
    if not isinstance(value, dict):
        return text(value)
    parts = [f"mean {text(_float(value.get('mean')))}"]
    low, high = _float(value.get("min")), _float(value.get("max"))
    detail = f"{text(low)} to {text(high)}" if low is not None and high is not None else ""
    if value.get("rounds") is not None:
        detail += f" over {value['rounds']} rounds"
    if value.get("last") is not None:
        detail += f", last {text(_float(value['last']))}"
    return f"{parts[0]} ({detail.strip(', ')})" if detail else parts[0]


def effective_rows(runs: Sequence[Run]) -> list[SettingRow]:
    """One line per effective parameter: its value, or per malicious fraction when it
    differs by fraction (ALIE's z does), or its range over the runs."""
    by_key: dict[str, dict[str, Any]] = defaultdict(dict)
    for run in runs:
        for key, value in effective_of(run).items():
            by_key[key][run.name] = value
    fraction = {r.name: _float(_get(r.config, "malicious_fraction")) for r in runs}
    rows = []
    for key in sorted(by_key):
        found = by_key[key]
        texts = {name: effective_text(v) for name, v in found.items()}
        if len(set(texts.values())) == 1:
            value = next(iter(texts.values()))
        else:
            per_f: dict[float | None, set[str]] = defaultdict(set)
            for name, t in texts.items():
                per_f[fraction[name]].add(t)
            if all(len(ts) == 1 for ts in per_f.values()):
                value = "; ".join(
                    f"f={text(f)}: {next(iter(ts))}"
                    for f, ts in sorted(per_f.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
                )
            else:
                numbers = [n for v in found.values() if isinstance(n := effective_number(v), float)]
                value = (
                    f"{text(min(numbers))} to {text(max(numbers))} over {len(found)} runs "
                    "(each run's in results.csv)"
                    if numbers
                    else ", ".join(sorted(set(texts.values())))
                )
        rows.append(SettingRow(key=f"{key} (effective)", value=value, default="", changed=False))
    return rows
