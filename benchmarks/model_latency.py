"""Latency of one stateful Siamese step per backend x network width x input size.

Each configuration opens the model through `DepthEstimator` (the one inference path) and runs
`--warmup` steps, then `--frames` timed steps (state carried) on a camera image of the network size;
the time taken is the estimator's own "model" timing: the backend's step, (1,3,H,W) float32 in,
refined disparity (1,1,H,W) back on the host. Reported: median and p90 latency, fps (1 / median), peak memory (process
RSS high-water mark during the configuration, and torch's CUDA max allocated on a GPU), and the
non-recurrent ablation model of the same width as a reference (ratio = recurrent / plain median,
the cost of the ConvLSTM state). Torch and ONNX Runtime run side by side on the same thread count.

    python -m benchmarks.model_latency --widths 0.25 --sizes 512x256 --json latency.json
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from siam_depth_core.backends import BackendError
from siam_depth_core.backends.source import EngineSource, NetworkSource, OnnxSource, RuntimeOptions
from siam_depth_core.checkpoint import ModelMeta
from siam_depth_core.export import export_onnx
from siam_depth_core.geometry import ImageSize
from siam_depth_core.inference import DepthEstimator
from siam_depth_core.model import count_parameters

BACKEND_VARIANTS = ("torch", "torch_channels_last", "torch_cuda_graph", "onnxruntime", "tensorrt")
DEFAULT_BACKENDS = ("torch", "torch_channels_last", "onnxruntime", "tensorrt")


@dataclass
class LatencyRow:
    """One configuration's measurement; times in milliseconds, memory in MiB."""

    backend: str
    device: str
    precision: str
    width_multiplier: float
    recurrent: bool
    height: int
    width: int
    parameters: int
    frames: int
    median_ms: float
    p90_ms: float
    fps: float
    peak_rss_mib: float
    cuda_max_allocated_mib: float | None
    recurrent_over_plain: float | None = None


def size_argument(text: str) -> ImageSize:
    """argparse type: `ImageSize.parse` ("512x256" = width x height)."""
    try:
        return ImageSize.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _reset_peak_rss() -> None:
    """Reset the kernel's RSS high-water mark of this process (Linux; no-op elsewhere)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_rss_mib() -> float:
    """VmHWM of this process in MiB (Linux), else the resource module's lifetime peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_estimator(variant: str, meta: ModelMeta, size: ImageSize, device: str, fp16: bool, threads: int,
                   workdir: Path) -> DepthEstimator:
    """A DepthEstimator running `variant` for a freshly initialised network described by `meta` (exported to
    ONNX in `workdir` for the onnxruntime and tensorrt variants)."""
    torch.manual_seed(0)
    net = meta.build_network().eval()
    on_cuda = device.startswith("cuda")
    if variant in ("torch", "torch_channels_last", "torch_cuda_graph"):
        return DepthEstimator(NetworkSource(net, meta), RuntimeOptions(
            device=device, num_threads=threads, input_size=size, fp16=fp16 and on_cuda,
            channels_last=variant == "torch_channels_last", cuda_graph=variant == "torch_cuda_graph"))
    onnx_path = workdir / f"w{meta.net_width}_{'rec' if meta.recurrent else 'plain'}_{size}.onnx"
    if not onnx_path.exists():
        export_onnx(net, meta, size, onnx_path)
    if variant == "onnxruntime":
        return DepthEstimator(OnnxSource(onnx_path), RuntimeOptions(device=device, num_threads=threads))
    if variant == "tensorrt":
        return DepthEstimator(EngineSource(onnx=onnx_path), RuntimeOptions(device=device, fp16=fp16, cuda_graph=True))
    raise ValueError(f"unknown backend variant {variant!r}; choose from {', '.join(BACKEND_VARIANTS)}")


def measure(estimator: DepthEstimator, frames: int, warmup: int, seed: int = 0) -> list[float]:
    """Seconds of the model per stateful step ("model" timing) over `frames` steps after `warmup` untimed ones."""
    image = np.random.default_rng(seed).integers(0, 256, (*estimator.input_size, 3), dtype=np.uint8)
    for index in range(warmup):
        estimator.step(image, 0.1 * index)
    return [estimator.step(image, 0.1 * (warmup + index)).timings["model"] for index in range(frames)]


def run_configuration(variant: str, meta: ModelMeta, size: ImageSize, args: argparse.Namespace,
                      workdir: Path) -> LatencyRow:
    on_cuda = args.device.startswith("cuda")
    _reset_peak_rss()
    if on_cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    estimator = make_estimator(variant, meta, size, args.device, args.fp16, args.threads, workdir)
    times_ms = np.array(measure(estimator, args.frames, args.warmup)) * 1e3
    median = float(np.median(times_ms))
    fp16 = args.fp16 and on_cuda and variant != "onnxruntime"
    return LatencyRow(
        backend=variant, device=args.device, precision="fp16" if fp16 else "fp32", width_multiplier=meta.net_width,
        recurrent=meta.recurrent, height=size.height, width=size.width, parameters=count_parameters(meta.build_network()),
        frames=args.frames, median_ms=median, p90_ms=float(np.percentile(times_ms, 90)), fps=1e3 / median,
        peak_rss_mib=_peak_rss_mib(),
        cuda_max_allocated_mib=torch.cuda.max_memory_allocated() / 2**20 if on_cuda else None)


def skip_reason(variant: str, device: str) -> str | None:
    """Why `variant` cannot run here, or None."""
    on_cuda = device.startswith("cuda")
    if variant == "tensorrt":
        if not torch.cuda.is_available():
            return "no CUDA GPU"
        if importlib.util.find_spec("tensorrt") is None:
            return "tensorrt not installed"
    if variant == "torch_cuda_graph" and not on_cuda:
        return "CUDA graphs need --device cuda"
    return None


def run_all(args: argparse.Namespace) -> tuple[list[LatencyRow], dict[str, str]]:
    rows: list[LatencyRow] = []
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="siam_latency_") as tmp:
        for net_width in args.widths:
            for size in args.sizes:
                for variant in args.backends:
                    reason = skip_reason(variant, args.device)
                    if reason is not None:
                        skipped[variant] = reason
                        continue
                    by_recurrence = {}
                    for recurrent in (True, False) if args.ablation else (True,):
                        meta = ModelMeta(net_width=net_width, recurrent=recurrent, height=size.height, width=size.width)
                        try:
                            row = run_configuration(variant, meta, size, args, Path(tmp))
                        except BackendError as error:
                            skipped[variant] = str(error)
                            break
                        by_recurrence[recurrent] = row
                        rows.append(row)
                        print(format_row(row), flush=True)
                    if True in by_recurrence and False in by_recurrence:
                        ratio = by_recurrence[True].median_ms / by_recurrence[False].median_ms
                        by_recurrence[True].recurrent_over_plain = ratio
    return rows, skipped


HEADER = (f"{'backend':<20} {'prec':<5} {'width':>5} {'model':<5} {'size':>9} {'median ms':>10} {'p90 ms':>9} "
          f"{'fps':>7} {'RSS MiB':>8} {'CUDA MiB':>8} {'rec/plain':>9}")


def format_row(row: LatencyRow) -> str:
    cuda = f"{row.cuda_max_allocated_mib:8.0f}" if row.cuda_max_allocated_mib is not None else f"{'-':>8}"
    ratio = f"{row.recurrent_over_plain:9.2f}" if row.recurrent_over_plain is not None else f"{'-':>9}"
    return (f"{row.backend:<20} {row.precision:<5} {row.width_multiplier:>5} {'lstm' if row.recurrent else 'plain':<5} "
            f"{row.width:>4}x{row.height:<4} {row.median_ms:10.2f} {row.p90_ms:9.2f} {row.fps:7.2f} "
            f"{row.peak_rss_mib:8.0f} {cuda} {ratio}")


def machine_description(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                            "cpu_count": os.cpu_count(), "torch": torch.__version__,
                            "torch_threads": torch.get_num_threads()}
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime
        info["onnxruntime"] = onnxruntime.__version__
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    try:
        model_names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                       if line.startswith("model name")]
        info["cpu_model"] = model_names[0] if model_names else None
    except OSError:
        pass
    return info


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", type=lambda s: s.split(","), default=list(DEFAULT_BACKENDS),
                        help=f"comma list from {', '.join(BACKEND_VARIANTS)} (unavailable ones are skipped)")
    parser.add_argument("--widths", type=lambda s: [float(v) for v in s.split(",")], default=[1.0, 0.5, 0.25],
                        help="network width multipliers, comma separated")
    parser.add_argument("--sizes", type=lambda s: [size_argument(v) for v in s.split(",")],
                        default=[ImageSize(256, 512), ImageSize(192, 640), ImageSize(320, 1024)],
                        help="network sizes WxH, comma separated")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--fp16", action="store_true", help="fp16 for torch (autocast) and TensorRT on CUDA")
    parser.add_argument("--frames", type=int, default=50, help="timed steps per configuration (>= 50 for reports)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before timing")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="CPU threads for torch and ONNX Runtime alike")
    parser.add_argument("--no-ablation", dest="ablation", action="store_false",
                        help="skip the non-recurrent reference model")
    parser.add_argument("--json", type=Path, help="write rows + machine description here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    unknown = set(args.backends) - set(BACKEND_VARIANTS)
    if unknown:
        raise SystemExit(f"unknown backends {sorted(unknown)}; choose from {', '.join(BACKEND_VARIANTS)}")
    torch.set_num_threads(args.threads)
    machine = machine_description(args.device)
    print(json.dumps(machine))
    print(HEADER)
    rows, skipped = run_all(args)
    print("\n" + HEADER)
    for row in rows:
        print(format_row(row))
    for variant, reason in skipped.items():
        print(f"skipped {variant}: {reason}")
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine, "settings": {
            "frames": args.frames, "warmup": args.warmup, "threads": args.threads, "fp16": args.fp16},
            "rows": [asdict(row) for row in rows], "skipped": skipped}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
