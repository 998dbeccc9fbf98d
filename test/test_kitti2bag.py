"""KITTI raw drive -> rosbag2: images, stamps, calibration, Velodyne, OXTS (GPS, IMU, pose) and TF read back with
rosbags and rclpy; grayscale and JPEG cameras, MCAP chunk compression, warnings, no bag left after a failure."""
from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.interfaces import QosDurability
from rosbags.rosbag2 import Reader
from scipy.spatial.transform import Rotation

from siam_depth_core.data.calib import load_stereo_calibration, read_timestamps
from siam_depth_core.data.kitti import frame_path, load_velodyne_points
from siam_depth_ros.kitti2bag import PAUSE_AFTER_ENV, convert_drive, main, parse_frame_range
from siam_depth_ros.kitti2bag_messages import (
    GPS_TOPIC,
    GRAY_LEFT_CAMERA,
    GRAY_RIGHT_CAMERA,
    IMU_TOPIC,
    LEFT_CAMERA,
    RIGHT_CAMERA,
    TF_STATIC_TOPIC,
    TF_TOPIC,
    TYPESTORE,
    VELO_FRAME,
    VELO_TOPIC,
    WORLD_FRAME,
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
    from sensor_msgs.msg import CameraInfo, Image, Imu, NavSatFix

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
    raw_imu = messages[IMU_TOPIC][0][1]
    ros_imu = serialization.deserialize_message(raw_imu, Imu)
    assert ros_imu.linear_acceleration.z == decode(raw_imu, "sensor_msgs/msg/Imu").linear_acceleration.z > 9.0


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


# ------------------------------------------------------------------------------------------------ helpers
def excerpt_drive(source: Path, root: Path, frames: Iterable[int], folders: Iterable[str]) -> Path:
    """A KITTI raw drive under `root` whose `folders` link the files of `frames` of the real drive `source`
    (calibration files and timestamps linked too); returns the drive folder."""
    date_dir = root / source.parent.name
    date_dir.mkdir(parents=True)
    for calib in source.parent.glob("calib_*.txt"):
        (date_dir / calib.name).symlink_to(calib)
    drive = date_dir / source.name
    frames = list(frames)
    for folder in folders:
        (drive / folder / "data").mkdir(parents=True)
        (drive / folder / "timestamps.txt").symlink_to(source / folder / "timestamps.txt")
        for frame in frames:
            for path in (source / folder / "data").glob(f"{frame:010d}.*"):
                (drive / folder / "data" / path.name).symlink_to(path)
    return drive


def mcap_chunk_compressions(path: Path) -> Counter[str]:
    """Compression names of the Chunk records of an MCAP file, counted (parsed per the MCAP spec:
    magic, then records of opcode u8 + length u64 + body; a Chunk (0x06) body holds start/end time u64,
    uncompressed size u64, crc u32, then the compression as a u32-length string)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89MCAP0\r\n", f"{path} is not an MCAP file"
    compressions: Counter[str] = Counter()
    offset = 8
    while offset + 9 <= len(data):
        opcode, length = data[offset], struct.unpack_from("<Q", data, offset + 1)[0]
        body = offset + 9
        if opcode == 0x06:
            (name_length,) = struct.unpack_from("<I", data, body + 28)
            compressions[data[body + 32:body + 32 + name_length].decode()] += 1
        if opcode == 0x02:  # Footer
            break
        offset = body + length
    return compressions


def pose_of(transform) -> np.ndarray:
    """(4,4) pose from a geometry_msgs/Transform (rosbags type)."""
    rotation, translation = transform.rotation, transform.translation
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_quat([rotation.x, rotation.y, rotation.z, rotation.w]).as_matrix()
    pose[:3, 3] = [translation.x, translation.y, translation.z]
    return pose


# ------------------------------------------------------------------------------------------ OXTS: IMU, pose
def test_imu_from_oxts_levels_the_measured_gravity(bag_0023: Path, drive_0023: Path):
    """The orientation (roll, pitch, yaw) rotates the unit-frame acceleration (ax, ay, az) into the level
    frame, whose up component OXTS also reports (au): a check of both the rotation order and the body frame."""
    messages, _ = read_bag(bag_0023)
    imus = messages[IMU_TOPIC]
    stamps = read_timestamps(drive_0023 / "oxts" / "timestamps.txt")
    assert [time for time, _ in imus] == stamps[:7].tolist()
    for frame, (_, raw) in enumerate(imus):
        imu = decode(raw, "sensor_msgs/msg/Imu")
        oxts = np.loadtxt(drive_0023 / "oxts" / "data" / f"{frame:010d}.txt")
        assert imu.header.frame_id == "base_link"
        acceleration = np.array([imu.linear_acceleration.x, imu.linear_acceleration.y, imu.linear_acceleration.z])
        angular = np.array([imu.angular_velocity.x, imu.angular_velocity.y, imu.angular_velocity.z])
        np.testing.assert_array_equal(acceleration, oxts[11:14])  # ax, ay, az
        np.testing.assert_array_equal(angular, oxts[17:20])  # wx, wy, wz
        orientation = Rotation.from_quat([imu.orientation.x, imu.orientation.y, imu.orientation.z, imu.orientation.w])
        yaw, pitch, roll = orientation.as_euler("ZYX")
        np.testing.assert_allclose([roll, pitch, yaw], oxts[3:6], atol=1e-9)
        assert orientation.apply(acceleration)[2] == pytest.approx(oxts[16], abs=0.01)  # au, gravity included
        assert 9.0 < np.linalg.norm(acceleration) < 11.0


def test_vehicle_pose_on_tf_follows_the_oxts_velocity(drive_0009: Path, tmp_path: Path):
    convert_drive(drive_0009, tmp_path / "bag", with_right=False, with_velodyne=False, with_gps=False, progress=False)
    messages, connections = read_bag(tmp_path / "bag")
    assert connections[TF_TOPIC].msgtype == "tf2_msgs/msg/TFMessage"
    stamps = read_timestamps(drive_0009 / "oxts" / "timestamps.txt")[:51]
    assert [time for time, _ in messages[TF_TOPIC]] == stamps.tolist()
    poses = []
    for (_, raw), (_, raw_imu) in zip(messages[TF_TOPIC], messages[IMU_TOPIC], strict=True):
        (transform,) = decode(raw, "tf2_msgs/msg/TFMessage").transforms
        assert (transform.header.frame_id, transform.child_frame_id) == (WORLD_FRAME, "base_link")
        poses.append(pose_of(transform.transform))
        imu = decode(raw_imu, "sensor_msgs/msg/Imu")
        imu_rotation = Rotation.from_quat([imu.orientation.x, imu.orientation.y, imu.orientation.z, imu.orientation.w])
        np.testing.assert_allclose(poses[-1][:3, :3], imu_rotation.as_matrix(), atol=1e-9)  # world is east-north-up
    positions = np.array([pose[:3, 3] for pose in poses])
    np.testing.assert_array_equal(positions[0], 0.0)
    oxts = np.array([np.loadtxt(drive_0009 / "oxts" / "data" / f"{frame:010d}.txt") for frame in range(51)])
    times_s = (stamps - stamps[0]) / 1e9
    speed = np.hypot(oxts[:, 8], oxts[:, 9])  # vf, vl: horizontal speed, m/s
    travelled = np.linalg.norm(np.diff(positions[:, :2], axis=0), axis=1).sum()
    integrated = np.sum(0.5 * (speed[1:] + speed[:-1]) * np.diff(times_s))
    assert travelled == pytest.approx(integrated, rel=0.02) and travelled > 40.0
    velocity = (positions[10] - positions[0]) / (times_s[10] - times_s[0])
    np.testing.assert_allclose(velocity[:2], oxts[:11, [7, 6]].mean(axis=0), atol=0.3)  # (ve, vn)


# --------------------------------------------------------------------------------- warnings, compression
def test_missing_sensor_folder_is_warned_not_dropped_silently(drive_0023: Path, tmp_path: Path, capsys):
    summary = convert_drive(drive_0023, tmp_path / "default", with_right=False, progress=False)
    assert VELO_TOPIC not in summary.messages_per_topic
    (warning,) = summary.warnings
    assert "velodyne_points" in warning and VELO_TOPIC in warning and "--no-velodyne" in warning
    assert convert_drive(drive_0023, tmp_path / "asked", with_right=False, with_velodyne=False,
                         progress=False).warnings == []
    assert main([str(drive_0023), str(tmp_path / "cli"), "--no-right", "--quiet"]) == 0
    assert "WARNING: no velodyne_points folder" in capsys.readouterr().err


def test_sensor_missing_some_frames_is_warned(drive_0009: Path, tmp_path: Path):
    drive = excerpt_drive(drive_0009, tmp_path / "kitti", range(3), ["image_02", "oxts"])
    (drive / "velodyne_points" / "data").mkdir(parents=True)
    (drive / "velodyne_points" / "timestamps.txt").symlink_to(drive_0009 / "velodyne_points" / "timestamps.txt")
    for frame in (0, 1):
        name = f"{frame:010d}.bin"
        (drive / "velodyne_points" / "data" / name).symlink_to(drive_0009 / "velodyne_points" / "data" / name)
    summary = convert_drive(drive, tmp_path / "bag", with_right=False, progress=False)
    assert summary.messages_per_topic[VELO_TOPIC] == 2
    assert summary.warnings == ["velodyne_points has 2 of the 3 frames written (missing: 2)"]


def test_mcap_chunks_are_zstd_compressed_and_read_back_identically(drive_0009: Path, tmp_path: Path):
    options = dict(frame_range=(0, 4), with_right=False, progress=False)
    packed = convert_drive(drive_0009, tmp_path / "zstd", **options)
    plain = convert_drive(drive_0009, tmp_path / "none", chunk_compression="none", **options)
    (packed_file,), (plain_file,) = (list(bag.glob("*.mcap")) for bag in (tmp_path / "zstd", tmp_path / "none"))
    assert set(mcap_chunk_compressions(packed_file)) == {"zstd"}
    assert set(mcap_chunk_compressions(plain_file)) == {""}
    assert packed.bag_bytes < 0.8 * plain.bag_bytes, (packed.bag_bytes, plain.bag_bytes)
    assert read_bag(tmp_path / "zstd")[0] == read_bag(tmp_path / "none")[0]
    with pytest.raises(ValueError, match="chunk compression is an MCAP feature"):
        convert_drive(drive_0009, tmp_path / "sqlite", storage="sqlite3", chunk_compression="zstd", **options)


def test_failed_conversion_leaves_no_bag_and_can_be_rerun(drive_0009: Path, tmp_path: Path, capsys):
    drive = excerpt_drive(drive_0009, tmp_path / "kitti", range(4), ["image_02", "velodyne_points", "oxts"])
    broken = drive / "image_02" / "data" / "0000000002.png"
    broken.unlink()
    broken.write_bytes(b"\x89PNG\r\n\x1a\n -- cut off during a copy")
    bag = tmp_path / "bag"
    with pytest.raises(ValueError, match=r"cannot write /kitti/camera_color_left/image_raw from .*0000000002\.png"):
        convert_drive(drive, bag, with_right=False, progress=False)
    assert not bag.exists()
    assert main([str(drive), str(bag), "--no-right", "--quiet"]) == 2
    assert "0000000002.png" in capsys.readouterr().err and not bag.exists()
    broken.unlink()
    broken.symlink_to(drive_0009 / "image_02" / "data" / "0000000002.png")
    summary = convert_drive(drive, bag, with_right=False, progress=False)  # the same path: nothing blocks the rerun
    assert summary.messages_per_topic[LEFT_CAMERA.image_topic] == 4


# ------------------------------------------------------------------------------------- grayscale and JPEG
@pytest.fixture
def gray_drive(drive_0009: Path, tmp_path: Path) -> Path:
    """Drive 0009 frames 0-2 with grayscale cameras 0/1. The shared excerpt has no image_00/01, so their
    images are the real colour frames of cameras 2/3 converted to grayscale (calibration: the real P_rect_00/01)."""
    drive = excerpt_drive(drive_0009, tmp_path / "kitti", range(3), ["image_02", "image_03", "oxts"])
    for gray, colour in ((0, 2), (1, 3)):
        (drive / f"image_0{gray}" / "data").mkdir(parents=True)
        (drive / f"image_0{gray}" / "timestamps.txt").symlink_to(drive_0009 / f"image_0{colour}" / "timestamps.txt")
        for frame in range(3):
            name = f"{frame:010d}.png"
            image = cv2.imread(str(drive_0009 / f"image_0{colour}" / "data" / name), cv2.IMREAD_GRAYSCALE)
            assert cv2.imwrite(str(drive / f"image_0{gray}" / "data" / name), image)
    return drive


def test_grayscale_cameras_on_request(gray_drive: Path, tmp_path: Path):
    from siam_depth_core.data.calib import read_calib_file

    calib_values = read_calib_file(gray_drive.parent / "calib_cam_to_cam.txt")
    calib = load_stereo_calibration(gray_drive.parent)
    convert_drive(gray_drive, tmp_path / "bag", with_gray=True, with_velodyne=False, with_gps=False, with_imu=False,
                  with_pose=False, progress=False)
    messages, _ = read_bag(tmp_path / "bag")
    for camera in (GRAY_LEFT_CAMERA, GRAY_RIGHT_CAMERA):
        assert len(messages[camera.image_topic]) == 3
        for frame, (_, raw) in enumerate(messages[camera.image_topic]):
            image = decode(raw, "sensor_msgs/msg/Image")
            expected = cv2.imread(str(gray_drive / f"image_0{camera.kitti_camera}" / "data" / f"{frame:010d}.png"),
                                  cv2.IMREAD_UNCHANGED)
            assert (image.encoding, image.height, image.width, image.step) == ("mono8", 375, 1242, 1242)
            assert image.data.tobytes() == expected.tobytes() and image.header.frame_id == camera.frame_id
        info = decode(messages[camera.info_topic][0][1], "sensor_msgs/msg/CameraInfo")
        projection = calib_values[f"P_rect_0{camera.kitti_camera}"].reshape(3, 4)
        np.testing.assert_array_equal(info.k.reshape(3, 3), projection[:, :3])
    right_p = decode(messages[GRAY_RIGHT_CAMERA.info_topic][0][1], "sensor_msgs/msg/CameraInfo").p.reshape(3, 4)
    assert -right_p[0, 3] / right_p[0, 0] == pytest.approx(0.537, abs=0.002)  # the grayscale pair's baseline
    transforms = decode(messages[TF_STATIC_TOPIC][0][1], "tf2_msgs/msg/TFMessage").transforms
    poses = {(t.header.frame_id, t.child_frame_id): pose_of(t.transform) for t in transforms}
    point_velo = np.array([15.0, 2.0, -0.5, 1.0])
    left_projection = calib_values["P_rect_00"].reshape(3, 4)
    pixel = left_projection[:, :3] @ (np.linalg.inv(poses[(VELO_FRAME, GRAY_LEFT_CAMERA.frame_id)]) @ point_velo)[:3]
    expected = left_projection @ calib.R_rect_00 @ calib.velo_to_cam @ point_velo
    np.testing.assert_allclose(pixel[:2] / pixel[2], expected[:2] / expected[2], atol=1e-3)
    plain = convert_drive(gray_drive, tmp_path / "plain", with_velodyne=False, with_gps=False, progress=False)
    assert GRAY_LEFT_CAMERA.image_topic not in plain.messages_per_topic


def test_grayscale_request_without_the_folders_is_warned(drive_0023: Path, tmp_path: Path):
    summary = convert_drive(drive_0023, tmp_path / "bag", with_gray=True, with_velodyne=False, progress=False)
    assert [warning.split(" folder")[0] for warning in summary.warnings] == ["no image_00", "no image_01"]
    assert GRAY_LEFT_CAMERA.image_topic not in summary.messages_per_topic


def psnr_db(image: np.ndarray, reference: np.ndarray) -> float:
    error = np.mean((image.astype(np.float64) - reference.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / error))


def test_compressed_cameras_are_jpeg_on_image_transport_topics(drive_0023: Path, tmp_path: Path):
    from siam_depth_core.data.kitti import list_frames, load_image

    summary = convert_drive(drive_0023, tmp_path / "bag", compressed=True, progress=False)
    messages, connections = read_bag(tmp_path / "bag")
    for camera in (LEFT_CAMERA, RIGHT_CAMERA):
        assert camera.image_topic not in messages
        assert camera.compressed_topic == f"{camera.image_topic}/compressed"
        assert connections[camera.compressed_topic].msgtype == "sensor_msgs/msg/CompressedImage"
        stamps = read_timestamps(drive_0023 / f"image_0{camera.kitti_camera}" / "timestamps.txt")
        frames = list_frames(drive_0023, camera=camera.kitti_camera)
        assert [time for time, _ in messages[camera.compressed_topic]] == stamps[frames].tolist()
        for frame, (_, raw) in zip(frames, messages[camera.compressed_topic], strict=True):
            msg = decode(raw, "sensor_msgs/msg/CompressedImage")
            assert msg.format == "rgb8; jpeg compressed bgr8" and msg.header.frame_id == camera.frame_id
            assert msg.data[:2].tobytes() == b"\xff\xd8"  # JPEG start-of-image marker
            decoded = cv2.cvtColor(cv2.imdecode(msg.data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            original = load_image(drive_0023 / f"image_0{camera.kitti_camera}" / "data" / f"{frame:010d}.png")
            assert decoded.shape == original.shape
            luma = [cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) for image in (decoded, original)]
            # quality 95 with 4:2:0 chroma subsampling, as image_transport: luma near-lossless, colour coarser
            assert psnr_db(*luma) > 40.0 and psnr_db(decoded, original) > 25.0
            assert len(msg.data) < original.nbytes / 4
    assert summary.messages_per_topic[LEFT_CAMERA.info_topic] == 7
    try:
        from rclpy.serialization import deserialize_message
        from sensor_msgs.msg import CompressedImage
    except ImportError:
        return  # rclpy's view of the bytes is checked where the ROS extra is installed
    ros_msg = deserialize_message(messages[LEFT_CAMERA.compressed_topic][0][1], CompressedImage)
    assert ros_msg.format == "rgb8; jpeg compressed bgr8" and bytes(ros_msg.data[:2]) == b"\xff\xd8"


def test_command_line_options_for_the_new_topics(gray_drive: Path, tmp_path: Path, capsys):
    out = tmp_path / "cli"
    assert main([str(gray_drive), str(out), "--gray", "--compressed", "--jpeg-quality", "80", "--no-imu",
                 "--no-pose", "--no-velodyne", "--chunk-compression", "none", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"{GRAY_LEFT_CAMERA.compressed_topic}: 3" in printed and f"{LEFT_CAMERA.compressed_topic}: 3" in printed
    messages, _ = read_bag(out)
    assert IMU_TOPIC not in messages and TF_TOPIC not in messages and GPS_TOPIC in messages
    gray = decode(messages[GRAY_LEFT_CAMERA.compressed_topic][0][1], "sensor_msgs/msg/CompressedImage")
    assert gray.format == "mono8; jpeg compressed mono8"
    assert cv2.imdecode(gray.data, cv2.IMREAD_UNCHANGED).shape == (375, 1242)
    assert set(mcap_chunk_compressions(next(out.glob("*.mcap")))) == {""}
    assert main([str(gray_drive), str(tmp_path / "bad"), "--compressed", "--jpeg-quality", "0", "--quiet"]) == 2
    assert "jpeg_quality must be in 1..100" in capsys.readouterr().err


def _paused_conversion(drive: Path, bag: Path, pause_after: int) -> subprocess.Popen:
    """The CLI converting `drive`, paused after `pause_after` messages (test hook) until it is interrupted; returns
    once it says it has paused, so a signal sent now is known to arrive mid-bag."""
    env = {**os.environ, PAUSE_AFTER_ENV: str(pause_after)}
    process = subprocess.Popen([sys.executable, "-m", "siam_depth_ros.kitti2bag", str(drive), str(bag), "--quiet"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = process.stderr.readline()  # blocks until the converter pauses (or exits)
    assert "paused after" in line, line + process.stderr.read()
    return process


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_conversion_removes_its_partial_bag(drive_0009: Path, tmp_path: Path, signum: int):
    """Ctrl-C (or a SIGTERM) while the bag is being written stops the conversion and removes the partial bag."""
    bag = tmp_path / "bag"
    process = _paused_conversion(drive_0009, bag, pause_after=20)
    assert bag.exists()
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted after 20 of" in stderr and "no partial bag left" in stderr and not bag.exists()


def test_interrupt_after_the_last_message_keeps_the_complete_bag_and_says_so(drive_0009: Path, tmp_path: Path):
    bag = tmp_path / "bag"
    total = sum(convert_drive(drive_0009, tmp_path / "reference", frame_range=(0, 3),
                              progress=False).messages_per_topic.values())
    process = subprocess.Popen([sys.executable, "-m", "siam_depth_ros.kitti2bag", str(drive_0009), str(bag), "--quiet",
                                "--frames", "0:3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, PAUSE_AFTER_ENV: str(total)})
    assert "paused after" in process.stderr.readline()
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "interrupted after the bag was complete" in stderr and "wrote" in stdout
    assert sum(len(v) for v in read_bag(bag)[0].values()) == total
