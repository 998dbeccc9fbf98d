"""Several streams in one backend call (issue 28, item 3): a batch-N step equals N single-stream steps, the state
stays per stream (split / stacked in any order), the export and its sidecar record the batch, and
`DepthEstimator.step_streams` keeps a state and resets per named stream.

Tolerances, over 3 frames with the state carried, two streams of different images: torch fp32 <= 1e-6 (bit
identical on the CPUs measured), ONNX Runtime and OpenVINO fp32 <= 1e-5 against their own batch-1 step
(bit identical measured), and ONNX Runtime's batched step against torch's single step within the 1e-4 that
test_export.py allows between the two runtimes.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from siam_depth_core.network.checkpoint import ModelMeta, save_checkpoint
from siam_depth_core.runtime.backends import Backend, BackendError, StepOutput, open_backend
from siam_depth_core.runtime.backends.sidecar import ModelSidecar, sidecar_path
from siam_depth_core.runtime.backends.source import (
    CheckpointSource,
    OnnxSource,
    OpenVinoSource,
    RuntimeOptions,
)
from siam_depth_core.runtime.backends.streams import ANY_BATCH, BatchRange, stacking_order, stream_rows
from siam_depth_core.runtime.export import export_checkpoint, main
from siam_depth_core.runtime.inference import DepthEstimator, StreamFrame

SIZE = (64, 128)
FRAMES = 3
TORCH_TOLERANCE = 1e-6
EXPORTED_TOLERANCE = 1e-5  # ONNX Runtime / OpenVINO fp32, batch N against batch 1 of the same runtime
CROSS_RUNTIME_TOLERANCE = 1e-4  # ONNX Runtime against torch (test_export.py)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(11)
    meta = ModelMeta(net_width=0.125, height=SIZE[0], width=SIZE[1])
    return save_checkpoint(tmp_path_factory.mktemp("batch") / "model.pt", meta.build_network(), meta)


@pytest.fixture(scope="module")
def dynamic_onnx(checkpoint: Path) -> Path:
    """The checkpoint exported with a dynamic batch axis, optimised for up to 4 streams, through the CLI."""
    onnx_path = checkpoint.with_name("dynamic.onnx")
    assert main(["--checkpoint", str(checkpoint), "--onnx", str(onnx_path), "--batch", "4", "--dynamic-batch"]) == 0
    return onnx_path


@pytest.fixture(scope="module")
def batch2_onnx(checkpoint: Path) -> Path:
    onnx_path = checkpoint.with_name("batch2.onnx")
    export_checkpoint(checkpoint, onnx_path, batch=2)
    return onnx_path


@pytest.fixture(scope="module")
def batch1_onnx(checkpoint: Path) -> Path:
    onnx_path = checkpoint.with_name("batch1.onnx")
    export_checkpoint(checkpoint, onnx_path)
    return onnx_path


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """(FRAMES, 3 streams, 3, H, W): a different image for every stream and frame."""
    return np.random.default_rng(28).random((FRAMES, 3, 3, *SIZE), dtype=np.float32)


def _torch(checkpoint: Path) -> Backend:
    return open_backend(CheckpointSource(checkpoint))


def _openvino(onnx_path: Path) -> Backend:
    pytest.importorskip("openvino", reason="openvino not installed: pip install .[openvino]")
    return open_backend(OpenVinoSource(onnx_path, cache=False), RuntimeOptions(precision="fp32"))


def _single_streams(backend: Backend, images: np.ndarray, streams: int) -> list[list[StepOutput]]:
    """Each of the first `streams` streams run alone (batch 1) over the frames, its state carried."""
    outputs = []
    for stream in range(streams):
        state, own = None, []
        for frame in images[:, stream:stream + 1]:
            output, state = backend.run(np.ascontiguousarray(frame), state)
            own.append(output)
        outputs.append(own)
    return outputs


def _batched(backend: Backend, images: np.ndarray, streams: int) -> list[StepOutput]:
    state, outputs = None, []
    for frame in images[:, :streams]:
        output, state = backend.run(np.ascontiguousarray(frame), state)
        outputs.append(output)
    return outputs


def _max_difference(batched: list[StepOutput], single: list[list[StepOutput]]) -> float:
    worst = 0.0
    for frame, output in enumerate(batched):
        assert output.disparity.shape == (len(single), 1, *SIZE)
        assert output.confidence is not None and output.confidence.shape == output.disparity.shape
        for stream, own in enumerate(single):
            reference = own[frame]
            assert reference.confidence is not None
            worst = max(worst, float(np.abs(output.disparity[stream:stream + 1] - reference.disparity).max()),
                        float(np.abs(output.confidence[stream:stream + 1] - reference.confidence).max()))
    return worst


def test_stream_rows_and_stacking_order_invert_each_other() -> None:
    assert stream_rows(3, 2, 1) == [1, 4] and stream_rows(1, 2, 0) == [0, 1]
    for streams, rows in [(1, 1), (3, 1), (2, 2), (4, 2)]:
        order = stacking_order(streams, rows)
        batched = np.arange(streams * rows)[order]  # stream-major concatenation -> pass-major layout
        for stream in range(streams):
            assert list(batched[stream_rows(streams, rows, stream)]) == [stream * rows + r for r in range(rows)]
    assert 5 in ANY_BATCH and 0 not in ANY_BATCH and 2 in BatchRange(2, 2) and 1 not in BatchRange(2, 2)
    assert str(BatchRange(2, 2)) == "2" and str(ANY_BATCH) == "1..any" and BatchRange(1, 4).chunk(6) == 4
    with pytest.raises(ValueError, match="not a batch range"):
        BatchRange(3, 2)


def test_torch_batch_equals_single_streams(checkpoint: Path, images: np.ndarray) -> None:
    backend = _torch(checkpoint)
    assert backend.batch_range == ANY_BATCH
    for streams in (2, 3):
        assert _max_difference(_batched(backend, images, streams),
                               _single_streams(backend, images, streams)) <= TORCH_TOLERANCE


def test_onnxruntime_dynamic_batch_equals_single_streams(checkpoint: Path, dynamic_onnx: Path,
                                                         batch1_onnx: Path, images: np.ndarray) -> None:
    backend = open_backend(OnnxSource(dynamic_onnx))
    assert backend.batch_range == ANY_BATCH
    batched = _batched(backend, images, 2)
    assert _max_difference(batched, _single_streams(backend, images, 2)) <= EXPORTED_TOLERANCE
    # ... and the batch-1 export as it always was, and torch, give the same streams
    assert _max_difference(batched, _single_streams(open_backend(OnnxSource(batch1_onnx)), images, 2)
                           ) <= EXPORTED_TOLERANCE
    assert _max_difference(batched, _single_streams(_torch(checkpoint), images, 2)) <= CROSS_RUNTIME_TOLERANCE


def test_onnxruntime_fixed_batch_export(batch2_onnx: Path, batch1_onnx: Path, images: np.ndarray) -> None:
    backend = open_backend(OnnxSource(batch2_onnx))
    assert backend.batch_range == BatchRange(2, 2)
    assert _max_difference(_batched(backend, images, 2), _single_streams(open_backend(OnnxSource(batch1_onnx)),
                                                                           images, 2)) <= EXPORTED_TOLERANCE
    with pytest.raises(BackendError, match="takes a batch of 2 stream"):
        backend.run(np.ascontiguousarray(images[0, :1]), None)


def test_openvino_dynamic_batch_equals_single_streams(dynamic_onnx: Path, images: np.ndarray) -> None:
    backend = _openvino(dynamic_onnx)
    assert backend.batch_range == ANY_BATCH
    assert _max_difference(_batched(backend, images, 2), _single_streams(backend, images, 2)) <= EXPORTED_TOLERANCE


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime", "openvino"])
def test_split_state_and_restack_in_any_order(runtime: str, checkpoint: Path, dynamic_onnx: Path,
                                              images: np.ndarray) -> None:
    """Frames 0-1 batched for 3 streams; the state split, then frame 2 run (a) batched with the streams in
    another order, (b) per stream at batch 1 from its split state: both give the unsplit batch's outputs."""
    backend = {"torch": lambda: _torch(checkpoint), "onnxruntime": lambda: open_backend(OnnxSource(dynamic_onnx)),
               "openvino": lambda: _openvino(dynamic_onnx)}[runtime]()
    tolerance = TORCH_TOLERANCE if runtime == "torch" else EXPORTED_TOLERANCE
    state = None
    for frame in images[:2]:
        _, state = backend.run(np.ascontiguousarray(frame), state)
    per_stream = backend.split_state(state, 3)
    expected, _ = backend.run(np.ascontiguousarray(images[2]), state)
    order = [2, 0, 1]
    reordered, reordered_state = backend.run(np.ascontiguousarray(images[2][order]),
                                             backend.stack_states([per_stream[i] for i in order]))
    assert np.abs(reordered.disparity - expected.disparity[order]).max() <= tolerance
    for stream in range(3):
        alone, _ = backend.run(np.ascontiguousarray(images[2][stream:stream + 1]), per_stream[stream])
        assert np.abs(alone.disparity - expected.disparity[stream:stream + 1]).max() <= tolerance
    # A stream without a state stacks as zeros: the same as its first frame alone.
    fresh, _ = backend.run(np.ascontiguousarray(images[0][:2]), backend.stack_states([per_stream[0], None]))
    first, _ = backend.run(np.ascontiguousarray(images[0][1:2]), None)
    assert np.abs(fresh.disparity[1:] - first.disparity).max() <= tolerance
    assert len(backend.split_state(reordered_state, 3)) == 3


def test_a_state_for_other_streams_is_refused(checkpoint: Path, dynamic_onnx: Path, images: np.ndarray) -> None:
    for backend in (_torch(checkpoint), open_backend(OnnxSource(dynamic_onnx))):
        _, state = backend.run(np.ascontiguousarray(images[0, :2]), None)
        with pytest.raises(BackendError, match=r"the state holds 2 stream\(s\) but the image 1"):
            backend.run(np.ascontiguousarray(images[1, :1]), state)
        with pytest.raises(BackendError, match="holds 2 stream"):
            backend.stack_states([state])
        with pytest.raises(ValueError, match="at least one stream"):
            backend.stack_states([])


def test_stream_outputs_do_not_depend_on_the_other_streams(checkpoint: Path) -> None:
    """On torch, camera A's depth is bit-identical whether camera B is in the batch, absent, or streams other
    images (no state cross-talk), through DepthEstimator.step_streams."""
    rng = np.random.default_rng(5)
    camera_a = [rng.integers(0, 256, (48, 160, 3), dtype=np.uint8) for _ in range(FRAMES)]
    camera_b = [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(FRAMES)]
    camera_c = [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(FRAMES)]

    def run(companion: list[np.ndarray] | None) -> list[np.ndarray]:
        estimator = DepthEstimator(CheckpointSource(checkpoint))
        depths = []
        for frame in range(FRAMES):
            frames = [StreamFrame("a", camera_a[frame], 0.1 * frame, fx_px=200.0)]
            if companion is not None:
                frames.append(StreamFrame("b", companion[frame], 0.1 * frame, fx_px=150.0))
            results = estimator.step_streams(frames)
            assert len(results) == len(frames) and results[0].depth_m.shape == (48, 160)
            depths.append(results[0].depth_m)
        return depths

    alone, with_b, with_c = run(None), run(camera_b), run(camera_c)
    for frame in range(FRAMES):
        assert np.array_equal(alone[frame], with_b[frame], equal_nan=True)
        assert np.array_equal(alone[frame], with_c[frame], equal_nan=True)


@pytest.mark.parametrize("model", ["torch", "dynamic", "batch2"])
def test_step_streams_equals_one_estimator_per_stream(model: str, checkpoint: Path, dynamic_onnx: Path,
                                                      batch2_onnx: Path) -> None:
    """Three cameras of different sizes through step_streams, against one single-stream estimator each (the
    batch-2 export runs them as 2 + 1 padded with a blank stream)."""
    source = {"torch": CheckpointSource(checkpoint), "dynamic": OnnxSource(dynamic_onnx),
              "batch2": OnnxSource(batch2_onnx)}[model]
    reference_source = CheckpointSource(checkpoint) if model == "torch" else OnnxSource(dynamic_onnx)
    rng = np.random.default_rng(7)
    shapes = {"front": (48, 160), "left": (64, 128), "rear": (96, 96)}
    estimator = DepthEstimator(source)
    estimator.warmup(frames=1)
    singles = {name: DepthEstimator(reference_source) for name in shapes}
    for frame in range(FRAMES):
        camera = {name: rng.integers(0, 256, (*shape, 3), dtype=np.uint8) for name, shape in shapes.items()}
        results = estimator.step_streams([StreamFrame(name, image, 0.1 * frame, "rgb8", 100.0 + index)
                                          for index, (name, image) in enumerate(camera.items())])
        for index, (name, result) in enumerate(zip(shapes, results, strict=True)):
            expected = singles[name].step(camera[name], 0.1 * frame, "rgb8", 100.0 + index)
            assert result.disparity.shape == shapes[name] and result.stamp == expected.stamp
            assert np.abs(result.disparity - expected.disparity).max() <= EXPORTED_TOLERANCE
            assert result.confidence is not None and expected.confidence is not None
            assert np.abs(result.confidence - expected.confidence).max() <= EXPORTED_TOLERANCE
            assert set(result.timings) == {"preprocess", "model", "postprocess"}
    assert estimator.streams == list(shapes)


def test_step_streams_resets_per_stream(dynamic_onnx: Path) -> None:
    estimator = DepthEstimator(OnnxSource(dynamic_onnx), max_gap_s=0.5)
    image = np.full((64, 128, 3), 90, np.uint8)
    first = estimator.step_streams([StreamFrame("a", image, 1.0), StreamFrame("b", image, 1.0)])
    assert [r.reset_reason for r in first] == [None, None]
    # a's time goes backwards, b's continues: only a resets
    second = estimator.step_streams([StreamFrame("a", image, 0.5), StreamFrame("b", image, 1.1)])
    assert second[0].reset_reason is not None and "backwards" in second[0].reset_reason
    assert second[1].reset_reason is None
    # b alone (a silent), then a comes back after a gap
    assert estimator.step_streams([StreamFrame("b", image, 1.2)])[0].reset_reason is None
    third = estimator.step_streams([StreamFrame("b", image[:32], 1.3), StreamFrame("a", image, 2.0)])
    assert "size changed" in (third[0].reset_reason or "") and "gap" in (third[1].reset_reason or "")
    estimator.reset_streams("operator", ["b"])
    fourth = estimator.step_streams([StreamFrame("a", image, 2.1), StreamFrame("b", image, 2.1)])
    assert [r.reset_reason for r in fourth] == [None, "operator"]
    estimator.reset_streams("all")
    assert [r.reset_reason for r in estimator.step_streams([StreamFrame("b", image, 2.2),
                                                            StreamFrame("a", image, 2.2)])] == ["all", "all"]
    with pytest.raises(ValueError, match=r"unknown stream\(s\) 'c'; known: 'a', 'b'"):
        estimator.reset_streams("x", ["c"])


def test_step_streams_refuses_bad_calls_without_touching_state(dynamic_onnx: Path) -> None:
    estimator = DepthEstimator(OnnxSource(dynamic_onnx))
    image = np.full((64, 128, 3), 90, np.uint8)
    estimator.step_streams([StreamFrame("a", image, 1.0)])
    with pytest.raises(ValueError, match="one frame per step_streams call"):
        estimator.step_streams([StreamFrame("a", image, 1.1), StreamFrame("a", image, 1.1)])
    with pytest.raises(ValueError, match="stream 'b': rgb8 image must be uint8"):
        estimator.step_streams([StreamFrame("a", image, 1.1), StreamFrame("b", image.astype(np.float32), 1.1)])
    assert estimator.step_streams([StreamFrame("a", image, 1.1)])[0].reset_reason is None
    assert estimator.step_streams([]) == []
    estimator.step(image, 5.0)  # the single-stream API beside it
    with pytest.raises(ValueError, match="carries the state of step"):
        estimator.step_streams([StreamFrame("a", image, 1.2)])


def test_sidecar_and_graph_record_the_batch(dynamic_onnx: Path, batch2_onnx: Path, batch1_onnx: Path,
                                            tmp_path: Path) -> None:
    dynamic = ModelSidecar.read(sidecar_path(dynamic_onnx))
    assert (dynamic.batch, dynamic.dynamic_batch) == (4, True)
    assert (ModelSidecar.read(sidecar_path(batch2_onnx)).batch, ModelSidecar.read(sidecar_path(batch2_onnx))
            .dynamic_batch) == (2, False)
    single = ModelSidecar.read(sidecar_path(batch1_onnx))
    assert (single.batch, single.dynamic_batch) == (1, False)
    # state shapes in the sidecar are per stream; the graphs carry them for their batch
    assert [item.shape for item in dynamic.state] == [item.shape for item in single.state]
    assert all(item.shape[0] == 2 for item in single.state)

    def dims(path: Path) -> dict[str, list[int | str]]:
        graph = onnx.load(str(path)).graph
        return {value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
                for value in [*graph.input, *graph.output]}

    dynamic_dims, batch2_dims, batch1_dims = dims(dynamic_onnx), dims(batch2_onnx), dims(batch1_onnx)
    assert dynamic_dims["image"] == ["batch", 3, *SIZE] and dynamic_dims["confidence"] == ["batch", 1, *SIZE]
    assert dynamic_dims["state_in.convlstm7b.c"][0] == dynamic_dims["state_out.convlstm7b.c"][0] == "state_batch"
    assert batch2_dims["image"][0] == 2 and batch2_dims["state_in.convlstm_skip1.h"][0] == 4
    assert batch1_dims["image"][0] == 1 and batch1_dims["state_out.convlstm_skip1.h"][0] == 2
    # a sidecar written before the batch was recorded reads as batch 1, fixed
    raw = json.loads(sidecar_path(batch1_onnx).read_text())
    del raw["batch"], raw["dynamic_batch"]
    old = tmp_path / "old.onnx.json"
    old.write_text(json.dumps(raw))
    assert (ModelSidecar.read(old).batch, ModelSidecar.read(old).dynamic_batch) == (1, False)
    raw["batch"] = 0
    old.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        ModelSidecar.read(old)


def test_int8_export_of_a_dynamic_batch(dynamic_onnx: Path, tmp_path: Path, images: np.ndarray) -> None:
    """The int8 QDQ copy of a dynamic-batch export is calibrated at batch 1 and keeps the dynamic batch."""
    from siam_depth_core.runtime.quantize import quantize_onnx

    rng = np.random.default_rng(3)
    clip = [rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8) for _ in range(3)]
    quantized = quantize_onnx(dynamic_onnx, tmp_path / "dynamic.int8.onnx", [clip])
    assert (quantized.batch, quantized.dynamic_batch) == (4, True)
    backend = open_backend(OnnxSource(tmp_path / "dynamic.int8.onnx"))
    assert _max_difference(_batched(backend, images, 2), _single_streams(backend, images, 2)) <= EXPORTED_TOLERANCE


def test_batch_latency_benchmark_runs() -> None:
    from benchmarks.batch_latency import CONFIGURATIONS, measure, report

    result = measure(2, 0.125, SIZE, threads=1, rounds=1, steps=1, warmup=0)
    assert list(result["per_round_ms"]) == list(CONFIGURATIONS) and all(
        len(times) == 1 and times[0] > 0 for times in result["per_round_ms"].values())
    assert "ratio batch 2 / single x 2" in report(result) and result["machine"]["cpu_count"] >= 1
