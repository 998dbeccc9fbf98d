"""Horizontal bilinear sampler: known shifts, sub-pixel interpolation, border clamping, gradients."""
from __future__ import annotations

import pytest
import torch

from siam_depth_core.warp import warp_horizontal

HEIGHT, WIDTH = 16, 64


def _texture(height: int = HEIGHT, width: int = WIDTH) -> torch.Tensor:
    return torch.rand(1, 3, height, width)


def _constant(value: float, height: int = HEIGHT, width: int = WIDTH) -> torch.Tensor:
    return torch.full((1, 1, height, width), value)


def test_zero_offset_is_identity() -> None:
    image = _texture()
    torch.testing.assert_close(warp_horizontal(image, _constant(0.0)), image, rtol=0, atol=1e-6)


@pytest.mark.parametrize("shift_px", [1, 4, 7])
def test_warping_a_shifted_pair_back_reproduces_each_view(shift_px: int) -> None:
    """I_R(x) = I_L(x + d): then warp(I_R, -d) is I_L and warp(I_L, +d) is I_R away from the borders."""
    scene = _texture(width=WIDTH + shift_px)
    left, right = scene[..., :WIDTH], scene[..., shift_px:shift_px + WIDTH]
    disparity = _constant(shift_px / WIDTH)
    left_reconstructed = warp_horizontal(right, -disparity)
    right_reconstructed = warp_horizontal(left, disparity)
    torch.testing.assert_close(left_reconstructed[..., shift_px:], left[..., shift_px:], rtol=0, atol=1e-5)
    torch.testing.assert_close(right_reconstructed[..., :-shift_px], right[..., :-shift_px], rtol=0, atol=1e-5)


def test_sub_pixel_shift_of_a_ramp_is_exact() -> None:
    """Bilinear sampling of a linear ramp is exact: warp(ramp, s) = ramp + slope * s * W inside."""
    columns = torch.arange(WIDTH, dtype=torch.float32)
    ramp = (0.01 * columns).expand(1, 2, HEIGHT, WIDTH).contiguous()
    shift_px = 2.37
    warped = warp_horizontal(ramp, _constant(shift_px / WIDTH))
    expected = 0.01 * (columns + shift_px)
    torch.testing.assert_close(warped[..., :-3], expected[:-3].expand(1, 2, HEIGHT, WIDTH - 3), rtol=0, atol=1e-5)


def test_samples_outside_the_image_clamp_to_the_border() -> None:
    image = _texture()
    warped_left = warp_horizontal(image, _constant(-2.0))
    warped_right = warp_horizontal(image, _constant(2.0))
    torch.testing.assert_close(warped_left, image[..., :1].expand_as(image), rtol=0, atol=1e-6)
    torch.testing.assert_close(warped_right, image[..., -1:].expand_as(image), rtol=0, atol=1e-6)


def test_per_pixel_offsets_sample_each_row_independently() -> None:
    image = _texture()
    offset = torch.zeros(1, 1, HEIGHT, WIDTH)
    offset[:, :, 3] = 5 / WIDTH  # only row 3 moves, by 5 pixels
    warped = warp_horizontal(image, offset)
    torch.testing.assert_close(warped[:, :, 3, :-5], image[:, :, 3, 5:], rtol=0, atol=1e-5)
    rows = [r for r in range(HEIGHT) if r != 3]
    torch.testing.assert_close(warped[:, :, rows], image[:, :, rows], rtol=0, atol=1e-6)


def test_gradients_flow_to_the_disparity() -> None:
    scene = _texture(width=WIDTH + 4)
    left, right = scene[..., :WIDTH], scene[..., 4:4 + WIDTH]
    disparity = _constant(2.5 / WIDTH).requires_grad_(True)
    loss = (warp_horizontal(right, -disparity) - left).abs().mean()
    loss.backward()
    assert disparity.grad is not None and torch.isfinite(disparity.grad).all()
    assert disparity.grad.abs().sum() > 0


def test_gradients_match_finite_differences() -> None:
    source = torch.rand(1, 2, 3, 8, dtype=torch.float64, requires_grad=True)
    # Sub-pixel offsets away from integer positions, where bilinear sampling is smooth.
    offset_px = torch.tensor([0.3, -1.4, 2.6, 0.45, -0.7, 1.2, -2.3, 0.8], dtype=torch.float64)
    offset = (offset_px / 8).view(1, 1, 1, 8).expand(1, 1, 3, 8).clone().requires_grad_(True)
    assert torch.autograd.gradcheck(warp_horizontal, (source, offset), eps=1e-6, atol=1e-5)


def test_offset_of_the_wrong_shape_raises_value_error() -> None:
    with pytest.raises(ValueError, match="offset must be"):
        warp_horizontal(_texture(), torch.zeros(1, 2, HEIGHT, WIDTH))
    with pytest.raises(ValueError, match="offset must be"):
        warp_horizontal(_texture(), torch.zeros(1, 1, HEIGHT, WIDTH // 2))
