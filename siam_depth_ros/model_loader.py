"""The depth node's model: the serving estimator, swapped atomically for one loaded in a background thread.

The first model is loaded when the node starts (a failure stops the node). A reload requested later
(`ros2 param set`) runs in its own thread, so image callbacks and the executor are never blocked by it
(a TensorRT engine build can take minutes); the frames keep being served by the previous model until the
new one is ready, then the two are swapped under the lock that every frame's step holds. One reload at a
time: a request while one is running is refused. `build_estimator` makes the estimator the node's settings
describe, `describe_model` says in one line what serves.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from siam_depth_core.runtime.inference import DepthEstimator
from siam_depth_ros.parameters import CPU_THREAD_BACKENDS, NodeSettings

Settings = TypeVar("Settings")


class ReloadInProgress(RuntimeError):
    """A reload was requested while another one is still loading."""


class ModelHolder(Generic[Settings]):
    """The serving DepthEstimator and the settings it was built from.

    build: settings -> estimator (raises when the model cannot be loaded). on_reloaded(estimator,
    settings) and on_failed(settings that failed, error, settings still serving) are called from the
    reload thread after the swap or the failure.
    """

    def __init__(self, build: Callable[[Settings], DepthEstimator], settings: Settings,
                 on_reloaded: Callable[[DepthEstimator, Settings], None],
                 on_failed: Callable[[Settings, Exception, Settings], None]) -> None:
        self._build = build
        self._on_reloaded = on_reloaded
        self._on_failed = on_failed
        self._lock = threading.Lock()
        self._estimator = build(settings)
        self._settings = settings
        self._loading: Settings | None = None
        self._thread: threading.Thread | None = None

    @contextmanager
    def serving(self) -> Iterator[tuple[DepthEstimator, Settings]]:
        """Hold the serving model (no swap, reset or other step meanwhile): `with holder.serving() as (est, s):`."""
        with self._lock:
            yield self._estimator, self._settings

    def snapshot(self) -> tuple[DepthEstimator, Settings]:
        """The serving model and its settings, for reading (not for stepping)."""
        with self._lock:
            return self._estimator, self._settings

    @property
    def loading(self) -> Settings | None:
        """The settings being loaded, or None."""
        return self._loading

    def reload(self, settings: Settings) -> None:
        """Load `settings` in a background thread and swap it in when ready; ReloadInProgress if busy."""
        with self._lock:
            if self._loading is not None:
                raise ReloadInProgress("a model reload is still in progress; set the parameter again when it is done")
            self._loading = settings
        self._thread = threading.Thread(target=self._load, args=(settings,), name="siam_depth_model_reload",
                                        daemon=True)
        self._thread.start()

    def _load(self, settings: Settings) -> None:
        try:
            estimator = self._build(settings)
        except Exception as error:  # any failure to load must leave the running model serving
            with self._lock:
                self._loading = None
                serving = self._settings
            self._on_failed(settings, error, serving)
            return
        with self._lock:
            self._estimator, self._settings, self._loading = estimator, settings, None
        self._on_reloaded(estimator, settings)

    def join(self, timeout_s: float | None = None) -> None:
        """Wait for a reload in progress (if any) to finish."""
        if self._thread is not None:
            self._thread.join(timeout_s)


def build_estimator(settings: NodeSettings) -> DepthEstimator:
    """The DepthEstimator `settings` describe; raises CheckpointError/BackendError/ValueError if it cannot load."""
    return DepthEstimator(settings.model_source(), settings.runtime_options(), max_gap_s=settings.max_gap_s,
                          min_depth=settings.min_depth, max_depth=settings.max_depth,
                          baseline_m=settings.baseline_m or None)


def describe_model(estimator: DepthEstimator, settings: NodeSettings) -> str:
    """One line: backend (the one `backend: auto` chose, and why), precision (openvino), device, threads, network
    size, width multiplier, baseline, confidence and model file."""
    threads = (settings.num_threads or "library default") if settings.backend in CPU_THREAD_BACKENDS else "n/a (GPU)"
    confidence = "" if estimator.has_confidence else ", no confidence (single pass)"
    precision = getattr(estimator.backend, "precision", None)
    details = f", {precision}" if precision is not None else ""
    path = settings.auto_path()
    if path is not None:
        details += f", chosen by backend auto: the fastest CPU path that keeps the accuracy rule here ({path.why})"
    return (f"{estimator.backend.name} backend on {settings.device_name} (CPU threads: {threads}){details}, network "
            f"{estimator.input_size} (width x{estimator.meta.net_width}), baseline {estimator.baseline_m:.4f} m"
            f"{confidence}, model {estimator.source}")
