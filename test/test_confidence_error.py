"""benchmarks.confidence_error: the selections and controls on frames with a known error structure, and the
report on real KITTI data agreeing with the evaluation module."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.confidence_error import (
    DEFAULT_CHECKPOINT,
    ScoredFrame,
    drive_0023_frames,
    markdown,
    score_frame,
    selection_table,
)


def _frames(informative: bool, count: int = 4, pixels: int = 2000) -> list[ScoredFrame]:
    """Frames whose error grows where the confidence is low (informative) or is unrelated to it."""
    rng = np.random.default_rng(7)
    frames = []
    for _ in range(count):
        gt = rng.uniform(2.0, 60.0, pixels)
        confidence = rng.uniform(0.5, 1.0, pixels)
        noise = rng.uniform(0.5, 1.0, pixels) if not informative else confidence
        pred = gt * (1.0 + 0.8 * (1.0 - noise) * rng.choice([-1.0, 1.0], pixels))
        frames.append(ScoredFrame(gt, np.clip(pred, 1e-3, 80.0), confidence))
    return frames


def _row(rows: list[dict], selection: str, kept: float) -> dict:
    return next(row for row in rows if row["selection"] == selection and row["kept"] == kept)


def test_informative_confidence_beats_both_controls_and_uninformative_does_not() -> None:
    rows = selection_table(_frames(informative=True), keep_fractions=(1.0, 0.5), thresholds=(0.9,))
    everything, confident = _row(rows, "all pixels", 1.0), _row(rows, "confidence", 0.5)
    random, nearest = _row(rows, "random", 0.5), _row(rows, "nearest", 0.5)
    assert confident["abs_rel"] < 0.7 * min(random["abs_rel"], everything["abs_rel"])
    assert confident["abs_rel"] < nearest["abs_rel"]
    assert abs(random["abs_rel"] - everything["abs_rel"]) < 0.1 * everything["abs_rel"]  # fewer pixels alone
    threshold = next(row for row in rows if row["threshold"] == 0.9)
    assert threshold["kept"] == pytest.approx(0.2, abs=0.03)  # uniform in [0.5, 1]: a fifth is >= 0.9
    assert _row(rows, "confidence, depth-matched", 0.5)["abs_rel"] < 0.7 * everything["abs_rel"]
    rows = selection_table(_frames(informative=False), keep_fractions=(1.0, 0.5), thresholds=())
    assert _row(rows, "confidence", 0.5)["abs_rel"] > 0.9 * _row(rows, "all pixels", 1.0)["abs_rel"]


def test_depth_matched_selection_removes_what_depth_alone_explains() -> None:
    """Confidence that only tracks depth (here: far = confident, far = small relative error) looks useful when
    ranked globally, but not within depth deciles."""
    rng = np.random.default_rng(3)
    frames = []
    for _ in range(3):
        gt = rng.uniform(2.0, 60.0, 4000)
        relative_error = 0.5 - 0.4 * (gt - 2.0) / 58.0  # 0.5 near, 0.1 far
        pred = gt * (1.0 + relative_error * rng.choice([-1.0, 1.0], gt.size))
        confidence = 0.5 + 0.5 * (gt - 2.0) / 58.0 + rng.normal(0.0, 0.1, gt.size)  # within a decile: noise
        frames.append(ScoredFrame(gt, np.clip(pred, 1e-3, 80.0), confidence))
    rows = selection_table(frames, keep_fractions=(1.0, 0.5), thresholds=())
    everything = _row(rows, "all pixels", 1.0)["abs_rel"]
    global_gain = everything - _row(rows, "confidence", 0.5)["abs_rel"]
    matched_gain = everything - _row(rows, "confidence, depth-matched", 0.5)["abs_rel"]
    assert global_gain > 0.2 * everything  # mostly the far pixels
    assert abs(matched_gain) < 0.3 * global_gain


def test_score_frame_uses_eigens_mask_and_counts_invalid_predictions_as_far() -> None:
    gt = np.zeros((100, 200), np.float32)
    gt[60:90, 20:180] = 10.0  # inside Garg's crop
    gt[0:10, :] = 10.0  # above it: not evaluated
    gt[70, 50] = 95.0  # beyond 80 m: not evaluated
    pred = np.full_like(gt, 12.0)
    pred[80, 100] = np.nan
    confidence = np.full_like(gt, 0.7)
    frame = score_frame(gt, pred, confidence)
    assert frame.gt_m.size == 30 * 160 - 1
    assert (frame.pred_m == 80.0).sum() == 1 and np.allclose(frame.confidence, 0.7)


def test_report_on_drive_0023_agrees_with_the_evaluation(drive_0023, one_torch_thread) -> None:
    from siam_depth_core.data.ground_truth import ground_truth_depth
    from siam_depth_core.data.kitti import KittiDrive, load_image
    from siam_depth_core.evaluation.metrics import evaluate_depth_map
    from siam_depth_core.runtime.backends.source import CheckpointSource
    from siam_depth_core.runtime.inference import DepthEstimator

    frames = drive_0023_frames(DEFAULT_CHECKPOINT)
    assert len(frames) == 7 and all(0.0 <= f.confidence.min() and f.confidence.max() <= 1.0 for f in frames)
    rows = selection_table(frames, keep_fractions=(1.0, 0.5), thresholds=(0.9,))
    drive = KittiDrive.from_dir(drive_0023)
    estimator = DepthEstimator(CheckpointSource(DEFAULT_CHECKPOINT), max_gap_s=3600.0)
    fx_px = float(drive.calibration.camera_matrix[0, 0])
    stamps = drive.timestamps_ns()
    expected = np.mean([evaluate_depth_map(ground_truth_depth(drive, index), estimator.step(
        load_image(drive.image_path(index)), stamps[index] * 1e-9, fx_px=fx_px).depth_m)["abs_rel"]
        for index in drive.frames()])
    assert _row(rows, "all pixels", 1.0)["abs_rel"] == pytest.approx(expected, rel=1e-6)
    text = markdown({"tables": {"drive 0023": {"pixels": 100, "median_confidence": 0.9, "rows": rows}}})
    assert "| 50 % | most confident |" in text and "random (control)" in text and "confidence >= 0.9" in text
