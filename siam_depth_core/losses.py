"""Training losses of paper section 3.2: appearance, edge-aware smoothness, left-right, max-depth.

Disparities are (N,1,H,W) or (N,2,H,W) fractions of width; images (N,3,H,W) RGB in [0,1].
Per scale s (0 = full resolution):
    L_s = 1.0*L_app + (0.1/2^s)*L_smooth + 1.0*L_lr + 0.01*L_mdh,  L = sum_s L_s.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from siam_depth_core.model import SiameseOutput
from siam_depth_core.refine import flip_horizontal
from siam_depth_core.warp import warp_horizontal

SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2


@dataclass(frozen=True)
class LossWeights:
    """Weights of the four loss terms; smoothness is divided by 2^s at scale s."""

    appearance: float = 1.0
    smoothness: float = 0.1
    left_right: float = 1.0
    max_depth: float = 0.01
    ssim: float = 0.85  # omega in eq. (6)


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


def appearance_loss(target: Tensor, reconstruction: Tensor, ssim_weight: float = 0.85) -> Tensor:
    """Eq. (6): mean of w*(1-SSIM)/2 + (1-w)*|I - I*| over pixels and channels (scalar)."""
    dssim = torch.clamp((1.0 - ssim(target, reconstruction)) / 2.0, 0.0, 1.0)
    return ssim_weight * dssim.mean() + (1.0 - ssim_weight) * (target - reconstruction).abs().mean()


def smoothness_loss(disp: Tensor, image: Tensor) -> Tensor:
    """Edge-aware smoothness (eq. 7 for one map): mean |d_x D| e^{-|d_x I|} + mean |d_y D| e^{-|d_y I|}.

    disp (N,1,H,W); image (N,3,H,W); image gradients are averaged over the colour channels.
    """
    disp_dx = (disp[..., :, :-1] - disp[..., :, 1:]).abs()
    disp_dy = (disp[..., :-1, :] - disp[..., 1:, :]).abs()
    weight_x = torch.exp(-(image[..., :, :-1] - image[..., :, 1:]).abs().mean(dim=1, keepdim=True))
    weight_y = torch.exp(-(image[..., :-1, :] - image[..., 1:, :]).abs().mean(dim=1, keepdim=True))
    return (disp_dx * weight_x).mean() + (disp_dy * weight_y).mean()


def lr_consistency_loss(disp_refined: Tensor, disp_direct: Tensor) -> Tensor:
    """Eq. (8), both sides: mean |D_L - d1_R(x - d1_L)| + mean |D_R - d1_L(x + d1_R)|.

    disp_refined, disp_direct: (N,2,H,W), channels (left, right).
    """
    disp_left, disp_right = disp_direct[:, 0:1], disp_direct[:, 1:2]
    right_seen_from_left = warp_horizontal(disp_right, -disp_left)
    left_seen_from_right = warp_horizontal(disp_left, disp_right)
    return ((disp_refined[:, 0:1] - right_seen_from_left).abs().mean()
            + (disp_refined[:, 1:2] - left_seen_from_right).abs().mean())


def max_depth_heuristic_loss(disp_refined: Tensor) -> Tensor:
    """Eq. (9), both sides: mean |D_L| + mean |D_R| (pushes texture-less regions far away)."""
    return disp_refined[:, 0:1].abs().mean() + disp_refined[:, 1:2].abs().mean()


def resize_to(image: Tensor, like: Tensor) -> Tensor:
    """Area-resize (N,C,H,W) `image` to the spatial size of `like` (identity when equal)."""
    if image.shape[-2:] == like.shape[-2:]:
        return image
    return F.interpolate(image, size=like.shape[-2:], mode="area")


def reconstruct_views(image_left: Tensor, image_right: Tensor, disp: Tensor) -> tuple[Tensor, Tensor]:
    """(I_L*, I_R*) = (warp(I_R, -d_L), warp(I_L, +d_R)) for (N,2,H,W) disparities."""
    return warp_horizontal(image_right, -disp[:, 0:1]), warp_horizontal(image_left, disp[:, 1:2])


def siamese_loss(image_left: Tensor, image_right: Tensor, output: SiameseOutput,
                 weights: LossWeights = LossWeights()) -> tuple[Tensor, dict[str, Tensor]]:
    """Total training loss over the 4 scales and its detached terms for logging.

    image_left, image_right: (N,3,H,W) full-resolution rectified stereo pair in [0,1].
    Reconstruction uses d1, left-right and max-depth use D_refine, smoothness uses d2 (against the
    flipped images) and D_refine (against the images). Without a flipped pass (non-Siamese
    baseline) smoothness is on d1 only.
    """
    terms = {"appearance": 0.0, "smoothness": 0.0, "left_right": 0.0, "max_depth": 0.0}
    total = image_left.new_zeros(())
    for scale, (disp_direct, disp_refined) in enumerate(zip(output.disp_direct, output.disp_refined, strict=True)):
        left = resize_to(image_left, disp_direct)
        right = resize_to(image_right, disp_direct)
        recon_left, recon_right = reconstruct_views(left, right, disp_direct)
        app = (appearance_loss(left, recon_left, weights.ssim)
               + appearance_loss(right, recon_right, weights.ssim))
        smooth = (smoothness_loss(disp_refined[:, 0:1], left) + smoothness_loss(disp_refined[:, 1:2], right))
        if output.disp_flipped is not None:
            disp_flipped = output.disp_flipped[scale]
            smooth = smooth + (smoothness_loss(disp_flipped[:, 0:1], flip_horizontal(left))
                               + smoothness_loss(disp_flipped[:, 1:2], flip_horizontal(right)))
        lr = lr_consistency_loss(disp_refined, disp_direct)
        mdh = max_depth_heuristic_loss(disp_refined)
        total = total + (weights.appearance * app + weights.smoothness / 2 ** scale * smooth
                         + weights.left_right * lr + weights.max_depth * mdh)
        for name, value in (("appearance", app), ("smoothness", smooth), ("left_right", lr), ("max_depth", mdh)):
            terms[name] = terms[name] + value.detach()
    return total, {"total": total.detach(), **terms}
