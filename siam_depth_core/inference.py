"""Streaming depth estimation: camera frames in, metric depth out, ConvLSTM state carried across frames.

`DepthEstimator.step(image, stamp)` preprocesses one camera frame (colour order, resize to the
network size, [0,1]), runs the Siamese pair with the state of the previous frame through a backend
(torch, onnxruntime or tensorrt), takes the refined full-scale left disparity, resizes it back to the
camera resolution and converts it to metres. The state is reset when time goes backwards (a bag
loop), when the gap between frames exceeds `max_gap_s`, when the image size changes, or on `reset()`.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from siam_depth_core.backends import Backend, create_backend
from siam_depth_core.checkpoint import CheckpointError, ModelMeta, load_model
from siam_depth_core.geometry import disparity_to_depth

__all__ = ["CheckpointError", "DepthEstimator", "DepthResult", "FALLBACK_FX_PER_WIDTH", "SUPPORTED_ENCODINGS",
           "preprocess"]

LOGGER = logging.getLogger(__name__)

#: fx / image width of the KITTI colour cameras (721.5 px / 1242 px); used when no camera fx is given.
FALLBACK_FX_PER_WIDTH = 0.58
#: Width multiplier of the randomly initialised network used when no checkpoint is given.
UNTRAINED_NET_WIDTH = 0.25
#: Encodings `step` accepts (sensor_msgs/Image names) and their channel count.
SUPPORTED_ENCODINGS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
_TO_RGB = {"bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB, "bgra8": cv2.COLOR_BGRA2RGB,
           "mono8": cv2.COLOR_GRAY2RGB}


@dataclass
class DepthResult:
    """One frame's output at the camera resolution.

    disparity: (H,W) float32 refined left disparity, fraction of width.
    depth_m: (H,W) float32 metres, NaN where invalid (outside [min_depth, max_depth]).
    stamp: seconds, as given to `step`.
    reset_reason: why the state was reset before this frame (None if the state was carried, or
    for the very first frame, which starts from zeros without a reset).
    timings: seconds spent in "preprocess", "model" and "postprocess".
    """

    disparity: np.ndarray
    depth_m: np.ndarray
    stamp: float
    reset_reason: str | None
    timings: dict[str, float] = field(default_factory=dict)


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

    checkpoint: a siam_depth checkpoint (torch backend); None builds a randomly initialised
    width-0.25 network (logged) so that a pipeline can start without a trained model.
    backend: "torch", "onnxruntime" (needs `onnx`) or "tensorrt" (needs `engine`, built from `onnx`
    when missing or stale). device: "cpu" or "cuda[:i]". size: network (H, W), default the
    checkpoint's training size (ONNX/engine models fix their own size).
    max_gap_s: a longer gap between frame stamps resets the state. min_depth/max_depth: metres;
    depth outside is NaN. baseline_m: stereo baseline that scales depth, default the model's.
    fp16/channels_last/cuda_graph: GPU speed options of the torch/tensorrt backends.
    num_threads: intra-op CPU threads, 0 = the library's default. For the torch backend this is
    torch.set_num_threads, which applies to the whole process; for onnxruntime it is the session's
    intra_op_num_threads; tensorrt ignores it. On a small shared CPU, 1 thread can be much faster.
    """

    def __init__(self, checkpoint: str | Path | None = None, backend: str = "torch", device: str = "cpu",
                 size: tuple[int, int] | None = None, onnx: str | Path | None = None,
                 engine: str | Path | None = None, max_gap_s: float = 0.5, min_depth: float = 0.1,
                 max_depth: float = 80.0, baseline_m: float | None = None, fp16: bool = False,
                 channels_last: bool = False, cuda_graph: bool = False, num_threads: int = 0) -> None:
        if not 0 < min_depth < max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth} and {max_depth}")
        if max_gap_s <= 0:
            raise ValueError(f"max_gap_s must be positive, got {max_gap_s}")
        if num_threads < 0:
            raise ValueError(f"num_threads must be >= 0 (0 = the library's default), got {num_threads}")
        net, meta = None, None
        if backend == "torch":
            net, meta = self._load_torch_model(checkpoint)
            size = tuple(size) if size is not None else (meta.height, meta.width)
        self.backend: Backend = create_backend(backend, net=net, meta=meta, size=size, onnx=onnx, engine=engine,
                                               device=device, fp16=fp16, channels_last=channels_last,
                                               cuda_graph=cuda_graph, num_threads=num_threads)
        if backend != "torch" and size is not None and tuple(size) != self.backend.input_size:
            h, w = self.backend.input_size
            raise ValueError(f"requested network size {size[1]}x{size[0]} but the {backend} model was exported "
                             f"for {w}x{h} (width x height); re-export it or drop the size")
        self.meta: ModelMeta = self.backend.meta
        self.input_size: tuple[int, int] = self.backend.input_size
        self.baseline_m = float(baseline_m) if baseline_m is not None else float(self.meta.baseline_m)
        self.max_gap_s = max_gap_s
        self.min_depth = min_depth
        self.max_depth = max_depth
        self.reset_count = 0
        self._state: Any | None = None
        self._last_stamp: float | None = None
        self._last_shape: tuple[int, int] | None = None
        self._pending_reset_reason: str | None = None

    @staticmethod
    def _load_torch_model(checkpoint: str | Path | None) -> tuple[Any, ModelMeta]:
        if checkpoint is None:
            meta = ModelMeta(net_width=UNTRAINED_NET_WIDTH)
            LOGGER.warning("no checkpoint given: using a randomly initialised width-%s network; "
                           "its depth is meaningless until a trained checkpoint is loaded", UNTRAINED_NET_WIDTH)
            return meta.build_network().eval(), meta
        return load_model(checkpoint)

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
        """Estimate depth for one frame. image: (H,W,3) uint8 rgb8/bgr8 (also rgba8/bgra8 (H,W,4)) or
        (H,W) mono8; stamp: seconds; fx_px: the camera's fx in pixels of this image (None: 0.58 * W,
        the KITTI ratio). Raises ValueError on a bad image without touching the state.
        """
        start = time.perf_counter()
        network_input = preprocess(image, encoding, self.input_size)
        stamp = float(stamp)
        if not np.isfinite(stamp):
            raise ValueError(f"stamp must be finite, got {stamp}")
        camera_height, camera_width = image.shape[:2]
        if fx_px is None:
            fx_px = FALLBACK_FX_PER_WIDTH * camera_width
        elif not np.isfinite(fx_px) or fx_px <= 0:
            raise ValueError(f"fx_px must be a positive number of pixels, got {fx_px}")
        self._reset_if_discontinuous(stamp, (camera_height, camera_width))
        reset_reason, self._pending_reset_reason = self._pending_reset_reason, None
        preprocessed = time.perf_counter()

        network_disparity, self._state = self.backend.run(network_input, self._state)
        self._last_stamp, self._last_shape = stamp, (camera_height, camera_width)
        modelled = time.perf_counter()

        disparity = cv2.resize(network_disparity[0, 0], (camera_width, camera_height),
                               interpolation=cv2.INTER_LINEAR)
        depth_m = disparity_to_depth(disparity, self.baseline_m, fx_px, camera_width)
        with np.errstate(invalid="ignore"):
            depth_m[(depth_m < self.min_depth) | (depth_m > self.max_depth)] = np.nan
        done = time.perf_counter()
        return DepthResult(disparity=disparity, depth_m=depth_m, stamp=stamp, reset_reason=reset_reason,
                           timings={"preprocess": preprocessed - start, "model": modelled - preprocessed,
                                    "postprocess": done - modelled})
