"""Training sources: the `sources:` entries of a training config turned into `StereoSequence`s.

Kinds: `kitti_raw` (KITTI raw drives, listed or from a split), `kitti_odometry` (sequences of the
odometry benchmark, `[all]` for every sequence under the root — with the full download, all 22),
`rosbag2` (a bag of one's own stereo rig: left/right image topics and their camera_info) and
`stereo_folder` (left/, right/ and stereo.yaml). Each sequence keeps its own rig (intrinsics,
baseline), so sources from different rigs mix.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from siam_depth_core.data import paths
from siam_depth_core.data.stereo import StereoSequence

SOURCE_KINDS = ("kitti_raw", "kitti_odometry", "rosbag2", "stereo_folder", "video_folder")
#: The keys each kind takes besides `kind` and `root`.
_KIND_KEYS = {"kitti_raw": ("drives", "split"), "kitti_odometry": ("sequences",),
              "rosbag2": ("left_topic", "right_topic", "left_info_topic", "right_info_topic", "stamp_tolerance_s"),
              "stereo_folder": (), "video_folder": ()}
ALL_SEQUENCES = "all"


@dataclass
class SourceSpec:
    """One training source as written in a config.

    kind: one of SOURCE_KINDS. root: the data (KITTI raw root holding <date>/..., odometry root
    holding sequences/, the bag folder or file, the stereo folder); for the KITTI kinds null means
    $KITTI_ROOT / $KITTI_ODOMETRY_ROOT, else the excerpts in ../shared/data. drives / split
    (kitti_raw): explicit drives, or a split whose train_files.txt lists the frames. sequences
    (kitti_odometry): names such as "02", or ["all"]. left_topic / right_topic (rosbag2): image
    topics (Image or CompressedImage); left_info_topic / right_info_topic: their camera_info (null
    = the sibling `camera_info` topic); stamp_tolerance_s: largest left/right stamp difference of a pair.
    video_folder: a monocular video (`data.video_folder`: frames + K.txt in `root`), for M+S training only.
    """

    kind: str
    root: str | None = None
    drives: list[str] = field(default_factory=list)
    split: str | None = None
    sequences: list[str] = field(default_factory=list)
    left_topic: str | None = None
    right_topic: str | None = None
    left_info_topic: str | None = None
    right_info_topic: str | None = None
    stamp_tolerance_s: float = 0.01

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"source kind must be one of {', '.join(SOURCE_KINDS)}; got {self.kind!r}")
        if self.kind == "kitti_raw" and not self.drives and not self.split:
            raise ValueError("a kitti_raw source needs `drives` or `split`")
        if self.kind == "kitti_odometry" and not self.sequences:
            raise ValueError(f"a kitti_odometry source needs `sequences` (e.g. [\"02\"] or [{ALL_SEQUENCES}])")
        if self.kind in ("rosbag2", "stereo_folder", "video_folder") and not self.root:
            raise ValueError(f"a {self.kind} source needs `root` (the {'bag' if self.kind == 'rosbag2' else 'folder'})")
        if self.kind == "rosbag2" and not (self.left_topic and self.right_topic):
            raise ValueError("a rosbag2 source needs `left_topic` and `right_topic` (the image topics)")
        if self.stamp_tolerance_s < 0:
            raise ValueError(f"stamp_tolerance_s must be >= 0, got {self.stamp_tolerance_s}")
        defaults = SourceSpec.__dataclass_fields__
        misplaced = [name for name in (n for keys in _KIND_KEYS.values() for n in keys)
                     if name not in _KIND_KEYS[self.kind] and getattr(self, name) != _default(defaults[name])]
        if misplaced:
            raise ValueError(f"a {self.kind} source does not take {', '.join(misplaced)}")

    def data_root(self) -> Path:
        """The root folder this source reads from (`$VAR` and `~` in `root` expanded)."""
        if self.root:
            return paths.expand_root(self.root)
        return paths.kitti_raw_root() if self.kind == "kitti_raw" else paths.kitti_odometry_root()


def _default(spec_field) -> object:
    return spec_field.default_factory() if callable(spec_field.default_factory) else spec_field.default


def load_source(spec: SourceSpec, excluded_drives: Collection[str] = frozenset(),
                splits_dir: str | None = None, image_ext: str = ".png", aspect: float | None = None
                ) -> list[StereoSequence]:
    """The sequences of one source; KITTI raw drives in `excluded_drives` (Eigen test drives) are dropped.
    aspect: the network's width / height, to which a monocular `video_folder` is centre-cropped."""
    root = spec.data_root()
    if spec.kind == "rosbag2":
        from siam_depth_core.data.rosbag_source import BagStereoTopics, bag_stereo_sequence

        if spec.left_topic is None or spec.right_topic is None:
            raise ValueError("a rosbag2 source needs `left_topic` and `right_topic` (the image topics)")
        topics = BagStereoTopics(spec.left_topic, spec.right_topic, spec.left_info_topic, spec.right_info_topic)
        return [bag_stereo_sequence(root, topics, paths.cache_dir() / "bag_frames", spec.stamp_tolerance_s)]
    if not root.is_dir():
        raise FileNotFoundError(f"{spec.kind} root {root} does not exist; set `root` in the source or the "
                                "environment variable (see training/README.md)")
    if spec.kind == "stereo_folder":
        from siam_depth_core.data.stereo_folder import stereo_folder_sequence

        return [stereo_folder_sequence(root)]
    if spec.kind == "video_folder":
        from siam_depth_core.data.video_folder import video_folder_sequence

        if aspect is None:
            raise ValueError("a video_folder source needs the network's aspect (width / height) to crop to")
        return [video_folder_sequence(root, aspect)]
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
    if spec.split is None:
        raise ValueError("a kitti_raw source needs `drives` or `split`")
    frames_by_drive: dict[str, set[int]] = {}
    for entry in read_split(spec.split, "train", splits_dir):
        if entry.drive not in excluded_drives:
            frames_by_drive.setdefault(entry.drive, set()).add(entry.frame)
    return [kitti_raw_sequence(root, drive, frames, ext=image_ext) for drive, frames in sorted(frames_by_drive.items())]
