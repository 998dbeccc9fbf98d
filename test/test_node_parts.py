"""The depth node's pure pieces without DDS: camera_info cache, latest-frame slot, model holder, output builder,
problem log and input watchdog."""
from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy not installed (ROS extra)")

from sensor_msgs.msg import CameraInfo  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from siam_depth_core.geometry import ImageSize  # noqa: E402
from siam_depth_core.network.checkpoint import CheckpointError, ModelMeta, save_checkpoint  # noqa: E402
from siam_depth_core.runtime.backends.source import CheckpointSource  # noqa: E402
from siam_depth_core.runtime.inference import DepthEstimator  # noqa: E402
from siam_depth_ros.camera_info import CameraInfoCache, Intrinsics  # noqa: E402
from siam_depth_ros.conversions import (  # noqa: E402
    camera_info_matrix,
    image_to_numpy,
    make_camera_info,
    pointcloud2_to_array,
    unpack_rgb,
)
from siam_depth_ros.frame_slot import FrameError, LatestFrameSlot  # noqa: E402
from siam_depth_ros.model_loader import ModelHolder, ReloadInProgress  # noqa: E402
from siam_depth_ros.outputs import (  # noqa: E402
    COLORED,
    CONFIDENCE,
    DEPTH,
    DEPTH_INFO,
    DISPARITY,
    POINTS,
    InputFrame,
    OutputBuilder,
    OutputSettings,
)
from siam_depth_ros.reporting import InputWatchdog, ProblemLog, ResetLog, problem_key  # noqa: E402

SIZE = ImageSize(48, 160)
CAMERA_MATRIX = np.array([[100.0, 0.0, 79.5], [0.0, 100.0, 23.5], [0.0, 0.0, 1.0]])


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def info(self, message: str) -> None:
        self.lines.append(("info", message))

    def warning(self, message: str) -> None:
        self.lines.append(("warning", message))

    def error(self, message: str) -> None:
        self.lines.append(("error", message))


class _Clock:
    """A monotonic clock the test moves by hand, seconds."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def camera_info_intrinsics(info: CameraInfo) -> Intrinsics:
    return Intrinsics(camera_info_matrix(info), info)


def _info(stamp_ns: int, fx: float = 100.0, size: ImageSize = SIZE) -> CameraInfo:
    matrix = CAMERA_MATRIX.copy()
    matrix[0, 0] = fx
    info = make_camera_info(matrix, size.width, size.height)
    info.header.stamp.sec, info.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return info


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    meta = ModelMeta(net_width=0.125, height=32, width=96)
    return save_checkpoint(tmp_path_factory.mktemp("parts") / "tiny.pt", meta.build_network(), meta)


def test_camera_info_is_paired_by_stamp_else_the_newest_else_fallback_said_once() -> None:
    log = _Log()
    cache = CameraInfoCache("/cam/camera_info", 0.58, log, grace_s=0.01)
    for _ in range(2):
        fallback = cache.intrinsics_for(1, SIZE)
        assert fallback.info is None and fallback.fx_px == pytest.approx(0.58 * SIZE.width)
        np.testing.assert_allclose(fallback.camera_matrix[:2, 2], [(SIZE.width - 1) / 2, (SIZE.height - 1) / 2])
    assert [level for level, line in log.lines if "no camera_info on /cam/camera_info" in line] == ["warning"]
    cache.add(_info(10, fx=110.0))
    cache.add(_info(20, fx=120.0))
    assert cache.intrinsics_for(10, SIZE).fx_px == 110.0  # its own stamp
    assert cache.intrinsics_for(15, SIZE).fx_px == 120.0  # no camera_info of that stamp: the newest
    assert log.lines[-1] == ("info", "camera_info received: using its intrinsics instead of the fallback")
    with pytest.raises(FrameError, match="camera_info is 160x48 but the image is 80x48"):
        cache.intrinsics_for(20, ImageSize(48, 80))
    with pytest.raises(ValueError, match="no usable intrinsics"):
        cache.add(_info(30, fx=0.0))
    assert cache.intrinsics_for(30, SIZE).fx_px == 120.0  # the unusable one was not kept


def test_a_camera_info_of_another_size_is_passed_over_for_the_last_one_of_the_image_size() -> None:
    said: list[str] = []
    cache = CameraInfoCache("/cam/camera_info", 0.58, _Log(), grace_s=0.01, on_mismatch=said.append)
    cache.add(_info(10, fx=110.0))
    stray = ImageSize(375, 1242)
    for stamp in (20, 30):  # a stray publisher of another camera size, newer than the good one
        cache.add(_info(stamp, fx=700.0, size=stray))
    for stamp in (20, 30, 40):
        used = cache.intrinsics_for(stamp, SIZE)
        assert used.fx_px == 110.0 and used.info.header.stamp.nanosec == 10
    assert len(said) == 3 and all("ignoring camera_info of 1242x375" in line and "for 160x48 images" in line
                                  for line in said)  # every time (issue 27: the node counts each)
    assert cache.intrinsics_for(30, stray).fx_px == 700.0  # the stray size's own images use it
    with pytest.raises(FrameError, match="skipping frames until a camera_info of the image's size"):
        cache.intrinsics_for(30, ImageSize(48, 80))  # no camera_info of that size ever arrived


def test_a_camera_info_of_another_size_is_counted_every_time_and_logged_again_after_quiet() -> None:
    """Issue 27, item 5: like every other problem (the node wires on_mismatch to its counter and its ProblemLog);
    4 frames, 15 s without, 2 frames: counted 6 times, logged at the start of each episode."""
    log, clock = _Log(), _Clock()
    problems = ProblemLog(log, clock=clock)
    counted: list[str] = []

    def on_mismatch(message: str) -> None:  # what the node does with it
        counted.append(message)
        problems.report(message, severity="warning")

    cache = CameraInfoCache("/cam/camera_info", 0.58, _Log(), grace_s=0.01, on_mismatch=on_mismatch)
    cache.add(_info(10))
    stamp = 10
    for frames in (4, 2):
        for _ in range(frames):
            stamp += 100
            cache.add(_info(stamp, size=ImageSize(480, 640)))
            assert cache.intrinsics_for(stamp, SIZE).info.header.stamp.nanosec == 10
            clock.now += 0.1
        clock.now += 15.0
    assert len(counted) == 6
    assert [line for _, line in log.lines] == [counted[0], counted[4]]
    assert "ignoring camera_info of 640x480 on /cam/camera_info for 160x48 images" in counted[4]


def test_camera_info_intrinsics_are_the_projection_matrix_when_it_differs_from_k() -> None:
    """Issue 27, item 4: rectified images are described by P; K is the raw camera's."""
    info = _info(10, fx=150.0)
    info.p = np.hstack([CAMERA_MATRIX, np.zeros((3, 1))]).ravel()  # K fx 150, P fx 100
    cache = CameraInfoCache("/cam/camera_info", 0.58, _Log(), grace_s=0.01)
    cache.add(info)
    used = cache.intrinsics_for(10, SIZE)
    assert used.fx_px == 100.0 and used.info is info
    np.testing.assert_array_equal(used.camera_matrix, CAMERA_MATRIX)


def test_a_principal_point_far_outside_the_image_is_refused() -> None:
    for cx, cy in ((1e9, 23.5), (79.5, -1e9), (-161.0, 23.5), (79.5, 97.0)):
        matrix = CAMERA_MATRIX.copy()
        matrix[0, 2], matrix[1, 2] = cx, cy
        with pytest.raises(ValueError, match="principal point is far outside the 160x48 image"):
            camera_info_matrix(make_camera_info(matrix, SIZE.width, SIZE.height))
    matrix = CAMERA_MATRIX.copy()
    matrix[0, 2], matrix[1, 2] = -150.0, 90.0  # off-centre (a crop), but within [-W, 2W] x [-H, 2H]
    assert camera_info_matrix(make_camera_info(matrix, SIZE.width, SIZE.height))[0, 2] == -150.0


def test_an_oversized_frame_is_shrunk_with_its_intrinsics() -> None:
    from siam_depth_ros.input_limit import downscale_frame, fitted_size

    big = ImageSize(3000, 4000)
    fitted = fitted_size(big, 3840 * 2160)
    assert fitted.width * fitted.height <= 3840 * 2160 and abs(fitted.width / fitted.height - 4 / 3) < 1e-3
    assert fitted_size(SIZE, 3840 * 2160) == SIZE
    matrix = np.array([[2000.0, 0.0, 1999.5], [0.0, 2000.0, 1499.5], [0.0, 0.0, 1.0]])
    image = np.zeros((3000, 4000, 3), np.uint8)
    image[:, 2000:] = 200
    frame = InputFrame(image, "rgb8", Header(frame_id="cam"))
    info = make_camera_info(matrix, 4000, 3000, Header(frame_id="cam"))
    small, intrinsics = downscale_frame(frame, camera_info_intrinsics(info), fitted)
    assert small.image.shape == (fitted.height, fitted.width, 3) and small.encoding == "rgb8"
    assert intrinsics.info.width == fitted.width and intrinsics.info.header.frame_id == "cam"
    scale = fitted.width / 4000
    assert intrinsics.fx_px == pytest.approx(2000.0 * scale)
    assert intrinsics.camera_matrix[0, 2] == pytest.approx((fitted.width - 1) / 2, abs=0.01)
    assert small.image[:, : int(fitted.width / 2) - 2].max() == 0 and small.image[:, int(fitted.width / 2) + 2:].min() == 200


def test_first_image_waits_for_a_camera_info_that_arrives_just_after_it() -> None:
    cache = CameraInfoCache("/cam/camera_info", 0.58, _Log(), grace_s=30.0)  # returns as soon as it arrives
    threading.Timer(0.05, cache.add, args=(_info(5, fx=130.0),)).start()
    assert cache.intrinsics_for(5, SIZE).fx_px == 130.0


def test_camera_info_cache_keeps_only_the_newest_messages() -> None:
    cache = CameraInfoCache("/cam/camera_info", 0.58, _Log(), capacity=2)
    for stamp in (1, 2, 3):
        cache.add(_info(stamp, fx=100.0 + stamp))
    assert cache.intrinsics_for(1, SIZE).fx_px == 103.0  # stamp 1 was evicted: the newest is used
    assert cache.intrinsics_for(2, SIZE).fx_px == 102.0


def test_latest_frame_slot_keeps_the_newest_and_counts_drops() -> None:
    slot: LatestFrameSlot[int] = LatestFrameSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True and slot.put(3) is True
    assert slot.take() == 3 and slot.dropped == 2
    taken: list[int | None] = []
    first_taken = threading.Event()

    def consume() -> None:
        taken.append(slot.take())  # blocks until a frame is put
        first_taken.set()
        taken.append(slot.take())  # blocks until the slot is closed

    consumer = threading.Thread(target=consume)
    consumer.start()
    slot.put(4)
    assert first_taken.wait(30.0)
    slot.close()
    consumer.join(30.0)
    assert taken == [4, None]


def test_model_holder_loads_in_the_background_and_swaps_atomically(tiny_checkpoint: Path) -> None:
    release = threading.Event()
    events: list[str] = []

    def build(settings: str) -> DepthEstimator:
        if settings == "slow":
            release.wait(10.0)
        if settings == "broken":
            raise CheckpointError("checkpoint broken.pt is corrupt")
        return DepthEstimator(CheckpointSource(tiny_checkpoint))

    holder = ModelHolder(build, "first", lambda estimator, settings: events.append(f"reloaded {settings}"),
                         lambda settings, error, serving: events.append(f"failed {settings}: {error}; {serving}"))
    first, _ = holder.snapshot()
    holder.reload("slow")
    with pytest.raises(ReloadInProgress, match="still in progress"):
        holder.reload("other")
    with holder.serving() as (estimator, settings):  # frames are served meanwhile, by the first model
        assert estimator is first and settings == "first" and holder.loading == "slow"
    release.set()
    holder.join(10.0)
    estimator, settings = holder.snapshot()
    assert estimator is not first and settings == "slow" and holder.loading is None
    holder.reload("broken")
    holder.join(10.0)
    assert holder.snapshot() == (estimator, "slow")  # a failed load leaves the model serving
    assert events == ["reloaded slow", "failed broken: checkpoint broken.pt is corrupt; slow"]


def _result(tiny_checkpoint: Path) -> tuple[DepthEstimator, object, InputFrame]:
    estimator = DepthEstimator(CheckpointSource(tiny_checkpoint), min_depth=0.1, max_depth=80.0)
    image = np.random.default_rng(0).integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    result = estimator.step(image, 1.0, "bgr8", fx_px=100.0)
    return estimator, result, InputFrame(image, "bgr8", Header(frame_id="cam"))


def test_output_builder_makes_every_message_from_a_result(tiny_checkpoint: Path) -> None:
    from siam_depth_ros.camera_info import Intrinsics

    estimator, result, frame = _result(tiny_checkpoint)
    settings = OutputSettings(min_depth=0.1, max_depth=80.0, cloud_stride=2, cloud_min_depth=0.5,
                              cloud_max_depth=50.0, colored_min_depth=2.0)
    header = Header(frame_id="out_frame")
    header.stamp.sec = 7
    outputs = OutputBuilder(settings).build(result, frame, Intrinsics(CAMERA_MATRIX, None), header, estimator)
    assert list(outputs.messages) == [DEPTH, DEPTH_INFO, DISPARITY, POINTS, COLORED, CONFIDENCE]
    assert set(outputs.timings) == {"build_depth", "build_depth_camera_info", "build_disparity", "build_points",
                                    "build_depth_colored", "build_depth_confidence"}
    for msg in outputs.messages.values():
        assert msg.header.frame_id == "out_frame" and msg.header.stamp.sec == 7
    np.testing.assert_array_equal(image_to_numpy(outputs.messages[DEPTH]), result.depth_m)
    np.testing.assert_array_equal(camera_info_matrix(outputs.messages[DEPTH_INFO]), CAMERA_MATRIX)
    disparity = outputs.messages[DISPARITY]
    valid = np.isfinite(result.depth_m)
    np.testing.assert_allclose(result.depth_m[valid], disparity.f * disparity.t / image_to_numpy(disparity.image)[valid],
                               rtol=1e-4)
    assert disparity.delta_d == SIZE.width / estimator.input_size.width
    organised = outputs.messages[POINTS]  # one point per stride-th pixel, NaN where there is no depth in range
    assert (organised.height, organised.width) == result.depth_m[::2, ::2].shape
    cloud = pointcloud2_to_array(organised, skip_nans=True)
    assert cloud.size == ((result.depth_m[::2, ::2] >= 0.5) & (result.depth_m[::2, ::2] <= 50.0)).sum() > 0
    cols = np.rint(cloud["x"] / cloud["z"] * 100.0 + 79.5).astype(int)
    rows = np.rint(cloud["y"] / cloud["z"] * 100.0 + 23.5).astype(int)
    np.testing.assert_array_equal(unpack_rgb(cloud["rgb"]), frame.image[rows, cols, ::-1])  # bgr8 -> RGB
    assert outputs.messages[COLORED].encoding == "rgb8"
    confidence = outputs.messages[CONFIDENCE]
    assert confidence.encoding == "32FC1" and confidence.header.frame_id == "out_frame"
    np.testing.assert_array_equal(image_to_numpy(confidence), result.confidence)
    only_depth = OutputBuilder(settings).build(result, frame, Intrinsics(CAMERA_MATRIX, None), header, estimator,
                                               wanted=[])
    assert list(only_depth.messages) == [DEPTH, DEPTH_INFO]


def test_depth_camera_info_is_the_input_camera_info_restamped(tiny_checkpoint: Path) -> None:
    from siam_depth_ros.camera_info import Intrinsics

    estimator, result, frame = _result(tiny_checkpoint)
    info = _info(3, fx=123.0)
    info.distortion_model = "rational_polynomial"
    header = Header(frame_id="out_frame")
    settings = OutputSettings(0.1, 80.0, 2, 0.5, 50.0, 2.0)
    outputs = OutputBuilder(settings).build(result, frame, Intrinsics(camera_info_matrix(info), info), header,
                                            estimator, wanted=[])
    depth_info = outputs.messages[DEPTH_INFO]
    assert depth_info.header.frame_id == "out_frame" and depth_info.distortion_model == "rational_polynomial"
    assert list(depth_info.k) == list(info.k)


def test_cloud_min_confidence_leaves_out_the_unreliable_pixels_only(tiny_checkpoint: Path) -> None:
    from siam_depth_ros.camera_info import Intrinsics

    estimator, result, frame = _result(tiny_checkpoint)
    threshold = float(np.median(result.confidence))  # a random network: about half the pixels below it
    clouds = {}
    for minimum in (0.0, threshold):
        settings = OutputSettings(0.1, 80.0, 1, 0.0, 1000.0, 2.0, cloud_min_confidence=minimum)
        message = OutputBuilder(settings).points(result, frame, Intrinsics(CAMERA_MATRIX, None), Header())
        clouds[minimum] = pointcloud2_to_array(message, skip_nans=True)
    everything, reliable = clouds[0.0], clouds[threshold]
    assert everything.size == np.isfinite(result.depth_m).sum()
    expected = np.isfinite(result.depth_m) & (result.confidence >= threshold)
    assert reliable.size == expected.sum() and 0 < reliable.size < everything.size
    cols = np.rint(reliable["x"] / reliable["z"] * 100.0 + 79.5).astype(int)
    rows = np.rint(reliable["y"] / reliable["z"] * 100.0 + 23.5).astype(int)
    assert (result.confidence[rows, cols] >= threshold).all()
    with pytest.raises(ValueError, match=r"cloud_min_confidence must be in \[0, 1\], got 1.5"):
        OutputSettings(0.1, 80.0, 1, 0.0, 1000.0, 2.0, cloud_min_confidence=1.5)


def test_a_frame_whose_cloud_cannot_be_built_gives_no_message_at_all(tiny_checkpoint: Path) -> None:
    """The builder makes every message of a frame before the node publishes any: an output that fails (here
    the cloud, with a focal length no camera has) leaves nothing half-published for that stamp."""
    from siam_depth_ros.camera_info import Intrinsics

    estimator, result, frame = _result(tiny_checkpoint)
    broken = CAMERA_MATRIX.copy()
    broken[1, 1] = np.inf
    builder = OutputBuilder(OutputSettings(0.1, 80.0, 2, 0.5, 50.0, 2.0))
    with pytest.raises(ValueError, match="fy must be a positive finite number, got inf"):
        builder.build(result, frame, Intrinsics(broken, None), Header(), estimator)
    assert list(builder.build(result, frame, Intrinsics(broken, None), Header(), estimator, wanted=[]).messages) == [
        DEPTH, DEPTH_INFO]  # without the cloud the same frame builds


def test_a_single_pass_result_has_no_confidence_message(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from siam_depth_ros.camera_info import Intrinsics

    meta = ModelMeta(net_width=0.125, siamese=False, height=32, width=96)
    estimator = DepthEstimator(CheckpointSource(save_checkpoint(tmp_path / "single.pt", meta.build_network(), meta)))
    image = np.random.default_rng(0).integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    result = estimator.step(image, 1.0, "rgb8", fx_px=100.0)
    settings = OutputSettings(0.1, 80.0, 2, 0.5, 50.0, 2.0, cloud_min_confidence=0.9)
    outputs = OutputBuilder(settings).build(result, InputFrame(image, "rgb8", Header()),
                                            Intrinsics(CAMERA_MATRIX, None), Header(), estimator)
    assert CONFIDENCE not in outputs.messages and POINTS in outputs.messages
    assert pointcloud2_to_array(outputs.messages[POINTS], skip_nans=True).size > 0  # nothing to filter by: every point kept


def test_latest_frame_slot_clear_drops_the_waiting_frame() -> None:
    slot: LatestFrameSlot[int] = LatestFrameSlot()
    assert slot.clear() is False
    slot.put(1)
    assert slot.clear() is True
    slot.put(2)
    assert slot.take() == 2


def test_problem_key_masks_numbers() -> None:
    assert problem_key("needs 1440 bytes of data, got 7") == problem_key("needs 96 bytes of data, got 3")
    assert problem_key("fx=-1.5e+03, fy=nan") == "fx=#, fy=nan"
    assert problem_key("unsupported image encoding 'yuv422'") != problem_key("unsupported image encoding 'nv21'")
    assert problem_key("encoding '32FC1' in a 40x24 image") == "encoding '32FC1' in a #x# image"
    assert problem_key("encoding '32FC1'") != problem_key("encoding '64FC1'")


def test_problem_log_logs_once_per_episode_and_rate_limits_a_lasting_problem() -> None:
    log, clock = _Log(), _Clock()
    problems = ProblemLog(log, episode_gap_s=10.0, repeat_s=60.0, clock=clock)
    truncated = "skipping frame: needs {} bytes of data, got {}"
    assert problems.report(truncated.format(1440, 7)) is True  # first occurrence: logged
    for second in range(1, 60):  # interleaved with good frames, every second: one episode, silent
        clock.now += 1.0
        assert problems.report(truncated.format(1440 + second, second)) is False
    assert problems.report("ignoring camera_info: cx and cy must be finite", severity="warning") is True  # another
    clock.now += 1.0  # 60 s since it was logged, and it never stopped for 10 s: logged again, with the count
    assert problems.report(truncated.format(1, 2)) is True
    assert "still happening: 60 time(s) in the last 60 s" in log.lines[-1][1]
    clock.now += 11.0  # quiet for longer than the episode gap: the next occurrence starts a new episode
    assert problems.report(truncated.format(3, 4)) is True and log.lines[-1][1] == truncated.format(3, 4)
    assert [level for level, _ in log.lines] == ["error", "warning", "error", "error"]
    with pytest.raises(ValueError, match="severity"):
        problems.report("x", severity="fatal")


def test_reset_log_says_isolated_resets_and_warns_once_about_resets_on_every_frame() -> None:
    """Issue 27, item 6: two publishers on one topic reset the state on every frame: one warning naming the likely
    cause (with a count), not one INFO line per frame; isolated resets (a bag loop) keep their INFO line."""
    log, clock = _Log(), _Clock()
    resets = ResetLog(log, ProblemLog(log, clock=clock), "/cam/image")
    for loop in range(3):  # a bag looping every 50 frames: one INFO line per loop-around
        for frame in range(50):
            resets.frame("time went backwards" if loop and not frame else None, loop * 5.0 + frame * 0.1)
            clock.now += 0.1
    assert [level for level, _ in log.lines] == ["info", "info"]
    log.lines.clear()
    for frame in range(6):  # ~/reset called on every other frame (a test, a supervisor): asked for, said each time
        resets.frame("~/reset service called" if frame % 2 else None, 20.0 + frame * 0.1)
    assert [level for level, _ in log.lines] == ["info"] * 3
    log.lines.clear()
    for frame in range(20):  # two publishers 100 s apart, alternating
        resets.frame("time went backwards" if frame % 2 else "gap of 100.0 s", 100.0 * (frame % 2) + frame * 0.1)
        clock.now += 0.1
    assert [level for level, _ in log.lines] == ["info", "info", "warning"], log.lines
    warning = log.lines[-1][1]
    assert "3 resets in a row" in warning and "two publishers on the topic" in warning and "/cam/image" in warning
    for frame in range(20, 620):  # a minute more of it: said once more, with how often it happened
        resets.frame("time went backwards" if frame % 2 else "gap of 100.0 s", 100.0 * (frame % 2) + frame * 0.1)
        clock.now += 0.1
    assert [level for level, _ in log.lines] == ["info", "info", "warning", "warning"]
    assert "resets in a row" in log.lines[-1][1]
    assert re.search(r"\(still happening: \d+ time\(s\) in the last 60 s", log.lines[-1][1]), log.lines[-1]


def test_input_watchdog_reports_matched_publishers_that_never_deliver() -> None:
    clock = _Clock()
    watchdog = InputWatchdog(silent_s=5.0, clock=clock)
    assert watchdog.check(0) is None
    assert watchdog.check(1) is None  # just matched
    clock.now += 4.9
    assert watchdog.check(1) is None
    clock.now += 0.2
    assert watchdog.check(1) == pytest.approx(5.1)
    watchdog.frame_received()
    clock.now += 60.0
    assert watchdog.check(1) is None  # it delivered once: a pause is not a lost connection
    assert watchdog.check(0) is None  # the publisher left ...
    assert watchdog.check(1) is None  # ... a new one matched
    clock.now += 6.0
    assert watchdog.check(1) == pytest.approx(6.0)
