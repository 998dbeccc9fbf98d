"""Rectified stereo video from any source: the rig (baseline, intrinsics) and ordered left/right frame files.

Every training source (KITTI raw drives, KITTI odometry sequences, ...) is turned into
`StereoSequence`s; the clip sampler only sees these. Disparities are fractions of the image width
(monodepth convention), so depth [m] = rig.depth_per_disparity / disparity.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np


@dataclass(frozen=True, eq=False)  # eq would compare the numpy K elementwise
class StereoRig:
    """A rectified stereo pair of cameras.

    baseline_m: distance between the two optical centres in metres; camera_matrix: (3,3) intrinsics K of
    the left camera in pixels; image_size: (width, height) in pixels of the images K belongs to.
    """

    baseline_m: float
    camera_matrix: np.ndarray
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        if not np.isfinite(self.baseline_m) or self.baseline_m <= 0:
            raise ValueError(f"stereo baseline must be a positive number of metres, got {self.baseline_m}")
        if np.shape(self.camera_matrix) != (3, 3) or not self.camera_matrix[0, 0] > 0:
            raise ValueError(f"camera_matrix must be a 3x3 K with fx > 0, got {self.camera_matrix!r}")

    @property
    def fx(self) -> float:
        """Horizontal focal length in pixels."""
        return float(self.camera_matrix[0, 0])

    @property
    def depth_per_disparity(self) -> float:
        """baseline * fx / W (metres): depth [m] = this / disparity (fraction of width)."""
        return self.baseline_m * self.fx / self.image_size[0]


@dataclass(frozen=True)
class ImageCrop:
    """A box cut out of an image before it is resized: top/left corner and height/width, pixels."""

    top: int
    left: int
    height: int
    width: int

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The (height, width, ...) part of an (H, W, ...) image; ValueError when the box does not fit."""
        if self.top < 0 or self.left < 0 or self.top + self.height > image.shape[0] \
                or self.left + self.width > image.shape[1]:
            raise ValueError(f"crop {self} does not fit an image of {image.shape[1]}x{image.shape[0]}")
        return image[self.top:self.top + self.height, self.left:self.left + self.width]


@dataclass(frozen=True)
class StereoSequence:
    """Consecutive rectified stereo frames of one recording.

    name: unique label (e.g. `2011_09_26/2011_09_26_drive_0009_sync`, `odometry/02`); frames: frame
    numbers in order (gaps allowed: clips only use runs of consecutive numbers); left/right: image files
    of those frames; rig: the cameras; stamps_s: capture times in seconds (optional).
    monocular: a video of one camera (`data.video_folder`): right = left, no stereo or Depth Hints terms,
    trained through the temporal term only, with the reference rig's baseline; rig.baseline_m is unused.
    crop: a box cut out of every image before the resize to the training size (rig's K and image_size
    already describe the cropped image); None = the whole image.
    """

    name: str
    frames: tuple[int, ...]
    left: tuple[Path, ...]
    right: tuple[Path, ...]
    rig: StereoRig
    stamps_s: tuple[float, ...] | None = None
    monocular: bool = False
    crop: ImageCrop | None = None

    def __post_init__(self) -> None:
        if not len(self.frames) == len(self.left) == len(self.right):
            raise ValueError(f"{self.name}: {len(self.frames)} frames but {len(self.left)} left and "
                             f"{len(self.right)} right images")
        if self.stamps_s is not None and len(self.stamps_s) != len(self.frames):
            raise ValueError(f"{self.name}: {len(self.stamps_s)} stamps for {len(self.frames)} frames")

    def slice(self, start: int, stop: int) -> StereoSequence:
        """The frames at positions start..stop-1 (Python slice semantics) as a sequence of the same name and rig."""
        return replace(self, frames=self.frames[start:stop], left=self.left[start:stop], right=self.right[start:stop],
                       stamps_s=None if self.stamps_s is None else self.stamps_s[start:stop])
