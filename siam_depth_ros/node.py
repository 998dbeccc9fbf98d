"""The `siam_depth` node: camera images in; metric depth, disparity, a point cloud and a colour map out.

Subscribes `image` (rgb8/bgr8/rgba8/bgra8/mono8) and `camera_info`; publishes `depth` (32FC1 metres,
NaN invalid, REP 118), `depth/camera_info`, `disparity` (stereo_msgs/DisparityImage), `points`
(PointCloud2 x,y,z + rgb in the camera optical frame) and `depth/colored` (rgb8), all with the input
image's stamp and frame_id; `~/reset` (std_srvs/Trigger) clears the recurrent state; `/diagnostics`
at 1 Hz. The image callback only keeps the newest frame (depth 1, counting drops); a worker thread
runs the model on it, so frames never queue behind a slow model.

Run: `ros2 run siam_depth_ros depth_node --ros-args --params-file config/depth.yaml` or
`python -m siam_depth_ros.node --ros-args -p checkpoint:=model.pt -r image:=/camera/image_raw`.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from collections import OrderedDict

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, RegionOfInterest
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from stereo_msgs.msg import DisparityImage

from siam_depth_core.geometry import backproject
from siam_depth_core.inference import DepthEstimator, DepthResult
from siam_depth_core.visualize import colorize_depth
from siam_depth_ros.conversions import (
    camera_info_matrix,
    image_to_numpy,
    make_camera_info,
    numpy_to_image,
    points_to_pointcloud2,
    rgb_view,
)
from siam_depth_ros.diagnostics import FrameStats
from siam_depth_ros.parameters import (
    MODEL_PARAMETERS,
    NodeSettings,
    declare_parameters,
    settings_with,
    shipped_checkpoint,
)

NODE_NAME = "siam_depth"
#: While no camera_info has ever arrived, the first frame waits this long for one (cameras often
#: publish the image just before its camera_info) before falling back to `fallback_fx_ratio`.
CAMERA_INFO_GRACE_S = 0.2
#: camera_info messages kept for pairing with images by stamp.
CAMERA_INFO_CACHE = 30
#: Output QoS: reliable, so that both best-effort and reliable subscribers (RViz, rosbag2) match.
OUTPUT_QOS = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)


class FrameError(ValueError):
    """A frame that cannot be processed (the node logs it once and serves the next frame)."""


class _RosLogHandler(logging.Handler):
    """Forwards warnings and errors of `siam_depth_core` (Python logging) to the node's ROS logger."""

    def __init__(self, ros_logger) -> None:
        super().__init__(logging.WARNING)
        self._ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        (self._ros_logger.error if record.levelno >= logging.ERROR else self._ros_logger.warning)(text)


def _stamp_ns(stamp: Time) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class DepthNode(Node):
    """Streaming monocular depth node; see the module docstring. Raises on a model that cannot load."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._core_log_handler = _RosLogHandler(self.get_logger())
        logging.getLogger("siam_depth_core").addHandler(self._core_log_handler)
        self._estimator_lock = threading.Lock()
        try:
            self.settings: NodeSettings = declare_parameters(self)
            self._estimator = self._build_estimator(self.settings)
        except Exception:  # bad parameter or model: leave nothing half-built behind, then report it
            logging.getLogger("siam_depth_core").removeHandler(self._core_log_handler)
            super().destroy_node()
            raise
        self._stats = FrameStats()
        self._reported_problems: set[str] = set()

        self._camera_info_ready = threading.Condition()
        self._camera_infos: OrderedDict[int, CameraInfo] = OrderedDict()
        self._latest_camera_info: CameraInfo | None = None
        self._using_fallback_intrinsics = False
        self._warned_unusable_camera_info = False

        self._frame_ready = threading.Condition()
        self._pending: tuple[Image, float] | None = None
        self._last_stamp_ns: int | None = None  # of the last processed frame; a repeat of it is skipped
        self._stopping = False

        input_qos = (qos_profile_sensor_data if self.settings.qos == "sensor_data"
                     else QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
        self._depth_pub = self.create_publisher(Image, "depth", OUTPUT_QOS)
        self._depth_info_pub = self.create_publisher(CameraInfo, "depth/camera_info", OUTPUT_QOS)
        self._disparity_pub = (self.create_publisher(DisparityImage, "disparity", OUTPUT_QOS)
                               if self.settings.publish_disparity else None)
        self._points_pub = (self.create_publisher(PointCloud2, "points", OUTPUT_QOS)
                            if self.settings.publish_points else None)
        self._colored_pub = (self.create_publisher(Image, "depth/colored", OUTPUT_QOS)
                             if self.settings.publish_colored else None)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._image_sub = self.create_subscription(Image, "image", self._on_image, input_qos)
        self._camera_info_sub = self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, input_qos)
        self._reset_srv = self.create_service(Trigger, "~/reset", self._on_reset)
        self._diagnostics_timer = self.create_timer(1.0, self._publish_diagnostics)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._worker = threading.Thread(target=self._work, name="siam_depth_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"ready: {self._describe_model(self._estimator, self.settings)}; "
            f"image {self.resolve_topic_name('image')} ({self.settings.qos} QoS) -> {self.resolve_topic_name('depth')}")

    # -- model ---------------------------------------------------------------------------------------

    def _build_estimator(self, settings: NodeSettings) -> DepthEstimator:
        """A DepthEstimator for `settings`; raises CheckpointError/BackendError/ValueError if it cannot load."""
        checkpoint = settings.checkpoint or None
        if checkpoint is None and settings.backend == "torch":
            shipped = shipped_checkpoint()
            checkpoint = str(shipped) if shipped else None
        return DepthEstimator(checkpoint=checkpoint, backend=settings.backend, device=settings.device,
                              size=settings.network_size, onnx=settings.onnx or None,
                              engine=settings.engine or None, max_gap_s=settings.max_gap_s,
                              min_depth=settings.min_depth, max_depth=settings.max_depth,
                              baseline_m=settings.baseline_m or None, fp16=settings.fp16,
                              num_threads=settings.num_threads)

    @staticmethod
    def _describe_model(estimator: DepthEstimator, settings: NodeSettings) -> str:
        height, width = estimator.input_size
        source = settings.checkpoint or settings.onnx or settings.engine or str(shipped_checkpoint() or "random weights")
        threads = settings.num_threads or "library default"
        return (f"{settings.backend} backend on {settings.device} (CPU threads: {threads}), network {width}x{height} "
                f"(width x{estimator.meta.net_width}), baseline {estimator.baseline_m:.4f} m, model {source}")

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Reload the model when checkpoint/backend/onnx/engine change; keep the old one if the new fails."""
        changes = {parameter.name: parameter.value for parameter in parameters if parameter.name in MODEL_PARAMETERS}
        if not changes:
            return SetParametersResult(successful=True)
        try:
            settings = settings_with(self.settings, changes)
            estimator = self._build_estimator(settings)
        except Exception as error:  # any failure to load must leave the running model serving
            reason = f"model not reloaded ({error}); still serving the previous model"
            self.get_logger().error(reason)
            self._stats.error_reported(reason)
            return SetParametersResult(successful=False, reason=reason)
        with self._estimator_lock:
            self._estimator, self.settings = estimator, settings
        self.get_logger().info(f"model reloaded: {self._describe_model(estimator, settings)}; "
                               "the recurrent state starts from zero")
        return SetParametersResult(successful=True)

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._estimator_lock:
            self._estimator.reset("~/reset service called")
        response.success = True
        response.message = "recurrent state cleared; the next frame starts from zero state"
        return response

    # -- input ---------------------------------------------------------------------------------------

    def _on_image(self, msg: Image) -> None:
        """Keep only the newest frame; the worker takes it when the model is free."""
        with self._frame_ready:
            self._stats.frame_received(replaced_unprocessed=self._pending is not None)
            self._pending = (msg, time.monotonic())
            self._frame_ready.notify()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            camera_info_matrix(msg)
        except ValueError as error:
            self._stats.camera_info_ignored(str(error))
            if not self._warned_unusable_camera_info:
                self.get_logger().error(f"ignoring camera_info on {self._camera_info_sub.topic_name}: {error} "
                                        "(logged once; /diagnostics counts every ignored camera_info)")
                self._warned_unusable_camera_info = True
            return
        with self._camera_info_ready:
            self._camera_infos[_stamp_ns(msg.header.stamp)] = msg
            while len(self._camera_infos) > CAMERA_INFO_CACHE:
                self._camera_infos.popitem(last=False)
            self._latest_camera_info = msg
            self._camera_info_ready.notify_all()

    def _camera_info_for(self, stamp: Time, width: int, height: int) -> CameraInfo | None:
        """The camera_info of this stamp, else the latest one; None (fallback intrinsics) if none ever came.

        Raises FrameError when that camera_info describes an image of another size.
        """
        with self._camera_info_ready:
            if self._latest_camera_info is None and not self._using_fallback_intrinsics:
                self._camera_info_ready.wait_for(lambda: self._latest_camera_info is not None, CAMERA_INFO_GRACE_S)
            info = self._camera_infos.get(_stamp_ns(stamp), self._latest_camera_info)
        if info is None:
            if not self._using_fallback_intrinsics:
                self.get_logger().warning(
                    f"no camera_info on {self._camera_info_sub.topic_name}: publishing depth with fallback intrinsics "
                    f"fx = fy = {self.settings.fallback_fx_ratio} * width, principal point at the image centre "
                    "(metric scale is only right for a camera like the training one)")
                self._using_fallback_intrinsics = True
            return None
        if (info.width, info.height) != (width, height):
            raise FrameError(f"camera_info is {info.width}x{info.height} but the image is {width}x{height}; "
                             "skipping frames until a camera_info of the image's size arrives")
        if self._using_fallback_intrinsics:
            self.get_logger().info("camera_info received: using its intrinsics instead of the fallback")
            self._using_fallback_intrinsics = False
        return info

    def _fallback_camera_matrix(self, width: int, height: int) -> np.ndarray:
        focal = self.settings.fallback_fx_ratio * width
        return np.array([[focal, 0.0, (width - 1) / 2], [0.0, focal, (height - 1) / 2], [0.0, 0.0, 1.0]])

    # -- processing ----------------------------------------------------------------------------------

    def _work(self) -> None:
        """Worker thread: process the newest frame whenever there is one, until the node is destroyed."""
        while True:
            with self._frame_ready:
                self._frame_ready.wait_for(lambda: self._pending is not None or self._stopping)
                if self._stopping:
                    return
                msg, received_at = self._pending
                self._pending = None
            try:
                self._process(msg, received_at)
            except Exception as error:  # one bad frame must never stop the node
                if self._stopping or not self.context.ok():
                    return
                stamp_s = _stamp_ns(msg.header.stamp) * 1e-9
                text = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
                self._stats.frame_failed(text)
                self._report_problem(f"skipping {msg.width}x{msg.height} {msg.encoding!r} frame "
                                     f"(stamp {stamp_s:.3f} s): {text}", key=text)

    def _process(self, msg: Image, received_at: float) -> None:
        stamp_ns = _stamp_ns(msg.header.stamp)
        if stamp_ns == self._last_stamp_ns:
            raise FrameError("duplicate stamp: the previous frame had the same stamp (a repeated message, or two "
                             "publishers on one topic?); skipping it so that outputs keep unique stamps")
        image = image_to_numpy(msg)
        height, width = image.shape[:2]
        info = self._camera_info_for(msg.header.stamp, width, height)
        camera_matrix = camera_info_matrix(info) if info is not None else self._fallback_camera_matrix(width, height)
        with self._estimator_lock:
            estimator, settings = self._estimator, self.settings
            result = estimator.step(image, stamp_ns * 1e-9, msg.encoding, fx_px=float(camera_matrix[0, 0]))
        self._last_stamp_ns = stamp_ns
        if result.reset_reason:
            self.get_logger().info(f"recurrent state reset before frame {result.stamp:.3f} s: {result.reset_reason}")
            self._stats.state_reset(result.reset_reason)
        header = Header(stamp=msg.header.stamp, frame_id=settings.frame_id or msg.header.frame_id)
        self._depth_pub.publish(numpy_to_image(result.depth_m, "32FC1", header))
        self._depth_info_pub.publish(self._depth_camera_info(info, camera_matrix, width, height, header))
        if self._wanted(self._disparity_pub):
            self._disparity_pub.publish(self._disparity_msg(result, header, camera_matrix, estimator, settings))
        if self._wanted(self._points_pub):
            points, pixel_index = backproject(result.depth_m, camera_matrix, settings.cloud_stride,
                                              settings.cloud_min_depth, settings.cloud_max_depth)
            colors = rgb_view(image, msg.encoding)[pixel_index[:, 0], pixel_index[:, 1]]
            self._points_pub.publish(points_to_pointcloud2(points, colors, header))
        if self._wanted(self._colored_pub):
            colored = colorize_depth(result.depth_m, settings.colored_min_depth, settings.max_depth)
            self._colored_pub.publish(numpy_to_image(colored, "rgb8", header))
        self._reported_problems.clear()
        self._stats.frame_processed(time.monotonic() - received_at, result.timings.get("model", 0.0))

    @staticmethod
    def _wanted(publisher) -> bool:
        """Build an optional output only when it is enabled and someone subscribes."""
        return publisher is not None and publisher.get_subscription_count() > 0

    @staticmethod
    def _depth_camera_info(info: CameraInfo | None, camera_matrix: np.ndarray, width: int, height: int,
                           header: Header) -> CameraInfo:
        """Intrinsics of the published depth image (same size and pixels as the input image)."""
        if info is None:
            return make_camera_info(camera_matrix, width, height, header)
        return CameraInfo(header=header, height=info.height, width=info.width, distortion_model=info.distortion_model,
                          d=info.d, k=info.k, r=info.r, p=info.p, binning_x=info.binning_x,
                          binning_y=info.binning_y, roi=info.roi)

    @staticmethod
    def _disparity_msg(result: DepthResult, header: Header, camera_matrix: np.ndarray, estimator: DepthEstimator,
                       settings: NodeSettings) -> DisparityImage:
        """DisparityImage in pixels of the published image; invalid pixels (NaN depth) are -1 (< min_disparity).

        f*T/max_depth and f*T/min_depth (capped at the network's max disparity) bound the valid range;
        delta_d is the disparity of one network-input pixel at the camera resolution.
        """
        height, width = result.disparity.shape
        focal, baseline = float(camera_matrix[0, 0]), float(estimator.baseline_m)
        disparity_px = result.disparity * np.float32(width)
        disparity_px[~np.isfinite(result.depth_m)] = -1.0
        return DisparityImage(
            header=header, image=numpy_to_image(disparity_px.astype(np.float32), "32FC1", header), f=focal,
            t=baseline, valid_window=RegionOfInterest(x_offset=0, y_offset=0, height=height, width=width),
            min_disparity=focal * baseline / settings.max_depth,
            max_disparity=min(focal * baseline / settings.min_depth, estimator.meta.max_disp * width),
            delta_d=width / estimator.input_size[1])

    # -- reporting -----------------------------------------------------------------------------------

    def _report_problem(self, message: str, key: str | None = None) -> None:
        """Log a problem once (per distinct problem) until a frame is processed successfully again."""
        key = message if key is None else key
        if key not in self._reported_problems:
            self._reported_problems.add(key)
            self.get_logger().error(message)

    def _publish_diagnostics(self) -> None:
        with self._estimator_lock:
            estimator, settings = self._estimator, self.settings
        height, width = estimator.input_size
        status = self._stats.status(
            name=f"{self.get_fully_qualified_name()}: depth estimation",
            hardware_id=f"{settings.backend}:{settings.device}",
            extra={"network_size": f"{width}x{height}", "model": self._describe_model(estimator, settings)})
        self._diagnostics_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()),
                                                      status=[status]))

    def destroy_node(self) -> None:
        """Stop the worker thread, then the node."""
        with self._frame_ready:
            self._stopping = True
            self._frame_ready.notify_all()
        self._worker.join(timeout=10.0)
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
