"""Client-side attacks of the second wave, on small hand-computed inputs: DBA's patterns,
the PGD projection, Neurotoxin's mask, the edge-case examples, the once-per-run policy."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from clients.edge_case import EdgeCase, least_typical
from clients.poisoning import DBA, Backdoor, Neurotoxin, poisoned_share
from clients.projection import BallProjection, CoordinateMask, chain, top_k_mask
from clients.training import TrainConfig, train


class Vector(nn.Module):
    """A model whose only parameter is a vector: its weights are the test's numbers."""

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(values))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, : len(self.w)] * self.w


def _pixels(mask: torch.Tensor) -> list[tuple[int, int]]:
    return [tuple(p) for p in mask.nonzero().tolist()]


# DBA -------------------------------------------------------------------------------------
def test_dba_mnist_layout_is_the_papers_four_bars() -> None:
    # DBA's utils/mnist_params.yaml: 1x4 bars, gap 2, at (0, 0).
    patterns = DBA().local_patterns((1, 28, 28))
    assert patterns == [
        [(0, 0), (0, 1), (0, 2), (0, 3)],
        [(0, 6), (0, 7), (0, 8), (0, 9)],
        [(3, 0), (3, 1), (3, 2), (3, 3)],
        [(3, 6), (3, 7), (3, 8), (3, 9)],
    ]
    assert len(_pixels(DBA().mask((1, 28, 28)))) == 16


def test_dba_digits_layout_is_two_pixel_bars_with_a_gap_of_one() -> None:
    dba = DBA()
    shape = (1, 8, 8)
    # Row 0 and row 0 + gap + 1 = 2; columns 0-1 and 0 + 2 + 1 = 3 to 4.
    assert _pixels(dba.training_mask(shape, 0)) == [(0, 0), (0, 1)]
    assert _pixels(dba.training_mask(shape, 1)) == [(0, 3), (0, 4)]
    assert _pixels(dba.training_mask(shape, 2)) == [(2, 0), (2, 1)]
    assert _pixels(dba.training_mask(shape, 3)) == [(2, 3), (2, 4)]
    assert _pixels(dba.training_mask(shape, 5)) == [(0, 3), (0, 4)]  # rank 5: 5 mod 4 = 1
    union = {p for k in range(4) for p in _pixels(dba.training_mask(shape, k))}
    assert set(_pixels(dba.mask(shape))) == union


def test_dba_client_stamps_only_its_own_pattern_and_success_uses_the_global_trigger() -> None:
    dba = DBA(target_label=0, poison_fraction=1.0)
    x = torch.zeros(3, 1, 8, 8)
    y = torch.tensor([1, 2, 3])
    px, py = dba.poison_data(x, y, 10, rank=2, generator=torch.Generator().manual_seed(0))
    assert py.tolist() == [0, 0, 0]
    assert all(_pixels(px[i, 0] == 1.0) == [(2, 0), (2, 1)] for i in range(3))
    images, target = dba.success_examples(x, torch.tensor([0, 4, 5]))
    assert target == 0 and len(images) == 2  # the target-class image is left out
    assert len(_pixels(images[0, 0] == 1.0)) == 8


def test_dba_explicit_patterns_and_a_layout_that_does_not_fit() -> None:
    dba = DBA(patterns=[[[1, 1]], [[2, 2], [3, 3]]])
    assert _pixels(dba.training_mask((1, 8, 8), 3)) == [(2, 2), (3, 3)]  # 3 mod 2 = 1
    with pytest.raises(ValueError, match=r"^position=\[6, 6\]: four 1x2 bars"):
        DBA(position=[6, 6]).check_shape((1, 8, 8))
    with pytest.raises(ValueError, match=r"^patterns=.*\(9, 9\) is outside 8x8"):
        DBA(patterns=[[[0, 0]], [[9, 9]]]).check_shape((1, 8, 8))


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"bar_length": 0}, "^bar_length=0"), ({"gap": -1}, "^gap=-1"),
     ({"patterns": []}, "^patterns="), ({"patterns": [[[0, 0, 1]]]}, "^patterns="),
     ({"position": [-1, 0]}, r"^position=\[-1, 0\]"),
     ({"poison_fraction": 0}, "^poison_fraction=0"), ({"project_norm": 0}, "^project_norm=0")],
)  # fmt: skip
def test_dba_bad_parameters_name_themselves(kwargs: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        DBA(**kwargs)


# The once-per-run policy -------------------------------------------------------------------
def test_poisoned_examples_are_chosen_once_per_run_per_client() -> None:
    # The ClientApp seeds the generator by (seed, client) only: every round gives it the
    # same seed, so the same examples are poisoned in every round.
    backdoor = Backdoor(poison_fraction=0.3, size=1, position=(0, 0))
    x = torch.zeros(10, 1, 4, 4)
    y = torch.full((10,), 5)
    rounds = [
        backdoor.poison_data(x, y, 10, generator=torch.Generator().manual_seed(7))[1]
        for _ in range(3)
    ]
    assert all(torch.equal(r, rounds[0]) for r in rounds)
    assert int((rounds[0] == 0).sum()) == 3  # ceil(0.3 * 10) = 3, not 4
    other = backdoor.poison_data(x, y, 10, generator=torch.Generator().manual_seed(1))[1]
    assert not torch.equal(other, rounds[0])  # another client: another draw
    with pytest.raises(ValueError, match=r"^generator=None"):
        poisoned_share(10, 0.3, None)


# PGD ---------------------------------------------------------------------------------------
def test_ball_projection_scales_the_update_onto_the_ball() -> None:
    centre = {"w": torch.tensor([1.0, 1.0])}
    model = Vector([4.0, 5.0])  # update (3, 4): norm 5
    BallProjection(centre, 1.0)(model)
    # g + (w - g) * 1/5 = (1 + 0.6, 1 + 0.8)
    assert torch.allclose(model.w.detach(), torch.tensor([1.6, 1.8]))
    inside = Vector([1.3, 1.4])  # update (0.3, 0.4): norm 0.5 <= 1, left alone
    BallProjection(centre, 1.0)(inside)
    assert inside.w.detach().tolist() == pytest.approx([1.3, 1.4])
    assert centre["w"].tolist() == [1.0, 1.0], "centre unchanged"


def test_projected_training_keeps_every_step_within_the_radius() -> None:
    torch.manual_seed(0)
    model = nn.Linear(16, 4)
    centre = {k: v.clone() for k, v in model.state_dict().items()}
    norms = []

    def record(m: nn.Module) -> None:
        d = torch.cat([(m.state_dict()[k] - centre[k]).flatten() for k in centre])
        norms.append(float(d.double().norm()))

    x, y = torch.randn(64, 16), torch.randint(0, 4, (64,))
    config = TrainConfig(lr=0.5, batch_size=8)
    train(model, x, y, config, torch.Generator().manual_seed(0),
          after_step=chain(BallProjection(centre, 0.05), record))  # fmt: skip
    assert len(norms) == 8 and max(norms) <= 0.05
    assert max(norms) > 0.049  # the unconstrained steps are far longer: the ball binds


@pytest.mark.parametrize("bad", [0, -1.0, math.inf, True])
def test_project_norm_must_be_a_positive_number(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^project_norm="):
        Backdoor(project_norm=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^radius="):
        BallProjection({}, bad)  # type: ignore[arg-type]


def test_backdoor_step_hook_is_the_projection_only_when_asked() -> None:
    model = Vector([0.0])
    assert Backdoor().step_hook(model, {"w": torch.zeros(1)}) is None
    assert isinstance(
        Backdoor(project_norm=2).step_hook(model, {"w": torch.zeros(1)}), BallProjection
    )


# Neurotoxin --------------------------------------------------------------------------------
def test_top_k_mask_takes_the_largest_magnitudes_jointly_ties_to_the_first() -> None:
    update = {"a": torch.tensor([0.1, -0.5, 0.3]), "b": torch.tensor([[0.2, 0.5]])}
    # |update| flat: 0.1 0.5 0.3 0.2 0.5; d = 5; 40% -> ceil(2.0) = 2: both 0.5s.
    masks = top_k_mask(update, ["a", "b"], 40)
    assert masks["a"].tolist() == [False, True, False]
    assert masks["b"].tolist() == [[False, True]]
    # 20% -> 1 coordinate: the tie between the two 0.5s goes to the first (a[1]).
    masks = top_k_mask(update, ["a", "b"], 20)
    assert masks["a"].tolist() == [False, True, False] and not masks["b"].any()
    # 50% -> ceil(2.5) = 3: 0.5, 0.5, 0.3.
    masks = top_k_mask(update, ["a", "b"], 50)
    assert masks["a"].tolist() == [False, True, True] and masks["b"].tolist() == [[False, True]]


def test_coordinate_mask_resets_only_the_masked_weights() -> None:
    centre = {"w": torch.tensor([1.0, 2.0, 3.0])}
    model = Vector([9.0, 9.0, 9.0])
    CoordinateMask(centre, {"w": torch.tensor([True, False, True])})(model)
    assert model.w.detach().tolist() == [1.0, 9.0, 3.0]


def test_neurotoxin_training_leaves_the_masked_coordinates_unchanged() -> None:
    torch.manual_seed(0)
    model = nn.Linear(8, 3)
    previous = {k: v + 0.01 * torch.randn_like(v) for k, v in model.state_dict().items()}
    sent = {k: v.clone() for k, v in model.state_dict().items()}
    attack = Neurotoxin(top_k_percent=10)
    hook = attack.step_hook(model, sent, previous)
    masks = attack.mask_of(model, sent, previous)
    assert sum(int(m.sum()) for m in masks.values()) == math.ceil(0.1 * (24 + 3))  # 3 of 27
    x, y = torch.randn(40, 8), torch.randint(0, 3, (40,))
    config = TrainConfig(lr=0.5, batch_size=8, momentum=0.9, weight_decay=0.01)
    train(model, x, y, config, torch.Generator().manual_seed(0), after_step=hook)
    for name, value in model.state_dict().items():
        mask = masks[name]
        assert torch.equal(value[mask], sent[name][mask]), name  # exactly the global values
        assert (value[~mask] != sent[name][~mask]).all(), name  # the rest trained
    # First participation (no previous model): no mask, no hook.
    assert attack.step_hook(model, sent, None) is None
    assert Neurotoxin.needs_previous_global and not Backdoor.needs_previous_global


@pytest.mark.parametrize("bad", [0, 100, -1, 150.0, math.nan])
def test_neurotoxin_k_must_be_a_percentage_strictly_inside_0_100(bad: float) -> None:
    with pytest.raises(ValueError, match=r"^top_k_percent="):
        Neurotoxin(top_k_percent=bad)


# Edge case ---------------------------------------------------------------------------------
def test_least_typical_ranks_by_distance_to_the_mean() -> None:
    x = torch.tensor([0.0, 1.0, 2.0, 3.0, 10.0]).reshape(5, 1, 1, 1)
    # Mean 3.2; distances 3.2, 2.2, 1.2, 0.2, 6.8; 40% of 5 -> 2: indices 4 and 0.
    assert least_typical(x, 0.4).tolist() == [4, 0]


def _digits_like(n_per_class: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(10 * n_per_class, 1, 4, 4, generator=generator)
    y = torch.arange(10).repeat_interleave(n_per_class)
    return x, y


def test_edge_case_split_is_disjoint_deterministic_and_from_the_source_class() -> None:
    x, y = _digits_like()
    attack = EdgeCase(source=7, target_label=1, edge_fraction=0.5, test_fraction=0.3)
    attack.prepare(x, y, torch.Generator().manual_seed(3))
    members = (y == 7).nonzero().flatten()
    edge = x[members[least_typical(x[members], 0.5)]]  # 10 of the 20 sevens
    held, own = attack.held_out, attack.attacker_examples
    assert len(held) == 3 and len(own) == 7  # ceil(0.3 * 10) held out
    rows = {tuple(r.flatten().tolist()) for r in torch.cat([held, own])}
    assert rows == {tuple(r.flatten().tolist()) for r in edge}  # a split of the edge set
    again = EdgeCase(source=7, target_label=1, edge_fraction=0.5, test_fraction=0.3)
    again.prepare(x, y, torch.Generator().manual_seed(3))
    assert torch.equal(again.held_out, held)
    images, target = attack.success_examples(x[:5], y[:5])
    assert target == 1 and torch.equal(images, held)  # held-out edge examples, not the test set


def test_edge_case_mixes_its_examples_into_the_clients_data() -> None:
    x, y = _digits_like()
    attack = EdgeCase(edge_fraction=0.5, test_fraction=0.3, poison_fraction=0.4)
    attack.prepare(x, y, torch.Generator().manual_seed(3))
    cx, cy = x[:6], y[:6]
    px, py = attack.poison_data(cx, cy, 10)
    # 0.4 * 6 / 0.6 = 4 edge examples: the first 4 of the attacker's 7.
    assert len(py) == 10 and py[6:].tolist() == [1, 1, 1, 1]
    assert torch.equal(px[:6], cx) and torch.equal(px[6:], attack.attacker_examples[:4])
    assert torch.equal(cy, y[:6]), "input labels unchanged"
    with pytest.raises(RuntimeError, match="prepare"):
        EdgeCase().poison_data(cx, cy, 10)


def test_edge_case_directory_as_given_or_split(tmp_path: Path) -> None:
    given = tmp_path / "given"
    given.mkdir()
    np.save(given / "train.npy", np.full((3, 4, 4), 255, dtype=np.uint8))
    np.save(given / "test.npy", np.zeros((2, 1, 4, 4), dtype=np.float32))
    attack = EdgeCase(path=str(given), target_label=2)
    attack.check_shape((1, 4, 4))
    attack.prepare(torch.zeros(1, 1, 4, 4), torch.zeros(1), torch.Generator().manual_seed(0))
    assert attack.attacker_examples.shape == (3, 1, 4, 4) and attack.attacker_examples.max() == 1.0
    assert attack.success_examples(torch.zeros(1), torch.zeros(1))[0].shape == (2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"^path=.*images of shape \(1, 4, 4\)"):
        attack.check_shape((1, 8, 8))
    pool = tmp_path / "pool"
    pool.mkdir()
    np.save(pool / "images.npy", np.random.default_rng(0).random((5, 4, 4)))
    split = EdgeCase(path=str(pool))
    split.prepare(torch.zeros(1, 1, 4, 4), torch.zeros(1), torch.Generator().manual_seed(0))
    assert len(split.held_out) == 3 and len(split.attacker_examples) == 2  # ceil(0.5 * 5)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"path": "/no/such/dir"}, "^path=/no/such/dir: no such directory"),
     ({"source": 1, "target_label": 1}, "^source=1"),
     ({"edge_fraction": 0}, "^edge_fraction=0"), ({"test_fraction": 1}, "^test_fraction=1"),
     ({"poison_fraction": 1}, "^poison_fraction=1"), ({"project_norm": -2}, "^project_norm=-2"),
     ({"boost": 0}, "^boost=0")],
)  # fmt: skip
def test_edge_case_bad_parameters_name_themselves(kwargs: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        EdgeCase(**kwargs)


def test_edge_case_directory_without_the_files_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^path=.*holds neither train.npy and test.npy nor"):
        EdgeCase(path=str(tmp_path))
    with pytest.raises(ValueError, match=r"^target_label=12"):
        EdgeCase(target_label=12).check_classes(10)


def test_edge_case_too_few_examples_to_split() -> None:
    x, y = _digits_like(n_per_class=2)
    with pytest.raises(
        ValueError, match=r"^edge_fraction=0.1: .* 1 edge examples; needs at least 2"
    ):
        EdgeCase(edge_fraction=0.1).prepare(x, y, torch.Generator().manual_seed(0))
