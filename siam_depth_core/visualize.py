"""Colour maps for humans: values or metric depth -> RGB images (evaluation PNGs, TensorBoard, demo, node)."""
from __future__ import annotations

import cv2
import numpy as np


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


def colorize_depth(depth_m: np.ndarray, min_depth: float, max_depth: float,
                   colormap: int = cv2.COLORMAP_MAGMA) -> np.ndarray:
    """(H,W) depth in metres -> (H,W,3) uint8 RGB: inverse depth mapped over [1/max_depth, 1/min_depth]
    (near = bright, nearer than min_depth saturated); NaN, inf and non-positive depth are black."""
    if not 0 < min_depth < max_depth:
        raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth} and {max_depth}")
    depth_m = np.asarray(depth_m, dtype=np.float32)
    if depth_m.ndim != 2:
        raise ValueError(f"depth must be (H,W), got shape {depth_m.shape}")
    valid = np.isfinite(depth_m) & (depth_m > 0)
    inverse = np.divide(1.0, depth_m, out=np.full_like(depth_m, np.nan), where=valid)
    return colorize(inverse, 1.0 / max_depth, 1.0 / min_depth, colormap)
