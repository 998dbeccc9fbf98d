"""The node as a vehicle stack feeds it, over real DDS: compressed camera images, sim time from a bag, the node's
own Fast DDS profile, publishers that deliver nothing or with a QoS the node cannot receive, the frame_id
parameter and the confidence filter of the cloud.

One node process serves the module: `image_transport: compressed`, `use_sim_time: true` with no /clock
(as when a bag is not playing), reliable input QoS, `frame_id` set, `cloud_min_confidence: 0.9`, started
without any Fast DDS profile in its environment (so it must apply the shipped one itself).
"""
from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from ros_helpers import (
    StampClock,
    configure_dds,
    kitti_camera_info,
    kitti_frames,
    stamp_from_ns,
    unique_namespace,
)
from sensor_msgs.msg import CompressedImage

from siam_depth_core.network.checkpoint import ModelMeta, save_checkpoint
from siam_depth_core.runtime.backends.source import CheckpointSource, RuntimeOptions
from siam_depth_core.runtime.inference import DepthEstimator
from siam_depth_ros.conversions import (
    camera_info_matrix,
    image_to_numpy,
    numpy_to_compressed_image,
    pointcloud2_to_array,
)
from siam_depth_ros.dds_profile import LEGACY_PROFILE_ENV_VAR, PROFILE_ENV_VAR
from siam_depth_ros.harness import DepthNodeClient, DepthNodeProcess

pytestmark = pytest.mark.timeout(240)

NETWORK_SIZE = (64, 192)
FRAME_ID = "param_optical_frame"
MIN_CONFIDENCE = 0.9  # the module's random network: about 40 % of the pixels of a KITTI frame are below it
CLOUD_STRIDE = 2
CLOUD_MIN_DEPTH, CLOUD_MAX_DEPTH = 0.5, 50.0
RELIABLE = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    import torch

    torch.manual_seed(0)
    meta = ModelMeta(net_width=0.125, height=NETWORK_SIZE[0], width=NETWORK_SIZE[1])
    return save_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt", meta.build_network(), meta)


@pytest.fixture(scope="module")
def kitti(drive_0009):
    images, stamps = kitti_frames(drive_0009, 2)
    return images, stamps, kitti_camera_info(drive_0009, frame_id="")


@pytest.fixture(scope="module")
def transport(tiny_checkpoint, tmp_path_factory):
    """(client, node process, log position after the silent-publisher wait): the node and a client publishing
    CompressedImage; before anything is sent, the node must have warned about the matched silent publisher."""
    environment = configure_dds()
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("siam_depth_transport_test", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    namespace = unique_namespace() + "_transport"
    child_environment = {name: value for name, value in environment.items()
                         if name not in (PROFILE_ENV_VAR, LEGACY_PROFILE_ENV_VAR)}
    parameters = {"checkpoint": tiny_checkpoint, "num_threads": 1, "image_transport": "compressed",
                  "use_sim_time": True, "qos": "reliable", "frame_id": FRAME_ID,
                  "cloud_min_confidence": MIN_CONFIDENCE, "cloud_stride": CLOUD_STRIDE,
                  "cloud_min_depth": CLOUD_MIN_DEPTH, "cloud_max_depth": CLOUD_MAX_DEPTH}
    log_path = tmp_path_factory.mktemp("transport") / "depth_node.log"
    try:
        with DepthNodeProcess(log_path, namespace, parameters, env=child_environment) as process:
            process.wait_until_ready(node, timeout_s=120)
            client = DepthNodeClient(node, executor, namespace, input_qos=RELIABLE, image_transport="compressed")
            client.wait_until_connected()
            silent = client.spin_until(lambda: re.search(r"publisher\(s\) matched on \S+ but no image has arrived",
                                                         process.log()), 30, "the silent-publisher warning")
            client.spin_for(2.5)  # the watchdog keeps checking every second: it must not log again
            yield client, process, silent
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def _jpeg_frame(kitti, stamp_ns: int, index: int = 0) -> tuple[CompressedImage, object]:
    images, _, info = kitti
    msg = numpy_to_compressed_image(images[index], "rgb8", "jpeg", quality=95)
    msg.header.stamp = info.header.stamp = stamp_from_ns(stamp_ns)
    msg.header.frame_id = ""  # a driver without frame_id: the frame_id parameter covers it
    return msg, info


def test_node_applies_the_shipped_shm_profile_when_none_is_set(transport):
    _, process, _ = transport
    assert re.search(r"using the shipped shared-memory Fast DDS profile \S*config/fastdds_shm.xml "
                     r"\(FASTDDS_DEFAULT_PROFILES_FILE was not set", process.log())


def test_matched_publisher_that_delivers_nothing_is_warned_once_with_the_likely_causes(transport):
    client, process, _ = transport
    line = next(line for line in process.log().splitlines() if "but no image has arrived" in line)
    assert f"1 publisher(s) matched on {client.namespace}/image/compressed" in line
    for cause in ("shared-memory Fast DDS profile", f"{PROFILE_ENV_VAR}=", "fastdds_shm.xml", "qos=reliable",
                  "has not sent anything yet"):
        assert cause in line, cause
    assert process.log().count("but no image has arrived") == 1


def test_jpeg_compressed_kitti_frame_gives_the_depth_of_its_decoded_image(transport, kitti, tiny_checkpoint):
    client, process, _ = transport
    client.reset()
    clock = StampClock(int(kitti[1][-1]) + 10**9)
    outputs = client.send_first(lambda: _jpeg_frame(kitti, clock.next()), topics=["depth", "depth/camera_info"])
    depth = image_to_numpy(outputs["depth"])
    assert depth.shape == (375, 1242) and outputs["depth"].header.frame_id == FRAME_ID
    # the same JPEG decoded independently (OpenCV, BGR) through a fresh estimator gives the same depth
    client.reset()
    stamp = clock.next()
    msg, info = _jpeg_frame(kitti, stamp)
    assert len(msg.data) < kitti[0][0].nbytes / 4  # JPEG: a quarter of the raw frame or less
    depth = image_to_numpy(client.send(msg, info, topics=["depth"])["depth"])
    reference = DepthEstimator(CheckpointSource(tiny_checkpoint), RuntimeOptions(num_threads=1))
    decoded = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
    expected = reference.step(decoded, stamp * 1e-9, "bgr8", fx_px=float(camera_info_matrix(info)[0, 0])).depth_m
    np.testing.assert_allclose(depth, expected, rtol=1e-4, atol=1e-6, equal_nan=True)
    assert "empty frame_id" not in process.log()  # the frame_id parameter is set: nothing to warn about


def test_png_compressed_frame_is_lossless(transport, kitti, tiny_checkpoint):
    client, _, _ = transport
    images, _, info = kitti
    client.reset()
    stamp = int(kitti[1][-1]) + 50 * 10**9
    msg = numpy_to_compressed_image(images[1], "rgb8", "png")
    msg.header.stamp = info.header.stamp = stamp_from_ns(stamp)
    assert msg.format == "rgb8; png compressed bgr8"
    depth = image_to_numpy(client.send(msg, info, topics=["depth"])["depth"])
    reference = DepthEstimator(CheckpointSource(tiny_checkpoint), RuntimeOptions(num_threads=1))
    expected = reference.step(images[1], stamp * 1e-9, "rgb8", fx_px=float(camera_info_matrix(info)[0, 0])).depth_m
    np.testing.assert_allclose(depth, expected, rtol=1e-4, atol=1e-6, equal_nan=True)


def test_undecodable_compressed_frames_are_reported_once_and_skipped(transport, kitti):
    client, process, _ = transport
    clock = StampClock(int(kitti[1][-1]) + 100 * 10**9)
    before = client.fresh_diagnostics()
    log_start = len(process.log())
    for index in range(3):
        broken, info = _jpeg_frame(kitti, clock.next())
        broken.data = bytes(broken.data)[: len(broken.data) // 3]  # a truncated JPEG
        client.publish(broken, info)
        failed = int(before["frames_failed"]) + index + 1  # processed before the next frame is sent
        client.diagnostics_where(lambda values: int(values["frames_failed"]) == failed, timeout=20)  # noqa: B023
    outputs = client.send(*_jpeg_frame(kitti, clock.next()), topics=["depth"])
    assert np.isfinite(image_to_numpy(outputs["depth"])).mean() > 0.5
    assert process.log()[log_start:].count("cannot decode the CompressedImage") == 1
    client.diagnostics_where(lambda values: int(values["frames_failed"]) == int(before["frames_failed"]) + 3
                             and "damaged JPEG (1242x375): Premature end of JPEG file" in values["last_error"])
    assert process.alive()


def test_diagnostics_run_on_the_steady_clock_when_sim_time_does_not_advance(transport):
    """use_sim_time with no /clock (a bag that ended or has not started): ROS time stands still at 0, yet
    health reports keep coming once a second."""
    client, _, _ = transport
    seen = len(client.diagnostics)
    client.spin_for(4.5)
    reports = client.diagnostics[seen:]
    assert len(reports) >= 3, f"{len(reports)} /diagnostics reports in 4.5 s"


def test_cloud_leaves_out_points_below_the_confidence_threshold(transport, kitti):
    client, _, _ = transport
    client.reset()
    msg, info = _jpeg_frame(kitti, int(kitti[1][-1]) + 200 * 10**9)
    outputs = client.send(msg, info, topics=["depth", "depth/confidence", "points"])
    depth, confidence = image_to_numpy(outputs["depth"]), image_to_numpy(outputs["depth/confidence"])
    cloud = pointcloud2_to_array(outputs["points"], skip_nans=True)
    camera_matrix = camera_info_matrix(info)
    cols = np.rint(cloud["x"] / cloud["z"] * camera_matrix[0, 0] + camera_matrix[0, 2]).astype(int)
    rows = np.rint(cloud["y"] / cloud["z"] * camera_matrix[1, 1] + camera_matrix[1, 2]).astype(int)
    assert (confidence[rows, cols] >= MIN_CONFIDENCE).all()
    grid = np.zeros_like(depth, dtype=bool)
    grid[::CLOUD_STRIDE, ::CLOUD_STRIDE] = True
    with np.errstate(invalid="ignore"):
        in_range = grid & (depth >= CLOUD_MIN_DEPTH) & (depth <= CLOUD_MAX_DEPTH)
    assert cloud.size == (in_range & (confidence >= MIN_CONFIDENCE)).sum()
    assert cloud.size < 0.9 * in_range.sum(), "the threshold must have left some points out"


def test_publisher_with_an_incompatible_qos_is_warned_about(transport):
    client, process, _ = transport
    log_start = len(process.log())
    best_effort = client.node.create_publisher(CompressedImage, f"{client.namespace}/image/compressed",
                                               qos_profile_sensor_data)
    try:
        client.spin_until(lambda: "incompatible RELIABILITY" in process.log()[log_start:], 20,
                          "the incompatible-QoS warning")
    finally:
        client.node.destroy_publisher(best_effort)
    line = next(line for line in process.log()[log_start:].splitlines() if "incompatible RELIABILITY" in line)
    assert "no images will arrive from it" in line and "set qos:=sensor_data" in line
