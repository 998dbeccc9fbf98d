"""Image sizes, disparity <-> metric depth, intrinsics (fallback, resizing), back-projection to 3-D points.

Conventions: an image size is (height, width) in pixels and is written `WxH` (`512x256`); disparity
is a fraction of the image width (monodepth); depth is in metres along the camera's optical axis (z);
points are in the camera optical frame (x right, y down, z forward, REP 103). K is the 3x3 pinhole
matrix [[fx,0,cx],[0,fy,cy],[0,0,1]] in pixels.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

#: Smallest disparity (fraction of width) turned into a depth; below it depth is invalid (NaN).
MIN_DISPARITY = 1e-6
#: fx / image width of the KITTI colour cameras (721.5 px / 1242 px): the intrinsics assumed without calibration.
FALLBACK_FX_PER_WIDTH = 0.58


class ImageSize(NamedTuple):
    """An image or network input size in pixels, (height, width) like numpy shapes; written `WxH`."""

    height: int
    width: int

    @classmethod
    def parse(cls, text: str) -> ImageSize:
        """`"512x256"` (width x height, as cameras and the command lines write it) -> ImageSize(256, 512)."""
        try:
            width, height = (int(part) for part in text.lower().split("x"))
        except ValueError:
            raise ValueError(f"image size must look like 512x256 (width x height in pixels), got {text!r}") from None
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {text!r}")
        return cls(height, width)

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


def fallback_camera_matrix(size: ImageSize, fx_per_width: float = FALLBACK_FX_PER_WIDTH) -> np.ndarray:
    """(3,3) float64 K of a camera without calibration: fx = fy = fx_per_width * width (pixels), principal
    point at the image centre ((W-1)/2, (H-1)/2); metric depth is right only for a camera like KITTI's."""
    height, width = size
    _check_positive(fx_per_width=fx_per_width, width=width, height=height)
    focal = fx_per_width * width
    return np.array([[focal, 0.0, (width - 1) / 2], [0.0, focal, (height - 1) / 2], [0.0, 0.0, 1.0]])


def disparity_to_depth(disp: np.ndarray, baseline_m: float, fx_px: float, width_px: int) -> np.ndarray:
    """depth[m] = baseline * fx / (disp * W); disp a fraction of width, fx in pixels of an image W wide.

    Non-positive (or non-finite) disparities give NaN depth (invalid, REP 118).
    """
    _check_positive(baseline_m=baseline_m, fx_px=fx_px, width_px=width_px)
    disp = np.asarray(disp, dtype=np.float32)
    valid = np.isfinite(disp) & (disp > MIN_DISPARITY)
    depth = np.full(disp.shape, np.nan, dtype=np.float32)
    depth[valid] = baseline_m * fx_px / (disp[valid] * width_px)
    return depth


def depth_to_disparity(depth_m: np.ndarray, baseline_m: float, fx_px: float, width_px: int) -> np.ndarray:
    """Inverse of `disparity_to_depth`: disp (fraction of width) = baseline * fx / (depth * W); NaN where depth <= 0."""
    _check_positive(baseline_m=baseline_m, fx_px=fx_px, width_px=width_px)
    depth_m = np.asarray(depth_m, dtype=np.float32)
    valid = np.isfinite(depth_m) & (depth_m > 0)
    disp = np.full(depth_m.shape, np.nan, dtype=np.float32)
    disp[valid] = baseline_m * fx_px / (depth_m[valid] * width_px)
    return disp


def scale_intrinsics(camera_matrix: np.ndarray, scale_x: float, scale_y: float) -> np.ndarray:
    """K of an image resized by (scale_x, scale_y) (new size / old size), pixel-centre convention.

    fx, cx scale with x; fy, cy with y; c' = (c + 0.5) * s - 0.5 keeps pixel centres aligned as
    cv2.resize does.
    """
    camera_matrix = np.asarray(camera_matrix, dtype=np.float64)
    if camera_matrix.shape != (3, 3):
        raise ValueError(f"camera matrix must be 3x3, got {camera_matrix.shape}")
    _check_positive(scale_x=scale_x, scale_y=scale_y)
    scaled = camera_matrix.copy()
    scaled[0, 0] *= scale_x
    scaled[1, 1] *= scale_y
    scaled[0, 1] *= scale_x
    scaled[0, 2] = (camera_matrix[0, 2] + 0.5) * scale_x - 0.5
    scaled[1, 2] = (camera_matrix[1, 2] + 0.5) * scale_y - 0.5
    return scaled


def backproject(depth_m: np.ndarray, camera_matrix: np.ndarray, stride: int = 1, min_depth: float = 0.0,
                max_depth: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
    """Back-project an (H,W) depth map to (M,3) float32 points in the camera optical frame.

    Every `stride`-th pixel in both directions is used; pixels with NaN, non-positive or
    out-of-[min_depth, max_depth] depth are dropped. Returns (points, pixel_index) where pixel_index
    (M,2) int holds each point's (row, col), so callers can pick colours.
    """
    depth_m = np.asarray(depth_m, dtype=np.float32)
    if depth_m.ndim != 2:
        raise ValueError(f"depth must be (H,W), got shape {depth_m.shape}")
    x_per_z, y_per_z = pixel_rays(camera_matrix, depth_m.shape, stride)  # checks K and stride
    z_grid = depth_m[::stride, ::stride]  # a view: no copy of the strided pixels
    with np.errstate(invalid="ignore"):
        valid = (z_grid > 0) & (z_grid >= min_depth) & (z_grid <= max_depth) & np.isfinite(z_grid)
    row_index, col_index = np.nonzero(valid)
    z = z_grid[row_index, col_index]
    rows, cols = row_index * stride, col_index * stride
    points = np.empty((z.size, 3), dtype=np.float32)
    np.multiply(x_per_z[col_index], z, out=points[:, 0])
    np.multiply(y_per_z[row_index], z, out=points[:, 1])
    points[:, 2] = z
    pixel_index = np.stack([rows, cols], axis=1)
    return points, pixel_index


def pixel_rays(camera_matrix: np.ndarray, shape: tuple[int, ...], stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The rays of every `stride`-th column and row of an image of `shape` (H, W, ...): ((W',) float32 (u - cx) /
    fx, (H',) float32 (v - cy) / fy), so that a pixel of depth z is at (x_per_z[col] * z, y_per_z[row] * z, z)."""
    camera_matrix = np.asarray(camera_matrix, dtype=np.float64)
    fx, fy, cx, cy = camera_matrix[0, 0], camera_matrix[1, 1], camera_matrix[0, 2], camera_matrix[1, 2]
    _check_positive(fx=fx, fy=fy)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    x_per_z = ((np.arange(0, shape[1], stride) - cx) / fx).astype(np.float32)
    y_per_z = ((np.arange(0, shape[0], stride) - cy) / fy).astype(np.float32)
    return x_per_z, y_per_z


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive finite number, got {value}")
