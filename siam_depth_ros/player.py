"""Replay a rosbag2 over ROS 2 with its recorded timing (`siam-depth-play`), no `ros2 bag` CLI needed.

The recorded CDR bytes are published as they are (rclpy's `publish(bytes)`), so nothing is decoded
or re-encoded. Timing follows the bag's receive times scaled by `rate`. Topics recorded with a
transient-local offered QoS (and `/tf_static` always) are published latched (reliable, transient
local); the other topics reliable and volatile by default. Looping replays the bag unchanged, so
stamps jump back at every pass (the depth node resets its recurrent state on that, as intended).
Any message type whose ROS package is importable is replayed, e.g. sensor_msgs/CompressedImage on the
`.../image_raw/compressed` topics of `siam-depth-kitti2bag --compressed`.

The command line (`siam-depth-play`) points Fast DDS at the package's shared-memory profile
(`config/fastdds_shm.xml`, see `siam_depth_ros.dds_profile`) unless the user has set a profile, and logs
which profile it uses: without it, KITTI-sized images go over fragmented UDP and are often lost.
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import rclpy
from builtin_interfaces.msg import Time
from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rclpy.utilities import remove_ros_args
from rosbags.interfaces import Connection, QosDurability
from rosbags.rosbag2 import Reader
from rosgraph_msgs.msg import Clock
from std_srvs.srv import Trigger

from siam_depth_ros.dds_profile import apply_default_profile

TF_STATIC_TOPIC = "/tf_static"
CLOCK_TOPIC = "/clock"
#: Queue depth of volatile topics (latched topics keep every message recorded on them).
QUEUE_DEPTH = 10
#: How long the last reliable messages may take to be acknowledged before the publishers go away.
ACK_TIMEOUT_S = 2.0
#: Longest sleep (s) between checks for pause, resume and stop.
POLL_S = 0.05


@dataclass
class PlayStats:
    """What one `play_bag` call did: messages published per topic, topics skipped (with the reason),
    completed passes through the bag, wall-clock seconds spent, bag seconds of one pass, and whether
    `stop_event` ended it early."""

    published: Counter[str] = field(default_factory=Counter)
    skipped_topics: dict[str, str] = field(default_factory=dict)
    loops: int = 0
    wall_time_s: float = 0.0
    bag_duration_s: float = 0.0
    stopped: bool = False

    @property
    def total(self) -> int:
        return sum(self.published.values())


def message_class(msgtype: str) -> type:
    """The rclpy message class of a ROS 2 type name like `sensor_msgs/msg/Image`.

    Raises ImportError naming the ROS package to install when the type's package is not importable.
    """
    package, kind, name = _split_type(msgtype)
    try:
        module = importlib.import_module(f"{package}.{kind}")
    except ImportError:
        raise ImportError(f"message package {package!r} is not installed (needed for {msgtype}; install "
                          f"ros-<distro>-{package.replace('_', '-')})") from None
    try:
        return getattr(module, name)
    except AttributeError:
        raise ImportError(f"{package}.{kind} has no message {name!r} (needed for {msgtype})") from None


def _split_type(msgtype: str) -> tuple[str, str, str]:
    parts = msgtype.split("/")
    if len(parts) != 3:
        raise ValueError(f"not a ROS 2 message type name (package/msg/Name): {msgtype!r}")
    return parts[0], parts[1], parts[2]


def is_latched(connection: Connection) -> bool:
    """True for /tf_static and for topics whose recorded offered QoS is transient-local."""
    offered = getattr(connection.ext, "offered_qos_profiles", [])
    return connection.topic == TF_STATIC_TOPIC or any(
        profile.durability == QosDurability.TRANSIENT_LOCAL for profile in offered)


def playback_qos(connection: Connection, reliable: bool = True) -> QoSProfile:
    """QoS for replaying one bag connection: latched topics reliable + transient local keeping all their
    recorded messages; the rest keep-last QUEUE_DEPTH, volatile, reliable (or best effort)."""
    if is_latched(connection):
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(1, connection.msgcount),
                          reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=QUEUE_DEPTH,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)


def _clock_message(stamp_ns: int) -> Clock:
    return Clock(clock=Time(sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000)))


class _Playback:
    """Publishers of one bag on one node and the timed publishing loop."""

    def __init__(self, node: Node, reader: Reader, topics: Sequence[str] | None, rate: float, clock_hz: float | None,
                 reliable: bool, stop_event: threading.Event, paused: threading.Event, stats: PlayStats) -> None:
        self.node, self.reader, self.rate, self.stats = node, reader, rate, stats
        self.stop_event, self.paused = stop_event, paused
        known = {connection.topic for connection in reader.connections}
        unknown = sorted(set(topics or ()) - known)
        if unknown:
            raise ValueError(f"topics {unknown} are not in the bag; it has {sorted(known)}")
        connections = [c for c in reader.connections if topics is None or c.topic in topics]
        self.publishers: dict[str, Publisher] = {}
        for connection in connections:
            if connection.topic in self.publishers or connection.topic in stats.skipped_topics:
                continue
            try:
                msg_class = message_class(connection.msgtype)
            except ImportError as error:
                stats.skipped_topics[connection.topic] = str(error)
                node.get_logger().warning(f"not publishing {connection.topic}: {error}")
                continue
            self.publishers[connection.topic] = node.create_publisher(
                msg_class, connection.topic, playback_qos(connection, reliable))
        self.clock_publisher = None
        #: Longest sleep between checks of pause/stop (and the /clock period when publishing it).
        self.poll_s = POLL_S
        if clock_hz is not None:
            self.clock_publisher = node.create_publisher(
                Clock, CLOCK_TOPIC, QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
            self.poll_s = min(POLL_S, 1.0 / clock_hz)
        self.first_stamp_ns: int | None = None
        self.origin = 0.0  # monotonic seconds at which the pass's first message is due
        self.playable = [c for c in connections if c.topic in self.publishers]

    def wait_for_subscribers(self, topics: Sequence[str], timeout_s: float) -> None:
        """Block until each topic has a matched subscription; TimeoutError names the ones without."""
        missing = sorted(set(topics) - set(self.publishers))
        if missing:
            raise ValueError(f"cannot wait for {missing}: not published from this bag")
        deadline = time.monotonic() + timeout_s
        while True:
            waiting = [t for t in topics if self.publishers[t].get_subscription_count() == 0]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"no subscriber on {waiting} after {timeout_s:.0f} s")
            if self.stop_event.wait(0.05):
                return

    def play_once(self) -> bool:
        """One pass through the bag with its recorded timing; False if stop_event ended it."""
        self.first_stamp_ns = None
        for connection, stamp_ns, raw in self.reader.messages(connections=self.playable):
            if self.first_stamp_ns is None:
                self.first_stamp_ns, self.origin = stamp_ns, time.monotonic()
            if not self._wait_for(stamp_ns):
                return False
            self.publishers[connection.topic].publish(bytes(raw))
            self.stats.published[connection.topic] += 1
        return True

    def _bag_time_ns(self, now: float) -> int:
        return self.first_stamp_ns + int((now - self.origin) * self.rate * 1e9)

    def _wait_for(self, stamp_ns: int) -> bool:
        """Sleep until bag time reaches `stamp_ns` (held while paused), publishing /clock meanwhile.

        Returns False when stop_event ends the wait.
        """
        while not self.stop_event.is_set():
            if self.paused.is_set():
                self._hold(stamp_ns)
                continue
            bag_now_ns = self._bag_time_ns(time.monotonic())
            if self.clock_publisher is not None:
                self.clock_publisher.publish(_clock_message(min(bag_now_ns, stamp_ns)))
            remaining_s = (stamp_ns - bag_now_ns) / 1e9 / self.rate
            if remaining_s <= 0:
                return True
            self.stop_event.wait(min(remaining_s, self.poll_s))
        return False

    def _hold(self, next_stamp_ns: int) -> None:
        """Stay paused (bag time frozen, /clock repeated) until resumed or stopped; then shift the timeline."""
        held_from = time.monotonic()
        frozen_ns = min(self._bag_time_ns(held_from), next_stamp_ns)
        while self.paused.is_set() and not self.stop_event.is_set():
            if self.clock_publisher is not None:
                self.clock_publisher.publish(_clock_message(frozen_ns))
            self.stop_event.wait(self.poll_s)
        self.origin += time.monotonic() - held_from

    def close(self) -> None:
        """Let reliable subscribers acknowledge the last messages, then remove the publishers."""
        for publisher in self.publishers.values():
            if publisher.qos_profile.reliability == ReliabilityPolicy.RELIABLE:
                publisher.wait_for_all_acked(Duration(seconds=ACK_TIMEOUT_S))
            self.node.destroy_publisher(publisher)
        if self.clock_publisher is not None:
            self.node.destroy_publisher(self.clock_publisher)


def play_bag(path: str | Path, rate: float = 1.0, loop: bool = False, clock: bool = False, node: Node | None = None,
             stop_event: threading.Event | None = None, topics: Sequence[str] | None = None,
             reliable: bool = True, clock_hz: float = 40.0, wait_for: Sequence[str] = (),
             wait_timeout_s: float = 30.0, paused: threading.Event | None = None) -> PlayStats:
    """Publish the messages of the rosbag2 at `path` with their recorded timing scaled by `rate`.

    node: publish from this node (else a temporary one; rclpy must be initialised). loop: replay until
    `stop_event` is set. clock: also publish /clock (bag time) at `clock_hz` (at least 20 Hz) and before
    each message. topics: only these topics. reliable: False publishes non-latched topics best effort.
    wait_for: topics that must have a subscriber before playback starts (TimeoutError after
    `wait_timeout_s`). paused: while this event is set, playback holds (bag time stands still) and
    resumes where it stopped.
    Topics whose message package is not importable are skipped and listed in `PlayStats.skipped_topics`.
    """
    if not rate > 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    if clock and not clock_hz > 0:
        raise ValueError(f"clock_hz must be > 0, got {clock_hz}")
    path = Path(path)
    if not (path / "metadata.yaml").is_file():
        raise FileNotFoundError(f"not a rosbag2 folder (no metadata.yaml): {path}")
    own_node = node is None
    if own_node:
        if not rclpy.ok():
            raise RuntimeError("rclpy.init() must be called before play_bag without a node")
        node = rclpy.create_node("siam_depth_player")
    stop_event = stop_event or threading.Event()
    stats = PlayStats()
    start = time.monotonic()
    try:
        with Reader(path) as reader:
            stats.bag_duration_s = reader.duration / 1e9 if reader.message_count else 0.0
            playback = _Playback(node, reader, topics, rate, clock_hz if clock else None, reliable, stop_event,
                                 paused or threading.Event(), stats)
            try:
                playback.wait_for_subscribers(wait_for, wait_timeout_s)
                while playback.playable and not stop_event.is_set():
                    if not playback.play_once():
                        break
                    stats.loops += 1
                    if not loop:
                        break
            finally:
                playback.close()
    finally:
        stats.stopped = stop_event.is_set()
        stats.wall_time_s = time.monotonic() - start
        if own_node:
            node.destroy_node()
    return stats


def add_pause_services(node: Node, paused: threading.Event) -> None:
    """std_srvs/Trigger services `~/pause`, `~/resume` and `~/toggle_pause` that set/clear `paused`."""

    def handler(action: str):
        def handle(_request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
            if action == "pause" or (action == "toggle_pause" and not paused.is_set()):
                paused.set()
            else:
                paused.clear()
            response.success, response.message = True, "paused" if paused.is_set() else "playing"
            node.get_logger().info(response.message)
            return response
        return handle

    for action in ("pause", "resume", "toggle_pause"):
        node.create_service(Trigger, f"~/{action}", handler(action))


def main(argv: Sequence[str] | None = None) -> int:
    """`siam-depth-play BAG [--rate R] [--loop] [--clock] [--start-paused] [--topics T ...] [--wait-for T ...]`."""
    parser = argparse.ArgumentParser(
        prog="siam-depth-play", description="Publish a rosbag2's messages with their recorded timing "
        "(/tf_static and other transient-local topics latched). Pause/resume with the std_srvs/Trigger "
        "services ~/pause, ~/resume, ~/toggle_pause; stop with Ctrl-C.")
    parser.add_argument("bag", type=Path, help="rosbag2 folder (MCAP or sqlite3)")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0)")
    parser.add_argument("--loop", action="store_true", help="replay until stopped")
    parser.add_argument("--clock", action="store_true", help="publish /clock with the bag time")
    parser.add_argument("--clock-hz", type=float, default=40.0, help="/clock rate with --clock (default 40)")
    parser.add_argument("--start-paused", action="store_true", help="wait for ~/resume before playing")
    parser.add_argument("--topics", nargs="+", metavar="TOPIC", help="only these topics")
    parser.add_argument("--best-effort", action="store_true",
                        help="publish non-latched topics best effort instead of reliable")
    parser.add_argument("--wait-for", nargs="+", default=[], metavar="TOPIC",
                        help="start only once each of these topics has a subscriber")
    parser.add_argument("--wait-timeout", type=float, default=30.0,
                        help="seconds to wait for --wait-for subscribers (default 30)")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(remove_ros_args(["siam-depth-play", *argv])[1:])

    # Before rclpy.init: Fast DDS reads its profile once, when the first participant is created.
    profile = apply_default_profile()
    # Ctrl-C / SIGTERM end playback through stop_event, so the publishers close normally.
    rclpy.init(args=["siam-depth-play", *argv], signal_handler_options=SignalHandlerOptions.NO)
    stop_event, paused = threading.Event(), threading.Event()
    if args.start_paused:
        paused.set()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop_event.set())
    node = rclpy.create_node("siam_depth_player")
    add_pause_services(node, paused)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    service_thread = threading.Thread(target=executor.spin, daemon=True)
    service_thread.start()
    logger = node.get_logger()
    (logger.warning if profile.warning else logger.info)(profile.message)
    try:
        logger.info(f"playing {args.bag} at rate {args.rate}{' in a loop' if args.loop else ''}"
                    f"{' (paused: call ~/resume)' if args.start_paused else ''}")
        stats = play_bag(args.bag, rate=args.rate, loop=args.loop, clock=args.clock, node=node,
                         stop_event=stop_event, topics=args.topics, reliable=not args.best_effort,
                         clock_hz=args.clock_hz, wait_for=args.wait_for, wait_timeout_s=args.wait_timeout,
                         paused=paused)
    except (FileNotFoundError, ValueError, TimeoutError) as error:
        logger.error(str(error))
        return 2
    finally:
        executor.shutdown()
        service_thread.join(timeout=5.0)
        node.destroy_node()
        rclpy.try_shutdown()
    print(f"published {stats.total} messages on {len(stats.published)} topics in {stats.wall_time_s:.2f} s "
          f"({stats.loops} full pass(es) of {stats.bag_duration_s:.2f} s bag time"
          f"{', stopped' if stats.stopped else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
