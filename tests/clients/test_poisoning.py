"""Client-side data poisoning: the label maps, the trigger and its success set."""

from __future__ import annotations

import pytest
import torch

from clients.poisoning import Backdoor, LabelFlip


def test_untargeted_label_flip_maps_l_to_c_minus_1_minus_l() -> None:
    y = torch.arange(10)
    x = torch.zeros(10, 1, 8, 8)
    _, flipped = LabelFlip().poison_data(x, y, num_classes=10)
    assert flipped.tolist() == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    assert y.tolist() == list(range(10)), "input labels must not change"
    assert LabelFlip().success_examples(x, y) is None


def test_targeted_label_flip_changes_only_the_source_class() -> None:
    y = torch.tensor([1, 2, 1, 7, 3])
    x = torch.arange(5.0).reshape(5, 1, 1, 1)
    flip = LabelFlip(source=1, target=7)
    _, flipped = flip.poison_data(x, y, num_classes=10)
    assert flipped.tolist() == [7, 2, 7, 7, 3]
    success = flip.success_examples(x, y)
    assert success is not None
    images, target = success
    assert target == 7
    assert images.flatten().tolist() == [0.0, 2.0]  # the source-class test images


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"source": 1}, "^source=1"), ({"source": 2, "target": 2}, "^source=2"),
     ({"boost": 0}, "^boost=0")],
)  # fmt: skip
def test_label_flip_bad_parameters_name_their_own_parameter(kwargs: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        LabelFlip(**kwargs)


def test_square_trigger_is_stamped_where_configured() -> None:
    backdoor = Backdoor(pattern="square", size=2, position=(1, 3), value=1.0)
    x = torch.zeros(2, 3, 8, 8)
    stamped = backdoor.stamp(x)
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[1:3, 3:5] = True
    assert torch.equal(stamped[:, :] == 1.0, expected.expand(2, 3, 8, 8))
    assert x.abs().sum() == 0, "stamp returns a new tensor"


def test_negative_position_counts_from_the_bottom_right() -> None:
    stamped = Backdoor(size=2, position=(-2, -2)).stamp(torch.zeros(1, 1, 28, 28))[0, 0]
    assert stamped[26:, 26:].eq(1).all()
    assert stamped.sum() == 4


def test_pixel_trigger_sets_exactly_the_listed_pixels() -> None:
    pixels = [[26, 26], [24, 26], [26, 24], [25, 25]]
    stamped = Backdoor(pattern="pixels", pixels=pixels).stamp(torch.zeros(1, 1, 28, 28))[0, 0]
    assert sorted(map(list, stamped.nonzero().tolist())) == sorted(pixels)


def test_trigger_that_does_not_fit_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^position="):
        Backdoor(size=3, position=(6, 6)).check_shape((1, 8, 8))


def test_poison_data_stamps_and_relabels_the_configured_share() -> None:
    backdoor = Backdoor(target_label=0, poison_fraction=0.25, size=1, position=(0, 0))
    x = torch.full((8, 1, 4, 4), 0.5)
    y = torch.full((8,), 3)
    px, py = backdoor.poison_data(x, y, 10, generator=torch.Generator().manual_seed(0))
    poisoned = py == 0
    assert int(poisoned.sum()) == 2  # ceil(0.25 * 8)
    assert (px[poisoned, 0, 0, 0] == 1.0).all()
    assert (px[~poisoned, 0, 0, 0] == 0.5).all()
    assert (y == 3).all() and (x == 0.5).all(), "inputs unchanged"
    again = backdoor.poison_data(x, y, 10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again[1], py)


def test_backdoor_success_set_excludes_the_target_class() -> None:
    backdoor = Backdoor(target_label=2)
    x = torch.zeros(5, 1, 8, 8)
    y = torch.tensor([2, 0, 2, 1, 5])
    images, target = backdoor.success_examples(x, y)
    assert target == 2
    assert len(images) == 3
    assert (images[:, 0, 6:, 6:] == 1.0).all()
