"""Parameter counts of SiamDepthNet per width, recurrent (ConvLSTM) and non-recurrent (plain skips).

Prints a markdown table (for the README) and the same numbers as JSON. Networks are built on the
meta device, so this takes no memory and about a second. Columns: trainable parameters, weight size
in fp32 and fp16, and the recurrent state one Siamese step carries (h and c of every ConvLSTM layer,
direct and flipped stream, batch 1, fp32) at the given input size.

    python -m benchmarks.param_counts --size 512x256 --json param_counts.json
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from benchmarks.model_latency import size_argument
from siam_depth_core.cli import OneLineParser, positive_float, run_cli
from siam_depth_core.geometry import ImageSize
from siam_depth_core.network.model import SiamDepthNet, count_parameters

WIDTH_MULTIPLIERS = (1.0, 0.5, 0.25)
MIB = 2 ** 20


def measure(width_multipliers: tuple[float, ...], size: ImageSize) -> list[dict[str, Any]]:
    """One row per (channel width multiplier, recurrent): parameter count and memory figures; the state
    size is for a network input of `size`."""
    rows = []
    for width_multiplier in width_multipliers:
        for recurrent in (True, False):
            with torch.device("meta"):
                net = SiamDepthNet(width_multiplier=width_multiplier, recurrent=recurrent)
            parameters = count_parameters(net)
            shapes = net.state_shapes(2, *size)  # 2 = direct + flipped stream
            state_floats = 2 * sum(math.prod(shape) for shape in shapes.values())  # h and c
            rows.append({
                "width_multiplier": width_multiplier,
                "recurrent": recurrent,
                "parameters": parameters,
                "weights_fp32_mib": round(4 * parameters / MIB, 1),
                "weights_fp16_mib": round(2 * parameters / MIB, 1),
                "state_fp32_mib": round(4 * state_floats / MIB, 1),
                "state_layers": len(shapes),
            })
    return rows


def markdown_table(rows: list[dict[str, Any]], size: ImageSize) -> str:
    lines = [
        f"| width | skips | parameters | weights fp32 (MiB) | weights fp16 (MiB) | state per Siamese step at {size} (MiB) |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        skips = "ConvLSTM" if row["recurrent"] else "plain conv"
        lines.append(f"| {row['width_multiplier']} | {skips} | {row['parameters']:,} | {row['weights_fp32_mib']} "
                     f"| {row['weights_fp16_mib']} | {row['state_fp32_mib']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="param_counts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=positive_float, nargs="+", default=list(WIDTH_MULTIPLIERS),
                        help="channel width multipliers")
    parser.add_argument("--size", type=size_argument, default=ImageSize(256, 512),
                        help="network input WIDTHxHEIGHT for the state size (default 512x256)")
    parser.add_argument("--json", type=Path, help="also write the JSON to this file")
    args = parser.parse_args(argv)

    def body() -> int:
        rows = measure(tuple(args.widths), args.size)
        report = {"input_size": [args.size.width, args.size.height], "rows": rows}
        print(markdown_table(rows, args.size))
        print()
        print(json.dumps(report, indent=2))
        if args.json:
            args.json.write_text(json.dumps(report, indent=2) + "\n")
        return 0

    return run_cli("param_counts", body)


if __name__ == "__main__":
    raise SystemExit(main())
