"""Image / PointCloud2 / CameraInfo <-> numpy conversions (cv_bridge and sensor_msgs_py semantics)."""
from __future__ import annotations

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from siam_depth_core.geometry import backproject
from siam_depth_core.visualize import colorize_depth
from siam_depth_ros.conversions import (
    CAMERA_ENCODINGS,
    IMAGE_ENCODINGS,
    ImageConversionError,
    camera_image_to_numpy,
    camera_info_matrix,
    compressed_image_to_numpy,
    image_to_numpy,
    make_camera_info,
    numpy_to_compressed_image,
    numpy_to_image,
    pack_rgb,
    pointcloud2_to_array,
    points_to_pointcloud2,
    unpack_rgb,
)

CAMERA_MATRIX = np.array([[100.0, 0.0, 31.5], [0.0, 90.0, 11.5], [0.0, 0.0, 1.0]])


def _random_image(encoding: str, height: int = 5, width: int = 7) -> np.ndarray:
    dtype, channels = IMAGE_ENCODINGS[encoding]
    shape = (height, width) if channels == 1 else (height, width, channels)
    rng = np.random.default_rng(0)
    if dtype.kind == "f":
        return rng.normal(0.0, 30.0, shape).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


def _over_the_wire(msg):
    return deserialize_message(serialize_message(msg), type(msg))


@pytest.mark.parametrize("encoding", sorted(IMAGE_ENCODINGS))
@pytest.mark.parametrize("padding", [0, 13])
@pytest.mark.parametrize("big_endian", [False, True])
def test_image_round_trip_every_encoding(encoding, padding, big_endian):
    array = _random_image(encoding)
    row_bytes = array.shape[1] * array.itemsize * (array.shape[2] if array.ndim == 3 else 1)
    header = Header(frame_id="cam")
    msg = _over_the_wire(numpy_to_image(array, encoding, header, step=row_bytes + padding, is_bigendian=big_endian))
    assert (msg.height, msg.width, msg.step, msg.encoding) == (5, 7, row_bytes + padding, encoding)
    assert msg.is_bigendian == big_endian and msg.header.frame_id == "cam"
    assert len(msg.data) == msg.height * msg.step
    decoded = image_to_numpy(msg)
    assert decoded.shape == array.shape and decoded.dtype == array.dtype
    assert decoded.dtype.isnative
    np.testing.assert_array_equal(decoded, array)


def test_big_endian_message_built_by_hand_decodes_to_its_values():
    values = np.array([[1.5, -2.25, np.nan], [1e6, 0.0, 80.0]], dtype=">f4")
    msg = Image(height=2, width=3, encoding="32FC1", is_bigendian=1, step=12)
    msg.data = values.tobytes()
    np.testing.assert_array_equal(image_to_numpy(msg), values.astype(np.float32))
    depth_mm = np.array([[1, 256, 65535]], dtype=">u2")
    msg = Image(height=1, width=3, encoding="16UC1", is_bigendian=1, step=6)
    msg.data = depth_mm.tobytes()
    np.testing.assert_array_equal(image_to_numpy(msg), [[1, 256, 65535]])


def test_padded_rows_are_skipped_like_cv_bridge():
    rows = np.arange(2 * 8, dtype=np.uint8).reshape(2, 8)  # step 8, each row holds 2 rgb pixels + 2 pad bytes
    msg = Image(height=2, width=2, encoding="rgb8", step=8)
    msg.data = rows.tobytes()
    image = image_to_numpy(msg)
    assert image.shape == (2, 2, 3)
    np.testing.assert_array_equal(image[1, 1], [11, 12, 13])
    mono = Image(height=2, width=3, encoding="mono8", step=4)
    mono.data = bytes([1, 2, 3, 99, 4, 5, 6, 99])
    np.testing.assert_array_equal(image_to_numpy(mono), [[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize(("fields", "message"), [
    ({"encoding": "yuv422", "height": 2, "width": 2, "step": 4}, "unsupported image encoding 'yuv422'"),
    ({"encoding": "rgb8", "height": 0, "width": 0, "step": 0}, "empty rgb8 image"),
    ({"encoding": "rgb8", "height": 2, "width": 4, "step": 12}, "needs 24 bytes of data, got 20"),
    ({"encoding": "rgb8", "height": 2, "width": 4, "step": 10}, "shorter than one row"),
])
def test_bad_image_messages_raise_clear_errors(fields, message):
    msg = Image(**fields)
    msg.data = bytes(20)
    with pytest.raises(ImageConversionError, match=message):
        image_to_numpy(msg)


def test_numpy_to_image_rejects_mismatched_arrays():
    with pytest.raises(ImageConversionError, match="needs a float32 array"):
        numpy_to_image(np.zeros((2, 2), np.float64), "32FC1")
    with pytest.raises(ImageConversionError, match=r"needs a \(H,W,3\) array"):
        numpy_to_image(np.zeros((2, 2), np.uint8), "rgb8")
    with pytest.raises(ImageConversionError, match="unsupported image encoding"):
        numpy_to_image(np.zeros((2, 2), np.uint8), "8UC2")


def test_rgb_packing_matches_rviz_layout():
    colors = np.array([[255, 0, 0], [0, 255, 0], [1, 2, 3]], dtype=np.uint8)
    packed = pack_rgb(colors)
    assert packed.dtype == np.float32
    np.testing.assert_array_equal(packed.view(np.uint32), [0xFF0000, 0x00FF00, 0x010203])
    # little-endian bytes of the rgb field are B, G, R, 0 as PCL/RViz read them
    assert packed[2:].tobytes() == bytes([3, 2, 1, 0])
    np.testing.assert_array_equal(unpack_rgb(packed), colors)


def test_cloud_from_known_depth_map_has_expected_xyz():
    depth = np.full((24, 64), 10.0, dtype=np.float32)
    depth[5, 40] = 4.0
    depth[0, :] = np.nan  # invalid row is dropped
    colors = np.zeros((24, 64, 3), dtype=np.uint8)
    colors[5, 40] = (200, 100, 50)
    points, pixel_index = backproject(depth, CAMERA_MATRIX, stride=1, min_depth=0.1, max_depth=80.0)
    header = Header(frame_id="camera_optical")
    msg = _over_the_wire(points_to_pointcloud2(points, colors[pixel_index[:, 0], pixel_index[:, 1]], header))
    assert (msg.height, msg.width, msg.point_step) == (1, 23 * 64, 16)
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb"] and msg.is_dense
    cloud = pointcloud2_to_array(msg)
    at = {(int(r), int(c)): i for i, (r, c) in enumerate(pixel_index)}
    fx, fy, cx, cy = 100.0, 90.0, 31.5, 11.5
    for (row, col), z in {(5, 40): 4.0, (23, 0): 10.0, (1, 63): 10.0, (11, 31): 10.0}.items():
        point = cloud[at[(row, col)]]
        np.testing.assert_allclose([point["x"], point["y"], point["z"]],
                                   [(col - cx) / fx * z, (row - cy) / fy * z, z], rtol=1e-6)
    np.testing.assert_array_equal(unpack_rgb(cloud["rgb"][at[(5, 40)]]), [200, 100, 50])
    assert (0, 3) not in at


def test_organised_cloud_keeps_grid_and_marks_nans():
    points = np.random.default_rng(1).normal(size=(4, 6, 3)).astype(np.float32)
    points[2, 3] = np.nan
    msg = points_to_pointcloud2(points)
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (4, 6, 12, 72)
    assert not msg.is_dense
    cloud = pointcloud2_to_array(msg)
    assert cloud.shape == (24,)
    np.testing.assert_array_equal(cloud["y"].reshape(4, 6), points[..., 1])
    dense = pointcloud2_to_array(msg, field_names=["x", "z"], skip_nans=True)
    assert dense.dtype.names == ("x", "z") and dense.shape == (23,)


def test_cloud_reader_honours_offsets_padding_and_big_endian():
    """A foreign cloud (intensity first, 4 pad bytes per point, padded rows, big-endian) reads right."""
    dtype = np.dtype({"names": ["intensity", "x", "y", "z"], "formats": [">u2", ">f4", ">f4", ">f4"],
                      "offsets": [0, 4, 8, 12], "itemsize": 20})
    records = np.zeros((2, 3), dtype=dtype)
    records["x"] = np.arange(6).reshape(2, 3)
    records["intensity"] = [[7, 8, 9], [10, 11, 12]]
    rows = np.pad(records.view(np.uint8).reshape(2, 60), ((0, 0), (0, 4)))
    fields = [PointField(name="intensity", offset=0, datatype=PointField.UINT16, count=1)] + [
        PointField(name=axis, offset=offset, datatype=PointField.FLOAT32, count=1)
        for axis, offset in (("x", 4), ("y", 8), ("z", 12))]
    msg = PointCloud2(height=2, width=3, fields=fields, is_bigendian=True, point_step=20, row_step=64)
    msg.data = rows.tobytes()
    cloud = pointcloud2_to_array(msg)
    np.testing.assert_array_equal(cloud["x"], np.arange(6))
    np.testing.assert_array_equal(cloud["intensity"], [7, 8, 9, 10, 11, 12])
    assert all(cloud.dtype[name].isnative for name in cloud.dtype.names)
    with pytest.raises(ValueError, match="no field"):
        pointcloud2_to_array(msg, field_names=["rgb"])


def test_colorize_depth_near_is_brighter_and_invalid_is_black():
    depth = np.array([[1.0, 5.0, 40.0, np.nan]], dtype=np.float32)
    colored = colorize_depth(depth, min_depth=1.0, max_depth=80.0)
    assert colored.shape == (1, 4, 3) and colored.dtype == np.uint8
    brightness = colored.astype(int).sum(axis=-1)[0]
    assert brightness[0] > brightness[1] > brightness[2]
    np.testing.assert_array_equal(colored[0, 3], [0, 0, 0])


def test_camera_info_round_trip_and_unset_intrinsics():
    info = _over_the_wire(make_camera_info(CAMERA_MATRIX, 64, 24, Header(frame_id="cam")))
    assert (info.width, info.height, info.header.frame_id) == (64, 24, "cam")
    np.testing.assert_array_equal(camera_info_matrix(info), CAMERA_MATRIX)
    np.testing.assert_array_equal(np.reshape(info.p, (3, 4))[:, :3], CAMERA_MATRIX)
    with pytest.raises(ValueError, match="no usable intrinsics"):
        camera_info_matrix(CameraInfo(width=64, height=24))



@pytest.mark.parametrize(("entry", "value", "message"), [
    ((0, 0), np.inf, "fx and fy must be finite and > 0"),
    ((1, 1), np.inf, "fx and fy must be finite and > 0"),
    ((1, 1), -90.0, "fx and fy must be finite and > 0"),
    ((0, 2), np.nan, "cx and cy must be finite"),
    ((1, 2), np.inf, "cx and cy must be finite"),
    ((0, 0), 1e-30, r"fx=1e-30 px is implausible for a 64x24 image \(expected 3.2..64000 px"),
    ((1, 1), 1e9, r"fy=1e\+09 px is implausible for a 64x24 image"),
])
def test_camera_info_with_impossible_intrinsics_is_refused_naming_the_problem(entry, value, message):
    matrix = CAMERA_MATRIX.copy()
    matrix[entry] = value
    with pytest.raises(ValueError, match=rf"camera_info has no usable intrinsics \([PK]: fx=.*\): {message}"):
        camera_info_matrix(_over_the_wire(make_camera_info(matrix, 64, 24)))


def test_camera_info_intrinsics_come_from_p_when_it_is_set_else_k():
    """Rectified images (what the node runs on) have P's intrinsics; K is the raw camera's (issue 27, item 4).
    KITTI's colour camera 2: K fx = 959.8 px, P_rect fx = 721.5 px."""
    raw = np.array([[959.8, 0.0, 696.0], [0.0, 956.9, 224.2], [0.0, 0.0, 1.0]])
    rectified = np.array([[721.5, 0.0, 609.6], [0.0, 721.5, 172.9], [0.0, 0.0, 1.0]])
    info = make_camera_info(raw, 1242, 375)
    info.p = np.hstack([rectified, [[44.9], [0.2], [0.003]]]).ravel()  # P of camera 2 has a baseline column
    np.testing.assert_array_equal(camera_info_matrix(_over_the_wire(info)), rectified)
    info.p = np.zeros(12)  # P unset (some drivers of undistorted cameras): K
    np.testing.assert_array_equal(camera_info_matrix(_over_the_wire(info)), raw)
    info.p = np.hstack([np.diag([-1.0, 1.0, 1.0]), np.zeros((3, 1))]).ravel()  # P[0,0] <= 0: not set, K
    np.testing.assert_array_equal(camera_info_matrix(info), raw)
    info.p = np.hstack([rectified * [[1.0], [np.inf], [1.0]], np.zeros((3, 1))]).ravel()  # P set but unusable
    with pytest.raises(ValueError, match=r"no usable intrinsics \(P: fx=721.5, fy=inf"):
        camera_info_matrix(info)


def test_camera_info_without_an_image_size_is_refused():
    with pytest.raises(ValueError, match=r"its image size is not set \(0x24\)"):
        camera_info_matrix(make_camera_info(CAMERA_MATRIX, 0, 24))


def test_camera_image_to_numpy_names_what_the_node_takes():
    for encoding in ("mono16", "16UC1", "32FC1", "bayer_rggb8", "yuv422"):
        msg = numpy_to_image(_random_image(encoding), encoding) if encoding in IMAGE_ENCODINGS else Image(
            encoding=encoding, width=2, height=2, step=4, data=bytes(8))
        with pytest.raises(ImageConversionError) as raised:
            camera_image_to_numpy(msg)
        text = str(raised.value)
        assert f"unsupported image encoding {encoding!r}; the depth node takes camera images in rgb8, bgr8, rgba8, " \
               "bgra8, mono8" in text
        assert "mono16" not in text.replace(repr(encoding), "") and "32FC1" not in text.replace(repr(encoding), "")
    for encoding in CAMERA_ENCODINGS:
        image = _random_image(encoding)
        np.testing.assert_array_equal(camera_image_to_numpy(numpy_to_image(image, encoding)), image)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "mono8"])
def test_png_compressed_image_round_trip_is_lossless_in_rgb_order(encoding):
    image = _random_image(encoding, height=20, width=30)
    msg = _over_the_wire(numpy_to_compressed_image(image, encoding, "png", header=Header(frame_id="cam")))
    decoded, decoded_encoding = compressed_image_to_numpy(msg)
    expected = {"rgb8": lambda: image, "bgr8": lambda: image[..., ::-1], "rgba8": lambda: image[..., :3],
                "mono8": lambda: image}[encoding]()
    assert decoded_encoding == ("mono8" if encoding == "mono8" else "rgb8")
    assert msg.format == f"{encoding}; png compressed {'mono8' if encoding == 'mono8' else 'bgr8'}"
    np.testing.assert_array_equal(decoded, expected)


def test_jpeg_compressed_image_is_close_to_the_original():
    rows, cols = np.mgrid[0:60, 0:80]
    image = np.stack([rows * 4, cols * 3, (rows + cols) * 2], axis=-1).astype(np.uint8)  # smooth: JPEG-friendly
    msg = numpy_to_compressed_image(image, "rgb8", "jpeg", quality=95)
    assert msg.format == "rgb8; jpeg compressed bgr8" and len(msg.data) < image.nbytes
    decoded, encoding = compressed_image_to_numpy(msg)
    assert encoding == "rgb8" and decoded.shape == image.shape
    assert np.abs(decoded.astype(int) - image).mean() < 2.0


@pytest.mark.parametrize(("data", "image_format", "message"), [
    (b"", "jpeg", r"empty CompressedImage \(format 'jpeg', 0 bytes\)"),
    (b"\xff\xd8 not really a jpeg" * 4, "jpeg", r"cannot decode the CompressedImage \(format 'jpeg', 80 bytes\): JPEG "
     "header damaged"),
    (b"GIF89a" + bytes(20), "gif", r"\(format 'gif', 26 bytes\): neither a JPEG nor a PNG image"),
    (b"\x00" * 10, "16UC1; compressedDepth png", "is a compressedDepth image, not a camera image"),
])
def test_undecodable_compressed_image_is_a_clear_error(data, image_format, message):
    with pytest.raises(ImageConversionError, match=message):
        compressed_image_to_numpy(CompressedImage(format=image_format, data=data))


def test_truncated_jpeg_is_refused():
    image = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    msg = numpy_to_compressed_image(image, "rgb8")
    msg.data = bytes(msg.data)[: len(msg.data) // 2]
    with pytest.raises(ImageConversionError, match="damaged JPEG .*Premature end of JPEG file"):
        compressed_image_to_numpy(msg)


def test_sixteen_bit_png_is_refused():
    import cv2

    ok, encoded = cv2.imencode(".png", np.full((4, 6), 40000, np.uint16))
    assert ok
    with pytest.raises(ImageConversionError, match="PNG of 16 bits per sample; the depth node takes 8-bit"):
        compressed_image_to_numpy(CompressedImage(format="mono16; png compressed mono16", data=encoded.tobytes()))
