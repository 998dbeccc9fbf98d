"""Which frames a model was trained on, so that no one scores a model on its own training frames by mistake.

The trainer records them in the checkpoint's metadata (`ModelMeta.extra["trained_on"]`, carried into the ONNX
sidecar by `siam-depth-export`): one entry per training sequence, `{"sequence": <name>, "frames": [[first,
last], ...]}` (inclusive ranges of frame numbers; names as the data sources give them, e.g.
`2011_09_26/2011_09_26_drive_0009_sync`, `odometry/06`). A model fine-tuned from another (`init_from`) also
carries the frames of the one it started from. A checkpoint without the key (written before it existed) has an
unknown record: `trained_on` returns None. `siam-depth-eval` warns when the frames it scores are in the record.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

#: The `ModelMeta.extra` key of the record.
TRAINED_ON = "trained_on"


def frame_ranges(frames: Iterable[int]) -> list[list[int]]:
    """Sorted inclusive [first, last] runs of consecutive frame numbers: (0, 1, 2, 5) -> [[0, 2], [5, 5]]."""
    ranges: list[list[int]] = []
    for frame in sorted(set(int(f) for f in frames)):
        if ranges and frame == ranges[-1][1] + 1:
            ranges[-1][1] = frame
        else:
            ranges.append([frame, frame])
    return ranges


def training_record(sequences: Iterable[tuple[str, Iterable[int]]],
                    inherited: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """The record of (sequence name, frame numbers) pairs, merged with an `inherited` record (the checkpoint a
    fine-tuning run started from); one entry per sequence, in first-seen order."""
    frames: dict[str, set[int]] = {}
    for entry in inherited:
        frames.setdefault(str(entry["sequence"]), set()).update(
            f for first, last in entry["frames"] for f in range(int(first), int(last) + 1))
    for name, numbers in sequences:
        frames.setdefault(name, set()).update(int(f) for f in numbers)
    return [{"sequence": name, "frames": frame_ranges(numbers)} for name, numbers in frames.items()]


def trained_on(extra: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The record in a ModelMeta's `extra`, or None when the checkpoint does not say (unknown)."""
    record = extra.get(TRAINED_ON)
    return None if record is None else list(record)


def _drive_key(name: str) -> str:
    """What identifies a recording across tools: the last path part (`2011_09_26/<drive>` and `<drive>` agree)."""
    return PurePosixPath(name).name if "_drive_" in name else name


def training_overlap(record: Sequence[Mapping[str, Any]], scored: Iterable[tuple[str, int]]
                     ) -> dict[str, list[int]]:
    """The scored (sequence, frame) pairs that are training frames of `record`: sequence name -> frame numbers."""
    trained: dict[str, list[list[int]]] = {}
    for entry in record:
        trained.setdefault(_drive_key(str(entry["sequence"])), []).extend(entry["frames"])
    overlap: dict[str, list[int]] = {}
    for name, frame in scored:
        ranges = trained.get(_drive_key(name), [])
        if any(int(first) <= frame <= int(last) for first, last in ranges):
            overlap.setdefault(name, []).append(frame)
    return overlap


def overlap_warning(overlap: Mapping[str, Sequence[int]], scored: int, what: str = "this checkpoint") -> str | None:
    """The line the evaluation prints when it scores training frames (None when it does not)."""
    if not overlap:
        return None
    count = sum(len(frames) for frames in overlap.values())
    where = ", ".join(f"{name} frames {_ranges_text(frames)}" for name, frames in overlap.items())
    return (f"WARNING: {count} of the {scored} scored frames are training frames of {what} ({where}): "
            "not a test score")


def _ranges_text(frames: Iterable[int]) -> str:
    """"0, 16, 40-50": frame numbers, runs as first-last."""
    return ", ".join(str(first) if first == last else f"{first}-{last}" for first, last in frame_ranges(frames))
