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

Several streams (cameras) on one model (issue 28): `step_streams(frames)` takes one `StreamFrame` per
camera, keeps a ConvLSTM state, a last stamp and size and resets per named stream, and runs the frames in
as few backend calls as the backend's `batch_range` allows (one for torch and a `--dynamic-batch` ONNX
export); each stream's outputs equal those of a single-stream estimator fed the same frames, up to the
backend's float rounding between batch sizes (none measured on CPU torch and ONNX Runtime).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from siam_depth_core.geometry import FALLBACK_FX_PER_WIDTH, ImageSize, disparity_to_depth
from siam_depth_core.network.checkpoint import ModelMeta
from siam_depth_core.runtime.backends import Backend, StepOutput, open_backend
from siam_depth_core.runtime.backends.source import ModelSource, RuntimeOptions

__all__ = ["DepthEstimator", "DepthResult", "StreamFrame", "SUPPORTED_ENCODINGS", "preprocess"]

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


@dataclass(frozen=True)
class StreamFrame:
    """One frame of a named stream (a camera) for `DepthEstimator.step_streams`; image, stamp, encoding and
    fx_px as `DepthEstimator.step` takes them."""

    stream: str
    image: np.ndarray
    stamp: float
    encoding: str = "rgb8"
    fx_px: float | None = None


@dataclass
class _StreamState:
    """What `step_streams` keeps per stream: the backend's per-stream state (None = zeros), the last stamp and
    camera image size, and the reason of a reset its next frame reports."""

    state: Any | None = None
    last_stamp: float | None = None
    last_shape: tuple[int, int] | None = None
    pending_reset_reason: str | None = None


def discontinuity(last_stamp: float, last_shape: tuple[int, int], stamp: float, shape: tuple[int, int],
                  max_gap_s: float) -> str | None:
    """Why a stream's state must be reset before a frame of `stamp` and camera `shape` (H, W), or None."""
    if stamp < last_stamp:
        return f"time went backwards ({last_stamp:.6f} s -> {stamp:.6f} s)"
    if stamp - last_stamp > max_gap_s:
        return f"gap of {stamp - last_stamp:.3f} s exceeds max_gap_s={max_gap_s} s"
    if shape != last_shape:
        return f"image size changed from {last_shape[1]}x{last_shape[0]} to {shape[1]}x{shape[0]}"
    return None


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
        self._streams: dict[str, _StreamState] = {}

    def warmup(self, frames: int = 3, streams: int | None = None) -> None:
        """Run `frames` blank steps so that lazy initialisation (kernel selection, allocation) is paid
        before the first real frame. Backends may keep the state in their own buffers, so a warm-up
        in the middle of a stream resets the carried state (reason "warm-up"). streams: the batch to warm
        up (default: the smallest the backend takes, 1 but for a fixed-batch export); the states of
        `step_streams` are copies and stay as they are."""
        if self._state is not None:
            self.reset("warm-up")
        streams = self.backend.batch_range.low if streams is None else streams
        blank = np.zeros((streams, 3, *self.input_size), np.float32)
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
        reason = discontinuity(self._last_stamp, self._last_shape, stamp, shape, self.max_gap_s)
        if reason is not None:
            self.reset(reason)

    @property
    def streams(self) -> list[str]:
        """The names of the streams `step_streams` has seen, in order of their first frame."""
        return list(self._streams)

    def reset_streams(self, reason: str, streams: Iterable[str] | None = None) -> None:
        """Drop the recurrent state of the named streams of `step_streams` (None: all of them); the next frame
        of each starts from zeros and reports `reason`. ValueError naming the known streams for an unknown one."""
        names = list(self._streams) if streams is None else list(streams)
        unknown = [name for name in names if name not in self._streams]
        if unknown:
            raise ValueError(f"unknown stream(s) {', '.join(map(repr, unknown))}; known: "
                             f"{', '.join(map(repr, self._streams)) or 'none yet'}")
        for name in names:
            LOGGER.info("resetting recurrent state of stream %r: %s", name, reason)
            stream = self._streams[name]
            stream.state = None
            stream.pending_reset_reason = reason
            self.reset_count += 1

    def step_streams(self, frames: Sequence[StreamFrame]) -> list[DepthResult]:
        """Estimate depth for one frame of each of several streams (cameras), batched; results in `frames` order.

        Each stream (by name; created by its first frame) keeps its own ConvLSTM state and resets as `step`
        does (time going backwards, a gap over max_gap_s, a new image size, `reset_streams`). The frames run
        through the backend in as few calls as its `batch_range` allows, the per-stream states stacked
        into each call and split out of it (`Backend.stack_states` / `split_state`), so that streams can
        come and go between calls. timings["model"] is the time of the call a frame ran in (shared by its
        streams, stacking and splitting the state included). Raises ValueError, before any state changes,
        on a bad frame (naming its stream), a stream given twice, or an estimator already serving a single
        stream through `step` (whose state a buffer-based backend would overwrite; reset() first).
        """
        names = [frame.stream for frame in frames]
        if len(set(names)) != len(names):
            raise ValueError(f"a stream may give one frame per step_streams call, got {names}")
        if self._state is not None:
            raise ValueError("this estimator carries the state of step(); call reset() before step_streams, or "
                             "use one estimator per way of stepping")
        prepared = []
        for frame in frames:
            start = time.perf_counter()
            try:
                network_input = preprocess(frame.image, frame.encoding, self.input_size)
                stamp = float(frame.stamp)
                if not np.isfinite(stamp):
                    raise ValueError(f"stamp must be finite, got {stamp}")
                fx_px = self._focal_length(frame.fx_px, frame.image.shape[1])
            except ValueError as error:
                raise ValueError(f"stream {frame.stream!r}: {error}") from error
            shape = (frame.image.shape[0], frame.image.shape[1])
            prepared.append((network_input, stamp, fx_px, shape, time.perf_counter() - start))
        reset_reasons = []
        for frame, (_, stamp, _, shape, _) in zip(frames, prepared, strict=True):
            stream = self._streams.setdefault(frame.stream, _StreamState())
            if stream.state is not None and stream.last_stamp is not None and stream.last_shape is not None:
                reason = discontinuity(stream.last_stamp, stream.last_shape, stamp, shape, self.max_gap_s)
                if reason is not None:
                    self.reset_streams(reason, [frame.stream])
            reset_reasons.append(stream.pending_reset_reason)
            stream.pending_reset_reason = None
        results: list[DepthResult] = []
        if not frames:
            return results
        chunk = self.backend.batch_range.chunk(len(frames))
        for begin in range(0, len(frames), chunk):
            members = list(range(begin, min(begin + chunk, len(frames))))
            padding = max(0, self.backend.batch_range.low - len(members))  # (a fixed batch larger than the rest)
            images = [prepared[index][0] for index in members] + [np.zeros_like(prepared[0][0])] * padding
            states = [self._streams[names[index]].state for index in members] + [None] * padding
            called = time.perf_counter()
            batch_state = None if all(state is None for state in states) else self.backend.stack_states(states)
            output, next_state = self.backend.run(np.concatenate(images), batch_state)
            split = self.backend.split_state(next_state, len(states))
            model_time = time.perf_counter() - called
            for position, index in enumerate(members):
                network_input, stamp, fx_px, shape, preprocess_time = prepared[index]
                stream = self._streams[names[index]]
                stream.state, stream.last_stamp, stream.last_shape = split[position], stamp, shape
                own = StepOutput(output.disparity[position:position + 1],
                                 None if output.confidence is None else output.confidence[position:position + 1])
                result = self._postprocess(own, shape, fx_px)
                result.timings = {"preprocess": preprocess_time, "model": model_time, **result.timings}
                result.stamp, result.reset_reason = stamp, reset_reasons[index]
                results.append(result)
        return results

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
        result = self._postprocess(output, camera_shape, fx_px)
        result.timings = {"preprocess": preprocessed - start, "model": modelled - preprocessed, **result.timings}
        return result, next_state

    def _postprocess(self, output: StepOutput, camera_shape: tuple[int, int], fx_px: float) -> DepthResult:
        """One stream's (1,1,h,w) network output -> disparity, depth and confidence at the camera resolution
        (timings: "postprocess")."""
        started = time.perf_counter()
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
        return DepthResult(disparity=disparity, depth_m=depth_m, stamp=0.0, reset_reason=None,
                           timings={"postprocess": time.perf_counter() - started}, confidence=confidence)
