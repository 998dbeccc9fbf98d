"""End-to-end latency and throughput of the depth node over real DDS, with real KITTI frames.

The node runs in its own process exactly as `depth_node` does, with timers wrapped around the
functions it calls (message conversion, the estimator's preprocess/model/postprocess, cloud
building, colour map, DDS publish) — node.py is not changed. A client process publishes KITTI
drive 0009 left frames (1242x375) with their camera_info and subscribes to every output (so the
node builds all of them, as with RViz attached). Two phases:

- lock-step: the next frame goes out when every output of the previous one has arrived. Latency
  publish -> depth received without any waiting in the node, and the node's time per frame split
  into stages; node / model = the node's processing time over the model's own time (goal <= 1.10).
- stream: frames at `--rate` Hz (default 10, the KITTI camera) for `--frames` frames: output rate,
  frames dropped (the node keeps only the newest frame) and latency including the wait for the model.

Also measured: the point-cloud build time (back-projection + colours + PointCloud2) for a
1242x375 depth map at stride 1 and 2, and the model alone (benchmarks.model_latency) for the same
network, in this process after the node has stopped.

    python -m benchmarks.node_latency --json node_latency.json
    python -m benchmarks.node_latency --width 0.25 --size 512x256 --frames 100 --rate 10
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
SHM_PROFILE = REPO_ROOT / "config" / "fastdds_shm.xml"
DRIVE = "2011_09_26/2011_09_26_drive_0009_sync"
NAMESPACE = "/node_benchmark"
OUTPUT_TOPICS = ("depth", "depth/camera_info", "disparity", "points", "depth/colored")
#: Node functions timed in the instrumented node (module attribute of siam_depth_ros.node -> stage).
TIMED_NODE_FUNCTIONS = {"image_to_numpy": "input conversion", "numpy_to_image": "output images",
                        "colorize_depth": "colour map", "backproject": "point cloud", "rgb_view": "point cloud",
                        "points_to_pointcloud2": "point cloud", "make_camera_info": "output images"}
STAGE_ORDER = ("input conversion", "preprocess", "model", "postprocess", "output images", "colour map",
               "point cloud", "publish", "other")


# -- the instrumented node (child process) --------------------------------------------------------------


class StageClock:
    """Seconds per stage of each processed frame (the node processes one frame at a time, in its worker)."""

    def __init__(self) -> None:
        self.current: dict[str, float] = defaultdict(float)
        self.frames: list[dict[str, Any]] = []

    def add(self, stage: str, seconds: float) -> None:
        self.current[stage] += seconds

    def timed(self, stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.add(stage, time.perf_counter() - start)
        return wrapper


def serve_instrumented(timings_path: Path, ros_argv: list[str]) -> int:
    """Run `depth_node` with timers around its stages; on shutdown write the sums to `timings_path` (JSON)."""
    from rclpy.publisher import Publisher

    import siam_depth_ros.node as node_module
    from siam_depth_core.inference import DepthEstimator

    clock = StageClock()
    for name, stage in TIMED_NODE_FUNCTIONS.items():
        setattr(node_module, name, clock.timed(stage, getattr(node_module, name)))

    original_step = DepthEstimator.step

    def step(self: DepthEstimator, *args: Any, **kwargs: Any) -> Any:
        result = original_step(self, *args, **kwargs)
        for stage, seconds in result.timings.items():
            clock.add(stage, seconds)
        return result

    original_publish = Publisher.publish

    def publish(self: Publisher, msg: Any) -> None:
        if self.topic_name in ("/diagnostics", "/rosout"):
            return original_publish(self, msg)
        start = time.perf_counter()
        try:
            return original_publish(self, msg)
        finally:
            clock.add("publish", time.perf_counter() - start)

    original_process = node_module.DepthNode._process

    def process(self: Any, msg: Any, *args: Any, **kwargs: Any) -> None:
        clock.current = defaultdict(float)
        start = time.perf_counter()
        original_process(self, msg, *args, **kwargs)  # a frame that raises is not recorded
        clock.frames.append({"stamp_ns": msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec,
                             "total_s": time.perf_counter() - start, "stages_s": dict(clock.current)})

    DepthEstimator.step = step
    Publisher.publish = publish
    node_module.DepthNode._process = process
    code = node_module.main(["depth_node", *ros_argv])
    timings_path.write_text(json.dumps(clock.frames))
    return code


# -- the client (this process) ------------------------------------------------------------------------


def configure_dds() -> dict[str, str]:
    """Localhost-only discovery, a pid-derived domain and the shared-memory profile, for us and the node."""
    os.environ.update({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_DOMAIN_ID": str(1 + os.getpid() % 101),
                       "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp", "FASTDDS_DEFAULT_PROFILES_FILE": str(SHM_PROFILE),
                       "FASTRTPS_DEFAULT_PROFILES_FILE": str(SHM_PROFILE), "RCUTILS_COLORIZED_OUTPUT": "0",
                       "PYTHONUNBUFFERED": "1"})
    return dict(os.environ)


def load_kitti(frames: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Up to `frames` left colour frames of drive 0009 ((375,1242,3) uint8 RGB) and the camera matrix K."""
    from siam_depth_core.data.calib import load_stereo_calibration
    from siam_depth_core.data.kitti import frame_path, list_frames, load_image
    from siam_depth_core.data.paths import kitti_raw_root

    root = kitti_raw_root()
    drive_dir = root / DRIVE
    if not drive_dir.is_dir():
        raise SystemExit(f"KITTI drive not found at {drive_dir} (set KITTI_ROOT or SIAM_DEPTH_DATA)")
    indices = list_frames(drive_dir)[:frames]
    images = [load_image(frame_path(root, DRIVE, index)) for index in indices]
    return images, load_stereo_calibration(drive_dir.parent).camera_matrix


@dataclass
class Arrivals:
    """Per output topic: stamp (ns) -> monotonic arrival time; the last depth image received."""

    times: dict[str, dict[int, float]] = field(default_factory=lambda: {topic: {} for topic in OUTPUT_TOPICS})
    last_depth: Any = None

    def callback(self, topic: str) -> Callable[[Any], None]:
        def record(msg: Any) -> None:
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            self.times[topic][stamp] = time.monotonic()
            if topic == "depth":
                self.last_depth = msg
        return record

    def complete(self, stamp: int) -> bool:
        return all(stamp in arrived for arrived in self.times.values())

    def last_output(self, stamp: int) -> float:
        return max(arrived[stamp] for arrived in self.times.values())


class Client:
    """Publishes frames to the node under test and records when its outputs arrive."""

    def __init__(self, images: list[np.ndarray], camera_matrix: np.ndarray) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from stereo_msgs.msg import DisparityImage

        from siam_depth_ros.conversions import make_camera_info, numpy_to_image

        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("node_benchmark_client", namespace=NAMESPACE, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.image_pub = self.node.create_publisher(Image, "image", qos_profile_sensor_data)
        self.info_pub = self.node.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
        self.arrivals = Arrivals()
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        types = {"depth": Image, "depth/camera_info": CameraInfo, "disparity": DisparityImage,
                 "points": PointCloud2, "depth/colored": Image}
        self.subscriptions = [self.node.create_subscription(types[topic], topic, self.arrivals.callback(topic),
                                                            reliable) for topic in OUTPUT_TOPICS]
        height, width = images[0].shape[:2]
        self.messages = [numpy_to_image(image, "rgb8") for image in images]
        self.info = make_camera_info(camera_matrix, width, height)
        for msg in [*self.messages, self.info]:
            msg.header.frame_id = "camera_color_left_optical_frame"
        self.published: dict[int, float] = {}

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self.executor.spin_once(timeout_sec=min(remaining, 0.005))

    def spin_until(self, condition: Callable[[], bool], timeout: float, what: str) -> bool:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                print(f"warning: timed out after {timeout} s waiting for {what}", file=sys.stderr)
                return False
            self.executor.spin_once(timeout_sec=0.005)
        return True

    def wait_for_node(self, timeout: float) -> None:
        def matched() -> bool:
            return (self.image_pub.get_subscription_count() > 0 and self.info_pub.get_subscription_count() > 0
                    and all(subscription.get_publisher_count() > 0 for subscription in self.subscriptions))
        if not self.spin_until(matched, timeout, "the node's topics"):
            raise SystemExit("the node did not come up (see its log)")

    def publish(self, index: int, stamp_ns: int) -> None:
        from builtin_interfaces.msg import Time

        stamp = Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
        msg = self.messages[index % len(self.messages)]
        msg.header.stamp = self.info.header.stamp = stamp
        self.info_pub.publish(self.info)
        self.published[stamp_ns] = time.monotonic()
        self.image_pub.publish(msg)

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def percentiles_ms(seconds: list[float]) -> dict[str, float | None]:
    if not seconds:
        return {"median_ms": None, "p90_ms": None, "max_ms": None}
    values = np.asarray(seconds) * 1e3
    return {"median_ms": float(np.median(values)), "p90_ms": float(np.percentile(values, 90)),
            "max_ms": float(values.max())}


def run_lockstep(client: Client, frames: int, first_stamp: int, period_ns: int, timeout: float
                 ) -> tuple[dict[str, Any], dict[int, tuple[float, float]]]:
    """Each frame after all outputs of the previous one arrived: latency with no wait in the node.

    Returns the summary and, per answered stamp, (seconds publish -> depth, seconds publish -> all outputs).
    A frame lost on the way (best effort) is given up after `timeout` and the next one goes out.
    """
    latencies: dict[int, tuple[float, float]] = {}
    for index in range(frames):
        stamp = first_stamp + index * period_ns
        client.publish(index, stamp)
        if client.spin_until(lambda s=stamp: client.arrivals.complete(s), timeout, f"outputs of frame {index}"):
            published = client.published[stamp]
            latencies[stamp] = (client.arrivals.times["depth"][stamp] - published,
                                client.arrivals.last_output(stamp) - published)
    summary = {"frames": frames, "answered": len(latencies),
               "publish_to_depth": percentiles_ms([depth for depth, _ in latencies.values()]),
               "publish_to_all_outputs": percentiles_ms([every for _, every in latencies.values()])}
    return summary, latencies


def warm_up(client: Client, frames: int, first_stamp: int, period_ns: int, timeout: float = 120.0) -> None:
    """Lock-step frames until `frames` were answered (the first ones pay lazy initialisation; the very
    first may be lost while discovery settles)."""
    deadline = time.monotonic() + timeout
    answered = index = 0
    while answered < frames:
        if time.monotonic() > deadline:
            raise SystemExit(f"the node answered {answered} of {index} warm-up frames in {timeout} s")
        stamp = first_stamp + index * period_ns
        client.publish(index, stamp)
        answered += client.spin_until(lambda s=stamp: client.arrivals.complete(s), 5.0, f"warm-up frame {index}")
        index += 1


def run_stream(client: Client, frames: int, rate_hz: float, first_stamp: int) -> dict[str, Any]:
    """`frames` frames at `rate_hz`, stamps on the camera clock: throughput, drops, latency with waiting."""
    period_ns = int(round(1e9 / rate_hz))
    start = time.monotonic()
    for index in range(frames):
        client.publish(index, first_stamp + index * period_ns)
        client.spin_for(start + (index + 1) / rate_hz - time.monotonic())
    client.spin_for(2.0)  # the last frames' outputs
    stamps = [first_stamp + index * period_ns for index in range(frames)]
    answered = [stamp for stamp in stamps if stamp in client.arrivals.times["depth"]]
    to_depth = [client.arrivals.times["depth"][stamp] - client.published[stamp] for stamp in answered]
    duration = frames / rate_hz
    return {"frames": frames, "rate_hz": rate_hz, "answered": len(answered),
            "output_rate_hz": len(answered) / duration, "dropped_fraction": 1 - len(answered) / frames,
            "publish_to_depth": percentiles_ms(to_depth)}


def cloud_build_times(depth_m: np.ndarray, image: np.ndarray, camera_matrix: np.ndarray, repeats: int,
                      min_depth: float = 0.5, max_depth: float = 50.0) -> list[dict[str, Any]]:
    """Point cloud from an (H,W) depth map as the node builds it, per stride: median ms, points, bytes."""
    from siam_depth_core.geometry import backproject
    from siam_depth_ros.conversions import points_to_pointcloud2, rgb_view

    rows = []
    for stride in (1, 2):
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            points, pixel_index = backproject(depth_m, camera_matrix, stride, min_depth, max_depth)
            colors = rgb_view(image, "rgb8")[pixel_index[:, 0], pixel_index[:, 1]]
            msg = points_to_pointcloud2(points, colors)
            seconds.append(time.perf_counter() - start)
        rows.append({"width": depth_m.shape[1], "height": depth_m.shape[0], "stride": stride, "points": len(points),
                     "bytes": len(msg.data), **percentiles_ms(seconds)})
    return rows


def stage_breakdown(frames: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ms per processed frame for each stage and its share of the node's processing time."""
    if not frames:
        return {"frames": 0}
    totals = [frame["total_s"] for frame in frames]
    total = float(np.sum(totals))
    stages = {stage: sum(frame["stages_s"].get(stage, 0.0) for frame in frames) for stage in STAGE_ORDER[:-1]}
    stages["other"] = max(total - sum(stages.values()), 0.0)
    return {"frames": len(frames), "node_ms_per_frame": 1e3 * total / len(frames), "node_ms": percentiles_ms(totals),
            "stages": {stage: {"ms_per_frame": 1e3 * seconds / len(frames), "share": seconds / total}
                       for stage, seconds in stages.items()}}


def standalone_model_ms(backend: str, net_width: float, size: tuple[int, int], frames: int) -> dict[str, float | None]:
    """The network alone (benchmarks.model_latency), same width/size/backend, in this process.

    Run from a worker thread, as the node runs its model (on the loaded development VM the calling
    thread changed torch's CPU timings).
    """
    import threading

    import torch

    from benchmarks.model_latency import make_backend, measure
    from siam_depth_core.checkpoint import ModelMeta

    meta = ModelMeta(net_width=net_width, height=size[0], width=size[1])
    seconds: list[float] = []
    with tempfile.TemporaryDirectory(prefix="siam_node_bench_") as workdir:
        model = make_backend(backend, meta, size, "cpu", False, torch.get_num_threads(), Path(workdir))
        worker = threading.Thread(target=lambda: seconds.extend(measure(model, frames, warmup=3)))
        worker.start()
        worker.join()
    return percentiles_ms(seconds)


def prepare_model(args: argparse.Namespace, workdir: Path) -> list[str]:
    """Node parameters for the model under test (a random-weight checkpoint unless --checkpoint)."""
    from siam_depth_core.checkpoint import ModelMeta, save_checkpoint

    height, width = args.size
    checkpoint = args.checkpoint
    meta = ModelMeta(net_width=args.width, height=height, width=width)
    if checkpoint is None:
        checkpoint = save_checkpoint(workdir / "random.pt", meta.build_network(), meta)
    parameters = {"checkpoint": checkpoint, "network_height": height, "network_width": width}
    if args.backend == "onnxruntime":
        from siam_depth_core.checkpoint import load_model
        from siam_depth_core.export import export_onnx

        net, loaded = load_model(checkpoint)
        onnx_path = workdir / "model.onnx"
        export_onnx(net, loaded, args.size, onnx_path)
        parameters.update(backend="onnxruntime", onnx=onnx_path)
    return [item for name, value in parameters.items() for item in ("-p", f"{name}:={value}")]


def machine_description() -> dict[str, Any]:
    from benchmarks.model_latency import machine_description as describe

    return {**describe("cpu"), "load_average": os.getloadavg()}


def per_frame_ratios(frames: list[dict[str, Any]], latencies: dict[int, tuple[float, float]]
                     ) -> dict[str, dict[str, float | None]]:
    """Median and p90 over lock-step frames of (node time) / (that frame's model time in the node).

    Pairing each frame with its own model time cancels the drift of a shared machine's load.
    """
    pairs = [(frame, latencies.get(frame["stamp_ns"])) for frame in frames if frame["stages_s"].get("model")]
    ratios = {
        "node_processing_over_model": [frame["total_s"] / frame["stages_s"]["model"] for frame, _ in pairs],
        "publish_to_depth_over_model": [seen[0] / frame["stages_s"]["model"] for frame, seen in pairs if seen],
        "publish_to_all_outputs_over_model": [seen[1] / frame["stages_s"]["model"] for frame, seen in pairs if seen],
    }
    return {name: {"median": float(np.median(values)) if values else None,
                   "p90": float(np.percentile(values, 90)) if values else None, "frames": len(values)}
            for name, values in ratios.items()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from siam_depth_ros.conversions import image_to_numpy

    env = configure_dds()
    images, camera_matrix = load_kitti(args.kitti_frames)
    period_ns = 100_000_000  # stamps on a 10 Hz camera clock
    first_lockstep = 1_317_000_000 * 1_000_000_000 + 3 * args.warmup * period_ns
    first_stream = first_lockstep + (args.lockstep_frames + 10) * period_ns
    with tempfile.TemporaryDirectory(prefix="siam_node_bench_") as tmp:
        workdir = Path(tmp)
        timings_path, log_path = workdir / "timings.json", workdir / "node.log"
        command = [sys.executable, "-m", "benchmarks.node_latency", "--instrumented-node", str(timings_path),
                   "--ros-args", "-r", f"__ns:={NAMESPACE}", *prepare_model(args, workdir)]
        with log_path.open("wb") as log:
            node = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
        client = Client(images, camera_matrix)
        try:
            client.wait_for_node(timeout=120.0)
            warm_up(client, args.warmup, first_lockstep - 3 * args.warmup * period_ns, period_ns)
            lockstep, lockstep_latencies = run_lockstep(client, args.lockstep_frames, first_lockstep, period_ns,
                                                        timeout=30.0)
            stream = run_stream(client, args.frames, args.rate, first_stream)
            last_depth = client.arrivals.last_depth
        finally:
            client.close()
            node.send_signal(signal.SIGINT)
            try:
                node.wait(30)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
        if not timings_path.is_file():
            raise SystemExit(f"the instrumented node wrote no timings; its log:\n{log_path.read_text()}")
        frames = json.loads(timings_path.read_text())
    lockstep_frames = [frame for frame in frames if first_lockstep <= frame["stamp_ns"] < first_stream]
    lockstep_stages = stage_breakdown(lockstep_frames)
    stream_stages = stage_breakdown([frame for frame in frames if frame["stamp_ns"] >= first_stream])
    depth_m = image_to_numpy(last_depth).copy() if last_depth is not None else None
    if depth_m is None or not np.isfinite(depth_m).any():
        depth_m = np.random.default_rng(0).uniform(3.0, 80.0, images[0].shape[:2]).astype(np.float32)
    model = standalone_model_ms(args.backend, args.width, args.size, args.model_frames)
    return {"machine": machine_description(),
            "settings": {"backend": args.backend, "net_width": args.width, "network_size": [args.size[1], args.size[0]],
                         "image_size": [images[0].shape[1], images[0].shape[0]],
                         "checkpoint": str(args.checkpoint) if args.checkpoint else "random weights",
                         "rate_hz": args.rate, "frames": args.frames, "lockstep_frames": args.lockstep_frames,
                         "outputs": list(OUTPUT_TOPICS)},
            "lockstep": lockstep, "stream": stream, "node_stages_lockstep": lockstep_stages,
            "node_stages_stream": stream_stages, "model_standalone": model,
            "ratios": per_frame_ratios(lockstep_frames, lockstep_latencies),
            "point_cloud": cloud_build_times(depth_m, images[0], camera_matrix, args.cloud_repeats)}


def print_report(report: dict[str, Any]) -> None:
    settings = report["settings"]
    print(f"\nnode: {settings['backend']} width {settings['net_width']} network {settings['network_size'][0]}x"
          f"{settings['network_size'][1]}, KITTI {settings['image_size'][0]}x{settings['image_size'][1]}, "
          f"all outputs subscribed")

    def line(name: str, stats: dict[str, float | None]) -> str:
        values = [f"{stats[key]:9.1f}" if stats[key] is not None else f"{'-':>9}"
                  for key in ("median_ms", "p90_ms", "max_ms")]
        return f"{name:<44} {' '.join(values)}"

    print(f"{'latency':<44} {'median ms':>9} {'p90 ms':>9} {'max ms':>9}")
    print(line("lock-step: publish -> depth received", report["lockstep"]["publish_to_depth"]))
    print(line("lock-step: publish -> all outputs received", report["lockstep"]["publish_to_all_outputs"]))
    stream = report["stream"]
    print(line(f"{stream['rate_hz']:g} Hz stream: publish -> depth received", stream["publish_to_depth"]))
    if report["node_stages_lockstep"]["frames"]:
        print(line("lock-step: node processing per frame", report["node_stages_lockstep"]["node_ms"]))
    print(line("model alone, after the node, worker thread", report["model_standalone"]))
    print(f"\n{stream['rate_hz']:g} Hz stream: {stream['answered']}/{stream['frames']} frames answered, output "
          f"{stream['output_rate_hz']:.2f} Hz, {100 * stream['dropped_fraction']:.0f}% dropped (newest frame only)")
    lockstep_stages, stream_stages = report["node_stages_lockstep"], report["node_stages_stream"]
    if lockstep_stages["frames"]:
        print(f"\n{'stage':<18} {'lock-step ms/frame':>18} {'share':>7} {'stream ms/frame':>16} {'share':>7}")
        for stage, values in lockstep_stages["stages"].items():
            streamed = stream_stages["stages"][stage] if stream_stages["frames"] else None
            stream_text = (f"{streamed['ms_per_frame']:16.1f} {100 * streamed['share']:6.1f}%" if streamed
                           else f"{'-':>16} {'-':>7}")
            print(f"{stage:<18} {values['ms_per_frame']:18.1f} {100 * values['share']:6.1f}% {stream_text}")
    print(f"\n{'per-frame ratio to the model time (lock-step)':<46} {'median':>7} {'p90':>7}  (goal: <= 1.10)")
    for name, values in report["ratios"].items():
        if values["median"] is not None:
            print(f"{name:<46} {values['median']:7.3f} {values['p90']:7.3f}")
    print(f"\n{'point cloud':<22} {'stride':>6} {'points':>8} {'MB':>6} {'median ms':>9} {'p90 ms':>9}")
    for row in report["point_cloud"]:
        print(f"{row['width']}x{row['height']:<17} {row['stride']:>6} {row['points']:>8} {row['bytes'] / 1e6:6.2f} "
              f"{row['median_ms']:9.1f} {row['p90_ms']:9.1f}")


def parse_size(text: str) -> tuple[int, int]:
    from benchmarks.model_latency import parse_size as parse

    return parse(text)


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch", help="node backend")
    parser.add_argument("--width", type=float, default=0.25, help="network width multiplier (random weights)")
    parser.add_argument("--size", type=parse_size, default=(256, 512), help="network input WxH (default 512x256)")
    parser.add_argument("--checkpoint", type=Path, help="a trained checkpoint instead of random weights")
    parser.add_argument("--rate", type=float, default=10.0, help="camera rate of the stream phase, Hz")
    parser.add_argument("--frames", type=int, default=100, help="frames of the stream phase")
    parser.add_argument("--lockstep-frames", type=int, default=30, help="frames of the lock-step phase")
    parser.add_argument("--warmup", type=int, default=5, help="untimed lock-step frames first")
    parser.add_argument("--kitti-frames", type=int, default=51, help="distinct KITTI frames cycled through")
    parser.add_argument("--model-frames", type=int, default=20, help="timed steps of the standalone model")
    parser.add_argument("--cloud-repeats", type=int, default=30, help="repetitions of the point-cloud build")
    parser.add_argument("--json", type=Path, help="write the report here")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--instrumented-node"]:
        ros_argv = argv[2:]
        return serve_instrumented(Path(argv[1]), ros_argv)
    args = build_arg_parser().parse_args(argv)
    report = run(args)
    print(json.dumps(report["machine"]))
    print_report(report)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
