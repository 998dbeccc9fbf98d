"""Several cameras per call (issue 28): one batch-N ONNX Runtime step against N batch-1 steps, interleaved.

Three ways to step N streams with the state carried, timed side by side round by round so that a shared
machine's drifting load hits them alike:

- `single x N`: N batch-1 steps of the fixed batch-1 export (`siam-depth-export`), one state per stream
  (what N single-camera nodes, or one node calling the model per camera, cost);
- `batch N`: one step of the `--dynamic-batch` export on an (N,3,H,W) image, the N-stream state carried as
  the backend returns it;
- `batch N + split/stack`: the same call with the state stacked from per-stream states before and split
  back after (`Backend.stack_states` / `split_state`, what `DepthEstimator.step_streams` does so that
  cameras can come and go).

Per round: `--steps` steps of each. Reported: per configuration the median and spread (min-max) over the
rounds of the per-round median time for N streams, and per round the ratio batch / single x N (< 1: the
batch is faster). Weights are random (latency does not depend on them); the CPU is recorded.

    python -m benchmarks.batch_latency --streams 4 --width 0.25 --size 416x128 --threads 1 --rounds 5
"""
from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.model_latency import cpu_features, size_argument
from siam_depth_core.cli import OneLineParser, positive_int, run_cli
from siam_depth_core.geometry import ImageSize
from siam_depth_core.network.checkpoint import ModelMeta
from siam_depth_core.runtime.backends import Backend, open_backend
from siam_depth_core.runtime.backends.source import OnnxSource, RuntimeOptions
from siam_depth_core.runtime.export import export_onnx

CONFIGURATIONS = ("single x N", "batch N", "batch N + split/stack")


def stepper(configuration: str, single: Backend, batched: Backend, images: np.ndarray) -> Callable[[], None]:
    """A function that runs one step of all N streams in `configuration`, keeping its own states."""
    streams = images.shape[0]
    if configuration == "single x N":
        states: list[Any] = [None] * streams

        def step_singles() -> None:
            for stream in range(streams):
                _, states[stream] = single.run(images[stream:stream + 1], states[stream])
        return step_singles
    batch_state: list[Any] = [None]
    if configuration == "batch N":
        def step_batch() -> None:
            _, batch_state[0] = batched.run(images, batch_state[0])
        return step_batch
    per_stream: list[Any] = [None] * streams

    def step_split() -> None:
        stacked = None if per_stream[0] is None else batched.stack_states(per_stream)
        _, next_state = batched.run(images, stacked)
        per_stream[:] = batched.split_state(next_state, streams)
    return step_split


def measure(streams: int, width: float, size: tuple[int, int], threads: int, rounds: int, steps: int,
            warmup: int = 2) -> dict[str, Any]:
    """Time the three configurations interleaved; returns the per-round medians (ms) and ratios."""
    torch.manual_seed(0)
    meta = ModelMeta(net_width=width, height=size[0], width=size[1])
    net = meta.build_network().eval()
    options = RuntimeOptions(num_threads=threads)
    with tempfile.TemporaryDirectory() as scratch:
        export_onnx(net, meta, size, Path(scratch) / "single.onnx")
        export_onnx(net, meta, size, Path(scratch) / "dynamic.onnx", batch=streams, dynamic_batch=True)
        single = open_backend(OnnxSource(Path(scratch) / "single.onnx"), options)
        batched = open_backend(OnnxSource(Path(scratch) / "dynamic.onnx"), options)
    images = np.random.default_rng(0).random((streams, 3, *size), dtype=np.float32)
    steppers = {name: stepper(name, single, batched, images) for name in CONFIGURATIONS}
    for step in steppers.values():
        for _ in range(warmup):
            step()
    per_round: dict[str, list[float]] = {name: [] for name in CONFIGURATIONS}
    for round_index in range(rounds):
        order = CONFIGURATIONS if round_index % 2 == 0 else CONFIGURATIONS[::-1]
        for name in order:
            times = []
            for _ in range(steps):
                start = time.perf_counter()
                steppers[name]()
                times.append((time.perf_counter() - start) * 1000.0)
            per_round[name].append(statistics.median(times))
    ratios = {name: [b / s for b, s in zip(per_round[name], per_round["single x N"], strict=True)]
              for name in CONFIGURATIONS[1:]}
    return {"streams": streams, "width": width, "size": list(size), "threads": threads, "rounds": rounds,
            "steps": steps, "per_round_ms": per_round, "ratios": ratios, "load_average": list(os.getloadavg()),
            "machine": {"cpu_count": os.cpu_count(), **cpu_identity(), **cpu_features()}}


def cpu_identity() -> dict[str, str]:
    """The CPU's family and model numbers (/proc/cpuinfo): a VM's model name can be as bare as "Xeon Processor"."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return {}
    fields = {}
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() in ("cpu family", "model") and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    return {"cpu_family": fields.get("cpu family", "?"), "cpu_model_number": fields.get("model", "?")}


def spread(values: list[float], digits: int = 1) -> str:
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def report(result: dict[str, Any]) -> str:
    n = result["streams"]
    lines = [f"ONNX Runtime CPU, {n} streams, width {result['width']} at {result['size'][1]}x{result['size'][0]}, "
             f"{result['threads']} thread(s), {result['rounds']} rounds x {result['steps']} steps; "
             f"CPU {result['machine'].get('cpu_model')} (family {result['machine'].get('cpu_family')} model "
             f"{result['machine'].get('cpu_model_number')}); load average {result['load_average'][0]:.1f}",
             f"{'configuration':<24} {'ms for N streams, median [min-max] of rounds':>46}"]
    for name, times in result["per_round_ms"].items():
        lines.append(f"{name.replace('N', str(n)):<24} {spread(times):>46}")
    for name, ratios in result["ratios"].items():
        lines.append(f"ratio {name.replace('N', str(n))} / single x {n}: {spread(ratios, 2)}")
    return "\n".join(lines)


def build_arg_parser() -> OneLineParser:
    parser = OneLineParser(prog="batch_latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=positive_int, default=4, help="streams (cameras) per batch")
    parser.add_argument("--width", type=float, default=0.25, help="network width multiplier")
    parser.add_argument("--size", type=size_argument, default=ImageSize(128, 416), help="network size WxH (default 416x128)")
    parser.add_argument("--threads", type=positive_int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--rounds", type=positive_int, default=5, help="interleaved rounds")
    parser.add_argument("--steps", type=positive_int, default=3, help="steps of each configuration per round")
    parser.add_argument("--json", type=Path, help="also write the result here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_arg_parser().parse_args(argv)

    def body() -> int:
        result = measure(args.streams, args.width, tuple(args.size), args.threads, args.rounds, args.steps)
        print(report(result))
        if args.json is not None:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0

    return run_cli("batch_latency", body)


if __name__ == "__main__":
    raise SystemExit(main())
