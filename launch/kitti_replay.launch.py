"""Replay a KITTI rosbag2 (from `siam-depth-kitti2bag`) through the depth node, optionally with RViz.

    ros2 launch siam_depth_ros kitti_replay.launch.py bag:=/tmp/kitti_0009 [rate:=0.5] [loop:=true]
        [rviz:=true] [checkpoint:=/path/to/model.pt] [clock:=true]

Starts `depth.launch.py` (the node, remapped to `/kitti/camera_color_left/{image_raw,camera_info}`,
and RViz with rviz:=true) and the player `siam-depth-play`, which waits until the node subscribes to
the left camera and then publishes the bag with its recorded timing (/tf_static latched). With
clock:=true the player publishes /clock and the node and RViz use it. Every process uses the package's
Fast DDS shared-memory profile (large images) unless `shm:=false`.
"""
from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import (
    DeclareLaunchArgument,
    IncludeLaunchDescription,
    OpaqueFunction,
    SetEnvironmentVariable,
)
from launch.launch_context import LaunchContext
from launch.launch_description import LaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "siam_depth_ros"
LEFT_CAMERA = "/kitti/camera_color_left"
#: How long the player waits for the node to subscribe (model loading on a slow CPU), seconds.
SUBSCRIBER_TIMEOUT_S = "120"


def _true(context: LaunchContext, name: str) -> bool:
    return LaunchConfiguration(name).perform(context).strip().lower() in ("1", "true", "yes", "on")


def _player(context: LaunchContext) -> list[Node]:
    """`siam-depth-play` for the evaluated launch arguments."""
    bag = LaunchConfiguration("bag").perform(context)
    if not bag:
        raise RuntimeError("kitti_replay.launch.py needs bag:=<rosbag2 folder> (make one with siam-depth-kitti2bag)")
    arguments = [bag, "--rate", LaunchConfiguration("rate").perform(context),
                 "--wait-for", f"{LEFT_CAMERA}/image_raw", "--wait-timeout", SUBSCRIBER_TIMEOUT_S]
    if _true(context, "loop"):
        arguments.append("--loop")
    if _true(context, "clock"):
        arguments.append("--clock")
    return [Node(package=PACKAGE, executable="siam-depth-play", name="kitti_player", arguments=arguments,
                 output="screen")]


def _shm_profile(context: LaunchContext) -> list[SetEnvironmentVariable]:
    if not _true(context, "shm"):
        return []
    profile = os.path.join(get_package_share_directory(PACKAGE), "config", "fastdds_shm.xml")
    return [SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", profile),
            SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", profile)]  # Fast DDS 2.x (Humble)


def generate_launch_description() -> LaunchDescription:
    depth_launch = os.path.join(get_package_share_directory(PACKAGE), "launch", "depth.launch.py")
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="rosbag2 folder written by siam-depth-kitti2bag"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback speed factor"),
        DeclareLaunchArgument("loop", default_value="false", description="replay the bag until stopped"),
        DeclareLaunchArgument("clock", default_value="false",
                              description="publish /clock from the bag; the node and RViz use sim time"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz with config/depth.rviz"),
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="model checkpoint (.pt); empty: the node's default (shipped model)"),
        DeclareLaunchArgument("shm", default_value="true",
                              description="use config/fastdds_shm.xml (shared memory for large messages)"),
        OpaqueFunction(function=_shm_profile),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(depth_launch), launch_arguments={
            "image": f"{LEFT_CAMERA}/image_raw",
            "camera_info": f"{LEFT_CAMERA}/camera_info",
            "checkpoint": LaunchConfiguration("checkpoint"),
            "qos": "reliable",  # a replay must not lose its first frames to best-effort discovery
            "rviz": LaunchConfiguration("rviz"),
            "use_sim_time": LaunchConfiguration("clock"),
        }.items()),
        OpaqueFunction(function=_player),
    ])
