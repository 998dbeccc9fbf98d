"""The OpenVINO backend: runs an exported one-step ONNX model (fp32, or the int8 QDQ export) on the CPU.

Precision (`RuntimeOptions.precision`, OpenVINO's INFERENCE_PRECISION_HINT): fp32, bf16 (the operators
that are not int8 run in bfloat16 on the CPU's bf16 units: AVX-512 BF16 or AMX) or auto (bf16 where the
CPU has it, else fp32). A precision the CPU lacks is refused with a BackendError rather than emulated.
The graph's inputs and outputs stay float32 whatever the precision: the state crosses frames as float32.
An int8 QDQ export runs its quantised operators in int8 (VNNI / AMX) and the rest at the precision.

The ONNX file is read once: OpenVINO compiles those bytes and their sha256 is checked against the
sidecar's. The compiled model is kept under `<cache_dir()>/openvino` (`$SIAM_DEPTH_CACHE/openvino`), one
file per ONNX sha256, precision and OpenVINO version (`<sha256>.<precision>.ov<version>.blob`); the next
open of the same bytes imports it instead of compiling. A cache that cannot be read or written is warned
about and bypassed.

The state is explicit, as in the other backends: numpy arrays in sidecar order. Two infer requests are
used ping-pong (frame k writes the outputs of request k%2 and reads the state from the other's), so the
state is passed between frames without a copy; as the `Backend` contract says, only the state returned
by the latest `run` (or None) may be passed back. Several streams per call: an export of `--batch N` runs
exactly N, a `--dynamic-batch` export any number; `split_state` copies the rows out of the request's
buffers, so per-stream states stay valid across any later runs.

OpenVINO is optional (`pip install .[openvino]`): it is imported when the backend is opened.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from siam_depth_core.runtime.backends import (
    BackendError,
    StepOutput,
    check_exported_options,
    check_image,
    check_state_streams,
    reject_unsupported,
)
from siam_depth_core.runtime.backends.sidecar import ModelSidecar, check_onnx_sha256, sidecar_path
from siam_depth_core.runtime.backends.source import OpenVinoSource, RuntimeOptions
from siam_depth_core.runtime.backends.streams import stacking_order, stream_rows

LOGGER = logging.getLogger(__name__)
DEVICE = "CPU"
#: RuntimeOptions OpenVINO honours (device only as "cpu"; input_size, post_process and single_pass only as the
#: exported model fixes them).
SUPPORTED_OPTIONS = ("device", "num_threads", "input_size", "post_process", "single_pass", "precision")
#: Our precision names -> OpenVINO's INFERENCE_PRECISION_HINT values.
OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}
#: The OPTIMIZATION_CAPABILITIES entry a precision needs (fp32 runs everywhere).
REQUIRED_CAPABILITY = {"bf16": "BF16"}


def import_openvino() -> Any:
    """The openvino module; BackendError saying how to install it when it is missing."""
    try:
        import openvino
    except ImportError as error:
        raise BackendError("the openvino backend needs the openvino package (pip install openvino, or "
                           "pip install .[openvino] in the siam_depth checkout)") from error
    return openvino


def cpu_capabilities(core: Any) -> frozenset[str]:
    """What OpenVINO says the CPU runs natively (OPTIMIZATION_CAPABILITIES: FP32, BF16, INT8, ...)."""
    return frozenset(str(item) for item in core.get_property(DEVICE, "OPTIMIZATION_CAPABILITIES"))


def resolve_precision(requested: str, capabilities: frozenset[str], cpu_name: str = "this CPU") -> str:
    """The precision to run ("fp32" or "bf16") for `requested` ("auto", "fp32" or "bf16") on a CPU with
    `capabilities`: auto is bf16 where the CPU has BF16, else fp32; a precision it lacks is a BackendError."""
    if requested == "auto":
        return "bf16" if REQUIRED_CAPABILITY["bf16"] in capabilities else "fp32"
    needed = REQUIRED_CAPABILITY.get(requested)
    if needed is not None and needed not in capabilities:
        raise BackendError(f"precision {requested!r} needs a CPU with native {needed} (AVX-512 BF16 or AMX), but "
                           f"OpenVINO reports {cpu_name} with only {', '.join(sorted(capabilities)) or 'nothing'}; "
                           "use precision 'fp32' or 'auto'")
    return requested


def openvino_version(openvino: Any) -> str:
    """OpenVINO's release, e.g. "2026.4.1" (the build suffix dropped)."""
    return str(openvino.get_version()).split("-")[0]


def cache_path(cache_dir: Path, onnx_sha256: str, precision: str, version: str) -> Path:
    """The compiled-model file of one ONNX file's bytes at one precision and OpenVINO version."""
    return Path(cache_dir) / f"{onnx_sha256}.{precision}.ov{version}.blob"


class OpenVinoBackend:
    """Stateful Siamese step through OpenVINO on the CPU; state = list of float32 arrays, in sidecar order.

    precision: the one it runs ("fp32" or "bf16", `auto` resolved); num_threads: INFERENCE_NUM_THREADS,
    0 = OpenVINO's default (one per core); cache_file: the compiled model's file (None: not cached);
    from_cache: whether this open imported it instead of compiling.
    """

    name = "openvino"

    @classmethod
    def open(cls, source: OpenVinoSource, options: RuntimeOptions) -> OpenVinoBackend:
        """Compile (or import from the cache) the ONNX model of `source` for `options` (see the module docstring)."""
        reject_unsupported(cls.name, options, SUPPORTED_OPTIONS)
        if options.device_type not in (None, "cpu"):
            raise BackendError(f"the openvino backend runs on the CPU; device {options.device!r} is not supported "
                               "(use the tensorrt or onnxruntime backend on an NVIDIA GPU)")
        source.check_files()
        return cls(source.path, options, source.cache_folder())

    def __init__(self, onnx_path: str | Path, options: RuntimeOptions, cache_dir: Path | None) -> None:
        """Load an existing ONNX file and its sidecar (`open` checks that the file exists); cache_dir None: no cache."""
        openvino = import_openvino()
        self.onnx_path = Path(onnx_path)
        try:
            self.sidecar = ModelSidecar.read(sidecar_path(self.onnx_path))
        except ValueError as error:
            raise BackendError(str(error)) from error
        self.meta = self.sidecar.model_meta()
        self.input_size = self.sidecar.input_size
        self.has_confidence = self.sidecar.confidence_output is not None
        self.batch_range = self.sidecar.batch_range()
        self._rows_per_stream = self.sidecar.state[0].shape[0] if self.sidecar.state else 1
        check_exported_options(self.name, self.onnx_path, options, self.input_size, self.meta,
                               self.sidecar.single_pass)
        core = openvino.Core()
        self.cpu_name = str(core.get_property(DEVICE, "FULL_DEVICE_NAME"))
        self.precision = resolve_precision(options.precision, cpu_capabilities(core), self.cpu_name)
        self.num_threads = options.num_threads
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[self.precision],
                                  "PERFORMANCE_HINT": "LATENCY"}
        if options.num_threads > 0:
            config["INFERENCE_NUM_THREADS"] = options.num_threads
        model_bytes = self.onnx_path.read_bytes()
        sha256 = hashlib.sha256(model_bytes).hexdigest()
        check_onnx_sha256(self.onnx_path, self.sidecar, sha256)
        self.cache_file = (None if cache_dir is None else
                           cache_path(cache_dir, sha256, self.precision, openvino_version(openvino)))
        self.from_cache = False
        compiled = self._import_cached(core, config)
        if compiled is None:
            try:
                compiled = core.compile_model(core.read_model(model_bytes), DEVICE, config)
            except Exception as error:  # openvino raises its own exception types for bad files
                raise BackendError(f"ONNX model {self.onnx_path} cannot be compiled by OpenVINO "
                                   f"{openvino_version(openvino)} (corrupt or truncated?): "
                                   f"{type(error).__name__}: {error}") from error
        self.compiled: Any = compiled
        if not self.from_cache:
            self._write_cache()
        self._check_model_matches_sidecar()
        self._requests = [self.compiled.create_infer_request() for _ in range(2)]
        self._frame = 0

    def _import_cached(self, core: Any, config: dict[str, Any]) -> Any | None:
        """The compiled model from the cache file, or None when there is none or it cannot be imported (warned)."""
        if self.cache_file is None or not self.cache_file.is_file():
            return None
        try:
            blob = io.BytesIO(self.cache_file.read_bytes())
            compiled = core.import_model(blob, DEVICE, config)  # the precision must be given again
        except Exception as error:  # a damaged or foreign blob: compile again and replace it
            LOGGER.warning("OpenVINO cache %s cannot be imported (%s: %s); compiling %s again", self.cache_file,
                           type(error).__name__, error, self.onnx_path)
            return None
        self.from_cache = True
        LOGGER.info("OpenVINO: %s imported from the cache %s", self.onnx_path, self.cache_file)
        return compiled

    def _write_cache(self) -> None:
        """Write the compiled model to the cache file (atomically); a cache that cannot be written is warned about."""
        if self.cache_file is None:
            return
        try:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.cache_file.parent, suffix=".partial")
            try:
                with os.fdopen(handle, "wb") as stream:
                    stream.write(self.compiled.export_model().getbuffer())
                os.replace(temporary, self.cache_file)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except Exception as error:  # a read-only or full disk must not stop the model from running
            LOGGER.warning("OpenVINO: cannot write the compiled-model cache %s (%s: %s); the model runs uncached",
                           self.cache_file, type(error).__name__, error)
            return
        LOGGER.info("OpenVINO: compiled %s (%s) and cached it as %s", self.onnx_path, self.precision, self.cache_file)

    def _check_model_matches_sidecar(self) -> None:
        # (a dynamic axis: None here, as in the sidecar's graph_inputs)
        inputs = {item.any_name: [None if dim.is_dynamic else dim.get_length() for dim in item.get_partial_shape()]
                  for item in self.compiled.inputs}
        expected = self.sidecar.graph_inputs()
        if inputs != expected:
            raise BackendError(f"ONNX model {self.onnx_path} does not match its sidecar "
                               f"{sidecar_path(self.onnx_path)}: inputs {inputs}, sidecar says {expected}")
        outputs = [item.any_name for item in self.compiled.outputs]
        expected_outputs = [name for name in (self.sidecar.disparity_output, self.sidecar.confidence_output)
                            if name is not None] + [item.output_name for item in self.sidecar.state]
        if outputs != expected_outputs:
            raise BackendError(f"ONNX model {self.onnx_path} does not match its sidecar "
                               f"{sidecar_path(self.onnx_path)}: outputs {outputs}, sidecar says {expected_outputs}")

    def _zero_state(self, streams: int = 1) -> list[np.ndarray]:
        return [np.zeros(self.sidecar.state_shape(item, streams), np.float32) for item in self.sidecar.state]

    def _check_state(self, state: Sequence[np.ndarray], streams: int) -> None:
        if len(state) != len(self.sidecar.state):
            raise BackendError(f"ONNX model {self.onnx_path}: a state of {len(state)} tensors, the model has "
                               f"{len(self.sidecar.state)}")
        check_state_streams([value.shape[0] for value in state], self._rows_per_stream, streams,
                            f"ONNX model {self.onnx_path}")

    def run(self, image: np.ndarray, state: Any | None) -> tuple[StepOutput, Any]:
        """See `Backend.run`; the state is the list of next-state arrays (views of this step's request outputs,
        valid until the step after next)."""
        streams = check_image(image, self.input_size, f"ONNX model {self.onnx_path}", self.batch_range)
        if state is None:
            state = self._zero_state(streams)
        else:
            self._check_state(state, streams)
        request = self._requests[self._frame % 2]
        self._frame += 1
        inputs = {self.sidecar.image_input: np.ascontiguousarray(image)}
        inputs.update({item.input_name: value for item, value in zip(self.sidecar.state, state, strict=True)})
        results = request.infer(inputs, share_inputs=True, share_outputs=True)
        disparity = np.array(results[self.sidecar.disparity_output])
        confidence = (np.array(results[self.sidecar.confidence_output])
                      if self.sidecar.confidence_output is not None else None)
        return StepOutput(disparity, confidence), [results[item.output_name] for item in self.sidecar.state]

    def split_state(self, state: Any, streams: int) -> list[list[np.ndarray]]:
        """See `Backend.split_state`: per-stream lists of arrays (copies, independent of the requests' buffers)."""
        self._check_state(state, streams)
        return [[np.ascontiguousarray(np.asarray(value)[stream_rows(streams, self._rows_per_stream, stream)])
                 for value in state] for stream in range(streams)]

    def stack_states(self, states: Sequence[Any | None]) -> list[np.ndarray]:
        """See `Backend.stack_states`: the arrays of len(states) streams (new arrays)."""
        if not states:
            raise ValueError("stack_states needs at least one stream")
        for state in states:
            if state is not None:
                self._check_state(state, 1)
        order = stacking_order(len(states), self._rows_per_stream)
        return [np.ascontiguousarray(np.concatenate([np.zeros(item.shape, np.float32) if state is None
                                                     else np.asarray(state[index]) for state in states])[order])
                for index, item in enumerate(self.sidecar.state)]
