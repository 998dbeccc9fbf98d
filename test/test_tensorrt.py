"""TensorRT: the engine build from the exported ONNX (with tensorrt-rtx, which builds without a GPU)
and, where a GPU and TensorRT are present, runtime parity with torch on real frames."""
from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from siam_depth_core.network.checkpoint import ModelMeta, save_checkpoint
from siam_depth_core.runtime.backends import BackendError
from siam_depth_core.runtime.backends.sidecar import ModelSidecar, sidecar_path
from siam_depth_core.runtime.backends.source import CheckpointSource, EngineSource, RuntimeOptions
from siam_depth_core.runtime.backends.tensorrt_backend import (
    batch_profile,
    build_serialized_engine,
    convlstm_cell_layers,
)
from siam_depth_core.runtime.export import export_checkpoint
from siam_depth_core.runtime.inference import DepthEstimator, preprocess

PARITY_FRAMES = 5
HAS_GPU = torch.cuda.is_available()
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
HAS_TENSORRT_RTX = importlib.util.find_spec("tensorrt_rtx") is not None


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(checkpoint, onnx) of a width-0.125 network at 128x64."""
    folder = tmp_path_factory.mktemp("trt")
    torch.manual_seed(5)
    meta = ModelMeta(net_width=0.125, height=64, width=128)
    checkpoint = save_checkpoint(folder / "model.pt", meta.build_network(), meta)
    export_checkpoint(checkpoint, folder / "model.onnx")
    return checkpoint, folder / "model.onnx"


@pytest.fixture(scope="module")
def tensorrt_rtx():
    if not HAS_TENSORRT_RTX:
        pytest.skip("tensorrt_rtx is not installed (pip install tensorrt-rtx)")
    # Creating a builder must not crash this machine; find out in a child process first.
    probe = subprocess.run([sys.executable, "-c", "import tensorrt_rtx as t; t.Builder(t.Logger(t.Logger.ERROR))"],
                           capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        pytest.skip(f"creating a tensorrt_rtx builder fails here (exit {probe.returncode}): {probe.stderr[-300:]}")
    import tensorrt_rtx
    return tensorrt_rtx


def test_rtx_parses_exported_onnx_and_builds_engine(tensorrt_rtx, exported: tuple[Path, Path]) -> None:
    _, onnx_path = exported
    engine = build_serialized_engine(tensorrt_rtx, onnx_path)  # (timing caches are no-ops in RTX)
    assert len(engine) > 100_000  # the weights alone are ~1.6 MB at width 0.125
    # The parser saw every state tensor as a network input and output.
    logger = tensorrt_rtx.Logger(tensorrt_rtx.Logger.ERROR)
    network = tensorrt_rtx.Builder(logger).create_network(0)
    parser = tensorrt_rtx.OnnxParser(network, logger)
    assert parser.parse(onnx_path.read_bytes()) and parser.num_errors == 0
    state_count = len(json.loads(sidecar_path(onnx_path).read_text())["state"])
    assert network.num_inputs == 1 + state_count and network.num_outputs == 2 + state_count
    assert [network.get_output(i).name for i in range(3)] == ["disparity", "confidence", "state_out.convlstm_skip1.h"]


def test_rtx_builds_dynamic_batch_onnx_with_a_profile(tensorrt_rtx, exported: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    """A --dynamic-batch export (issue 28) parses with a dynamic batch axis on the image and every state tensor,
    does not build without an optimisation profile, and builds with ours: 1..N streams (min 1, opt N, max N)."""
    onnx_path = tmp_path / "dynamic.onnx"
    export_checkpoint(exported[0], onnx_path, batch=4, dynamic_batch=True)
    sidecar = ModelSidecar.read(sidecar_path(onnx_path))
    profile = batch_profile(sidecar, 4)
    assert profile["image"] == ([1, 3, 64, 128], [4, 3, 64, 128], [4, 3, 64, 128])
    assert set(profile) == {"image", *[item.input_name for item in sidecar.state]}
    assert all((low[0], opt[0], high[0]) == (2, 8, 8) for name, (low, opt, high) in profile.items() if name != "image")
    logger = tensorrt_rtx.Logger(tensorrt_rtx.Logger.INTERNAL_ERROR)
    builder = tensorrt_rtx.Builder(logger)
    network = builder.create_network(0)
    assert tensorrt_rtx.OnnxParser(network, logger).parse(onnx_path.read_bytes())
    assert all(network.get_input(i).shape[0] == -1 for i in range(network.num_inputs))
    assert all(network.get_output(i).shape[0] == -1 for i in range(network.num_outputs))
    assert builder.build_serialized_network(network, builder.create_builder_config()) is None  # needs a profile
    assert len(build_serialized_engine(tensorrt_rtx, onnx_path)) > 100_000  # profile 1..4, from the sidecar
    assert len(build_serialized_engine(tensorrt_rtx, onnx_path, max_batch=2)) > 100_000
    with pytest.raises(BackendError, match="max_batch must be a positive number"):
        build_serialized_engine(tensorrt_rtx, onnx_path, max_batch=0)


def test_rtx_reports_corrupt_onnx(tensorrt_rtx, exported: tuple[Path, Path], tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(exported[1].read_bytes()[:4000])
    with pytest.raises(BackendError, match=r"cannot parse ONNX model .*truncated.onnx"):
        build_serialized_engine(tensorrt_rtx, truncated)
    with pytest.raises(BackendError, match="no FP16 builder flag"):
        build_serialized_engine(tensorrt_rtx, exported[1], fp16=True)


def test_fp16_keeps_every_state_producing_layer_fp32(tensorrt_rtx, exported: tuple[Path, Path]) -> None:
    logger = tensorrt_rtx.Logger(tensorrt_rtx.Logger.ERROR)
    network = tensorrt_rtx.Builder(logger).create_network(0)
    assert tensorrt_rtx.OnnxParser(network, logger).parse(exported[1].read_bytes())
    selected = convlstm_cell_layers(tensorrt_rtx, network)
    produced = {layer.get_output(i).name for layer in selected for i in range(layer.num_outputs)}
    state_outputs = [network.get_output(i).name for i in range(2, network.num_outputs)]
    assert set(state_outputs) <= produced, "every next h/c must come from an fp32-pinned layer"
    assert all(layer.type != tensorrt_rtx.LayerType.CONVOLUTION for layer in selected)
    assert all("convlstm" in layer.name for layer in selected)


@pytest.mark.skipif(HAS_GPU, reason="checks the error raised without a GPU; this machine has one")
def test_tensorrt_backend_without_gpu_names_the_missing_gpu(exported: tuple[Path, Path]) -> None:
    with pytest.raises(BackendError, match="TensorRT needs an NVIDIA GPU"):
        DepthEstimator(EngineSource(onnx=exported[1]))


needs_tensorrt_runtime = pytest.mark.skipif(
    not (HAS_GPU and HAS_TENSORRT),
    reason=f"TensorRT runtime tests need a CUDA GPU (present: {HAS_GPU}) and the tensorrt package "
           f"(present: {HAS_TENSORRT})")


@needs_tensorrt_runtime
@pytest.mark.parametrize(("fp16", "tolerance"), [(False, 1e-3), (True, 1e-2)])
def test_tensorrt_matches_torch_on_real_frames(exported: tuple[Path, Path], drive_0009: Path, tmp_path: Path,
                                               fp16: bool, tolerance: float) -> None:
    checkpoint, onnx_path = exported
    torch_estimator = DepthEstimator(CheckpointSource(checkpoint), RuntimeOptions(input_size=(64, 128)))
    trt_estimator = DepthEstimator(EngineSource(tmp_path / "model.engine", onnx_path), RuntimeOptions(fp16=fp16))
    torch_state = trt_state = None
    for path in sorted((drive_0009 / "image_02" / "data").glob("*.png"))[:PARITY_FRAMES]:
        network_input = preprocess(cv2.imread(str(path)), "bgr8", (64, 128))
        torch_output, torch_state = torch_estimator.backend.run(network_input, torch_state)
        trt_output, trt_state = trt_estimator.backend.run(network_input, trt_state)
        assert np.abs(torch_output.disparity - trt_output.disparity).max() < tolerance
        assert np.abs(torch_output.confidence - trt_output.confidence).max() < tolerance


@needs_tensorrt_runtime
def test_tensorrt_engine_rebuilt_when_stale_and_corrupt_engine_rejected(
        exported: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _, onnx_path = exported
    engine_path = tmp_path / "model.engine"
    DepthEstimator(EngineSource(engine_path, onnx_path))
    engine_sidecar = json.loads(sidecar_path(engine_path).read_text())
    engine_sidecar["tensorrt"]["version"] = "9.0.0"
    sidecar_path(engine_path).write_text(json.dumps(engine_sidecar))
    with caplog.at_level(logging.WARNING):
        DepthEstimator(EngineSource(engine_path, onnx_path))
    assert "rebuilding TensorRT engine" in caplog.text and "'9.0.0'" in caplog.text
    engine_path.write_bytes(engine_path.read_bytes()[:1000])
    with pytest.raises(BackendError, match=r"model.engine cannot be loaded"):
        DepthEstimator(EngineSource(engine_path))
