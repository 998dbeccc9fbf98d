"""Training sources: the `sources:` entries of a training config turned into `StereoSequence`s.

Kinds: `kitti_raw` (KITTI raw drives, listed or from a split) and `kitti_odometry` (sequences of the
odometry benchmark, `[all]` for every sequence under the root — with the full download, all 22).
Each sequence keeps its own rig (intrinsics, baseline), so sources from different rigs mix.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from siam_depth_core.data import paths
from siam_depth_core.data.stereo import StereoSequence

SOURCE_KINDS = ("kitti_raw", "kitti_odometry")
ALL_SEQUENCES = "all"


@dataclass
class SourceSpec:
    """One training source as written in a config.

    kind: 'kitti_raw' or 'kitti_odometry'. root: the data root (KITTI raw root holding <date>/...,
    or the odometry root holding sequences/); null = $KITTI_ROOT / $KITTI_ODOMETRY_ROOT, else the
    excerpts in ../shared/data. drives / split (kitti_raw): explicit drives, or a split whose
    train_files.txt lists the frames. sequences (kitti_odometry): names such as "02", or ["all"].
    """

    kind: str
    root: str | None = None
    drives: list[str] = field(default_factory=list)
    split: str | None = None
    sequences: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"source kind must be one of {', '.join(SOURCE_KINDS)}; got {self.kind!r}")
        if self.kind == "kitti_raw" and not self.drives and not self.split:
            raise ValueError("a kitti_raw source needs `drives` or `split`")
        if self.kind == "kitti_odometry" and not self.sequences:
            raise ValueError(f"a kitti_odometry source needs `sequences` (e.g. [\"02\"] or [{ALL_SEQUENCES}])")
        misplaced = ([name for name in ("drives", "split") if getattr(self, name)] if self.kind == "kitti_odometry"
                     else ["sequences"] if self.sequences else [])
        if misplaced:
            raise ValueError(f"a {self.kind} source does not take {', '.join(misplaced)}")

    def data_root(self) -> Path:
        """The root folder this source reads from."""
        if self.root:
            return Path(self.root)
        return paths.kitti_raw_root() if self.kind == "kitti_raw" else paths.kitti_odometry_root()


def load_source(spec: SourceSpec, excluded_drives: set[str] = frozenset(), splits_dir: str | None = None,
                image_ext: str = ".png") -> list[StereoSequence]:
    """The sequences of one source; KITTI raw drives in `excluded_drives` (Eigen test drives) are dropped."""
    root = spec.data_root()
    if not root.is_dir():
        raise FileNotFoundError(f"{spec.kind} root {root} does not exist; set `root` in the source or the "
                                "environment variable (see training/README.md)")
    if spec.kind == "kitti_odometry":
        from siam_depth_core.data.odometry import list_sequences, odometry_sequence

        names = list_sequences(root) if spec.sequences == [ALL_SEQUENCES] else spec.sequences
        return [odometry_sequence(root, name) for name in names]

    from siam_depth_core.data.kitti import kitti_raw_sequence
    from siam_depth_core.data.splits import read_split

    if spec.drives:
        drives = [d for d in spec.drives if d not in excluded_drives]
        if not drives:
            raise ValueError(f"every drive in `drives` is an Eigen test drive ({', '.join(spec.drives)}); "
                             "set exclude_eigen_test: false to train on them anyway (then do not report "
                             "Eigen numbers)")
        return [kitti_raw_sequence(root, drive, ext=image_ext) for drive in drives]
    frames_by_drive: dict[str, set[int]] = {}
    for entry in read_split(spec.split, "train", splits_dir):
        if entry.drive not in excluded_drives:
            frames_by_drive.setdefault(entry.drive, set()).add(entry.frame)
    return [kitti_raw_sequence(root, drive, frames, ext=image_ext) for drive, frames in sorted(frames_by_drive.items())]
