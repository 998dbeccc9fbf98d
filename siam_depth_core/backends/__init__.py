"""Inference backends: one stateful Siamese step of a network (torch, ONNX Runtime, TensorRT).

Every backend has the same small interface (`Backend`): it takes the (1,3,H,W) float32 RGB image in
[0,1] and the state it returned for the previous frame (None = zeros, a fresh sequence) and returns
the refined full-scale left disparity (1,1,H,W) float32, a fraction of width, and the next state.
The state is opaque to callers: torch tensors, ONNX Runtime values or a token naming TensorRT /
CUDA-graph device buffers. A backend serves one stream: only the state returned by its latest `run`
(or None) may be passed back (buffer-based backends reuse their buffers).

Backends are imported lazily so that `onnxruntime` and `tensorrt` stay optional.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from siam_depth_core.checkpoint import ModelMeta

BACKEND_NAMES = ("torch", "onnxruntime", "tensorrt")


class BackendError(RuntimeError):
    """A backend that cannot run: missing package, missing GPU, bad model file, wrong input size."""


class Backend(Protocol):
    """One stateful Siamese step; see the module docstring."""

    name: str
    meta: ModelMeta
    input_size: tuple[int, int]  # network (H, W) in pixels

    def run(self, image: np.ndarray, state: Any | None) -> tuple[np.ndarray, Any]:
        """image: (1,3,H,W) float32 RGB in [0,1]; state: previous return value or None (zeros).

        Returns (disparity (1,1,H,W) float32 refined left disparity as a fraction of width, next state).
        """
        ...


def check_image(image: np.ndarray, input_size: tuple[int, int], model_name: str) -> None:
    """Raise BackendError unless `image` is (1,3,H,W) float32 with (H, W) == input_size."""
    if image.dtype != np.float32 or image.ndim != 4 or image.shape[:2] != (1, 3):
        raise BackendError(f"{model_name} expects a (1,3,H,W) float32 image, got {image.dtype} {image.shape}")
    height, width = image.shape[2:]
    if (height, width) != tuple(input_size):
        raise BackendError(f"{model_name} was built for input {input_size[1]}x{input_size[0]} (width x height), "
                           f"got an image of {width}x{height}")


def create_backend(name: str, *, net: Any = None, meta: ModelMeta | None = None,
                   size: tuple[int, int] | None = None, onnx: str | Path | None = None,
                   engine: str | Path | None = None, device: str = "cpu", fp16: bool = False,
                   channels_last: bool = False, cuda_graph: bool = False, num_threads: int = 0) -> Backend:
    """Build the backend called `name` (one of BACKEND_NAMES).

    torch: needs `net` (a SiamDepthNet), `meta` and `size` (H, W); device "cpu"/"cuda[:i]", fp16 and
    channels_last apply on CUDA only, cuda_graph captures the step in a CUDA graph.
    onnxruntime: needs `onnx` (the exported model; its JSON sidecar gives meta and size); uses the
    CUDA execution provider when device is CUDA and the provider is available.
    tensorrt: needs `engine` (built from `onnx` when missing or stale) — see tensorrt_backend.
    num_threads: intra-op CPU threads, 0 = the library's default. torch: torch.set_num_threads, which
    applies to the whole process; onnxruntime: this session's intra_op_num_threads; tensorrt: unused.
    """
    if num_threads < 0:
        raise BackendError(f"num_threads must be >= 0 (0 = the library's default), got {num_threads}")
    if name == "torch":
        from siam_depth_core.backends.torch_backend import TorchBackend
        if net is None or meta is None or size is None:
            raise BackendError("the torch backend needs a network, its ModelMeta and the input size")
        return TorchBackend(net, meta, size, device=device, fp16=fp16, channels_last=channels_last,
                            cuda_graph=cuda_graph, num_threads=num_threads)
    if name == "onnxruntime":
        from siam_depth_core.backends.onnxruntime_backend import OnnxRuntimeBackend
        if onnx is None:
            raise BackendError("the onnxruntime backend needs an ONNX file (export one with siam-depth-export)")
        return OnnxRuntimeBackend(onnx, device=device, num_threads=num_threads)
    if name == "tensorrt":
        from siam_depth_core.backends.tensorrt_backend import TensorRTBackend
        if engine is None and onnx is None:
            raise BackendError("the tensorrt backend needs an engine file or an ONNX file to build one from")
        return TensorRTBackend(engine=engine, onnx=onnx, fp16=fp16, cuda_graph=cuda_graph)
    raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
