"""Synthetic stereo sequences: right view = left view shifted by the exact disparity, exact road/backdrop depth."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from siam_depth_core.data.synthetic import CAMERA_HEIGHT_M, SyntheticClipDataset, render_synthetic_sequence
from siam_depth_core.geometry import depth_to_disparity
from siam_depth_core.warp import warp_horizontal

HEIGHT, WIDTH = 64, 128


@pytest.fixture(scope="module")
def sequence():
    return render_synthetic_sequence(3, HEIGHT, WIDTH, seed=3)


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """(T,H,W,C) -> (T,C,H,W) float32."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()


def _reconstruct_left(sequence, disparity_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Left view rebuilt from the right one with the exact disparity: warp(I_R, -d_L); and the visibility mask."""
    fx = sequence.camera_matrix[0, 0]
    disp = depth_to_disparity(sequence.depth_m, sequence.baseline_m, fx, WIDTH) * disparity_scale
    offset = -torch.from_numpy(disp).unsqueeze(1)
    left_rebuilt = warp_horizontal(_to_tensor(sequence.right), offset)
    depth_right_seen = warp_horizontal(_to_tensor(sequence.depth_right_m[..., None]), offset)[:, 0]
    depth_left = torch.from_numpy(sequence.depth_m)
    column = torch.arange(WIDTH).view(1, 1, WIDTH)
    visible = ((depth_right_seen - depth_left).abs() < 0.01 * depth_left) & (column + offset[:, 0] * WIDTH >= 0)
    return left_rebuilt, visible


def test_right_view_is_left_view_shifted_by_exact_disparity(sequence):
    left_rebuilt, visible = _reconstruct_left(sequence)
    assert visible.float().mean() > 0.8  # the rest: occluded in the right view or off its left edge
    error = (left_rebuilt - _to_tensor(sequence.left)).abs().amax(1)[visible]  # 8-bit levels
    assert error.median() < 2.0 and error.mean() < 3.5
    wrong_rebuilt, _ = _reconstruct_left(sequence, disparity_scale=1.3)
    wrong_error = (wrong_rebuilt - _to_tensor(sequence.left)).abs().amax(1)[visible]
    assert wrong_error.mean() > 2.5 * error.mean()


def test_depth_of_road_and_backdrop_is_exact(sequence):
    fy, cy = sequence.camera_matrix[1, 1], sequence.camera_matrix[1, 2]
    bottom_centre = sequence.depth_m[:, HEIGHT - 1, WIDTH // 2]
    np.testing.assert_allclose(bottom_centre, fy * CAMERA_HEIGHT_M / (HEIGHT - 1 - cy), rtol=1e-5)
    top_centre = sequence.depth_m[:, 0, WIDTH // 2]  # the backdrop plane, 1 m nearer each frame (10 m/s, 10 fps)
    np.testing.assert_allclose(np.diff(top_centre), -1.0, atol=1e-4)
    assert np.all(np.isfinite(sequence.depth_m)) and sequence.depth_m.min() > 0
    assert sequence.depth_m.max() < 90


def test_sequence_layout_intrinsics_and_determinism(sequence):
    assert sequence.left.shape == sequence.right.shape == (3, HEIGHT, WIDTH, 3) and sequence.left.dtype == np.uint8
    assert sequence.depth_m.shape == (3, HEIGHT, WIDTH) and sequence.depth_m.dtype == np.float32
    np.testing.assert_allclose(sequence.stamps_s, [0.0, 0.1, 0.2])
    np.testing.assert_allclose(sequence.camera_matrix, [[0.58 * WIDTH, 0, 63.5], [0, 0.58 * WIDTH, 31.5], [0, 0, 1]])
    assert sequence.baseline_m == 0.54
    again = render_synthetic_sequence(1, HEIGHT // 2, WIDTH // 2, seed=3)
    assert np.array_equal(again.left, render_synthetic_sequence(1, HEIGHT // 2, WIDTH // 2, seed=3).left)
    assert not np.array_equal(again.left, render_synthetic_sequence(1, HEIGHT // 2, WIDTH // 2, seed=4).left)
    assert sequence.left.std() > 20  # textured, not flat
    with pytest.raises(ValueError, match="num_frames"):
        render_synthetic_sequence(0, HEIGHT, WIDTH)


def test_synthetic_clip_dataset_items():
    dataset = SyntheticClipDataset(num_clips=2, clip_len=2, size=(HEIGHT, WIDTH), seed=5)
    assert len(dataset) == 2
    item = dataset[1]
    assert item["left"].shape == item["right"].shape == (2, 3, HEIGHT, WIDTH)
    assert item["left"].dtype == torch.float32 and 0 <= item["left"].min() and item["left"].max() <= 1
    assert item["depth_m"].shape == (2, 1, HEIGHT, WIDTH) and item["depth_m"].min() > 0
    assert item["frames"].tolist() == [0, 1] and item["drive"] == "synthetic_0001"
    assert torch.equal(dataset[1]["left"], item["left"]) and not torch.equal(dataset[0]["left"], item["left"])
    assert dataset.camera_matrix[0, 0] == pytest.approx(0.58 * WIDTH)
    with pytest.raises(IndexError):
        dataset[2]
