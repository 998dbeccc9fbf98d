"""ONNX export with explicit state: graph I/O, sidecar, ONNX Runtime parity with torch on real frames."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

from siam_depth_core.network.checkpoint import ModelMeta, save_checkpoint
from siam_depth_core.network.model import run_siamese
from siam_depth_core.runtime.backends import BackendError, open_backend
from siam_depth_core.runtime.backends.sidecar import ModelSidecar, file_sha256, sidecar_path
from siam_depth_core.runtime.backends.source import CheckpointSource, OnnxSource, RuntimeOptions
from siam_depth_core.runtime.export import DecomposedElu, export_onnx, main, with_decomposed_elu
from siam_depth_core.runtime.inference import DepthEstimator, preprocess

NET_WIDTH = 0.125
PARITY_FRAMES = 5


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(3)
    meta = ModelMeta(net_width=NET_WIDTH, baseline_m=0.54)
    return save_checkpoint(tmp_path_factory.mktemp("export") / "model.pt", meta.build_network(), meta)


@pytest.fixture(scope="module")
def small_onnx(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkpoint exported at 128x64."""
    onnx_path = tmp_path_factory.mktemp("small") / "small.onnx"
    assert main(["--checkpoint", str(checkpoint), "--height", "64", "--width", "128", "--onnx", str(onnx_path)]) == 0
    return onnx_path


def _real_frames(drive: Path, count: int) -> list[np.ndarray]:
    """The first `count` left colour frames of a KITTI drive, rgb8."""
    paths = sorted((drive / "image_02" / "data").glob("*.png"))[:count]
    assert len(paths) == count, f"expected {count} frames in {drive}"
    return [cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB) for path in paths]


@pytest.mark.parametrize(("height", "width"), [(256, 512), (192, 640)])
def test_export_cli_run_and_reload(checkpoint: Path, tmp_path: Path, height: int, width: int) -> None:
    onnx_path = tmp_path / f"model_{width}x{height}.onnx"
    assert main(["--checkpoint", str(checkpoint), "--height", str(height), "--width", str(width),
                 "--onnx", str(onnx_path)]) == 0
    model = onnx.load(str(onnx_path))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 17
    input_names = [item.name for item in model.graph.input]
    output_names = [item.name for item in model.graph.output]
    assert input_names[0] == "image" and output_names[:2] == ["disparity", "confidence"]
    layers = ("convlstm_skip1", "convlstm_skip2", "convlstm_skip3", "convlstm_skip4", "convlstm_skip5",
              "convlstm7a", "convlstm7b")
    assert input_names[1:] == [f"state_in.{layer}.{part}" for layer in layers for part in "hc"]
    assert output_names[2:] == [f"state_out.{layer}.{part}" for layer in layers for part in "hc"]

    sidecar_json = json.loads(sidecar_path(onnx_path).read_text())
    assert (sidecar_json["height"], sidecar_json["width"]) == (height, width)
    assert sidecar_json["meta"]["baseline_m"] == pytest.approx(0.54) and "baseline_m" not in sidecar_json
    assert sidecar_json["checkpoint_sha256"] == file_sha256(checkpoint)
    assert sidecar_json["onnx_sha256"] == file_sha256(onnx_path)  # what the backends check at load
    assert sidecar_json["meta"]["net_width"] == NET_WIDTH
    assert sidecar_json["confidence_output"] == "confidence"
    skip1 = sidecar_json["state"][0]
    assert skip1["shape"] == [2, 4, height, width]  # Siamese pair: batch 2; 32 * 0.125 channels
    assert sidecar_json["state"][-1]["shape"] == [2, 64, height // 32, width // 32]

    estimator = DepthEstimator(OnnxSource(onnx_path))
    assert estimator.input_size == (height, width) and estimator.meta.net_width == NET_WIDTH
    assert estimator.baseline_m == pytest.approx(0.54)
    camera = np.random.default_rng(0).integers(0, 256, (100, 330, 3), dtype=np.uint8)
    first = estimator.step(camera, 0.0)
    second = estimator.step(camera, 0.1)
    assert first.disparity.shape == (100, 330) and np.isfinite(first.disparity).all()
    assert first.confidence is not None and first.confidence.shape == (100, 330)
    assert 0.0 <= first.confidence.min() and first.confidence.max() <= 1.0
    assert np.abs(second.disparity - first.disparity).max() > 1e-6, "the ONNX state must be carried"


def test_onnxruntime_matches_torch_on_real_frames(checkpoint: Path, tmp_path: Path, drive_0009: Path) -> None:
    size = (256, 512)
    onnx_path = tmp_path / "model.onnx"
    assert main(["--checkpoint", str(checkpoint), "--height", "256", "--width", "512", "--onnx", str(onnx_path)]) == 0
    torch_estimator = DepthEstimator(CheckpointSource(checkpoint), RuntimeOptions(input_size=size))
    ort_estimator = DepthEstimator(OnnxSource(onnx_path))
    torch_state = ort_state = None
    previous = None
    for frame in _real_frames(drive_0009, PARITY_FRAMES):
        network_input = preprocess(frame, "rgb8", size)
        torch_output, torch_state = torch_estimator.backend.run(network_input, torch_state)
        ort_output, ort_state = ort_estimator.backend.run(network_input, ort_state)
        assert np.abs(torch_output.disparity - ort_output.disparity).max() < 1e-4
        assert np.abs(torch_output.confidence - ort_output.confidence).max() < 1e-4
        assert torch_output.confidence.std() > 1e-4  # a per-pixel map, not a constant
        if previous is not None:
            assert np.abs(torch_output.disparity - previous).max() > 1e-6
        previous = torch_output.disparity
    for torch_tensor, ort_value in zip([t for layer in torch_state for t in layer], ort_state, strict=True):
        np.testing.assert_allclose(ort_value.numpy(), torch_tensor.numpy(), atol=1e-4)


def test_size_mismatch_names_both_sizes(small_onnx: Path) -> None:
    onnx_path = small_onnx
    backend = open_backend(OnnxSource(onnx_path))
    with pytest.raises(BackendError, match=r"built for input 128x64.*got an image of 160x96"):
        backend.run(np.zeros((1, 3, 96, 160), np.float32), None)
    with pytest.raises(ValueError, match=r"160x96.*128x64"):
        DepthEstimator(OnnxSource(onnx_path), RuntimeOptions(input_size=(96, 160)))


def test_corrupt_or_incomplete_onnx_gives_clear_error(small_onnx: Path, tmp_path: Path) -> None:
    onnx_path = small_onnx
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(onnx_path.read_bytes()[:5000])
    sidecar_path(truncated).write_text(sidecar_path(onnx_path).read_text())
    with pytest.raises(BackendError, match=r"truncated.onnx cannot be loaded"):
        open_backend(OnnxSource(truncated))
    no_sidecar = tmp_path / "no_sidecar.onnx"
    no_sidecar.write_bytes(onnx_path.read_bytes())
    with pytest.raises(BackendError, match=r"sidecar not found: .*no_sidecar.onnx.json"):
        open_backend(OnnxSource(no_sidecar))
    with pytest.raises(BackendError, match=r"not found: .*missing.onnx"):
        open_backend(OnnxSource(tmp_path / "missing.onnx"))
    with pytest.raises(TypeError, match="not a model source"):
        open_backend(tmp_path / "missing.onnx")  # type: ignore[arg-type]


def test_elu_is_exported_as_elementwise_ops_with_the_same_values(tmp_path: Path) -> None:
    values = torch.linspace(-20, 20, 4001)
    torch.testing.assert_close(DecomposedElu()(values), torch.nn.functional.elu(values), atol=1e-6, rtol=1e-6)
    meta = ModelMeta(net_width=NET_WIDTH, recurrent=False, height=64, width=128)
    net = meta.build_network().eval()
    copy = with_decomposed_elu(net)
    assert any(isinstance(m, torch.nn.ELU) for m in net.modules()), "the network itself keeps nn.ELU"
    assert not any(isinstance(m, torch.nn.ELU) for m in copy.modules())
    export_onnx(net, meta, (64, 128), tmp_path / "plain.onnx")
    op_types = {node.op_type for node in onnx.load(tmp_path / "plain.onnx").graph.node}
    assert "Elu" not in op_types and {"Relu", "Exp"} <= op_types


def test_non_recurrent_model_exports_without_state(tmp_path: Path) -> None:
    meta = ModelMeta(net_width=NET_WIDTH, recurrent=False, height=64, width=128)
    net = meta.build_network().eval()
    sidecar = export_onnx(net, meta, (64, 128), tmp_path / "plain.onnx")
    assert sidecar.state == []
    assert ModelSidecar.read(sidecar_path(tmp_path / "plain.onnx")).model_meta().recurrent is False
    backend = open_backend(OnnxSource(tmp_path / "plain.onnx"))
    image = np.random.default_rng(1).random((1, 3, 64, 128), dtype=np.float32)
    output, _ = backend.run(image, None)
    with torch.no_grad():
        expected = run_siamese(net, torch.from_numpy(image))[0].disp_refined[0][:, 0:1].numpy()
    np.testing.assert_allclose(output.disparity, expected, atol=1e-5)


def test_single_pass_model_exports_without_a_confidence_output(tmp_path: Path) -> None:
    meta = ModelMeta(net_width=NET_WIDTH, siamese=False, height=64, width=128)
    sidecar = export_onnx(meta.build_network().eval(), meta, (64, 128), tmp_path / "single.onnx")
    assert sidecar.confidence_output is None
    assert [item.name for item in onnx.load(str(tmp_path / "single.onnx")).graph.output][0:2] == [
        "disparity", "state_out.convlstm_skip1.h"]
    backend = open_backend(OnnxSource(tmp_path / "single.onnx"))
    output, _ = backend.run(np.zeros((1, 3, 64, 128), np.float32), None)
    assert not backend.has_confidence and output.confidence is None and output.disparity.shape == (1, 1, 64, 128)


def test_onnx_whose_outputs_differ_from_its_sidecar_is_refused(small_onnx: Path, tmp_path: Path) -> None:
    claimed = tmp_path / "claimed.onnx"
    claimed.write_bytes(small_onnx.read_bytes())
    fields = json.loads(sidecar_path(small_onnx).read_text())
    sidecar_path(claimed).write_text(json.dumps({**fields, "confidence_output": "certainty"}))
    with pytest.raises(BackendError, match=r"claimed.onnx does not match its sidecar .*outputs \['disparity', "
                       r"'confidence', .*sidecar says \['disparity', 'certainty'"):
        open_backend(OnnxSource(claimed))


def test_cli_reports_missing_checkpoint_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--checkpoint", str(tmp_path / "absent.pt"), "--onnx", str(tmp_path / "out.onnx")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err and not (tmp_path / "out.onnx").exists()


def test_sidecar_of_an_older_export_with_a_top_level_baseline_still_loads(small_onnx: Path, tmp_path: Path) -> None:
    older = tmp_path / "older.onnx"
    older.write_bytes(small_onnx.read_bytes())
    fields = json.loads(sidecar_path(small_onnx).read_text())
    sidecar_path(older).write_text(json.dumps({**fields, "baseline_m": 0.54}))
    assert ModelSidecar.read(sidecar_path(older)).model_meta().baseline_m == pytest.approx(0.54)


def test_single_pass_runs_only_the_direct_branch_in_torch_and_onnx(checkpoint: Path, drive_0009: Path,
                                                                  tmp_path: Path) -> None:
    onnx_path = tmp_path / "single.onnx"
    assert main(["--checkpoint", str(checkpoint), "--height", "64", "--width", "128", "--onnx", str(onnx_path),
                 "--single-pass"]) == 0
    sidecar = ModelSidecar.read(sidecar_path(onnx_path))
    assert sidecar.single_pass and sidecar.confidence_output is None
    assert all(item.shape[0] == 1 for item in sidecar.state)  # the direct stream's state only
    options = RuntimeOptions(single_pass=True, input_size=(64, 128))
    in_torch = DepthEstimator(CheckpointSource(checkpoint), options)
    in_onnx = DepthEstimator(OnnxSource(onnx_path), RuntimeOptions(single_pass=True))
    siamese = DepthEstimator(CheckpointSource(checkpoint), RuntimeOptions(input_size=(64, 128)))
    net = in_torch.backend.net
    state = None
    for index, frame in enumerate(_real_frames(drive_0009, 3)):
        torch_result = in_torch.step(frame, 0.1 * index)
        onnx_result = in_onnx.step(frame, 0.1 * index)
        siamese_result = siamese.step(frame, 0.1 * index)
        with torch.no_grad():
            output, state = run_siamese(net, torch.from_numpy(preprocess(frame, "rgb8", (64, 128))), state,
                                        siamese=False)
        direct = cv2.resize(output.disp_direct[0][0, 0].numpy(), frame.shape[1::-1], interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(torch_result.disparity, direct, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(onnx_result.disparity, torch_result.disparity, rtol=1e-3, atol=1e-5)
        assert torch_result.confidence is None and onnx_result.confidence is None
        assert not np.allclose(siamese_result.disparity, torch_result.disparity)  # the refinement did something
    export_onnx(*_tiny_model(), (64, 128), tmp_path / "siamese.onnx")
    with pytest.raises(BackendError, match="export a single-pass model"):
        DepthEstimator(OnnxSource(tmp_path / "siamese.onnx"), RuntimeOptions(single_pass=True))
    with pytest.raises(ValueError, match="contradict"):
        RuntimeOptions(single_pass=True, post_process=True)


def _tiny_model() -> tuple:
    torch.manual_seed(0)
    meta = ModelMeta(net_width=NET_WIDTH)
    return meta.build_network(), meta


def test_int8_export_loads_in_onnx_runtime_and_stays_close_to_fp32(drive_0009: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # The shipped model (a trained network: a random one has no meaningful activation ranges), its own size.
    shipped = Path(__file__).resolve().parents[1] / "models" / "siam_depth_small.pt"
    onnx_path = tmp_path / "model.onnx"
    assert main(["--checkpoint", str(shipped), "--onnx", str(onnx_path), "--int8",
                 "--calibration-images", str(drive_0009 / "image_02" / "data")]) == 0
    int8 = tmp_path / "model.int8.onnx"
    assert str(int8) in capsys.readouterr().out
    sidecar = ModelSidecar.read(sidecar_path(int8))
    assert sidecar.onnx_sha256 == file_sha256(int8) and sidecar.meta["extra"]["quantization"]["format"] == "QDQ"
    model = onnx.load(str(int8))
    assert any(node.op_type == "QuantizeLinear" for node in model.graph.node)
    # the data-movement operators run on quantised tensors too (QDQ around them, fused to uint8 by ORT)
    from siam_depth_core.runtime.quantize import DEFAULT_OP_TYPES

    assert sidecar.meta["extra"]["quantization"]["op_types"] == list(DEFAULT_OP_TYPES)
    produced_by = {output: node.op_type for node in model.graph.node for output in node.output}
    for op_type in ("Concat", "Resize", "Split"):
        nodes = [node for node in model.graph.node if node.op_type == op_type]
        assert any(produced_by.get(node.input[0]) == "DequantizeLinear" for node in nodes), op_type
    fp32_estimator, int8_estimator = DepthEstimator(OnnxSource(onnx_path)), DepthEstimator(OnnxSource(int8))
    for index, frame in enumerate(_real_frames(drive_0009, 4)):
        fp32, quantized = fp32_estimator.step(frame, 0.1 * index), int8_estimator.step(frame, 0.1 * index)
    # Streamed over 4 frames, the int8 disparity stays within 5 % of fp32 on average (1-3 % measured).
    relative = np.abs(quantized.disparity - fp32.disparity) / fp32.disparity
    assert float(relative.mean()) < 0.05, float(relative.mean())


def test_spin_wait_runs_onnx_runtime_with_the_same_output_and_other_backends_refuse_it(small_onnx: Path,
                                                                                      checkpoint: Path) -> None:
    from siam_depth_core.runtime.backends import BackendError
    from siam_depth_core.runtime.backends.source import CheckpointSource, OnnxSource, RuntimeOptions
    from siam_depth_core.runtime.inference import DepthEstimator

    image = np.random.default_rng(5).integers(0, 256, (64, 128, 3), dtype=np.uint8)
    spinning = DepthEstimator(OnnxSource(small_onnx), RuntimeOptions(num_threads=2, spin_wait=True))
    sleeping = DepthEstimator(OnnxSource(small_onnx), RuntimeOptions(num_threads=2))
    for stamp in (0.0, 0.1):  # the state too
        np.testing.assert_allclose(spinning.step(image, stamp).disparity, sleeping.step(image, stamp).disparity,
                                   rtol=1e-5, atol=1e-7)
    with pytest.raises(BackendError, match="spin_wait"):
        DepthEstimator(CheckpointSource(checkpoint), RuntimeOptions(spin_wait=True))
