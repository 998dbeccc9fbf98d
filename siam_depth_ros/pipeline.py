"""`DepthPipeline`: what the depth node does, on a plain or a lifecycle rclpy node, in the lifecycle's steps.

It owns every ROS entity of the node (publishers, subscriptions, `~/reset`, the /diagnostics timer, the
parameter callback) and wires them to the pure pieces: `ModelHolder` (the serving model; a model parameter
set with `ros2 param set` reloads it in the background), per camera (`cameras.Camera`: the one unnamed camera, or
each of the `cameras` parameter) a `CameraInfoCache`, its publishers and subscriptions, `FrameStats` and
`InputWatchdog`; `LatestFrameSlots` (each image callback keeps only its camera's newest frame) and the `FrameWorker`
thread that turns frames into outputs; `ProblemLog` reports. `siam_depth_ros.node` puts it on a node.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_policy_name_from_kind,
    qos_profile_sensor_data,
)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from siam_depth_core.runtime.inference import DepthEstimator
from siam_depth_ros.camera_info import CameraInfoCache
from siam_depth_ros.cameras import UNNAMED, Camera
from siam_depth_ros.dds_profile import PROFILE_ENV_VAR, shipped_profile_path
from siam_depth_ros.diagnostics import FrameStats
from siam_depth_ros.frame_slot import LatestFrameSlots
from siam_depth_ros.frame_worker import FrameWorker, ReceivedFrame
from siam_depth_ros.model_loader import ModelHolder, build_estimator, describe_model
from siam_depth_ros.outputs import OUTPUT_SWITCHES, OUTPUT_TYPES, OutputBuilder
from siam_depth_ros.parameters import (
    MODEL_PARAMETERS,
    NodeSettings,
    declare_parameters,
    read_cameras,
    read_parameters,
    settings_with,
)
from siam_depth_ros.reporting import (
    REQUESTED_RESET_REASON,
    InputWatchdog,
    ProblemLog,
    ResetLog,
    RosLogHandler,
)

#: Output QoS: reliable, so that both best-effort and reliable subscribers (RViz, rosbag2) match.
OUTPUT_QOS = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
#: QoS of `~/reset`: requests and responses kept until delivered (reliable, keep all), so that a burst of callers
#: (200 at once in the test) is answered in full; ROS's default service QoS keeps the last 10 of each, and a burst
#: lost all but about 10. (A client's own requests go through its QoS too: one client calling many times at once
#: needs a deep client QoS as well.)
RESET_SERVICE_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
#: Period of /diagnostics and of the input watchdog, seconds of the steady clock.
REPORT_PERIOD_S = 1.0
#: How long a stopping node waits for the worker thread and a model reload in progress, seconds.
JOIN_TIMEOUT_S = 10.0


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
        self._core_log_handler = RosLogHandler(self._log)
        logging.getLogger("siam_depth_core").addHandler(self._core_log_handler)
        try:
            self.settings = declare_parameters(node)
        except Exception:
            logging.getLogger("siam_depth_core").removeHandler(self._core_log_handler)
            raise
        self._problems = ProblemLog(self._log)
        self.camera_names = read_cameras(node) or (UNNAMED,)
        self._cameras: dict[str, Camera] = {}
        # counters and watchdogs live as long as the node (a lifecycle cleanup keeps them)
        self._stats = {name: FrameStats() for name in self.camera_names}
        self._watchdogs = {name: InputWatchdog() for name in self.camera_names}
        self._steady_clock = Clock(clock_type=ClockType.STEADY_TIME)
        self._model: ModelHolder[NodeSettings] | None = None
        self._active = False
        self._restoring = False  # set while the serving model's values are put back after a failed reload
        self._frames: LatestFrameSlots[str, ReceivedFrame] = LatestFrameSlots()
        self._worker: FrameWorker | None = None
        self._diagnostics_pub: Any = None
        self._report_timer: Any = None
        self._reset_srv: Any = None
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

    def camera_image_topic(self, camera: str) -> str:
        """The topic a camera's images are read from: `[<camera>/]image` resolved, plus `/compressed` with
        image_transport compressed."""
        base = self.node.resolve_topic_name(f"{camera}/image" if camera else "image")
        return f"{base}/compressed" if self.settings.image_transport == "compressed" else base

    @property
    def image_topic(self) -> str:
        """The topic(s) images are read from (several cameras: comma-separated)."""
        return ", ".join(self.camera_image_topic(name) for name in self.camera_names)

    @property
    def depth_topic(self) -> str:
        """The depth topic(s) (several cameras: comma-separated), for log lines."""
        return ", ".join(self.node.resolve_topic_name(f"{name}/depth" if name else "depth")
                         for name in self.camera_names)

    def _make_camera(self, name: str, settings: NodeSettings, create: Callable[..., Any]) -> Camera:
        """A camera's pieces and publishers (its subscriptions come with `activate`)."""
        image_topic = self.camera_image_topic(name)
        camera = Camera(name, image_topic, CameraInfoCache(
            self.node.resolve_topic_name(f"{name}/camera_info" if name else "camera_info"), settings.fallback_fx_ratio,
            self._log, on_mismatch=lambda message: self._on_camera_info_mismatch(camera, message)),
            ResetLog(self._log, self._problems, image_topic), self._stats[name], self._watchdogs[name])
        self._cameras[name] = camera
        camera.publishers = {topic: create(OUTPUT_TYPES[topic], camera.topic(topic), OUTPUT_QOS)
                             for topic in OUTPUT_TYPES
                             if topic not in OUTPUT_SWITCHES or getattr(settings, OUTPUT_SWITCHES[topic])}
        return camera

    # -- lifecycle steps -----------------------------------------------------------------------------

    def configure(self) -> None:
        """Read the parameters, load the model, create publishers, `~/reset`, /diagnostics and the worker.
        Raises (leaving nothing behind) when the parameters are bad or the model cannot be loaded."""
        if self.configured:
            return
        settings = read_parameters(self.node)
        if len(self.camera_names) > 1 and settings.frame_id:
            raise ValueError("frame_id would give every camera the same frame: with several cameras leave it empty "
                             "(each camera's outputs take the frame_id of its images)")
        model: ModelHolder[NodeSettings] = ModelHolder(build_estimator, settings, self._on_model_reloaded,
                                                       self._on_model_failed)
        self.settings = settings
        self._model = model
        try:
            outputs = OutputBuilder(settings.output_settings())
            self._frames = LatestFrameSlots()
            create: Callable[..., Any] = (self.node.create_lifecycle_publisher  # type: ignore[attr-defined]
                                          if self.managed else self.node.create_publisher)
            for name in self.camera_names:
                self._make_camera(name, settings, create)
            self._diagnostics_pub = self.node.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self._report_timer = self.node.create_timer(REPORT_PERIOD_S, self._on_report_timer,
                                                        clock=self._steady_clock)
            self._worker = FrameWorker(self.node, self._frames, model, self._cameras, outputs, settings,
                                       self._problems, is_active=lambda: self._active)
            self._worker.start()
            self._warn_if_no_confidence(*model.snapshot())
            for camera in self._cameras.values():
                if camera.name:  # ~/<camera>/reset: one camera's state
                    camera.reset_srv = self.node.create_service(
                        Trigger, f"~/{camera.name}/reset",
                        lambda request, response, camera=camera: self._on_reset(request, response, camera),
                        qos_profile=RESET_SERVICE_QOS)
            self._reset_srv = self.node.create_service(Trigger, "~/reset", self._on_reset,  # last: the readiness signal
                                                       qos_profile=RESET_SERVICE_QOS)
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
        self._active = True
        for camera in self._cameras.values():
            camera.watchdog.reset()
            camera.image_sub = self.node.create_subscription(
                image_type, camera.image_topic, lambda msg, camera=camera: self._on_image(camera, msg), input_qos,
                event_callbacks=SubscriptionEventCallbacks(
                    incompatible_qos=lambda info, camera=camera: self._on_incompatible_qos(camera, info)))
            camera.camera_info_sub = self.node.create_subscription(
                CameraInfo, camera.topic("camera_info"), lambda msg, camera=camera: self._on_camera_info(camera, msg),
                input_qos)

    def deactivate(self) -> None:
        """Stop subscribing and publishing (a frame being processed is dropped); the model stays loaded."""
        if not self._active:
            return
        self._active = False
        for camera in self._cameras.values():
            for subscription in (camera.image_sub, camera.camera_info_sub):
                if subscription is not None:
                    self.node.destroy_subscription(subscription)
            camera.image_sub = camera.camera_info_sub = None
            camera.watchdog.reset()
        self._frames.clear()

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
        for camera in self._cameras.values():
            for publisher in camera.publishers.values():
                destroy_output(publisher)
            camera.publishers = {}
            if camera.reset_srv is not None:
                self.node.destroy_service(camera.reset_srv)
                camera.reset_srv = None
        self._cameras = {}
        self._reset_srv = self._report_timer = self._diagnostics_pub = self._worker = None
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
            self._error_reported(reason)
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
        self._error_reported(reason)
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

    def _error_reported(self, reason: str) -> None:
        """A problem of the node (not of a frame) in every camera's /diagnostics."""
        for stats in self._stats.values():
            stats.error_reported(reason)

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response,
                  camera: Camera | None = None) -> Trigger.Response:
        """`~/reset` (camera None: every camera) or `~/<camera>/reset` (that camera only)."""
        if self._model is None:
            response.success, response.message = False, "not configured: no model loaded"
            return response
        with self._model.serving() as (estimator, _):
            if list(self._cameras) == [UNNAMED]:
                estimator.reset(REQUESTED_RESET_REASON)
            else:  # streams that have had no frame yet have no state to clear
                names = [camera.name] if camera is not None else list(self._cameras)
                known = [name for name in names if name in estimator.streams]
                if known:
                    estimator.reset_streams(REQUESTED_RESET_REASON, known)
        response.success = True
        which = f"recurrent state of camera {camera.name!r}" if camera is not None else "recurrent state"
        response.message = f"{which} cleared; the next frame starts from zero state"
        return response

    # -- input ---------------------------------------------------------------------------------------

    def _on_image(self, camera: Camera, msg: Image | CompressedImage) -> None:
        """Keep only the camera's newest frame; the worker takes (and decodes) it when the model is free."""
        camera.watchdog.frame_received()
        camera.stats.frame_received(replaced_unprocessed=self._frames.put(camera.name, (msg, time.monotonic())))

    def _on_camera_info(self, camera: Camera, msg: CameraInfo) -> None:
        try:
            camera.camera_infos.add(msg)
        except ValueError as error:
            camera.stats.camera_info_ignored(str(error))
            subscription = camera.camera_info_sub
            topic = subscription.topic_name if subscription is not None else camera.topic("camera_info")
            self._problems.report(f"ignoring camera_info on {topic}: {error} (/diagnostics counts every ignored "
                                  "camera_info)", severity="warning")

    def _on_camera_info_mismatch(self, camera: Camera, message: str) -> None:
        """A camera_info of another size than the images was passed over (said once per size by the cache)."""
        camera.stats.camera_info_ignored(message)
        self._problems.report(message, severity="warning")

    def _on_incompatible_qos(self, camera: Camera, info: Any) -> None:
        """A publisher on the image topic whose QoS cannot deliver to this subscription (nothing will arrive)."""
        policy = qos_policy_name_from_kind(info.last_policy_kind)
        hint = ("the node asks for reliable delivery (qos: reliable) but the publisher is best effort: set "
                "qos:=sensor_data" if policy == "RELIABILITY" and self.settings.qos == "reliable" else
                f"the node subscribes with qos={self.settings.qos}")
        self._problems.report(f"a publisher on {camera.image_topic} offers a QoS this node cannot receive from "
                              f"(incompatible {policy}); no images will arrive from it: {hint}", severity="warning")

    # -- reporting -----------------------------------------------------------------------------------

    def _on_report_timer(self) -> None:
        """Steady clock, 1 Hz: /diagnostics, and the watchdog for publishers that deliver nothing."""
        self._publish_diagnostics()
        for camera in list(self._cameras.values()):
            if self._active and camera.image_sub is not None:
                publishers = camera.image_sub.get_publisher_count()
                silent_s = camera.watchdog.check(publishers)
                if silent_s is not None:
                    self._problems.report(self._silent_publishers_message(camera.image_topic, publishers, silent_s),
                                          severity="warning",
                                          key=f"matched image publishers deliver nothing {camera.name}")

    def _silent_publishers_message(self, image_topic: str, publishers: int, silent_s: float) -> str:
        profile = os.environ.get(PROFILE_ENV_VAR) or "none (Fast DDS's built-in transports)"
        shipped = shipped_profile_path()
        return (f"{publishers} publisher(s) matched on {image_topic} but no image has arrived in {silent_s:.0f} s. "
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
        statuses = []
        for camera in list(self._cameras.values()):  # one status per camera
            publishers = camera.image_sub.get_publisher_count() if camera.image_sub is not None else 0
            named = {"camera": camera.name, "frames_batched": str(camera.frames_batched)} if camera.name else {}
            statuses.append(camera.stats.status(
                name=f"{self.node.get_fully_qualified_name()}: depth estimation" + (f" ({camera.name})"
                                                                                    if camera.name else ""),
                hardware_id=f"{settings.backend}:{settings.device_name}",
                extra={"network_size": str(estimator.input_size), "model": describe_model(estimator, settings),
                       "model_loading": loading.model_description() if loading is not None else "",
                       "image_topic": camera.image_topic, "image_publishers": str(publishers),
                       "state": "active" if self._active else "inactive", **named},
                idle_message=None if self._active else "inactive: the model is loaded but the node does not "
                                                       "subscribe (lifecycle: activate it)"))
        self._diagnostics_pub.publish(DiagnosticArray(header=Header(stamp=self.node.get_clock().now().to_msg()),
                                                      status=statuses))
