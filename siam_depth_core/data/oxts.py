"""KITTI raw OXTS (GPS/IMU) records -> vehicle and camera poses, as in the KITTI devkit / pykitti.

A drive's `oxts/data/{frame:010d}.txt` holds one line of 30 numbers per frame (`oxts/dataformat.txt`):
lat, lon [deg], alt [m], roll, pitch, yaw [rad], velocities, accelerations, angular rates, accuracies
and GPS modes. In a `_sync` drive record i belongs to image i.

Poses follow the devkit's `convertOxtsToPose`: the position is a Mercator projection of (lat, lon)
scaled by `s = cos(lat_0)` of the first record (metres, x east, y north, z up = altitude), the rotation
is Rz(yaw) Ry(pitch) Rx(roll) of the IMU frame (x forward, y left, z up), and the poses are expressed
relative to the first record's, so that pose 0 is the identity. A pose T_world_imu (4,4) maps points
in the IMU frame to the world frame (metres).

Camera poses chain the day's calibration: `calib_imu_to_velo.txt` (IMU -> Velodyne),
`calib_velo_to_cam.txt` (Velodyne -> unrectified camera 0), R_rect_00 (-> rectified camera 0) and the
translation of P_rect_0c (rectified camera 0 -> rectified camera c, t = K^-1 P_rect_0c[:, 3]). The
camera frame is the optical one (x right, y down, z forward).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from siam_depth_core.data.calib import (
    load_stereo_calibration,
    read_calib_file,
    read_rigid_transform,
    velo_to_rectified_camera,
)
from siam_depth_core.data.kitti import KittiDrive

#: Equatorial Earth radius of the devkit's Mercator projection, metres.
EARTH_RADIUS_M = 6378137.0
#: Names of the 30 columns of an OXTS record (`oxts/dataformat.txt`).
OXTS_FIELDS = ("lat", "lon", "alt", "roll", "pitch", "yaw", "vn", "ve", "vf", "vl", "vu", "ax", "ay", "az",
               "af", "al", "au", "wx", "wy", "wz", "wf", "wl", "wu", "pos_accuracy", "vel_accuracy",
               "navstat", "numsats", "posmode", "velmode", "orimode")
#: Column of each OXTS field, e.g. OXTS_COLUMN["vf"] = 8 (forward speed, m/s).
OXTS_COLUMN = {name: index for index, name in enumerate(OXTS_FIELDS)}


def read_oxts_record(path: str | Path) -> np.ndarray:
    """One `oxts/data/*.txt` file -> (30,) float64 record in the order of OXTS_FIELDS (FileNotFoundError /
    ValueError naming the file if it is missing or malformed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing OXTS record: {path}")
    try:
        values = np.array(path.read_text().split(), dtype=np.float64)
    except ValueError as error:
        raise ValueError(f"malformed OXTS record {path}: {error}") from None
    if values.size != len(OXTS_FIELDS):
        raise ValueError(f"{path} holds {values.size} numbers, an OXTS record has {len(OXTS_FIELDS)}")
    return values


def has_oxts(drive: KittiDrive, frames: Sequence[int]) -> bool:
    """Whether every frame of `frames` has an OXTS record on disk."""
    return all(drive.oxts_path(frame).is_file() for frame in frames)


def load_oxts(drive: KittiDrive, frames: Sequence[int]) -> np.ndarray:
    """(N,30) float64 OXTS records of `frames` of `drive` (FileNotFoundError naming the first missing)."""
    return np.stack([read_oxts_record(drive.oxts_path(frame)) for frame in frames]) if len(frames) else \
        np.zeros((0, len(OXTS_FIELDS)))


def oxts_rotation(records: np.ndarray) -> np.ndarray:
    """(3,3) rotation of the IMU (x forward, y left, z up) in east-north-up from one (30,) OXTS record, or
    (N,3,3) from (N,30) records: Rz(yaw) @ Ry(pitch) @ Rx(roll), angles in radians (the devkit convention)."""
    roll_pitch_yaw = np.asarray(records, dtype=np.float64)[..., 3:6]
    return Rotation.from_euler("xyz", roll_pitch_yaw).as_matrix()  # extrinsic x, y, z: Rz @ Ry @ Rx


def mercator_scale(latitude_deg: float) -> float:
    """The devkit's Mercator scale cos(latitude) of a reference latitude in degrees."""
    return float(np.cos(np.deg2rad(latitude_deg)))


def mercator_poses(records: np.ndarray, scale: float | None = None) -> np.ndarray:
    """(N,30) OXTS records -> (N,4,4) float64 poses of the IMU in the Mercator east-north-up frame, unshifted.

    Position: x = scale * R_earth * lon, y = scale * R_earth * ln(tan((90 + lat) / 2)) (metres), z = altitude;
    rotation `oxts_rotation`. scale: `mercator_scale` (None: of the first record's latitude, as the devkit does).
    """
    records = np.atleast_2d(np.asarray(records, dtype=np.float64))
    if records.shape[1] < 6:
        raise ValueError(f"OXTS records must be (N,30), got {records.shape}")
    poses = np.tile(np.eye(4), (len(records), 1, 1))
    if len(records) == 0:
        return poses
    lat, lon, alt = records[:, 0], records[:, 1], records[:, 2]
    if scale is None:
        scale = mercator_scale(lat[0])
    poses[:, 0, 3] = scale * EARTH_RADIUS_M * np.deg2rad(lon)
    poses[:, 1, 3] = scale * EARTH_RADIUS_M * np.log(np.tan(np.deg2rad(90.0 + lat) / 2.0))
    poses[:, 2, 3] = alt
    poses[:, :3, :3] = oxts_rotation(records)
    return poses


def _rotation_vector_to_matrix(vector: np.ndarray) -> np.ndarray:
    """(3,) rotation vector [rad] -> (3,3) rotation matrix (Rodrigues)."""
    angle = float(np.linalg.norm(vector))
    if angle < 1e-12:
        return np.eye(3)
    x, y, z = vector / angle
    cross = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + np.sin(angle) * cross + (1.0 - np.cos(angle)) * cross @ cross


def oxts_poses(records: np.ndarray, scale: float | None = None, shift_s: np.ndarray | None = None) -> np.ndarray:
    """(N,30) OXTS records -> (N,4,4) float64 T_world_imu, the first pose the identity (devkit convention).

    scale: the Mercator scale cos(lat) (None: of the first record, as the devkit does). Translations in
    metres; the world frame is the first record's IMU frame (x forward, y left, z up).
    shift_s: (N,) seconds by which to move each pose in time (t_wanted - t_record), at the record's
    velocity (ve, vn, vu in the Mercator frame) and angular rate (wx, wy, wz in the IMU frame); used
    to bring the poses to the image stamps, which the OXTS stamps of a `_sync` drive miss by up to ~15 ms
    (15 cm at 10 m/s). None: the poses at the OXTS stamps, as the devkit gives them.
    """
    records = np.atleast_2d(np.asarray(records, dtype=np.float64))
    poses = mercator_poses(records, scale)
    if len(records) == 0:
        return poses
    if shift_s is not None:
        shift_s = np.asarray(shift_s, dtype=np.float64)
        if shift_s.shape != (len(records),):
            raise ValueError(f"shift_s must be ({len(records)},) seconds, got shape {shift_s.shape}")
        columns = [OXTS_COLUMN[name] for name in ("ve", "vn", "vu")]
        poses[:, :3, 3] += records[:, columns] * shift_s[:, None]
        rates = records[:, [OXTS_COLUMN[name] for name in ("wx", "wy", "wz")]]
        for pose, rate, shift in zip(poses, rates, shift_s, strict=True):
            pose[:3, :3] = pose[:3, :3] @ _rotation_vector_to_matrix(rate * shift)
    return np.linalg.inv(poses[0]) @ poses


def imu_to_camera(calib_dir: str | Path, camera: int = 2) -> np.ndarray:
    """(4,4) T_cam_imu: IMU points -> rectified camera `camera` (0..3) optical frame, metres.

    T_cam_imu = T_rect0_to_camc @ R_rect_00 @ T_velo_to_cam0 @ T_imu_to_velo, from the date folder's
    `calib_imu_to_velo.txt`, `calib_velo_to_cam.txt` and `calib_cam_to_cam.txt`.
    """
    calib_dir = Path(calib_dir)
    imu_to_velo = read_rigid_transform(calib_dir / "calib_imu_to_velo.txt")
    stereo = load_stereo_calibration(calib_dir)
    cam = read_calib_file(calib_dir / "calib_cam_to_cam.txt")
    key = f"P_rect_0{camera}"
    if key not in cam:
        raise ValueError(f"{calib_dir / 'calib_cam_to_cam.txt'} has no {key}")
    return velo_to_rectified_camera(stereo, cam[key].reshape(3, 4)) @ imu_to_velo


def camera_poses(drive: KittiDrive, frames: Sequence[int], camera: int = 2, at_image_stamps: bool = True
                 ) -> np.ndarray:
    """(N,4,4) float64 T_world_cam of rectified camera `camera` at `frames`, from OXTS and the calibration.

    The world frame is the IMU frame of the first of `frames` (metres); relative camera motion between
    two frames a, b is `np.linalg.inv(poses[b]) @ poses[a]` (points of camera a -> camera b).
    at_image_stamps: move each OXTS pose to the camera's stamp (`oxts_poses` shift_s) when both
    `oxts/timestamps.txt` and `image_0{camera}/timestamps.txt` are on disk; False: at the OXTS stamps.
    """
    records = load_oxts(drive, frames)
    shift_s = None
    oxts_stamps, image_stamps = drive.timestamps_path("oxts"), drive.timestamps_path(f"image_0{camera}")
    if at_image_stamps and oxts_stamps.is_file() and image_stamps.is_file():
        oxts_ns, image_ns = drive.timestamps_ns("oxts"), drive.timestamps_ns(f"image_0{camera}")
        if len(frames) and max(frames) < min(len(oxts_ns), len(image_ns)):
            index = np.asarray(frames)
            shift_s = (image_ns[index] - oxts_ns[index]) * 1e-9
    imu_poses = oxts_poses(records, shift_s=shift_s)
    cam_to_imu = np.linalg.inv(imu_to_camera(drive.calib_dir, camera))
    return imu_poses @ cam_to_imu
