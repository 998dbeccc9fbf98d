"""Training losses of paper section 3.2: appearance, edge-aware smoothness, left-right, max-depth.

Disparities are (N,1,H,W) or (N,2,H,W) fractions of width; images (N,3,H,W) RGB in [0,1].
Per scale s (0 = full resolution):
    L_s = 1.0*L_app + (0.1/2^s)*L_smooth + 1.0*L_lr + 0.01*L_mdh,  L = sum_s L_s.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from siam_depth_core.network.model import SiameseOutput
from siam_depth_core.network.refine import flip_horizontal
from siam_depth_core.photometric import photometric_error, resize_to
from siam_depth_core.warp import warp_horizontal

if TYPE_CHECKING:
    from siam_depth_core.training.temporal_loss import TemporalSources

@dataclass(frozen=True)
class LossWeights:
    """Weights of the four loss terms; smoothness is divided by 2^s at scale s."""

    appearance: float = 1.0
    smoothness: float = 0.1
    left_right: float = 1.0
    max_depth: float = 0.01
    ssim: float = 0.85  # omega in eq. (6)
    depth_hint: float = 1.0  # Depth Hints' supervised term, used only when training with hints


def appearance_loss(target: Tensor, reconstruction: Tensor, ssim_weight: float = 0.85) -> Tensor:
    """Eq. (6): mean of w*(1-SSIM)/2 + (1-w)*|I - I*| over pixels and channels (scalar)."""
    return photometric_error(target, reconstruction, ssim_weight).mean()


def depth_hint_loss(disp: Tensor, hint: Tensor, error_pred: Tensor, error_hint: Tensor,
                    depth_per_disparity: Tensor) -> Tensor:
    """Depth Hints' supervised term: mean over pixels of mask * log(1 + |depth(disp) - depth(hint)|).

    disp, hint: (N,1,H,W) disparity, fraction of width (hint 0 = none); error_pred, error_hint: (N,1,H,W)
    photometric errors of the view reconstructed with each; depth_per_disparity: (N,) metres (depth =
    it / disparity). The mask keeps pixels with a hint that reconstructs the view better than the
    prediction (Watson et al. 2019), so the hint only helps where it is the better explanation.
    """
    mask = (hint > 0) & (error_hint < error_pred.detach())
    scale = depth_per_disparity.view(-1, 1, 1, 1)
    depth_pred = scale / disp.clamp(min=1e-6)
    depth_hint = scale / hint.clamp(min=1e-6)
    return (mask * torch.log1p((depth_pred - depth_hint).abs())).mean()


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


def reconstruct_views(image_left: Tensor, image_right: Tensor, disp: Tensor) -> tuple[Tensor, Tensor]:
    """(I_L*, I_R*) = (warp(I_R, -d_L), warp(I_L, +d_R)) for (N,2,H,W) disparities."""
    return warp_horizontal(image_right, -disp[:, 0:1]), warp_horizontal(image_left, disp[:, 1:2])


@dataclass(frozen=True)
class HintTargets:
    """Depth Hints of a batch: (N,1,H,W) left and right disparity (fraction of width, 0 = none) at full
    resolution, and (N,) depth_per_disparity in metres (depth = it / disparity)."""

    left: Tensor
    right: Tensor
    depth_per_disparity: Tensor


def _nearest(hint: Tensor, like: Tensor) -> Tensor:
    if hint.shape[-2:] == like.shape[-2:]:
        return hint
    return F.interpolate(hint, size=like.shape[-2:], mode="nearest")


def siamese_loss(image_left: Tensor, image_right: Tensor, output: SiameseOutput,
                 weights: LossWeights = LossWeights(), hints: HintTargets | None = None,
                 temporal: TemporalSources | None = None, temporal_weight: float = 1.0,
                 stereo: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Total training loss over the 4 scales and its detached terms for logging.

    image_left, image_right: (N,3,H,W) full-resolution rectified stereo pair in [0,1].
    Reconstruction uses d1, left-right and max-depth use D_refine, smoothness uses d2 (against the
    flipped images) and D_refine (against the images). Without a flipped pass (non-Siamese
    baseline) smoothness is on d1 only. With `hints`, Depth Hints' masked term supervises d1 at
    every scale (hints resized with nearest neighbours; disparities as fractions of width are
    scale-free) and is logged as "depth_hint". With `temporal` (M+S), the left image's appearance term
    becomes (1 - temporal_weight) * its stereo term + temporal_weight * the per-pixel minimum
    reprojection over the stereo partner and the neighbouring frames with auto-masking
    (`temporal_loss.TemporalSources.left_appearance`); the right image keeps its stereo term; the pose
    network's own term (`pose_photometric_term`, depth detached, full resolution) is added with the same
    weight and logged as "pose". `stereo`: (N,) bool, False for the clips of a monocular video (their
    "right" image is a copy of the left one): their stereo appearance terms are dropped and their left image
    is explained by the temporal sources alone (needs `temporal`); None = every clip is stereo.
    """
    if stereo is not None and temporal is None and not bool(stereo.all()):
        raise ValueError("monocular clips train only through the temporal term: enable temporal (M+S)")
    terms: dict[str, Tensor] = {}  # each term summed over the scales, in the order of scale_terms
    total = image_left.new_zeros(())
    for scale, (disp_direct, disp_refined) in enumerate(zip(output.disp_direct, output.disp_refined, strict=True)):
        left = resize_to(image_left, disp_direct)
        right = resize_to(image_right, disp_direct)
        recon_left, recon_right = reconstruct_views(left, right, disp_direct)
        error_left = photometric_error(left, recon_left, weights.ssim)
        error_right = photometric_error(right, recon_right, weights.ssim)
        app_left = _stereo_mean(error_left, stereo)
        if temporal is not None:
            min_term, _ = temporal.left_appearance(left, right, error_left, disp_direct[:, 0:1], weights.ssim,
                                                   stereo)
            app_left = (1.0 - temporal_weight) * app_left + temporal_weight * min_term
        app = app_left + _stereo_mean(error_right, stereo)
        pose_term = None
        if temporal is not None and scale == 0:  # the pose network's own term, at full resolution only
            pose_term = temporal.pose_photometric_term(left, disp_direct[:, 0:1], weights.ssim)
        smooth = _smoothness(disp_refined, None if output.disp_flipped is None else output.disp_flipped[scale],
                             left, right)
        lr = lr_consistency_loss(disp_refined, disp_direct)
        mdh = max_depth_heuristic_loss(disp_refined)
        scale_total = (weights.appearance * app + weights.smoothness / 2 ** scale * smooth
                       + weights.left_right * lr + weights.max_depth * mdh)
        scale_terms = {"appearance": app, "smoothness": smooth, "left_right": lr, "max_depth": mdh}
        if pose_term is not None:
            scale_total = scale_total + temporal_weight * pose_term
            scale_terms["pose"] = pose_term
        if hints is not None:
            hint_term = _hint_term(left, right, disp_direct, (error_left, error_right), hints, weights.ssim)
            scale_total = scale_total + weights.depth_hint * hint_term
            scale_terms["depth_hint"] = hint_term
        total = total + scale_total
        for name, value in scale_terms.items():
            terms[name] = terms[name] + value.detach() if name in terms else value.detach()
    return total, {"total": total.detach(), **terms}


def _stereo_mean(error: Tensor, stereo: Tensor | None) -> Tensor:
    """Mean of an (N,1,h,w) stereo photometric error over the pixels of the stereo clips (scalar); the clips of a
    monocular video (`stereo` False) add zero, and the batch size still divides, so mixing does not reweigh."""
    if stereo is None:
        return error.mean()
    return (error.mean(dim=(1, 2, 3)) * stereo.to(error.dtype)).mean()


def _smoothness(disp_refined: Tensor, disp_flipped: Tensor | None, left: Tensor, right: Tensor) -> Tensor:
    """`siamese_loss`'s smoothness at one scale: D_refine against the images, d2 against the flipped images."""
    smooth = (smoothness_loss(disp_refined[:, 0:1], left) + smoothness_loss(disp_refined[:, 1:2], right))
    if disp_flipped is not None:
        smooth = smooth + (smoothness_loss(disp_flipped[:, 0:1], flip_horizontal(left))
                           + smoothness_loss(disp_flipped[:, 1:2], flip_horizontal(right)))
    return smooth


def _hint_term(left: Tensor, right: Tensor, disp_direct: Tensor, errors: tuple[Tensor, Tensor], hints: HintTargets,
               ssim: float) -> Tensor:
    """`siamese_loss`'s Depth Hints term at one scale (`errors`: the left and right photometric errors of d1)."""
    hint_left, hint_right = _nearest(hints.left, disp_direct), _nearest(hints.right, disp_direct)
    with torch.no_grad():
        hint_recon_left, hint_recon_right = reconstruct_views(left, right, torch.cat([hint_left, hint_right], dim=1))
        hint_error_left = photometric_error(left, hint_recon_left, ssim)
        hint_error_right = photometric_error(right, hint_recon_right, ssim)
    return (depth_hint_loss(disp_direct[:, 0:1], hint_left, errors[0], hint_error_left, hints.depth_per_disparity)
            + depth_hint_loss(disp_direct[:, 1:2], hint_right, errors[1], hint_error_right,
                              hints.depth_per_disparity))
