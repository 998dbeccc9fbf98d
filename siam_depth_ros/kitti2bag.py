"""Convert a KITTI raw drive into a rosbag2 (MCAP or sqlite3) that `ros2 bag play` and `siam-depth-play` replay.

Topics written (frames per REP 103/105, stamps from the KITTI timestamp files, bag time = header stamp):

- `/kitti/camera_color_{left,right}/image_raw`: sensor_msgs/Image rgb8, rectified KITTI camera 2 / 3; with
  `compressed=True` instead `/kitti/camera_color_{left,right}/image_raw/compressed`: sensor_msgs/CompressedImage
  JPEG (format `rgb8; jpeg compressed bgr8`, the topic and format image_transport's compressed plugin uses)
- `/kitti/camera_gray_{left,right}/image_raw` (option `with_gray`): mono8, rectified KITTI camera 0 / 1
  (JPEG `.../image_raw/compressed`, format `mono8; jpeg compressed mono8`, with `compressed=True`)
- `/kitti/<camera>/camera_info`: sensor_msgs/CameraInfo of the rectified images (plumb_bob with D = 0, R = I,
  K = P_rect_0x[:, :3]; the right camera of each pair has P[0,3] = -fx * baseline as ROS stereo does)
- `/kitti/velo/pointcloud`: sensor_msgs/PointCloud2 x, y, z, intensity float32 in `velo_link`
- `/kitti/oxts/gps/fix`: sensor_msgs/NavSatFix from the OXTS unit (`base_link`)
- `/kitti/oxts/imu`: sensor_msgs/Imu in `base_link` (REP 145): orientation of base_link in east-north-up from
  roll, pitch, yaw; angular velocity wx, wy, wz [rad/s] and linear acceleration ax, ay, az [m/s^2] in the unit's
  own axes (x forward, y left, z up; gravity included, so a standing car reads about +9.81 on z). The classic
  kitti2bag writes the level-frame values (wf/wl/wu, af/al/au) instead.
- `/tf`: tf2_msgs/TFMessage `world` -> `base_link` per OXTS record, the vehicle pose as KITTI's devkit and
  pykitti compute it: Mercator east/north [m] with the scale of the first written record, altitude [m], origin at
  the first written record's position; `world` axes are east, north, up (so the rotation equals the IMU's)
- `/tf_static`: tf2_msgs/TFMessage base_link -> velo_link -> camera optical frames, offered transient-local
  so that players latch it

Only the left-colour-camera frames present on disk (optionally limited by `frame_range`) are written; the other
sensors are written for those frames where their file exists, with a warning (log + `ConversionSummary.warnings`)
for a requested sensor whose folder is missing or that lacks some of the frames. MCAP bags are written with zstd
chunk compression by default. A conversion that fails (or is interrupted) removes the bag it had started, so
that it can be rerun with the same output path.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from siam_depth_core.data.calib import (
    StereoCalibration,
    load_stereo_calibration,
    read_calib_file,
    read_timestamps,
)
from siam_depth_core.data.kitti import KittiDrive, list_frames, load_image, load_velodyne_points
from siam_depth_core.interrupt import InterruptFlag

LOGGER = logging.getLogger(__name__)

#: Message definitions and CDR layout of ROS 2 Kilted (identical for these types back to Humble).
TYPESTORE = get_typestore(Stores.ROS2_KILTED)
#: rosbag2 metadata version written (8 is read by Jazzy and later).
BAG_VERSION = 8

BASE_FRAME = "base_link"  # the OXTS IMU/GPS unit: x forward, y left, z up
VELO_FRAME = "velo_link"
WORLD_FRAME = "world"  # east, north, up; origin at the first written OXTS position
VELO_TOPIC = "/kitti/velo/pointcloud"
GPS_TOPIC = "/kitti/oxts/gps/fix"
IMU_TOPIC = "/kitti/oxts/imu"
TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
POINTCLOUD_TYPE = "sensor_msgs/msg/PointCloud2"
NAVSATFIX_TYPE = "sensor_msgs/msg/NavSatFix"
IMU_TYPE = "sensor_msgs/msg/Imu"
TF_MESSAGE_TYPE = "tf2_msgs/msg/TFMessage"

STORAGE_PLUGINS = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
#: MCAP chunk compression choices (sqlite3 stores messages uncompressed).
CHUNK_COMPRESSIONS = ("zstd", "none")
#: image_transport's default JPEG quality.
DEFAULT_JPEG_QUALITY = 95
#: WGS84 equatorial radius used by KITTI's devkit for the Mercator projection, metres.
EARTH_RADIUS_M = 6378137.0

# Columns of a KITTI OXTS line (oxts/dataformat.txt).
_LAT, _LON, _ALT, _ROLL, _PITCH, _YAW = range(6)
_AX, _AY, _AZ = 11, 12, 13
_WX, _WY, _WZ = 17, 18, 19
_POS_ACCURACY = 23
OXTS_COLUMNS = 30


@dataclass(frozen=True)
class CameraStream:
    """One KITTI camera as a ROS camera: `kitti_camera` 0/1 (grayscale left/right) or 2/3 (colour left/right)."""

    kitti_camera: int
    name: str

    @property
    def gray(self) -> bool:
        return self.kitti_camera in (0, 1)

    @property
    def encoding(self) -> str:
        return "mono8" if self.gray else "rgb8"

    @property
    def folder(self) -> str:
        return f"image_0{self.kitti_camera}"

    @property
    def image_topic(self) -> str:
        return f"/kitti/{self.name}/image_raw"

    @property
    def compressed_topic(self) -> str:
        """image_transport's name for the JPEG/PNG stream of `image_topic`."""
        return f"{self.image_topic}/compressed"

    @property
    def info_topic(self) -> str:
        return f"/kitti/{self.name}/camera_info"

    @property
    def frame_id(self) -> str:
        return f"{self.name}_optical_frame"


GRAY_LEFT_CAMERA = CameraStream(0, "camera_gray_left")
GRAY_RIGHT_CAMERA = CameraStream(1, "camera_gray_right")
LEFT_CAMERA = CameraStream(2, "camera_color_left")
RIGHT_CAMERA = CameraStream(3, "camera_color_right")


def _qos(durability: QosDurability, depth: int) -> Qos:
    unset = QosTime(0, 0)  # 0 = the RMW default (no deadline / lifespan / lease)
    return Qos(QosHistory.KEEP_LAST, depth, QosReliability.RELIABLE, durability, unset, unset,
               QosLiveliness.AUTOMATIC, unset, False)


#: Offered QoS recorded in the bag metadata: `ros2 bag play` and `siam-depth-play` latch transient-local topics.
SENSOR_QOS = _qos(QosDurability.VOLATILE, 10)
LATCHED_QOS = _qos(QosDurability.TRANSIENT_LOCAL, 1)
#: /tf as tf2's broadcasters offer it (a listener keeps 100).
TF_QOS = _qos(QosDurability.VOLATILE, 100)


@dataclass(frozen=True)
class DriveCalibration:
    """Calibration of a KITTI raw date folder.

    stereo: the colour pair and Velodyne (`load_stereo_calibration`). projections: {camera: (3,4) P_rect_0x}
    for each camera 0..3 in calib_cam_to_cam.txt (pixels; relative to rectified camera 0). image_sizes:
    {camera: (width, height)} from S_rect_0x. imu_to_velo: (4,4) OXTS -> Velodyne transform (metres).
    """

    stereo: StereoCalibration
    projections: dict[int, np.ndarray]
    image_sizes: dict[int, tuple[int, int]]
    imu_to_velo: np.ndarray

    def projection(self, camera: int) -> np.ndarray:
        """(3,4) rectified projection of KITTI camera 0..3; ValueError if the calibration lacks it."""
        if camera not in self.projections:
            raise ValueError(f"calib_cam_to_cam.txt has no P_rect_0{camera} (needed for camera {camera})")
        return self.projections[camera]

    def image_size(self, camera: int) -> tuple[int, int]:
        """(width, height) of camera 0..3's rectified images, pixels."""
        return self.image_sizes.get(camera, self.stereo.image_size)

    def baseline_m(self, left_camera: int) -> float:
        """Distance between the rectified cameras `left_camera` (0 or 2) and `left_camera + 1`, metres."""
        left, right = self.projection(left_camera), self.projection(left_camera + 1)
        return float((left[0, 3] - right[0, 3]) / right[0, 0])


def load_imu_to_velo(calib_dir: str | Path) -> np.ndarray:
    """(4,4) transform of OXTS/IMU points into the Velodyne frame from `calib_imu_to_velo.txt`."""
    path = Path(calib_dir) / "calib_imu_to_velo.txt"
    values = read_calib_file(path)
    if "R" not in values or "T" not in values:
        raise ValueError(f"{path} has no R/T")
    imu_to_velo = np.eye(4)
    imu_to_velo[:3, :3] = values["R"].reshape(3, 3)
    imu_to_velo[:3, 3] = values["T"]
    return imu_to_velo


def load_drive_calibration(calib_dir: str | Path) -> DriveCalibration:
    """Read the calibration files of a KITTI raw date folder (`calib_cam_to_cam.txt`, `calib_velo_to_cam.txt`,
    `calib_imu_to_velo.txt`); FileNotFoundError / ValueError name the file and the missing key."""
    calib_dir = Path(calib_dir)
    stereo = load_stereo_calibration(calib_dir)
    values = read_calib_file(calib_dir / "calib_cam_to_cam.txt")
    projections = {camera: values[f"P_rect_0{camera}"].reshape(3, 4) for camera in range(4)
                   if f"P_rect_0{camera}" in values}
    image_sizes = {camera: (int(values[f"S_rect_0{camera}"][0]), int(values[f"S_rect_0{camera}"][1]))
                   for camera in range(4) if f"S_rect_0{camera}" in values}
    return DriveCalibration(stereo, projections, image_sizes, load_imu_to_velo(calib_dir))


@dataclass(frozen=True)
class ConversionSummary:
    """What `convert_drive` wrote: the bag folder, messages per topic, the frame indices used, the warnings
    (requested sensors missing or incomplete) and the bag's size on disk in bytes."""

    bag_path: Path
    messages_per_topic: dict[str, int]
    frames: list[int]
    warnings: list[str] = field(default_factory=list)
    bag_bytes: int = 0


def parse_frame_range(text: str) -> tuple[int | None, int | None]:
    """`"A:B"` -> (A, B): frames A <= i < B as a Python slice; either side may be empty (`"5:"`, `":10"`)."""
    start_text, sep, stop_text = text.partition(":")
    if not sep:
        raise ValueError(f"frame range must look like A:B (A included, B excluded), got {text!r}")
    try:
        start = int(start_text) if start_text.strip() else None
        stop = int(stop_text) if stop_text.strip() else None
    except ValueError:
        raise ValueError(f"frame range must hold integers, like 0:20, got {text!r}") from None
    if start is not None and stop is not None and stop <= start:
        raise ValueError(f"frame range {text!r} is empty (B must be greater than A)")
    return start, stop


def _frame_range_argument(text: str) -> tuple[int | None, int | None]:
    try:
        return parse_frame_range(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def camera_info_matrices(calib: DriveCalibration, camera: CameraStream) -> tuple[np.ndarray, np.ndarray]:
    """Rectified intrinsics of a KITTI camera in ROS form: (3,3) K and (3,4) P, pixels.

    KITTI's P_rect_0x are relative to camera 0; ROS expects each camera's P in its own frame, with the
    right camera of a stereo pair (1 or 3) carrying Tx = -fx * baseline in P[0,3] (left: 0).
    """
    intrinsics = calib.projection(camera.kitti_camera)[:, :3].copy()
    ros_projection = np.zeros((3, 4))
    ros_projection[:, :3] = intrinsics
    if camera.kitti_camera % 2 == 1:
        ros_projection[0, 3] = -intrinsics[0, 0] * calib.baseline_m(camera.kitti_camera - 1)
    return intrinsics, ros_projection


def velo_to_rectified_camera(calib: DriveCalibration, camera: CameraStream) -> np.ndarray:
    """(4,4) transform of Velodyne points into the rectified optical frame of KITTI camera 0..3 (metres).

    P_rect_0x = K [I | t_x] puts camera x at offset t_x from rectified camera 0; R_rect_00 velo_to_cam maps
    Velodyne points into rectified camera 0.
    """
    projection = calib.projection(camera.kitti_camera)
    offset = np.eye(4)
    offset[:3, 3] = np.linalg.solve(projection[:, :3], projection[:, 3])
    return offset @ calib.stereo.R_rect_00 @ calib.stereo.velo_to_cam


def static_transforms(calib: DriveCalibration, cameras: Sequence[CameraStream]) -> list[tuple[str, str, np.ndarray]]:
    """The static TF tree as (parent, child, (4,4) pose of child in parent) — a point in child -> parent.

    base_link (OXTS unit) -> velo_link -> `<camera>_optical_frame` for each camera.
    """
    transforms = [(BASE_FRAME, VELO_FRAME, np.linalg.inv(calib.imu_to_velo))]
    for camera in cameras:
        transforms.append((VELO_FRAME, camera.frame_id, np.linalg.inv(velo_to_rectified_camera(calib, camera))))
    return transforms


def oxts_rotation(oxts_values: np.ndarray) -> np.ndarray:
    """(3,3) rotation of the OXTS unit (x forward, y left, z up) in east-north-up: Rz(yaw) Ry(pitch) Rx(roll)."""
    return Rotation.from_euler("xyz", oxts_values[[_ROLL, _PITCH, _YAW]]).as_matrix()


def mercator_scale(latitude_deg: float) -> float:
    """KITTI devkit's Mercator scale cos(latitude) of the reference latitude (degrees)."""
    return float(np.cos(np.deg2rad(latitude_deg)))


def oxts_pose(oxts_values: np.ndarray, scale: float, origin_m: np.ndarray) -> np.ndarray:
    """(4,4) pose of the OXTS unit in `world` (east, north, up; metres) from one OXTS line.

    Position: Mercator x = scale * R_earth * lon, y = scale * R_earth * ln(tan((90 + lat)/2)), z = altitude,
    minus `origin_m` (the first record's (3,) position); rotation `oxts_rotation`.
    """
    latitude, longitude, altitude = oxts_values[[_LAT, _LON, _ALT]]
    position = np.array([
        scale * EARTH_RADIUS_M * np.deg2rad(longitude),
        scale * EARTH_RADIUS_M * np.log(np.tan(np.deg2rad(90.0 + latitude) / 2.0)),
        altitude])
    pose = np.eye(4)
    pose[:3, :3] = oxts_rotation(oxts_values)
    pose[:3, 3] = position - origin_m
    return pose


def mercator_origin(oxts_values: np.ndarray) -> tuple[float, np.ndarray]:
    """(scale, (3,) position in metres) of a record chosen as the `world` origin (see `oxts_pose`)."""
    scale = mercator_scale(float(oxts_values[_LAT]))
    return scale, oxts_pose(oxts_values, scale, np.zeros(3))[:3, 3]


def _stamp(stamp_ns: int):
    time_type = TYPESTORE.types["builtin_interfaces/msg/Time"]
    return time_type(sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000))


def _header(stamp_ns: int, frame_id: str):
    return TYPESTORE.types["std_msgs/msg/Header"](stamp=_stamp(stamp_ns), frame_id=frame_id)


def image_message(image: np.ndarray, stamp_ns: int, frame_id: str):
    """sensor_msgs/Image (rosbags type) of an (H,W,3) uint8 RGB image (rgb8) or an (H,W) uint8 one (mono8)."""
    height, width = image.shape[:2]
    channels = 1 if image.ndim == 2 else image.shape[2]
    return TYPESTORE.types[IMAGE_TYPE](
        header=_header(stamp_ns, frame_id), height=height, width=width, encoding="mono8" if channels == 1 else "rgb8",
        is_bigendian=0, step=channels * width, data=np.ascontiguousarray(image, dtype=np.uint8).reshape(-1))


def compressed_image_message(image: np.ndarray, stamp_ns: int, frame_id: str,
                             jpeg_quality: int = DEFAULT_JPEG_QUALITY):
    """sensor_msgs/CompressedImage (rosbags type): JPEG of an (H,W,3) uint8 RGB or (H,W) uint8 mono image.

    `format` as image_transport's compressed plugin writes it: `rgb8; jpeg compressed bgr8` (JPEG of the BGR
    channel order OpenCV decodes to) or `mono8; jpeg compressed mono8`. jpeg_quality: 1..100.
    """
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    if image.ndim == 2:
        source, image_format = image, "mono8; jpeg compressed mono8"
    else:
        source, image_format = cv2.cvtColor(image, cv2.COLOR_RGB2BGR), "rgb8; jpeg compressed bgr8"
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(source, dtype=np.uint8),
                               [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    if not ok:
        raise ValueError(f"JPEG encoding of a {image.shape} image failed")
    return TYPESTORE.types[COMPRESSED_IMAGE_TYPE](header=_header(stamp_ns, frame_id), format=image_format,
                                                  data=encoded.reshape(-1))


def camera_info_message(calib: DriveCalibration, camera: CameraStream, stamp_ns: int):
    """sensor_msgs/CameraInfo (rosbags type) of the rectified camera: D = 0 (plumb_bob), R = I."""
    types = TYPESTORE.types
    intrinsics, projection = camera_info_matrices(calib, camera)
    width, height = calib.image_size(camera.kitti_camera)
    roi = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return types[CAMERA_INFO_TYPE](
        header=_header(stamp_ns, camera.frame_id), height=height, width=width, distortion_model="plumb_bob",
        d=np.zeros(5), k=intrinsics.reshape(-1), r=np.eye(3).reshape(-1), p=projection.reshape(-1),
        binning_x=0, binning_y=0, roi=roi)


def pointcloud_message(points: np.ndarray, stamp_ns: int, frame_id: str = VELO_FRAME):
    """sensor_msgs/PointCloud2 (rosbags type) of (N,4) float32 x, y, z [m], intensity; one row, dense."""
    types = TYPESTORE.types
    field_type = types["sensor_msgs/msg/PointField"]
    fields = [field_type(name=name, offset=4 * index, datatype=field_type.FLOAT32, count=1)
              for index, name in enumerate(("x", "y", "z", "intensity"))]
    points = np.ascontiguousarray(points, dtype="<f4")
    return types[POINTCLOUD_TYPE](
        header=_header(stamp_ns, frame_id), height=1, width=len(points), fields=fields, is_bigendian=False,
        point_step=16, row_step=16 * len(points), data=points.view(np.uint8).reshape(-1), is_dense=True)


def navsatfix_message(oxts_values: np.ndarray, stamp_ns: int, frame_id: str = BASE_FRAME):
    """sensor_msgs/NavSatFix (rosbags type) from one OXTS line (lat, lon [deg], alt [m], ..., pos_accuracy [m]).

    The covariance is approximated as pos_accuracy^2 on the diagonal (KITTI gives one horizontal accuracy).
    """
    types = TYPESTORE.types
    status_type = types["sensor_msgs/msg/NavSatStatus"]
    fix_type = types[NAVSATFIX_TYPE]
    position_accuracy = float(oxts_values[_POS_ACCURACY])
    return fix_type(
        header=_header(stamp_ns, frame_id),
        status=status_type(status=status_type.STATUS_FIX, service=status_type.SERVICE_GPS),
        latitude=float(oxts_values[_LAT]), longitude=float(oxts_values[_LON]), altitude=float(oxts_values[_ALT]),
        position_covariance=np.diag([position_accuracy**2] * 3).reshape(-1),
        position_covariance_type=fix_type.COVARIANCE_TYPE_APPROXIMATED)


def _vector3(values: np.ndarray):
    return TYPESTORE.types["geometry_msgs/msg/Vector3"](x=float(values[0]), y=float(values[1]), z=float(values[2]))


def _quaternion(rotation: np.ndarray):
    qx, qy, qz, qw = Rotation.from_matrix(rotation).as_quat()
    return TYPESTORE.types["geometry_msgs/msg/Quaternion"](x=float(qx), y=float(qy), z=float(qz), w=float(qw))


def imu_message(oxts_values: np.ndarray, stamp_ns: int, frame_id: str = BASE_FRAME):
    """sensor_msgs/Imu (rosbags type) from one OXTS line: orientation of the unit in east-north-up (roll, pitch,
    yaw), angular velocity wx, wy, wz [rad/s] and linear acceleration ax, ay, az [m/s^2, gravity included] in
    the unit's axes. Covariances are all zero (unknown: KITTI gives none)."""
    unknown = np.zeros(9)
    return TYPESTORE.types[IMU_TYPE](
        header=_header(stamp_ns, frame_id), orientation=_quaternion(oxts_rotation(oxts_values)),
        orientation_covariance=unknown, angular_velocity=_vector3(oxts_values[[_WX, _WY, _WZ]]),
        angular_velocity_covariance=unknown, linear_acceleration=_vector3(oxts_values[[_AX, _AY, _AZ]]),
        linear_acceleration_covariance=unknown)


def transforms_message(transforms: Sequence[tuple[str, str, np.ndarray]], stamp_ns: int):
    """tf2_msgs/TFMessage (rosbags type) of (parent, child, (4,4) pose of child in parent) transforms."""
    types = TYPESTORE.types
    stamped = [types["geometry_msgs/msg/TransformStamped"](
        header=_header(stamp_ns, parent), child_frame_id=child,
        transform=types["geometry_msgs/msg/Transform"](translation=_vector3(pose[:3, 3]),
                                                       rotation=_quaternion(pose[:3, :3])))
        for parent, child, pose in transforms]
    return types[TF_MESSAGE_TYPE](transforms=stamped)


def load_gray_image(path: str | Path) -> np.ndarray:
    """Read a grayscale KITTI image as (H,W) uint8."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"cannot decode image (corrupt or not an image): {path}")
    return image


def load_oxts(path: str | Path) -> np.ndarray:
    """One OXTS record (`oxts/data/<frame>.txt`) as (30,) float64; ValueError naming the file if malformed."""
    try:
        values = np.loadtxt(path, ndmin=1)
    except ValueError as error:
        raise ValueError(f"malformed OXTS record {path}: {error}") from None
    if values.shape != (OXTS_COLUMNS,):
        raise ValueError(f"OXTS record {path} has {values.size} values, expected {OXTS_COLUMNS}")
    return values


def _stamps(path: Path, frames: Sequence[int]) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"missing KITTI timestamp file: {path}")
    stamps = read_timestamps(path)
    if frames and max(frames) >= len(stamps):
        raise ValueError(f"{path} has {len(stamps)} lines but frame {max(frames)} exists (line i = frame i)")
    return stamps


@dataclass(frozen=True)
class _Message:
    stamp_ns: int
    topic: str
    msgtype: str
    build: Callable[[], object]
    source: Path | None = None  # the file the message is read from (named in errors)


@dataclass(frozen=True)
class _Request:
    """What to write: the sensors asked for and how."""

    with_right: bool
    with_gray: bool
    with_velodyne: bool
    with_gps: bool
    with_imu: bool
    with_pose: bool
    compressed: bool
    jpeg_quality: int


class _Planner:
    """Every message of the bag in bag-time order, each built (files read) only when written; notes warnings."""

    def __init__(self, drive: KittiDrive, calib: DriveCalibration, frames: list[int], request: _Request) -> None:
        self.drive, self.calib, self.frames, self.request = drive, calib, frames, request
        self.messages: list[_Message] = []
        self.warnings: list[str] = []

    def warn(self, text: str) -> None:
        self.warnings.append(text)
        LOGGER.warning(text)

    def _present(self, folder: str, leaving_out: str, option: str) -> bool:
        if (self.drive.path / folder).is_dir():
            return True
        self.warn(f"no {folder} folder in {self.drive.path}: {leaving_out} left out ({option} to silence this)")
        return False

    def _frames_with(self, what: str, path_of: Callable[[int], Path | None]) -> list[int]:
        found = [frame for frame in self.frames if path_of(frame) is not None]
        if len(found) < len(self.frames):
            missing = sorted(set(self.frames) - set(found))
            shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
            self.warn(f"{what} has {len(found)} of the {len(self.frames)} frames written (missing: {shown})")
        return found

    def plan(self) -> list[_Message]:
        cameras = self.cameras()
        for camera in cameras:
            self._plan_camera(camera)
        self._plan_velodyne()
        self._plan_oxts()
        self.messages.sort(key=lambda message: message.stamp_ns)
        first_stamp = self.messages[0].stamp_ns
        transforms = static_transforms(self.calib, cameras)
        return [_Message(first_stamp, TF_STATIC_TOPIC, TF_MESSAGE_TYPE,
                         lambda: transforms_message(transforms, first_stamp)), *self.messages]

    def cameras(self) -> list[CameraStream]:
        cameras = [LEFT_CAMERA]
        if self.request.with_right and self._present(RIGHT_CAMERA.folder, "the right colour camera", "--no-right"):
            cameras.append(RIGHT_CAMERA)
        if self.request.with_gray:
            for camera in (GRAY_LEFT_CAMERA, GRAY_RIGHT_CAMERA):
                if self._present(camera.folder, f"the {camera.name.replace('_', ' ')}", "leave out --gray"):
                    self.calib.projection(camera.kitti_camera)  # fail early if the calibration lacks it
                    cameras.append(camera)
        return cameras

    def _plan_camera(self, camera: CameraStream) -> None:
        camera_frames = self._frames_with(camera.folder, lambda f: self.drive.find_image(f, camera.kitti_camera))
        stamps = _stamps(self.drive.timestamps_path(camera.folder), camera_frames)
        load = load_gray_image if camera.gray else load_image
        quality = self.request.jpeg_quality
        if self.request.compressed:
            topic, msgtype = camera.compressed_topic, COMPRESSED_IMAGE_TYPE

            def build(path: Path, stamp: int):
                return compressed_image_message(load(path), stamp, camera.frame_id, quality)
        else:
            topic, msgtype = camera.image_topic, IMAGE_TYPE

            def build(path: Path, stamp: int):
                return image_message(load(path), stamp, camera.frame_id)
        for frame in camera_frames:
            stamp = int(stamps[frame])
            path = self.drive.find_image(frame, camera.kitti_camera)
            self.messages.append(_Message(stamp, topic, msgtype, lambda p=path, s=stamp: build(p, s), path))
            self.messages.append(_Message(stamp, camera.info_topic, CAMERA_INFO_TYPE,
                                          lambda s=stamp: camera_info_message(self.calib, camera, s)))

    def _plan_velodyne(self) -> None:
        if not self.request.with_velodyne or not self._present("velodyne_points", VELO_TOPIC, "--no-velodyne"):
            return
        def scan(frame: int) -> Path | None:
            path = self.drive.velodyne_path(frame)
            return path if path.is_file() else None

        velo_frames = self._frames_with("velodyne_points", scan)
        stamps = _stamps(self.drive.timestamps_path("velodyne_points"), velo_frames)
        for frame in velo_frames:
            stamp, path = int(stamps[frame]), scan(frame)
            self.messages.append(_Message(stamp, VELO_TOPIC, POINTCLOUD_TYPE,
                                          lambda p=path, s=stamp: pointcloud_message(load_velodyne_points(p), s),
                                          path))

    def _plan_oxts(self) -> None:
        request = self.request
        topics = [topic for topic, wanted in ((GPS_TOPIC, request.with_gps), (IMU_TOPIC, request.with_imu),
                                              (TF_TOPIC, request.with_pose)) if wanted]
        if not topics or not self._present("oxts", " and ".join(topics), "--no-gps/--no-imu/--no-pose"):
            return
        def record(frame: int) -> Path | None:
            path = self.drive.oxts_path(frame)
            return path if path.is_file() else None

        oxts_frames = self._frames_with("oxts", record)
        if not oxts_frames:
            return
        stamps = _stamps(self.drive.timestamps_path("oxts"), oxts_frames)
        records = {frame: load_oxts(record(frame)) for frame in oxts_frames}  # small text files: read them now
        scale, origin = mercator_origin(records[oxts_frames[0]])
        for frame in oxts_frames:
            stamp, values, path = int(stamps[frame]), records[frame], record(frame)
            if request.with_gps:
                self.messages.append(_Message(stamp, GPS_TOPIC, NAVSATFIX_TYPE,
                                              lambda v=values, s=stamp: navsatfix_message(v, s), path))
            if request.with_imu:
                self.messages.append(_Message(stamp, IMU_TOPIC, IMU_TYPE, lambda v=values, s=stamp: imu_message(v, s),
                                              path))
            if request.with_pose:
                pose = oxts_pose(values, scale, origin)
                self.messages.append(_Message(
                    stamp, TF_TOPIC, TF_MESSAGE_TYPE,
                    lambda p=pose, s=stamp: transforms_message([(WORLD_FRAME, BASE_FRAME, p)], s), path))


def _offered_qos(topic: str) -> Qos:
    if topic == TF_STATIC_TOPIC:
        return LATCHED_QOS
    return TF_QOS if topic == TF_TOPIC else SENSOR_QOS


def _bag_bytes(bag_path: Path) -> int:
    return sum(path.stat().st_size for path in bag_path.rglob("*") if path.is_file())


class ConversionInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped a conversion before its bag was complete; the partial bag was removed."""


def _write_bag(bag_path: Path, storage: str, chunk_compression: str, plan: Sequence[_Message], progress: bool,
               stop_requested: Callable[[], bool] = lambda: False,
               on_message: Callable[[int], None] | None = None) -> None:
    """Write `plan` to a new bag at `bag_path`; on any failure or interruption remove what was written.

    stop_requested: checked before every message; when it returns True the conversion stops with
    ConversionInterrupted. on_message: called with the number of messages written after each one.
    """
    writer = Writer(bag_path, version=BAG_VERSION, storage_plugin=STORAGE_PLUGINS[storage])
    if chunk_compression == "zstd":
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    writer.open()  # creates bag_path: from here on, a failure must not leave it behind
    try:
        connections = {}
        for message in plan:
            if message.topic not in connections:
                connections[message.topic] = writer.add_connection(
                    message.topic, message.msgtype, typestore=TYPESTORE, offered_qos_profiles=[_offered_qos(
                        message.topic)])
        for written, message in enumerate(tqdm(plan, desc=f"writing {bag_path.name}", unit="msg",
                                               disable=not progress)):
            if stop_requested():
                raise ConversionInterrupted(f"interrupted after {written} of {len(plan)} messages")
            try:
                raw = TYPESTORE.serialize_cdr(message.build(), message.msgtype)
            except (OSError, ValueError, cv2.error) as error:
                source = f" from {message.source}" if message.source is not None else ""
                raise ValueError(f"cannot write {message.topic}{source}: {error}") from error
            writer.write(connections[message.topic], message.stamp_ns, raw)
            if on_message is not None:
                on_message(written + 1)
        writer.close()
    except BaseException:
        try:
            writer.abort()
        finally:
            shutil.rmtree(bag_path, ignore_errors=True)
        raise


def convert_drive(drive_dir: str | Path, bag_path: str | Path, storage: str = "mcap",
                  frame_range: tuple[int | None, int | None] = (None, None), with_right: bool = True,
                  with_velodyne: bool = True, with_gps: bool = True, progress: bool = True, *,
                  with_imu: bool = True, with_pose: bool = True, with_gray: bool = False, compressed: bool = False,
                  jpeg_quality: int = DEFAULT_JPEG_QUALITY, chunk_compression: str | None = None,
                  stop_requested: Callable[[], bool] = lambda: False,
                  on_message: Callable[[int], None] | None = None) -> ConversionSummary:
    """Write the KITTI raw drive `drive_dir` (`<root>/<date>/<date>_drive_<n>_sync`) as a rosbag2 at `bag_path`.

    The calibration files are read from the date folder above the drive. `frame_range` (start, stop)
    limits the left-camera frame indices to start <= i < stop. with_*: which sensors (the grayscale cameras
    only on request). compressed: JPEG `.../image_raw/compressed` (quality `jpeg_quality`, 1..100) instead of
    raw images. chunk_compression: "zstd" or "none" for MCAP (default zstd); sqlite3 bags are uncompressed.
    Raises FileNotFoundError / ValueError naming the missing drive, calibration, timestamp or unreadable
    file, or FileExistsError if `bag_path` exists; a failed conversion leaves no bag behind.
    stop_requested: polled before each message; True stops the conversion (ConversionInterrupted, no bag
    left). on_message: progress callback, called with the number of messages written so far.
    """
    drive_dir, bag_path = Path(drive_dir), Path(bag_path)
    if storage not in STORAGE_PLUGINS:
        raise ValueError(f"storage must be one of {sorted(STORAGE_PLUGINS)}, got {storage!r}")
    if chunk_compression is None:
        chunk_compression = "zstd" if storage == "mcap" else "none"
    if chunk_compression not in CHUNK_COMPRESSIONS:
        raise ValueError(f"chunk_compression must be one of {CHUNK_COMPRESSIONS}, got {chunk_compression!r}")
    if chunk_compression != "none" and storage != "mcap":
        raise ValueError(f"chunk compression is an MCAP feature; {storage} bags are written uncompressed")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    if not drive_dir.is_dir():
        raise FileNotFoundError(f"KITTI drive folder not found: {drive_dir}")
    if bag_path.exists():
        raise FileExistsError(f"output bag {bag_path} exists already; choose a new path")
    try:
        calib = load_drive_calibration(drive_dir.parent)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error} (KITTI raw keeps calib_*.txt in the date folder above the drive)") from None

    start, stop = frame_range
    frames = [f for f in list_frames(drive_dir, camera=LEFT_CAMERA.kitti_camera)
              if (start is None or f >= start) and (stop is None or f < stop)]
    if not frames:
        raise ValueError(f"no left-camera frames in {drive_dir / 'image_02' / 'data'} within {start}:{stop}")
    request = _Request(with_right, with_gray, with_velodyne, with_gps, with_imu, with_pose, compressed, jpeg_quality)
    planner = _Planner(KittiDrive.from_dir(drive_dir), calib, frames, request)
    plan = planner.plan()
    _write_bag(bag_path, storage, chunk_compression, plan, progress, stop_requested, on_message)
    return ConversionSummary(bag_path, dict(Counter(message.topic for message in plan)), frames, planner.warnings,
                             _bag_bytes(bag_path))


#: Test-only: pause the CLI after this many messages until it is interrupted (so that a test can send Ctrl-C while
#: the conversion is known to be mid-bag, whatever the machine's load).
PAUSE_AFTER_ENV = "SIAM_DEPTH_KITTI2BAG_PAUSE_AFTER"
PAUSE_LIMIT_S = 120.0


def _pause_hook(request: InterruptFlag) -> Callable[[int], None] | None:
    """The `on_message` hook that PAUSE_AFTER_ENV asks for (None when it is not set)."""
    text = os.environ.get(PAUSE_AFTER_ENV)
    if not text:
        return None
    after = int(text)

    def pause(written: int) -> None:
        if written != after:
            return
        print(f"siam-depth-kitti2bag: paused after {after} messages ({PAUSE_AFTER_ENV})", file=sys.stderr, flush=True)
        deadline = time.monotonic() + PAUSE_LIMIT_S
        while not request.requested and time.monotonic() < deadline:
            time.sleep(0.01)

    return pause


def main(argv: Sequence[str] | None = None) -> int:
    """`siam-depth-kitti2bag DRIVE_DIR OUT_BAG [--storage mcap|sqlite3] [--frames A:B] [--compressed] ...`."""
    parser = argparse.ArgumentParser(
        prog="siam-depth-kitti2bag", description="Convert a KITTI raw drive (…/<date>/<date>_drive_<n>_sync, "
        "calibration in the date folder) into a rosbag2 with cameras, camera_info, Velodyne, GPS, IMU, the vehicle "
        "pose on /tf and /tf_static.")
    parser.add_argument("drive_dir", type=Path, help="KITTI raw drive folder, e.g. kitti_raw/2011_09_26/"
                        "2011_09_26_drive_0009_sync")
    parser.add_argument("out_bag", type=Path, help="output bag folder (must not exist)")
    parser.add_argument("--storage", choices=sorted(STORAGE_PLUGINS), default="mcap",
                        help="rosbag2 storage plugin (default: mcap)")
    parser.add_argument("--frames", type=_frame_range_argument, default=(None, None), metavar="A:B",
                        help="only frames A <= i < B (either side may be left out)")
    parser.add_argument("--no-right", action="store_true", help="leave out the right colour camera (image_03)")
    parser.add_argument("--gray", action="store_true",
                        help="also write the grayscale cameras (image_00/01) as /kitti/camera_gray_{left,right}")
    parser.add_argument("--no-velodyne", action="store_true", help=f"leave out {VELO_TOPIC}")
    parser.add_argument("--no-gps", action="store_true", help=f"leave out {GPS_TOPIC}")
    parser.add_argument("--no-imu", action="store_true", help=f"leave out {IMU_TOPIC}")
    parser.add_argument("--no-pose", action="store_true", help=f"leave out the vehicle pose on {TF_TOPIC}")
    parser.add_argument("--compressed", action="store_true",
                        help="write JPEG sensor_msgs/CompressedImage on <camera>/image_raw/compressed instead of raw "
                        "images")
    parser.add_argument("--jpeg-quality", type=int, default=DEFAULT_JPEG_QUALITY,
                        help=f"JPEG quality 1..100 with --compressed (default {DEFAULT_JPEG_QUALITY})")
    parser.add_argument("--chunk-compression", choices=CHUNK_COMPRESSIONS, default=None,
                        help="MCAP chunk compression (default: zstd for mcap; sqlite3 is uncompressed)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("siam-depth-kitti2bag: %(levelname)s: %(message)s"))
    LOGGER.addHandler(handler)
    LOGGER.propagate = False
    try:
        with InterruptFlag() as interrupt:
            summary = convert_drive(args.drive_dir, args.out_bag, storage=args.storage, frame_range=args.frames,
                                    with_right=not args.no_right, with_velodyne=not args.no_velodyne,
                                    with_gps=not args.no_gps, progress=not args.quiet, with_imu=not args.no_imu,
                                    with_pose=not args.no_pose, with_gray=args.gray, compressed=args.compressed,
                                    jpeg_quality=args.jpeg_quality, chunk_compression=args.chunk_compression,
                                    stop_requested=lambda: interrupt.requested, on_message=_pause_hook(interrupt))
    except (FileNotFoundError, FileExistsError, ValueError, OSError) as error:
        print(f"siam-depth-kitti2bag: error: {error}", file=sys.stderr)
        return 2
    except ConversionInterrupted as stopped:
        print(f"siam-depth-kitti2bag: {stopped}; no partial bag left at {args.out_bag}", file=sys.stderr)
        return 130
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.propagate = True
    if interrupt.requested:
        print(f"siam-depth-kitti2bag: interrupted after the bag was complete; kept {summary.bag_path}", file=sys.stderr)
    print(f"wrote {summary.bag_path} ({args.storage}, {summary.bag_bytes / 2**20:.1f} MiB, frames "
          f"{summary.frames[0]}..{summary.frames[-1]}):")
    for topic, count in sorted(summary.messages_per_topic.items()):
        print(f"  {topic}: {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
