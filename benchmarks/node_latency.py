"""End-to-end latency and throughput of the depth node over real DDS, with real KITTI frames.

The node runs in its own process exactly as `depth_node` does (`siam_depth_ros.harness`), unchanged: the
time of each of its stages (input conversion, the estimator's preprocess / model / postprocess, building
each output, DDS publish) comes from its own /diagnostics, whose running totals give exact means over
each phase. A client publishes KITTI drive 0009 left frames (1242x375) with their camera_info and
subscribes to every output (so the node builds all of them, as with RViz attached). Two phases:

- lock-step: the next frame goes out when every output of the previous one has arrived. Latency
  publish -> depth received without any waiting in the node, and the node's time per frame split
  into stages; node / model = the node's processing time over the model's own time (goal <= 1.10),
  over the phase and per diagnostics period (about 1 s, which pairs times taken under the same load).
- stream: frames at `--rate` Hz (default 10, the KITTI camera) for `--frames` frames: output rate,
  frames dropped (the node keeps only the newest frame) and latency including the wait for the model.

Also measured, in this process after the node has stopped: the model alone (benchmarks.model_latency)
for the same network, the point-cloud build time (the node's own `OutputBuilder.points`) for the
1242x375 depth map that network gives for the first frame, at stride 1 and 2, and the JPEG decode of a
KITTI frame as the node decodes compressed input (`conversions.compressed_image_to_numpy`).

`--image-transport compressed` feeds the node JPEG sensor_msgs/CompressedImage (quality `--jpeg-quality`,
as `siam-depth-kitti2bag --compressed` writes them) on `image/compressed`; the node's `convert_input` stage
is then the decode. `--num-threads` sets the node's num_threads parameter (default: the node's default);
`--num-threads 1,2` runs the whole benchmark once per value and ends with the overhead ratios side by side.

    python -m benchmarks.node_latency --json node_latency.json
    python -m benchmarks.node_latency --width-multiplier 0.25 --size 512x256 --frames 100 --rate 10
    python -m benchmarks.node_latency --checkpoint models/siam_depth_small.pt --size 192x64 --num-threads 1
    python -m benchmarks.node_latency --image-transport compressed
    python -m benchmarks.node_latency --backend openvino_int8 --num-threads 1,2   # OpenVINO, int8 export, bf16 rest
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.model_latency import OPENVINO_VARIANTS, size_argument
from siam_depth_core.geometry import ImageSize

REPO_ROOT = Path(__file__).resolve().parents[1]
DRIVE = "2011_09_26/2011_09_26_drive_0009_sync"
NAMESPACE = "/node_benchmark"
FRAME_ID = "camera_color_left_optical_frame"


def load_kitti(frames: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Up to `frames` left colour frames of drive 0009 ((375,1242,3) uint8 RGB) and the camera matrix K."""
    from siam_depth_core.data.kitti import KittiDrive, load_image
    from siam_depth_core.data.paths import kitti_raw_root

    drive = KittiDrive(kitti_raw_root(), DRIVE)
    if not drive.exists():
        raise SystemExit(f"KITTI drive not found at {drive.path} (set KITTI_ROOT or SIAM_DEPTH_DATA)")
    images = [load_image(drive.image_path(index)) for index in drive.frames()[:frames]]
    return images, drive.calibration.camera_matrix


class Client:
    """Publishes KITTI frames to the node under test (`DepthNodeClient`) and keeps its /diagnostics."""

    def __init__(self, images: list[np.ndarray], camera_matrix: np.ndarray, image_transport: str = "raw",
                 jpeg_quality: int = 95, single_pass: bool = False) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        from siam_depth_ros.conversions import make_camera_info, numpy_to_compressed_image, numpy_to_image
        from siam_depth_ros.harness import DepthNodeClient
        from siam_depth_ros.outputs import CONFIDENCE, OUTPUT_TOPICS

        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("node_benchmark_client", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        # a single pass has no second estimate, so the node publishes no confidence
        outputs = [topic for topic in OUTPUT_TOPICS if not (single_pass and topic == CONFIDENCE)]
        self.node_client = DepthNodeClient(self.node, self.executor, NAMESPACE, outputs=outputs, output_depth=10,
                                           keep_messages=False, image_transport=image_transport)
        height, width = images[0].shape[:2]
        self.messages = ([numpy_to_compressed_image(image, "rgb8", "jpeg", jpeg_quality) for image in images]
                         if image_transport == "compressed" else [numpy_to_image(image, "rgb8") for image in images])
        self.info = make_camera_info(camera_matrix, width, height)
        for msg in [*self.messages, self.info]:
            msg.header.frame_id = FRAME_ID

    def complete(self, stamp: int) -> bool:
        """Every output of the frame stamped `stamp` (ns) has arrived."""
        return all(self.node_client.arrival(topic, stamp) for topic in self.node_client.arrivals)

    def arrived(self, topic: str, stamp: int) -> float:
        """Monotonic arrival time (s) of the `topic` output of the frame stamped `stamp` (ns)."""
        return self.node_client.arrival(topic, stamp).time_s

    def publish(self, index: int, stamp_ns: int) -> None:
        from builtin_interfaces.msg import Time

        msg = self.messages[index % len(self.messages)]
        msg.header.stamp = self.info.header.stamp = Time(sec=stamp_ns // 1_000_000_000,
                                                         nanosec=stamp_ns % 1_000_000_000)
        self.node_client.publish(msg, self.info)

    def published(self, stamp: int) -> float:
        return self.node_client.published_s[stamp]

    def wait_complete(self, stamp: int, timeout: float, what: str) -> bool:
        """Spin until every output of `stamp` arrived; False (with a warning) after `timeout` s."""
        try:
            self.node_client.spin_until(lambda: self.complete(stamp), timeout, what)
        except TimeoutError as error:
            print(f"warning: {error}", file=sys.stderr)
            return False
        return True

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


def run_lockstep(client: Client, frames: int, first_stamp: int, period_ns: int, timeout: float) -> dict[str, Any]:
    """Each frame after all outputs of the previous one arrived: latency with no wait in the node.

    A frame lost on the way (best effort) is given up after `timeout` and the next one goes out.
    """
    to_depth, to_all = [], []
    for index in range(frames):
        stamp = first_stamp + index * period_ns
        client.publish(index, stamp)
        if client.wait_complete(stamp, timeout, f"outputs of frame {index}"):
            published = client.published(stamp)
            to_depth.append(client.arrived("depth", stamp) - published)
            to_all.append(max(client.arrived(topic, stamp) for topic in client.node_client.arrivals) - published)
    return {"frames": frames, "answered": len(to_depth), "publish_to_depth": percentiles_ms(to_depth),
            "publish_to_all_outputs": percentiles_ms(to_all)}


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
        answered += client.wait_complete(stamp, 5.0, f"warm-up frame {index}")
        index += 1


def run_stream(client: Client, frames: int, rate_hz: float, first_stamp: int) -> dict[str, Any]:
    """`frames` frames at `rate_hz`, stamps on the camera clock: throughput, drops, latency with waiting."""
    period_ns = int(round(1e9 / rate_hz))
    start = time.monotonic()
    for index in range(frames):
        client.publish(index, first_stamp + index * period_ns)
        client.node_client.spin_for(start + (index + 1) / rate_hz - time.monotonic())
    client.node_client.spin_for(2.0)  # the last frames' outputs
    stamps = [first_stamp + index * period_ns for index in range(frames)]
    answered = [stamp for stamp in stamps if client.node_client.arrival("depth", stamp)]
    to_depth = [client.arrived("depth", stamp) - client.published(stamp) for stamp in answered]
    duration = frames / rate_hz
    return {"frames": frames, "rate_hz": rate_hz, "answered": len(answered),
            "output_rate_hz": len(answered) / duration, "dropped_fraction": 1 - len(answered) / frames,
            "publish_to_depth": percentiles_ms(to_depth)}


def cloud_build_times(depth_m: np.ndarray, image: np.ndarray, camera_matrix: np.ndarray, repeats: int,
                      min_depth: float = 0.5, max_depth: float = 50.0) -> list[dict[str, Any]]:
    """Point cloud from an (H,W) depth map as the node builds it, per stride: median ms, points, bytes."""
    from std_msgs.msg import Header

    from siam_depth_core.runtime.inference import DepthResult
    from siam_depth_ros.camera_info import Intrinsics
    from siam_depth_ros.outputs import InputFrame, OutputBuilder, OutputSettings

    result = DepthResult(disparity=np.zeros_like(depth_m), depth_m=depth_m, stamp=0.0, reset_reason=None)
    frame = InputFrame(image, "rgb8", Header(frame_id=FRAME_ID))
    rows = []
    for stride in (1, 2):
        builder = OutputBuilder(OutputSettings(min_depth=0.1, max_depth=80.0, cloud_stride=stride,
                                               cloud_min_depth=min_depth, cloud_max_depth=max_depth,
                                               colored_min_depth=2.0))
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            msg = builder.points(result, frame, Intrinsics(camera_matrix, None), frame.header)
            seconds.append(time.perf_counter() - start)
        rows.append({"width": depth_m.shape[1], "height": depth_m.shape[0], "stride": stride,
                     "points": msg.width * msg.height, "finite_points": int(np.isfinite(np.frombuffer(
                         msg.data, np.float32).reshape(-1, 4)[:, 2]).sum()), "bytes": len(msg.data),
                     **percentiles_ms(seconds)})
    return rows


def jpeg_decode_times(images: list[np.ndarray], quality: int, repeats: int) -> dict[str, Any]:
    """The node's decode of compressed input (`compressed_image_to_numpy`) for each KITTI frame as a JPEG of
    `quality`, `repeats` times each: median / p90 ms per frame and the median message size."""
    from siam_depth_ros.conversions import compressed_image_to_numpy, numpy_to_compressed_image

    messages = [numpy_to_compressed_image(image, "rgb8", "jpeg", quality) for image in images]
    seconds = []
    for _ in range(repeats):
        for msg in messages:
            start = time.perf_counter()
            compressed_image_to_numpy(msg)
            seconds.append(time.perf_counter() - start)
    return {"quality": quality, "frames": len(messages), "repeats": repeats,
            "median_bytes": float(np.median([len(msg.data) for msg in messages])),
            "raw_bytes": int(images[0].nbytes), **percentiles_ms(seconds)}


def _totals(values: dict[str, str]) -> dict[str, float]:
    """The cumulative stage seconds and frames processed of one /diagnostics report."""
    from siam_depth_ros.diagnostics import STAGES

    return {"frames": float(values["frames_processed"]),
            **{stage: float(values[f"{stage}_total_s"]) for stage in STAGES}}


def stage_breakdown(before: dict[str, str], after: dict[str, str]) -> dict[str, Any]:
    """Mean ms per processed frame for each stage between two /diagnostics reports, and its share of the
    node's processing time ("other": camera_info pairing, bookkeeping)."""
    from siam_depth_ros.diagnostics import STAGES

    start, end = _totals(before), _totals(after)
    frames = int(end["frames"] - start["frames"])
    if frames <= 0:
        return {"frames": 0}
    total = end["processing"] - start["processing"]
    stages = {stage: end[stage] - start[stage] for stage in STAGES if stage != "processing"}
    stages["other"] = max(total - sum(stages.values()), 0.0)
    return {"frames": frames, "node_ms_per_frame": 1e3 * total / frames, "model_ms_per_frame":
            1e3 * stages["model"] / frames,
            "stages": {stage: {"ms_per_frame": 1e3 * seconds / frames, "share": seconds / total}
                       for stage, seconds in stages.items()}}


def period_ratios(reports: list[dict[str, str]], before: dict[str, str], after: dict[str, str]) -> dict[str, Any]:
    """Node processing / model time per diagnostics period (consecutive reports) within [before, after]:
    median and p90 over the periods in which frames were processed."""
    first, last = _totals(before)["frames"], _totals(after)["frames"]
    inside = [_totals(values) for values in reports if first <= _totals(values)["frames"] <= last]
    ratios = [(end["processing"] - start["processing"]) / (end["model"] - start["model"])
              for start, end in zip(inside, inside[1:], strict=False) if end["model"] > start["model"]]
    return {"median": float(np.median(ratios)) if ratios else None,
            "p90": float(np.percentile(ratios, 90)) if ratios else None, "periods": len(ratios)}


def standalone_model(backend: str, width_multiplier: float, size: ImageSize, frames: int, image: np.ndarray,
                     camera_matrix: np.ndarray, threads: int | None = None, single_pass: bool = False
                     ) -> tuple[dict[str, float | None], np.ndarray]:
    """The network alone (benchmarks.model_latency), same width/size/backend, in this process: its step
    times and the (H,W) depth in metres it gives for `image` (for the point-cloud timing). threads: torch /
    ONNX Runtime intra-op threads (None: this process's torch setting).

    Run from a worker thread, as the node runs its model (on the loaded development VM the calling
    thread changed torch's CPU timings).
    """
    import threading

    import torch

    from benchmarks.model_latency import make_estimator, measure
    from siam_depth_core.network.checkpoint import ModelMeta

    meta = ModelMeta(net_width=width_multiplier, height=size.height, width=size.width)
    seconds: list[float] = []
    with tempfile.TemporaryDirectory(prefix="siam_node_bench_") as workdir:
        threads = torch.get_num_threads() if not threads else threads
        estimator = make_estimator(backend, meta, size, "cpu", False, threads, Path(workdir), single_pass)
        worker = threading.Thread(target=lambda: seconds.extend(measure(estimator, frames, warmup=3)))
        worker.start()
        worker.join()
        depth_m = estimator.predict_sequence([image], fx_px=float(camera_matrix[0, 0])).depth_m
    return percentiles_ms(seconds), depth_m


def prepare_model(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Node parameters for the model under test (a random-weight checkpoint unless --checkpoint)."""
    from siam_depth_core.network.checkpoint import ModelMeta, save_checkpoint

    checkpoint = args.checkpoint
    meta = ModelMeta(net_width=args.width_multiplier, height=args.size.height, width=args.size.width)
    if checkpoint is None:
        checkpoint = save_checkpoint(workdir / "random.pt", meta.build_network(), meta)
    parameters: dict[str, Any] = {"checkpoint": checkpoint, "network_height": args.size.height,
                                  "network_width": args.size.width, "image_transport": args.image_transport}
    if args.num_threads is not None:
        parameters["num_threads"] = args.num_threads
    if args.single_pass:
        parameters["single_pass"] = True
    if args.backend.startswith(("onnxruntime", "openvino")):
        from siam_depth_core.runtime.export import calibration_clips, export_checkpoint

        onnx_path = workdir / "model.onnx"
        export_checkpoint(checkpoint, onnx_path, size=args.size, single_pass=args.single_pass)
        if args.backend.endswith("int8"):  # as `siam-depth-export --int8` writes it
            from siam_depth_core.runtime.quantize import int8_path, quantize_onnx

            quantized = int8_path(onnx_path)
            quantize_onnx(onnx_path, quantized, calibration_clips(None))
            onnx_path = quantized
        parameters.update(backend="onnxruntime", onnx=onnx_path)
        if args.backend in OPENVINO_VARIANTS:
            parameters.update(backend="openvino", precision=OPENVINO_VARIANTS[args.backend][1])
    return parameters


def machine_description() -> dict[str, Any]:
    from benchmarks.model_latency import machine_description as describe

    return {**describe("cpu"), "load_average": os.getloadavg()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from siam_depth_ros.harness import DepthNodeProcess, isolated_dds_environment

    env = isolated_dds_environment()
    images, camera_matrix = load_kitti(args.kitti_frames)
    period_ns = 100_000_000  # stamps on a 10 Hz camera clock
    first_lockstep = 1_317_000_000 * 1_000_000_000 + 3 * args.warmup * period_ns
    first_stream = first_lockstep + (args.lockstep_frames + 10) * period_ns
    with tempfile.TemporaryDirectory(prefix="siam_node_bench_") as tmp:
        workdir = Path(tmp)
        node = DepthNodeProcess(workdir / "node.log", NAMESPACE, prepare_model(args, workdir), env=env, cwd=REPO_ROOT,
                                stop_timeout=30.0)
        client = Client(images, camera_matrix, args.image_transport, args.jpeg_quality, args.single_pass)
        try:
            node.wait_until_ready(client.node, timeout_s=120.0)
            client.node_client.wait_until_connected(timeout=120.0)
            warm_up(client, args.warmup, first_lockstep - 3 * args.warmup * period_ns, period_ns)
            before_lockstep = client.node_client.fresh_diagnostics(timeout=5.0)
            lockstep = run_lockstep(client, args.lockstep_frames, first_lockstep, period_ns, timeout=30.0)
            after_lockstep = client.node_client.fresh_diagnostics(timeout=5.0)
            stream = run_stream(client, args.frames, args.rate, first_stream)
            after_stream = client.node_client.fresh_diagnostics(timeout=5.0)
            reports = [values for _, values in client.node_client.diagnostics]
        finally:
            client.close()
            node.stop()
    lockstep_stages = stage_breakdown(before_lockstep, after_lockstep)
    model, depth_m = standalone_model(args.backend, args.width_multiplier, args.size, args.model_frames, images[0],
                                      camera_matrix, args.num_threads, args.single_pass)
    ratios: dict[str, Any] = {"node_processing_over_model_per_period":
                              period_ratios(reports, before_lockstep, after_lockstep)}
    if lockstep_stages["frames"]:
        model_ms = lockstep_stages["model_ms_per_frame"]
        ratios["node_processing_over_model"] = lockstep_stages["node_ms_per_frame"] / model_ms
        for name, key in (("publish_to_depth_over_model", "publish_to_depth"),
                          ("publish_to_all_outputs_over_model", "publish_to_all_outputs")):
            median = lockstep[key]["median_ms"]
            ratios[name] = median / model_ms if median is not None else None
    return {"machine": machine_description(),
            "settings": {"backend": args.backend, "single_pass": args.single_pass,
                         "width_multiplier": args.width_multiplier,
                         "network_size": [args.size.width, args.size.height],
                         "image_size": [images[0].shape[1], images[0].shape[0]],
                         "checkpoint": str(args.checkpoint) if args.checkpoint else "random weights",
                         "num_threads": args.num_threads if args.num_threads is not None else "node default",
                         "image_transport": args.image_transport,
                         "rate_hz": args.rate, "frames": args.frames, "lockstep_frames": args.lockstep_frames},
            "lockstep": lockstep, "stream": stream, "node_stages_lockstep": lockstep_stages,
            "node_stages_stream": stage_breakdown(after_lockstep, after_stream), "model_standalone": model,
            "ratios": ratios, "point_cloud": cloud_build_times(depth_m, images[0], camera_matrix, args.cloud_repeats),
            "jpeg_decode": jpeg_decode_times(images, args.jpeg_quality, args.decode_repeats)}


def print_report(report: dict[str, Any]) -> None:
    settings = report["settings"]
    mode = " single pass" if settings["single_pass"] else ""
    print(f"\nnode: {settings['backend']}{mode} width x{settings['width_multiplier']} network "
          f"{settings['network_size'][0]}x{settings['network_size'][1]}, KITTI {settings['image_size'][0]}x"
          f"{settings['image_size'][1]} {settings['image_transport']}, num_threads {settings['num_threads']}, all "
          "outputs subscribed")

    def line(name: str, stats: dict[str, float | None]) -> str:
        values = [f"{stats[key]:9.1f}" if stats[key] is not None else f"{'-':>9}"
                  for key in ("median_ms", "p90_ms", "max_ms")]
        return f"{name:<44} {' '.join(values)}"

    print(f"{'latency':<44} {'median ms':>9} {'p90 ms':>9} {'max ms':>9}")
    print(line("lock-step: publish -> depth received", report["lockstep"]["publish_to_depth"]))
    print(line("lock-step: publish -> all outputs received", report["lockstep"]["publish_to_all_outputs"]))
    stream = report["stream"]
    print(line(f"{stream['rate_hz']:g} Hz stream: publish -> depth received", stream["publish_to_depth"]))
    print(line("model alone, after the node, worker thread", report["model_standalone"]))
    print(f"\n{stream['rate_hz']:g} Hz stream: {stream['answered']}/{stream['frames']} frames answered, output "
          f"{stream['output_rate_hz']:.2f} Hz, {100 * stream['dropped_fraction']:.0f}% dropped (newest frame only)")
    lockstep_stages, stream_stages = report["node_stages_lockstep"], report["node_stages_stream"]
    if lockstep_stages["frames"]:
        print(f"\nnode processing per frame: {lockstep_stages['node_ms_per_frame']:.1f} ms (lock-step)")
        print(f"{'stage':<24} {'lock-step ms/frame':>18} {'share':>7} {'stream ms/frame':>16} {'share':>7}")
        for stage, values in lockstep_stages["stages"].items():
            streamed = stream_stages["stages"][stage] if stream_stages["frames"] else None
            stream_text = (f"{streamed['ms_per_frame']:16.1f} {100 * streamed['share']:6.1f}%" if streamed
                           else f"{'-':>16} {'-':>7}")
            print(f"{stage:<24} {values['ms_per_frame']:18.1f} {100 * values['share']:6.1f}% {stream_text}")
    ratios = report["ratios"]
    print("\nratio to the model time (lock-step; goal: <= 1.10)")
    for name in ("node_processing_over_model", "publish_to_depth_over_model", "publish_to_all_outputs_over_model"):
        if ratios.get(name) is not None:
            print(f"{name:<46} {ratios[name]:7.3f}  (phase means)")
    per_period = ratios["node_processing_over_model_per_period"]
    if per_period["median"] is not None:
        print(f"{'node_processing_over_model per ~1 s period':<46} {per_period['median']:7.3f}  median, "
              f"{per_period['p90']:.3f} p90 over {per_period['periods']} periods")
    decode = report["jpeg_decode"]
    print(f"\nJPEG decode (quality {decode['quality']}, {decode['median_bytes'] / 1e3:.0f} kB vs "
          f"{decode['raw_bytes'] / 1e6:.2f} MB raw): {decode['median_ms']:.1f} ms median, {decode['p90_ms']:.1f} ms p90 "
          f"over {decode['frames']} frames x {decode['repeats']}")
    print(f"\n{'point cloud':<22} {'stride':>6} {'points':>8} {'MB':>6} {'median ms':>9} {'p90 ms':>9}")
    for row in report["point_cloud"]:
        print(f"{row['width']}x{row['height']:<17} {row['stride']:>6} {row['points']:>8} {row['bytes'] / 1e6:6.2f} "
              f"{row['median_ms']:9.1f} {row['p90_ms']:9.1f}")


def build_arg_parser() -> argparse.ArgumentParser:
    from siam_depth_core.cli import OneLineParser, non_negative_int

    parser = OneLineParser(prog="node_latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("torch", "onnxruntime", "onnxruntime_int8", *OPENVINO_VARIANTS),
                        default="torch", help="node backend (onnxruntime_int8: the int8 export, run by the onnxruntime "
                        "backend; openvino_fp32/_bf16: the fp32 export at that precision, openvino_int8: the int8 "
                        "export at precision auto, all run by the openvino backend)")
    parser.add_argument("--single-pass", action="store_true", help="the node's single_pass mode (direct branch only)")
    parser.add_argument("--width-multiplier", type=float, default=0.25,
                        help="network channel width multiplier (random weights)")
    parser.add_argument("--size", type=size_argument, default=ImageSize(256, 512),
                        help="network input WxH (default 512x256)")
    parser.add_argument("--checkpoint", type=Path, help="a trained checkpoint instead of random weights")
    parser.add_argument("--num-threads", type=lambda text: [non_negative_int(v) for v in text.split(",")],
                        default=[None], help="the node's num_threads parameter, comma separated for one run each "
                        "(default: the node's default; 0 = the library's default)")
    parser.add_argument("--image-transport", choices=("raw", "compressed"), default="raw",
                        help="feed the node raw Image or JPEG CompressedImage (on image/compressed)")
    parser.add_argument("--jpeg-quality", type=int, choices=range(1, 101), default=95, metavar="1..100",
                        help="JPEG quality of compressed input")
    parser.add_argument("--decode-repeats", type=int, default=3, help="passes over the frames of the JPEG decode "
                        "timing")
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
    from siam_depth_core.cli import run_cli

    args = build_arg_parser().parse_args(argv)
    return run_cli("node_latency", lambda: _main(args))


def _main(args: argparse.Namespace) -> int:
    reports = []
    for threads in args.num_threads:
        report = run(argparse.Namespace(**{**vars(args), "num_threads": threads}))
        print(json.dumps(report["machine"]))
        print_report(report)
        reports.append(report)
    if len(reports) > 1:
        print(f"\n{'num_threads':>11} {'model ms/frame':>14} {'node / model':>12} {'publish -> all / model':>22} "
              f"{'answered':>9}")
        for report in reports:
            ratios, stages, stream = report["ratios"], report["node_stages_lockstep"], report["stream"]
            print(f"{report['settings']['num_threads']!s:>11} {stages.get('model_ms_per_frame', float('nan')):14.1f} "
                  f"{ratios.get('node_processing_over_model', float('nan')):12.3f} "
                  f"{ratios.get('publish_to_all_outputs_over_model') or float('nan'):22.3f} "
                  f"{stream['answered']:>4}/{stream['frames']}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        content = reports[0] if len(reports) == 1 else {"runs": reports}
        args.json.write_text(json.dumps(content, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
