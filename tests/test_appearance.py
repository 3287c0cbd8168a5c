"""The appearance score of a video against its reference picture (no ground truth)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from musedance_core.evaluation.appearance import appearance_scores, colour_histograms
from scenes import soft_figure_photo


def _picture(size: int = 96) -> torch.Tensor:
    return torch.from_numpy(soft_figure_photo(size, size)[0])


def test_the_reference_itself_scores_one_and_a_moved_copy_keeps_its_colours():
    picture = _picture()
    same = appearance_scores(picture.expand(4, -1, -1, -1), picture)
    assert same.structure == pytest.approx(1) and same.colour == pytest.approx(1) and same.detail == pytest.approx(1)
    moved = appearance_scores(torch.roll(picture, shifts=(3, 4), dims=(0, 1))[None], picture)
    assert moved.colour > 0.9 and moved.structure < same.structure


def test_a_lost_picture_scores_low_and_the_worst_frame_is_reported():
    picture = _picture()
    blobs = F.interpolate(torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(0)), size=(96, 96),
                          mode="bilinear").permute(0, 2, 3, 1)
    lost = appearance_scores(blobs, picture)
    assert lost.structure < 0.3 and lost.colour < 0.5 and lost.detail < 0.5
    mixed = appearance_scores(torch.cat([picture[None], blobs[:1]]), picture)
    assert mixed.structure_worst == pytest.approx(appearance_scores(blobs[:1], picture).structure)
    assert mixed.colour_worst < mixed.colour < 1


def test_histograms_sum_to_one_and_bad_shapes_are_refused():
    assert torch.allclose(colour_histograms(torch.rand(2, 8, 8, 3)).sum(1), torch.ones(2))
    with pytest.raises(ValueError, match=r"need a video \[F, H, W, 3\] and a reference \[H, W, 3\]"):
        appearance_scores(torch.rand(8, 8, 3), torch.rand(8, 8, 3))
