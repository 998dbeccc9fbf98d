"""The depth node's camera intrinsics: camera_info messages paired with images by stamp, or fallback intrinsics.

`CameraInfoCache.add` keeps the last CAMERA_INFO_CACHE usable camera_info messages by stamp, and the newest
one of each image size; `intrinsics_for(stamp, size)` returns the one of the image's stamp, else the newest
one. The intrinsics are those of the rectified image (`conversions.camera_info_matrix`: P when set, else K). A
camera_info of another size than the image (a stray publisher on the topic, a camera switching modes) is ignored
in favour of the newest one of the image's size, reported through `on_mismatch` every time it happens (the node
counts each and logs them by its one rule, `reporting.ProblemLog`); only when no camera_info of the image's size
has ever arrived is the frame refused. While no camera_info
has ever arrived, the first image waits up to CAMERA_INFO_GRACE_S for one (cameras often publish the image
just before its camera_info), then the node runs on fallback intrinsics (fx = fy = fallback_fx_ratio *
width, principal point at the centre), said once in the log. Thread-safe; needs only the message types,
not a running ROS node.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from sensor_msgs.msg import CameraInfo

from siam_depth_core.geometry import ImageSize, fallback_camera_matrix
from siam_depth_ros.conversions import camera_info_matrix
from siam_depth_ros.frame_slot import FrameError

#: How long the first image waits for a first camera_info before using fallback intrinsics, seconds.
CAMERA_INFO_GRACE_S = 0.2
#: camera_info messages kept for pairing with images by stamp.
CAMERA_INFO_CACHE = 30


class Logger(Protocol):
    """What the cache logs through (an rclpy logger has these)."""

    def info(self, message: str) -> object: ...

    def warning(self, message: str) -> object: ...


@dataclass(frozen=True)
class Intrinsics:
    """The intrinsics an image is processed with: (3,3) K in pixels and the camera_info it came from
    (None: fallback intrinsics, no camera_info)."""

    camera_matrix: np.ndarray
    info: CameraInfo | None

    @property
    def fx_px(self) -> float:
        """Focal length along x, pixels."""
        return float(self.camera_matrix[0, 0])


class CameraInfoCache:
    """camera_info messages by stamp (ns); see the module docstring. topic: for log lines. on_mismatch: called
    with a one-line message every time a camera_info of another size is passed over for an image (without it, the
    cache logs a warning the first time for each pair of sizes)."""

    def __init__(self, topic: str, fallback_fx_ratio: float, logger: Logger, grace_s: float = CAMERA_INFO_GRACE_S,
                 capacity: int = CAMERA_INFO_CACHE, on_mismatch: Callable[[str], None] | None = None) -> None:
        self.topic = topic
        self.fallback_fx_ratio = fallback_fx_ratio
        self._logger = logger
        self._grace_s = grace_s
        self._capacity = capacity
        self._arrived = threading.Condition()
        self._by_stamp: OrderedDict[int, CameraInfo] = OrderedDict()
        self._latest: CameraInfo | None = None
        self._latest_by_size: dict[tuple[int, int], CameraInfo] = {}
        self._mismatches_said: set[tuple[tuple[int, int], tuple[int, int]]] = set()
        self._on_mismatch = on_mismatch
        self._using_fallback = False

    def add(self, msg: CameraInfo) -> None:
        """Keep a camera_info; raises ValueError (and keeps nothing) when its K is unusable."""
        camera_info_matrix(msg)
        stamp_ns = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        with self._arrived:
            self._by_stamp[stamp_ns] = msg
            while len(self._by_stamp) > self._capacity:
                self._by_stamp.popitem(last=False)
            self._latest = msg
            self._latest_by_size[(int(msg.width), int(msg.height))] = msg
            self._arrived.notify_all()

    def intrinsics_for(self, stamp_ns: int, size: ImageSize) -> Intrinsics:
        """The intrinsics of an image of `size` taken at `stamp_ns`; FrameError when the camera_info found
        describes an image of another size."""
        with self._arrived:
            if self._latest is None and not self._using_fallback:
                self._arrived.wait_for(lambda: self._latest is not None, self._grace_s)
            info = self._by_stamp.get(stamp_ns, self._latest)
            same_size = self._latest_by_size.get((size.width, size.height))
        if info is None:
            if not self._using_fallback:
                self._logger.warning(
                    f"no camera_info on {self.topic}: publishing depth with fallback intrinsics fx = fy = "
                    f"{self.fallback_fx_ratio} * width, principal point at the image centre (metric scale is only "
                    "right for a camera like the training one)")
                self._using_fallback = True
            return Intrinsics(fallback_camera_matrix(size, self.fallback_fx_ratio), None)
        if (info.width, info.height) != (size.width, size.height):
            if same_size is None:
                raise FrameError(f"camera_info is {info.width}x{info.height} but the image is {size}; "
                                 "skipping frames until a camera_info of the image's size arrives")
            self._say_mismatch(info, size, same_size)
            info = same_size
        if self._using_fallback:
            self._logger.info("camera_info received: using its intrinsics instead of the fallback")
            self._using_fallback = False
        return Intrinsics(camera_info_matrix(info), info)

    def _say_mismatch(self, ignored: CameraInfo, size: ImageSize, used: CameraInfo) -> None:
        key = ((int(ignored.width), int(ignored.height)), (size.width, size.height))
        stamp = used.header.stamp
        message = (f"ignoring camera_info of {ignored.width}x{ignored.height} on {self.topic} for {size} images (another "
                   f"publisher on the topic, or the camera changed mode?): using the last {size} camera_info (stamp "
                   f"{stamp.sec}.{stamp.nanosec:09d})")
        if self._on_mismatch is not None:
            self._on_mismatch(message)
        elif key not in self._mismatches_said:
            self._mismatches_said.add(key)
            self._logger.warning(message)
