"""Replay a KITTI rosbag2 (from `siam-depth-kitti2bag`) through the depth node, optionally with RViz.

    ros2 launch siam_depth_ros kitti_replay.launch.py bag:=/tmp/kitti_0009 [rate:=0.5] [loop:=true]
        [rviz:=true] [checkpoint:=/path/to/model.pt]

The player (`siam-depth-play`) waits until the node subscribes to the left camera, then publishes the
bag with its recorded timing; the node reads `/kitti/camera_color_left/{image_raw,camera_info}` and
publishes `/depth`, `/disparity`, `/points`, `/depth/colored` (its default names). Every process
uses the package's Fast DDS shared-memory profile (large images) unless `shm:=false`.
"""
from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.launch_context import LaunchContext
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "siam_depth_ros"
CAMERA_NAMESPACE = "/kitti/camera_color_left"
#: How long the player waits for the node to subscribe (model loading on a slow CPU).
SUBSCRIBER_TIMEOUT_S = "120"


def _true(context: LaunchContext, name: str) -> bool:
    return LaunchConfiguration(name).perform(context).strip().lower() in ("1", "true", "yes", "on")


def _player_and_node(context: LaunchContext) -> list:
    bag = LaunchConfiguration("bag").perform(context)
    if not bag:
        raise RuntimeError("kitti_replay.launch.py needs bag:=<rosbag2 folder> (make one with siam-depth-kitti2bag)")
    share = get_package_share_directory(PACKAGE)
    node_parameters: list = []
    depth_yaml = os.path.join(share, "config", "depth.yaml")
    if os.path.isfile(depth_yaml):
        node_parameters.append(depth_yaml)
    checkpoint = LaunchConfiguration("checkpoint").perform(context)
    if checkpoint:
        node_parameters.append({"checkpoint": checkpoint})
    player_arguments = [bag, "--rate", LaunchConfiguration("rate").perform(context),
                        "--wait-for", f"{CAMERA_NAMESPACE}/image_raw", "--wait-timeout", SUBSCRIBER_TIMEOUT_S]
    if _true(context, "loop"):
        player_arguments.append("--loop")
    return [
        Node(package=PACKAGE, executable="depth_node", name="siam_depth", parameters=node_parameters,
             output="screen", remappings=[("image", f"{CAMERA_NAMESPACE}/image_raw"),
                                          ("camera_info", f"{CAMERA_NAMESPACE}/camera_info")]),
        Node(package=PACKAGE, executable="siam-depth-play", name="kitti_player", arguments=player_arguments,
             output="screen"),
    ]


def _shm_profile(context: LaunchContext) -> list:
    if not _true(context, "shm"):
        return []
    profile = os.path.join(get_package_share_directory(PACKAGE), "config", "fastdds_shm.xml")
    return [SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", profile),
            SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", profile)]  # Fast DDS 2.x (Humble)


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="rosbag2 folder written by siam-depth-kitti2bag"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback speed factor"),
        DeclareLaunchArgument("loop", default_value="false", description="replay the bag until stopped"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz with config/depth.rviz"),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="model checkpoint (.pt); empty: the node's default (shipped model)"),
        DeclareLaunchArgument("shm", default_value="true",
                              description="use config/fastdds_shm.xml (shared memory for large messages)"),
        OpaqueFunction(function=_shm_profile),
        OpaqueFunction(function=_player_and_node),
        Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
             arguments=["-d", os.path.join(share, "config", "depth.rviz")],
             condition=IfCondition(LaunchConfiguration("rviz"))),
    ])
