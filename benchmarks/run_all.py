"""Run every benchmark with defaults that fit the machine and write their JSON into one results folder.

    python -m benchmarks.run_all                 # or: make bench
    python -m benchmarks.run_all --quick --out /tmp/bench

Each benchmark runs in its own process (so that memory high-water marks and thread settings do not
leak between them) and prints its own table; a failing one is recorded and the others still run.
Defaults: on a CPU-only machine the model grid is the CPU variant (width 0.25) at 512x256 and
640x192 for torch, torch channels_last, ONNX Runtime and its int8 model, Siamese and single-pass, beside
the monodepth2 reference; with a CUDA GPU the full grid (widths
1.0/0.5/0.25 x 512x256/640x192/1024x320) for every GPU backend in fp32 and fp16. The node benchmark
replays KITTI drive 0009 at 10 Hz (skipped with the reason when the data is absent).
`summary.json` lists what ran, with which command, how long it took and whether it succeeded.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from siam_depth_core.cli import OneLineParser, run_cli

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = REPO_ROOT / "benchmarks" / "results"
CPU_BACKENDS = "torch,torch_channels_last,onnxruntime,onnxruntime_int8"
GPU_BACKENDS = "torch,torch_channels_last,torch_cuda_graph,onnxruntime,tensorrt"


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def kitti_available() -> bool:
    from benchmarks.node_latency import DRIVE
    from siam_depth_core.data.paths import kitti_raw_root

    return (kitti_raw_root() / DRIVE).is_dir()


def planned_runs(out: Path, quick: bool, gpu: bool) -> dict[str, list[str]]:
    """Benchmark name -> module arguments (after `python -m`)."""
    frames = ["--frames", "20" if quick else "50"]
    runs: dict[str, list[str]] = {
        "param_counts": ["benchmarks.param_counts", "--json", str(out / "param_counts.json")]}
    if gpu:
        for precision in ("fp32", "fp16"):
            runs[f"model_latency_cuda_{precision}"] = [
                "benchmarks.model_latency", "--device", "cuda", "--backends", GPU_BACKENDS, *frames,
                *(["--fp16"] if precision == "fp16" else []), "--json", str(out / f"model_latency_cuda_{precision}.json")]
    runs["model_latency_cpu"] = ["benchmarks.model_latency", "--backends", CPU_BACKENDS, "--widths", "0.25",
                                 "--sizes", "512x256" if quick else "512x256,640x192", "--single-pass", *frames,
                                 "--json", str(out / "model_latency_cpu.json")]
    node = ["benchmarks.node_latency", "--json", str(out / "node_latency.json")]
    if quick:
        node += ["--frames", "30", "--lockstep-frames", "10", "--model-frames", "5"]
    runs["node_latency"] = node
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="run_all", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help=f"results folder (default {DEFAULT_RESULTS}/<UTC time>)")
    parser.add_argument("--quick", action="store_true", help="fewer frames and sizes (a smoke run, not for reports)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks (names as in summary.json)")
    args = parser.parse_args(argv)
    out = args.out or DEFAULT_RESULTS / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    runs = planned_runs(out, args.quick, cuda_available())
    unknown = set(args.only or []) - set(runs)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {', '.join(runs)}")
    return run_cli("run_all", lambda: _run(args, out, runs))


def _run(args: argparse.Namespace, out: Path, runs: dict[str, list[str]]) -> int:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(f"cannot create the results folder {out} ({error.strerror or error}); choose another --out") \
            from error
    skipped = {}
    if not kitti_available():
        skipped["node_latency"] = "KITTI drive 0009 not found (set KITTI_ROOT or SIAM_DEPTH_DATA)"
    results = {}
    for name, module_args in runs.items():
        if args.only and name not in args.only:
            continue
        if name in skipped:
            print(f"== {name}: skipped ({skipped[name]})", flush=True)
            continue
        command = [sys.executable, "-m", *module_args]
        print(f"== {name}: {' '.join(command)}", flush=True)
        start = time.monotonic()
        returncode = subprocess.run(command, cwd=REPO_ROOT).returncode
        results[name] = {"command": command, "returncode": returncode, "seconds": round(time.monotonic() - start, 1)}
        if returncode != 0:
            print(f"== {name} failed with exit code {returncode}", flush=True)
    summary = {"results_folder": str(out), "quick": args.quick, "runs": results, "skipped": skipped}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out}/summary.json")
    return 0 if all(result["returncode"] == 0 for result in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
