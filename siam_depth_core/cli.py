"""What the command-line tools share: the model arguments, checked number types, and one-line errors.

Every CLI answers bad input with one line, `<prog>: error: <what>, <what to do>`, and exit code 2 (as
argparse does for bad arguments), never a traceback: `run_cli` turns the errors a user can cause
(missing or corrupt files, bad values, an option a backend cannot honour, an unwritable output) into
that line.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypedDict

from siam_depth_core.backends import BackendError
from siam_depth_core.backends.source import (
    CheckpointSource,
    EngineSource,
    ModelSource,
    OnnxSource,
    RuntimeOptions,
)
from siam_depth_core.checkpoint import CheckpointError
from siam_depth_core.geometry import ImageSize
from siam_depth_core.shipped_files import SHIPPED_CHECKPOINT, shipped_checkpoint

if TYPE_CHECKING:
    from typing_extensions import Unpack  # **kwargs: Unpack[...] is typing's own only from Python 3.12

#: Exit code of every CLI for bad input (argparse's own).
USAGE_ERROR = 2
#: Errors a user's input can cause; anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError, CheckpointError, BackendError)


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, `<prog>: error: <message> (see --help)`, exit code 2
    (argparse's own also prints the whole usage block first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def one_line(error: BaseException) -> str:
    """The error's message on one line."""
    return " ".join(str(error).split()) or type(error).__name__


def run_cli(prog: str, body: Callable[[], int]) -> int:
    """Run a CLI body; a user error becomes `<prog>: error: <message>` on stderr and exit code 2."""
    try:
        return body()
    except USER_ERRORS as error:
        print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
        return USAGE_ERROR


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--checkpoint / --onnx / --engine, --device and --num-threads."""
    parser.add_argument("--checkpoint", help="siam_depth checkpoint (.pt), run with torch (default, when no "
                                             "--onnx/--engine is given either: the shipped models/"
                                             f"{SHIPPED_CHECKPOINT})")
    parser.add_argument("--onnx", help="exported ONNX model (siam-depth-export), run with ONNX Runtime; with "
                                       "--engine: the ONNX to build the engine from")
    parser.add_argument("--engine", help="TensorRT engine (needs an NVIDIA GPU and tensorrt)")
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
    """--checkpoint, --onnx or --engine (+ --onnx to build it from) as a model source; none of them: the
    shipped model (`default_checkpoint`). ValueError for a contradictory combination."""
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
    """RuntimeOptions from --device / --num-threads / --single-pass (and any other option given as a keyword)."""
    return RuntimeOptions(device=args.device, num_threads=args.num_threads, single_pass=args.single_pass, **extra)
