"""Writing the bag: the planned messages (`BagMessage`, each built only when written) into a new rosbag2
(MCAP with zstd chunks, or sqlite3) with the offered QoS players latch on; a failed or interrupted write
removes the bag it had started.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
from tqdm import tqdm

from siam_depth_ros.kitti2bag_messages import TF_STATIC_TOPIC, TF_TOPIC, TYPESTORE

#: rosbag2 metadata version written (8 is read by Jazzy and later).
BAG_VERSION = 8

STORAGE_PLUGINS = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
#: MCAP chunk compression choices (sqlite3 stores messages uncompressed).
CHUNK_COMPRESSIONS = ("zstd", "none")


def _qos(durability: QosDurability, depth: int) -> Qos:
    unset = QosTime(0, 0)  # 0 = the RMW default (no deadline / lifespan / lease)
    return Qos(QosHistory.KEEP_LAST, depth, QosReliability.RELIABLE, durability, unset, unset,
               QosLiveliness.AUTOMATIC, unset, False)


#: Offered QoS recorded in the bag metadata: `ros2 bag play` and `siam-depth-play` latch transient-local topics.
SENSOR_QOS = _qos(QosDurability.VOLATILE, 10)
LATCHED_QOS = _qos(QosDurability.TRANSIENT_LOCAL, 1)
#: /tf as tf2's broadcasters offer it (a listener keeps 100).
TF_QOS = _qos(QosDurability.VOLATILE, 100)


@dataclass(frozen=True)
class BagMessage:
    """One message of the plan: its bag time, topic and type, and how to build it."""

    stamp_ns: int
    topic: str
    msgtype: str
    build: Callable[[], object]
    source: Path | None = None  # the file the message is read from (named in errors)


def _offered_qos(topic: str) -> Qos:
    if topic == TF_STATIC_TOPIC:
        return LATCHED_QOS
    return TF_QOS if topic == TF_TOPIC else SENSOR_QOS


def bag_bytes(bag_path: Path) -> int:
    return sum(path.stat().st_size for path in bag_path.rglob("*") if path.is_file())


class ConversionInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped a conversion before its bag was complete; the partial bag was removed."""


def write_bag(bag_path: Path, storage: str, chunk_compression: str, plan: Sequence[BagMessage], progress: bool,
               stop_requested: Callable[[], bool] = lambda: False,
               on_message: Callable[[int], None] | None = None) -> None:
    """Write `plan` to a new bag at `bag_path`; on any failure or interruption remove what was written.

    stop_requested: checked before every message; when it returns True the conversion stops with
    ConversionInterrupted. on_message: called with the number of messages written after each one.
    """
    writer = Writer(bag_path, version=BAG_VERSION, storage_plugin=STORAGE_PLUGINS[storage])
    if chunk_compression == "zstd":
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    writer.open()  # creates bag_path: from here on, a failure must not leave it behind
    try:
        connections = {}
        for message in plan:
            if message.topic not in connections:
                connections[message.topic] = writer.add_connection(
                    message.topic, message.msgtype, typestore=TYPESTORE, offered_qos_profiles=[_offered_qos(
                        message.topic)])
        for written, message in enumerate(tqdm(plan, desc=f"writing {bag_path.name}", unit="msg",
                                               disable=not progress)):
            if stop_requested():
                raise ConversionInterrupted(f"interrupted after {written} of {len(plan)} messages")
            try:
                raw = TYPESTORE.serialize_cdr(message.build(), message.msgtype)
            except (OSError, ValueError, cv2.error) as error:
                source = f" from {message.source}" if message.source is not None else ""
                raise ValueError(f"cannot write {message.topic}{source}: {error}") from error
            writer.write(connections[message.topic], message.stamp_ns, raw)
            if on_message is not None:
                on_message(written + 1)
        writer.close()
    except BaseException:
        try:
            writer.abort()
        finally:
            shutil.rmtree(bag_path, ignore_errors=True)
        raise
