"""Split lists (Eigen, Eigen-Zhou, Eigen-full, ...) in monodepth2's `folder frame side` format.

A splits folder holds `<split>/<subset>_files.txt` (monodepth2 layout: `splits/eigen/test_files.txt`).
monodepth's flat layout (`eigen_test_files.txt`, lines `<image_02 path>.jpg <image_03 path>.jpg`) is
read too. The lists are not shipped with this repository: see training/README.md.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from siam_depth_core.data import paths

SUBSETS = ("train", "val", "test")
WHERE_TO_GET_SPLITS = ("download the split lists (the `splits/` folder of https://github.com/nianticlabs/monodepth2, "
                       "see training/README.md) and point SIAM_DEPTH_SPLITS at that folder")

_MONODEPTH_IMAGE = re.compile(r"^(?P<drive>.+)/image_0(?P<camera>[23])/data/(?P<frame>\d+)\.(png|jpg)$")


@dataclass(frozen=True)
class SplitEntry:
    """One split line: drive `<date>/<date>_drive_<nnnn>_sync`, frame index, side "l" (cam 2) or "r" (cam 3)."""

    drive: str
    frame: int
    side: str

    def __post_init__(self) -> None:
        if self.side not in ("l", "r"):
            raise ValueError(f"split side must be 'l' or 'r', got {self.side!r}")
        if self.frame < 0:
            raise ValueError(f"frame index must be >= 0, got {self.frame}")

    @property
    def camera(self) -> int:
        """KITTI camera index of this side: 2 (left) or 3 (right)."""
        return 2 if self.side == "l" else 3


def parse_split_line(line: str) -> SplitEntry:
    """Parse `folder frame side` (monodepth2) or `<image_02 path> <image_03 path>` (monodepth, side "l")."""
    fields = line.split()
    if len(fields) == 3 and fields[1].isdigit():
        return SplitEntry(fields[0], int(fields[1]), fields[2])
    if len(fields) == 2:
        match = _MONODEPTH_IMAGE.match(fields[0])
        if match:
            side = "l" if match["camera"] == "2" else "r"
            return SplitEntry(match["drive"], int(match["frame"]), side)
    raise ValueError(f"unsupported split line {line!r}: expected `<date>/<drive> <frame> <l|r>` (monodepth2) "
                     "or `<drive>/image_02/data/<frame>.jpg <drive>/image_03/data/<frame>.jpg` (monodepth)")


def read_split_file(path: str | Path) -> list[SplitEntry]:
    """All entries of one split file, in file order (blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}; {WHERE_TO_GET_SPLITS}")
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append(parse_split_line(line))
        except ValueError as error:
            raise ValueError(f"{path}:{number}: {error}") from None
    return entries


def split_file_path(split_name: str, subset: str, splits_dir: str | Path | None = None) -> Path:
    """`<splits_dir>/<split>/<subset>_files.txt`, or monodepth's flat `<splits_dir>/<split>_<subset>_files.txt`."""
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
    root = Path(splits_dir) if splits_dir is not None else paths.splits_dir()
    if not root.is_dir():
        raise FileNotFoundError(f"splits folder not found: {root}; {WHERE_TO_GET_SPLITS}")
    nested = root / split_name / f"{subset}_files.txt"
    flat = root / f"{split_name}_{subset}_files.txt"
    if flat.is_file() and not nested.is_file():
        return flat
    if not nested.is_file():
        raise FileNotFoundError(f"split {split_name!r} has no {subset} list: {nested} does not exist")
    return nested


def read_split(split_name: str, subset: str, splits_dir: str | Path | None = None) -> list[SplitEntry]:
    """Entries of `split_name` ("eigen", "eigen_zhou", "eigen_full", ...) for subset "train", "val" or "test"."""
    return read_split_file(split_file_path(split_name, subset, splits_dir))


def eigen_test_drives(splits_dir: str | Path | None = None) -> set[str]:
    """Drives of the Eigen test split (eigen/test_files.txt); never train on them when reporting Eigen numbers."""
    return {entry.drive for entry in read_split("eigen", "test", splits_dir)}
