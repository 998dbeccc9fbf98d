"""Loss terms of paper section 3.2, each on a hand-checkable input, and their weighting per scale."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from siam_depth_core.network.model import SiameseOutput
from siam_depth_core.photometric import SSIM_C1, SSIM_C2, ssim
from siam_depth_core.training.losses import (
    LossWeights,
    appearance_loss,
    lr_consistency_loss,
    max_depth_heuristic_loss,
    siamese_loss,
    smoothness_loss,
)

HEIGHT, WIDTH = 16, 32


def _constant(value: float, channels: int = 1, height: int = HEIGHT, width: int = WIDTH,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.full((1, channels, height, width), value, dtype=dtype)


def _edge_image(column: int, channels_with_edge: tuple[int, ...] = (0, 1, 2)) -> torch.Tensor:
    """(1,3,H,W) image that is 0 left of `column` and 1 from it on, in the given channels."""
    image = torch.zeros(1, 3, HEIGHT, WIDTH)
    for channel in channels_with_edge:
        image[:, channel, :, column:] = 1.0
    return image


def _step_disparity(column: int, low: float, high: float) -> torch.Tensor:
    disp = _constant(low)
    disp[..., column:] = high
    return disp


def test_ssim_of_identical_images_is_one_and_appearance_zero() -> None:
    image = torch.rand(2, 3, HEIGHT, WIDTH)
    torch.testing.assert_close(ssim(image, image), torch.ones_like(image))
    assert appearance_loss(image, image.clone()).item() == pytest.approx(0.0, abs=1e-7)


def test_ssim_matches_scikit_image_on_random_images() -> None:
    """3x3 box-window SSIM equals scikit-image's on every pixel whose window lies inside the image."""
    rng = np.random.default_rng(7)
    image_a = rng.random((3, 24, 40))
    image_b = np.clip(image_a + 0.3 * rng.standard_normal(image_a.shape), 0.0, 1.0)
    _, reference = structural_similarity(image_a, image_b, win_size=3, gaussian_weights=False,
                                         use_sample_covariance=False, data_range=1.0, channel_axis=0,
                                         full=True)
    ours = ssim(torch.from_numpy(image_a)[None], torch.from_numpy(image_b)[None])[0].numpy()
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours[:, 1:-1, 1:-1], reference[:, 1:-1, 1:-1], rtol=0, atol=1e-10)


def test_appearance_loss_on_constant_images() -> None:
    """Flat 0.5 vs flat 0.7: SSIM is luminance only, (2*0.35 + C1) / (0.25 + 0.49 + C1); L1 is 0.2."""
    similarity = (2 * 0.5 * 0.7 + SSIM_C1) * SSIM_C2 / ((0.5 ** 2 + 0.7 ** 2 + SSIM_C1) * SSIM_C2)
    expected = 0.85 * (1 - similarity) / 2 + 0.15 * 0.2
    loss = appearance_loss(_constant(0.5, 3, dtype=torch.float64), _constant(0.7, 3, dtype=torch.float64))
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    # float32 leaves E[x^2] - mu^2 a few 1e-8 off zero, small against C2 = 9e-4
    assert appearance_loss(_constant(0.5, 3), _constant(0.7, 3)).item() == pytest.approx(expected, rel=1e-3)
    only_l1 = appearance_loss(_constant(0.5, 3), _constant(0.7, 3), ssim_weight=0.0)
    assert only_l1.item() == pytest.approx(0.2, rel=1e-5)


def test_smoothness_is_zero_on_constant_disparity() -> None:
    assert smoothness_loss(_constant(0.12), torch.rand(1, 3, HEIGHT, WIDTH)).item() == 0.0


def test_smoothness_of_a_disparity_step_on_flat_image() -> None:
    """A 0.1 step in x between two columns: 0.1 at H of the H*(W-1) x-differences, weight 1."""
    loss = smoothness_loss(_step_disparity(10, 0.1, 0.2), _constant(0.4, 3))
    assert loss.item() == pytest.approx(0.1 / (WIDTH - 1), rel=1e-5)


def test_smoothness_is_damped_by_exp_of_image_gradient_at_an_edge() -> None:
    """The same step on an image edge of height 1 costs e^-1 as much; an edge in one channel e^-1/3."""
    disp = _step_disparity(10, 0.1, 0.2)
    on_edge = smoothness_loss(disp, _edge_image(10))
    assert on_edge.item() == pytest.approx(0.1 * math.exp(-1.0) / (WIDTH - 1), rel=1e-5)
    on_red_edge = smoothness_loss(disp, _edge_image(10, channels_with_edge=(0,)))
    assert on_red_edge.item() == pytest.approx(0.1 * math.exp(-1.0 / 3.0) / (WIDTH - 1), rel=1e-5)
    away_from_edge = smoothness_loss(disp, _edge_image(20))
    assert away_from_edge.item() == pytest.approx(0.1 / (WIDTH - 1), rel=1e-5)


def test_smoothness_counts_vertical_steps_too() -> None:
    disp = _constant(0.1)
    disp[..., 5:, :] = 0.3
    loss = smoothness_loss(disp, _constant(0.4, 3))
    assert loss.item() == pytest.approx(0.2 / (HEIGHT - 1), rel=1e-5)


def test_lr_consistency_is_zero_when_consistent() -> None:
    disp = _constant(0.05, channels=2)
    assert lr_consistency_loss(disp, disp).item() == pytest.approx(0.0, abs=1e-7)


def test_lr_consistency_of_an_offset_refinement() -> None:
    """D = d1 + (0.01, 0.02) on a constant d1: |D_L - d1_R| + |D_R - d1_L| = 0.01 + 0.02."""
    disp_direct = _constant(0.05, channels=2)
    disp_refined = disp_direct + torch.tensor([0.01, 0.02]).view(1, 2, 1, 1)
    assert lr_consistency_loss(disp_refined, disp_direct).item() == pytest.approx(0.03, rel=1e-5)


def test_lr_consistency_reads_the_right_disparity_at_x_minus_d_left() -> None:
    """d1_L = 4 px everywhere: D_L must equal d1_R four pixels to the left (clamped at the border)."""
    shift_px = 4
    columns = torch.arange(WIDTH, dtype=torch.float32)
    right = (0.02 + 0.003 * columns).expand(1, 1, HEIGHT, WIDTH)
    disp_direct = torch.cat([_constant(shift_px / WIDTH), right], dim=1)
    sampled_columns = torch.clamp(columns - shift_px, min=0).long()
    consistent_left = right[..., sampled_columns]
    wrong_way_left = right[..., torch.clamp(columns + shift_px, max=WIDTH - 1).long()]
    refined_right = _constant(shift_px / WIDTH)  # d1_L is constant, so any x + d1_R reads it
    consistent = torch.cat([consistent_left, refined_right], dim=1)
    assert lr_consistency_loss(consistent, disp_direct).item() == pytest.approx(0.0, abs=1e-6)
    wrong_way = torch.cat([wrong_way_left, refined_right], dim=1)
    assert lr_consistency_loss(wrong_way, disp_direct).item() > 0.01


def test_max_depth_heuristic_is_the_mean_disparity() -> None:
    disp = torch.cat([_constant(0.1), _constant(0.2)], dim=1)
    assert max_depth_heuristic_loss(disp).item() == pytest.approx(0.3, rel=1e-6)
    random_disp = 0.3 * torch.rand(2, 2, HEIGHT, WIDTH)
    expected = random_disp[:, 0].mean() + random_disp[:, 1].mean()
    assert max_depth_heuristic_loss(random_disp).item() == pytest.approx(expected.item(), rel=1e-6)


def _pyramid(make, height: int = 64, width: int = 128) -> list[torch.Tensor]:
    """[make(scale, h, w) for the 4 scales], each (1,2,h,w)."""
    return [make(scale, height // 2 ** scale, width // 2 ** scale) for scale in range(4)]


def _constant_pyramid(value: float) -> list[torch.Tensor]:
    return _pyramid(lambda _s, h, w: torch.full((1, 2, h, w), value))


def test_siamese_loss_weights_the_terms_as_the_paper() -> None:
    """Constant disparities: smoothness and lr vanish, the total is app + 0.01 * mdh over the scales."""
    left, right = torch.rand(1, 3, 64, 128), torch.rand(1, 3, 64, 128)
    output = SiameseOutput(_constant_pyramid(0.05), _constant_pyramid(0.05), _constant_pyramid(0.05))
    total, terms = siamese_loss(left, right, output)
    assert terms["smoothness"].item() == 0.0
    assert terms["left_right"].item() == pytest.approx(0.0, abs=1e-7)
    assert terms["max_depth"].item() == pytest.approx(4 * 2 * 0.05, rel=1e-5)
    assert terms["appearance"].item() > 0.1
    expected = terms["appearance"] + 0.01 * terms["max_depth"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms["total"].item() == total.item()


@pytest.mark.parametrize("scale", [0, 1, 2, 3])
def test_smoothness_weight_halves_with_each_scale(scale: int) -> None:
    """Only scale s is non-smooth: the total is (0.1 / 2^s) times the smoothness term."""
    def bumpy_at_scale(s: int, h: int, w: int) -> torch.Tensor:
        return 0.3 * torch.rand(1, 2, h, w) if s == scale else torch.full((1, 2, h, w), 0.05)

    image = torch.rand(1, 3, 64, 128)
    output = SiameseOutput(_constant_pyramid(0.05), _pyramid(bumpy_at_scale), _constant_pyramid(0.05))
    only_smoothness = LossWeights(appearance=0.0, left_right=0.0, max_depth=0.0)
    total, terms = siamese_loss(image, image, output, only_smoothness)
    assert terms["smoothness"].item() > 0
    assert total.item() == pytest.approx(0.1 / 2 ** scale * terms["smoothness"].item(), rel=1e-5)


def test_flipped_pass_smoothness_uses_the_flipped_image() -> None:
    """Eq. 7: d2 is smoothed against I_flip, so a d2 step where I_flip has an edge is damped by e^-1."""
    height, width, edge = 64, 128, 40
    image = torch.zeros(1, 3, height, width)
    image[..., edge:] = 1.0  # edge between columns edge-1 and edge; in the flipped image at width-edge
    step = torch.full((1, 2, height, width), 0.05)
    step[..., width - edge:] = 0.15

    def flipped(s: int, h: int, w: int) -> torch.Tensor:
        return step if s == 0 else torch.full((1, 2, h, w), 0.05)

    output = SiameseOutput(_constant_pyramid(0.05), _pyramid(flipped), _constant_pyramid(0.05))
    _, terms = siamese_loss(image, image, output)
    # left and right channels each: one 0.1 step per row, damped by e^-1, over H*(W-1) differences
    assert terms["smoothness"].item() == pytest.approx(2 * 0.1 * math.exp(-1.0) / (width - 1), rel=1e-5)


def test_non_siamese_loss_smooths_the_direct_disparity() -> None:
    image = torch.rand(1, 3, 64, 128)
    direct = _pyramid(lambda _s, h, w: 0.3 * torch.rand(1, 2, h, w))
    total, terms = siamese_loss(image, image, SiameseOutput(direct, None, direct))
    expected = sum(smoothness_loss(d[:, c:c + 1], torch.nn.functional.interpolate(image, size=d.shape[-2:],
                                                                                    mode="area"))
                   for d in direct for c in (0, 1))
    assert terms["smoothness"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.isfinite(total)


def test_siamese_loss_gradients_reach_every_disparity() -> None:
    left, right = torch.rand(1, 3, 64, 128), torch.rand(1, 3, 64, 128)
    direct = _pyramid(lambda _s, h, w: (0.3 * torch.rand(1, 2, h, w)).requires_grad_(True))
    flipped = _pyramid(lambda _s, h, w: (0.3 * torch.rand(1, 2, h, w)).requires_grad_(True))
    refined = [0.5 * (d + f.flip(-1)) for d, f in zip(direct, flipped, strict=True)]
    total, _ = siamese_loss(left, right, SiameseOutput(direct, flipped, refined))
    total.backward()
    for disp in direct + flipped:
        assert disp.grad is not None and torch.isfinite(disp.grad).all() and disp.grad.abs().sum() > 0
