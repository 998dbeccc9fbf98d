"""The fastest CPU path that keeps the accuracy rule, on the machine this runs on (issue 29).

The rule (issue 29): on drive 0023 streamed and the 13 KITTI 2015 frames, a reduced precision stays within
0.003 ARD of fp32 (bf16) or 0.01 (int8). Measured with the shipped model (models/README.md, "OpenVINO";
benchmarks/README.md, "OpenVINO"): OpenVINO bf16 of the fp32 export keeps it (-0.002 ARD) and is the fastest that
does (about 2.5x ONNX Runtime fp32 at one thread on an AVX-512 BF16 / AMX CPU); the int8 exports, on ONNX Runtime
or OpenVINO, are a little faster still but miss it (+0.012 on drive 0023), so they are never chosen here. So:

1. `openvino` installed: OpenVINO of the fp32 export at precision auto, i.e. bf16 where the CPU has bf16 units
   (OpenVINO's OPTIMIZATION_CAPABILITIES lists BF16), else fp32 (still at least ONNX Runtime's fp32 speed);
2. else `onnxruntime` installed: ONNX Runtime fp32 (faster than torch on the CPU, benchmarks/README.md);
3. else torch, the checkpoint itself.

The export is made once per checkpoint and cached under `<cache_dir()>/exports/<checkpoint sha256[:16]>/`
(`cached_export`); OpenVINO then caches its compiled model by the export's sha256 (`openvino_backend`).
"""
from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from siam_depth_core.geometry import ImageSize
from siam_depth_core.runtime.backends.source import (
    CheckpointSource,
    ModelSource,
    OnnxSource,
    OpenVinoSource,
)

LOGGER = logging.getLogger(__name__)
#: The node's `backend` value (and the demo's `--model` value) that picks the path below.
AUTO = "auto"


@dataclass(frozen=True)
class CpuPath:
    """One way to run a checkpoint on the CPU. backend: "openvino", "onnxruntime" or "torch"; graph: "fp32 ONNX
    export" or "checkpoint"; precision: what the operators run in ("bf16" or "fp32"); why: the reason it was chosen."""

    backend: str
    graph: str
    precision: str
    why: str

    def describe(self) -> str:
        """E.g. "fp32 ONNX export on openvino, bf16 (the CPU has bf16 units)"."""
        return f"{self.graph} on {self.backend}, {self.precision} ({self.why})"


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(module) is not None for module in modules)


def fastest_cpu_path() -> CpuPath:
    """The fastest path that keeps the accuracy rule here (see the module docstring)."""
    if _installed("openvino", "onnx"):
        from siam_depth_core.runtime.backends.openvino_backend import (
            cpu_capabilities,
            import_openvino,
            resolve_precision,
        )

        precision = resolve_precision("auto", cpu_capabilities(import_openvino().Core()))
        why = ("the CPU has bf16 units" if precision == "bf16" else
               "the CPU has no bf16 units; the int8 exports miss the accuracy rule")
        return CpuPath("openvino", "fp32 ONNX export", precision, why)
    if _installed("onnxruntime", "onnx"):
        return CpuPath("onnxruntime", "fp32 ONNX export", "fp32", "openvino is not installed")
    return CpuPath("torch", "checkpoint", "fp32", "neither openvino nor onnxruntime is installed")


def cached_export(checkpoint: str | Path, int8: bool = False, calibration_folder: Path | None = None,
                  clip_len: int | None = None, size: ImageSize | None = None, single_pass: bool = False) -> Path:
    """The fp32 (or int8, quantised as `siam-depth-export --int8` does) ONNX export of `checkpoint` at network `size`
    (None: its own) and with `single_pass` (only the direct branch), made on first use under
    `<cache_dir()>/exports/<checkpoint sha256[:16]>/` and reused after (the file is moved into place with its sidecar
    only when complete, so a concurrent or interrupted export leaves no half file). calibration_folder / clip_len:
    int8 calibration frames (None: the export's default, drive 0009)."""
    from siam_depth_core.data import paths
    from siam_depth_core.runtime.backends.sidecar import file_sha256, sidecar_path
    from siam_depth_core.runtime.export import CALIBRATION_CLIP_LEN, calibration_clips, export_checkpoint
    from siam_depth_core.runtime.quantize import int8_path, quantize_onnx

    checkpoint = Path(checkpoint)
    folder = paths.cache_dir() / "exports" / file_sha256(checkpoint)[:16]
    variant = (".single" if single_pass else "") + (f".{size.width}x{size.height}" if size is not None else "")
    fp32_path = folder / f"{checkpoint.stem}{variant}.onnx"
    wanted = int8_path(fp32_path) if int8 else fp32_path
    if wanted.is_file() and sidecar_path(wanted).is_file():
        return wanted
    folder.mkdir(parents=True, exist_ok=True)
    LOGGER.info("exporting %s to %s ONNX in %s (once per checkpoint)", checkpoint, "int8" if int8 else "fp32", folder)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".export_") as scratch:
        scratch_fp32 = Path(scratch) / fp32_path.name
        if fp32_path.is_file() and sidecar_path(fp32_path).is_file():
            source_fp32 = fp32_path
        else:
            export_checkpoint(checkpoint, scratch_fp32, size=size, single_pass=single_pass)
            source_fp32 = scratch_fp32
        made = source_fp32
        if int8:
            made = int8_path(scratch_fp32)
            quantize_onnx(source_fp32, made, calibration_clips(calibration_folder, clip_len or CALIBRATION_CLIP_LEN))
        if source_fp32 == scratch_fp32:  # keep the fp32 export too: the int8 one is made from it
            os.replace(sidecar_path(scratch_fp32), sidecar_path(fp32_path))
            os.replace(scratch_fp32, fp32_path)
        if int8:
            os.replace(sidecar_path(made), sidecar_path(wanted))
            os.replace(made, wanted)
    return wanted


def fastest_cpu_source(checkpoint: str | Path, path: CpuPath | None = None, size: ImageSize | None = None,
                       single_pass: bool = False) -> ModelSource:
    """The model source that runs `checkpoint` on `path` (default: `fastest_cpu_path()`), exporting it first
    (cached, at network `size` (None: its own) and with `single_pass`) for the ONNX paths. The runtime options'
    precision stays "auto" (OpenVINO resolves it as above)."""
    path = path if path is not None else fastest_cpu_path()
    if path.backend == "torch":
        return CheckpointSource(Path(checkpoint))
    onnx_path = cached_export(checkpoint, size=size, single_pass=single_pass)
    return OpenVinoSource(onnx_path) if path.backend == "openvino" else OnnxSource(onnx_path)
