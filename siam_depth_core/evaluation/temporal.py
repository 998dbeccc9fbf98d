"""Temporal alignment error (TAE, Video Depth Anything, Chen et al. 2025): does the depth of a video flicker?

For consecutive frames k, k+1 with predicted depths D_k, D_k+1 (H,W, metres) and the true camera motion
T_k+1<-k (4,4, metres) of a sequence with known poses, frame k's depth is back-projected with K, moved
into frame k+1, projected, and compared with D_k+1 where it lands:

    AbsRel(k -> k+1) = mean over landed pixels p of |z_moved(p) - D_k+1(p)| / D_k+1(p)

Landed pixels are those inside the image where both the moved depth and D_k+1 are valid; a point lands on
the nearest pixel (rounded projection) and where several land on one pixel the nearest is kept (a
z-buffer). The same is done from k+1 back to k with the inverse motion, and

    TAE = 1 / (2 (N-1)) * sum_k [AbsRel(k -> k+1) + AbsRel(k+1 -> k)]

over the N-1 pairs of an N-frame sequence (a fraction like ARD; Video Depth Anything prints it x100).
A perfectly steady prediction of a static scene scores 0 whatever its accuracy: TAE measures
consistency, not correctness (LiDAR metrics do that). Moving objects and occlusions add a floor that
every model shares. Unlike the paper's benchmark, nothing is scale-aligned: the depths here are metric.

Pure numpy. Poses are T_world_cam (4,4) of the optical camera frame (x right, y down, z forward),
`siam_depth_core.data.oxts.camera_poses` or `siam_depth_core.data.odometry.odometry_camera_poses`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from siam_depth_core.geometry import backproject

__all__ = ["TemporalAlignment", "alignment_abs_rel", "pair_alignment", "relative_pose", "temporal_alignment_error",
           "warp_depth"]


def relative_pose(pose_from: np.ndarray, pose_to: np.ndarray) -> np.ndarray:
    """(4,4) T_to<-from = inv(T_world_to) @ T_world_from: points of camera `from` -> camera `to` (metres)."""
    return np.linalg.inv(np.asarray(pose_to, dtype=np.float64)) @ np.asarray(pose_from, dtype=np.float64)


def warp_depth(depth_m: np.ndarray, camera_matrix: np.ndarray, transform: np.ndarray,
               shape: tuple[int, int] | None = None) -> np.ndarray:
    """Move a depth map into another camera: (H',W') float32 depth [m] of the moved points, NaN where none lands.

    depth_m: (H,W) metres, NaN or <= 0 invalid; camera_matrix: (3,3) K of both views, pixels;
    transform: (4,4) T_dst<-src (metres); shape: (H',W') of the destination image (default (H,W)).
    Each valid pixel is back-projected, moved, projected to the nearest destination pixel; points at or
    behind the destination camera are dropped; where several land on a pixel the nearest is kept.
    """
    depth_m = np.asarray(depth_m, dtype=np.float32)
    camera_matrix = np.asarray(camera_matrix, dtype=np.float64)
    transform = np.asarray(transform, dtype=np.float64)
    if transform.shape != (4, 4):
        raise ValueError(f"transform must be (4,4), got {transform.shape}")
    if camera_matrix.shape != (3, 3) or not np.array_equal(camera_matrix[2], [0.0, 0.0, 1.0]):
        raise ValueError(f"camera matrix must be a (3,3) pinhole K with last row [0, 0, 1], got {camera_matrix}")
    height, width = shape if shape is not None else depth_m.shape
    points, _ = backproject(depth_m, camera_matrix)
    # column by column: an (N,3) @ (3,3) product goes through BLAS threads that crawl on a busy machine
    source = [points[:, axis].astype(np.float64) for axis in range(3)]
    moved = [transform[row, 0] * source[0] + transform[row, 1] * source[1] + transform[row, 2] * source[2]
             + transform[row, 3] for row in range(3)]
    ahead = moved[2] > 1e-6
    x, y, z = (values[ahead] for values in moved)
    cols = np.round((camera_matrix[0, 0] * x + camera_matrix[0, 1] * y) / z + camera_matrix[0, 2])
    rows = np.round((camera_matrix[1, 0] * x + camera_matrix[1, 1] * y) / z + camera_matrix[1, 2])
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    flat = rows[inside].astype(np.int64) * width + cols[inside].astype(np.int64)
    nearest = np.full(height * width, np.inf)
    np.minimum.at(nearest, flat, z[inside])  # a z-buffer: the nearest point of those landing on a pixel
    warped = np.where(np.isfinite(nearest), nearest, np.nan).astype(np.float32)
    return warped.reshape(height, width)


def alignment_abs_rel(depth_src: np.ndarray, depth_dst: np.ndarray, camera_matrix: np.ndarray,
                      transform: np.ndarray) -> tuple[float, int]:
    """One direction of TAE: (AbsRel of depth_src moved by `transform` = T_dst<-src against depth_dst, pixels).

    depth_src, depth_dst: (H,W) metres (NaN / <= 0 invalid); camera_matrix (3,3) pixels. AbsRel =
    mean |z_moved - depth_dst| / depth_dst over the destination pixels where both are valid; NaN and 0
    pixels when none is.
    """
    depth_dst = np.asarray(depth_dst, dtype=np.float32)
    moved = warp_depth(depth_src, camera_matrix, transform, depth_dst.shape)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(moved) & np.isfinite(depth_dst) & (depth_dst > 0)
    count = int(valid.sum())
    if count == 0:
        return float("nan"), 0
    target = depth_dst[valid].astype(np.float64)
    return float(np.mean(np.abs(moved[valid] - target) / target)), count


def pair_alignment(depth_a: np.ndarray, depth_b: np.ndarray, camera_matrix: np.ndarray, pose_a: np.ndarray,
                   pose_b: np.ndarray) -> tuple[float, float, tuple[int, int]]:
    """Both directions of one pair: (AbsRel a -> b, AbsRel b -> a, (pixels a -> b, pixels b -> a)).

    depth_a, depth_b: (H,W) metres of frames a and b; camera_matrix (3,3) pixels; pose_a, pose_b (4,4)
    T_world_cam, metres. See `alignment_abs_rel`.
    """
    motion = relative_pose(pose_a, pose_b)
    ahead, ahead_pixels = alignment_abs_rel(depth_a, depth_b, camera_matrix, motion)
    behind, behind_pixels = alignment_abs_rel(depth_b, depth_a, camera_matrix, np.linalg.inv(motion))
    return ahead, behind, (ahead_pixels, behind_pixels)


@dataclass
class TemporalAlignment:
    """TAE of one or more sequences, pair by pair.

    forward[i] / backward[i]: AbsRel of pair i moved k -> k+1 / k+1 -> k (fraction; NaN where no pixel
    lands); pixels[i]: the landed pixels (forward, backward). `tae`: their mean over the pairs with both
    directions scored (NaN without any).
    """

    forward: list[float] = field(default_factory=list)
    backward: list[float] = field(default_factory=list)
    pixels: list[tuple[int, int]] = field(default_factory=list)

    def add(self, forward: float, backward: float, pixels: tuple[int, int]) -> None:
        """Append one pair's scores (`pair_alignment`)."""
        self.forward.append(forward)
        self.backward.append(backward)
        self.pixels.append(pixels)

    @property
    def scored(self) -> np.ndarray:
        """(2, P) float64 forward and backward AbsRel of the P pairs scored in both directions."""
        scores = np.array([self.forward, self.backward], dtype=np.float64).reshape(2, -1)
        return scores[:, np.isfinite(scores).all(axis=0)]

    @property
    def pairs(self) -> int:
        """Number of pairs that count in `tae`."""
        return int(self.scored.shape[1])

    @property
    def tae(self) -> float:
        """1 / (2P) * sum over the P scored pairs of (forward + backward); NaN when P = 0."""
        scored = self.scored
        return float(scored.mean()) if scored.size else float("nan")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: tae, pairs and the per-pair lists (NaN written as None)."""
        def clean(values: list[float]) -> list[float | None]:
            return [float(v) if np.isfinite(v) else None for v in values]

        tae = self.tae
        return {"tae": tae if np.isfinite(tae) else None, "pairs": self.pairs, "forward": clean(self.forward),
                "backward": clean(self.backward), "pixels": [list(p) for p in self.pixels]}


def temporal_alignment_error(depths: Sequence[np.ndarray], camera_matrix: np.ndarray,
                             poses: Sequence[np.ndarray] | np.ndarray) -> TemporalAlignment:
    """TAE of a sequence: depths (N of (H,W), metres, NaN invalid) of consecutive frames, K (3,3) pixels,
    poses (N,4,4) T_world_cam in metres (any world frame); its N-1 pairs (k, k+1), read `.tae`."""
    if len(depths) != len(poses):
        raise ValueError(f"{len(depths)} depth maps but {len(poses)} poses")
    result = TemporalAlignment()
    for index in range(len(depths) - 1):
        result.add(*pair_alignment(depths[index], depths[index + 1], camera_matrix, poses[index], poses[index + 1]))
    return result
