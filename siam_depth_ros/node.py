"""The `siam_depth` node: camera images in; metric depth, disparity, a point cloud and a colour map out.

Subscribes `image` (rgb8/bgr8/rgba8/bgra8/mono8) and `camera_info`; publishes `depth` (32FC1 metres,
NaN invalid, REP 118), `depth/camera_info`, `disparity` (stereo_msgs/DisparityImage), `points`
(PointCloud2 x,y,z + rgb in the camera optical frame) and `depth/colored` (rgb8), all with the input
image's stamp and frame_id; `~/reset` (std_srvs/Trigger) clears the recurrent state and exists once the
model is loaded (what a caller waits for); `/diagnostics` at 1 Hz, with the time of every processing stage.

The node is wiring over pure pieces: `CameraInfoCache` (intrinsics per image), `LatestFrameSlot` (the
image callback only keeps the newest frame, counting drops; a worker thread runs the model on it, so
frames never queue behind a slow model), `ModelHolder` (the serving `DepthEstimator`; a model change
from `ros2 param set` loads in a background thread and is swapped in atomically) and `OutputBuilder`
(every output message of a frame).

Run: `ros2 run siam_depth_ros depth_node --ros-args --params-file config/depth.yaml` or
`python -m siam_depth_ros.node --ros-args -p checkpoint:=model.pt -r image:=/camera/image_raw`.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from stereo_msgs.msg import DisparityImage

from siam_depth_core.inference import DepthEstimator
from siam_depth_ros.camera_info import CameraInfoCache
from siam_depth_ros.conversions import image_to_numpy
from siam_depth_ros.diagnostics import FrameStats
from siam_depth_ros.frame_slot import FrameError, LatestFrameSlot
from siam_depth_ros.model_loader import ModelHolder
from siam_depth_ros.outputs import (
    COLORED,
    DEPTH,
    DEPTH_INFO,
    DISPARITY,
    OPTIONAL_OUTPUTS,
    POINTS,
    InputFrame,
    OutputBuilder,
)
from siam_depth_ros.parameters import MODEL_PARAMETERS, NodeSettings, declare_parameters, settings_with

NODE_NAME = "siam_depth"
#: Output QoS: reliable, so that both best-effort and reliable subscribers (RViz, rosbag2) match.
OUTPUT_QOS = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
#: Message type of each output topic.
OUTPUT_TYPES = {DEPTH: Image, DEPTH_INFO: CameraInfo, DISPARITY: DisparityImage, POINTS: PointCloud2, COLORED: Image}


class _RosLogHandler(logging.Handler):
    """Forwards warnings and errors of `siam_depth_core` (Python logging) to the node's ROS logger."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__(logging.WARNING)
        self._ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        (self._ros_logger.error if record.levelno >= logging.ERROR else self._ros_logger.warning)(text)


def _stamp_ns(header: Header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def build_estimator(settings: NodeSettings) -> DepthEstimator:
    """The DepthEstimator `settings` describe; raises CheckpointError/BackendError/ValueError if it cannot load."""
    return DepthEstimator(settings.model_source(), settings.runtime_options(), max_gap_s=settings.max_gap_s,
                          min_depth=settings.min_depth, max_depth=settings.max_depth,
                          baseline_m=settings.baseline_m or None)


def describe_model(estimator: DepthEstimator, settings: NodeSettings) -> str:
    """One line: backend, device, threads, network size, width multiplier, baseline and model file."""
    threads = settings.num_threads or "library default"
    return (f"{settings.backend} backend on {settings.device} (CPU threads: {threads}), network "
            f"{estimator.input_size} (width x{estimator.meta.net_width}), baseline {estimator.baseline_m:.4f} m, "
            f"model {estimator.source}")


class DepthNode(Node):
    """Streaming monocular depth node; see the module docstring. Raises on a model that cannot load."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._core_log_handler = _RosLogHandler(self.get_logger())
        logging.getLogger("siam_depth_core").addHandler(self._core_log_handler)
        try:
            settings = declare_parameters(self)
            self._model = ModelHolder(build_estimator, settings, self._on_model_reloaded, self._on_model_failed)
        except Exception:  # bad parameter or model: leave nothing half-built behind, then report it
            logging.getLogger("siam_depth_core").removeHandler(self._core_log_handler)
            super().destroy_node()
            raise
        self._stats = FrameStats()
        self._reported_problems: set[str] = set()
        self._camera_infos = CameraInfoCache(self.resolve_topic_name("camera_info"), settings.fallback_fx_ratio,
                                             self.get_logger())
        self._frames: LatestFrameSlot[tuple[Image, float]] = LatestFrameSlot()
        self._outputs = OutputBuilder(settings.output_settings())
        self._last_stamp_ns: int | None = None  # of the last processed frame; a repeat of it is skipped
        self._warned_unusable_camera_info = False
        self._restoring = False  # set while the serving model's values are put back after a failed reload
        # a failed reload puts the parameters back from the executor thread, after the set that caused it
        self._restore_parameters_guard = self.create_guard_condition(self._restore_model_parameters)

        enabled = {DISPARITY: settings.publish_disparity, POINTS: settings.publish_points,
                   COLORED: settings.publish_colored}
        self._output_publishers = {topic: self.create_publisher(OUTPUT_TYPES[topic], topic, OUTPUT_QOS)
                            for topic in OUTPUT_TYPES if enabled.get(topic, True)}
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        input_qos = (qos_profile_sensor_data if settings.qos == "sensor_data"
                     else QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
        self._image_sub = self.create_subscription(Image, "image", self._on_image, input_qos)
        self._camera_info_sub = self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, input_qos)
        self._diagnostics_timer = self.create_timer(1.0, self._publish_diagnostics)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._worker = threading.Thread(target=self._work, name="siam_depth_worker", daemon=True)
        self._worker.start()
        self._reset_srv = self.create_service(Trigger, "~/reset", self._on_reset)  # last: the readiness signal
        estimator, _ = self._model.snapshot()
        self.get_logger().info(
            f"ready: {describe_model(estimator, settings)}; "
            f"image {self.resolve_topic_name('image')} ({settings.qos} QoS) -> {self.resolve_topic_name('depth')}")

    # -- model ---------------------------------------------------------------------------------------

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Reload the model in the background when checkpoint/backend/onnx/engine change. Bad values and
        missing files are refused here; a model that fails to load later keeps the old one serving."""
        changes = {parameter.name: parameter.value for parameter in parameters if parameter.name in MODEL_PARAMETERS}
        if not changes or self._restoring:
            return SetParametersResult(successful=True)
        _, serving = self._model.snapshot()
        try:
            settings = settings_with(serving, changes)
            settings.check_model_files()
            self._model.reload(settings)
        except Exception as error:  # any refusal must leave the running model serving
            reason = f"model not reloaded ({error}); still serving the previous model"
            self.get_logger().error(reason)
            self._stats.error_reported(reason)
            return SetParametersResult(successful=False, reason=reason)
        self.get_logger().info(f"loading model {settings.model_description()} in the background; the current "
                               "model serves until it is ready")
        return SetParametersResult(successful=True)

    def _on_model_reloaded(self, estimator: DepthEstimator, settings: NodeSettings) -> None:
        self.get_logger().info(f"model reloaded: {describe_model(estimator, settings)}; the recurrent state starts "
                               "from zero")

    def _on_model_failed(self, settings: NodeSettings, error: Exception, serving: NodeSettings) -> None:
        """Log and report (reload thread); the parameters are set back to the serving model by the executor."""
        reason = f"model not reloaded ({type(error).__name__}: {error}); still serving the previous model"
        self.get_logger().error(reason)
        self._stats.error_reported(reason)
        self._restore_parameters_guard.trigger()

    def _restore_model_parameters(self) -> None:
        """Executor thread: set the model parameters back to those of the serving model. Running here, it
        comes after the parameter set that started the failed reload has been stored."""
        _, serving = self._model.snapshot()
        self._restoring = True
        try:
            self.set_parameters([Parameter(name, value=getattr(serving, name)) for name in MODEL_PARAMETERS])
        finally:
            self._restoring = False

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._model.serving() as (estimator, _):
            estimator.reset("~/reset service called")
        response.success = True
        response.message = "recurrent state cleared; the next frame starts from zero state"
        return response

    # -- input ---------------------------------------------------------------------------------------

    def _on_image(self, msg: Image) -> None:
        """Keep only the newest frame; the worker takes it when the model is free."""
        self._stats.frame_received(replaced_unprocessed=self._frames.put((msg, time.monotonic())))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            self._camera_infos.add(msg)
        except ValueError as error:
            self._stats.camera_info_ignored(str(error))
            if not self._warned_unusable_camera_info:
                self.get_logger().error(f"ignoring camera_info on {self._camera_info_sub.topic_name}: {error} "
                                        "(logged once; /diagnostics counts every ignored camera_info)")
                self._warned_unusable_camera_info = True

    # -- processing ----------------------------------------------------------------------------------

    def _work(self) -> None:
        """Worker thread: process the newest frame whenever there is one, until the node is destroyed."""
        while (taken := self._frames.take()) is not None:
            msg, received_at = taken
            try:
                self._process(msg, received_at)
            except Exception as error:  # one bad frame must never stop the node
                if not self.context.ok():
                    return
                stamp_s = _stamp_ns(msg.header) * 1e-9
                text = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
                self._stats.frame_failed(text)
                self._report_problem(f"skipping {msg.width}x{msg.height} {msg.encoding!r} frame "
                                     f"(stamp {stamp_s:.3f} s): {text}", key=text)

    def _process(self, msg: Image, received_at: float) -> None:
        start = time.perf_counter()
        stamp_ns = _stamp_ns(msg.header)
        if stamp_ns == self._last_stamp_ns:
            raise FrameError("duplicate stamp: the previous frame had the same stamp (a repeated message, or two "
                             "publishers on one topic?); skipping it so that outputs keep unique stamps")
        frame = InputFrame(image_to_numpy(msg), msg.encoding, msg.header)
        converted = time.perf_counter()
        intrinsics = self._camera_infos.intrinsics_for(stamp_ns, frame.size)
        with self._model.serving() as (estimator, settings):
            result = estimator.step(frame.image, stamp_ns * 1e-9, frame.encoding, fx_px=intrinsics.fx_px)
        self._last_stamp_ns = stamp_ns
        if result.reset_reason:
            self.get_logger().info(f"recurrent state reset before frame {result.stamp:.3f} s: {result.reset_reason}")
            self._stats.state_reset(result.reset_reason)
        header = Header(stamp=msg.header.stamp, frame_id=settings.frame_id or msg.header.frame_id)
        wanted = [topic for topic in OPTIONAL_OUTPUTS
                  if topic in self._output_publishers and self._output_publishers[topic].get_subscription_count() > 0]
        outputs = self._outputs.build(result, frame, intrinsics, header, estimator, wanted)
        built = time.perf_counter()
        for topic, message in outputs.messages.items():
            self._output_publishers[topic].publish(message)
        done = time.perf_counter()
        self._reported_problems.clear()
        self._stats.frame_processed(time.monotonic() - received_at, {
            "convert_input": converted - start, **result.timings, **outputs.timings, "publish": done - built,
            "processing": done - start})

    # -- reporting -----------------------------------------------------------------------------------

    def _report_problem(self, message: str, key: str | None = None) -> None:
        """Log a problem once (per distinct problem) until a frame is processed successfully again."""
        key = message if key is None else key
        if key not in self._reported_problems:
            self._reported_problems.add(key)
            self.get_logger().error(message)

    def _publish_diagnostics(self) -> None:
        estimator, settings = self._model.snapshot()
        loading = self._model.loading
        status = self._stats.status(
            name=f"{self.get_fully_qualified_name()}: depth estimation",
            hardware_id=f"{settings.backend}:{settings.device}",
            extra={"network_size": str(estimator.input_size), "model": describe_model(estimator, settings),
                   "model_loading": loading.model_description() if loading is not None else ""})
        self._diagnostics_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()),
                                                      status=[status]))

    def destroy_node(self) -> None:
        """Stop the worker thread (and wait for a model reload in progress), then the node."""
        self._frames.close()
        self._worker.join(timeout=10.0)
        self._model.join(timeout_s=10.0)
        logging.getLogger("siam_depth_core").removeHandler(self._core_log_handler)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Console script `depth_node`: init, spin until Ctrl-C / shutdown, clean up; 1 if the model cannot load."""
    rclpy.init(args=args)
    try:
        node = DepthNode()
    except Exception as error:  # a bad checkpoint/backend/parameter: say what and exit non-zero
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {error}")
        rclpy.try_shutdown()
        return 1
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
