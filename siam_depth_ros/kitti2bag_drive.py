"""Reading a KITTI raw drive as `siam-depth-kitti2bag` needs it: the date folder's calibration of the four
cameras, the Velodyne and the OXTS unit (`DriveCalibration`), the vehicle poses in the bag's `world` frame
(`world_poses`, from `siam_depth_core.data.oxts`: OXTS records, KITTI devkit / pykitti Mercator convention),
grayscale images and the per-sensor timestamp files.

No ROS types: `kitti2bag_messages` turns what this reads into messages.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from siam_depth_core.data.calib import (
    StereoCalibration,
    load_stereo_calibration,
    read_calib_file,
    read_rigid_transform,
    read_timestamps,
)
from siam_depth_core.data.oxts import OXTS_COLUMN, mercator_poses

# Columns of a KITTI OXTS line (oxts/dataformat.txt) that the messages read.
OXTS_LAT, OXTS_LON, OXTS_ALT = OXTS_COLUMN["lat"], OXTS_COLUMN["lon"], OXTS_COLUMN["alt"]
OXTS_AX, OXTS_AY, OXTS_AZ = OXTS_COLUMN["ax"], OXTS_COLUMN["ay"], OXTS_COLUMN["az"]
OXTS_WX, OXTS_WY, OXTS_WZ = OXTS_COLUMN["wx"], OXTS_COLUMN["wy"], OXTS_COLUMN["wz"]
OXTS_POS_ACCURACY = OXTS_COLUMN["pos_accuracy"]


@dataclass(frozen=True)
class DriveCalibration:
    """Calibration of a KITTI raw date folder.

    stereo: the colour pair and Velodyne (`load_stereo_calibration`). projections: {camera: (3,4) P_rect_0x}
    for each camera 0..3 in calib_cam_to_cam.txt (pixels; relative to rectified camera 0). image_sizes:
    {camera: (width, height)} from S_rect_0x. imu_to_velo: (4,4) OXTS -> Velodyne transform (metres).
    """

    stereo: StereoCalibration
    projections: dict[int, np.ndarray]
    image_sizes: dict[int, tuple[int, int]]
    imu_to_velo: np.ndarray

    def projection(self, camera: int) -> np.ndarray:
        """(3,4) rectified projection of KITTI camera 0..3; ValueError if the calibration lacks it."""
        if camera not in self.projections:
            raise ValueError(f"calib_cam_to_cam.txt has no P_rect_0{camera} (needed for camera {camera})")
        return self.projections[camera]

    def image_size(self, camera: int) -> tuple[int, int]:
        """(width, height) of camera 0..3's rectified images, pixels."""
        return self.image_sizes.get(camera, self.stereo.image_size)

    def baseline_m(self, left_camera: int) -> float:
        """Distance between the rectified cameras `left_camera` (0 or 2) and `left_camera + 1`, metres."""
        left, right = self.projection(left_camera), self.projection(left_camera + 1)
        return float((left[0, 3] - right[0, 3]) / right[0, 0])


def load_drive_calibration(calib_dir: str | Path) -> DriveCalibration:
    """Read the calibration files of a KITTI raw date folder (`calib_cam_to_cam.txt`, `calib_velo_to_cam.txt`,
    `calib_imu_to_velo.txt`); FileNotFoundError / ValueError name the file and the missing key."""
    calib_dir = Path(calib_dir)
    stereo = load_stereo_calibration(calib_dir)
    values = read_calib_file(calib_dir / "calib_cam_to_cam.txt")
    projections = {camera: values[f"P_rect_0{camera}"].reshape(3, 4) for camera in range(4)
                   if f"P_rect_0{camera}" in values}
    image_sizes = {camera: (int(values[f"S_rect_0{camera}"][0]), int(values[f"S_rect_0{camera}"][1]))
                   for camera in range(4) if f"S_rect_0{camera}" in values}
    return DriveCalibration(stereo, projections, image_sizes,
                            read_rigid_transform(calib_dir / "calib_imu_to_velo.txt"))


def world_poses(records: np.ndarray) -> np.ndarray:
    """(N,4,4) poses of the OXTS unit in `world` (east, north, up; metres) from (N,30) OXTS records: the devkit's
    Mercator poses (`mercator_poses`, scale of the first record) moved so that the first record's position is
    the origin; the rotations stay those of the unit in east-north-up."""
    poses = mercator_poses(records)
    poses[:, :3, 3] -= poses[:1, :3, 3]
    return poses


def load_gray_image(path: str | Path) -> np.ndarray:
    """Read a grayscale KITTI image as (H,W) uint8."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"cannot decode image (corrupt or not an image): {path}")
    return image


def read_frame_stamps(path: Path, frames: Sequence[int]) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"missing KITTI timestamp file: {path}")
    stamps = read_timestamps(path)
    if frames and max(frames) >= len(stamps):
        raise ValueError(f"{path} has {len(stamps)} lines but frame {max(frames)} exists (line i = frame i)")
    return stamps
