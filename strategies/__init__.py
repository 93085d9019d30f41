"""Defences as plain torch: aggregation rules, pre-aggregation, detection, their state.

Every rule takes ``updates``, a float tensor of shape ``(n, d)`` (one flattened client
update per row: client weights minus global weights), and returns an ``Aggregate``.
Pre-aggregation steps return ``Mixed``; detectors return flags; a run's ``Defence``
(``strategies.pipeline``) chains them, with each stage's state across rounds
(``strategies.state``). Nothing here imports Flower or the simulator.
"""

from strategies.adaptive_clipping import AdaptiveClipping
from strategies.base import Aggregate
from strategies.bulyan import bulyan
from strategies.clipping import CenteredClipping, centered_clipping, norm_bound
from strategies.coordinate import median, trimmed_mean
from strategies.dnc import DnC, DnCDetector
from strategies.flame import Flame, FlameDetector
from strategies.fldetector import FLDetector
from strategies.fltrust import fltrust
from strategies.foolsgold import FoolsGold, foolsgold
from strategies.geometric_median import geometric_median
from strategies.krum import krum, multikrum
from strategies.mean import fedavg
from strategies.preaggregation import Mixed, bucketing, nearest_neighbor_mixing
from strategies.rlr import robust_learning_rate
from strategies.signguard import SignGuard, SignGuardDetector

__all__ = [
    "AdaptiveClipping",
    "Aggregate",
    "CenteredClipping",
    "DnC",
    "DnCDetector",
    "FLDetector",
    "Flame",
    "FlameDetector",
    "FoolsGold",
    "Mixed",
    "SignGuard",
    "SignGuardDetector",
    "bucketing",
    "bulyan",
    "centered_clipping",
    "fedavg",
    "fltrust",
    "foolsgold",
    "geometric_median",
    "krum",
    "median",
    "multikrum",
    "nearest_neighbor_mixing",
    "norm_bound",
    "robust_learning_rate",
    "trimmed_mean",
]
