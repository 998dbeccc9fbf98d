"""siam-depth-play over real DDS: every message with its recorded stamp, latched topics, rate, /clock, loop."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy not installed (ROS extra)")

from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from ros_helpers import configure_dds, spin_until, unique_namespace  # noqa: E402
from rosbags.rosbag2 import Reader, Writer  # noqa: E402
from rosbags.typesys import Stores, get_types_from_msg, get_typestore  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from siam_depth_core.data.calib import read_timestamps  # noqa: E402
from siam_depth_ros import player as player_module  # noqa: E402
from siam_depth_ros.kitti2bag import convert_drive  # noqa: E402
from siam_depth_ros.kitti2bag_messages import LEFT_CAMERA, TF_STATIC_TOPIC, TYPESTORE, image_message  # noqa: E402
from siam_depth_ros.kitti2bag_writer import LATCHED_QOS, SENSOR_QOS  # noqa: E402
from siam_depth_ros.player import PlayStats, play_bag, playback_qos  # noqa: E402

IMAGE_TOPIC = "/camera/image_raw"
LATCHED_TOPIC = "/camera/description"
FRAME_PERIOD_NS = 100_000_000  # 10 Hz
FIRST_STAMP_NS = 1_317_043_079_000_000_000
NAMESPACE = unique_namespace()


def tiny_image(index: int) -> np.ndarray:
    """(8,12,3) uint8 RGB whose bytes identify the frame."""
    return np.full((8, 12, 3), index * 20, dtype=np.uint8) + np.arange(12, dtype=np.uint8)[None, :, None]


def write_tiny_bag(path: Path, frames: int = 6) -> list[int]:
    """A bag with `frames` 8x12 images at 10 Hz and one latched String; returns the image stamps (ns)."""
    string_type = TYPESTORE.types["std_msgs/msg/String"]
    stamps = [FIRST_STAMP_NS + index * FRAME_PERIOD_NS for index in range(frames)]
    with Writer(path, version=8) as writer:
        latched = writer.add_connection(LATCHED_TOPIC, "std_msgs/msg/String", typestore=TYPESTORE,
                                        offered_qos_profiles=[LATCHED_QOS])
        images = writer.add_connection(IMAGE_TOPIC, "sensor_msgs/msg/Image", typestore=TYPESTORE,
                                       offered_qos_profiles=[SENSOR_QOS])
        writer.write(latched, stamps[0], TYPESTORE.serialize_cdr(string_type(data="tiny rig"), "std_msgs/msg/String"))
        for index, stamp in enumerate(stamps):
            message = image_message(tiny_image(index), stamp, "camera_optical_frame")
            writer.write(images, stamp, TYPESTORE.serialize_cdr(message, "sensor_msgs/msg/Image"))
    return stamps


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


@pytest.fixture(scope="module")
def context() -> Iterator[Context]:
    configure_dds()
    ros_context = Context()
    rclpy.init(context=ros_context)
    yield ros_context
    rclpy.shutdown(context=ros_context)


@pytest.fixture
def executor(context: Context) -> Iterator[SingleThreadedExecutor]:
    ros_executor = SingleThreadedExecutor(context=context)
    yield ros_executor
    ros_executor.shutdown()


@pytest.fixture
def make_node(context: Context) -> Iterator[Callable]:
    """Nodes in this test's namespace; the player's absolute bag topics are remapped into it too."""
    nodes = []

    def make(name: str, bag_topics: tuple[str, ...] = ()):
        remaps = [arg for topic in bag_topics for arg in ("-r", f"{topic}:={NAMESPACE}{topic}")]
        node = rclpy.create_node(name, context=context, cli_args=["--ros-args", *remaps] if remaps else None)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.destroy_node()


@pytest.fixture(scope="module")
def tiny_bag(tmp_path_factory) -> tuple[Path, list[int]]:
    path = tmp_path_factory.mktemp("player") / "tiny"
    return path, write_tiny_bag(path)


def play_in_thread(**kwargs) -> tuple[threading.Thread, dict[str, PlayStats]]:
    result: dict[str, PlayStats] = {}
    thread = threading.Thread(target=lambda: result.update(stats=play_bag(**kwargs)), daemon=True)
    thread.start()
    return thread, result


def spin_while(executor: SingleThreadedExecutor, thread: threading.Thread, timeout: float) -> None:
    """Spin until the player thread ends, then a little longer for the last deliveries."""
    spin_until(executor, lambda: not thread.is_alive(), timeout, "the player to finish")
    for _ in range(10):
        executor.spin_once(timeout_sec=0.02)


def test_kitti_images_arrive_with_recorded_stamps(drive_0023: Path, tmp_path: Path, executor, make_node):
    bag_path = tmp_path / "kitti"
    convert_drive(drive_0023, bag_path, with_right=False, with_velodyne=False, with_gps=False, progress=False)
    listener = make_node("listener")
    received: list[Image] = []
    listener.create_subscription(Image, NAMESPACE + LEFT_CAMERA.image_topic, received.append, 10)
    executor.add_node(listener)
    player = make_node("player", (LEFT_CAMERA.image_topic, LEFT_CAMERA.info_topic, TF_STATIC_TOPIC))

    thread, result = play_in_thread(path=bag_path, node=player, wait_for=[LEFT_CAMERA.image_topic],
                                    wait_timeout_s=20.0)
    spin_while(executor, thread, timeout=30.0)
    stamps = read_timestamps(drive_0023 / "image_02" / "timestamps.txt")[:7]
    assert [stamp_ns(msg) for msg in received] == stamps.tolist()
    assert all((msg.width, msg.height, msg.encoding) == (1242, 375, "rgb8") for msg in received)
    stats = result["stats"]
    assert stats.published[LEFT_CAMERA.image_topic] == stats.published[LEFT_CAMERA.info_topic] == 7
    assert stats.loops == 1 and not stats.stopped


def test_tiny_images_byte_identical_in_order(tiny_bag, executor, make_node):
    bag_path, stamps = tiny_bag
    listener = make_node("listener")
    received: list[Image] = []
    listener.create_subscription(Image, NAMESPACE + IMAGE_TOPIC, received.append, 10)
    executor.add_node(listener)
    player = make_node("player", (IMAGE_TOPIC, LATCHED_TOPIC))
    thread, _ = play_in_thread(path=bag_path, node=player, rate=2.0, wait_for=[IMAGE_TOPIC])
    spin_while(executor, thread, timeout=20.0)
    assert [stamp_ns(msg) for msg in received] == stamps
    for index, msg in enumerate(received):
        assert bytes(msg.data) == tiny_image(index).tobytes()


def test_latched_topic_reaches_a_late_subscriber(tiny_bag, executor, make_node):
    bag_path, _ = tiny_bag
    early = make_node("early")
    images: list[Image] = []
    early.create_subscription(Image, NAMESPACE + IMAGE_TOPIC, images.append, 10)
    executor.add_node(early)
    player = make_node("player", (IMAGE_TOPIC, LATCHED_TOPIC))
    stop = threading.Event()
    thread, result = play_in_thread(path=bag_path, node=player, loop=True, stop_event=stop, wait_for=[IMAGE_TOPIC])
    try:
        spin_until(executor, lambda: len(images) >= 3, 20.0, "images before the late subscriber joins")
        late = make_node("late")
        latched: list[String] = []
        latched_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
        late.create_subscription(String, NAMESPACE + LATCHED_TOPIC, latched.append, latched_qos)
        executor.add_node(late)
        spin_until(executor, lambda: latched, 20.0, "the latched message")
        assert latched[0].data == "tiny rig"
    finally:
        stop.set()
        thread.join(10.0)
    assert result["stats"].stopped and result["stats"].published[IMAGE_TOPIC] >= 3


def test_tf_static_latched_for_a_late_subscriber(drive_0023: Path, tmp_path: Path, executor, make_node):
    tf2_msgs = pytest.importorskip("tf2_msgs.msg", reason="tf2_msgs not installed: the pip ROS wheels have no "
                                   "tf2_msgs, so the player skips /tf_static there")
    bag_path = tmp_path / "kitti"
    convert_drive(drive_0023, bag_path, frame_range=(0, 3), with_right=False, progress=False)
    player = make_node("player", (TF_STATIC_TOPIC, LEFT_CAMERA.image_topic))
    early = make_node("early")
    images: list[Image] = []
    early.create_subscription(Image, NAMESPACE + LEFT_CAMERA.image_topic, images.append, 10)
    executor.add_node(early)
    stop = threading.Event()
    thread, _ = play_in_thread(path=bag_path, node=player, loop=True, stop_event=stop,
                               wait_for=[LEFT_CAMERA.image_topic])
    try:
        spin_until(executor, lambda: images, 20.0, "an image before the late subscriber joins")
        late = make_node("late")
        transforms = []
        latched_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
        late.create_subscription(tf2_msgs.TFMessage, NAMESPACE + TF_STATIC_TOPIC, transforms.append, latched_qos)
        executor.add_node(late)
        spin_until(executor, lambda: transforms, 20.0, "/tf_static")
        children = {transform.child_frame_id for transform in transforms[0].transforms}
        assert LEFT_CAMERA.frame_id in children
    finally:
        stop.set()
        thread.join(10.0)


def test_paused_playback_holds_until_resumed(tiny_bag, executor, make_node):
    bag_path, stamps = tiny_bag
    listener = make_node("listener")
    received: list[Image] = []
    listener.create_subscription(Image, NAMESPACE + IMAGE_TOPIC, received.append, 10)
    executor.add_node(listener)
    paused = threading.Event()
    paused.set()
    thread, result = play_in_thread(path=bag_path, node=make_node("player", (IMAGE_TOPIC, LATCHED_TOPIC)),
                                    rate=2.0, paused=paused, wait_for=[IMAGE_TOPIC])
    held_until = time.monotonic() + 0.6
    spin_until(executor, lambda: time.monotonic() > held_until, 60.0, "the pause")
    assert received == [] and thread.is_alive()
    paused.clear()
    spin_while(executor, thread, timeout=20.0)
    assert [stamp_ns(msg) for msg in received] == stamps
    assert result["stats"].wall_time_s >= 0.6 + (stamps[-1] - stamps[0]) / 2e9


def test_pause_services_set_and_clear_the_pause(executor, make_node):
    from std_srvs.srv import Trigger

    from siam_depth_ros.player import add_pause_services

    player_name = f"player_{os.getpid()}"
    paused = threading.Event()
    player = make_node(player_name)
    add_pause_services(player, paused)
    client_node = make_node("client")
    executor.add_node(player)
    executor.add_node(client_node)

    def call(action: str) -> str:
        client = client_node.create_client(Trigger, f"/{player_name}/{action}")
        assert client.wait_for_service(timeout_sec=10.0), f"no {action} service"
        future = client.call_async(Trigger.Request())
        executor.spin_until_future_complete(future, timeout_sec=10.0)
        return future.result().message

    assert call("pause") == "paused" and paused.is_set()
    assert call("toggle_pause") == "playing" and not paused.is_set()
    assert call("toggle_pause") == "paused" and paused.is_set()
    assert call("resume") == "playing" and not paused.is_set()


def test_playback_qos_latches_tf_static_and_transient_local_topics(drive_0023: Path, tmp_path: Path, tiny_bag):
    bag_path = tmp_path / "kitti"
    convert_drive(drive_0023, bag_path, frame_range=(0, 1), with_right=False, progress=False)
    with Reader(bag_path) as reader, Reader(tiny_bag[0]) as tiny_reader:
        connections = {c.topic: c for c in [*reader.connections, *tiny_reader.connections]}
    for topic in (TF_STATIC_TOPIC, LATCHED_TOPIC):
        qos = playback_qos(connections[topic], reliable=False)
        assert (qos.durability, qos.reliability) == (DurabilityPolicy.TRANSIENT_LOCAL, ReliabilityPolicy.RELIABLE)
    image_connection = connections[LEFT_CAMERA.image_topic]
    assert playback_qos(image_connection).durability == DurabilityPolicy.VOLATILE
    assert playback_qos(image_connection).reliability == ReliabilityPolicy.RELIABLE
    assert playback_qos(image_connection, reliable=False).reliability == ReliabilityPolicy.BEST_EFFORT


class _VirtualTime:
    """The player's clock and sleeps made virtual: `monotonic()` reads a counter that only `wait` (the player's
    sleep) advances, so send times follow the schedule exactly, however loaded the machine is."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._stopped = False

    def monotonic(self) -> float:
        return self.now

    def wait(self, timeout: float | None = None) -> bool:  # threading.Event's interface, as the player uses it
        self.now += timeout or 0.0
        return self._stopped

    def is_set(self) -> bool:
        return self._stopped

    def set(self) -> None:
        self._stopped = True


def test_rate_scales_the_send_times(tiny_bag, make_node, monkeypatch):
    bag_path, stamps = tiny_bag
    bag_span_s = (stamps[-1] - stamps[0]) / 1e9  # 0.5 s
    player = make_node("player", (IMAGE_TOPIC, LATCHED_TOPIC))
    virtual = _VirtualTime()
    monkeypatch.setattr(player_module, "time", virtual)
    real_time = play_bag(bag_path, node=player, rate=1.0, stop_event=virtual)
    fast = play_bag(bag_path, node=player, rate=5.0, stop_event=virtual)
    assert real_time.published == fast.published
    assert real_time.wall_time_s == pytest.approx(bag_span_s, abs=1e-6)
    assert fast.wall_time_s == pytest.approx(bag_span_s / 5, abs=1e-6)


def test_clock_follows_bag_time(tiny_bag, executor, make_node):
    bag_path, stamps = tiny_bag
    listener = make_node("listener")
    clocks: list[int] = []
    listener.create_subscription(
        Clock, NAMESPACE + "/clock", lambda msg: clocks.append(msg.clock.sec * 1_000_000_000 + msg.clock.nanosec),
        QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT))
    listener.create_subscription(Image, NAMESPACE + IMAGE_TOPIC, lambda msg: None, 10)
    executor.add_node(listener)
    player = make_node("player", (IMAGE_TOPIC, LATCHED_TOPIC, "/clock"))
    thread, _ = play_in_thread(path=bag_path, node=player, clock=True, clock_hz=50.0, wait_for=[IMAGE_TOPIC])
    spin_while(executor, thread, timeout=20.0)
    assert len(clocks) >= 10  # 0.5 s at 50 Hz, plus one per message
    assert all(stamps[0] <= clock <= stamps[-1] for clock in clocks)
    assert clocks == sorted(clocks) and clocks[-1] == stamps[-1]


def test_topic_of_a_missing_message_package_is_skipped(tmp_path: Path, make_node):
    typestore = get_typestore(Stores.ROS2_KILTED)
    typestore.register(get_types_from_msg("int32 value", "siam_missing_msgs/msg/Value"))
    bag_path = tmp_path / "unknown"
    with Writer(bag_path, version=8) as writer:
        connection = writer.add_connection("/value", "siam_missing_msgs/msg/Value", typestore=typestore)
        value = typestore.types["siam_missing_msgs/msg/Value"](value=3)
        writer.write(connection, FIRST_STAMP_NS, typestore.serialize_cdr(value, "siam_missing_msgs/msg/Value"))
    stats = play_bag(bag_path, node=make_node("player", ("/value",)))
    assert stats.total == 0
    assert "siam_missing_msgs" in stats.skipped_topics["/value"]
    with pytest.raises(ValueError, match="not in the bag"):
        play_bag(bag_path, node=make_node("player2"), topics=["/nothing"])
    with pytest.raises(ValueError, match="rate must be > 0"):
        play_bag(bag_path, node=make_node("player3"), rate=0.0)


def test_command_line_plays_and_reports(tiny_bag, tmp_path: Path):
    environment = configure_dds()
    command = [sys.executable, "-m", "siam_depth_ros.player"]
    done = subprocess.run([*command, str(tiny_bag[0]), "--rate", "4", "--ros-args", "-r",
                           f"{IMAGE_TOPIC}:={NAMESPACE}/cli{IMAGE_TOPIC}"],
                          capture_output=True, text=True, env=environment, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "published 7 messages on 2 topics" in done.stdout
    missing = subprocess.run([*command, str(tmp_path / "no_bag")], capture_output=True, text=True,
                             env=environment, timeout=60)
    assert missing.returncode == 2 and "not a rosbag2 folder" in missing.stderr


def test_compressed_kitti_images_are_replayed(drive_0023: Path, tmp_path: Path, executor, make_node):
    """A `--compressed` bag: JPEG sensor_msgs/CompressedImage on image_transport's `.../image_raw/compressed`."""
    import cv2
    from sensor_msgs.msg import CompressedImage

    bag_path = tmp_path / "kitti_jpeg"
    convert_drive(drive_0023, bag_path, with_right=False, with_velodyne=False, with_gps=False, with_imu=False,
                  with_pose=False, compressed=True, progress=False)
    listener = make_node("listener")
    received: list[CompressedImage] = []
    listener.create_subscription(CompressedImage, NAMESPACE + LEFT_CAMERA.compressed_topic, received.append, 10)
    executor.add_node(listener)
    player = make_node("player", (LEFT_CAMERA.compressed_topic, LEFT_CAMERA.info_topic, TF_STATIC_TOPIC))
    thread, result = play_in_thread(path=bag_path, node=player, wait_for=[LEFT_CAMERA.compressed_topic],
                                    wait_timeout_s=20.0)
    spin_while(executor, thread, timeout=30.0)
    stamps = read_timestamps(drive_0023 / "image_02" / "timestamps.txt")[:7]
    assert [stamp_ns(msg) for msg in received] == stamps.tolist()
    assert all(msg.format == "rgb8; jpeg compressed bgr8" for msg in received)
    decoded = cv2.imdecode(np.frombuffer(bytes(received[0].data), np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (375, 1242, 3)
    assert result["stats"].published[LEFT_CAMERA.compressed_topic] == 7
    assert LEFT_CAMERA.image_topic not in result["stats"].published


def _environment_without_profile() -> dict[str, str]:
    environment = configure_dds()
    for variable in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE", "SIAM_DEPTH_SHM_PROFILE"):
        environment.pop(variable, None)
    return environment


def test_command_line_uses_the_shipped_profile_when_none_is_set(drive_0009: Path, tmp_path: Path, executor,
                                                                 make_node):
    """Replay as the README documents it: the user exported no Fast DDS profile. The player must use the
    shipped shared-memory profile (and say so), so that a best-effort subscriber with the profile (as the
    node) gets every 1.4 MB KITTI image; without it they go over fragmented UDP and many are lost."""
    from rclpy.qos import qos_profile_sensor_data

    bag_path = tmp_path / "kitti"
    frames = 20
    convert_drive(drive_0009, bag_path, frame_range=(0, frames), with_right=False, with_velodyne=False,
                  with_gps=False, with_imu=False, with_pose=False, progress=False)
    topic = f"{NAMESPACE}/shm{LEFT_CAMERA.image_topic}"
    listener = make_node("listener")
    received: list[Image] = []
    best_effort = QoSProfile(depth=2 * frames, reliability=ReliabilityPolicy.BEST_EFFORT)
    assert best_effort.reliability == qos_profile_sensor_data.reliability
    listener.create_subscription(Image, topic, received.append, best_effort)
    executor.add_node(listener)
    environment = _environment_without_profile()
    command = [sys.executable, "-m", "siam_depth_ros.player", str(bag_path), "--wait-for", LEFT_CAMERA.image_topic,
               "--topics", LEFT_CAMERA.image_topic, "--ros-args", "-r", f"{LEFT_CAMERA.image_topic}:={topic}"]
    player = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        spin_until(executor, lambda: player.poll() is not None, 60.0, "the player to finish")
        spin_until(executor, lambda: len(received) >= frames, 5.0, f"{frames} images")
    finally:
        if player.poll() is None:
            player.kill()
        output = player.communicate(timeout=30)[0]
    assert player.returncode == 0, output
    assert "using the shipped shared-memory Fast DDS profile" in output and "fastdds_shm.xml" in output
    stamps = read_timestamps(drive_0009 / "image_02" / "timestamps.txt")[:frames]
    assert [stamp_ns(msg) for msg in received] == stamps.tolist()


def test_command_line_keeps_a_profile_the_user_set(tiny_bag, tmp_path: Path):
    profile = Path(__file__).resolve().parents[1] / "config" / "fastdds_shm.xml"
    users_copy = tmp_path / "my_profile.xml"
    users_copy.write_bytes(profile.read_bytes())
    environment = _environment_without_profile()
    environment["FASTDDS_DEFAULT_PROFILES_FILE"] = str(users_copy)
    done = subprocess.run([sys.executable, "-m", "siam_depth_ros.player", str(tiny_bag[0]), "--rate", "4",
                           "--ros-args", "-r", f"{IMAGE_TOPIC}:={NAMESPACE}/users{IMAGE_TOPIC}"],
                          capture_output=True, text=True, env=environment, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"using the Fast DDS profile set in FASTDDS_DEFAULT_PROFILES_FILE: {users_copy}" in done.stderr
    assert "shipped" not in done.stderr
    opted_out = dict(_environment_without_profile(), SIAM_DEPTH_SHM_PROFILE="0")
    done = subprocess.run([sys.executable, "-m", "siam_depth_ros.player", str(tiny_bag[0]), "--rate", "4",
                           "--ros-args", "-r", f"{IMAGE_TOPIC}:={NAMESPACE}/off{IMAGE_TOPIC}"],
                          capture_output=True, text=True, env=opted_out, timeout=60)
    assert done.returncode == 0 and "SIAM_DEPTH_SHM_PROFILE=0: Fast DDS uses its built-in transports" in done.stderr


def test_replay_launch_file_with_the_launch_api(drive_0023: Path, tmp_path: Path, monkeypatch):
    pytest.importorskip("launch_ros", reason="launch_ros not installed (it comes with a full ROS 2 install)")
    import importlib.util

    from launch.actions import IncludeLaunchDescription, SetEnvironmentVariable
    from launch.launch_context import LaunchContext
    from launch.utilities import perform_substitutions

    repo = Path(__file__).resolve().parents[1]
    prefix = tmp_path / "prefix"
    share = prefix / "share" / "siam_depth_ros"
    share.mkdir(parents=True)
    for folder in ("launch", "config"):
        (share / folder).symlink_to(repo / folder)
    marker = prefix / "share" / "ament_index" / "resource_index" / "packages" / "siam_depth_ros"
    marker.parent.mkdir(parents=True)
    marker.touch()
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    monkeypatch.setenv("ROS_DISTRO", "kilted")
    for variable in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE"):
        monkeypatch.delenv(variable, raising=False)
    bag_path = tmp_path / "kitti"
    convert_drive(drive_0023, bag_path, frame_range=(0, 1), with_right=False, compressed=True, progress=False)

    spec = importlib.util.spec_from_file_location("kitti_replay_launch", repo / "launch" / "kitti_replay.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert {arg.name for arg in description.get_launch_arguments()} == {
        "bag", "rate", "loop", "clock", "rviz", "checkpoint", "num_threads", "image_transport", "shm"}
    context = LaunchContext()
    context.launch_configurations.update(bag=str(bag_path), rate="2.0", loop="true", clock="false", rviz="false",
                                         checkpoint="", num_threads="1", image_transport="auto", shm="true")
    actions = module._replay(context)
    variables = [perform_substitutions(context, action.name) for action in actions
                 if isinstance(action, SetEnvironmentVariable)]
    assert variables == ["FASTDDS_DEFAULT_PROFILES_FILE"]  # not the deprecated FASTRTPS_ name on Kilted
    assert any(isinstance(action, IncludeLaunchDescription) for action in actions)
    player = actions[-1]
    assert player.node_executable == "siam-depth-play"
    context.launch_configurations["bag"] = ""
    with pytest.raises(ValueError, match="needs bag"):
        module._replay(context)
