"""KITTI raw reader: image paths and loading, Velodyne scans -> sparse depth ground truth, KITTI 2015 disparity.

Folder layout (KITTI raw, as downloaded): `<root>/<date>/<date>_drive_<nnnn>_sync/image_0{2,3}/data/
{frame:010d}.png` (or `.jpg` when converted as in monodepth), `velodyne_points/data/{frame:010d}.bin`,
and the calibration files in `<root>/<date>/`. Camera 2 is the left colour camera, 3 the right one.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from siam_depth_core.data.calib import StereoCalibration, load_stereo_calibration, read_timestamps
from siam_depth_core.data.stereo import StereoSequence

#: Image extensions `list_frames` recognises (KITTI PNGs, monodepth's JPEG conversion).
IMAGE_EXTENSIONS = (".png", ".jpg")


def _read_image_file(path: str | Path, flags: int, what: str) -> np.ndarray:
    """cv2.imread(path, flags); FileNotFoundError / ValueError naming `what` and the file if it is missing or
    cannot be decoded."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    image = cv2.imread(str(path), flags)
    if image is None:
        raise ValueError(f"cannot decode {what} (corrupt or not an image): {path}")
    return image


def load_image(path: str | Path) -> np.ndarray:
    """Read a .png/.jpg image as (H,W,3) uint8 RGB (grayscale files are expanded to 3 channels)."""
    return cv2.cvtColor(_read_image_file(path, cv2.IMREAD_COLOR, "image"), cv2.COLOR_BGR2RGB)


def frame_path(root: str | Path, drive: str, frame: int, camera: int = 2, ext: str = ".png") -> Path:
    """Path of one KITTI raw image: `<root>/<drive>/image_0{camera}/data/{frame:010d}{ext}`.

    drive is `<date>/<date>_drive_<nnnn>_sync`, e.g. "2011_09_26/2011_09_26_drive_0009_sync".
    """
    if camera not in (0, 1, 2, 3):
        raise ValueError(f"KITTI camera must be 0..3 (2 = left colour, 3 = right colour), got {camera}")
    if frame < 0:
        raise ValueError(f"frame index must be >= 0, got {frame}")
    return Path(root) / drive / f"image_0{camera}" / "data" / f"{int(frame):010d}{ext}"


def velodyne_path(root: str | Path, drive: str, frame: int) -> Path:
    """Path of one Velodyne scan: `<root>/<drive>/velodyne_points/data/{frame:010d}.bin`."""
    return Path(root) / drive / "velodyne_points" / "data" / f"{int(frame):010d}.bin"


def calib_dir(root: str | Path, drive: str) -> Path:
    """The date folder holding the calibration files of `drive` (`<root>/<date>`)."""
    return Path(root) / Path(drive).parts[0]


def list_frames(drive_dir: str | Path, camera: int = 2) -> list[int]:
    """Sorted frame indices with an image (.png or .jpg) in `<drive_dir>/image_0{camera}/data`."""
    data_dir = Path(drive_dir) / f"image_0{camera}" / "data"
    if not data_dir.is_dir():
        raise FileNotFoundError(f"no image folder {data_dir} (is {drive_dir} a KITTI raw drive folder?)")
    frames = {int(p.stem) for p in data_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.stem.isdigit()}
    return sorted(frames)


def frames_with_both_views(root: str | Path, drive: str, ext: str = ".png") -> list[int]:
    """Sorted frames of `drive` that have both a camera-2 and a camera-3 image with extension `ext`."""
    drive_dir = Path(root) / drive
    both = set(list_frames(drive_dir, camera=2)) & set(list_frames(drive_dir, camera=3))
    return sorted(f for f in both if frame_path(root, drive, f, 2, ext).is_file()
                  and frame_path(root, drive, f, 3, ext).is_file())


@dataclass(frozen=True)
class KittiDrive:
    """One KITTI raw drive: the paths of its files and its day's calibration (read once, then kept).

    root: the KITTI raw root (holds `<date>/`); name: `<date>/<date>_drive_<nnnn>_sync`, as in split lists.
    Sensor folders: `image_0{2,3}` (colour cameras), `velodyne_points`, `oxts`, each with `data/` and
    `timestamps.txt`; stored LiDAR depth maps (drives without scans) under `proj_depth/velodyne/image_0{c}`.
    """

    root: Path
    name: str

    @classmethod
    def from_dir(cls, drive_dir: str | Path) -> KittiDrive:
        """The drive of a folder `<root>/<date>/<date>_drive_<nnnn>_sync`."""
        drive_dir = Path(drive_dir)
        return cls(drive_dir.parents[1], f"{drive_dir.parent.name}/{drive_dir.name}")

    @property
    def path(self) -> Path:
        """`<root>/<date>/<date>_drive_<nnnn>_sync`."""
        return Path(self.root) / self.name

    @property
    def calib_dir(self) -> Path:
        """The date folder holding the calibration files (`<root>/<date>`)."""
        return calib_dir(self.root, self.name)

    def exists(self) -> bool:
        """Whether the left colour camera's images and the day's camera calibration are on disk."""
        return (self.path / "image_02" / "data").is_dir() and (self.calib_dir / "calib_cam_to_cam.txt").is_file()

    @cached_property
    def calibration(self) -> StereoCalibration:
        """The day's `StereoCalibration`, read on first use."""
        return load_stereo_calibration(self.calib_dir)

    def frames(self, camera: int = 2) -> list[int]:
        """Sorted frame indices with an image (.png or .jpg) of `camera`."""
        return list_frames(self.path, camera)

    def image_path(self, frame: int, camera: int = 2, ext: str = ".png") -> Path:
        """`image_0{camera}/data/{frame:010d}{ext}`."""
        return frame_path(self.root, self.name, frame, camera, ext)

    def find_image(self, frame: int, camera: int = 2) -> Path | None:
        """The image of `frame` in whichever of IMAGE_EXTENSIONS is on disk, or None."""
        return next((path for ext in IMAGE_EXTENSIONS
                     if (path := self.image_path(frame, camera, ext)).is_file()), None)

    def velodyne_path(self, frame: int) -> Path:
        """`velodyne_points/data/{frame:010d}.bin`."""
        return velodyne_path(self.root, self.name, frame)

    def oxts_path(self, frame: int) -> Path:
        """`oxts/data/{frame:010d}.txt` (GPS/IMU record)."""
        return self.path / "oxts" / "data" / f"{int(frame):010d}.txt"

    def stored_depth_path(self, frame: int, camera: int = 2) -> Path:
        """`proj_depth/velodyne/image_0{camera}/{frame:010d}.npz` (key `velodyne_depth`, metres, 0 = none)."""
        return self.path / "proj_depth" / "velodyne" / f"image_0{camera}" / f"{int(frame):010d}.npz"

    def timestamps_path(self, sensor: str = "image_02") -> Path:
        """`<sensor>/timestamps.txt`; sensor: `image_02`, `image_03`, `velodyne_points` or `oxts`."""
        return self.path / sensor / "timestamps.txt"

    def timestamps_ns(self, sensor: str = "image_02") -> np.ndarray:
        """(N,) int64 ns since the epoch of `sensor`'s frames (line i = frame i)."""
        path = self.timestamps_path(sensor)
        if not path.is_file():
            raise FileNotFoundError(f"missing KITTI timestamp file: {path}")
        return read_timestamps(path)


def kitti_raw_sequence(root: str | Path, drive: str, frames: Iterable[int] | None = None, ext: str = ".png"
                       ) -> StereoSequence:
    """One raw drive as a `StereoSequence` (cameras 2/3, the rig from the day's calibration).

    frames: the frame numbers to use (e.g. from a split list); None = every frame with both views.
    """
    chosen = frames_with_both_views(root, drive, ext) if frames is None else sorted(set(frames))
    rig = load_stereo_calibration(calib_dir(root, drive)).rig
    return StereoSequence(name=drive, frames=tuple(chosen),
                          left=tuple(frame_path(root, drive, f, 2, ext) for f in chosen),
                          right=tuple(frame_path(root, drive, f, 3, ext) for f in chosen), rig=rig)


def load_velodyne_points(path: str | Path) -> np.ndarray:
    """Read a KITTI Velodyne `.bin` scan as (N,4) float32 x, y, z [m, Velodyne frame], reflectance."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Velodyne scan not found: {path}")
    raw = np.fromfile(path, dtype=np.float32)
    if raw.size % 4:
        raise ValueError(f"{path} holds {raw.size} floats, not a multiple of 4 (x, y, z, reflectance)")
    return raw.reshape(-1, 4)


def velodyne_depth_map(points: np.ndarray, calib: StereoCalibration, camera: int = 2) -> np.ndarray:
    """Project Velodyne points into the rectified camera image as the KITTI devkit / monodepth2 do.

    points: (N,3+) Velodyne x, y, z in metres. Points behind the scanner (x < 0) are dropped; the rest
    are projected with P_rect_0{camera} R_rect_00 velo_to_cam; pixel = round(u) - 1, round(v) - 1
    (devkit's MATLAB 1-based convention); where several points hit a pixel the nearest is kept.
    Returns (H,W) float32 depth (camera z) in metres, H, W from S_rect_02; 0 where no point lands.
    Matches monodepth2's generate_depth_map pixel for pixel except in column 0, where its linear
    index (row * (W-1) + col - 1) makes (row, W-1) and (row+1, 0) collide; that column lies outside
    Garg's crop, so Eigen-split numbers are the same.
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] < 3:
        raise ValueError(f"points must be (N,3) or (N,4) Velodyne x, y, z[, reflectance], got {points.shape}")
    velo_to_image = calib.projection(camera) @ calib.R_rect_00 @ calib.velo_to_cam
    width, height = calib.image_size

    xyz = points[points[:, 0] >= 0, :3].astype(np.float64)
    homogeneous = np.hstack([xyz, np.ones((len(xyz), 1))])
    projected = homogeneous @ velo_to_image.T
    depth = projected[:, 2]
    cols = np.round(projected[:, 0] / depth) - 1
    rows = np.round(projected[:, 1] / depth) - 1
    inside = (cols >= 0) & (rows >= 0) & (cols < width) & (rows < height)
    cols, rows, depth = cols[inside].astype(np.int64), rows[inside].astype(np.int64), depth[inside]

    depth_map = np.full((height, width), np.inf)
    np.minimum.at(depth_map, (rows, cols), depth)
    depth_map[~np.isfinite(depth_map) | (depth_map < 0)] = 0.0
    return depth_map.astype(np.float32)


def load_velodyne_depth(root: str | Path, drive: str, frame: int, camera: int = 2) -> np.ndarray:
    """Sparse LiDAR depth ground truth of one KITTI raw frame: (H,W) float32 metres, 0 invalid."""
    calib = load_stereo_calibration(calib_dir(root, drive))
    return velodyne_depth_map(load_velodyne_points(velodyne_path(root, drive, frame)), calib, camera)


def load_disparity_png(path: str | Path) -> np.ndarray:
    """Read a KITTI 2015 disparity PNG (`disp_occ_0`, uint16 = disparity * 256) as (H,W) float32 pixels, 0 invalid."""
    encoded = _read_image_file(path, cv2.IMREAD_UNCHANGED, "disparity PNG")
    if encoded.dtype != np.uint16 or encoded.ndim != 2:
        raise ValueError(f"{path} is {encoded.dtype} with shape {encoded.shape}; a KITTI disparity PNG is "
                         "single-channel uint16")
    return encoded.astype(np.float32) / 256.0
