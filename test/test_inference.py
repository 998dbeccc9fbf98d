"""The streaming DepthEstimator: preprocessing, state carry and resets, depth conversion, bad input."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from siam_depth_core.geometry import FALLBACK_FX_PER_WIDTH, disparity_to_depth
from siam_depth_core.network.checkpoint import CheckpointError, ModelMeta, load_model, save_checkpoint
from siam_depth_core.network.model import run_siamese
from siam_depth_core.runtime.backends import BackendError, StepOutput
from siam_depth_core.runtime.backends.source import (
    CheckpointSource,
    OnnxSource,
    RuntimeOptions,
    untrained_source,
)
from siam_depth_core.runtime.export import export_onnx
from siam_depth_core.runtime.inference import DepthEstimator, preprocess

NET_SIZE = (64, 128)  # (H, W)
CAMERA_SHAPE = (75, 250)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(1)
    meta = ModelMeta(net_width=0.125, height=NET_SIZE[0], width=NET_SIZE[1], baseline_m=0.5)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", meta.build_network(), meta)


@pytest.fixture()
def estimator(tiny_checkpoint: Path) -> DepthEstimator:
    return DepthEstimator(CheckpointSource(tiny_checkpoint), max_gap_s=0.5)


def _camera_image(seed: int = 0, shape: tuple[int, int] = CAMERA_SHAPE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)


class _ConstantDisparity:
    """A backend stand-in that returns the same disparity everywhere (to check the depth formula)."""

    name = "constant"
    has_confidence = False

    def __init__(self, value: np.ndarray, meta: ModelMeta) -> None:
        self.value = value
        self.meta = meta
        self.input_size = value.shape[-2:]

    def run(self, image: np.ndarray, state: object) -> tuple[StepOutput, object]:
        return StepOutput(self.value), state


def test_preprocess_colour_order_and_range() -> None:
    rgb = _camera_image()
    from_rgb = preprocess(rgb, "rgb8", NET_SIZE)
    from_bgr = preprocess(np.ascontiguousarray(rgb[:, :, ::-1]), "bgr8", NET_SIZE)
    from_bgra = preprocess(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA), "bgra8", NET_SIZE)
    assert from_rgb.shape == (1, 3, *NET_SIZE) and from_rgb.dtype == np.float32
    assert 0.0 <= from_rgb.min() and from_rgb.max() <= 1.0
    np.testing.assert_array_equal(from_rgb, from_bgr)
    np.testing.assert_array_equal(from_rgb, from_bgra)
    expected = cv2.resize(rgb, NET_SIZE[::-1], interpolation=cv2.INTER_AREA)[:, :, 0] / 255.0
    np.testing.assert_allclose(from_rgb[0, 0], expected, atol=1e-6)


def test_preprocess_mono_is_replicated() -> None:
    mono = _camera_image()[:, :, 1]
    for image in (mono, mono[:, :, None]):
        network_input = preprocess(image, "mono8", NET_SIZE)
        np.testing.assert_array_equal(network_input[0, 0], network_input[0, 1])
        np.testing.assert_array_equal(network_input[0, 0], network_input[0, 2])
    assert network_input.std() > 0


@pytest.mark.parametrize(("image", "encoding", "message"), [
    (np.zeros((10, 20, 3), np.uint8), "yuv422", "unsupported image encoding"),
    (np.zeros((10, 20, 4), np.uint8), "rgb8", r"shape \(H,W,3\)"),
    (np.zeros((10, 20), np.uint8), "bgr8", r"shape \(H,W,3\)"),
    (np.zeros((0, 20, 3), np.uint8), "rgb8", "empty image"),
    (np.zeros((10, 20, 3), np.float32), "rgb8", "must be uint8"),
    ([[1, 2, 3]], "rgb8", "numpy array"),
])
def test_bad_input_raises_clear_error(estimator: DepthEstimator, image: object, encoding: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        estimator.step(image, 0.0, encoding)  # type: ignore[arg-type]


def test_bad_input_keeps_state(estimator: DepthEstimator) -> None:
    image = _camera_image()
    estimator.step(image, 0.0)
    with pytest.raises(ValueError):
        estimator.step(np.zeros((0, 0, 3), np.uint8), 0.05)
    result = estimator.step(image, 0.1)
    assert result.reset_reason is None and estimator.reset_count == 0


def test_state_carried_across_frames(estimator: DepthEstimator) -> None:
    image = _camera_image()
    first = estimator.step(image, 0.0)
    second = estimator.step(image, 0.1)
    assert second.reset_reason is None
    assert np.abs(second.disparity - first.disparity).max() > 1e-6, "identical frames must differ by the state"
    estimator.reset("test")
    after_reset = estimator.step(image, 0.2)
    assert after_reset.reset_reason == "test" and estimator.reset_count == 1
    np.testing.assert_allclose(after_reset.disparity, first.disparity, atol=1e-6)


@pytest.mark.parametrize(("second_stamp", "second_shape", "reason"), [
    (9.9, CAMERA_SHAPE, "time went backwards"),
    (10.6, CAMERA_SHAPE, "gap of 0.600 s exceeds max_gap_s"),
    (10.1, (80, 250), "image size changed from 250x75 to 250x80"),
])
def test_discontinuity_resets_state(tiny_checkpoint: Path, estimator: DepthEstimator, second_stamp: float,
                                    second_shape: tuple[int, int], reason: str) -> None:
    fresh = DepthEstimator(CheckpointSource(tiny_checkpoint))
    first_image = _camera_image(shape=CAMERA_SHAPE)
    second_image = _camera_image(seed=1, shape=second_shape)
    estimator.step(first_image, 10.0)
    result = estimator.step(second_image, second_stamp)
    assert result.reset_reason is not None and reason in result.reset_reason
    assert estimator.reset_count == 1
    expected = fresh.step(second_image, 0.0)
    np.testing.assert_allclose(result.disparity, expected.disparity, atol=1e-6)
    assert estimator.step(second_image, second_stamp + 0.1).reset_reason is None


def test_output_at_camera_resolution_and_matches_network(tiny_checkpoint: Path, estimator: DepthEstimator) -> None:
    image = _camera_image()
    result = estimator.step(image, 0.0)
    assert result.disparity.shape == CAMERA_SHAPE and result.depth_m.shape == CAMERA_SHAPE
    assert result.disparity.dtype == np.float32 and result.depth_m.dtype == np.float32
    assert set(result.timings) == {"preprocess", "model", "postprocess"}
    net, _ = load_model(tiny_checkpoint)
    with torch.no_grad():
        output, _ = run_siamese(net, torch.from_numpy(preprocess(image, "rgb8", NET_SIZE)))
    network_disparity = output.disp_refined[0][0, 0].numpy()
    expected = cv2.resize(network_disparity, CAMERA_SHAPE[::-1], interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(result.disparity, expected, atol=1e-6)
    # No fx given: the documented KITTI ratio; baseline from the checkpoint (0.5 m).
    fallback = disparity_to_depth(expected, 0.5, FALLBACK_FX_PER_WIDTH * CAMERA_SHAPE[1], CAMERA_SHAPE[1])
    in_range = (fallback >= 0.1) & (fallback <= 80.0)
    np.testing.assert_allclose(result.depth_m[in_range], fallback[in_range], rtol=1e-5)
    assert np.isnan(result.depth_m[~in_range]).all()


def test_confidence_is_the_agreement_of_the_two_left_estimates_at_camera_resolution(
        tiny_checkpoint: Path, estimator: DepthEstimator) -> None:
    from siam_depth_core.network.refine import disparity_confidence

    image = _camera_image(seed=4)
    result = estimator.step(image, 0.0)
    assert estimator.has_confidence
    assert result.confidence is not None and result.confidence.shape == CAMERA_SHAPE
    assert result.confidence.dtype == np.float32
    assert 0.0 <= result.confidence.min() and result.confidence.max() <= 1.0
    net, _ = load_model(tiny_checkpoint)
    with torch.no_grad():
        output, _ = run_siamese(net, torch.from_numpy(preprocess(image, "rgb8", NET_SIZE)))
        network_confidence = disparity_confidence(output.disp_direct[0], output.disp_flipped[0])[0, 0].numpy()
    expected = cv2.resize(network_confidence, CAMERA_SHAPE[::-1], interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(result.confidence, expected, atol=1e-6)
    assert result.confidence.std() > 1e-4, "a random network's two estimates must disagree somewhere"


def test_a_single_pass_has_no_confidence(tmp_path: Path) -> None:
    meta = ModelMeta(net_width=0.125, siamese=False, height=NET_SIZE[0], width=NET_SIZE[1])
    checkpoint = save_checkpoint(tmp_path / "plain.pt", meta.build_network(), meta)
    single = DepthEstimator(CheckpointSource(checkpoint))
    assert not single.has_confidence and single.step(_camera_image(), 0.0).confidence is None
    blended = DepthEstimator(CheckpointSource(checkpoint), RuntimeOptions(post_process=True))
    assert blended.has_confidence and blended.step(_camera_image(), 0.0).confidence is not None


def test_depth_formula_and_range_on_known_disparity(tiny_checkpoint: Path) -> None:
    estimator = DepthEstimator(CheckpointSource(tiny_checkpoint), baseline_m=0.54, min_depth=1.0, max_depth=50.0)
    width = NET_SIZE[1]
    disparity = np.full((1, 1, *NET_SIZE), 0.02, np.float32)
    disparity[..., :, : width // 2] = 0.2    # near: 0.54 * 700 / (0.2 * 700) = 2.7 m
    disparity[..., 0, :] = 0.001             # far: 540 m > max_depth -> NaN
    estimator.backend = _ConstantDisparity(disparity, estimator.meta)
    camera = np.zeros((NET_SIZE[0], 700, 3), np.uint8)  # same height, 700 px wide camera
    result = estimator.step(camera, 0.0, fx_px=700.0)
    np.testing.assert_allclose(result.depth_m[10, 5], 0.54 * 700.0 / (0.2 * 700.0), rtol=1e-6)
    np.testing.assert_allclose(result.depth_m[10, 650], 0.54 * 700.0 / (0.02 * 700.0), rtol=1e-6)
    assert np.isnan(result.depth_m[0]).all()
    with pytest.raises(ValueError, match="fx_px"):
        estimator.step(camera, 0.1, fx_px=-1.0)


def test_missing_and_corrupt_checkpoint(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pt"
    with pytest.raises(CheckpointError, match="not found.*missing.pt"):
        DepthEstimator(CheckpointSource(missing))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt.pt"):
        DepthEstimator(CheckpointSource(corrupt))


def test_no_checkpoint_builds_untrained_network(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="siam_depth_core.runtime.backends.source"):
        estimator = DepthEstimator(untrained_source(), RuntimeOptions(input_size=NET_SIZE))
    assert "randomly initialised" in caplog.text
    assert estimator.meta.net_width == 0.25 and estimator.input_size == NET_SIZE
    result = estimator.step(_camera_image(), 0.0)
    assert np.isfinite(result.disparity).all()


def test_bad_settings_raise() -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        RuntimeOptions(input_size=(100, 128))
    with pytest.raises(ValueError, match="min_depth"):
        DepthEstimator(untrained_source(), min_depth=10.0, max_depth=5.0)
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda' or 'cuda:<index>', got 'gpu'"):
        RuntimeOptions(device="gpu")


def test_num_threads_sets_torch_threads_process_wide(tiny_checkpoint: Path, one_torch_thread: None) -> None:
    DepthEstimator(CheckpointSource(tiny_checkpoint), RuntimeOptions(num_threads=2))
    assert torch.get_num_threads() == 2  # torch.set_num_threads: the whole process
    DepthEstimator(CheckpointSource(tiny_checkpoint))  # 0 = the library default: leaves the setting alone
    assert torch.get_num_threads() == 2
    with pytest.raises(ValueError, match=r"num_threads must be >= 0 .*got -1"):
        RuntimeOptions(num_threads=-1)
    assert torch.get_num_threads() == 2


def test_num_threads_sets_the_onnxruntime_session_threads(tiny_checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (onnx extra)")
    net, meta = load_model(tiny_checkpoint)
    export_onnx(net, meta, NET_SIZE, tmp_path / "tiny.onnx")
    for num_threads in (1, 0):
        estimator = DepthEstimator(OnnxSource(tmp_path / "tiny.onnx"), RuntimeOptions(num_threads=num_threads))
        assert estimator.backend.session.get_session_options().intra_op_num_threads == num_threads


def test_warmup_leaves_a_fresh_stream(tiny_checkpoint: Path) -> None:
    image = _camera_image()
    reference = DepthEstimator(CheckpointSource(tiny_checkpoint)).step(image, 0.0)
    estimator = DepthEstimator(CheckpointSource(tiny_checkpoint))
    estimator.warmup(2)
    first = estimator.step(image, 0.0)
    assert first.reset_reason is None and estimator.reset_count == 0
    np.testing.assert_allclose(first.disparity, reference.disparity, atol=1e-6)
    estimator.warmup(1)
    assert estimator.step(image, 0.1).reset_reason == "warm-up"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without a GPU; this machine has one")
def test_cuda_options_without_gpu_raise_clear_error(tiny_checkpoint: Path) -> None:
    with pytest.raises(BackendError, match="no CUDA GPU"):
        DepthEstimator(CheckpointSource(tiny_checkpoint), RuntimeOptions(device="cuda"))
    with pytest.raises(BackendError, match="need a CUDA device"):
        DepthEstimator(CheckpointSource(tiny_checkpoint), RuntimeOptions(fp16=True))


def test_predict_sequence_starts_from_zero_state_and_warms_it_with_the_earlier_images(tiny_checkpoint: Path) -> None:
    images = [_camera_image(seed) for seed in range(3)]
    streamed = DepthEstimator(CheckpointSource(tiny_checkpoint))
    expected = [streamed.step(image, 0.1 * index) for index, image in enumerate(images)][-1]
    estimator = DepthEstimator(CheckpointSource(tiny_checkpoint))
    estimator.step(_camera_image(9), 0.0)  # a stream in progress is ended, not continued
    warmed = estimator.predict_sequence(images)
    np.testing.assert_allclose(warmed.disparity, expected.disparity, atol=1e-6)
    np.testing.assert_allclose(warmed.depth_m, expected.depth_m, rtol=1e-6, equal_nan=True)
    single = estimator.predict_sequence(images[-1:])
    assert np.abs(single.disparity - warmed.disparity).max() > 1e-6, "the warm-up images must change the state"
    np.testing.assert_allclose(estimator.step(images[0], 5.0).disparity,
                               DepthEstimator(CheckpointSource(tiny_checkpoint)).step(images[0], 0.0).disparity,
                               atol=1e-6)
    with pytest.raises(ValueError, match="at least one image"):
        estimator.predict_sequence([])


def test_post_process_runs_the_flipped_pass_of_a_non_siamese_model_only(tmp_path: Path) -> None:
    meta = ModelMeta(net_width=0.125, siamese=False, height=NET_SIZE[0], width=NET_SIZE[1])
    checkpoint = save_checkpoint(tmp_path / "plain.pt", meta.build_network(), meta)
    image = _camera_image()
    plain = DepthEstimator(CheckpointSource(checkpoint)).step(image, 0.0)
    blended = DepthEstimator(CheckpointSource(checkpoint), RuntimeOptions(post_process=True)).step(image, 0.0)
    assert np.abs(plain.disparity - blended.disparity).max() > 1e-6


@pytest.mark.parametrize(("options", "message"), [
    (RuntimeOptions(fp16=True), r"the onnxruntime backend cannot honour fp16=True"),
    (RuntimeOptions(cuda_graph=True, channels_last=True),
     r"the onnxruntime backend cannot honour channels_last=True, cuda_graph=True \(its options: device, "),
])
def test_onnxruntime_rejects_options_it_cannot_honour(tiny_checkpoint: Path, tmp_path: Path, options: RuntimeOptions,
                                                      message: str) -> None:
    net, meta = load_model(tiny_checkpoint)
    export_onnx(net, meta, NET_SIZE, tmp_path / "tiny.onnx")
    with pytest.raises(BackendError, match=message):
        DepthEstimator(OnnxSource(tmp_path / "tiny.onnx"), options)


@pytest.mark.parametrize(("options", "message"), [
    (RuntimeOptions(num_threads=2), r"the tensorrt backend cannot honour num_threads=2"),
    (RuntimeOptions(device="cpu"), r"runs on the current CUDA device: device must be 'cuda' or 'cuda:0' .*got 'cpu'"),
    (RuntimeOptions(device="cuda:1"), r"got 'cuda:1'"),
])
def test_tensorrt_rejects_options_it_cannot_honour_before_looking_for_a_gpu(tmp_path: Path, options: RuntimeOptions,
                                                                           message: str) -> None:
    from siam_depth_core.runtime.backends.source import EngineSource

    with pytest.raises(BackendError, match=message):
        DepthEstimator(EngineSource(onnx=tmp_path / "model.onnx"), options)
