"""launch/multi_camera.launch.py, config/multi_camera.yaml and config/multi_camera.rviz (issue 28, item 4).

As test_launch.py: the launch file's syntax, arguments and decisions (`siam_depth_ros.launch_support`) are checked
everywhere, the launch description itself only where launch_ros is installed; the YAML is started once in a real
node (tiny torch checkpoint), which must serve each of its cameras on its own topics.
"""
from __future__ import annotations

import ast
import re
import sys

import pytest
import yaml

pytest.importorskip("rclpy", reason="rclpy not installed (ROS extra)")

from ros_helpers import REPO_ROOT, configure_dds, unique_namespace  # noqa: E402

from siam_depth_ros.harness import NodeProcess  # noqa: E402
from siam_depth_ros.launch_support import (  # noqa: E402
    PARAMETER_OVERRIDES,
    camera_remappings,
    cameras_of_params_file,
    parse_cameras,
)
from siam_depth_ros.parameters import NodeSettings, check_cameras, settings_with  # noqa: E402

LAUNCH_FILE = REPO_ROOT / "launch" / "multi_camera.launch.py"
CONFIG = REPO_ROOT / "config"
RIG = ["front", "front_left", "front_right", "rear"]
OWN_ARGUMENTS = {"cameras", "image", "camera_info", "use_sim_time", "params_file", "lifecycle", "rviz"}


def test_launch_file_parses_declares_its_arguments_and_references_shipped_files():
    tree = ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))
    compile(tree, str(LAUNCH_FILE), "exec")
    declared = {call.args[0].value for call in ast.walk(tree) if isinstance(call, ast.Call)
                and getattr(call.func, "id", None) == "DeclareLaunchArgument" and isinstance(call.args[0], ast.Constant)}
    assert declared == OWN_ARGUMENTS  # and one override argument per PARAMETER_OVERRIDES entry, as depth.launch.py
    assert "PARAMETER_OVERRIDES" in {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert {"depth_node", "siam_depth", "multi_camera.yaml", "multi_camera.rviz", "depth.yaml"} <= strings
    for name in ("multi_camera.yaml", "multi_camera.rviz", "depth.yaml"):
        assert (CONFIG / name).is_file()


def test_launch_support_cameras_and_their_remappings():
    assert parse_cameras("front, rear") == parse_cameras("front rear") == ["front", "rear"] and parse_cameras("") == []
    assert cameras_of_params_file(CONFIG / "multi_camera.yaml") == RIG
    assert cameras_of_params_file(CONFIG / "depth.yaml") == []
    assert camera_remappings(["front"], "/cams/{camera}/image_rect", "/cams/{camera}/info") == [
        ("front/image", "/cams/front/image_rect"), ("front/image/compressed", "/cams/front/image_rect/compressed"),
        ("front/camera_info", "/cams/front/info")]
    with pytest.raises(ValueError, match="camera"):
        camera_remappings(["front", "rear"], "/image_rect", "/{camera}/camera_info")


def test_multi_camera_yaml_is_a_rig_the_node_accepts():
    parameters = yaml.safe_load((CONFIG / "multi_camera.yaml").read_text())["/**"]["ros__parameters"]
    assert check_cameras(parameters.pop("cameras")) == tuple(RIG)
    settings_with(NodeSettings(), parameters)  # every other value is a node parameter of the right kind
    rviz = yaml.safe_load((CONFIG / "multi_camera.rviz").read_text())
    topics = [display["Topic"]["Value"] for display in rviz["Visualization Manager"]["Displays"] if "Topic" in display]
    assert topics == [f"/{camera}/points" for camera in RIG]


def test_the_node_started_with_the_rig_yaml_serves_each_camera(tmp_path):
    """depth.yaml then multi_camera.yaml, as the launch file passes them: the YAML's list reaches the node."""
    import torch

    from siam_depth_core.network.checkpoint import ModelMeta, save_checkpoint

    torch.manual_seed(1)
    meta = ModelMeta(net_width=0.125, height=64, width=128)
    checkpoint = save_checkpoint(tmp_path / "tiny.pt", meta.build_network(), meta)
    namespace = f"{unique_namespace()}_rig"
    env = configure_dds()
    with NodeProcess([sys.executable, "-m", "siam_depth_ros.node", "--ros-args", "--params-file",
                      str(CONFIG / "depth.yaml"), "--params-file", str(CONFIG / "multi_camera.yaml"),
                      "-r", f"__ns:={namespace}", "-p", "backend:=torch", "-p", f"checkpoint:={checkpoint}"],
                     tmp_path / "node.log", env=env) as node:
        ready = node.wait_for_log(r"ready: .*", timeout=90.0).group(0)
    for camera in RIG:
        assert re.search(rf"{namespace}/{camera}/image\b", ready) and f"{namespace}/{camera}/depth" in ready, ready


def test_launch_description_with_the_launch_api(tmp_path, monkeypatch):
    pytest.importorskip("launch_ros", reason="launch_ros not installed (it comes with a ROS 2 install, not PyPI)")
    from launch import LaunchContext
    from launch.actions import OpaqueFunction
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    share = tmp_path / "prefix" / "share" / "siam_depth_ros"
    share.mkdir(parents=True)
    for folder in ("launch", "config"):
        (share / folder).symlink_to(REPO_ROOT / folder)
    marker = tmp_path / "prefix" / "share" / "ament_index" / "resource_index" / "packages" / "siam_depth_ros"
    marker.parent.mkdir(parents=True)
    marker.touch()
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "prefix"))
    description = PythonLaunchDescriptionSource(str(LAUNCH_FILE)).get_launch_description(LaunchContext())
    arguments = {argument.name: argument for argument in description.get_launch_arguments()}
    assert set(arguments) == OWN_ARGUMENTS | set(PARAMETER_OVERRIDES)

    def nodes_for(**overrides: str) -> list:
        context = LaunchContext()
        for argument in arguments.values():
            argument.visit(context)
        context.launch_configurations.update(overrides)
        opaque = next(entity for entity in description.entities if isinstance(entity, OpaqueFunction))
        return list(opaque.execute(context))

    (depth_node,) = nodes_for()
    assert (depth_node.node_package, depth_node.node_executable) == ("siam_depth_ros", "depth_node")
    (two,) = nodes_for(cameras="front,rear")
    assert two is not None
