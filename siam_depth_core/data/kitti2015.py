"""KITTI Stereo 2015 frames for evaluation: left image + `disp_occ_0` ground-truth disparity.

A folder holds `image_2/NNNNNN_10.png` and `disp_occ_0/NNNNNN_10.png` (uint16, disparity * 256, 0 =
invalid). Depth from disparity needs f * B, which these excerpts lack (no calib files); for a network
that predicts disparity as a fraction of the image width the calibration cancels in every ratio-based
metric, so depths use the nominal KITTI colour rig (`NOMINAL_FOCAL_BASELINE_PX_M`) for both the
prediction and the ground truth.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from siam_depth_core.data.kitti import load_disparity_png, load_image

#: fx [px] * baseline [m] of the KITTI colour cameras (2011_09_26 calibration: 721.5377 px, 0.5327 m).
NOMINAL_FOCAL_BASELINE_PX_M = 721.5377 * 0.5327


@dataclass(frozen=True)
class Stereo2015Frame:
    """One evaluation frame: its name (`000046_10`), left image file and ground-truth disparity file."""

    name: str
    image: Path
    disparity: Path

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """(H,W,3) uint8 RGB left image and (H,W) float32 disparity in pixels (0 = invalid)."""
        image = load_image(self.image)
        disparity = load_disparity_png(self.disparity)
        if disparity.shape != image.shape[:2]:
            raise ValueError(f"{self.disparity} is {disparity.shape[::-1]} but {self.image} is "
                             f"{image.shape[1::-1]} (width x height)")
        return image, disparity


def list_stereo2015_frames(*folders: str | Path) -> list[Stereo2015Frame]:
    """Frames with both `image_2/<name>.png` and `disp_occ_0/<name>.png` in each folder, sorted by name within
    a folder, folders in the order given; FileNotFoundError when a folder has none."""
    frames = []
    for folder in map(Path, folders):
        disparities = {p.stem: p for p in (folder / "disp_occ_0").glob("*.png")}
        found = [Stereo2015Frame(name, folder / "image_2" / f"{name}.png", disparities[name])
                 for name in sorted(disparities) if (folder / "image_2" / f"{name}.png").is_file()]
        if not found:
            raise FileNotFoundError(f"no KITTI 2015 frame (image_2/*.png with disp_occ_0/*.png) in {folder}")
        frames.extend(found)
    return frames


def disparity_to_nominal_depth(disparity_px: np.ndarray) -> np.ndarray:
    """(H,W) depth in metres of the nominal KITTI rig for a disparity in pixels; 0 where the disparity is 0."""
    disparity_px = np.asarray(disparity_px, dtype=np.float32)
    with np.errstate(divide="ignore"):
        return np.where(disparity_px > 0, NOMINAL_FOCAL_BASELINE_PX_M / disparity_px, 0.0).astype(np.float32)
