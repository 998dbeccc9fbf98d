"""Planning the bag: every message of a drive in bag-time order (`BagPlanner`), each to be built from its
file only when written, for the sensors asked for (`ConversionRequest`); a requested sensor whose folder is
missing or that lacks some frames is warned about on the `siam_depth_ros.kitti2bag` logger.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from siam_depth_core.data.kitti import KittiDrive, load_image, load_velodyne_points
from siam_depth_core.data.oxts import load_oxts
from siam_depth_ros.kitti2bag_drive import (
    DriveCalibration,
    load_gray_image,
    read_frame_stamps,
    world_poses,
)
from siam_depth_ros.kitti2bag_messages import (
    BASE_FRAME,
    CAMERA_INFO_TYPE,
    COMPRESSED_IMAGE_TYPE,
    GPS_TOPIC,
    GRAY_LEFT_CAMERA,
    GRAY_RIGHT_CAMERA,
    IMAGE_TYPE,
    IMU_TOPIC,
    IMU_TYPE,
    LEFT_CAMERA,
    NAVSATFIX_TYPE,
    POINTCLOUD_TYPE,
    RIGHT_CAMERA,
    TF_MESSAGE_TYPE,
    TF_STATIC_TOPIC,
    TF_TOPIC,
    VELO_TOPIC,
    WORLD_FRAME,
    CameraStream,
    camera_info_message,
    compressed_image_message,
    image_message,
    imu_message,
    navsatfix_message,
    pointcloud_message,
    static_transforms,
    transforms_message,
)
from siam_depth_ros.kitti2bag_writer import BagMessage

#: The converter's logger (the CLI prints its warnings).
LOGGER = logging.getLogger("siam_depth_ros.kitti2bag")


@dataclass(frozen=True)
class ConversionRequest:
    """What to write: the sensors asked for and how."""

    with_right: bool
    with_gray: bool
    with_velodyne: bool
    with_gps: bool
    with_imu: bool
    with_pose: bool
    compressed: bool
    jpeg_quality: int


class BagPlanner:
    """Every message of the bag in bag-time order, each built (files read) only when written; notes warnings."""

    def __init__(self, drive: KittiDrive, calib: DriveCalibration, frames: list[int], request: ConversionRequest) -> None:
        self.drive, self.calib, self.frames, self.request = drive, calib, frames, request
        self.messages: list[BagMessage] = []
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

    def plan(self) -> list[BagMessage]:
        cameras = self.cameras()
        for camera in cameras:
            self._plan_camera(camera)
        self._plan_velodyne()
        self._plan_oxts()
        self.messages.sort(key=lambda message: message.stamp_ns)
        first_stamp = self.messages[0].stamp_ns
        transforms = static_transforms(self.calib, cameras)
        return [BagMessage(first_stamp, TF_STATIC_TOPIC, TF_MESSAGE_TYPE,
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
        stamps = read_frame_stamps(self.drive.timestamps_path(camera.folder), camera_frames)
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
            self.messages.append(BagMessage(stamp, topic, msgtype, lambda p=path, s=stamp: build(p, s), path))
            self.messages.append(BagMessage(stamp, camera.info_topic, CAMERA_INFO_TYPE,
                                          lambda s=stamp: camera_info_message(self.calib, camera, s)))

    def _plan_velodyne(self) -> None:
        if not self.request.with_velodyne or not self._present("velodyne_points", VELO_TOPIC, "--no-velodyne"):
            return
        def scan(frame: int) -> Path | None:
            path = self.drive.velodyne_path(frame)
            return path if path.is_file() else None

        velo_frames = self._frames_with("velodyne_points", scan)
        stamps = read_frame_stamps(self.drive.timestamps_path("velodyne_points"), velo_frames)
        for frame in velo_frames:
            stamp, path = int(stamps[frame]), scan(frame)
            self.messages.append(BagMessage(stamp, VELO_TOPIC, POINTCLOUD_TYPE,
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
        stamps = read_frame_stamps(self.drive.timestamps_path("oxts"), oxts_frames)
        records = load_oxts(self.drive, oxts_frames)  # small text files: read them now
        poses = world_poses(records)
        for frame, values, pose in zip(oxts_frames, records, poses, strict=True):
            stamp, path = int(stamps[frame]), record(frame)
            if request.with_gps:
                self.messages.append(BagMessage(stamp, GPS_TOPIC, NAVSATFIX_TYPE,
                                              lambda v=values, s=stamp: navsatfix_message(v, s), path))
            if request.with_imu:
                self.messages.append(BagMessage(stamp, IMU_TOPIC, IMU_TYPE, lambda v=values, s=stamp: imu_message(v, s),
                                              path))
            if request.with_pose:
                self.messages.append(BagMessage(
                    stamp, TF_TOPIC, TF_MESSAGE_TYPE,
                    lambda p=pose, s=stamp: transforms_message([(WORLD_FRAME, BASE_FRAME, p)], s), path))
