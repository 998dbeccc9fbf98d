"""KITTI odometry reader: `sequences/NN/image_{0,1,2,3}/NNNNNN.png`, `calib.txt` (P0-P3), optional `times.txt`.

The odometry benchmark's 22 training sequences (00-21) are rectified stereo video like KITTI raw but in
a flat layout: cameras 0/1 are the grayscale pair, 2/3 the colour pair. `calib.txt` holds the
rectified 3x4 projections `P0`..`P3` (some copies only P0/P1); the baseline of a pair is
(P_left[0,3] - P_right[0,3]) / fx. Grayscale images load as 3 equal channels.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from siam_depth_core.data.calib import read_calib_file
from siam_depth_core.data.stereo import StereoRig, StereoSequence

#: Camera pairs (left, right) of the odometry rig, preferred first: colour 2/3, then grayscale 0/1.
CAMERA_PAIRS = ((2, 3), (0, 1))
FRAME_DIGITS = 6


@dataclass(frozen=True)
class OdometryCalibration:
    """The rectified projections (3,4) of one odometry sequence, by camera index (0..3)."""

    projections: dict[int, np.ndarray]

    def rig(self, pair: tuple[int, int], image_size: tuple[int, int]) -> StereoRig:
        """The stereo rig of cameras `pair` = (left, right) for images of image_size = (W, H) pixels."""
        missing = [f"P{c}" for c in pair if c not in self.projections]
        if missing:
            raise ValueError(f"calib.txt has no {', '.join(missing)} (cameras {pair[0]}/{pair[1]})")
        left, right = (self.projections[c] for c in pair)
        fx = float(left[0, 0])
        baseline_m = (float(left[0, 3]) - float(right[0, 3])) / fx
        if not baseline_m > 0:
            raise ValueError(f"cameras {pair[0]}/{pair[1]} give a baseline of {baseline_m:.4f} m; expected the "
                             "left camera first (P_left[0,3] > P_right[0,3])")
        return StereoRig(baseline_m=baseline_m, camera_matrix=left[:, :3].copy(), image_size=image_size)


def load_odometry_calibration(path: str | Path) -> OdometryCalibration:
    """Read an odometry `calib.txt` (`P0: 12 numbers` lines; `Tr` and other keys ignored)."""
    values = read_calib_file(path)
    projections = {}
    for camera in range(4):
        row = values.get(f"P{camera}")
        if row is None:
            continue
        if row.size != 12:
            raise ValueError(f"{path}: P{camera} has {row.size} numbers, expected 12 (a 3x4 matrix)")
        projections[camera] = row.reshape(3, 4)
    if not projections:
        raise ValueError(f"{path} holds no P0..P3 line; is it a KITTI odometry calib.txt?")
    return OdometryCalibration(projections)


def list_sequences(root: str | Path) -> list[str]:
    """Names of the sequence folders (`00`, `01`, ...) under `<root>/sequences`, sorted."""
    seq_dir = Path(root) / "sequences"
    if not seq_dir.is_dir():
        raise FileNotFoundError(f"no {seq_dir}: the odometry root must hold sequences/NN/ (KITTI odometry layout)")
    return sorted(p.name for p in seq_dir.iterdir() if p.is_dir() and p.name.isdigit())


def _frames(image_dir: Path) -> dict[int, Path]:
    return {int(p.stem): p for p in image_dir.glob("*.png") if p.stem.isdigit()}


def odometry_sequence(root: str | Path, sequence: str, pair: tuple[int, int] | None = None) -> StereoSequence:
    """One odometry sequence as a `StereoSequence`: frames with both views, its rig and timestamps.

    pair: the cameras (left, right); None picks the colour pair 2/3 when both folders exist, else 0/1.
    """
    seq_dir = Path(root) / "sequences" / sequence
    if not seq_dir.is_dir():
        raise FileNotFoundError(f"odometry sequence {sequence!r} not found: no folder {seq_dir}")
    if pair is None:
        available = [p for p in CAMERA_PAIRS if all((seq_dir / f"image_{c}").is_dir() for c in p)]
        if not available:
            raise FileNotFoundError(f"{seq_dir} has neither image_2/image_3 nor image_0/image_1")
        pair = available[0]
    left_frames = _frames(seq_dir / f"image_{pair[0]}")
    right_frames = _frames(seq_dir / f"image_{pair[1]}")
    frames = sorted(set(left_frames) & set(right_frames))
    if not frames:
        raise FileNotFoundError(f"{seq_dir}: no frame with both image_{pair[0]} and image_{pair[1]}")
    first = cv2.imread(str(left_frames[frames[0]]), cv2.IMREAD_UNCHANGED)
    if first is None:
        raise ValueError(f"cannot decode image (corrupt or not an image): {left_frames[frames[0]]}")
    image_size = (int(first.shape[1]), int(first.shape[0]))
    rig = load_odometry_calibration(seq_dir / "calib.txt").rig(pair, image_size)
    return StereoSequence(name=f"odometry/{sequence}", frames=tuple(frames),
                          left=tuple(left_frames[f] for f in frames), right=tuple(right_frames[f] for f in frames),
                          rig=rig, stamps_s=_stamps(seq_dir / "times.txt", frames))


def _stamps(path: Path, frames: list[int]) -> tuple[float, ...] | None:
    """Seconds of `frames` from `times.txt` (line i = frame i), or None without the file or when it is short."""
    if not path.is_file():
        return None
    stamps = np.loadtxt(path, dtype=np.float64, ndmin=1)
    if frames[-1] >= len(stamps):
        return None
    return tuple(float(stamps[f]) for f in frames)


def odometry_poses_path(root: str | Path, sequence: str) -> Path:
    """`<root>/poses/<sequence>.txt`: the ground-truth poses of an odometry sequence (training sequences 00-10)."""
    return Path(root) / "poses" / f"{sequence}.txt"


def load_odometry_poses(path: str | Path) -> np.ndarray:
    """A KITTI odometry `poses/NN.txt` (12 numbers a line, row-major 3x4; line i = frame i) -> (N,4,4) float64.

    Each pose is T_world_cam0: points of rectified camera 0 at frame i -> the world frame, which is
    camera 0 at frame 0 (metres, optical frame: x right, y down, z forward).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no odometry poses file {path} (KITTI odometry poses/NN.txt)")
    rows = np.loadtxt(path, dtype=np.float64, ndmin=2)
    if rows.shape[1] != 12:
        raise ValueError(f"{path}: {rows.shape[1]} numbers a line, expected 12 (a row-major 3x4 pose)")
    poses = np.tile(np.eye(4), (len(rows), 1, 1))
    poses[:, :3, :] = rows.reshape(-1, 3, 4)
    return poses


def odometry_camera_poses(poses_cam0: np.ndarray, calibration: OdometryCalibration, camera: int) -> np.ndarray:
    """(N,4,4) T_world_cam of rectified camera `camera` from the camera-0 poses of `load_odometry_poses`.

    The rectified cameras differ by a translation only: camera c = camera 0 moved by t = K^-1 P_c[:, 3]
    (P_c from calib.txt), so T_world_camc = T_world_cam0 @ inv(T_camc<-cam0).
    """
    if camera not in calibration.projections:
        raise ValueError(f"calib.txt has no P{camera}")
    projection = calibration.projections[camera]
    cam0_to_cam = np.eye(4)
    cam0_to_cam[:3, 3] = np.linalg.solve(projection[:, :3], projection[:, 3])
    return np.asarray(poses_cam0, dtype=np.float64) @ np.linalg.inv(cam0_to_cam)
