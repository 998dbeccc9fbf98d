"""Refinement module (paper 3.1): flip operator, ramp masks, fusion of d1 and flip(d2)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from siam_depth_core.network.refine import disparity_confidence, flip_horizontal, ramp_masks, refine_disparity

WIDTH = 64


def _monodepth_l_mask(width: int) -> np.ndarray:
    """l_mask as monodepth's post-processing writes it (linspace columns), computed in numpy."""
    columns = np.linspace(0.0, 1.0, width)
    return 1.0 - np.clip(20.0 * (columns - 0.05), 0.0, 1.0)


def test_flip_horizontal_mirrors_the_last_axis() -> None:
    tensor = torch.arange(6.0).view(1, 1, 2, 3)
    assert flip_horizontal(tensor).tolist() == [[[[2.0, 1.0, 0.0], [5.0, 4.0, 3.0]]]]
    torch.testing.assert_close(flip_horizontal(flip_horizontal(tensor)), tensor, rtol=0, atol=0)


@pytest.mark.parametrize("width", [32, 64, 512])
def test_ramp_masks_match_the_formula(width: int) -> None:
    l_mask, r_mask = ramp_masks(width)
    assert l_mask.shape == r_mask.shape == (1, 1, 1, width)
    expected = _monodepth_l_mask(width)
    np.testing.assert_allclose(l_mask.flatten().numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(r_mask.flatten().numpy(), expected[::-1], atol=1e-6)
    first, middle, last = 0, width // 2, width - 1
    assert l_mask[..., first].item() == 1.0 and r_mask[..., first].item() == 0.0
    assert l_mask[..., middle].item() == 0.0 and r_mask[..., middle].item() == 0.0
    assert l_mask[..., last].item() == 0.0 and r_mask[..., last].item() == 1.0
    # The ramp ends at 10% of the width; the two masks never overlap.
    assert (l_mask * r_mask).max().item() == 0.0


def test_refine_of_consistent_pair_returns_d1() -> None:
    """For d2 = flip(d1) every weighting gives back d1."""
    d1 = 0.3 * torch.rand(2, 2, 16, WIDTH)
    refined = refine_disparity(d1, flip_horizontal(d1))
    torch.testing.assert_close(refined[..., 8:-8], d1[..., 8:-8], rtol=0, atol=1e-7)
    torch.testing.assert_close(refined, d1, rtol=0, atol=1e-7)


def test_refine_takes_each_border_from_the_right_pass() -> None:
    """D_L: flip(d2) at the left border, d1 at the right border, their mean in the middle; D_R mirrored."""
    d1 = torch.full((1, 2, 4, WIDTH), 0.1)
    d2 = torch.full((1, 2, 4, WIDTH), 0.2)
    refined = refine_disparity(d1, d2)
    left, right = refined[:, 0], refined[:, 1]
    torch.testing.assert_close(left[..., 0], torch.full_like(left[..., 0], 0.2))
    torch.testing.assert_close(left[..., WIDTH // 2], torch.full_like(left[..., 0], 0.15))
    torch.testing.assert_close(left[..., -1], torch.full_like(left[..., 0], 0.1))
    torch.testing.assert_close(right[..., 0], torch.full_like(right[..., 0], 0.1))
    torch.testing.assert_close(right[..., WIDTH // 2], torch.full_like(right[..., 0], 0.15))
    torch.testing.assert_close(right[..., -1], torch.full_like(right[..., 0], 0.2))


def test_refine_uses_the_flipped_not_the_raw_second_pass() -> None:
    """At the left border D_L is d2_L read from its other end (the flip), not d2_L at the same column."""
    d1 = torch.zeros(1, 2, 1, WIDTH)
    d2 = torch.zeros(1, 2, 1, WIDTH)
    d2[..., -1] = 1.0  # only the last column of the flipped-image pass is non-zero
    refined = refine_disparity(d1, d2)
    assert refined[0, 0, 0, 0].item() == 1.0
    assert refined[0, 0, 0, 1:].abs().max().item() == 0.0


def test_right_refinement_mirrors_the_left_one() -> None:
    """D_R(d1_R, d2_R) = flip(D_L(flip d1_R, flip d2_R)): the right map is the mirror-image rule."""
    d1 = torch.rand(2, 2, 8, WIDTH)
    d2 = torch.rand(2, 2, 8, WIDTH)
    refined = refine_disparity(d1, d2)
    mirrored = refine_disparity(flip_horizontal(d1[:, [1, 0]]), flip_horizontal(d2[:, [1, 0]]))
    torch.testing.assert_close(refined[:, 1], flip_horizontal(mirrored[:, 0]), rtol=0, atol=1e-7)
    torch.testing.assert_close(refined[:, 0], flip_horizontal(mirrored[:, 1]), rtol=0, atol=1e-7)


def test_refine_is_differentiable_in_both_passes() -> None:
    d1 = torch.rand(1, 2, 4, WIDTH, requires_grad=True)
    d2 = torch.rand(1, 2, 4, WIDTH, requires_grad=True)
    refine_disparity(d1, d2).sum().backward()
    # Each output pixel is a convex combination: the weights of d1 and flip(d2) sum to one.
    torch.testing.assert_close(d1.grad + flip_horizontal(d2.grad), torch.ones_like(d1))
    # D_L: the left border depends on d2 only, the middle on both equally, the right border on d1 only.
    assert d1.grad[:, 0, :, 0].abs().max().item() == 0.0
    torch.testing.assert_close(d1.grad[:, 0, :, WIDTH // 2], torch.full((1, 4), 0.5))
    torch.testing.assert_close(d1.grad[:, 0, :, -1], torch.ones(1, 4))


def test_confidence_is_min_over_max_of_the_direct_and_unflipped_left_estimates() -> None:
    direct = torch.tensor([[0.10, 0.20, 0.30, 0.00]]).view(1, 1, 1, 4)
    flipped_left = torch.tensor([[0.00, 0.10, 0.15, 0.05]]).view(1, 1, 1, 4)  # unflipped: 0.05 0.15 0.10 0.00
    disp_direct = torch.cat([direct, torch.full_like(direct, 9.0)], dim=1)  # the right channel plays no part
    disp_flipped = torch.cat([flipped_left, torch.full_like(direct, 7.0)], dim=1)
    confidence = disparity_confidence(disp_direct, disp_flipped)
    assert confidence.shape == (1, 1, 1, 4)
    np.testing.assert_allclose(confidence.flatten().numpy(), [0.5, 0.75, 1 / 3, 0.0], rtol=1e-6)
    same = disparity_confidence(disp_direct, flip_horizontal(disp_direct))
    np.testing.assert_allclose(same.flatten().numpy()[:3], 1.0)  # agreeing estimates: full confidence
    assert same.flatten()[3].item() == 0.0  # both zero (infinitely far): no 0/0, no confidence
