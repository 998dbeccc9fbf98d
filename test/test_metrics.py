"""Eigen depth metrics against hand-computed values, Garg crop, evaluation masking/clamping, KITTI 2015 D1."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from siam_depth_core.data.kitti import load_disparity_png
from siam_depth_core.evaluation.metrics import (
    METRIC_NAMES,
    compute_depth_metrics,
    eigen_eval_mask,
    evaluate_depth_map,
    garg_crop_mask,
    kitti_d1,
)


def test_metrics_match_hand_computed_values():
    gt = np.array([1.0, 2.0, 4.0, 10.0])
    pred = np.array([2.0, 2.0, 2.5, 8.0])  # ratios max(gt/pred, pred/gt) = 2, 1, 1.6, 1.25
    metrics = compute_depth_metrics(gt, pred)
    assert tuple(metrics) == METRIC_NAMES
    assert metrics["abs_rel"] == pytest.approx((1 + 0 + 1.5 / 4 + 2 / 10) / 4)
    assert metrics["sq_rel"] == pytest.approx((1 + 0 + 2.25 / 4 + 4 / 10) / 4)
    assert metrics["rmse"] == pytest.approx(math.sqrt((1 + 0 + 2.25 + 4) / 4))
    assert metrics["rmse_log"] == pytest.approx(math.sqrt((math.log(2) ** 2 + math.log(1.6) ** 2 + math.log(1.25) ** 2) / 4))
    assert (metrics["a1"], metrics["a2"], metrics["a3"]) == (0.25, 0.5, 0.75)  # 1.25 itself is not < 1.25


def test_perfect_prediction_has_zero_error_and_a1_one():
    gt = np.linspace(1.0, 80.0, 50)
    metrics = compute_depth_metrics(gt, gt.copy())
    assert metrics["abs_rel"] == metrics["sq_rel"] == metrics["rmse"] == metrics["rmse_log"] == 0.0
    assert metrics["a1"] == metrics["a2"] == metrics["a3"] == 1.0


def test_prediction_scaled_by_1_1_gives_abs_rel_0_1():
    gt = np.random.default_rng(0).uniform(2.0, 70.0, 1000)
    metrics = compute_depth_metrics(gt, gt * 1.1)
    assert metrics["abs_rel"] == pytest.approx(0.1)
    assert metrics["rmse_log"] == pytest.approx(math.log(1.1))
    assert metrics["a1"] == 1.0


def test_bad_metric_inputs_are_rejected():
    with pytest.raises(ValueError, match="same length"):
        compute_depth_metrics(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="empty"):
        compute_depth_metrics(np.ones(0), np.ones(0))
    with pytest.raises(ValueError, match="> 0"):
        compute_depth_metrics(np.array([1.0, 0.0]), np.ones(2))


def test_garg_crop_on_kitti_size():
    mask = garg_crop_mask(375, 1242)
    rows, cols = np.nonzero(mask)
    # int(0.40810811*375)=153, int(0.99189189*375)=371, int(0.03594771*1242)=44, int(0.96405229*1242)=1197
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (153, 371, 44, 1197)
    assert mask.sum() == (371 - 153) * (1197 - 44)


def test_eval_mask_range_and_crop():
    gt = np.full((100, 200), 10.0)
    gt[90, 100] = 0.0  # no LiDAR return
    gt[91, 100] = 85.0  # beyond 80 m
    gt[92, 100] = 0.5  # inside 0-80 m, outside 1-50 m
    mask = eigen_eval_mask(gt)
    assert mask.sum() == garg_crop_mask(100, 200).sum() - 2
    assert eigen_eval_mask(gt, min_depth=1, max_depth=50).sum() == mask.sum() - 1
    assert eigen_eval_mask(gt, garg_crop=False).sum() == 100 * 200 - 2


def test_evaluate_depth_map_clamps_predictions_and_ignores_invalid_gt():
    gt = np.zeros((40, 80))
    gt[30, 40], gt[31, 40], gt[32, 40], gt[0, 0] = 10.0, 70.0, 60.0, 10.0  # (0,0) is outside Garg's crop
    pred = np.full(gt.shape, 5.0)
    pred[30, 40], pred[31, 40], pred[32, 40] = 0.0, 200.0, 60.0
    metrics = evaluate_depth_map(gt, pred, min_depth=1e-3, max_depth=80)
    # pred 0 -> 1e-3 (abs_rel ~1), 200 -> 80 (10/70), 60 exact
    assert metrics["abs_rel"] == pytest.approx(((10 - 1e-3) / 10 + 10 / 70 + 0) / 3)
    metrics_50 = evaluate_depth_map(gt, pred, min_depth=1, max_depth=50)  # only the 10 m pixel remains
    assert metrics_50["abs_rel"] == pytest.approx((10 - 1e-3) / 10)
    with pytest.raises(ValueError, match="resize"):
        evaluate_depth_map(gt, pred[:, :40])


def test_kitti_d1_hand_case():
    gt = np.array([[10.0, 100.0, 0.0, 50.0]])
    pred = np.array([[14.0, 104.0, 99.0, 50.0]])  # 4 px & 40 % -> bad; 4 px but 4 % -> fine; gt 0 -> ignored
    assert kitti_d1(gt, pred) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="no valid"):
        kitti_d1(np.zeros((2, 2)), np.zeros((2, 2)))


def test_kitti_d1_on_kitti_2015_frame(shared_data: Path):
    disp = load_disparity_png(shared_data / "kitti_stereo_2015" / "training" / "disp_occ_0" / "000046_10.png")
    assert kitti_d1(disp, disp) == 0.0
    valid = disp > 0
    assert disp[valid].max() < 80.0
    assert kitti_d1(disp, disp + 4.0) == 1.0  # 4 px off is > 3 px and > 5 % of every disparity < 80 px
    assert kitti_d1(disp, disp + 2.5) == 0.0  # never more than 3 px off
    # 8 % too large: always > 5 %, and > 3 px exactly where the disparity exceeds 37.5 px
    expected = np.mean(disp[valid] > 37.5)
    assert 0.1 < expected < 0.9
    assert kitti_d1(disp, disp * 1.08) == pytest.approx(expected)


def _random_scenes(frames: int = 8, height: int = 60, width: int = 80, seed: int = 0):
    """Dense, frame-independent log-normal depth fields (metres) and sparse LiDAR-like GT (40 % of pixels)."""
    rng = np.random.default_rng(seed)
    depth = np.exp(rng.normal(2.5, 0.5, (frames, height, width)))
    gt = np.where(rng.random(depth.shape) < 0.4, depth, 0.0)
    return depth, gt


def test_frame_corr_is_zero_for_an_output_that_ignores_the_image():
    from siam_depth_core.evaluation.metrics import frame_correlation

    depth, gt = _random_scenes()
    constant = np.broadcast_to(depth.mean(axis=0), depth.shape)
    result = frame_correlation(constant, gt)
    assert result["frame_corr"] == 0.0 and result["per_frame"] == [0.0] * len(depth)


def test_frame_corr_is_high_for_the_truth_and_near_zero_when_scrambled():
    from siam_depth_core.evaluation.metrics import frame_correlation

    depth, gt = _random_scenes(frames=30)
    assert frame_correlation(depth, gt)["frame_corr"] > 0.8  # mean and median departures differ a little
    # Each frame scored with another frame's prediction: about 0 (a small negative bias, about -1/F,
    # because the other frame's GT is part of the leave-one-out median).
    scrambled = np.roll(depth, 1, axis=0)
    assert abs(frame_correlation(scrambled, gt)["frame_corr"]) < 0.08


def test_leave_one_out_median_uses_only_the_other_frames():
    from siam_depth_core.evaluation.metrics import leave_one_out_median

    gt = np.array([[[10.0, 5.0]], [[20.0, 0.0]], [[40.0, 7.0]], [[30.0, 9.0]]])
    valid = gt > 0
    np.testing.assert_allclose(leave_one_out_median(gt, valid, 0), [30.0, 8.0])  # pixel 2: 7, 9
    np.testing.assert_allclose(leave_one_out_median(gt, valid, 2), [20.0, 7.0])  # pixel 2: 5, 9
    only_one = leave_one_out_median(gt[:2], valid[:2], 0)
    assert np.isnan(only_one).all()  # one other frame is fewer than 2 samples


def test_frame_corr_rejects_mismatched_or_too_few_frames():
    from siam_depth_core.evaluation.metrics import frame_correlation

    depth, gt = _random_scenes(frames=2)
    with pytest.raises(ValueError, match="at least 3 frames"):
        frame_correlation(depth, gt)
    with pytest.raises(ValueError, match="one shape"):
        frame_correlation(depth[:, :10], gt)


def test_own_mean_control_is_the_per_pixel_geometric_mean():
    from siam_depth_core.evaluation.baselines import own_mean_control

    first = np.array([[2.0, 10.0]], np.float32)
    second = np.array([[8.0, np.nan]], np.float32)  # NaN = far: counts as max_depth
    np.testing.assert_allclose(own_mean_control([first, second], max_depth=40.0), [[4.0, 20.0]], rtol=1e-6)


def test_street_prior_is_the_median_with_holes_filled_from_the_nearest_pixel():
    from siam_depth_core.evaluation.baselines import street_prior

    frames = [np.array([[0.0, 0.0, 0.0], [10.0, 20.0, 0.0]]), np.array([[0.0, 0.0, 0.0], [30.0, 0.0, 6.0]]),
              np.array([[0.0, 0.0, 0.0], [20.0, 40.0, 0.0]])]
    prior = street_prior(frames)
    np.testing.assert_allclose(prior[1], [20.0, 30.0, 6.0])
    np.testing.assert_allclose(prior[0], [20.0, 30.0, 6.0])  # the row above takes the nearest covered pixel
    with pytest.raises(ValueError, match="no frame has a valid depth"):
        street_prior([np.zeros((2, 2))])
