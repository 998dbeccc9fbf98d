"""Synthetic rectified stereo sequences with exact depth: a textured road, walls and boxes, camera driving forward.

Rendered by vectorised ray casting in numpy. World frame = the left camera's optical frame at t = 0
(x right, y down, z forward, metres); the road is the plane y = CAMERA_HEIGHT_M; the left camera sits at
(0, 0, speed * t) and the right one `baseline_m` to its right, both looking along +z (a rectified pair,
so a point at depth z appears fx * baseline / z pixels further left in the right image). Surface colour
is a function of the 3-D hit point only (solid noise texture, view-independent shading), hence both
views see the same colour at the same point. Images are antialiased by supersampling; depth is the
exact z of the surface seen through each pixel centre, finite everywhere (a backdrop closes the scene).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from siam_depth_core.data.kitti import KittiDrive
from siam_depth_core.geometry import FALLBACK_FX_PER_WIDTH, ImageSize, fallback_camera_matrix

#: Height of the cameras above the road, metres (KITTI's rig).
CAMERA_HEIGHT_M = 1.65
#: Sub-pixel samples per axis used for antialiasing the images.
SUPERSAMPLE = 2
#: Name of a synthetic drive written in the KITTI raw layout (`write_synthetic_drive`).
SYNTHETIC_DRIVE = "2000_01_01/2000_01_01_drive_0000_sync"
SYNTHETIC_FIRST_STAMP = "2000-01-01 00:00:00"

_ROAD, _WALL_LEFT, _WALL_RIGHT, _BACKDROP, _FIRST_BOX = 0, 1, 2, 3, 4
_NOISE_CELLS = 32


@dataclass(frozen=True)
class SyntheticSequence:
    """A rendered stereo sequence.

    left, right: (T,H,W,3) uint8 RGB; depth_m: (T,H,W) float32 metres seen by the left camera (> 0
    everywhere); depth_right_m: (T,H,W) float32 the same for the right camera; camera_matrix: (3,3)
    intrinsics of both (pixels); baseline_m: right camera offset along x; stamps_s: (T,) float64 seconds.
    """

    left: np.ndarray
    right: np.ndarray
    depth_m: np.ndarray
    depth_right_m: np.ndarray
    camera_matrix: np.ndarray
    baseline_m: float
    stamps_s: np.ndarray


@dataclass(frozen=True)
class _Scene:
    wall_left_x: float
    wall_right_x: float
    wall_height_m: float
    backdrop_z: float
    box_min: np.ndarray  # (B,3) world corners
    box_max: np.ndarray  # (B,3)
    colors: np.ndarray  # (4 + B, 3) base RGB per surface id
    noise: np.ndarray  # (_NOISE_CELLS,)*3 periodic value-noise lattice in [0,1]
    lane_x: tuple[float, ...]


def _make_scene(rng: np.random.Generator, travel_m: float) -> _Scene:
    far_z = travel_m + rng.uniform(50.0, 70.0)
    count = int(far_z / 6.0)
    sizes = rng.uniform([0.8, 0.8, 0.8], [2.5, 2.5, 4.0], size=(count, 3))
    side = rng.choice([-1.0, 1.0], size=count)
    centre_x = side * rng.uniform(2.0, 4.5, size=count) + 0.27  # keep the rig's lane (x ~ 0..0.54) free
    centre_z = rng.uniform(6.0, far_z - 5.0, size=count)
    box_min = np.stack([centre_x - sizes[:, 0] / 2, CAMERA_HEIGHT_M - sizes[:, 1], centre_z - sizes[:, 2] / 2], 1)
    box_max = np.stack([centre_x + sizes[:, 0] / 2, np.full(count, CAMERA_HEIGHT_M), centre_z + sizes[:, 2] / 2], 1)
    fixed_colors = np.array([[0.45, 0.45, 0.47],   # road
                              [0.70, 0.45, 0.35],   # left wall
                              [0.55, 0.60, 0.70],   # right wall
                              [0.60, 0.70, 0.85]])  # backdrop
    colors = np.vstack([fixed_colors, rng.uniform(0.25, 0.95, size=(count, 3))])
    return _Scene(wall_left_x=-rng.uniform(5.5, 8.0), wall_right_x=rng.uniform(5.5, 8.0),
                  wall_height_m=rng.uniform(2.5, 6.0), backdrop_z=far_z, box_min=box_min, box_max=box_max,
                  colors=colors, noise=rng.random((_NOISE_CELLS,) * 3, dtype=np.float32), lane_x=(-1.6, 2.1))


def _value_noise(lattice: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Smooth periodic noise in [0,1] at (N,3) points (lattice units), trilinear with smoothstep weights."""
    cells = lattice.shape[0]
    flat = lattice.ravel()
    base = np.floor(points)
    frac = (points - base).astype(np.float32)
    weight = frac * frac * (3 - 2 * frac)
    index = base.astype(np.int64) % cells
    nxt = (index + 1) % cells
    result = np.zeros(len(points), dtype=np.float32)
    for corner in range(8):
        pick = [(corner >> axis) & 1 for axis in range(3)]
        ix, iy, iz = (nxt[:, a] if pick[a] else index[:, a] for a in range(3))
        w_x, w_y, w_z = (weight[:, a] if pick[a] else 1 - weight[:, a] for a in range(3))
        result += w_x * w_y * w_z * flat[(ix * cells + iy) * cells + iz]
    return result


def _ray_cast(scene: _Scene, origin: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hit along rays origin + t * direction (direction z = 1, so t is depth).

    Returns t (N,), surface id (N,) and the face normal axis (N,) (0 x, 1 y, 2 z) of the hit.
    """
    count = len(directions)
    nearest = np.full(count, np.inf)
    surface = np.full(count, -1, dtype=np.int64)
    axis = np.full(count, 2, dtype=np.int64)

    def keep(t: np.ndarray, valid: np.ndarray, surface_id: int | np.ndarray, normal_axis: int | np.ndarray) -> None:
        closer = valid & (t > 1e-6) & (t < nearest)
        nearest[closer] = t[closer]
        surface[closer] = surface_id[closer] if isinstance(surface_id, np.ndarray) else surface_id
        axis[closer] = normal_axis[closer] if isinstance(normal_axis, np.ndarray) else normal_axis

    with np.errstate(divide="ignore", invalid="ignore"):
        keep((CAMERA_HEIGHT_M - origin[1]) / directions[:, 1], directions[:, 1] > 0, _ROAD, 1)
        for wall_x, wall_id in ((scene.wall_left_x, _WALL_LEFT), (scene.wall_right_x, _WALL_RIGHT)):
            t = (wall_x - origin[0]) / directions[:, 0]
            hit_y = origin[1] + t * directions[:, 1]
            keep(t, (hit_y > -scene.wall_height_m) & (hit_y < CAMERA_HEIGHT_M), wall_id, 0)
        keep(np.full(count, scene.backdrop_z - origin[2]), np.ones(count, dtype=bool), _BACKDROP, 2)
        for box in range(len(scene.box_min)):
            rays = _rays_towards_box(scene.box_min[box] - origin, scene.box_max[box] - origin, directions)
            if not rays.size:
                continue
            t_low = (scene.box_min[box] - origin) / directions[rays]  # (M,3) slab entries/exits
            t_high = (scene.box_max[box] - origin) / directions[rays]
            t_near = np.where(np.isnan(t_low), -np.inf, np.minimum(t_low, t_high))
            t_far = np.where(np.isnan(t_low), np.inf, np.maximum(t_low, t_high)).min(axis=1)
            entry_axis = np.argmax(t_near, axis=1)
            t_entry = t_near[np.arange(len(rays)), entry_axis]
            hit = (t_entry <= t_far) & (t_entry > 1e-6) & (t_entry < nearest[rays])
            nearest[rays[hit]] = t_entry[hit]
            surface[rays[hit]] = _FIRST_BOX + box
            axis[rays[hit]] = entry_axis[hit]
    return nearest, surface, axis


def _rays_towards_box(low: np.ndarray, high: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Indices of rays (direction z = 1) inside the box's x/z and y/z slope bounds (all rays if it spans z = 0)."""
    if low[2] <= 0 < high[2] or high[2] <= 0:
        return np.arange(len(directions)) if high[2] > 0 else np.arange(0)
    slopes = [np.array([low[a] / low[2], low[a] / high[2], high[a] / low[2], high[a] / high[2]]) for a in (0, 1)]
    inside = np.ones(len(directions), dtype=bool)
    for a, slope in enumerate(slopes):
        inside &= (directions[:, a] >= slope.min()) & (directions[:, a] <= slope.max())
    return np.flatnonzero(inside)


def _shade(scene: _Scene, points: np.ndarray, surface: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """(N,3) RGB in [0,1] of hit points: base colour x solid noise texture x face shading, lane markings."""
    texture = (0.5 * _value_noise(scene.noise, points * 1.3)
               + 0.3 * _value_noise(scene.noise, points * 4.1 + 7.0)
               + 0.2 * _value_noise(scene.noise, points * 11.0 + 13.0))
    tint = _value_noise(scene.noise, points * 0.7 + 19.0)[:, None] * 0.12 - 0.06
    color = scene.colors[surface] * (0.35 + 0.9 * texture[:, None]) + tint * np.array([1.0, 0.0, -1.0])
    color *= np.array([0.75, 1.0, 0.6])[axis][:, None]  # view-independent face shading
    on_road = surface == _ROAD
    dashes = np.mod(points[:, 2], 6.0) < 3.0
    for lane_x in scene.lane_x:
        marking = on_road & dashes & (np.abs(points[:, 0] - lane_x) < 0.08)
        color[marking] = 0.9
    return np.clip(color, 0.0, 1.0)


def _pixel_rays(height: int, width: int, camera_matrix: np.ndarray, samples: int) -> np.ndarray:
    """(H*s*W*s, 3) ray directions (z = 1) through `samples` x `samples` sub-pixel centres of every pixel."""
    offsets = (np.arange(samples) + 0.5) / samples - 0.5
    cols = (np.arange(width)[:, None] + offsets).ravel()
    rows = (np.arange(height)[:, None] + offsets).ravel()
    grid_cols, grid_rows = np.meshgrid(cols, rows)
    x = (grid_cols - camera_matrix[0, 2]) / camera_matrix[0, 0]
    y = (grid_rows - camera_matrix[1, 2]) / camera_matrix[1, 1]
    return np.stack([x.ravel(), y.ravel(), np.ones(x.size)], axis=1)


def _render_view(scene: _Scene, origin: np.ndarray, height: int, width: int,
                 camera_matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H,W,3) uint8 RGB (supersampled) and (H,W) float32 depth at pixel centres for a camera at origin."""
    rays = _pixel_rays(height, width, camera_matrix, SUPERSAMPLE)
    t, surface, axis = _ray_cast(scene, origin, rays)
    color = _shade(scene, origin + t[:, None] * rays, surface, axis).reshape(height * SUPERSAMPLE, width * SUPERSAMPLE, 3)
    image = cv2.resize(color.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)
    depth, _, _ = _ray_cast(scene, origin, _pixel_rays(height, width, camera_matrix, 1))
    return np.round(image * 255).astype(np.uint8), depth.reshape(height, width).astype(np.float32)


def render_synthetic_sequence(num_frames: int, height: int, width: int, seed: int = 0, baseline_m: float = 0.54,
                              fx_ratio: float = FALLBACK_FX_PER_WIDTH, speed_mps: float = 10.0, fps: float = 10.0
                              ) -> SyntheticSequence:
    """Render `num_frames` stereo frames (H,W) of a random scene (from `seed`) driven through at `speed_mps`."""
    if num_frames < 1 or height < 1 or width < 1:
        raise ValueError(f"need num_frames, height, width >= 1, got {num_frames}, {height}, {width}")
    if baseline_m <= 0 or fx_ratio <= 0 or fps <= 0 or speed_mps < 0:
        raise ValueError("baseline_m, fx_ratio and fps must be > 0 and speed_mps >= 0")
    stamps_s = np.arange(num_frames) / fps
    scene = _make_scene(np.random.default_rng(seed), travel_m=speed_mps * stamps_s[-1])
    camera_matrix = fallback_camera_matrix(ImageSize(height, width), fx_ratio)
    left, right, depth_left, depth_right = [], [], [], []
    for stamp in stamps_s:
        origin = np.array([0.0, 0.0, speed_mps * stamp])
        image, depth = _render_view(scene, origin, height, width, camera_matrix)
        left.append(image)
        depth_left.append(depth)
        image, depth = _render_view(scene, origin + [baseline_m, 0.0, 0.0], height, width, camera_matrix)
        right.append(image)
        depth_right.append(depth)
    return SyntheticSequence(np.stack(left), np.stack(right), np.stack(depth_left), np.stack(depth_right),
                             camera_matrix, baseline_m, stamps_s)


class SyntheticClipDataset(Dataset):
    """`num_clips` independent synthetic clips of `clip_len` frames at size = (H,W), rendered on access.

    Item as KittiClipDataset's ({"left", "right": (T,3,H,W) float32 in [0,1], "drive": "synthetic_<i>",
    "frames": (T,) int64}) plus "depth_m": (T,1,H,W) float32 left-camera depth. Clip i is rendered from
    seed (seed, i), so items are deterministic. `camera_matrix` and `baseline_m` describe the rig.
    """

    def __init__(self, num_clips: int, clip_len: int, size: tuple[int, int] = (256, 512), seed: int = 0,
                 baseline_m: float = 0.54, fx_ratio: float = FALLBACK_FX_PER_WIDTH) -> None:
        if num_clips < 1 or clip_len < 1:
            raise ValueError(f"num_clips and clip_len must be >= 1, got {num_clips}, {clip_len}")
        self.num_clips = num_clips
        self.clip_len = clip_len
        self.size = (int(size[0]), int(size[1]))
        self.seed = seed
        self.baseline_m = baseline_m
        self.fx_ratio = fx_ratio
        self.camera_matrix = fallback_camera_matrix(ImageSize(*self.size), fx_ratio)

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num_clips:
            raise IndexError(f"clip index {index} out of range for {self.num_clips} clips")
        clip_seed = int(np.random.SeedSequence([self.seed, index]).generate_state(1)[0])
        sequence = render_synthetic_sequence(self.clip_len, *self.size, seed=clip_seed, baseline_m=self.baseline_m,
                                             fx_ratio=self.fx_ratio)

        def to_tensor(images: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)

        return {"left": to_tensor(sequence.left), "right": to_tensor(sequence.right), "drive": f"synthetic_{index:04d}",
                "frames": torch.arange(self.clip_len, dtype=torch.long),
                "depth_m": torch.from_numpy(sequence.depth_m).unsqueeze(1)}


def write_synthetic_drive(root: Path, num_frames: int, size: ImageSize, seed: int = 0) -> KittiDrive:
    """Render a synthetic drive and write it in the KITTI raw layout under `root` (as SYNTHETIC_DRIVE).

    Writes rectified left/right PNGs, timestamps at 10 Hz, calibration files and the exact left depth
    as `proj_depth/velodyne/image_02/<frame>.npz` (key `velodyne_depth`, metres), so that the bag
    converter and the LiDAR evaluation read it like a KITTI drive.
    """
    height, width = size
    sequence = render_synthetic_sequence(num_frames, height, width, seed=seed)
    drive = KittiDrive(Path(root), SYNTHETIC_DRIVE)
    k = sequence.camera_matrix
    projection = np.hstack([k, np.zeros((3, 1))])
    right_projection = projection.copy()
    right_projection[0, 3] = -k[0, 0] * sequence.baseline_m

    def numbers(values: np.ndarray) -> str:
        return " ".join(f"{v:.12e}" for v in np.ravel(values))

    drive.calib_dir.mkdir(parents=True, exist_ok=True)
    (drive.calib_dir / "calib_cam_to_cam.txt").write_text(
        f"P_rect_02: {numbers(projection)}\nP_rect_03: {numbers(right_projection)}\n"
        f"R_rect_00: {numbers(np.eye(3))}\nS_rect_02: {width} {height}\n")
    for name in ("calib_velo_to_cam.txt", "calib_imu_to_velo.txt"):
        (drive.calib_dir / name).write_text(f"R: {numbers(np.eye(3))}\nT: 0 0 0\n")
    stamps = "".join(f"{SYNTHETIC_FIRST_STAMP}.{int(round(s * 1e9)):09d}\n" for s in sequence.stamps_s)
    for camera, images in ((2, sequence.left), (3, sequence.right)):
        drive.image_path(0, camera).parent.mkdir(parents=True)
        drive.timestamps_path(f"image_0{camera}").write_text(stamps)
        for index, rgb in enumerate(images):
            cv2.imwrite(str(drive.image_path(index, camera)), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    drive.stored_depth_path(0).parent.mkdir(parents=True)
    for index, depth in enumerate(sequence.depth_m):
        np.savez_compressed(drive.stored_depth_path(index), velodyne_depth=depth.astype(np.float32))
    return drive
