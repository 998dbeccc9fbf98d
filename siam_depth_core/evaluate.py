"""Evaluation: `siam-depth-eval --checkpoint CKPT --split eigen` (or `--drives ... --frames ...`).

The model is any that the node runs: a checkpoint (`--checkpoint`, torch), the exported ONNX model
(`--onnx`, ONNX Runtime) or a TensorRT engine (`--engine`, built from `--onnx` when given), run through
`DepthEstimator`. For each test frame it predicts the refined left disparity D_L at full scale
(fraction of width) from the image resized to the network size; the disparity is resized to the
ground-truth size and turned into metres with depth = baseline * fx / (disp * W) (the model's baseline,
calibration fx, W the ground-truth width). Ground truth is the Velodyne scan projected as the KITTI
devkit does (or a stored `proj_depth/velodyne/image_02/*.npz` map when the drive has no scans;
`siam_depth_core.data.ground_truth`). Metrics are the Eigen ones for 0-80 m (GT in (1e-3, 80)) and
1-50 m (GT in (1, 50)), Garg crop, predictions clamped to [1e-3, max]; they are averaged over images as
in monodepth. Also: KITTI 2015 D1-all on frames with `disp_occ_0`, a per-image CSV, a summary JSON, a
printed table laid out like the paper's Table 2, and side-by-side PNGs (image | prediction | LiDAR).

Recurrent state: by default every test frame starts from a zero state (`--warmup-frames 0`), as in
the paper's per-image evaluation. `--warmup-frames K` first runs up to K preceding frames of the same
drive (those present on disk, stopping at the first gap) and predicts the test frame with that state,
as the node does on a live stream.

Post-processing (`--post-process`): a Siamese model already outputs the refined D_L (the flipped pass
and monodepth's blending are part of the network), so the flag changes nothing for it. For a
non-Siamese checkpoint it runs the flipped image too and blends both with the same ramp masks at test
time only: monodepth's post-processing.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from siam_depth_core.backends import BackendError
from siam_depth_core.backends.source import (
    CheckpointSource,
    EngineSource,
    ModelSource,
    OnnxSource,
    RuntimeOptions,
)
from siam_depth_core.checkpoint import CheckpointError
from siam_depth_core.data import paths
from siam_depth_core.data.ground_truth import EvalFrame, ground_truth_depth, has_ground_truth
from siam_depth_core.data.kitti import KittiDrive, load_disparity_png, load_image
from siam_depth_core.geometry import disparity_to_depth
from siam_depth_core.inference import DepthEstimator, DepthResult
from siam_depth_core.metrics import METRIC_NAMES, kitti_d1
from siam_depth_core.report import DEPTH_RANGES, format_paper_table, range_scores, write_metrics_csv
from siam_depth_core.visualize import side_by_side, write_png

LOGGER = logging.getLogger("siam_depth.evaluate")
#: Row label of the printed table, by the backend that ran the model.
TABLE_LABELS = {"torch": "this checkpoint", "onnxruntime": "this ONNX model", "tensorrt": "this TensorRT engine"}


class SequencePredictor(Protocol):
    """What the evaluation asks of a model: `DepthEstimator`'s `baseline_m` and `predict_sequence`."""

    baseline_m: float

    def predict_sequence(self, images: Sequence[np.ndarray], encoding: str = "rgb8", fx_px: float | None = None
                         ) -> DepthResult:
        """Result of the last image, from a zero state warmed up by the earlier ones."""
        ...


@dataclass
class DepthEvaluation:
    """Per-image rows (drive, frame, range, gt_points, metrics) and the per-range means (+ "images")."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, dict[str, float]] = field(default_factory=dict)


def warmup_frames(drive: KittiDrive, frame: EvalFrame, count: int, ext: str = ".png") -> list[int]:
    """Up to `count` frames just before `frame` that exist on disk, oldest first, stopping at the first gap."""
    frames: list[int] = []
    for previous in range(frame.frame - 1, frame.frame - 1 - count, -1):
        if previous < 0 or not drive.image_path(previous, frame.camera, ext).is_file():
            break
        frames.append(previous)
    return frames[::-1]


def evaluate_depth(estimator: SequencePredictor, frames: Sequence[EvalFrame], root: Path, warmup: int = 0,
                   ext: str = ".png", vis_dir: Path | None = None, vis_count: int = 0,
                   ranges: dict[str, tuple[float, float]] = DEPTH_RANGES) -> DepthEvaluation:
    """Eigen-style evaluation of `estimator` against LiDAR on `frames`; see the module docstring."""
    result = DepthEvaluation()
    drives: dict[str, KittiDrive] = {}
    for index, frame in enumerate(frames):
        drive = drives.setdefault(frame.drive, KittiDrive(root, frame.drive))
        images = [load_image(drive.image_path(number, frame.camera, ext))
                  for number in [*warmup_frames(drive, frame, warmup, ext), frame.frame]]
        fx_px = float(drive.calibration.projection(frame.camera)[0, 0])
        disparity = estimator.predict_sequence(images, "rgb8", fx_px).disparity
        image = images[-1]
        depth_gt = ground_truth_depth(drive, frame.frame, frame.camera)
        if depth_gt.shape != image.shape[:2]:
            raise ValueError(f"{frame.drive} frame {frame.frame}: LiDAR map {depth_gt.shape} and image "
                             f"{image.shape[:2]} differ in size")
        depth_pred = disparity_to_depth(disparity, estimator.baseline_m, fx_px, image.shape[1])
        for name, depth_range in ranges.items():
            scores = range_scores(depth_gt, depth_pred, depth_range)
            result.rows.append({"drive": frame.drive, "frame": frame.frame, "range": name, **scores})
        if vis_dir is not None and index < vis_count:
            vis_dir.mkdir(parents=True, exist_ok=True)
            write_png(vis_dir / f"{Path(frame.drive).name}_{frame.frame:010d}.png",
                      side_by_side(image, depth_pred, depth_gt))
    for name in ranges:
        rows = [r for r in result.rows if r["range"] == name and r["gt_points"] > 0]
        if rows:
            result.summary[name] = {k: float(np.mean([r[k] for r in rows])) for k in METRIC_NAMES}
            result.summary[name]["images"] = float(len(rows))
    return result


def evaluate_stereo2015(estimator: SequencePredictor, folder: Path) -> dict[str, float]:
    """KITTI 2015 D1-all (fraction of bad pixels, mean over images) of `image_2/*` vs `disp_occ_0/*`.

    The predicted disparity (fraction of width) is scaled to pixels of the full image width.
    """
    gt_files = sorted((folder / "disp_occ_0").glob("*.png"))
    if not gt_files:
        raise FileNotFoundError(f"no disp_occ_0/*.png under {folder} (KITTI 2015 `training/` folder expected)")
    scores = []
    for gt_file in gt_files:
        image = load_image(folder / "image_2" / gt_file.name)
        disparity = estimator.predict_sequence([image]).disparity
        scores.append(float(kitti_d1(load_disparity_png(gt_file), disparity * image.shape[1])))
    return {"d1_all": float(np.mean(scores)), "images": float(len(scores))}


def frames_from_args(args: argparse.Namespace, root: Path) -> list[EvalFrame]:
    """The frames named by --split (split file `<split>/test_files.txt`) or --drives/--frames."""
    if args.drives:
        wanted = [int(f) for f in args.frames.split(",")] if args.frames else None
        frames = []
        for name in args.drives:
            drive = KittiDrive(root, name)
            frames += [EvalFrame(name, f) for f in (wanted if wanted is not None else drive.frames(camera=2))
                       if wanted is not None or has_ground_truth(drive, f)]
        return frames
    from siam_depth_core.data.splits import read_split

    return [EvalFrame(e.drive, e.frame, e.camera) for e in read_split(args.split, "test", args.splits_dir)]


def model_source(args: argparse.Namespace) -> ModelSource:
    """--checkpoint, --onnx or --engine (+ --onnx to build it from) as a model source; ValueError otherwise."""
    if args.checkpoint:
        if args.onnx or args.engine:
            raise ValueError("give one model: --checkpoint, or --onnx (ONNX Runtime), or --engine (TensorRT, "
                             "with --onnx to build it from)")
        return CheckpointSource(Path(args.checkpoint))
    if args.engine:
        return EngineSource(Path(args.engine), Path(args.onnx) if args.onnx else None)
    if args.onnx:
        return OnnxSource(Path(args.onnx))
    raise ValueError("no model given: use --checkpoint model.pt, --onnx model.onnx or --engine model.engine")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siam-depth-eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="siam_depth checkpoint (.pt), run with torch")
    parser.add_argument("--onnx", help="exported ONNX model (siam-depth-export), run with ONNX Runtime; with "
                                       "--engine: the ONNX to build the engine from")
    parser.add_argument("--engine", help="TensorRT engine (needs an NVIDIA GPU and tensorrt)")
    parser.add_argument("--split", default="eigen", help="split whose test_files.txt lists the test frames "
                                                         "(default eigen: the 697 Eigen test images)")
    parser.add_argument("--drives", nargs="+", help="evaluate these drives instead of a split "
                                                    "(e.g. 2011_09_26/2011_09_26_drive_0009_sync)")
    parser.add_argument("--frames", help="comma-separated frame indices for --drives (default: every frame "
                                         "with LiDAR)")
    parser.add_argument("--data-root", help="KITTI raw root (default $KITTI_ROOT or ../shared/data/kitti_raw)")
    parser.add_argument("--splits-dir", help="split lists folder (default $SIAM_DEPTH_SPLITS or "
                                             "../shared/data/splits/monodepth2)")
    parser.add_argument("--ext", default=".png", help="image extension on disk (.png or .jpg)")
    parser.add_argument("--post-process", action="store_true", help="monodepth post-processing for a "
                        "non-Siamese checkpoint (no effect on a Siamese one, whose output is already refined)")
    parser.add_argument("--warmup-frames", type=int, default=0, help="run up to this many preceding frames "
                        "first to warm the ConvLSTM state (default 0: fresh state per test frame)")
    parser.add_argument("--baseline", type=float, help="stereo baseline in metres (default: the model's)")
    parser.add_argument("--stereo2015", help="KITTI 2015 `training/` folder for D1-all (default: "
                        "../shared/data/kitti_stereo_2015/training when present); 'none' to skip")
    parser.add_argument("--out-dir", default="eval", help="where metrics.csv, summary.json and vis/ go")
    parser.add_argument("--vis", type=int, default=4, help="side-by-side PNGs for the first N frames")
    parser.add_argument("--max-images", type=int, help="evaluate only the first N frames (quick checks)")
    parser.add_argument("--skip-missing", action="store_true", help="skip listed frames whose image or LiDAR "
                        "is not on disk (e.g. --split eigen on a partial download) instead of failing")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cpu; the GPU for --engine)")
    parser.add_argument("--num-threads", type=int, default=0, help="intra-op CPU threads (default 0: the "
                        "library's default)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point `siam-depth-eval`."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    if args.warmup_frames < 0:
        print("siam-depth-eval: --warmup-frames must be >= 0", file=sys.stderr)
        return 2
    try:
        source = model_source(args)
        options = RuntimeOptions(device=args.device, num_threads=args.num_threads, post_process=args.post_process)
        estimator = DepthEstimator(source, options, baseline_m=args.baseline)
    except (CheckpointError, BackendError, ValueError) as error:
        print(f"siam-depth-eval: error: {error}", file=sys.stderr)
        return 2
    root = Path(args.data_root) if args.data_root else paths.kitti_raw_root()
    frames = frames_from_args(args, root)
    if args.skip_missing:
        present = [f for f in frames if (drive := KittiDrive(root, f.drive)).image_path(f.frame, f.camera, args.ext)
                   .is_file() and has_ground_truth(drive, f.frame, f.camera)]
        if len(present) < len(frames):
            LOGGER.warning("skipping %d of %d listed frames missing under %s", len(frames) - len(present),
                           len(frames), root)
        frames = present
    if args.max_images:
        frames = frames[:args.max_images]
    if not frames:
        print("siam-depth-eval: no test frames with LiDAR ground truth", file=sys.stderr)
        return 2
    out_dir = Path(args.out_dir)
    LOGGER.info("evaluating %s (%s) on %d frames (baseline %.4f m, warm-up %d frames)", source, source.backend,
                len(frames), estimator.baseline_m, args.warmup_frames)
    evaluation = evaluate_depth(estimator, frames, root, warmup=args.warmup_frames, ext=args.ext,
                                vis_dir=out_dir / "vis", vis_count=args.vis)
    write_metrics_csv(evaluation.rows, out_dir / "metrics.csv")
    report: dict[str, Any] = {"model": str(source), "backend": source.backend, "baseline_m": estimator.baseline_m,
                              "depth": evaluation.summary, "warmup_frames": args.warmup_frames,
                              "post_process": args.post_process}
    stereo_folder = (Path(args.stereo2015) if args.stereo2015 and args.stereo2015 != "none"
                     else paths.shared_data_dir() / "kitti_stereo_2015" / "training")
    if args.stereo2015 != "none" and (stereo_folder / "disp_occ_0").is_dir():
        report["kitti2015"] = evaluate_stereo2015(estimator, stereo_folder)
    (out_dir / "summary.json").write_text(json.dumps(report, indent=2))
    print(format_paper_table(evaluation.summary, label=TABLE_LABELS[source.backend]))
    if "kitti2015" in report:
        k15 = report["kitti2015"]
        print(f"KITTI 2015 D1-all: {100 * k15['d1_all']:.2f} % ({int(k15['images'])} images)")
    print(f"per-image metrics: {out_dir / 'metrics.csv'}; summary: {out_dir / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
