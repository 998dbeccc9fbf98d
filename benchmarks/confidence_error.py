"""Does the confidence map pick out the pixels whose depth is wrong? Depth error against KITTI ground truth when
the least confident pixels are discarded, next to two controls that discard the same number of pixels.

The confidence (`refine.disparity_confidence`, the node's `depth/confidence`) is the agreement of the Siamese
pass's two estimates of each pixel's left disparity. Frames (real KITTI data from `../shared/data`):

- drive 2011_09_26_0023, frames 0-6 (not trained on by the shipped model), streamed through one
  `DepthEstimator` as the node streams a camera (state carried), against its projected LiDAR depth;
- the KITTI Stereo 2015 frames (training 000046_10 and the 12 of eval12), each on its own from a zero
  state, against their ground-truth disparity as depth of the nominal KITTI rig (`data.kitti2015`).

Per frame, the evaluated pixels are Eigen's (ground truth in (0, 80) m, Garg crop); predictions are clamped to
[1e-3, 80] m as in the evaluation. For each kept fraction the most confident pixels of the frame are kept and
the Eigen metrics computed over them; rows are means over the frames of a data set. Controls at the same kept
fraction: `random` (a random subset, mean of 5 seeds: shows the effect of keeping fewer pixels alone) and
`nearest` (the nearest predicted depths: far pixels have larger absolute errors, so dropping them lowers
RMSE by itself). Confidence helps where its row beats both controls. Because confidence may itself depend
on depth, `confidence, depth-matched` keeps the most confident pixels within each decile of predicted depth
(the kept pixels then have the depth distribution of all of them): a gain there is information that depth
alone does not give. Threshold rows keep the pixels with confidence >= t (what the node's
`cloud_min_confidence` does) and say how many that is.

    python -m benchmarks.confidence_error                                   # the shipped model
    python -m benchmarks.confidence_error --checkpoint runs/paper/best.pt --json confidence.json
    python -m benchmarks.confidence_error --markdown                        # the table of models/README.md
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = REPO_ROOT / "models" / "siam_depth_small.pt"
DRIVE_0023 = "2011_09_26/2011_09_26_drive_0023_sync"
KEEP_FRACTIONS = (1.0, 0.9, 0.75, 0.5)
THRESHOLDS = (0.9, 0.95)
RANDOM_SEEDS = 5
#: Bins of predicted depth (equally populated) of the depth-matched confidence selection.
DEPTH_BINS = 10
MAX_DEPTH_M = 80.0
METRICS = ("abs_rel", "rmse", "a1")


@dataclass(frozen=True)
class ScoredFrame:
    """One evaluation frame's pixels inside Eigen's mask: ground truth and prediction (metres, (N,)), and the
    prediction's confidence ((N,) in [0, 1])."""

    gt_m: np.ndarray
    pred_m: np.ndarray
    confidence: np.ndarray


def score_frame(gt_depth_m: np.ndarray, pred_depth_m: np.ndarray, confidence: np.ndarray) -> ScoredFrame:
    """(H,W) ground truth (0 = none), prediction (NaN = invalid, counted as MAX_DEPTH_M as the evaluation does)
    and confidence -> the pixels of Eigen's 0-80 m mask with the Garg crop."""
    from siam_depth_core.evaluation.metrics import PRED_MIN_DEPTH_M, eigen_eval_mask

    mask = eigen_eval_mask(gt_depth_m, 1e-3, MAX_DEPTH_M, garg_crop=True)
    pred = np.nan_to_num(pred_depth_m[mask].astype(np.float64), nan=MAX_DEPTH_M, posinf=MAX_DEPTH_M)
    return ScoredFrame(gt_depth_m[mask].astype(np.float64), np.clip(pred, PRED_MIN_DEPTH_M, MAX_DEPTH_M),
                       confidence[mask].astype(np.float64))


def _top(values: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of the `fraction` of entries with the largest values (ties broken by position)."""
    keep = np.zeros(values.size, dtype=bool)
    count = max(int(round(fraction * values.size)), 1)
    keep[np.argsort(-values, kind="stable")[:count]] = True
    return keep


def _top_within_depth_bins(frame: ScoredFrame, fraction: float, bins: int = DEPTH_BINS) -> np.ndarray:
    """The most confident `fraction` of each of `bins` equally populated bins of predicted depth: the kept
    pixels have the depth distribution of all pixels, so any gain is information beyond depth."""
    edges = np.quantile(frame.pred_m, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    bin_of = np.searchsorted(edges, frame.pred_m, side="right")
    keep = np.zeros(frame.pred_m.size, dtype=bool)
    for index in np.unique(bin_of):
        members = np.flatnonzero(bin_of == index)
        keep[members[_top(frame.confidence[members], fraction)]] = True
    return keep


#: How each selection picks the kept pixels of a frame: (frame, kept fraction, rng) -> boolean mask.
SELECTIONS: dict[str, Callable[[ScoredFrame, float, np.random.Generator], np.ndarray]] = {
    "confidence": lambda frame, fraction, rng: _top(frame.confidence, fraction),
    "confidence, depth-matched": lambda frame, fraction, rng: _top_within_depth_bins(frame, fraction),
    "random": lambda frame, fraction, rng: _top(rng.random(frame.gt_m.size), fraction),
    "nearest": lambda frame, fraction, rng: _top(-frame.pred_m, fraction),
}


def _mean_metrics(frames: Sequence[ScoredFrame], masks: Sequence[np.ndarray]) -> dict[str, float]:
    from siam_depth_core.evaluation.metrics import compute_depth_metrics

    per_frame = [compute_depth_metrics(frame.gt_m[keep], frame.pred_m[keep]) for frame, keep in zip(frames, masks,
                                                                                                      strict=True)]
    return {name: float(np.mean([values[name] for values in per_frame])) for name in METRICS}


def selection_table(frames: Sequence[ScoredFrame], keep_fractions: Iterable[float] = KEEP_FRACTIONS,
                    thresholds: Iterable[float] = THRESHOLDS) -> list[dict[str, Any]]:
    """Rows {selection, kept (fraction of the evaluated pixels), threshold, abs_rel, rmse, a1} for every
    selection at every kept fraction, then one row per confidence threshold."""
    rows = []
    for fraction in keep_fractions:
        for name, select in SELECTIONS.items():
            if fraction == 1.0 and name != "confidence":
                continue  # every selection keeps everything at 100 %
            seeds = range(RANDOM_SEEDS) if name == "random" else range(1)
            runs = [_mean_metrics(frames, [select(frame, fraction, np.random.default_rng(seed)) for frame in frames])
                    for seed in seeds]
            rows.append({"selection": "all pixels" if fraction == 1.0 else name, "kept": fraction, "threshold": None,
                         **{metric: float(np.mean([run[metric] for run in runs])) for metric in METRICS}})
    for threshold in thresholds:
        masks = [frame.confidence >= threshold for frame in frames]
        usable = [(frame, keep) for frame, keep in zip(frames, masks, strict=True) if keep.any()]
        kept = sum(int(keep.sum()) for keep in masks) / sum(frame.gt_m.size for frame in frames)
        metrics = _mean_metrics(*zip(*usable, strict=True)) if usable else dict.fromkeys(METRICS, float("nan"))
        rows.append({"selection": f"confidence >= {threshold:g}", "kept": kept, "threshold": threshold, **metrics})
    return rows


def drive_0023_frames(checkpoint: Path, num_threads: int = 1) -> list[ScoredFrame]:
    """Drive 0023 frames 0-6 streamed through one estimator (state carried, as in the node) against LiDAR."""
    from siam_depth_core.data.ground_truth import ground_truth_depth
    from siam_depth_core.data.kitti import KittiDrive, load_image
    from siam_depth_core.data.paths import kitti_raw_root
    from siam_depth_core.runtime.backends.source import CheckpointSource, RuntimeOptions
    from siam_depth_core.runtime.inference import DepthEstimator

    drive = KittiDrive(kitti_raw_root(), DRIVE_0023)
    if not drive.exists():
        raise FileNotFoundError(f"KITTI drive not found at {drive.path} (set KITTI_ROOT or SIAM_DEPTH_DATA)")
    estimator = DepthEstimator(CheckpointSource(checkpoint), RuntimeOptions(num_threads=num_threads),
                               max_gap_s=3600.0, max_depth=MAX_DEPTH_M)
    fx_px = float(drive.calibration.camera_matrix[0, 0])
    stamps = drive.timestamps_ns()
    frames = []
    for index in drive.frames():
        result = estimator.step(load_image(drive.image_path(index)), stamps[index] * 1e-9, "rgb8", fx_px=fx_px)
        frames.append(score_frame(ground_truth_depth(drive, index), result.depth_m, _confidence(result)))
    return frames


def stereo2015_frames(checkpoint: Path, num_threads: int = 1) -> list[ScoredFrame]:
    """The KITTI 2015 frames, each from a zero state, against their disparity GT as nominal-rig depth."""
    from siam_depth_core.data.kitti2015 import (
        NOMINAL_FOCAL_BASELINE_PX_M,
        disparity_to_nominal_depth,
        list_stereo2015_frames,
    )
    from siam_depth_core.data.paths import shared_data_dir
    from siam_depth_core.runtime.backends.source import CheckpointSource, RuntimeOptions
    from siam_depth_core.runtime.inference import DepthEstimator

    root = shared_data_dir() / "kitti_stereo_2015"
    estimator = DepthEstimator(CheckpointSource(checkpoint), RuntimeOptions(num_threads=num_threads),
                               max_depth=MAX_DEPTH_M)
    fx_px = NOMINAL_FOCAL_BASELINE_PX_M / estimator.baseline_m  # the nominal rig: depth = f*B / disparity
    frames = []
    for item in list_stereo2015_frames(root / "training", root / "eval12"):
        image, disparity_px = item.load()
        result = estimator.predict_sequence([image], "rgb8", fx_px=fx_px)
        frames.append(score_frame(disparity_to_nominal_depth(disparity_px), result.depth_m, _confidence(result)))
    return frames


def _confidence(result: Any) -> np.ndarray:
    if result.confidence is None:
        raise ValueError("the model runs without the Siamese pass: it has no confidence to evaluate")
    return result.confidence


def confidence_report(checkpoint: Path = DEFAULT_CHECKPOINT, num_threads: int = 1) -> dict[str, Any]:
    """Both data sets' tables (see the module docstring) for `checkpoint`: what the lead re-runs for a new model."""
    data_sets = {"drive 0023 (LiDAR, 7 frames, streamed)": drive_0023_frames(checkpoint, num_threads),
                 "KITTI 2015 (disparity GT, 13 frames)": stereo2015_frames(checkpoint, num_threads)}
    return {"checkpoint": str(checkpoint),
            "tables": {name: {"frames": len(frames), "pixels": int(sum(f.gt_m.size for f in frames)),
                              "median_confidence": float(np.median(np.concatenate([f.confidence for f in frames]))),
                              "rows": selection_table(frames)}
                       for name, frames in data_sets.items()}}


#: How the markdown table names each selection.
SELECTION_LABELS = {"all pixels": "all pixels", "confidence": "most confident",
                    "confidence, depth-matched": "most confident per depth decile",
                    "random": "random (control)", "nearest": "nearest predicted (control)"}


def markdown(report: dict[str, Any]) -> str:
    """The report as markdown tables (one per data set)."""
    lines = []
    for name, table in report["tables"].items():
        lines += [f"**{name}**: {table['pixels']:,} evaluated pixels, median confidence "
                  f"{table['median_confidence']:.3f}", "",
                  "| pixels kept | selection | ARD (abs_rel) | RMSE (m) | d<1.25 |", "|---:|---|---:|---:|---:|"]
        for row in table["rows"]:
            label = SELECTION_LABELS.get(row["selection"], row["selection"])
            lines.append(f"| {100 * row['kept']:.0f} % | {label} | {row['abs_rel']:.3f} | {row['rmse']:.2f} | "
                         f"{row['a1']:.3f} |")
        lines.append("")
    return "\n".join(lines)


def build_arg_parser() -> argparse.ArgumentParser:
    from siam_depth_core.cli import OneLineParser

    parser = OneLineParser(prog="confidence_error", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, help="model to evaluate")
    parser.add_argument("--num-threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables instead of JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    from siam_depth_core.cli import run_cli

    args = build_arg_parser().parse_args(argv)
    return run_cli("confidence_error", lambda: _main(args))


def _main(args: argparse.Namespace) -> int:
    report = confidence_report(args.checkpoint, args.num_threads)
    print(markdown(report) if args.markdown else json.dumps(report, indent=2))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
