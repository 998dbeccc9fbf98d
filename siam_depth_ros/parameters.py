"""The `siam_depth` node's parameters: declared with descriptors, read once into a typed `NodeSettings`.

Defaults here match `config/depth.yaml`. The model parameters (checkpoint, backend, onnx, engine, precision, single_pass)
may be changed at run time (the node then reloads the model); every other parameter is read-only.
`backend: auto` (the default) runs the shipped model on the fastest CPU path that keeps the accuracy rule on this
machine (`siam_depth_core.runtime.fastest`: OpenVINO bf16 where the CPU has bf16 units); a checkpoint given
explicitly runs as it is, on torch.
`NodeSettings` turns them into what the core takes: a model source, runtime options and output settings.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter

from siam_depth_core.geometry import FALLBACK_FX_PER_WIDTH, ImageSize
from siam_depth_core.runtime.backends.source import (
    BACKEND_NAMES,
    PRECISIONS,
    CheckpointSource,
    ModelSource,
    RuntimeOptions,
    source_for_backend,
)
from siam_depth_core.runtime.fastest import AUTO, CpuPath, fastest_cpu_path, fastest_cpu_source
from siam_depth_core.shipped_files import SHIPPED_CHECKPOINT, shipped_checkpoint
from siam_depth_core.visualize import FAR_DEPTH_M, NEAR_DEPTH_M
from siam_depth_ros.input_limit import DEFAULT_MAX_IMAGE_PIXELS
from siam_depth_ros.launch_support import IMAGE_TRANSPORTS
from siam_depth_ros.outputs import OutputSettings

QOS_CHOICES = ("sensor_data", "reliable")
#: Values of the `backend` parameter: auto (the fastest CPU path for the shipped model) or a backend by name.
BACKEND_CHOICES = (AUTO, *BACKEND_NAMES)
#: The device each backend runs on when `device` is empty.
DEFAULT_DEVICES = {"torch": "cpu", "onnxruntime": "cpu", "tensorrt": "cuda", "openvino": "cpu", AUTO: "cpu"}
#: Backends that run on the CPU's threads (num_threads applies to them; tensorrt runs on the GPU).
CPU_THREAD_BACKENDS = ("torch", "onnxruntime", "openvino", AUTO)
#: Parameters whose change at run time reloads the model.
MODEL_PARAMETERS = ("checkpoint", "backend", "onnx", "engine", "precision", "single_pass")


@dataclass(frozen=True)
class NodeSettings:
    """Every parameter of the node, typed; see `PARAMETER_DOCS` for their meaning."""

    checkpoint: str = ""
    backend: str = AUTO
    onnx: str = ""
    engine: str = ""
    device: str = ""
    fp16: bool = False
    precision: str = "auto"
    num_threads: int = 1  # measured: benchmarks/README.md, "num_threads: the default"
    spin_wait: bool = False
    single_pass: bool = False
    network_height: int = 0
    network_width: int = 0
    min_depth: float = 0.1
    max_depth: float = 80.0
    max_gap_s: float = 0.5
    baseline_m: float = 0.0
    fallback_fx_ratio: float = FALLBACK_FX_PER_WIDTH
    frame_id: str = ""
    qos: str = "sensor_data"
    image_transport: str = "raw"
    publish_disparity: bool = True
    publish_points: bool = True
    publish_colored: bool = True
    publish_confidence: bool = True
    cloud_stride: int = 2
    cloud_min_depth: float = 0.5
    cloud_max_depth: float = 50.0
    cloud_min_confidence: float = 0.0
    colored_min_depth: float = NEAR_DEPTH_M
    colored_max_depth: float = FAR_DEPTH_M
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS

    @property
    def network_size(self) -> ImageSize | None:
        """(H, W) of the network input, or None for the checkpoint's training size."""
        if self.network_height > 0 and self.network_width > 0:
            return ImageSize(self.network_height, self.network_width)
        return None

    def auto_path(self) -> CpuPath | None:
        """With backend auto, no checkpoint given, the shipped model installed and the CPU as device: the fastest
        CPU path that keeps the accuracy rule here (`runtime.fastest`); else None (auto then runs torch)."""
        if self.backend != AUTO or self.checkpoint or self.device_name != "cpu" or shipped_checkpoint() is None:
            return None
        return fastest_cpu_path()

    def model_source(self) -> ModelSource:
        """The model the backend/checkpoint/onnx/engine parameters name (torch without a checkpoint: the
        shipped one, else random weights, warned; auto: the shipped model on `auto_path()`, exported to ONNX on
        first use and cached, or the checkpoint given on torch); ValueError when the backend's file parameter is
        empty."""
        checkpoint = self.checkpoint or None
        if checkpoint is None and self.backend in ("torch", AUTO):
            checkpoint = shipped_checkpoint()
        if self.backend == AUTO:
            path = self.auto_path()
            if path is not None and checkpoint is not None:
                return fastest_cpu_source(checkpoint, path, self.network_size, self.single_pass)
            return source_for_backend("torch", checkpoint)
        return source_for_backend(self.backend, checkpoint, self.onnx or None, self.engine or None)

    @property
    def device_name(self) -> str:
        """The device the model runs on: `device`, or the backend's default when it is empty."""
        return self.device or DEFAULT_DEVICES.get(self.backend, "cpu")

    @property
    def threads(self) -> int:
        """The CPU threads passed to the backend: num_threads for the CPU backends, 0 for tensorrt (GPU)."""
        return self.num_threads if self.backend in CPU_THREAD_BACKENDS else 0

    def runtime_options(self) -> RuntimeOptions:
        """device (None when empty: the backend's default), CPU threads, network size, fp16, precision, single pass
        and spin_wait as RuntimeOptions (ValueError naming a bad value)."""
        return RuntimeOptions(device=self.device or None, num_threads=self.threads, input_size=self.network_size,
                              fp16=self.fp16, single_pass=self.single_pass, spin_wait=self.spin_wait,
                              precision=self.precision)

    def output_settings(self) -> OutputSettings:
        """The depth range, cloud, confidence and colour-map parameters of the outputs."""
        return OutputSettings(min_depth=self.min_depth, max_depth=self.max_depth, cloud_stride=self.cloud_stride,
                              cloud_min_depth=self.cloud_min_depth, cloud_max_depth=self.cloud_max_depth,
                              colored_min_depth=self.colored_min_depth, colored_max_depth=self.colored_max_depth,
                              cloud_min_confidence=self.cloud_min_confidence)

    def check_model_files(self) -> None:
        """A cheap check before loading: CheckpointError/BackendError naming a model file that does not exist,
        ValueError when the backend's file parameter is empty."""
        if self.backend in ("torch", AUTO) and not self.checkpoint and shipped_checkpoint() is None:
            return  # random weights: no file to find
        if self.backend == AUTO:  # the checkpoint itself (the export is made when loading)
            CheckpointSource(Path(self.checkpoint or shipped_checkpoint())).check_files()  # type: ignore[arg-type]
            return
        self.model_source().check_files()

    def model_description(self) -> str:
        """The model files these settings name and the backend, for log lines."""
        files = [value for value in (self.checkpoint, self.onnx, self.engine) if value]
        return f"{', '.join(files) or 'the shipped checkpoint'} ({self.backend} backend)"


PARAMETER_DOCS: dict[str, str] = {
    "checkpoint": "siam_depth checkpoint (.pt) for the torch backend; empty: the shipped models/"
                  f"{SHIPPED_CHECKPOINT} if installed, else random weights (meaningless depth, warned)",
    "backend": f"inference backend: {', '.join(BACKEND_CHOICES)}. auto (default): the shipped model (checkpoint "
               "empty) on the fastest CPU path that keeps the accuracy rule on this machine: OpenVINO of its fp32 "
               "export at bf16 where the CPU has bf16 units, else fp32; ONNX Runtime without openvino; torch without "
               "either (export cached under $SIAM_DEPTH_CACHE/exports; models/README.md, \"OpenVINO\"); a checkpoint "
               "given runs on torch",
    "onnx": "exported ONNX model, fp32 or int8 (onnxruntime and openvino backends; tensorrt builds its engine from "
            "it)",
    "engine": "TensorRT engine file (tensorrt backend; built from `onnx` when missing or stale)",
    "device": "cpu or cuda[:i]; empty = the backend's default (cpu for torch, onnxruntime and openvino, the "
              "current GPU for tensorrt, which refuses cpu)",
    "fp16": "half precision on CUDA (torch and tensorrt backends; onnxruntime and openvino refuse it)",
    "precision": "openvino backend: fp32, bf16 (the CPU's bf16 units, AVX-512 BF16 or AMX; refused on a CPU without "
                 "them) or auto (bf16 where the CPU has it, else fp32); other backends honour only auto",
    "num_threads": "intra-op CPU threads of the model; 0 = the library's default (one per core). torch: "
                   "torch.set_num_threads, which applies to the whole node process; onnxruntime: the session's "
                   "intra_op_num_threads; openvino: INFERENCE_NUM_THREADS; not used by tensorrt (the GPU). "
                   "Default 1: on a 2-core CPU shared with "
                   "other work it was never slower than more threads and often much faster (benchmarks/README.md); "
                   "on a larger, otherwise idle CPU measure with benchmarks.node_latency --num-threads",
    "spin_wait": "onnxruntime backend: its intra-op threads spin between operators instead of sleeping; about 1.1x "
                 "faster steps with num_threads > 1 on cores the node has to itself, slower on a CPU shared with "
                 "other busy work (benchmarks/README.md); other backends refuse it",
    "single_pass": "run only the direct branch (no mirrored image, no refinement): about half the model time, "
                   "no confidence output, somewhat less accurate (models/README.md, Single pass); an ONNX model "
                   "or engine exported with --single-pass needs it",
    "network_height": "network input height in pixels, multiple of 32; 0 = the checkpoint's training size",
    "network_width": "network input width in pixels, multiple of 32; 0 = the checkpoint's training size",
    "min_depth": "metres; nearer depth is published as NaN (invalid)",
    "max_depth": "metres; farther depth is published as NaN (invalid)",
    "max_gap_s": "seconds; a longer gap between image stamps resets the recurrent state",
    "baseline_m": "stereo baseline in metres that scales disparity to depth; 0 = the checkpoint's",
    "fallback_fx_ratio": f"fx / image width used while no camera_info has arrived (KITTI: {FALLBACK_FX_PER_WIDTH})",
    "frame_id": "frame_id of the outputs; empty = the input image's (the camera optical frame)",
    "qos": "QoS of the image and camera_info subscriptions: sensor_data (best effort) or reliable",
    "image_transport": "raw: subscribe `image` (sensor_msgs/Image); compressed: subscribe `image/compressed` "
                       "(sensor_msgs/CompressedImage, JPEG or PNG as image_transport's compressed plugin "
                       "publishes it), decoded with OpenCV",
    "publish_disparity": "publish stereo_msgs/DisparityImage on `disparity`",
    "publish_points": "publish sensor_msgs/PointCloud2 (xyz + rgb) on `points`",
    "publish_colored": "publish a colour-mapped depth image (rgb8) on `depth/colored`",
    "publish_confidence": "publish the per-pixel confidence (32FC1 in [0, 1]) on `depth/confidence`",
    "cloud_stride": "use every n-th pixel in both directions for the point cloud",
    "cloud_min_depth": "metres; nearer pixels are left out of the point cloud",
    "cloud_max_depth": "metres; farther pixels are left out of the point cloud",
    "cloud_min_confidence": "pixels whose confidence (depth/confidence) is below this are left out of the point "
                            "cloud; 0 keeps all (see models/README.md, Confidence, for what a threshold buys)",
    "max_image_pixels": "largest input frame (width x height) processed and published at its own resolution; a "
                        "bigger frame is shrunk to fit (aspect kept, area interpolation) and its outputs and "
                        "depth/camera_info have the shrunk size (said once in the log, counted in /diagnostics as "
                        "frames_downscaled); default 3840x2160",
    "colored_min_depth": "metres; near (bright) end of the `depth/colored` colour scale (log depth; nearer is "
                         "saturated); default 3",
    "colored_max_depth": "metres; far (dark) end of the `depth/colored` colour scale (farther is the darkest "
                         "colour); default 60, so a street at 5-40 m spans most of the colour map",
}

_FLOAT_RANGES = {"min_depth": (0.001, 1000.0), "max_depth": (0.01, 10000.0), "max_gap_s": (0.001, 3600.0),
                 "baseline_m": (0.0, 10.0), "fallback_fx_ratio": (0.01, 100.0), "cloud_min_depth": (0.0, 1000.0),
                 "cloud_max_depth": (0.01, 10000.0), "colored_min_depth": (0.001, 1000.0),
                 "colored_max_depth": (0.01, 10000.0),
                 "cloud_min_confidence": (0.0, 1.0)}
_INTEGER_RANGES = {"network_height": (0, 8192), "network_width": (0, 8192), "cloud_stride": (1, 64),
                   "num_threads": (0, 1024), "max_image_pixels": (1024, 2**31 - 1)}


def _descriptor(name: str) -> ParameterDescriptor:
    choices = {"backend": BACKEND_CHOICES, "qos": QOS_CHOICES, "image_transport": IMAGE_TRANSPORTS,
               "precision": PRECISIONS}.get(name)
    descriptor = ParameterDescriptor(name=name, description=PARAMETER_DOCS[name],
                                     read_only=name not in MODEL_PARAMETERS)
    if choices:
        descriptor.additional_constraints = f"one of: {', '.join(choices)}"
    if name in _FLOAT_RANGES:
        low, high = _FLOAT_RANGES[name]
        descriptor.floating_point_range = [FloatingPointRange(from_value=low, to_value=high)]
    if name in _INTEGER_RANGES:
        low, high = _INTEGER_RANGES[name]
        descriptor.integer_range = [IntegerRange(from_value=low, to_value=high, step=1)]
    return descriptor


#: The parameter naming the node's cameras (a string list, read-only; kept apart from NodeSettings: an empty list
#: cannot be written in a parameter file).
CAMERAS_PARAMETER = "cameras"
CAMERAS_DOC = ("names of the cameras this one node serves with one model, e.g. [front, front_left, front_right, rear]; "
               "each camera subscribes <camera>/image (or <camera>/image/compressed) and <camera>/camera_info and "
               "publishes <camera>/depth, <camera>/depth/camera_info, <camera>/disparity, <camera>/points, "
               "<camera>/depth/colored and <camera>/depth/confidence with its own frame_id, stamps, recurrent state, "
               "resets and intrinsics; ~/<camera>/reset resets one camera, ~/reset all; cameras whose frames arrive "
               "together run in one batched model call. Empty (default): one unnamed camera on image, camera_info "
               "and the plain output names (the single-camera node)")
_CAMERA_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(/[A-Za-z][A-Za-z0-9_]*)*")


def check_cameras(names: Any) -> tuple[str, ...]:
    """The camera names as a tuple (empty: the one unnamed camera); ValueError naming a bad or repeated name."""
    cameras = tuple(str(name) for name in (names or ()))
    for name in cameras:
        if not _CAMERA_NAME.fullmatch(name):
            raise ValueError(f"camera name {name!r} is not a relative ROS name (letters, digits and _, starting with a "
                             "letter; / between namespaces)")
    repeated = sorted({name for name in cameras if cameras.count(name) > 1})
    if repeated:
        raise ValueError(f"camera name(s) given twice in cameras: {', '.join(repeated)}")
    return cameras


def read_cameras(node: Node) -> tuple[str, ...]:
    """The declared `cameras` parameter of `node`, checked (`check_cameras`)."""
    try:
        value = node.get_parameter(CAMERAS_PARAMETER).value
    except ParameterUninitializedException:
        value = None
    return check_cameras(value)


def declare_parameters(node: Node) -> NodeSettings:
    """Declare every parameter on `node` (defaults from NodeSettings, and `cameras`) and read them once."""
    defaults = NodeSettings()
    for field in fields(NodeSettings):
        node.declare_parameter(field.name, getattr(defaults, field.name), _descriptor(field.name))
    node.declare_parameter(CAMERAS_PARAMETER, Parameter.Type.STRING_ARRAY,
                           ParameterDescriptor(name=CAMERAS_PARAMETER, description=CAMERAS_DOC, read_only=True))
    read_cameras(node)
    return read_parameters(node)


def read_parameters(node: Node) -> NodeSettings:
    """The current values of the declared parameters of `node` (ValueError naming a bad value)."""
    return settings_with(NodeSettings(), {field.name: node.get_parameter(field.name).value
                                          for field in fields(NodeSettings)})


def settings_with(settings: NodeSettings, values: dict[str, Any]) -> NodeSettings:
    """A copy of `settings` with `values` applied; raises ValueError naming a bad value."""
    merged = {field.name: getattr(settings, field.name) for field in fields(NodeSettings)}
    merged.update(values)
    updated = NodeSettings(**merged)
    if updated.backend not in BACKEND_CHOICES:
        raise ValueError(f"backend must be one of {', '.join(BACKEND_CHOICES)}, got {updated.backend!r}")
    if updated.qos not in QOS_CHOICES:
        raise ValueError(f"qos must be one of {', '.join(QOS_CHOICES)}, got {updated.qos!r}")
    if updated.image_transport not in IMAGE_TRANSPORTS:
        raise ValueError(f"image_transport must be one of {', '.join(IMAGE_TRANSPORTS)}, got "
                         f"{updated.image_transport!r}")
    if not 0.0 <= updated.cloud_min_confidence <= 1.0:
        raise ValueError(f"cloud_min_confidence must be in [0, 1], got {updated.cloud_min_confidence}")
    if not updated.min_depth < updated.max_depth:
        raise ValueError(f"min_depth ({updated.min_depth}) must be below max_depth ({updated.max_depth})")
    if not updated.colored_min_depth < updated.colored_max_depth:
        raise ValueError(f"colored_min_depth ({updated.colored_min_depth}) must be below colored_max_depth "
                         f"({updated.colored_max_depth})")
    if (updated.network_height > 0) != (updated.network_width > 0):
        raise ValueError("set both network_height and network_width, or neither (0 = the checkpoint's size)")
    updated.runtime_options()
    return updated


