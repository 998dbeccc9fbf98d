"""The depth node's output messages, built from one estimator result without a running ROS node.

`OutputBuilder.build(result, frame, intrinsics, header, wanted)` returns every message of a frame by
its topic (relative names, as the node publishes them) with the seconds each took to build:

- `depth`: sensor_msgs/Image 32FC1, metres, NaN invalid (REP 118);
- `depth/camera_info`: the intrinsics of the published depth image (the input camera_info re-stamped,
  or the fallback intrinsics as a plumb_bob CameraInfo);
- `disparity`: stereo_msgs/DisparityImage in pixels of the published image, invalid pixels -1;
- `points`: sensor_msgs/PointCloud2 x, y, z + packed rgb in the camera optical frame, organised (one point
  per cloud_stride-th pixel, as depth_image_proc), NaN where the depth is out of the cloud's range or the
  confidence below `cloud_min_confidence`;
- `depth/colored`: rgb8 colour map for humans (`siam_depth_core.visualize`);
- `depth/confidence`: sensor_msgs/Image 32FC1 in [0, 1], the agreement of the Siamese pass's two
  estimates of each pixel's disparity (1 = identical; absent when the model has no second estimate).

`depth` and `depth/camera_info` are always built; the others only when named in `wanted` (the node
passes the enabled outputs that have subscribers). A frame's messages are all built before any is
published, so a frame is published whole or not at all.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, RegionOfInterest
from std_msgs.msg import Header
from stereo_msgs.msg import DisparityImage

from siam_depth_core.geometry import ImageSize, pixel_rays
from siam_depth_core.runtime.inference import DepthEstimator, DepthResult
from siam_depth_core.visualize import FAR_DEPTH_M, colorize_depth
from siam_depth_ros.camera_info import Intrinsics
from siam_depth_ros.conversions import (
    make_camera_info,
    numpy_to_image,
    pointcloud2_from_block,
    rgb_view,
    write_packed_rgb,
)

DEPTH = "depth"
DEPTH_INFO = "depth/camera_info"
DISPARITY = "disparity"
POINTS = "points"
COLORED = "depth/colored"
CONFIDENCE = "depth/confidence"
#: Every output topic, in publication order.
OUTPUT_TOPICS = (DEPTH, DEPTH_INFO, DISPARITY, POINTS, COLORED, CONFIDENCE)
#: Outputs built only when wanted.
OPTIONAL_OUTPUTS = (DISPARITY, POINTS, COLORED, CONFIDENCE)
#: Message type of each output topic.
OUTPUT_TYPES = {DEPTH: Image, DEPTH_INFO: CameraInfo, DISPARITY: DisparityImage, POINTS: PointCloud2, COLORED: Image,
                CONFIDENCE: Image}
#: The parameter that switches each optional output on or off.
OUTPUT_SWITCHES = {DISPARITY: "publish_disparity", POINTS: "publish_points", COLORED: "publish_colored",
                   CONFIDENCE: "publish_confidence"}


@dataclass(frozen=True)
class InputFrame:
    """A decoded camera frame: (H,W,C) or (H,W) uint8 pixels, its sensor_msgs encoding, its header."""

    image: np.ndarray
    encoding: str
    header: Header

    @property
    def size(self) -> ImageSize:
        return ImageSize(int(self.image.shape[0]), int(self.image.shape[1]))


@dataclass(frozen=True)
class OutputSettings:
    """How the outputs are built. min_depth/max_depth: the valid depth range, metres (bounds of the
    disparity image); cloud_stride: every n-th pixel; cloud_min_depth/cloud_max_depth: metres kept in the
    cloud; colored_min_depth/colored_max_depth: the near (bright) and far (dark) ends of the colour map, metres
    (`siam_depth_core.visualize`'s log-depth convention); cloud_min_confidence: pixels whose confidence is below it
    (in [0, 1]; 0 keeps all) are left out of the cloud (ignored for a model without confidence)."""

    min_depth: float
    max_depth: float
    cloud_stride: int
    cloud_min_depth: float
    cloud_max_depth: float
    colored_min_depth: float
    cloud_min_confidence: float = 0.0
    colored_max_depth: float = FAR_DEPTH_M

    def __post_init__(self) -> None:
        if not 0.0 <= self.cloud_min_confidence <= 1.0:
            raise ValueError(f"cloud_min_confidence must be in [0, 1], got {self.cloud_min_confidence}")
        if not 0.0 < self.colored_min_depth < self.colored_max_depth:
            raise ValueError(f"need 0 < colored_min_depth < colored_max_depth, got {self.colored_min_depth} and "
                             f"{self.colored_max_depth}")


@dataclass
class FrameOutputs:
    """A frame's messages by output topic and the seconds spent building each ("build_<name>")."""

    messages: dict[str, Any]
    timings: dict[str, float]


class OutputBuilder:
    """Turns a DepthResult, its input frame, the intrinsics and the output header into messages."""

    def __init__(self, settings: OutputSettings) -> None:
        self.settings = settings

    def build(self, result: DepthResult, frame: InputFrame, intrinsics: Intrinsics, header: Header,
              estimator: DepthEstimator, wanted: Collection[str] = OPTIONAL_OUTPUTS) -> FrameOutputs:
        """Every wanted output of one frame; `estimator` gives the baseline and the network's size and range."""
        builders: dict[str, Callable[[], Any]] = {
            DEPTH: lambda: numpy_to_image(result.depth_m, "32FC1", header),
            DEPTH_INFO: lambda: self.depth_camera_info(intrinsics, frame.size, header),
            DISPARITY: lambda: self.disparity(result, intrinsics, header, estimator),
            POINTS: lambda: self.points(result, frame, intrinsics, header),
            COLORED: lambda: numpy_to_image(colorize_depth(result.depth_m, self.settings.colored_min_depth,
                                                           self.settings.colored_max_depth), "rgb8", header),
            CONFIDENCE: lambda: numpy_to_image(result.confidence, "32FC1", header),
        }
        outputs = FrameOutputs({}, {})
        for topic, build in builders.items():
            if topic in OPTIONAL_OUTPUTS and topic not in wanted:
                continue
            if topic == CONFIDENCE and result.confidence is None:
                continue  # a single pass: no second estimate, nothing to publish
            start = time.perf_counter()
            outputs.messages[topic] = build()
            outputs.timings[f"build_{topic.replace('/', '_')}"] = time.perf_counter() - start
        return outputs

    @staticmethod
    def depth_camera_info(intrinsics: Intrinsics, size: ImageSize, header: Header) -> CameraInfo:
        """Intrinsics of the published depth image (same size and pixels as the input image)."""
        info = intrinsics.info
        if info is None:
            return make_camera_info(intrinsics.camera_matrix, size.width, size.height, header)
        return CameraInfo(header=header, height=info.height, width=info.width, distortion_model=info.distortion_model,
                          d=info.d, k=info.k, r=info.r, p=info.p, binning_x=info.binning_x,
                          binning_y=info.binning_y, roi=info.roi)

    def disparity(self, result: DepthResult, intrinsics: Intrinsics, header: Header,
                   estimator: DepthEstimator) -> DisparityImage:
        """DisparityImage in pixels of the published image; invalid pixels (NaN depth) are -1 (< min_disparity).

        f*T/max_depth and f*T/min_depth (capped at the network's max disparity) bound the valid range;
        delta_d is the disparity of one network-input pixel at the camera resolution.
        """
        height, width = result.disparity.shape
        focal, baseline = intrinsics.fx_px, float(estimator.baseline_m)
        disparity_px = result.disparity * np.float32(width)
        disparity_px[~np.isfinite(result.depth_m)] = -1.0
        return DisparityImage(
            header=header, image=numpy_to_image(disparity_px.astype(np.float32), "32FC1", header), f=focal,
            t=baseline, valid_window=RegionOfInterest(x_offset=0, y_offset=0, height=height, width=width),
            min_disparity=focal * baseline / self.settings.max_depth,
            max_disparity=min(focal * baseline / self.settings.min_depth, estimator.meta.max_disp * width),
            delta_d=width / estimator.input_size.width)

    def points(self, result: DepthResult, frame: InputFrame, intrinsics: Intrinsics, header: Header) -> Any:
        """Organised PointCloud2 (depth_image_proc's convention) of every cloud_stride-th pixel, coloured: x, y,
        z NaN where the depth is outside [cloud_min_depth, cloud_max_depth] or the confidence below
        cloud_min_confidence. Written in one pass over the strided grid: the rays (u - cx) / fx and
        (v - cy) / fy of the grid's columns and rows scale the depth, no per-point gather."""
        settings = self.settings
        stride = settings.cloud_stride
        depth = result.depth_m[::stride, ::stride]
        with np.errstate(invalid="ignore"):
            keep = (depth >= settings.cloud_min_depth) & (depth <= settings.cloud_max_depth)
            if settings.cloud_min_confidence > 0 and result.confidence is not None:
                keep &= result.confidence[::stride, ::stride] >= settings.cloud_min_confidence
        z = np.where(keep, depth, np.float32(np.nan))
        x_per_z, y_per_z = pixel_rays(intrinsics.camera_matrix, result.depth_m.shape, stride)
        block = np.empty((*z.shape, 4), dtype=np.float32)
        np.multiply(x_per_z[None, :], z, out=block[..., 0])
        np.multiply(y_per_z[:, None], z, out=block[..., 1])
        block[..., 2] = z
        write_packed_rgb(block[..., 3:], rgb_view(frame.image, frame.encoding)[::stride, ::stride])
        return pointcloud2_from_block(block, header)
