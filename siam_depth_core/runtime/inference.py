"""Streaming depth estimation: camera frames in, metric depth out, ConvLSTM state carried across frames.

`DepthEstimator` is the one way to run a model: it opens a model source (checkpoint, network in
memory, ONNX model or TensorRT engine; `siam_depth_core.runtime.backends.source`) with runtime options through
the backend that runs it. `step(image, stamp)` preprocesses one camera frame (colour order, resize to
the network size, [0,1]), runs the Siamese pair with the state of the previous frame, takes the refined
full-scale left disparity and its confidence (the agreement of the pair's two estimates), resizes them
back to the camera resolution and converts the disparity to metres. The state
is reset when time goes backwards (a bag loop), when the gap between frames exceeds `max_gap_s`, when the
image size changes, or on `reset()`. `predict_sequence(images)` scores frames one by one from a fresh
state (evaluation).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from siam_depth_core.geometry import FALLBACK_FX_PER_WIDTH, ImageSize, disparity_to_depth
from siam_depth_core.network.checkpoint import ModelMeta
from siam_depth_core.runtime.backends import Backend, open_backend
from siam_depth_core.runtime.backends.source import ModelSource, RuntimeOptions

__all__ = ["DepthEstimator", "DepthResult", "SUPPORTED_ENCODINGS", "preprocess"]

LOGGER = logging.getLogger(__name__)

#: Encodings `step` accepts (sensor_msgs/Image names) and their channel count.
SUPPORTED_ENCODINGS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
_TO_RGB = {"bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB, "bgra8": cv2.COLOR_BGRA2RGB,
           "mono8": cv2.COLOR_GRAY2RGB}


@dataclass
class DepthResult:
    """One frame's output at the camera resolution.

    disparity: (H,W) float32 refined left disparity, fraction of width.
    depth_m: (H,W) float32 metres, NaN where invalid (outside [min_depth, max_depth]).
    stamp: seconds, as given to `step` (0.0 from `predict_sequence`).
    reset_reason: why the state was reset before this frame (None if the state was carried, or
    for the very first frame, which starts from zeros without a reset).
    timings: seconds spent in "preprocess", "model" (the backend's step) and "postprocess".
    confidence: (H,W) float32 in [0, 1], the agreement of the Siamese pass's two estimates of the left
    disparity (`refine.disparity_confidence`; 1 = identical), for every pixel whether its depth is valid
    or not; None when the model ran without the Siamese pass (no second estimate).
    """

    disparity: np.ndarray
    depth_m: np.ndarray
    stamp: float
    reset_reason: str | None
    timings: dict[str, float] = field(default_factory=dict)
    confidence: np.ndarray | None = None


def preprocess(image: np.ndarray, encoding: str, size: tuple[int, int]) -> np.ndarray:
    """Camera image -> network input (1,3,H,W) float32 RGB in [0,1] of `size` (H, W).

    image: (H,W,C) uint8 with C given by `encoding` (rgb8, bgr8, rgba8, bgra8) or (H,W) / (H,W,1)
    mono8 (replicated to 3 channels). Shrinking uses area interpolation, enlarging bilinear.
    """
    channels = _check_image(image, encoding)
    if channels == 1 and image.ndim == 3:
        image = image[:, :, 0]
    rgb = cv2.cvtColor(image, _TO_RGB[encoding]) if encoding in _TO_RGB else image
    height, width = size
    shrinking = height * width < rgb.shape[0] * rgb.shape[1]
    resized = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return np.ascontiguousarray(resized.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0)


def _check_image(image: Any, encoding: str) -> int:
    """Validate a camera image against its encoding; returns the channel count."""
    if encoding not in SUPPORTED_ENCODINGS:
        raise ValueError(f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"{encoding} image must be uint8, got {image.dtype}")
    channels = SUPPORTED_ENCODINGS[encoding]
    expected = "(H,W) or (H,W,1)" if channels == 1 else f"(H,W,{channels})"
    shape_ok = (image.ndim == 3 and image.shape[2] == channels) or (channels == 1 and image.ndim == 2)
    if not shape_ok:
        raise ValueError(f"{encoding} image must have shape {expected}, got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"empty image of shape {image.shape}")
    return channels


class DepthEstimator:
    """Streaming monocular depth with the Siamese ConvLSTM network; see the module docstring.

    source: the model (`CheckpointSource`, `NetworkSource`, `OnnxSource`, `EngineSource`); options:
    device, threads, network size and speed options, each honoured by the backend or refused with a
    BackendError (`RuntimeOptions`). max_gap_s: a longer gap between frame stamps resets the state.
    min_depth/max_depth: metres; depth outside is NaN. baseline_m: stereo baseline that scales depth,
    default the model's. Raises CheckpointError/BackendError/ValueError naming what cannot be loaded.
    """

    def __init__(self, source: ModelSource, options: RuntimeOptions | None = None, *, max_gap_s: float = 0.5,
                 min_depth: float = 0.1, max_depth: float = 80.0, baseline_m: float | None = None) -> None:
        if not 0 < min_depth < max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth} and {max_depth}")
        if max_gap_s <= 0:
            raise ValueError(f"max_gap_s must be positive, got {max_gap_s}")
        if baseline_m is not None and not baseline_m > 0:
            raise ValueError(f"baseline_m must be a positive number of metres, got {baseline_m}")
        self.source = source
        self.options = options if options is not None else RuntimeOptions()
        self.backend: Backend = open_backend(source, self.options)
        self.meta: ModelMeta = self.backend.meta
        self.input_size: ImageSize = self.backend.input_size
        self.has_confidence: bool = self.backend.has_confidence
        self.baseline_m = float(baseline_m) if baseline_m is not None else float(self.meta.baseline_m)
        self.max_gap_s = max_gap_s
        self.min_depth = min_depth
        self.max_depth = max_depth
        self.reset_count = 0
        self._state: Any | None = None
        self._last_stamp: float | None = None
        self._last_shape: tuple[int, int] | None = None
        self._pending_reset_reason: str | None = None

    def warmup(self, frames: int = 3) -> None:
        """Run `frames` blank steps so that lazy initialisation (kernel selection, allocation) is paid
        before the first real frame. Backends may keep the state in their own buffers, so a warm-up
        in the middle of a stream resets the carried state (reason "warm-up")."""
        if self._state is not None:
            self.reset("warm-up")
        blank = np.zeros((1, 3, *self.input_size), np.float32)
        state = None
        for _ in range(frames):
            _, state = self.backend.run(blank, state)

    def reset(self, reason: str) -> None:
        """Drop the recurrent state; the next frame starts from zeros and reports `reason`."""
        LOGGER.info("resetting recurrent state: %s", reason)
        self._state = None
        self._pending_reset_reason = reason
        self.reset_count += 1

    def _reset_if_discontinuous(self, stamp: float, shape: tuple[int, int]) -> None:
        if self._state is None or self._last_stamp is None or self._last_shape is None:
            return
        if stamp < self._last_stamp:
            self.reset(f"time went backwards ({self._last_stamp:.6f} s -> {stamp:.6f} s)")
        elif stamp - self._last_stamp > self.max_gap_s:
            self.reset(f"gap of {stamp - self._last_stamp:.3f} s exceeds max_gap_s={self.max_gap_s} s")
        elif shape != self._last_shape:
            self.reset(f"image size changed from {self._last_shape[1]}x{self._last_shape[0]} "
                       f"to {shape[1]}x{shape[0]}")

    def step(self, image: np.ndarray, stamp: float, encoding: str = "rgb8", fx_px: float | None = None
             ) -> DepthResult:
        """Estimate depth for one frame of a stream. image: (H,W,3) uint8 rgb8/bgr8 (also rgba8/bgra8
        (H,W,4)) or (H,W) mono8; stamp: seconds; fx_px: the camera's fx in pixels of this image (None:
        FALLBACK_FX_PER_WIDTH * W, the KITTI ratio). Raises ValueError on a bad image without touching the state.
        """
        start = time.perf_counter()
        network_input = preprocess(image, encoding, self.input_size)
        stamp = float(stamp)
        if not np.isfinite(stamp):
            raise ValueError(f"stamp must be finite, got {stamp}")
        fx_px = self._focal_length(fx_px, image.shape[1])
        shape = (image.shape[0], image.shape[1])
        self._reset_if_discontinuous(stamp, shape)
        reset_reason, self._pending_reset_reason = self._pending_reset_reason, None
        result, self._state = self._run(network_input, self._state, shape, fx_px, start)
        self._last_stamp, self._last_shape = stamp, shape
        result.stamp, result.reset_reason = stamp, reset_reason
        return result

    def predict_sequence(self, images: Sequence[np.ndarray], encoding: str = "rgb8", fx_px: float | None = None
                         ) -> DepthResult:
        """Depth of the last of `images`, run from a zero state with the earlier images only warming the
        ConvLSTM state up (per-image evaluation, optionally with preceding frames). Ends a stream in
        progress: the next `step` starts from zeros too. stamp of the result: 0.0.
        """
        if len(images) == 0:
            raise ValueError("predict_sequence needs at least one image")
        self._state = self._last_stamp = self._last_shape = self._pending_reset_reason = None
        state: Any | None = None
        result: DepthResult | None = None
        for image in images:
            start = time.perf_counter()
            network_input = preprocess(image, encoding, self.input_size)
            result, state = self._run(network_input, state, (image.shape[0], image.shape[1]),
                                      self._focal_length(fx_px, image.shape[1]), start)
        if result is None:  # cannot happen: images is not empty (checked above)
            raise RuntimeError("predict_sequence ran no image")
        return result

    @staticmethod
    def _focal_length(fx_px: float | None, camera_width: int) -> float:
        if fx_px is None:
            return FALLBACK_FX_PER_WIDTH * camera_width
        if not np.isfinite(fx_px) or fx_px <= 0:
            raise ValueError(f"fx_px must be a positive number of pixels, got {fx_px}")
        return float(fx_px)

    def _run(self, network_input: np.ndarray, state: Any | None, camera_shape: tuple[int, int], fx_px: float,
             start: float) -> tuple[DepthResult, Any]:
        """The model on one preprocessed frame, then disparity and depth at the camera resolution."""
        preprocessed = time.perf_counter()
        output, next_state = self.backend.run(network_input, state)
        modelled = time.perf_counter()
        camera_height, camera_width = camera_shape
        disparity = cv2.resize(output.disparity[0, 0], (camera_width, camera_height),
                               interpolation=cv2.INTER_LINEAR)
        depth_m = disparity_to_depth(disparity, self.baseline_m, fx_px, camera_width)
        with np.errstate(invalid="ignore"):
            depth_m[(depth_m < self.min_depth) | (depth_m > self.max_depth)] = np.nan
        confidence = None
        if output.confidence is not None:  # bilinear, like the disparity, then kept in [0, 1]
            confidence = np.clip(cv2.resize(output.confidence[0, 0], (camera_width, camera_height),
                                            interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
        done = time.perf_counter()
        result = DepthResult(disparity=disparity, depth_m=depth_m, stamp=0.0, reset_reason=None,
                             timings={"preprocess": preprocessed - start, "model": modelled - preprocessed,
                                      "postprocess": done - modelled}, confidence=confidence)
        return result, next_state
