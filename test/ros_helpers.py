"""Shared helpers for tests over real DDS: isolation, processes, discovery, KITTI frames, stamps.

The node process, its readiness, the client that feeds it and DDS isolation come from
`siam_depth_ros.harness` (the demo and the benchmarks use the same); `configure_dds()` (call before
`rclpy.init`) is its `isolated_dds_environment`. Tests also run their nodes in a per-process namespace
(`unique_namespace()`) so that parallel test runs on one machine never cross-talk.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from siam_depth_ros.harness import DepthNodeClient, NodeProcess, spin_until, unique_domain_id
from siam_depth_ros.harness import isolated_dds_environment as configure_dds

__all__ = ["REPO_ROOT", "DepthNodeClient", "NodeProcess", "StampClock", "configure_dds", "image_message", "kitti_camera_info",
           "kitti_frames", "ros_test_node", "spin_until", "stamp_from_ns", "unique_domain_id", "unique_namespace",
           "wait_for_publishers", "wait_for_subscribers"]

REPO_ROOT = Path(__file__).resolve().parents[1]


def unique_namespace() -> str:
    """A namespace unique to this test process, e.g. `/test_12345`."""
    return f"/test_{os.getpid()}"


@contextmanager
def ros_test_node(name: str) -> Iterator[tuple[Any, Any]]:
    """(node, executor) of a test-side rclpy node in its own context on the isolated DDS (`configure_dds`),
    shut down on exit."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    configure_dds()
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(name, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        yield node, executor
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def wait_for_subscribers(executor: Any, publisher: Any, count: int = 1, timeout: float = 20.0) -> None:
    """Spin until `publisher` has matched `count` subscriptions (discovery done)."""
    spin_until(executor, lambda: publisher.get_subscription_count() >= count, timeout,
               f"{count} subscriber(s) on {publisher.topic_name}")


def wait_for_publishers(executor: Any, subscription: Any, count: int = 1, timeout: float = 20.0) -> None:
    """Spin until `subscription` has matched `count` publishers."""
    spin_until(executor, lambda: subscription.get_publisher_count() >= count, timeout,
               f"{count} publisher(s) on {subscription.topic_name}")


def stamp_from_ns(stamp_ns: int) -> Any:
    """builtin_interfaces/Time from integer nanoseconds."""
    from builtin_interfaces.msg import Time

    return Time(sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000))


def kitti_frames(drive_dir: Path, count: int, start: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """`count` left colour frames of a KITTI raw drive: ((H,W,3) uint8 RGB images, (count,) int64 stamps in ns)."""
    from siam_depth_core.data.kitti import KittiDrive, load_image

    drive = KittiDrive.from_dir(drive_dir)
    images = [load_image(drive.image_path(index)) for index in range(start, start + count)]
    return images, drive.timestamps_ns()[start:start + count]


def kitti_camera_info(drive_dir: Path, frame_id: str = "camera_color_left_optical_frame") -> Any:
    """sensor_msgs/CameraInfo of the rectified KITTI left colour camera (cam 2) of a drive's calibration."""
    from siam_depth_core.data.kitti import KittiDrive
    from siam_depth_ros.conversions import make_camera_info

    calib = KittiDrive.from_dir(drive_dir).calibration
    width, height = calib.image_size
    info = make_camera_info(calib.camera_matrix, width, height)
    info.p = calib.projection(2).ravel()
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


def image_message(rgb: np.ndarray, stamp_ns: int, frame_id: str = "camera_color_left_optical_frame",
                  encoding: str = "rgb8") -> Any:
    """sensor_msgs/Image of an array (see `siam_depth_ros.conversions.numpy_to_image`) with a stamp."""
    from std_msgs.msg import Header

    from siam_depth_ros.conversions import numpy_to_image

    return numpy_to_image(rgb, encoding, Header(stamp=stamp_from_ns(stamp_ns), frame_id=frame_id))
