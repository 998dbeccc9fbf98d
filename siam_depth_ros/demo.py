"""One-command demo (`make demo`, `python -m siam_depth_ros.demo`): a KITTI drive replayed through the depth node.

Steps: convert the drive (default the held-out 2011_09_26_drive_0023 excerpt) to a rosbag2 in a
temporary folder (`kitti2bag`); start the `siam_depth` node in its own process with the shipped model
(`siam_depth_ros.harness`: localhost discovery, a private ROS_DOMAIN_ID, the shared-memory Fast DDS
profile); replay the bag over DDS with `siam-depth-play`'s `play_bag` at the recorded rate; record every
depth image and point cloud the node publishes; write `demo_out/`.

The node runs the fastest CPU path that keeps the accuracy rule on the machine the demo runs on (`--model`,
default `auto`; `siam_depth_core.runtime.fastest`): with openvino installed, the checkpoint's fp32 ONNX export on
OpenVINO at bf16 where the CPU has bf16 units (ARD within 0.002 of fp32, about 2.5x ONNX Runtime fp32), else at
fp32; without openvino the fp32 export on ONNX Runtime; one thread. The int8 exports are faster still but miss
the 0.01 rule with the shipped model (+0.012 ARD on drive 0023, models/README.md), so `auto` does not choose them;
`--model int8` runs the int8 export on ONNX Runtime, `--model openvino` the fp32 export on OpenVINO (precision
auto), `--model fp32` the fp32 export on ONNX Runtime, `--model torch` the checkpoint itself. The exports are
cached under the siam_depth cache folder by the checkpoint's sha256, so only the first demo pays for them. The run
says which path it ran and why (console and metrics.json). Outputs:

- `depth/<frame>.png`: the published depth, colour-mapped (inverse depth, magma: bright = near)
- `montage.png` (a few frames) and `demo.gif` (every frame): image | depth | LiDAR over the image
- `cloud.ply`: the last published point cloud (x, y, z in the camera optical frame, metres; RGB)
- `metrics.json`: Eigen metrics vs LiDAR (0-80 m, Garg crop) per frame and averaged, beside the
  controls that need no image (`report.scene_controls`: the model's own mean depth map, each frame's
  median LiDAR depth, the street prior of drive 0009), frame_corr and frame_gain, and the replay's FPS,
  latency and drops

Latency is publish -> depth received: the DDS source timestamp of the image (set by the player) to
the arrival of the node's depth image in this process. KITTI data comes from `KITTI_ROOT` or
`../shared/data` (`siam_depth_core.data.paths`); without it the demo renders a synthetic drive
(`siam_depth_core.data.synthetic`, exact depth as ground truth) and says so.

This module runs the steps; `demo_source` picks the drive, `demo_replay` plays it to the node and records
what comes back, `demo_results` scores it, writes the files and prints the summary.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from siam_depth_core.data import paths
from siam_depth_core.data.kitti import KittiDrive
from siam_depth_core.evaluation.baselines import STREET_PRIOR_DRIVE, drive_street_prior
from siam_depth_core.evaluation.report import scene_controls
from siam_depth_core.runtime.fastest import AUTO, cached_export, fastest_cpu_path
from siam_depth_ros.demo_replay import NAMESPACE, Recording, replay_through_node
from siam_depth_ros.demo_results import (
    EVAL_RANGE,
    ScoredFrame,
    print_summary,
    score_recording,
    timing_summary,
    write_outputs,
)
from siam_depth_ros.demo_source import DEFAULT_DRIVE, DemoSource, log, prepare_source
from siam_depth_ros.harness import DepthNodeProcess, isolated_dds_environment
from siam_depth_ros.kitti2bag import LEFT_CAMERA, convert_drive, parse_frame_range

DEFAULT_OUT = "demo_out"
#: The node configurations `--model` chooses from: what the node runs, in words (auto: one of the others, chosen
#: for this machine by `runtime.fastest`).
MODEL_CHOICES = {"int8": "int8 ONNX (ONNX Runtime)", "fp32": "fp32 ONNX (ONNX Runtime)", "torch": "the checkpoint (torch)",
                 "openvino": "fp32 ONNX (OpenVINO)", AUTO: "the fastest CPU path that keeps the accuracy rule here"}
#: What `auto` runs, by the backend `runtime.fastest.fastest_cpu_path` picks.
AUTO_CHOICES = {"openvino": "openvino", "onnxruntime": "fp32", "torch": "torch"}


def resolve_model(kind: str) -> tuple[str, str]:
    """(the `--model` choice to run, what it runs in words) for `kind`: auto picks the fastest CPU path that keeps
    the accuracy rule on this machine and says why; openvino names the precision it runs at here."""
    if kind == AUTO:
        path = fastest_cpu_path()
        chosen = AUTO_CHOICES[path.backend]
        return chosen, f"{resolve_model(chosen)[1]}, chosen by --model auto: the fastest CPU path that keeps the " \
                       f"accuracy rule here ({path.why})"
    if kind == "openvino":
        from siam_depth_core.runtime.backends.openvino_backend import (
            cpu_capabilities,
            import_openvino,
            resolve_precision,
        )

        precision = resolve_precision("auto", cpu_capabilities(import_openvino().Core()))
        return kind, f"fp32 ONNX (OpenVINO, {precision})"
    return kind, MODEL_CHOICES[kind]


def exported_model(checkpoint: Path, kind: str, calibration_folder: Path | None) -> Path:
    """The ONNX export of `checkpoint` (`kind` "fp32" or "int8", quantised as `siam-depth-export --int8` does),
    cached under the siam_depth cache folder by the checkpoint's sha256 (made on first use, which says so).
    calibration_folder: consecutive frames for the int8 calibration (None: drive 0009, the export's default)."""
    from siam_depth_core.runtime.export import CALIBRATION_CLIP_LEN

    frames = None if calibration_folder is None else len(list(calibration_folder.iterdir()))
    clip_len = CALIBRATION_CLIP_LEN if frames is None else min(CALIBRATION_CLIP_LEN, frames)
    log(f"the {kind} ONNX export of {checkpoint} (made once per checkpoint and cached under "
        f"{paths.cache_dir() / 'exports'})")
    return cached_export(checkpoint, int8=kind == "int8", calibration_folder=calibration_folder, clip_len=clip_len)


def node_model_parameters(checkpoint: Path, kind: str, source: DemoSource) -> dict[str, Any]:
    """The node parameters that make it run `checkpoint` as `kind` (see MODEL_CHOICES; not auto: resolve it first
    with `resolve_model`)."""
    if kind == "torch":
        return {"checkpoint": checkpoint.resolve(), "backend": "torch"}
    calibration = source.drive.image_path(source.frames[0]).parent if source.synthetic else None
    onnx = exported_model(checkpoint, "int8" if kind == "int8" else "fp32", calibration).resolve()
    if kind == "openvino":
        return {"backend": "openvino", "onnx": onnx, "precision": "auto"}
    return {"backend": "onnxruntime", "onnx": onnx}


def run_demo(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Path]]:
    """Everything `main` does; returns the metrics.json content and the written files."""
    from siam_depth_core.shipped_files import shipped_checkpoint

    started = time.monotonic()
    checkpoint = Path(args.checkpoint) if args.checkpoint else shipped_checkpoint()
    if checkpoint is None or not checkpoint.is_file():
        raise FileNotFoundError(f"no model at {checkpoint or 'models/siam_depth_small.pt'}; the demo needs the "
                                "shipped checkpoint (models/siam_depth_small.pt) or --checkpoint")
    out_dir = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="siam_depth_demo_") as tmp:
        tmp_dir = Path(tmp)
        env = isolated_dds_environment()
        env["OMP_NUM_THREADS"] = str(args.torch_threads)
        source = prepare_source(args, tmp_dir)
        kind, ran = resolve_model(args.model)
        model_parameters = node_model_parameters(checkpoint, kind, source)
        log(f"starting the depth node in its own process (model {checkpoint} as {ran}, "
            f"{args.torch_threads} thread(s); ROS_DOMAIN_ID {env['ROS_DOMAIN_ID']}, localhost discovery, Fast DDS "
            f"profile {env.get('FASTDDS_DEFAULT_PROFILES_FILE', 'not found: UDP')})")
        # reliable input QoS: a replayed bag should not lose its first frame to discovery (the node still
        # keeps only the newest frame and counts the ones it skips)
        node = DepthNodeProcess(tmp_dir / "depth_node.log", NAMESPACE,
                                {**model_parameters, "cloud_stride": args.cloud_stride, "qos": "reliable",
                                 "num_threads": args.torch_threads},
                                {"image": LEFT_CAMERA.image_topic, "camera_info": LEFT_CAMERA.info_topic}, env=env)
        try:
            bag = tmp_dir / "bag"
            log(f"converting the drive to a rosbag2 (left camera images + camera_info) at {bag}")
            convert_drive(source.drive.path, bag, frame_range=(source.frames[0], source.frames[-1] + 1),
                          with_right=False, with_velodyne=False, with_gps=False, progress=False)
            recording, published = replay_through_node(bag, node, LEFT_CAMERA.image_topic, LEFT_CAMERA.info_topic,
                                                       args.rate, args.startup_timeout)
        finally:
            node.stop()
        if not recording.depth:
            raise RuntimeError(f"the node published no depth image; its log:\n{node.log()}")
        log(f"received {len(recording.depth)} depth images for {published} published frames; "
            f"evaluating against {source.ground_truth_name} and writing {out_dir}/")
        scored = score_recording(source, recording, source.drive.timestamps_ns())
        files = write_outputs(out_dir, source, recording, scored, args.montage_frames, round(1000 / 10 / args.rate))
    report = demo_report(args, checkpoint, model_parameters, source, recording, published, scored, ran)
    report["wall_time_s"] = time.monotonic() - started
    files["metrics"] = out_dir / "metrics.json"
    files["metrics"].write_text(json.dumps(report, indent=2))
    return report, files


def demo_report(args: argparse.Namespace, checkpoint: Path, model_parameters: dict[str, Any], source: DemoSource,
                recording: Recording, published: int, scored: list[ScoredFrame], ran: str) -> dict[str, Any]:
    """The content of metrics.json but the wall time: source, model (`ran`: what the node ran, in words), replay
    timing, Eigen 0-80 m of the model beside the controls, the per-frame rows and the last point cloud."""
    rows = [item.row for item in scored]
    prior = None
    if not source.synthetic and KittiDrive(source.drive.root, STREET_PRIOR_DRIVE).exists():
        prior = drive_street_prior(source.drive.root)
    controls = scene_controls([item.depth for item in scored], [item.depth_gt for item in scored], EVAL_RANGE, prior)
    report = {
        "source": {"kind": "synthetic" if source.synthetic else "kitti", "drive": source.drive.name,
                   "root": None if source.synthetic else str(source.drive.root), "frames": source.frames,
                   "ground_truth": source.ground_truth_name},
        "model": {"checkpoint": str(checkpoint), "choice": args.model, "ran": ran, "threads": args.torch_threads,
                  **{key: str(value) for key, value in model_parameters.items() if key in ("backend", "onnx")}},
        "replay": {"rate": args.rate, **timing_summary(recording, published)},
        "depth_0_80m": {"frames": len(rows), "model": controls["model"], "own_mean": controls["own_mean"],
                        "constant_median_depth": controls["constant"], "street_prior": controls.get("street_prior"),
                        "frame_corr": controls["frame_corr"], "frame_gain": controls["frame_gain"]},
        "per_frame": rows,
        "point_cloud": ({"stamp_ns": recording.last_cloud[0], "points": int(recording.last_cloud[1].shape[0])}
                        if recording.last_cloud else None),
    }
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m siam_depth_ros.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drive", default=DEFAULT_DRIVE, help=f"KITTI raw drive under the KITTI root "
                        f"(default {DEFAULT_DRIVE}, held out of the shipped model's training)")
    parser.add_argument("--frames", type=parse_frame_range, default=(None, None), metavar="A:B",
                        help="only frames A <= i < B of the drive")
    parser.add_argument("--checkpoint", help="model to run (default: the shipped models/siam_depth_small.pt)")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT}/)")
    parser.add_argument("--rate", type=float, default=1.0, help="replay speed factor (default 1.0: real time)")
    parser.add_argument("--synthetic", action="store_true", help="use a rendered synthetic drive even if KITTI "
                        "data is present")
    parser.add_argument("--synthetic-frames", type=int, default=8, help="frames of the synthetic drive (default 8)")
    parser.add_argument("--cloud-stride", type=int, default=2, help="point cloud: every n-th pixel (default 2)")
    parser.add_argument("--model", choices=sorted(MODEL_CHOICES), default=AUTO,
                        help="what the node runs: auto (default: the fastest CPU path that keeps the accuracy rule on "
                             "this machine, said in the output), openvino (fp32 ONNX export on OpenVINO, bf16 where "
                             "the CPU has it), int8 or fp32 ONNX export on ONNX Runtime, or the checkpoint on torch")
    parser.add_argument("--torch-threads", type=int, default=1, help="intra-op threads of the node's model "
                        "(default 1: on a 2-core machine the player and recorder need the other core)")
    parser.add_argument("--montage-frames", type=int, default=4, help="rows of montage.png (default 4)")
    parser.add_argument("--startup-timeout", type=float, default=180.0, help="seconds to wait for the node to "
                        "load its model (default 180)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m siam_depth_ros.demo` (what `make demo` runs)."""
    args = build_parser().parse_args(argv)
    if args.rate <= 0 or args.synthetic_frames < 2 or args.cloud_stride < 1 or args.torch_threads < 1:
        print("demo: need --rate > 0, --synthetic-frames >= 2, --cloud-stride >= 1, --torch-threads >= 1",
              file=sys.stderr)
        return 2
    try:
        report, files = run_demo(args)
    except (FileNotFoundError, ValueError, RuntimeError, TimeoutError) as error:
        print(f"demo: error: {error}", file=sys.stderr)
        return 1
    print_summary(report, files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
