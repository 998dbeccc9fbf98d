"""Depth Hints: fused SGBM hint against KITTI 2015 ground truth, per-pixel fusion, the cache, the loss mask."""
from __future__ import annotations

import math
import multiprocessing
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from siam_depth_core.data import depth_hints
from siam_depth_core.data.depth_hints import (
    DEFAULT_SGBM_SETS,
    DepthHintCache,
    SgbmParams,
    fuse_candidates,
    fused_hint,
    sgbm_disparity,
    stereo_hint,
)
from siam_depth_core.data.kitti import load_disparity_png, load_image
from siam_depth_core.evaluation.metrics import kitti_d1
from siam_depth_core.training.losses import depth_hint_loss

SHIFT_PX = 6


def textured_pair(height: int = 64, width: int = 160, shift: int = SHIFT_PX) -> tuple[np.ndarray, np.ndarray]:
    """A random-texture rectified pair whose left view is the right view moved `shift` px to the right."""
    texture = np.random.default_rng(0).integers(0, 256, (height, width + shift, 3), dtype=np.uint8)
    texture = cv2.GaussianBlur(texture, (3, 3), 0)
    return np.ascontiguousarray(texture[:, :width]), np.ascontiguousarray(texture[:, shift:width + shift])


@pytest.fixture(scope="module")
def frame_000046(shared_data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    folder = shared_data / "kitti_stereo_2015" / "training"
    if not (folder / "image_3" / "000046_10.png").is_file():
        pytest.skip(f"KITTI 2015 frame 000046 not found under {folder}")
    return (load_image(folder / "image_2" / "000046_10.png"), load_image(folder / "image_3" / "000046_10.png"),
            load_disparity_png(folder / "disp_occ_0" / "000046_10.png"))


def test_fused_hint_matches_kitti_2015_ground_truth(frame_000046):
    left, right, disp_gt = frame_000046
    fused = fused_hint(left, right)
    d1_fused = kitti_d1(disp_gt, fused)  # pixels without a hint count as errors
    assert d1_fused < 0.09, f"fused SGBM hint D1-all {d1_fused:.3f} (measured 0.079 when written)"
    assert np.mean(fused[disp_gt > 0] > 0) > 0.9
    widest = kitti_d1(disp_gt, np.nan_to_num(sgbm_disparity(left, right, SgbmParams(192, 5))))
    assert d1_fused < widest - 0.03, f"fusion {d1_fused:.3f} should beat the widest single search {widest:.3f}"


def test_fusion_keeps_per_pixel_the_candidate_that_reconstructs_best():
    left, right = textured_pair()
    right_candidate = np.full(left.shape[:2], float(SHIFT_PX), np.float32)
    wrong_candidate = np.full(left.shape[:2], float(SHIFT_PX + 5), np.float32)
    right_candidate[:, 100:120] = np.nan  # only the wrong one has a value there
    fused = fuse_candidates(left, right, [wrong_candidate, right_candidate])
    assert np.all(fused[:, 20:98] == SHIFT_PX) and np.all(fused[:, 122:] == SHIFT_PX)
    assert np.all(fused[:, 100:120] == SHIFT_PX + 5)
    both_missing = fuse_candidates(left, right, [np.full(left.shape[:2], np.nan, np.float32)])
    assert np.all(both_missing == 0)


def test_stereo_hint_gives_both_views_as_fractions_of_width():
    left, right = textured_pair()
    hint = stereo_hint(left, right, [SgbmParams(16, 3)])
    width = left.shape[1]
    inner = (slice(8, -8), slice(30, -30))
    assert np.median(hint.left[inner]) == pytest.approx(SHIFT_PX / width, abs=0.5 / width)
    assert np.median(hint.right[inner]) == pytest.approx(SHIFT_PX / width, abs=0.5 / width)


def _write_pair(folder: Path, shift: int = SHIFT_PX) -> tuple[Path, Path]:
    left, right = textured_pair(shift=shift)
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "left.png", folder / "right.png"
    for path, image in zip(paths, (left, right), strict=True):
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return paths


def test_cache_reuses_a_hint_and_recomputes_when_the_image_or_settings_change(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch):
    left_path, right_path = _write_pair(tmp_path / "images")
    cache = DepthHintCache(tmp_path / "cache", [SgbmParams(16, 3)])
    first = cache.get(left_path, right_path)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1

    calls = []
    real = depth_hints.stereo_hint
    monkeypatch.setattr(depth_hints, "stereo_hint", lambda *a: calls.append(1) or real(*a))
    again = cache.get(left_path, right_path)
    assert calls == [] and np.array_equal(first.left, again.left) and np.array_equal(first.right, again.right)

    other_settings = DepthHintCache(tmp_path / "cache", [SgbmParams(32, 3)])
    assert other_settings.key(left_path, right_path) != cache.key(left_path, right_path)
    other_settings.get(left_path, right_path)
    assert calls == [1]

    copied = tmp_path / "copied"  # the same images elsewhere, with other modification times: the same hint
    copied.mkdir()
    copies = [copied / path.name for path in (left_path, right_path)]
    for path, copy in zip((left_path, right_path), copies, strict=True):
        copy.write_bytes(path.read_bytes())
        os.utime(copy, ns=(1, 1))
    assert np.array_equal(cache.get(*copies).left, first.left) and calls == [1]

    _write_pair(tmp_path / "images", shift=SHIFT_PX + 2)  # the images change on disk
    os.utime(left_path, ns=(1, 1))
    changed = cache.get(left_path, right_path)
    assert calls == [1, 1]
    width = first.left.shape[1]
    assert np.median(changed.left[8:-8, 30:-30]) == pytest.approx((SHIFT_PX + 2) / width, abs=0.5 / width)


def test_a_damaged_cache_file_is_computed_again(tmp_path: Path):
    left_path, right_path = _write_pair(tmp_path / "images")
    cache = DepthHintCache(tmp_path / "cache", [SgbmParams(16, 3)])
    cache.path(left_path, right_path).parent.mkdir(parents=True)
    cache.path(left_path, right_path).write_bytes(b"not a numpy file")
    assert cache.get(left_path, right_path).left.shape == (64, 160)


def _fill(args: tuple[str, list[tuple[str, str]]]) -> int:
    cache_dir, pairs = args
    return DepthHintCache(cache_dir, [SgbmParams(16, 3)]).fill([(Path(a), Path(b)) for a, b in pairs], progress=False)


def test_two_processes_fill_one_cache_safely(tmp_path: Path):
    pairs = [tuple(str(p) for p in _write_pair(tmp_path / f"pair{i}", shift=SHIFT_PX + i)) for i in range(4)]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_fill, [(str(tmp_path / "cache"), pairs), (str(tmp_path / "cache"), pairs[::-1])])
    files = sorted((tmp_path / "cache").iterdir())
    assert len(files) == 4 and all(f.suffix == ".npz" and ".tmp" not in f.name for f in files)
    cache = DepthHintCache(tmp_path / "cache", [SgbmParams(16, 3)])
    assert cache.fill([(Path(a), Path(b)) for a, b in pairs], progress=False) == 0


def test_bad_sgbm_settings_are_named():
    with pytest.raises(ValueError, match="multiple of 16"):
        SgbmParams(40, 3)
    with pytest.raises(ValueError, match="odd"):
        SgbmParams(64, 4)
    with pytest.raises(ValueError, match="at least one"):
        DepthHintCache("/tmp", [])
    assert len(DEFAULT_SGBM_SETS) == 9


def test_hint_term_applies_only_where_the_hint_reconstructs_better():
    disp = torch.full((1, 1, 1, 4), 0.1)
    hint = torch.tensor([[[[0.05, 0.05, 0.0, 0.05]]]])           # pixel 2: no hint
    error_pred = torch.tensor([[[[0.5, 0.1, 0.5, 0.5]]]])
    error_hint = torch.tensor([[[[0.2, 0.3, 0.1, 0.2]]]])         # pixel 1: the prediction is better
    depth_per_disparity = torch.tensor([0.3])
    # Pixels 0 and 3 count: depth 3 m predicted, 6 m hinted -> log(1 + 3) each, mean over 4 pixels.
    value = depth_hint_loss(disp, hint, error_pred, error_hint, depth_per_disparity)
    assert value.item() == pytest.approx(2 * math.log(4.0) / 4, rel=1e-5)
    disp.requires_grad_(True)
    depth_hint_loss(disp, hint, error_pred, error_hint, depth_per_disparity).backward()
    assert disp.grad[0, 0, 0, 1] == 0 and disp.grad[0, 0, 0, 2] == 0 and disp.grad[0, 0, 0, 0] > 0
