"""One-command demo (`make demo`, `python -m siam_depth_ros.demo`): a KITTI drive replayed through the depth node.

Steps: convert the drive (default the held-out 2011_09_26_drive_0023 excerpt) to a rosbag2 in a
temporary folder (`kitti2bag`); start the `siam_depth` node in its own process with the shipped model;
replay the bag over DDS with `siam-depth-play`'s `play_bag` at the recorded rate (localhost discovery,
a private ROS_DOMAIN_ID, the shared-memory profile `config/fastdds_shm.xml`); record every depth image
and point cloud the node publishes; write `demo_out/`:

- `depth/<frame>.png`: the published depth, colour-mapped (inverse depth, magma: bright = near)
- `montage.png` (a few frames) and `demo.gif` (every frame): image | depth | LiDAR over the image
- `cloud.ply`: the last published point cloud (x, y, z in the camera optical frame, metres; RGB)
- `metrics.json`: Eigen metrics vs LiDAR (0-80 m, Garg crop) per frame and averaged, beside a
  constant-depth baseline (each frame's median LiDAR depth), and the replay's FPS, latency and drops

Latency is publish -> depth received: the DDS source timestamp of the image (set by the player) to
the arrival of the node's depth image in this process. KITTI data comes from `KITTI_ROOT` or
`../shared/data` (`siam_depth_core.data.paths`); without it the demo renders a synthetic drive
(`siam_depth_core.data.synthetic`, exact depth as ground truth) and says so.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from siam_depth_core.data import paths
from siam_depth_core.data.calib import load_stereo_calibration, read_timestamps
from siam_depth_core.data.kitti import calib_dir, list_frames
from siam_depth_core.evaluate import TABLE_TITLES, EvalFrame, ground_truth_depth
from siam_depth_core.metrics import METRIC_NAMES, eigen_eval_mask, evaluate_depth_map
from siam_depth_core.visualize import colorize
from siam_depth_ros.kitti2bag import LEFT_CAMERA, convert_drive, parse_frame_range

DEFAULT_DRIVE = "2011_09_26/2011_09_26_drive_0023_sync"
DEFAULT_OUT = "demo_out"
NAMESPACE = "/siam_depth_demo"
#: Eigen 0-80 m evaluation: GT in (MIN_EVAL_DEPTH_M, MAX_EVAL_DEPTH_M), predictions capped at 80 m.
MIN_EVAL_DEPTH_M, MAX_EVAL_DEPTH_M = 1e-3, 80.0
#: Colour scale of every depth picture: inverse depth from 1/FAR (dark) to 1/NEAR (bright), metres.
FAR_M, NEAR_M = 80.0, 4.0
#: Pictures are written at this fraction of the camera resolution (montage and GIF).
PANEL_SCALE = 0.5
SYNTHETIC_DRIVE = "2000_01_01/2000_01_01_drive_0000_sync"
SYNTHETIC_SIZE = (188, 620)  # (H, W): half KITTI resolution keeps rendering to a few seconds per frame
SYNTHETIC_FIRST_STAMP = "2000-01-01 00:00:00"


def log(message: str) -> None:
    """Progress line on the terminal."""
    print(f"[demo] {message}", flush=True)


# ------------------------------------------------------------------------------------------- source
@dataclass(frozen=True)
class DemoSource:
    """The drive to replay: KITTI raw root, drive (`<date>/<date>_drive_<n>_sync`), frames, and what it is."""

    root: Path
    drive: str
    frames: list[int]
    synthetic: bool

    @property
    def drive_dir(self) -> Path:
        return self.root / self.drive

    @property
    def ground_truth_name(self) -> str:
        return "exact synthetic depth" if self.synthetic else "LiDAR"


def select_frames(available: list[int], frame_range: tuple[int | None, int | None]) -> list[int]:
    """The frames start <= i < stop of `available` (either bound None = open)."""
    start, stop = frame_range
    return [f for f in available if (start is None or f >= start) and (stop is None or f < stop)]


def kitti_source(drive: str, frame_range: tuple[int | None, int | None]) -> DemoSource | None:
    """The KITTI drive under `paths.kitti_raw_root()`, or None when it (or its calibration) is absent."""
    root = paths.kitti_raw_root()
    if not (root / drive / "image_02").is_dir() or not (calib_dir(root, drive) / "calib_cam_to_cam.txt").is_file():
        return None
    frames = select_frames(list_frames(root / drive, camera=2), frame_range)
    if not frames:
        raise ValueError(f"no left-camera frames of {root / drive} within {frame_range}")
    return DemoSource(root, drive, frames, synthetic=False)


def write_synthetic_drive(root: Path, num_frames: int, seed: int = 0) -> DemoSource:
    """Render a synthetic drive (`siam_depth_core.data.synthetic`) in the KITTI raw layout under `root`.

    Writes rectified left/right PNGs, timestamps at 10 Hz, calibration files and the exact left depth
    as `proj_depth/velodyne/image_02/<frame>.npz` (key `velodyne_depth`, metres), so that the bag
    converter and the LiDAR evaluation read it like a KITTI drive.
    """
    from siam_depth_core.data.synthetic import render_synthetic_sequence

    height, width = SYNTHETIC_SIZE
    sequence = render_synthetic_sequence(num_frames, height, width, seed=seed)
    drive_dir = root / SYNTHETIC_DRIVE
    k = sequence.camera_matrix
    fx_baseline = k[0, 0] * sequence.baseline_m
    projection = np.hstack([k, np.zeros((3, 1))])
    right_projection = projection.copy()
    right_projection[0, 3] = -fx_baseline

    def numbers(values: np.ndarray) -> str:
        return " ".join(f"{v:.12e}" for v in np.ravel(values))

    date_dir = drive_dir.parent
    date_dir.mkdir(parents=True, exist_ok=True)
    (date_dir / "calib_cam_to_cam.txt").write_text(
        f"P_rect_02: {numbers(projection)}\nP_rect_03: {numbers(right_projection)}\n"
        f"R_rect_00: {numbers(np.eye(3))}\nS_rect_02: {width} {height}\n")
    for name in ("calib_velo_to_cam.txt", "calib_imu_to_velo.txt"):
        (date_dir / name).write_text(f"R: {numbers(np.eye(3))}\nT: 0 0 0\n")
    stamps = "".join(f"{SYNTHETIC_FIRST_STAMP}.{int(round(s * 1e9)):09d}\n" for s in sequence.stamps_s)
    depth_dir = drive_dir / "proj_depth" / "velodyne" / "image_02"
    depth_dir.mkdir(parents=True)
    for camera, images in ((2, sequence.left), (3, sequence.right)):
        image_dir = drive_dir / f"image_0{camera}" / "data"
        image_dir.mkdir(parents=True)
        (image_dir.parent / "timestamps.txt").write_text(stamps)
        for index, rgb in enumerate(images):
            cv2.imwrite(str(image_dir / f"{index:010d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    for index, depth in enumerate(sequence.depth_m):
        np.savez_compressed(depth_dir / f"{index:010d}.npz", velodyne_depth=depth.astype(np.float32))
    return DemoSource(root, SYNTHETIC_DRIVE, list(range(num_frames)), synthetic=True)


# ---------------------------------------------------------------------------------------------- DDS
def shm_profile_path() -> Path | None:
    """`config/fastdds_shm.xml` of the source tree, else of the installed package, else None."""
    candidates = [paths.REPO_ROOT / "config" / "fastdds_shm.xml"]
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        candidates.append(Path(get_package_share_directory("siam_depth_ros")) / "config" / "fastdds_shm.xml")
    except (ImportError, PackageNotFoundError, OSError):  # not installed the ament way
        pass
    return next((path for path in candidates if path.is_file()), None)


def configure_dds_environment(domain_id: int | None = None) -> dict[str, str]:
    """Set this process's DDS settings (before rclpy.init) and return the environment for the node.

    Localhost-only discovery, a ROS_DOMAIN_ID derived from the pid (so that parallel demos and tests
    do not see each other), Fast DDS with the shared-memory profile when it can be found.
    """
    settings = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                "ROS_DOMAIN_ID": str(domain_id if domain_id is not None else 1 + os.getpid() % 101),
                "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp", "RCUTILS_COLORIZED_OUTPUT": "0",
                "PYTHONUNBUFFERED": "1"}
    profile = shm_profile_path()
    if profile is not None:
        settings["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    os.environ.update(settings)
    return dict(os.environ)


class NodeProcess:
    """The depth node (`python -m siam_depth_ros.node`) in its own process, output to `log_path`."""

    def __init__(self, ros_args: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        self._log_file = log_path.open("wb")
        self.process = subprocess.Popen([sys.executable, "-m", "siam_depth_ros.node", "--ros-args", *ros_args],
                                        stdout=self._log_file, stderr=subprocess.STDOUT, env=env)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until_ready(self, timeout_s: float) -> None:
        """Block until the node logs `ready:`; RuntimeError with its log if it exits or times out."""
        deadline = time.monotonic() + timeout_s
        while "]: ready:" not in self.log():
            if self.process.poll() is not None:
                raise RuntimeError(f"the depth node exited with code {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the depth node was not ready after {timeout_s:.0f} s:\n{self.log()}")
            time.sleep(0.1)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGINT (the node's clean shutdown), then kill if it does not exit within `timeout_s`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()


def node_ros_args(checkpoint: Path, image_topic: str, info_topic: str, cloud_stride: int) -> list[str]:
    """--ros-args of the demo's node: namespace, remapped inputs, the model, the cloud stride, and reliable
    input QoS (a replayed bag should not lose its first frame to discovery; the node still keeps only
    the newest frame and counts the ones it skips)."""
    return ["-r", f"__ns:={NAMESPACE}", "-r", f"image:={image_topic}", "-r", f"camera_info:={info_topic}",
            "-p", f"checkpoint:={checkpoint}", "-p", f"cloud_stride:={cloud_stride}", "-p", "qos:=reliable"]


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

    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    node = Node("siam_depth_demo_recorder", context=context)

    def stamp_ns(msg: Any) -> int:
        return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)

    def on_image(msg: Image, info: dict) -> None:
        with lock:
            recording.images[stamp_ns(msg)] = image_to_numpy(msg)
            recording.published_ns[stamp_ns(msg)] = int(info["source_timestamp"])

    def on_depth(msg: Image, info: dict) -> None:
        with lock:
            recording.depth[stamp_ns(msg)] = image_to_numpy(msg).copy()
            recording.depth_received_ns[stamp_ns(msg)] = int(info["received_timestamp"])

    def on_points(msg: PointCloud2) -> None:
        with lock:
            recording.clouds[stamp_ns(msg)] = recording.clouds.get(stamp_ns(msg), 0) + 1
            recording.last_cloud = (stamp_ns(msg), pointcloud2_to_array(msg, ["x", "y", "z", "rgb"]))

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


def replay_through_node(bag: Path, node: NodeProcess, image_topic: str, info_topic: str, rate: float,
                        timeout_s: float = 60.0) -> tuple[Recording, int]:
    """Play `bag`'s image and camera_info topics at `rate` to the running node; record what it publishes.

    Returns the recording and the number of images the player published. Discovery is awaited in both directions before
    the first message; afterwards the outputs of the last image are awaited (or `timeout_s`).
    """
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
        outputs = [s for s in recorder.subscriptions if s.topic_name.startswith(NAMESPACE)]

        def node_subscribes(topic: str) -> bool:
            return any(info.node_namespace == NAMESPACE for info in recorder.get_subscriptions_info_by_topic(topic))

        # The player shares this process's DDS participant: once it knows the node's readers, the
        # player's writers match them as soon as they are created.
        wait_for(lambda: all(s.get_publisher_count() > 0 for s in outputs) and node_subscribes(image_topic)
                 and node_subscribes(info_topic), timeout_s, "discovery of the node's inputs and outputs")
        time.sleep(0.5)  # the node's side of the same discovery exchange
        stats = play_bag(bag, rate=rate, node=player, topics=[image_topic, info_topic],
                         wait_for=[image_topic, info_topic], wait_timeout_s=timeout_s)
        last_stamp = max(recording.published_ns, default=None)

        def finished() -> bool:
            with lock:
                return last_stamp is None or (last_stamp in recording.depth and last_stamp in recording.clouds)

        if node.process.poll() is not None:
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


# ----------------------------------------------------------------------------------------- metrics
def frame_metrics(depth_gt: np.ndarray, depth_pred: np.ndarray) -> dict[str, Any]:
    """Eigen metrics 0-80 m (Garg crop) of a prediction and of the constant median-GT-depth baseline."""
    mask = eigen_eval_mask(depth_gt, MIN_EVAL_DEPTH_M, MAX_EVAL_DEPTH_M, garg_crop=True)
    if not mask.any():
        raise ValueError("no ground-truth depth inside the Garg crop and 0-80 m")
    constant_m = float(np.median(depth_gt[mask]))
    return {"gt_points": int(mask.sum()), "constant_depth_m": constant_m,
            "model": evaluate_depth_map(depth_gt, depth_pred, MIN_EVAL_DEPTH_M, MAX_EVAL_DEPTH_M),
            "constant": evaluate_depth_map(depth_gt, np.full_like(depth_gt, constant_m), MIN_EVAL_DEPTH_M,
                                           MAX_EVAL_DEPTH_M)}


def mean_metrics(rows: list[dict[str, Any]], key: str) -> dict[str, float]:
    """Per-image metrics averaged over frames (as monodepth averages the Eigen test images)."""
    return {name: float(np.mean([row[key][name] for row in rows])) for name in METRIC_NAMES}


def format_metrics_table(model: dict[str, float], constant: dict[str, float], frames: int, gt_name: str,
                         model_label: str) -> str:
    """The two rows (model, constant baseline) under the Eigen table's column titles."""
    header = f"{'':<36}" + "".join(f"{title:>10}" for title in TABLE_TITLES)
    rows = [(model_label, model), ("constant depth (median GT per frame)", constant)]
    lines = [f"Depth 0-80 m vs {gt_name}, Garg crop, mean over {frames} frames (lower is better for the first "
             "four, higher for the d columns)", header]
    lines += [f"{label:<36}" + "".join(f"{values[name]:>10.3f}" for name in METRIC_NAMES) for label, values in rows]
    return "\n".join(lines)


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


# ------------------------------------------------------------------------------------------ pictures
def inverse_depth_colors(depth_m: np.ndarray) -> np.ndarray:
    """(H,W) metres -> (H,W,3) uint8 RGB, inverse depth 1/FAR_M (dark) .. 1/NEAR_M (bright); invalid black."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = np.where(np.isfinite(depth_m) & (depth_m > 0), 1.0 / depth_m, np.nan)
    return colorize(inverse, 1.0 / FAR_M, 1.0 / NEAR_M)


def lidar_overlay(image: np.ndarray, depth_gt: np.ndarray) -> np.ndarray:
    """(H,W,3) uint8: the image dimmed to grey with the GT points (dilated 3x3, nearest wins) in depth colours."""
    grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    inverse = np.where(depth_gt > 0, 1.0 / np.maximum(depth_gt, 1e-6), 0.0).astype(np.float32)
    inverse = cv2.dilate(inverse, np.ones((3, 3), np.uint8))
    has_point = inverse > 0
    colours = colorize(np.where(has_point, inverse, np.nan), 1.0 / FAR_M, 1.0 / NEAR_M)
    overlay = (grey * 0.5).astype(np.uint8)
    overlay[has_point] = colours[has_point]
    return overlay


def labelled(panel: np.ndarray, text: str) -> np.ndarray:
    """`panel` with `text` written in its top-left corner (white on a dark outline)."""
    panel = np.ascontiguousarray(panel)
    for colour, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(panel, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, thickness, cv2.LINE_AA)
    return panel


def triptych(image: np.ndarray, depth_m: np.ndarray, depth_gt: np.ndarray, frame: int, gt_name: str) -> np.ndarray:
    """(h, 3w, 3) uint8 at PANEL_SCALE: image | predicted depth | ground truth over the image, labelled."""
    height, width = image.shape[:2]
    size = (round(width * PANEL_SCALE), round(height * PANEL_SCALE))
    panels = [(image, f"frame {frame}"), (inverse_depth_colors(depth_m), "siam_depth (node output)"),
              (lidar_overlay(image, depth_gt), gt_name)]
    return np.concatenate([labelled(cv2.resize(p, size, interpolation=cv2.INTER_AREA), text) for p, text in panels],
                          axis=1)


def write_ply(path: Path, cloud: np.ndarray) -> Path:
    """Binary little-endian PLY of an (N,) x/y/z/rgb structured array (rgb packed as in PointCloud2)."""
    from siam_depth_ros.conversions import unpack_rgb

    rgb = unpack_rgb(cloud["rgb"])
    vertices = np.empty(cloud.shape[0], dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"),
                                               ("green", "u1"), ("blue", "u1")])
    for name in ("x", "y", "z"):
        vertices[name] = cloud[name]
    vertices["red"], vertices["green"], vertices["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    header = ("ply\nformat binary_little_endian 1.0\ncomment siam_depth demo: camera optical frame, metres\n"
              f"element vertex {vertices.shape[0]}\nproperty float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    with path.open("wb") as handle:
        handle.write(header.encode("ascii"))
        handle.write(vertices.tobytes())
    return path


def write_gif(path: Path, frames: list[np.ndarray], frame_duration_ms: int) -> Path:
    """Animated GIF (looping) of (H,W,3) uint8 RGB frames with Pillow."""
    from PIL import Image as PilImage

    pictures = [PilImage.fromarray(frame) for frame in frames]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=frame_duration_ms, loop=0)
    return path


def write_png(path: Path, rgb: np.ndarray) -> Path:
    """Write an (H,W,3) uint8 RGB image as PNG."""
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path


# ------------------------------------------------------------------------------------------ the demo
def evaluate_recording(source: DemoSource, recording: Recording, stamps_ns: np.ndarray) -> list[dict[str, Any]]:
    """Per received depth image: frame index, stamp, latency and metrics vs the ground truth."""
    calib = load_stereo_calibration(calib_dir(source.root, source.drive))
    frame_of_stamp = {int(stamps_ns[f]): f for f in source.frames}
    rows = []
    for stamp in sorted(recording.depth):
        if stamp not in frame_of_stamp:
            raise ValueError(f"the node published depth with stamp {stamp} ns, which no replayed frame has")
        frame = frame_of_stamp[stamp]
        depth_gt = ground_truth_depth(source.root, EvalFrame(source.drive, frame), calib)
        depth = recording.depth[stamp]
        if depth.shape != depth_gt.shape:
            raise ValueError(f"frame {frame}: depth {depth.shape} and ground truth {depth_gt.shape} differ in size")
        row = {"frame": frame, "stamp_ns": stamp, **frame_metrics(depth_gt, depth)}
        if stamp in recording.published_ns:
            row["latency_ms"] = (recording.depth_received_ns[stamp] - recording.published_ns[stamp]) / 1e6
        rows.append(row)
    return rows


def write_outputs(out_dir: Path, source: DemoSource, recording: Recording, rows: list[dict[str, Any]],
                  montage_frames: int, gif_frame_ms: int) -> dict[str, Path]:
    """Depth PNGs, montage, GIF and PLY under `out_dir`; returns the paths by kind."""
    calib = load_stereo_calibration(calib_dir(source.root, source.drive))
    depth_dir = out_dir / "depth"
    depth_dir.mkdir(parents=True, exist_ok=True)
    strips = []
    for row in rows:
        stamp, frame = row["stamp_ns"], row["frame"]
        depth = recording.depth[stamp]
        write_png(depth_dir / f"{frame:010d}.png", inverse_depth_colors(depth))
        depth_gt = ground_truth_depth(source.root, EvalFrame(source.drive, frame), calib)
        image = recording.images.get(stamp)
        if image is not None:
            strips.append(triptych(image, depth, depth_gt, frame, source.ground_truth_name))
    files: dict[str, Path] = {"depth_pngs": depth_dir}
    if strips:
        chosen = np.unique(np.linspace(0, len(strips) - 1, min(montage_frames, len(strips))).round().astype(int))
        files["montage"] = write_png(out_dir / "montage.png", np.concatenate([strips[i] for i in chosen], axis=0))
        files["gif"] = write_gif(out_dir / "demo.gif", strips, gif_frame_ms)
    if recording.last_cloud is not None:
        files["ply"] = write_ply(out_dir / "cloud.ply", recording.last_cloud[1])
    return files


def run_demo(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Path]]:
    """Everything `main` does; returns the metrics.json content and the written files."""
    from siam_depth_ros.parameters import shipped_checkpoint

    started = time.monotonic()
    checkpoint = Path(args.checkpoint) if args.checkpoint else shipped_checkpoint()
    if checkpoint is None or not checkpoint.is_file():
        raise FileNotFoundError(f"no model at {checkpoint or 'models/siam_depth_small.pt'}; the demo needs the "
                                "shipped checkpoint (models/siam_depth_small.pt) or --checkpoint")
    source = None if args.synthetic else kitti_source(args.drive, args.frames)
    if source is None and args.drive != DEFAULT_DRIVE and not args.synthetic:
        raise FileNotFoundError(f"KITTI drive {args.drive} not found under {paths.kitti_raw_root()} "
                                "(set KITTI_ROOT to a KITTI raw root)")
    out_dir = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="siam_depth_demo_") as tmp:
        tmp_dir = Path(tmp)
        env = configure_dds_environment()
        env["OMP_NUM_THREADS"] = str(args.torch_threads)
        log(f"starting the depth node in its own process (model {checkpoint}; ROS_DOMAIN_ID {env['ROS_DOMAIN_ID']}, "
            f"localhost discovery, Fast DDS profile {env.get('FASTDDS_DEFAULT_PROFILES_FILE', 'not found: UDP')})")
        node = NodeProcess(node_ros_args(checkpoint.resolve(), LEFT_CAMERA.image_topic, LEFT_CAMERA.info_topic,
                                         args.cloud_stride), tmp_dir / "depth_node.log", env)
        try:
            if source is None:
                reason = "--synthetic given" if args.synthetic else (
                    f"no KITTI data at {paths.kitti_raw_root() / args.drive} (set KITTI_ROOT to a KITTI raw root)")
                log(f"{reason}: running on a SYNTHETIC drive of {args.synthetic_frames} rendered frames instead; "
                    "metrics are against its exact depth")
                source = write_synthetic_drive(tmp_dir / "synthetic", args.synthetic_frames)
            else:
                log(f"KITTI drive {source.drive_dir}, frames {source.frames[0]}..{source.frames[-1]} "
                    f"({len(source.frames)} frames)")
            bag = tmp_dir / "bag"
            log(f"converting the drive to a rosbag2 (left camera images + camera_info) at {bag}")
            convert_drive(source.drive_dir, bag, frame_range=(source.frames[0], source.frames[-1] + 1),
                          with_right=False, with_velodyne=False, with_gps=False, progress=False)
            log("waiting for the node to load the model")
            node.wait_until_ready(args.startup_timeout)
            log(f"replaying {len(source.frames)} frames over DDS at rate {args.rate} and recording what the node "
                "publishes")
            recording, published = replay_through_node(bag, node, LEFT_CAMERA.image_topic, LEFT_CAMERA.info_topic,
                                                       args.rate)
        finally:
            node.stop()
        if not recording.depth:
            raise RuntimeError(f"the node published no depth image; its log:\n{node.log()}")
        log(f"received {len(recording.depth)} depth images for {published} published frames; "
            f"evaluating against {source.ground_truth_name} and writing {out_dir}/")
        stamps_ns = read_timestamps(source.drive_dir / "image_02" / "timestamps.txt")
        rows = evaluate_recording(source, recording, stamps_ns)
        files = write_outputs(out_dir, source, recording, rows, args.montage_frames, round(1000 / 10 / args.rate))
    report = {
        "source": {"kind": "synthetic" if source.synthetic else "kitti", "drive": source.drive,
                   "root": None if source.synthetic else str(source.root), "frames": source.frames,
                   "ground_truth": source.ground_truth_name},
        "model": {"checkpoint": str(checkpoint)},
        "replay": {"rate": args.rate, **timing_summary(recording, published)},
        "depth_0_80m": {"frames": len(rows), "model": mean_metrics(rows, "model"),
                        "constant_median_depth": mean_metrics(rows, "constant")},
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
    print(format_metrics_table(metrics["model"], metrics["constant_median_depth"], metrics["frames"],
                               report["source"]["ground_truth"], "siam_depth_small (node, streamed)"))
    print()
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
    parser.add_argument("--torch-threads", type=int, default=1, help="intra-op threads of the node's torch "
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
