"""Export a checkpoint to ONNX with explicit recurrent state (and optionally build a TensorRT engine).

The ONNX graph is one Siamese step at a fixed size: inputs `image` (1,3,H,W) RGB in [0,1] and every
ConvLSTM state tensor (`state_in.<layer>.h`, `state_in.<layer>.c`, batch 2: direct and flipped
stream), outputs `disparity` (1,1,H,W) — the refined full-scale left disparity, a fraction of width —,
`confidence` (1,1,H,W) in [0, 1] — the agreement of the two estimates of the left disparity
(`refine.disparity_confidence`; only with the Siamese pass: a single-pass graph has no second estimate
and no `confidence` output) — and every next state tensor (`state_out.<layer>.h|c`). The image flip,
the 2N batch, the refinement and the confidence live inside the graph. A JSON sidecar (`<onnx>.json`)
records size, state layout, the confidence output's name (or none), ModelMeta (with the rig baseline),
the checkpoint's sha256 and the ONNX file's sha256 (checked by the backends at load).

Several streams (cameras) per call (issue 28): `--batch N` exports the step for N streams at once, image
(N,3,H,W), outputs (N,1,H,W) and every state tensor with the rows of N streams (2N for the Siamese pass,
pass-major: `backends.streams`); `--dynamic-batch` makes that axis dynamic (`batch` for the image and
outputs, `state_batch` for the state), so one file runs any number of streams, and N is the largest a
TensorRT engine of it is optimised for (profile 1..N). The sidecar records the batch.

    siam-depth-export --checkpoint model.pt --height 256 --width 512 --onnx model.onnx \\
        [--batch N] [--dynamic-batch] [--engine model.engine --fp16] [--int8] [--openvino --precision auto]

`--openvino` also compiles every ONNX file written (fp32 and int8) with OpenVINO into its compiled-model
cache (`$SIAM_DEPTH_CACHE/openvino`, keyed by the file's sha256 and the precision), so that the node's
first start does not compile.
"""
from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from siam_depth_core.cli import OneLineParser, positive_int, run_cli
from siam_depth_core.network.checkpoint import ModelMeta, load_model
from siam_depth_core.network.model import SiamDepthNet, check_input_size, run_siamese
from siam_depth_core.network.refine import disparity_confidence
from siam_depth_core.runtime.backends.sidecar import (
    BATCH_AXIS,
    CONFIDENCE_OUTPUT,
    DISPARITY_OUTPUT,
    IMAGE_INPUT,
    STATE_BATCH_AXIS,
    ModelSidecar,
    StateTensor,
    file_sha256,
    sidecar_path,
    state_input_name,
    state_output_name,
)
from siam_depth_core.runtime.backends.source import PRECISIONS, OpenVinoSource, RuntimeOptions
from siam_depth_core.runtime.backends.streams import BatchRange
from siam_depth_core.runtime.model_arguments import default_checkpoint
from siam_depth_core.shipped_files import SHIPPED_CHECKPOINT

LOGGER = logging.getLogger(__name__)
DEFAULT_OPSET = 17
#: int8 calibration by default: 3 runs of 8 consecutive frames of this drive (the shipped model's training drive).
CALIBRATION_DRIVE = "2011_09_26/2011_09_26_drive_0009_sync"
CALIBRATION_CLIP_LEN = 8
CALIBRATION_CLIPS = 3
STATE_PARTS = ("h", "c")


class SiameseStep(nn.Module):
    """One stateful Siamese step with a flat signature:
    (image, *state) -> (disparity, confidence, *next_state), or (disparity, *next_state) when not Siamese.

    image: (1,3,H,W); state: h, c of each layer in `net.state_names` order, each (2,C,h,w) (batch 1
    for a non-Siamese model). disparity: (1,1,H,W) refined left disparity, fraction of width.
    confidence: (1,1,H,W) in [0, 1], `refine.disparity_confidence` of the direct and flipped estimates;
    a single pass (siamese=False) has one estimate only, so it returns no confidence.
    """

    def __init__(self, net: SiamDepthNet, siamese: bool = True) -> None:
        super().__init__()
        self.net = net
        self.siamese = siamese

    @property
    def output_names(self) -> list[str]:
        """Names of the leading (non-state) outputs: disparity, and confidence when Siamese."""
        return [DISPARITY_OUTPUT, CONFIDENCE_OUTPUT] if self.siamese else [DISPARITY_OUTPUT]

    def forward(self, image: Tensor, *flat_state: Tensor) -> tuple[Tensor, ...]:
        state = tuple(zip(flat_state[0::2], flat_state[1::2], strict=True)) if flat_state else None
        output, next_state = run_siamese(self.net, image, state, siamese=self.siamese)
        flat_next_state = [tensor for layer in next_state for tensor in layer]
        disparity = output.disp_refined[0][:, 0:1]
        if output.disp_flipped is None:
            return (disparity, *flat_next_state)
        return (disparity, disparity_confidence(output.disp_direct[0], output.disp_flipped[0]), *flat_next_state)


class DecomposedElu(nn.Module):
    """ELU as relu(x) + exp(min(x, 0)) - 1, the same values (to float rounding) in five elementwise ONNX ops.

    ONNX Runtime's own Elu kernel runs on one thread without vectorisation: on a 2-core AMD EPYC it took
    1.9 ms for a (2,16,128,256) tensor against 0.55-0.8 ms for these five ops, and Elu was 11 % of an fp32
    and 18 % of an int8 step's kernel time at 512x256 (`python -m benchmarks.onnx_profile`).
    """

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x) + torch.exp(torch.clamp(x, max=0.0)) - 1.0


def with_decomposed_elu(net: SiamDepthNet) -> SiamDepthNet:
    """A copy of `net` whose nn.ELU layers are DecomposedElu (`net` itself is left unchanged)."""
    exported = copy.deepcopy(net)
    for module in list(exported.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.ELU):
                setattr(module, name, DecomposedElu())
    return exported


def state_layout(net: SiamDepthNet, siamese: bool, height: int, width: int) -> list[StateTensor]:
    """The state tensors of one step at (height, width), in graph order (layer by layer, h then c): batch 2
    (direct and flipped streams) for a Siamese step, 1 for a single pass."""
    batch = 2 if siamese else 1
    return [StateTensor(layer=layer, part=part, shape=list(shape), input_name=state_input_name(layer, part),
                        output_name=state_output_name(layer, part))
            for layer, shape in net.state_shapes(batch, height, width).items() for part in STATE_PARTS]


def export_onnx(net: SiamDepthNet, meta: ModelMeta, size: tuple[int, int], onnx_path: str | Path,
                checkpoint_sha256: str | None = None, opset: int = DEFAULT_OPSET, single_pass: bool = False,
                batch: int = 1, dynamic_batch: bool = False) -> ModelSidecar:
    """Write `net` as a one-step ONNX model of network size (H, W) plus its sidecar; returns the sidecar.

    batch: streams per call (image (batch,3,H,W)); dynamic_batch: the batch axis of the image, the outputs and
    the state is dynamic (any number of streams; `batch` is recorded as the largest to optimise for).

    single_pass: only the direct branch of a Siamese model (no flipped image, no refinement, no confidence,
    state of batch 1): half the compute. ELU is written as elementwise ops (`DecomposedElu`, faster in ONNX
    Runtime). The model is checked with onnx.checker (full check, with shape
    inference) before returning.
    """
    if opset < DEFAULT_OPSET:
        raise ValueError(f"opset must be >= {DEFAULT_OPSET}, got {opset}")
    if batch < 1:
        raise ValueError(f"batch must be a positive number of streams, got {batch}")
    height, width = size
    check_input_size(height, width)
    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    step = SiameseStep(with_decomposed_elu(net.cpu().eval()), siamese=meta.siamese and not single_pass)
    layout = state_layout(net, step.siamese, height, width)
    # A dynamic batch is traced at 2 streams, so that no size-1 axis is folded into the graph as a constant.
    traced = max(batch, 2) if dynamic_batch else batch
    example = (torch.rand(traced, 3, height, width),
               *[torch.zeros(item.shape[0] * traced, *item.shape[1:]) for item in layout])
    output_names = [*step.output_names, *[s.output_name for s in layout]]
    dynamic_axes = None
    if dynamic_batch:
        dynamic_axes = {name: {0: BATCH_AXIS} for name in (IMAGE_INPUT, *step.output_names)}
        dynamic_axes.update({name: {0: STATE_BATCH_AXIS} for s in layout for name in (s.input_name, s.output_name)})
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)  # the TorchScript-based exporter
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)  # size checks: the size is fixed
        torch.onnx.export(step, example, str(onnx_path), input_names=[IMAGE_INPUT, *[s.input_name for s in layout]],
                          output_names=output_names, dynamic_axes=dynamic_axes,
                          opset_version=opset, do_constant_folding=True, dynamo=False)
    onnx.checker.check_model(str(onnx_path), full_check=True)
    sidecar = ModelSidecar(height=height, width=width, meta=asdict(meta),
                           state=layout, checkpoint_sha256=checkpoint_sha256, opset=opset,
                           onnx_sha256=file_sha256(onnx_path),
                           confidence_output=CONFIDENCE_OUTPUT if step.siamese else None,
                           single_pass=meta.siamese and single_pass, batch=batch, dynamic_batch=dynamic_batch)
    sidecar.write(sidecar_path(onnx_path))
    LOGGER.info("exported %s (%dx%d, batch %s, %d state tensors) and %s", onnx_path, width, height,
                sidecar.batch_range(), len(layout), sidecar_path(onnx_path))
    return sidecar


def export_checkpoint(checkpoint: str | Path, onnx_path: str | Path, size: tuple[int, int] | None = None,
                      opset: int = DEFAULT_OPSET, single_pass: bool = False, batch: int = 1,
                      dynamic_batch: bool = False) -> ModelSidecar:
    """Load a checkpoint and export it (size (H, W) defaults to the checkpoint's training size)."""
    net, meta = load_model(checkpoint)
    size = size if size is not None else meta.input_size
    return export_onnx(net, meta, size, onnx_path, checkpoint_sha256=file_sha256(checkpoint), opset=opset,
                       single_pass=single_pass, batch=batch, dynamic_batch=dynamic_batch)


def calibration_clips(folder: Path | None, clip_len: int = CALIBRATION_CLIP_LEN, clips: int = CALIBRATION_CLIPS
                      ) -> list[list[np.ndarray]]:
    """Camera frames for int8 calibration: `clips` runs of `clip_len` consecutive images, spread over the sorted
    images of `folder`, or by default over KITTI drive 2011_09_26_0009 (../shared/data or $KITTI_ROOT)."""
    from siam_depth_core.data import paths
    from siam_depth_core.data.kitti import IMAGE_EXTENSIONS, KittiDrive, load_image

    if folder is None:
        drive = KittiDrive(paths.kitti_raw_root(), CALIBRATION_DRIVE)
        if not drive.exists():
            raise FileNotFoundError(f"int8 calibration needs camera frames: KITTI drive {CALIBRATION_DRIVE} is not under "
                                    f"{paths.kitti_raw_root()}; pass --calibration-images FOLDER (consecutive frames)")
        files = [drive.image_path(frame) for frame in drive.frames()]
    else:
        if not folder.is_dir():
            raise FileNotFoundError(f"calibration folder not found: {folder}")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if len(files) < clip_len:
        raise ValueError(f"int8 calibration needs at least {clip_len} consecutive frames, found {len(files)}")
    starts = np.unique(np.linspace(0, len(files) - clip_len, clips).round().astype(int))
    return [[load_image(path) for path in files[start:start + clip_len]] for start in starts]


def build_arg_parser() -> OneLineParser:
    parser = OneLineParser(prog="siam-depth-export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="siam_depth checkpoint (.pt) to export (default: the shipped models/"
                        f"{SHIPPED_CHECKPOINT})")
    parser.add_argument("--height", type=positive_int, help="network input height in pixels (multiple of 32; "
                        "default: the checkpoint's training height)")
    parser.add_argument("--width", type=positive_int, help="network input width in pixels (multiple of 32; "
                        "default: the checkpoint's training width)")
    parser.add_argument("--onnx", type=Path, help="ONNX file to write (sidecar: <onnx>.json; default: "
                        "<checkpoint stem>.onnx in the current folder)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (>= 17)")
    parser.add_argument("--single-pass", action="store_true", help="only the direct branch of the Siamese model "
                        "(no flipped image, no refinement, no confidence): half the compute")
    parser.add_argument("--batch", type=positive_int, default=1, help="streams (cameras) per call: image "
                        "(N,3,H,W) and the state of N streams (default 1); with --dynamic-batch the largest a "
                        "TensorRT engine is optimised for (profile 1..N)")
    parser.add_argument("--dynamic-batch", action="store_true", help="a dynamic batch axis: the ONNX file runs "
                        "any number of streams per call")
    parser.add_argument("--int8", action="store_true", help="also write a statically quantised int8 copy, "
                        "<onnx stem>.int8.onnx, for ONNX Runtime on CPUs (calibrated on real frames streamed with "
                        "the ConvLSTM state)")
    parser.add_argument("--calibration-images", type=Path, help="folder of consecutive camera frames for the int8 "
                        f"calibration (default: KITTI drive {CALIBRATION_DRIVE})")
    parser.add_argument("--engine", type=Path, help="also build a TensorRT engine here (needs tensorrt and a GPU)")
    parser.add_argument("--fp16", action="store_true", help="build the engine with fp16 kernels "
                        "(the ConvLSTM cell state stays fp32)")
    parser.add_argument("--openvino", action="store_true", help="also compile the ONNX file(s) with OpenVINO into "
                        "its compiled-model cache ($SIAM_DEPTH_CACHE/openvino), at --precision")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="with --openvino: fp32, bf16 or "
                        "auto (default: bf16 where this CPU has it; the cache is per precision)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point of `siam-depth-export`."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    if (args.height is None) != (args.width is None):
        parser.error("give both --height and --width, or neither")
    size = (args.height, args.width) if args.height is not None else None

    def body() -> int:
        checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint("siam-depth-export")
        if args.onnx is None:
            args.onnx = Path(f"{checkpoint.stem}{'.single' if args.single_pass else ''}.onnx")
        sidecar = export_checkpoint(checkpoint, args.onnx, size=size, opset=args.opset,
                                    single_pass=args.single_pass, batch=args.batch, dynamic_batch=args.dynamic_batch)
        batch = "" if sidecar.batch_range() == BatchRange() else f", batch {sidecar.batch_range()}"
        print(f"wrote {args.onnx} ({sidecar.width}x{sidecar.height}, opset {sidecar.opset}"
              f"{', single pass' if sidecar.single_pass else ''}{batch}) and {sidecar_path(args.onnx)}")
        if args.int8:
            from siam_depth_core.runtime.quantize import int8_path, quantize_onnx

            quantized = int8_path(args.onnx)
            quantize_onnx(args.onnx, quantized, calibration_clips(args.calibration_images))
            print(f"wrote {quantized} and {sidecar_path(quantized)}")
        if args.openvino:
            from siam_depth_core.runtime.backends.openvino_backend import OpenVinoBackend
            from siam_depth_core.runtime.quantize import int8_path

            written = [args.onnx] + ([int8_path(args.onnx)] if args.int8 else [])
            for onnx_file in written:
                backend = OpenVinoBackend.open(OpenVinoSource(onnx_file), RuntimeOptions(precision=args.precision))
                print(f"OpenVINO {backend.precision}: {onnx_file} {'already in' if backend.from_cache else 'compiled into'}"
                      f" {backend.cache_file}")
        if args.engine is not None:
            from siam_depth_core.runtime.backends.tensorrt_backend import build_engine_file
            build_engine_file(args.onnx, args.engine, fp16=args.fp16)
            print(f"wrote {args.engine}")
        return 0

    return run_cli("siam-depth-export", body)


if __name__ == "__main__":
    raise SystemExit(main())
