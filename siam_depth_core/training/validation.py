"""Scores of the validation stream during training: the held-out frames streamed through the deployed path.

Each held-out block (`data.holdout`) is run frame by frame through `DepthEstimator` with the state
carried from the block's first frame, as the node runs a camera. Per frame, at the camera resolution:

- photometric: the stereo appearance error (eq. 6) of the left image rebuilt from the right one with
  the predicted disparity (the unsupervised training signal, measured on frames never trained on);
- hint_error: Depth Hints' log(1 + |depth - hint depth|) over the pixels that have a hint;
- ard_hint: abs_rel against the hint depth (Eigen protocol: 0-80 m, Garg crop);
- ard_lidar: abs_rel against the projected LiDAR scan, for KITTI raw drives that have one.

Per frame, `score` is ard_lidar where the frame has LiDAR and ard_hint elsewhere. The number that picks
`best.pt` is the mean over the streams of each stream's mean frame score (lower is better): every stream
weighs the same, so one long stream cannot decide alone (a 78-frame stop-and-go drive with cars at 4-8 m
rewards a uniformly near depth map). Evaluation-only data (drive 0023, KITTI 2015) never enter here.

A `LidarStream` is a KITTI raw drive never trained on, of which only the left camera and the Velodyne scans
are needed: its frames are streamed the same way and scored by ard_lidar alone.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from siam_depth_core.data.depth_hints import DepthHintCache
from siam_depth_core.data.ground_truth import ground_truth_depth, has_ground_truth
from siam_depth_core.data.kitti import KittiDrive, load_image
from siam_depth_core.data.stereo import StereoSequence
from siam_depth_core.evaluation.report import DEPTH_RANGES, range_scores
from siam_depth_core.network.checkpoint import ModelMeta
from siam_depth_core.network.model import SiamDepthNet
from siam_depth_core.photometric import photometric_error
from siam_depth_core.runtime.backends.source import NetworkSource, RuntimeOptions
from siam_depth_core.runtime.inference import DepthEstimator
from siam_depth_core.warp import warp_horizontal

#: The Eigen range the validation ARDs use.
VALIDATION_RANGE = DEPTH_RANGES["0-80m"]
#: Seconds between the stamps given to the estimator (KITTI's 10 Hz; never a gap reset).
FRAME_INTERVAL_S = 0.1


@dataclass(frozen=True)
class ValidationStream:
    """One held-out block: its frames, and the KITTI raw drive whose LiDAR scores them (None: hints only)."""

    sequence: StereoSequence
    lidar_drive: KittiDrive | None = None

    @classmethod
    def with_lidar_if_any(cls, sequence: StereoSequence, kitti_raw_root: str | None) -> ValidationStream:
        """The stream, with `kitti_raw_root`'s drive of the same name when every frame has LiDAR there."""
        if kitti_raw_root is None:
            return cls(sequence)
        drive = KittiDrive(Path(kitti_raw_root), sequence.name)
        has_all = drive.exists() and all(has_ground_truth(drive, frame) for frame in sequence.frames)
        return cls(sequence, drive if has_all else None)


@dataclass(frozen=True)
class LidarStream:
    """A drive scored only against its LiDAR: `frames` of `drive`'s left colour camera, streamed in order."""

    drive: KittiDrive
    frames: tuple[int, ...]

    @classmethod
    def of_drive(cls, root: str | Path, name: str) -> LidarStream:
        """Every left frame of drive `name` under KITTI raw `root` that has a Velodyne scan; FileNotFoundError
        naming the drive when it, its calibration or its scans are missing."""
        drive = KittiDrive(Path(root), name)
        if not drive.exists():
            raise FileNotFoundError(f"validation drive {drive.path} (image_02/data and the day's "
                                    f"calib_cam_to_cam.txt) not found; set validation.lidar_root")
        frames = tuple(f for f in drive.frames() if has_ground_truth(drive, f))
        if not frames:
            raise FileNotFoundError(f"validation drive {drive.path} has no Velodyne scans (velodyne_points/data)")
        return cls(drive, frames)

    @property
    def name(self) -> str:
        """The drive's name, `<date>/<date>_drive_<nnnn>_sync`."""
        return self.drive.name


def _frame_scores(left: np.ndarray, right: np.ndarray, disparity: np.ndarray, depth_pred: np.ndarray,
                  hint_left: np.ndarray, depth_per_disparity: float, baseline_ratio: float) -> dict[str, float]:
    """photometric, hint_error and ard_hint of one frame; images (H,W,3) uint8, maps (H,W) at the camera size."""
    def tensor(image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].float() / 255.0

    disparity_rig = torch.from_numpy(disparity * baseline_ratio)[None, None].float()
    rebuilt = warp_horizontal(tensor(right), -disparity_rig)
    photometric = float(photometric_error(tensor(left), rebuilt).mean())
    has_hint = hint_left > 0
    hint_depth = np.where(has_hint, depth_per_disparity / np.maximum(hint_left, 1e-6), 0.0).astype(np.float32)
    pred_with_hint = np.nan_to_num(depth_pred[has_hint], nan=VALIDATION_RANGE[1])
    hint_error = float(np.mean(np.log1p(np.abs(pred_with_hint - hint_depth[has_hint])))) if has_hint.any() else 0.0
    ard_hint = range_scores(hint_depth, depth_pred, VALIDATION_RANGE)["abs_rel"]
    return {"photometric": photometric, "hint_error": hint_error, "ard_hint": ard_hint}


def score_stream(estimator: DepthEstimator, stream: ValidationStream, hints: DepthHintCache) -> list[dict[str, float]]:
    """Per-frame scores of one held-out block streamed by a fresh `estimator` (see the module docstring)."""
    sequence = stream.sequence
    rig = sequence.rig
    baseline_ratio = rig.baseline_m / estimator.meta.baseline_m
    rows = []
    for index, (frame, left_path, right_path) in enumerate(zip(sequence.frames, sequence.left, sequence.right,
                                                              strict=True)):
        left, right = load_image(left_path), load_image(right_path)
        result = estimator.step(left, index * FRAME_INTERVAL_S, "rgb8", rig.fx)
        scores = _frame_scores(left, right, result.disparity, result.depth_m, hints.get(left_path, right_path).left,
                               rig.depth_per_disparity, baseline_ratio)
        if stream.lidar_drive is not None:
            depth_gt = ground_truth_depth(stream.lidar_drive, frame)
            scores["ard_lidar"] = range_scores(depth_gt, result.depth_m, VALIDATION_RANGE)["abs_rel"]
        scores["score"] = scores.get("ard_lidar", scores["ard_hint"])
        rows.append(scores)
    return rows


def score_lidar_stream(estimator: DepthEstimator, stream: LidarStream) -> list[dict[str, float]]:
    """Per-frame ard_lidar (also as `score`) of a `LidarStream` streamed by a fresh `estimator`."""
    fx = float(stream.drive.calibration.camera_matrix[0, 0])
    rows = []
    for index, frame in enumerate(stream.frames):
        image_path = stream.drive.find_image(frame)
        if image_path is None:
            raise FileNotFoundError(f"{stream.name}: no left image for frame {frame}")
        result = estimator.step(load_image(image_path), index * FRAME_INTERVAL_S, "rgb8", fx)
        ard = range_scores(ground_truth_depth(stream.drive, frame), result.depth_m, VALIDATION_RANGE)["abs_rel"]
        rows.append({"ard_lidar": ard, "score": ard})
    return rows


def validate(net: SiamDepthNet, meta: ModelMeta, streams: Sequence[ValidationStream | LidarStream],
             hints: DepthHintCache | None, device: torch.device | str = "cpu") -> dict[str, float]:
    """`<stream name>/score` per stream, `score` = their mean (each stream weighs the same), and the means over
    every frame of the other scores. Leaves `net` in training mode."""
    if not streams:
        raise ValueError("validate needs at least one validation stream")
    rows: list[dict[str, float]] = []
    summary: dict[str, float] = {}
    try:
        for stream in streams:
            estimator = DepthEstimator(NetworkSource(net, meta), RuntimeOptions(device=str(device)))
            if isinstance(stream, LidarStream):
                stream_rows, name = score_lidar_stream(estimator, stream), stream.name
            else:
                if hints is None:
                    raise ValueError("held-out stereo frames need the Depth Hints cache to be scored")
                stream_rows, name = score_stream(estimator, stream, hints), stream.sequence.name
            summary[f"{name}/score"] = float(np.mean([r["score"] for r in stream_rows]))
            rows += stream_rows
    finally:
        net.train()
    summary["score"] = float(np.mean([value for key, value in summary.items() if key.endswith("/score")]))
    for name in ("photometric", "hint_error", "ard_hint", "ard_lidar"):
        values = [r[name] for r in rows if name in r]
        if values:
            summary[name] = float(np.mean(values))
    return summary
