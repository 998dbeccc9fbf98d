"""Frame counters of the depth node and their diagnostic_msgs/DiagnosticStatus (rates, latency, drops, resets,
ignored camera_info messages)."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue


@dataclass
class _Window:
    """Counts since the last report."""

    received: int = 0
    processed: int = 0
    failed: int = 0
    camera_infos_ignored: int = 0
    latency_s: float = 0.0
    model_s: float = 0.0


class FrameStats:
    """Thread-safe counters: frames received / processed / dropped / failed, resets, latency, last error,
    camera_info messages ignored as unusable and the last reason.

    `status()` turns the counts since its previous call into rates and means (one report period).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.received = self.processed = self.dropped = self.failed = self.resets = 0
        self.camera_infos_ignored = 0
        self.last_reset_reason = ""
        self.last_error = ""
        self.last_camera_info_problem = ""
        self._window = _Window()
        self._window_start = time.monotonic()

    def frame_received(self, replaced_unprocessed: bool) -> None:
        """A new image arrived; replaced_unprocessed: it overwrote a frame the model never saw (a drop)."""
        with self._lock:
            self.received += 1
            self._window.received += 1
            self.dropped += int(replaced_unprocessed)

    def frame_processed(self, latency_s: float, model_s: float) -> None:
        """Outputs published; latency_s from receipt to publication, model_s inside the network."""
        with self._lock:
            self.processed += 1
            self._window.processed += 1
            self._window.latency_s += latency_s
            self._window.model_s += model_s

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

    def state_reset(self, reason: str) -> None:
        with self._lock:
            self.resets += 1
            self.last_reset_reason = reason

    def status(self, name: str, hardware_id: str, extra: dict[str, str] | None = None) -> DiagnosticStatus:
        """DiagnosticStatus for the period since the previous call: OK, WARN (frames failed, camera_info
        messages were ignored, or images arrive but none was processed) or STALE (no images)."""
        now = time.monotonic()
        with self._lock:
            window, self._window = self._window, _Window()
            period = max(now - self._window_start, 1e-9)
            self._window_start = now
            totals = (self.received, self.processed, self.dropped, self.failed, self.resets, self.camera_infos_ignored)
            last_reset_reason, last_error = self.last_reset_reason, self.last_error
            last_camera_info_problem = self.last_camera_info_problem
        processed = max(window.processed, 1)
        values = {
            "input_rate_hz": f"{window.received / period:.2f}",
            "output_rate_hz": f"{window.processed / period:.2f}",
            "latency_ms": f"{1e3 * window.latency_s / processed:.1f}" if window.processed else "",
            "model_ms": f"{1e3 * window.model_s / processed:.1f}" if window.processed else "",
            "frames_received": str(totals[0]),
            "frames_processed": str(totals[1]),
            "frames_dropped": str(totals[2]),
            "frames_failed": str(totals[3]),
            "resets": str(totals[4]),
            "last_reset_reason": last_reset_reason,
            "last_error": last_error,
            "camera_infos_ignored": str(totals[5]),
            "last_camera_info_problem": last_camera_info_problem,
            **(extra or {}),
        }
        if window.failed:
            level, message = DiagnosticStatus.WARN, f"{window.failed} frame(s) failed: {last_error}"
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
