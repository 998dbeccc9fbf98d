"""KITTI raw drive -> rosbag2: images, stamps, calibration, Velodyne and TF read back with rosbags and rclpy."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from rosbags.interfaces import QosDurability
from rosbags.rosbag2 import Reader
from scipy.spatial.transform import Rotation

from siam_depth_core.data.calib import load_stereo_calibration, read_timestamps
from siam_depth_core.data.kitti import frame_path, load_velodyne_points
from siam_depth_ros.kitti2bag import (
    GPS_TOPIC,
    LEFT_CAMERA,
    RIGHT_CAMERA,
    TF_STATIC_TOPIC,
    TYPESTORE,
    VELO_FRAME,
    VELO_TOPIC,
    convert_drive,
    main,
    parse_frame_range,
)


def read_bag(bag_path: Path) -> tuple[dict[str, list[tuple[int, bytes]]], dict[str, object]]:
    """All messages of a bag as {topic: [(bag time ns, raw CDR bytes)]} and its connections by topic."""
    messages: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
    with Reader(bag_path) as reader:
        connections = {connection.topic: connection for connection in reader.connections}
        for connection, timestamp, raw in reader.messages():
            messages[connection.topic].append((timestamp, bytes(raw)))
    return messages, connections


def decode(raw: bytes, msgtype: str):
    return TYPESTORE.deserialize_cdr(raw, msgtype)


def drive_name(drive_dir: Path) -> str:
    return f"{drive_dir.parent.name}/{drive_dir.name}"


@pytest.fixture(scope="module", params=["mcap", "sqlite3"])
def bag_0023(request, drive_0023: Path, tmp_path_factory) -> Path:
    bag_path = tmp_path_factory.mktemp(f"bag_{request.param}") / "drive_0023"
    convert_drive(drive_0023, bag_path, storage=request.param, progress=False)
    return bag_path


def test_storage_plugin_as_requested(bag_0023: Path):
    suffixes = {path.suffix for path in bag_0023.iterdir()}
    assert suffixes & {".mcap", ".db3"}, f"no storage file in {sorted(bag_0023.iterdir())}"
    assert (bag_0023 / "metadata.yaml").is_file()


@pytest.mark.parametrize("camera", [LEFT_CAMERA, RIGHT_CAMERA], ids=["left", "right"])
def test_images_byte_identical_with_recorded_stamps(bag_0023: Path, drive_0023: Path, camera):
    from siam_depth_core.data.kitti import list_frames, load_image

    messages, _ = read_bag(bag_0023)
    frames = list_frames(drive_0023, camera=camera.kitti_camera)
    stamps = read_timestamps(drive_0023 / f"image_0{camera.kitti_camera}" / "timestamps.txt")
    images = messages[camera.image_topic]
    assert len(images) == len(frames) == 7
    for frame, (bag_time, raw) in zip(frames, images, strict=True):
        image = decode(raw, "sensor_msgs/msg/Image")
        expected = load_image(frame_path(drive_0023.parents[1], drive_name(drive_0023), frame, camera.kitti_camera))
        assert (image.height, image.width, image.encoding, image.step) == (*expected.shape[:2], "rgb8",
                                                                            3 * expected.shape[1])
        assert image.data.tobytes() == expected.tobytes()
        stamp_ns = image.header.stamp.sec * 1_000_000_000 + image.header.stamp.nanosec
        assert stamp_ns == bag_time == stamps[frame]
        assert image.header.frame_id == camera.frame_id


def test_camera_info_matches_calibration(bag_0023: Path, kitti_root: Path):
    calib = load_stereo_calibration(kitti_root / "2011_09_26")
    messages, _ = read_bag(bag_0023)
    left = decode(messages[LEFT_CAMERA.info_topic][0][1], "sensor_msgs/msg/CameraInfo")
    right = decode(messages[RIGHT_CAMERA.info_topic][0][1], "sensor_msgs/msg/CameraInfo")
    for info, projection in ((left, calib.P_rect_02), (right, calib.P_rect_03)):
        assert (info.width, info.height) == calib.image_size == (1242, 375)
        assert info.distortion_model == "plumb_bob"
        np.testing.assert_array_equal(info.d, 0.0)
        np.testing.assert_array_equal(info.r.reshape(3, 3), np.eye(3))
        np.testing.assert_array_equal(info.k.reshape(3, 3), projection[:, :3])
        np.testing.assert_array_equal(info.p.reshape(3, 4)[:, :3], projection[:, :3])
    assert left.p.reshape(3, 4)[0, 3] == 0.0
    right_p = right.p.reshape(3, 4)
    baseline_from_p = -right_p[0, 3] / right_p[0, 0]
    assert baseline_from_p == pytest.approx(calib.baseline_m, rel=1e-12)
    assert baseline_from_p == pytest.approx(0.532, abs=0.002)
    assert len(messages[LEFT_CAMERA.info_topic]) == len(messages[LEFT_CAMERA.image_topic])


def test_tf_static_latched_and_projects_like_the_calibration(bag_0023: Path, kitti_root: Path):
    calib = load_stereo_calibration(kitti_root / "2011_09_26")
    messages, connections = read_bag(bag_0023)
    (profile,) = connections[TF_STATIC_TOPIC].ext.offered_qos_profiles
    assert profile.durability == QosDurability.TRANSIENT_LOCAL
    (first_time, raw), = messages[TF_STATIC_TOPIC]
    assert first_time == min(time for topic in messages.values() for time, _ in topic)
    poses = {}
    for transform in decode(raw, "tf2_msgs/msg/TFMessage").transforms:
        rotation, translation = transform.transform.rotation, transform.transform.translation
        pose = np.eye(4)
        pose[:3, :3] = Rotation.from_quat([rotation.x, rotation.y, rotation.z, rotation.w]).as_matrix()
        pose[:3, 3] = [translation.x, translation.y, translation.z]
        poses[(transform.header.frame_id, transform.child_frame_id)] = pose
    assert ("base_link", VELO_FRAME) in poses
    point_velo = np.array([12.0, -1.5, 0.3, 1.0])
    for camera, projection in ((LEFT_CAMERA, calib.P_rect_02), (RIGHT_CAMERA, calib.P_rect_03)):
        point_camera = np.linalg.inv(poses[(VELO_FRAME, camera.frame_id)]) @ point_velo
        pixel = projection[:, :3] @ point_camera[:3]
        expected = projection @ calib.R_rect_00 @ calib.velo_to_cam @ point_velo
        np.testing.assert_allclose(pixel[:2] / pixel[2], expected[:2] / expected[2], atol=1e-3)


def test_rclpy_deserialises_the_recorded_bytes(bag_0023: Path):
    serialization = pytest.importorskip("rclpy.serialization", reason="rclpy not installed (ROS extra)")
    from sensor_msgs.msg import CameraInfo, Image, NavSatFix

    messages, _ = read_bag(bag_0023)
    raw_image = messages[LEFT_CAMERA.image_topic][0][1]
    ros_image = serialization.deserialize_message(raw_image, Image)
    assert bytes(ros_image.data) == decode(raw_image, "sensor_msgs/msg/Image").data.tobytes()
    assert ros_image.encoding == "rgb8" and ros_image.header.frame_id == LEFT_CAMERA.frame_id
    raw_info = messages[RIGHT_CAMERA.info_topic][0][1]
    ros_info = serialization.deserialize_message(raw_info, CameraInfo)
    np.testing.assert_array_equal(np.asarray(ros_info.p), decode(raw_info, "sensor_msgs/msg/CameraInfo").p)
    ros_fix = serialization.deserialize_message(messages[GPS_TOPIC][0][1], NavSatFix)
    assert 48.0 < ros_fix.latitude < 50.0 and 8.0 < ros_fix.longitude < 9.0  # Karlsruhe


def test_velodyne_cloud_has_the_points_of_the_scan(drive_0009: Path, tmp_path: Path):
    summary = convert_drive(drive_0009, tmp_path / "bag", frame_range=(0, 2), with_right=False, progress=False)
    assert summary.frames == [0, 1]
    messages, _ = read_bag(tmp_path / "bag")
    assert RIGHT_CAMERA.image_topic not in messages
    assert len(messages[LEFT_CAMERA.image_topic]) == 2
    stamps = read_timestamps(drive_0009 / "velodyne_points" / "timestamps.txt")
    clouds = messages[VELO_TOPIC]
    assert len(clouds) == 2
    for frame, (bag_time, raw) in enumerate(clouds):
        cloud = decode(raw, "sensor_msgs/msg/PointCloud2")
        points = load_velodyne_points(drive_0009 / "velodyne_points" / "data" / f"{frame:010d}.bin")
        assert cloud.width * cloud.height == len(points) > 10_000
        assert [field.name for field in cloud.fields] == ["x", "y", "z", "intensity"]
        assert cloud.point_step == 16 and cloud.header.frame_id == VELO_FRAME
        np.testing.assert_array_equal(cloud.data.view("<f4").reshape(-1, 4), points)
        assert bag_time == stamps[frame]


def test_gps_fix_from_oxts(bag_0023: Path, drive_0023: Path):
    messages, _ = read_bag(bag_0023)
    fixes = messages[GPS_TOPIC]
    assert len(fixes) == 7
    oxts = np.loadtxt(drive_0023 / "oxts" / "data" / "0000000003.txt")
    fix = decode(fixes[3][1], "sensor_msgs/msg/NavSatFix")
    assert (fix.latitude, fix.longitude, fix.altitude) == tuple(oxts[:3])
    assert fixes[3][0] == read_timestamps(drive_0023 / "oxts" / "timestamps.txt")[3]


def test_parse_frame_range():
    assert parse_frame_range("0:2") == (0, 2)
    assert parse_frame_range("5:") == (5, None)
    assert parse_frame_range(":10") == (None, 10)
    for bad in ("3", "a:b", "4:2"):
        with pytest.raises(ValueError, match="frame range"):
            parse_frame_range(bad)


def test_clear_errors_for_missing_drive_calibration_and_existing_output(tmp_path: Path, capsys):
    assert main([str(tmp_path / "no_such_drive"), str(tmp_path / "out")]) == 2
    assert "KITTI drive folder not found" in capsys.readouterr().err

    drive = tmp_path / "2011_09_26" / "2011_09_26_drive_0001_sync"
    (drive / "image_02" / "data").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="calib_cam_to_cam.txt.*date folder"):
        convert_drive(drive, tmp_path / "out", progress=False)

    (tmp_path / "exists").mkdir()
    with pytest.raises(FileExistsError, match="exists already"):
        convert_drive(drive, tmp_path / "exists", progress=False)
    assert not (tmp_path / "out").exists()


def test_command_line_writes_the_requested_frames(drive_0023: Path, tmp_path: Path, capsys):
    out = tmp_path / "cli_bag"
    assert main([str(drive_0023), str(out), "--frames", "2:4", "--storage", "sqlite3", "--no-right", "--quiet"]) == 0
    assert f"{LEFT_CAMERA.image_topic}: 2" in capsys.readouterr().out
    assert any(path.suffix == ".db3" for path in out.iterdir())
    messages, _ = read_bag(out)
    assert RIGHT_CAMERA.image_topic not in messages
    stamps = read_timestamps(drive_0023 / "image_02" / "timestamps.txt")
    assert [time for time, _ in messages[LEFT_CAMERA.image_topic]] == stamps[2:4].tolist()
    with pytest.raises(SystemExit):
        main([str(drive_0023), str(tmp_path / "bad"), "--frames", "5"])
    assert "frame range must look like A:B" in capsys.readouterr().err
