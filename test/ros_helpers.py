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
#: Fast DDS reads its XML profile from the first of these (3.x name, then the 2.x name).
PROFILE_ENV_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


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
    if shm_profile:
        settings.update({name: str(SHM_PROFILE) for name in PROFILE_ENV_VARS})
    else:
        for name in PROFILE_ENV_VARS:
            os.environ.pop(name, None)
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
