"""What the depth node keeps per camera: its topic names, intrinsics, counters, watchdog, reset log and ROS entities.

A node serves the cameras of its `cameras` parameter (`parameters.read_cameras`), or one unnamed camera (name "")
when it is empty: the single-camera node, whose topics are the plain `image`, `camera_info`, `depth`, ... A named
camera's topics are the same under its name (`front/image`, `front/depth`, ...) and its state is the estimator's
stream of that name (`DepthEstimator.step_streams`). No ROS import: the entities are created by `pipeline.py`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from siam_depth_ros.camera_info import CameraInfoCache
from siam_depth_ros.diagnostics import FrameStats
from siam_depth_ros.reporting import InputWatchdog, ResetLog

#: The name of the one camera of a node whose `cameras` parameter is empty.
UNNAMED = ""


def camera_topic(camera: str, relative: str) -> str:
    """`relative` (a topic or service name) under the camera's name: `front/depth`; unchanged for the unnamed one."""
    return f"{camera}/{relative}" if camera else relative


@dataclass
class Camera:
    """One camera of the node. image_topic: the resolved topic its images come from (for log lines); publishers:
    its output publishers by relative output name (`outputs.OUTPUT_TYPES`); last_stamp_ns: of its last processed
    frame (a repeat is skipped). The ROS entities are None while the node does not subscribe (or not configured)."""

    name: str
    image_topic: str
    camera_infos: CameraInfoCache
    resets: ResetLog
    stats: FrameStats = field(default_factory=FrameStats)
    watchdog: InputWatchdog = field(default_factory=InputWatchdog)
    publishers: dict[str, Any] = field(default_factory=dict)
    image_sub: Any = None
    camera_info_sub: Any = None
    reset_srv: Any = None
    last_stamp_ns: int | None = None
    warned_empty_frame_id: bool = False
    frames_batched: int = 0  # frames that ran in one model call with other cameras' frames

    def topic(self, relative: str) -> str:
        return camera_topic(self.name, relative)

    @property
    def label(self) -> str:
        """How log lines and /diagnostics name it: `camera 'front'`, or "" for the unnamed camera."""
        return f"camera {self.name!r}" if self.name else ""
