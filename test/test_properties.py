"""Property-based tests (hypothesis): message conversions and geometry on random sizes, encodings and values."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from siam_depth_core.geometry import backproject, depth_to_disparity, disparity_to_depth, scale_intrinsics
from siam_depth_core.runtime.inference import SUPPORTED_ENCODINGS, preprocess
from siam_depth_core.visualize import colorize_depth

pytest.importorskip("sensor_msgs", reason="ROS messages not installed (ROS extra)")
from siam_depth_ros.conversions import (  # noqa: E402
    IMAGE_ENCODINGS,
    ImageConversionError,
    image_to_numpy,
    numpy_to_image,
    pack_rgb,
    pointcloud2_to_array,
    points_to_pointcloud2,
    rgb_view,
    unpack_rgb,
)

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
sizes = st.integers(min_value=1, max_value=48)


@st.composite
def images(draw: st.DrawFn, encodings: list[str] | None = None) -> tuple[str, np.ndarray]:
    """(encoding, array of that encoding) with random size and contents, NaN/inf included for floats."""
    encoding = draw(st.sampled_from(encodings or sorted(IMAGE_ENCODINGS)))
    dtype, channels = IMAGE_ENCODINGS[encoding]
    shape = (draw(sizes), draw(sizes)) + ((channels,) if channels > 1 else ())
    return encoding, draw(arrays(dtype, shape))


def _same_bits(first: np.ndarray, second: np.ndarray) -> bool:
    """Equal shape, dtype and bytes (NaN payloads included)."""
    return first.shape == second.shape and first.dtype == second.dtype and first.tobytes() == second.tobytes()


@PROPERTY_SETTINGS
@given(image=images(), padding=st.integers(0, 13), big_endian=st.booleans())
def test_image_round_trip_any_encoding_padding_and_byte_order(image: tuple[str, np.ndarray], padding: int,
                                                              big_endian: bool) -> None:
    encoding, array = image
    row_bytes = array.shape[1] * array.itemsize * (array.shape[2] if array.ndim == 3 else 1)
    msg = numpy_to_image(array, encoding, step=row_bytes + padding, is_bigendian=big_endian)
    assert msg.step == row_bytes + padding and len(msg.data) == msg.height * msg.step
    decoded = image_to_numpy(msg)
    assert decoded.dtype.isnative
    assert _same_bits(np.ascontiguousarray(decoded), array)


@PROPERTY_SETTINGS
@given(image=images(), missing=st.integers(1, 64))
def test_short_data_is_rejected_with_the_sizes(image: tuple[str, np.ndarray], missing: int) -> None:
    encoding, array = image
    msg = numpy_to_image(array, encoding)
    needed = msg.height * msg.step
    msg.data = bytes(msg.data)[:max(needed - missing, 0)]
    with pytest.raises(ImageConversionError, match=rf"needs {needed} bytes of data, got {max(needed - missing, 0)}"):
        image_to_numpy(msg)


@PROPERTY_SETTINGS
@given(image=images(["rgb8", "bgr8", "rgba8", "bgra8", "mono8"]))
def test_rgb_view_and_preprocess_agree_across_colour_orders(image: tuple[str, np.ndarray]) -> None:
    """The same scene in any supported encoding gives the same RGB view and the same network input."""
    _, rgb = image
    if rgb.ndim == 2:
        rgb = cv2.cvtColor(rgb, cv2.COLOR_GRAY2RGB)
    rgb = np.ascontiguousarray(rgb[..., :3])
    as_encoding = {"rgb8": rgb, "bgr8": cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                   "rgba8": cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA), "bgra8": cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)}
    expected_input = preprocess(rgb, "rgb8", (32, 64))
    assert expected_input.shape == (1, 3, 32, 64) and expected_input.dtype == np.float32
    assert 0.0 <= expected_input.min() and expected_input.max() <= 1.0
    for encoding, array in as_encoding.items():
        assert np.array_equal(rgb_view(array, encoding), rgb)
        np.testing.assert_allclose(preprocess(array, encoding, (32, 64)), expected_input, atol=1e-6)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    assert np.array_equal(rgb_view(gray, "mono8"), np.repeat(gray[..., None], 3, axis=2))
    assert set(as_encoding) | {"mono8"} == set(SUPPORTED_ENCODINGS)


@PROPERTY_SETTINGS
@given(colors=arrays(np.uint8, st.tuples(st.integers(0, 64), st.just(3))))
def test_rgb_packing_is_invertible(colors: np.ndarray) -> None:
    packed = pack_rgb(colors)
    assert packed.dtype == np.float32
    assert np.array_equal(unpack_rgb(packed), colors)
    assert np.array_equal(packed.view(np.uint32) >> 24, np.zeros(len(colors), np.uint32))


@PROPERTY_SETTINGS
@given(points=arrays(np.float32, st.tuples(st.integers(0, 80), st.just(3)),
                     elements=st.floats(-1e4, 1e4, width=32) | st.just(np.nan)),
       with_colors=st.booleans(), data=st.data())
def test_point_cloud_round_trip(points: np.ndarray, with_colors: bool, data: st.DataObject) -> None:
    colors = data.draw(arrays(np.uint8, points.shape)) if with_colors else None
    msg = points_to_pointcloud2(points, colors)
    assert (msg.height, msg.width, msg.point_step) == (1, len(points), 16 if with_colors else 12)
    assert msg.is_dense == bool(np.isfinite(points).all())
    cloud = pointcloud2_to_array(msg)
    assert _same_bits(np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=-1).reshape(points.shape), points)
    if with_colors:
        assert np.array_equal(unpack_rgb(cloud["rgb"]), colors)
    finite = pointcloud2_to_array(msg, ["x", "y", "z"], skip_nans=True)
    assert len(finite) == int((~np.isnan(points).any(axis=1)).sum())


positive = st.floats(min_value=1e-2, max_value=1e3, allow_nan=False)


@PROPERTY_SETTINGS
@given(disparity=arrays(np.float32, st.tuples(sizes, sizes), elements=st.floats(2.0**-13, 0.25, width=32)),
       baseline=st.floats(0.05, 2.0), fx=positive, width=st.integers(1, 4096))
def test_depth_and_disparity_are_inverse(disparity: np.ndarray, baseline: float, fx: float, width: int) -> None:
    depth = disparity_to_depth(disparity, baseline, fx, width)
    assert depth.dtype == np.float32 and depth.shape == disparity.shape
    np.testing.assert_allclose(depth * disparity * width, baseline * fx, rtol=1e-5)
    np.testing.assert_allclose(depth_to_disparity(depth, baseline, fx, width), disparity, rtol=1e-5)


@PROPERTY_SETTINGS
@given(disparity=arrays(np.float32, st.tuples(sizes, sizes),
                        elements=st.floats(-1.0, 0.0, width=32) | st.sampled_from([np.nan, np.inf, -np.inf])))
def test_non_positive_or_non_finite_disparity_gives_nan_depth(disparity: np.ndarray) -> None:
    assert np.isnan(disparity_to_depth(disparity, 0.54, 720.0, 1242)).all()


@st.composite
def camera_matrices(draw: st.DrawFn) -> np.ndarray:
    fx, fy = draw(st.floats(10.0, 2000.0)), draw(st.floats(10.0, 2000.0))
    cx, cy = draw(st.floats(-50.0, 2000.0)), draw(st.floats(-50.0, 2000.0))
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


scales = st.floats(min_value=0.05, max_value=8.0)


@PROPERTY_SETTINGS
@given(camera_matrix=camera_matrices(), first=st.tuples(scales, scales), second=st.tuples(scales, scales),
       pixel=st.tuples(st.floats(-10, 2000), st.floats(-10, 2000)))
def test_intrinsics_scaling_composes_and_keeps_pixel_centres(camera_matrix: np.ndarray, first: tuple[float, float],
                                                             second: tuple[float, float],
                                                             pixel: tuple[float, float]) -> None:
    twice = scale_intrinsics(scale_intrinsics(camera_matrix, *first), *second)
    once = scale_intrinsics(camera_matrix, first[0] * second[0], first[1] * second[1])
    np.testing.assert_allclose(twice, once, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(scale_intrinsics(camera_matrix, 1.0, 1.0), camera_matrix, atol=1e-12)
    # A ray through a pixel lands on the pixel that cv2.resize maps it to: u' = (u + 0.5) * s - 0.5.
    u, v = pixel
    scaled = scale_intrinsics(camera_matrix, *first)
    ray = np.linalg.solve(camera_matrix, [u, v, 1.0])
    projected = scaled @ ray
    np.testing.assert_allclose(projected[:2] / projected[2], [(u + 0.5) * first[0] - 0.5, (v + 0.5) * first[1] - 0.5],
                               rtol=1e-9, atol=1e-6)


@PROPERTY_SETTINGS
@given(depth=arrays(np.float32, st.tuples(sizes, sizes),
                    elements=st.floats(0.125, 100.0, width=32) | st.sampled_from([np.nan, 0.0, -1.0, np.inf])),
       camera_matrix=camera_matrices(), stride=st.integers(1, 5),
       depth_range=st.tuples(st.floats(0.0, 10.0), st.floats(10.0, 200.0)))
def test_backprojected_points_reproject_to_their_pixels(depth: np.ndarray, camera_matrix: np.ndarray, stride: int,
                                                        depth_range: tuple[float, float]) -> None:
    min_depth, max_depth = depth_range
    points, pixel_index = backproject(depth, camera_matrix, stride, min_depth, max_depth)
    grid = depth[::stride, ::stride]
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(grid) & (grid > 0) & (grid >= min_depth) & (grid <= max_depth)
    assert points.dtype == np.float32 and points.shape == (int(usable.sum()), 3)
    assert (pixel_index % stride == 0).all()
    rows, cols = pixel_index[:, 0], pixel_index[:, 1]
    np.testing.assert_array_equal(points[:, 2], depth[rows, cols])
    projected = (camera_matrix @ points.T.astype(np.float64)).T
    np.testing.assert_allclose(projected[:, 0] / projected[:, 2], cols, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(projected[:, 1] / projected[:, 2], rows, rtol=1e-4, atol=1e-3)


@PROPERTY_SETTINGS
@given(depth=arrays(np.float32, st.tuples(sizes, sizes),
                    elements=st.floats(2.0**-10, 500.0, width=32) | st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -1.0])),
       depth_range=st.tuples(st.floats(0.01, 5.0), st.floats(5.5, 300.0)))
def test_colour_map_is_black_exactly_where_depth_is_invalid(depth: np.ndarray, depth_range: tuple[float, float]) -> None:
    colored = colorize_depth(depth, *depth_range)
    assert colored.shape == (*depth.shape, 3) and colored.dtype == np.uint8
    with np.errstate(invalid="ignore"):
        invalid = ~(np.isfinite(depth) & (depth > 0))
    assert not colored[invalid].any()
