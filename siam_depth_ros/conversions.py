"""sensor_msgs <-> numpy without cv_bridge or sensor_msgs_py, with their semantics and numpy-bytes speed.

Images: `image_to_numpy` / `numpy_to_image` follow cv_bridge (`imgmsg_to_cv2` / `cv2_to_imgmsg`):
(H,W) for one channel, (H,W,C) otherwise, rows padded via `step`, `is_bigendian` honoured (the
returned array is always in native byte order). `camera_image_to_numpy` takes only what the depth node
can run on (CAMERA_ENCODINGS) and says so. Compressed images follow image_transport's `compressed`
plugin: `decode_compressed_image` / `compressed_image_to_numpy` decode a JPEG or PNG sensor_msgs/CompressedImage
(`image_decoding`: size checked from the header first, damaged data refused, nothing printed on stderr),
`numpy_to_compressed_image` encodes one with OpenCV (format strings such as `rgb8; jpeg compressed bgr8`).
`camera_info_matrix` accepts only intrinsics a camera can have. Point clouds follow sensor_msgs_py `point_cloud2`:
x, y, z FLOAT32 plus an optional `rgb` FLOAT32 whose bytes are 0x00RRGGBB as a little-endian uint32
(the RViz / PCL packing); `pointcloud2_to_array` views any cloud as a numpy structured array.
No function loops over pixels or points in Python.
"""
from __future__ import annotations

import array
import sys

import cv2
import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from siam_depth_core.runtime.inference import SUPPORTED_ENCODINGS
from siam_depth_ros.image_decoding import DecodedImage, ImageConversionError, decode_compressed

__all__ = ["CAMERA_ENCODINGS", "IMAGE_ENCODINGS", "ImageConversionError", "camera_image_to_numpy",
           "camera_info_matrix", "compressed_image_to_numpy", "decode_compressed_image", "make_camera_info",
           "numpy_to_compressed_image",
           "numpy_to_image", "image_to_numpy", "pack_rgb", "pointcloud2_to_array", "points_to_pointcloud2",
           "rgb_view", "unpack_rgb"]

#: sensor_msgs/Image encodings we convert: name -> (numpy dtype, channels).
IMAGE_ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}

#: Encodings of camera images the depth node runs on (colour or grayscale, 8 bits per channel).
CAMERA_ENCODINGS = tuple(SUPPORTED_ENCODINGS)
#: Compressed formats the node decodes (image_transport's `compressed` plugin: JPEG or PNG).
COMPRESSED_FORMATS = ("jpeg", "png")
#: Plausible focal lengths, pixels per pixel of the larger image side: below 0.05 the horizontal field of
#: view would exceed ~170 degrees (no pinhole camera); above 1000 it would be below ~0.06 degrees.
FOCAL_PER_SIZE_RANGE = (0.05, 1000.0)

_NATIVE_BIG_ENDIAN = sys.byteorder == "big"

#: PointField datatype constants -> numpy dtypes (sensor_msgs_py's table).
_POINT_FIELD_DTYPES: dict[int, np.dtype] = {
    PointField.INT8: np.dtype(np.int8),
    PointField.UINT8: np.dtype(np.uint8),
    PointField.INT16: np.dtype(np.int16),
    PointField.UINT16: np.dtype(np.uint16),
    PointField.INT32: np.dtype(np.int32),
    PointField.UINT32: np.dtype(np.uint32),
    PointField.FLOAT32: np.dtype(np.float32),
    PointField.FLOAT64: np.dtype(np.float64),
}


def image_to_numpy(msg: Image) -> np.ndarray:
    """sensor_msgs/Image -> (H,W) or (H,W,C) array in native byte order (cv_bridge `imgmsg_to_cv2`).

    Row padding (`step` > W * C * itemsize) is skipped without copying; the result is a view of the
    message buffer unless the byte order had to be swapped. Raises ImageConversionError for an
    unsupported encoding, a zero-size image, a `step` shorter than a row, or too little data.
    """
    if msg.encoding not in IMAGE_ENCODINGS:
        raise ImageConversionError(f"unsupported image encoding {msg.encoding!r}; "
                                   f"supported: {', '.join(IMAGE_ENCODINGS)}")
    dtype, channels = IMAGE_ENCODINGS[msg.encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ImageConversionError(f"empty {msg.encoding} image ({width}x{height} pixels)")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(f"{msg.encoding} image step {step} is shorter than one row of {width} pixels "
                                   f"({row_bytes} bytes)")
    buffer = memoryview(msg.data).cast("B")
    if buffer.nbytes < height * step:
        raise ImageConversionError(f"{msg.encoding} image {width}x{height} with step {step} needs "
                                   f"{height * step} bytes of data, got {buffer.nbytes}")
    wire_dtype = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    shape = (height, width, channels)
    strides = (step, channels * dtype.itemsize, dtype.itemsize)
    array = np.ndarray(shape, dtype=wire_dtype, buffer=buffer, strides=strides)
    if bool(msg.is_bigendian) != _NATIVE_BIG_ENDIAN and dtype.itemsize > 1:
        array = array.astype(dtype)
    else:
        array = array.view(dtype)
    return array[:, :, 0] if channels == 1 else array


def camera_image_to_numpy(msg: Image) -> np.ndarray:
    """`image_to_numpy` for a camera image the depth node can run on: rgb8, bgr8, rgba8, bgra8 or mono8.

    Raises ImageConversionError naming the encoding and what the node takes otherwise (depth-like
    encodings such as 16UC1 or 32FC1 are not camera images; Bayer or YUV images need debayering /
    conversion first, e.g. by image_proc).
    """
    if msg.encoding not in CAMERA_ENCODINGS:
        raise ImageConversionError(
            f"unsupported image encoding {msg.encoding!r}; the depth node takes camera images in "
            f"{', '.join(CAMERA_ENCODINGS)} (convert Bayer/YUV images first, e.g. with image_proc; depth or "
            "16-bit images are not camera input)")
    return image_to_numpy(msg)


def decode_compressed_image(msg: CompressedImage, max_pixels: int | None = None) -> DecodedImage:
    """sensor_msgs/CompressedImage (JPEG or PNG, image_transport's `compressed` format) -> DecodedImage: (H,W,3|4)
    or (H,W) uint8 pixels in rgb8, rgba8 or mono8 and the size the frame declares.

    max_pixels (None: no limit): a frame declaring more than `image_decoding.DECLARED_PIXELS_FACTOR` times as many
    pixels is refused before decoding; a JPEG over it is decoded at reduced scale (then smaller than declared).
    Raises ImageConversionError for an empty message, a format other than JPEG/PNG (e.g. the `compressedDepth`
    transport's), damaged data (libjpeg's warnings included), a frame over the limit, or a 16-bit image.
    """
    text = msg.format.strip()
    if "compresseddepth" in text.lower().replace(" ", ""):
        raise ImageConversionError(f"CompressedImage format {text!r} is a compressedDepth image, not a camera image")
    size = len(msg.data)
    if size == 0:
        raise ImageConversionError(f"empty CompressedImage (format {text!r}, 0 bytes)")
    try:
        return decode_compressed(memoryview(msg.data).cast("B"), max_pixels)
    except ImageConversionError as error:
        raise ImageConversionError(f"cannot decode the CompressedImage (format {text!r}, {size} bytes): {error}"
                                   ) from None


def compressed_image_to_numpy(msg: CompressedImage, max_pixels: int | None = None) -> tuple[np.ndarray, str]:
    """`decode_compressed_image`'s pixels and encoding (rgb8, rgba8 or mono8)."""
    decoded = decode_compressed_image(msg, max_pixels)
    return decoded.image, decoded.encoding


def numpy_to_compressed_image(array: np.ndarray, encoding: str, image_format: str = "jpeg", quality: int = 95,
                              header: Header | None = None) -> CompressedImage:
    """(H,W,3/4) or (H,W) uint8 image in `encoding` (rgb8, bgr8, rgba8, bgra8, mono8) -> CompressedImage as
    image_transport's `compressed` plugin writes it: JPEG (`quality` 1..100; colour as BGR, alpha dropped) or
    PNG (lossless), format e.g. `rgb8; jpeg compressed bgr8`."""
    if image_format not in COMPRESSED_FORMATS:
        raise ValueError(f"image_format must be one of {', '.join(COMPRESSED_FORMATS)}, got {image_format!r}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    array = np.asarray(array)
    if encoding == "mono8":
        source, compressed_as = array, "mono8"
    else:
        to_bgr = {"rgb8": cv2.COLOR_RGB2BGR, "rgba8": cv2.COLOR_RGBA2BGR, "bgra8": cv2.COLOR_BGRA2BGR}
        if encoding not in (*to_bgr, "bgr8"):
            raise ImageConversionError(f"cannot compress a {encoding!r} image; expected one of {', '.join(CAMERA_ENCODINGS)}")
        source = cv2.cvtColor(array, to_bgr[encoding]) if encoding in to_bgr else array
        compressed_as = "bgr8"
    parameters = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if image_format == "jpeg" else []
    ok, encoded = cv2.imencode(f".{'jpg' if image_format == 'jpeg' else 'png'}", source, parameters)
    if not ok:
        raise ImageConversionError(f"{image_format} encoding of a {array.shape} {encoding} image failed")
    msg = CompressedImage(format=f"{encoding}; {image_format} compressed {compressed_as}")
    if header is not None:
        msg.header = header
    msg.data = byte_array(encoded)
    return msg


def byte_array(values: np.ndarray) -> array.array:
    """The bytes of a numpy array as the array.array('B') that a message's uint8[] field holds: one copy, which the
    field's setter keeps as it is (a bytes value is copied once more, and with ROS_PYTHON_CHECK_FIELDS=1 checked
    element by element in Python, seconds for an image)."""
    data = array.array("B")
    data.frombytes(np.ascontiguousarray(values).view(np.uint8).reshape(-1))
    return data


def numpy_to_image(array: np.ndarray, encoding: str, header: Header | None = None, step: int | None = None,
                   is_bigendian: bool | None = None) -> Image:
    """(H,W) or (H,W,C) array -> sensor_msgs/Image (cv_bridge `cv2_to_imgmsg`).

    The dtype and channel count must match `encoding` (e.g. uint8 (H,W,3) for rgb8, float32 (H,W)
    for 32FC1). `step` pads each row with zero bytes (default: unpadded); `is_bigendian` chooses the
    byte order of the data (default: this machine's).
    """
    if encoding not in IMAGE_ENCODINGS:
        raise ImageConversionError(f"unsupported image encoding {encoding!r}; supported: {', '.join(IMAGE_ENCODINGS)}")
    dtype, channels = IMAGE_ENCODINGS[encoding]
    array = np.asarray(array)
    if array.ndim == 2 and channels == 1:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] != channels:
        raise ImageConversionError(f"{encoding} needs a {'(H,W)' if channels == 1 else f'(H,W,{channels})'} array, "
                                   f"got shape {array.shape}")
    if array.dtype != dtype:
        raise ImageConversionError(f"{encoding} needs a {dtype} array, got {array.dtype}")
    height, width = array.shape[:2]
    big_endian = _NATIVE_BIG_ENDIAN if is_bigendian is None else bool(is_bigendian)
    rows = np.ascontiguousarray(array, dtype=dtype.newbyteorder(">" if big_endian else "<"))
    row_bytes = width * channels * dtype.itemsize
    step = row_bytes if step is None else int(step)
    if step < row_bytes:
        raise ImageConversionError(f"step {step} is shorter than one row of {width} {encoding} pixels ({row_bytes} bytes)")
    rows = rows.view(np.uint8).reshape(height, row_bytes)
    if step > row_bytes:
        rows = np.pad(rows, ((0, 0), (0, step - row_bytes)))
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=int(big_endian), step=step)
    if header is not None:
        msg.header = header
    msg.data = byte_array(rows)
    return msg


def rgb_view(image: np.ndarray, encoding: str) -> np.ndarray:
    """(H,W,3) uint8 RGB view (no copy) of an rgb8/bgr8/rgba8/bgra8 (H,W,C) or mono8 (H,W) image."""
    views = {"rgb8": lambda: image, "rgba8": lambda: image[..., :3], "bgr8": lambda: image[..., ::-1],
             "bgra8": lambda: image[..., 2::-1],
             "mono8": lambda: np.broadcast_to(image[..., None], (*image.shape[:2], 3))}
    if encoding not in views:
        raise ImageConversionError(f"{encoding!r} is not a colour or mono8 image; expected one of {', '.join(views)}")
    return views[encoding]()


def camera_info_matrix(info: CameraInfo) -> np.ndarray:
    """The (3,3) float64 intrinsics of the rectified image a CameraInfo describes, in pixels: the left 3x3 of the
    projection matrix P when it is set (P[0,0] > 0), else K.

    The node runs on rectified images (image_proc's `image_rect` / `image_rect_color`), whose intrinsics are P's,
    as image_geometry's PinholeCameraModel and depth_image_proc read them; K is the raw (distorted) camera's and
    differs (KITTI's colour camera: K fx = 959.8 px, P_rect fx = 721.5 px). A CameraInfo without P (all zeros, as
    some drivers of already undistorted cameras send) falls back to K.

    Raises ValueError naming the problem unless fx and fy are finite and > 0, cx and cy finite, the
    image size is set, the principal point lies within [-W, 2W] x [-H, 2H] (a principal point further out
    puts the back-projected points kilometres off), and fx, fy are plausible for that size
    (FOCAL_PER_SIZE_RANGE times the larger side: a field of view between about 0.06 and 170 degrees).
    """
    projection = np.asarray(info.p, dtype=np.float64).reshape(3, 4)
    from_p = bool(projection[0, 0] > 0)
    camera_matrix = projection[:, :3].copy() if from_p else np.asarray(info.k, dtype=np.float64).reshape(3, 3)
    fx, fy, cx, cy = camera_matrix[0, 0], camera_matrix[1, 1], camera_matrix[0, 2], camera_matrix[1, 2]
    values = f"{'P' if from_p else 'K'}: fx={fx}, fy={fy}, cx={cx}, cy={cy}"
    if not (np.isfinite(fx) and np.isfinite(fy) and fx > 0 and fy > 0):
        raise ValueError(f"camera_info has no usable intrinsics ({values}): fx and fy must be finite and > 0")
    if not (np.isfinite(cx) and np.isfinite(cy)):
        raise ValueError(f"camera_info has no usable intrinsics ({values}): cx and cy must be finite")
    if info.width == 0 or info.height == 0:
        raise ValueError(f"camera_info has no usable intrinsics ({values}): its image size is not set "
                         f"({info.width}x{info.height})")
    width, height = int(info.width), int(info.height)
    if not (-width <= cx <= 2 * width and -height <= cy <= 2 * height):
        raise ValueError(f"camera_info has no usable intrinsics ({values}): the principal point is far outside "
                         f"the {width}x{height} image (expected cx in [{-width}, {2 * width}], cy in "
                         f"[{-height}, {2 * height}])")
    side = max(width, height)
    low, high = (ratio * side for ratio in FOCAL_PER_SIZE_RANGE)
    for name, focal in (("fx", fx), ("fy", fy)):
        if not low <= focal <= high:
            raise ValueError(f"camera_info has no usable intrinsics ({values}): {name}={focal:g} px is implausible "
                             f"for a {info.width}x{info.height} image (expected {low:g}..{high:g} px, a field of "
                             "view between about 0.06 and 170 degrees)")
    return camera_matrix


def make_camera_info(camera_matrix: np.ndarray, width: int, height: int, header: Header | None = None
                     ) -> CameraInfo:
    """CameraInfo of an undistorted (rectified) image: K, P = [K|0], R = I, plumb_bob with zero D."""
    camera_matrix = np.asarray(camera_matrix, dtype=np.float64).reshape(3, 3)
    info = CameraInfo(width=int(width), height=int(height), distortion_model="plumb_bob")
    if header is not None:
        info.header = header
    info.d = [0.0] * 5
    info.k = camera_matrix.ravel()
    info.r = np.eye(3).ravel()
    info.p = np.hstack([camera_matrix, np.zeros((3, 1))]).ravel()
    return info


def pack_rgb(colors: np.ndarray) -> np.ndarray:
    """(...,3) uint8 RGB -> (...) float32 whose bits are the uint32 0x00RRGGBB (RViz `rgb` field)."""
    colors = np.asarray(colors)
    if colors.shape[-1:] != (3,) or colors.dtype != np.uint8:
        raise ValueError(f"colours must be (...,3) uint8 RGB, got {colors.dtype} {colors.shape}")
    colors = colors.astype(np.uint32)
    packed = (colors[..., 0] << 16) | (colors[..., 1] << 8) | colors[..., 2]
    return packed.view(np.float32)


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """Inverse of `pack_rgb`: (...) float32 packed rgb -> (...,3) uint8 RGB."""
    bits = np.asarray(packed, dtype=np.float32).view(np.uint32)
    return np.stack([(bits >> 16) & 0xFF, (bits >> 8) & 0xFF, bits & 0xFF], axis=-1).astype(np.uint8)


def points_to_pointcloud2(points: np.ndarray, colors: np.ndarray | None = None, header: Header | None = None
                          ) -> PointCloud2:
    """(N,3) or organised (H,W,3) points in metres (+ matching (...,3) uint8 RGB) -> PointCloud2.

    Fields x, y, z FLOAT32 at offsets 0, 4, 8 and, with colours, rgb FLOAT32 (packed) at 12; point_step
    12 or 16. An (N,3) input gives an unorganised cloud (height 1, width N); is_dense is False when a
    point is not finite.
    """
    points = np.asarray(points, dtype=np.float32)
    if points.ndim not in (2, 3) or points.shape[-1] != 3:
        raise ValueError(f"points must be (N,3) or (H,W,3), got shape {points.shape}")
    height, width = (1, points.shape[0]) if points.ndim == 2 else points.shape[:2]
    if colors is not None and np.shape(colors) != points.shape:
        raise ValueError(f"colours {np.shape(colors)} must match points {points.shape}")
    block = np.empty((height, width, 3 if colors is None else 4), dtype=np.float32)
    block[..., :3] = points.reshape(height, width, 3)
    if colors is not None:
        write_packed_rgb(block[..., 3:], np.asarray(colors).reshape(height, width, 3))
    return pointcloud2_from_block(block, header)


def write_packed_rgb(target: np.ndarray, colors: np.ndarray) -> None:
    """Write (...,3) uint8 RGB as `pack_rgb` floats into the (...,1) float32 slice `target` of a point block."""
    if _NATIVE_BIG_ENDIAN:
        target[..., 0] = pack_rgb(colors)
        return
    rgb_bytes = target.view(np.uint8)  # 0x00RRGGBB as a little-endian uint32: the bytes B, G, R, 0
    rgb_bytes[..., :3] = colors[..., ::-1]
    rgb_bytes[..., 3] = 0


def pointcloud2_from_block(block: np.ndarray, header: Header | None = None) -> PointCloud2:
    """PointCloud2 of an (H,W,3) x, y, z or (H,W,4) x, y, z, packed rgb float32 block (native byte order):
    organised (height H, width W; H = 1 for an unorganised cloud), FLOAT32 fields at offsets 0, 4, 8 (12);
    is_dense is False when a coordinate is not finite (depth_image_proc's NaN for a pixel without depth)."""
    if block.ndim != 3 or block.shape[2] not in (3, 4) or block.dtype != np.float32:
        raise ValueError(f"a point block is (H,W,3|4) float32, got {block.dtype} {block.shape}")
    height, width, channels = block.shape
    names = ["x", "y", "z", "rgb"][:channels]
    fields = [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, name in enumerate(names)]
    msg = PointCloud2(height=height, width=width, fields=fields, is_bigendian=_NATIVE_BIG_ENDIAN,
                      point_step=4 * channels, row_step=4 * channels * width,
                      is_dense=bool(np.isfinite(block[..., :3]).all()))
    if header is not None:
        msg.header = header
    msg.data = byte_array(block)
    return msg


def pointcloud2_to_array(msg: PointCloud2, field_names: list[str] | None = None, skip_nans: bool = False
                         ) -> np.ndarray:
    """PointCloud2 -> (height*width,) structured array in native byte order (sensor_msgs_py `read_points`).

    Field offsets, point_step padding, row_step padding and is_bigendian are honoured. field_names
    selects fields (default all); skip_nans drops points whose selected fields hold a NaN.
    """
    formats, offsets, names = [], [], []
    for point_field in msg.fields:
        if point_field.datatype not in _POINT_FIELD_DTYPES:
            raise ValueError(f"point field {point_field.name!r} has unknown datatype {point_field.datatype}")
        base = _POINT_FIELD_DTYPES[point_field.datatype].newbyteorder(">" if msg.is_bigendian else "<")
        formats.append(base if point_field.count == 1 else (base, (point_field.count,)))
        offsets.append(point_field.offset)
        names.append(point_field.name)
    wire_dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": msg.point_step})
    height, width = int(msg.height), int(msg.width)
    row_bytes = width * msg.point_step
    buffer = np.frombuffer(memoryview(msg.data).cast("B"), dtype=np.uint8)
    if msg.row_step < row_bytes or buffer.size < (height - 1) * msg.row_step + row_bytes:
        raise ValueError(f"point cloud {width}x{height} with point_step {msg.point_step} and row_step "
                         f"{msg.row_step} needs {height * msg.row_step} bytes, got {buffer.size}")
    rows = buffer[:height * msg.row_step].reshape(height, msg.row_step)[:, :row_bytes]
    records = np.ascontiguousarray(rows).view(wire_dtype).reshape(-1)
    selected = field_names if field_names is not None else names
    missing = [name for name in selected if name not in names]
    if missing:
        raise ValueError(f"point cloud has no field(s) {missing}; it has {names}")
    native = np.dtype([(name, wire_dtype.fields[name][0].newbyteorder("=")) for name in selected])
    array = np.empty(records.shape, dtype=native)
    for name in selected:
        array[name] = records[name]
    if skip_nans:
        keep = np.ones(array.shape, dtype=bool)
        for name in selected:
            values = array[name]
            if values.dtype.kind == "f":
                per_point = int(np.prod(values.shape[1:]))  # not -1: an empty cloud must reshape too
                keep &= ~np.isnan(values.reshape(values.shape[0], per_point)).any(axis=1)
        array = array[keep]
    return array
