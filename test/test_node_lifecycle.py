"""The node in managed (lifecycle) mode, driven over real DDS through the standard lifecycle_msgs services
(`~/change_state`, `~/get_state`), as Nav2's lifecycle manager or `ros2 lifecycle set` drive it:
unconfigured -> configure (model loaded, ~/reset offered, nothing subscribed) -> activate (subscribes and
publishes) -> deactivate (stops, keeps the model) -> activate -> deactivate -> cleanup (model released) ->
a configure that fails stays unconfigured -> configure -> shutdown (the process exits with 0)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_helpers import (
    StampClock,
    image_message,
    kitti_camera_info,
    kitti_frames,
    ros_test_node,
    unique_namespace,
)
from std_srvs.srv import Trigger

from siam_depth_core.network.checkpoint import ModelMeta, save_checkpoint
from siam_depth_ros.conversions import image_to_numpy
from siam_depth_ros.harness import DepthNodeClient, DepthNodeProcess

pytestmark = pytest.mark.timeout(300)

RELIABLE = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    meta = ModelMeta(net_width=0.125, height=64, width=192)
    return save_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt", meta.build_network(), meta)


@pytest.fixture(scope="module")
def ros():
    with ros_test_node("siam_depth_lifecycle_test") as node_and_executor:
        yield node_and_executor


def test_lifecycle_transitions_over_the_standard_services(ros, tiny_checkpoint, drive_0009, tmp_path):
    node, executor = ros
    namespace = unique_namespace() + "_lifecycle"
    images, stamps = kitti_frames(drive_0009, 1)
    info = kitti_camera_info(drive_0009)
    clock = StampClock(int(stamps[0]))

    def frame():
        stamp = clock.next()
        info.header.stamp = image_message(images[0], stamp).header.stamp
        return image_message(images[0], stamp), info

    parameters = {"checkpoint": tiny_checkpoint, "num_threads": 1, "qos": "reliable"}
    with DepthNodeProcess(tmp_path / "node.log", namespace, parameters, lifecycle=True) as process:
        process.wait_until_ready(node, timeout_s=120)
        client = DepthNodeClient(node, executor, namespace, outputs=["depth", "points"], input_qos=RELIABLE)
        reset = node.create_client(Trigger, process.reset_service)

        # unconfigured: no model, no ~/reset, nothing subscribed
        assert client.lifecycle_state() == "unconfigured"
        assert "waiting in the unconfigured state" in process.log() and "]: configured:" not in process.log()
        assert not reset.wait_for_service(timeout_sec=1.0)
        assert client.image_pub.get_subscription_count() == 0

        # configure: the model is loaded and ~/reset offered; still not subscribed
        assert client.change_state("configure")
        assert client.lifecycle_state() == "inactive"
        assert "]: configured: torch backend on cpu (CPU threads: 1)" in process.log()
        assert reset.wait_for_service(timeout_sec=20.0)
        client.spin_for(1.0)
        assert client.image_pub.get_subscription_count() == 0
        inactive = client.diagnostics_where(lambda values: values.get("state") == "inactive", timeout=10)
        assert inactive["frames_received"] == "0"

        # activate: subscribes, processes and publishes
        assert client.change_state("activate")
        assert client.lifecycle_state() == "active"
        client.wait_until_connected()
        outputs = client.send_first(frame)
        assert np.isfinite(image_to_numpy(outputs["depth"])).mean() > 0.5 and outputs["points"].width > 0

        # deactivate: no subscription, no output; the model stays (the state can still be reset)
        assert client.change_state("deactivate")
        assert client.lifecycle_state() == "inactive"
        client.spin_until(lambda: client.image_pub.get_subscription_count() == 0, 10, "the node to unsubscribe")
        image, camera_info = frame()
        client.publish(image, camera_info)
        client.spin_for(2.0)
        assert client.arrival("depth", int(image.header.stamp.sec) * 10**9 + image.header.stamp.nanosec) is None
        assert client.reset().success
        assert process.log().count("]: configured:") == 1

        # activate again: served at once by the same model (no second configure)
        assert client.change_state("activate")
        client.wait_until_connected()
        assert client.send_first(frame, topics=["depth"])["depth"].width == 1242
        assert process.log().count("]: configured:") == 1

        # deactivate + cleanup: the model and ~/reset are released
        assert client.change_state("deactivate") and client.change_state("cleanup")
        assert client.lifecycle_state() == "unconfigured"
        deadline = time.monotonic() + 10
        while reset.service_is_ready():
            assert time.monotonic() < deadline, "~/reset still offered after cleanup"
            client.spin_for(0.2)
        assert "cleaned up: model, publishers and ~/reset released" in process.log()

        # a configure that cannot load its model fails and stays unconfigured; fixed, it succeeds
        (result,) = client.set_parameters(checkpoint="/nonexistent/model.pt")
        assert result.successful  # not loaded while unconfigured: read by the next configure
        assert not client.change_state("configure")
        assert client.lifecycle_state() == "unconfigured"
        assert "configure failed, staying unconfigured: checkpoint not found: /nonexistent/model.pt" in process.log()
        (result,) = client.set_parameters(checkpoint=str(tiny_checkpoint))
        assert client.change_state("configure") and client.lifecycle_state() == "inactive"

        # shutdown: the process ends by itself, cleanly
        assert client.change_state("shutdown")
        assert process.process.wait(timeout=30) == 0
        assert "shut down from inactive: exiting" in process.log()
        node.destroy_client(reset)
