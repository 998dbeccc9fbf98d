"""The depth node's worker thread: the newest frame of every camera -> one estimator call -> every output published.

`DepthPipeline.configure` makes a `FrameWorker` with what that configuration serves (the model, the cameras with
their camera_info caches and publishers, the output builder); it runs until the frame slots are closed. Each
cycle takes the newest frame of every camera that has one (`LatestFrameSlots`; a silent camera delays nobody),
prepares each, runs them in one `DepthEstimator.step_streams` call (the unnamed camera of a single-camera node:
`step`; a frame the estimator refuses is retried alone, so one failing camera never costs the others their
frames), then builds and publishes each camera's outputs. Per frame: decode (a raw image is viewed; a compressed one's declared size is checked against max_image_pixels
before it is decoded, `image_decoding`), the intrinsics for its stamp and size, downscaling to
max_image_pixels, the step under the serving model's lock, every output message built, then all published
unless the node was deactivated meanwhile. A frame that fails is counted in /diagnostics and
reported through the `ProblemLog`; it never stops the worker.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from siam_depth_core.geometry import ImageSize
from siam_depth_core.runtime.inference import DepthEstimator, DepthResult, StreamFrame
from siam_depth_ros.camera_info import Intrinsics
from siam_depth_ros.cameras import UNNAMED, Camera
from siam_depth_ros.conversions import camera_image_to_numpy, decode_compressed_image
from siam_depth_ros.frame_slot import FrameError, LatestFrameSlots
from siam_depth_ros.input_limit import downscale_frame, fitted_size, rescaled_intrinsics
from siam_depth_ros.model_loader import ModelHolder
from siam_depth_ros.outputs import OPTIONAL_OUTPUTS, InputFrame, OutputBuilder
from siam_depth_ros.parameters import NodeSettings
from siam_depth_ros.reporting import ProblemLog, problem_key

#: A received image message and when it arrived (`time.monotonic()`).
ReceivedFrame = tuple[Image | CompressedImage, float]


def _stamp_ns(header: Header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def describe_input(msg: Image | CompressedImage) -> str:
    """A frame as log lines name it: `1242x375 'rgb8'` or `compressed 'rgb8; jpeg compressed bgr8' (240123 bytes)`."""
    if isinstance(msg, CompressedImage):
        return f"compressed {msg.format!r} ({len(msg.data)} bytes)"
    return f"{msg.width}x{msg.height} {msg.encoding!r}"


@dataclass
class _Prepared:
    """A camera's frame of one cycle, decoded and with its intrinsics, ready for the model."""

    camera: Camera
    msg: Image | CompressedImage
    received_at: float
    started: float
    converted: float
    stamp_ns: int
    frame: InputFrame
    intrinsics: Intrinsics
    prepared: float


class FrameWorker:
    """The worker thread of one configuration: `start()`, then frames put in `frames` (by camera name) are processed
    (the newest of every camera whenever the model is free) until `frames` is closed; `join()` waits for the thread."""

    def __init__(self, node: Node, frames: LatestFrameSlots[str, ReceivedFrame], model: ModelHolder[NodeSettings],
                 cameras: dict[str, Camera], outputs: OutputBuilder, settings: NodeSettings, problems: ProblemLog,
                 is_active: Callable[[], bool]) -> None:
        self.node = node
        self.settings = settings
        self._log = node.get_logger()
        self._frames = frames
        self._model = model
        self._cameras = cameras
        self._outputs = outputs
        self._problems = problems
        self._is_active = is_active
        self._single = list(cameras) == [UNNAMED]  # the single-camera node: estimator.step, as always
        self._thread = threading.Thread(target=self._work, name="siam_depth_worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout=timeout)

    def _work(self) -> None:
        """Worker thread: process the newest frame of every camera whenever there is one, until the slots close."""
        frames = self._frames
        while (taken := frames.take_all()) is not None:
            if not self._cycle(taken):
                return

    def _failed(self, camera: Camera, msg: Image | CompressedImage, error: Exception) -> bool:
        """Count and report a frame that failed; False when the node is shutting down (the worker then ends)."""
        if not self.node.context.ok():
            return False
        stamp_s = _stamp_ns(msg.header) * 1e-9
        text = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
        camera.stats.frame_failed(text)
        where = f"{camera.label} ({camera.image_topic}): " if camera.name else ""
        self._problems.report(f"{where}skipping {describe_input(msg)} frame (stamp {stamp_s:.3f} s): {text}",
                              key=problem_key(where + text))
        return True

    def _cycle(self, taken: dict[str, ReceivedFrame]) -> bool:
        """One frame of each camera in `taken`; False when the node is shutting down."""
        prepared: list[_Prepared] = []
        for name, (msg, received_at) in taken.items():
            camera = self._cameras[name]
            try:
                prepared.append(self._prepare(camera, msg, received_at))
            except Exception as error:  # one bad frame must never stop the node, nor the other cameras
                if not self._failed(camera, msg, error):
                    return False
        if not prepared:
            return True
        with self._model.serving() as (estimator, settings):
            results = self._estimate(estimator, prepared)
        for item, result in zip(prepared, results, strict=True):
            try:
                if isinstance(result, Exception):
                    raise result
                self._publish(item, result, estimator, settings)
            except Exception as error:
                if not self._failed(item.camera, item.msg, error):
                    return False
        return True

    def _decode(self, msg: Image | CompressedImage) -> tuple[InputFrame, ImageSize]:
        """The frame's pixels (a view of a raw image; a compressed one decoded) and their encoding, and the size the
        frame declares: a compressed frame's header is checked against max_image_pixels before it is decoded (a
        decompression bomb is refused, a bigger JPEG decoded at reduced scale, then smaller than declared)."""
        if isinstance(msg, CompressedImage):
            decoded = decode_compressed_image(msg, self.settings.max_image_pixels)
            return InputFrame(decoded.image, decoded.encoding, msg.header), decoded.declared_size
        frame = InputFrame(camera_image_to_numpy(msg), msg.encoding, msg.header)
        return frame, frame.size

    def _output_frame_id(self, camera: Camera, settings: NodeSettings, input_frame_id: str) -> str:
        """The frame_id parameter if set, else the input's (an empty one is warned about once per camera)."""
        if settings.frame_id:
            return settings.frame_id
        if not input_frame_id and not camera.warned_empty_frame_id:
            camera.warned_empty_frame_id = True
            self._log.warning(f"images on {camera.image_topic} have an empty frame_id, so the outputs have none and "
                              "RViz/TF cannot place them: set the frame_id parameter (the camera's optical frame) or "
                              "fix the camera driver (logged once)")
        return input_frame_id

    def _prepare(self, camera: Camera, msg: Image | CompressedImage, received_at: float) -> _Prepared:
        start = time.perf_counter()
        stamp_ns = _stamp_ns(msg.header)
        if stamp_ns == camera.last_stamp_ns:
            raise FrameError("duplicate stamp: the previous frame had the same stamp (a repeated message, or two "
                             "publishers on one topic?); skipping it so that outputs keep unique stamps")
        frame, declared = self._decode(msg)
        converted = time.perf_counter()
        intrinsics = camera.camera_infos.intrinsics_for(stamp_ns, declared)  # it describes the declared size
        if frame.size != declared:  # a JPEG decoded at reduced scale
            intrinsics = rescaled_intrinsics(intrinsics, declared, frame.size)
        fitted = fitted_size(frame.size, self.settings.max_image_pixels)
        if fitted != declared:
            camera.stats.frame_downscaled()
            where = f"{camera.label}: " if camera.name else ""
            self._problems.report(f"{where}{declared} images exceed max_image_pixels={self.settings.max_image_pixels}: "
                                  f"processing and publishing them at {fitted} (/diagnostics counts them as "
                                  "frames_downscaled)", severity="warning", key=f"downscaled {camera.name} {declared}")
        if fitted != frame.size:
            frame, intrinsics = downscale_frame(frame, intrinsics, fitted)
        return _Prepared(camera, msg, received_at, start, converted, stamp_ns, frame, intrinsics, time.perf_counter())

    def _estimate(self, estimator: DepthEstimator, prepared: list[_Prepared]) -> list[DepthResult | Exception]:
        """One result (or the error) per prepared frame: all cameras in one batched `step_streams` call; when the
        estimator refuses a frame (ValueError, before any state changed), each frame alone, so that only the bad
        one fails."""
        if self._single:
            item = prepared[0]
            try:
                return [estimator.step(item.frame.image, item.stamp_ns * 1e-9, item.frame.encoding,
                                       fx_px=item.intrinsics.fx_px)]
            except Exception as error:
                return [error]
        frames = [StreamFrame(item.camera.name, item.frame.image, item.stamp_ns * 1e-9, item.frame.encoding,
                              item.intrinsics.fx_px) for item in prepared]
        try:
            results: list[DepthResult | Exception] = list(estimator.step_streams(frames))
            if len(frames) > 1 and estimator.backend.batch_range.chunk(len(frames)) > 1:
                for item in prepared:
                    item.camera.frames_batched += 1
            return results
        except ValueError as error:
            if len(frames) == 1:
                return [error]
        except Exception as error:  # the backend failed: every frame of the call failed with it
            return [error] * len(frames)
        results = []
        for frame in frames:
            try:
                results.append(estimator.step_streams([frame])[0])
            except Exception as error:
                results.append(error)
        return results

    def _publish(self, item: _Prepared, result: DepthResult, estimator: DepthEstimator,
                 settings: NodeSettings) -> None:
        camera, msg = item.camera, item.msg
        modelled = time.perf_counter()
        camera.last_stamp_ns = item.stamp_ns
        camera.resets.frame(result.reset_reason, result.stamp)
        if result.reset_reason:
            camera.stats.state_reset(result.reset_reason)
        header = Header(stamp=msg.header.stamp, frame_id=self._output_frame_id(camera, settings, msg.header.frame_id))
        publishers = camera.publishers
        wanted = [topic for topic in OPTIONAL_OUTPUTS
                  if topic in publishers and publishers[topic].get_subscription_count() > 0]
        outputs = self._outputs.build(result, item.frame, item.intrinsics, header, estimator, wanted)  # all first
        built = time.perf_counter()
        if not self._is_active():
            return  # deactivated while this frame was processed: it is not published
        for topic, message in outputs.messages.items():
            publishers[topic].publish(message)
        done = time.perf_counter()
        convert = item.converted - item.started
        stages = {"convert_input": convert, **result.timings, **outputs.timings, "publish": done - built}
        # several cameras: this camera's own stages, the batched model call counted for each of its cameras
        processing = (done - item.started if self._single else
                      item.prepared - item.started + sum(result.timings.values()) + done - modelled)
        camera.stats.frame_processed(time.monotonic() - item.received_at, {**stages, "processing": processing})
