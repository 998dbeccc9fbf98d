"""The largest camera frame the depth node processes at its own resolution, and the downscaling of bigger ones.

The node publishes depth, disparity, confidence and the colour view at the input resolution (as
depth_image_proc does), so a 12-megapixel frame would give 48 MB depth images and clouds of millions of
points that no DDS transport here delivers in time. A frame of more than `max_image_pixels` pixels is
therefore shrunk (area interpolation, aspect ratio kept) to fit before it is processed; its outputs, and
`depth/camera_info`, describe the shrunk image. The network itself sees a few hundred pixels across either way.
A compressed frame is checked before it is decoded (`image_decoding`): one declaring more than 4 x
max_image_pixels is refused, a bigger JPEG is decoded at 1/2 scale by libjpeg (`rescaled_intrinsics` then gives
the intrinsics of the decoded image).
"""
from __future__ import annotations

import math

import cv2

from siam_depth_core.geometry import ImageSize, scale_intrinsics
from siam_depth_ros.camera_info import Intrinsics
from siam_depth_ros.conversions import make_camera_info
from siam_depth_ros.outputs import InputFrame

#: Default limit: a 4K UHD frame (3840 x 2160) is processed at its own size, anything bigger is shrunk.
DEFAULT_MAX_IMAGE_PIXELS = 3840 * 2160


def fitted_size(size: ImageSize, max_pixels: int) -> ImageSize:
    """The largest size of the same aspect ratio as `size` (within rounding) with at most `max_pixels` pixels;
    `size` itself when it fits."""
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    if size.height * size.width <= max_pixels:
        return size
    scale = math.sqrt(max_pixels / (size.height * size.width))
    return ImageSize(max(1, int(size.height * scale)), max(1, int(size.width * scale)))


def rescaled_intrinsics(intrinsics: Intrinsics, old: ImageSize, new: ImageSize) -> Intrinsics:
    """The intrinsics of an image of size `old` resized to `new` (K scaled about pixel centres, as cv2.INTER_AREA and
    libjpeg's DCT scaling resize; a camera_info becomes a plumb_bob CameraInfo of the new size with the same
    header)."""
    camera_matrix = scale_intrinsics(intrinsics.camera_matrix, new.width / old.width, new.height / old.height)
    info = None
    if intrinsics.info is not None:
        info = make_camera_info(camera_matrix, new.width, new.height, intrinsics.info.header)
    return Intrinsics(camera_matrix, info)


def downscale_frame(frame: InputFrame, intrinsics: Intrinsics, size: ImageSize) -> tuple[InputFrame, Intrinsics]:
    """`frame` shrunk to `size` (area interpolation) and its intrinsics for the shrunk image (`rescaled_intrinsics`)."""
    image = cv2.resize(frame.image, (size.width, size.height), interpolation=cv2.INTER_AREA)
    if frame.image.ndim == 3 and image.ndim == 2:  # cv2 drops a trailing channel axis of 1
        image = image[:, :, None]
    return (InputFrame(image, frame.encoding, frame.header),
            rescaled_intrinsics(intrinsics, frame.size, size))
