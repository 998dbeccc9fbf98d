"""launch/depth.launch.py, launch/kitti_replay.launch.py and the shipped configuration (depth.yaml, depth.rviz,
fastdds_shm.xml).

The launch files are checked with `launch`'s own API where launch_ros is installed (a ROS 2 install);
their syntax, arguments, referenced files and use of `siam_depth_ros.launch_support` (whose decisions
test_launch_support.py checks) are checked everywhere.
"""
from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

rclpy = pytest.importorskip("rclpy", reason="rclpy not installed (ROS extra)")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_helpers import REPO_ROOT, configure_dds, spin_until, unique_namespace, wait_for_publishers  # noqa: E402
from sensor_msgs.msg import PointCloud2  # noqa: E402

from siam_depth_ros.parameters import PARAMETER_DOCS, NodeSettings  # noqa: E402

LAUNCH_FILE = REPO_ROOT / "launch" / "depth.launch.py"
REPLAY_LAUNCH_FILE = REPO_ROOT / "launch" / "kitti_replay.launch.py"
CONFIG = REPO_ROOT / "config"
EXPECTED_REPLAY_ARGUMENTS = {"bag", "rate", "loop", "clock", "rviz", "checkpoint", "num_threads", "image_transport",
                             "shm"}
EXPECTED_ARGUMENTS = {
    "image": "/kitti/camera_color_left/image_raw",
    "camera_info": "/kitti/camera_color_left/camera_info",
    "use_sim_time": "false",
    "backend": "",
    "engine": "",
    "onnx": "",
    "precision": "",  # empty: config/depth.yaml's value (openvino backend)
    "checkpoint": "",
    "qos": "",
    "device": "",  # empty: config/depth.yaml's value ("": the backend's default device)
    "num_threads": "",  # empty: config/depth.yaml's value
    "image_transport": "",
    "single_pass": "",  # empty: config/depth.yaml's value
    "lifecycle": "false",
    "rviz": "false",
    "params_file": None,  # the installed config/depth.yaml, found through the ament index
}


def _declared_arguments(tree: ast.AST) -> dict[str, str | None]:
    """name -> literal default_value (None if computed) of every DeclareLaunchArgument(...) call."""
    arguments = {}
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "DeclareLaunchArgument":
            default = next(keyword.value for keyword in call.keywords if keyword.arg == "default_value")
            arguments[call.args[0].value] = default.value if isinstance(default, ast.Constant) else None
    return arguments


def test_launch_file_parses_declares_its_arguments_and_references_shipped_files():
    source = LAUNCH_FILE.read_text()
    tree = ast.parse(source, filename=str(LAUNCH_FILE))
    compile(tree, str(LAUNCH_FILE), "exec")
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    assert _declared_arguments(tree) == EXPECTED_ARGUMENTS
    strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert {"siam_depth_ros", "depth_node", "siam_depth", "rviz2", "config", "depth.yaml", "depth.rviz"} <= strings
    assert (CONFIG / "depth.yaml").is_file() and (CONFIG / "depth.rviz").is_file()


def _calls_in(tree: ast.AST, function: str) -> set[str]:
    """Names of the functions/methods called inside the top-level function `function`."""
    definition = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == function)
    return {call.func.id if isinstance(call.func, ast.Name) else call.func.attr
            for call in ast.walk(definition) if isinstance(call, ast.Call)
            and isinstance(call.func, (ast.Name, ast.Attribute))}


def test_depth_launch_checks_for_rviz2_and_types_its_overrides():
    """rviz:=true without RViz2 must warn, not fail after the node has started (leaving it orphaned): the node
    list asks `find_rviz2` (tested in test_launch_support.py) and logs a warning when it is absent."""
    tree = ast.parse(LAUNCH_FILE.read_text())
    calls = _calls_in(tree, "_nodes")
    assert {"find_rviz2", "parameter_overrides", "warning", "Node", "LifecycleNode", "node_arguments"} <= calls
    rviz_branch = next(node for node in ast.walk(tree) if isinstance(node, ast.If)
                       and ast.unparse(node.test) == "rviz is None")
    assert "warning" in ast.unparse(rviz_branch.body[0]) and "rviz2" in ast.unparse(rviz_branch.orelse[0])


def test_replay_launch_declares_its_arguments_and_delegates_its_decisions():
    source = REPLAY_LAUNCH_FILE.read_text()
    tree = ast.parse(source, filename=str(REPLAY_LAUNCH_FILE))
    compile(tree, str(REPLAY_LAUNCH_FILE), "exec")
    arguments = next(node.value for node in tree.body if isinstance(node, ast.Assign)
                     and ast.unparse(node.targets[0]) == "ARGUMENTS")
    assert {key.value for key in arguments.keys} == EXPECTED_REPLAY_ARGUMENTS
    assert {"plan_replay", "bag_topics", "shipped_profile_path"} <= _calls_in(tree, "_plan")
    assert {"SetEnvironmentVariable", "IncludeLaunchDescription", "Node"} <= _calls_in(tree, "_replay")
    # which profile variable(s) to set is dds_profile's decision, by distro: none is hard-coded here any more
    code_strings = [constant.value for node in tree.body[1:] for constant in ast.walk(node)  # body[0]: the docstring
                    if isinstance(constant, ast.Constant) and isinstance(constant.value, str)]
    assert not [text for text in code_strings if "PROFILES_FILE" in text]


def test_depth_yaml_sets_every_parameter_to_the_node_default():
    document = yaml.safe_load((CONFIG / "depth.yaml").read_text())
    parameters = document["/**"]["ros__parameters"]
    defaults = asdict(NodeSettings())
    assert set(parameters) == set(defaults) == set(PARAMETER_DOCS)
    for name, value in parameters.items():
        assert type(value) is type(defaults[name]) and value == defaults[name], name


def test_depth_yaml_with_backend_tensorrt_gives_options_tensorrt_accepts():
    """`ros2 launch ... backend:=tensorrt engine:=...` with the shipped depth.yaml: device "" means the backend's
    default (the GPU) and num_threads is not passed to TensorRT, so the backend's option check passes (it used
    to refuse device 'cpu')."""
    from siam_depth_core.runtime.backends import reject_unsupported
    from siam_depth_core.runtime.backends.tensorrt_backend import SUPPORTED_OPTIONS
    from siam_depth_ros.parameters import settings_with

    parameters = yaml.safe_load((CONFIG / "depth.yaml").read_text())["/**"]["ros__parameters"]
    settings = settings_with(NodeSettings(), {**parameters, "backend": "tensorrt", "engine": "/m.engine"})
    options = settings.runtime_options()
    assert options.device is None and options.num_threads == 0 and settings.device_name == "cuda"
    reject_unsupported("tensorrt", options, SUPPORTED_OPTIONS)  # raises BackendError naming a refused option
    torch_options = settings_with(NodeSettings(), parameters).runtime_options()
    assert torch_options.device is None and torch_options.num_threads == parameters["num_threads"]


def test_rviz_config_shows_camera_depth_and_cloud_in_the_optical_frame():
    manager = yaml.safe_load((CONFIG / "depth.rviz").read_text())["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "camera_color_left_optical_frame"
    displays = {display["Topic"]["Value"]: display for display in manager["Displays"]}
    assert displays["/kitti/camera_color_left/image_raw"]["Class"] == "rviz_default_plugins/Image"
    assert displays["/depth/colored"]["Class"] == "rviz_default_plugins/Image"
    cloud = displays["/points"]
    assert cloud["Class"] == "rviz_default_plugins/PointCloud2" and cloud["Color Transformer"] == "RGB8"


def test_fastdds_profile_is_a_default_shared_memory_profile_sized_for_large_clouds():
    namespace = {"dds": "http://www.eprosima.com"}
    root = ElementTree.parse(CONFIG / "fastdds_shm.xml").getroot()
    descriptors = {d.findtext("dds:transport_id", namespaces=namespace): d
                   for d in root.iterfind(".//dds:transport_descriptor", namespace)}
    shm = next(d for d in descriptors.values() if d.findtext("dds:type", namespaces=namespace) == "SHM")
    segment_size = int(shm.findtext("dds:segment_size", namespaces=namespace))
    max_message_size = int(shm.findtext("dds:maxMessageSize", namespaces=namespace))
    full_cloud_bytes = 1242 * 375 * 16  # every KITTI pixel as x, y, z, rgb float32
    assert full_cloud_bytes <= max_message_size <= segment_size  # Fast DDS refuses a message larger than the segment
    participant = root.find(".//dds:participant", namespace)
    assert participant.get("is_default_profile") == "true"
    transports = [t.text for t in participant.iterfind(".//dds:userTransports/dds:transport_id", namespace)]
    assert set(transports) == set(descriptors)
    assert participant.findtext(".//dds:useBuiltinTransports", namespaces=namespace) == "false"


_CLOUD_PUBLISHER = textwrap.dedent("""
    import sys, time
    import numpy as np, rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import String
    from siam_depth_ros.conversions import points_to_pointcloud2
    topic, count = sys.argv[1], int(sys.argv[2])
    rclpy.init()
    node = rclpy.create_node("cloud_publisher")
    publisher = node.create_publisher(PointCloud2, topic, qos_profile_sensor_data)
    said = []
    latched = QoSProfile(depth=4, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(String, topic + "_control", lambda msg: said.append(msg.data), latched)

    def wait_for(word):
        deadline = time.monotonic() + 60
        while word not in said and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)

    wait_for("go")  # the receiver has matched this publisher: best-effort data sent now is not lost to discovery
    points = np.random.default_rng(0).random((120_000, 3), dtype=np.float32)
    msg = points_to_pointcloud2(points, np.zeros((120_000, 3), np.uint8))
    for index in range(count):
        msg.header.stamp.sec = index
        publisher.publish(msg)
        time.sleep(0.2)
    wait_for("done")  # stay alive until the receiver has what it counts (or gives up)
    rclpy.shutdown()
""")


def test_fastdds_profile_carries_large_best_effort_clouds_between_processes():
    """1.9 MB best-effort clouds (the node's points at cloud_stride 2) all arrive with the profile;
    over fragmented UDP, Fast DDS's default for messages above its 512 KiB shared-memory segment,
    most are lost. The two sides wait for each other through a latched control topic, never for a time."""
    from std_msgs.msg import String

    environment = configure_dds()
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("cloud_receiver", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    topic, count = f"{unique_namespace()}/big_cloud", 8
    received: list[PointCloud2] = []
    best_effort = QoSProfile(depth=2 * count, reliability=ReliabilityPolicy.BEST_EFFORT)
    subscription = node.create_subscription(PointCloud2, topic, received.append, best_effort)
    latched = QoSProfile(depth=4, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    control = node.create_publisher(String, f"{topic}_control", latched)
    publisher = subprocess.Popen([sys.executable, "-c", _CLOUD_PUBLISHER, topic, str(count)], env=environment,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_publishers(executor, subscription, timeout=60)
        control.publish(String(data="go"))
        spin_until(executor, lambda: len(received) >= count or publisher.poll() is not None, timeout=120,
                   what=f"{count} clouds")
        control.publish(String(data="done"))
        output = publisher.communicate(timeout=60)[0]
    finally:
        if publisher.poll() is None:
            publisher.kill()
            publisher.communicate(timeout=30)
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    assert sorted(msg.header.stamp.sec for msg in received) == list(range(count))
    assert received[0].width == 120_000 and len(received[0].data) == 120_000 * 16
    assert "error" not in output.lower(), output


def _fake_ament_prefix(prefix: Path) -> Path:
    """An install prefix holding this package's share dir (launch/, config/) and its ament index marker."""
    share = prefix / "share" / "siam_depth_ros"
    share.mkdir(parents=True)
    for folder in ("launch", "config"):
        (share / folder).symlink_to(REPO_ROOT / folder)
    marker = prefix / "share" / "ament_index" / "resource_index" / "packages" / "siam_depth_ros"
    marker.parent.mkdir(parents=True)
    marker.touch()
    return share


def test_launch_description_with_the_launch_api(tmp_path, monkeypatch):
    pytest.importorskip("launch_ros", reason="launch_ros not installed (it comes with a ROS 2 install, not PyPI)")
    from launch import LaunchContext
    from launch.actions import OpaqueFunction
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch.utilities import perform_substitutions

    share = _fake_ament_prefix(tmp_path / "prefix")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "prefix"))
    description = PythonLaunchDescriptionSource(str(LAUNCH_FILE)).get_launch_description(LaunchContext())
    arguments = {argument.name: argument for argument in description.get_launch_arguments()}
    assert set(arguments) == set(EXPECTED_ARGUMENTS)

    def nodes_for(**overrides: str) -> list:
        context = LaunchContext()
        for argument in arguments.values():
            argument.visit(context)  # puts its default into the launch configurations
        context.launch_configurations.update(overrides)
        opaque = next(entity for entity in description.entities if isinstance(entity, OpaqueFunction))
        return list(opaque.execute(context))

    context = LaunchContext()
    for name, default in EXPECTED_ARGUMENTS.items():
        value = perform_substitutions(context, arguments[name].default_value)
        assert value == (default if default is not None else str(share / "config" / "depth.yaml")), name
    (depth_node,) = nodes_for()
    assert (depth_node.node_package, depth_node.node_executable) == ("siam_depth_ros", "depth_node")
    from siam_depth_ros.launch_support import find_rviz2

    with_rviz = nodes_for(rviz="true", backend="tensorrt", num_threads="1")
    if find_rviz2()[0] is None:  # warned about, not failed on
        assert [node.node_executable for node in with_rviz] == ["depth_node"]
    else:
        assert [(node.node_package, node.node_executable) for node in with_rviz][1] == ("rviz2", "rviz2")
    with pytest.raises(ValueError, match="num_threads"):
        nodes_for(num_threads="many")
    from launch_ros.actions import LifecycleNode

    (managed,) = nodes_for(lifecycle="true")
    assert isinstance(managed, LifecycleNode) and not isinstance(depth_node, LifecycleNode)
