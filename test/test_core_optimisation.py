"""End to end: a short optimisation on a synthetic stereo pair drives the disparity to the truth.

The pair is a smooth random texture and its copy shifted by a known constant disparity (a
fronto-parallel plane), so both true disparity maps are that constant. The network, Siamese run,
refinement, warp and every loss term take part; only Adam and 100 steps of a tiny network are needed.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from siam_depth_core.network.model import SiamDepthNet, run_siamese
from siam_depth_core.training.losses import siamese_loss

HEIGHT, WIDTH = 64, 128
SHIFT_PX = 8
BORDER_PX = 16  # columns whose match may fall outside the other view are not scored


def _smooth_texture(height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """(1,3,H,W) in [0,1]: random noise at 16, 32 and 64 px scales, bilinearly upsampled and averaged."""
    texture = torch.zeros(1, 3, height, width)
    for cell_px in (16, 32, 64):
        noise = torch.rand(1, 3, height // cell_px + 2, width // cell_px + 2, generator=generator)
        upsampled = F.interpolate(noise, scale_factor=float(cell_px), mode="bilinear", align_corners=False)
        texture += upsampled[..., :height, :width] / 3
    return texture


def _stereo_pair(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(left, right) with right(x) = left(x + SHIFT_PX): disparity SHIFT_PX everywhere."""
    scene = _smooth_texture(HEIGHT, WIDTH + SHIFT_PX, generator)
    return scene[..., :WIDTH], scene[..., SHIFT_PX:SHIFT_PX + WIDTH]


def _disparity_error(net: SiamDepthNet, left: torch.Tensor, truth: float) -> float:
    """Mean |D_refine - truth| over both channels at full scale, away from the borders."""
    with torch.no_grad():
        output, _ = run_siamese(net, left)
    refined = output.disp_refined[0][..., BORDER_PX:-BORDER_PX]
    return (refined - truth).abs().mean().item()


@pytest.mark.usefixtures("one_torch_thread")
def test_optimisation_on_a_synthetic_stereo_pair_recovers_the_disparity() -> None:
    generator = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    left, right = _stereo_pair(generator)
    truth = SHIFT_PX / WIDTH
    net = SiamDepthNet(width_multiplier=0.125)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    error_before = _disparity_error(net, left, truth)
    for _ in range(100):
        output, _ = run_siamese(net, left)
        loss, _ = siamese_loss(left, right, output)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    error_after = _disparity_error(net, left, truth)
    assert error_before > 0.05  # starts near max_disp / 2 = 0.15, far from the truth 0.0625
    assert error_after < error_before / 10, f"disparity error {error_before:.4f} -> {error_after:.4f}"
