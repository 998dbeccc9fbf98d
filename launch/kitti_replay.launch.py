"""Replay a KITTI rosbag2 (from `siam-depth-kitti2bag`) through the depth node, optionally with RViz.

    ros2 launch siam_depth_ros kitti_replay.launch.py bag:=/tmp/kitti_0009 [rate:=0.5] [loop:=true]
        [rviz:=true] [checkpoint:=/path/to/model.pt] [clock:=true] [num_threads:=1]
        [image_transport:=auto|raw|compressed] [shm:=false]

Starts `depth.launch.py` (the node, remapped to `/kitti/camera_color_left/{image_raw,camera_info}`,
and RViz with rviz:=true when it is installed) and the player `siam-depth-play`, which waits until the node
subscribes to the left camera and then publishes the bag with its recorded timing (/tf_static latched).
With clock:=true the player publishes /clock and the node and RViz use it. image_transport:=auto (default)
reads the bag's `.../image_raw/compressed` JPEG topic (`siam-depth-kitti2bag --compressed`) when it has no
raw images. Every process uses the package's Fast DDS shared-memory profile (large images) unless the user
has set a profile (FASTDDS_DEFAULT_PROFILES_FILE) or gives shm:=false.

The decisions are `siam_depth_ros.launch_support.plan_replay` (tested without launch); this file adapts it.
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
from launch.logging import get_logger
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from siam_depth_ros.dds_profile import shipped_profile_path
from siam_depth_ros.launch_support import ReplayPlan, bag_topics, plan_replay

PACKAGE = "siam_depth_ros"
#: Launch arguments, their defaults (None: required) and descriptions.
ARGUMENTS = {
    "bag": (None, "rosbag2 folder written by siam-depth-kitti2bag"),
    "rate": ("1.0", "playback speed factor"),
    "loop": ("false", "replay the bag until stopped"),
    "clock": ("false", "publish /clock from the bag; the node and RViz use sim time"),
    "rviz": ("false", "start RViz with config/depth.rviz (skipped with a warning when RViz2 is not installed)"),
    "checkpoint": ("", "model checkpoint (.pt); empty: the node's default (shipped model)"),
    "num_threads": ("", "the node's model CPU threads (0 = library default); empty: config/depth.yaml's value"),
    "image_transport": ("auto", "node input: raw (image_raw), compressed (image_raw/compressed) or auto "
                                "(compressed when the bag has no raw images)"),
    "shm": ("true", "use config/fastdds_shm.xml (shared memory for large messages) unless a profile is set"),
}


def _plan(context: LaunchContext) -> ReplayPlan:
    arguments = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    topics = bag_topics(arguments["bag"]) if arguments["bag"].strip() else set()
    return plan_replay(arguments, dict(os.environ), shipped_profile_path(), topics)


def _replay(context: LaunchContext) -> list:
    """The environment, depth.launch.py and the player for the evaluated launch arguments."""
    plan = _plan(context)
    get_logger("kitti_replay.launch.py").info(plan.profile_message)
    depth_launch = os.path.join(get_package_share_directory(PACKAGE), "launch", "depth.launch.py")
    return [
        *(SetEnvironmentVariable(name, value) for name, value in plan.environment.items()),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(depth_launch),
                                 launch_arguments=plan.depth_arguments.items()),
        Node(package=PACKAGE, executable="siam-depth-play", name="kitti_player", arguments=plan.player_arguments,
             output="screen"),
    ]


def generate_launch_description() -> LaunchDescription:
    declared = [DeclareLaunchArgument(name, description=description) if default is None else
                DeclareLaunchArgument(name, default_value=default, description=description)
                for name, (default, description) in ARGUMENTS.items()]
    return LaunchDescription([*declared, OpaqueFunction(function=_replay)])
