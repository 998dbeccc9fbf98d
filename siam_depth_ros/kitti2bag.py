"""Convert a KITTI raw drive into a rosbag2 (MCAP or sqlite3) that `ros2 bag play` and `siam-depth-play` replay.

Topics written (frames per REP 103/105, stamps from the KITTI timestamp files, bag time = header stamp):

- `/kitti/camera_color_{left,right}/image_raw`: sensor_msgs/Image rgb8, rectified KITTI camera 2 / 3
- `/kitti/camera_color_{left,right}/camera_info`: sensor_msgs/CameraInfo of the rectified images
  (plumb_bob with D = 0, R = I, K = P_rect_0x[:, :3]; the right P[0,3] = -fx * baseline as ROS stereo does)
- `/kitti/velo/pointcloud`: sensor_msgs/PointCloud2 x, y, z, intensity float32 in `velo_link`
- `/kitti/oxts/gps/fix`: sensor_msgs/NavSatFix from the OXTS unit (`base_link`)
- `/tf_static`: tf2_msgs/TFMessage base_link -> velo_link -> camera optical frames, offered transient-local
  so that players latch it

Only the left-camera frames present on disk (optionally limited by `--frames`) are written; the other
sensors are written for those frames where their file exists.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from siam_depth_core.data.calib import (
    StereoCalibration,
    load_stereo_calibration,
    read_calib_file,
    read_timestamps,
)
from siam_depth_core.data.kitti import IMAGE_EXTENSIONS, list_frames, load_image, load_velodyne_points

#: Message definitions and CDR layout of ROS 2 Kilted (identical for these types back to Humble).
TYPESTORE = get_typestore(Stores.ROS2_KILTED)
#: rosbag2 metadata version written (8 is read by Jazzy and later).
BAG_VERSION = 8

BASE_FRAME = "base_link"  # the OXTS IMU/GPS unit: x forward, y left, z up
VELO_FRAME = "velo_link"
VELO_TOPIC = "/kitti/velo/pointcloud"
GPS_TOPIC = "/kitti/oxts/gps/fix"
TF_STATIC_TOPIC = "/tf_static"

IMAGE_TYPE = "sensor_msgs/msg/Image"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
POINTCLOUD_TYPE = "sensor_msgs/msg/PointCloud2"
NAVSATFIX_TYPE = "sensor_msgs/msg/NavSatFix"
TF_MESSAGE_TYPE = "tf2_msgs/msg/TFMessage"

STORAGE_PLUGINS = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


@dataclass(frozen=True)
class CameraStream:
    """One KITTI colour camera as a ROS camera: `kitti_camera` 2 (left) or 3 (right), topic/frame names."""

    kitti_camera: int
    name: str

    @property
    def image_topic(self) -> str:
        return f"/kitti/{self.name}/image_raw"

    @property
    def info_topic(self) -> str:
        return f"/kitti/{self.name}/camera_info"

    @property
    def frame_id(self) -> str:
        return f"{self.name}_optical_frame"


LEFT_CAMERA = CameraStream(2, "camera_color_left")
RIGHT_CAMERA = CameraStream(3, "camera_color_right")


def _qos(durability: QosDurability, depth: int) -> Qos:
    unset = QosTime(0, 0)  # 0 = the RMW default (no deadline / lifespan / lease)
    return Qos(QosHistory.KEEP_LAST, depth, QosReliability.RELIABLE, durability, unset, unset,
               QosLiveliness.AUTOMATIC, unset, False)


#: Offered QoS recorded in the bag metadata: `ros2 bag play` and `siam-depth-play` latch transient-local topics.
SENSOR_QOS = _qos(QosDurability.VOLATILE, 10)
LATCHED_QOS = _qos(QosDurability.TRANSIENT_LOCAL, 1)


@dataclass(frozen=True)
class ConversionSummary:
    """What `convert_drive` wrote: the bag folder, messages per topic and the frame indices used."""

    bag_path: Path
    messages_per_topic: dict[str, int]
    frames: list[int]


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


def camera_info_matrices(calib: StereoCalibration, camera: CameraStream) -> tuple[np.ndarray, np.ndarray]:
    """Rectified intrinsics of a KITTI colour camera in ROS form: (3,3) K and (3,4) P, pixels.

    KITTI's P_rect_0x are relative to camera 0; ROS expects each camera's P in its own frame, with the
    right camera of a stereo pair carrying Tx = -fx * baseline in P[0,3] (left: 0).
    """
    projection = calib.P_rect_02 if camera.kitti_camera == 2 else calib.P_rect_03
    intrinsics = projection[:, :3].copy()
    ros_projection = np.zeros((3, 4))
    ros_projection[:, :3] = intrinsics
    if camera.kitti_camera == 3:
        ros_projection[0, 3] = -intrinsics[0, 0] * calib.baseline_m
    return intrinsics, ros_projection


def velo_to_rectified_camera(calib: StereoCalibration, camera: CameraStream) -> np.ndarray:
    """(4,4) transform of Velodyne points into the rectified optical frame of camera 2 or 3 (metres).

    P_rect_0x = K [I | t_x] puts camera x at offset t_x from rectified camera 0; R_rect_00 velo_to_cam maps
    Velodyne points into rectified camera 0.
    """
    projection = calib.P_rect_02 if camera.kitti_camera == 2 else calib.P_rect_03
    offset = np.eye(4)
    offset[:3, 3] = np.linalg.solve(projection[:, :3], projection[:, 3])
    return offset @ calib.R_rect_00 @ calib.velo_to_cam


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


def static_transforms(calib: StereoCalibration, imu_to_velo: np.ndarray,
                      cameras: Sequence[CameraStream]) -> list[tuple[str, str, np.ndarray]]:
    """The static TF tree as (parent, child, (4,4) pose of child in parent) — a point in child -> parent.

    base_link (OXTS unit) -> velo_link -> `<camera>_optical_frame` for each camera.
    """
    transforms = [(BASE_FRAME, VELO_FRAME, np.linalg.inv(imu_to_velo))]
    for camera in cameras:
        transforms.append((VELO_FRAME, camera.frame_id, np.linalg.inv(velo_to_rectified_camera(calib, camera))))
    return transforms


def _stamp(stamp_ns: int):
    time_type = TYPESTORE.types["builtin_interfaces/msg/Time"]
    return time_type(sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000))


def _header(stamp_ns: int, frame_id: str):
    return TYPESTORE.types["std_msgs/msg/Header"](stamp=_stamp(stamp_ns), frame_id=frame_id)


def image_message(rgb: np.ndarray, stamp_ns: int, frame_id: str):
    """sensor_msgs/Image (rosbags type) of an (H,W,3) uint8 RGB image, encoding rgb8."""
    height, width, _ = rgb.shape
    return TYPESTORE.types[IMAGE_TYPE](
        header=_header(stamp_ns, frame_id), height=height, width=width, encoding="rgb8", is_bigendian=0,
        step=3 * width, data=np.ascontiguousarray(rgb, dtype=np.uint8).reshape(-1))


def camera_info_message(calib: StereoCalibration, camera: CameraStream, stamp_ns: int):
    """sensor_msgs/CameraInfo (rosbags type) of the rectified camera: D = 0 (plumb_bob), R = I."""
    types = TYPESTORE.types
    intrinsics, projection = camera_info_matrices(calib, camera)
    width, height = calib.image_size
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
    position_accuracy = float(oxts_values[23])
    return fix_type(
        header=_header(stamp_ns, frame_id),
        status=status_type(status=status_type.STATUS_FIX, service=status_type.SERVICE_GPS),
        latitude=float(oxts_values[0]), longitude=float(oxts_values[1]), altitude=float(oxts_values[2]),
        position_covariance=np.diag([position_accuracy**2] * 3).reshape(-1),
        position_covariance_type=fix_type.COVARIANCE_TYPE_APPROXIMATED)


def tf_static_message(transforms: Sequence[tuple[str, str, np.ndarray]], stamp_ns: int):
    """tf2_msgs/TFMessage (rosbags type) of (parent, child, (4,4) pose) transforms."""
    types = TYPESTORE.types
    stamped = []
    for parent, child, pose in transforms:
        qx, qy, qz, qw = Rotation.from_matrix(pose[:3, :3]).as_quat()
        translation = types["geometry_msgs/msg/Vector3"](x=float(pose[0, 3]), y=float(pose[1, 3]), z=float(pose[2, 3]))
        rotation = types["geometry_msgs/msg/Quaternion"](x=float(qx), y=float(qy), z=float(qz), w=float(qw))
        stamped.append(types["geometry_msgs/msg/TransformStamped"](
            header=_header(stamp_ns, parent), child_frame_id=child,
            transform=types["geometry_msgs/msg/Transform"](translation=translation, rotation=rotation)))
    return types[TF_MESSAGE_TYPE](transforms=stamped)


def _image_file(drive_dir: Path, camera: int, frame: int) -> Path | None:
    for ext in IMAGE_EXTENSIONS:
        path = drive_dir / f"image_0{camera}" / "data" / f"{frame:010d}{ext}"
        if path.is_file():
            return path
    return None


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


def _plan_messages(drive_dir: Path, calib: StereoCalibration, imu_to_velo: np.ndarray, frames: list[int],
                   with_right: bool, with_velodyne: bool, with_gps: bool) -> list[_Message]:
    """Every message of the bag, in bag-time order, each built (files read) only when written."""
    cameras = [LEFT_CAMERA] + ([RIGHT_CAMERA] if with_right and (drive_dir / "image_03").is_dir() else [])
    plan: list[_Message] = []
    for camera in cameras:
        camera_frames = [f for f in frames if _image_file(drive_dir, camera.kitti_camera, f) is not None]
        stamps = _stamps(drive_dir / f"image_0{camera.kitti_camera}" / "timestamps.txt", camera_frames)
        for frame in camera_frames:
            stamp = int(stamps[frame])
            path = _image_file(drive_dir, camera.kitti_camera, frame)
            plan.append(_Message(stamp, camera.image_topic, IMAGE_TYPE,
                                 lambda p=path, s=stamp, c=camera: image_message(load_image(p), s, c.frame_id)))
            plan.append(_Message(stamp, camera.info_topic, CAMERA_INFO_TYPE,
                                 lambda s=stamp, c=camera: camera_info_message(calib, c, s)))
    velo_dir = drive_dir / "velodyne_points"
    if with_velodyne and velo_dir.is_dir():
        velo_frames = [f for f in frames if (velo_dir / "data" / f"{f:010d}.bin").is_file()]
        stamps = _stamps(velo_dir / "timestamps.txt", velo_frames)
        for frame in velo_frames:
            stamp, path = int(stamps[frame]), velo_dir / "data" / f"{frame:010d}.bin"
            plan.append(_Message(stamp, VELO_TOPIC, POINTCLOUD_TYPE,
                                 lambda p=path, s=stamp: pointcloud_message(load_velodyne_points(p), s)))
    oxts_dir = drive_dir / "oxts"
    if with_gps and oxts_dir.is_dir():
        gps_frames = [f for f in frames if (oxts_dir / "data" / f"{f:010d}.txt").is_file()]
        stamps = _stamps(oxts_dir / "timestamps.txt", gps_frames)
        for frame in gps_frames:
            stamp, path = int(stamps[frame]), oxts_dir / "data" / f"{frame:010d}.txt"
            plan.append(_Message(stamp, GPS_TOPIC, NAVSATFIX_TYPE,
                                 lambda p=path, s=stamp: navsatfix_message(np.loadtxt(p, ndmin=1), s)))
    plan.sort(key=lambda message: message.stamp_ns)
    first_stamp = plan[0].stamp_ns
    transforms = static_transforms(calib, imu_to_velo, cameras)
    return [_Message(first_stamp, TF_STATIC_TOPIC, TF_MESSAGE_TYPE, lambda: tf_static_message(transforms, first_stamp)), *plan]


def convert_drive(drive_dir: str | Path, bag_path: str | Path, storage: str = "mcap",
                  frame_range: tuple[int | None, int | None] = (None, None), with_right: bool = True,
                  with_velodyne: bool = True, with_gps: bool = True, progress: bool = True) -> ConversionSummary:
    """Write the KITTI raw drive `drive_dir` (`<root>/<date>/<date>_drive_<n>_sync`) as a rosbag2 at `bag_path`.

    The calibration files are read from the date folder above the drive. `frame_range` (start, stop)
    limits the left-camera frame indices to start <= i < stop. Raises FileNotFoundError / ValueError
    naming the missing drive, calibration or timestamp file, or FileExistsError if `bag_path` exists.
    """
    drive_dir, bag_path = Path(drive_dir), Path(bag_path)
    if storage not in STORAGE_PLUGINS:
        raise ValueError(f"storage must be one of {sorted(STORAGE_PLUGINS)}, got {storage!r}")
    if not drive_dir.is_dir():
        raise FileNotFoundError(f"KITTI drive folder not found: {drive_dir}")
    if bag_path.exists():
        raise FileExistsError(f"output bag {bag_path} exists already; choose a new path")
    try:
        calib = load_stereo_calibration(drive_dir.parent)
        imu_to_velo = load_imu_to_velo(drive_dir.parent)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error} (KITTI raw keeps calib_*.txt in the date folder above the drive)") from None

    start, stop = frame_range
    frames = [f for f in list_frames(drive_dir, camera=LEFT_CAMERA.kitti_camera)
              if (start is None or f >= start) and (stop is None or f < stop)]
    if not frames:
        raise ValueError(f"no left-camera frames in {drive_dir / 'image_02' / 'data'} within {start}:{stop}")
    plan = _plan_messages(drive_dir, calib, imu_to_velo, frames, with_right, with_velodyne, with_gps)

    with Writer(bag_path, version=BAG_VERSION, storage_plugin=STORAGE_PLUGINS[storage]) as writer:
        connections = {}
        for message in plan:
            if message.topic not in connections:
                connections[message.topic] = writer.add_connection(
                    message.topic, message.msgtype, typestore=TYPESTORE,
                    offered_qos_profiles=[LATCHED_QOS if message.topic == TF_STATIC_TOPIC else SENSOR_QOS])
        for message in tqdm(plan, desc=f"writing {bag_path.name}", unit="msg", disable=not progress):
            writer.write(connections[message.topic], message.stamp_ns,
                         TYPESTORE.serialize_cdr(message.build(), message.msgtype))
    return ConversionSummary(bag_path, dict(Counter(message.topic for message in plan)), frames)


def main(argv: Sequence[str] | None = None) -> int:
    """`siam-depth-kitti2bag DRIVE_DIR OUT_BAG [--storage mcap|sqlite3] [--frames A:B] [--no-right] ...`."""
    parser = argparse.ArgumentParser(
        prog="siam-depth-kitti2bag", description="Convert a KITTI raw drive (…/<date>/<date>_drive_<n>_sync, "
        "calibration in the date folder) into a rosbag2 with camera, camera_info, Velodyne, GPS and /tf_static.")
    parser.add_argument("drive_dir", type=Path, help="KITTI raw drive folder, e.g. kitti_raw/2011_09_26/"
                        "2011_09_26_drive_0009_sync")
    parser.add_argument("out_bag", type=Path, help="output bag folder (must not exist)")
    parser.add_argument("--storage", choices=sorted(STORAGE_PLUGINS), default="mcap",
                        help="rosbag2 storage plugin (default: mcap)")
    parser.add_argument("--frames", type=_frame_range_argument, default=(None, None), metavar="A:B",
                        help="only frames A <= i < B (either side may be left out)")
    parser.add_argument("--no-right", action="store_true", help="leave out the right camera (image_03)")
    parser.add_argument("--no-velodyne", action="store_true", help="leave out /kitti/velo/pointcloud")
    parser.add_argument("--no-gps", action="store_true", help="leave out /kitti/oxts/gps/fix")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        summary = convert_drive(args.drive_dir, args.out_bag, storage=args.storage, frame_range=args.frames,
                                with_right=not args.no_right, with_velodyne=not args.no_velodyne,
                                with_gps=not args.no_gps, progress=not args.quiet)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"siam-depth-kitti2bag: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {summary.bag_path} ({args.storage}, frames {summary.frames[0]}..{summary.frames[-1]}):")
    for topic, count in sorted(summary.messages_per_topic.items()):
        print(f"  {topic}: {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
