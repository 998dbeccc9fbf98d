"""How the depth node reports problems without flooding its log, and notices input that never arrives.

- `ProblemLog`: one rule for every recurring problem (a bad frame, an unusable camera_info, a QoS
  mismatch, silent publishers): each distinct problem is logged at the start of an episode — its first
  occurrence after `episode_gap_s` without it —, and while the episode lasts at most once per `repeat_s`,
  saying how often it occurred meanwhile. Problems are told apart by their message with the numbers
  masked (`problem_key`), so a flaky driver sending truncated images of varying lengths is one problem.
  Quoted names (an encoding '32FC1') keep their digits. The node counts every occurrence in /diagnostics
  regardless.
- `ResetLog`: recurrent-state resets. An isolated one (a bag loop, a gap, a new image size) is one INFO line with
  its reason; resets on frame after frame (time going back and forth, sizes alternating: two publishers on one
  topic, or a camera whose clock jumps) are one warning naming that cause, under the ProblemLog's rule.
- `InputWatchdog`: publishers are matched on the image topic but nothing has arrived since they matched
  (large messages lost without the shared-memory profile, or a publisher that never sends).
- `RosLogHandler`: the warnings and errors of `siam_depth_core` (Python logging) in the node's ROS log.

Pure Python on a monotonic (steady) clock; no ROS import (the ROS logger is passed in).
"""
from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

#: A problem that has not occurred for this long has ended; its next occurrence is logged again, seconds.
EPISODE_GAP_S = 10.0
#: While a problem keeps occurring, it is logged again at most this often, seconds.
REPEAT_S = 60.0
#: Matched publishers that deliver nothing for this long are reported, seconds.
SILENT_PUBLISHER_S = 5.0

_NUMBER = re.compile(r"[-+]?\d+(\.\d+)?([eE][-+]?\d+)?")
_QUOTED = re.compile(r"('[^']*'|\"[^\"]*\")")


class Logger(Protocol):
    """What a ProblemLog writes to (an rclpy logger has these)."""

    def warning(self, message: str) -> object: ...

    def error(self, message: str) -> object: ...


def problem_key(message: str) -> str:
    """`message` with every number outside quotes replaced by '#': what makes two occurrences the same
    problem (sizes and stamps vary; quoted names such as an encoding '32FC1' tell problems apart)."""
    parts = _QUOTED.split(message)
    return "".join(part if index % 2 else _NUMBER.sub("#", part) for index, part in enumerate(parts))


@dataclass
class _Episode:
    started_s: float
    last_seen_s: float
    last_logged_s: float
    since_logged: int = 0


class ProblemLog:
    """Logs each distinct problem once per episode and rate-limited within it; see the module docstring.

    logger: where lines go; episode_gap_s, repeat_s: seconds; clock: monotonic seconds (for tests).
    Thread-safe (the worker thread and the executor both report).
    """

    def __init__(self, logger: Logger, episode_gap_s: float = EPISODE_GAP_S, repeat_s: float = REPEAT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < episode_gap_s <= repeat_s:
            raise ValueError(f"need 0 < episode_gap_s <= repeat_s, got {episode_gap_s} and {repeat_s}")
        self._logger = logger
        self._episode_gap_s = episode_gap_s
        self._repeat_s = repeat_s
        self._clock = clock
        self._lock = threading.Lock()
        self._episodes: dict[str, _Episode] = {}

    def report(self, message: str, severity: str = "error", key: str | None = None) -> bool:
        """One occurrence of a problem; logs `message` (severity "error" or "warning") when the rule says
        so and returns whether it did. key: what identifies the problem (default `problem_key(message)`)."""
        if severity not in ("error", "warning"):
            raise ValueError(f"severity must be 'error' or 'warning', got {severity!r}")
        key = problem_key(message) if key is None else key
        now = self._clock()
        with self._lock:
            episode = self._episodes.get(key)
            if episode is None or now - episode.last_seen_s > self._episode_gap_s:
                self._episodes[key] = _Episode(started_s=now, last_seen_s=now, last_logged_s=now)
                line = message
            elif now - episode.last_logged_s >= self._repeat_s:
                line = (f"{message} (still happening: {episode.since_logged + 1} time(s) in the last "
                        f"{now - episode.last_logged_s:.0f} s; /diagnostics counts every one)")
                episode.last_seen_s = episode.last_logged_s = now
                episode.since_logged = 0
            else:
                episode.last_seen_s = now
                episode.since_logged += 1
                return False
        # one call site per severity: rclpy's logger refuses a call site whose severity changes
        if severity == "error":
            self._logger.error(line)
        else:
            self._logger.warning(line)
        return True


class InfoLogger(Protocol):
    def info(self, message: str) -> object: ...


#: A reset at most this many processed frames after the previous one continues a run of resets.
FREQUENT_RESET_FRAMES = 2
#: The reason of a reset asked for through ~/reset: said as it is, never part of a run (nothing is wrong).
REQUESTED_RESET_REASON = "~/reset service called"
#: From this many resets in a run on, they are frequent: one warning under the ProblemLog's rule, no INFO lines.
FREQUENT_RESET_RUN = 3


class ResetLog:
    """Logs the recurrent-state resets of processed frames; see the module docstring.

    Call `frame(reason, stamp_s)` for every processed frame (reason None: no reset). Resets each at most
    FREQUENT_RESET_FRAMES frames after the previous one form a run (a reset asked for through ~/reset,
    REQUESTED_RESET_REASON, is an INFO line and ends any run). The first FREQUENT_RESET_RUN - 1 resets of a run
    (an isolated reset: a bag loop, a gap, a new image size) are INFO lines with their reason; from
    then on the run is reported to `problems` as a warning that names the likely cause and counts the run (one
    problem key, so the run is one episode whatever the reasons of its resets).
    """

    def __init__(self, logger: InfoLogger, problems: ProblemLog, topic: str,
                 frequent_frames: int = FREQUENT_RESET_FRAMES, frequent_run: int = FREQUENT_RESET_RUN) -> None:
        self._logger = logger
        self._problems = problems
        self._topic = topic
        self._frequent_frames = frequent_frames
        self._frequent_run = frequent_run
        self._frames = 0
        self._last_reset_frame: int | None = None
        self._run = 0

    def frame(self, reason: str | None, stamp_s: float) -> None:
        self._frames += 1
        if not reason:
            return
        if reason == REQUESTED_RESET_REASON:
            self._last_reset_frame, self._run = None, 0
            self._logger.info(f"recurrent state reset before frame {stamp_s:.3f} s: {reason}")
            return
        last, self._last_reset_frame = self._last_reset_frame, self._frames
        self._run = self._run + 1 if last is not None and self._frames - last <= self._frequent_frames else 1
        if self._run < self._frequent_run:
            self._logger.info(f"recurrent state reset before frame {stamp_s:.3f} s: {reason}")
            return
        self._problems.report(
            f"the recurrent state is reset on frame after frame ({self._run} resets in a row, each within "
            f"{self._frequent_frames} frames of the previous; the latest before frame {stamp_s:.3f} s: {reason}): the "
            f"images on {self._topic} look like two streams interleaved — most likely two publishers on the topic "
            "with different clocks or image sizes (`ros2 topic info -v` lists them; /diagnostics: image_publishers), "
            "or a camera whose clock jumps; each such frame is estimated without the previous ones (/diagnostics "
            "counts every reset: resets, last_reset_reason)", severity="warning", key="frequent state resets")


class InputWatchdog:
    """Notices publishers that are matched on a topic but have delivered nothing since they matched.

    Call `frame_received()` for every message and `check(publishers)` periodically with the topic's
    matched publisher count; `check` returns the seconds of silence once it reaches `silent_s` (else
    None). Once a message has arrived the watchdog stays quiet until every publisher has gone and a
    new one matches (a publisher that stops after sending is a paused source, not a lost connection).
    """

    def __init__(self, silent_s: float = SILENT_PUBLISHER_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.silent_s = silent_s
        self._clock = clock
        self._lock = threading.Lock()
        self._matched_since: float | None = None
        self._delivered = False

    def frame_received(self) -> None:
        with self._lock:
            self._delivered = True

    def reset(self) -> None:
        """Forget everything (e.g. when the node stops subscribing)."""
        with self._lock:
            self._matched_since, self._delivered = None, False

    def check(self, publishers: int) -> float | None:
        """Seconds since `publishers` (> 0) matched without any message, once >= silent_s; else None."""
        now = self._clock()
        with self._lock:
            if publishers <= 0:
                self._matched_since, self._delivered = None, False
                return None
            if self._matched_since is None:
                self._matched_since = now
            if self._delivered:
                return None
            silent = now - self._matched_since
            return silent if silent >= self.silent_s else None


class RosLogHandler(logging.Handler):
    """Forwards warnings and errors of `siam_depth_core` (Python logging) to the node's ROS logger."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__(logging.WARNING)
        self._ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        # one call site per severity: rclpy's logger refuses a call site whose severity changes
        if record.levelno >= logging.ERROR:
            self._ros_logger.error(text)
        else:
            self._ros_logger.warning(text)
