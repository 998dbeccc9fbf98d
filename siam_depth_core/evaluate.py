"""Evaluation: `siam-depth-eval --checkpoint CKPT --split eigen` (or `--drives ... --frames ...`).

For each test frame the network predicts the refined left disparity D_L at full scale (fraction of
width) from the image resized to the checkpoint's training size; the disparity is resized to the
ground-truth size and turned into metres with depth = baseline * fx / (disp * W) (checkpoint baseline,
calibration fx, W the ground-truth width). Ground truth is the Velodyne scan projected as the KITTI
devkit does (or a stored `proj_depth/velodyne/image_02/*.npz` map when the drive has no scans).
Metrics are the Eigen ones for 0-80 m (GT in (1e-3, 80)) and 1-50 m (GT in (1, 50)), Garg crop,
predictions clamped to [1e-3, max]; they are averaged over images as in monodepth.
Also: KITTI 2015 D1-all on frames with `disp_occ_0`, a per-image CSV, a summary JSON, a printed table
laid out like the paper's Table 2, and side-by-side PNGs (image | prediction | LiDAR).

Recurrent state: by default every test frame starts from a zero state (`--warmup-frames 0`), as in
the paper's per-image evaluation. `--warmup-frames K` first runs up to K preceding frames of the same
drive (those present on disk, stopping at the first gap) and predicts the test frame with that state,
as the node does on a live stream.

Post-processing (`--post-process`): a Siamese checkpoint already outputs the refined D_L (the
flipped pass and monodepth's blending are part of the network), so the flag changes nothing for it.
For a non-Siamese checkpoint it runs the flipped image too and blends both with the same ramp masks
at test time only: monodepth's post-processing.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from siam_depth_core.checkpoint import ModelMeta, load_model
from siam_depth_core.data import paths
from siam_depth_core.data.calib import StereoCalibration, load_stereo_calibration
from siam_depth_core.data.kitti import (
    calib_dir,
    frame_path,
    list_frames,
    load_disparity_png,
    load_image,
    load_velodyne_points,
    velodyne_depth_map,
    velodyne_path,
)
from siam_depth_core.geometry import disparity_to_depth
from siam_depth_core.inference import preprocess
from siam_depth_core.metrics import METRIC_NAMES, evaluate_depth_map, garg_crop_mask, kitti_d1
from siam_depth_core.model import SiamDepthNet, run_siamese
from siam_depth_core.visualize import colorize

LOGGER = logging.getLogger("siam_depth.evaluate")

#: Evaluation ranges as (min GT depth, max depth = GT bound and prediction cap), metres.
DEPTH_RANGES: dict[str, tuple[float, float]] = {"0-80m": (1e-3, 80.0), "1-50m": (1.0, 50.0)}
#: Column titles of the paper's Table 2, in METRIC_NAMES order.
TABLE_TITLES = ("ARD", "SRD", "RMSE", "RMSE(log)", "d<1.25", "d<1.25^2", "d<1.25^3")
#: The paper's Table 2 row "Ours, K, Stereo" (trained on KITTI only), for comparison.
PAPER_RESULTS: dict[str, tuple[float, ...]] = {
    "0-80m": (0.131, 1.075, 5.318, 0.212, 0.846, 0.947, 0.976),
    "1-50m": (0.109, 0.634, 3.636, 0.182, 0.882, 0.962, 0.983),
}

#: (image (H,W,3) uint8 RGB, state or None) -> ((H,W) float32 disparity as a fraction of width, new state).
Predictor = Callable[[np.ndarray, Any], tuple[np.ndarray, Any]]


class NetworkPredictor:
    """Runs a checkpoint's network on full camera images and returns D_L at the image size.

    post_process: for a non-Siamese network, add the flipped pass and blend (monodepth post-processing);
    a Siamese network always does this already.
    """

    def __init__(self, net: SiamDepthNet, meta: ModelMeta, device: str | torch.device = "cpu",
                 post_process: bool = False) -> None:
        self.net = net.to(device).eval()
        self.meta = meta
        self.device = torch.device(device)
        self.siamese = bool(meta.siamese or post_process)

    def __call__(self, image: np.ndarray, state: Any = None) -> tuple[np.ndarray, Any]:
        network_input = torch.from_numpy(preprocess(image, "rgb8", (self.meta.height, self.meta.width)))
        with torch.no_grad():
            output, state = run_siamese(self.net, network_input.to(self.device), state, siamese=self.siamese)
        disp = output.disp_refined[0][0, 0].float().cpu().numpy()
        height, width = image.shape[:2]
        return cv2.resize(disp, (width, height), interpolation=cv2.INTER_LINEAR), state


@dataclass(frozen=True)
class EvalFrame:
    """One test image: drive (`<date>/<date>_drive_<nnnn>_sync`), frame index, camera (2 left, 3 right)."""

    drive: str
    frame: int
    camera: int = 2


def ground_truth_depth(root: Path, frame: EvalFrame, calib: StereoCalibration) -> np.ndarray:
    """(H,W) float32 LiDAR depth in metres (0 = no return) for one test frame.

    From the Velodyne scan when present, else from `proj_depth/velodyne/image_0{camera}/<frame>.npz`
    (key `velodyne_depth`, as in PackNet-SfM's KITTI excerpts).
    """
    scan = velodyne_path(root, frame.drive, frame.frame)
    if scan.is_file():
        return velodyne_depth_map(load_velodyne_points(scan), calib, camera=frame.camera)
    stored = root / frame.drive / "proj_depth" / "velodyne" / f"image_0{frame.camera}" / f"{frame.frame:010d}.npz"
    if stored.is_file():
        with np.load(stored) as data:
            return np.asarray(data["velodyne_depth"], dtype=np.float32)
    raise FileNotFoundError(f"no LiDAR ground truth for {frame.drive} frame {frame.frame}: neither {scan} nor "
                            f"{stored} exists")


def has_ground_truth(root: Path, frame: EvalFrame) -> bool:
    """Whether `ground_truth_depth` can find a scan or a stored depth map for `frame`."""
    stored = root / frame.drive / "proj_depth" / "velodyne" / f"image_0{frame.camera}" / f"{frame.frame:010d}.npz"
    return velodyne_path(root, frame.drive, frame.frame).is_file() or stored.is_file()


def side_by_side(image: np.ndarray, depth_pred: np.ndarray, depth_gt: np.ndarray, max_depth: float = 80.0
                 ) -> np.ndarray:
    """(H,3W,3) uint8: image | predicted depth | LiDAR depth (dilated for visibility), same inverse-depth colours.

    Colours encode 1/depth from 1/max_depth (dark) to 1/3 m (bright); black = no value.
    """
    def inverse(depth: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(np.isfinite(depth) & (depth > 0), 1.0 / depth, np.nan)

    lidar = cv2.dilate(np.where(depth_gt > 0, 1.0 / np.maximum(depth_gt, 1e-6), 0.0).astype(np.float32),
                       np.ones((3, 3), np.uint8))
    lidar[lidar <= 0] = np.nan
    panels = [image, colorize(inverse(depth_pred), 1.0 / max_depth, 1.0 / 3.0), colorize(lidar, 1.0 / max_depth,
                                                                                          1.0 / 3.0)]
    return np.concatenate(panels, axis=1)


@dataclass
class DepthEvaluation:
    """Per-image rows (drive, frame, range, gt_points, metrics) and the per-range means."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, dict[str, float]] = field(default_factory=dict)


def warmup_frames(root: Path, frame: EvalFrame, count: int, ext: str = ".png") -> list[int]:
    """Up to `count` frames just before `frame` that exist on disk, oldest first, stopping at the first gap."""
    frames: list[int] = []
    for previous in range(frame.frame - 1, frame.frame - 1 - count, -1):
        if previous < 0 or not frame_path(root, frame.drive, previous, frame.camera, ext).is_file():
            break
        frames.append(previous)
    return frames[::-1]


def evaluate_depth(predictor: Predictor, frames: Sequence[EvalFrame], root: Path, baseline_m: float,
                   warmup: int = 0, ext: str = ".png", vis_dir: Path | None = None, vis_count: int = 0,
                   ranges: dict[str, tuple[float, float]] = DEPTH_RANGES) -> DepthEvaluation:
    """Eigen-style evaluation of `predictor` against LiDAR on `frames`; see the module docstring."""
    result = DepthEvaluation()
    calibrations: dict[Path, StereoCalibration] = {}
    for index, frame in enumerate(frames):
        day = calib_dir(root, frame.drive)
        if day not in calibrations:
            calibrations[day] = load_stereo_calibration(day)
        calib = calibrations[day]
        state = None
        for previous in warmup_frames(root, frame, warmup, ext):
            _, state = predictor(load_image(frame_path(root, frame.drive, previous, frame.camera, ext)), state)
        image = load_image(frame_path(root, frame.drive, frame.frame, frame.camera, ext))
        disp, _ = predictor(image, state)
        depth_gt = ground_truth_depth(root, frame, calib)
        if depth_gt.shape != image.shape[:2]:
            raise ValueError(f"{frame.drive} frame {frame.frame}: LiDAR map {depth_gt.shape} and image "
                             f"{image.shape[:2]} differ in size")
        projection = calib.P_rect_02 if frame.camera == 2 else calib.P_rect_03
        depth_pred = disparity_to_depth(disp, baseline_m, float(projection[0, 0]), image.shape[1])
        crop = garg_crop_mask(*depth_gt.shape)
        for name, (min_depth, max_depth) in ranges.items():
            metrics = evaluate_depth_map(depth_gt, depth_pred, min_depth, max_depth, garg_crop=True)
            points = int(np.count_nonzero(crop & (depth_gt > min_depth) & (depth_gt < max_depth)))
            result.rows.append({"drive": frame.drive, "frame": frame.frame, "range": name, "gt_points": points,
                                **{k: float(metrics[k]) for k in METRIC_NAMES}})
        if vis_dir is not None and index < vis_count:
            vis_dir.mkdir(parents=True, exist_ok=True)
            panel = side_by_side(image, depth_pred, depth_gt)
            out = vis_dir / f"{Path(frame.drive).name}_{frame.frame:010d}.png"
            cv2.imwrite(str(out), cv2.cvtColor(panel, cv2.COLOR_RGB2BGR))
    for name in ranges:
        rows = [r for r in result.rows if r["range"] == name and r["gt_points"] > 0]
        if rows:
            result.summary[name] = {k: float(np.mean([r[k] for r in rows])) for k in METRIC_NAMES}
            result.summary[name]["images"] = float(len(rows))
    return result


def evaluate_stereo2015(predictor: Predictor, folder: Path) -> dict[str, float]:
    """KITTI 2015 D1-all (fraction of bad pixels, mean over images) of `image_2/*` vs `disp_occ_0/*`.

    The predicted disparity (fraction of width) is scaled to pixels of the full image width.
    """
    gt_files = sorted((folder / "disp_occ_0").glob("*.png"))
    if not gt_files:
        raise FileNotFoundError(f"no disp_occ_0/*.png under {folder} (KITTI 2015 `training/` folder expected)")
    scores = []
    for gt_file in gt_files:
        image = load_image(folder / "image_2" / gt_file.name)
        disp, _ = predictor(image, None)
        scores.append(float(kitti_d1(load_disparity_png(gt_file), disp * image.shape[1])))
    return {"d1_all": float(np.mean(scores)), "images": float(len(scores))}


def format_table(summary: dict[str, dict[str, float]], label: str = "this checkpoint",
                 compare_paper: bool = True) -> str:
    """The summary laid out like the paper's Table 2 (one block per depth range)."""
    lines = []
    header = f"{'Method':<34}" + "".join(f"{t:>11}" for t in TABLE_TITLES)
    for name, metrics in summary.items():
        low, high = name.removesuffix("m").split("-")
        lines += [f"Depth range: {low}-{high} meters ({int(metrics.get('images', 0))} images)", header]
        lines.append(f"{label:<34}" + "".join(f"{metrics[k]:>11.3f}" for k in METRIC_NAMES))
        if compare_paper and name in PAPER_RESULTS:
            lines.append(f"{'paper: Siamese convLSTM (K)':<34}" + "".join(f"{v:>11.3f}" for v in PAPER_RESULTS[name]))
        lines.append("")
    return "\n".join(lines)


def write_csv(rows: Iterable[dict[str, Any]], path: Path) -> Path:
    """Per-image metrics as CSV (one row per image and depth range)."""
    rows = list(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["drive", "frame", "range", "gt_points", *METRIC_NAMES])
        writer.writeheader()
        writer.writerows(rows)
    return path


def frames_from_args(args: argparse.Namespace, root: Path) -> list[EvalFrame]:
    """The frames named by --split (split file `<split>/test_files.txt`) or --drives/--frames."""
    if args.drives:
        wanted = [int(f) for f in args.frames.split(",")] if args.frames else None
        frames = []
        for drive in args.drives:
            available = wanted if wanted is not None else list_frames(root / drive, camera=2)
            frames += [EvalFrame(drive, f) for f in available]
        return [f for f in frames if wanted is not None or has_ground_truth(root, f)]
    from siam_depth_core.data.splits import read_split

    return [EvalFrame(e.drive, e.frame, e.camera) for e in read_split(args.split, "test", args.splits_dir)]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siam-depth-eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="siam_depth checkpoint (.pt)")
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
    parser.add_argument("--baseline", type=float, help="stereo baseline in metres (default: the checkpoint's)")
    parser.add_argument("--stereo2015", help="KITTI 2015 `training/` folder for D1-all (default: "
                        "../shared/data/kitti_stereo_2015/training when present); 'none' to skip")
    parser.add_argument("--out-dir", default="eval", help="where metrics.csv, summary.json and vis/ go")
    parser.add_argument("--vis", type=int, default=4, help="side-by-side PNGs for the first N frames")
    parser.add_argument("--max-images", type=int, help="evaluate only the first N frames (quick checks)")
    parser.add_argument("--skip-missing", action="store_true", help="skip listed frames whose image or LiDAR "
                        "is not on disk (e.g. --split eigen on a partial download) instead of failing")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point `siam-depth-eval`."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    if args.warmup_frames < 0:
        print("siam-depth-eval: --warmup-frames must be >= 0", file=sys.stderr)
        return 2
    root = Path(args.data_root) if args.data_root else paths.kitti_raw_root()
    net, meta = load_model(args.checkpoint, device=args.device)
    predictor = NetworkPredictor(net, meta, args.device, post_process=args.post_process)
    frames = frames_from_args(args, root)
    if args.skip_missing:
        present = [f for f in frames if frame_path(root, f.drive, f.frame, f.camera, args.ext).is_file()
                   and has_ground_truth(root, f)]
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
    baseline = args.baseline if args.baseline else meta.baseline_m
    LOGGER.info("evaluating %s on %d frames (baseline %.4f m, warm-up %d frames)", args.checkpoint, len(frames),
                baseline, args.warmup_frames)
    evaluation = evaluate_depth(predictor, frames, root, baseline, warmup=args.warmup_frames, ext=args.ext,
                                vis_dir=out_dir / "vis", vis_count=args.vis)
    write_csv(evaluation.rows, out_dir / "metrics.csv")
    report: dict[str, Any] = {"checkpoint": str(args.checkpoint), "baseline_m": baseline, "depth": evaluation.summary,
                              "warmup_frames": args.warmup_frames, "post_process": args.post_process}
    stereo_folder = (Path(args.stereo2015) if args.stereo2015 and args.stereo2015 != "none"
                     else paths.shared_data_dir() / "kitti_stereo_2015" / "training")
    if args.stereo2015 != "none" and (stereo_folder / "disp_occ_0").is_dir():
        report["kitti2015"] = evaluate_stereo2015(predictor, stereo_folder)
    (out_dir / "summary.json").write_text(json.dumps(report, indent=2))
    print(format_table(evaluation.summary))
    if "kitti2015" in report:
        k15 = report["kitti2015"]
        print(f"KITTI 2015 D1-all: {100 * k15['d1_all']:.2f} % ({int(k15['images'])} images)")
    print(f"per-image metrics: {out_dir / 'metrics.csv'}; summary: {out_dir / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
