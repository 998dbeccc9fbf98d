"""StereoClipDataset on the shared drives: clips stay inside one sequence, T=1 works, resizing, augmentation seeding,
rig ratios, memory cache."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from siam_depth_core.data.augment import StereoAugment
from siam_depth_core.data.clips import StereoClipDataset, consecutive_runs
from siam_depth_core.data.kitti import frame_path, kitti_raw_sequence, load_image

DRIVE_0009 = "2011_09_26/2011_09_26_drive_0009_sync"
DRIVE_0023 = "2011_09_26/2011_09_26_drive_0023_sync"
SIZE = (32, 64)


@pytest.fixture(scope="module")
def both_drives(drive_0009: Path, drive_0023: Path) -> list[str]:
    return [DRIVE_0009, DRIVE_0023]


def kitti_clips(root: Path, drives: list[str], frames: dict[str, list[int]] | None = None, **options
                ) -> StereoClipDataset:
    sequences = [kitti_raw_sequence(root, d, None if frames is None else frames[d]) for d in drives]
    return StereoClipDataset(sequences, **options)


def test_clips_never_cross_drives(kitti_root: Path, both_drives: list[str]):
    dataset = kitti_clips(kitti_root, both_drives, clip_len=5, size=SIZE)
    assert len(dataset) == (51 - 4) + (7 - 4)
    for drive, start in dataset.clips:
        last = 50 if drive == DRIVE_0009 else 6
        assert 0 <= start and start + 4 <= last
    item = dataset[len(dataset) - 1]
    assert item["drive"] == DRIVE_0023 and item["frames"].tolist() == [2, 3, 4, 5, 6]
    assert item["left"].shape == item["right"].shape == (5, 3, *SIZE)


def test_single_frame_clips_and_resize_with_inter_area(kitti_root: Path, both_drives: list[str]):
    dataset = kitti_clips(kitti_root, both_drives, clip_len=1, size=SIZE)
    assert len(dataset) == 51 + 7
    item = dataset[3]
    assert item["frames"].dtype == torch.long and item["frames"].tolist() == [3]
    assert item["left"].dtype == torch.float32 and 0.0 <= item["left"].min() and item["left"].max() <= 1.0
    expected = cv2.resize(load_image(frame_path(kitti_root, DRIVE_0009, 3, camera=3)), SIZE[::-1],
                          interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(item["right"][0].permute(1, 2, 0).numpy(), expected / 255.0, atol=1e-6)


def test_given_frames_define_the_clips(kitti_root: Path, both_drives: list[str]):
    dataset = kitti_clips(kitti_root, [DRIVE_0009], {DRIVE_0009: [0, 1, 2, 5, 6]}, clip_len=2, size=SIZE)
    assert dataset.clips == [(DRIVE_0009, 0), (DRIVE_0009, 1), (DRIVE_0009, 5)]
    assert dataset[2]["frames"].tolist() == [5, 6]


def test_baseline_ratio_and_depth_scale_follow_each_rig(kitti_root: Path, drive_0009: Path, shared_data: Path):
    from siam_depth_core.data.odometry import odometry_sequence

    raw = kitti_raw_sequence(kitti_root, DRIVE_0009)
    odometry = odometry_sequence(shared_data / "kitti_odometry", "06")
    dataset = StereoClipDataset([raw, odometry], clip_len=1, size=SIZE)
    first, last = dataset[0], dataset[len(dataset) - 1]
    assert first["baseline_ratio"].item() == pytest.approx(1.0)
    assert last["drive"] == "odometry/06"
    assert last["baseline_ratio"].item() == pytest.approx(odometry.rig.baseline_m / raw.rig.baseline_m)
    assert last["baseline_ratio"].item() > 1.005  # 0.537 m against 0.533 m
    assert last["depth_per_disparity"].item() == pytest.approx(0.537 * 707.0912 / 1226, rel=1e-3)


def test_memory_cache_returns_the_same_items_without_decoding_again(kitti_root: Path, drive_0023: Path,
                                                                    monkeypatch: pytest.MonkeyPatch):
    from siam_depth_core.data import clips

    dataset = kitti_clips(kitti_root, [DRIVE_0023], clip_len=2, size=SIZE, cache_in_memory=True)
    first = dataset[0]
    monkeypatch.setattr(clips, "load_image", lambda path: pytest.fail(f"decoded {path} again"))
    again = dataset[0]
    assert torch.equal(first["left"], again["left"]) and torch.equal(first["right"], again["right"])


def test_augmentation_depends_on_seed_epoch_and_index_only(kitti_root: Path, drive_0023: Path):
    dataset = kitti_clips(kitti_root, [DRIVE_0023], clip_len=2, size=SIZE,
                          augment=StereoAugment(flip_prob=0.5, prob=1.0))
    first = dataset[0]["left"]
    assert torch.equal(first, dataset[0]["left"])
    epochs = []
    for epoch in range(4):
        dataset.set_epoch(epoch)
        epochs.append(dataset[0]["left"])
    assert torch.equal(epochs[0], first)
    assert any(not torch.equal(epochs[0], other) for other in epochs[1:])


def test_bad_arguments_are_rejected(kitti_root: Path, drive_0023: Path):
    with pytest.raises(ValueError, match="no clip of 8 consecutive frames"):
        kitti_clips(kitti_root, [DRIVE_0023], clip_len=8)
    sequence = kitti_raw_sequence(kitti_root, DRIVE_0023)
    with pytest.raises(ValueError, match="unique"):
        StereoClipDataset([sequence, sequence])
    with pytest.raises(ValueError, match="clip_len"):
        consecutive_runs([1, 2], 0)


def test_consecutive_runs():
    assert consecutive_runs([5, 1, 2, 3, 7, 8], 2) == [1, 2, 7]
    assert consecutive_runs([5, 1, 2, 3, 7, 8], 3) == [1]
    assert consecutive_runs([4, 9], 1) == [4, 9]


def test_context_frames_surround_each_clip_and_items_carry_the_training_size_k(kitti_root: Path, drive_0009: Path):
    from siam_depth_core.geometry import scale_intrinsics

    sequence = kitti_raw_sequence(kitti_root, DRIVE_0009)
    dataset = StereoClipDataset([sequence], clip_len=3, size=SIZE, context_frames=1)
    assert dataset.frames_per_item == 5 and len(dataset) == 51 - 4
    item = dataset[0]
    assert item["frames"].tolist() == [0, 1, 2, 3, 4] and item["left"].shape == (5, 3, *SIZE)
    expected = scale_intrinsics(sequence.rig.camera_matrix, SIZE[1] / 1242, SIZE[0] / 375)
    assert np.allclose(item["camera_matrix"].numpy(), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="context_frames"):
        StereoClipDataset([sequence], clip_len=3, size=SIZE, context_frames=-1)
