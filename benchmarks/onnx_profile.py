"""Where an ONNX Runtime step spends its time: per operator type and per part of the network.

Exports the width-0.25 network (random weights: the time does not depend on them) at one size in the
Siamese or single-pass mode, optionally quantises it to int8 like `siam-depth-export --int8`, runs
`--frames` steps with the state carried under ONNX Runtime's profiler, with the session options of the
onnxruntime backend, and sums the kernel times of the timed steps (the warm-up ones are left out):

- per operator type (Conv, ConvLSTM gate arithmetic Mul/Add/Sigmoid/Tanh, Resize, Concat, the int8
  QuantizeLinear/DequantizeLinear, ...),
- per part of the network: the ConvLSTM layers (bottleneck 7a/7b and skips), the encoder, the decoder
  (deconv, iconv, disp) and the operations of the forward functions themselves (max-pooling, skip
  concatenation, disparity upsampling, flip, Siamese batch, refinement), from the node names the exporter
  gives.

    python -m benchmarks.onnx_profile --size 512x256 --threads 2 --int8 --json profile.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from benchmarks.model_latency import calibration_clips, machine_description, size_argument
from siam_depth_core.cli import OneLineParser, non_negative_int, positive_int, run_cli
from siam_depth_core.geometry import ImageSize
from siam_depth_core.network.checkpoint import ModelMeta
from siam_depth_core.runtime.backends.onnxruntime_backend import session_options_for
from siam_depth_core.runtime.backends.sidecar import ModelSidecar, sidecar_path
from siam_depth_core.runtime.export import export_onnx

#: Node-name fragments (module paths of the exported network, Table 1's layer names) -> the part of the
#: network they belong to, tried in this order. The rest are operations of the forward functions themselves:
#: the encoder's max-pooling, the decoder's skip concatenations and disparity upsampling, and at the top
#: level the flip, the Siamese batch and the refinement.
PARTS = (("convlstm", "ConvLSTM (7a/7b + skips)"), ("deconv", "decoder"), ("iconv", "decoder"),
         ("disp", "decoder"), ("conv", "encoder"))
TOP_LEVEL = "pool, concat, resize, flip, refine"


@dataclass
class Profile:
    """Summed kernel time of the timed steps, milliseconds per step."""

    model: str
    precision: str
    mode: str
    steps: int
    step_ms: float
    by_op_type: dict[str, float] = field(default_factory=dict)
    by_part: dict[str, float] = field(default_factory=dict)


def network_part(node_name: str) -> str:
    """The part of the network a node of the exported graph belongs to (see PARTS), from its name."""
    lowered = node_name.lower()
    return next((part for fragment, part in PARTS if fragment in lowered), TOP_LEVEL)


def export_model(size: ImageSize, width: float, single_pass: bool, int8: bool, workdir: Path) -> Path:
    """The ONNX file of a freshly initialised network (int8: quantised and calibrated like the export CLI)."""
    torch.manual_seed(0)
    meta = ModelMeta(net_width=width, height=size.height, width=size.width)
    onnx_path = workdir / "model.onnx"
    export_onnx(meta.build_network().eval(), meta, size, onnx_path, single_pass=single_pass)
    if not int8:
        return onnx_path
    from siam_depth_core.runtime.quantize import quantize_onnx

    int8_path = onnx_path.with_suffix(".int8.onnx")
    quantize_onnx(onnx_path, int8_path, calibration_clips(size))
    return int8_path


def profile_model(onnx_path: Path, threads: int, frames: int, warmup: int) -> tuple[list[dict], float]:
    """(ONNX Runtime profiler events of the timed steps, wall median ms per step)."""
    import onnxruntime

    sidecar = ModelSidecar.read(sidecar_path(onnx_path))
    options = session_options_for(onnxruntime, threads)
    options.enable_profiling = True
    options.profile_file_prefix = str(onnx_path.with_suffix(""))
    session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    image = np.random.default_rng(0).random((1, 3, *sidecar.input_size), dtype=np.float32)
    state = {item.input_name: np.zeros(item.shape, np.float32) for item in sidecar.state}
    output_names = [item.output_name for item in sidecar.state]
    wall_s = []
    for _ in range(warmup + frames):
        start = time.perf_counter()
        next_state = session.run(output_names, {sidecar.image_input: image, **state})
        wall_s.append(time.perf_counter() - start)
        state = dict(zip((item.input_name for item in sidecar.state), next_state, strict=True))
    events = json.loads(Path(session.end_profiling()).read_text())
    runs = [event for event in events if event.get("cat") == "Session" and event.get("name") == "model_run"]
    first_timed = runs[warmup]["ts"] if len(runs) > warmup else 0
    kernels = [event for event in events if event.get("cat") == "Node" and event["name"].endswith("_kernel_time")
               and event["ts"] >= first_timed]
    return kernels, 1000 * float(np.median(wall_s[warmup:]))


def summarise(kernels: list[dict], steps: int) -> tuple[dict[str, float], dict[str, float]]:
    """Milliseconds per step by operator type and by network part, largest first."""
    by_op: dict[str, float] = defaultdict(float)
    by_part: dict[str, float] = defaultdict(float)
    for event in kernels:
        ms = event["dur"] / 1000 / steps
        by_op[event["args"].get("op_name", "?")] += ms
        by_part[network_part(event["name"].removesuffix("_kernel_time"))] += ms

    def ordered(totals: dict[str, float]) -> dict[str, float]:
        return dict(sorted(totals.items(), key=lambda item: -item[1]))
    return ordered(by_op), ordered(by_part)


def print_profile(profile: Profile, top: int) -> None:
    kernel_ms = sum(profile.by_op_type.values())
    print(f"\n{profile.model} {profile.precision} {profile.mode}: {profile.step_ms:.1f} ms per step (wall median), "
          f"{kernel_ms:.1f} ms in kernels")
    for title, totals in (("operator type", profile.by_op_type), ("network part", profile.by_part)):
        print(f"  {title:<28} {'ms/step':>8} {'share':>6}")
        for name, ms in list(totals.items())[:top]:
            print(f"  {name:<28} {ms:8.2f} {100 * ms / kernel_ms:5.1f}%")


def build_arg_parser() -> OneLineParser:
    parser = OneLineParser(prog="onnx_profile", description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=size_argument, default=ImageSize(256, 512), help="network size WxH")
    parser.add_argument("--width", type=float, default=0.25, help="network width multiplier")
    parser.add_argument("--threads", type=non_negative_int, default=2, help="intra-op CPU threads")
    parser.add_argument("--frames", type=positive_int, default=10, help="profiled steps")
    parser.add_argument("--warmup", type=non_negative_int, default=2, help="steps before the profiled ones")
    parser.add_argument("--modes", default="siamese,single", help="comma list from siamese, single")
    parser.add_argument("--int8", action="store_true", help="also profile the int8 model of each mode")
    parser.add_argument("--top", type=positive_int, default=12, help="rows per table")
    parser.add_argument("--json", type=Path, help="write the profiles + machine description here")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    if not modes or set(modes) - {"siamese", "single"}:
        parser.error(f"--modes {args.modes!r}: use a comma list from siamese, single")
    return run_cli("onnx_profile", lambda: profile_all(args, modes))


def profile_all(args: argparse.Namespace, modes: list[str]) -> int:
    """Export, profile and print every mode (x fp32/int8); write the JSON when asked."""
    profiles = []
    with tempfile.TemporaryDirectory(prefix="siam_depth_profile_") as tmp:
        for mode in modes:
            for int8 in (False, True) if args.int8 else (False,):
                workdir = Path(tmp) / f"{mode}_{'int8' if int8 else 'fp32'}"
                workdir.mkdir()
                onnx_path = export_model(args.size, args.width, mode == "single", int8, workdir)
                kernels, step_ms = profile_model(onnx_path, args.threads, args.frames, args.warmup)
                by_op, by_part = summarise(kernels, args.frames)
                profile = Profile(model=f"width {args.width:g} {args.size.width}x{args.size.height}",
                                  precision="int8" if int8 else "fp32", mode=mode, steps=args.frames,
                                  step_ms=step_ms, by_op_type=by_op, by_part=by_part)
                print_profile(profile, args.top)
                profiles.append(profile)
    machine = machine_description("cpu")
    print(f"\nmachine: {machine.get('cpu_model', '?')}, threads {args.threads}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine, "profiles": [asdict(p) for p in profiles]}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
