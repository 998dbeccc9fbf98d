"""The decisions of `launch/depth.launch.py` and `launch/kitti_replay.launch.py` as plain functions.

The launch files only adapt these to `launch` actions, so everything they decide — is RViz2 installed,
which typed parameters override config/depth.yaml, which Fast DDS variables to set, what the player is
told — is testable without a ROS 2 install (`launch`/`launch_ros` are not on PyPI). Nothing here imports
`launch`.
"""
from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from siam_depth_ros.dds_profile import OPT_OUT_ENV_VAR, choose_profile

PACKAGE = "siam_depth_ros"
RVIZ_PACKAGE = "rviz2"
TRUE_STRINGS = ("true", "1", "yes", "on")
FALSE_STRINGS = ("false", "0", "no", "off")
#: Values of the node's `image_transport` parameter (image_transport's transport names).
IMAGE_TRANSPORTS = ("raw", "compressed")
#: Values of the node's `precision` parameter (`RuntimeOptions.precision`; repeated here so that launch does not
#: import torch with siam_depth_core).
PRECISIONS = ("auto", "fp32", "bf16")
#: kitti_replay's `image_transport:=auto` picks compressed when the bag has only the compressed topic.
AUTO_TRANSPORT = "auto"
LEFT_CAMERA = "/kitti/camera_color_left"
LEFT_IMAGE_TOPIC = f"{LEFT_CAMERA}/image_raw"
LEFT_INFO_TOPIC = f"{LEFT_CAMERA}/camera_info"
#: How long the replay's player waits for the node to subscribe (model loading on a slow CPU), seconds.
SUBSCRIBER_TIMEOUT_S = 120.0


def parse_bool(name: str, text: str) -> bool:
    """A launch argument's boolean (true/false/1/0/yes/no/on/off, any case); ValueError naming the argument."""
    value = text.strip().lower()
    if value in TRUE_STRINGS:
        return True
    if value in FALSE_STRINGS:
        return False
    raise ValueError(f"launch argument {name}:={text!r} must be true or false")


def find_rviz2(ament_prefix_path: str | None = None) -> tuple[Path | None, str]:
    """(path of the rviz2 executable, "") if RViz2 is installed in the ament index, else (None, why not).

    Looks where launch_ros's `Node(package="rviz2", executable="rviz2")` looks: `<prefix>/lib/rviz2/rviz2` of
    the first prefix in AMENT_PREFIX_PATH (default: this process's) that registers the rviz2 package.
    """
    prefixes = os.environ.get("AMENT_PREFIX_PATH", "") if ament_prefix_path is None else ament_prefix_path
    for prefix in filter(None, prefixes.split(os.pathsep)):
        marker = Path(prefix) / "share" / "ament_index" / "resource_index" / "packages" / RVIZ_PACKAGE
        if marker.is_file():
            executable = Path(prefix) / "lib" / RVIZ_PACKAGE / RVIZ_PACKAGE
            if executable.is_file() and os.access(executable, os.X_OK):
                return executable, ""
            return None, f"the rviz2 package in {prefix} has no executable {executable}"
    if not prefixes:
        return None, "AMENT_PREFIX_PATH is not set (source a ROS 2 install)"
    return None, "rviz2 is not installed (e.g. apt install ros-$ROS_DISTRO-rviz2)"


def _parse_num_threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"launch argument num_threads:={text!r} must be an integer >= 0 "
                         "(0 = the library's default)") from None
    if value < 0:
        raise ValueError(f"launch argument num_threads:={value} must be >= 0 (0 = the library's default)")
    return value


def _parse_device(text: str) -> str:
    value = text.strip()
    if not re.fullmatch(r"cpu|cuda(:\d+)?", value):
        raise ValueError(f"launch argument device:={text!r} must be cpu, cuda or cuda:<index> (empty: the "
                         "backend's default)")
    return value


def _parse_image_transport(text: str) -> str:
    value = text.strip()
    if value not in IMAGE_TRANSPORTS:
        raise ValueError(f"launch argument image_transport:={text!r} must be one of {', '.join(IMAGE_TRANSPORTS)}")
    return value


def _parse_precision(text: str) -> str:
    value = text.strip()
    if value not in PRECISIONS:
        raise ValueError(f"launch argument precision:={text!r} must be one of {', '.join(PRECISIONS)}")
    return value


#: depth.launch.py arguments that override config/depth.yaml when non-empty, with their parameter types.
PARAMETER_OVERRIDES = {
    "backend": str,
    "engine": str,
    "onnx": str,
    "precision": _parse_precision,
    "checkpoint": str,
    "qos": str,
    "device": _parse_device,
    "num_threads": _parse_num_threads,
    "image_transport": _parse_image_transport,
    "single_pass": lambda text: parse_bool("single_pass", text),
}


def parameter_overrides(arguments: Mapping[str, str]) -> dict[str, object]:
    """Node parameters from depth.launch.py's override arguments: the non-empty ones of PARAMETER_OVERRIDES,
    typed as the node declares them (num_threads an int >= 0, image_transport raw|compressed, device
    cpu|cuda[:i], single_pass a bool); ValueError naming the argument when a value is invalid."""
    overrides: dict[str, object] = {}
    for name, parse in PARAMETER_OVERRIDES.items():
        text = arguments.get(name, "").strip()
        if text:
            overrides[name] = parse(text)
    return overrides


def node_arguments(lifecycle: str) -> list[str]:
    """depth_node's own command-line arguments for depth.launch.py's `lifecycle` argument (true/false):
    `--lifecycle` starts it as a managed node (launch_ros's LifecycleNode action), else none."""
    return ["--lifecycle"] if parse_bool("lifecycle", lifecycle) else []


#: multi_camera.launch.py's default topics of each camera's driver ({camera}: the camera's name).
CAMERA_IMAGE_PATTERN = "/{camera}/image_rect"
CAMERA_INFO_PATTERN = "/{camera}/camera_info"


def parse_cameras(text: str) -> list[str]:
    """multi_camera.launch.py's `cameras` argument: names separated by commas and/or spaces ("" gives [])."""
    return [name for name in text.replace(",", " ").split() if name]


def cameras_of_params_file(path: str | Path) -> list[str]:
    """The `cameras` list a ROS 2 parameter file sets (under any node key's ros__parameters; [] when none does);
    ValueError when it is not a list of names."""
    import yaml

    document = yaml.safe_load(Path(path).read_text()) or {}
    for node in document.values() if isinstance(document, dict) else ():
        parameters = node.get("ros__parameters", {}) if isinstance(node, dict) else {}
        if "cameras" in parameters:
            cameras = parameters["cameras"]
            if not isinstance(cameras, list) or not all(isinstance(name, str) and name for name in cameras):
                raise ValueError(f"cameras in {path} must be a list of camera names, got {cameras!r}")
            return list(cameras)
    return []


def camera_remappings(cameras: Collection[str], image_pattern: str = CAMERA_IMAGE_PATTERN,
                      info_pattern: str = CAMERA_INFO_PATTERN) -> list[tuple[str, str]]:
    """The node's `<camera>/image` (and `<camera>/image/compressed`) and `<camera>/camera_info` remapped to each
    camera driver's topics, the
    patterns' `{camera}` replaced by the camera's name; ValueError for a pattern without `{camera}` (every
    camera would read one topic)."""
    for name, pattern in (("image", image_pattern), ("camera_info", info_pattern)):
        if "{camera}" not in pattern:
            raise ValueError(f"{name} must contain {{camera}} (each camera reads its own topic), got {pattern!r}")
    remappings: list[tuple[str, str]] = []
    for camera in cameras:
        image = image_pattern.format(camera=camera)
        remappings += [(f"{camera}/image", image), (f"{camera}/image/compressed", f"{image}/compressed"),
                       (f"{camera}/camera_info", info_pattern.format(camera=camera))]
    return remappings


def image_topic(base_topic: str, image_transport: str) -> str:
    """The topic of `base_topic` for an image_transport transport: itself (raw) or `<base>/compressed`."""
    return base_topic if _parse_image_transport(image_transport) == "raw" else f"{base_topic}/compressed"


def resolve_image_transport(requested: str, bag_topics: Collection[str], base_topic: str = LEFT_IMAGE_TOPIC) -> str:
    """The transport (raw|compressed) the node must use to read `base_topic` from a bag with `bag_topics`.

    `auto`: raw if the bag has the raw topic, else compressed if it has `<base>/compressed`. A transport
    whose topic is not in the bag raises ValueError saying which one the bag offers.
    """
    value = requested.strip()
    if value == AUTO_TRANSPORT:
        for transport in IMAGE_TRANSPORTS:
            if image_topic(base_topic, transport) in bag_topics:
                return transport
        raise ValueError(f"the bag has neither {base_topic} nor {base_topic}/compressed (it has "
                         f"{sorted(bag_topics)}); was it written by siam-depth-kitti2bag?")
    transport = _parse_image_transport(value)
    if image_topic(base_topic, transport) not in bag_topics:
        offered = [t for t in IMAGE_TRANSPORTS if image_topic(base_topic, t) in bag_topics]
        hint = f"; use image_transport:={offered[0]}" if offered else ""
        raise ValueError(f"image_transport:={transport} but the bag has no {image_topic(base_topic, transport)}"
                         f"{hint}")
    return transport


def bag_topics(bag: str | Path) -> set[str]:
    """Topic names of the rosbag2 folder `bag` (from its metadata; no message is read)."""
    from rosbags.rosbag2 import Reader

    path = Path(bag)
    if not (path / "metadata.yaml").is_file():
        raise ValueError(f"bag:={bag} is not a rosbag2 folder (no metadata.yaml); make one with siam-depth-kitti2bag")
    with Reader(path) as reader:
        return {connection.topic for connection in reader.connections}


@dataclass(frozen=True)
class ReplayPlan:
    """What kitti_replay.launch.py starts.

    environment: variables set for every process it starts (Fast DDS profile, or the opt-out).
    profile_message: one log line about the Fast DDS profile. depth_arguments: launch arguments of
    depth.launch.py. player_arguments: the `siam-depth-play` command line after the executable.
    """

    environment: dict[str, str] = field(default_factory=dict)
    profile_message: str = ""
    depth_arguments: dict[str, str] = field(default_factory=dict)
    player_arguments: list[str] = field(default_factory=list)


def plan_replay(arguments: Mapping[str, str], environ: Mapping[str, str], shipped_profile: Path | None,
                topics_in_bag: Collection[str]) -> ReplayPlan:
    """Decide kitti_replay.launch.py's processes from its evaluated launch arguments (strings), the launching
    environment, the package's profile path and the bag's topics.

    shm:=true uses the shipped shared-memory profile unless the user set one (FASTDDS_DEFAULT_PROFILES_FILE,
    plus FASTRTPS_DEFAULT_PROFILES_FILE where the distro's Fast DDS 2 needs it); shm:=false opts every
    process out (Fast DDS built-in transports). image_transport (auto|raw|compressed) picks the node's input
    and the topic the player waits for. num_threads, checkpoint are passed to depth.launch.py when non-empty.
    """
    bag = arguments.get("bag", "").strip()
    if not bag:
        raise ValueError("kitti_replay.launch.py needs bag:=<rosbag2 folder> (make one with siam-depth-kitti2bag)")
    rate_text = arguments.get("rate", "1.0")
    try:
        rate = float(rate_text)
    except ValueError:
        raise ValueError(f"launch argument rate:={rate_text!r} must be a number > 0") from None
    if not rate > 0:
        raise ValueError(f"launch argument rate:={rate_text!r} must be > 0")
    if parse_bool("shm", arguments.get("shm", "true")):
        choice = choose_profile(environ, shipped_profile)
        environment, message = dict(choice.variables), choice.message
    else:
        environment = {OPT_OUT_ENV_VAR: "0"}
        message = "shm:=false: Fast DDS uses its built-in transports (large images may be lost between processes)"
    transport = resolve_image_transport(arguments.get("image_transport", AUTO_TRANSPORT), topics_in_bag)
    clock = parse_bool("clock", arguments.get("clock", "false"))
    depth_arguments = {
        "image": LEFT_IMAGE_TOPIC,  # the base topic: the node appends /compressed itself, as image_transport does
        "camera_info": LEFT_INFO_TOPIC,
        "qos": "reliable",  # a replay must not lose its first frames to best-effort discovery
        "rviz": "true" if parse_bool("rviz", arguments.get("rviz", "false")) else "false",
        "use_sim_time": "true" if clock else "false",
        "image_transport": transport,
    }
    for name in ("checkpoint", "num_threads"):
        if arguments.get(name, "").strip():
            depth_arguments[name] = arguments[name].strip()
    parameter_overrides(depth_arguments)  # fail here, with the argument's name, on a bad num_threads
    player = [bag, "--rate", str(rate), "--wait-for", image_topic(LEFT_IMAGE_TOPIC, transport),
              "--wait-timeout", f"{SUBSCRIBER_TIMEOUT_S:g}"]
    if parse_bool("loop", arguments.get("loop", "false")):
        player.append("--loop")
    if clock:
        player.append("--clock")
    return ReplayPlan(environment, message, depth_arguments, player)
