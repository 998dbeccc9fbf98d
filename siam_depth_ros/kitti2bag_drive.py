"""Reading a KITTI raw drive as `siam-depth-kitti2bag` needs it: the date folder's calibration of the four
cameras, the Velodyne and the OXTS unit (`DriveCalibration`), OXTS records and the vehicle pose they give
(KITTI devkit / pykitti Mercator convention), grayscale images and the per-sensor timestamp files.

No ROS types: `kitti2bag_messages` turns what this reads into messages.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from siam_depth_core.data.calib import (
    StereoCalibration,
    load_stereo_calibration,
    read_calib_file,
    read_timestamps,
)

#: WGS84 equatorial radius used by KITTI's devkit for the Mercator projection, metres.
EARTH_RADIUS_M = 6378137.0

# Columns of a KITTI OXTS line (oxts/dataformat.txt).
OXTS_LAT, OXTS_LON, OXTS_ALT, OXTS_ROLL, OXTS_PITCH, OXTS_YAW = range(6)
OXTS_AX, OXTS_AY, OXTS_AZ = 11, 12, 13
OXTS_WX, OXTS_WY, OXTS_WZ = 17, 18, 19
OXTS_POS_ACCURACY = 23
OXTS_COLUMNS = 30


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


def load_imu_to_velo(calib_dir: str | Path) -> np.ndarray:
    """(4,4) transform of OXTS/IMU points into the Velodyne frame from `calib_imu_to_velo.txt`."""
    path = Path(calib_dir) / "calib_imu_to_velo.txt"
    values = read_calib_file(path)
    if "R" not in values or "T" not in values:
        raise ValueError(f"{path} has no R/T")
    imu_to_velo = np.eye(4)
    imu_to_velo[:3, :3] = values["R"].reshape(3, 3)
    imu_to_velo[:3, 3] = values["T"]
    return imu_to_velo


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
    return DriveCalibration(stereo, projections, image_sizes, load_imu_to_velo(calib_dir))


def oxts_rotation(oxts_values: np.ndarray) -> np.ndarray:
    """(3,3) rotation of the OXTS unit (x forward, y left, z up) in east-north-up: Rz(yaw) Ry(pitch) Rx(roll)."""
    return Rotation.from_euler("xyz", oxts_values[[OXTS_ROLL, OXTS_PITCH, OXTS_YAW]]).as_matrix()


def mercator_scale(latitude_deg: float) -> float:
    """KITTI devkit's Mercator scale cos(latitude) of the reference latitude (degrees)."""
    return float(np.cos(np.deg2rad(latitude_deg)))


def oxts_pose(oxts_values: np.ndarray, scale: float, origin_m: np.ndarray) -> np.ndarray:
    """(4,4) pose of the OXTS unit in `world` (east, north, up; metres) from one OXTS line.

    Position: Mercator x = scale * R_earth * lon, y = scale * R_earth * ln(tan((90 + lat)/2)), z = altitude,
    minus `origin_m` (the first record's (3,) position); rotation `oxts_rotation`.
    """
    latitude, longitude, altitude = oxts_values[[OXTS_LAT, OXTS_LON, OXTS_ALT]]
    position = np.array([
        scale * EARTH_RADIUS_M * np.deg2rad(longitude),
        scale * EARTH_RADIUS_M * np.log(np.tan(np.deg2rad(90.0 + latitude) / 2.0)),
        altitude])
    pose = np.eye(4)
    pose[:3, :3] = oxts_rotation(oxts_values)
    pose[:3, 3] = position - origin_m
    return pose


def mercator_origin(oxts_values: np.ndarray) -> tuple[float, np.ndarray]:
    """(scale, (3,) position in metres) of a record chosen as the `world` origin (see `oxts_pose`)."""
    scale = mercator_scale(float(oxts_values[OXTS_LAT]))
    return scale, oxts_pose(oxts_values, scale, np.zeros(3))[:3, 3]


def load_gray_image(path: str | Path) -> np.ndarray:
    """Read a grayscale KITTI image as (H,W) uint8."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"cannot decode image (corrupt or not an image): {path}")
    return image


def load_oxts(path: str | Path) -> np.ndarray:
    """One OXTS record (`oxts/data/<frame>.txt`) as (30,) float64; ValueError naming the file if malformed."""
    try:
        values = np.loadtxt(path, ndmin=1)
    except ValueError as error:
        raise ValueError(f"malformed OXTS record {path}: {error}") from None
    if values.shape != (OXTS_COLUMNS,):
        raise ValueError(f"OXTS record {path} has {values.size} values, expected {OXTS_COLUMNS}")
    return values


def read_frame_stamps(path: Path, frames: Sequence[int]) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"missing KITTI timestamp file: {path}")
    stamps = read_timestamps(path)
    if frames and max(frames) >= len(stamps):
        raise ValueError(f"{path} has {len(stamps)} lines but frame {max(frames)} exists (line i = frame i)")
    return stamps
