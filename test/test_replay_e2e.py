"""End to end: the held-out KITTI drive 0023 excerpt as a rosbag2, replayed at rate 1.0 over DDS through the node.

`kitti2bag` writes the 7-frame excerpt to a bag; the depth node runs in its own process with the
shipped model (models/siam_depth_small.pt, never trained on drive 0023); `play_bag` publishes the
bag's left camera and camera_info with the recorded timing. Every image must come back as one depth
image and one point cloud with its recorded stamp, or be counted as dropped by the node (it keeps
only the newest frame when the model is slower than the camera). The depth is scored against the
drive's projected LiDAR with the Eigen metrics (0-80 m, Garg crop) and must beat, on all seven columns and
with a margin, a constant depth (each frame's median LiDAR depth) and the street prior (the per-pixel median
LiDAR depth of drive 0009: the typical street layout, known without looking at the image).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy not installed (ROS extra)")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from ros_helpers import REPO_ROOT, configure_dds, spin_until, unique_namespace  # noqa: E402

from siam_depth_core.data.ground_truth import ground_truth_depth  # noqa: E402
from siam_depth_core.data.kitti import KittiDrive  # noqa: E402
from siam_depth_core.evaluation.baselines import drive_street_prior, to_grid  # noqa: E402
from siam_depth_core.evaluation.metrics import eigen_eval_mask, evaluate_depth_map  # noqa: E402
from siam_depth_ros.conversions import image_to_numpy, pointcloud2_to_array  # noqa: E402
from siam_depth_ros.harness import DepthNodeClient, DepthNodeProcess, stamp_ns_of  # noqa: E402
from siam_depth_ros.kitti2bag import LEFT_CAMERA, convert_drive  # noqa: E402
from siam_depth_ros.player import play_bag  # noqa: E402

pytestmark = pytest.mark.timeout(300)

SHIPPED_MODEL = REPO_ROOT / "models" / "siam_depth_small.pt"
DRIVE = "2011_09_26/2011_09_26_drive_0023_sync"


@pytest.fixture(scope="module")
def replay(drive_0023: Path, tmp_path_factory):
    """Replay the drive once; returns (recorded image stamps, depth msgs, cloud msgs, node diagnostics)."""
    if not SHIPPED_MODEL.is_file():
        pytest.skip(f"shipped model {SHIPPED_MODEL} not present")
    tmp = tmp_path_factory.mktemp("replay")
    summary = convert_drive(drive_0023, tmp / "bag", with_right=False, with_velodyne=False, with_gps=False,
                            progress=False)
    stamps = KittiDrive.from_dir(drive_0023).timestamps_ns()[summary.frames]
    env = configure_dds()
    env["OMP_NUM_THREADS"] = "1"  # the player and this test need the other core
    namespace = unique_namespace()
    remappings = {"image": LEFT_CAMERA.image_topic, "camera_info": LEFT_CAMERA.info_topic}
    parameters = {"checkpoint": SHIPPED_MODEL, "qos": "reliable"}  # a bag replay loses no first frame to discovery
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("replay_e2e_test", context=context)
    player = rclpy.create_node("replay_e2e_player", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        with DepthNodeProcess(tmp / "depth_node.log", namespace, parameters, remappings, env=env) as process:
            process.wait_until_ready(node, timeout_s=180)
            client = DepthNodeClient(node, executor, namespace, outputs=["depth", "points"])
            client.spin_until(lambda: all(s.get_publisher_count() > 0 for s in client.subscriptions.values()), 60,
                              "the node's depth and points publishers")
            settled = time.monotonic() + 1.0  # our side sees the node; give its side of discovery a moment
            spin_until(executor, lambda: time.monotonic() > settled, 5, "discovery to settle")
            stats = play_bag(tmp / "bag", rate=1.0, node=player, topics=[LEFT_CAMERA.image_topic,
                                                                       LEFT_CAMERA.info_topic],
                             wait_for=[LEFT_CAMERA.image_topic, LEFT_CAMERA.info_topic], wait_timeout_s=60)
            assert stats.published[LEFT_CAMERA.image_topic] == len(stamps)
            diagnostics = client.diagnostics_where(
                lambda values: int(values["frames_received"]) == len(stamps)
                and int(values["frames_processed"]) + int(values["frames_dropped"]) == len(stamps), timeout=60)
            processed = int(diagnostics["frames_processed"])
            spin_until(executor, lambda: min(len(client.arrivals["depth"]), len(client.arrivals["points"])) >= processed,
                       30, "the depth and cloud of every processed frame")
            depth, clouds = client.messages("depth"), client.messages("points")
    finally:
        executor.shutdown()
        player.destroy_node()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    return [int(s) for s in stamps], depth, clouds, diagnostics


def test_each_image_gives_one_depth_and_one_cloud_with_its_recorded_stamp_or_is_counted_dropped(replay):
    stamps, depth, clouds, diagnostics = replay
    depth_stamps = [stamp_ns_of(msg) for msg in depth]
    cloud_stamps = [stamp_ns_of(msg) for msg in clouds]
    dropped = int(diagnostics["frames_dropped"])
    print(f"{len(stamps)} images replayed at rate 1.0: {len(depth)} depth images, {len(clouds)} clouds, "
          f"{dropped} dropped by the node (newest-frame policy)")
    assert len(set(depth_stamps)) == len(depth_stamps), "a frame was published twice"
    assert sorted(cloud_stamps) == sorted(depth_stamps), "depth and cloud stamps differ"
    assert set(depth_stamps) <= set(stamps), "output stamps must be the recorded image stamps"
    assert len(depth) + dropped == len(stamps)
    assert int(diagnostics["frames_failed"]) == 0
    # the node is idle when the first frame arrives, and the newest frame is never dropped
    assert stamps[0] in depth_stamps and stamps[-1] in depth_stamps


def test_outputs_are_metric_depth_and_a_coloured_cloud_at_the_camera_resolution(replay):
    _, depth, clouds, _ = replay
    depth_m = image_to_numpy(depth[-1])
    assert depth[-1].encoding == "32FC1" and depth_m.shape == (375, 1242)
    assert depth[-1].header.frame_id == LEFT_CAMERA.frame_id
    finite = depth_m[np.isfinite(depth_m)]
    # NaN = outside [0.1, 80] m
    assert finite.size > 0.75 * depth_m.size and 0.1 <= finite.min() and finite.max() <= 80.0
    cloud = pointcloud2_to_array(clouds[-1], ["x", "y", "z", "rgb"], skip_nans=True)
    assert cloud.shape[0] > 10_000 and np.all((cloud["z"] >= 0.5) & (cloud["z"] <= 50.0))


def test_depth_vs_lidar_beats_a_constant_depth_and_the_street_prior(replay, kitti_root):
    stamps, depth, _, _ = replay
    drive = KittiDrive(kitti_root, DRIVE)
    prior = drive_street_prior(kitti_root)
    model_scores, constant_scores, prior_scores = [], [], []
    for msg in depth:
        frame = stamps.index(stamp_ns_of(msg))
        depth_gt = ground_truth_depth(drive, frame)
        constant = np.full_like(depth_gt, np.median(depth_gt[eigen_eval_mask(depth_gt, 1e-3, 80.0)]))
        model_scores.append(evaluate_depth_map(depth_gt, image_to_numpy(msg), 1e-3, 80.0))
        constant_scores.append(evaluate_depth_map(depth_gt, constant, 1e-3, 80.0))
        prior_scores.append(evaluate_depth_map(depth_gt, to_grid(prior, depth_gt.shape), 1e-3, 80.0))
    model, constant, street = ({k: np.mean([s[k] for s in scores]) for k in scores[0]}
                               for scores in (model_scores, constant_scores, prior_scores))
    for name, scores in (("model", model), ("constant median depth", constant), ("street prior", street)):
        print(f"{name}:", {k: round(float(v), 3) for k, v in scores.items()})
    # Streamed through the node, the shipped model scores ARD 0.17, SRD 1.3, RMSE 6.0, RMSE(log) 0.26, deltas
    # 0.73 / 0.90 / 0.97 on these frames (models/README.md), against the oracle per-frame constant's 0.45, 4.7,
    # 12.2, 0.59, 0.26 / 0.54 / 0.79 and the street prior's (median LiDAR of drive 0009) 0.27, 3.5, 8.0, 0.38,
    # 0.63 / 0.79 / 0.89. The margins are about half of each gap, so a dropped frame cannot flip them.
    for error in ("abs_rel", "sq_rel", "rmse", "rmse_log"):
        assert model[error] < 0.8 * constant[error], error
        assert model[error] < 0.9 * street[error], error
    for ratio, margin_constant, margin_street in (("a1", 0.2, 0.04), ("a2", 0.15, 0.05), ("a3", 0.08, 0.03)):
        assert model[ratio] > constant[ratio] + margin_constant, ratio
        assert model[ratio] > street[ratio] + margin_street, ratio
