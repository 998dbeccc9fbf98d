"""Evaluation: disparity -> metres plumbing against LiDAR, D1-all, state warm-up, post-processing, the CLI."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from siam_depth_core.data.ground_truth import EvalFrame, ground_truth_depth, has_ground_truth
from siam_depth_core.data.kitti import KittiDrive
from siam_depth_core.evaluation.evaluate import evaluate_depth, evaluate_stereo2015, main, warmup_frames
from siam_depth_core.evaluation.metrics import METRIC_NAMES
from siam_depth_core.evaluation.report import DEPTH_RANGES, format_paper_table
from siam_depth_core.network.checkpoint import ModelMeta, save_checkpoint
from siam_depth_core.network.refine import flip_horizontal, refine_disparity
from siam_depth_core.runtime.backends.source import NetworkSource, RuntimeOptions
from siam_depth_core.runtime.export import export_onnx
from siam_depth_core.runtime.inference import DepthEstimator, DepthResult

DRIVE_0009 = "2011_09_26/2011_09_26_drive_0009_sync"
DRIVE_0023 = "2011_09_26/2011_09_26_drive_0023_sync"


class _Oracle:
    """A predictor whose disparity is the LiDAR depth (x scale) of the next of `frames` turned back into a
    disparity with `baseline_m` and the fx it is given."""

    def __init__(self, root: Path, frames: list[EvalFrame], scale: float, baseline_m: float) -> None:
        self.drive = KittiDrive(root, DRIVE_0009)
        self.frames = iter(frames)
        self.scale = scale
        self.baseline_m = baseline_m

    def predict_sequence(self, images, encoding="rgb8", fx_px=None) -> DepthResult:
        depth = ground_truth_depth(self.drive, next(self.frames).frame) * self.scale
        with np.errstate(divide="ignore"):
            disp = np.where(depth > 0, self.baseline_m * fx_px / (np.maximum(depth, 1e-6) * images[-1].shape[1]),
                            0.01)
        return DepthResult(disp.astype(np.float32), depth, 0.0, None)


@pytest.mark.parametrize(("scale", "abs_rel"), [(1.0, 0.0), (1.1, 0.1)])
def test_lidar_consistent_disparity_gives_the_expected_metrics(kitti_root: Path, drive_0009: Path, scale: float,
                                                               abs_rel: float) -> None:
    frames = [EvalFrame(DRIVE_0009, 0), EvalFrame(DRIVE_0009, 16)]
    # a baseline unlike the rig's: it must be the one used
    result = evaluate_depth(_Oracle(kitti_root, frames, scale, 0.54), frames, kitti_root)
    assert len(result.rows) == len(frames) * len(DEPTH_RANGES)
    assert all(row["gt_points"] > 1000 for row in result.rows)
    for name in DEPTH_RANGES:
        metrics = result.summary[name]
        assert metrics["images"] == 2
        assert metrics["abs_rel"] == pytest.approx(abs_rel, abs=2e-3)  # 1.1x except where clamped at max
        assert metrics["a1"] == pytest.approx(1.0)


def test_eval_ranges_mask_the_ground_truth(kitti_root: Path, drive_0009: Path) -> None:
    frames = [EvalFrame(DRIVE_0009, 0)]
    rows = {row["range"]: row for row in evaluate_depth(_Oracle(kitti_root, frames, 1.0, 0.54), frames,
                                                        kitti_root).rows}
    assert rows["1-50m"]["gt_points"] < rows["0-80m"]["gt_points"]


def test_ground_truth_from_scans_or_stored_maps(kitti_root: Path, drive_0009: Path, drive_0023: Path) -> None:
    drive_9, drive_23 = KittiDrive(kitti_root, DRIVE_0009), KittiDrive(kitti_root, DRIVE_0023)
    from_scan = ground_truth_depth(drive_9, 0)
    stored = ground_truth_depth(drive_23, 0)  # drive 0023 has only .npz maps
    for depth in (from_scan, stored):
        assert depth.shape == (375, 1242) and depth.dtype == np.float32
        valid = depth[depth > 0]
        assert valid.size > 10_000 and 1.0 < valid.min() and valid.max() < 130.0
    assert has_ground_truth(drive_23, 6)
    assert not has_ground_truth(drive_23, 7)
    with pytest.raises(FileNotFoundError, match="no LiDAR ground truth"):
        ground_truth_depth(drive_23, 7)


def test_d1_all_of_exact_and_shifted_disparities(shared_data: Path) -> None:
    from siam_depth_core.data.kitti import load_disparity_png

    folder = shared_data / "kitti_stereo_2015" / "training"
    gt_px = load_disparity_png(folder / "disp_occ_0" / "000046_10.png")

    class Disparity:
        baseline_m = 0.54

        def __init__(self, shift_px: float) -> None:
            self.shift_px = shift_px

        def predict_sequence(self, images, encoding="rgb8", fx_px=None) -> DepthResult:
            disparity = (gt_px + self.shift_px) / images[-1].shape[1]
            return DepthResult(disparity, np.zeros_like(disparity), 0.0, None)

    assert evaluate_stereo2015(Disparity(0.0), [folder])["d1_all"] == pytest.approx(0.0)
    assert evaluate_stereo2015(Disparity(10.0), [folder])["d1_all"] > 0.5


def test_an_output_that_ignores_the_image_scores_exactly_its_own_mean_control(shared_data: Path) -> None:
    folders = [shared_data / "kitti_stereo_2015" / "training", shared_data / "kitti_stereo_2015" / "eval12"]
    if not (folders[1] / "disp_occ_0").is_dir():
        pytest.skip(f"KITTI 2015 eval12/ not found under {folders[1].parent}")

    class FixedLayout:  # near at the bottom, far at the top: a street layout, the same for every image
        baseline_m = 0.54

        def predict_sequence(self, images, encoding="rgb8", fx_px=None) -> DepthResult:
            height, width = images[-1].shape[:2]
            disparity = np.repeat(np.linspace(0.005, 0.08, height, dtype=np.float32)[:, None], width, axis=1)
            return DepthResult(disparity, np.zeros_like(disparity), 0.0, None)

    result = evaluate_stereo2015(FixedLayout(), folders)
    assert result["images"] == 13 and result["frames"][:2] == ["000046_10", "000131_10"]
    assert result["d1_all"] == pytest.approx(result["own_mean_d1_all"], abs=1e-4)
    controls = result["depth"]["0-80m"]
    assert controls["frame_corr"] == 0.0 and controls["frame_gain"] == pytest.approx(0.0, abs=1e-4)


def test_warmup_uses_preceding_frames_present_on_disk(kitti_root: Path, drive_0009: Path) -> None:
    drive = KittiDrive(kitti_root, DRIVE_0009)
    assert warmup_frames(drive, EvalFrame(DRIVE_0009, 16), 3) == [13, 14, 15]
    assert warmup_frames(drive, EvalFrame(DRIVE_0009, 1), 3) == [0]
    assert warmup_frames(drive, EvalFrame(DRIVE_0009, 0), 3) == []
    assert warmup_frames(drive, EvalFrame(DRIVE_0009, 16), 0) == []


def _tiny(recurrent: bool = True, siamese: bool = True) -> tuple[torch.nn.Module, ModelMeta]:
    torch.manual_seed(0)
    meta = ModelMeta(net_width=0.125, recurrent=recurrent, siamese=siamese, height=64, width=192)
    return meta.build_network().eval(), meta


def test_warm_state_changes_a_recurrent_prediction_only(kitti_root: Path, drive_0009: Path) -> None:
    from siam_depth_core.data.kitti import frame_path, load_image

    images = [load_image(frame_path(kitti_root, DRIVE_0009, f)) for f in (14, 15)]
    for recurrent in (True, False):
        estimator = DepthEstimator(NetworkSource(*_tiny(recurrent=recurrent)))
        fresh = estimator.predict_sequence(images[1:]).disparity
        warm = estimator.predict_sequence(images).disparity
        assert fresh.shape == images[1].shape[:2]
        assert np.array_equal(fresh, warm) != recurrent


def test_post_process_blends_the_flipped_pass_for_a_non_siamese_model(kitti_root: Path, drive_0009: Path) -> None:
    from siam_depth_core.data.kitti import frame_path, load_image
    from siam_depth_core.runtime.inference import preprocess

    image = load_image(frame_path(kitti_root, DRIVE_0009, 0))
    net, meta = _tiny(siamese=False)
    plain = DepthEstimator(NetworkSource(net, meta)).predict_sequence([image]).disparity
    blended = DepthEstimator(NetworkSource(net, meta), RuntimeOptions(post_process=True)).predict_sequence([image]
                                                                                                        ).disparity
    with torch.no_grad():
        x = torch.from_numpy(preprocess(image, "rgb8", (64, 192)))
        direct, flipped = net(x)[0][0], net(flip_horizontal(x))[0][0]
        expected = refine_disparity(direct, flipped)[0, 0].numpy()
    expected = cv2.resize(expected, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    assert not np.allclose(plain, blended)
    np.testing.assert_allclose(blended, expected, rtol=1e-5, atol=1e-6)
    siamese = NetworkSource(*_tiny(siamese=True))
    np.testing.assert_array_equal(DepthEstimator(siamese).predict_sequence([image]).disparity,
                                  DepthEstimator(siamese, RuntimeOptions(post_process=True)).predict_sequence(
                                      [image]).disparity)


def test_cli_writes_csv_summary_table_and_side_by_side(tmp_path: Path, kitti_root: Path, drive_0009: Path,
                                                       shared_data: Path, capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    net, meta = _tiny()
    checkpoint = save_checkpoint(tmp_path / "tiny.pt", net, meta)
    out_dir = tmp_path / "eval"
    assert main(["--checkpoint", str(checkpoint), "--drives", DRIVE_0009, "--frames", "0,16",
                 "--data-root", str(kitti_root), "--out-dir", str(out_dir), "--vis", "1",
                 "--warmup-frames", "2"]) == 0
    printed = capsys.readouterr().out
    assert "Depth range: 0-80 meters (2 images)" in printed and "Depth range: 1-50 meters" in printed
    assert "paper: Siamese convLSTM (K)" in printed and "KITTI 2015 (13 frames): D1-all" in printed
    assert "own-mean control" in printed and "street prior" in printed and "frame_corr" in printed

    with (out_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["frame"], r["range"]) for r in rows] == [("0", "0-80m"), ("0", "1-50m"), ("16", "0-80m"),
                                                        ("16", "1-50m")]
    summary = json.loads((out_dir / "summary.json").read_text())
    assert set(summary["depth"]) == {"0-80m", "1-50m"}
    for name in METRIC_NAMES:
        values = [float(r[name]) for r in rows if r["range"] == "0-80m"]
        assert summary["depth"]["0-80m"][name] == pytest.approx(np.mean(values))
    assert 0.0 <= summary["kitti2015"]["d1_all"] <= 1.0 and summary["warmup_frames"] == 2
    assert summary["baseline_m"] == pytest.approx(meta.baseline_m)
    assert {"model", "own_mean", "constant", "street_prior", "frame_gain"} <= set(summary["controls"]["0-80m"])
    assert summary["controls"]["0-80m"]["frame_corr"] is None  # 2 frames: too few for the leave-one-out median

    pictures = sorted((out_dir / "vis").glob("*.png"))
    assert [p.name for p in pictures] == ["2011_09_26_drive_0009_sync_0000000000.png"]
    panel = cv2.imread(str(pictures[0]))
    assert panel.shape[0] == 375 and 3 * 1242 < panel.shape[1] < 3 * 1242 + 100  # + the colour bar in metres
    image = cv2.imread(str(kitti_root / DRIVE_0009 / "image_02" / "data" / "0000000000.png"))
    assert np.array_equal(panel[30:, :1242], image[30:])  # below the panel's label
    lidar_panel = panel[30:, 2 * 1242:3 * 1242]
    assert 0.01 < np.mean(lidar_panel.max(axis=2) > 0) < 0.6  # sparse LiDAR dots, not an empty or full panel


def test_table_is_laid_out_like_the_paper() -> None:
    summary = {"0-80m": {**dict.fromkeys(METRIC_NAMES, 0.5), "images": 3.0}}
    text = format_paper_table(summary, label="mine")
    lines = text.splitlines()
    assert lines[0] == "Depth range: 0-80 meters (3 images)"
    assert lines[1].split() == ["Method", "ARD", "SRD", "RMSE", "RMSE(log)", "d<1.25", "d<1.25^2", "d<1.25^3"]
    assert lines[2].split() == ["mine", *["0.500"] * 7]
    assert lines[3].split()[-7:] == ["0.131", "1.075", "5.318", "0.212", "0.846", "0.947", "0.976"]


def test_eigen_split_on_a_partial_download_skips_the_missing_frames(tmp_path: Path, kitti_root: Path,
                                                                   drive_0009: Path, shared_data: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    net, meta = _tiny()
    checkpoint = save_checkpoint(tmp_path / "tiny.pt", net, meta)
    common = ["--checkpoint", str(checkpoint), "--split", "eigen", "--data-root", str(kitti_root),
              "--splits-dir", str(shared_data / "splits" / "monodepth2"), "--stereo2015", "none", "--vis", "0"]
    assert main([*common, "--out-dir", str(tmp_path / "strict")]) == 2  # one line that names the way out
    assert "pass --skip-missing" in capsys.readouterr().err
    assert main([*common, "--skip-missing", "--out-dir", str(tmp_path / "eval")]) == 0
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["depth"]["0-80m"]["images"] == 4  # Eigen test frames 0, 16, 32, 48 of drive 0009
    assert "kitti2015" not in summary


def test_onnx_export_scores_the_same_metrics_as_its_checkpoint(tmp_path: Path, kitti_root: Path, drive_0009: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (onnx extra)")
    net, meta = _tiny()
    checkpoint = save_checkpoint(tmp_path / "tiny.pt", net, meta)
    export_onnx(net, meta, meta.input_size, tmp_path / "tiny.onnx")
    common = ["--drives", DRIVE_0009, "--frames", "0,16", "--data-root", str(kitti_root), "--stereo2015", "none",
              "--vis", "0", "--warmup-frames", "2"]
    assert main(["--checkpoint", str(checkpoint), *common, "--out-dir", str(tmp_path / "pt")]) == 0
    assert main(["--onnx", str(tmp_path / "tiny.onnx"), *common, "--out-dir", str(tmp_path / "onnx")]) == 0
    assert "this ONNX model" in capsys.readouterr().out
    from_checkpoint = json.loads((tmp_path / "pt" / "summary.json").read_text())
    from_onnx = json.loads((tmp_path / "onnx" / "summary.json").read_text())
    assert (from_checkpoint["backend"], from_onnx["backend"]) == ("torch", "onnxruntime")
    assert from_onnx["model"] == str(tmp_path / "tiny.onnx") and from_onnx["baseline_m"] == meta.baseline_m
    for name in DEPTH_RANGES:
        for metric in METRIC_NAMES:
            assert from_onnx["depth"][name][metric] == pytest.approx(from_checkpoint["depth"][name][metric],
                                                                     rel=1e-4, abs=1e-5), (name, metric)


@pytest.mark.parametrize(("arguments", "message"), [
    (["--checkpoint", "/nonexistent/model.pt"], "siam-depth-eval: error: checkpoint not found: /nonexistent/model.pt"),
    (["--onnx", "/nonexistent/model.onnx"], "siam-depth-eval: error: ONNX model not found: /nonexistent/model.onnx"),
    (["--checkpoint", "a.pt", "--onnx", "a.onnx"], "siam-depth-eval: error: give one model"),
])
def test_cli_reports_a_model_it_cannot_load_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              arguments: list[str], message: str) -> None:
    assert main([*arguments, "--out-dir", str(tmp_path / "eval")]) == 2
    error = capsys.readouterr().err
    assert error.startswith(message) and "Traceback" not in error
    assert not (tmp_path / "eval").exists()
