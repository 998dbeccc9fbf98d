"""The demo's results: each depth image the node published scored against its frame's ground truth, the
replay's timing, the pictures and point cloud written to the output folder, and the summary printed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from siam_depth_core.data.ground_truth import ground_truth_depth
from siam_depth_core.evaluation.metrics import METRIC_NAMES
from siam_depth_core.evaluation.report import DEPTH_RANGES, controls_table, median_gt_depth, range_scores
from siam_depth_core.visualize import (
    colorize_depth,
    triptych,
    with_color_bar,
    write_gif,
    write_ply,
    write_png,
)
from siam_depth_ros.demo_replay import Recording
from siam_depth_ros.demo_source import DemoSource

#: Eigen 0-80 m evaluation: GT in (1e-3, 80) m, predictions capped at 80 m, Garg crop.
EVAL_RANGE = DEPTH_RANGES["0-80m"]
#: Pictures are written at this fraction of the camera resolution (montage and GIF).
PANEL_SCALE = 0.5
MODEL_LABEL = "siam_depth_small (node, streamed)"


@dataclass
class ScoredFrame:
    """A frame the node answered: its index, stamp (ns), published depth and ground truth (metres), and
    its row of metrics.json (Eigen 0-80 m of the model and of the constant median-GT depth, latency)."""

    frame: int
    stamp_ns: int
    depth: np.ndarray
    depth_gt: np.ndarray
    row: dict[str, Any]


def score_recording(source: DemoSource, recording: Recording, stamps_ns: np.ndarray) -> list[ScoredFrame]:
    """Every received depth image scored against its frame's ground truth (read once per frame)."""
    frame_of_stamp = {int(stamps_ns[f]): f for f in source.frames}
    scored = []
    for stamp in sorted(recording.depth):
        if stamp not in frame_of_stamp:
            raise ValueError(f"the node published depth with stamp {stamp} ns, which no replayed frame has")
        frame = frame_of_stamp[stamp]
        depth_gt = ground_truth_depth(source.drive, frame)
        depth = recording.depth[stamp]
        if depth.shape != depth_gt.shape:
            raise ValueError(f"frame {frame}: depth {depth.shape} and ground truth {depth_gt.shape} differ in size")
        constant_m = median_gt_depth(depth_gt, EVAL_RANGE)
        model = range_scores(depth_gt, depth, EVAL_RANGE)
        constant = range_scores(depth_gt, np.full_like(depth_gt, constant_m), EVAL_RANGE)
        row = {"frame": frame, "stamp_ns": stamp, "gt_points": model.pop("gt_points"), "constant_depth_m": constant_m,
               "model": model, "constant": {name: constant[name] for name in METRIC_NAMES}}
        if stamp in recording.published_ns:
            row["latency_ms"] = (recording.depth_received_ns[stamp] - recording.published_ns[stamp]) / 1e6
        scored.append(ScoredFrame(frame, stamp, depth, depth_gt, row))
    return scored


def timing_summary(recording: Recording, images_published: int) -> dict[str, Any]:
    """Frames in/out, drops, input FPS (images published), achieved output FPS (input FPS x the fraction
    of frames the node published depth for) and publish -> depth received latency (ms) of a replay."""
    latencies = [(recording.depth_received_ns[s] - recording.published_ns[s]) / 1e6
                 for s in recording.depth_received_ns if s in recording.published_ns]
    summary: dict[str, Any] = {"images_published": images_published, "depth_received": len(recording.depth),
                               "clouds_received": sum(recording.clouds.values()),
                               "dropped": images_published - len(recording.depth)}

    def rate(times_ns: list[int]) -> float | None:
        return (len(times_ns) - 1) / ((times_ns[-1] - times_ns[0]) / 1e9) if len(times_ns) > 1 else None

    # achieved rate = camera rate x the fraction of frames the node kept up with
    summary["input_fps"] = rate(sorted(recording.published_ns.values()))
    summary["output_fps"] = (summary["input_fps"] * len(recording.depth) / images_published
                             if summary["input_fps"] and images_published else None)
    if latencies:
        summary["latency_ms"] = {"mean": float(np.mean(latencies)), "median": float(np.median(latencies)),
                                 "p95": float(np.percentile(latencies, 95)), "max": float(np.max(latencies))}
    return summary


def write_outputs(out_dir: Path, source: DemoSource, recording: Recording, scored: list[ScoredFrame],
                  montage_frames: int, gif_frame_ms: int) -> dict[str, Path]:
    """Depth PNGs, montage, GIF and PLY under `out_dir`; returns the paths by kind."""
    from siam_depth_ros.conversions import unpack_rgb

    depth_dir = out_dir / "depth"
    depth_dir.mkdir(parents=True, exist_ok=True)
    strips = []
    for item in scored:
        write_png(depth_dir / f"{item.frame:010d}.png",  # with the colour bar in metres, as every saved picture
                  with_color_bar(colorize_depth(item.depth), f"frame {item.frame}, depth"))
        image = recording.images.get(item.stamp_ns)
        if image is not None:
            labels = (f"frame {item.frame}", "siam_depth (node output)", source.ground_truth_name)
            strips.append(triptych(image, item.depth, item.depth_gt, labels, PANEL_SCALE))
    files: dict[str, Path] = {"depth_pngs": depth_dir}
    if strips:
        chosen = np.unique(np.linspace(0, len(strips) - 1, min(montage_frames, len(strips))).round().astype(int))
        files["montage"] = write_png(out_dir / "montage.png", np.concatenate([strips[i] for i in chosen], axis=0))
        files["gif"] = write_gif(out_dir / "demo.gif", strips, gif_frame_ms)
    if recording.last_cloud is not None:
        cloud = recording.last_cloud[1]
        points = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=1)
        files["ply"] = write_ply(out_dir / "cloud.ply", points, unpack_rgb(cloud["rgb"]),
                                 comment="siam_depth demo: camera optical frame, metres")
    return files


def print_summary(report: dict[str, Any], files: dict[str, Path]) -> None:
    """The metrics table, the replay's timing and where the files are."""
    metrics, replay = report["depth_0_80m"], report["replay"]
    print()
    if report["source"]["kind"] == "synthetic":
        print("NOTE: synthetic drive (no KITTI data found); the model was trained on KITTI only.")
    print(f"Depth 0-80 m vs {report['source']['ground_truth']}, Garg crop, mean over {metrics['frames']} frames "
          "(lower is better for the first four, higher for the d columns)")
    controls = {"model": metrics["model"], "own_mean": metrics["own_mean"], "constant": metrics["constant_median_depth"],
                "frame_corr": metrics["frame_corr"], "frame_gain": metrics["frame_gain"]}
    if metrics["street_prior"] is not None:
        controls["street_prior"] = metrics["street_prior"]
    print("\n".join(controls_table(controls, MODEL_LABEL)))
    print()
    print(f"the node ran {report['model']['ran']} with {report['model']['threads']} thread(s)")
    latency = replay.get("latency_ms", {})
    rates = " / ".join("n/a" if replay[key] is None else f"{replay[key]:.1f}" for key in ("input_fps", "output_fps"))
    print(f"replay at rate {replay['rate']}: {replay['images_published']} images published, "
          f"{replay['depth_received']} depth images and {replay['clouds_received']} point clouds received, "
          f"{replay['dropped']} skipped by the node (it keeps only the newest frame); input / output {rates} FPS")
    if latency:
        print(f"latency publish -> depth received: median {latency['median']:.0f} ms, mean {latency['mean']:.0f} ms, "
              f"p95 {latency['p95']:.0f} ms, max {latency['max']:.0f} ms")
    print(f"demo took {report['wall_time_s']:.0f} s")
    print()
    print("files:")
    for kind, path in files.items():
        print(f"  {kind:<11} {path}")
