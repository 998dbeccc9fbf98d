"""Disparity <-> depth, intrinsics under resizing, back-projection to 3-D points."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from siam_depth_core.geometry import backproject, depth_to_disparity, disparity_to_depth, scale_intrinsics

# KITTI 2011_09_26 rectified camera 2 (P_rect_02) and the cameras 2-3 baseline.
KITTI_FX, KITTI_CX, KITTI_CY = 721.5377, 609.5593, 172.854
KITTI_BASELINE_M = 0.5327
KITTI_WIDTH, KITTI_HEIGHT = 1242, 375
KITTI_K = np.array([[KITTI_FX, 0.0, KITTI_CX], [0.0, KITTI_FX, KITTI_CY], [0.0, 0.0, 1.0]])


def test_known_kitti_depth() -> None:
    """disp 0.1 of 1242 px is 124.2 px; depth = 0.5327 m * 721.5377 px / 124.2 px = 3.09471 m."""
    depth = disparity_to_depth(np.array([0.1]), KITTI_BASELINE_M, KITTI_FX, KITTI_WIDTH)
    assert depth[0] == pytest.approx(3.09471, abs=1e-5)
    assert depth.dtype == np.float32


def test_depth_does_not_depend_on_the_width_it_is_computed_at() -> None:
    """The same width fraction means the same depth when fx is scaled with the image."""
    full = disparity_to_depth(np.array([0.05]), KITTI_BASELINE_M, KITTI_FX, KITTI_WIDTH)
    scale = 512 / KITTI_WIDTH
    small = disparity_to_depth(np.array([0.05]), KITTI_BASELINE_M, KITTI_FX * scale, 512)
    np.testing.assert_allclose(small, full, rtol=1e-6)


def test_disparity_depth_round_trip() -> None:
    disp = np.random.default_rng(0).uniform(0.001, 0.3, size=(8, 16)).astype(np.float32)
    depth = disparity_to_depth(disp, KITTI_BASELINE_M, KITTI_FX, KITTI_WIDTH)
    assert depth.shape == disp.shape
    back = depth_to_disparity(depth, KITTI_BASELINE_M, KITTI_FX, KITTI_WIDTH)
    np.testing.assert_allclose(back, disp, rtol=1e-5)


def test_invalid_values_give_nan() -> None:
    depth = disparity_to_depth(np.array([0.0, -0.1, np.nan, np.inf, 0.1]), KITTI_BASELINE_M, KITTI_FX, KITTI_WIDTH)
    assert np.isnan(depth[:4]).all() and np.isfinite(depth[4])
    disp = depth_to_disparity(np.array([0.0, -1.0, np.nan, 10.0]), KITTI_BASELINE_M, KITTI_FX, KITTI_WIDTH)
    assert np.isnan(disp[:3]).all() and np.isfinite(disp[3])


@pytest.mark.parametrize("bad", [{"baseline_m": 0.0}, {"fx_px": -1.0}, {"width_px": 0}, {"baseline_m": np.nan}])
def test_bad_camera_parameters_raise_value_error(bad: dict[str, float]) -> None:
    params = {"baseline_m": KITTI_BASELINE_M, "fx_px": KITTI_FX, "width_px": KITTI_WIDTH, **bad}
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        disparity_to_depth(np.array([0.1]), **params)
    with pytest.raises(ValueError, match=name):
        depth_to_disparity(np.array([10.0]), **params)


def test_scale_intrinsics_on_a_resize_to_512x256() -> None:
    scale_x, scale_y = 512 / KITTI_WIDTH, 256 / KITTI_HEIGHT
    scaled = scale_intrinsics(KITTI_K, scale_x, scale_y)
    assert scaled[0, 0] == pytest.approx(KITTI_FX * 512 / 1242)
    assert scaled[1, 1] == pytest.approx(KITTI_FX * 256 / 375)
    assert scaled[0, 2] == pytest.approx((KITTI_CX + 0.5) * 512 / 1242 - 0.5)
    assert scaled[1, 2] == pytest.approx((KITTI_CY + 0.5) * 256 / 375 - 0.5)
    np.testing.assert_array_equal(scaled[2], [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(KITTI_K[0, 2], KITTI_CX)  # input untouched
    np.testing.assert_allclose(scale_intrinsics(KITTI_K, 1.0, 1.0), KITTI_K)


def test_scaled_intrinsics_agree_with_cv2_resize() -> None:
    """A point projected with K' lands where cv2.resize moved the pixel K projects it to."""
    width, height = 200, 100
    new_width, new_height = 64, 32
    camera = np.array([[150.0, 0.0, 97.3], [0.0, 150.0, 51.8], [0.0, 0.0, 1.0]])
    columns = np.tile(np.arange(width, dtype=np.float32), (height, 1))  # each pixel holds its column
    rows = np.tile(np.arange(height, dtype=np.float32)[:, None], (1, width))
    resized_columns = cv2.resize(columns, (new_width, new_height), interpolation=cv2.INTER_LINEAR)
    resized_rows = cv2.resize(rows, (new_width, new_height), interpolation=cv2.INTER_LINEAR)
    scaled = scale_intrinsics(camera, new_width / width, new_height / height)
    for u_new, v_new in [(10, 5), (32, 16), (50, 25)]:
        ray = np.linalg.inv(scaled) @ np.array([u_new, v_new, 1.0])
        u, v, w = camera @ ray
        assert u / w == pytest.approx(resized_columns[v_new, u_new], abs=1e-3)
        assert v / w == pytest.approx(resized_rows[v_new, u_new], abs=1e-3)


def test_scale_intrinsics_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="3x3"):
        scale_intrinsics(np.eye(4), 0.5, 0.5)
    with pytest.raises(ValueError, match="scale_x"):
        scale_intrinsics(KITTI_K, 0.0, 0.5)


def _simple_camera() -> np.ndarray:
    return np.array([[100.0, 0.0, 32.0], [0.0, 100.0, 16.0], [0.0, 0.0, 1.0]])


def _point_at(points: np.ndarray, pixel_index: np.ndarray, row: int, col: int) -> np.ndarray:
    match = np.nonzero((pixel_index[:, 0] == row) & (pixel_index[:, 1] == col))[0]
    assert match.size == 1, f"pixel ({row}, {col}) not back-projected exactly once"
    return points[match[0]]


def test_backproject_known_depth_map() -> None:
    depth = np.full((32, 64), 10.0, dtype=np.float32)
    depth[20, 50] = 4.0
    points, pixel_index = backproject(depth, _simple_camera())
    assert points.shape == (32 * 64, 3) and points.dtype == np.float32
    assert pixel_index.shape == (32 * 64, 2)
    np.testing.assert_allclose(_point_at(points, pixel_index, 16, 32), [0.0, 0.0, 10.0])
    np.testing.assert_allclose(_point_at(points, pixel_index, 0, 0), [-3.2, -1.6, 10.0], rtol=1e-6)
    np.testing.assert_allclose(_point_at(points, pixel_index, 20, 50), [0.72, 0.16, 4.0], rtol=1e-6)


def test_backproject_drops_invalid_and_out_of_range_depth() -> None:
    depth = np.full((32, 64), 10.0, dtype=np.float32)
    depth[0, 0], depth[1, 1], depth[2, 2], depth[3, 3] = np.nan, 0.0, -5.0, np.inf
    depth[4, 4], depth[5, 5] = 0.5, 90.0
    points, pixel_index = backproject(depth, _simple_camera())
    assert len(points) == 32 * 64 - 4
    assert np.isfinite(points).all()
    for row in range(4):
        assert not ((pixel_index[:, 0] == row) & (pixel_index[:, 1] == row)).any()
    limited, _ = backproject(depth, _simple_camera(), min_depth=1.0, max_depth=80.0)
    assert len(limited) == 32 * 64 - 6
    assert limited[:, 2].min() >= 1.0 and limited[:, 2].max() <= 80.0


def test_backproject_with_stride() -> None:
    depth = np.full((32, 64), 10.0, dtype=np.float32)
    points, pixel_index = backproject(depth, _simple_camera(), stride=4)
    assert len(points) == 8 * 16
    assert set(pixel_index[:, 0]) == set(range(0, 32, 4)) and set(pixel_index[:, 1]) == set(range(0, 64, 4))
    np.testing.assert_allclose(_point_at(points, pixel_index, 16, 32), [0.0, 0.0, 10.0])


def test_backproject_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"\(H,W\)"):
        backproject(np.ones((1, 32, 64)), _simple_camera())
    with pytest.raises(ValueError, match="stride"):
        backproject(np.ones((32, 64)), _simple_camera(), stride=0)
