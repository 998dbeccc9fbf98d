"""TAE for `siam-depth-eval`: sequences with true poses, streamed through a model with and without state.

A `PosedSequence` is consecutive frames of one camera with their T_world_cam poses: the runs of
consecutive evaluated frames of a KITTI raw drive that has OXTS records (`drive_sequences`), or a KITTI
odometry sequence with `poses/NN.txt` (`odometry_sequence_with_poses`). `stream_alignment` predicts every
frame twice: streamed (`DepthEstimator.step`, the ConvLSTM state carried from the first frame of the
run, as the node runs) and from a zero state (`predict_sequence([image])`, as per-image evaluation does),
and scores both with `temporal.pair_alignment`, beside an own-mean control (one depth map for every frame).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from siam_depth_core.data.kitti import KittiDrive, load_image
from siam_depth_core.data.odometry import (
    load_odometry_calibration,
    load_odometry_poses,
    odometry_camera_poses,
    odometry_poses_path,
    odometry_sequence,
)
from siam_depth_core.data.oxts import camera_poses, has_oxts
from siam_depth_core.evaluation.temporal import TemporalAlignment, pair_alignment, temporal_alignment_error
from siam_depth_core.runtime.inference import DepthResult

#: Frame period assumed for stamps when a sequence has no timestamps (KITTI cameras run at ~10 Hz), s.
DEFAULT_PERIOD_S = 0.1


class StreamPredictor(Protocol):
    """What TAE asks of a model: `DepthEstimator`'s `step` (state carried) and `predict_sequence` (zero state)."""

    def step(self, image: np.ndarray, stamp: float, encoding: str = "rgb8", fx_px: float | None = None
             ) -> DepthResult:
        """Depth of the next frame of a stream."""
        ...

    def predict_sequence(self, images: Sequence[np.ndarray], encoding: str = "rgb8", fx_px: float | None = None
                         ) -> DepthResult:
        """Depth of the last image from a zero state; ends a stream in progress."""
        ...


@dataclass(frozen=True)
class PosedSequence:
    """Consecutive frames of one camera with true poses.

    name: what the table prints; poses_from: "OXTS" or "odometry poses"; frames: (N,) frame numbers;
    images: their N image paths; stamps_s: N seconds (increasing); camera_matrix: (3,3) K in pixels of
    the images; poses: (N,4,4) T_world_cam, metres.
    """

    name: str
    poses_from: str
    frames: tuple[int, ...]
    images: tuple[Path, ...]
    stamps_s: tuple[float, ...]
    camera_matrix: np.ndarray
    poses: np.ndarray


def consecutive_runs(frames: Sequence[int], min_length: int = 2) -> list[list[int]]:
    """The runs of consecutive numbers in sorted(set(frames)) with at least `min_length` frames."""
    runs: list[list[int]] = []
    for frame in sorted(set(frames)):
        if runs and frame == runs[-1][-1] + 1:
            runs[-1].append(frame)
        else:
            runs.append([frame])
    return [run for run in runs if len(run) >= min_length]


def drive_sequences(root: Path, drive_name: str, frames: Sequence[int], camera: int = 2, ext: str = ".png"
                    ) -> list[PosedSequence]:
    """The runs (>= 2 frames) of consecutive `frames` of a KITTI raw drive that all have an image and an OXTS
    record, with camera poses from OXTS (`oxts.camera_poses`) and stamps from `image_0{camera}/timestamps.txt`."""
    drive = KittiDrive(root, drive_name)
    runs = consecutive_runs([f for run in consecutive_runs(frames) for f in run
                             if drive.image_path(f, camera, ext).is_file() and has_oxts(drive, [f])])
    if not runs:
        return []
    stamps_ns = drive.timestamps_ns(f"image_0{camera}") if drive.timestamps_path(f"image_0{camera}").is_file() \
        else None
    camera_matrix = drive.calibration.projection(camera)[:, :3].copy()
    sequences = []
    for run in runs:
        if stamps_ns is not None and run[-1] < len(stamps_ns):
            stamps = tuple(float((stamps_ns[f] - stamps_ns[run[0]]) * 1e-9) for f in run)
        else:
            stamps = tuple(DEFAULT_PERIOD_S * (f - run[0]) for f in run)
        sequences.append(PosedSequence(
            name=f"{Path(drive_name).name} {run[0]}-{run[-1]}", poses_from="OXTS", frames=tuple(run),
            images=tuple(drive.image_path(f, camera, ext) for f in run), stamps_s=stamps,
            camera_matrix=camera_matrix, poses=camera_poses(drive, run, camera)))
    return sequences


def odometry_sequence_with_poses(root: Path, sequence: str, max_frames: int | None = None) -> PosedSequence:
    """A KITTI odometry sequence's left camera (colour 2, else grayscale 0) with the poses of
    `<root>/poses/<sequence>.txt` (camera 0's, moved to the left camera); frames 0.. as far as poses and
    images are both present, at most `max_frames`."""
    stereo = odometry_sequence(root, sequence)
    camera = int(stereo.left[0].parent.name.removeprefix("image_"))
    poses_cam0 = load_odometry_poses(odometry_poses_path(root, sequence))
    calibration = load_odometry_calibration(Path(root) / "sequences" / sequence / "calib.txt")
    frames = [f for f in stereo.frames if f < len(poses_cam0)]
    run = consecutive_runs(frames, min_length=1)[0] if frames else []
    if run and run[0] != stereo.frames[0]:
        run = []
    run = run[:max_frames] if max_frames else run
    if len(run) < 2:
        raise ValueError(f"odometry sequence {sequence}: fewer than 2 consecutive frames with both an image and a "
                         f"pose in {odometry_poses_path(root, sequence)}")
    index = {frame: i for i, frame in enumerate(stereo.frames)}
    stamps = (tuple(stereo.stamps_s[index[f]] for f in run) if stereo.stamps_s is not None
              else tuple(DEFAULT_PERIOD_S * f for f in run))
    poses = odometry_camera_poses(poses_cam0[run], calibration, camera)
    return PosedSequence(name=f"odometry {sequence} {run[0]}-{run[-1]}", poses_from="odometry poses",
                         frames=tuple(run), images=tuple(stereo.left[index[f]] for f in run), stamps_s=stamps,
                         camera_matrix=stereo.rig.camera_matrix, poses=poses)


def _depths(predictor: StreamPredictor, sequence: PosedSequence, streamed: bool) -> Iterator[np.ndarray]:
    fx_px = float(sequence.camera_matrix[0, 0])
    for index, path in enumerate(sequence.images):
        image = load_image(path)
        if streamed:
            yield predictor.step(image, sequence.stamps_s[index], "rgb8", fx_px).depth_m
        else:
            yield predictor.predict_sequence([image], "rgb8", fx_px).depth_m


def stream_alignment(predictor: StreamPredictor, sequence: PosedSequence) -> dict[str, TemporalAlignment]:
    """TAE of `sequence` (one `TemporalAlignment` each) for "zero_state": each frame from zeros, "streamed":
    the state carried from the first frame, and "own_mean": the control below. The zero-state pass runs first; its last `predict_sequence` ends
    any stream in progress, so the streamed pass starts from zeros. Two depth maps are held at a time.

    The own-mean control predicts the same depth map in every frame (the per-pixel mean of the zero-state
    depths): what a model that ignores the image scores. It does not flicker at all, yet it scores the
    scene's motion (about 1 m / depth per pair when driving at 10 m/s); a model that follows the motion
    scores below it.
    """
    results = {}
    total = np.zeros((0,))
    count = np.zeros((0,))
    for key, streamed in (("zero_state", False), ("streamed", True)):
        alignment = TemporalAlignment()
        previous: np.ndarray | None = None
        for index, depth in enumerate(_depths(predictor, sequence, streamed)):
            if not streamed:
                valid = np.isfinite(depth)
                total = (total if total.size else np.zeros(depth.shape)) + np.where(valid, depth, 0.0)
                count = (count if count.size else np.zeros(depth.shape)) + valid
            if previous is not None:
                alignment.add(*pair_alignment(previous, depth, sequence.camera_matrix, sequence.poses[index - 1],
                                              sequence.poses[index]))
            previous = depth
        results[key] = alignment
    with np.errstate(invalid="ignore", divide="ignore"):
        own_mean = np.where(count > 0, total / count, np.nan).astype(np.float32)
    results["own_mean"] = temporal_alignment_error([own_mean] * len(sequence.poses), sequence.camera_matrix,
                                                   sequence.poses)
    return results


def temporal_report(predictor: StreamPredictor, sequences: Sequence[PosedSequence]) -> list[dict[str, Any]]:
    """One JSON-ready row per sequence: name, poses_from, frames (first, last), and for "streamed",
    "zero_state" and "own_mean" the `TemporalAlignment.as_dict()` (tae, pairs, per-pair forward / backward
    AbsRel, landed pixels)."""
    rows = []
    for sequence in sequences:
        scores = stream_alignment(predictor, sequence)
        rows.append({"sequence": sequence.name, "poses_from": sequence.poses_from,
                     "frames": [sequence.frames[0], sequence.frames[-1]],
                     **{key: alignment.as_dict() for key, alignment in scores.items()}})
    return rows


def format_temporal_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The printed TAE table: one line per sequence, streamed beside zero state (lower = steadier)."""
    def value(score: dict[str, Any]) -> str:
        return f"{score['tae']:.4f}" if score["tae"] is not None else "n/a"

    lines = ["Temporal alignment error (TAE): frame k's depth moved by the true pose into frame k+1, abs_rel against",
             "frame k+1's depth, both ways, mean over pairs; lower = steadier. Own-mean control: one depth map for all.",
             f"  {'sequence':<36} {'poses':<15} {'pairs':>5} {'streamed':>9} {'zero state':>11} {'own-mean':>9}"]
    for row in rows:
        lines.append(f"  {row['sequence']:<36} {row['poses_from']:<15} {row['streamed']['pairs']:>5} "
                     f"{value(row['streamed']):>9} {value(row['zero_state']):>11} {value(row['own_mean']):>9}")
    return lines
