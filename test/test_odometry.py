"""KITTI odometry reader: calibration (P0-P3, some files only P0/P1), camera pairs, frames, stamps, grayscale."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from siam_depth_core.data.kitti import load_image
from siam_depth_core.data.odometry import list_sequences, load_odometry_calibration, odometry_sequence


@pytest.fixture(scope="module")
def odometry_root(shared_data: Path) -> Path:
    root = shared_data / "kitti_odometry"
    if not (root / "sequences").is_dir():
        pytest.skip(f"KITTI odometry excerpt not found at {root}")
    return root


def test_colour_sequence_uses_cameras_2_3_with_their_baseline_and_stamps(odometry_root: Path):
    sequence = odometry_sequence(odometry_root, "02")
    assert sequence.name == "odometry/02" and sequence.frames == tuple(range(20))
    assert sequence.left[0].parent.name == "image_2" and sequence.right[0].parent.name == "image_3"
    assert sequence.rig.baseline_m == pytest.approx((45.38225 + 337.2877) / 718.856, abs=1e-4)
    assert sequence.rig.fx == pytest.approx(718.856) and sequence.rig.image_size == (1241, 376)
    assert sequence.stamps_s is not None and sequence.stamps_s[0] == 0.0 and 0.09 < sequence.stamps_s[1] < 0.11


def test_grayscale_sequence_uses_cameras_0_1_and_loads_three_equal_channels(odometry_root: Path):
    sequence = odometry_sequence(odometry_root, "06")
    assert len(sequence.frames) == 51 and sequence.left[0].parent.name == "image_0"
    assert sequence.rig.baseline_m == pytest.approx(379.8145 / 707.0912, abs=1e-6)
    assert sequence.rig.image_size == (1226, 370) and sequence.stamps_s is None
    image = load_image(sequence.left[0])
    assert image.shape == (370, 1226, 3)
    np.testing.assert_array_equal(image[..., 0], image[..., 1])
    np.testing.assert_array_equal(image[..., 0], image[..., 2])


def test_all_sequences_are_listed(odometry_root: Path):
    assert list_sequences(odometry_root) == ["01", "02", "06"]


def test_missing_projection_and_bad_layout_are_named(tmp_path: Path, odometry_root: Path):
    calibration = load_odometry_calibration(odometry_root / "sequences" / "01" / "calib.txt")
    with pytest.raises(ValueError, match="no P2, P3"):
        calibration.rig((2, 3), (1241, 376))
    with pytest.raises(ValueError, match="left camera first"):
        calibration.rig((1, 0), (1241, 376))
    with pytest.raises(FileNotFoundError, match="sequences/NN"):
        list_sequences(tmp_path)
    with pytest.raises(FileNotFoundError, match="'07' not found"):
        odometry_sequence(odometry_root, "07")
    (tmp_path / "calib.txt").write_text("Tr: 1 2 3\n")
    with pytest.raises(ValueError, match="no P0..P3"):
        load_odometry_calibration(tmp_path / "calib.txt")


def test_a_generated_sequence_with_a_gap_keeps_only_frames_with_both_views(tmp_path: Path):
    seq_dir = tmp_path / "sequences" / "11"
    for camera in (0, 1):
        (seq_dir / f"image_{camera}").mkdir(parents=True)
    image = np.random.default_rng(0).integers(0, 255, (64, 96), dtype=np.uint8)
    for frame in (0, 1, 2, 4):
        cv2.imwrite(str(seq_dir / "image_0" / f"{frame:06d}.png"), image)
    for frame in (0, 1, 4):
        cv2.imwrite(str(seq_dir / "image_1" / f"{frame:06d}.png"), image)
    (seq_dir / "calib.txt").write_text("P0: 100 0 48 0 0 100 32 0 0 0 1 0\nP1: 100 0 48 -50 0 100 32 0 0 0 1 0\n")
    (seq_dir / "times.txt").write_text("0.0\n0.1\n")  # shorter than the frames: no stamps
    sequence = odometry_sequence(tmp_path, "11")
    assert sequence.frames == (0, 1, 4) and sequence.rig.baseline_m == pytest.approx(0.5)
    assert sequence.rig.image_size == (96, 64) and sequence.stamps_s is None
