"""Evaluation: `siam-depth-eval --checkpoint CKPT --split eigen` (or `--drives ... --frames ...`).

The model is any that the node runs: a checkpoint (`--checkpoint`, torch), the exported ONNX model
(`--onnx`, ONNX Runtime; with `--openvino`, OpenVINO at `--precision`) or a TensorRT engine (`--engine`,
built from `--onnx` when given), run through
`DepthEstimator`. For each test frame it predicts the refined left disparity D_L at full scale
(fraction of width) from the image resized to the network size; the disparity is resized to the
ground-truth size and turned into metres with depth = baseline * fx / (disp * W) (the model's baseline,
calibration fx, W the ground-truth width). Ground truth is the Velodyne scan projected as the KITTI
devkit does (or a stored `proj_depth/velodyne/image_02/*.npz` map when the drive has no scans;
`siam_depth_core.data.ground_truth`). Metrics are the Eigen ones for 0-80 m (GT in (1e-3, 80)) and
1-50 m (GT in (1, 50)), Garg crop, predictions clamped to [1e-3, max]; they are averaged over images as
in monodepth. Also: KITTI 2015 D1-all on frames with `disp_occ_0`, a per-image CSV, a summary JSON, a
printed table laid out like the paper's Table 2, and side-by-side PNGs (image | prediction | LiDAR).
When the model's checkpoint (or ONNX sidecar) records the frames it was trained on (`trained_frames`) and some
of the scored frames are among them, a `WARNING: N of the M scored frames are training frames ...: not a test
score` line stands under the table's rows (and `training_frames_scored` in the summary names them).

Recurrent state: by default every test frame starts from a zero state (`--warmup-frames 0`), as in
the paper's per-image evaluation. `--warmup-frames K` first runs up to K preceding frames of the same
drive (those present on disk, stopping at the first gap) and predicts the test frame with that state,
as the node does on a live stream.

Post-processing (`--post-process`): a Siamese model already outputs the refined D_L (the flipped pass
and monodepth's blending are part of the network), so the flag changes nothing for it. For a
non-Siamese checkpoint it runs the flipped image too and blends both with the same ramp masks at test
time only: monodepth's post-processing.

Temporal consistency: where the evaluated frames of a drive include runs of consecutive frames with OXTS
records (e.g. `--drives` on drive 0009), and for each KITTI odometry sequence named by `--tae-odometry`
(ground-truth poses in `poses/NN.txt`), the temporal alignment error (TAE, Video Depth Anything;
`evaluation.temporal`) is reported twice: with the ConvLSTM state streamed from the first frame of the run
and with every frame from a zero state, beside the TAE of the model's own mean depth map shown in every frame
(a prediction that ignores the image; it never flickers but does not follow the motion). `--no-tae` skips it.
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

from siam_depth_core.cli import OneLineParser, non_negative_int, positive_float, positive_int, run_cli
from siam_depth_core.data import paths
from siam_depth_core.data.ground_truth import (
    EvalFrame,
    ground_truth_depth,
    has_ground_truth,
)
from siam_depth_core.data.kitti import KittiDrive, load_image
from siam_depth_core.data.kitti2015 import (
    NOMINAL_FOCAL_BASELINE_PX_M,
    disparity_to_nominal_depth,
    list_stereo2015_frames,
)
from siam_depth_core.evaluation.baselines import (
    STREET_PRIOR_DRIVE,
    drive_street_prior,
    own_mean_control,
    to_grid,
)
from siam_depth_core.evaluation.metrics import METRIC_NAMES, kitti_d1
from siam_depth_core.evaluation.report import (
    DEPTH_RANGES,
    controls_table,
    format_paper_table,
    range_scores,
    scene_controls,
    write_metrics_csv,
)
from siam_depth_core.evaluation.temporal_streams import (
    PosedSequence,
    drive_sequences,
    format_temporal_table,
    odometry_sequence_with_poses,
    temporal_report,
)
from siam_depth_core.geometry import disparity_to_depth
from siam_depth_core.runtime.inference import DepthEstimator, DepthResult
from siam_depth_core.runtime.model_arguments import add_model_arguments, model_source, runtime_options
from siam_depth_core.trained_frames import overlap_warning, trained_on, training_overlap
from siam_depth_core.visualize import side_by_side, write_png

LOGGER = logging.getLogger("siam_depth.evaluate")
#: Row label of the printed table, by the backend that ran the model.
TABLE_LABELS = {"torch": "this checkpoint", "onnxruntime": "this ONNX model", "tensorrt": "this TensorRT engine",
                "openvino": "this ONNX model (OpenVINO)"}


class SequencePredictor(Protocol):
    """What the evaluation asks of a model: `DepthEstimator`'s `baseline_m` and `predict_sequence`."""

    baseline_m: float

    def predict_sequence(self, images: Sequence[np.ndarray], encoding: str = "rgb8", fx_px: float | None = None
                         ) -> DepthResult:
        """Result of the last image, from a zero state warmed up by the earlier ones."""
        ...


@dataclass
class DepthEvaluation:
    """Per-image rows (drive, frame, range, gt_points, metrics), the per-range means (+ "images") and, per
    range, the model beside the controls that need no image (`report.scene_controls`)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    controls: dict[str, dict[str, Any]] = field(default_factory=dict)


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
                   ranges: dict[str, tuple[float, float]] = DEPTH_RANGES,
                   street_prior_m: np.ndarray | None = None) -> DepthEvaluation:
    """Eigen-style evaluation of `estimator` against LiDAR on `frames`; see the module docstring.

    street_prior_m: an (H,W) depth map scored as a control beside the own-mean and constant ones.
    """
    result = DepthEvaluation()
    depth_preds: list[np.ndarray] = []
    depth_gts: list[np.ndarray] = []
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
        depth_preds.append(depth_pred)
        depth_gts.append(depth_gt)
        for name, depth_range in ranges.items():
            scores = range_scores(depth_gt, depth_pred, depth_range)
            result.rows.append({"drive": frame.drive, "frame": frame.frame, "range": name, **scores})
        if vis_dir is not None and index < vis_count:
            vis_dir.mkdir(parents=True, exist_ok=True)
            write_png(vis_dir / f"{Path(frame.drive).name}_{frame.frame:010d}.png",
                      side_by_side(image, depth_pred, depth_gt, "prediction, depth [m]"))
    for name, depth_range in ranges.items():
        rows = [r for r in result.rows if r["range"] == name and r["gt_points"] > 0]
        if rows:
            result.summary[name] = {k: float(np.mean([r[k] for r in rows])) for k in METRIC_NAMES}
            result.summary[name]["images"] = float(len(rows))
            result.controls[name] = scene_controls(depth_preds, depth_gts, depth_range, street_prior_m)
    return result


def evaluate_stereo2015(estimator: SequencePredictor, folders: Sequence[Path],
                        ranges: dict[str, tuple[float, float]] = DEPTH_RANGES,
                        street_prior_m: np.ndarray | None = None) -> dict[str, Any]:
    """KITTI 2015 frames (`image_2/*` with `disp_occ_0/*` in each folder), each from a zero state: D1-all
    (fraction of bad pixels, mean over images) of the model and of its own-mean control, and the depth
    metrics with the controls (`report.scene_controls`) per range.

    The predicted disparity (fraction of width) is scaled to pixels of the full image width; depths of
    both prediction and ground truth use the nominal KITTI f*B (it cancels in every ratio-based metric).
    """
    frames = list_stereo2015_frames(*folders)
    disparity_gts, depth_preds = [], []
    for frame in frames:
        image, disparity_gt = frame.load()
        disparity_px = estimator.predict_sequence([image]).disparity * image.shape[1]
        disparity_gts.append(disparity_gt)
        depth_preds.append(disparity_to_nominal_depth(disparity_px))
    depth_gts = [disparity_to_nominal_depth(d) for d in disparity_gts]
    controls = {name: scene_controls(depth_preds, depth_gts, depth_range, street_prior_m)
                for name, depth_range in ranges.items()}
    own_mean = own_mean_control([to_grid(d, depth_gts[0].shape) for d in depth_preds])
    d1 = [kitti_d1(gt, NOMINAL_FOCAL_BASELINE_PX_M / np.where(pred > 0, pred, np.inf))
          for gt, pred in zip(disparity_gts, depth_preds, strict=True)]
    d1_own_mean = [kitti_d1(gt, NOMINAL_FOCAL_BASELINE_PX_M / to_grid(own_mean, gt.shape)) for gt in disparity_gts]
    return {"d1_all": float(np.mean(d1)), "own_mean_d1_all": float(np.mean(d1_own_mean)),
            "images": float(len(frames)), "frames": [f.name for f in frames], "depth": controls}


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


def _parser() -> OneLineParser:
    parser = OneLineParser(prog="siam-depth-eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
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
    parser.add_argument("--warmup-frames", type=non_negative_int, default=0, help="run up to this many preceding "
                        "frames first to warm the ConvLSTM state (default 0: fresh state per test frame)")
    parser.add_argument("--baseline", type=positive_float, help="stereo baseline in metres (default: the model's)")
    parser.add_argument("--stereo2015", nargs="+", help="KITTI 2015 folders with image_2/ and disp_occ_0/ (default: "
                        "../shared/data/kitti_stereo_2015/training and eval12 when present); 'none' to skip")
    parser.add_argument("--street-prior", default=STREET_PRIOR_DRIVE, help="drive whose per-pixel median LiDAR "
                        f"depth is scored as a control (default {STREET_PRIOR_DRIVE} when present); 'none' to skip")
    parser.add_argument("--out-dir", default="eval", help="where metrics.csv, summary.json and vis/ go")
    parser.add_argument("--vis", type=non_negative_int, default=4, help="side-by-side PNGs for the first N frames")
    parser.add_argument("--max-images", type=positive_int, help="evaluate only the first N frames (quick checks)")
    parser.add_argument("--skip-missing", action="store_true", help="skip listed frames whose image or LiDAR "
                        "is not on disk (e.g. --split eigen on a partial download) instead of failing")
    parser.add_argument("--no-tae", action="store_true", help="skip the temporal alignment error (TAE, streamed "
                        "vs zero state) on the runs of consecutive evaluated frames with OXTS poses")
    parser.add_argument("--tae-odometry", nargs="+", default=[], metavar="SEQ", help="also report TAE on these "
                        "KITTI odometry sequences (poses/SEQ.txt; e.g. 01 06)")
    parser.add_argument("--odometry-root", help="KITTI odometry root for --tae-odometry (default "
                        "$KITTI_ODOMETRY_ROOT or ../shared/data/kitti_odometry)")
    return parser


def _stereo2015_folders(args: argparse.Namespace) -> list[Path]:
    if args.stereo2015 == ["none"]:
        return []
    if args.stereo2015:
        return [Path(folder) for folder in args.stereo2015]
    default = paths.shared_data_dir() / "kitti_stereo_2015"
    return [folder for folder in (default / "training", default / "eval12") if (folder / "disp_occ_0").is_dir()]


def _street_prior(args: argparse.Namespace, root: Path) -> np.ndarray | None:
    if args.street_prior == "none":
        return None
    if not KittiDrive(root, args.street_prior).exists():
        if args.street_prior != STREET_PRIOR_DRIVE:
            raise FileNotFoundError(f"street-prior drive {args.street_prior} not found under {root}")
        LOGGER.info("street prior skipped: %s is not under %s", STREET_PRIOR_DRIVE, root)
        return None
    return drive_street_prior(root, args.street_prior)


def _posed_sequences(args: argparse.Namespace, frames: list[EvalFrame], root: Path) -> list[PosedSequence]:
    """The TAE sequences: runs of consecutive evaluated frames with OXTS, then the --tae-odometry sequences."""
    sequences: list[PosedSequence] = []
    for drive in dict.fromkeys(f.drive for f in frames):
        sequences += drive_sequences(root, drive, [f.frame for f in frames if f.drive == drive and f.camera == 2],
                                     ext=args.ext)
    odometry_root = Path(args.odometry_root) if args.odometry_root else paths.kitti_odometry_root()
    sequences += [odometry_sequence_with_poses(odometry_root, name, args.max_images) for name in args.tae_odometry]
    return sequences


def _missing_frames(frames: list[EvalFrame], root: Path, ext: str) -> list[EvalFrame]:
    return [f for f in frames if not ((drive := KittiDrive(root, f.drive)).image_path(f.frame, f.camera, ext).is_file()
                                      and has_ground_truth(drive, f.frame, f.camera))]


def _training_frames_scored(estimator: DepthEstimator, frames: list[EvalFrame], label: str
                            ) -> tuple[dict[str, list[int]] | None, str | None]:
    """The scored frames that the model trained on (drive -> frames; None when its checkpoint does not record
    them) and the warning line that says so (None when there are none)."""
    record = trained_on(estimator.meta.extra)
    overlap = None if record is None else training_overlap(record, [(f.drive, f.frame) for f in frames])
    warning = overlap_warning(overlap or {}, len(frames), label)
    if warning is not None:
        LOGGER.warning(warning)
    return overlap, warning


def _print_report(report: dict[str, Any], evaluation: DepthEvaluation, label: str, warning: str | None = None) -> None:
    table = format_paper_table(evaluation.summary, label=label)
    if warning is not None:  # under the rows of every depth range, where the scores are read
        table = "\n".join(f"{warning}\n" if line == "" else line for line in table.split("\n"))
    print(table)
    for name, controls in evaluation.controls.items():
        print(f"Controls, {name} (Garg crop):")
        print("\n".join(controls_table(controls, label)))
        print()
    if report.get("temporal"):
        print("\n".join(format_temporal_table(report["temporal"])))
        print()
    if "kitti2015" in report:
        k15 = report["kitti2015"]
        print(f"KITTI 2015 ({int(k15['images'])} frames): D1-all {100 * k15['d1_all']:.2f} % "
              f"(own-mean control {100 * k15['own_mean_d1_all']:.2f} %)")
        for name, controls in k15["depth"].items():
            print(f"KITTI 2015 depth from disparity, {name}:")
            print("\n".join(controls_table(controls, label)))
            print()


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point `siam-depth-eval`."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    return run_cli("siam-depth-eval", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    source = model_source(args, "siam-depth-eval")
    estimator = DepthEstimator(source, runtime_options(args, post_process=args.post_process),
                               baseline_m=args.baseline)
    root = Path(args.data_root) if args.data_root else paths.kitti_raw_root()
    frames = frames_from_args(args, root)
    missing = _missing_frames(frames, root, args.ext)
    if missing and not args.skip_missing:
        raise FileNotFoundError(f"{len(missing)} of {len(frames)} listed frames have no image or LiDAR under {root} "
                                f"(first: {missing[0].drive} frame {missing[0].frame}); pass --skip-missing to "
                                "evaluate the others (a partial download)")
    if missing:
        LOGGER.warning("skipping %d of %d listed frames missing under %s", len(missing), len(frames), root)
        frames = [f for f in frames if f not in set(missing)]
    if args.max_images:
        frames = frames[:args.max_images]
    if not frames:
        raise ValueError(f"no test frames with LiDAR ground truth under {root}")
    trained, warning = _training_frames_scored(estimator, frames, TABLE_LABELS[source.backend])
    out_dir = Path(args.out_dir)
    sequences = None if args.no_tae else _posed_sequences(args, frames, root)  # bad --tae-odometry fails early
    prior = _street_prior(args, root)
    LOGGER.info("evaluating %s (%s) on %d frames (baseline %.4f m, warm-up %d frames)", source, source.backend,
                len(frames), estimator.baseline_m, args.warmup_frames)
    evaluation = evaluate_depth(estimator, frames, root, warmup=args.warmup_frames, ext=args.ext,
                                vis_dir=out_dir / "vis", vis_count=args.vis, street_prior_m=prior)
    write_metrics_csv(evaluation.rows, out_dir / "metrics.csv")
    report: dict[str, Any] = {"model": str(source), "backend": source.backend, "baseline_m": estimator.baseline_m,
                              "depth": evaluation.summary, "controls": evaluation.controls,
                              "warmup_frames": args.warmup_frames, "post_process": args.post_process,
                              "training_frames_scored": trained}
    if sequences is not None:
        report["temporal"] = temporal_report(estimator, sequences)
    stereo_folders = _stereo2015_folders(args)
    if stereo_folders:
        report["kitti2015"] = evaluate_stereo2015(estimator, stereo_folders, street_prior_m=prior)
    (out_dir / "summary.json").write_text(json.dumps(report, indent=2))
    _print_report(report, evaluation, TABLE_LABELS[source.backend], warning)
    print(f"per-image metrics: {out_dir / 'metrics.csv'}; summary: {out_dir / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
