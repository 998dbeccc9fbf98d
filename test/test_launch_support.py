"""The launch files' decisions without `launch` (not on PyPI): RViz2 present?, typed parameter overrides,
image transport, the replay's Fast DDS variables and player command line."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from siam_depth_ros.dds_profile import LEGACY_PROFILE_ENV_VAR, OPT_OUT_ENV_VAR, PROFILE_ENV_VAR
from siam_depth_ros.launch_support import (
    LEFT_IMAGE_TOPIC,
    bag_topics,
    find_rviz2,
    image_topic,
    node_arguments,
    parameter_overrides,
    parse_bool,
    plan_replay,
    resolve_image_transport,
)

REPO_PROFILE = Path(__file__).resolve().parents[1] / "config" / "fastdds_shm.xml"
COMPRESSED_TOPIC = f"{LEFT_IMAGE_TOPIC}/compressed"
RAW_BAG = {LEFT_IMAGE_TOPIC, "/kitti/camera_color_left/camera_info", "/tf_static"}
COMPRESSED_BAG = {COMPRESSED_TOPIC, "/kitti/camera_color_left/camera_info", "/tf_static"}


def ament_prefix(root: Path, packages: dict[str, bool]) -> Path:
    """An install prefix registering each package in the ament index; True also installs `lib/<pkg>/<pkg>`."""
    index = root / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True)
    for package, with_executable in packages.items():
        (index / package).touch()
        if with_executable:
            executable = root / "lib" / package / package
            executable.parent.mkdir(parents=True)
            executable.write_text("#!/bin/sh\n")
            executable.chmod(0o755)
    return root


def test_parse_bool():
    assert parse_bool("rviz", "True") and parse_bool("rviz", " 1 ") and not parse_bool("rviz", "off")
    with pytest.raises(ValueError, match="rviz:='maybe' must be true or false"):
        parse_bool("rviz", "maybe")


def test_rviz2_is_found_only_where_it_is_installed(tmp_path: Path):
    without = ament_prefix(tmp_path / "ros", {"rclpy": True})
    with_rviz = ament_prefix(tmp_path / "viz", {"rviz2": True})
    broken = ament_prefix(tmp_path / "broken", {"rviz2": False})

    path, reason = find_rviz2(str(without))
    assert path is None and "rviz2 is not installed" in reason
    path, reason = find_rviz2(os.pathsep.join([str(without), str(with_rviz)]))
    assert path == with_rviz / "lib" / "rviz2" / "rviz2" and reason == ""
    path, reason = find_rviz2(str(broken))
    assert path is None and "has no executable" in reason
    path, reason = find_rviz2("")
    assert path is None and "AMENT_PREFIX_PATH is not set" in reason


def test_parameter_overrides_are_typed_and_checked():
    overrides = parameter_overrides({"backend": "", "engine": "", "checkpoint": "/m.pt", "qos": "reliable",
                                     "num_threads": "1", "image_transport": "compressed"})
    assert overrides == {"checkpoint": "/m.pt", "qos": "reliable", "num_threads": 1, "image_transport": "compressed"}
    assert type(overrides["num_threads"]) is int  # a ROS integer parameter rejects the string "1"
    assert parameter_overrides({"num_threads": "", "image_transport": ""}) == {}
    assert parameter_overrides({"device": " cuda:1 "}) == {"device": "cuda:1"}
    assert parameter_overrides({"single_pass": "True"}) == {"single_pass": True}
    assert parameter_overrides({"backend": "onnxruntime", "onnx": "/m.int8.onnx"}) == {
        "backend": "onnxruntime", "onnx": "/m.int8.onnx"}
    for bad, message in (({"num_threads": "two"}, "num_threads:='two' must be an integer"),
                         ({"device": "gpu"}, "device:='gpu' must be cpu, cuda or cuda:<index>"),
                         ({"num_threads": "-1"}, "num_threads:=-1 must be >= 0"),
                         ({"single_pass": "fast"}, "single_pass:='fast' must be true or false"),
                         ({"image_transport": "theora"}, "image_transport:='theora' must be one of raw, compressed")):
        with pytest.raises(ValueError, match=message):
            parameter_overrides(bad)


def test_lifecycle_argument_starts_the_node_managed():
    assert node_arguments("true") == ["--lifecycle"] and node_arguments("false") == []
    with pytest.raises(ValueError, match="lifecycle:='managed' must be true or false"):
        node_arguments("managed")


def test_image_transport_from_the_bag():
    assert image_topic(LEFT_IMAGE_TOPIC, "compressed") == COMPRESSED_TOPIC
    assert resolve_image_transport("auto", RAW_BAG) == "raw"
    assert resolve_image_transport("auto", COMPRESSED_BAG) == "compressed"
    assert resolve_image_transport("auto", RAW_BAG | COMPRESSED_BAG) == "raw"
    assert resolve_image_transport("compressed", RAW_BAG | COMPRESSED_BAG) == "compressed"
    with pytest.raises(ValueError, match="no .*image_raw/compressed; use image_transport:=raw"):
        resolve_image_transport("compressed", RAW_BAG)
    with pytest.raises(ValueError, match="neither"):
        resolve_image_transport("auto", {"/other"})


def test_bag_topics_of_a_kitti_bag(drive_0023: Path, tmp_path: Path):
    from siam_depth_ros.kitti2bag import convert_drive

    convert_drive(drive_0023, tmp_path / "bag", frame_range=(0, 1), with_right=False, compressed=True, progress=False)
    topics = bag_topics(tmp_path / "bag")
    assert COMPRESSED_TOPIC in topics and LEFT_IMAGE_TOPIC not in topics
    assert resolve_image_transport("auto", topics) == "compressed"
    with pytest.raises(ValueError, match="not a rosbag2 folder"):
        bag_topics(tmp_path)


def test_replay_uses_the_shipped_profile_through_the_variable_of_the_distro():
    plan = plan_replay({"bag": "/b"}, {}, REPO_PROFILE, RAW_BAG)
    assert plan.environment == {PROFILE_ENV_VAR: str(REPO_PROFILE)}  # no deprecated FASTRTPS_ name on Kilted
    assert "shipped" in plan.profile_message
    jazzy = plan_replay({"bag": "/b"}, {"ROS_DISTRO": "jazzy"}, REPO_PROFILE, RAW_BAG)
    assert jazzy.environment == {PROFILE_ENV_VAR: str(REPO_PROFILE), LEGACY_PROFILE_ENV_VAR: str(REPO_PROFILE)}
    users = plan_replay({"bag": "/b"}, {PROFILE_ENV_VAR: "/etc/mine.xml"}, REPO_PROFILE, RAW_BAG)
    assert users.environment == {} and "/etc/mine.xml" in users.profile_message
    off = plan_replay({"bag": "/b", "shm": "false"}, {}, REPO_PROFILE, RAW_BAG)
    assert off.environment == {OPT_OUT_ENV_VAR: "0"}  # the player and node then skip their default too


def test_replay_passes_num_threads_and_image_transport_to_the_node():
    plan = plan_replay({"bag": "/b", "rate": "0.5", "loop": "true", "clock": "true", "rviz": "true",
                        "checkpoint": "/m.pt", "num_threads": "1", "image_transport": "auto"}, {}, REPO_PROFILE,
                       COMPRESSED_BAG)
    assert plan.depth_arguments == {
        "image": LEFT_IMAGE_TOPIC, "camera_info": "/kitti/camera_color_left/camera_info", "qos": "reliable",
        "rviz": "true", "use_sim_time": "true", "image_transport": "compressed", "checkpoint": "/m.pt",
        "num_threads": "1"}
    assert plan.player_arguments == ["/b", "--rate", "0.5", "--wait-for", COMPRESSED_TOPIC, "--wait-timeout", "120",
                                     "--loop", "--clock"]
    default = plan_replay({"bag": "/b"}, {}, REPO_PROFILE, RAW_BAG)
    assert "num_threads" not in default.depth_arguments  # config/depth.yaml's value stays in force
    assert default.depth_arguments["image_transport"] == "raw"
    assert default.player_arguments[:5] == ["/b", "--rate", "1.0", "--wait-for", LEFT_IMAGE_TOPIC]


@pytest.mark.parametrize(("arguments", "message"), [
    ({}, "needs bag:="),
    ({"bag": "/b", "rate": "0"}, "rate:='0' must be > 0"),
    ({"bag": "/b", "num_threads": "x"}, "num_threads:='x' must be an integer"),
    ({"bag": "/b", "image_transport": "compressed"}, "use image_transport:=raw"),
    ({"bag": "/b", "loop": "sometimes"}, "loop:='sometimes' must be true or false"),
])
def test_replay_argument_errors_name_the_argument(arguments, message):
    with pytest.raises(ValueError, match=message):
        plan_replay(arguments, {}, REPO_PROFILE, RAW_BAG)
