"""One-command demo (`make demo`, `python -m siam_depth_ros.demo`): a KITTI drive replayed through the depth node.

Steps: convert the drive (default the held-out 2011_09_26_drive_0023 excerpt) to a rosbag2 in a
temporary folder (`kitti2bag`); start the `siam_depth` node in its own process with the shipped model
(`siam_depth_ros.harness`: localhost discovery, a private ROS_DOMAIN_ID, the shared-memory Fast DDS
profile); replay the bag over DDS with `siam-depth-play`'s `play_bag` at the recorded rate; record every
depth image and point cloud the node publishes; write `demo_out/`.

The node runs the fastest configuration that keeps the model's accuracy on a CPU (`--model`, default
`int8`): the checkpoint exported to ONNX and quantised to int8 (`siam-depth-export --int8`, calibrated on
drive 0009; every Eigen column within 0.01 of fp32, models/README.md), on ONNX Runtime with one thread,
so that a 2-core machine answers a 10 Hz camera. The export is cached under the siam_depth cache folder
by the checkpoint's sha256, so only the first demo pays for it. `--model fp32` runs the fp32 ONNX export,
`--model torch` the checkpoint itself. The run says which it ran (console and metrics.json). Outputs:

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
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from siam_depth_core.data import paths
from siam_depth_core.data.ground_truth import ground_truth_depth
from siam_depth_core.data.kitti import KittiDrive
from siam_depth_core.data.synthetic import write_synthetic_drive
from siam_depth_core.evaluation.baselines import STREET_PRIOR_DRIVE, drive_street_prior
from siam_depth_core.evaluation.metrics import METRIC_NAMES
from siam_depth_core.evaluation.report import (
    DEPTH_RANGES,
    controls_table,
    median_gt_depth,
    range_scores,
    scene_controls,
)
from siam_depth_core.geometry import ImageSize
from siam_depth_core.visualize import colorize_depth, triptych, write_gif, write_ply, write_png
from siam_depth_ros.harness import DepthNodeProcess, isolated_dds_environment
from siam_depth_ros.kitti2bag import LEFT_CAMERA, convert_drive, parse_frame_range

DEFAULT_DRIVE = "2011_09_26/2011_09_26_drive_0023_sync"
DEFAULT_OUT = "demo_out"
NAMESPACE = "/siam_depth_demo"
#: Eigen 0-80 m evaluation: GT in (1e-3, 80) m, predictions capped at 80 m, Garg crop.
EVAL_RANGE = DEPTH_RANGES["0-80m"]
#: Pictures are written at this fraction of the camera resolution (montage and GIF).
PANEL_SCALE = 0.5
SYNTHETIC_SIZE = ImageSize(188, 620)  # half KITTI resolution keeps rendering to a few seconds per frame
MODEL_LABEL = "siam_depth_small (node, streamed)"


def log(message: str) -> None:
    """Progress line on the terminal."""
    print(f"[demo] {message}", flush=True)


# ------------------------------------------------------------------------------------------- source
@dataclass(frozen=True)
class DemoSource:
    """The drive to replay, the frames replayed, and whether it is a rendered synthetic drive."""

    drive: KittiDrive
    frames: list[int]
    synthetic: bool

    @property
    def ground_truth_name(self) -> str:
        return "exact synthetic depth" if self.synthetic else "LiDAR"


def select_frames(available: list[int], frame_range: tuple[int | None, int | None]) -> list[int]:
    """The frames start <= i < stop of `available` (either bound None = open)."""
    start, stop = frame_range
    return [f for f in available if (start is None or f >= start) and (stop is None or f < stop)]


def kitti_source(drive_name: str, frame_range: tuple[int | None, int | None]) -> DemoSource | None:
    """The KITTI drive under `paths.kitti_raw_root()`, or None when it (or its calibration) is absent."""
    drive = KittiDrive(paths.kitti_raw_root(), drive_name)
    if not drive.exists():
        return None
    frames = select_frames(drive.frames(camera=2), frame_range)
    if not frames:
        raise ValueError(f"no left-camera frames of {drive.path} within {frame_range}")
    return DemoSource(drive, frames, synthetic=False)


# ---------------------------------------------------------------------------------------- recording
@dataclass
class Recording:
    """What the replay produced, keyed by header stamp (ns).

    images: (H,W,3) uint8 RGB as published; published_ns: DDS source timestamp of each image (system
    clock, ns); depth: (H,W) float32 metres (NaN invalid); depth_received_ns: arrival of the depth;
    clouds: point clouds received per stamp; last_cloud: (stamp, (N,) x/y/z/rgb structured array).
    """

    images: dict[int, np.ndarray] = field(default_factory=dict)
    published_ns: dict[int, int] = field(default_factory=dict)
    depth: dict[int, np.ndarray] = field(default_factory=dict)
    depth_received_ns: dict[int, int] = field(default_factory=dict)
    clouds: dict[int, int] = field(default_factory=dict)
    last_cloud: tuple[int, np.ndarray] | None = None


def make_recorder(context: Any, image_topic: str, recording: Recording, lock: threading.Lock) -> Any:
    """An rclpy node subscribed (reliable) to the camera images and to the node's depth and points."""
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, PointCloud2

    from siam_depth_ros.conversions import image_to_numpy, pointcloud2_to_array
    from siam_depth_ros.harness import stamp_ns_of

    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    node = Node("siam_depth_demo_recorder", context=context)

    def on_image(msg: Image, info: dict) -> None:
        with lock:
            recording.images[stamp_ns_of(msg)] = image_to_numpy(msg)
            recording.published_ns[stamp_ns_of(msg)] = int(info["source_timestamp"])

    def on_depth(msg: Image, info: dict) -> None:
        with lock:
            recording.depth[stamp_ns_of(msg)] = image_to_numpy(msg).copy()
            recording.depth_received_ns[stamp_ns_of(msg)] = int(info["received_timestamp"])

    def on_points(msg: PointCloud2) -> None:
        with lock:
            recording.clouds[stamp_ns_of(msg)] = recording.clouds.get(stamp_ns_of(msg), 0) + 1
            recording.last_cloud = (stamp_ns_of(msg), pointcloud2_to_array(msg, ["x", "y", "z", "rgb"], skip_nans=True))

    node.create_subscription(Image, image_topic, on_image, qos)
    node.create_subscription(Image, f"{NAMESPACE}/depth", on_depth, qos)
    node.create_subscription(PointCloud2, f"{NAMESPACE}/points", on_points, qos)
    return node


def wait_for(condition: Any, timeout_s: float, what: str) -> None:
    """Poll `condition()` every 50 ms; TimeoutError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def replay_through_node(bag: Path, node: DepthNodeProcess, image_topic: str, info_topic: str, rate: float,
                        startup_timeout_s: float, timeout_s: float = 60.0) -> tuple[Recording, int]:
    """Wait for the node to be ready, play `bag`'s image and camera_info topics at `rate` to it and record
    what it publishes. Returns the recording and the number of images the player published. Discovery is
    awaited in both directions before the first message; afterwards the outputs of the last image are
    awaited (or `timeout_s`)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from siam_depth_ros.player import play_bag

    recording, lock = Recording(), threading.Lock()
    context = rclpy.Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    recorder = make_recorder(context, image_topic, recording, lock)
    player = rclpy.create_node("siam_depth_demo_player", context=context)
    executor.add_node(recorder)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        log("waiting for the node to load the model")
        node.wait_until_ready(recorder, startup_timeout_s)
        outputs = [s for s in recorder.subscriptions if s.topic_name.startswith(NAMESPACE)]

        def node_subscribes(topic: str) -> bool:
            return any(info.node_namespace == NAMESPACE for info in recorder.get_subscriptions_info_by_topic(topic))

        # The player shares this process's DDS participant: once it knows the node's readers, the
        # player's writers match them as soon as they are created.
        wait_for(lambda: all(s.get_publisher_count() > 0 for s in outputs) and node_subscribes(image_topic)
                 and node_subscribes(info_topic), timeout_s, "discovery of the node's inputs and outputs")
        time.sleep(0.5)  # the node's side of the same discovery exchange
        log(f"replaying the bag over DDS at rate {rate} and recording what the node publishes")
        stats = play_bag(bag, rate=rate, node=player, topics=[image_topic, info_topic],
                         wait_for=[image_topic, info_topic], wait_timeout_s=timeout_s)
        last_stamp = max(recording.published_ns, default=None)

        def finished() -> bool:
            with lock:
                return last_stamp is None or (last_stamp in recording.depth and last_stamp in recording.clouds)

        if not node.alive():
            raise RuntimeError(f"the depth node exited during the replay:\n{node.log()}")
        try:
            wait_for(finished, timeout_s, "the outputs of the last frame")
        except TimeoutError as error:
            log(f"warning: {error}")
        time.sleep(0.3)
    finally:
        executor.shutdown()
        spinner.join(timeout=5.0)
        recorder.destroy_node()
        player.destroy_node()
        rclpy.try_shutdown(context=context)
    return recording, stats.published[image_topic]


# ----------------------------------------------------------------------------------------- scoring
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


# ------------------------------------------------------------------------------------------- files
def write_outputs(out_dir: Path, source: DemoSource, recording: Recording, scored: list[ScoredFrame],
                  montage_frames: int, gif_frame_ms: int) -> dict[str, Path]:
    """Depth PNGs, montage, GIF and PLY under `out_dir`; returns the paths by kind."""
    from siam_depth_ros.conversions import unpack_rgb

    depth_dir = out_dir / "depth"
    depth_dir.mkdir(parents=True, exist_ok=True)
    strips = []
    for item in scored:
        write_png(depth_dir / f"{item.frame:010d}.png", colorize_depth(item.depth))
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


# ------------------------------------------------------------------------------------------ the demo
def prepare_source(args: argparse.Namespace, tmp_dir: Path) -> DemoSource:
    """The KITTI drive asked for, or a synthetic drive rendered into `tmp_dir` (said so) without KITTI data."""
    source = None if args.synthetic else kitti_source(args.drive, args.frames)
    if source is not None:
        log(f"KITTI drive {source.drive.path}, frames {source.frames[0]}..{source.frames[-1]} "
            f"({len(source.frames)} frames)")
        return source
    if args.drive != DEFAULT_DRIVE and not args.synthetic:
        raise FileNotFoundError(f"KITTI drive {args.drive} not found under {paths.kitti_raw_root()} "
                                "(set KITTI_ROOT to a KITTI raw root)")
    reason = "--synthetic given" if args.synthetic else (
        f"no KITTI data at {paths.kitti_raw_root() / args.drive} (set KITTI_ROOT to a KITTI raw root)")
    log(f"{reason}: running on a SYNTHETIC drive of {args.synthetic_frames} rendered frames instead; "
        "metrics are against its exact depth")
    drive = write_synthetic_drive(tmp_dir / "synthetic", args.synthetic_frames, SYNTHETIC_SIZE)
    return DemoSource(drive, drive.frames(), synthetic=True)


#: The node configurations `--model` chooses from: what the node runs, in words.
MODEL_CHOICES = {"int8": "int8 ONNX (ONNX Runtime)", "fp32": "fp32 ONNX (ONNX Runtime)", "torch": "the checkpoint (torch)"}


def exported_model(checkpoint: Path, kind: str, calibration_folder: Path | None) -> Path:
    """The ONNX export of `checkpoint` (`kind` "fp32" or "int8", quantised as `siam-depth-export --int8` does),
    cached under the siam_depth cache folder by the checkpoint's sha256 (made on first use, which says so).
    calibration_folder: consecutive frames for the int8 calibration (None: drive 0009, the export's default)."""
    from siam_depth_core.runtime.backends.sidecar import file_sha256
    from siam_depth_core.runtime.export import CALIBRATION_CLIP_LEN, calibration_clips, export_checkpoint
    from siam_depth_core.runtime.quantize import int8_path, quantize_onnx

    folder = paths.cache_dir() / "demo_models" / file_sha256(checkpoint)[:16]
    fp32_path = folder / f"{checkpoint.stem}.onnx"
    wanted = fp32_path if kind == "fp32" else int8_path(fp32_path)
    if wanted.is_file():
        log(f"using the cached {kind} export {wanted}")
        return wanted
    folder.mkdir(parents=True, exist_ok=True)
    log(f"exporting {checkpoint} to {kind} ONNX in {folder} (once per checkpoint)")
    if not fp32_path.is_file():
        export_checkpoint(checkpoint, fp32_path)
    if kind == "int8":
        frames = None if calibration_folder is None else len(list(calibration_folder.iterdir()))
        clip_len = CALIBRATION_CLIP_LEN if frames is None else min(CALIBRATION_CLIP_LEN, frames)
        quantize_onnx(fp32_path, wanted, calibration_clips(calibration_folder, clip_len))
    return wanted


def node_model_parameters(checkpoint: Path, kind: str, source: DemoSource) -> dict[str, Any]:
    """The node parameters that make it run `checkpoint` as `kind` (see MODEL_CHOICES)."""
    if kind == "torch":
        return {"checkpoint": checkpoint.resolve()}
    calibration = source.drive.image_path(source.frames[0]).parent if source.synthetic else None
    return {"backend": "onnxruntime", "onnx": exported_model(checkpoint, kind, calibration).resolve()}


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
        model_parameters = node_model_parameters(checkpoint, args.model, source)
        log(f"starting the depth node in its own process (model {checkpoint} as {MODEL_CHOICES[args.model]}, "
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
    rows = [item.row for item in scored]
    prior = None
    if not source.synthetic and KittiDrive(source.drive.root, STREET_PRIOR_DRIVE).exists():
        prior = drive_street_prior(source.drive.root)
    controls = scene_controls([item.depth for item in scored], [item.depth_gt for item in scored], EVAL_RANGE, prior)
    report = {
        "source": {"kind": "synthetic" if source.synthetic else "kitti", "drive": source.drive.name,
                   "root": None if source.synthetic else str(source.drive.root), "frames": source.frames,
                   "ground_truth": source.ground_truth_name},
        "model": {"checkpoint": str(checkpoint), "ran": MODEL_CHOICES[args.model], "threads": args.torch_threads,
                  **{key: str(value) for key, value in model_parameters.items() if key == "onnx"}},
        "replay": {"rate": args.rate, **timing_summary(recording, published)},
        "depth_0_80m": {"frames": len(rows), "model": controls["model"], "own_mean": controls["own_mean"],
                        "constant_median_depth": controls["constant"], "street_prior": controls.get("street_prior"),
                        "frame_corr": controls["frame_corr"], "frame_gain": controls["frame_gain"]},
        "per_frame": rows,
        "point_cloud": ({"stamp_ns": recording.last_cloud[0], "points": int(recording.last_cloud[1].shape[0])}
                        if recording.last_cloud else None),
        "wall_time_s": time.monotonic() - started,
    }
    files["metrics"] = out_dir / "metrics.json"
    files["metrics"].write_text(json.dumps(report, indent=2))
    return report, files


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
    parser.add_argument("--model", choices=sorted(MODEL_CHOICES), default="int8",
                        help="what the node runs: int8 (default) or fp32 ONNX export of the checkpoint on ONNX Runtime, "
                             "or the checkpoint on torch")
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
