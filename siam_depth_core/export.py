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

    siam-depth-export --checkpoint model.pt --height 256 --width 512 --onnx model.onnx \\
        [--engine model.engine --fp16]
"""
from __future__ import annotations

import argparse
import logging
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

import onnx
import torch
from torch import Tensor, nn

from siam_depth_core.backends import BackendError
from siam_depth_core.backends.sidecar import (
    CONFIDENCE_OUTPUT,
    DISPARITY_OUTPUT,
    IMAGE_INPUT,
    ModelSidecar,
    StateTensor,
    file_sha256,
    sidecar_path,
    state_input_name,
    state_output_name,
)
from siam_depth_core.checkpoint import CheckpointError, ModelMeta, load_model
from siam_depth_core.model import SiamDepthNet, check_input_size, run_siamese
from siam_depth_core.refine import disparity_confidence

LOGGER = logging.getLogger(__name__)
DEFAULT_OPSET = 17
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


def state_layout(net: SiamDepthNet, meta: ModelMeta, height: int, width: int) -> list[StateTensor]:
    """The state tensors of one step at (height, width), in graph order (layer by layer, h then c)."""
    batch = 2 if meta.siamese else 1
    return [StateTensor(layer=layer, part=part, shape=list(shape), input_name=state_input_name(layer, part),
                        output_name=state_output_name(layer, part))
            for layer, shape in net.state_shapes(batch, height, width).items() for part in STATE_PARTS]


def export_onnx(net: SiamDepthNet, meta: ModelMeta, size: tuple[int, int], onnx_path: str | Path,
                checkpoint_sha256: str | None = None, opset: int = DEFAULT_OPSET) -> ModelSidecar:
    """Write `net` as a one-step ONNX model of network size (H, W) plus its sidecar; returns the sidecar.

    The model is checked with onnx.checker (full check, with shape inference) before returning.
    """
    if opset < DEFAULT_OPSET:
        raise ValueError(f"opset must be >= {DEFAULT_OPSET}, got {opset}")
    height, width = size
    check_input_size(height, width)
    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    step = SiameseStep(net.cpu().eval(), siamese=meta.siamese)
    layout = state_layout(net, meta, height, width)
    example = (torch.rand(1, 3, height, width), *[torch.zeros(item.shape) for item in layout])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)  # the TorchScript-based exporter
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)  # size checks: the size is fixed
        torch.onnx.export(step, example, str(onnx_path), input_names=[IMAGE_INPUT, *[s.input_name for s in layout]],
                          output_names=[*step.output_names, *[s.output_name for s in layout]],
                          opset_version=opset, do_constant_folding=True, dynamo=False)
    onnx.checker.check_model(str(onnx_path), full_check=True)
    sidecar = ModelSidecar(height=height, width=width, meta=asdict(meta),
                           state=layout, checkpoint_sha256=checkpoint_sha256, opset=opset,
                           onnx_sha256=file_sha256(onnx_path),
                           confidence_output=CONFIDENCE_OUTPUT if step.siamese else None)
    sidecar.write(sidecar_path(onnx_path))
    LOGGER.info("exported %s (%dx%d, %d state tensors) and %s", onnx_path, width, height, len(layout),
                sidecar_path(onnx_path))
    return sidecar


def export_checkpoint(checkpoint: str | Path, onnx_path: str | Path, size: tuple[int, int] | None = None,
                      opset: int = DEFAULT_OPSET) -> ModelSidecar:
    """Load a checkpoint and export it (size (H, W) defaults to the checkpoint's training size)."""
    net, meta = load_model(checkpoint)
    size = size if size is not None else meta.input_size
    return export_onnx(net, meta, size, onnx_path, checkpoint_sha256=file_sha256(checkpoint), opset=opset)


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siam-depth-export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="siam_depth checkpoint (.pt) to export")
    parser.add_argument("--height", type=int, help="network input height in pixels (multiple of 32; "
                        "default: the checkpoint's training height)")
    parser.add_argument("--width", type=int, help="network input width in pixels (multiple of 32; "
                        "default: the checkpoint's training width)")
    parser.add_argument("--onnx", required=True, type=Path, help="ONNX file to write (sidecar: <onnx>.json)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (>= 17)")
    parser.add_argument("--engine", type=Path, help="also build a TensorRT engine here (needs tensorrt and a GPU)")
    parser.add_argument("--fp16", action="store_true", help="build the engine with fp16 kernels "
                        "(the ConvLSTM cell state stays fp32)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point of `siam-depth-export`."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_arg_parser().parse_args(argv)
    if (args.height is None) != (args.width is None):
        raise SystemExit("give both --height and --width, or neither")
    size = (args.height, args.width) if args.height is not None else None
    try:
        sidecar = export_checkpoint(args.checkpoint, args.onnx, size=size, opset=args.opset)
        print(f"wrote {args.onnx} ({sidecar.width}x{sidecar.height}, opset {sidecar.opset}) and "
              f"{sidecar_path(args.onnx)}")
        if args.engine is not None:
            from siam_depth_core.backends.tensorrt_backend import build_engine_file
            build_engine_file(args.onnx, args.engine, fp16=args.fp16)
            print(f"wrote {args.engine}")
    except (CheckpointError, BackendError, ValueError) as error:
        print(f"siam-depth-export: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
