"""What to run and how: a typed model source (which backend opens it) and the runtime options, validated once.

Sources:
- `CheckpointSource`: a siam_depth checkpoint (.pt), run by the torch backend;
- `NetworkSource`: a network already in memory with its ModelMeta (freshly initialised, or being
  trained), run by the torch backend; `untrained_source()` builds the random one a pipeline starts with
  when it has no checkpoint;
- `OnnxSource`: an exported one-step ONNX model with its sidecar, run by ONNX Runtime;
- `EngineSource`: a TensorRT engine, built (or rebuilt when stale) from its exported ONNX when one is given;
- `OpenVinoSource`: an exported ONNX model (fp32 or int8) with its sidecar, run by OpenVINO on the CPU, its
  compiled form cached under `<cache_dir()>/openvino`.

`RuntimeOptions` holds every option of every backend; each backend accepts only the options it can
honour and raises a BackendError naming the others.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from siam_depth_core.geometry import ImageSize
from siam_depth_core.network.checkpoint import ModelMeta, require_checkpoint_file
from siam_depth_core.network.model import SiamDepthNet, check_input_size
from siam_depth_core.runtime.backends import BackendError

LOGGER = logging.getLogger(__name__)

#: Backend names, as the node's `backend` parameter spells them.
BACKEND_NAMES = ("torch", "onnxruntime", "tensorrt", "openvino")
#: Precisions of `RuntimeOptions.precision` (the openvino backend's INFERENCE_PRECISION_HINT; auto = the backend's
#: own: bf16 where the CPU has it for openvino, fp32 for the others).
PRECISIONS = ("auto", "fp32", "bf16")
#: Channel multiplier of the randomly initialised network `untrained_source` builds.
UNTRAINED_NET_WIDTH = 0.25


@dataclass(frozen=True)
class CheckpointSource:
    """A siam_depth checkpoint file (.pt); the torch backend runs it."""

    path: Path

    backend = "torch"

    def check_files(self) -> None:
        """CheckpointError when the file is missing (a cheap check before loading)."""
        require_checkpoint_file(Path(self.path))

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True, eq=False)
class NetworkSource:
    """A SiamDepthNet in memory and its ModelMeta; the torch backend runs it (moved to the options' device)."""

    net: SiamDepthNet
    meta: ModelMeta
    description: str = "a network in memory"

    backend = "torch"

    def check_files(self) -> None:
        """Nothing to check: the network is in memory."""

    def __str__(self) -> str:
        return self.description


@dataclass(frozen=True)
class OnnxSource:
    """An exported ONNX model (`siam-depth-export`) with its JSON sidecar `<path>.json`; ONNX Runtime runs it."""

    path: Path

    backend = "onnxruntime"

    def check_files(self) -> None:
        """BackendError when the ONNX file is missing (the sidecar is checked when loading)."""
        if not Path(self.path).is_file():
            raise BackendError(f"ONNX model not found: {self.path}")

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class EngineSource:
    """A TensorRT engine. engine: the engine file (None: `<onnx>.engine`, or `.fp16.engine` under fp16);
    onnx: the exported ONNX it is built from, and rebuilt from whenever it is missing or was built for
    another TensorRT version, GPU, size, precision or model (without it such an engine is an error)."""

    engine: Path | None = None
    onnx: Path | None = None

    backend = "tensorrt"

    def __post_init__(self) -> None:
        if self.engine is None and self.onnx is None:
            raise ValueError("a TensorRT model needs an engine file or an ONNX file to build one from")

    def check_files(self) -> None:
        """BackendError when the ONNX file to build from, or without one the engine, is missing."""
        if self.onnx is not None:
            if not Path(self.onnx).is_file():
                raise BackendError(f"ONNX model not found: {self.onnx}")
        elif not Path(self.engine).is_file():  # type: ignore[arg-type]
            raise BackendError(f"TensorRT engine not found: {self.engine} (and no ONNX to build it from)")

    def engine_path(self, fp16: bool) -> Path:
        """The engine file: the given one, else next to the ONNX file."""
        if self.engine is not None:
            return Path(self.engine)
        return Path(self.onnx).with_suffix(".fp16.engine" if fp16 else ".engine")  # type: ignore[arg-type]

    def __str__(self) -> str:
        return str(self.engine if self.engine is not None else self.onnx)


@dataclass(frozen=True)
class OpenVinoSource:
    """An exported ONNX model (fp32 or the int8 QDQ export) with its sidecar; OpenVINO compiles and runs it on the
    CPU. cache_dir: where the compiled model is kept, one file per ONNX sha256 and precision (None: the default,
    `<cache_dir()>/openvino`, i.e. `$SIAM_DEPTH_CACHE/openvino`); cache False: compile at every open."""

    path: Path
    cache_dir: Path | None = None
    cache: bool = True

    backend = "openvino"

    def check_files(self) -> None:
        """BackendError when the ONNX file is missing (the sidecar is checked when loading)."""
        if not Path(self.path).is_file():
            raise BackendError(f"ONNX model not found: {self.path}")

    def cache_folder(self) -> Path | None:
        """The compiled-model cache folder, or None without a cache."""
        if not self.cache:
            return None
        if self.cache_dir is not None:
            return Path(self.cache_dir)
        from siam_depth_core.data.paths import cache_dir
        return cache_dir() / "openvino"

    def __str__(self) -> str:
        return str(self.path)


ModelSource = CheckpointSource | NetworkSource | OnnxSource | EngineSource | OpenVinoSource


def untrained_source(meta: ModelMeta | None = None) -> NetworkSource:
    """A randomly initialised network (default width 0.25) so that a pipeline can start without a trained
    model; logs a warning, since its depth is meaningless."""
    meta = meta if meta is not None else ModelMeta(net_width=UNTRAINED_NET_WIDTH)
    LOGGER.warning("no checkpoint given: using a randomly initialised width-%s network; its depth is meaningless "
                   "until a trained checkpoint is loaded", meta.net_width)
    return NetworkSource(meta.build_network().eval(), meta, f"random weights (width {meta.net_width})")


def source_for_backend(backend: str, checkpoint: str | Path | None = None, onnx: str | Path | None = None,
                       engine: str | Path | None = None) -> ModelSource:
    """The source a backend name and model files describe (as the node's parameters give them).

    torch: `checkpoint` (None: an untrained network, warned); onnxruntime and openvino: `onnx`; tensorrt:
    `engine` and/or `onnx`. Raises ValueError naming a missing file argument or an unknown backend.
    """
    if backend == "torch":
        return CheckpointSource(Path(checkpoint)) if checkpoint else untrained_source()
    if backend == "onnxruntime":
        if not onnx:
            raise ValueError("the onnxruntime backend needs an ONNX file (export one with siam-depth-export)")
        return OnnxSource(Path(onnx))
    if backend == "openvino":
        if not onnx:
            raise ValueError("the openvino backend needs an ONNX file (export one with siam-depth-export)")
        return OpenVinoSource(Path(onnx))
    if backend == "tensorrt":
        return EngineSource(Path(engine) if engine else None, Path(onnx) if onnx else None)
    raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKEND_NAMES)}")


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run a model, for every backend; the values are checked here, once.

    device: "cpu", "cuda" or "cuda:<index>"; None = the backend's own (the CPU for torch and
    onnxruntime, the current GPU for tensorrt).
    num_threads: intra-op CPU threads, 0 = the library's default. torch: torch.set_num_threads, which
    applies to the whole process; onnxruntime: the session's intra_op_num_threads. On a small shared
    CPU, 1 thread can be much faster.
    input_size: network input (height, width) in pixels, multiples of 32; None = the model's (a
    checkpoint's training size; an ONNX model or engine is fixed to the size it was exported for).
    fp16: half precision on CUDA (torch autocast; a TensorRT engine's kernels), ConvLSTM state kept fp32.
    channels_last: torch channels-last memory format. cuda_graph: replay each step from a CUDA graph.
    post_process: for a model trained without the Siamese pass, also run the flipped image and blend
    (monodepth's post-processing); a Siamese model does this already, so it changes nothing there.
    single_pass: run only the direct branch of a Siamese model (no mirrored image, no refinement, no
    confidence): half the compute, for CPUs and small GPUs that need the rate (an ONNX model or engine
    must have been exported with `siam-depth-export --single-pass`).
    spin_wait (onnxruntime): the intra-op threads spin while waiting for the next operator instead of
    sleeping: faster with num_threads > 1 on cores the model has to itself (a vehicle computer), slower
    on a CPU shared with other busy work, where spinning threads take its time (benchmarks/README.md).
    precision (openvino): "fp32", "bf16" (the CPU's bf16 units; refused on a CPU without them) or "auto"
    (the backend's own choice: bf16 where the CPU has it). The other backends honour only "auto".
    """

    device: str | None = None
    num_threads: int = 0
    input_size: ImageSize | None = None
    fp16: bool = False
    channels_last: bool = False
    cuda_graph: bool = False
    post_process: bool = False
    single_pass: bool = False
    spin_wait: bool = False
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.single_pass and self.post_process:
            raise ValueError("single_pass and post_process contradict each other (one pass, or image + flip)")
        if self.device is not None and not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:<index>', got {self.device!r}")
        if self.num_threads < 0:
            raise ValueError(f"num_threads must be >= 0 (0 = the library's default), got {self.num_threads}")
        if self.input_size is not None:
            size = ImageSize(*(int(value) for value in self.input_size))
            check_input_size(*size)
            object.__setattr__(self, "input_size", size)

    @property
    def device_type(self) -> str | None:
        """"cpu", "cuda" or None (the backend's own)."""
        return None if self.device is None else self.device.split(":")[0]

    @property
    def device_index(self) -> int:
        """The CUDA device index (0 for plain "cuda")."""
        return int(self.device.split(":")[1]) if self.device and ":" in self.device else 0

    def set_options(self) -> dict[str, Any]:
        """The options that differ from their defaults, by name (what a backend must be able to honour)."""
        defaults = RuntimeOptions()
        return {item.name: getattr(self, item.name) for item in fields(self)
                if getattr(self, item.name) != getattr(defaults, item.name)}
