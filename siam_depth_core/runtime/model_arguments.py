"""The model arguments every runtime tool takes (`siam-depth-predict`, `-eval`, `-export`, the benchmarks):
--checkpoint / --onnx [--openvino] / --engine, --device, --num-threads, --single-pass, --precision, turned into a
model source and runtime options; with no model flag, the shipped model.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from siam_depth_core.cli import non_negative_int
from siam_depth_core.geometry import ImageSize
from siam_depth_core.runtime.backends.source import (
    PRECISIONS,
    CheckpointSource,
    EngineSource,
    ModelSource,
    OnnxSource,
    OpenVinoSource,
    RuntimeOptions,
)
from siam_depth_core.shipped_files import SHIPPED_CHECKPOINT, shipped_checkpoint

if TYPE_CHECKING:
    from typing_extensions import Unpack  # **kwargs: Unpack[...] is typing's own only from Python 3.12


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--checkpoint / --onnx [--openvino] / --engine, --device, --num-threads, --single-pass and --precision."""
    parser.add_argument("--checkpoint", help="siam_depth checkpoint (.pt), run with torch (default, when no "
                                             "--onnx/--engine is given either: the shipped models/"
                                             f"{SHIPPED_CHECKPOINT})")
    parser.add_argument("--onnx", help="exported ONNX model (siam-depth-export), run with ONNX Runtime; with "
                                       "--engine: the ONNX to build the engine from")
    parser.add_argument("--engine", help="TensorRT engine (needs an NVIDIA GPU and tensorrt)")
    parser.add_argument("--openvino", action="store_true", help="run the --onnx model (fp32 or int8 export) with "
                        "OpenVINO on the CPU instead of ONNX Runtime (pip install openvino); its compiled form is "
                        "cached under $SIAM_DEPTH_CACHE/openvino")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="with --openvino: fp32, bf16 (the "
                        "CPU's bf16 units, refused where it has none) or auto (default: bf16 where the CPU has it)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cpu; the GPU for --engine)")
    parser.add_argument("--num-threads", type=non_negative_int, default=0,
                        help="intra-op CPU threads (default 0: the library's default)")
    parser.add_argument("--single-pass", action="store_true", help="only the direct branch of the Siamese model "
                        "(half the compute; an ONNX model must be exported with --single-pass)")


def default_checkpoint(prog: str) -> Path:
    """The shipped demo model, announced on stderr in one line (`<prog>: using the shipped model <path>`);
    ValueError when this installation has none."""
    path = shipped_checkpoint()
    if path is None:
        raise ValueError("no model given and no shipped models/siam_depth_small.pt installed: use --checkpoint "
                         "model.pt, --onnx model.onnx or --engine model.engine")
    print(f"{prog}: no model given; using the shipped model {path}", file=sys.stderr)
    return path


def model_source(args: argparse.Namespace, prog: str) -> ModelSource:
    """--checkpoint, --onnx (with --openvino: run by OpenVINO) or --engine (+ --onnx to build it from) as a model
    source; none of them: the shipped model (`default_checkpoint`). ValueError for a contradictory combination."""
    if getattr(args, "openvino", False):
        if not args.onnx or args.checkpoint or args.engine:
            raise ValueError("--openvino runs an exported ONNX model: give --onnx model.onnx (and no --checkpoint "
                             "or --engine)")
        return OpenVinoSource(Path(args.onnx))
    if args.checkpoint:
        if args.onnx or args.engine:
            raise ValueError("give one model: --checkpoint, or --onnx (ONNX Runtime), or --engine (TensorRT, "
                             "with --onnx to build it from)")
        return CheckpointSource(Path(args.checkpoint))
    if args.engine:
        return EngineSource(Path(args.engine), Path(args.onnx) if args.onnx else None)
    if args.onnx:
        return OnnxSource(Path(args.onnx))
    return CheckpointSource(default_checkpoint(prog))


class ExtraRuntimeOptions(TypedDict, total=False):
    """The RuntimeOptions fields that `runtime_options` does not take from the command line."""

    input_size: ImageSize | None
    fp16: bool
    channels_last: bool
    cuda_graph: bool
    post_process: bool


def runtime_options(args: argparse.Namespace, **extra: Unpack[ExtraRuntimeOptions]) -> RuntimeOptions:
    """RuntimeOptions from --device / --num-threads / --single-pass / --precision (and any other option given as a
    keyword)."""
    return RuntimeOptions(device=args.device, num_threads=args.num_threads, single_pass=args.single_pass,
                          precision=getattr(args, "precision", "auto"), **extra)
