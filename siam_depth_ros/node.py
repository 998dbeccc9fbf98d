"""The `siam_depth` node: camera images in; metric depth, disparity, a point cloud, a colour map and a confidence
map out.

Subscribes `image` (rgb8/bgr8/rgba8/bgra8/mono8; with `image_transport: compressed` the JPEG/PNG
`image/compressed` instead) and `camera_info`; publishes `depth` (32FC1 metres, NaN invalid, REP 118),
`depth/camera_info`, `disparity` (stereo_msgs/DisparityImage), `points` (PointCloud2 x,y,z + rgb in the
camera optical frame), `depth/colored` (rgb8) and `depth/confidence` (32FC1 in [0, 1]), all with the input
image's stamp and frame_id; `~/reset` (std_srvs/Trigger) clears the recurrent state and exists once the
model is loaded (what a caller waits for); `/diagnostics` at 1 Hz on the steady clock (it keeps reporting
when a bag's /clock stops), with the time of every processing stage.

Two ways to run it: plain (`DepthNode`, the default) configures and activates itself at start-up;
managed (`DepthLifecycleNode`, `depth_node --lifecycle`, launch argument `lifecycle:=true`) is a ROS 2
lifecycle node driven through the standard `lifecycle_msgs` services: configure loads the model and
creates the publishers, `~/reset` and the worker; activate subscribes and publishes; deactivate stops
subscribing and publishing and keeps the model; cleanup releases everything configure made; shutdown
does the same and ends the process.

Both are wiring over `DepthPipeline`, itself wiring over pure pieces: `CameraInfoCache` (intrinsics per
image), `LatestFrameSlot` (the image callback only keeps the newest frame, counting drops; a worker thread
runs the model on it, so frames never queue behind a slow model), `ModelHolder` (the serving
`DepthEstimator`; a model change from `ros2 param set` loads in a background thread and is swapped in
atomically), `OutputBuilder` (every output message of a frame, all built before any is published) and
`ProblemLog` / `InputWatchdog` (each distinct problem logged once per episode, rate-limited; publishers
that deliver nothing).

Run: `ros2 run siam_depth_ros depth_node --ros-args --params-file config/depth.yaml` or
`python -m siam_depth_ros.node --ros-args -p checkpoint:=model.pt -r image:=/camera/image_raw`;
`depth_node --help` lists the topics, parameters and options.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_policy_name_from_kind, qos_profile_sensor_data
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from stereo_msgs.msg import DisparityImage

from siam_depth_core.cli import OneLineParser
from siam_depth_core.runtime.inference import DepthEstimator
from siam_depth_ros.camera_info import CameraInfoCache
from siam_depth_ros.conversions import camera_image_to_numpy, compressed_image_to_numpy
from siam_depth_ros.dds_profile import PROFILE_ENV_VAR, apply_default_profile, shipped_profile_path
from siam_depth_ros.diagnostics import FrameStats
from siam_depth_ros.frame_slot import FrameError, LatestFrameSlot
from siam_depth_ros.input_limit import downscale_frame, fitted_size
from siam_depth_ros.model_loader import ModelHolder
from siam_depth_ros.outputs import (
    COLORED,
    CONFIDENCE,
    DEPTH,
    DEPTH_INFO,
    DISPARITY,
    OPTIONAL_OUTPUTS,
    POINTS,
    InputFrame,
    OutputBuilder,
)
from siam_depth_ros.parameters import (
    CPU_THREAD_BACKENDS,
    MODEL_PARAMETERS,
    PARAMETER_DOCS,
    NodeSettings,
    declare_parameters,
    read_parameters,
    settings_with,
)
from siam_depth_ros.reporting import InputWatchdog, ProblemLog, problem_key

NODE_NAME = "siam_depth"
#: Output QoS: reliable, so that both best-effort and reliable subscribers (RViz, rosbag2) match.
OUTPUT_QOS = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
#: Message type of each output topic.
OUTPUT_TYPES = {DEPTH: Image, DEPTH_INFO: CameraInfo, DISPARITY: DisparityImage, POINTS: PointCloud2, COLORED: Image,
                CONFIDENCE: Image}
#: The parameter that switches each optional output on or off.
OUTPUT_SWITCHES = {DISPARITY: "publish_disparity", POINTS: "publish_points", COLORED: "publish_colored",
                   CONFIDENCE: "publish_confidence"}
#: Period of /diagnostics and of the input watchdog, seconds of the steady clock.
REPORT_PERIOD_S = 1.0
#: How long a stopping node waits for the worker thread and a model reload in progress, seconds.
JOIN_TIMEOUT_S = 10.0


class _RosLogHandler(logging.Handler):
    """Forwards warnings and errors of `siam_depth_core` (Python logging) to the node's ROS logger."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__(logging.WARNING)
        self._ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        # one call site per severity: rclpy's logger refuses a call site whose severity changes
        if record.levelno >= logging.ERROR:
            self._ros_logger.error(text)
        else:
            self._ros_logger.warning(text)


def _stamp_ns(header: Header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def build_estimator(settings: NodeSettings) -> DepthEstimator:
    """The DepthEstimator `settings` describe; raises CheckpointError/BackendError/ValueError if it cannot load."""
    return DepthEstimator(settings.model_source(), settings.runtime_options(), max_gap_s=settings.max_gap_s,
                          min_depth=settings.min_depth, max_depth=settings.max_depth,
                          baseline_m=settings.baseline_m or None)


def describe_model(estimator: DepthEstimator, settings: NodeSettings) -> str:
    """One line: backend, device, threads, network size, width multiplier, baseline, confidence and model file."""
    threads = (settings.num_threads or "library default") if settings.backend in CPU_THREAD_BACKENDS else "n/a (GPU)"
    confidence = "" if estimator.has_confidence else ", no confidence (single pass)"
    return (f"{settings.backend} backend on {settings.device_name} (CPU threads: {threads}), network "
            f"{estimator.input_size} (width x{estimator.meta.net_width}), baseline {estimator.baseline_m:.4f} m"
            f"{confidence}, model {estimator.source}")


def describe_input(msg: Image | CompressedImage) -> str:
    """A frame as log lines name it: `1242x375 'rgb8'` or `compressed 'rgb8; jpeg compressed bgr8' (240123 bytes)`."""
    if isinstance(msg, CompressedImage):
        return f"compressed {msg.format!r} ({len(msg.data)} bytes)"
    return f"{msg.width}x{msg.height} {msg.encoding!r}"


class DepthPipeline:
    """Everything the node does, on an rclpy `node` (plain or lifecycle), in the lifecycle's steps.

    Construction declares the parameters (raises ValueError on a bad one). `configure()` loads the model
    and creates the publishers (lifecycle publishers when `managed`), `~/reset`, /diagnostics and the
    worker thread; `activate()` subscribes; `deactivate()` unsubscribes and stops publishing, keeping the
    model; `cleanup()` undoes configure; `destroy()` undoes everything (call before destroying the node).
    """

    def __init__(self, node: Node, managed: bool) -> None:
        self.node = node
        self.managed = managed
        self._log = node.get_logger()
        self._core_log_handler = _RosLogHandler(self._log)
        logging.getLogger("siam_depth_core").addHandler(self._core_log_handler)
        try:
            self.settings = declare_parameters(node)
        except Exception:
            logging.getLogger("siam_depth_core").removeHandler(self._core_log_handler)
            raise
        self._stats = FrameStats()
        self._problems = ProblemLog(self._log)
        self._watchdog = InputWatchdog()
        self._steady_clock = Clock(clock_type=ClockType.STEADY_TIME)
        self._model: ModelHolder[NodeSettings] | None = None
        self._active = False
        self._restoring = False  # set while the serving model's values are put back after a failed reload
        self._warned_empty_frame_id = False
        self._last_stamp_ns: int | None = None  # of the last processed frame; a repeat of it is skipped
        self._frames: LatestFrameSlot[tuple[Image | CompressedImage, float]] = LatestFrameSlot()
        self._worker: threading.Thread | None = None
        self._output_publishers: dict[str, Any] = {}
        self._diagnostics_pub: Any = None
        self._report_timer: Any = None
        self._reset_srv: Any = None
        self._image_sub: Any = None
        self._camera_info_sub: Any = None
        self._camera_infos: CameraInfoCache | None = None
        self._outputs: OutputBuilder | None = None
        # a failed reload puts the parameters back from the executor thread, after the set that caused it
        self._restore_parameters_guard = node.create_guard_condition(self._restore_model_parameters)
        node.add_on_set_parameters_callback(self._on_set_parameters)

    @property
    def configured(self) -> bool:
        return self._model is not None

    @property
    def active(self) -> bool:
        return self._active

    def serving(self) -> tuple[DepthEstimator, NodeSettings]:
        """The serving model and its settings (for reading); RuntimeError when not configured."""
        if self._model is None:
            raise RuntimeError("the depth node is not configured: no model is loaded")
        return self._model.snapshot()

    @property
    def image_topic(self) -> str:
        """The topic images are read from: `image` resolved, plus `/compressed` with image_transport compressed."""
        base = self.node.resolve_topic_name("image")
        return f"{base}/compressed" if self.settings.image_transport == "compressed" else base

    # -- lifecycle steps -----------------------------------------------------------------------------

    def configure(self) -> None:
        """Read the parameters, load the model, create publishers, `~/reset`, /diagnostics and the worker.
        Raises (leaving nothing behind) when the parameters are bad or the model cannot be loaded."""
        if self.configured:
            return
        settings = read_parameters(self.node)
        model: ModelHolder[NodeSettings] = ModelHolder(build_estimator, settings, self._on_model_reloaded,
                                                       self._on_model_failed)
        self.settings = settings
        self._model = model
        try:
            self._camera_infos = CameraInfoCache(self.node.resolve_topic_name("camera_info"),
                                                 settings.fallback_fx_ratio, self._log,
                                                 on_mismatch=self._on_camera_info_mismatch)
            self._outputs = OutputBuilder(settings.output_settings())
            self._frames = LatestFrameSlot()
            self._last_stamp_ns = None
            create: Callable[..., Any] = (self.node.create_lifecycle_publisher  # type: ignore[attr-defined]
                                          if self.managed else self.node.create_publisher)
            self._output_publishers = {topic: create(OUTPUT_TYPES[topic], topic, OUTPUT_QOS) for topic in OUTPUT_TYPES
                                       if topic not in OUTPUT_SWITCHES or getattr(settings, OUTPUT_SWITCHES[topic])}
            self._diagnostics_pub = self.node.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self._report_timer = self.node.create_timer(REPORT_PERIOD_S, self._on_report_timer,
                                                        clock=self._steady_clock)
            self._worker = threading.Thread(target=self._work, name="siam_depth_worker", daemon=True)
            self._worker.start()
            self._warn_if_no_confidence(*model.snapshot())
            self._reset_srv = self.node.create_service(Trigger, "~/reset", self._on_reset)  # last: the readiness signal
        except Exception:  # leave nothing half-configured behind
            self.cleanup()
            raise

    def activate(self) -> None:
        """Subscribe to the images and camera_info; processed frames are published from now on."""
        if self._active or not self.configured:
            return
        settings = self.settings
        input_qos = (qos_profile_sensor_data if settings.qos == "sensor_data"
                     else QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
        image_type = CompressedImage if settings.image_transport == "compressed" else Image
        self._watchdog.reset()
        self._active = True
        self._image_sub = self.node.create_subscription(
            image_type, self.image_topic, self._on_image, input_qos,
            event_callbacks=SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos))
        self._camera_info_sub = self.node.create_subscription(CameraInfo, "camera_info", self._on_camera_info,
                                                              input_qos)

    def deactivate(self) -> None:
        """Stop subscribing and publishing (a frame being processed is dropped); the model stays loaded."""
        if not self._active:
            return
        self._active = False
        for subscription in (self._image_sub, self._camera_info_sub):
            if subscription is not None:
                self.node.destroy_subscription(subscription)
        self._image_sub = self._camera_info_sub = None
        self._frames.clear()
        self._watchdog.reset()

    def cleanup(self) -> None:
        """Undo `configure`: stop the worker, release the model, destroy publishers, `~/reset` and the timer."""
        self.deactivate()
        if not self.configured:
            return
        self._frames.close()
        if self._worker is not None:
            self._worker.join(timeout=JOIN_TIMEOUT_S)
        assert self._model is not None
        self._model.join(timeout_s=JOIN_TIMEOUT_S)
        for entity, destroy in ((self._reset_srv, self.node.destroy_service),
                                (self._report_timer, self.node.destroy_timer),
                                (self._diagnostics_pub, self.node.destroy_publisher)):
            if entity is not None:
                destroy(entity)
        destroy_output: Callable[[Any], Any] = (self.node.destroy_lifecycle_publisher  # type: ignore[attr-defined]
                                                if self.managed else self.node.destroy_publisher)
        for publisher in self._output_publishers.values():
            destroy_output(publisher)
        self._output_publishers = {}
        self._reset_srv = self._report_timer = self._diagnostics_pub = self._worker = None
        self._camera_infos = self._outputs = None
        self._model = None  # the estimator (weights, buffers, state) goes with it

    def destroy(self) -> None:
        """`cleanup`, then detach from the node (call before the node is destroyed)."""
        self.cleanup()
        self.node.destroy_guard_condition(self._restore_parameters_guard)
        logging.getLogger("siam_depth_core").removeHandler(self._core_log_handler)

    # -- model ---------------------------------------------------------------------------------------

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Reload the model in the background when checkpoint/backend/onnx/engine change. Bad values and
        missing files are refused here; a model that fails to load later keeps the old one serving. While
        the node is not configured, the values are only checked: configure reads them."""
        changes = {parameter.name: parameter.value for parameter in parameters if parameter.name in MODEL_PARAMETERS}
        if not changes or self._restoring:
            return SetParametersResult(successful=True)
        try:
            if self._model is None:
                settings_with(self.settings, changes)
                return SetParametersResult(successful=True)
            _, serving = self._model.snapshot()
            settings = settings_with(serving, changes)
            settings.check_model_files()
            self._model.reload(settings)
        except Exception as error:  # any refusal must leave the running model serving
            reason = f"model not reloaded ({error}); still serving the previous model"
            self._log.error(reason)
            self._stats.error_reported(reason)
            return SetParametersResult(successful=False, reason=reason)
        self._log.info(f"loading model {settings.model_description()} in the background; the current model serves "
                       "until it is ready")
        return SetParametersResult(successful=True)

    def _on_model_reloaded(self, estimator: DepthEstimator, settings: NodeSettings) -> None:
        self._log.info(f"model reloaded: {describe_model(estimator, settings)}; the recurrent state starts from zero")
        self._warn_if_no_confidence(estimator, settings)

    def _warn_if_no_confidence(self, estimator: DepthEstimator, settings: NodeSettings) -> None:
        if not estimator.has_confidence and (settings.publish_confidence or settings.cloud_min_confidence > 0):
            self._log.warning("the model runs without the Siamese pass (single_pass or a single-pass export), so "
                              "it gives no confidence: depth/confidence is not published and cloud_min_confidence "
                              "is not applied")

    def _on_model_failed(self, settings: NodeSettings, error: Exception, serving: NodeSettings) -> None:
        """Log and report (reload thread); the parameters are set back to the serving model by the executor."""
        reason = f"model not reloaded ({type(error).__name__}: {error}); still serving the previous model"
        self._log.error(reason)
        self._stats.error_reported(reason)
        self._restore_parameters_guard.trigger()

    def _restore_model_parameters(self) -> None:
        """Executor thread: set the model parameters back to those of the serving model. Running here, it
        comes after the parameter set that started the failed reload has been stored."""
        if self._model is None:
            return
        _, serving = self._model.snapshot()
        self._restoring = True
        try:
            self.node.set_parameters([Parameter(name, value=getattr(serving, name)) for name in MODEL_PARAMETERS])
        finally:
            self._restoring = False

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if self._model is None:
            response.success, response.message = False, "not configured: no model loaded"
            return response
        with self._model.serving() as (estimator, _):
            estimator.reset("~/reset service called")
        response.success = True
        response.message = "recurrent state cleared; the next frame starts from zero state"
        return response

    # -- input ---------------------------------------------------------------------------------------

    def _on_image(self, msg: Image | CompressedImage) -> None:
        """Keep only the newest frame; the worker takes (and decodes) it when the model is free."""
        self._watchdog.frame_received()
        self._stats.frame_received(replaced_unprocessed=self._frames.put((msg, time.monotonic())))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        if self._camera_infos is None:
            return
        try:
            self._camera_infos.add(msg)
        except ValueError as error:
            self._stats.camera_info_ignored(str(error))
            topic = self._camera_info_sub.topic_name if self._camera_info_sub is not None else "camera_info"
            self._problems.report(f"ignoring camera_info on {topic}: {error} (/diagnostics counts every ignored "
                                  "camera_info)", severity="warning")

    def _on_camera_info_mismatch(self, message: str) -> None:
        """A camera_info of another size than the images was passed over (said once per size by the cache)."""
        self._stats.camera_info_ignored(message)
        self._problems.report(message, severity="warning")

    def _on_incompatible_qos(self, info: Any) -> None:
        """A publisher on the image topic whose QoS cannot deliver to this subscription (nothing will arrive)."""
        policy = qos_policy_name_from_kind(info.last_policy_kind)
        hint = ("the node asks for reliable delivery (qos: reliable) but the publisher is best effort: set "
                "qos:=sensor_data" if policy == "RELIABILITY" and self.settings.qos == "reliable" else
                f"the node subscribes with qos={self.settings.qos}")
        self._problems.report(f"a publisher on {self.image_topic} offers a QoS this node cannot receive from "
                              f"(incompatible {policy}); no images will arrive from it: {hint}", severity="warning")

    # -- processing ----------------------------------------------------------------------------------

    def _work(self) -> None:
        """Worker thread: process the newest frame whenever there is one, until the slot is closed."""
        frames = self._frames
        while (taken := frames.take()) is not None:
            msg, received_at = taken
            try:
                self._process(msg, received_at)
            except Exception as error:  # one bad frame must never stop the node
                if not self.node.context.ok():
                    return
                stamp_s = _stamp_ns(msg.header) * 1e-9
                text = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
                self._stats.frame_failed(text)
                self._problems.report(f"skipping {describe_input(msg)} frame (stamp {stamp_s:.3f} s): {text}",
                                      key=problem_key(text))

    def _decode(self, msg: Image | CompressedImage) -> InputFrame:
        """The frame's pixels (a view of a raw image; a compressed one decoded) and their encoding."""
        if isinstance(msg, CompressedImage):
            image, encoding = compressed_image_to_numpy(msg)
            return InputFrame(image, encoding, msg.header)
        return InputFrame(camera_image_to_numpy(msg), msg.encoding, msg.header)

    def _output_frame_id(self, settings: NodeSettings, input_frame_id: str) -> str:
        """The frame_id parameter if set, else the input's (an empty one is warned about once)."""
        if settings.frame_id:
            return settings.frame_id
        if not input_frame_id and not self._warned_empty_frame_id:
            self._warned_empty_frame_id = True
            self._log.warning(f"images on {self.image_topic} have an empty frame_id, so the outputs have none and "
                              "RViz/TF cannot place them: set the frame_id parameter (the camera's optical frame) or "
                              "fix the camera driver (logged once)")
        return input_frame_id

    def _process(self, msg: Image | CompressedImage, received_at: float) -> None:
        start = time.perf_counter()
        model, camera_infos, builder = self._model, self._camera_infos, self._outputs
        assert model is not None and camera_infos is not None and builder is not None
        stamp_ns = _stamp_ns(msg.header)
        if stamp_ns == self._last_stamp_ns:
            raise FrameError("duplicate stamp: the previous frame had the same stamp (a repeated message, or two "
                             "publishers on one topic?); skipping it so that outputs keep unique stamps")
        frame = self._decode(msg)
        converted = time.perf_counter()
        intrinsics = camera_infos.intrinsics_for(stamp_ns, frame.size)
        fitted = fitted_size(frame.size, self.settings.max_image_pixels)
        if fitted != frame.size:
            self._stats.frame_downscaled()
            self._problems.report(f"{frame.size} images exceed max_image_pixels={self.settings.max_image_pixels}: "
                                  f"processing and publishing them at {fitted} (/diagnostics counts them as "
                                  "frames_downscaled)", severity="warning", key=f"downscaled {frame.size}")
            frame, intrinsics = downscale_frame(frame, intrinsics, fitted)
        with model.serving() as (estimator, settings):
            result = estimator.step(frame.image, stamp_ns * 1e-9, frame.encoding, fx_px=intrinsics.fx_px)
        self._last_stamp_ns = stamp_ns
        if result.reset_reason:
            self._log.info(f"recurrent state reset before frame {result.stamp:.3f} s: {result.reset_reason}")
            self._stats.state_reset(result.reset_reason)
        header = Header(stamp=msg.header.stamp, frame_id=self._output_frame_id(settings, msg.header.frame_id))
        publishers = self._output_publishers
        wanted = [topic for topic in OPTIONAL_OUTPUTS
                  if topic in publishers and publishers[topic].get_subscription_count() > 0]
        outputs = builder.build(result, frame, intrinsics, header, estimator, wanted)  # all, before any is sent
        built = time.perf_counter()
        if not self._active:
            return  # deactivated while this frame was processed: it is not published
        for topic, message in outputs.messages.items():
            publishers[topic].publish(message)
        done = time.perf_counter()
        self._stats.frame_processed(time.monotonic() - received_at, {
            "convert_input": converted - start, **result.timings, **outputs.timings, "publish": done - built,
            "processing": done - start})

    # -- reporting -----------------------------------------------------------------------------------

    def _on_report_timer(self) -> None:
        """Steady clock, 1 Hz: /diagnostics, and the watchdog for publishers that deliver nothing."""
        self._publish_diagnostics()
        if self._active and self._image_sub is not None:
            publishers = self._image_sub.get_publisher_count()
            silent_s = self._watchdog.check(publishers)
            if silent_s is not None:
                self._problems.report(self._silent_publishers_message(publishers, silent_s), severity="warning",
                                      key="matched image publishers deliver nothing")

    def _silent_publishers_message(self, publishers: int, silent_s: float) -> str:
        profile = os.environ.get(PROFILE_ENV_VAR) or "none (Fast DDS's built-in transports)"
        shipped = shipped_profile_path()
        return (f"{publishers} publisher(s) matched on {self.image_topic} but no image has arrived in {silent_s:.0f} s. "
                "Likely causes: (1) large images without the shared-memory Fast DDS profile in the publishing "
                "process: above Fast DDS's default 512 KiB shared-memory segment (a 1242x375 rgb8 image is 1.4 MB) "
                "they go over fragmented UDP, where best-effort messages are lost; export "
                f"{PROFILE_ENV_VAR}={shipped or '<share>/siam_depth_ros/config/fastdds_shm.xml'} there as well "
                f"(this node uses {profile}); (2) a QoS that does not deliver to this subscription (qos="
                f"{self.settings.qos}; a bag replay wants qos:=reliable); (3) the publisher has not sent anything "
                "yet (a paused bag, a camera waiting for a trigger)")

    def _publish_diagnostics(self) -> None:
        if self._model is None or self._diagnostics_pub is None:
            return
        estimator, settings = self._model.snapshot()
        loading = self._model.loading
        publishers = self._image_sub.get_publisher_count() if self._image_sub is not None else 0
        status = self._stats.status(
            name=f"{self.node.get_fully_qualified_name()}: depth estimation",
            hardware_id=f"{settings.backend}:{settings.device_name}",
            extra={"network_size": str(estimator.input_size), "model": describe_model(estimator, settings),
                   "model_loading": loading.model_description() if loading is not None else "",
                   "image_topic": self.image_topic, "image_publishers": str(publishers),
                   "state": "active" if self._active else "inactive"},
            idle_message=None if self._active else "inactive: the model is loaded but the node does not subscribe "
                                                   "(lifecycle: activate it)")
        self._diagnostics_pub.publish(DiagnosticArray(header=Header(stamp=self.node.get_clock().now().to_msg()),
                                                      status=[status]))


class DepthNode(Node):
    """The plain node: configured and active from the start; see the module docstring. Raises on bad
    parameters or a model that cannot load."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        try:
            self.pipeline = DepthPipeline(self, managed=False)
            self.pipeline.configure()
            self.pipeline.activate()
        except Exception:  # bad parameter or model: leave nothing half-built behind, then report it
            if hasattr(self, "pipeline"):
                self.pipeline.destroy()
            super().destroy_node()
            raise
        estimator, settings = self.pipeline.serving()
        self.get_logger().info(
            f"ready: {describe_model(estimator, settings)}; image {self.pipeline.image_topic} ({settings.qos} QoS) "
            f"-> {self.resolve_topic_name('depth')}")

    def destroy_node(self) -> None:
        """Stop the worker thread (and wait for a model reload in progress), then the node."""
        self.pipeline.destroy()
        super().destroy_node()


class DepthLifecycleNode(LifecycleNode):
    """The managed node: starts unconfigured and follows lifecycle transitions; see the module docstring.
    `finished` is set once the shutdown transition has run (the process then exits)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.finished = threading.Event()
        try:
            self.pipeline = DepthPipeline(self, managed=True)
        except Exception:
            super().destroy_node()
            raise
        self.get_logger().info(f"lifecycle node waiting in the unconfigured state; the configure transition loads "
                               f"the model (lifecycle_msgs/srv/ChangeState on {self.get_fully_qualified_name()}/"
                               "change_state)")

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.pipeline.configure()
        except Exception as error:  # a bad parameter or model: stay unconfigured, say why
            self.get_logger().error(f"configure failed, staying unconfigured: {error}")
            return TransitionCallbackReturn.FAILURE
        estimator, settings = self.pipeline.serving()
        self.get_logger().info(f"configured: {describe_model(estimator, settings)}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # enables the lifecycle publishers
        if result == TransitionCallbackReturn.SUCCESS:
            self.pipeline.activate()
            self.get_logger().info(f"active: image {self.pipeline.image_topic} ({self.pipeline.settings.qos} QoS) -> "
                                   f"{self.resolve_topic_name('depth')}")
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.pipeline.deactivate()
        self.get_logger().info("inactive: not subscribed, not publishing; the model stays loaded")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.pipeline.cleanup()
        self.get_logger().info("cleaned up: model, publishers and ~/reset released")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.pipeline.cleanup()
        self.get_logger().info(f"shut down from {state.label}: exiting")
        self.finished.set()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"error in a transition from {state.label}: released everything; unconfigured")
        self.pipeline.cleanup()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        self.pipeline.destroy()
        super().destroy_node()


def build_arg_parser() -> OneLineParser:
    """depth_node's own (non-ROS) command line; ROS arguments go after `--ros-args`."""
    parameters = "\n".join(f"  {name}: {doc}" for name, doc in PARAMETER_DOCS.items())
    outputs = ", ".join(OUTPUT_TYPES)
    parser = OneLineParser(
        prog="depth_node", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Metric depth from one camera (Siamese ConvLSTM network) as a ROS 2 node `siam_depth`.",
        epilog=f"topics:\n  in:  image (or image/compressed with image_transport: compressed), camera_info\n"
               f"  out: {outputs}, /diagnostics\n  service: ~/reset (std_srvs/Trigger; exists once the model is "
               f"loaded)\n\nparameters (--ros-args -p name:=value, or --params-file config/depth.yaml):\n"
               f"{parameters}\n\nexamples:\n  depth_node --ros-args --params-file config/depth.yaml -r "
               "image:=/camera/image_raw -r camera_info:=/camera/camera_info\n"
               "  depth_node --lifecycle --ros-args -p checkpoint:=model.pt   # then: ros2 lifecycle set "
               "/siam_depth configure; ... activate")
    parser.add_argument("--lifecycle", action="store_true",
                        help="run as a managed lifecycle node: unconfigured until the configure transition, "
                             "subscribing only while active")
    return parser


def main(args: list[str] | None = None) -> int:
    """Console script `depth_node`: parse the options, set up Fast DDS, init, spin until Ctrl-C / shutdown,
    clean up; 1 if the node cannot start, 2 (from argparse) on an unknown option."""
    argv = list(sys.argv if args is None else args)
    options = build_arg_parser().parse_args(remove_ros_args(argv)[1:])
    profile = apply_default_profile()  # before rclpy.init: Fast DDS reads it when the participant is created
    rclpy.init(args=argv)
    logger = rclpy.logging.get_logger(NODE_NAME)
    if profile.warning:
        logger.warning(profile.message)
    else:
        logger.info(profile.message)
    try:
        node: DepthNode | DepthLifecycleNode = DepthLifecycleNode() if options.lifecycle else DepthNode()
    except Exception as error:  # a bad checkpoint/backend/parameter: say what and exit non-zero
        logger.fatal(f"cannot start: {error}")
        rclpy.try_shutdown()
        return 1
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        if isinstance(node, DepthLifecycleNode):
            while not node.finished.is_set() and rclpy.ok():
                executor.spin_once(timeout_sec=0.1)
        else:
            executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
