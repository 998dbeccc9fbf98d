"""StereoAugment: flip swaps and mirrors the views, photometric factors shared by the clip and both views."""
from __future__ import annotations

import pytest
import torch

from siam_depth_core.data.augment import StereoAugment


def _clip(frames: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(frames, 3, 4, 6, generator=generator), torch.rand(frames, 3, 4, 6, generator=generator)


def test_flip_mirrors_both_views_and_swaps_left_and_right():
    left, right = _clip()
    out_left, out_right = StereoAugment(flip_prob=1.0, prob=0.0)(left, right, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out_left, right.flip(-1), rtol=0, atol=0)
    torch.testing.assert_close(out_right, left.flip(-1), rtol=0, atol=0)


def test_no_flip_no_photometric_is_identity():
    left, right = _clip()
    out_left, out_right = StereoAugment(flip_prob=0.0, prob=0.0)(left, right, torch.Generator().manual_seed(0))
    assert torch.equal(out_left, left) and torch.equal(out_right, right)


def test_photometric_gamma_brightness_color_formula():
    left, right = _clip(1)
    augment = StereoAugment(flip_prob=0.0, gamma=(2.0, 2.0), brightness=(0.5, 0.5), color=(0.9, 0.9), prob=1.0)
    out_left, out_right = augment(left, right, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out_left, left**2 * 0.45)
    torch.testing.assert_close(out_right, right**2 * 0.45)


def test_output_clamped_to_unit_range():
    left, right = _clip()
    augment = StereoAugment(flip_prob=0.0, gamma=(1.0, 1.0), brightness=(2.0, 2.0), color=(1.0, 1.0), prob=1.0)
    out_left, _ = augment(left, right, torch.Generator().manual_seed(0))
    assert out_left.max() == 1.0 and out_left.min() >= 0.0
    torch.testing.assert_close(out_left, (left * 2).clamp(max=1.0))


def test_same_draw_for_every_frame_and_both_views():
    frame = torch.rand(1, 3, 4, 6)
    clip = frame.expand(3, -1, -1, -1).clone()
    for seed in range(10):
        out_left, out_right = StereoAugment(flip_prob=0.0, prob=1.0)(clip, clip.clone(), torch.Generator().manual_seed(seed))
        torch.testing.assert_close(out_left[0], out_left[2], rtol=1e-6, atol=1e-7)  # SIMD lanes may differ by 1 ulp
        torch.testing.assert_close(out_left, out_right, rtol=1e-6, atol=1e-7)


def test_draws_are_reproducible_and_flip_about_half_the_time():
    left, right = _clip(1)
    augment = StereoAugment()
    first = augment(left, right, torch.Generator().manual_seed(7))
    again = augment(left, right, torch.Generator().manual_seed(7))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    generator = torch.Generator().manual_seed(0)
    flips = sum(torch.equal(StereoAugment(prob=0.0)(left, right, generator)[0], right.flip(-1)) for _ in range(400))
    assert 150 < flips < 250


def test_bad_parameters_and_shapes_are_rejected():
    with pytest.raises(ValueError, match="flip_prob"):
        StereoAugment(flip_prob=1.5)
    with pytest.raises(ValueError, match="gamma"):
        StereoAugment(gamma=(1.2, 0.8))
    left, _ = _clip()
    with pytest.raises(ValueError, match="RGB"):
        StereoAugment()(left, left[:1], torch.Generator())


def test_grayscale_makes_three_equal_luma_channels_in_both_views():
    left, right = torch.rand(2, 3, 8, 12), torch.rand(2, 3, 8, 12)
    out_left, out_right = StereoAugment(flip_prob=0.0, prob=0.0, grayscale_prob=1.0)(left, right,
                                                                                     torch.Generator().manual_seed(0))
    for original, out in ((left, out_left), (right, out_right)):
        expected = 0.299 * original[:, 0] + 0.587 * original[:, 1] + 0.114 * original[:, 2]
        for channel in range(3):
            torch.testing.assert_close(out[:, channel], expected)


def test_grayscale_draws_do_not_shift_the_other_draws():
    # The same generator state gives the same flip and photometric choice with or without grayscale.
    left, right = torch.rand(3, 8, 12), torch.rand(3, 8, 12)
    plain = StereoAugment(grayscale_prob=0.0).draw(torch.Generator().manual_seed(5))
    gray = StereoAugment(grayscale_prob=1.0).draw(torch.Generator().manual_seed(5))
    assert (plain.flip, plain.photometric, plain.gamma) == (gray.flip, gray.photometric, gray.gamma)
    assert not plain.grayscale and gray.grayscale
    always_flip = StereoAugment(flip_prob=1.0)
    hint_left, hint_right = always_flip.apply_geometric(always_flip.draw(torch.Generator()), left, right)
    assert torch.equal(hint_left, right.flip(-1)) and torch.equal(hint_right, left.flip(-1))


def _zoom_draw(zoom: float, position: tuple[float, float], flip: bool = False):
    from siam_depth_core.data.augment import AugmentDraw

    return AugmentDraw(flip=flip, grayscale=False, photometric=False, gamma=1.0, color_factor=torch.ones(3),
                       zoom=zoom, crop_position=position)


def test_zoom_crop_moves_the_intrinsics_with_the_pixels():
    """A 3-D point projects, through the new K, where the crop-and-resize moved its pixel."""
    import numpy as np

    from siam_depth_core.data.augment import CropBox

    height, width = 64, 192
    camera_matrix = np.array([[180.0, 0.0, 95.2], [0.0, 178.0, 31.7], [0.0, 0.0, 1.0]])
    for flip in (False, True):
        draw = _zoom_draw(1.25, (0.3, 0.8), flip)
        box = CropBox.of(draw, height, width)
        zoomed = StereoAugment.camera_matrix(draw, camera_matrix, height, width)
        point = np.array([1.3, -0.4, 7.0])
        u, v, _ = camera_matrix @ point / point[2]
        expected_u = (u - box.left + 0.5) * width / box.width - 0.5
        expected_v = (v - box.top + 0.5) * height / box.height - 0.5
        if flip:  # the mirrored image sees the mirrored world
            expected_u = width - 1 - expected_u
            point = point * np.array([-1.0, 1.0, 1.0])
        projected = zoomed @ point / point[2]
        assert np.allclose(projected[:2], [expected_u, expected_v], atol=1e-9)
    assert StereoAugment.disparity_scale(_zoom_draw(1.25, (0.5, 0.5)), width) == pytest.approx(width / box.width)


def test_zoomed_stereo_pair_is_still_explained_by_the_scaled_disparity():
    """The right image warped with the crop's disparities (scaled by the zoom) rebuilds the cropped left image."""
    from siam_depth_core.data.synthetic import render_synthetic_sequence
    from siam_depth_core.photometric import photometric_error
    from siam_depth_core.warp import warp_horizontal

    sequence = render_synthetic_sequence(1, 96, 320, seed=4)
    left, right = (torch.from_numpy(v).permute(0, 3, 1, 2).float() / 255 for v in (sequence.left, sequence.right))
    fx = sequence.camera_matrix[0, 0]
    disparity = torch.from_numpy(sequence.baseline_m * fx / (sequence.depth_m * 320)).unsqueeze(1).float()
    augment = StereoAugment(flip_prob=0.0, prob=0.0, zoom=(1.3, 1.3))
    draw = _zoom_draw(1.3, (0.4, 0.6))
    zoomed_left, zoomed_right = augment.apply(draw, left, right)
    zoomed_disparity, _ = augment.apply_geometric(draw, disparity, disparity, disparity=True)
    rebuilt = warp_horizontal(zoomed_right, -zoomed_disparity)
    unscaled = warp_horizontal(zoomed_right, -disparity)
    error = float(photometric_error(zoomed_left, rebuilt).mean())
    assert error < 0.05 and error < 0.6 * float(photometric_error(zoomed_left, unscaled).mean())
    with pytest.raises(ValueError, match="zoom"):
        StereoAugment(zoom=(0.9, 1.2))
