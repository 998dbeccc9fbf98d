"""KITTI Stereo 2015 evaluation frames: listing (fixture frame + eval12), loading, nominal depth."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from siam_depth_core.data.kitti2015 import (
    NOMINAL_FOCAL_BASELINE_PX_M,
    disparity_to_nominal_depth,
    list_stereo2015_frames,
)


@pytest.fixture(scope="module")
def stereo2015(shared_data: Path) -> Path:
    folder = shared_data / "kitti_stereo_2015"
    if not (folder / "eval12" / "disp_occ_0").is_dir():
        pytest.skip(f"KITTI 2015 excerpt with eval12/ not found under {folder}")
    return folder


def test_the_13_frames_are_listed_in_folder_order(stereo2015: Path):
    frames = list_stereo2015_frames(stereo2015 / "training", stereo2015 / "eval12")
    assert len(frames) == 13 and frames[0].name == "000046_10" and frames[1].name == "000131_10"
    image, disparity = frames[5].load()
    assert image.shape == (375, 1242, 3) and disparity.shape == (375, 1242)
    assert 50_000 < np.count_nonzero(disparity) and disparity.max() < 256


def test_a_folder_without_frames_is_named(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no KITTI 2015 frame"):
        list_stereo2015_frames(tmp_path)


def test_nominal_depth_inverts_disparity_and_keeps_invalid_zero():
    depth = disparity_to_nominal_depth(np.array([[0.0, 10.0]]))
    assert depth[0, 0] == 0.0 and depth[0, 1] == pytest.approx(NOMINAL_FOCAL_BASELINE_PX_M / 10.0)
