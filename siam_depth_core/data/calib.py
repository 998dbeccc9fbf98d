"""KITTI raw calibration files (`calib_cam_to_cam.txt`, `calib_velo_to_cam.txt`, `calib_imu_to_velo.txt`)
and timestamps."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from siam_depth_core.data.stereo import StereoRig


def read_calib_file(path: str | Path) -> dict[str, np.ndarray]:
    """Parse a KITTI `key: v1 v2 ...` calibration file into float64 arrays (non-numeric lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing KITTI calibration file: {path}")
    values: dict[str, np.ndarray] = {}
    for line in path.read_text().splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        try:
            values[key.strip()] = np.array([float(v) for v in rest.split()], dtype=np.float64)
        except ValueError:
            continue  # e.g. calib_time
    return values


def read_rigid_transform(path: str | Path) -> np.ndarray:
    """(4,4) rigid transform of a KITTI `R: ... T: ...` file (`calib_velo_to_cam.txt`, `calib_imu_to_velo.txt`):
    points of the source frame -> the target frame, metres; ValueError naming the file if R or T is missing."""
    path = Path(path)
    values = read_calib_file(path)
    if "R" not in values or "T" not in values:
        raise ValueError(f"{path} has no R/T")
    transform = np.eye(4)
    transform[:3, :3] = values["R"].reshape(3, 3)
    transform[:3, 3] = values["T"]
    return transform


@dataclass(frozen=True)
class StereoCalibration:
    """Rectified KITTI stereo rig (cameras 2 and 3) and the Velodyne extrinsics of one day.

    P_rect_02/03: (3,4) rectified projections; R_rect_00: (4,4); velo_to_cam: (4,4) Velodyne -> cam 0;
    image_size: (width, height) of the rectified images in pixels.
    """

    P_rect_02: np.ndarray
    P_rect_03: np.ndarray
    R_rect_00: np.ndarray
    velo_to_cam: np.ndarray
    image_size: tuple[int, int]

    def projection(self, camera: int) -> np.ndarray:
        """(3,4) rectified projection P_rect_0{camera} of colour camera 2 (left) or 3 (right), pixels."""
        if camera == 2:
            return self.P_rect_02
        if camera == 3:
            return self.P_rect_03
        raise ValueError(f"camera must be 2 (left colour) or 3 (right colour), got {camera}")

    @property
    def camera_matrix(self) -> np.ndarray:
        """3x3 intrinsics K of the rectified left colour camera (cam 2), pixels."""
        return self.P_rect_02[:, :3].copy()

    @property
    def baseline_m(self) -> float:
        """Distance between cameras 2 and 3 in metres (about 0.532 m for KITTI)."""
        fx = self.P_rect_02[0, 0]
        return float((self.P_rect_02[0, 3] - self.P_rect_03[0, 3]) / fx)

    @property
    def rig(self) -> StereoRig:
        """The colour stereo pair (cameras 2 and 3) as a `StereoRig`."""
        return StereoRig(baseline_m=self.baseline_m, camera_matrix=self.camera_matrix, image_size=self.image_size)

    @property
    def velo_to_image(self) -> np.ndarray:
        """(3,4) projection of homogeneous Velodyne points into cam-2 pixels: P_rect_02 R_rect_00 velo_to_cam."""
        return self.P_rect_02 @ self.R_rect_00 @ self.velo_to_cam


def velo_to_rectified_camera(stereo: StereoCalibration, projection: np.ndarray) -> np.ndarray:
    """(4,4) transform of Velodyne points into the rectified optical frame of the camera whose (3,4) rectified
    projection is `projection` (P_rect_0x, any of KITTI's cameras 0..3), metres.

    P_rect_0x = K [I | t_x] puts camera x at offset t_x = K^-1 P_rect_0x[:, 3] from rectified camera 0;
    R_rect_00 velo_to_cam maps Velodyne points into rectified camera 0.
    """
    offset = np.eye(4)
    offset[:3, 3] = np.linalg.solve(projection[:, :3], projection[:, 3])
    return offset @ stereo.R_rect_00 @ stereo.velo_to_cam


def load_stereo_calibration(calib_dir: str | Path) -> StereoCalibration:
    """Read a KITTI raw date folder's `calib_cam_to_cam.txt` and `calib_velo_to_cam.txt`."""
    calib_dir = Path(calib_dir)
    cam = read_calib_file(calib_dir / "calib_cam_to_cam.txt")
    velo_to_cam = read_rigid_transform(calib_dir / "calib_velo_to_cam.txt")
    for key in ("P_rect_02", "P_rect_03", "R_rect_00", "S_rect_02"):
        if key not in cam:
            raise ValueError(f"{calib_dir / 'calib_cam_to_cam.txt'} has no {key}")
    rect = np.eye(4)
    rect[:3, :3] = cam["R_rect_00"].reshape(3, 3)
    width, height = cam["S_rect_02"]
    return StereoCalibration(cam["P_rect_02"].reshape(3, 4), cam["P_rect_03"].reshape(3, 4), rect, velo_to_cam,
                             (int(width), int(height)))


def read_timestamps(path: str | Path) -> np.ndarray:
    """KITTI `timestamps.txt` (one `YYYY-MM-DD HH:MM:SS.nnnnnnnnn` a line) -> (N,) int64 ns since the epoch (UTC)."""
    stamps = []
    for line in Path(path).read_text().split("\n"):
        line = line.strip()
        if not line:
            continue
        date_part, _, frac = line.partition(".")
        seconds = datetime.strptime(date_part, "%Y-%m-%d %H:%M:%S")
        epoch_s = int((seconds - datetime(1970, 1, 1)).total_seconds())
        stamps.append(epoch_s * 1_000_000_000 + int(frac.ljust(9, "0")[:9]))
    return np.asarray(stamps, dtype=np.int64)
