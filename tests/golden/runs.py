"""Golden runs: per-round metrics of a fixed set of configs, kept equal while code moves.

Each config runs 5 rounds on digits. Together they cover every rule, every detector,
every attack family (colluding attacks, data poisoning, non-finite updates),
pre-aggregation, client sampling, injected faults, both knowledge levels, example
weighting, the backdoor metric, the attack window and fake clients.

Record (only when a change is meant to alter results, in the same commit that says so)::

    python -m tests.golden.runs --record
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

DATA = Path(__file__).with_name("golden_runs.json")
BASE = ("num_rounds=5", "progress=false", "checkpoint_every=0")
# name -> overrides (beyond BASE)
CONFIGS: dict[str, tuple[str, ...]] = {
    "fedavg": (),
    "fedavg_logreg_steps": ("model=logreg", "local_steps=3", "momentum=0.5"),
    "krum_sign_flip": ("strategy=krum", "attack=sign_flip", "malicious_fraction=0.2"),
    # ALIE with z = 1.5 (the paper's fixed z): its z_max is 0 at n = 10, f = 2 (a no-op)
    "multikrum_alie": (
        "strategy=multikrum", "attack=alie", "attack.z=1.5", "malicious_fraction=0.2",
    ),
    "median_ipm": ("strategy=median", "attack=ipm", "malicious_fraction=0.2"),
    "trimmed_mean_fang_trmean": (
        "strategy=trimmed_mean", "attack=fang_trmean", "malicious_fraction=0.2",
    ),
    "bulyan_gaussian": ("strategy=bulyan", "attack=gaussian", "malicious_fraction=0.1"),
    "geometric_median_scaling": (
        "strategy=geometric_median", "attack=scaling", "malicious_fraction=0.2",
    ),
    "centered_clipping_minmax": (
        "strategy=centered_clipping", "attack=minmax", "malicious_fraction=0.2",
    ),
    "norm_bound_minsum": ("strategy=norm_bound", "attack=minsum", "malicious_fraction=0.2"),
    "krum_fang_krum": ("strategy=krum", "attack=fang_krum", "malicious_fraction=0.2"),
    "krum_fang_krum_partial": (
        "strategy=krum", "attack=fang_krum", "attack.knowledge=partial",
        "malicious_fraction=0.2", "model=logreg",
    ),
    "fltrust_backdoor_boost": (
        "strategy=fltrust", "attack=backdoor", "malicious_fraction=0.2",
        "attack.boost=5",
    ),
    "fedavg_backdoor": ("attack=backdoor", "malicious_fraction=0.1"),
    "fedavg_label_flip": ("attack=label_flip", "malicious_fraction=0.3"),
    "median_label_flip_targeted": (
        "strategy=median", "attack=label_flip", "attack.source=1",
        "attack.target=7", "malicious_fraction=0.3",
    ),
    "fedavg_nonfinite": ("attack=nonfinite", "malicious_fraction=0.2"),
    "median_nnm_alie_full": (
        "strategy=median", "pre=nnm", "attack=alie", "attack.knowledge=full", "attack.z=1.5",
        "malicious_fraction=0.2",
    ),
    "krum_bucketing_sign_flip": (
        "strategy=krum", "pre=bucketing", "attack=sign_flip", "malicious_fraction=0.1",
    ),
    "trimmed_mean_sampling_ipm": (
        "strategy=trimmed_mean", "num_clients=20", "clients_per_round=8", "attack=ipm",
        "attack.epsilon=2", "malicious_fraction=0.2",
    ),
    "centered_clipping_sampling": (
        "strategy=centered_clipping", "num_clients=20", "clients_per_round=6",
        "attack=sign_flip", "malicious_fraction=0.1", "strategy.tau=0.5",
    ),
    "median_faults": ("strategy=median", "faults.client_failure_rate=0.2"),
    "fedavg_gaussian_fang_server_lr": (
        "attack=gaussian", "attack.variant=fang", "malicious_fraction=0.2",
        "strategy.server_lr=0.5",
    ),
    "multikrum_minmax_unit": (
        "strategy=multikrum", "attack=minmax", "attack.perturbation=unit",
        "malicious_fraction=0.2", "strategy.num_malicious=3",
    ),
    "fltrust_dirichlet": ("strategy=fltrust", "partition=dirichlet", "num_clients=8"),
    # The second wave of defences (issue 12) and the weighting setting.
    "foolsgold_alie": (
        "strategy=foolsgold", "attack=alie", "attack.z=1.5", "malicious_fraction=0.2",
    ),
    "rlr_backdoor": ("strategy=rlr", "attack=backdoor", "malicious_fraction=0.3"),
    "adaptive_clipping_sampling_sign_flip": (
        "strategy=adaptive_clipping", "num_clients=20", "clients_per_round=8",
        "attack=sign_flip", "malicious_fraction=0.2",
    ),
    "weak_dp_scaling": (
        "strategy=norm_bound", "strategy.noise_std=0.01", "attack=scaling",
        "malicious_fraction=0.2",
    ),
    "flame_backdoor_boost": (
        "strategy=flame", "attack=backdoor", "attack.boost=10", "malicious_fraction=0.1",
    ),
    "median_detect_flame_backdoor_boost": (
        "strategy=median", "detect=flame", "attack=backdoor", "attack.boost=10",
        "malicious_fraction=0.1",
    ),
    "dnc_sign_flip": ("strategy=dnc", "attack=sign_flip", "malicious_fraction=0.3"),
    "fedavg_detect_dnc_ipm": ("detect=dnc", "attack=ipm", "malicious_fraction=0.2"),
    "signguard_scaling": ("strategy=signguard", "attack=scaling", "malicious_fraction=0.3"),
    "trimmed_mean_detect_signguard_minmax": (
        "strategy=trimmed_mean", "detect=signguard", "attack=minmax",
        "malicious_fraction=0.2",
    ),
    "fedavg_detect_fldetector_sign_flip": (
        "detect=fldetector", "detect.window=1", "attack=sign_flip", "malicious_fraction=0.2",
    ),
    "multikrum_by_examples_dirichlet": (
        "strategy=multikrum", "strategy.weighting=examples", "partition=dirichlet",
    ),
    # The second wave of attacks (issue 13), on a non-IID split.
    "fedavg_dba_bias": ("attack=dba", "malicious_fraction=0.2", "partition=bias"),
    "median_neurotoxin": ("strategy=median", "attack=neurotoxin", "malicious_fraction=0.2",
                          "attack.top_k_percent=5"),
    "norm_bound_pgd_backdoor_window": (
        "strategy=norm_bound", "attack=backdoor", "attack.project_norm=0.5",
        "malicious_fraction=0.2", "attack.start_round=2", "attack.stop_round=4",
    ),
    "fedavg_edge_case": ("attack=edge_case", "malicious_fraction=0.2"),
    "centered_clipping_mimic_bias": (
        "strategy=centered_clipping", "attack=mimic", "malicious_fraction=0.2",
        "partition=bias",
    ),
    "krum_tailored": ("strategy=krum", "attack=tailored", "malicious_fraction=0.2"),
    "fltrust_mpaf_fake_clients": (
        "strategy=fltrust", "attack=mpaf", "fake_clients=2", "clients_per_round=12",
        "attack.scale=null",
    ),
}  # fmt: skip

ROUND_KEYS = (
    "test_accuracy",
    "test_loss",
    "train_loss",
    "attack_success_rate",
    "detection_precision",
    "detection_recall",
    "clients_sampled",
    "malicious_sampled",
    "clients_trained",
    "failures",
    "rejected",
)
CLIENT_KEYS = ("client", "malicious", "num_examples", "update_norm", "weight")


def _number(text: str) -> float | None:
    return None if text == "" else float(text)


def run(name: str, output_dir: Path) -> dict[str, Any]:
    """Run the golden config ``name`` into ``output_dir``; its per-round numbers."""
    from simulator.main import simulate
    from tests.conftest import compose_config

    simulate(compose_config(*BASE, *CONFIGS[name]), output_dir)
    with open(output_dir / "rounds.csv", newline="") as handle:
        rounds = [{k: _number(r[k]) for k in ROUND_KEYS} for r in csv.DictReader(handle)]
    with open(output_dir / "clients.csv", newline="") as handle:
        clients = [
            {
                "round": int(r["round"]),
                **{k: _number(r[k]) for k in CLIENT_KEYS},
                "flagged": r["flagged"] or None,  # the detector that flagged the client
            }
            for r in csv.DictReader(handle)
        ]
    return {"rounds": rounds, "clients": clients}


def differences(expected: Any, actual: Any, where: str = "", tol: float = 1e-6) -> list[str]:
    """Where ``actual`` differs from ``expected`` (numbers to ``tol``, relative or absolute)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        if expected.keys() != actual.keys():
            return [f"{where}: keys {sorted(expected)} != {sorted(actual)}"]
        return [d for k in expected for d in differences(expected[k], actual[k], f"{where}.{k}")]
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{where}: {len(expected)} entries != {len(actual)}"]
        return [
            d
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for d in differences(e, a, f"{where}[{i}]")
        ]
    if isinstance(expected, float) and isinstance(actual, float):
        if math.isnan(expected) and math.isnan(actual):
            return []
        if math.isclose(expected, actual, rel_tol=tol, abs_tol=tol):
            return []
    elif expected == actual:
        return []
    return [f"{where}: expected {expected!r}, got {actual!r}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="rewrite golden_runs.json")
    parser.add_argument("names", nargs="*", help="configs to run (default: all)")
    args = parser.parse_args(argv)
    names = args.names or list(CONFIGS)
    stored = json.loads(DATA.read_text()) if DATA.is_file() else {}
    failed = 0
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            result = run(name, Path(tmp))
        if args.record:
            stored[name] = result
            print(f"recorded {name}")
            continue
        diffs = differences(stored.get(name), result, name)
        failed += bool(diffs)
        print(f"{'ok  ' if not diffs else 'DIFF'} {name}", *diffs[:5], sep="\n  ")
    if args.record:
        ordered = {k: stored[k] for k in CONFIGS if k in stored}
        DATA.write_text(json.dumps(ordered, indent=1, sort_keys=False) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
