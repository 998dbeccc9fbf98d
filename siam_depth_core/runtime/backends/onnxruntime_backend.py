"""The ONNX Runtime backend: runs an exported one-step model, the state kept as ORT values.

The file is read once: ONNX Runtime loads those bytes and their sha256 is checked against the
sidecar's, so damaged or replaced bytes that still parse are an error instead of wrong weights.

The state tensors are bound with I/O binding and stay where the execution provider put them (GPU
memory with the CUDA provider), so they make no host round trip between frames.

Several streams per call: an export of `--batch N` runs exactly N, a `--dynamic-batch` export any number.
`split_state` / `stack_states` go through host memory (numpy), also with the CUDA provider.
"""
from __future__ import annotations

import hashlib
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
from siam_depth_core.runtime.backends.source import OnnxSource, RuntimeOptions
from siam_depth_core.runtime.backends.streams import stacking_order, stream_rows

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"
#: RuntimeOptions ONNX Runtime honours (input_size, post_process and single_pass only as the exported model
#: fixes them).
SUPPORTED_OPTIONS = ("device", "num_threads", "input_size", "post_process", "single_pass", "spin_wait")


def session_options_for(onnxruntime: Any, num_threads: int, spin_wait: bool = False) -> Any:
    """The SessionOptions every session of ours uses: `num_threads` intra-op threads (0 = ONNX Runtime's
    default, one per core), no inter-op pool (sequential execution needs none) and, unless `spin_wait`, no
    spinning: threads that spin while waiting took CPU from the node's other threads on a loaded 2-core VM
    (a step took 838 ms without spinning and 973 ms with it at 2 threads), while on a quiet one spinning
    made 2-thread steps about 1.1x faster (benchmarks/README.md, "Threads" and "int8 that scales")."""
    session_options = onnxruntime.SessionOptions()
    session_options.intra_op_num_threads = num_threads
    session_options.inter_op_num_threads = 1
    session_options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin_wait else "0")
    return session_options


class OnnxRuntimeBackend:
    """Stateful Siamese step through ONNX Runtime; state = list of `OrtValue`, in sidecar order.

    device "cuda[:i]" uses the CUDA execution provider (onnxruntime-gpu); num_threads: intra-op CPU
    threads of this session, 0 = ONNX Runtime's default (one per core).
    """

    name = "onnxruntime"

    @classmethod
    def open(cls, source: OnnxSource, options: RuntimeOptions) -> OnnxRuntimeBackend:
        """Load the ONNX model of `source` for `options` (see the module docstring)."""
        reject_unsupported(cls.name, options, SUPPORTED_OPTIONS)
        source.check_files()
        return cls(source.path, options)

    def __init__(self, onnx_path: str | Path, options: RuntimeOptions) -> None:
        """Load an existing ONNX file and its sidecar (`open` checks that the file exists)."""
        try:
            import onnxruntime
        except ImportError as error:
            raise BackendError("the onnxruntime backend needs the onnxruntime package "
                               "(pip install onnxruntime, or onnxruntime-gpu for CUDA)") from error
        self._ort = onnxruntime
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
        providers: list[Any] = [CPU_PROVIDER]
        self.device_type, self.device_id = "cpu", 0
        if options.device_type == "cuda":
            if CUDA_PROVIDER not in onnxruntime.get_available_providers():
                raise BackendError(f"device {options.device!r} requested but onnxruntime {onnxruntime.__version__} "
                                   f"has no {CUDA_PROVIDER} (install onnxruntime-gpu); available: "
                                   f"{', '.join(onnxruntime.get_available_providers())}")
            self.device_type, self.device_id = "cuda", options.device_index
            providers = [(CUDA_PROVIDER, {"device_id": self.device_id}), CPU_PROVIDER]
        session_options = session_options_for(onnxruntime, options.num_threads, options.spin_wait)
        model_bytes = self.onnx_path.read_bytes()
        try:
            self.session = onnxruntime.InferenceSession(model_bytes, session_options, providers=providers)
        except Exception as error:  # onnxruntime raises its own exception types for bad files
            raise BackendError(f"ONNX model {self.onnx_path} cannot be loaded (corrupt or truncated?): "
                               f"{type(error).__name__}: {error}") from error
        check_onnx_sha256(self.onnx_path, self.sidecar, hashlib.sha256(model_bytes).hexdigest())
        self._check_model_matches_sidecar()

    def _check_model_matches_sidecar(self) -> None:
        # (a dynamic axis is named by a string: None here, as in the sidecar's graph_inputs)
        inputs = {item.name: [dim if isinstance(dim, int) else None for dim in item.shape]
                  for item in self.session.get_inputs()}
        expected = self.sidecar.graph_inputs()
        if inputs != expected:
            raise BackendError(f"ONNX model {self.onnx_path} does not match its sidecar "
                               f"{sidecar_path(self.onnx_path)}: inputs {inputs}, sidecar says {expected}")
        outputs = [item.name for item in self.session.get_outputs()]
        expected_outputs = [name for name in (self.sidecar.disparity_output, self.sidecar.confidence_output)
                            if name is not None] + [item.output_name for item in self.sidecar.state]
        if outputs != expected_outputs:
            raise BackendError(f"ONNX model {self.onnx_path} does not match its sidecar "
                               f"{sidecar_path(self.onnx_path)}: outputs {outputs}, sidecar says {expected_outputs}")

    def _zero_state(self, streams: int = 1) -> list[Any]:
        return [self._value(np.zeros(self.sidecar.state_shape(item, streams), np.float32))
                for item in self.sidecar.state]

    def _value(self, array: np.ndarray) -> Any:
        """An OrtValue of `array` on this session's device (on the CPU it keeps and shares `array`)."""
        return self._ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self.device_type, self.device_id)

    def _check_state(self, state: Sequence[Any], streams: int) -> None:
        if len(state) != len(self.sidecar.state):
            raise BackendError(f"ONNX model {self.onnx_path}: a state of {len(state)} tensors, the model has "
                               f"{len(self.sidecar.state)}")
        check_state_streams([value.shape()[0] for value in state], self._rows_per_stream, streams,
                            f"ONNX model {self.onnx_path}")

    def run(self, image: np.ndarray, state: Any | None) -> tuple[StepOutput, Any]:
        """See `Backend.run`; the state is the list of next-state `OrtValue`s."""
        streams = check_image(image, self.input_size, f"ONNX model {self.onnx_path}", self.batch_range)
        if state is None:
            state = self._zero_state(streams)
        else:
            self._check_state(state, streams)
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.sidecar.image_input, np.ascontiguousarray(image))
        for item, value in zip(self.sidecar.state, state, strict=True):
            binding.bind_ortvalue_input(item.input_name, value)
        binding.bind_output(self.sidecar.disparity_output, "cpu")
        if self.sidecar.confidence_output is not None:
            binding.bind_output(self.sidecar.confidence_output, "cpu")
        for item in self.sidecar.state:
            binding.bind_output(item.output_name, self.device_type, self.device_id)
        self.session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        leading = 2 if self.has_confidence else 1
        confidence = outputs[1].numpy() if self.has_confidence else None
        return StepOutput(outputs[0].numpy(), confidence), list(outputs[leading:])

    def split_state(self, state: Any, streams: int) -> list[list[Any]]:
        """See `Backend.split_state`: per-stream lists of `OrtValue`s (copied through host memory)."""
        self._check_state(state, streams)
        arrays = [value.numpy() for value in state]
        return [[self._value(array[stream_rows(streams, self._rows_per_stream, stream)]) for array in arrays]
                for stream in range(streams)]

    def stack_states(self, states: Sequence[Any | None]) -> list[Any]:
        """See `Backend.stack_states`: the list of `OrtValue`s of len(states) streams."""
        if not states:
            raise ValueError("stack_states needs at least one stream")
        for state in states:
            if state is not None:
                self._check_state(state, 1)
        order = stacking_order(len(states), self._rows_per_stream)
        stacked = []
        for index, item in enumerate(self.sidecar.state):
            parts = [np.zeros(item.shape, np.float32) if state is None else state[index].numpy() for state in states]
            stacked.append(self._value(np.concatenate(parts)[order]))
        return stacked
