"""The OpenVINO backend (issue 29): parity with ONNX Runtime fp32 on real KITTI frames with the state carried,
bf16 and int8 within looser bounds, the refusal of a precision the CPU lacks, the compiled-model cache, and the
wiring (CLI flags, export, node parameters, launch argument).

The tests that run OpenVINO skip with a reason where it is not installed (`pip install .[openvino]`).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from siam_depth_core.data.kitti import load_image
from siam_depth_core.runtime.backends import BackendError, open_backend
from siam_depth_core.runtime.backends.sidecar import ModelSidecar, sidecar_path
from siam_depth_core.runtime.backends.source import (
    PRECISIONS,
    CheckpointSource,
    OnnxSource,
    OpenVinoSource,
    RuntimeOptions,
    source_for_backend,
)
from siam_depth_core.runtime.inference import DepthEstimator, preprocess

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "siam_depth_small.pt"
#: fp32: OpenVINO and ONNX Runtime run the same float32 graph; measured max |difference| of the disparity
#: (a fraction of the width, 0.005-0.3 on these frames) 1.0e-7 over the 7 frames of drive 0023, confidence 7e-6.
FP32_DISPARITY_ATOL = 1e-6
FP32_CONFIDENCE_ATOL = 1e-4
#: bf16 (8-bit mantissa inside the graph, float32 state between frames): measured on the same frames a mean
#: relative disparity difference of 0.0063-0.0068, max |difference| 6.1e-4, confidence max 0.047.
BF16_MEAN_RELATIVE = 0.02
BF16_DISPARITY_ATOL = 2e-3
BF16_CONFIDENCE_ATOL = 0.1
#: int8 QDQ export against the fp32 graph: the bound test_export.py sets for ONNX Runtime's int8 (5 % on average).
INT8_MEAN_RELATIVE = 0.05


def _capabilities_without_bf16(core: object) -> frozenset[str]:
    return frozenset({"FP32", "INT8", "EXPORT_IMPORT"})


@pytest.fixture(scope="module")
def openvino():
    return pytest.importorskip("openvino", reason="openvino not installed: pip install .[openvino] "
                                                  "(the Makefile's EXTRAS install it)")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped model exported at its own size (416x128) by the project's export CLI."""
    if not SHIPPED.is_file():
        pytest.skip(f"shipped model not found: {SHIPPED}")
    from siam_depth_core.runtime.export import main

    onnx_path = tmp_path_factory.mktemp("openvino") / "model.onnx"
    assert main(["--checkpoint", str(SHIPPED), "--onnx", str(onnx_path)]) == 0
    return onnx_path


@pytest.fixture(scope="module")
def frames(drive_0023: Path, exported: Path) -> list[np.ndarray]:
    """The 7 frames of drive 0023 as network inputs of the export's size."""
    size = ModelSidecar.read(sidecar_path(exported)).input_size
    paths = sorted((drive_0023 / "image_02" / "data").glob("*.png"))
    assert len(paths) == 7, paths
    return [preprocess(load_image(path), "rgb8", size) for path in paths]


def _streamed(source: OpenVinoSource | OnnxSource, options: RuntimeOptions, frames: list[np.ndarray]
              ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(disparity, confidence) of every frame, the state carried from frame to frame."""
    backend = open_backend(source, options)
    state = None
    outputs = []
    for image in frames:
        output, state = backend.run(image, state)
        assert output.confidence is not None
        outputs.append((output.disparity, output.confidence))
    return outputs


def test_fp32_matches_onnx_runtime_over_a_stream_of_real_frames(openvino, exported: Path, frames: list[np.ndarray],
                                                                tmp_path: Path) -> None:
    reference = _streamed(OnnxSource(exported), RuntimeOptions(num_threads=1), frames)
    ours = _streamed(OpenVinoSource(exported, tmp_path), RuntimeOptions(num_threads=1, precision="fp32"), frames)
    for (disparity, confidence), (expected_disparity, expected_confidence) in zip(ours, reference, strict=True):
        assert disparity.shape == expected_disparity.shape == (1, 1, 128, 416) and disparity.dtype == np.float32
        np.testing.assert_allclose(disparity, expected_disparity, rtol=0, atol=FP32_DISPARITY_ATOL)
        np.testing.assert_allclose(confidence, expected_confidence, rtol=0, atol=FP32_CONFIDENCE_ATOL)
    # the state matters: the last frame from a zero state differs from the streamed one
    fresh = _streamed(OpenVinoSource(exported, tmp_path), RuntimeOptions(num_threads=1, precision="fp32"), frames[-1:])
    assert np.abs(fresh[0][0] - ours[-1][0]).max() > 100 * FP32_DISPARITY_ATOL


def test_bf16_stays_close_to_onnx_runtime_fp32(openvino, exported: Path, frames: list[np.ndarray],
                                               tmp_path: Path) -> None:
    from siam_depth_core.runtime.backends.openvino_backend import cpu_capabilities

    if "BF16" not in cpu_capabilities(openvino.Core()):
        pytest.skip("this CPU has no native bf16 (OpenVINO's OPTIMIZATION_CAPABILITIES lacks BF16)")
    reference = _streamed(OnnxSource(exported), RuntimeOptions(num_threads=1), frames)
    ours = _streamed(OpenVinoSource(exported, tmp_path), RuntimeOptions(num_threads=1, precision="bf16"), frames)
    for (disparity, confidence), (expected_disparity, expected_confidence) in zip(ours, reference, strict=True):
        relative = np.abs(disparity - expected_disparity) / expected_disparity
        assert float(relative.mean()) < BF16_MEAN_RELATIVE, float(relative.mean())
        np.testing.assert_allclose(disparity, expected_disparity, rtol=0, atol=BF16_DISPARITY_ATOL)
        np.testing.assert_allclose(confidence, expected_confidence, rtol=0, atol=BF16_CONFIDENCE_ATOL)
        assert float(np.abs(disparity - expected_disparity).max()) > 0  # bf16 really ran


def test_int8_export_runs_close_to_fp32(openvino, exported: Path, frames: list[np.ndarray], drive_0009: Path,
                                        tmp_path: Path) -> None:
    from siam_depth_core.runtime.quantize import quantize_onnx

    calibration = [[load_image(path) for path in sorted((drive_0009 / "image_02" / "data").glob("*.png"))[:4]]]
    int8 = tmp_path / "model.int8.onnx"
    quantize_onnx(exported, int8, calibration)
    reference = _streamed(OnnxSource(exported), RuntimeOptions(num_threads=1), frames[:4])
    ours = _streamed(OpenVinoSource(int8, tmp_path), RuntimeOptions(num_threads=1, precision="fp32"), frames[:4])
    relative = np.abs(ours[-1][0] - reference[-1][0]) / reference[-1][0]
    assert float(relative.mean()) < INT8_MEAN_RELATIVE, float(relative.mean())


def test_auto_is_bf16_only_where_the_cpu_has_it_and_bf16_is_refused_elsewhere(
        openvino, exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from siam_depth_core.runtime.backends import openvino_backend

    has_bf16 = "BF16" in openvino_backend.cpu_capabilities(openvino.Core())
    assert open_backend(OpenVinoSource(exported, tmp_path)).precision == ("bf16" if has_bf16 else "fp32")
    monkeypatch.setattr(openvino_backend, "cpu_capabilities", _capabilities_without_bf16)
    with pytest.raises(BackendError, match=r"precision 'bf16' needs a CPU with native BF16.*only EXPORT_IMPORT, "
                                           r"FP32, INT8.*use precision 'fp32' or 'auto'"):
        open_backend(OpenVinoSource(exported, tmp_path), RuntimeOptions(precision="bf16"))
    assert open_backend(OpenVinoSource(exported, tmp_path)).precision == "fp32"


def test_resolve_precision_without_openvino() -> None:
    from siam_depth_core.runtime.backends.openvino_backend import resolve_precision

    assert resolve_precision("auto", frozenset({"FP32", "BF16"})) == "bf16"
    assert resolve_precision("auto", frozenset({"FP32"})) == "fp32"
    assert resolve_precision("fp32", frozenset()) == "fp32"
    with pytest.raises(BackendError, match="bf16"):
        resolve_precision("bf16", frozenset({"FP32", "FP16"}))


def test_compiled_model_is_cached_by_sha256_and_reused(openvino, exported: Path, frames: list[np.ndarray],
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("SIAM_DEPTH_CACHE", str(tmp_path))
    source = OpenVinoSource(exported)
    assert source.cache_folder() == tmp_path / "openvino"
    options = RuntimeOptions(num_threads=1, precision="fp32")
    first = open_backend(source, options)
    sha256 = ModelSidecar.read(sidecar_path(exported)).onnx_sha256
    assert not first.from_cache and first.cache_file is not None and first.cache_file.is_file()
    assert first.cache_file.parent == tmp_path / "openvino"
    assert first.cache_file.name.startswith(f"{sha256}.fp32.ov")
    second = open_backend(source, options)
    assert second.from_cache and second.cache_file == first.cache_file
    # the imported model computes what the compiled one did, state included, at the precision asked for
    state_first = state_second = None
    for image in frames[:2]:
        out_first, state_first = first.run(image, state_first)
        out_second, state_second = second.run(image, state_second)
        np.testing.assert_array_equal(out_first.disparity, out_second.disparity)
    # a damaged cache file is warned about, compiled again and replaced
    first.cache_file.write_bytes(b"not a compiled model")
    with caplog.at_level(logging.WARNING):
        third = open_backend(source, options)
    assert not third.from_cache and "cannot be imported" in caplog.text
    assert open_backend(source, options).from_cache
    # no cache at all
    uncached = open_backend(OpenVinoSource(exported, cache=False), options)
    assert uncached.cache_file is None and not uncached.from_cache


def test_options_the_backend_cannot_honour_are_refused(openvino, exported: Path, tmp_path: Path) -> None:
    for options, message in ((RuntimeOptions(device="cuda"), "runs on the CPU"),
                             (RuntimeOptions(fp16=True), "fp16"), (RuntimeOptions(spin_wait=True), "spin_wait"),
                             (RuntimeOptions(single_pass=True), "single-pass")):
        with pytest.raises(BackendError, match=message):
            open_backend(OpenVinoSource(exported, tmp_path), options)
    # and the other backends refuse a precision they do not have
    with pytest.raises(BackendError, match="precision='bf16'"):
        open_backend(OnnxSource(exported), RuntimeOptions(precision="bf16"))
    with pytest.raises(BackendError, match="precision='fp32'"):
        open_backend(CheckpointSource(SHIPPED), RuntimeOptions(precision="fp32"))
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16"):
        RuntimeOptions(precision="fp16")


def test_missing_openvino_gives_a_clear_error(exported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    with pytest.raises(BackendError, match=r"needs the openvino package \(pip install openvino"):
        open_backend(OpenVinoSource(exported))


def test_damaged_onnx_is_refused_by_its_sha256(openvino, exported: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.onnx"
    data = bytearray(exported.read_bytes())
    data[-100] ^= 0xFF
    damaged.write_bytes(bytes(data))
    sidecar_path(damaged).write_text(sidecar_path(exported).read_text())
    with pytest.raises(BackendError, match="damaged or replaced"):
        open_backend(OpenVinoSource(damaged, tmp_path))


def test_estimator_cli_flags_and_export_precompile(openvino, exported: Path, drive_0023: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from siam_depth_core.runtime.export import main as export_main
    from siam_depth_core.runtime.model_arguments import add_model_arguments, model_source, runtime_options

    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    args = parser.parse_args(["--onnx", str(exported), "--openvino", "--precision", "fp32", "--num-threads", "1"])
    assert model_source(args, "test") == OpenVinoSource(exported)
    assert runtime_options(args) == RuntimeOptions(num_threads=1, precision="fp32")
    with pytest.raises(ValueError, match="--openvino runs an exported ONNX model"):
        model_source(parser.parse_args(["--openvino"]), "test")
    assert isinstance(model_source(parser.parse_args(["--onnx", str(exported)]), "test"), OnnxSource)

    monkeypatch.setenv("SIAM_DEPTH_CACHE", str(tmp_path / "cache"))
    onnx_path = tmp_path / "exported.onnx"
    assert export_main(["--checkpoint", str(SHIPPED), "--onnx", str(onnx_path), "--openvino",
                        "--precision", "fp32"]) == 0
    assert "compiled into" in capsys.readouterr().out
    sha256 = ModelSidecar.read(sidecar_path(onnx_path)).onnx_sha256
    assert len(list((tmp_path / "cache" / "openvino").glob(f"{sha256}.fp32.ov*.blob"))) == 1
    estimator = DepthEstimator(OpenVinoSource(onnx_path), RuntimeOptions(precision="fp32"))
    assert estimator.backend.from_cache  # type: ignore[attr-defined]
    image = load_image(sorted((drive_0023 / "image_02" / "data").glob("*.png"))[0])
    result = estimator.step(image, 0.0)
    assert result.disparity.shape == image.shape[:2] and np.isfinite(result.disparity).all()


def test_backend_name_and_source_for_the_node() -> None:
    assert source_for_backend("openvino", onnx="/m.int8.onnx") == OpenVinoSource(Path("/m.int8.onnx"))
    with pytest.raises(ValueError, match="the openvino backend needs an ONNX file"):
        source_for_backend("openvino")


def test_node_parameters_and_launch_argument() -> None:
    pytest.importorskip("rclpy", reason="rclpy not installed (ROS extra)")
    from siam_depth_ros.launch_support import PRECISIONS as LAUNCH_PRECISIONS
    from siam_depth_ros.launch_support import parameter_overrides
    from siam_depth_ros.parameters import MODEL_PARAMETERS, PARAMETER_DOCS, NodeSettings, settings_with

    assert LAUNCH_PRECISIONS == PRECISIONS
    assert parameter_overrides({"backend": "openvino", "precision": " bf16 "}) == {"backend": "openvino",
                                                                                   "precision": "bf16"}
    with pytest.raises(ValueError, match="precision:='fp16' must be one of auto, fp32, bf16"):
        parameter_overrides({"precision": "fp16"})
    settings = settings_with(NodeSettings(), {"backend": "openvino", "onnx": "/m.onnx", "precision": "bf16"})
    assert settings.model_source() == OpenVinoSource(Path("/m.onnx")) and settings.device_name == "cpu"
    assert settings.runtime_options() == RuntimeOptions(num_threads=1, precision="bf16")
    assert "precision" in MODEL_PARAMETERS and "openvino" in PARAMETER_DOCS["backend"]
    with pytest.raises(ValueError, match="precision must be one of"):
        settings_with(NodeSettings(), {"precision": "int8"})


def test_model_latency_times_openvino_beside_onnx_runtime(openvino, tmp_path: Path) -> None:
    import json

    from benchmarks.model_latency import main as latency_main

    report = tmp_path / "latency.json"
    assert latency_main(["--backends", "onnxruntime,openvino_fp32", "--widths", "0.125", "--sizes", "128x64",
                         "--threads", "1", "--no-ablation", "--frames", "2", "--rounds", "1", "--warmup", "0",
                         "--json", str(report)]) == 0
    content = json.loads(report.read_text())
    rows = {(row["backend"], row["model"], row["images"]) for row in content["rows"]}
    assert ("openvino_fp32", "ours", 1) in rows and ("openvino_fp32", "monodepth2 ResNet-18", 2) in rows
    names = [ratio["name"] for ratio in content["ratios"]]
    assert "openvino_fp32 (fp32) vs onnxruntime fp32 siamese, 1 thr" in names
    assert "openvino_fp32 siamese vs reference (2 img), 1 thr" in names
    assert content["machine"]["openvino_capabilities"]


def test_backend_auto_runs_the_shipped_model_on_the_fastest_cpu_path(openvino, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("rclpy", reason="rclpy not installed (ROS extra)")
    from siam_depth_core.runtime import fastest
    from siam_depth_core.runtime.backends import openvino_backend
    from siam_depth_ros.parameters import NodeSettings, settings_with

    if not SHIPPED.is_file():
        pytest.skip(f"shipped model not found: {SHIPPED}")
    monkeypatch.setenv("SIAM_DEPTH_CACHE", str(tmp_path))
    assert NodeSettings().backend == "auto"
    has_bf16 = "BF16" in openvino_backend.cpu_capabilities(openvino.Core())
    path = NodeSettings().auto_path()
    assert path is not None and (path.backend, path.precision) == ("openvino", "bf16" if has_bf16 else "fp32")
    source = NodeSettings().model_source()  # exports the shipped model once, into the cache
    assert isinstance(source, OpenVinoSource) and source.path.parent.parent == tmp_path / "exports"
    assert not source.path.name.endswith(".int8.onnx")  # the int8 exports miss the accuracy rule
    modified = source.path.stat().st_mtime_ns
    assert NodeSettings().model_source() == source and source.path.stat().st_mtime_ns == modified  # cached
    # a network size and the single pass are exported for (the colcon test runs the installed config at 192x64)
    from siam_depth_ros.model_loader import build_estimator

    sized = settings_with(NodeSettings(), {"network_height": 64, "network_width": 192, "single_pass": True})
    estimator = build_estimator(sized)
    assert estimator.input_size == (64, 192) and not estimator.has_confidence
    assert sized.model_source().path.name == "siam_depth_small.single.192x64.onnx"  # type: ignore[union-attr]
    # a checkpoint given, or a GPU, runs torch as before; no bf16 units: fp32
    assert settings_with(NodeSettings(), {"checkpoint": str(SHIPPED)}).model_source() == CheckpointSource(SHIPPED)
    assert settings_with(NodeSettings(), {"device": "cuda"}).auto_path() is None
    monkeypatch.setattr(openvino_backend, "cpu_capabilities", _capabilities_without_bf16)
    assert fastest.fastest_cpu_path().precision == "fp32"
    assert "no bf16 units" in fastest.fastest_cpu_path().why


def test_node_started_with_its_defaults_says_which_path_it_runs(openvino, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("rclpy", reason="rclpy not installed (ROS extra)")
    from ros_helpers import ros_test_node, unique_namespace

    from siam_depth_ros.harness import DepthNodeProcess

    if not SHIPPED.is_file():
        pytest.skip(f"shipped model not found: {SHIPPED}")
    monkeypatch.setenv("SIAM_DEPTH_CACHE", str(tmp_path))  # the node process inherits it
    with ros_test_node("openvino_auto_test") as (node, _), \
            DepthNodeProcess(tmp_path / "node.log", unique_namespace(), {}) as process:
        process.wait_until_ready(node, timeout_s=240)
        log = process.log()
    assert "ready: openvino backend on cpu (CPU threads: 1), " in log, log
    assert "chosen by backend auto: the fastest CPU path that keeps the accuracy rule here" in log
    assert len(list((tmp_path / "openvino").glob("*.blob"))) == 1
