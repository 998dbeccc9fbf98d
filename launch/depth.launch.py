"""Launch the siam_depth node with config/depth.yaml, optionally with RViz2 (config/depth.rviz).

    ros2 launch siam_depth_ros depth.launch.py                       # KITTI bag topics
    ros2 launch siam_depth_ros depth.launch.py image:=/camera/image_raw camera_info:=/camera/camera_info
    ros2 launch siam_depth_ros depth.launch.py use_sim_time:=true rviz:=true checkpoint:=/path/model.pt
    ros2 launch siam_depth_ros depth.launch.py backend:=tensorrt engine:=/path/model.engine

`backend`, `engine` and `checkpoint` override the params file only when given (non-empty).
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "siam_depth_ros"
#: Launch arguments that override the params file when non-empty.
#: Launch arguments that override config/depth.yaml when non-empty.
YAML_OVERRIDES = ("backend", "engine", "checkpoint", "qos")
_TRUE = ("true", "1", "yes", "on")


def _share_file(*parts: str) -> str:
    return str(Path(get_package_share_directory(PACKAGE), *parts))


def _arguments() -> list[DeclareLaunchArgument]:
    return [
        DeclareLaunchArgument("image", default_value="/kitti/camera_color_left/image_raw",
                              description="input image topic (sensor_msgs/Image rgb8/bgr8/mono8)"),
        DeclareLaunchArgument("camera_info", default_value="/kitti/camera_color_left/camera_info",
                              description="camera_info topic matching the image"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (true when replaying a bag with --clock)"),
        DeclareLaunchArgument("params_file", default_value=_share_file("config", "depth.yaml"),
                              description="node parameters (YAML)"),
        DeclareLaunchArgument("backend", default_value="",
                              description="override the backend: torch, onnxruntime or tensorrt"),
        DeclareLaunchArgument("engine", default_value="", description="override the TensorRT engine file"),
        DeclareLaunchArgument("checkpoint", default_value="", description="override the checkpoint (.pt)"),
        DeclareLaunchArgument("qos", default_value="",
                              description="override the input QoS: sensor_data or reliable (bag replay)"),
        DeclareLaunchArgument("rviz", default_value="false", description="also start RViz2 with config/depth.rviz"),
    ]


def _nodes(context: LaunchContext) -> list[Node]:
    """The depth node (and RViz2 when rviz:=true) for the evaluated launch arguments."""
    def value(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    use_sim_time = value("use_sim_time").lower() in _TRUE
    overrides = {name: value(name) for name in YAML_OVERRIDES if value(name)}
    nodes = [Node(package=PACKAGE, executable="depth_node", name="siam_depth", output="screen", emulate_tty=True,
                  parameters=[value("params_file"), {**overrides, "use_sim_time": use_sim_time}],
                  remappings=[("image", value("image")), ("camera_info", value("camera_info"))])]
    if value("rviz").lower() in _TRUE:
        nodes.append(Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                          arguments=["-d", _share_file("config", "depth.rviz")],
                          parameters=[{"use_sim_time": use_sim_time}]))
    return nodes


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([*_arguments(), OpaqueFunction(function=_nodes)])
