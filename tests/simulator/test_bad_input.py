"""Bad input at the entry point: exit 2, one line naming key, value and constraint, no writes.

Random wrong overrides (wrong types, out-of-range numbers, unknown group options and keys,
missing data paths, impossible rule preconditions, models that do not fit the data) are
thrown at ``simulator.main.cli`` in-process. Every one must end in ``SystemExit(2)`` with
one or two lines on stderr, the first ``oleander: error: KEY=VALUE: constraint``, no
traceback, and nothing written into the (existing) ``hydra.run.dir``.

Every override generated here is invalid by construction. ``cli`` would start a real run
for a valid one, so each example first asks the preflight alone: if it accepts the
override, the test fails there and names it (the preflight let a bad value through).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra.utils import instantiate
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from omegaconf import DictConfig, OmegaConf

from simulator.components import attack_site
from simulator.main import cli
from simulator.preflight import preflight
from simulator.schema import build
from tests.conftest import compose_config, group_entries


def checks(max_examples: int) -> settings:
    """Hypothesis settings; about 150 examples over all the tests of this file.

    capsys is function-scoped, hence the suppressed health check: each example empties it
    with readouterr() before it runs, and the module-scoped run directory is compared
    before and after every example, so nothing carries over between examples. No shrink
    phase: every example costs one or two Hydra compositions, shrinking a failure took
    minutes, and the failure message already names the whole (short) command line.
    """
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
    )


GROUPS = ("dataset", "partition", "model", "strategy", "pre", "detect", "attack", "engine",
          "logger")  # fmt: skip
OPTIONS = {group: group_entries(group) for group in GROUPS}
DEFAULT = compose_config()
# The training examples of the default data set (digits, test_fraction 0.25): neither the
# clients nor a root set can number more.
DIGITS_TRAIN = int(instantiate(DEFAULT.dataset).load(DEFAULT.seed).train.y.shape[0])
DEFAULT_N = int(DEFAULT.clients_per_round)
COLLUDING = tuple(  # attacks computed by the server-side adversary
    entry
    for entry in OPTIONS["attack"]
    if attack_site(build("attack", compose_config(f"attack={entry}").attack)) == "adversary"
)
IMAGE_DATASETS = tuple(entry for entry in OPTIONS["dataset"] if entry != "digits")
RESERVED = {"true", "false", "null", "nan", "inf", "yes", "no", "on", "off", "y", "n"}


def _walk(node: DictConfig, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key in node:
        keys.add(f"{prefix}{key}")
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            keys |= _walk(child, f"{prefix}{key}.")
    return keys


KNOWN_KEYS = _walk(DEFAULT)  # the unknown keys below extend the default config
NAMES = {part for key in KNOWN_KEYS for part in key.split(".")} | {
    "hydra",
    "experiment",
    "schema",
}


# The check ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """A command line that cannot run, and what its error line must name."""

    overrides: tuple[str, ...]
    keys: tuple[str, ...]  # the line names one of these (a key, or a group)
    value: str | tuple[str, ...] | None  # ... and this value (or one of these; None: the
    # key is enough, e.g. for unknown keys)

    def __str__(self) -> str:
        return "oleander " + " ".join(self.overrides)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bad_input") / "run"
    path.mkdir()
    (path / "marker.txt").write_text("an earlier run's file\n")
    return path


@pytest.fixture(scope="module")
def empty_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("empty_data_dir")


def _snapshot(path: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(path)): p.read_bytes() if p.is_file() else None
        for p in sorted(path.rglob("*"))
    }


def _forms(value: str) -> set[str]:
    """The ways an error line may print ``value``: as typed, or as the number it parses to."""
    forms = {value, value.replace(",", ", ")}  # lists print with a space after commas
    if value == "null":
        forms.add("None")  # Python's spelling
    try:
        number = float(value)
    except ValueError:
        return forms
    forms |= {str(number), repr(number)}
    if math.isfinite(number) and number == int(number):
        forms.add(str(int(number)))
    return forms


def _named(text: str, token: str, follow: str) -> bool:
    """``token`` in ``text`` as a whole word (not inside a longer key or number)."""
    pattern = rf"(?<![\w.+\-]){re.escape(token.lower())}(?={follow}|$)"
    return re.search(pattern, text.lower()) is not None


def check_rejected(case: Case, run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [*case.overrides, f"hydra.run.dir={run_dir}"]
    before = _snapshot(run_dir)
    capsys.readouterr()
    # The guard: cli() would start a real run if the preflight let the input through.
    try:
        preflight(argv)
    except SystemExit:
        pass
    except Exception as error:  # a crash in the preflight is a finding too
        pytest.fail(f"{case}: the preflight raised {type(error).__name__}: {error}")
    else:
        pytest.fail(f"{case}: the preflight accepted this invalid input (it would run)")
    capsys.readouterr()

    with pytest.raises(SystemExit) as exited:
        cli(argv)
    out, err = capsys.readouterr()
    shown = f"{case}\n--- stderr ---\n{err}--- stdout ---\n{out}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert exited.value.code == 2, f"exit status {exited.value.code}, not 2: {shown}"
    assert 1 <= len(lines) <= 2, f"{len(lines)} lines on stderr: {shown}"
    assert lines[0].startswith("oleander: error: "), f"not one error line: {shown}"
    assert "Traceback" not in out + err, f"a traceback: {shown}"
    assert any(_named(err, key, r"[=:\s'\"\[]") for key in case.keys), (
        f"the error names none of {case.keys}: {shown}"
    )
    if case.value is not None:
        # A list or mapping may come back in Python's spelling: {'a': 1} for {a:1}.
        bare = re.sub(r"([:,])\s+", r"\1", re.sub(r"['\"]", "", err))
        assert any(
            _named(text, form, r"[\s:;,)'\"]")
            for text in (err, bare)
            for value in ((case.value,) if isinstance(case.value, str) else case.value)
            for form in _forms(value)
        ), f"the error does not show the value {case.value!r}: {shown}"
    assert _snapshot(run_dir) == before, f"files written into {run_dir}: {shown}"


# Values ---------------------------------------------------------------------------------


def _is_number(text: str) -> bool:
    try:
        float(text)  # "infinity" reads as a float too
    except ValueError:
        return False
    return True


identifiers = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True).filter(
    lambda s: s not in RESERVED and not _is_number(s)
)
texts = identifiers.filter(lambda s: s not in NAMES)


def ints(low: int | None = None, high: int | None = None) -> st.SearchStrategy[str]:
    return st.integers(min_value=low, max_value=high).map(str)


def floats(low: float | None = None, high: float | None = None) -> st.SearchStrategy[str]:
    return st.floats(min_value=low, max_value=high, allow_nan=False).map(repr)


NEGATIVE = -math.ulp(0.0)  # the negative float nearest 0 (-0.0 equals 0.0 and is valid)
NON_FINITE = st.sampled_from(["nan", "inf", "-inf"])
LISTS = st.lists(st.integers(-5, 5), min_size=0, max_size=3).map(
    lambda xs: "[" + ",".join(map(str, xs)) + "]"
)
DICTS = st.builds(lambda k, v: f"{{{k}:{v}}}", texts, st.integers(0, 9))
FRACTIONS_OF_ONE = st.floats(0.01, 100).filter(lambda x: x != int(x)).map(repr)
BOOL_WORDS = st.sampled_from(["true", "false"])


def wrong_types(kind: str, optional: bool) -> st.SearchStrategy[str]:
    """Values Hydra parses as something other than ``kind``."""
    common = [texts, LISTS, DICTS]
    if not optional:
        common.append(st.just("null"))
    if kind == "int":
        return st.one_of(
            *common,
            BOOL_WORDS,
            st.just(""),
            FRACTIONS_OF_ONE,
            st.integers(-3, 3).map(lambda i: f"{i}.0"),
        )
    if kind == "float":
        return st.one_of(*common, BOOL_WORDS, st.just(""))
    if kind == "bool":
        # OmegaConf also reads 0/1 and yes/no/on/off as booleans; nothing else is one.
        return st.one_of(*common, st.just(""), FRACTIONS_OF_ONE, ints(2) | ints(high=-1))
    return st.one_of(LISTS, DICTS, *([] if optional else [st.just("null")]))  # str


def positive_float_out() -> st.SearchStrategy[str]:
    """Outside ``> 0``."""
    return floats(high=0.0) | NON_FINITE


def nonnegative_float_out() -> st.SearchStrategy[str]:
    """Outside ``>= 0``."""
    return floats(high=NEGATIVE) | NON_FINITE


def unit_out(low_closed: bool = True, high_closed: bool = False) -> st.SearchStrategy[str]:
    """Outside ``[0, 1)`` (or ``(0, 1)``, ``[0, 1]``)."""
    low = floats(high=NEGATIVE) if low_closed else floats(high=0.0)
    high = st.floats(min_value=1.0, allow_nan=False, allow_infinity=False)
    if high_closed:
        high = high.filter(lambda x: x > 1.0)
    return low | high.map(repr) | NON_FINITE


def bad_devices() -> st.SearchStrategy[str]:
    return (
        texts.filter(lambda s: s not in ("cpu", "cuda"))
        | st.sampled_from(["CPU", "gpu", "cuda:", "cuda:x", "cuda:-1", "mps", "tpu"])
        | st.integers(64, 10**6).map(lambda i: f"cuda:{i}")
    )


def bad_knowledge() -> st.SearchStrategy[str]:
    return texts.filter(lambda s: s not in ("partial", "full")) | st.sampled_from(
        ["Partial", "FULL", "none"]
    )


@dataclass(frozen=True)
class Knob:
    """A config key, its type, and values outside its range (None: any value of the type)."""

    key: str
    kind: str
    out_of_range: st.SearchStrategy[str] | None
    setup: tuple[str, ...] = ()  # overrides under which the key exists and applies
    optional: bool = False  # null is a valid value
    setups: tuple[tuple[str, ...], ...] = ()  # alternatives to setup, one drawn

    def draw_setup(self, draw: st.DrawFn) -> tuple[str, ...]:
        return draw(st.sampled_from(self.setups)) if self.setups else self.setup

    @property
    def names(self) -> tuple[str, ...]:
        """What the error line may call it: the key, its last part, or (num_clients) the
        clients_per_round interpolated from it."""
        extra = ("clients_per_round",) if self.key == "num_clients" else ()
        return (self.key, self.key.rsplit(".", 1)[-1], *extra)


HUGE = 10**30
C_INT = 2**31  # torch.set_num_threads and process pools take a C int
C_LONG = 2**63  # tensor sizes

TOP_LEVEL = [
    Knob("seed", "int", ints(high=-1)),
    Knob(
        "num_clients",
        "int",
        ints(high=0) | ints(DIGITS_TRAIN + 1, 10**6) | ints(C_LONG, HUGE),
    ),
    Knob("clients_per_round", "int", ints(high=0) | ints(DEFAULT_N + 1, HUGE)),
    Knob("num_rounds", "int", ints(high=0)),
    Knob("local_epochs", "int", ints(high=0)),
    Knob("local_steps", "int", ints(high=0), optional=True),
    Knob("batch_size", "int", ints(high=0)),
    Knob("lr", "float", positive_float_out()),
    Knob("momentum", "float", unit_out()),
    Knob("weight_decay", "float", nonnegative_float_out()),
    Knob("malicious_fraction", "float", unit_out()),
    Knob("fake_clients", "int", ints(high=-1) | ints(2**20, HUGE)),  # ids: <= 2^20 clients
    Knob("device", "str", bad_devices()),
    Knob("torch_threads", "int", ints(high=0) | ints(C_INT, HUGE)),
    Knob("eval_batch_size", "int", ints(high=0)),
    Knob("checkpoint_every", "int", ints(high=-1)),
    Knob("faults.client_failure_rate", "float", unit_out()),
    Knob("progress", "bool", None),
    Knob("verbose", "bool", None),
]
IN_GROUPS = [
    Knob("strategy.server_lr", "float", positive_float_out()),
    Knob(
        "strategy.num_malicious",
        "int",
        ints(high=-1) | ints(DEFAULT_N + 1, HUGE),  # more attackers than clients per round
        optional=True,
    ),
    Knob("strategy.root_size", "int", ints(high=-1) | ints(DIGITS_TRAIN, HUGE)),
    Knob("dataset.test_fraction", "float", unit_out(low_closed=False)),
    Knob("partition.alpha", "float", positive_float_out(), setup=("partition=dirichlet",)),
    Knob("partition.min_partition_size", "int", ints(high=-1), setup=("partition=dirichlet",)),
    Knob("partition.bias", "float", unit_out(high_closed=True), setup=("partition=bias",)),
    Knob(
        "partition.num_shards_per_partition",
        "int",
        ints(high=0),
        setup=("partition=shard",),
        optional=True,
    ),
    Knob("pre.bucket_size", "int", ints(high=0), setup=("pre=bucketing",)),
    Knob("engine.workers", "int", ints(high=-1) | ints(C_INT, HUGE)),
    Knob("engine.num_cpus", "float", positive_float_out(), setup=("engine=ray",)),
    Knob("engine.num_gpus", "float", nonnegative_float_out(), setup=("engine=ray",)),
    Knob(
        "attack.knowledge",
        "str",
        bad_knowledge(),
        optional=True,
        setups=tuple((f"attack={attack}",) for attack in COLLUDING),
    ),
    # An attack's own parameters (checked by running the attack once on stand-in updates).
    Knob("attack.scale", "float", None, setup=("attack=sign_flip",)),
    Knob("attack.epsilon", "float", None, setup=("attack=ipm",)),
]
KNOBS = st.sampled_from(TOP_LEVEL + IN_GROUPS)


@st.composite
def wrong_type_cases(draw: st.DrawFn) -> Case:
    knob = draw(KNOBS)
    value = draw(wrong_types(knob.kind, knob.optional))
    return Case((*knob.draw_setup(draw), f"{knob.key}={value}"), knob.names, value)


@st.composite
def out_of_range_cases(draw: st.DrawFn) -> Case:
    knob = draw(KNOBS.filter(lambda k: k.out_of_range is not None))
    assert knob.out_of_range is not None
    value = draw(knob.out_of_range)
    return Case((*knob.draw_setup(draw), f"{knob.key}={value}"), knob.names, value)


@st.composite
def unknown_group_option_cases(draw: st.DrawFn) -> Case:
    group = draw(st.sampled_from(GROUPS))
    options = OPTIONS[group]
    value = draw(
        st.one_of(
            identifiers.filter(lambda s: s not in options),
            st.sampled_from(["null", "true", "1", "1.5", "[]", f"{options[0]}x"]),
            # A list picks several entries of a group; each of these groups takes one.
            st.lists(st.sampled_from(options), min_size=2, max_size=3).map(
                lambda xs: "[" + ",".join(xs) + "]"
            ),
        )
    )
    return Case((f"{group}={value}",), (group,), value)


@st.composite
def unknown_key_cases(draw: st.DrawFn) -> Case:
    parent = draw(st.sampled_from(["", *GROUPS, "strategy.rule"]))
    name = draw(texts.filter(lambda s: f"{parent}.{s}".lstrip(".") not in KNOWN_KEYS))
    key = f"{parent}.{name}".lstrip(".")
    prefix = draw(st.sampled_from(["", "+", "++"]))  # + adds a key; it still must exist
    value = draw(ints(0, 9) | texts)
    return Case((f"{prefix}{key}={value}",), (key, name), None)


@st.composite
def missing_data_path_cases(draw: st.DrawFn, empty_dir: Path) -> Case:
    dataset = draw(st.sampled_from(IMAGE_DATASETS))
    path = draw(
        st.one_of(
            identifiers.map(lambda s: f"/no/such/{s}"),
            identifiers.map(lambda s: f"no_such_{s}/data"),
            st.just(str(empty_dir)),  # exists, but holds none of the data set's files
            st.just(str(Path(__file__))),  # a file, not a directory
            st.just(""),
        )
    )
    return Case((f"dataset={dataset}", f"dataset.path={path}"), ("dataset.path",), path)


def _f_min(rule: str, n: int) -> int:
    """The least f that breaks ``rule``'s precondition with n clients per round."""
    if rule == "bulyan":  # n >= 4f + 3
        return 0 if n < 3 else (n - 3) // 4 + 1
    return max(0, -(-(n - 2) // 2))  # krum, multikrum: n > 2f + 2


@st.composite
def rule_precondition_cases(draw: st.DrawFn) -> Case:
    rule = draw(st.sampled_from(["krum", "multikrum", "bulyan"]))
    n = draw(st.integers(1, 40))
    num_clients = n + draw(st.integers(0, 5))
    low = _f_min(rule, n)
    base = (f"strategy={rule}", f"num_clients={num_clients}", f"clients_per_round={n}")
    if n == num_clients and low < n and draw(st.booleans()):
        # f from the threat model: malicious_fraction * n, at least one client honest.
        f = draw(st.integers(low, n - 1))
        attack = draw(st.sampled_from(COLLUDING))
        overrides = (*base, f"attack={attack}", f"malicious_fraction={f / n!r}")
        return Case(overrides, ("strategy",), rule)
    f = draw(st.integers(low, n + 3))
    # f >= n may be refused as strategy.num_malicious's own range before the rule's check.
    keys = ("strategy", "strategy.num_malicious")
    return Case((*base, f"strategy.num_malicious={f}"), keys, (rule, str(f)))


@st.composite
def rule_parameter_cases(draw: st.DrawFn) -> Case:
    """A rule's (or pre-aggregation's) own parameter outside its range."""
    n = DEFAULT_N
    options = [
        ("strategy=trimmed_mean", "strategy.beta", floats(high=NEGATIVE) | floats(0.5)),
        ("strategy=centered_clipping", "strategy.tau", floats(high=0.0)),
        ("strategy=centered_clipping", "strategy.iterations", ints(high=0)),
        ("strategy=norm_bound", "strategy.max_norm", floats(high=0.0)),
        ("strategy=geometric_median", "strategy.nu", floats(high=0.0)),
        ("strategy=multikrum", "strategy.num_selected", ints(high=0) | ints(n + 1, 10**6)),
        ("pre=nnm", "strategy.num_malicious", ints(n, 10**6)),  # NNM needs f < n
    ]
    setup, key, values = draw(st.sampled_from(options))
    value = draw(values)
    name = key.rsplit(".", 1)[1]
    return Case((setup, f"{key}={value}"), (key, name), value)


@st.composite
def combination_cases(draw: st.DrawFn) -> Case:
    kind = draw(st.sampled_from(["per_round", "no_attack", "all_malicious"]))
    n = draw(st.integers(1, 50))
    if kind == "per_round":
        per_round = draw(st.integers(n + 1, 10**6))
        overrides = (f"num_clients={n}", f"clients_per_round={per_round}")
        return Case(overrides, ("clients_per_round",), str(per_round))
    if kind == "no_attack":
        fraction = repr(draw(st.floats(1e-6, 1.0, exclude_max=True)))
        return Case((f"malicious_fraction={fraction}",), ("malicious_fraction",), fraction)
    # Rounds (half up) to every client: nobody honest is left.
    fraction = repr(draw(st.floats((n - 0.5) / n + 1e-9, 1.0, exclude_max=True)))
    attack = draw(st.sampled_from(OPTIONS["attack"]).filter(lambda a: a != "none"))
    overrides = (f"num_clients={n}", f"attack={attack}", f"malicious_fraction={fraction}")
    return Case(overrides, ("malicious_fraction",), fraction)


@st.composite
def sweep_without_multirun_cases(draw: st.DrawFn) -> Case:
    """``key=a,b`` is a sweep; without ``-m`` it cannot run (Hydra says so in 5 lines)."""
    key, values = draw(
        st.sampled_from(
            [
                ("seed", ints(0, 99)),
                ("lr", st.sampled_from(["0.1", "0.01", "0.3"])),
                ("strategy", st.sampled_from(OPTIONS["strategy"])),
                ("attack", st.sampled_from(OPTIONS["attack"])),
            ]
        )
    )
    chosen = draw(st.lists(values, min_size=2, max_size=3, unique=True))
    value = ",".join(chosen)
    return Case((f"{key}={value}",), (key,), value)


INCOMPATIBLE = [  # model, data set: the model's input shape is not the data's
    ("fltrust_cnn", "digits"),
    ("cifar_cnn", "digits"),
    ("fltrust_cnn", "cifar10"),
    ("cifar_cnn", "mnist"),
    ("cifar_cnn", "fashion_mnist"),
]


# Tests ----------------------------------------------------------------------------------
def test_every_top_level_knob_has_bad_values() -> None:
    """The knobs above are exactly the primary config's own keys (a new one needs a row)."""
    own = {key for key in _walk(DEFAULT) if key.split(".")[0] not in GROUPS}
    leaves = {key for key in own if not isinstance(OmegaConf.select(DEFAULT, key), DictConfig)}
    assert leaves == {knob.key for knob in TOP_LEVEL}
    for knob in IN_GROUPS:
        for setup in knob.setups or (knob.setup,):
            assert knob.key in _walk(compose_config(*setup)), (knob.key, setup)


@checks(30)
@given(case=wrong_type_cases())
def test_wrong_type(case: Case, run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    check_rejected(case, run_dir, capsys)


@checks(35)
@given(case=out_of_range_cases())
def test_out_of_range(case: Case, run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    check_rejected(case, run_dir, capsys)


@checks(15)
@given(case=unknown_group_option_cases())
def test_unknown_group_option(
    case: Case, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check_rejected(case, run_dir, capsys)


@checks(15)
@given(case=unknown_key_cases())
def test_unknown_key(case: Case, run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    check_rejected(case, run_dir, capsys)


@checks(10)
@given(data=st.data())
def test_missing_data_path(
    data: st.DataObject, run_dir: Path, empty_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check_rejected(data.draw(missing_data_path_cases(empty_dir)), run_dir, capsys)


@checks(15)
@given(case=rule_precondition_cases())
def test_impossible_rule_precondition(
    case: Case, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check_rejected(case, run_dir, capsys)


@checks(10)
@given(case=rule_parameter_cases())
def test_rule_parameter_out_of_range(
    case: Case, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check_rejected(case, run_dir, capsys)


@checks(10)
@given(case=combination_cases())
def test_values_that_do_not_fit_together(
    case: Case, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check_rejected(case, run_dir, capsys)


@checks(5)
@given(case=sweep_without_multirun_cases())
def test_sweep_without_multirun(
    case: Case, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check_rejected(case, run_dir, capsys)


@checks(5)
@given(pair=st.sampled_from(INCOMPATIBLE))
def test_model_that_does_not_fit_the_data(
    pair: tuple[str, str], run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, dataset = pair
    case = Case((f"dataset={dataset}", f"model={model}"), ("model",), model)
    check_rejected(case, run_dir, capsys)


# Each bad input the random tests found once, kept as a fixed case.
KNOWN = [
    Case(("clients_per_round=20",), ("clients_per_round",), "20"),
    Case(("strategy=krumm",), ("strategy",), "krumm"),
    Case(("strategy=bulyan", "strategy.num_malicious=3"), ("strategy",), "bulyan"),
    Case(("num_clients=2000",), ("num_clients", "clients_per_round"), "2000"),
    Case(
        ("num_clients=9223372036854775808",),
        ("num_clients", "clients_per_round"),
        "9223372036854775808",
    ),
    Case(("strategy.root_size=1347",), ("strategy.root_size",), "1347"),
    Case(("strategy.num_malicious=11",), ("strategy.num_malicious",), "11"),
    Case(("torch_threads=2147483648",), ("torch_threads",), "2147483648"),
    Case(("engine.workers=2147483648",), ("engine.workers",), "2147483648"),
    Case(("engine=ray", "engine.num_cpus=inf"), ("engine.num_cpus",), "inf"),
    Case(("progress=2",), ("progress",), "2"),
    Case(("strategy=null",), ("strategy",), "null"),
    Case(("strategy=[krum,median]",), ("strategy",), "[krum,median]"),
    Case(("strategy=[]",), ("strategy",), "[]"),
    Case(("+lrr=0.1",), ("lrr",), None),
    Case(("+strategy.foo=1",), ("strategy.foo", "foo"), None),
    Case(("attack=sign_flip", "attack.scale=abc"), ("attack.scale", "scale"), "abc"),
    Case(("dataset=mnist", "dataset.path=."), ("dataset.path",), "."),
    Case(("seed=1,2",), ("seed",), "1,2"),
]


@pytest.mark.parametrize("case", KNOWN, ids=lambda case: " ".join(case.overrides))
def test_known_bad_input(case: Case, run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    check_rejected(case, run_dir, capsys)
