"""Scores and reports of depth predictions: Eigen scores per frame, tables laid out like the paper's, CSV and PLY.

Depths are metres. A frame is scored with the Eigen metrics inside Garg's crop for each depth range
(min GT depth, max depth = GT bound and prediction cap); a run's summary is the mean over frames, as
monodepth averages the Eigen test images. Tables put one row per method under the paper's column titles.
"""
from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from siam_depth_core.evaluation.metrics import METRIC_NAMES, eigen_eval_mask, evaluate_depth_map

#: Evaluation ranges as (min GT depth, max depth = GT bound and prediction cap), metres: the paper's two tables.
DEPTH_RANGES: dict[str, tuple[float, float]] = {"0-80m": (1e-3, 80.0), "1-50m": (1.0, 50.0)}
#: Column titles of the paper's Table 2, in METRIC_NAMES order.
TABLE_TITLES = ("ARD", "SRD", "RMSE", "RMSE(log)", "d<1.25", "d<1.25^2", "d<1.25^3")
#: The paper's Table 2 row "Ours, K, Stereo" (trained on KITTI only), for comparison.
PAPER_RESULTS: dict[str, dict[str, float]] = {
    "0-80m": dict(zip(METRIC_NAMES, (0.131, 1.075, 5.318, 0.212, 0.846, 0.947, 0.976), strict=True)),
    "1-50m": dict(zip(METRIC_NAMES, (0.109, 0.634, 3.636, 0.182, 0.882, 0.962, 0.983), strict=True)),
}
PAPER_LABEL = "paper: Siamese convLSTM (K)"
#: Label of the constant-depth control row.
CONSTANT_LABEL = "constant depth (median GT per frame)"


def range_scores(depth_gt: np.ndarray, depth_pred: np.ndarray, depth_range: tuple[float, float]) -> dict[str, float]:
    """Eigen metrics of one (H,W) prediction against (H,W) ground truth (0 = none) within `depth_range`
    (Garg crop; predictions clamped, NaN = far) and "gt_points", the number of GT pixels scored."""
    min_depth, max_depth = depth_range
    points = int(np.count_nonzero(eigen_eval_mask(depth_gt, min_depth, max_depth, garg_crop=True)))
    return {"gt_points": points, **evaluate_depth_map(depth_gt, depth_pred, min_depth, max_depth, garg_crop=True)}


def median_gt_depth(depth_gt: np.ndarray, depth_range: tuple[float, float]) -> float:
    """The median of the GT depths scored in `depth_range` (Garg crop): the best constant-depth prediction's value.

    Raises ValueError when no GT pixel lies inside the crop and the range.
    """
    mask = eigen_eval_mask(depth_gt, *depth_range, garg_crop=True)
    if not mask.any():
        raise ValueError(f"no ground-truth depth inside the Garg crop and {depth_range[0]:g}-{depth_range[1]:g} m")
    return float(np.median(depth_gt[mask]))


def mean_metrics(scores: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Per-frame metrics averaged over frames (every name in METRIC_NAMES)."""
    scores = list(scores)
    if not scores:
        raise ValueError("no scored frames to average")
    return {name: float(np.mean([score[name] for score in scores])) for name in METRIC_NAMES}


def format_rows(rows: Sequence[tuple[str, Mapping[str, float]]], first_column: str = "") -> list[str]:
    """A header of the paper's column titles and one line per (label, metrics) row, values to 3 decimals."""
    label_width = max(len(first_column), *(len(label) for label, _ in rows)) + 2
    lines = [f"{first_column:<{label_width}}" + "".join(f"{title:>10}" for title in TABLE_TITLES)]
    lines += [f"{label:<{label_width}}" + "".join(f"{values[name]:>10.3f}" for name in METRIC_NAMES)
              for label, values in rows]
    return lines


def format_paper_table(summary: Mapping[str, Mapping[str, float]], label: str = "this checkpoint",
                       compare_paper: bool = True) -> str:
    """A run's summary laid out like the paper's Table 2: one block per depth range ("0-80m", ...), with
    the paper's row below ours when `compare_paper`. summary: range -> metrics and "images"."""
    lines = []
    for name, metrics in summary.items():
        low, high = name.removesuffix("m").split("-")
        rows = [(label, metrics)]
        if compare_paper and name in PAPER_RESULTS:
            rows.append((PAPER_LABEL, PAPER_RESULTS[name]))
        lines += [f"Depth range: {low}-{high} meters ({int(metrics.get('images', 0))} images)",
                  *format_rows(rows, "Method"), ""]
    return "\n".join(lines)


#: Labels of the control rows (what a model that reads the scene must beat).
OWN_MEAN_LABEL = "own-mean control (model's mean depth map)"
STREET_PRIOR_LABEL = "street prior (median LiDAR of drive 0009)"
#: Frames x pixels above which the frame-level statistics use a half-resolution grid (memory: Eigen's 697 frames).
_FULL_GRID_LIMIT = 60 * 375 * 1242


def scene_controls(depth_preds: Sequence[np.ndarray], depth_gts: Sequence[np.ndarray], depth_range: tuple[float, float],
                   street_prior: np.ndarray | None = None) -> dict[str, Any]:
    """The model's scores next to controls that need no image: does it read the scene or output the average one?

    depth_preds / depth_gts: per frame (H,W) metres (GT 0 = none; frames may differ in size). Returns
    {"model", "own_mean", "constant", ["street_prior"]: mean metrics; "frame_gain": abs_rel(own_mean) -
    abs_rel(model); "frame_corr": `metrics.frame_correlation` on one grid (None below 3 frames)}. The
    own-mean control is the per-pixel geometric mean of the model's own depth over these frames, the
    constant each frame's median GT depth, the street prior a fixed (H,W) depth map; each is resized to
    every frame's size and scored like the model.
    """
    from siam_depth_core.evaluation.baselines import own_mean_control, to_grid
    from siam_depth_core.evaluation.metrics import frame_correlation

    if len(depth_preds) != len(depth_gts) or not depth_preds:
        raise ValueError(f"need one prediction per GT frame, got {len(depth_preds)} and {len(depth_gts)}")
    grid = depth_gts[0].shape
    if len(depth_gts) * grid[0] * grid[1] > _FULL_GRID_LIMIT:
        grid = (grid[0] // 2, grid[1] // 2)
    own_mean = own_mean_control([to_grid(p, grid) for p in depth_preds], max_depth=depth_range[1])
    controls = {"own_mean": lambda gt: to_grid(own_mean, gt.shape),
                "constant": lambda gt: np.full(gt.shape, median_gt_depth(gt, depth_range), np.float32)}
    if street_prior is not None:
        controls["street_prior"] = lambda gt: to_grid(street_prior, gt.shape)
    scored = [i for i, gt in enumerate(depth_gts) if eigen_eval_mask(gt, *depth_range, garg_crop=True).any()]
    if not scored:
        raise ValueError(f"no frame has ground truth inside the Garg crop and {depth_range[0]:g}-{depth_range[1]:g} m")
    result: dict[str, Any] = {"model": mean_metrics(range_scores(depth_gts[i], depth_preds[i], depth_range)
                                                    for i in scored)}
    for name, prediction in controls.items():
        result[name] = mean_metrics(range_scores(depth_gts[i], prediction(depth_gts[i]), depth_range) for i in scored)
    result["frame_gain"] = result["own_mean"]["abs_rel"] - result["model"]["abs_rel"]
    result["frame_corr"] = None
    if len(scored) >= 3:
        result["frame_corr"] = frame_correlation(np.stack([to_grid(depth_preds[i], grid) for i in scored]),
                                                 np.stack([to_grid(depth_gts[i], grid, sparse=True) for i in scored]),
                                                 *depth_range)["frame_corr"]
    return result


def controls_table(controls: Mapping[str, Any], model_label: str, extra_rows: Sequence[tuple[str, Mapping]] = ()
                   ) -> list[str]:
    """`format_rows` of a `scene_controls` result (model, extra rows, own-mean, constant, street prior) plus
    a line with frame_corr and frame_gain."""
    rows = [(model_label, controls["model"]), *extra_rows, (OWN_MEAN_LABEL, controls["own_mean"]),
            (CONSTANT_LABEL, controls["constant"])]
    if "street_prior" in controls:
        rows.append((STREET_PRIOR_LABEL, controls["street_prior"]))
    corr = controls["frame_corr"]
    return [*format_rows(rows, "Method"),
            f"frame_corr {'n/a (fewer than 3 frames)' if corr is None else f'{corr:.3f}'}, "
            f"frame_gain (abs_rel own-mean - model) {controls['frame_gain']:+.3f}"]


def write_metrics_csv(rows: Iterable[Mapping[str, Any]], path: Path) -> Path:
    """Per-image metrics as CSV: drive, frame, range, gt_points and METRIC_NAMES, one row per image and range."""
    rows = list(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["drive", "frame", "range", "gt_points", *METRIC_NAMES])
        writer.writeheader()
        writer.writerows(rows)
    return path
