"""Launch one siam_depth node serving several cameras (config/multi_camera.yaml: a surround rig), optionally with RViz2.

    ros2 launch siam_depth_ros multi_camera.launch.py        # front, front_left, front_right, rear on /<camera>/image_rect
    ros2 launch siam_depth_ros multi_camera.launch.py cameras:=front,rear image:=/{camera}/image_rect_color
    ros2 launch siam_depth_ros multi_camera.launch.py camera_info:=/sensors/{camera}/camera_info rviz:=true
    ros2 launch siam_depth_ros multi_camera.launch.py backend:=tensorrt engine:=/path/model.engine lifecycle:=true

`cameras` (comma-separated; default: the `cameras` list of params_file) names the cameras; `image` and
`camera_info` are the topics of each camera's driver, `{camera}` replaced by its name, remapped to the node's
`<camera>/image` and `<camera>/camera_info`. Each camera's outputs are `/<camera>/depth`, `/<camera>/points`, ...
The parameters are config/depth.yaml, then params_file, then the override arguments (as depth.launch.py: `backend`,
`engine`, `onnx`, `precision`, `checkpoint`, `qos`, `device`, `num_threads`, `image_transport`, `single_pass`, each
only when given). rviz:=true adds RViz2 with config/multi_camera.rviz (the clouds of the surround rig), or warns
when RViz2 is not installed. The decisions are plain functions in `siam_depth_ros.launch_support`.
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.logging import get_logger
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

from siam_depth_ros.launch_support import (
    CAMERA_IMAGE_PATTERN,
    CAMERA_INFO_PATTERN,
    PARAMETER_OVERRIDES,
    camera_remappings,
    cameras_of_params_file,
    find_rviz2,
    node_arguments,
    parameter_overrides,
    parse_bool,
    parse_cameras,
)

PACKAGE = "siam_depth_ros"


def _share_file(*parts: str) -> str:
    return str(Path(get_package_share_directory(PACKAGE), *parts))


def _arguments() -> list[DeclareLaunchArgument]:
    overrides = [DeclareLaunchArgument(name, default_value="",
                                       description=f"override the {name} parameter of params_file (as depth.launch.py)")
                 for name in PARAMETER_OVERRIDES]
    return [
        DeclareLaunchArgument("cameras", default_value="",
                              description="camera names, comma-separated; empty: the cameras list of params_file"),
        DeclareLaunchArgument("image", default_value=CAMERA_IMAGE_PATTERN,
                              description="each camera's image topic, {camera} replaced by its name"),
        DeclareLaunchArgument("camera_info", default_value=CAMERA_INFO_PATTERN,
                              description="each camera's camera_info topic, {camera} replaced by its name"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (true when replaying a bag with --clock)"),
        DeclareLaunchArgument("params_file", default_value=_share_file("config", "multi_camera.yaml"),
                              description="node parameters (YAML) on top of config/depth.yaml, with the cameras list"),
        *overrides,
        DeclareLaunchArgument("lifecycle", default_value="false",
                              description="start as a managed lifecycle node (unconfigured until configured, "
                                          "subscribing only while active)"),
        DeclareLaunchArgument("rviz", default_value="false",
                              description="also start RViz2 with config/multi_camera.rviz"),
    ]


def _nodes(context: LaunchContext) -> list[Node]:
    """The depth node serving every camera (a lifecycle node with lifecycle:=true; and RViz2 when rviz:=true and
    installed) for the evaluated launch arguments."""
    def value(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    use_sim_time = parse_bool("use_sim_time", value("use_sim_time"))
    overrides = parameter_overrides({name: value(name) for name in PARAMETER_OVERRIDES})
    cameras = parse_cameras(value("cameras")) or cameras_of_params_file(value("params_file"))
    if not cameras:
        raise ValueError(f"no cameras: give cameras:=front,rear or a params_file with a cameras list "
                         f"({value('params_file')} has none)")
    arguments = node_arguments(value("lifecycle"))
    depth_node = dict(package=PACKAGE, executable="depth_node", name="siam_depth", output="screen", emulate_tty=True,
                      arguments=arguments,
                      parameters=[_share_file("config", "depth.yaml"), value("params_file"),
                                  {**overrides, "cameras": cameras, "use_sim_time": use_sim_time}],
                      remappings=camera_remappings(cameras, value("image"), value("camera_info")))
    nodes = [LifecycleNode(namespace="", **depth_node) if arguments else Node(**depth_node)]
    if not parse_bool("rviz", value("rviz")):
        return nodes
    rviz, reason = find_rviz2()
    if rviz is None:  # warn and go on: failing here would leave the node started above running orphaned
        get_logger("multi_camera.launch.py").warning(f"rviz:=true but {reason}; starting the depth node without RViz")
    else:
        nodes.append(Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                          arguments=["-d", _share_file("config", "multi_camera.rviz")],
                          parameters=[{"use_sim_time": use_sim_time}]))
    return nodes


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([*_arguments(), OpaqueFunction(function=_nodes)])
