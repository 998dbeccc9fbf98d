"""The temporal warp of M+S training: a neighbouring frame resampled into the target view through depth and pose.

A target pixel (u, v) with depth z is back-projected to X = z K^-1 [u, v, 1]^T in the target camera,
moved into the source camera by T_{target->source} and projected with K; the source image is sampled
there (bilinear, border clamped, as monodepth2). Pixel centres are at integer coordinates, as in
`geometry.scale_intrinsics` and `warp.warp_horizontal`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: Smallest depth (metres) a projected point may have: points behind or at the camera are clamped here.
MIN_PROJECTED_DEPTH = 1e-3


def intrinsics_at_scale(camera_matrix: Tensor, scale: float) -> Tensor:
    """(N,3,3) K for images resized by `scale` (new size / old size) in both axes, pixel-centre
    convention c' = (c + 0.5) * s - 0.5, as `geometry.scale_intrinsics` does for one numpy K."""
    scaled = camera_matrix.clone()
    scaled[:, :2, :2] = camera_matrix[:, :2, :2] * scale
    scaled[:, :2, 2] = (camera_matrix[:, :2, 2] + 0.5) * scale - 0.5
    return scaled


def backproject_depth(depth_m: Tensor, camera_matrix: Tensor) -> Tensor:
    """(N,1,H,W) depth in metres and (N,3,3) K -> (N,3,H*W) points in the camera's optical frame (metres)."""
    batch, _, height, width = depth_m.shape
    ys, xs = torch.meshgrid(torch.arange(height, device=depth_m.device, dtype=depth_m.dtype),
                            torch.arange(width, device=depth_m.device, dtype=depth_m.dtype), indexing="ij")
    pixels = torch.stack([xs.reshape(-1), ys.reshape(-1), torch.ones_like(xs).reshape(-1)])  # (3, H*W)
    rays = torch.linalg.inv(camera_matrix) @ pixels.unsqueeze(0)
    return rays * depth_m.reshape(batch, 1, -1)


def project_to_grid(points: Tensor, camera_matrix: Tensor, transform: Tensor, height: int, width: int) -> Tensor:
    """Points (N,3,H*W) moved by `transform` (N,4,4) and projected with K (N,3,3) -> (N,H,W,2) sampling grid
    for `grid_sample` (align_corners=True: -1 / +1 are the first / last pixel centres)."""
    moved = transform[:, :3, :3] @ points + transform[:, :3, 3:]
    projected = camera_matrix @ moved
    pixels = projected[:, :2] / projected[:, 2:3].clamp(min=MIN_PROJECTED_DEPTH)
    grid_x = 2.0 * pixels[:, 0] / max(width - 1, 1) - 1.0
    grid_y = 2.0 * pixels[:, 1] / max(height - 1, 1) - 1.0
    return torch.stack([grid_x, grid_y], dim=-1).view(-1, height, width, 2)


def warp_frame(source: Tensor, depth_m: Tensor, camera_matrix: Tensor, target_to_source: Tensor) -> Tensor:
    """The source image (N,C,H,W) seen from the target camera: each target pixel of depth `depth_m` (N,1,H,W,
    metres) sampled where it projects into the source. camera_matrix: (N,3,3) K of these images (both
    frames); target_to_source: (N,4,4) rigid transform of target-camera points into the source camera."""
    height, width = depth_m.shape[-2:]
    if source.shape[-2:] != (height, width):
        raise ValueError(f"source {tuple(source.shape)} and depth {tuple(depth_m.shape)} differ in size")
    grid = project_to_grid(backproject_depth(depth_m, camera_matrix), camera_matrix, target_to_source, height, width)
    return F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=True)
