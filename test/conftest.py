"""Shared fixtures: the real KITTI excerpts (skipped with a reason when absent), deterministic torch."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from siam_depth_core.data.paths import kitti_raw_root, shared_data_dir

DRIVE_0009 = "2011_09_26/2011_09_26_drive_0009_sync"
DRIVE_0023 = "2011_09_26/2011_09_26_drive_0023_sync"


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"KITTI excerpt not found at {path} (set KITTI_ROOT or SIAM_DEPTH_DATA, or put shared/ beside the repo)")
    return path


@pytest.fixture(scope="session")
def kitti_root() -> Path:
    """KITTI raw root with the 2011_09_26 excerpts."""
    return _require(kitti_raw_root() / "2011_09_26" / "calib_cam_to_cam.txt").parents[1]


@pytest.fixture(scope="session")
def drive_0009(kitti_root: Path) -> Path:
    return _require(kitti_root / DRIVE_0009)


@pytest.fixture(scope="session")
def drive_0023(kitti_root: Path) -> Path:
    return _require(kitti_root / DRIVE_0023)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return _require(shared_data_dir())


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread, then restore the setting.

    Tiny networks gain nothing from intra-op threads, and on a shared 2-core machine two spinning
    OpenMP threads per process made such tests several times slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
