"""The JSON sidecar written next to an exported ONNX model (and a TensorRT engine): `<model file>.json`.

It says what the model file alone does not: the network size, the recurrent state layout (tensor
names and per-stream shapes, in order), the batch (streams per call, and whether the batch axis is
dynamic; sidecars older than that describe batch 1), the checkpoint's ModelMeta (architecture, rig baseline) and sha256, the ONNX
file's sha256 (an ONNX file has no checksum of its own, so this is what detects damaged or replaced
bytes), and for an engine the TensorRT version, GPU and precision it was built for.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from siam_depth_core.geometry import ImageSize
from siam_depth_core.network.checkpoint import ModelMeta
from siam_depth_core.runtime.backends import BackendError
from siam_depth_core.runtime.backends.streams import BatchRange

LOGGER = logging.getLogger(__name__)
FORMAT = "siam_depth_export/1"
IMAGE_INPUT = "image"
DISPARITY_OUTPUT = "disparity"
#: The per-pixel agreement of the Siamese pass's two left-disparity estimates, (1,1,H,W) in [0, 1].
CONFIDENCE_OUTPUT = "confidence"
#: Names of the dynamic batch axes of a `--dynamic-batch` export: of the image and outputs (streams), and of
#: every state tensor (rows: 2 per stream for the Siamese pass, 1 for a single pass).
BATCH_AXIS = "batch"
STATE_BATCH_AXIS = "state_batch"


def state_input_name(layer: str, part: str) -> str:
    """ONNX input name of one ConvLSTM layer's state part ("h" or "c"), e.g. state_in.convlstm_skip1.h."""
    return f"state_in.{layer}.{part}"


def state_output_name(layer: str, part: str) -> str:
    """ONNX output name of one ConvLSTM layer's next state part, e.g. state_out.convlstm_skip1.c."""
    return f"state_out.{layer}.{part}"


@dataclass
class StateTensor:
    """One state tensor: the layer it belongs to, "h" or "c", its (R,C,H,W) shape for ONE stream (R = 2 rows,
    direct and flipped pass, for a Siamese step; 1 for a single pass) and I/O names. A graph of batch B
    carries (R*B,C,H,W) (`ModelSidecar.state_shape`).
    """

    layer: str
    part: str
    shape: list[int]
    input_name: str
    output_name: str


@dataclass
class ModelSidecar:
    """Everything a backend needs besides the model file. height/width: network input in pixels.

    onnx_sha256: hex sha256 of the exported ONNX file (None in sidecars of older exports).
    confidence_output: name of the (1,1,H,W) confidence output, right after the disparity; None when the
    graph has none (a model without the Siamese pass, or an export older than the confidence output).
    single_pass: the graph runs only the direct branch of a Siamese model (`siam-depth-export --single-pass`).
    batch: streams per call of the graph (`siam-depth-export --batch`); with dynamic_batch the graph takes any
    number and `batch` is the largest a TensorRT engine of it is built for (its profile 1..batch).
    Sidecars older than the batch describe batch 1, fixed.
    """

    height: int
    width: int
    meta: dict[str, Any]
    state: list[StateTensor]
    checkpoint_sha256: str | None
    opset: int
    onnx_sha256: str | None = None
    format: str = FORMAT
    image_input: str = IMAGE_INPUT
    disparity_output: str = DISPARITY_OUTPUT
    confidence_output: str | None = None
    single_pass: bool = False
    tensorrt: dict[str, Any] = field(default_factory=dict)
    batch: int = 1
    dynamic_batch: bool = False

    @property
    def input_size(self) -> ImageSize:
        """Network (H, W)."""
        return ImageSize(self.height, self.width)

    def batch_range(self) -> BatchRange:
        """How many streams one run of the graph takes: exactly `batch`, or any number when dynamic."""
        return BatchRange(1, None) if self.dynamic_batch else BatchRange(self.batch, self.batch)

    def state_shape(self, item: StateTensor, streams: int) -> list[int]:
        """The shape of state tensor `item` in a step of `streams` streams."""
        return [item.shape[0] * streams, *item.shape[1:]]

    def graph_inputs(self) -> dict[str, list[int | None]]:
        """The graph's input shapes, None for the dynamic batch axis (of a --dynamic-batch export)."""
        batch = None if self.dynamic_batch else self.batch
        inputs: dict[str, list[int | None]] = {self.image_input: [batch, 3, self.height, self.width]}
        for item in self.state:
            inputs[item.input_name] = [None if batch is None else item.shape[0] * batch, *item.shape[1:]]
        return inputs

    def model_meta(self) -> ModelMeta:
        """The checkpoint's ModelMeta (unknown keys from newer versions are ignored)."""
        return ModelMeta.from_dict(self.meta)

    def write(self, path: str | Path) -> Path:
        """Write as indented JSON to `path`."""
        path = Path(path)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def read(cls, path: str | Path) -> ModelSidecar:
        """Read a sidecar; raises ValueError naming the file when it is missing or malformed."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"model sidecar not found: {path} (it is written by siam-depth-export next to the model)")
        try:
            raw = json.loads(path.read_text())
            if raw.get("format") != FORMAT:
                raise ValueError(f"format {raw.get('format')!r}, expected {FORMAT!r}")
            raw["state"] = [StateTensor(**item) for item in raw["state"]]
            raw.pop("baseline_m", None)  # older exports also wrote a copy of meta["baseline_m"]
            sidecar = cls(**raw)
            if not isinstance(sidecar.batch, int) or sidecar.batch < 1:
                raise ValueError(f"batch must be a positive integer, got {sidecar.batch!r}")
            return sidecar
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise ValueError(f"model sidecar {path} is malformed: {error}") from error


def sidecar_path(model_path: str | Path) -> Path:
    """`out.onnx` -> `out.onnx.json`; `out.engine` -> `out.engine.json`."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".json")


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_onnx_sha256(onnx_path: str | Path, sidecar: ModelSidecar, sha256: str) -> None:
    """Raise BackendError unless `sha256` (of the ONNX file's bytes) is the one its sidecar records.

    A sidecar of an older export records no hash: then only a warning says that damage goes undetected.
    """
    if sidecar.onnx_sha256 is None:
        LOGGER.warning("ONNX model %s: its sidecar records no onnx_sha256 (an older siam-depth-export), so damaged "
                       "bytes cannot be detected; re-export it", onnx_path)
        return
    if sha256 != sidecar.onnx_sha256:
        raise BackendError(f"ONNX model {onnx_path} does not match its sidecar {sidecar_path(onnx_path)}: its sha256 "
                           f"is {sha256[:16]}..., the sidecar records {sidecar.onnx_sha256[:16]}... (the file was "
                           "damaged or replaced after export; export it again)")
