"""The refinement module (paper 3.1): monodepth's post-processing made differentiable.

d1 comes from the image, d2 from its horizontal flip. The left border of a left disparity map
(the right border of a right one) holds the disparity ramp of pixels occluded in the other view;
the refined map takes those columns from the flipped pass, the other border from the direct pass,
and the mean of both in between. `disparity_confidence` turns the disagreement of the two estimates of
the left disparity into a per-pixel reliability in [0, 1] (the node's `depth/confidence`).
"""
from __future__ import annotations

import torch
from torch import Tensor

#: Width of the blending ramp: l_mask = 1 - clip(20 * (x - 0.05), 0, 1), x the column in [0, 1].
RAMP_SLOPE = 20.0
RAMP_START = 0.05
#: Floor of the larger estimate in `disparity_confidence` (fraction of width), so that 0/0 cannot occur.
CONFIDENCE_FLOOR = 1e-6


def flip_horizontal(tensor: Tensor) -> Tensor:
    """Mirror (..., H, W) left-right (the disparity flip operator)."""
    return torch.flip(tensor, dims=[-1])


def ramp_masks(width: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
               ) -> tuple[Tensor, Tensor]:
    """(l_mask, r_mask), each (1,1,1,W): 1 at the left (right) border, 0 from 10% of the width on.

    The column coordinate is built with arange (linspace does not export cleanly to ONNX).
    """
    columns = torch.arange(width, device=device, dtype=dtype) / max(width - 1, 1)
    l_mask = 1.0 - torch.clamp(RAMP_SLOPE * (columns - RAMP_START), 0.0, 1.0)
    l_mask = l_mask.view(1, 1, 1, width)
    return l_mask, flip_horizontal(l_mask)


def refine_disparity(disp_direct: Tensor, disp_flipped: Tensor) -> Tensor:
    """Fuse (N,2,H,W) disparities from the image (d1) and from its flip (d2) into D_refine (N,2,H,W).

    Channel 0 (left): D_L = r_mask*d1_L + l_mask*flip(d2_L) + (1-l_mask-r_mask)*mean.
    Channel 1 (right) is the mirror image: D_R = l_mask*d1_R + r_mask*flip(d2_R) + (1-l_mask-r_mask)*mean.
    """
    unflipped = flip_horizontal(disp_flipped)
    mean = 0.5 * (disp_direct + unflipped)
    l_mask, r_mask = ramp_masks(disp_direct.shape[-1], disp_direct.device, disp_direct.dtype)
    middle = 1.0 - l_mask - r_mask
    left = r_mask * disp_direct[:, 0:1] + l_mask * unflipped[:, 0:1] + middle * mean[:, 0:1]
    right = l_mask * disp_direct[:, 1:2] + r_mask * unflipped[:, 1:2] + middle * mean[:, 1:2]
    return torch.cat([left, right], dim=1)


def disparity_confidence(disp_direct: Tensor, disp_flipped: Tensor) -> Tensor:
    """Agreement of the two estimates of the left disparity, (N,1,H,W) in [0, 1] (1 = identical).

    disp_direct: d1 (N,2,H,W) from the image; disp_flipped: d2 (N,2,H,W) from its flip, in flipped
    coordinates (fractions of width). The estimates are d1_L and flip(d2_L); the confidence is their
    ratio min / max, which is also the ratio of the two depths they give: 0.9 means the two estimates
    of the pixel's depth differ by 11 %. It costs no extra network pass: both estimates exist already.
    """
    direct = disp_direct[:, 0:1]
    unflipped = flip_horizontal(disp_flipped[:, 0:1])
    larger = torch.clamp(torch.maximum(direct, unflipped), min=CONFIDENCE_FLOOR)
    return torch.minimum(direct, unflipped) / larger
