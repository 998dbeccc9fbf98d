"""Temporal alignment error (issue 25 item 4): the metric on scenes with an exact answer, the true poses
(KITTI raw OXTS of drive 0009, odometry poses/NN.txt) and `siam-depth-eval` printing TAE streamed vs zero state."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from siam_depth_core.data.calib import load_stereo_calibration
from siam_depth_core.data.kitti import KittiDrive
from siam_depth_core.data.odometry import (
    load_odometry_calibration,
    load_odometry_poses,
    odometry_camera_poses,
)
from siam_depth_core.data.oxts import (
    EARTH_RADIUS_M,
    OXTS_COLUMN,
    camera_poses,
    imu_to_camera,
    load_oxts,
    oxts_poses,
)
from siam_depth_core.evaluation.temporal import (
    alignment_abs_rel,
    relative_pose,
    temporal_alignment_error,
    warp_depth,
)
from siam_depth_core.evaluation.temporal_streams import (
    consecutive_runs,
    odometry_sequence_with_poses,
    stream_alignment,
)
from siam_depth_core.runtime.inference import DepthResult

DRIVE_0009 = "2011_09_26/2011_09_26_drive_0009_sync"
SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "models" / "siam_depth_small.pt"
K = np.array([[100.0, 0.0, 63.5], [0.0, 100.0, 47.5], [0.0, 0.0, 1.0]])
SHAPE = (96, 128)


def _pose(forward_m: float = 0.0, yaw_rad: float = 0.0) -> np.ndarray:
    """T_world_cam of a camera moved forward (world z) and turned about its y axis (down)."""
    pose = np.eye(4)
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    pose[:3, :3] = [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]
    pose[2, 3] = forward_m
    return pose


def _street(height_m: float = 1.5, wall_m: float = 20.0) -> np.ndarray:
    """(H,W) depth of a road 1.5 m below the camera closed by a wall 20 m ahead."""
    rows = (np.arange(SHAPE[0]) - K[1, 2]) / K[1, 1]
    with np.errstate(divide="ignore"):
        road = np.where(rows > 0, height_m / rows, np.inf)
    return np.minimum(np.repeat(road[:, None], SHAPE[1], axis=1), wall_m).astype(np.float32)


def test_a_wall_seen_from_one_metre_closer_scores_zero_and_a_scaled_prediction_the_exact_value() -> None:
    poses = [_pose(), _pose(forward_m=1.0)]
    wall_k, wall_next = np.full(SHAPE, 10.0, np.float32), np.full(SHAPE, 9.0, np.float32)
    assert temporal_alignment_error([wall_k, wall_next], K, poses).tae == pytest.approx(0.0, abs=1e-7)
    scaled = temporal_alignment_error([wall_k, 1.1 * wall_next], K, poses)
    # k -> k+1: 9 m moved against 9.9 m predicted; k+1 -> k: 9.9 m moved back to 10.9 m against 10 m
    assert scaled.forward[0] == pytest.approx(0.9 / 9.9, rel=1e-5)
    assert scaled.backward[0] == pytest.approx(0.9 / 10.0, rel=1e-5)
    assert scaled.tae == pytest.approx((0.9 / 9.9 + 0.09) / 2, rel=1e-5) and scaled.pairs == 1


def test_a_prediction_rendered_from_the_previous_depth_and_pose_scores_zero() -> None:
    poses = [_pose(), _pose(forward_m=1.0, yaw_rad=np.deg2rad(3.0))]
    depth_k = _street()
    rendered = warp_depth(depth_k, K, relative_pose(poses[0], poses[1]))
    assert 0.5 < np.isfinite(rendered).mean() < 1.0  # holes where no pixel of frame k lands
    exact = temporal_alignment_error([depth_k, rendered], K, poses)
    assert exact.forward[0] == pytest.approx(0.0, abs=1e-7) and min(exact.pixels[0]) > 5000
    # back from k+1, a rendered pixel's ray passes through its centre, not where the point fell: a rounding
    # error of under half a pixel, under a hundredth of what a 10 % scale error costs
    assert exact.backward[0] < 1e-3
    scaled = temporal_alignment_error([depth_k, 1.1 * rendered], K, poses)
    assert scaled.forward[0] == pytest.approx(0.1 / 1.1, rel=1e-5)
    # a static depth map (what a model that ignores the image predicts) pays for the motion on the wall (about
    # 1 m / 20 m there); the road looks the same from every point along it and costs it nothing
    assert 0.02 < temporal_alignment_error([depth_k, depth_k], K, poses).tae < 0.05


def test_motion_convention_moves_points_of_frame_k_into_frame_k_plus_1() -> None:
    motion = relative_pose(_pose(), _pose(forward_m=1.0))
    np.testing.assert_allclose(motion @ [0.0, 0.0, 10.0, 1.0], [0.0, 0.0, 9.0, 1.0])
    near = np.full(SHAPE, 0.5, np.float32)  # everything behind the camera after 1 m: nothing lands
    assert np.isnan(warp_depth(near, K, motion)).all()
    score, pixels = alignment_abs_rel(near, near, K, motion)
    assert np.isnan(score) and pixels == 0
    result = temporal_alignment_error([near, near, near], K,
                                      [_pose(), _pose(forward_m=1.0), _pose(forward_m=1.0)])
    assert result.pairs == 1 and result.tae == pytest.approx(0.0)  # the pair that lands nothing is left out
    assert result.as_dict()["forward"][0] is None


def test_the_nearest_of_several_points_landing_on_a_pixel_is_kept() -> None:
    depth = np.full(SHAPE, 10.0, np.float32)
    depth[:, 64] = 5.0  # a pole 5 m ahead in front of a wall at 10 m
    sideways = np.eye(4)
    sideways[0, 3] = -1.0  # the camera moves 1 m to the right: the pole slides 20 px left, over the wall
    warped = warp_depth(depth, K, sideways)
    assert warped[48, 44] == pytest.approx(5.0)  # the pole, not the wall from column 54 that lands there too
    assert warped[48, 50] == pytest.approx(10.0) and np.isnan(warped[48, 54])  # the wall, the hole behind the pole


def test_consecutive_runs() -> None:
    assert consecutive_runs([5, 0, 1, 2, 7, 8, 16]) == [[0, 1, 2], [7, 8]]


def test_oxts_poses_of_drive_0009_move_the_camera_forward_at_the_recorded_speed(kitti_root: Path,
                                                                               drive_0009: Path) -> None:
    drive = KittiDrive(kitti_root, DRIVE_0009)
    frames = list(range(51))
    poses = camera_poses(drive, frames)
    assert poses.shape == (51, 4, 4)
    motions = np.linalg.inv(poses[1:]) @ poses[:-1]  # points of camera k -> camera k+1
    camera_k_in_next = motions[:, :3, 3]
    records = load_oxts(drive, frames)
    speed = np.hypot(records[:, OXTS_COLUMN["vf"]], records[:, OXTS_COLUMN["vl"]])
    assert 10.0 < speed.mean() < 11.0  # about 38 km/h: about 1 m a frame at 10 Hz
    seconds = np.diff(drive.timestamps_ns("image_02")[:51]) * 1e-9
    expected = 0.5 * (speed[1:] + speed[:-1]) * seconds
    np.testing.assert_allclose(-camera_k_in_next[:, 2], expected, rtol=0.04)  # forward = camera z
    assert np.abs(camera_k_in_next[:, :2]).max() < 0.08  # little sideways or vertical motion
    angles = np.arccos(np.clip((np.trace(motions[:, :3, :3], axis1=1, axis2=2) - 1) / 2, -1, 1))
    assert np.rad2deg(angles).max() < 1.0

    # the OXTS stamps lead the images by up to ~15 ms; at the image stamps the steps are steadier
    at_oxts = np.linalg.inv(camera_poses(drive, frames, at_image_stamps=False)[1:]) @ \
        camera_poses(drive, frames, at_image_stamps=False)[:-1]
    assert np.std(-at_oxts[:, 2, 3] / expected) > 2 * np.std(-camera_k_in_next[:, 2] / expected)


def test_imu_to_camera_chain_is_the_rig_geometry(kitti_root: Path, drive_0009: Path) -> None:
    drive = KittiDrive(kitti_root, DRIVE_0009)
    cam_from_imu = imu_to_camera(drive.calib_dir, 2)
    # IMU x forward, y left, z up -> camera z forward, -x, -y
    np.testing.assert_allclose(cam_from_imu[:3, :3], [[0, -1, 0], [0, 0, -1], [1, 0, 0]], atol=0.02)
    # at the OXTS stamps: at the image stamps each camera's pose moves to its own shutter time
    left, right = (camera_poses(drive, [0, 1], camera, at_image_stamps=False) for camera in (2, 3))
    rig = load_stereo_calibration(drive.calib_dir)
    for frame in range(2):
        right_in_left = np.linalg.inv(left[frame]) @ right[frame]
        np.testing.assert_allclose(right_in_left[:3, :3], np.eye(3), atol=1e-9)
        assert right_in_left[0, 3] == pytest.approx(rig.baseline_m, abs=1e-3)
        assert abs(right_in_left[1, 3]) < 0.01 and abs(right_in_left[2, 3]) < 0.01
    np.testing.assert_allclose(np.linalg.inv(left[1]) @ left[0], np.linalg.inv(right[1]) @ right[0], atol=1e-3)


def test_oxts_poses_follow_the_devkit_mercator_projection(kitti_root: Path, drive_0009: Path) -> None:
    records = load_oxts(KittiDrive(kitti_root, DRIVE_0009), [0, 50])
    poses = oxts_poses(records)
    np.testing.assert_allclose(poses[0], np.eye(4), atol=1e-6)
    lat, lon = np.deg2rad(records[:, 0]), np.deg2rad(records[:, 1])
    haversine = 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.sin((lat[1] - lat[0]) / 2) ** 2 + np.cos(lat[0])
                                                      * np.cos(lat[1]) * np.sin((lon[1] - lon[0]) / 2) ** 2))
    assert 50.0 < haversine < 60.0
    assert np.linalg.norm(poses[1, :2, 3]) == pytest.approx(haversine, rel=3e-3)
    assert poses[1, 2, 3] == pytest.approx(records[1, 2] - records[0, 2], abs=0.5)  # altitude in the level frame


def test_odometry_poses_are_camera_0_poses(shared_data: Path) -> None:
    root = shared_data / "kitti_odometry"
    if not (root / "poses" / "01.txt").is_file():
        pytest.skip(f"KITTI odometry poses not found under {root}")
    poses = load_odometry_poses(root / "poses" / "01.txt")
    assert poses.shape == (51, 4, 4)
    np.testing.assert_allclose(poses[0], np.eye(4), atol=1e-9)
    assert 0.9 < poses[1, 2, 3] < 1.1  # about 1 m forward a frame
    calibration = load_odometry_calibration(root / "sequences" / "01" / "calib.txt")
    np.testing.assert_allclose(odometry_camera_poses(poses, calibration, 0), poses)
    right = odometry_camera_poses(poses, calibration, 1)
    assert (np.linalg.inv(poses[5]) @ right[5])[0, 3] == pytest.approx(386.1448 / 718.856, abs=1e-4)


class _StaticPredictor:
    """Returns the same depth map for every frame and counts how it was called."""

    def __init__(self, shape: tuple[int, int], depth_m: float) -> None:
        self.depth = np.full(shape, depth_m, np.float32)
        self.calls = {"step": 0, "predict_sequence": 0}

    def step(self, image, stamp, encoding="rgb8", fx_px=None) -> DepthResult:
        self.calls["step"] += 1
        return DepthResult(self.depth, self.depth, stamp, None)

    def predict_sequence(self, images, encoding="rgb8", fx_px=None) -> DepthResult:
        self.calls["predict_sequence"] += 1
        return DepthResult(self.depth, self.depth, 0.0, None)


def test_an_odometry_sequence_streams_through_step_and_scores_from_a_zero_state(shared_data: Path) -> None:
    root = shared_data / "kitti_odometry"
    if not (root / "poses" / "06.txt").is_file():
        pytest.skip(f"KITTI odometry poses not found under {root}")
    sequence = odometry_sequence_with_poses(root, "06", max_frames=3)
    assert sequence.frames == (0, 1, 2) and sequence.poses_from == "odometry poses"
    predictor = _StaticPredictor((370, 1226), 10.0)
    scores = stream_alignment(predictor, sequence)
    assert predictor.calls == {"step": 3, "predict_sequence": 3}
    forward = -np.array([(np.linalg.inv(sequence.poses[k + 1]) @ sequence.poses[k])[2, 3] for k in range(2)])
    # a wall 10 m ahead that stays 10 m ahead while the camera moves ~1.2 m: abs_rel ~ 1.2 / 10 each way
    assert scores["streamed"].tae == pytest.approx(np.mean(forward) / 10.0, rel=0.1)
    assert scores["streamed"].tae == scores["zero_state"].tae == scores["own_mean"].tae


def test_cli_prints_tae_streamed_and_zero_state_for_drive_0009(tmp_path: Path, kitti_root: Path, drive_0009: Path,
                                                              capsys: pytest.CaptureFixture[str],
                                                              one_torch_thread: None) -> None:
    from siam_depth_core.evaluation.evaluate import main

    if not SHIPPED_MODEL.is_file():
        pytest.skip(f"no shipped model at {SHIPPED_MODEL}")
    out_dir = tmp_path / "eval"
    assert main(["--checkpoint", str(SHIPPED_MODEL), "--drives", DRIVE_0009, "--max-images", "3",
                 "--data-root", str(kitti_root), "--stereo2015", "none", "--street-prior", "none", "--vis", "0",
                 "--out-dir", str(out_dir)]) == 0
    printed = capsys.readouterr().out
    assert "Temporal alignment error (TAE)" in printed
    assert "streamed" in printed and "zero state" in printed
    line = next(row for row in printed.splitlines() if "2011_09_26_drive_0009_sync 0-2" in row)
    assert "OXTS" in line
    (row,) = json.loads((out_dir / "summary.json").read_text())["temporal"]
    assert row["frames"] == [0, 2] and row["poses_from"] == "OXTS"
    for state in ("streamed", "zero_state", "own_mean"):
        assert row[state]["pairs"] == 2 and 0.0 < row[state]["tae"] < 0.5
        assert f"{row[state]['tae']:.4f}" in line
    # the first frame of the stream starts from zeros too: the first pair's scores differ only through frame 1
    assert row["streamed"]["forward"][0] != row["zero_state"]["forward"][0]

    assert main(["--checkpoint", str(SHIPPED_MODEL), "--drives", DRIVE_0009, "--max-images", "2", "--no-tae",
                 "--data-root", str(kitti_root), "--stereo2015", "none", "--street-prior", "none", "--vis", "0",
                 "--out-dir", str(tmp_path / "no_tae")]) == 0
    assert "Temporal alignment error" not in capsys.readouterr().out
    assert "temporal" not in json.loads((tmp_path / "no_tae" / "summary.json").read_text())
