"""Comparing an image with its reconstruction: SSIM and the photometric error of paper eq. (6).

Shared by the training losses, the Depth Hints' fusion (which proxy disparity rebuilds the view best) and
the validation scores. Images are (N,C,H,W) RGB in [0,1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2


def ssim(image_a: Tensor, image_b: Tensor) -> Tensor:
    """Per-pixel SSIM (N,C,H,W) with a 3x3 box window (reflection-padded borders), data range 1."""
    pad_a = F.pad(image_a, (1, 1, 1, 1), mode="reflect")
    pad_b = F.pad(image_b, (1, 1, 1, 1), mode="reflect")
    mu_a = F.avg_pool2d(pad_a, 3, 1)
    mu_b = F.avg_pool2d(pad_b, 3, 1)
    var_a = F.avg_pool2d(pad_a * pad_a, 3, 1) - mu_a * mu_a
    var_b = F.avg_pool2d(pad_b * pad_b, 3, 1) - mu_b * mu_b
    cov_ab = F.avg_pool2d(pad_a * pad_b, 3, 1) - mu_a * mu_b
    numerator = (2 * mu_a * mu_b + SSIM_C1) * (2 * cov_ab + SSIM_C2)
    denominator = (mu_a * mu_a + mu_b * mu_b + SSIM_C1) * (var_a + var_b + SSIM_C2)
    return numerator / denominator


def photometric_error(target: Tensor, reconstruction: Tensor, ssim_weight: float = 0.85) -> Tensor:
    """Per-pixel eq. (6): w*(1-SSIM)/2 + (1-w)*|I - I*| averaged over the channels, (N,1,H,W)."""
    dssim = torch.clamp((1.0 - ssim(target, reconstruction)) / 2.0, 0.0, 1.0)
    return (ssim_weight * dssim + (1.0 - ssim_weight) * (target - reconstruction).abs()).mean(dim=1, keepdim=True)


def resize_to(image: Tensor, like: Tensor) -> Tensor:
    """Area-resize (N,C,H,W) `image` to the spatial size of `like` (identity when equal)."""
    if image.shape[-2:] == like.shape[-2:]:
        return image
    return F.interpolate(image, size=like.shape[-2:], mode="area")
