"""KITTI raw reader: images, frame listing, Velodyne -> depth ground truth (vs a plain loop), KITTI 2015 disparity."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from siam_depth_core.data.calib import StereoCalibration, load_stereo_calibration, read_calib_file
from siam_depth_core.data.kitti import (
    calib_dir,
    frame_path,
    list_frames,
    load_disparity_png,
    load_image,
    load_velodyne_depth,
    load_velodyne_points,
    velodyne_depth_map,
    velodyne_path,
)

DRIVE_0009 = "2011_09_26/2011_09_26_drive_0009_sync"


def _depth_map_by_loop(velo_bin: Path, date_dir: Path) -> np.ndarray:
    """Independent reference: the devkit recipe point by point, calibration read from the raw files."""
    cam = read_calib_file(date_dir / "calib_cam_to_cam.txt")
    velo = read_calib_file(date_dir / "calib_velo_to_cam.txt")
    rect = np.eye(4)
    rect[:3, :3] = cam["R_rect_00"].reshape(3, 3)
    velo_to_cam = np.vstack([np.hstack([velo["R"].reshape(3, 3), velo["T"].reshape(3, 1)]), [0, 0, 0, 1]])
    projection = cam["P_rect_02"].reshape(3, 4) @ rect @ velo_to_cam
    width, height = (int(v) for v in cam["S_rect_02"])
    points = np.fromfile(velo_bin, dtype=np.float32).reshape(-1, 4)
    nearest: dict[tuple[int, int], float] = {}
    for x, y, z, _ in points:
        if x < 0:
            continue
        u, v, w = projection @ np.array([x, y, z, 1.0])
        col, row = round(u / w) - 1, round(v / w) - 1
        if 0 <= col < width and 0 <= row < height:
            nearest[(row, col)] = min(w, nearest.get((row, col), np.inf))
    depth = np.zeros((height, width), dtype=np.float32)
    for (row, col), value in nearest.items():
        depth[row, col] = max(value, 0.0)
    return depth


def test_velodyne_depth_matches_point_loop_on_drive_0009(kitti_root: Path, drive_0009: Path):
    calib = load_stereo_calibration(calib_dir(kitti_root, DRIVE_0009))
    scan = velodyne_path(kitti_root, DRIVE_0009, 0)
    points = load_velodyne_points(scan)
    depth = velodyne_depth_map(points, calib)

    assert depth.shape == (375, 1242) and depth.dtype == np.float32
    valid = depth > 0
    assert 15_000 < valid.sum() < 20_000  # ~4 % of the 1242x375 pixels, as in KITTI's projected GT
    assert 3.0 < depth[valid].min() < 6.0 and 70.0 < depth[valid].max() < 80.5
    assert valid[:150].sum() < valid[150:].sum() / 10  # the 64-beam scanner barely reaches the image top
    np.testing.assert_array_equal(depth, _depth_map_by_loop(scan, kitti_root / "2011_09_26"))
    np.testing.assert_array_equal(load_velodyne_depth(kitti_root, DRIVE_0009, 0), depth)


def test_right_camera_depth_is_the_left_one_seen_from_0_54_m_to_the_right(kitti_root: Path, drive_0009: Path):
    left = load_velodyne_depth(kitti_root, DRIVE_0009, 0, camera=2)
    right = load_velodyne_depth(kitti_root, DRIVE_0009, 0, camera=3)
    assert abs(int((left > 0).sum()) - int((right > 0).sum())) < 1000
    # a point at depth z appears fx * baseline / z pixels further left in the right image
    calib = load_stereo_calibration(kitti_root / "2011_09_26")
    rows, cols = np.nonzero(left[:, 200:1000] > 0)
    z = left[rows, cols + 200]
    shifted = np.round(cols + 200 - calib.P_rect_02[0, 0] * calib.baseline_m / z).astype(int)
    assert np.mean(np.abs(right[rows, shifted] - z) < 0.1) > 0.5  # 0.64 here (0.05 unshifted): occlusions, rounding


def _toy_calibration() -> StereoCalibration:
    """fx = fy = 100 px, c = (31.6, 23.2), 64x48 image; Velodyne x forward, y left, z up -> camera z, -x, -y."""
    projection = np.array([[100.0, 0.0, 31.6, 0.0], [0.0, 100.0, 23.2, 0.0], [0.0, 0.0, 1.0, 0.0]])
    velo_to_cam = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0, 0, 0, 1.0]])
    return StereoCalibration(projection, projection, np.eye(4), velo_to_cam, (64, 48))


def test_velodyne_depth_keeps_nearest_point_and_drops_points_behind():
    points = np.array([[20.0, 0.0, 0.0, 0.3],   # principal ray: pixel (round(23.2)-1, round(31.6)-1) = (22, 31)
                       [10.0, 0.0, 0.0, 0.3],   # same pixel, nearer: kept
                       [10.0, -1.0, 0.0, 0.3],  # u = 100 * 1/10 + 31.6 = 41.6 -> column 41
                       [-10.0, 0.0, 0.0, 0.3],  # behind the scanner: dropped
                       [1.0, 5.0, 0.0, 0.3]],   # u = -500 + 31.6: outside the image
                      dtype=np.float32)
    depth = velodyne_depth_map(points, _toy_calibration())
    assert depth.shape == (48, 64)
    assert np.count_nonzero(depth) == 2
    assert depth[22, 31] == 10.0 and depth[22, 41] == 10.0


def test_velodyne_depth_rejects_bad_points():
    with pytest.raises(ValueError, match="points must be"):
        velodyne_depth_map(np.zeros((5, 2), dtype=np.float32), _toy_calibration())


def test_load_velodyne_points_shape_and_errors(tmp_path: Path):
    scan = np.arange(12, dtype=np.float32)
    scan.tofile(tmp_path / "ok.bin")
    np.testing.assert_array_equal(load_velodyne_points(tmp_path / "ok.bin"), scan.reshape(3, 4))
    np.arange(5, dtype=np.float32).tofile(tmp_path / "bad.bin")
    with pytest.raises(ValueError, match="multiple of 4"):
        load_velodyne_points(tmp_path / "bad.bin")
    with pytest.raises(FileNotFoundError):
        load_velodyne_points(tmp_path / "missing.bin")


def test_frame_path_layout():
    path = frame_path("/data", DRIVE_0009, 16, camera=3, ext=".jpg")
    assert path == Path("/data/2011_09_26/2011_09_26_drive_0009_sync/image_03/data/0000000016.jpg")
    with pytest.raises(ValueError, match="camera"):
        frame_path("/data", DRIVE_0009, 0, camera=5)


def test_list_frames_and_load_image_of_drive_0009(kitti_root: Path, drive_0009: Path):
    assert list_frames(drive_0009) == list(range(51))
    assert list_frames(drive_0009, camera=3) == list(range(51))
    left = load_image(frame_path(kitti_root, DRIVE_0009, 0))
    right = load_image(frame_path(kitti_root, DRIVE_0009, 0, camera=3))
    assert left.shape == right.shape == (375, 1242, 3) and left.dtype == np.uint8
    assert not np.array_equal(left, right)


def test_load_image_rgb_order_jpg_and_errors(tmp_path: Path):
    bgr = np.zeros((8, 10, 3), dtype=np.uint8)
    bgr[..., 2] = 255  # pure red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    cv2.imwrite(str(tmp_path / "red.jpg"), bgr)
    assert load_image(tmp_path / "red.png")[0, 0].tolist() == [255, 0, 0]
    assert load_image(tmp_path / "red.jpg")[0, 0, 0] > 240
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot decode"):
        load_image(tmp_path / "broken.png")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(FileNotFoundError, match="image_02"):
        list_frames(tmp_path)


def test_load_disparity_png_scale_and_kitti_frame(tmp_path: Path, shared_data: Path):
    encoded = np.array([[0, 256, 513]], dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "disp.png"), encoded)
    np.testing.assert_array_equal(load_disparity_png(tmp_path / "disp.png"), [[0.0, 1.0, 513 / 256]])
    cv2.imwrite(str(tmp_path / "rgb.png"), np.zeros((2, 2, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint16"):
        load_disparity_png(tmp_path / "rgb.png")

    disp = load_disparity_png(shared_data / "kitti_stereo_2015" / "training" / "disp_occ_0" / "000046_10.png")
    assert disp.shape == (375, 1242) and disp.dtype == np.float32
    assert 0.05 < (disp > 0).mean() < 0.5 and 0 < disp.max() < 256
