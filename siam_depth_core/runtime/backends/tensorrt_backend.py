"""The TensorRT backend (TensorRT 10 Python API): engine build from the exported ONNX, and execution.

Build: the ONNX is parsed with TensorRT's ONNX parser; with fp16 the convolutions may run in half
precision while every ConvLSTM gate/state layer is pinned to fp32 (the cell state accumulates over
frames). The ONNX file's sha256 is checked against its sidecar before it is used (once per load). The engine and a timing cache are written next to each other; the engine's sidecar
(`<engine>.json`) records the TensorRT version, GPU model, precision, input size and the ONNX hash,
and the engine is rebuilt (with a log line saying why) whenever one of them differs.

Execution: all device buffers are allocated once (as torch CUDA tensors); the state lives in two
buffer sets used ping-pong (frame k reads set k%2 and writes the other), so it never travels to the
host; work is queued on one CUDA stream, optionally replayed from a CUDA graph per ping-pong parity.
Only the disparity and, for an export with the Siamese pass, its confidence are copied to the host.

Batch: an ONNX export with a dynamic batch (`siam-depth-export --dynamic-batch --batch N`) is built with
one optimisation profile for 1..N streams (min 1, opt N, max N; the image and every state tensor); the
engine's sidecar then records N as `max_batch`. The runtime below still runs one stream per call (batch 1
of such an engine; an engine of a fixed batch > 1 is refused): batched TensorRT execution needs a GPU to
be written against and is left to a session that has one (issue 28).

TensorRT is optional: it is imported lazily, and a GPU is checked for before any TensorRT object is
created (creating one without a GPU can crash the process).
"""
from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from siam_depth_core.network.model import SiamDepthNet
from siam_depth_core.runtime.backends import (
    BackendError,
    StepOutput,
    check_exported_options,
    check_image,
    reject_unsupported,
)
from siam_depth_core.runtime.backends.sidecar import (
    ModelSidecar,
    check_onnx_sha256,
    file_sha256,
    sidecar_path,
)
from siam_depth_core.runtime.backends.source import EngineSource, RuntimeOptions
from siam_depth_core.runtime.backends.streams import SINGLE

LOGGER = logging.getLogger(__name__)
WORKSPACE_BYTES = 1 << 30
#: RuntimeOptions TensorRT honours (input_size, post_process and single_pass only as the exported model fixes
#: them).
SUPPORTED_OPTIONS = ("device", "input_size", "fp16", "cuda_graph", "post_process", "single_pass")
_CONVLSTM_LAYERS = SiamDepthNet.SKIP_NAMES + SiamDepthNet.BOTTLENECK_NAMES


def _require_gpu() -> Any:
    """Return torch after checking for a CUDA GPU; raise BackendError naming what is missing."""
    import torch
    if not torch.cuda.is_available():
        raise BackendError(f"TensorRT needs an NVIDIA GPU, but none is visible (torch {torch.__version__}, "
                           f"CUDA build {torch.version.cuda}): build and run engines on the GPU machine, "
                           "use the torch or onnxruntime backend here")
    return torch


def import_tensorrt() -> ModuleType:
    """Check for a GPU, then import `tensorrt`; BackendError names the missing piece."""
    _require_gpu()
    try:
        import tensorrt
    except ImportError as error:
        raise BackendError("the tensorrt backend needs the TensorRT Python package, which is not installed "
                           "(pip install 'siam_depth_ros[trt]' or tensorrt>=10)") from error
    major = int(tensorrt.__version__.split(".")[0])
    if major < 10:
        raise BackendError(f"the tensorrt backend needs TensorRT 10 or newer, found {tensorrt.__version__}")
    return tensorrt


def convlstm_cell_layers(trt: ModuleType, network: Any) -> list[Any]:
    """The layers of a parsed network that compute ConvLSTM gates and state (the convolutions and
    constants excluded): those that must stay fp32 in an fp16 engine."""
    selected = []
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        in_cell = any(f"/{name}/" in layer.name for name in _CONVLSTM_LAYERS)
        if not in_cell or layer.type in (trt.LayerType.CONVOLUTION, trt.LayerType.CONSTANT):
            continue
        if any(layer.get_output(i).dtype in (trt.float32, trt.float16) for i in range(layer.num_outputs)):
            selected.append(layer)  # (layers with only integer outputs are shape arithmetic)
    return selected


def _pin_fp32(trt: ModuleType, layers: list[Any]) -> None:
    for layer in layers:
        layer.precision = trt.float32
        for output in range(layer.num_outputs):
            if layer.get_output(output).dtype in (trt.float32, trt.float16):
                layer.set_output_type(output, trt.float32)


def batch_profile(onnx_sidecar: ModelSidecar, max_batch: int) -> dict[str, tuple[list[int], list[int], list[int]]]:
    """The optimisation profile of a dynamic-batch export for 1..max_batch streams: per input, the (min, opt,
    max) shapes, min at 1 stream, opt and max at `max_batch`."""
    def image(streams: int) -> list[int]:
        return [streams, 3, onnx_sidecar.height, onnx_sidecar.width]

    profile = {onnx_sidecar.image_input: (image(1), image(max_batch), image(max_batch))}
    for item in onnx_sidecar.state:
        profile[item.input_name] = (onnx_sidecar.state_shape(item, 1), onnx_sidecar.state_shape(item, max_batch),
                                    onnx_sidecar.state_shape(item, max_batch))
    return profile


def build_serialized_engine(trt: ModuleType, onnx_path: str | Path, fp16: bool = False,
                            timing_cache_path: str | Path | None = None, max_batch: int | None = None) -> bytes:
    """Parse `onnx_path` with TensorRT's ONNX parser and build a serialized engine.

    `trt` is the TensorRT module (tensorrt, or tensorrt_rtx, which builds without a GPU). fp16
    enables half-precision kernels with the ConvLSTM cell layers pinned to fp32. A timing cache at
    `timing_cache_path` is read when present and written back after the build. An ONNX export with a
    dynamic batch gets an optimisation profile for 1..max_batch streams (`batch_profile`; default: the
    batch its sidecar records). Raises BackendError naming the file on parser errors or a failed build.
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise BackendError(f"ONNX model not found: {onnx_path}")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes(), str(onnx_path.parent)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse ONNX model {onnx_path} (corrupt, truncated or unsupported): "
                           f"{errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    dynamic = [network.get_input(i).name for i in range(network.num_inputs) if -1 in tuple(network.get_input(i).shape)]
    if dynamic:
        onnx_sidecar = _read_sidecar(sidecar_path(onnx_path))
        max_batch = max_batch if max_batch is not None else onnx_sidecar.batch
        if max_batch < 1:
            raise BackendError(f"max_batch must be a positive number of streams, got {max_batch}")
        profile = builder.create_optimization_profile()
        shapes = batch_profile(onnx_sidecar, max_batch)
        missing = sorted(set(dynamic) - set(shapes))
        if missing:
            raise BackendError(f"ONNX model {onnx_path} has dynamic inputs its sidecar does not describe: "
                               f"{', '.join(missing)}")
        for name in dynamic:
            profile.set_shape(name, *shapes[name])
        config.add_optimization_profile(profile)
        LOGGER.info("dynamic batch: optimisation profile for 1..%d streams", max_batch)
    if fp16:
        if not hasattr(trt.BuilderFlag, "FP16"):
            raise BackendError(f"{trt.__name__} {trt.__version__} has no FP16 builder flag (strongly typed only); "
                               "build an fp32 engine")
        config.set_flag(trt.BuilderFlag.FP16)
        constraint = getattr(trt.BuilderFlag, "OBEY_PRECISION_CONSTRAINTS", None)
        if constraint is not None:
            config.set_flag(constraint)
        cell_layers = convlstm_cell_layers(trt, network)
        _pin_fp32(trt, cell_layers)
        LOGGER.info("fp16 engine: %d ConvLSTM cell layers pinned to fp32", len(cell_layers))
    timing_cache_path = Path(timing_cache_path) if timing_cache_path else None
    if timing_cache_path is not None:
        cached = timing_cache_path.read_bytes() if timing_cache_path.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(cached), ignore_mismatch=True)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None or serialized.nbytes == 0:
        raise BackendError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    if timing_cache_path is not None:
        timing_cache_path.write_bytes(memoryview(config.get_timing_cache().serialize()))
    return bytes(memoryview(serialized))


def _read_sidecar(path: Path) -> ModelSidecar:
    try:
        return ModelSidecar.read(path)
    except ValueError as error:
        raise BackendError(str(error)) from error


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def verified_onnx(onnx_path: Path) -> tuple[ModelSidecar, str]:
    """The ONNX file's sidecar and sha256, after checking that the file is the one the sidecar describes."""
    if not onnx_path.is_file():
        raise BackendError(f"ONNX model not found: {onnx_path}")
    onnx_sidecar = _read_sidecar(sidecar_path(onnx_path))
    onnx_sha256 = file_sha256(onnx_path)
    check_onnx_sha256(onnx_path, onnx_sidecar, onnx_sha256)
    return onnx_sidecar, onnx_sha256


def engine_key(trt: ModuleType, onnx_sidecar: ModelSidecar, onnx_sha256: str, fp16: bool) -> dict[str, Any]:
    """What an engine is only valid for: TensorRT version, GPU model, input size, precision, ONNX hash."""
    torch = _require_gpu()
    major, minor = torch.cuda.get_device_capability()
    key = {"version": trt.__version__, "gpu": torch.cuda.get_device_name(), "compute_capability": f"{major}.{minor}",
           "height": onnx_sidecar.height, "width": onnx_sidecar.width, "fp16": fp16, "onnx_sha256": onnx_sha256}
    if onnx_sidecar.dynamic_batch:  # (only then: engines of fixed-batch exports keep their key)
        key["max_batch"] = onnx_sidecar.batch
    return key


def timing_cache_path(engine_path: Path, key: dict[str, Any]) -> Path:
    """Timing cache beside the engine, named after the TensorRT version and GPU it is valid for."""
    return engine_path.with_name(f"{engine_path.name}.timing-trt{key['version']}-{_slug(key['gpu'])}.cache")


def build_engine_file(onnx_path: str | Path, engine_path: str | Path, fp16: bool = False) -> ModelSidecar:
    """Build `engine_path` (+ its sidecar and timing cache) from an exported ONNX; returns the sidecar.

    Raises BackendError when the ONNX file does not match its sidecar (damaged or replaced).
    """
    trt = import_tensorrt()
    onnx_path = Path(onnx_path)
    onnx_sidecar, onnx_sha256 = verified_onnx(onnx_path)
    key = engine_key(trt, onnx_sidecar, onnx_sha256, fp16)
    return _build_engine(trt, onnx_path, onnx_sidecar, Path(engine_path), key)


def _build_engine(trt: ModuleType, onnx_path: Path, onnx_sidecar: ModelSidecar, engine_path: Path,
                  key: dict[str, Any]) -> ModelSidecar:
    """Build the engine for `key` from a verified ONNX file, write it and its sidecar; returns the sidecar."""
    fp16 = key["fp16"]
    LOGGER.info("building TensorRT engine %s from %s (%s, %s, %dx%d, %s)", engine_path, onnx_path,
                key["version"], key["gpu"], key["width"], key["height"], "fp16" if fp16 else "fp32")
    engine_bytes = build_serialized_engine(trt, onnx_path, fp16, timing_cache_path(engine_path, key))
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(engine_bytes)
    engine_sidecar = ModelSidecar(**{**asdict(onnx_sidecar), "state": onnx_sidecar.state, "tensorrt": key})
    engine_sidecar.write(sidecar_path(engine_path))
    return engine_sidecar


def engine_mismatch(engine_path: Path, wanted: dict[str, Any]) -> str | None:
    """How the engine at `engine_path` (per its sidecar) differs from `wanted`, a subset of `engine_key`,
    or None when it matches; BackendError when the sidecar is missing or malformed."""
    built = _read_sidecar(sidecar_path(engine_path)).tensorrt
    differences = [f"{name} {built.get(name)!r} (here {value!r})" for name, value in wanted.items()
                   if built.get(name) != value]
    return ", ".join(differences) if differences else None


class TensorRTBackend:
    """Stateful Siamese step through a TensorRT engine; the state is a ping-pong parity token (0/1).

    Runs on the current CUDA device (device None, "cuda" or "cuda:0"). fp16: build with half-precision
    kernels (an engine given without its ONNX must have been built so). cuda_graph: replay each step from
    a CUDA graph. See `EngineSource` for when the engine is (re)built.
    """

    name = "tensorrt"

    @classmethod
    def open(cls, source: EngineSource, options: RuntimeOptions) -> TensorRTBackend:
        """Check the options, then build (when needed) and load the engine of `source`."""
        reject_unsupported(cls.name, options, SUPPORTED_OPTIONS)
        if options.device is not None and (options.device_type != "cuda" or options.device_index != 0):
            raise BackendError(f"the tensorrt backend runs on the current CUDA device: device must be 'cuda' or "
                               f"'cuda:0' (or unset), got {options.device!r}")
        source.check_files()
        return cls(source, options)

    def __init__(self, source: EngineSource, options: RuntimeOptions) -> None:
        trt = import_tensorrt()
        torch = _require_gpu()
        self._torch = torch
        self.engine_path = source.engine_path(options.fp16)
        self._ensure_engine(trt, source.onnx, options.fp16)
        self.sidecar = _read_sidecar(sidecar_path(self.engine_path))
        self.meta = self.sidecar.model_meta()
        self.input_size = self.sidecar.input_size
        self.has_confidence = self.sidecar.confidence_output is not None
        self.batch_range = SINGLE
        if not self.sidecar.dynamic_batch and self.sidecar.batch != 1:
            raise BackendError(f"TensorRT engine {self.engine_path} was exported for batch {self.sidecar.batch}; "
                               "the tensorrt backend runs one stream per call (export with --dynamic-batch, or "
                               "batch 1)")
        check_exported_options(self.name, self.engine_path, options, self.input_size, self.meta,
                               self.sidecar.single_pass)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        try:
            self._engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        except RuntimeError:
            self._engine = None
        if self._engine is None:
            raise BackendError(f"TensorRT engine {self.engine_path} cannot be loaded: corrupt, truncated, or built "
                               f"by another TensorRT version than {trt.__version__} (rebuild it with siam-depth-export)")
        self._context = self._engine.create_execution_context()
        self._check_engine_io(trt)
        if self.sidecar.dynamic_batch:  # one stream per call: the profile's minimum
            self._context.set_input_shape(self.sidecar.image_input, [1, 3, *self.input_size])
            for item in self.sidecar.state:
                self._context.set_input_shape(item.input_name, item.shape)
        self._allocate_buffers()
        self._graphs = [self._capture(parity) for parity in (0, 1)] if options.cuda_graph else None

    def _ensure_engine(self, trt: ModuleType, onnx: Path | None, fp16: bool) -> None:
        """Rebuild the engine from `onnx` when it is missing or stale; without `onnx`, check what we can."""
        if onnx is None:  # (`EngineSource.check_files` found the engine file)
            here = {"version": trt.__version__, "gpu": self._torch.cuda.get_device_name(), "fp16": fp16}
            mismatch = engine_mismatch(self.engine_path, here)
            if mismatch:
                raise BackendError(f"TensorRT engine {self.engine_path} was built for {mismatch}; "
                                   "pass the ONNX file so that it can be rebuilt")
            return
        onnx_path = Path(onnx)
        onnx_sidecar, onnx_sha256 = verified_onnx(onnx_path)
        key = engine_key(trt, onnx_sidecar, onnx_sha256, fp16)
        try:
            reason = engine_mismatch(self.engine_path, key) if self.engine_path.is_file() else "it does not exist"
        except BackendError as error:
            reason = str(error)
        if reason is not None:
            LOGGER.warning("rebuilding TensorRT engine %s: %s", self.engine_path, reason)
            _build_engine(trt, onnx_path, onnx_sidecar, self.engine_path, key)

    def _check_engine_io(self, trt: ModuleType) -> None:
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        batch = -1 if self.sidecar.dynamic_batch else 1  # (TensorRT: -1 = a dynamic axis)
        expected = {self.sidecar.image_input: [batch, 3, *self.input_size], self.sidecar.disparity_output: [
            batch, 1, *self.input_size]}
        if self.sidecar.confidence_output is not None:
            expected[self.sidecar.confidence_output] = [batch, 1, *self.input_size]
        for item in self.sidecar.state:
            expected[item.input_name] = expected[item.output_name] = [-1 if batch == -1 else item.shape[0],
                                                                      *item.shape[1:]]
        found = {name: list(self._engine.get_tensor_shape(name)) for name in names}
        if found != expected:
            raise BackendError(f"TensorRT engine {self.engine_path} does not match its sidecar "
                               f"{sidecar_path(self.engine_path)}: engine tensors {found}, sidecar {expected}")
        for name in names:
            if self._engine.get_tensor_dtype(name) != trt.float32:
                raise BackendError(f"TensorRT engine {self.engine_path}: tensor {name} is "
                                   f"{self._engine.get_tensor_dtype(name)}, expected fp32 I/O")

    def _allocate_buffers(self) -> None:
        torch = self._torch
        height, width = self.input_size
        self._stream = torch.cuda.Stream()
        self._image = torch.zeros(1, 3, height, width, device="cuda")
        self._disparity = torch.zeros(1, 1, height, width, device="cuda")
        self._disparity_host = torch.zeros(1, 1, height, width, pin_memory=True)
        self._confidence = self._confidence_host = None
        if self.sidecar.confidence_output is not None:
            self._confidence = torch.zeros(1, 1, height, width, device="cuda")
            self._confidence_host = torch.zeros(1, 1, height, width, pin_memory=True)
            self._context.set_tensor_address(self.sidecar.confidence_output, self._confidence.data_ptr())
        self._states = [[torch.zeros(item.shape, device="cuda") for item in self.sidecar.state] for _ in (0, 1)]
        self._context.set_tensor_address(self.sidecar.image_input, self._image.data_ptr())
        self._context.set_tensor_address(self.sidecar.disparity_output, self._disparity.data_ptr())

    def _bind_state(self, parity: int) -> None:
        """Read the state from buffer set `parity`, write the next state into the other set."""
        for item, source, target in zip(self.sidecar.state, self._states[parity], self._states[1 - parity],
                                        strict=True):
            self._context.set_tensor_address(item.input_name, source.data_ptr())
            self._context.set_tensor_address(item.output_name, target.data_ptr())

    def _enqueue(self, parity: int) -> None:
        self._bind_state(parity)
        if not self._context.execute_async_v3(self._stream.cuda_stream):
            raise BackendError(f"TensorRT engine {self.engine_path}: execute_async_v3 failed (see the TensorRT log)")

    def _capture(self, parity: int) -> Any:
        torch = self._torch
        with torch.cuda.stream(self._stream):
            self._enqueue(parity)  # TensorRT needs one run before capture (lazy resource allocation)
        self._stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self._stream):
            self._enqueue(parity)
        return graph

    def run(self, image: np.ndarray, state: Any | None) -> tuple[StepOutput, Any]:
        """See `Backend.run`; the state token is the index (0/1) of the buffer set holding the state."""
        check_image(image, self.input_size, f"TensorRT engine {self.engine_path}")
        torch = self._torch
        parity = 0 if state is None else int(state)
        with torch.cuda.stream(self._stream):
            if state is None:
                for tensor in self._states[0]:
                    tensor.zero_()
            self._image.copy_(torch.from_numpy(image), non_blocking=True)
            if self._graphs is not None:
                self._graphs[parity].replay()
            else:
                self._enqueue(parity)
            self._disparity_host.copy_(self._disparity, non_blocking=True)
            if self._confidence is not None and self._confidence_host is not None:  # allocated together
                self._confidence_host.copy_(self._confidence, non_blocking=True)
        self._stream.synchronize()
        confidence = None if self._confidence_host is None else self._confidence_host.numpy().copy()
        return StepOutput(self._disparity_host.numpy().copy(), confidence), 1 - parity

    def split_state(self, state: Any, streams: int) -> list[Any]:
        """Not yet: the TensorRT backend keeps one stream's state in its ping-pong buffers (see the module docstring)."""
        raise BackendError("the tensorrt backend runs one stream per backend for now: per-stream states "
                           "(split_state) need the batched TensorRT runtime (issue 28); use onnxruntime or torch")

    def stack_states(self, states: Sequence[Any | None]) -> Any:
        """Not yet: see `split_state`."""
        raise BackendError("the tensorrt backend runs one stream per backend for now: per-stream states "
                           "(stack_states) need the batched TensorRT runtime (issue 28); use onnxruntime or torch")
