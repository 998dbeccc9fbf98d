"""Launch the siam_depth node with config/depth.yaml, optionally with RViz2 (config/depth.rviz).

    ros2 launch siam_depth_ros depth.launch.py                       # KITTI bag topics
    ros2 launch siam_depth_ros depth.launch.py image:=/camera/image_raw camera_info:=/camera/camera_info
    ros2 launch siam_depth_ros depth.launch.py use_sim_time:=true rviz:=true checkpoint:=/path/model.pt
    ros2 launch siam_depth_ros depth.launch.py backend:=tensorrt engine:=/path/model.engine
    ros2 launch siam_depth_ros depth.launch.py backend:=onnxruntime onnx:=/path/model.int8.onnx
    ros2 launch siam_depth_ros depth.launch.py backend:=openvino onnx:=/path/model.int8.onnx precision:=bf16
    ros2 launch siam_depth_ros depth.launch.py num_threads:=1 image_transport:=compressed
    ros2 launch siam_depth_ros depth.launch.py single_pass:=true  # direct branch only: ~2x the rate, no confidence
    ros2 launch siam_depth_ros depth.launch.py lifecycle:=true    # managed: ros2 lifecycle set /siam_depth configure

`backend`, `engine`, `onnx`, `precision`, `checkpoint`, `qos`, `device`, `num_threads`, `image_transport` and `single_pass` override the params
file only when given (non-empty). lifecycle:=true starts the node as a lifecycle node (launch_ros
LifecycleNode; it waits unconfigured for its lifecycle manager). With rviz:=true but no RViz2 installed, the
node starts alone and a warning says so. The decisions are plain functions in
`siam_depth_ros.launch_support` (tested without launch).
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.logging import get_logger
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

from siam_depth_ros.launch_support import (
    PARAMETER_OVERRIDES,
    find_rviz2,
    node_arguments,
    parameter_overrides,
    parse_bool,
)

PACKAGE = "siam_depth_ros"


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
                              description="override the backend: auto (the shipped model on the fastest CPU path "
                                          "that keeps the accuracy rule here), torch, onnxruntime, tensorrt or "
                                          "openvino"),
        DeclareLaunchArgument("engine", default_value="", description="override the TensorRT engine file"),
        DeclareLaunchArgument("onnx", default_value="",
                              description="override the ONNX model (onnxruntime or openvino backend, e.g. an int8 "
                                          "export)"),
        DeclareLaunchArgument("precision", default_value="",
                              description="override the openvino backend's precision: fp32, bf16 or auto (bf16 "
                                          "where the CPU has it)"),
        DeclareLaunchArgument("checkpoint", default_value="", description="override the checkpoint (.pt)"),
        DeclareLaunchArgument("qos", default_value="",
                              description="override the input QoS: sensor_data or reliable (bag replay)"),
        DeclareLaunchArgument("device", default_value="",
                              description="override the device: cpu, cuda or cuda:<index> (default: the "
                                          "backend's own, the GPU for tensorrt)"),
        DeclareLaunchArgument("num_threads", default_value="",
                              description="override the model's CPU threads (0 = the library's default)"),
        DeclareLaunchArgument("image_transport", default_value="",
                              description="override the input transport: raw (image) or compressed "
                                          "(image/compressed, sensor_msgs/CompressedImage)"),
        DeclareLaunchArgument("single_pass", default_value="",
                              description="override single_pass: true runs only the direct branch (about half the "
                                          "model time, no confidence output)"),
        DeclareLaunchArgument("lifecycle", default_value="false",
                              description="start as a managed lifecycle node (unconfigured until configured, "
                                          "subscribing only while active)"),
        DeclareLaunchArgument("rviz", default_value="false", description="also start RViz2 with config/depth.rviz"),
    ]


def _nodes(context: LaunchContext) -> list[Node]:
    """The depth node (a lifecycle node with lifecycle:=true; and RViz2 when rviz:=true and installed) for the
    evaluated launch arguments."""
    def value(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    use_sim_time = parse_bool("use_sim_time", value("use_sim_time"))
    overrides = parameter_overrides({name: value(name) for name in PARAMETER_OVERRIDES})
    arguments = node_arguments(value("lifecycle"))
    depth_node = dict(package=PACKAGE, executable="depth_node", name="siam_depth", output="screen", emulate_tty=True,
                      arguments=arguments,
                      parameters=[value("params_file"), {**overrides, "use_sim_time": use_sim_time}],
                      remappings=[("image", value("image")), ("camera_info", value("camera_info"))])
    nodes = [LifecycleNode(namespace="", **depth_node) if arguments else Node(**depth_node)]
    if not parse_bool("rviz", value("rviz")):
        return nodes
    rviz, reason = find_rviz2()
    if rviz is None:  # warn and go on: failing here would leave the node started above running orphaned
        get_logger("depth.launch.py").warning(f"rviz:=true but {reason}; starting the depth node without RViz")
    else:
        nodes.append(Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                          arguments=["-d", _share_file("config", "depth.rviz")],
                          parameters=[{"use_sim_time": use_sim_time}]))
    return nodes


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([*_arguments(), OpaqueFunction(function=_nodes)])
