"""Parameter counts of SiamDepthNet per width, recurrent (ConvLSTM) and non-recurrent (plain skips).

Prints a markdown table (for the README) and the same numbers as JSON. Networks are built on the
meta device, so this takes no memory and about a second. Columns: trainable parameters, weight size
in fp32 and fp16, and the recurrent state one Siamese step carries (h and c of every ConvLSTM layer,
direct and flipped stream, batch 1, fp32) at the given input size.

    python -m benchmarks.param_counts --size 512x256 --json param_counts.json
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import torch

from siam_depth_core.model import SiamDepthNet, count_parameters

WIDTHS = (1.0, 0.5, 0.25)
MIB = 2 ** 20


def parse_size(text: str) -> tuple[int, int]:
    """'512x256' -> (width, height) in pixels."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"size must look like 512x256 (width x height), got {text!r}") from error
    return width, height


def measure(widths: tuple[float, ...], image_width: int, image_height: int) -> list[dict[str, Any]]:
    """One row per (width, recurrent): parameter count and memory figures."""
    rows = []
    for width in widths:
        for recurrent in (True, False):
            with torch.device("meta"):
                net = SiamDepthNet(width=width, recurrent=recurrent)
            parameters = count_parameters(net)
            shapes = net.state_shapes(2, image_height, image_width)  # 2 = direct + flipped stream
            state_floats = 2 * sum(math.prod(shape) for shape in shapes.values())  # h and c
            rows.append({
                "width": width,
                "recurrent": recurrent,
                "parameters": parameters,
                "weights_fp32_mib": round(4 * parameters / MIB, 1),
                "weights_fp16_mib": round(2 * parameters / MIB, 1),
                "state_fp32_mib": round(4 * state_floats / MIB, 1),
                "state_layers": len(shapes),
            })
    return rows


def markdown_table(rows: list[dict[str, Any]], image_width: int, image_height: int) -> str:
    lines = [
        f"| width | skips | parameters | weights fp32 (MiB) | weights fp16 (MiB) | state per Siamese step at {image_width}x{image_height} (MiB) |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        skips = "ConvLSTM" if row["recurrent"] else "plain conv"
        lines.append(f"| {row['width']} | {skips} | {row['parameters']:,} | {row['weights_fp32_mib']} "
                     f"| {row['weights_fp16_mib']} | {row['state_fp32_mib']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=float, nargs="+", default=list(WIDTHS), help="channel multipliers")
    parser.add_argument("--size", type=parse_size, default=(512, 256), help="input WIDTHxHEIGHT for the state size")
    parser.add_argument("--json", type=Path, help="also write the JSON to this file")
    args = parser.parse_args(argv)
    image_width, image_height = args.size
    rows = measure(tuple(args.widths), image_width, image_height)
    report = {"input_size": [image_width, image_height], "rows": rows}
    print(markdown_table(rows, image_width, image_height))
    print()
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
