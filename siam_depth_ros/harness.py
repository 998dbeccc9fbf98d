"""The siam_depth node in a process of its own, and the client that feeds it: what the demo, the tests and the
benchmarks share.

- `isolated_dds_environment()` (call before `rclpy.init`): localhost-only discovery, a ROS_DOMAIN_ID from
  the process id (parallel runs on one machine never see each other), Fast DDS with the shared-memory
  profile (`dds_profile`); child processes started afterwards inherit it.
- `DepthNodeProcess`: `python -m siam_depth_ros.node --ros-args ...` (or another command, e.g. an installed
  `depth_node`; optionally a params file, or the lifecycle mode) with its output in a log file.
  `wait_until_ready` waits for the node's `~/reset` service, which the node creates once its model is
  loaded (a lifecycle node: for its `~/get_state` service, as it starts unconfigured): a ROS-native
  readiness signal, no log matching.
- `DepthNodeClient`: publishes image (raw, or a CompressedImage on `image/compressed`) + camera_info into
  the node's namespace, records every output it publishes with the arrival time, collects its
  /diagnostics, calls `~/reset`, sets parameters and drives lifecycle transitions (`lifecycle_msgs`).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siam_depth_ros.dds_profile import LEGACY_PROFILE_ENV_VAR, apply_default_profile
from siam_depth_ros.node import NODE_NAME
from siam_depth_ros.outputs import OUTPUT_TOPICS, OUTPUT_TYPES

NODE_MODULE = "siam_depth_ros.node"


class NodeStartError(RuntimeError):
    """The node process exited or did not become ready in time; the message holds its log."""


def unique_domain_id(pid: int | None = None) -> int:
    """A ROS domain id in 1..101 (the range safe on Linux) derived from the process id."""
    return 1 + (os.getpid() if pid is None else pid) % 101


def isolated_dds_environment(domain_id: int | None = None) -> dict[str, str]:
    """Set this process's DDS environment (before `rclpy.init`) and return it for child processes.

    Localhost-only discovery, a pid-derived domain id (unless given), Fast DDS with the user's profile or
    else the shipped shared-memory one; logging unbuffered and uncoloured, so that logs read cleanly.
    """
    os.environ.pop(LEGACY_PROFILE_ENV_VAR, None)  # Fast DDS 3 warns about it in every process
    os.environ.update({
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_DOMAIN_ID": str(unique_domain_id() if domain_id is None else domain_id),
        "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
        "RCUTILS_COLORIZED_OUTPUT": "0",
        "RCUTILS_LOGGING_BUFFERED_STREAM": "0",
        "PYTHONUNBUFFERED": "1",
    })
    apply_default_profile()
    return dict(os.environ)


def ros_arguments(namespace: str = "", parameters: Mapping[str, Any] | None = None,
                  remappings: Mapping[str, str] | None = None) -> list[str]:
    """`--ros-args` items: the namespace, `-r from:=to` remappings and `-p name:=value` parameters
    (booleans as true/false; floats keep their decimal point, as ROS parameter types require)."""
    items = ["-r", f"__ns:={namespace}"] if namespace else []
    for source, target in (remappings or {}).items():
        items += ["-r", f"{source}:={target}"]
    for name, value in (parameters or {}).items():
        items += ["-p", f"{name}:={str(value).lower() if isinstance(value, bool) else value}"]
    return items


class NodeProcess:
    """A command run as a separate process; its stdout+stderr go to `log_path` and can be awaited.

    Use as a context manager; leaving it sends SIGINT (a ROS node's clean shutdown) and kills the
    process if it does not exit within `stop_timeout` seconds.
    """

    def __init__(self, command: Sequence[str], log_path: str | Path, env: Mapping[str, str] | None = None,
                 cwd: str | Path | None = None, stop_timeout: float = 10.0) -> None:
        self.command = list(command)
        self.log_path = Path(log_path)
        self.stop_timeout = stop_timeout
        self._log_file = self.log_path.open("wb")
        self.process = subprocess.Popen(self.command, stdout=self._log_file, stderr=subprocess.STDOUT,
                                        env=dict(env) if env is not None else dict(os.environ), cwd=cwd)

    @classmethod
    def python_module(cls, module: str, ros_args: Iterable[str], log_path: str | Path, **kwargs: Any
                      ) -> NodeProcess:
        """`python -m module --ros-args <ros_args>` with this interpreter."""
        return cls([sys.executable, "-m", module, "--ros-args", *ros_args], log_path, **kwargs)

    def log(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def rss_mib(self) -> float:
        """Resident set size of the process in MiB (Linux /proc VmRSS)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS in /proc/{self.process.pid}/status")

    def wait_for_log(self, pattern: str, timeout: float = 30.0, start: int = 0) -> re.Match[str]:
        """Wait until the log (from character `start`) matches the regex `pattern`; AssertionError with the
        log on timeout or exit."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.log()[start:])
            if match:
                return match
            if self.process.poll() is not None:
                raise AssertionError(f"process exited ({self.process.returncode}) before logging {pattern!r}:\n"
                                     f"{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} in the log after {timeout} s:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> int:
        """SIGINT, wait, kill if needed; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()
        return self.process.returncode

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class DepthNodeProcess(NodeProcess):
    """The siam_depth node in its own process, in `namespace`, with `parameters` and `remappings`.

    command: the executable and its leading arguments (default `python -m siam_depth_ros.node`; e.g.
    `[install/.../depth_node]` for a colcon install); `--lifecycle` (lifecycle=True) and `--ros-args ...`
    are appended. params_file: a YAML parameter file (e.g. config/depth.yaml), applied before `parameters`.
    """

    def __init__(self, log_path: str | Path, namespace: str = "", parameters: Mapping[str, Any] | None = None,
                 remappings: Mapping[str, str] | None = None, command: Sequence[str] | None = None,
                 params_file: str | Path | None = None, lifecycle: bool = False, **kwargs: Any) -> None:
        self.namespace = namespace.rstrip("/")
        self.lifecycle = lifecycle
        command = list(command) if command is not None else [sys.executable, "-m", NODE_MODULE]
        options = ["--lifecycle"] if lifecycle else []
        files = ["--params-file", str(params_file)] if params_file is not None else []
        super().__init__([*command, *options, "--ros-args", *files,
                          *ros_arguments(self.namespace, parameters, remappings)], log_path, **kwargs)

    @property
    def reset_service(self) -> str:
        """The node's `~/reset` service (std_srvs/Trigger), e.g. `/demo/siam_depth/reset`."""
        return f"{self.namespace}/{NODE_NAME}/reset"

    @property
    def readiness_service(self) -> str:
        """What `wait_until_ready` waits for: `~/reset` (model loaded), or a lifecycle node's `~/get_state`."""
        return f"{self.namespace}/{NODE_NAME}/get_state" if self.lifecycle else self.reset_service

    def wait_until_ready(self, node: Any, timeout_s: float) -> None:
        """Wait until the node offers `readiness_service` (`~/reset` once its model is loaded; a lifecycle
        node's `~/get_state` once it exists), seen from the rclpy `node` of this process; NodeStartError with
        the node's log if it exits first or `timeout_s` passes."""
        if self.lifecycle:
            from lifecycle_msgs.srv import GetState as service_type
        else:
            from std_srvs.srv import Trigger as service_type

        client = node.create_client(service_type, self.readiness_service)
        deadline = time.monotonic() + timeout_s
        try:
            while not client.wait_for_service(timeout_sec=0.1):
                if self.process.poll() is not None:
                    raise NodeStartError(f"the depth node exited with code {self.process.returncode} before it was "
                                         f"ready:\n{self.log()}")
                if time.monotonic() > deadline:
                    raise NodeStartError(f"the depth node was not ready after {timeout_s:.0f} s (no "
                                         f"{self.readiness_service} service):\n{self.log()}")
        finally:
            node.destroy_client(client)


def spin_until(executor: Any, condition: Callable[[], Any], timeout: float, what: str = "condition") -> Any:
    """Spin `executor` until `condition()` is truthy (returned) or raise TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        executor.spin_once(timeout_sec=0.01)


def stamp_ns_of(msg: Any) -> int:
    """The header stamp of a message in integer nanoseconds."""
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


@dataclass(frozen=True)
class Arrival:
    """One output message as received: its header stamp (ns), monotonic arrival time (s), the message
    (None when the client keeps only stamps and times)."""

    stamp_ns: int
    time_s: float
    msg: Any


class DepthNodeClient:
    """The other side of a siam_depth node in `namespace`; see the module docstring. Spin `executor`
    (which must hold `node`) for anything to arrive.

    outputs: the output topics to subscribe (relative names; every subscribed output is built by the
    node). input_qos: of the image and camera_info publishers. keep_messages: False keeps only stamps
    and arrival times (long runs). image_transport: "raw" publishes sensor_msgs/Image on `image`,
    "compressed" sensor_msgs/CompressedImage on `image/compressed` (the node's image_transport parameter).
    """

    def __init__(self, node: Any, executor: Any, namespace: str, outputs: Iterable[str] = OUTPUT_TOPICS,
                 input_qos: Any = None, output_depth: int = 100, keep_messages: bool = True,
                 image_transport: str = "raw") -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from rcl_interfaces.srv import GetParameters, SetParameters
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image
        from std_srvs.srv import Trigger

        if image_transport not in ("raw", "compressed"):
            raise ValueError(f"image_transport must be raw or compressed, got {image_transport!r}")
        self.node, self.executor, self.namespace = node, executor, namespace.rstrip("/")
        self.keep_messages = keep_messages
        input_qos = qos_profile_sensor_data if input_qos is None else input_qos
        image_type, image_topic = ((CompressedImage, f"{self.namespace}/image/compressed")
                                   if image_transport == "compressed" else (Image, f"{self.namespace}/image"))
        self.image_pub = node.create_publisher(image_type, image_topic, input_qos)
        self.camera_info_pub = node.create_publisher(CameraInfo, f"{self.namespace}/camera_info", input_qos)
        self.arrivals: dict[str, list[Arrival]] = {topic: [] for topic in outputs}
        output_qos = QoSProfile(depth=output_depth, reliability=ReliabilityPolicy.RELIABLE)
        self.subscriptions = {topic: node.create_subscription(OUTPUT_TYPES[topic], f"{self.namespace}/{topic}",
                                                              self._recorder(topic), output_qos)
                              for topic in self.arrivals}
        self.diagnostics: list[tuple[str, dict[str, str]]] = []  # (message, values) of this node, in order
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.reset_client = node.create_client(Trigger, f"{self.namespace}/{NODE_NAME}/reset")
        self.set_parameters_client = node.create_client(SetParameters, f"{self.namespace}/{NODE_NAME}/set_parameters")
        self.get_parameters_client = node.create_client(GetParameters, f"{self.namespace}/{NODE_NAME}/get_parameters")
        self._lifecycle_clients: dict[str, Any] = {}
        self.published_s: dict[int, float] = {}  # image stamp (ns) -> monotonic time of its publication

    def _recorder(self, topic: str) -> Callable[[Any], None]:
        def record(msg: Any) -> None:
            self.arrivals[topic].append(Arrival(stamp_ns_of(msg), time.monotonic(), msg if self.keep_messages else None))
        return record

    def _on_diagnostics(self, array: Any) -> None:
        for status in array.status:
            if status.name.startswith(f"{self.namespace}/{NODE_NAME}:"):
                self.diagnostics.append((status.message, {item.key: item.value for item in status.values}))

    def arrival(self, topic: str, stamp_ns: int) -> Arrival | None:
        """The latest `topic` output of the frame stamped `stamp_ns`, or None."""
        return next((item for item in reversed(self.arrivals[topic]) if item.stamp_ns == stamp_ns), None)

    def messages(self, topic: str) -> list[Any]:
        """Every `topic` message received, in arrival order."""
        return [item.msg for item in self.arrivals[topic]]

    def clear(self) -> None:
        """Forget the outputs received so far."""
        for received in self.arrivals.values():
            received.clear()

    def spin_until(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        """`spin_until` on this client's executor."""
        return spin_until(self.executor, condition, timeout, what)

    def spin_for(self, seconds: float) -> None:
        """Spin (receive) for `seconds`."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self.executor.spin_once(timeout_sec=min(remaining, 0.005))

    def wait_until_connected(self, timeout: float = 30.0) -> None:
        """Discovery: the node subscribes our image/camera_info and we subscribe each of its outputs."""
        self.spin_until(lambda: (self.image_pub.get_subscription_count() > 0
                                 and self.camera_info_pub.get_subscription_count() > 0
                                 and all(s.get_publisher_count() > 0 for s in self.subscriptions.values())),
                        timeout, f"discovery between the client and the node in {self.namespace or '/'}")

    def publish(self, image_msg: Any, camera_info_msg: Any | None = None) -> float:
        """camera_info first (as it would be latched or already cached), then the image; returns the
        monotonic time of the image's publication (also kept in `published_s`)."""
        if camera_info_msg is not None:
            self.camera_info_pub.publish(camera_info_msg)
        published = time.monotonic()
        self.published_s[stamp_ns_of(image_msg)] = published
        self.image_pub.publish(image_msg)
        return published

    def wait_outputs(self, stamp_ns: int, topics: Iterable[str] | None = None, timeout: float = 30.0
                     ) -> dict[str, Any]:
        """The node's outputs (messages) of the frame stamped `stamp_ns`, by topic (default all subscribed)."""
        topics = list(self.arrivals if topics is None else topics)

        def found() -> dict[str, Any] | None:
            matches = {topic: self.arrival(topic, stamp_ns) for topic in topics}
            return {t: a.msg for t, a in matches.items()} if all(matches.values()) else None

        return self.spin_until(found, timeout, f"{topics} of the frame stamped {stamp_ns} ns")

    def send(self, image_msg: Any, camera_info_msg: Any | None = None, topics: Iterable[str] | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        """Publish one frame and wait for its outputs."""
        self.publish(image_msg, camera_info_msg)
        return self.wait_outputs(stamp_ns_of(image_msg), topics, timeout)

    def send_first(self, make_frame: Callable[[], tuple[Any, Any | None]], topics: Iterable[str] | None = None,
                   retry_after: float = 2.0, timeout: float = 60.0) -> dict[str, Any]:
        """The first frame after discovery: a match is only known on our side, and until the node has
        matched us too a best-effort frame (or its outputs) can be lost. Sends `make_frame()` (image,
        camera_info or None; a new stamp each call, as the node skips repeated stamps) every
        `retry_after` s until one frame's outputs arrive; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            image_msg, camera_info_msg = make_frame()
            self.publish(image_msg, camera_info_msg)
            try:
                return self.wait_outputs(stamp_ns_of(image_msg), topics, min(retry_after, deadline - time.monotonic()))
            except TimeoutError:
                if time.monotonic() + retry_after > deadline:
                    raise

    def _call(self, client: Any, request: Any, timeout: float) -> Any:
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {client.srv_name} not available after {timeout} s")
        future = client.call_async(request)
        self.spin_until(future.done, timeout, f"a response from {client.srv_name}")
        return future.result()

    def reset(self, timeout: float = 20.0) -> Any:
        """Call `~/reset` (std_srvs/Trigger); returns the response."""
        from std_srvs.srv import Trigger

        return self._call(self.reset_client, Trigger.Request(), timeout)

    def set_parameters(self, timeout: float = 60.0, **values: Any) -> list[Any]:
        """Set node parameters; returns one rcl_interfaces/SetParametersResult per parameter."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()
                                                    for name, value in values.items()])
        return list(self._call(self.set_parameters_client, request, timeout).results)

    def get_parameters(self, *names: str, timeout: float = 20.0) -> dict[str, Any]:
        """Current values of node parameters, by name."""
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        response = self._call(self.get_parameters_client, GetParameters.Request(names=list(names)), timeout)
        return {name: parameter_value_to_python(value) for name, value in zip(names, response.values, strict=True)}

    def _lifecycle_client(self, name: str) -> Any:
        from lifecycle_msgs.srv import ChangeState, GetState

        if name not in self._lifecycle_clients:
            service_type = {"change_state": ChangeState, "get_state": GetState}[name]
            self._lifecycle_clients[name] = self.node.create_client(service_type,
                                                                    f"{self.namespace}/{NODE_NAME}/{name}")
        return self._lifecycle_clients[name]

    def change_state(self, transition: str, timeout: float = 120.0) -> bool:
        """Request a lifecycle transition by its label (configure, activate, deactivate, cleanup, shutdown)
        through the standard `~/change_state` service (lifecycle_msgs/srv/ChangeState); returns its success."""
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        request = ChangeState.Request(transition=Transition(label=transition))
        return bool(self._call(self._lifecycle_client("change_state"), request, timeout).success)

    def lifecycle_state(self, timeout: float = 20.0) -> str:
        """The node's lifecycle state label (unconfigured, inactive, active, finalized) from `~/get_state`."""
        from lifecycle_msgs.srv import GetState

        return str(self._call(self._lifecycle_client("get_state"), GetState.Request(), timeout).current_state.label)

    def diagnostics_where(self, condition: Callable[[dict[str, str]], bool], timeout: float = 30.0
                          ) -> dict[str, str]:
        """Spin until a /diagnostics report of this node satisfies `condition(values)`; returns the newest such."""
        def matching() -> dict[str, str] | None:
            return next((values for _, values in reversed(self.diagnostics) if condition(values)), None)

        return self.spin_until(matching, timeout, f"diagnostics of {self.namespace}/{NODE_NAME}")

    def fresh_diagnostics(self, timeout: float = 30.0) -> dict[str, str]:
        """The first /diagnostics report of this node that arrives after now (reports come at 1 Hz)."""
        seen = len(self.diagnostics)
        self.spin_until(lambda: len(self.diagnostics) > seen, timeout, "a /diagnostics report")
        return self.diagnostics[-1][1]
