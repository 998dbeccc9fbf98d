"""Stereo training augmentation as in monodepth: flip with left/right swap, gamma, brightness, per-channel colour,
plus random grayscale so that colour and grayscale training sources mix, and an optional random resized crop
(zoom) that scales the intrinsics and the disparities with the image."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from siam_depth_core.geometry import scale_intrinsics

#: ITU-R BT.601 luma weights (what OpenCV's RGB -> gray uses).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def _check_range(name: str, bounds: tuple[float, float]) -> None:
    low, high = bounds
    if not 0 < low <= high:
        raise ValueError(f"{name} must be a range (low, high) with 0 < low <= high, got {bounds}")


@dataclass(frozen=True)
class AugmentDraw:
    """One draw of augmentation parameters, shared by both views and every frame of a clip."""

    flip: bool
    grayscale: bool
    photometric: bool
    gamma: float
    color_factor: Tensor  # (3,) brightness * per-channel colour
    zoom: float = 1.0  # random resized crop: the crop is 1/zoom of the image in each axis (1 = no crop)
    crop_position: tuple[float, float] = (0.5, 0.5)  # (x, y) of the crop inside the free margin, 0..1


@dataclass(frozen=True)
class CropBox:
    """A crop of an (H,W) image in whole pixels, resized back to (H,W): top-left corner and size."""

    top: int
    left: int
    height: int
    width: int

    @staticmethod
    def of(draw: AugmentDraw, height: int, width: int) -> CropBox:
        """The crop that `draw` selects in an image of (height, width) pixels."""
        crop_height = max(1, int(round(height / draw.zoom)))
        crop_width = max(1, int(round(width / draw.zoom)))
        return CropBox(int(round(draw.crop_position[1] * (height - crop_height))),
                       int(round(draw.crop_position[0] * (width - crop_width))), crop_height, crop_width)


def to_grayscale(images: Tensor) -> Tensor:
    """(...,3,H,W) RGB -> (...,3,H,W) with three equal luma channels."""
    weights = images.new_tensor(LUMA_WEIGHTS).view(3, 1, 1)
    return (images * weights).sum(dim=-3, keepdim=True).expand_as(images).contiguous()


@dataclass(frozen=True)
class StereoAugment:
    """Random augmentation of a stereo clip, one draw of parameters for the whole clip.

    flip_prob: probability of mirroring both images and swapping them (the mirrored right image becomes
    the left one, so the pair stays a valid rectified stereo pair). grayscale_prob: probability of
    turning both views into 3 equal luma channels (as grayscale sources arrive). prob: probability of
    the photometric part, which applies image ** gamma, * brightness, * colour (one factor per RGB
    channel) with each factor uniform in its range, then clamps to [0,1].
    """

    flip_prob: float = 0.5
    gamma: tuple[float, float] = (0.8, 1.2)
    brightness: tuple[float, float] = (0.5, 2.0)
    color: tuple[float, float] = (0.8, 1.2)
    prob: float = 0.5
    grayscale_prob: float = 0.0
    zoom: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        for name in ("flip_prob", "prob", "grayscale_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0,1], got {getattr(self, name)}")
        _check_range("gamma", self.gamma)
        _check_range("brightness", self.brightness)
        _check_range("color", self.color)
        if not 1.0 <= self.zoom[0] <= self.zoom[1]:
            raise ValueError(f"zoom must be a range (low, high) with 1 <= low <= high, got {self.zoom}")

    def draw(self, generator: torch.Generator) -> AugmentDraw:
        """Draw the parameters; the same number of random values is drawn whatever is chosen."""
        flip, photometric, gamma_u, brightness_u, gray_u = torch.rand(5, generator=generator,
                                                                      dtype=torch.float64).tolist()
        color_u = torch.rand(3, generator=generator, dtype=torch.float64)
        zoom_u, crop_x, crop_y = torch.rand(3, generator=generator, dtype=torch.float64).tolist()
        gamma = self.gamma[0] + (self.gamma[1] - self.gamma[0]) * gamma_u
        brightness = self.brightness[0] + (self.brightness[1] - self.brightness[0]) * brightness_u
        color = self.color[0] + (self.color[1] - self.color[0]) * color_u
        zoom = self.zoom[0] + (self.zoom[1] - self.zoom[0]) * zoom_u
        return AugmentDraw(flip=flip < self.flip_prob, grayscale=gray_u < self.grayscale_prob,
                           photometric=photometric < self.prob, gamma=gamma, color_factor=brightness * color,
                           zoom=zoom, crop_position=(crop_x, crop_y))

    def apply_geometric(self, draw: AugmentDraw, left: Tensor, right: Tensor, disparity: bool = False
                        ) -> tuple[Tensor, Tensor]:
        """The geometric part only (crop, then flip + swap) of (...,C,H,W) maps. With `disparity`, the maps
        are left/right disparities (fraction of width, 0 = none): cropped with nearest neighbours and scaled
        by `disparity_scale` (a zoomed image has proportionally larger disparities)."""
        if draw.zoom != 1.0:
            left, right = (_crop_resize(view, draw, disparity) for view in (left, right))
        if draw.flip:
            return right.flip(-1), left.flip(-1)
        return left, right

    @staticmethod
    def disparity_scale(draw: AugmentDraw, width: int) -> float:
        """Factor by which the crop of `draw` multiplies disparities (and depth per unit disparity) of
        images `width` pixels wide: the horizontal zoom actually applied."""
        return width / CropBox.of(draw, 1, width).width

    @staticmethod
    def camera_matrix(draw: AugmentDraw, camera_matrix: np.ndarray, height: int, width: int) -> np.ndarray:
        """(3,3) K of an (H,W) image after the geometric part of `draw`: the crop shifts and scales it, the
        flip mirrors the principal point (the right camera of a rectified pair shares K)."""
        box = CropBox.of(draw, height, width)
        shifted = np.asarray(camera_matrix, dtype=np.float64).copy()
        shifted[0, 2] -= box.left
        shifted[1, 2] -= box.top
        result = scale_intrinsics(shifted, width / box.width, height / box.height)
        if draw.flip:
            result[0, 2] = width - 1 - result[0, 2]
        return result

    def apply(self, draw: AugmentDraw, left: Tensor, right: Tensor) -> tuple[Tensor, Tensor]:
        """Augment (T,3,H,W) or (3,H,W) RGB images in [0,1] with `draw`; returns new (left, right) in [0,1]."""
        if left.shape != right.shape or left.dim() not in (3, 4) or left.shape[-3] != 3:
            raise ValueError(f"left/right must both be (T,3,H,W) or (3,H,W) RGB, got {tuple(left.shape)} "
                             f"and {tuple(right.shape)}")
        left, right = self.apply_geometric(draw, left, right)
        if draw.grayscale:
            left, right = to_grayscale(left), to_grayscale(right)
        if draw.photometric:
            factor = draw.color_factor.to(left.dtype).view(3, 1, 1)
            left = left.clamp(0, 1) ** draw.gamma * factor
            right = right.clamp(0, 1) ** draw.gamma * factor
        return left.clamp(0, 1), right.clamp(0, 1)

    def __call__(self, left: Tensor, right: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Draw parameters from `generator` and apply them to (T,3,H,W) or (3,H,W) RGB in [0,1]."""
        return self.apply(self.draw(generator), left, right)


def _crop_resize(maps: Tensor, draw: AugmentDraw, disparity: bool) -> Tensor:
    """Crop (...,C,H,W) maps to the box of `draw` and resize back to (H,W): bilinear for images, nearest
    neighbours times the horizontal zoom for disparities."""
    height, width = maps.shape[-2:]
    box = CropBox.of(draw, height, width)
    crop = maps[..., box.top:box.top + box.height, box.left:box.left + box.width]
    flat = crop.reshape(-1, *crop.shape[-3:])
    if disparity:
        resized = F.interpolate(flat, size=(height, width), mode="nearest-exact") * (width / box.width)
    else:
        resized = F.interpolate(flat, size=(height, width), mode="bilinear", align_corners=False)
    return resized.reshape(*maps.shape[:-2], height, width)
