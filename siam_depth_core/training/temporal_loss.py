"""The photometric term of M+S training (monodepth2): per-pixel minimum reprojection with auto-masking.

For the left image of frame t, every source that can explain it is warped into its view: the stereo
partner (horizontal warp with the predicted disparity; it fixes the metric scale) and the previous and
next left frames (depth from the same disparity, camera motion from the pose network). Per pixel only
the best reconstruction counts (the minimum over sources), which ignores pixels that are occluded or out
of view in some source. Auto-masking: the errors of the *unwarped* sources compete too, so pixels that
look the same without any warp (a static camera, objects moving with the car, the sky) pick the
identity error, which carries no gradient, and do not train the depth.

The pose network also gets a term of its own (`pose_photometric_term`): the per-pixel minimum over the
temporal reconstructions alone, with the depth detached. Inside the minimum above it would hardly ever learn:
with a good stereo term the stereo reconstruction wins almost every pixel, and at the start, when the
predicted motion is near zero, a temporal reconstruction equals the unwarped frame and loses to it (a run
without this term still predicted 0.02 m of motion per frame after 372 steps, where KITTI moves about 1 m).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from siam_depth_core.network.pose import pose_matrix
from siam_depth_core.photometric import photometric_error, resize_to
from siam_depth_core.training.temporal_warp import intrinsics_at_scale, warp_frame

#: A reprojection must beat the identity error by more than this to count: a pixel that the unwarped source
#: explains as well (a static camera) is masked out (a fixed margin instead of monodepth2's random tie-break
#: keeps training reproducible).
IDENTITY_TIE_BREAK = 1e-5
#: The error given to the stereo sources of a monocular clip (a copy of the target, not a partner): larger than
#: any photometric error (those lie in [0, 1]), so they never win the per-pixel minimum.
NEVER_MINIMUM = 1e3


def min_reprojection(reprojection_errors: Sequence[Tensor], identity_errors: Sequence[Tensor] = ()
                     ) -> tuple[Tensor, Tensor]:
    """Per-pixel minimum over the (N,1,H,W) reprojection errors and, for auto-masking, the identity errors
    of the unwarped sources. Returns (the minimum (N,1,H,W), the auto-mask (N,1,H,W) bool: True where a
    reprojection beat every identity error by more than IDENTITY_TIE_BREAK, i.e. the pixels that train;
    elsewhere the minimum is the identity error, which carries no gradient)."""
    if not reprojection_errors:
        raise ValueError("min_reprojection needs at least one reprojection error")
    reprojection = torch.cat(list(reprojection_errors), dim=1).min(dim=1, keepdim=True).values
    if not identity_errors:
        return reprojection, torch.ones_like(reprojection, dtype=torch.bool)
    identity = torch.cat([e.detach() for e in identity_errors], dim=1).min(dim=1, keepdim=True).values
    mask = reprojection < identity - IDENTITY_TIE_BREAK
    return torch.where(mask, reprojection, identity), mask


@dataclass(frozen=True)
class TemporalSources:
    """The temporal sources of one batch of target (left) frames, at full resolution.

    images: {frame offset (-1, +1): (N,3,H,W) the neighbouring left frame, RGB in [0,1]}.
    target_to_source: {frame offset: (N,4,4) T_{target->source}, metres}.
    camera_matrix: (N,3,3) K of the full-resolution images (pixels). depth_per_disparity: (N,) metres,
    depth = it / disparity (fraction of width), in the scale of the network's (rig-scaled) disparity.
    """

    images: dict[int, Tensor]
    target_to_source: dict[int, Tensor]
    camera_matrix: Tensor
    depth_per_disparity: Tensor

    def left_appearance(self, target: Tensor, stereo_source: Tensor, stereo_error: Tensor, disp_left: Tensor,
                        ssim_weight: float = 0.85, stereo: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The min-reprojection appearance term (scalar) of the left image at one scale, and its auto-mask.

        target: (N,3,h,w) left image at this scale; stereo_source: (N,3,h,w) its stereo partner (unwarped,
        for the identity error); stereo_error: (N,1,h,w) photometric error of the stereo reconstruction;
        disp_left: (N,1,h,w) left disparity (fraction of width) whose depth warps the temporal sources.
        stereo: (N,) bool, False for monocular clips: their stereo error and its identity error never win the
        minimum (None = all stereo).
        """
        stereo_identity = photometric_error(target, stereo_source, ssim_weight)
        if stereo is not None:
            never = torch.full_like(stereo_error, NEVER_MINIMUM)
            is_stereo = stereo.view(-1, 1, 1, 1)
            stereo_error = torch.where(is_stereo, stereo_error, never)
            stereo_identity = torch.where(is_stereo, stereo_identity, never)
        reprojection = [stereo_error]
        identity = [stereo_identity]
        for source, recon in self._reconstructions(target, disp_left):
            reprojection.append(photometric_error(target, recon, ssim_weight))
            identity.append(photometric_error(target, source, ssim_weight))
        minimum, mask = min_reprojection(reprojection, identity)
        return minimum.mean(), mask

    def pose_photometric_term(self, target: Tensor, disp_left: Tensor, ssim_weight: float = 0.85) -> Tensor:
        """The pose network's own training signal (scalar): the mean over pixels of the minimum photometric error
        of the temporal reconstructions of `target` (N,3,h,w), warped with the depth of `disp_left` (N,1,h,w,
        fraction of width) detached, so that only the poses learn from it."""
        errors = [photometric_error(target, recon, ssim_weight)
                  for _, recon in self._reconstructions(target, disp_left.detach())]
        return torch.cat(errors, dim=1).min(dim=1).values.mean()

    def _reconstructions(self, target: Tensor, disp_left: Tensor) -> list[tuple[Tensor, Tensor]]:
        """(source resized to `target`'s (N,3,h,w), its warp into the target view) for every temporal source, with
        the depth of `disp_left` (N,1,h,w, fraction of width) and K scaled to h."""
        full_height = next(iter(self.images.values())).shape[-2]
        camera_matrix = intrinsics_at_scale(self.camera_matrix, target.shape[-2] / full_height)
        depth_m = self.depth_per_disparity.view(-1, 1, 1, 1) / disp_left.clamp(min=1e-6)
        sources = [(offset, resize_to(image, target)) for offset, image in self.images.items()]
        return [(source, warp_frame(source, depth_m, camera_matrix, self.target_to_source[offset]))
                for offset, source in sources]


def clip_pair_transforms(pose_net: torch.nn.Module, frames: Tensor) -> tuple[Tensor, Tensor]:
    """Camera motion between every pair of consecutive frames of a clip, in one batched pose-net pass.

    frames: (N,F,3,H,W) left frames in [0,1]. Returns (forward, backward), each (N,F-1,4,4):
    forward[:, i] = T_{i->i+1} (points of frame i's camera into frame i+1's) and backward[:, i] its inverse.
    """
    batch, count = frames.shape[:2]
    axis_angle, translation = pose_net(frames[:, :-1].flatten(0, 1), frames[:, 1:].flatten(0, 1))
    forward = pose_matrix(axis_angle, translation).view(batch, count - 1, 4, 4)
    backward = pose_matrix(axis_angle, translation, invert=True).view(batch, count - 1, 4, 4)
    return forward, backward


def frame_sources(frames: Tensor, index: int, offsets: Sequence[int], transforms: tuple[Tensor, Tensor],
                  camera_matrix: Tensor, depth_per_disparity: Tensor) -> TemporalSources:
    """The temporal sources of frame `index` of a clip: its neighbours at `offsets` (-1, +1) and the
    transforms from `clip_pair_transforms`; camera_matrix (N,3,3) and depth_per_disparity (N,) as in
    TemporalSources."""
    forward, backward = transforms
    images = {offset: frames[:, index + offset] for offset in offsets}
    target_to_source = {offset: forward[:, index] if offset > 0 else backward[:, index - 1] for offset in offsets}
    return TemporalSources(images, target_to_source, camera_matrix, depth_per_disparity)
