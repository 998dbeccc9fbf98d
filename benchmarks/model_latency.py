"""Latency of one stateful Siamese step per backend x network width x input size, against a reference network.

Each configuration opens the model through `DepthEstimator` (the one inference path) and runs
`--warmup` steps, then `--frames` timed steps (state carried) on a camera image of the network size;
the time taken is the estimator's own "model" timing: the backend's step, (1,3,H,W) float32 in,
refined disparity (1,1,H,W) back on the host. Reported: median and p90 latency, fps (1 / median), peak
memory (process RSS high-water mark, and torch's CUDA max allocated on a GPU), and the non-recurrent
ablation model of the same width (rec/plain = recurrent / plain median, the cost of the ConvLSTM state).

The reference is what a user would run instead: monodepth2's depth network layout (ResNet-18 encoder,
monodepth2 decoder, `benchmarks/reference_net.py`) at the same size and thread count, for one image
and for image + flip (its post-processing, a batch of 2), on torch, ONNX Runtime and OpenVINO (fp32 and bf16,
the precision of the row it is paired with). All configurations
of a size are timed interleaved, `--rounds` rounds of a few steps each, so that load drift on a shared
machine hits them alike; every row of ours gives `speedup` = reference median / our median on the same
runtime (image + flip for the Siamese step, one image for the single-pass step; > 1 = we are faster).

`--threads 1,2` times every configuration at each thread count in the same interleaved run (torch's
process-wide thread count is set before each of its steps; ONNX Runtime sessions hold their own), and
the ratio table gives, per interleaving round, our speed against the reference, int8 against fp32 and
2 threads against 1, as the median and the spread (min-max) over the rounds: ratios measured side by
side are what a shared machine's drifting load leaves comparable. OpenVINO rows (`openvino_fp32`,
`openvino_bf16`: the fp32 export at that precision; `openvino_int8`: the int8 QDQ export, its other operators
at OpenVINO's auto precision, bf16 where the CPU has it) are also given against ONNX Runtime fp32 per round.

    python -m benchmarks.model_latency --widths 0.25 --sizes 512x256 --threads 1,2 --json latency.json
    python -m benchmarks.model_latency --backends onnxruntime,openvino_bf16,openvino_int8 --widths 1 \\
        --sizes 416x128 --threads 1,2 --no-ablation --no-reference --rounds 5 --frames 25
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.reference_net import Monodepth2Reference
from siam_depth_core.cli import OneLineParser, non_negative_int, positive_int, run_cli
from siam_depth_core.geometry import ImageSize
from siam_depth_core.network.checkpoint import ModelMeta
from siam_depth_core.network.model import check_input_size, count_parameters
from siam_depth_core.runtime.backends import BackendError
from siam_depth_core.runtime.backends.source import (
    EngineSource,
    NetworkSource,
    OnnxSource,
    OpenVinoSource,
    RuntimeOptions,
)
from siam_depth_core.runtime.export import export_onnx
from siam_depth_core.runtime.inference import DepthEstimator

BACKEND_VARIANTS = ("torch", "torch_channels_last", "torch_cuda_graph", "onnxruntime", "onnxruntime_int8", "tensorrt",
                    "openvino_fp32", "openvino_bf16", "openvino_int8")
DEFAULT_BACKENDS = ("torch", "torch_channels_last", "onnxruntime", "tensorrt")
#: Runtime of each variant, for pairing with the reference timed on the same runtime (and, for OpenVINO, precision;
#: the int8 export has no int8 reference).
RUNTIME = {"torch": "torch", "torch_channels_last": "torch", "torch_cuda_graph": "torch", "onnxruntime": "onnxruntime",
           "onnxruntime_int8": "onnxruntime", "tensorrt": "tensorrt", "openvino_fp32": "openvino_fp32",
           "openvino_bf16": "openvino_bf16", "openvino_int8": "openvino_int8"}
#: Runtimes the reference network is timed on.
REFERENCE_RUNTIMES = ("torch", "onnxruntime", "openvino_fp32", "openvino_bf16")
#: OpenVINO variants: (which export, precision).
OPENVINO_VARIANTS = {"openvino_fp32": ("fp32", "fp32"), "openvino_bf16": ("fp32", "bf16"),
                     "openvino_int8": ("int8", "auto")}
REFERENCE_NAME = "monodepth2 ResNet-18"


@dataclass
class LatencyRow:
    """One configuration's measurement; times in milliseconds, memory in MiB.

    model: "ours" (the Siamese ConvLSTM step) or the reference; mode: "siamese" (image + flip, refined) or
    "single" (one pass: the direct branch, or the reference on one image); images: batch of the reference
    (1, or 2 for image + flip). speedup: the reference's median on the same runtime in the same mode / this.
    """

    backend: str
    model: str
    mode: str
    device: str
    precision: str
    width_multiplier: float | None
    recurrent: bool | None
    images: int
    height: int
    width: int
    parameters: int
    frames: int
    median_ms: float
    p90_ms: float
    fps: float
    peak_rss_mib: float
    cuda_max_allocated_mib: float | None
    threads: int = 1
    lstm_ratio: float | None = None
    recurrent_over_plain: float | None = None
    speedup: float | None = None
    round_medians_ms: list[float] = field(default_factory=list)


def size_argument(text: str) -> ImageSize:
    """argparse type: a network size `ImageSize.parse` reads ("512x256" = width x height), multiples of 32."""
    try:
        size = ImageSize.parse(text)
        check_input_size(*size)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return size


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


def calibration_clips(size: ImageSize) -> list[list[np.ndarray]]:
    """Real KITTI frames (3 clips of 4 from drive 0009) for int8 calibration, else random images."""
    from siam_depth_core.data import paths
    from siam_depth_core.data.kitti import KittiDrive, load_image

    drive = KittiDrive(paths.kitti_raw_root(), "2011_09_26/2011_09_26_drive_0009_sync")
    if drive.exists():
        return [[load_image(drive.image_path(f)) for f in range(start, start + 4)] for start in (0, 20, 40)]
    rng = np.random.default_rng(0)
    return [[rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(4)]]


def make_estimator(variant: str, meta: ModelMeta, size: ImageSize, device: str, fp16: bool, threads: int,
                   workdir: Path, single_pass: bool = False, spin_wait: bool = False) -> DepthEstimator:
    """A DepthEstimator running `variant` for a freshly initialised network described by `meta` (exported to
    ONNX in `workdir` for the onnxruntime, openvino and tensorrt variants; quantised to int8 for onnxruntime_int8 and
    openvino_int8, whose compiled models are cached in `workdir`);
    `single_pass`: only the direct branch; `spin_wait`: ONNX Runtime's threads spin between operators."""
    torch.manual_seed(0)
    net = meta.build_network().eval()
    on_cuda = device.startswith("cuda")
    if variant in ("torch", "torch_channels_last", "torch_cuda_graph"):
        return DepthEstimator(NetworkSource(net, meta), RuntimeOptions(
            device=device, num_threads=threads, input_size=size, fp16=fp16 and on_cuda,
            channels_last=variant == "torch_channels_last", cuda_graph=variant == "torch_cuda_graph",
            single_pass=single_pass))
    mode = "single" if single_pass else "siamese"
    onnx_path = workdir / f"w{meta.net_width}_{'rec' if meta.recurrent else 'plain'}{meta.lstm_ratio}_{size}_{mode}.onnx"
    if not onnx_path.exists():
        export_onnx(net, meta, size, onnx_path, single_pass=single_pass)
    options = RuntimeOptions(device=device, num_threads=threads, single_pass=single_pass, spin_wait=spin_wait)
    if variant == "onnxruntime":
        return DepthEstimator(OnnxSource(onnx_path), options)
    int8_path = onnx_path.with_suffix(".int8.onnx")
    if variant in ("onnxruntime_int8", "openvino_int8") and not int8_path.exists():
        from siam_depth_core.runtime.quantize import quantize_onnx

        quantize_onnx(onnx_path, int8_path, calibration_clips(size))
    if variant == "onnxruntime_int8":
        return DepthEstimator(OnnxSource(int8_path), options)
    if variant in OPENVINO_VARIANTS:
        graph, precision = OPENVINO_VARIANTS[variant]
        return DepthEstimator(OpenVinoSource(int8_path if graph == "int8" else onnx_path, workdir / "openvino"),
                              RuntimeOptions(device=device, num_threads=threads, single_pass=single_pass,
                                             precision=precision))
    if variant == "tensorrt":
        return DepthEstimator(EngineSource(onnx=onnx_path), RuntimeOptions(device=device, fp16=fp16, cuda_graph=True,
                                                                           single_pass=single_pass))
    raise ValueError(f"unknown backend variant {variant!r}; choose from {', '.join(BACKEND_VARIANTS)}")


def measure(estimator: DepthEstimator, frames: int, warmup: int, seed: int = 0) -> list[float]:
    """Seconds of the model per stateful step ("model" timing) over `frames` steps after `warmup` untimed ones."""
    image = np.random.default_rng(seed).integers(0, 256, (*estimator.input_size, 3), dtype=np.uint8)
    for index in range(warmup):
        estimator.step(image, 0.1 * index)
    return [estimator.step(image, 0.1 * (warmup + index)).timings["model"] for index in range(frames)]


class Timed:
    """One configuration ready to time: `step()` runs one step and returns the seconds its model took."""

    def __init__(self, row: LatencyRow, step: Callable[[], float]) -> None:
        self.row = row
        self.step = step
        self.times_s: list[float] = []


def _with_torch_threads(threads: int, step: Callable[[], float]) -> Callable[[], float]:
    """`step` run with torch's process-wide intra-op thread count set to `threads` first."""
    def run() -> float:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        return step()
    return run


def our_configuration(variant: str, meta: ModelMeta, size: ImageSize, args: argparse.Namespace, workdir: Path,
                      single_pass: bool = False, threads: int = 1) -> Timed:
    """Our step through DepthEstimator; its "model" timing, state carried from step to step."""
    estimator = make_estimator(variant, meta, size, args.device, args.fp16, threads, workdir, single_pass,
                               args.spin_wait and RUNTIME[variant] == "onnxruntime")
    image = np.random.default_rng(0).integers(0, 256, (*estimator.input_size, 3), dtype=np.uint8)
    stamp = iter(0.1 * i for i in range(10**9))
    fp16 = args.fp16 and args.device.startswith("cuda") and RUNTIME[variant] in ("torch", "tensorrt")
    precision = "int8" if variant.endswith("int8") else "fp16" if fp16 else "fp32"
    if variant in OPENVINO_VARIANTS:  # the precision it resolved to; int8: that of its float operators
        resolved = getattr(estimator.backend, "precision", "fp32")
        precision = f"i8/{resolved}" if variant.endswith("int8") else resolved
    row = LatencyRow(backend=variant, model="ours", mode="single" if single_pass else "siamese", device=args.device,
                     precision=precision,
                     width_multiplier=meta.net_width, recurrent=meta.recurrent, images=1, height=size.height,
                     width=size.width, parameters=count_parameters(meta.build_network()), frames=0, median_ms=0.0,
                     p90_ms=0.0, fps=0.0, peak_rss_mib=0.0, cuda_max_allocated_mib=None, threads=threads,
                     lstm_ratio=meta.lstm_ratio if meta.recurrent else None)
    return Timed(row, _with_torch_threads(threads, lambda: estimator.step(image, next(stamp)).timings["model"]))


def reference_configuration(runtime: str, images: int, size: ImageSize, args: argparse.Namespace, workdir: Path,
                            threads: int = 1) -> Timed:
    """monodepth2's layout on `runtime` ("torch", "onnxruntime", "openvino_fp32" or "openvino_bf16") for a batch of
    `images` (1, or 2 = image + flip)."""
    torch.manual_seed(0)
    net = Monodepth2Reference().eval()
    batch = torch.rand(images, 3, size.height, size.width)
    if runtime == "torch":
        device = torch.device(args.device)
        net, batch = net.to(device), batch.to(device)

        def step() -> float:
            start = time.perf_counter()
            with torch.inference_mode():
                net(batch).cpu()
            return time.perf_counter() - start
    else:
        path = workdir / f"reference_{images}x{size}.onnx"
        if not path.exists():
            torch.onnx.export(net, (batch,), str(path), input_names=["image"], output_names=["disparity"],
                              opset_version=17, dynamo=False)
    if runtime in OPENVINO_VARIANTS:
        from siam_depth_core.runtime.backends.openvino_backend import OPENVINO_PRECISIONS, import_openvino

        core = import_openvino().Core()
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[OPENVINO_VARIANTS[runtime][1]],
                                  "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}  # as ours
        request = core.compile_model(str(path), "CPU", config).create_infer_request()
        image = batch.numpy()

        def step() -> float:
            start = time.perf_counter()
            request.infer({"image": image}, share_inputs=True)
            return time.perf_counter() - start
    elif runtime == "onnxruntime":
        import onnxruntime as ort

        from siam_depth_core.runtime.backends.onnxruntime_backend import session_options_for

        options = session_options_for(ort, threads, args.spin_wait)  # the same session settings as ours
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {"image": batch.numpy()}

        def step() -> float:
            start = time.perf_counter()
            session.run(None, feed)
            return time.perf_counter() - start
    precision = OPENVINO_VARIANTS[runtime][1] if runtime in OPENVINO_VARIANTS else "fp32"
    row = LatencyRow(backend=runtime, model=REFERENCE_NAME, mode="siamese" if images == 2 else "single",
                     device=args.device, precision=precision,
                     width_multiplier=None, recurrent=None, images=images, height=size.height, width=size.width,
                     parameters=count_parameters(net), frames=0, median_ms=0.0, p90_ms=0.0, fps=0.0,
                     peak_rss_mib=0.0, cuda_max_allocated_mib=None, threads=threads)
    return Timed(row, _with_torch_threads(threads, step))


def time_interleaved(configurations: list[Timed], frames: int, warmup: int, rounds: int) -> None:
    """Warm every configuration up, then run `rounds` rounds of frames/rounds steps of each in turn."""
    for configuration in configurations:
        for _ in range(warmup):
            configuration.step()
    per_round = max(1, frames // rounds)
    for _ in range(rounds):
        for configuration in configurations:
            round_s = [configuration.step() for _ in range(per_round)]
            configuration.times_s += round_s
            configuration.row.round_medians_ms.append(1e3 * float(np.median(round_s)))
    for configuration in configurations:
        times_ms = np.array(configuration.times_s) * 1e3
        row = configuration.row
        row.frames, row.median_ms = len(times_ms), float(np.median(times_ms))
        row.p90_ms, row.fps = float(np.percentile(times_ms, 90)), 1e3 / row.median_ms


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
    if variant == "onnxruntime_int8" and on_cuda:
        return "the int8 model is for CPUs"
    if variant in OPENVINO_VARIANTS:
        if on_cuda:
            return "the openvino backend runs on the CPU"
        if importlib.util.find_spec("openvino") is None:
            return "openvino not installed (pip install .[openvino])"
        from siam_depth_core.runtime.backends.openvino_backend import cpu_capabilities, import_openvino

        if variant == "openvino_bf16" and "BF16" not in cpu_capabilities(import_openvino().Core()):
            return "this CPU has no native bf16"
    return None


def link_rows(rows: list[LatencyRow]) -> None:
    """Fill rec/plain of our recurrent rows and every our-row's speedup over the reference on its runtime."""
    reference = {(r.backend, r.images, r.width, r.height, r.threads): r.median_ms for r in rows
                 if r.model == REFERENCE_NAME}
    ours = [r for r in rows if r.model == "ours"]
    for row in ours:
        plain = [p for p in ours if p.backend == row.backend and p.recurrent is False and row.recurrent
                 and row.lstm_ratio == 1.0 and (p.mode, p.width_multiplier, p.width, p.height, p.threads)
                 == (row.mode, row.width_multiplier, row.width, row.height, row.threads)]
        if plain:
            row.recurrent_over_plain = row.median_ms / plain[0].median_ms
        images = 2 if row.mode == "siamese" else 1
        reference_ms = reference.get((RUNTIME[row.backend], images, row.width, row.height, row.threads))
        if reference_ms is not None:
            row.speedup = reference_ms / row.median_ms


def run_all(args: argparse.Namespace) -> tuple[list[LatencyRow], dict[str, str]]:
    rows: list[LatencyRow] = []
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="siam_latency_") as tmp:
        for size in args.sizes:
            configurations: list[Timed] = []
            for variant in args.backends:
                reason = skip_reason(variant, args.device)
                if reason is not None:
                    skipped[variant] = reason
                    continue
                for net_width in args.widths:
                    for recurrent, lstm_ratio in [(True, ratio) for ratio in args.lstm_ratios] + (
                            [(False, 1.0)] if args.ablation else []):
                        meta = ModelMeta(net_width=net_width, recurrent=recurrent, height=size.height, width=size.width,
                                         lstm_ratio=lstm_ratio)
                        try:
                            for single_pass in (False, True) if args.single_pass else (False,):
                                configurations += [our_configuration(variant, meta, size, args, Path(tmp),
                                                                     single_pass, threads)
                                                   for threads in args.threads]
                        except BackendError as error:
                            skipped[variant] = str(error)
                            break
            if args.reference:
                runtimes = sorted({RUNTIME[c.row.backend] for c in configurations} & set(REFERENCE_RUNTIMES))
                configurations += [reference_configuration(runtime, images, size, args, Path(tmp), threads)
                                   for runtime in runtimes for images in (1, 2) for threads in args.threads]
            _reset_peak_rss()
            time_interleaved(configurations, args.frames, args.warmup, args.rounds)
            for configuration in configurations:
                configuration.row.peak_rss_mib = _peak_rss_mib()
                if args.device.startswith("cuda"):
                    configuration.row.cuda_max_allocated_mib = torch.cuda.max_memory_allocated() / 2**20
                rows.append(configuration.row)
    link_rows(rows)
    return rows, skipped


def _ratio(name: str, slower: LatencyRow, faster: LatencyRow) -> dict[str, Any]:
    """slower / faster per interleaving round (how many times faster `faster` is), median and spread."""
    per_round = [a / b for a, b in zip(slower.round_medians_ms, faster.round_medians_ms, strict=True)]
    return {"name": name, "median": float(np.median(per_round)), "min": min(per_round), "max": max(per_round),
            "per_round": per_round}


def ratio_rows(rows: list[LatencyRow]) -> list[dict[str, Any]]:
    """The ratios a report needs, each per round: ours against the reference on the same runtime, mode and
    thread count; int8 against fp32 ONNX Runtime; every configuration at its highest thread count against
    itself at its lowest (how it scales with cores); every OpenVINO configuration against ONNX Runtime fp32."""
    ratios: list[dict[str, Any]] = []

    def key(row: LatencyRow) -> tuple[Any, ...]:
        return (row.model, row.mode, row.width_multiplier, row.recurrent, row.lstm_ratio, row.images, row.width,
                row.height)

    ours = [r for r in rows if r.model == "ours" and r.recurrent is not False]
    for row in ours:
        images = 2 if row.mode == "siamese" else 1
        for reference in rows:
            if (reference.model == REFERENCE_NAME and reference.backend == RUNTIME[row.backend]
                    and reference.images == images and (reference.width, reference.height, reference.threads)
                    == (row.width, row.height, row.threads)):
                lstm = "" if row.lstm_ratio == 1.0 else f" lstm_ratio {row.lstm_ratio:g}"
                ratios.append(_ratio(f"{row.backend} {row.mode}{lstm} vs reference ({images} img), {row.threads} thr",
                                     reference, row))
        if row.backend == "onnxruntime_int8":
            for fp32 in ours:
                if fp32.backend == "onnxruntime" and key(fp32) == key(row) and fp32.threads == row.threads:
                    lstm = "" if row.lstm_ratio == 1.0 else f" lstm_ratio {row.lstm_ratio:g}"
                    ratios.append(_ratio(f"int8 vs fp32 {row.mode}{lstm}, {row.threads} thr", fp32, row))
        if row.backend in OPENVINO_VARIANTS:
            for fp32 in ours:
                if fp32.backend == "onnxruntime" and key(fp32) == key(row) and fp32.threads == row.threads:
                    lstm = "" if row.lstm_ratio == 1.0 else f" lstm_ratio {row.lstm_ratio:g}"
                    ratios.append(_ratio(f"{row.backend} ({row.precision}) vs onnxruntime fp32 {row.mode}{lstm}, "
                                         f"{row.threads} thr", fp32, row))
    thread_counts = sorted({r.threads for r in rows})
    if len(thread_counts) > 1:
        low, high = thread_counts[0], thread_counts[-1]
        for row in rows:
            if row.threads == high and row.recurrent is not False:
                for base in rows:
                    if base.threads == low and base.backend == row.backend and key(base) == key(row):
                        lstm = "" if row.lstm_ratio in (None, 1.0) else f" lstm_ratio {row.lstm_ratio:g}"
                        ratios.append(_ratio(f"{row.backend} {row.model} {row.mode}{lstm} ({row.images} img): {high} "
                                             f"thr vs {low}", base, row))
    return ratios


def _reset_peak_rss() -> None:
    """Reset the kernel's RSS high-water mark of this process (Linux; no-op elsewhere)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


HEADER = (f"{'backend':<18} {'model':<21} {'mode':<7} {'prec':<5} {'width':>5} {'skips':<5} {'img':>3} {'size':>9} "
          f"{'thr':>3} {'median ms':>10} {'p90 ms':>9} {'fps':>7} {'RSS MiB':>8} {'rec/plain':>9} {'speedup':>8}")


def format_row(row: LatencyRow) -> str:
    skips = "-" if row.recurrent is None else "plain" if not row.recurrent else (
        "lstm" if row.lstm_ratio == 1.0 else f"l{row.lstm_ratio:g}")
    width = "-" if row.width_multiplier is None else f"{row.width_multiplier:g}"
    ratio = f"{row.recurrent_over_plain:9.2f}" if row.recurrent_over_plain is not None else f"{'-':>9}"
    speedup = f"{row.speedup:7.2f}x" if row.speedup is not None else f"{'-':>8}"
    return (f"{row.backend:<18} {row.model:<21} {row.mode:<7} {row.precision:<5} {width:>5} {skips:<5} {row.images:>3} "
            f"{row.width:>4}x{row.height:<4} {row.threads:>3} {row.median_ms:10.2f} {row.p90_ms:9.2f} {row.fps:7.2f} "
            f"{row.peak_rss_mib:8.0f} {ratio} {speedup}")


def cpu_features() -> dict[str, Any]:
    """The CPU model and the vector extensions that decide CPU inference speed (Linux /proc/cpuinfo)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return {}
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)
    flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))
    return {"cpu_model": model, "avx2": "avx2" in flags, "avx512f": "avx512f" in flags,
            "avx512_vnni": "avx512_vnni" in flags, "avx_vnni": "avx_vnni" in flags,
            "avx512_bf16": "avx512_bf16" in flags, "amx": any(flag.startswith("amx") for flag in flags),
            "amx_flags": sorted(flag for flag in flags if flag.startswith("amx"))}


def machine_description(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                            "cpu_count": os.cpu_count(), "torch": torch.__version__,
                            "torch_threads": torch.get_num_threads(), **cpu_features()}
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime
        info["onnxruntime"] = onnxruntime.__version__
    if importlib.util.find_spec("openvino") is not None:
        from siam_depth_core.runtime.backends.openvino_backend import cpu_capabilities, import_openvino

        openvino = import_openvino()
        info["openvino"] = openvino.get_version()
        info["openvino_capabilities"] = sorted(cpu_capabilities(openvino.Core()))
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def build_arg_parser() -> OneLineParser:
    parser = OneLineParser(prog="model_latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", type=lambda s: s.split(","), default=list(DEFAULT_BACKENDS),
                        help=f"comma list from {', '.join(BACKEND_VARIANTS)} (unavailable ones are skipped)")
    parser.add_argument("--widths", type=lambda s: [float(v) for v in s.split(",")], default=[1.0, 0.5, 0.25],
                        help="network width multipliers, comma separated")
    parser.add_argument("--sizes", type=lambda s: [size_argument(v) for v in s.split(",")],
                        default=[ImageSize(256, 512), ImageSize(192, 640), ImageSize(320, 1024)],
                        help="network sizes WxH, comma separated")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--fp16", action="store_true", help="fp16 for torch (autocast) and TensorRT on CUDA")
    parser.add_argument("--frames", type=positive_int, default=50,
                        help="timed steps per configuration (>= 50 for reports)")
    parser.add_argument("--warmup", type=non_negative_int, default=5, help="untimed steps before timing")
    parser.add_argument("--rounds", type=positive_int, default=10,
                        help="interleaving rounds: each runs frames/rounds steps of every configuration")
    parser.add_argument("--threads", type=lambda s: [positive_int(v) for v in s.split(",")],
                        default=[torch.get_num_threads()],
                        help="CPU thread counts for torch and ONNX Runtime alike, comma separated (e.g. 1,2: "
                             "every configuration at each, interleaved)")
    parser.add_argument("--spin-wait", action="store_true",
                        help="ONNX Runtime's threads spin between operators (ours and the reference alike)")
    parser.add_argument("--lstm-ratios", type=lambda s: [float(v) for v in s.split(",")], default=[1.0],
                        help="ConvLSTM hidden-channel ratios of our network, comma separated (1 = Table 1)")
    parser.add_argument("--no-ablation", dest="ablation", action="store_false",
                        help="skip the non-recurrent model of the same width")
    parser.add_argument("--single-pass", action="store_true",
                        help="also time the single-pass mode (direct branch only) of every configuration")
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help=f"skip the {REFERENCE_NAME} reference (then no speedup column)")
    parser.add_argument("--json", type=Path, help="write rows + machine description here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)
    unknown = set(args.backends) - set(BACKEND_VARIANTS)
    if unknown:
        print(f"model_latency: error: unknown backends {sorted(unknown)}; choose from {', '.join(BACKEND_VARIANTS)}",
              file=sys.stderr)
        return 2
    machine = machine_description(args.device)
    print(json.dumps(machine))

    def body() -> int:
        rows, skipped = run_all(args)
        print(HEADER)
        for row in rows:
            print(format_row(row))
        ratios = ratio_rows(rows)
        if ratios:
            print(f"\nratios per interleaving round: median [min-max] over {args.rounds} rounds")
            for ratio in ratios:
                print(f"  {ratio['name']:<60} {ratio['median']:6.2f}x [{ratio['min']:.2f}-{ratio['max']:.2f}]")
        for variant, reason in skipped.items():
            print(f"skipped {variant}: {reason}")
        if args.json is not None:
            args.json.write_text(json.dumps({"machine": machine, "settings": {
                "frames": args.frames, "warmup": args.warmup, "rounds": args.rounds, "threads": args.threads,
                "spin_wait": args.spin_wait, "fp16": args.fp16, "reference": REFERENCE_NAME},
                "rows": [asdict(row) for row in rows], "ratios": ratios,
                "skipped": skipped}, indent=2) + "\n")
            print(f"wrote {args.json}")
        return 0

    return run_cli("model_latency", body)


if __name__ == "__main__":
    raise SystemExit(main())
