"""Control predictions that tell a network that reads the scene from one that outputs the average scene.

- own-mean control: the per-pixel geometric mean of the model's own depth over the evaluated frames,
  applied unchanged to every frame. A model whose output hardly depends on the image scores as well
  as this; `frame_gain` = abs_rel(control) - abs_rel(model) says by how much the model beats it.
- street prior: the per-pixel median LiDAR depth of a reference drive (KITTI 0009), applied to every
  frame: what knowing only the typical street layout gives.
All depths are metres on one (H,W) pixel grid; `to_grid` moves maps between image sizes.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from siam_depth_core.data.ground_truth import ground_truth_depth, has_ground_truth
from siam_depth_core.data.kitti import KittiDrive
from siam_depth_core.evaluation.metrics import PRED_MIN_DEPTH_M


def to_grid(depth_m: np.ndarray, size: tuple[int, int], sparse: bool = False) -> np.ndarray:
    """Resize an (H,W) depth map to size = (height, width): bilinear, or nearest for sparse maps (0 = none)."""
    height, width = size
    if depth_m.shape == (height, width):
        return depth_m
    interpolation = cv2.INTER_NEAREST if sparse else cv2.INTER_LINEAR
    return cv2.resize(depth_m.astype(np.float32), (width, height), interpolation=interpolation)


def own_mean_control(pred_depths: Sequence[np.ndarray], max_depth: float = 80.0) -> np.ndarray:
    """(H,W) float32 per-pixel geometric mean of (F,H,W) predicted depths (clamped to [1e-3, max_depth],
    NaN = far), on the grid of the first frame (others are resized to it)."""
    if len(pred_depths) == 0:
        raise ValueError("the own-mean control needs at least one predicted frame")
    size = pred_depths[0].shape
    logs = [np.log(np.clip(np.nan_to_num(to_grid(d, size), nan=max_depth, posinf=max_depth), PRED_MIN_DEPTH_M,
                           max_depth)) for d in pred_depths]
    return np.exp(np.mean(logs, axis=0)).astype(np.float32)


def street_prior(gt_depths: Sequence[np.ndarray]) -> np.ndarray:
    """(H,W) float32 per-pixel median of valid (> 0) LiDAR depths over frames of one size; pixels that no
    frame covers take the value of the nearest covered pixel (the prior is dense, like a prediction)."""
    stack = np.stack([np.where(d > 0, d, np.nan) for d in gt_depths]).astype(np.float32)
    covered = np.asarray(np.isfinite(stack).any(axis=0))  # (H,W) bool array, not a numpy scalar
    if not covered.any():
        raise ValueError("the street prior needs ground truth: no frame has a valid depth")
    prior = np.full(stack.shape[1:], np.nan, np.float32)
    prior[covered] = np.nanmedian(stack[:, covered], axis=0)
    _, (rows, cols) = ndimage.distance_transform_edt(~covered, return_indices=True)
    return prior[rows, cols]


#: The drive whose median LiDAR depth per pixel is the street-prior control (51 scans in ../shared/data).
STREET_PRIOR_DRIVE = "2011_09_26/2011_09_26_drive_0009_sync"


def drive_street_prior(root: Path, name: str = STREET_PRIOR_DRIVE) -> np.ndarray:
    """(H,W) float32 per-pixel median LiDAR depth (metres) over every frame of a drive with ground truth
    (`street_prior`: what knowing only the typical street layout predicts)."""
    drive = KittiDrive(root, name)
    depths = [ground_truth_depth(drive, frame) for frame in drive.frames(camera=2) if has_ground_truth(drive, frame)]
    if not depths:
        raise FileNotFoundError(f"no LiDAR ground truth in {drive.path} for the street prior")
    return street_prior(depths)
