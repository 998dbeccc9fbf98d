"""Eigen-split depth metrics (as monodepth / monodepth2 evaluate them), Garg crop, KITTI 2015 disparity D1.

Depths are metres; disparities in `kitti_d1` are pixels. Depth metrics follow Eigen et al.: relative and
squared relative error, linear and log RMSE, and the fraction of pixels with max(gt/pred, pred/gt)
below 1.25, 1.25^2, 1.25^3.
"""
from __future__ import annotations

import numpy as np

#: Table-2 order of the paper (ARD, SRD, RMSE linear, RMSE log, delta < 1.25, < 1.25^2, < 1.25^3).
METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
#: Column headers the paper uses for METRIC_NAMES.
METRIC_LABELS = {"abs_rel": "ARD", "sq_rel": "SRD", "rmse": "RMSE (linear)", "rmse_log": "RMSE (log)",
                 "a1": "d<1.25", "a2": "d<1.25^2", "a3": "d<1.25^3"}
#: Predictions are clamped to at least this depth (metres) before the metrics (monodepth2 MIN_DEPTH).
PRED_MIN_DEPTH_M = 1e-3
#: Garg et al.'s crop as fractions of the image: rows top, bottom; columns left, right.
GARG_CROP = (0.40810811, 0.99189189, 0.03594771, 0.96405229)


def compute_depth_metrics(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Eigen metrics over 1-D arrays of valid ground-truth and predicted depths (metres, > 0).

    Returns {name: value} for every name in METRIC_NAMES (errors in metres where they have units).
    """
    gt = np.asarray(gt, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if gt.ndim != 1 or gt.shape != pred.shape:
        raise ValueError(f"gt and pred must be 1-D arrays of the same length, got {gt.shape} and {pred.shape}")
    if gt.size == 0:
        raise ValueError("no valid pixels to evaluate (empty gt)")
    if not (np.all(gt > 0) and np.all(pred > 0)):
        raise ValueError("depths must be > 0 (mask invalid ground truth and clamp predictions first)")
    ratio = np.maximum(gt / pred, pred / gt)
    diff = gt - pred
    return {
        "abs_rel": float(np.mean(np.abs(diff) / gt)),
        "sq_rel": float(np.mean(diff**2 / gt)),
        "rmse": float(np.sqrt(np.mean(diff**2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(gt) - np.log(pred)) ** 2))),
        "a1": float(np.mean(ratio < 1.25)),
        "a2": float(np.mean(ratio < 1.25**2)),
        "a3": float(np.mean(ratio < 1.25**3)),
    }


def garg_crop_mask(height: int, width: int) -> np.ndarray:
    """(H,W) bool, True inside Garg's crop (rows 0.408..0.992 H, cols 0.036..0.964 W, truncated as monodepth2)."""
    top, bottom, left, right = (int(fraction * size) for fraction, size in
                                zip(GARG_CROP, (height, height, width, width), strict=True))
    mask = np.zeros((height, width), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def eigen_eval_mask(gt_depth: np.ndarray, min_depth: float = 1e-3, max_depth: float = 80.0,
                    garg_crop: bool = True) -> np.ndarray:
    """(H,W) bool: pixels with min_depth < gt < max_depth, inside Garg's crop when `garg_crop`."""
    gt_depth = np.asarray(gt_depth)
    if gt_depth.ndim != 2:
        raise ValueError(f"gt_depth must be (H,W), got {gt_depth.shape}")
    if not 0 <= min_depth < max_depth:
        raise ValueError(f"need 0 <= min_depth < max_depth, got {min_depth}, {max_depth}")
    mask = (gt_depth > min_depth) & (gt_depth < max_depth)
    if garg_crop:
        mask &= garg_crop_mask(*gt_depth.shape)
    return mask


def evaluate_depth_map(gt_depth: np.ndarray, pred_depth: np.ndarray, min_depth: float = 1e-3,
                       max_depth: float = 80.0, garg_crop: bool = True) -> dict[str, float]:
    """Eigen metrics of one (H,W) predicted depth map (metres, already at the GT's size) against (H,W) GT.

    GT pixels outside (min_depth, max_depth) (0 = no LiDAR return) or outside Garg's crop are ignored;
    predictions are clamped to [PRED_MIN_DEPTH_M, max_depth]; NaN predictions (what
    `geometry.disparity_to_depth` gives for zero disparity, i.e. infinitely far) count as max_depth.
    The paper's two tables: min_depth=1e-3, max_depth=80 (0-80 m) and min_depth=1, max_depth=50 (1-50 m).
    """
    gt_depth = np.asarray(gt_depth)
    pred_depth = np.asarray(pred_depth)
    if pred_depth.shape != gt_depth.shape:
        raise ValueError(f"prediction {pred_depth.shape} and ground truth {gt_depth.shape} differ in size; "
                         "resize the prediction to the GT size first (cv2.resize, INTER_LINEAR)")
    mask = eigen_eval_mask(gt_depth, min_depth, max_depth, garg_crop)
    pred = np.nan_to_num(pred_depth[mask].astype(np.float64), nan=max_depth, posinf=max_depth)
    return compute_depth_metrics(gt_depth[mask], np.clip(pred, PRED_MIN_DEPTH_M, max_depth))


def kitti_d1(disp_gt_px: np.ndarray, disp_pred_px: np.ndarray) -> float:
    """KITTI 2015 D1: fraction of valid GT pixels (gt > 0) whose error is > 3 px and > 5 % of the GT disparity.

    Both (H,W) disparities in pixels of the same image size (as the benchmark, the prediction is dense).
    """
    disp_gt_px = np.asarray(disp_gt_px, dtype=np.float64)
    disp_pred_px = np.asarray(disp_pred_px, dtype=np.float64)
    if disp_gt_px.shape != disp_pred_px.shape:
        raise ValueError(f"disparity shapes differ: gt {disp_gt_px.shape}, prediction {disp_pred_px.shape}")
    valid = disp_gt_px > 0
    if not valid.any():
        raise ValueError("ground-truth disparity has no valid (> 0) pixel")
    error = np.abs(disp_gt_px[valid] - disp_pred_px[valid])
    bad = (error > 3.0) & (error > 0.05 * disp_gt_px[valid])
    return float(bad.mean())


#: Below this spread (natural-log units) a frame's prediction is treated as not varying with the image.
_CONSTANT_SPREAD = 1e-9


def leave_one_out_median(gt_depths: np.ndarray, valid: np.ndarray, frame: int, min_samples: int = 2) -> np.ndarray:
    """Per-pixel median of the other frames' valid ground truth at the pixels valid in `frame`.

    gt_depths: (F,H,W) metres; valid: (F,H,W) bool. Returns a (P,) float64 array for the P pixels of
    `valid[frame]` (row-major order), NaN where fewer than `min_samples` other frames have a value.
    """
    pixels = valid[frame]
    others = np.delete(np.arange(len(gt_depths)), frame)
    samples = np.where(valid[others][:, pixels], gt_depths[others][:, pixels], np.nan).astype(np.float64)
    enough = np.count_nonzero(np.isfinite(samples), axis=0) >= min_samples
    median = np.full(samples.shape[1], np.nan)
    if enough.any():
        median[enough] = np.nanmedian(samples[:, enough], axis=0)
    return median


def frame_correlation(pred_depths: np.ndarray, gt_depths: np.ndarray, min_depth: float = 1e-3,
                      max_depth: float = 80.0, garg_crop: bool = True) -> dict[str, float | list[float]]:
    """Whether a prediction follows what changes from frame to frame (`frame_corr`), not the average scene.

    pred_depths, gt_depths: (F,H,W) metres on one pixel grid (GT 0 = none). Per frame f, over its valid
    GT pixels (min_depth < gt < max_depth, Garg crop) where at least 2 other frames have GT: the Pearson
    correlation between log pred_f - mean_g(log pred_g) (the prediction's departure from its own
    average) and log gt_f - log M_f, M_f the per-pixel median of the other frames' GT (the scene's
    departure from the typical scene; leave-one-out). A prediction that does not change with the image
    scores exactly 0; one that predicts each frame's own departures scores 1.
    Returns {"frame_corr": mean over frames, "per_frame": [...]}.
    """
    pred_depths = np.asarray(pred_depths, dtype=np.float64)
    gt_depths = np.asarray(gt_depths, dtype=np.float64)
    if pred_depths.ndim != 3 or pred_depths.shape != gt_depths.shape:
        raise ValueError(f"need (F,H,W) predictions and ground truth of one shape, got {pred_depths.shape} and "
                         f"{gt_depths.shape}")
    if len(pred_depths) < 3:
        raise ValueError(f"frame_corr needs at least 3 frames (a leave-one-out median of 2), got {len(pred_depths)}")
    log_pred = np.log(np.clip(np.nan_to_num(pred_depths, nan=max_depth, posinf=max_depth), PRED_MIN_DEPTH_M,
                              max_depth))
    departure_pred = log_pred - log_pred.mean(axis=0)
    valid = np.stack([eigen_eval_mask(gt, min_depth, max_depth, garg_crop) for gt in gt_depths])
    scores = []
    for frame in range(len(gt_depths)):
        median = leave_one_out_median(gt_depths, valid, frame)
        usable = np.isfinite(median)
        x = departure_pred[frame][valid[frame]][usable]
        y = np.log(gt_depths[frame][valid[frame]][usable]) - np.log(median[usable])
        if x.size < 2 or x.std() < _CONSTANT_SPREAD or y.std() < _CONSTANT_SPREAD:
            scores.append(0.0)
            continue
        scores.append(float(np.corrcoef(x, y)[0, 1]))
    return {"frame_corr": float(np.mean(scores)), "per_frame": scores}
