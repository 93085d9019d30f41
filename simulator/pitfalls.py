"""Set-ups that run but test nothing: one line each, at start and in ``summary.json``.

A run that would be an error is refused by ``simulator.config``; these run, because a
researcher may mean them (a clean baseline under the same settings), but their numbers
say nothing about the attack: an attack with no attacker, ALIE with a z so small that the
attackers send about the benign mean, and a boost of 1 where one was asked for. (An
attack window that opens after the last round is an error.)
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from simulator.threat import ThreatModel

# |z| below this: ALIE's rows are within a tenth of a standard deviation of the mean.
MIN_ALIE_Z = 0.1


def _show(value: float) -> str:
    return f"{value:.3g}"


def _named(asked: Collection[str], key: str) -> list[str]:
    """The overrides in ``asked`` that set ``key``."""
    return [line for line in asked if line.partition("=")[0].lstrip("+~") == key]


def _no_attackers(cfg: DictConfig, threat: ThreatModel, asked: Collection[str]) -> str | None:
    if cfg.attack.name == "none" or threat.malicious_clients or threat.fake_clients:
        return None
    if _named(asked, "malicious_fraction") or _named(asked, "fake_clients"):
        return None  # asked for no attacker: a sweep's clean baseline
    return (
        f"attack={cfg.attack.name} with no attacker (malicious_fraction="
        f"{_show(cfg.malicious_fraction)} of {cfg.num_clients} clients, fake_clients="
        f"{cfg.fake_clients}): the run is clean; set malicious_fraction or fake_clients"
    )


def alie_z_warning(z: float, where: str) -> str | None:
    """The warning for an ALIE z below ``MIN_ALIE_Z`` in size (``where``: how it was set)."""
    if abs(z) >= MIN_ALIE_Z:
        return None
    return (
        f"attack=alie with z={_show(z)} ({where}): the attackers send almost the benign "
        f"mean, a near no-op; set attack.z (the paper's experiments also used 1.5)"
    )


def _small_alie_z(cfg: DictConfig, threat: ThreatModel) -> str | None:
    if cfg.attack.name != "alie" or not threat.malicious_per_round:
        return None
    if cfg.attack.get("z") is not None:
        return alie_z_warning(float(cfg.attack.z), "attack.z")
    from clients.attacks.alie import alie_z

    n, f = cfg.clients_per_round, threat.malicious_per_round
    try:
        z = alie_z(n, f)
    except ValueError:  # no z_max for this n and f: the attack reports it in the round
        return None
    return alie_z_warning(z, f"the paper's z_max for n={n}, f={f}")


def _boost_of_one(cfg: DictConfig, asked: Collection[str]) -> str | None:
    """A boost that resolves to 1 although the config or the command line set it."""
    if "boost" not in cfg.attack or cfg.attack.boost != 1:
        return None
    raw = OmegaConf.to_container(cfg.attack, resolve=False).get("boost")  # type: ignore[union-attr]
    named = _named(asked, "attack.boost")
    if not (isinstance(raw, str) and "${" in raw) and not named:
        return None
    given = raw if isinstance(raw, str) else named[0].partition("=")[2]
    return f"attack.boost={given} is 1: the update is not boosted"


def start_warnings(cfg: DictConfig, threat: ThreatModel, asked: Collection[str] = ()) -> list[str]:
    """The run's set-up warnings from its config. ``asked``: the overrides typed for it,
    where known: a boost typed is a boost asked for, and a malicious_fraction (or
    fake_clients) typed as 0 is a clean baseline asked for (a sweep's first point)."""
    found = (
        _no_attackers(cfg, threat, asked),
        _small_alie_z(cfg, threat),
        _boost_of_one(cfg, asked),
    )
    return [w for w in found if w is not None]


def end_warnings(warned: list[str], effective: Mapping[str, Any]) -> list[str]:
    """``warned`` and what the rounds showed: ALIE's z as computed each round (client
    sampling changes n and f) when the start did not already warn about it."""
    z = effective.get("attack.z")
    largest = z.get("max") if isinstance(z, dict) else z
    smallest = z.get("min") if isinstance(z, dict) else z
    if largest is None or any(w.startswith("attack=alie with z=") for w in warned):
        return list(warned)
    size = max(abs(largest), abs(smallest))
    extra = alie_z_warning(size, "as computed in every attacked round")
    return [*warned, extra] if extra else list(warned)
