"""Which drive the demo replays: the KITTI drive asked for, or a synthetic drive rendered when there is no KITTI data.

`prepare_source` gives a `DemoSource` (the drive, the frames replayed, whether it is synthetic); `log` is
the demo's progress line on the terminal.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from siam_depth_core.data import paths
from siam_depth_core.data.kitti import KittiDrive
from siam_depth_core.data.synthetic import write_synthetic_drive
from siam_depth_core.geometry import ImageSize

DEFAULT_DRIVE = "2011_09_26/2011_09_26_drive_0023_sync"
SYNTHETIC_SIZE = ImageSize(188, 620)  # half KITTI resolution keeps rendering to a few seconds per frame


def log(message: str) -> None:
    """Progress line on the terminal."""
    print(f"[demo] {message}", flush=True)


@dataclass(frozen=True)
class DemoSource:
    """The drive to replay, the frames replayed, and whether it is a rendered synthetic drive."""

    drive: KittiDrive
    frames: list[int]
    synthetic: bool

    @property
    def ground_truth_name(self) -> str:
        return "exact synthetic depth" if self.synthetic else "LiDAR"


def select_frames(available: list[int], frame_range: tuple[int | None, int | None]) -> list[int]:
    """The frames start <= i < stop of `available` (either bound None = open)."""
    start, stop = frame_range
    return [f for f in available if (start is None or f >= start) and (stop is None or f < stop)]


def kitti_source(drive_name: str, frame_range: tuple[int | None, int | None]) -> DemoSource | None:
    """The KITTI drive under `paths.kitti_raw_root()`, or None when it (or its calibration) is absent."""
    drive = KittiDrive(paths.kitti_raw_root(), drive_name)
    if not drive.exists():
        return None
    frames = select_frames(drive.frames(camera=2), frame_range)
    if not frames:
        raise ValueError(f"no left-camera frames of {drive.path} within {frame_range}")
    return DemoSource(drive, frames, synthetic=False)


def prepare_source(args: argparse.Namespace, tmp_dir: Path) -> DemoSource:
    """The KITTI drive asked for, or a synthetic drive rendered into `tmp_dir` (said so) without KITTI data."""
    source = None if args.synthetic else kitti_source(args.drive, args.frames)
    if source is not None:
        log(f"KITTI drive {source.drive.path}, frames {source.frames[0]}..{source.frames[-1]} "
            f"({len(source.frames)} frames)")
        return source
    if args.drive != DEFAULT_DRIVE and not args.synthetic:
        raise FileNotFoundError(f"KITTI drive {args.drive} not found under {paths.kitti_raw_root()} "
                                "(set KITTI_ROOT to a KITTI raw root)")
    reason = "--synthetic given" if args.synthetic else (
        f"no KITTI data at {paths.kitti_raw_root() / args.drive} (set KITTI_ROOT to a KITTI raw root)")
    log(f"{reason}: running on a SYNTHETIC drive of {args.synthetic_frames} rendered frames instead; "
        "metrics are against its exact depth")
    drive = write_synthetic_drive(tmp_dir / "synthetic", args.synthetic_frames, SYNTHETIC_SIZE)
    return DemoSource(drive, drive.frames(), synthetic=True)
