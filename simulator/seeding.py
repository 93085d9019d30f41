"""Every random draw of a run, seeded by ``(seed, stream, ...)``: the one registry of streams.

A draw's seed depends only on the run seed, the draw's stream and its own keys (round,
client id), never on what ran before it, so results do not depend on order, engine or
resumption. Each kind of draw has its own stream in ``Stream``; a new kind of draw gets a
new member (a value no other member has), never a share of another's.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import torch


class Stream(IntEnum):
    """The stream key of each kind of draw (values fixed: changing one changes results)."""

    SAMPLING = 1  # (round): the clients sampled each round
    PARTITION = 2  # the partitioner's own seed; (1): the shuffle of the client pool
    TRAIN = 3  # (round, client): a client's minibatch order
    MODEL = 4  # the initial model's weights
    AGGREGATION = 5  # (round): randomness of pre-aggregation and rules (bucketing's shuffle)
    ROOT = 6  # FLTrust's root set, drawn from the training data
    ROOT_TRAIN = 7  # (round): the server's minibatch order on the root set
    MALICIOUS = 8  # (num_clients): which clients are malicious
    ATTACK = 9  # (round): randomness of a colluding attack
    FAULT = 10  # (round, client): injected client failures
    DETECTION = 11  # (round): randomness of detectors
    POISON = 12  # (client): the examples a malicious client poisons, chosen once per run
    EDGE_CASE = 13  # the edge-case examples' split into attacker and held-out parts
    BASE_MODEL = 14  # the attacker's base model (MPAF's w': a fresh initialisation)
    # Streams inside data loading and partitioning, keyed by the crc32 of a name so that
    # they never meet the small integers above.
    DIGITS_SPLIT = 4137451541  # crc32("data.digits.split")
    PARTITION_SHUFFLE = 352011675  # crc32("partition.shuffle")
    DIRICHLET = 3801172696  # crc32("partition.dirichlet")
    SHARD = 2827339208  # crc32("partition.shard")
    BIAS = 1930463156  # crc32("partition.bias")
    NATURAL_SPLIT = 1415380242  # crc32("data.natural.split"): FEMNIST's per-writer split
    NATURAL = 2641163737  # crc32("partition.natural"): which natural clients take part


def derive_seed(seed: int, *keys: int) -> int:
    """Return a 63-bit seed that depends only on ``seed`` and ``keys``.

    ``numpy.random.SeedSequence`` hashes the whole tuple, so ``(s, 1, 2)`` and
    ``(s, 2, 1)`` give unrelated streams, and nothing depends on call order.
    """
    state = np.random.SeedSequence([int(seed), *(int(k) for k in keys)]).generate_state(2)
    return int((int(state[0]) << 32 | int(state[1])) & 0x7FFF_FFFF_FFFF_FFFF)


def torch_generator(seed: int, stream: Stream, *keys: int) -> torch.Generator:
    """A CPU ``torch.Generator`` for ``stream``, seeded by ``derive_seed(seed, stream, *keys)``."""
    generator = torch.Generator()
    generator.manual_seed(derive_seed(seed, stream, *keys))
    return generator


def numpy_generator(seed: int, stream: Stream, *keys: int) -> np.random.Generator:
    """A ``numpy`` generator for ``stream``, seeded from ``derive_seed(seed, stream, *keys)``."""
    return np.random.default_rng(derive_seed(seed, stream, *keys))
