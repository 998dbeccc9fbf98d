"""Shared helpers for tests over real DDS: isolation, node processes, discovery, collecting messages, KITTI frames.

Isolation: `configure_dds()` (call before `rclpy.init`) keeps discovery on localhost, picks a
ROS_DOMAIN_ID from the pid and points Fast DDS at `config/fastdds_shm.xml` (large messages over
shared memory); child processes started afterwards inherit it. Tests also run their nodes in a
per-process namespace (`unique_namespace()`) so that parallel test runs on one machine never cross-talk.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
SHM_PROFILE = REPO_ROOT / "config" / "fastdds_shm.xml"
#: Fast DDS 3 (Jazzy/Kilted) reads its XML profile from this; Fast DDS 2 (Humble) read FASTRTPS_DEFAULT_PROFILES_FILE,
#: which Kilted's rmw still honours but warns about.
PROFILE_ENV_VAR = "FASTDDS_DEFAULT_PROFILES_FILE"
LEGACY_PROFILE_ENV_VAR = "FASTRTPS_DEFAULT_PROFILES_FILE"


def unique_domain_id(pid: int | None = None) -> int:
    """A ROS domain id in 1..101 (the range safe on Linux) derived from the process id."""
    return 1 + (os.getpid() if pid is None else pid) % 101


def unique_namespace() -> str:
    """A namespace unique to this test process, e.g. `/test_12345`."""
    return f"/test_{os.getpid()}"


def configure_dds(domain_id: int | None = None, shm_profile: bool = True) -> dict[str, str]:
    """Set this process's DDS environment (before `rclpy.init`) and return it for child processes.

    Localhost-only discovery, a pid-derived domain id (unless given) and, with shm_profile, the
    shared-memory Fast DDS profile; logging unbuffered and uncoloured so logs can be matched.
    """
    settings = {
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_DOMAIN_ID": str(unique_domain_id() if domain_id is None else domain_id),
        "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
        "RCUTILS_COLORIZED_OUTPUT": "0",
        "RCUTILS_LOGGING_BUFFERED_STREAM": "0",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.pop(LEGACY_PROFILE_ENV_VAR, None)
    if shm_profile:
        settings[PROFILE_ENV_VAR] = str(SHM_PROFILE)
    else:
        os.environ.pop(PROFILE_ENV_VAR, None)
    os.environ.update(settings)
    return dict(os.environ)


class NodeProcess:
    """A node run as a separate process; its stdout+stderr go to `log_path` and can be awaited.

    Use as a context manager; leaving it sends SIGINT (the node's clean shutdown) and kills the
    process if it does not exit within `stop_timeout` seconds.
    """

    def __init__(self, command: Sequence[str], log_path: str | Path, env: dict[str, str] | None = None,
                 cwd: str | Path | None = None, stop_timeout: float = 10.0) -> None:
        self.command = list(command)
        self.log_path = Path(log_path)
        self.stop_timeout = stop_timeout
        self._log_file = self.log_path.open("wb")
        self.process = subprocess.Popen(self.command, stdout=self._log_file, stderr=subprocess.STDOUT,
                                        env=env if env is not None else dict(os.environ), cwd=cwd)

    @classmethod
    def python_module(cls, module: str, ros_args: Iterable[str], log_path: str | Path, **kwargs: Any
                      ) -> NodeProcess:
        """`python -m module --ros-args <ros_args>` with this interpreter."""
        return cls([sys.executable, "-m", module, "--ros-args", *ros_args], log_path, **kwargs)

    def log(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 30.0, start: int = 0) -> re.Match[str]:
        """Wait until the log (from character `start`) matches the regex `pattern`; raise on timeout or exit."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.log()[start:])
            if match:
                return match
            if self.process.poll() is not None:
                raise AssertionError(f"process exited ({self.process.returncode}) before logging {pattern!r}:\n"
                                     f"{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} in the log after {timeout} s:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> int:
        """SIGINT, wait, kill if needed; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()
        return self.process.returncode

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def spin_until(executor: Any, condition: Callable[[], Any], timeout: float, what: str = "condition") -> Any:
    """Spin `executor` until `condition()` is truthy (returned) or raise AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        executor.spin_once(timeout_sec=0.05)


def wait_for_subscribers(executor: Any, publisher: Any, count: int = 1, timeout: float = 20.0) -> None:
    """Spin until `publisher` has matched `count` subscriptions (discovery done)."""
    spin_until(executor, lambda: publisher.get_subscription_count() >= count, timeout,
               f"{count} subscriber(s) on {publisher.topic_name}")


def wait_for_publishers(executor: Any, subscription: Any, count: int = 1, timeout: float = 20.0) -> None:
    """Spin until `subscription` has matched `count` publishers."""
    spin_until(executor, lambda: subscription.get_publisher_count() >= count, timeout,
               f"{count} publisher(s) on {subscription.topic_name}")


class MessageCollector:
    """Subscribes to several topics of one node and keeps every message received, per topic."""

    def __init__(self, node: Any, topics: dict[str, type], qos: Any = 10) -> None:
        self.messages: dict[str, list[Any]] = {topic: [] for topic in topics}
        self.subscriptions = {topic: node.create_subscription(msg_type, topic, self.messages[topic].append, qos)
                              for topic, msg_type in topics.items()}

    def clear(self) -> None:
        for received in self.messages.values():
            received.clear()

    def wait_for_stamp(self, executor: Any, stamp: Any, topics: Iterable[str] | None = None,
                       timeout: float = 30.0) -> dict[str, Any]:
        """Spin until every topic (default all) has a message whose header.stamp equals `stamp`; returns them."""
        topics = list(self.messages) if topics is None else list(topics)

        def found() -> dict[str, Any] | None:
            matches = {}
            for topic in topics:
                for msg in self.messages[topic]:
                    if stamp_of(msg) == stamp:
                        matches[topic] = msg
            return matches if len(matches) == len(topics) else None

        return spin_until(executor, found, timeout, f"{topics} at stamp {stamp.sec}.{stamp.nanosec:09d}")


def stamp_of(msg: Any) -> Any:
    """The header stamp of a message (DisparityImage keeps it in msg.header too)."""
    return msg.header.stamp


def stamp_from_ns(stamp_ns: int) -> Any:
    """builtin_interfaces/Time from integer nanoseconds."""
    from builtin_interfaces.msg import Time

    return Time(sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000))


def kitti_frames(drive_dir: Path, count: int, start: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """`count` left colour frames of a KITTI raw drive: ((H,W,3) uint8 RGB images, (count,) int64 stamps in ns)."""
    from siam_depth_core.data.calib import read_timestamps
    from siam_depth_core.data.kitti import frame_path, load_image

    drive = Path(drive_dir)
    images = [load_image(frame_path(drive.parents[1], f"{drive.parent.name}/{drive.name}", index))
              for index in range(start, start + count)]
    stamps = read_timestamps(drive / "image_02" / "timestamps.txt")[start:start + count]
    return images, stamps


def kitti_camera_info(drive_dir: Path, frame_id: str = "camera_color_left_optical_frame") -> Any:
    """sensor_msgs/CameraInfo of the rectified KITTI left colour camera (cam 2) of a drive's calibration."""
    from siam_depth_core.data.calib import load_stereo_calibration
    from siam_depth_ros.conversions import make_camera_info

    calib = load_stereo_calibration(Path(drive_dir).parent)
    width, height = calib.image_size
    info = make_camera_info(calib.camera_matrix, width, height)
    info.p = calib.P_rect_02.ravel()
    info.header.frame_id = frame_id
    return info


class StampClock:
    """Strictly increasing stamps (int ns) for synthetic frames: `next()` advances by `step_s`."""

    def __init__(self, start_ns: int, step_s: float = 0.1) -> None:
        self.now_ns = int(start_ns)
        self.step_ns = int(round(step_s * 1e9))

    def next(self) -> int:
        self.now_ns += self.step_ns
        return self.now_ns


class DepthNodeClient:
    """The test side of a siam_depth node running in `namespace`: publishes image + camera_info,
    collects the node's outputs and /diagnostics, calls `~/reset` and sets parameters."""

    def __init__(self, node: Any, executor: Any, namespace: str, outputs: Iterable[str] | None = None) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rcl_interfaces.srv import SetParameters
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from std_srvs.srv import Trigger
        from stereo_msgs.msg import DisparityImage

        output_types = {"depth": Image, "depth/camera_info": CameraInfo, "disparity": DisparityImage,
                        "points": PointCloud2, "depth/colored": Image}
        self.outputs = list(output_types if outputs is None else outputs)
        self.node, self.executor, self.namespace = node, executor, namespace.rstrip("/")
        self.image_pub = node.create_publisher(Image, f"{self.namespace}/image", qos_profile_sensor_data)
        self.camera_info_pub = node.create_publisher(CameraInfo, f"{self.namespace}/camera_info",
                                                     qos_profile_sensor_data)
        self.received = MessageCollector(node, {f"{self.namespace}/{topic}": output_types[topic]
                                                for topic in self.outputs})
        self.diagnostics = MessageCollector(node, {"/diagnostics": DiagnosticArray})
        self.reset_client = node.create_client(Trigger, f"{self.namespace}/siam_depth/reset")
        self.parameter_client = node.create_client(SetParameters, f"{self.namespace}/siam_depth/set_parameters")

    def wait_until_connected(self, timeout: float = 30.0) -> None:
        """Discovery: the node subscribes our image/camera_info and we subscribe each of its outputs."""
        wait_for_subscribers(self.executor, self.image_pub, timeout=timeout)
        wait_for_subscribers(self.executor, self.camera_info_pub, timeout=timeout)
        for subscription in self.received.subscriptions.values():
            wait_for_publishers(self.executor, subscription, timeout=timeout)

    def publish(self, image_msg: Any, camera_info_msg: Any | None = None) -> None:
        """camera_info first (as it would be latched or already cached), then the image."""
        if camera_info_msg is not None:
            self.camera_info_pub.publish(camera_info_msg)
        self.image_pub.publish(image_msg)

    def wait_outputs(self, stamp: Any, topics: Iterable[str] | None = None, timeout: float = 30.0) -> dict[str, Any]:
        """The node's outputs at `stamp`, keyed by relative topic name (`depth`, `points`, ...)."""
        topics = self.outputs if topics is None else list(topics)
        found = self.received.wait_for_stamp(self.executor, stamp, [f"{self.namespace}/{t}" for t in topics], timeout)
        return {topic[len(self.namespace) + 1:]: msg for topic, msg in found.items()}

    def send(self, image_msg: Any, camera_info_msg: Any | None = None, topics: Iterable[str] | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        """Publish one frame and wait for its outputs."""
        self.publish(image_msg, camera_info_msg)
        return self.wait_outputs(image_msg.header.stamp, topics, timeout)

    def send_first(self, make_frame: Callable[[], tuple[Any, Any | None]], topics: Iterable[str] | None = None,
                   retry_after: float = 2.0, timeout: float = 60.0) -> dict[str, Any]:
        """The first frame after discovery: a match is only known on our side, and until the node has
        matched us too a best-effort frame (or its outputs) can be lost. Sends `make_frame()` (image,
        camera_info or None; a new stamp each call, as the node skips repeated stamps) every
        `retry_after` s until one frame's outputs arrive; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            image_msg, camera_info_msg = make_frame()
            self.publish(image_msg, camera_info_msg)
            try:
                return self.wait_outputs(image_msg.header.stamp, topics, min(retry_after, deadline - time.monotonic()))
            except AssertionError:
                if time.monotonic() + retry_after > deadline:
                    raise

    def _call(self, client: Any, request: Any, timeout: float) -> Any:
        if not client.wait_for_service(timeout_sec=timeout):
            raise AssertionError(f"service {client.srv_name} not available after {timeout} s")
        future = client.call_async(request)
        spin_until(self.executor, future.done, timeout, f"a response from {client.srv_name}")
        return future.result()

    def reset(self, timeout: float = 20.0) -> Any:
        """Call `~/reset` (std_srvs/Trigger); returns the response."""
        from std_srvs.srv import Trigger

        return self._call(self.reset_client, Trigger.Request(), timeout)

    def set_parameters(self, timeout: float = 60.0, **values: Any) -> list[Any]:
        """Set node parameters; returns one rcl_interfaces/SetParametersResult per parameter."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()
                                                    for name, value in values.items()])
        return list(self._call(self.parameter_client, request, timeout).results)

    def wait_diagnostics(self, condition: Callable[[dict[str, str]], bool], timeout: float = 10.0) -> dict[str, str]:
        """Spin until a /diagnostics status of this node's siam_depth satisfies `condition(values)`; returns the
        values of the newest such status."""
        name = f"{self.namespace}/siam_depth"

        def matching() -> dict[str, str] | None:
            for array in reversed(self.diagnostics.messages["/diagnostics"]):
                for status in array.status:
                    values = {item.key: item.value for item in status.values}
                    if status.name.startswith(name + ":") and condition(values):
                        return values
            return None

        return spin_until(self.executor, matching, timeout, f"diagnostics of {name}")


def image_message(rgb: np.ndarray, stamp_ns: int, frame_id: str = "camera_color_left_optical_frame",
                  encoding: str = "rgb8") -> Any:
    """sensor_msgs/Image of an array (see `siam_depth_ros.conversions.numpy_to_image`) with a stamp."""
    from std_msgs.msg import Header

    from siam_depth_ros.conversions import numpy_to_image

    return numpy_to_image(rgb, encoding, Header(stamp=stamp_from_ns(stamp_ns), frame_id=frame_id))
