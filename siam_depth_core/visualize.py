"""Pictures for humans: colour maps of values and metric depth, LiDAR over the image, labelled panels, PNG and GIF,
and coloured point clouds as PLY files.

One colour convention for every depth picture (evaluation panels, the demo's frames and montage, predict, the
node's `depth/colored`, the LiDAR points): log depth from FAR_DEPTH_M (dark) to NEAR_DEPTH_M (bright) through magma,
so that each doubling of the distance takes the same share of the colour map and a street scene at 5-40 m spans
most of it (inverse depth over 2-80 m put 5-40 m into its dark third: the demo's frames were nearly black);
nearer than NEAR_DEPTH_M or farther than FAR_DEPTH_M is saturated, invalid pixels are black. A fixed scale, not a
per-frame one, so that a colour means the same distance in every frame and one colour bar in metres explains it:
every saved picture carries one (`with_color_bar`, `triptych`). Images are (H,W,3) uint8 RGB.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

#: Near end of the depth colour scale, metres (a car just ahead; nearer is saturated).
NEAR_DEPTH_M = 3.0
#: Far end of the depth colour scale, metres (what a driving scene's depth reaches before the sky; farther is the
#: darkest colour).
FAR_DEPTH_M = 60.0
#: Depths labelled on colour bars, metres.
COLOR_BAR_TICKS_M = (3, 5, 10, 20, 40, 60)


def colorize(values: np.ndarray, vmin: float, vmax: float, colormap: int = cv2.COLORMAP_MAGMA) -> np.ndarray:
    """(H,W) values -> (H,W,3) uint8 RGB through an OpenCV colour map over [vmin, vmax]; NaN/inf black."""
    values = np.asarray(values, dtype=np.float32)
    finite = np.isfinite(values)
    span = max(float(vmax) - float(vmin), 1e-12)
    levels = np.clip((np.where(finite, values, vmin) - vmin) / span, 0.0, 1.0)
    colored = cv2.applyColorMap(np.round(levels * 255).astype(np.uint8), colormap)
    colored = cv2.cvtColor(colored, cv2.COLOR_BGR2RGB)
    colored[~finite] = 0
    return colored


def depth_levels(depth_m: np.ndarray, min_depth: float = NEAR_DEPTH_M, max_depth: float = FAR_DEPTH_M
                 ) -> np.ndarray:
    """The convention's position of each depth on the colour scale: (H,W) float32 in [0, 1], 1 at `min_depth`
    (bright) and 0 at `max_depth` (dark), linear in log depth and clipped; NaN where the depth is not finite and
    > 0."""
    if not 0 < min_depth < max_depth:
        raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth} and {max_depth}")
    depth_m = np.asarray(depth_m, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        levels = (np.float32(np.log(max_depth)) - np.log(depth_m)) * np.float32(1.0 / np.log(max_depth / min_depth))
        np.clip(levels, 0.0, 1.0, out=levels)
        valid = (depth_m > 0) & (depth_m < np.inf)  # NaN compares False
    levels[~valid] = np.nan
    return levels


def colorize_depth(depth_m: np.ndarray, min_depth: float = NEAR_DEPTH_M, max_depth: float = FAR_DEPTH_M,
                   colormap: int = cv2.COLORMAP_MAGMA) -> np.ndarray:
    """(H,W) depth in metres -> (H,W,3) uint8 RGB in the module's convention (`depth_levels`: log depth over
    [min_depth, max_depth], near = bright, saturated outside); NaN, inf and non-positive depth are black.

    One pass through a 256-entry lookup table (`depth_color_table`): levels 1..255 are the colour map's,
    level 0 is black for invalid pixels, so the node's per-frame colour view costs a logarithm and a lookup.
    """
    depth_m = np.asarray(depth_m, dtype=np.float32)
    if depth_m.ndim != 2:
        raise ValueError(f"depth must be (H,W), got shape {depth_m.shape}")
    levels = depth_levels(depth_m, min_depth, max_depth)
    index = np.nan_to_num(levels * np.float32(254.0) + np.float32(1.5), nan=0.0).astype(np.uint8)  # 1..255, 0 invalid
    return cv2.applyColorMap(index, depth_color_table(colormap))


_COLOR_TABLES: dict[int, np.ndarray] = {}


def depth_color_table(colormap: int = cv2.COLORMAP_MAGMA) -> np.ndarray:
    """(256,1,3) uint8 lookup table of `colorize_depth`: entry 0 black (invalid), entries 1..255 the OpenCV colour
    map's 255 levels from far to near, in RGB order (applyColorMap with a user table keeps the table's order)."""
    if colormap not in _COLOR_TABLES:
        levels = np.round(np.linspace(0, 255, 255)).astype(np.uint8).reshape(-1, 1)
        rgb = cv2.cvtColor(cv2.applyColorMap(levels, colormap), cv2.COLOR_BGR2RGB)
        _COLOR_TABLES[colormap] = np.concatenate([np.zeros((1, 1, 3), np.uint8), rgb], axis=0)
    return _COLOR_TABLES[colormap]


def colorize_sparse_depth(depth_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sparse (H,W) depth in metres (0 = no point, e.g. projected LiDAR), each point grown to 3x3 pixels
    (the nearest wins) so that it can be seen -> ((H,W,3) uint8 RGB in the depth colours, (H,W) bool
    mask of the coloured pixels); pixels without a point are black."""
    inverse: np.ndarray = np.where(depth_m > 0, 1.0 / np.maximum(depth_m, 1e-6), 0.0).astype(np.float32)
    inverse = cv2.dilate(inverse, np.ones((3, 3), np.uint8))  # the largest inverse depth: the nearest point
    has_point = inverse > 0
    with np.errstate(divide="ignore"):
        colors = colorize_depth(np.where(has_point, 1.0 / inverse, np.nan))
    return colors, has_point


def side_by_side(image: np.ndarray, depth_pred: np.ndarray, depth_gt: np.ndarray, model_label: str = "prediction"
                 ) -> np.ndarray:
    """(H, 3W + bar, 3) uint8: image | predicted depth (metres, NaN invalid) | sparse ground truth (0 = none),
    each panel labelled, with the colour bar in metres that both depth panels share."""
    lidar, _ = colorize_sparse_depth(depth_gt)
    panels = [labelled(image.copy(), "image"), labelled(colorize_depth(depth_pred), model_label)]
    return np.concatenate([*panels, with_color_bar(lidar, "LiDAR")], axis=1)


def lidar_overlay(image: np.ndarray, depth_gt: np.ndarray) -> np.ndarray:
    """(H,W,3) uint8: the image dimmed to grey with the ground-truth points (0 = none) in depth colours."""
    grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    colors, has_point = colorize_sparse_depth(depth_gt)
    overlay = (grey * 0.5).astype(np.uint8)
    overlay[has_point] = colors[has_point]
    return overlay


def labelled(panel: np.ndarray, text: str) -> np.ndarray:
    """`panel` with `text` written in its top-left corner (white on a dark outline)."""
    panel = np.ascontiguousarray(panel)
    for color, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(panel, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, thickness, cv2.LINE_AA)
    return panel


def color_bar(height: int, min_depth: float = NEAR_DEPTH_M, max_depth: float = FAR_DEPTH_M,
              ticks_m: Sequence[float] = COLOR_BAR_TICKS_M) -> np.ndarray:
    """(height, 60, 3) uint8 RGB: the convention's colours from `min_depth` (top) to `max_depth` (bottom), drawn by
    `colorize_depth` itself, with the depths of `ticks_m` marked and labelled in metres."""
    bar_width, text_width = 14, 46
    rows = np.arange(height, dtype=np.float64) / max(height - 1, 1)
    depth = (min_depth * (max_depth / min_depth) ** rows).astype(np.float32)[:, None]  # log-spaced, near on top
    bar = colorize_depth(np.repeat(depth, bar_width, axis=1), min_depth, max_depth)
    scale = np.zeros((height, text_width, 3), np.uint8)
    last_row = None
    for tick in sorted((d for d in ticks_m if min_depth <= d <= max_depth), reverse=True):  # far end first
        level = float(depth_levels(np.array([[tick]], np.float32), min_depth, max_depth)[0, 0])
        row = int(round((1.0 - level) * (height - 1)))
        if last_row is not None and last_row - row < 12:  # keep the labels apart
            continue
        last_row = row
        cv2.line(scale, (0, row), (4, row), (255, 255, 255), 1)
        baseline = min(max(row + 4, 10), height - 2)
        cv2.putText(scale, f"{tick:g} m", (6, baseline), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return np.concatenate([bar, scale], axis=1)


def with_color_bar(panel: np.ndarray, label: str, min_depth: float = NEAR_DEPTH_M, max_depth: float = FAR_DEPTH_M,
                   ticks_m: Sequence[float] = COLOR_BAR_TICKS_M) -> np.ndarray:
    """A depth picture (from `colorize_depth` with the same min/max) with a labelled colour bar in metres on its
    right and `label` in its top-left corner: (H, W + bar, 3) uint8 RGB."""
    return np.concatenate([labelled(panel.copy(), label), color_bar(panel.shape[0], min_depth, max_depth, ticks_m)],
                          axis=1)


def triptych(image: np.ndarray, depth_m: np.ndarray, depth_gt: np.ndarray, labels: Sequence[str],
             scale: float = 0.5) -> np.ndarray:
    """(h, 3w + bar, 3) uint8 at `scale` of the image size: image | predicted depth | ground truth over the image,
    each panel labelled with the matching entry of `labels`, and the colour bar in metres both depth panels share."""
    height, width = image.shape[:2]
    size = (round(width * scale), round(height * scale))
    panels = (image, colorize_depth(depth_m), lidar_overlay(image, depth_gt))
    return np.concatenate([*(labelled(cv2.resize(panel, size, interpolation=cv2.INTER_AREA), text)
                             for panel, text in zip(panels, labels, strict=True)), color_bar(size[1])], axis=1)


def write_png(path: Path, rgb: np.ndarray) -> Path:
    """Write an (H,W,3) uint8 RGB image as PNG; OSError naming the path if it cannot be written."""
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path


def write_gif(path: Path, frames: Sequence[np.ndarray], frame_duration_ms: int) -> Path:
    """Animated GIF (looping) of (H,W,3) uint8 RGB frames with Pillow."""
    from PIL import Image as PilImage

    pictures = [PilImage.fromarray(frame) for frame in frames]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=frame_duration_ms, loop=0)
    return path


def write_ply(path: Path, points: np.ndarray, colors: np.ndarray, comment: str = "camera optical frame, metres"
              ) -> Path:
    """Binary little-endian PLY of (N,3) float32 points (metres) with (N,3) uint8 RGB colours."""
    points, colors = np.asarray(points), np.asarray(colors)
    if points.ndim != 2 or points.shape[1] != 3 or colors.shape != points.shape or colors.dtype != np.uint8:
        raise ValueError(f"need (N,3) points and (N,3) uint8 colours, got {points.shape} and {colors.dtype} "
                         f"{colors.shape}")
    vertices = np.empty(points.shape[0], dtype=[("xyz", "<f4", 3), ("rgb", "u1", 3)])
    vertices["xyz"], vertices["rgb"] = points, colors
    header = (f"ply\nformat binary_little_endian 1.0\ncomment {comment}\nelement vertex {vertices.shape[0]}\n"
              "property float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    with path.open("wb") as handle:
        handle.write(header.encode("ascii"))
        handle.write(vertices.tobytes())
    return path
