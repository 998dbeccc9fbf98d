"""The demo's replay: the bag played over DDS to the depth node in its own process, and what the node publishes recorded.

`replay_through_node` waits for the node to load its model and for discovery in both directions, plays
the bag's image and camera_info topics at the recorded rate (`siam_depth_ros.player.play_bag`) and
returns a `Recording`: every camera image and depth image by stamp, with the DDS source timestamp of the
image and the arrival time of its depth (the demo's latency), and the point clouds.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from siam_depth_ros.demo_source import log
from siam_depth_ros.harness import DepthNodeProcess

NAMESPACE = "/siam_depth_demo"


@dataclass
class Recording:
    """What the replay produced, keyed by header stamp (ns).

    images: (H,W,3) uint8 RGB as published; published_ns: DDS source timestamp of each image (system
    clock, ns); depth: (H,W) float32 metres (NaN invalid); depth_received_ns: arrival of the depth;
    clouds: point clouds received per stamp; last_cloud: (stamp, (N,) x/y/z/rgb structured array).
    """

    images: dict[int, np.ndarray] = field(default_factory=dict)
    published_ns: dict[int, int] = field(default_factory=dict)
    depth: dict[int, np.ndarray] = field(default_factory=dict)
    depth_received_ns: dict[int, int] = field(default_factory=dict)
    clouds: dict[int, int] = field(default_factory=dict)
    last_cloud: tuple[int, np.ndarray] | None = None


def make_recorder(context: Any, image_topic: str, recording: Recording, lock: threading.Lock) -> Any:
    """An rclpy node subscribed (reliable) to the camera images and to the node's depth and points."""
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, PointCloud2

    from siam_depth_ros.conversions import image_to_numpy, pointcloud2_to_array
    from siam_depth_ros.harness import stamp_ns_of

    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    node = Node("siam_depth_demo_recorder", context=context)

    def on_image(msg: Image, info: dict) -> None:
        with lock:
            recording.images[stamp_ns_of(msg)] = image_to_numpy(msg)
            recording.published_ns[stamp_ns_of(msg)] = int(info["source_timestamp"])

    def on_depth(msg: Image, info: dict) -> None:
        with lock:
            recording.depth[stamp_ns_of(msg)] = image_to_numpy(msg).copy()
            recording.depth_received_ns[stamp_ns_of(msg)] = int(info["received_timestamp"])

    def on_points(msg: PointCloud2) -> None:
        with lock:
            recording.clouds[stamp_ns_of(msg)] = recording.clouds.get(stamp_ns_of(msg), 0) + 1
            recording.last_cloud = (stamp_ns_of(msg), pointcloud2_to_array(msg, ["x", "y", "z", "rgb"], skip_nans=True))

    node.create_subscription(Image, image_topic, on_image, qos)
    node.create_subscription(Image, f"{NAMESPACE}/depth", on_depth, qos)
    node.create_subscription(PointCloud2, f"{NAMESPACE}/points", on_points, qos)
    return node


def wait_for(condition: Any, timeout_s: float, what: str) -> None:
    """Poll `condition()` every 50 ms; TimeoutError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def replay_through_node(bag: Path, node: DepthNodeProcess, image_topic: str, info_topic: str, rate: float,
                        startup_timeout_s: float, timeout_s: float = 60.0) -> tuple[Recording, int]:
    """Wait for the node to be ready, play `bag`'s image and camera_info topics at `rate` to it and record
    what it publishes. Returns the recording and the number of images the player published. Discovery is
    awaited in both directions before the first message; afterwards the outputs of the last image are
    awaited (or `timeout_s`)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from siam_depth_ros.player import play_bag

    recording, lock = Recording(), threading.Lock()
    context = rclpy.Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    recorder = make_recorder(context, image_topic, recording, lock)
    player = rclpy.create_node("siam_depth_demo_player", context=context)
    executor.add_node(recorder)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        log("waiting for the node to load the model")
        node.wait_until_ready(recorder, startup_timeout_s)
        outputs = [s for s in recorder.subscriptions if s.topic_name.startswith(NAMESPACE)]

        def node_subscribes(topic: str) -> bool:
            return any(info.node_namespace == NAMESPACE for info in recorder.get_subscriptions_info_by_topic(topic))

        # The player shares this process's DDS participant: once it knows the node's readers, the
        # player's writers match them as soon as they are created.
        wait_for(lambda: all(s.get_publisher_count() > 0 for s in outputs) and node_subscribes(image_topic)
                 and node_subscribes(info_topic), timeout_s, "discovery of the node's inputs and outputs")
        time.sleep(0.5)  # the node's side of the same discovery exchange
        log(f"replaying the bag over DDS at rate {rate} and recording what the node publishes")
        stats = play_bag(bag, rate=rate, node=player, topics=[image_topic, info_topic],
                         wait_for=[image_topic, info_topic], wait_timeout_s=timeout_s)
        last_stamp = max(recording.published_ns, default=None)

        def finished() -> bool:
            with lock:
                return last_stamp is None or (last_stamp in recording.depth and last_stamp in recording.clouds)

        if not node.alive():
            raise RuntimeError(f"the depth node exited during the replay:\n{node.log()}")
        try:
            wait_for(finished, timeout_s, "the outputs of the last frame")
        except TimeoutError as error:
            log(f"warning: {error}")
        time.sleep(0.3)
    finally:
        executor.shutdown()
        spinner.join(timeout=5.0)
        recorder.destroy_node()
        player.destroy_node()
        rclpy.try_shutdown(context=context)
    return recording, stats.published[image_topic]
