"""Frame counters of the depth node and their diagnostic_msgs/DiagnosticStatus (rates, latency, drops, resets,
ignored camera_info messages, frames shrunk to max_image_pixels, the time of each processing stage).

Stage timings: for every stage the node reports (`STAGES`: input conversion — with compressed input the
JPEG/PNG decode —, the estimator's preprocess /
model / postprocess, building each output, publishing, and `processing`, the whole frame in the worker)
the status holds `<stage>_ms`, the mean per processed frame over the report period, and
`<stage>_total_s`, the sum since the node started; differences of the totals between two reports give
exact means over any stretch of frames (what `benchmarks.node_latency` uses).
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

#: Stages timed per processed frame, in processing order ("processing" is the whole frame).
STAGES = ("convert_input", "preprocess", "model", "postprocess", "build_depth", "build_depth_camera_info",
          "build_disparity", "build_points", "build_depth_colored", "build_depth_confidence", "publish",
          "processing")


@dataclass
class _Window:
    """Counts since the last report."""

    received: int = 0
    processed: int = 0
    failed: int = 0
    camera_infos_ignored: int = 0
    latency_s: float = 0.0
    stage_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))


class FrameStats:
    """Thread-safe counters: frames received / processed / dropped / failed, resets, latency, last error,
    camera_info messages ignored as unusable and the last reason.

    `status()` turns the counts since its previous call into rates and means (one report period).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.received = self.processed = self.dropped = self.failed = self.resets = 0
        self.camera_infos_ignored = self.downscaled = 0
        self.last_reset_reason = ""
        self.last_error = ""
        self.last_camera_info_problem = ""
        self._stage_totals_s: dict[str, float] = defaultdict(float)
        self._window = _Window()
        self._window_start = time.monotonic()

    def frame_received(self, replaced_unprocessed: bool) -> None:
        """A new image arrived; replaced_unprocessed: it overwrote a frame the model never saw (a drop)."""
        with self._lock:
            self.received += 1
            self._window.received += 1
            self.dropped += int(replaced_unprocessed)

    def frame_processed(self, latency_s: float, stage_s: Mapping[str, float]) -> None:
        """Outputs published; latency_s from receipt to publication, stage_s the seconds of each of STAGES
        the frame went through (stages it skipped count as 0)."""
        unknown = set(stage_s) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stage(s) {sorted(unknown)}; known: {', '.join(STAGES)}")
        with self._lock:
            self.processed += 1
            self._window.processed += 1
            self._window.latency_s += latency_s
            for stage, seconds in stage_s.items():
                self._window.stage_s[stage] += seconds
                self._stage_totals_s[stage] += seconds

    def frame_failed(self, error: str) -> None:
        with self._lock:
            self.failed += 1
            self._window.failed += 1
            self.last_error = error

    def error_reported(self, error: str) -> None:
        """A problem that is not a frame's (e.g. a failed model reload)."""
        with self._lock:
            self.last_error = error

    def camera_info_ignored(self, reason: str) -> None:
        """A camera_info message was unusable (e.g. fx <= 0) and dropped; `reason` says why."""
        with self._lock:
            self.camera_infos_ignored += 1
            self._window.camera_infos_ignored += 1
            self.last_camera_info_problem = reason

    def frame_downscaled(self) -> None:
        """A frame larger than max_image_pixels was shrunk before processing."""
        with self._lock:
            self.downscaled += 1

    def state_reset(self, reason: str) -> None:
        with self._lock:
            self.resets += 1
            self.last_reset_reason = reason

    def status(self, name: str, hardware_id: str, extra: dict[str, str] | None = None,
               idle_message: str | None = None) -> DiagnosticStatus:
        """DiagnosticStatus for the period since the previous call: OK, WARN (frames failed, camera_info
        messages were ignored, or images arrive but none was processed) or STALE (no images; with
        `idle_message`, e.g. an inactive lifecycle node, STALE with that message)."""
        now = time.monotonic()
        with self._lock:
            window, self._window = self._window, _Window()
            period = max(now - self._window_start, 1e-9)
            self._window_start = now
            totals = (self.received, self.processed, self.dropped, self.failed, self.resets, self.camera_infos_ignored,
                      self.downscaled)
            last_reset_reason, last_error = self.last_reset_reason, self.last_error
            last_camera_info_problem = self.last_camera_info_problem
            stage_totals = dict(self._stage_totals_s)
        processed = max(window.processed, 1)
        stage_means = {f"{stage}_ms": f"{1e3 * window.stage_s[stage] / processed:.1f}" if window.processed else ""
                       for stage in STAGES}
        values = {
            "input_rate_hz": f"{window.received / period:.2f}",
            "output_rate_hz": f"{window.processed / period:.2f}",
            "latency_ms": f"{1e3 * window.latency_s / processed:.1f}" if window.processed else "",
            **stage_means,
            "frames_received": str(totals[0]),
            "frames_processed": str(totals[1]),
            "frames_dropped": str(totals[2]),
            "frames_failed": str(totals[3]),
            "resets": str(totals[4]),
            "last_reset_reason": last_reset_reason,
            "last_error": last_error,
            "camera_infos_ignored": str(totals[5]),
            "frames_downscaled": str(totals[6]),
            "last_camera_info_problem": last_camera_info_problem,
            **{f"{stage}_total_s": f"{stage_totals.get(stage, 0.0):.6f}" for stage in STAGES},
            **(extra or {}),
        }
        if window.failed:
            level, message = DiagnosticStatus.WARN, f"{window.failed} frame(s) failed: {last_error}"
        elif idle_message is not None:
            level, message = DiagnosticStatus.STALE, idle_message
        elif window.received == 0:
            level, message = DiagnosticStatus.STALE, "no images received"
        elif window.camera_infos_ignored:
            level, message = (DiagnosticStatus.WARN, f"{window.camera_infos_ignored} camera_info message(s) ignored: "
                              f"{last_camera_info_problem}")
        elif window.processed == 0:
            level, message = DiagnosticStatus.WARN, "images received but none processed yet"
        else:
            level, message = DiagnosticStatus.OK, f"{values['output_rate_hz']} Hz, {values['latency_ms']} ms latency"
        return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                                values=[KeyValue(key=key, value=value) for key, value in values.items()])
