"""The depth colour convention (issue 27, item 11): a driving scene spans the colour map, and every saved picture has a
labelled colour bar drawn in the same convention."""
from __future__ import annotations

import numpy as np

from siam_depth_core.visualize import (
    COLOR_BAR_TICKS_M,
    FAR_DEPTH_M,
    NEAR_DEPTH_M,
    color_bar,
    colorize_depth,
    colorize_sparse_depth,
    depth_levels,
    triptych,
    with_color_bar,
)


def _street_scene(height: int = 120, width: int = 400) -> np.ndarray:
    """A road's depth: 40 m at the horizon row to 5 m at the bottom row (the range of a KITTI street), sky invalid."""
    depth = np.full((height, width), np.nan, np.float32)
    rows = np.arange(height // 3, height)
    depth[rows] = (40.0 * 5.0 / (5.0 + 35.0 * (rows - rows[0]) / (rows[-1] - rows[0])))[:, None]  # 1/depth linear in row
    return depth


def test_a_street_scene_spans_most_of_the_colour_map() -> None:
    levels = depth_levels(_street_scene())
    span = np.nanmax(levels) - np.nanmin(levels)
    assert span > 0.65, span  # inverse depth over 2-80 m gave 0.36: the dark third of the map
    colored = colorize_depth(_street_scene())
    brightness = colored.astype(int).sum(axis=-1)
    assert brightness[-1].mean() > 2.5 * brightness[40].mean()  # the near road is bright, the horizon dark
    assert not colored[:40].any()  # invalid (sky): black
    assert depth_levels(np.float32([[NEAR_DEPTH_M, FAR_DEPTH_M, 1.0, 500.0]])).tolist() == [[1.0, 0.0, 1.0, 0.0]]


def test_each_doubling_of_the_distance_takes_the_same_share_of_the_map() -> None:
    levels = depth_levels(np.float32([[5.0, 10.0, 20.0, 40.0]]))[0]
    np.testing.assert_allclose(-np.diff(levels), np.log(2) / np.log(FAR_DEPTH_M / NEAR_DEPTH_M), rtol=1e-5)


def test_the_colour_bar_is_drawn_in_the_convention_and_labelled() -> None:
    height = 188
    bar = color_bar(height)
    assert bar.shape == (height, 60, 3)
    for tick in COLOR_BAR_TICKS_M:  # the bar's colour at a tick's row is that depth's colour
        row = int(round((1.0 - float(depth_levels(np.float32([[tick]]))[0, 0])) * (height - 1)))
        expected = colorize_depth(np.float32([[tick]]))[0, 0].astype(int)
        assert np.abs(bar[row, 5].astype(int) - expected).max() <= 4  # (within the row's rounding: one level)
        assert bar[max(row - 3, 0):row + 4, 20:].any()  # text beside it
    picture = with_color_bar(colorize_depth(_street_scene()), "prediction")
    assert picture.shape == (120, 460, 3)


def test_the_demo_montage_strip_carries_the_colour_bar() -> None:
    image = np.full((120, 400, 3), 128, np.uint8)
    gt = np.zeros((120, 400), np.float32)
    gt[100, 200] = 8.0
    strip = triptych(image, _street_scene(), gt, ("frame", "depth", "LiDAR"), scale=1.0)
    assert strip.shape == (120, 3 * 400 + 60, 3)
    np.testing.assert_array_equal(strip[:, 1200:], color_bar(120))
    colors, has_point = colorize_sparse_depth(gt)  # LiDAR points in the same colours
    assert has_point.sum() == 9
    np.testing.assert_array_equal(colors[100, 200], colorize_depth(np.float32([[8.0]]))[0, 0])
