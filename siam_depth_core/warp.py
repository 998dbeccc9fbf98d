"""Horizontal bilinear sampler (the spatial-transformer sampler restricted to x shifts)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def warp_horizontal(source: Tensor, offset: Tensor) -> Tensor:
    """Sample `source` (N,C,H,W) at (x + offset*W, y) with bilinear interpolation, border clamped.

    offset: (N,1,H,W) horizontal shift as a fraction of the width (signed). Differentiable in both
    the source and the offset. Reconstructions: I_L* = warp(I_R, -d_L), I_R* = warp(I_L, +d_R).
    """
    if offset.shape[1] != 1 or offset.shape[-2:] != source.shape[-2:] or offset.shape[0] != source.shape[0]:
        raise ValueError(f"offset must be (N,1,H,W) matching source {tuple(source.shape)}, got {tuple(offset.shape)}")
    batch, _, height, width = source.shape
    xs = torch.arange(width, device=source.device, dtype=source.dtype).view(1, 1, width)
    ys = torch.arange(height, device=source.device, dtype=source.dtype).view(1, height, 1)
    x_pixels = xs + offset[:, 0] * width
    # align_corners=True: normalised -1 / +1 are the centres of the first / last pixels.
    x_norm = 2.0 * x_pixels / max(width - 1, 1) - 1.0
    y_norm = (2.0 * ys / max(height - 1, 1) - 1.0).expand(batch, height, width)
    grid = torch.stack([x_norm, y_norm], dim=-1)
    return F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=True)
