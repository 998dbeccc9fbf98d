"""Convert a KITTI raw drive into a rosbag2 (MCAP or sqlite3) that `ros2 bag play` and `siam-depth-play` replay.

Topics written (frames per REP 103/105, stamps from the KITTI timestamp files, bag time = header stamp):

- `/kitti/camera_color_{left,right}/image_raw`: sensor_msgs/Image rgb8, rectified KITTI camera 2 / 3; with
  `compressed=True` instead `/kitti/camera_color_{left,right}/image_raw/compressed`: sensor_msgs/CompressedImage
  JPEG (format `rgb8; jpeg compressed bgr8`, the topic and format image_transport's compressed plugin uses)
- `/kitti/camera_gray_{left,right}/image_raw` (option `with_gray`): mono8, rectified KITTI camera 0 / 1
  (JPEG `.../image_raw/compressed`, format `mono8; jpeg compressed mono8`, with `compressed=True`)
- `/kitti/<camera>/camera_info`: sensor_msgs/CameraInfo of the rectified images (plumb_bob with D = 0, R = I,
  K = P_rect_0x[:, :3]; the right camera of each pair has P[0,3] = -fx * baseline as ROS stereo does)
- `/kitti/velo/pointcloud`: sensor_msgs/PointCloud2 x, y, z, intensity float32 in `velo_link`
- `/kitti/oxts/gps/fix`: sensor_msgs/NavSatFix from the OXTS unit (`base_link`)
- `/kitti/oxts/imu`: sensor_msgs/Imu in `base_link` (REP 145): orientation of base_link in east-north-up from
  roll, pitch, yaw; angular velocity wx, wy, wz [rad/s] and linear acceleration ax, ay, az [m/s^2] in the unit's
  own axes (x forward, y left, z up; gravity included, so a standing car reads about +9.81 on z). The classic
  kitti2bag writes the level-frame values (wf/wl/wu, af/al/au) instead.
- `/tf`: tf2_msgs/TFMessage `world` -> `base_link` per OXTS record, the vehicle pose as KITTI's devkit and
  pykitti compute it: Mercator east/north [m] with the scale of the first written record, altitude [m], origin at
  the first written record's position; `world` axes are east, north, up (so the rotation equals the IMU's)
- `/tf_static`: tf2_msgs/TFMessage base_link -> velo_link -> camera optical frames, offered transient-local
  so that players latch it

Only the left-colour-camera frames present on disk (optionally limited by `frame_range`) are written; the other
sensors are written for those frames where their file exists, with a warning (log + `ConversionSummary.warnings`)
for a requested sensor whose folder is missing or that lacks some of the frames. MCAP bags are written with zstd
chunk compression by default. A conversion that fails (or is interrupted) removes the bag it had started, so
that it can be rerun with the same output path.

This module is `convert_drive` and the CLI; the steps are `kitti2bag_drive` (reading the drive),
`kitti2bag_messages` (building the messages), `kitti2bag_plan` (which messages, in bag-time order) and
`kitti2bag_writer` (writing the bag).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from siam_depth_core.data.kitti import KittiDrive, list_frames
from siam_depth_core.interrupt import InterruptFlag
from siam_depth_ros.kitti2bag_drive import load_drive_calibration
from siam_depth_ros.kitti2bag_messages import (
    DEFAULT_JPEG_QUALITY,
    GPS_TOPIC,
    IMU_TOPIC,
    LEFT_CAMERA,
    TF_TOPIC,
    VELO_TOPIC,
)
from siam_depth_ros.kitti2bag_plan import LOGGER, BagPlanner, ConversionRequest
from siam_depth_ros.kitti2bag_writer import (
    CHUNK_COMPRESSIONS,
    STORAGE_PLUGINS,
    ConversionInterrupted,
    bag_bytes,
    write_bag,
)


@dataclass(frozen=True)
class ConversionSummary:
    """What `convert_drive` wrote: the bag folder, messages per topic, the frame indices used, the warnings
    (requested sensors missing or incomplete) and the bag's size on disk in bytes."""

    bag_path: Path
    messages_per_topic: dict[str, int]
    frames: list[int]
    warnings: list[str] = field(default_factory=list)
    bag_bytes: int = 0


def parse_frame_range(text: str) -> tuple[int | None, int | None]:
    """`"A:B"` -> (A, B): frames A <= i < B as a Python slice; either side may be empty (`"5:"`, `":10"`)."""
    start_text, sep, stop_text = text.partition(":")
    if not sep:
        raise ValueError(f"frame range must look like A:B (A included, B excluded), got {text!r}")
    try:
        start = int(start_text) if start_text.strip() else None
        stop = int(stop_text) if stop_text.strip() else None
    except ValueError:
        raise ValueError(f"frame range must hold integers, like 0:20, got {text!r}") from None
    if start is not None and stop is not None and stop <= start:
        raise ValueError(f"frame range {text!r} is empty (B must be greater than A)")
    return start, stop


def _frame_range_argument(text: str) -> tuple[int | None, int | None]:
    try:
        return parse_frame_range(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def convert_drive(drive_dir: str | Path, bag_path: str | Path, storage: str = "mcap",
                  frame_range: tuple[int | None, int | None] = (None, None), with_right: bool = True,
                  with_velodyne: bool = True, with_gps: bool = True, progress: bool = True, *,
                  with_imu: bool = True, with_pose: bool = True, with_gray: bool = False, compressed: bool = False,
                  jpeg_quality: int = DEFAULT_JPEG_QUALITY, chunk_compression: str | None = None,
                  stop_requested: Callable[[], bool] = lambda: False,
                  on_message: Callable[[int], None] | None = None) -> ConversionSummary:
    """Write the KITTI raw drive `drive_dir` (`<root>/<date>/<date>_drive_<n>_sync`) as a rosbag2 at `bag_path`.

    The calibration files are read from the date folder above the drive. `frame_range` (start, stop)
    limits the left-camera frame indices to start <= i < stop. with_*: which sensors (the grayscale cameras
    only on request). compressed: JPEG `.../image_raw/compressed` (quality `jpeg_quality`, 1..100) instead of
    raw images. chunk_compression: "zstd" or "none" for MCAP (default zstd); sqlite3 bags are uncompressed.
    Raises FileNotFoundError / ValueError naming the missing drive, calibration, timestamp or unreadable
    file, or FileExistsError if `bag_path` exists; a failed conversion leaves no bag behind.
    stop_requested: polled before each message; True stops the conversion (ConversionInterrupted, no bag
    left). on_message: progress callback, called with the number of messages written so far.
    """
    drive_dir, bag_path = Path(drive_dir), Path(bag_path)
    if storage not in STORAGE_PLUGINS:
        raise ValueError(f"storage must be one of {sorted(STORAGE_PLUGINS)}, got {storage!r}")
    if chunk_compression is None:
        chunk_compression = "zstd" if storage == "mcap" else "none"
    if chunk_compression not in CHUNK_COMPRESSIONS:
        raise ValueError(f"chunk_compression must be one of {CHUNK_COMPRESSIONS}, got {chunk_compression!r}")
    if chunk_compression != "none" and storage != "mcap":
        raise ValueError(f"chunk compression is an MCAP feature; {storage} bags are written uncompressed")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    if not drive_dir.is_dir():
        raise FileNotFoundError(f"KITTI drive folder not found: {drive_dir}")
    if bag_path.exists():
        raise FileExistsError(f"output bag {bag_path} exists already; choose a new path")
    try:
        calib = load_drive_calibration(drive_dir.parent)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error} (KITTI raw keeps calib_*.txt in the date folder above the drive)") from None

    start, stop = frame_range
    frames = [f for f in list_frames(drive_dir, camera=LEFT_CAMERA.kitti_camera)
              if (start is None or f >= start) and (stop is None or f < stop)]
    if not frames:
        raise ValueError(f"no left-camera frames in {drive_dir / 'image_02' / 'data'} within {start}:{stop}")
    request = ConversionRequest(with_right, with_gray, with_velodyne, with_gps, with_imu, with_pose, compressed, jpeg_quality)
    planner = BagPlanner(KittiDrive.from_dir(drive_dir), calib, frames, request)
    plan = planner.plan()
    write_bag(bag_path, storage, chunk_compression, plan, progress, stop_requested, on_message)
    return ConversionSummary(bag_path, dict(Counter(message.topic for message in plan)), frames, planner.warnings,
                             bag_bytes(bag_path))


#: Test-only: pause the CLI after this many messages until it is interrupted (so that a test can send Ctrl-C while
#: the conversion is known to be mid-bag, whatever the machine's load).
PAUSE_AFTER_ENV = "SIAM_DEPTH_KITTI2BAG_PAUSE_AFTER"
PAUSE_LIMIT_S = 120.0


def _pause_hook(request: InterruptFlag) -> Callable[[int], None] | None:
    """The `on_message` hook that PAUSE_AFTER_ENV asks for (None when it is not set)."""
    text = os.environ.get(PAUSE_AFTER_ENV)
    if not text:
        return None
    after = int(text)

    def pause(written: int) -> None:
        if written != after:
            return
        print(f"siam-depth-kitti2bag: paused after {after} messages ({PAUSE_AFTER_ENV})", file=sys.stderr, flush=True)
        deadline = time.monotonic() + PAUSE_LIMIT_S
        while not request.requested and time.monotonic() < deadline:
            time.sleep(0.01)

    return pause


def main(argv: Sequence[str] | None = None) -> int:
    """`siam-depth-kitti2bag DRIVE_DIR OUT_BAG [--storage mcap|sqlite3] [--frames A:B] [--compressed] ...`."""
    parser = argparse.ArgumentParser(
        prog="siam-depth-kitti2bag", description="Convert a KITTI raw drive (…/<date>/<date>_drive_<n>_sync, "
        "calibration in the date folder) into a rosbag2 with cameras, camera_info, Velodyne, GPS, IMU, the vehicle "
        "pose on /tf and /tf_static.")
    parser.add_argument("drive_dir", type=Path, help="KITTI raw drive folder, e.g. kitti_raw/2011_09_26/"
                        "2011_09_26_drive_0009_sync")
    parser.add_argument("out_bag", type=Path, help="output bag folder (must not exist)")
    parser.add_argument("--storage", choices=sorted(STORAGE_PLUGINS), default="mcap",
                        help="rosbag2 storage plugin (default: mcap)")
    parser.add_argument("--frames", type=_frame_range_argument, default=(None, None), metavar="A:B",
                        help="only frames A <= i < B (either side may be left out)")
    parser.add_argument("--no-right", action="store_true", help="leave out the right colour camera (image_03)")
    parser.add_argument("--gray", action="store_true",
                        help="also write the grayscale cameras (image_00/01) as /kitti/camera_gray_{left,right}")
    parser.add_argument("--no-velodyne", action="store_true", help=f"leave out {VELO_TOPIC}")
    parser.add_argument("--no-gps", action="store_true", help=f"leave out {GPS_TOPIC}")
    parser.add_argument("--no-imu", action="store_true", help=f"leave out {IMU_TOPIC}")
    parser.add_argument("--no-pose", action="store_true", help=f"leave out the vehicle pose on {TF_TOPIC}")
    parser.add_argument("--compressed", action="store_true",
                        help="write JPEG sensor_msgs/CompressedImage on <camera>/image_raw/compressed instead of raw "
                        "images")
    parser.add_argument("--jpeg-quality", type=int, default=DEFAULT_JPEG_QUALITY,
                        help=f"JPEG quality 1..100 with --compressed (default {DEFAULT_JPEG_QUALITY})")
    parser.add_argument("--chunk-compression", choices=CHUNK_COMPRESSIONS, default=None,
                        help="MCAP chunk compression (default: zstd for mcap; sqlite3 is uncompressed)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("siam-depth-kitti2bag: %(levelname)s: %(message)s"))
    LOGGER.addHandler(handler)
    LOGGER.propagate = False
    try:
        with InterruptFlag() as interrupt:
            summary = convert_drive(args.drive_dir, args.out_bag, storage=args.storage, frame_range=args.frames,
                                    with_right=not args.no_right, with_velodyne=not args.no_velodyne,
                                    with_gps=not args.no_gps, progress=not args.quiet, with_imu=not args.no_imu,
                                    with_pose=not args.no_pose, with_gray=args.gray, compressed=args.compressed,
                                    jpeg_quality=args.jpeg_quality, chunk_compression=args.chunk_compression,
                                    stop_requested=lambda: interrupt.requested, on_message=_pause_hook(interrupt))
    except (FileNotFoundError, FileExistsError, ValueError, OSError) as error:
        print(f"siam-depth-kitti2bag: error: {error}", file=sys.stderr)
        return 2
    except ConversionInterrupted as stopped:
        print(f"siam-depth-kitti2bag: {stopped}; no partial bag left at {args.out_bag}", file=sys.stderr)
        return 130
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.propagate = True
    if interrupt.requested:
        print(f"siam-depth-kitti2bag: interrupted after the bag was complete; kept {summary.bag_path}", file=sys.stderr)
    print(f"wrote {summary.bag_path} ({args.storage}, {summary.bag_bytes / 2**20:.1f} MiB, frames "
          f"{summary.frames[0]}..{summary.frames[-1]}):")
    for topic, count in sorted(summary.messages_per_topic.items()):
        print(f"  {topic}: {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
