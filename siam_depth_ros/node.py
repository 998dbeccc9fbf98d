"""The `siam_depth` node: camera images in; metric depth, disparity, a point cloud, a colour map and a confidence
map out.

Subscribes `image` (rgb8/bgr8/rgba8/bgra8/mono8; with `image_transport: compressed` the JPEG/PNG
`image/compressed` instead) and `camera_info`; publishes `depth` (32FC1 metres, NaN invalid, REP 118),
`depth/camera_info`, `disparity` (stereo_msgs/DisparityImage), `points` (PointCloud2 x,y,z + rgb in the
camera optical frame), `depth/colored` (rgb8) and `depth/confidence` (32FC1 in [0, 1]), all with the input
image's stamp and frame_id; `~/reset` (std_srvs/Trigger) clears the recurrent state and exists once the
model is loaded (what a caller waits for); `/diagnostics` at 1 Hz on the steady clock (it keeps reporting
when a bag's /clock stops), with the time of every processing stage. With the `cameras` parameter (a list of
names) one node serves several cameras with one model: each camera `<c>` has the topics above under `<c>/`, its
own frame_id, stamps, state, resets, intrinsics and /diagnostics status, and `~/<c>/reset`; the frames that are
waiting when the model is free run in one batched call (README, "Several cameras, one node").

Two ways to run it: plain (`DepthNode`, the default) configures and activates itself at start-up;
managed (`DepthLifecycleNode`, `depth_node --lifecycle`, launch argument `lifecycle:=true`) is a ROS 2
lifecycle node driven through the standard `lifecycle_msgs` services: configure loads the model and
creates the publishers, `~/reset` and the worker; activate subscribes and publishes; deactivate stops
subscribing and publishing and keeps the model; cleanup releases everything configure made; shutdown
does the same and ends the process.

Both are wiring over `DepthPipeline` (`pipeline.py`), itself wiring over pure pieces: `CameraInfoCache`
(intrinsics per image), `LatestFrameSlot` (the image callback only keeps the newest frame, counting drops;
a worker thread, `FrameWorker`, runs the model on it, so frames never queue behind a slow model),
`ModelHolder` (the serving `DepthEstimator`; a model change from `ros2 param set` loads in a background
thread and is swapped in atomically), `OutputBuilder` (every output message of a frame, all built before any is published) and
`ProblemLog` / `InputWatchdog` (each distinct problem logged once per episode, rate-limited; publishers
that deliver nothing).

Run: `ros2 run siam_depth_ros depth_node --ros-args --params-file config/depth.yaml` or
`python -m siam_depth_ros.node --ros-args -p checkpoint:=model.pt -r image:=/camera/image_raw`;
`depth_node --help` lists the topics, parameters and options.
"""
from __future__ import annotations

import argparse
import re
import sys
import threading
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.utilities import remove_ros_args

from siam_depth_core.cli import USAGE_ERROR, OneLineParser
from siam_depth_ros.dds_profile import apply_default_profile
from siam_depth_ros.model_loader import describe_model
from siam_depth_ros.outputs import OUTPUT_TYPES
from siam_depth_ros.parameters import CAMERAS_DOC, CAMERAS_PARAMETER, PARAMETER_DOCS
from siam_depth_ros.pipeline import DepthPipeline

__all__ = ["NODE_NAME", "OUTPUT_TYPES", "DepthLifecycleNode", "DepthNode", "DepthPipeline", "build_arg_parser", "main"]

NODE_NAME = "siam_depth"


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
            f"-> {self.pipeline.depth_topic}")

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
                                   f"{self.pipeline.depth_topic}")
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
    parameters = "\n".join(f"  {name}: {doc}" for name, doc in {**PARAMETER_DOCS, CAMERAS_PARAMETER: CAMERAS_DOC}.items())
    outputs = ", ".join(OUTPUT_TYPES)
    parser = OneLineParser(
        prog="depth_node", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Metric depth from one camera, or several with one model (the cameras parameter), with the "
                    "Siamese ConvLSTM network, as a ROS 2 node `siam_depth`.",
        epilog=f"topics:\n  in:  image (or image/compressed with image_transport: compressed), camera_info\n"
               "       the image must be rectified (image_proc's image_rect / image_rect_color): the intrinsics are\n"
               "       read from camera_info's P (the rectified camera), K only when P is not set\n"
               f"  out: {outputs}, /diagnostics\n  service: ~/reset (std_srvs/Trigger; exists once the model is "
               f"loaded)\n\nparameters (--ros-args -p name:=value, or --params-file config/depth.yaml):\n"
               f"{parameters}\n\nexamples:\n  depth_node --ros-args --params-file config/depth.yaml -r "
               "image:=/camera/image_raw -r camera_info:=/camera/camera_info\n"
               "  depth_node --lifecycle --ros-args -p checkpoint:=model.pt   # then: ros2 lifecycle set "
               "/siam_depth configure; ... activate\n"
               "  depth_node --ros-args -p \"cameras:=[front, rear]\" -r front/image:=/cam_front/image_rect "
               "-r front/camera_info:=/cam_front/camera_info ...   # several cameras, one model: front/depth, "
               "rear/depth, ...; ~/front/reset resets one camera (config/multi_camera.yaml)")
    parser.add_argument("--lifecycle", action="store_true",
                        help="run as a managed lifecycle node: unconfigured until the configure transition, "
                             "subscribing only while active")
    return parser


def ros_arguments_error(error: Exception) -> str:
    """rcl's message about unusable `--ros-args` (a missing or malformed --params-file, a bad -p or -r) as one
    `<what>, <what to do>` line: rcl's source locations dropped."""
    text = re.sub(r",? at /\S+:\d+", "", " ".join(str(error).split()))
    text = text.removeprefix("Failed to parse ROS arguments: ")
    hint = ("check that the file exists and is ROS 2 parameter YAML (`siam_depth:` then `ros__parameters:` and one "
            "`name: value` per line, as config/depth.yaml)" if "params file" in text else
            "see `depth_node --help` and ROS 2's --ros-args syntax (-p name:=value, -r from:=to, --params-file FILE)")
    return f"cannot use the ROS arguments: {text}, {hint}"


def main(args: list[str] | None = None) -> int:
    """Console script `depth_node`: parse the options, set up Fast DDS, init, spin until Ctrl-C / shutdown,
    clean up; 1 if the node cannot start, 2 (one line, as argparse) on an unknown option or unusable ROS
    arguments (a missing or malformed --params-file)."""
    argv = list(sys.argv if args is None else args)
    parser = build_arg_parser()
    try:
        own_arguments = remove_ros_args(argv)[1:]  # rcl parses the --ros-args here, --params-file included
    except RuntimeError as error:  # rclpy's RCLInvalidROSArgsError
        parser.exit(USAGE_ERROR, f"{parser.prog}: error: {ros_arguments_error(error)}\n")
    options = parser.parse_args(own_arguments)
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
