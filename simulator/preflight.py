"""Check the command line before Hydra starts: bad input never creates an output directory.

Every override is parsed and every point of a sweep that differs in one value is composed
and validated. A failure is printed as one line naming the key, the value and the
constraint, and the process exits with status 2 (no traceback). A single run's config,
composed here with Hydra's own node, is the one the run uses (``simulator.main``): Hydra
does not compose it again.
"""

from __future__ import annotations

import copy
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from simulator.config import ConfigError, check_values, unknown_key_message, validate
from simulator.run_names import is_path_key, register_resolver
from simulator.schema import GROUPS

register_resolver()  # ${oleander_run_name:}: hydra.sweep.subdir

CONFIG_NAME = "config"
# Hydra's job name under ``hydra.main`` in simulator/main.py: it names the run's log file.
JOB_NAME = "main"
SWITCHES = ("progress", "verbose")  # the boolean top-level keys
# Flags after which Hydra only prints something (help, config, shell completion).
_INFO_FLAGS = {
    "-h", "--help", "--hydra-help", "--version", "-c", "--cfg", "-i", "--info",
    "-sc", "--shell-completion", "-p", "--package", "--resolve",
    "-cp", "--config-path", "-cn", "--config-name", "-cd", "--config-dir",
}  # fmt: skip


def _config_dir() -> str:
    """``conf/``: packaged as ``simulator/conf`` when installed, or the repository's own."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / f"{CONFIG_NAME}.yaml").is_file():
            return str(candidate)
    raise RuntimeError(f"Oleander's conf/ directory is missing (looked beside {here})")


CONFIG_DIR = _config_dir()


def fail(message: str, status: int = 2) -> NoReturn:
    """Print ``oleander: error: message`` on stderr and exit (no traceback)."""
    print(f"oleander: error: {message}", file=sys.stderr)
    raise SystemExit(status)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text)


def composition_message(error: Exception) -> str:
    """One line for a Hydra composition error: the key, the value, the constraint."""
    text = str(error)
    if "Config group override must be a string" in text:
        return "a config group needs an option name, not a number or null (see oleander --help)"
    if isinstance(error, MissingConfigException) or "Could not find" in text:
        found = re.search(r"Could not find '([^/']+)/([^']+)'", text)
        options = re.findall(r"^\t(\S+)$", text, flags=re.MULTILINE)
        if found:
            group, value = found.groups()
            choice = f": choose one of {', '.join(options)}" if options else ""
            return f"{group}={value}: no such {group}{choice}"
        return _first_line(text)
    cause = error.__cause__
    unknown = re.search(r"Could not override '([^']+)'.*use \+[^=\s]+=(.*)", text, re.DOTALL)
    if unknown:
        key, value = unknown.groups()
        node = getattr(cause, "parent_node", None)
        node = node if isinstance(node, DictConfig) else DictConfig({})
        return unknown_key_message(key, value.strip(), node)
    present = re.search(
        r"An item is already at '([^']+)'.*remove \+ prefix: '([^']*)'", text, re.DOTALL
    )
    if present:
        key, plain = present.groups()
        return f"+{plain}: {key} is already set; change it without the +: {plain}"
    if "Error merging override" in text and isinstance(cause, OmegaConfBaseException):
        override = text.split("Error merging override", 1)[1].strip()
        key = getattr(cause, "full_key", None) or override.split("=", 1)[0]
        value = override.split("=", 1)[1] if "=" in override else "?"
        reason = _first_line(str(cause))
        converted = re.search(r"could not be converted to (\w+)", reason)
        if converted:
            reason = f"must be of type {converted.group(1).lower()}"
        return f"{key}={value}: {reason}"
    return _first_line(text)


def _points(overrides: list[str]) -> list[list[str]]:
    """Override lists to check: the first value of every sweep, then each other value alone."""
    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(overrides)
    except HydraException as error:
        raise ConfigError(_first_line(str(error))) from None
    choices: list[list[str]] = []
    for override in parsed:
        if override.is_sweep_override():
            key = override.get_key_element()
            if is_path_key(key.lstrip("+~")):
                # paths never name a run directory: the points would share one
                raise ConfigError(
                    f"{override.input_line}: a path cannot be swept; run one sweep per "
                    f"location, each with its own hydra.sweep.dir"
                )
            try:
                values = list(override.sweep_string_iterator())
            except Exception:  # interval sweeps (optimisers) have no finite list of values
                return []
            choices.append([f"{key}={value}" for value in values])
        else:
            choices.append([override.input_line])
    base = [c[0] for c in choices]
    points = [base]
    for i, options in enumerate(choices):
        for option in options[1:]:
            points.append([*base[:i], option, *base[i + 1 :]])
    return points


def _check_switches(overrides: list[str]) -> None:
    """``progress=-10`` would be read as true, ``dataset=null`` as no group: refuse both."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException:
        return
    for override in parsed:
        if override.is_sweep_override():
            continue
        key = override.get_key_element().lstrip("+~")
        value = override.value()
        if key in SWITCHES and not isinstance(value, bool):
            raise ConfigError(f"{override.input_line}: must be true or false")
        if key in GROUPS and not isinstance(value, str):
            raise ConfigError(
                f"{override.input_line}: {key} needs an option name (oleander --help)"
            )


def _refuse_sweeps(overrides: list[str]) -> None:
    """A sweep (``a,b`` or ``range(...)``) in a single run: say that it needs ``-m``."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException:
        return  # reported with the other parse errors
    for override in parsed:
        if override.is_sweep_override():
            line = override.input_line
            raise ConfigError(f"{line}: a sweep runs with -m (oleander -m {line} ...)")


def compose_point(overrides: list[str]) -> DictConfig:
    """Compose ``conf/`` with ``overrides``, Hydra's node included; ``ConfigError`` if it fails."""
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3", job_name=JOB_NAME):
            return compose(config_name=CONFIG_NAME, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(composition_message(error)) from None


def job_config(cfg: DictConfig) -> DictConfig:
    """The run's own config: ``cfg`` without Hydra's node (a copy, as Hydra hands it over)."""
    job = copy.deepcopy(cfg)
    with open_dict(job):
        job.pop("hydra", None)
    return job


def check_point(overrides: list[str]) -> DictConfig:
    """Compose ``conf/`` with ``overrides`` and validate it; ``ConfigError`` if it fails."""
    cfg = job_config(compose_point(overrides))
    validate(cfg)
    return cfg


def _passing(
    points: Mapping[int, list[str] | DictConfig],
    check: Callable[[DictConfig], None],
    multirun: bool,
) -> dict[int, DictConfig]:
    """The points (overrides to compose, or composed configs) that pass ``check``, composed.

    ``ConfigError`` for the first that fails, but in a sweep, values that fit alone and
    not together are skipped points.
    """
    passed: dict[int, DictConfig] = {}
    for i, point in points.items():
        try:
            cfg = compose_point(point) if isinstance(point, list) else point
            check(job_config(cfg))
        except ConfigError as error:
            if not (multirun and error.combination):
                raise
            continue
        passed[i] = cfg
    return passed


def preflight(args: Sequence[str]) -> DictConfig | None:
    """Exit with status 2 and one line if the command line cannot run.

    Returns a single run's composed and validated config, Hydra's node included (None for
    a sweep and for Hydra's own flags, which Hydra composes itself).
    """
    if any(arg.split("=", 1)[0] in _INFO_FLAGS for arg in args):
        return None
    multirun = any(arg in ("-m", "--multirun") for arg in args)
    overrides = [arg for arg in args if not arg.startswith("-")]
    try:
        _check_switches(overrides)
        if not multirun:
            _refuse_sweeps(overrides)
        points = _points(overrides)
        # First what the config alone tells (no torch, no data libraries: a typo is
        # answered at once), then the output directory, then the components themselves.
        composed = _passing(dict(enumerate(points)), check_values, multirun)
        if points:
            check_output_dir(composed.get(0, points[0]), multirun)
        passed = _passing(dict(composed), validate, multirun)
    except ConfigError as error:
        fail(str(error))
    except Exception as error:
        fail(composition_message(error) or type(error).__name__)
    return None if multirun else passed.get(0)


def check_output_dir(point: DictConfig | list[str], multirun: bool) -> None:
    """Prove the run's (or the sweep's) output directory can be created and written.

    ``point``: the composed config (Hydra's node included) or its overrides. Runs after
    the values are checked and before the components are built: bad input leaves nothing
    behind (the probe file is removed at once), and an output directory that cannot be
    written is reported before torch is imported or any data is loaded.
    """
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        cfg = compose_point(point) if isinstance(point, list) else point
        path = Path(str(OmegaConf.select(cfg, key))).expanduser()
    except Exception:
        return
    # Probe the nearest existing folder on the path: nothing is created where Hydra will
    # create the run's own directory (its name may hold the time of day).
    base = path
    while not base.exists() and base != base.parent:
        base = base.parent
    try:
        if not base.is_dir():
            raise NotADirectoryError(20, "Not a directory")
        probe = base / f".oleander-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ConfigError(
            f"{key}={path}: cannot be written ({error.strerror or error}); choose another directory"
        ) from None
