"""Where the KITTI data lives: `KITTI_ROOT` / `SIAM_DEPTH_DATA`, else `../shared/data` beside the repo."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path:
    """The shared data folder (KITTI excerpts, splits): `$SIAM_DEPTH_DATA` or `<repo>/../shared/data`."""
    override = os.environ.get("SIAM_DEPTH_DATA")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "data"


def expand_root(text: str) -> Path:
    """A configured folder with `$VAR` / `${VAR}` and `~` expanded (e.g. `${SIAM_DEPTH_EXTRA_DATA}/kitti_raw` for
    data fetched outside the repository); ValueError naming the variable when one is not set."""
    expanded = os.path.expanduser(os.path.expandvars(text))
    if "$" in expanded:
        raise ValueError(f"{text}: environment variable {expanded[expanded.index('$'):].split('/')[0]} is not set; "
                         "export it or write the folder's path")
    return Path(expanded)


def kitti_raw_root() -> Path:
    """KITTI raw root (holds `2011_09_26/...`): `$KITTI_ROOT`, else `<shared data>/kitti_raw`."""
    override = os.environ.get("KITTI_ROOT")
    return Path(override) if override else shared_data_dir() / "kitti_raw"


def kitti_odometry_root() -> Path:
    """KITTI odometry root (holds `sequences/NN/...`): `$KITTI_ODOMETRY_ROOT`, else `<shared data>/kitti_odometry`."""
    override = os.environ.get("KITTI_ODOMETRY_ROOT")
    return Path(override) if override else shared_data_dir() / "kitti_odometry"


def cache_dir() -> Path:
    """Computed data kept between runs (Depth Hints, frames decoded from bags): `$SIAM_DEPTH_CACHE`, else
    `$XDG_CACHE_HOME/siam_depth` or `~/.cache/siam_depth`."""
    override = os.environ.get("SIAM_DEPTH_CACHE")
    return Path(override) if override else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "siam_depth"


def depth_hints_cache_dir() -> Path:
    """Where Depth Hints are cached: `<cache_dir()>/depth_hints`."""
    return cache_dir() / "depth_hints"


def splits_dir() -> Path:
    """Folder of split lists in monodepth2 layout (`<split>/test_files.txt`, ...)."""
    override = os.environ.get("SIAM_DEPTH_SPLITS")
    return Path(override) if override else shared_data_dir() / "splits" / "monodepth2"
