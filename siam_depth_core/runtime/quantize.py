"""int8 ONNX for CPUs: static QDQ quantisation with ONNX Runtime's tools, calibrated on real frames streamed
with the recurrent state, so that the ConvLSTM activations and state tensors are calibrated as the node
sees them (a network run only from a zero state would calibrate the state ranges at zero).

Weights are quantised per output channel (int8), activations per tensor (uint8, what x86 CPUs run fastest
with int8 weights); the calibration keeps each tensor's range over every calibration frame. The image
input and the state inputs/outputs stay float32, so the int8 model is a drop-in replacement: same graph
inputs and outputs, same sidecar layout (with its own sha256 and a `quantization` record).
"""
from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from siam_depth_core.runtime.backends.sidecar import ModelSidecar, file_sha256, sidecar_path
from siam_depth_core.runtime.inference import preprocess

LOGGER = logging.getLogger(__name__)

#: Operator types quantised by default: the convolutions, which hold nearly all the compute, and the operators
#: that only move data between them (skip concatenation, 2x upsampling, max-pooling, the ConvLSTM gate split,
#: the flip's slice), so that their tensors stay uint8 (a quarter of the bytes) instead of being dequantised
#: before and quantised after each (measured: benchmarks/README.md, "int8 that scales").
DEFAULT_OP_TYPES = ("Conv", "Concat", "Resize", "MaxPool", "Split", "Slice")


@dataclass(frozen=True)
class QuantizationSettings:
    """How to quantise: per-channel weights, the operator types to quantise, nodes kept in float32
    (by name), and the calibration method ('minmax' or 'percentile')."""

    per_channel: bool = True
    op_types: tuple[str, ...] = DEFAULT_OP_TYPES
    nodes_to_exclude: tuple[str, ...] = ()
    calibration: str = "minmax"

    def __post_init__(self) -> None:
        if self.calibration not in ("minmax", "percentile"):
            raise ValueError(f"calibration must be 'minmax' or 'percentile', got {self.calibration!r}")


def calibration_feeds(onnx_path: str | Path, sidecar: ModelSidecar, clips: Sequence[Sequence[np.ndarray]]
                      ) -> Iterator[dict[str, np.ndarray]]:
    """The graph inputs of every calibration step: each clip of (H,W,3) uint8 RGB frames runs from a zero
    state, and each frame's next state (from the float32 model) is the following frame's state input.
    A graph of fixed batch N (`siam-depth-export --batch N`) gets each frame in all N streams; a
    dynamic-batch graph is calibrated at batch 1 (the ranges are per tensor, the same at any batch)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    size = (sidecar.height, sidecar.width)
    streams = 1 if sidecar.dynamic_batch else sidecar.batch
    for clip in clips:
        state = {t.input_name: np.zeros(sidecar.state_shape(t, streams), np.float32) for t in sidecar.state}
        for frame in clip:
            feed = {sidecar.image_input: np.repeat(preprocess(frame, "rgb8", size), streams, axis=0), **state}
            yield feed
            outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed), strict=True))
            state = {t.input_name: outputs[t.output_name] for t in sidecar.state}


def quantize_onnx(fp32_path: str | Path, int8_path: str | Path, clips: Sequence[Sequence[np.ndarray]],
                  settings: QuantizationSettings = QuantizationSettings()) -> ModelSidecar:
    """Write a statically quantised (QDQ) copy of the exported model `fp32_path` to `int8_path`, with its sidecar.

    clips: calibration sequences of camera frames ((H,W,3) uint8 RGB, any size: resized like the node does).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    sidecar = ModelSidecar.read(sidecar_path(fp32_path))
    if not clips or not any(len(c) for c in clips):
        raise ValueError("int8 calibration needs at least one frame")
    feeds = calibration_feeds(fp32_path, sidecar, clips)

    class _Reader(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(feeds, None)

    method = CalibrationMethod.MinMax if settings.calibration == "minmax" else CalibrationMethod.Percentile
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(int8_path), _Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=settings.per_channel, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, op_types_to_quantize=list(settings.op_types),
                        nodes_to_exclude=list(settings.nodes_to_exclude), calibrate_method=method,
                        extra_options={"CalibTensorRangeSymmetric": False})
    frames = sum(len(c) for c in clips)
    quantized = ModelSidecar(**{**sidecar.__dict__, "onnx_sha256": file_sha256(int8_path)})
    quantized.meta = {**sidecar.meta, "extra": {**sidecar.meta.get("extra", {}), "quantization": {
        "format": "QDQ", "weights": "int8 per-channel" if settings.per_channel else "int8 per-tensor",
        "activations": "uint8 per-tensor", "op_types": list(settings.op_types),
        "nodes_excluded": list(settings.nodes_to_exclude), "calibration": settings.calibration,
        "calibration_frames": frames, "float_model_sha256": sidecar.onnx_sha256}}}
    quantized.write(sidecar_path(int8_path))
    LOGGER.info("int8 model %s written (calibrated on %d frames in %d clips)", int8_path, frames, len(clips))
    return quantized


def int8_path(onnx_path: str | Path) -> Path:
    """Where the int8 copy of an exported model goes: `model.onnx` -> `model.int8.onnx`."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(f"{onnx_path.stem}.int8{onnx_path.suffix}")
