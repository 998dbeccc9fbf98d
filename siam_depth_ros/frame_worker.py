"""The depth node's worker thread: the newest received frame -> one estimator step -> every output published.

`DepthPipeline.configure` makes a `FrameWorker` with what that configuration serves (the model, the
camera_info cache, the output builder and the publishers); it runs until the frame slot is closed. Per
frame: decode (a raw image is viewed; a compressed one's declared size is checked against max_image_pixels
before it is decoded, `image_decoding`), the intrinsics for its stamp and size, downscaling to
max_image_pixels, one step under the serving model's lock, every output message built, then all published
unless the node was deactivated meanwhile. A frame that fails is counted in /diagnostics and
reported through the `ProblemLog`; it never stops the worker.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from siam_depth_core.geometry import ImageSize
from siam_depth_ros.camera_info import CameraInfoCache
from siam_depth_ros.conversions import camera_image_to_numpy, decode_compressed_image
from siam_depth_ros.diagnostics import FrameStats
from siam_depth_ros.frame_slot import FrameError, LatestFrameSlot
from siam_depth_ros.input_limit import downscale_frame, fitted_size, rescaled_intrinsics
from siam_depth_ros.model_loader import ModelHolder
from siam_depth_ros.outputs import OPTIONAL_OUTPUTS, InputFrame, OutputBuilder
from siam_depth_ros.parameters import NodeSettings
from siam_depth_ros.reporting import ProblemLog, ResetLog, problem_key

#: A received image message and when it arrived (`time.monotonic()`).
ReceivedFrame = tuple[Image | CompressedImage, float]


def _stamp_ns(header: Header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def describe_input(msg: Image | CompressedImage) -> str:
    """A frame as log lines name it: `1242x375 'rgb8'` or `compressed 'rgb8; jpeg compressed bgr8' (240123 bytes)`."""
    if isinstance(msg, CompressedImage):
        return f"compressed {msg.format!r} ({len(msg.data)} bytes)"
    return f"{msg.width}x{msg.height} {msg.encoding!r}"


class FrameWorker:
    """The worker thread of one configuration: `start()`, then frames put in `frames` are processed (the
    newest one whenever the model is free) until `frames` is closed; `join()` waits for the thread."""

    def __init__(self, node: Node, frames: LatestFrameSlot[ReceivedFrame], model: ModelHolder[NodeSettings],
                 camera_infos: CameraInfoCache, outputs: OutputBuilder, publishers: dict[str, Any],
                 settings: NodeSettings, image_topic: str, stats: FrameStats, problems: ProblemLog,
                 is_active: Callable[[], bool]) -> None:
        self.node = node
        self.settings = settings
        self.image_topic = image_topic
        self._log = node.get_logger()
        self._frames = frames
        self._model = model
        self._camera_infos = camera_infos
        self._outputs = outputs
        self._output_publishers = publishers
        self._stats = stats
        self._problems = problems
        self._is_active = is_active
        self._resets = ResetLog(self._log, problems, image_topic)
        self._warned_empty_frame_id = False
        self._last_stamp_ns: int | None = None  # of the last processed frame; a repeat of it is skipped
        self._thread = threading.Thread(target=self._work, name="siam_depth_worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout=timeout)

    def _work(self) -> None:
        """Worker thread: process the newest frame whenever there is one, until the slot is closed."""
        frames = self._frames
        while (taken := frames.take()) is not None:
            msg, received_at = taken
            try:
                self._process(msg, received_at)
            except Exception as error:  # one bad frame must never stop the node
                if not self.node.context.ok():
                    return
                stamp_s = _stamp_ns(msg.header) * 1e-9
                text = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
                self._stats.frame_failed(text)
                self._problems.report(f"skipping {describe_input(msg)} frame (stamp {stamp_s:.3f} s): {text}",
                                      key=problem_key(text))

    def _decode(self, msg: Image | CompressedImage) -> tuple[InputFrame, ImageSize]:
        """The frame's pixels (a view of a raw image; a compressed one decoded) and their encoding, and the size the
        frame declares: a compressed frame's header is checked against max_image_pixels before it is decoded (a
        decompression bomb is refused, a bigger JPEG decoded at reduced scale, then smaller than declared)."""
        if isinstance(msg, CompressedImage):
            decoded = decode_compressed_image(msg, self.settings.max_image_pixels)
            return InputFrame(decoded.image, decoded.encoding, msg.header), decoded.declared_size
        frame = InputFrame(camera_image_to_numpy(msg), msg.encoding, msg.header)
        return frame, frame.size

    def _output_frame_id(self, settings: NodeSettings, input_frame_id: str) -> str:
        """The frame_id parameter if set, else the input's (an empty one is warned about once)."""
        if settings.frame_id:
            return settings.frame_id
        if not input_frame_id and not self._warned_empty_frame_id:
            self._warned_empty_frame_id = True
            self._log.warning(f"images on {self.image_topic} have an empty frame_id, so the outputs have none and "
                              "RViz/TF cannot place them: set the frame_id parameter (the camera's optical frame) or "
                              "fix the camera driver (logged once)")
        return input_frame_id

    def _process(self, msg: Image | CompressedImage, received_at: float) -> None:
        start = time.perf_counter()
        model, camera_infos, builder = self._model, self._camera_infos, self._outputs
        stamp_ns = _stamp_ns(msg.header)
        if stamp_ns == self._last_stamp_ns:
            raise FrameError("duplicate stamp: the previous frame had the same stamp (a repeated message, or two "
                             "publishers on one topic?); skipping it so that outputs keep unique stamps")
        frame, declared = self._decode(msg)
        converted = time.perf_counter()
        intrinsics = camera_infos.intrinsics_for(stamp_ns, declared)  # the camera_info describes the declared size
        if frame.size != declared:  # a JPEG decoded at reduced scale
            intrinsics = rescaled_intrinsics(intrinsics, declared, frame.size)
        fitted = fitted_size(frame.size, self.settings.max_image_pixels)
        if fitted != declared:
            self._stats.frame_downscaled()
            self._problems.report(f"{declared} images exceed max_image_pixels={self.settings.max_image_pixels}: "
                                  f"processing and publishing them at {fitted} (/diagnostics counts them as "
                                  "frames_downscaled)", severity="warning", key=f"downscaled {declared}")
        if fitted != frame.size:
            frame, intrinsics = downscale_frame(frame, intrinsics, fitted)
        with model.serving() as (estimator, settings):
            result = estimator.step(frame.image, stamp_ns * 1e-9, frame.encoding, fx_px=intrinsics.fx_px)
        self._last_stamp_ns = stamp_ns
        self._resets.frame(result.reset_reason, result.stamp)
        if result.reset_reason:
            self._stats.state_reset(result.reset_reason)
        header = Header(stamp=msg.header.stamp, frame_id=self._output_frame_id(settings, msg.header.frame_id))
        publishers = self._output_publishers
        wanted = [topic for topic in OPTIONAL_OUTPUTS
                  if topic in publishers and publishers[topic].get_subscription_count() > 0]
        outputs = builder.build(result, frame, intrinsics, header, estimator, wanted)  # all, before any is sent
        built = time.perf_counter()
        if not self._is_active():
            return  # deactivated while this frame was processed: it is not published
        for topic, message in outputs.messages.items():
            publishers[topic].publish(message)
        done = time.perf_counter()
        self._stats.frame_processed(time.monotonic() - received_at, {
            "convert_input": converted - start, **result.timings, **outputs.timings, "publish": done - built,
            "processing": done - start})
