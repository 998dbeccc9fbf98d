"""Stereo training data straight from a rosbag2 (MCAP or sqlite3) recorded on the vehicle.

A left and a right image topic (sensor_msgs/Image or CompressedImage) and their camera_info topics:
image pairs are matched by header stamp (within a tolerance), the rig comes from the camera_info
projections of a rectified pair (left P: intrinsics; right P[0,3] = Tx = -fx * baseline, as ROS stereo
drivers publish it), and consecutive pairs form the ConvLSTM clips (a time gap of more than
`GAP_FACTOR` frame periods splits the sequence). Decoded frames are written once as PNG files to a
cache folder keyed by the bag's files, the topics and the tolerance, so later epochs and runs read
PNGs instead of decoding the bag again. Read with `rosbags` (pure Python, no ROS install needed).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from siam_depth_core.data.stereo import StereoRig, StereoSequence

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
#: Image encodings a bag's raw images may use, with the OpenCV conversion to RGB (None = already RGB).
_TO_RGB = {"rgb8": None, "bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB, "bgra8": cv2.COLOR_BGRA2RGB,
           "mono8": cv2.COLOR_GRAY2RGB}
#: A gap between consecutive pairs longer than this many median frame periods starts a new run.
GAP_FACTOR = 2.5
#: Relative tolerance on the left/right rectified intrinsics (fx, fy, cx, cy) agreeing.
_RECTIFIED_RTOL = 1e-3
_CACHE_VERSION = 1


@dataclass(frozen=True)
class BagStereoTopics:
    """The four topics of a stereo camera in a bag. Info topics default to image_transport's sibling
    `camera_info` (`/cam/left/image_raw` or `/cam/left/image_raw/compressed` -> `/cam/left/camera_info`)."""

    left_image: str
    right_image: str
    left_info: str | None = None
    right_info: str | None = None

    @staticmethod
    def sibling_info(image_topic: str) -> str:
        """`<namespace>/camera_info` of an image topic."""
        parts = image_topic.rstrip("/").split("/")
        if parts[-1] == "compressed":
            parts = parts[:-1]
        return "/".join(parts[:-1] + ["camera_info"])

    def resolved(self) -> BagStereoTopics:
        """These topics with the info topics filled in."""
        return BagStereoTopics(self.left_image, self.right_image, self.left_info or self.sibling_info(self.left_image),
                               self.right_info or self.sibling_info(self.right_image))


def stamp_s(message: Any) -> float:
    """Header stamp of a message in seconds."""
    return message.header.stamp.sec + message.header.stamp.nanosec * 1e-9


def decode_image_message(message: Any, msgtype: str) -> np.ndarray:
    """(H,W,3) uint8 RGB of a sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) or CompressedImage."""
    if msgtype == COMPRESSED_TYPE:
        image = cv2.imdecode(np.asarray(message.data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot decode a CompressedImage of format {message.format!r}")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if message.encoding not in _TO_RGB:
        raise ValueError(f"unsupported image encoding {message.encoding!r} in the bag; supported: "
                         f"{', '.join(_TO_RGB)}")
    channels = 1 if message.encoding == "mono8" else (4 if message.encoding in ("rgba8", "bgra8") else 3)
    rows = np.asarray(message.data, dtype=np.uint8).reshape(message.height, message.step)
    image = rows[:, :message.width * channels].reshape(message.height, message.width, channels)
    conversion = _TO_RGB[message.encoding]
    if conversion is None:
        return np.ascontiguousarray(image)
    return cv2.cvtColor(image[..., 0] if channels == 1 else image, conversion)


def rig_from_camera_info(left: Any, right: Any) -> StereoRig:
    """The rectified stereo rig of two sensor_msgs/CameraInfo messages; ValueError when they do not describe one."""
    left_p = np.asarray(left.p, dtype=np.float64).reshape(3, 4)
    right_p = np.asarray(right.p, dtype=np.float64).reshape(3, 4)
    if (left.width, left.height) != (right.width, right.height):
        raise ValueError(f"left and right images differ in size ({left.width}x{left.height} vs "
                         f"{right.width}x{right.height}); a rectified stereo pair has one size")
    if not left_p[0, 0] > 0 or not right_p[0, 0] > 0:
        raise ValueError("camera_info P has fx = 0: the cameras are not calibrated (rectified input needs P)")
    left_intrinsics = left_p[[0, 1, 0, 1], [0, 1, 2, 2]]
    right_intrinsics = right_p[[0, 1, 0, 1], [0, 1, 2, 2]]
    if not np.allclose(left_intrinsics, right_intrinsics, rtol=_RECTIFIED_RTOL):
        raise ValueError(f"left and right camera_info P differ in (fx, fy, cx, cy): {left_intrinsics.tolist()} vs "
                         f"{right_intrinsics.tolist()}; the images are not rectified (record image_rect topics)")
    baseline_m = (left_p[0, 3] - right_p[0, 3]) / right_p[0, 0]
    if not baseline_m > 0:
        raise ValueError(f"the right camera_info P has Tx = {right_p[0, 3]:g} (baseline {baseline_m:g} m); a "
                         "rectified right camera has Tx = -fx * baseline < 0 (are left and right swapped, or "
                         "is P of an unrectified camera?)")
    return StereoRig(baseline_m=float(baseline_m), camera_matrix=left_p[:, :3].copy(),
                     image_size=(int(left.width), int(left.height)))


def match_stamps(left_s: np.ndarray, right_s: np.ndarray, tolerance_s: float) -> list[tuple[int, int]]:
    """(i, j) index pairs of left/right stamps (seconds, sorted) that are nearest to each other within tolerance."""
    pairs: list[tuple[int, int]] = []
    if len(right_s) == 0:
        return pairs
    for i, stamp in enumerate(left_s):
        j = int(np.searchsorted(right_s, stamp))
        candidates = [k for k in (j - 1, j) if 0 <= k < len(right_s)]
        best = min(candidates, key=lambda k: abs(right_s[k] - stamp))
        if abs(right_s[best] - stamp) <= tolerance_s and (not pairs or best > pairs[-1][1]):
            pairs.append((i, best))
    return pairs


def frame_numbers(stamps_s: np.ndarray) -> list[int]:
    """Frame numbers for sorted pair stamps: consecutive, with a jump of 2 after a gap longer than
    GAP_FACTOR median periods (so no clip spans the gap)."""
    if len(stamps_s) < 2:
        return list(range(len(stamps_s)))
    periods = np.diff(stamps_s)
    gap = GAP_FACTOR * float(np.median(periods))
    numbers = [0]
    for period in periods:
        numbers.append(numbers[-1] + (2 if period > gap else 1))
    return numbers


def _bag_identity(bag: Path) -> list[dict]:
    files = sorted(p for p in bag.rglob("*") if p.is_file()) if bag.is_dir() else [bag]
    return [{"path": str(p.resolve()), "bytes": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns} for p in files]


def open_bag(bag: Path) -> Any:
    """An unopened rosbags AnyReader of `bag` (use it in a `with` block) with the ROS 2 Kilted message types."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    if not bag.exists():
        raise FileNotFoundError(f"bag not found: {bag}")
    try:
        return AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_KILTED))
    except Exception as error:  # rosbags raises its own errors for every unreadable layout
        raise ValueError(f"cannot read {bag} as a rosbag2 ({type(error).__name__}: {error})") from error


def bag_connections(reader: Any, topic: str, types: tuple[str, ...], bag: Path) -> list[Any]:
    """The connections of `topic`; ValueError listing the bag's topics when it is absent or of another type."""
    found = [c for c in reader.connections if c.topic == topic]
    if not found:
        available = sorted({c.topic for c in reader.connections})
        raise ValueError(f"topic {topic} is not in {bag}; topics there: {', '.join(available)}")
    if found[0].msgtype not in types:
        raise ValueError(f"topic {topic} in {bag} carries {found[0].msgtype}, expected {' or '.join(types)}")
    return found


def _first_message(reader: Any, connections: list[Any]) -> Any:
    for connection, _, raw in reader.messages(connections=connections):
        return reader.deserialize(raw, connection.msgtype)
    raise ValueError(f"topic {connections[0].topic} has no message")


def _topic_stamps(reader: Any, connections: list[Any]) -> np.ndarray:
    """Header stamps (seconds) of one topic's messages, in the bag's order (pass 1: nothing is kept)."""
    return np.array([stamp_s(reader.deserialize(raw, connection.msgtype))
                     for connection, _, raw in reader.messages(connections=connections)])


def _write_frames(reader: Any, connections: list[Any], wanted: dict[int, int], folder: Path,
                  image_size: tuple[int, int]) -> None:
    """Decode the messages whose bag-order index is in `wanted` and write them as `<folder>/<number>.png`."""
    for index, (connection, _, raw) in enumerate(reader.messages(connections=connections)):
        if index not in wanted:
            continue
        message = reader.deserialize(raw, connection.msgtype)
        rgb = decode_image_message(message, connection.msgtype)
        if (rgb.shape[1], rgb.shape[0]) != image_size:
            raise ValueError(f"{connection.topic} image at {stamp_s(message):.3f} s is {rgb.shape[1]}x{rgb.shape[0]}, "
                             f"its camera_info says {image_size[0]}x{image_size[1]}")
        cv2.imwrite(str(folder / f"{wanted[index]:06d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def bag_stereo_sequence(bag: str | Path, topics: BagStereoTopics, cache_dir: str | Path,
                        tolerance_s: float = 0.01, name: str | None = None) -> StereoSequence:
    """The stereo pairs of a bag as a `StereoSequence` of cached PNG frames (decoded on the first call only)."""
    bag = Path(bag)
    topics = topics.resolved()
    if tolerance_s < 0:
        raise ValueError(f"stamp tolerance must be >= 0 s, got {tolerance_s}")
    key = hashlib.sha256(json.dumps({"bag": _bag_identity(bag) if bag.exists() else str(bag),
                                     "topics": topics.__dict__, "tolerance_s": tolerance_s,
                                     "version": _CACHE_VERSION}, sort_keys=True).encode()).hexdigest()[:24]
    folder = Path(cache_dir) / key
    if not (folder / "frames.json").is_file():
        _decode_bag_to(bag, topics, tolerance_s, folder)
    index = json.loads((folder / "frames.json").read_text())
    rig = StereoRig(baseline_m=index["baseline_m"], camera_matrix=np.asarray(index["camera_matrix"]),
                    image_size=tuple(index["image_size"]))
    frames = tuple(index["frames"])
    return StereoSequence(name=name or f"bag/{bag.name}", frames=frames,
                          left=tuple(folder / "left" / f"{f:06d}.png" for f in frames),
                          right=tuple(folder / "right" / f"{f:06d}.png" for f in frames),
                          rig=rig, stamps_s=tuple(index["stamps_s"]))


def _decode_bag_to(bag: Path, topics: BagStereoTopics, tolerance_s: float, folder: Path) -> None:
    """Decode the matched pairs into `folder` (written under a temporary name, then renamed).

    Two passes over the bag: stamps first, then only the paired images are decoded, so memory stays
    at one image whatever the bag's length.
    """
    if topics.left_info is None or topics.right_info is None:
        raise ValueError(f"camera_info topics of {topics} are not set; pass topics.resolved()")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    try:
        with open_bag(bag) as reader:
            image_types = (IMAGE_TYPE, COMPRESSED_TYPE)
            left_conn = bag_connections(reader, topics.left_image, image_types, bag)
            right_conn = bag_connections(reader, topics.right_image, image_types, bag)
            rig = rig_from_camera_info(
                _first_message(reader, bag_connections(reader, topics.left_info, (CAMERA_INFO_TYPE,), bag)),
                _first_message(reader, bag_connections(reader, topics.right_info, (CAMERA_INFO_TYPE,), bag)))
            left_s, right_s = _topic_stamps(reader, left_conn), _topic_stamps(reader, right_conn)
            left_order, right_order = np.argsort(left_s, kind="stable"), np.argsort(right_s, kind="stable")
            pairs = match_stamps(left_s[left_order], right_s[right_order], tolerance_s)
            if not pairs:
                raise ValueError(f"no left/right image pair of {bag} has stamps within {tolerance_s} s "
                                 f"({len(left_s)} left, {len(right_s)} right images); raise the stamp tolerance")
            stamps = left_s[left_order[[i for i, _ in pairs]]]
            numbers = frame_numbers(stamps)
            for side, order, column, connections in (("left", left_order, 0, left_conn),
                                                     ("right", right_order, 1, right_conn)):
                (staging / side).mkdir()
                wanted = {int(order[pair[column]]): number for pair, number in zip(pairs, numbers, strict=True)}
                _write_frames(reader, connections, wanted, staging / side, rig.image_size)
        (staging / "frames.json").write_text(json.dumps({
            "frames": numbers, "stamps_s": stamps.tolist(), "baseline_m": rig.baseline_m,
            "camera_matrix": rig.camera_matrix.tolist(), "image_size": list(rig.image_size)}))
        try:
            os.replace(staging, folder)
        except OSError:
            if not (folder / "frames.json").is_file():  # another process may have finished first
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging)
