"""Inference backends: one stateful Siamese step of a network (torch, ONNX Runtime, TensorRT, OpenVINO).

`open_backend(source, options)` opens a model source (`backends.source`: checkpoint or network in
memory -> torch, ONNX -> onnxruntime, engine -> tensorrt, ONNX for OpenVINO -> openvino) with runtime options; a backend that cannot
honour an option raises a BackendError naming it instead of ignoring it.

Every backend has the same small interface (`Backend`): it takes the (1,3,H,W) float32 RGB image in
[0,1] and the state it returned for the previous frame (None = zeros, a fresh sequence) and returns a
`StepOutput` — the refined full-scale left disparity (1,1,H,W) float32, a fraction of width, and its
confidence (1,1,H,W) float32 in [0, 1] (None without the Siamese pass) — and the next state.
The state is opaque to callers: torch tensors, ONNX Runtime values or a token naming TensorRT /
CUDA-graph device buffers. Only the state returned by a backend's latest `run` (or None) may be passed
back as it is (buffer-based backends reuse their buffers).

Several streams (cameras) in one call (issue 28): `run` also takes an (N,3,H,W) image, N in the backend's
`batch_range` (torch: any; an ONNX export: its `--batch`, any with `--dynamic-batch`; TensorRT: 1 for
now), with a state of N streams, and returns (N,1,H,W) outputs and the N-stream state.
`split_state(state, N)` copies a state into N per-stream states (each one a valid state of a batch-1
`run`, independent of the backend's buffers), `stack_states(states)` makes the N-stream state of a batch
from per-stream states (None = zeros) in any order; rows layout: `backends.streams`. So a node keeps one
state per camera and batches the cameras of a cycle.

Backends are imported lazily so that `onnxruntime`, `tensorrt` and `openvino` stay optional.
"""
from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from siam_depth_core.errors import SiamDepthError
from siam_depth_core.geometry import ImageSize
from siam_depth_core.network.checkpoint import ModelMeta
from siam_depth_core.runtime.backends.streams import SINGLE, BatchRange

if TYPE_CHECKING:
    from siam_depth_core.runtime.backends.source import ModelSource, RuntimeOptions


class BackendError(SiamDepthError):
    """A backend that cannot run: missing package, missing GPU, bad model file, an option it cannot honour."""


@dataclass(frozen=True)
class StepOutput:
    """What one step gives at the network size.

    disparity: (1,1,H,W) float32 refined left disparity, fraction of width.
    confidence: (1,1,H,W) float32 in [0, 1], the agreement of the direct and the flipped estimate of the
    left disparity (`refine.disparity_confidence`); None when the step ran without the Siamese pass (a
    model trained without it, or a single-pass run), which gives no second estimate to compare with.
    """

    disparity: np.ndarray
    confidence: np.ndarray | None = None


class Backend(Protocol):
    """One stateful Siamese step; see the module docstring."""

    name: str
    meta: ModelMeta
    input_size: ImageSize  # network (H, W) in pixels
    has_confidence: bool  # whether `run` returns a confidence (the step runs the Siamese pass)
    batch_range: BatchRange  # how many streams one `run` takes

    def run(self, image: np.ndarray, state: Any | None) -> tuple[StepOutput, Any]:
        """image: (N,3,H,W) float32 RGB in [0,1], N streams (N in `batch_range`; 1 = the single stream);
        state: the previous return value for these N streams, a `stack_states` of N, or None (zeros).

        Returns (the step's `StepOutput`, (N,1,H,W) arrays, next state of the N streams).
        """
        ...

    def split_state(self, state: Any, streams: int) -> list[Any]:
        """The `streams` per-stream states (copies) of a state that `run` returned for that many streams."""
        ...

    def stack_states(self, states: Sequence[Any | None]) -> Any:
        """The state of a batch of len(states) streams, in that order, from per-stream states (None = zeros)."""
        ...


def check_image(image: np.ndarray, input_size: tuple[int, int], model_name: str,
                batch_range: BatchRange = SINGLE) -> int:
    """Raise BackendError unless `image` is (N,3,H,W) float32 with (H, W) == input_size and N in
    `batch_range` (default: 1); returns N."""
    if image.dtype != np.float32 or image.ndim != 4 or image.shape[1] != 3 or image.shape[0] < 1:
        shape = "(1,3,H,W)" if batch_range == SINGLE else "(N,3,H,W)"
        raise BackendError(f"{model_name} expects a {shape} float32 image, got {image.dtype} {image.shape}")
    if image.shape[0] not in batch_range:
        if batch_range == SINGLE:
            raise BackendError(f"{model_name} expects a (1,3,H,W) float32 image, got {image.dtype} {image.shape}")
        raise BackendError(f"{model_name} takes a batch of {batch_range} stream(s) per call, got an image of "
                           f"{image.shape[0]}")
    height, width = image.shape[2:]
    if (height, width) != tuple(input_size):
        raise BackendError(f"{model_name} was built for input {input_size[1]}x{input_size[0]} (width x height), "
                           f"got an image of {width}x{height}")
    return int(image.shape[0])


def check_state_streams(state_rows: Sequence[int], rows_per_stream: int, streams: int, model_name: str) -> None:
    """Raise BackendError unless every state tensor (its row count in `state_rows`) holds `streams` streams."""
    for rows in state_rows:
        if rows != rows_per_stream * streams:
            raise BackendError(f"{model_name}: the state holds {rows / rows_per_stream:g} stream(s) but the image "
                               f"{streams}; pass the state `run` returned for these streams, a `stack_states` "
                               "of them, or None")


def reject_unsupported(backend: str, options: RuntimeOptions, supported: Collection[str]) -> None:
    """Raise BackendError naming every option set in `options` that is not in `supported`."""
    unsupported = {name: value for name, value in options.set_options().items() if name not in supported}
    if unsupported:
        names = ", ".join(f"{name}={value!r}" for name, value in unsupported.items())
        raise BackendError(f"the {backend} backend cannot honour {names} (its options: {', '.join(supported)})")


def check_exported_options(backend: str, model_file: Path, options: RuntimeOptions, input_size: ImageSize,
                           meta: ModelMeta, single_pass_graph: bool = False) -> None:
    """What an exported model (ONNX, engine) fixes: its input size (ValueError naming both sizes when another
    is asked for) and whether the flipped pass is in the graph (BackendError for post_process without it,
    and for single_pass with it)."""
    if options.input_size is not None and options.input_size != input_size:
        raise ValueError(f"requested network size {options.input_size} but the {backend} model was exported for "
                         f"{input_size} (width x height); re-export it or drop the size")
    if options.single_pass and meta.siamese and not single_pass_graph:
        raise BackendError(f"{model_file} runs the Siamese pass (image + flip); for single_pass export a single-pass "
                           "model: siam-depth-export --single-pass")
    if options.post_process and not meta.siamese:
        raise BackendError(f"{model_file} was exported from a model without the Siamese pass, so post_process "
                           "cannot be applied to it; run its checkpoint with the torch backend")


def open_backend(source: ModelSource, options: RuntimeOptions | None = None) -> Backend:
    """Open `source` with the backend that runs it (see `backends.source`), honouring every option or
    raising: BackendError (missing package or GPU, bad model file, unsupported option), CheckpointError
    (bad checkpoint), ValueError (a size the exported model was not made for)."""
    from siam_depth_core.runtime.backends.source import (
        CheckpointSource,
        EngineSource,
        NetworkSource,
        OnnxSource,
        OpenVinoSource,
        RuntimeOptions,
    )

    options = options if options is not None else RuntimeOptions()
    if isinstance(source, CheckpointSource | NetworkSource):
        from siam_depth_core.runtime.backends.torch_backend import TorchBackend
        return TorchBackend.open(source, options)
    if isinstance(source, OnnxSource):
        from siam_depth_core.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
        return OnnxRuntimeBackend.open(source, options)
    if isinstance(source, EngineSource):
        from siam_depth_core.runtime.backends.tensorrt_backend import TensorRTBackend
        return TensorRTBackend.open(source, options)
    if isinstance(source, OpenVinoSource):
        from siam_depth_core.runtime.backends.openvino_backend import OpenVinoBackend
        return OpenVinoBackend.open(source, options)
    raise TypeError(f"not a model source: {source!r} (expected a CheckpointSource, NetworkSource, OnnxSource, "
                    "EngineSource or OpenVinoSource)")
