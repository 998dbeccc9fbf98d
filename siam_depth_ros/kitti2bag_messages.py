"""Building the bag's messages (rosbags types, ROS 2 Kilted definitions): the topics, frame ids and message
types `siam-depth-kitti2bag` writes, KITTI's cameras as ROS cameras (`CameraStream`), their intrinsics and the
static TF tree in ROS form, and one builder per message type (image, JPEG, camera_info, point cloud, GPS fix,
IMU, TF).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from rosbags.typesys import Stores, get_typestore
from scipy.spatial.transform import Rotation

from siam_depth_core.data.calib import velo_to_rectified_camera
from siam_depth_core.data.oxts import oxts_rotation
from siam_depth_ros.kitti2bag_drive import (
    OXTS_ALT,
    OXTS_AX,
    OXTS_AY,
    OXTS_AZ,
    OXTS_LAT,
    OXTS_LON,
    OXTS_POS_ACCURACY,
    OXTS_WX,
    OXTS_WY,
    OXTS_WZ,
    DriveCalibration,
)

#: Message definitions and CDR layout of ROS 2 Kilted (identical for these types back to Humble).
TYPESTORE = get_typestore(Stores.ROS2_KILTED)

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
#: image_transport's default JPEG quality.
DEFAULT_JPEG_QUALITY = 95


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


def static_transforms(calib: DriveCalibration, cameras: Sequence[CameraStream]) -> list[tuple[str, str, np.ndarray]]:
    """The static TF tree as (parent, child, (4,4) pose of child in parent) — a point in child -> parent.

    base_link (OXTS unit) -> velo_link -> `<camera>_optical_frame` for each camera.
    """
    transforms = [(BASE_FRAME, VELO_FRAME, np.linalg.inv(calib.imu_to_velo))]
    for camera in cameras:
        velo_to_camera = velo_to_rectified_camera(calib.stereo, calib.projection(camera.kitti_camera))
        transforms.append((VELO_FRAME, camera.frame_id, np.linalg.inv(velo_to_camera)))
    return transforms


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
    position_accuracy = float(oxts_values[OXTS_POS_ACCURACY])
    return fix_type(
        header=_header(stamp_ns, frame_id),
        status=status_type(status=status_type.STATUS_FIX, service=status_type.SERVICE_GPS),
        latitude=float(oxts_values[OXTS_LAT]), longitude=float(oxts_values[OXTS_LON]),
        altitude=float(oxts_values[OXTS_ALT]),
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
        orientation_covariance=unknown, angular_velocity=_vector3(oxts_values[[OXTS_WX, OXTS_WY, OXTS_WZ]]),
        angular_velocity_covariance=unknown,
        linear_acceleration=_vector3(oxts_values[[OXTS_AX, OXTS_AY, OXTS_AZ]]), linear_acceleration_covariance=unknown)


def transforms_message(transforms: Sequence[tuple[str, str, np.ndarray]], stamp_ns: int):
    """tf2_msgs/TFMessage (rosbags type) of (parent, child, (4,4) pose of child in parent) transforms."""
    types = TYPESTORE.types
    stamped = [types["geometry_msgs/msg/TransformStamped"](
        header=_header(stamp_ns, parent), child_frame_id=child,
        transform=types["geometry_msgs/msg/Transform"](translation=_vector3(pose[:3, 3]),
                                                       rotation=_quaternion(pose[:3, :3])))
        for parent, child, pose in transforms]
    return types[TF_MESSAGE_TYPE](transforms=stamped)
