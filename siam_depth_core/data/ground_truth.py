"""LiDAR ground truth of KITTI raw frames: which frame is scored, and its sparse depth map in metres.

The depth map comes from the frame's Velodyne scan, projected as the KITTI devkit does
(`kitti.velodyne_depth_map`), or, for drives shipped without scans, from a stored map
`proj_depth/velodyne/image_0{camera}/<frame>.npz` (key `velodyne_depth`, as in PackNet-SfM's KITTI
excerpts and our synthetic drives).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from siam_depth_core.data.kitti import KittiDrive, load_velodyne_points, velodyne_depth_map


@dataclass(frozen=True)
class EvalFrame:
    """One test image: drive (`<date>/<date>_drive_<nnnn>_sync`), frame index, camera (2 left, 3 right)."""

    drive: str
    frame: int
    camera: int = 2


def has_ground_truth(drive: KittiDrive, frame: int, camera: int = 2) -> bool:
    """Whether `ground_truth_depth` finds a Velodyne scan or a stored depth map for `frame`."""
    return drive.velodyne_path(frame).is_file() or drive.stored_depth_path(frame, camera).is_file()


def ground_truth_depth(drive: KittiDrive, frame: int, camera: int = 2) -> np.ndarray:
    """(H,W) float32 LiDAR depth in metres (camera z; 0 = no return) of one frame of `camera`.

    Raises FileNotFoundError naming both places when neither a scan nor a stored map exists.
    """
    scan = drive.velodyne_path(frame)
    if scan.is_file():
        return velodyne_depth_map(load_velodyne_points(scan), drive.calibration, camera=camera)
    stored = drive.stored_depth_path(frame, camera)
    if stored.is_file():
        with np.load(stored) as data:
            return np.asarray(data["velodyne_depth"], dtype=np.float32)
    raise FileNotFoundError(f"no LiDAR ground truth for {drive.name} frame {frame}: neither {scan} nor "
                            f"{stored} exists")
