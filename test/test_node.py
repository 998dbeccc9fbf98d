"""The siam_depth node over real DDS: a node process fed real KITTI frames, its outputs, state and bad input.

One node process (`python -m siam_depth_ros.node`, a tiny random checkpoint at network size 96x320)
serves the whole module; each test uses fresh, increasing stamps and resets the state itself.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from ros_helpers import (
    StampClock,
    image_message,
    kitti_camera_info,
    kitti_frames,
    ros_test_node,
    stamp_from_ns,
    unique_namespace,
)
from sensor_msgs.msg import CameraInfo, Image

from siam_depth_core.network.checkpoint import KITTI_BASELINE_M, ModelMeta, save_checkpoint
from siam_depth_ros.conversions import camera_info_matrix, image_to_numpy, pointcloud2_to_array, unpack_rgb
from siam_depth_ros.harness import DepthNodeClient, DepthNodeProcess, stamp_ns_of
from siam_depth_ros.outputs import OUTPUT_TOPICS

pytestmark = pytest.mark.timeout(240)

NETWORK_SIZE = (96, 320)
CLOUD_STRIDE = 4
MIN_DEPTH, MAX_DEPTH = 0.1, 80.0
CLOUD_MIN_DEPTH, CLOUD_MAX_DEPTH = 0.5, 50.0
FRAME_ID = "camera_color_left_optical_frame"
NUM_THREADS = 1  # also what a shared 2-core machine wants (2 torch threads were ~9x slower under load)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    meta = ModelMeta(net_width=0.125, height=64, width=192)
    return save_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt", meta.build_network(), meta)


@pytest.fixture(scope="module")
def kitti(drive_0009):
    """Three real frames of drive 0009 (RGB, stamps in ns) and the left camera's CameraInfo."""
    images, stamps = kitti_frames(drive_0009, 3)
    return images, stamps, kitti_camera_info(drive_0009, FRAME_ID)


@pytest.fixture(scope="module")
def ros():
    with ros_test_node("siam_depth_test") as node_and_executor:
        yield node_and_executor


def node_parameters(checkpoint: Path | str) -> dict[str, object]:
    return {"checkpoint": checkpoint, "network_height": NETWORK_SIZE[0], "network_width": NETWORK_SIZE[1],
            "cloud_stride": CLOUD_STRIDE, "min_depth": MIN_DEPTH, "max_depth": MAX_DEPTH,
            "cloud_min_depth": CLOUD_MIN_DEPTH, "cloud_max_depth": CLOUD_MAX_DEPTH, "num_threads": NUM_THREADS}


@pytest.fixture(scope="module")
def session(ros, tiny_checkpoint, kitti, tmp_path_factory):
    """The node process, a connected client, a stamp clock, and the outputs of a first frame sent
    before any camera_info existed (the fallback-intrinsics case, which only a fresh node shows)."""
    node, executor = ros
    namespace = unique_namespace()
    log_path = tmp_path_factory.mktemp("node") / "depth_node.log"
    images, stamps, _ = kitti
    with DepthNodeProcess(log_path, namespace, node_parameters(tiny_checkpoint)) as process:
        process.wait_until_ready(node, timeout_s=120)
        client = DepthNodeClient(node, executor, namespace)
        client.wait_until_connected()
        clock = StampClock(int(stamps[-1]) + 10**9)
        first = [client.send_first(lambda: (image_message(images[0], clock.next()), None),
                                   topics=["depth", "depth/camera_info"])]
        first.append(client.send(image_message(images[0], clock.next()), topics=["depth", "depth/camera_info"]))
        yield client, process, clock, first


def _good_frame(kitti, clock: StampClock, index: int = 0) -> tuple[Image, CameraInfo]:
    """A real frame at the next stamp with its own copy of the KITTI camera_info."""
    images, _, info = kitti
    stamp_ns = clock.next()
    info = deserialize_message(serialize_message(info), CameraInfo)
    info.header.stamp = stamp_from_ns(stamp_ns)
    return image_message(images[index], stamp_ns), info


def _depth(outputs: dict) -> np.ndarray:
    return image_to_numpy(outputs["depth"]).copy()


def test_without_camera_info_depth_uses_fallback_intrinsics_and_warns_once(session):
    client, process, _, first = session
    for outputs in first:
        info = outputs["depth/camera_info"]
        assert (info.width, info.height) == (1242, 375)
        np.testing.assert_allclose(camera_info_matrix(info)[0, 0], 0.58 * 1242)
        assert np.isfinite(_depth(outputs)).mean() > 0.9
    assert process.log().count("no camera_info on") == 1


def test_num_threads_parameter_reaches_the_model(session):
    _, process, _, _ = session
    assert f"ready: torch backend on cpu (CPU threads: {NUM_THREADS})" in process.log()


def test_kitti_frames_give_depth_disparity_camera_info_and_points_with_input_stamps(session, kitti):
    client, _, _, _ = session
    images, stamps, info = kitti
    camera_matrix = camera_info_matrix(info)
    fx, fy, cx, cy = camera_matrix[0, 0], camera_matrix[1, 1], camera_matrix[0, 2], camera_matrix[1, 2]
    client.reset()
    for image, stamp_ns in zip(images, stamps, strict=True):
        info.header.stamp = stamp_from_ns(int(stamp_ns))
        outputs = client.send(image_message(image, int(stamp_ns)), info)
        for msg in outputs.values():
            assert msg.header.stamp == stamp_from_ns(int(stamp_ns)) and msg.header.frame_id == FRAME_ID

        depth_msg = outputs["depth"]
        assert (depth_msg.height, depth_msg.width, depth_msg.encoding) == (375, 1242, "32FC1")
        depth = _depth(outputs)
        valid = np.isfinite(depth)
        assert valid.mean() > 0.9
        assert depth[valid].min() >= MIN_DEPTH and depth[valid].max() <= MAX_DEPTH

        depth_info = outputs["depth/camera_info"]
        assert (depth_info.width, depth_info.height) == (1242, 375)
        np.testing.assert_array_equal(camera_info_matrix(depth_info), camera_matrix)

        disparity = outputs["disparity"]
        disparity_px = image_to_numpy(disparity.image)
        assert disparity_px.shape == (375, 1242)
        np.testing.assert_allclose([disparity.f, disparity.t], [fx, KITTI_BASELINE_M], rtol=1e-6)
        np.testing.assert_allclose(disparity.min_disparity, fx * KITTI_BASELINE_M / MAX_DEPTH, rtol=1e-6)
        np.testing.assert_allclose(depth[valid], disparity.f * disparity.t / disparity_px[valid], rtol=1e-4)
        assert (disparity_px[~valid] < disparity.min_disparity).all()

        colored = outputs["depth/colored"]
        assert (colored.height, colored.width, colored.encoding) == (375, 1242, "rgb8")

        cloud = pointcloud2_to_array(outputs["points"], skip_nans=True)
        assert {"x", "y", "z", "rgb"} <= set(cloud.dtype.names)
        assert 0.2 * (375 // CLOUD_STRIDE) * (1242 // CLOUD_STRIDE) < cloud.size <= 94 * 311
        assert (cloud["z"] >= CLOUD_MIN_DEPTH).all() and (cloud["z"] <= CLOUD_MAX_DEPTH).all()
        # every point projects back onto a stride pixel whose depth and colour it carries
        cols = np.rint(cloud["x"] / cloud["z"] * fx + cx).astype(int)
        rows = np.rint(cloud["y"] / cloud["z"] * fy + cy).astype(int)
        assert (cols % CLOUD_STRIDE == 0).all() and (rows % CLOUD_STRIDE == 0).all()
        np.testing.assert_allclose(cloud["z"], depth[rows, cols], rtol=1e-5)
        np.testing.assert_array_equal(unpack_rgb(cloud["rgb"]), image[rows, cols])


def test_camera_info_sent_once_is_kept_for_later_frames(session, kitti):
    client, _, clock, _ = session
    _, info = _good_frame(kitti, clock)
    info.k[0] = info.p[0] = 700.0  # a distinct fx, sent once with a stamp no image has
    client.camera_info_pub.publish(info)
    # topics are not ordered with each other: frames until the node shows it has the camera_info (a state, not
    # a time), then later frames without camera_info must keep using it
    for _ in range(50):
        image, _ = _good_frame(kitti, clock)
        outputs = client.send(image, None, topics=["depth/camera_info", "disparity"])
        if camera_info_matrix(outputs["depth/camera_info"])[0, 0] == 700.0:
            break
    for _ in range(2):
        image, _ = _good_frame(kitti, clock)
        outputs = client.send(image, None, topics=["depth/camera_info", "disparity"])
        assert camera_info_matrix(outputs["depth/camera_info"])[0, 0] == 700.0
        assert outputs["disparity"].f == 700.0


def test_state_is_carried_across_frames_and_cleared_by_reset(session, kitti):
    client, _, clock, _ = session
    assert client.reset().success
    fresh = _depth(client.send(*_good_frame(kitti, clock), topics=["depth"]))
    carried = _depth(client.send(*_good_frame(kitti, clock), topics=["depth"]))
    client.reset()
    after_reset = _depth(client.send(*_good_frame(kitti, clock), topics=["depth"]))
    assert np.nanmax(np.abs(carried - fresh)) > 1e-4, "the same image with carried state must differ"
    np.testing.assert_allclose(after_reset, fresh, rtol=1e-5, equal_nan=True)


def test_older_stamp_resets_state_visible_in_log_diagnostics_and_output(session, kitti):
    client, process, clock, _ = session
    client.reset()
    image, info = _good_frame(kitti, clock)
    fresh = _depth(client.send(image, info, topics=["depth"]))
    _depth(client.send(*_good_frame(kitti, clock), topics=["depth"]))
    log_start = len(process.log())
    older_ns = clock.now_ns - 45 * 10**7  # off the clock's 0.1 s grid: no earlier output has this stamp
    older_image = image_message(kitti[0][0], older_ns)
    info.header.stamp = older_image.header.stamp
    after_jump = _depth(client.send(older_image, info, topics=["depth"]))
    np.testing.assert_allclose(after_jump, fresh, rtol=1e-5, equal_nan=True)
    process.wait_for_log("recurrent state reset before frame .*time went backwards", start=log_start, timeout=10)
    client.diagnostics_where(lambda values: "time went backwards" in values["last_reset_reason"]
                            and int(values["resets"]) >= 1 and int(values["frames_processed"]) > 0)
    assert process.log()[log_start:].count("time went backwards") == 1


def _unsupported_encoding(kitti, clock):
    depth = np.ones((375, 1242), np.float32)
    return image_message(depth, clock.next(), encoding="32FC1"), None


def _zero_size(kitti, clock):
    msg = image_message(kitti[0][0], clock.next())
    msg.height = msg.width = msg.step = 0
    msg.data = b""
    return msg, None


@pytest.mark.parametrize(("make_bad_frame", "error_text"), [
    (_unsupported_encoding, "unsupported image encoding '32FC1'; the depth node takes camera images in rgb8, bgr8, "
                            "rgba8, bgra8, mono8"),
    (_zero_size, "empty rgb8 image"),
])
def test_bad_input_is_reported_once_and_the_next_good_frame_is_served(session, kitti, make_bad_frame, error_text):
    client, process, clock, _ = session
    failed_before = int(client.fresh_diagnostics()["frames_failed"])
    log_start = len(process.log())
    bad_stamps = []
    for attempt in range(2):
        bad_image, bad_info = make_bad_frame(kitti, clock)
        bad_stamps.append(stamp_ns_of(bad_image))
        client.publish(bad_image, bad_info)
        process.wait_for_log(re.escape(error_text), start=log_start, timeout=15)
        # the bad frame was processed (and the second not logged again) before anything else is sent
        client.diagnostics_where(lambda values: int(values["frames_failed"]) == failed_before + attempt + 1,  # noqa: B023
                                 timeout=20)
    outputs = client.send(*_good_frame(kitti, clock))
    assert np.isfinite(_depth(outputs)).mean() > 0.9
    assert process.log()[log_start:].count(error_text) == 1
    assert process.process.poll() is None
    # a frame is published whole or not at all: the good one on every output, the failed ones on none
    assert set(outputs) == set(OUTPUT_TOPICS)
    assert not [topic for topic in OUTPUT_TOPICS for stamp in bad_stamps if client.arrival(topic, stamp)]


def test_bad_frames_interleaved_with_good_ones_are_logged_once_and_all_counted(session, kitti):
    """A second publisher or a flaky driver: bad frames between good ones must not flood the log."""
    client, process, clock, _ = session
    before = client.fresh_diagnostics()
    log_start = len(process.log())
    for index in range(5):
        yuv = Image(encoding="yuv422", width=6, height=4, step=12, data=bytes(48))
        yuv.header.stamp = stamp_from_ns(clock.next())
        client.publish(yuv, None)
        failed = int(before["frames_failed"]) + index + 1  # the node processed it before the good frame is sent
        client.diagnostics_where(lambda values: int(values["frames_failed"]) == failed, timeout=20)  # noqa: B023
        client.send(*_good_frame(kitti, clock), topics=["depth"])
    assert process.log()[log_start:].count("unsupported image encoding 'yuv422'") == 1
    client.diagnostics_where(lambda values: int(values["frames_failed"]) == int(before["frames_failed"]) + 5
                             and "yuv422" in values["last_error"])


def test_each_different_camera_info_problem_is_logged(session, kitti):
    """Problems are logged once per episode each: a later, different problem is logged too."""
    client, process, clock, _ = session
    client.send(*_good_frame(kitti, clock), topics=["depth"])  # the camera_info the bad ones fall back on
    log_start = len(process.log())
    for entry, value, reason in (((0, 0), 0.0, "fx and fy must be finite and > 0"),
                                 ((0, 2), float("nan"), "cx and cy must be finite"),
                                 ((1, 1), 1e-30, "fy=1e-30 px is implausible for a 1242x375 image")):
        for _ in range(2):
            image, info = _good_frame(kitti, clock)
            matrix = np.reshape(np.array(info.k), (3, 3))
            matrix[entry] = value
            info.k = matrix.ravel()
            projection = np.reshape(np.array(info.p), (3, 4))  # the node reads P (the rectified camera) when set
            projection[entry] = value
            info.p = projection.ravel()
            outputs = client.send(image, info, topics=["depth", "depth/camera_info"])
            # the message is ignored: the frame is served with the last usable camera_info (KITTI's)
            depth_info = camera_info_matrix(outputs["depth/camera_info"])
            assert np.isfinite(depth_info).all() and depth_info[1, 1] == pytest.approx(kitti[2].k[4])
        process.wait_for_log(f"ignoring camera_info on .*{re.escape(reason)}", start=log_start, timeout=10)
        assert len(re.findall(re.escape(reason), process.log()[log_start:])) == 1
    client.diagnostics_where(lambda values: "implausible" in values["last_camera_info_problem"])


def test_empty_input_frame_id_is_warned_about_once(session, kitti):
    client, process, clock, _ = session
    log_start = len(process.log())
    for _ in range(2):
        image, info = _good_frame(kitti, clock)
        image.header.frame_id = info.header.frame_id = ""
        outputs = client.send(image, info, topics=["depth", "points"])
        assert outputs["depth"].header.frame_id == "" and outputs["points"].header.frame_id == ""
    log = process.log()[log_start:]
    assert log.count("have an empty frame_id") == 1 and "set the frame_id parameter" in log


def test_confidence_map_has_the_depth_header_and_values_in_zero_one(session, kitti):
    client, _, clock, _ = session
    outputs = client.send(*_good_frame(kitti, clock), topics=["depth", "depth/confidence"])
    depth, confidence = outputs["depth"], outputs["depth/confidence"]
    assert (confidence.header.stamp, confidence.header.frame_id) == (depth.header.stamp, depth.header.frame_id)
    assert (confidence.width, confidence.height, confidence.encoding) == (depth.width, depth.height, "32FC1")
    values = image_to_numpy(confidence)
    assert np.isfinite(values).all() and 0.0 <= values.min() and values.max() <= 1.0 and values.std() > 1e-3


def test_node_logs_the_fast_dds_profile_it_uses(session):
    _, process, _, _ = session  # the harness sets FASTDDS_DEFAULT_PROFILES_FILE: the user's choice is kept
    assert re.search(r"using the Fast DDS profile set in FASTDDS_DEFAULT_PROFILES_FILE: \S*fastdds_shm.xml",
                     process.log())


def test_missing_checkpoint_on_reload_keeps_the_model_serving(session, kitti, tiny_checkpoint):
    client, process, clock, _ = session
    client.reset()  # the random network's depth is > 90 % valid from a fresh state on these frames
    log_start = len(process.log())
    (result,) = client.set_parameters(checkpoint="/nonexistent/siam_depth.pt")
    assert not result.successful and "checkpoint not found: /nonexistent/siam_depth.pt" in result.reason
    outputs = client.send(*_good_frame(kitti, clock), topics=["depth"])
    assert np.isfinite(_depth(outputs)).mean() > 0.9
    assert process.log()[log_start:].count("checkpoint not found") == 1
    (result,) = client.set_parameters(checkpoint=str(tiny_checkpoint))
    assert result.successful
    process.wait_for_log("model reloaded", start=log_start, timeout=10)
    client.send(*_good_frame(kitti, clock), topics=["depth"])


def test_single_pass_parameter_reloads_a_direct_branch_model_without_confidence(session, kitti):
    client, process, clock, _ = session
    log_start = len(process.log())
    (result,) = client.set_parameters(single_pass=True)
    assert result.successful
    process.wait_for_log("model reloaded", start=log_start, timeout=20)
    log = process.log()[log_start:]
    assert "no confidence (single pass)" in log and "depth/confidence is not published" in log
    outputs = client.send(*_good_frame(kitti, clock), topics=["depth", "points"])
    assert np.isfinite(_depth(outputs)).mean() > 0.9
    log_start = len(process.log())
    (result,) = client.set_parameters(single_pass=False)
    assert result.successful
    process.wait_for_log("model reloaded", start=log_start, timeout=20)
    outputs = client.send(*_good_frame(kitti, clock), topics=["depth", "depth/confidence"])
    assert np.isfinite(image_to_numpy(outputs["depth/confidence"])).all()


def test_damaged_checkpoint_loads_in_the_background_fails_and_the_parameter_is_restored(session, kitti,
                                                                                       tiny_checkpoint, tmp_path):
    client, process, clock, _ = session
    client.reset()
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"not a checkpoint at all")
    log_start = len(process.log())
    (result,) = client.set_parameters(checkpoint=str(damaged))
    assert result.successful, result.reason  # the file exists: it is loaded in the background
    process.wait_for_log(r"model not reloaded \(CheckpointError: checkpoint \S*damaged.pt is corrupt or truncated",
                         start=log_start, timeout=30)
    deadline = time.monotonic() + 60
    while client.get_parameters("checkpoint")["checkpoint"] != str(tiny_checkpoint):
        assert time.monotonic() < deadline, "the checkpoint parameter was not set back to the serving model"
    outputs = client.send(*_good_frame(kitti, clock), topics=["depth"])
    assert np.isfinite(_depth(outputs)).mean() > 0.9
    client.diagnostics_where(lambda values: "damaged.pt" in values["last_error"] and values["model_loading"] == "")
    assert process.log()[log_start:].count("model not reloaded") == 1


def test_missing_checkpoint_at_startup_exits_with_a_clear_error(ros, tmp_path):
    with DepthNodeProcess(tmp_path / "node.log", unique_namespace() + "_bad", node_parameters("/nonexistent.pt")
                          ) as process:
        assert process.process.wait(timeout=120) == 1
        assert "cannot start: checkpoint not found: /nonexistent.pt" in process.log()


def test_only_the_newest_frame_is_processed_when_frames_arrive_faster_than_the_model(session, kitti):
    client, _, clock, _ = session
    before = client.diagnostics_where(lambda values: True)
    frames = [_good_frame(kitti, clock, index % 3) for index in range(12)]
    for image, info in frames:  # a burst, far faster than the model runs
        client.publish(image, info)
    newest = client.wait_outputs(stamp_ns_of(frames[-1][0]), topics=["depth"])
    assert np.isfinite(_depth(newest)).mean() > 0.9
    sent_stamps = {stamp_ns_of(image) for image, _ in frames}
    answered = {item.stamp_ns for item in client.arrivals["depth"]}
    assert len(sent_stamps & answered) < len(frames), "every frame of the burst was processed: nothing was dropped"
    client.diagnostics_where(lambda values: int(values["frames_dropped"]) > int(before["frames_dropped"]))


def test_help_prints_topics_parameters_and_options_without_starting_a_node():
    result = subprocess.run([sys.executable, "-m", "siam_depth_ros.node", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: depth_node [-h] [--lifecycle]")
    for text in ("--lifecycle", "depth/confidence", "image/compressed", "cloud_min_confidence:", "image_transport:",
                 "--ros-args", "the image must be rectified", "read from camera_info's P"):
        assert text in result.stdout, text
    assert "ready:" not in result.stdout + result.stderr


def test_unknown_option_is_an_error_naming_it(tmp_path):
    result = subprocess.run([sys.executable, "-m", "siam_depth_ros.node", "--lifecycel", "--ros-args", "-p",
                             "num_threads:=1"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "depth_node: error: unrecognized arguments: --lifecycel" in result.stderr


@pytest.mark.parametrize("case", ["missing", "malformed"])
def test_a_missing_or_malformed_params_file_is_one_line_and_exit_code_2(case, tmp_path):
    """Issue 27, item 7: rcl refuses the file when the ROS arguments are parsed; one line, not a traceback."""
    params = tmp_path / "depth.yaml"
    if case == "malformed":
        params.write_text("siam_depth:\n  ros__parameters:\n    max_depth: [1,\n")
    result = subprocess.run([sys.executable, "-m", "siam_depth_ros.node", "--ros-args", "--params-file", str(params)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"depth_node: error: cannot use the ROS arguments: Couldn't parse params file: "
                               f"'--params-file {params}'"), lines
    assert lines[0].endswith("check that the file exists and is ROS 2 parameter YAML (`siam_depth:` then "
                             "`ros__parameters:` and one `name: value` per line, as config/depth.yaml)"), lines
    assert ("Error opening YAML file" if case == "missing" else "Error parsing") in lines[0]
    assert "/src/" not in lines[0]  # rcl's source locations are left out


def test_frame_stats_report_rates_drops_and_levels():
    from diagnostic_msgs.msg import DiagnosticStatus

    from siam_depth_ros.diagnostics import FrameStats

    stats = FrameStats()
    assert stats.status("n", "cpu").level == DiagnosticStatus.STALE
    for replaced in (False, True, False):
        stats.frame_received(replaced_unprocessed=replaced)
    stats.frame_processed(latency_s=0.2, stage_s={"model": 0.1})
    stats.frame_processed(latency_s=0.4, stage_s={"model": 0.3})
    stats.state_reset("time went backwards")
    status = stats.status("n", "torch:cpu")
    values = {item.key: item.value for item in status.values}
    assert status.level == DiagnosticStatus.OK and status.hardware_id == "torch:cpu"
    assert (values["frames_received"], values["frames_processed"], values["frames_dropped"]) == ("3", "2", "1")
    assert (values["latency_ms"], values["model_ms"], values["resets"]) == ("300.0", "200.0", "1")
    assert values["last_reset_reason"] == "time went backwards"
    stats.frame_received(replaced_unprocessed=False)
    stats.frame_failed("unsupported image encoding '32FC1'")
    status = stats.status("n", "torch:cpu")
    assert status.level == DiagnosticStatus.WARN and "32FC1" in status.message
    assert {item.key: item.value for item in status.values}["frames_received"] == "4"  # totals keep counting
    stats.frame_received(replaced_unprocessed=False)
    stats.frame_processed(latency_s=0.1, stage_s={"model": 0.1})
    for fx in (0.0, -1.0):
        stats.camera_info_ignored(f"camera_info has no usable intrinsics (fx={fx}, fy=700.0)")
    status = stats.status("n", "torch:cpu")
    values = {item.key: item.value for item in status.values}
    assert status.level == DiagnosticStatus.WARN and "2 camera_info message(s) ignored" in status.message
    assert values["camera_infos_ignored"] == "2" and "fx=-1.0" in values["last_camera_info_problem"]
    stats.frame_received(replaced_unprocessed=False)
    stats.frame_processed(latency_s=0.1, stage_s={"model": 0.1})
    status = stats.status("n", "torch:cpu")
    values = {item.key: item.value for item in status.values}
    assert status.level == DiagnosticStatus.OK  # the level is per report period; the count and reason stay
    assert values["camera_infos_ignored"] == "2" and "fx=-1.0" in values["last_camera_info_problem"]
    idle = stats.status("n", "torch:cpu", idle_message="inactive: not subscribed")
    assert idle.level == DiagnosticStatus.STALE and idle.message == "inactive: not subscribed"


def test_frame_stats_report_each_stage_per_period_and_in_total():
    from siam_depth_ros.diagnostics import STAGES, FrameStats

    stats = FrameStats()
    stats.frame_received(replaced_unprocessed=False)
    stats.frame_processed(latency_s=0.3, stage_s={"model": 0.1, "build_points": 0.02, "processing": 0.15})
    stats.frame_processed(latency_s=0.3, stage_s={"model": 0.3, "processing": 0.35})
    values = {item.key: item.value for item in stats.status("n", "torch:cpu").values}
    assert (values["model_ms"], values["build_points_ms"], values["processing_ms"]) == ("200.0", "10.0", "250.0")
    assert values["model_total_s"] == "0.400000" and values["publish_total_s"] == "0.000000"
    assert {f"{stage}_ms" for stage in STAGES} | {f"{stage}_total_s" for stage in STAGES} <= set(values)
    stats.frame_processed(latency_s=0.1, stage_s={"model": 0.05})
    values = {item.key: item.value for item in stats.status("n", "torch:cpu").values}
    assert values["model_ms"] == "50.0" and values["model_total_s"] == "0.450000"  # means per period, totals kept
    with pytest.raises(ValueError, match=r"unknown stage\(s\) \['modle'\]"):
        stats.frame_processed(latency_s=0.1, stage_s={"modle": 0.1})


def test_parameter_values_are_checked_with_clear_errors():
    from siam_depth_ros.parameters import NodeSettings, settings_with

    defaults = NodeSettings()
    assert settings_with(defaults, {"network_height": 96, "network_width": 320}).network_size == (96, 320)
    assert defaults.network_size is None
    for values, message in [({"qos": "fast"}, "qos must be one of sensor_data, reliable"),
                            ({"backend": "tflite"}, "backend must be one of"),
                            ({"min_depth": 50.0, "max_depth": 40.0}, "min_depth .* must be below max_depth"),
                            ({"num_threads": -1}, r"num_threads must be >= 0"),
                            ({"device": "gpu0"}, r"device must be 'cpu', 'cuda' or 'cuda:<index>', got 'gpu0'"),
                            ({"network_height": 96}, "set both network_height and network_width")]:
        with pytest.raises(ValueError, match=message):
            settings_with(defaults, values)
