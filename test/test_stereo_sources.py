"""Stereo sources beyond KITTI: a rosbag2 of a stereo rig and a plain stereo folder, built from the KITTI excerpt
by our own tools; training on them gives the same batches as training on the KITTI folders they came from."""
from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from siam_depth_core.data import rosbag_source
from siam_depth_core.data.clips import StereoClipDataset
from siam_depth_core.data.kitti import kitti_raw_sequence
from siam_depth_core.data.rosbag_source import (
    BagStereoTopics,
    bag_stereo_sequence,
    decode_image_message,
    frame_numbers,
    match_stamps,
    rig_from_camera_info,
)
from siam_depth_core.data.sources import SourceSpec, load_source
from siam_depth_core.data.stereo_folder import stereo_folder_sequence

DRIVE_0023 = "2011_09_26/2011_09_26_drive_0023_sync"
TOPICS = BagStereoTopics("/kitti/camera_color_left/image_raw", "/kitti/camera_color_right/image_raw")
SIZE = (64, 192)


@pytest.fixture(scope="module")
def bag_0023(kitti_root: Path, drive_0023: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("rosbags", reason="reading bags needs the rosbags package (pip install rosbags)")
    from siam_depth_ros.kitti2bag import convert_drive

    bag = tmp_path_factory.mktemp("bags") / "drive_0023"
    convert_drive(drive_0023, bag, progress=False)
    return bag


def _same_batches(first: StereoClipDataset, second: StereoClipDataset) -> None:
    assert len(first) == len(second)
    for index in range(len(first)):
        a, b = first[index], second[index]
        assert torch.equal(a["left"], b["left"]) and torch.equal(a["right"], b["right"]), index
        assert a["frames"].tolist() == b["frames"].tolist()
        assert a["depth_per_disparity"].item() == pytest.approx(b["depth_per_disparity"].item(), rel=1e-6)


def test_a_bag_of_the_kitti_drive_gives_the_same_batches_as_the_kitti_folders(bag_0023: Path, kitti_root: Path,
                                                                            tmp_path: Path):
    from_bag = bag_stereo_sequence(bag_0023, TOPICS, tmp_path / "cache")
    from_folders = kitti_raw_sequence(kitti_root, DRIVE_0023)
    assert from_bag.frames == from_folders.frames == tuple(range(7))
    assert from_bag.rig.baseline_m == pytest.approx(from_folders.rig.baseline_m, rel=1e-9)
    np.testing.assert_allclose(from_bag.rig.camera_matrix, from_folders.rig.camera_matrix)
    assert from_bag.rig.image_size == from_folders.rig.image_size
    assert from_bag.stamps_s is not None and 0.09 < from_bag.stamps_s[1] - from_bag.stamps_s[0] < 0.11
    _same_batches(StereoClipDataset([from_bag], clip_len=3, size=SIZE),
                  StereoClipDataset([from_folders], clip_len=3, size=SIZE))


def test_decoded_frames_are_reused_without_opening_the_bag(bag_0023: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    first = bag_stereo_sequence(bag_0023, TOPICS, tmp_path / "cache")
    monkeypatch.setattr(rosbag_source, "open_bag", lambda bag: pytest.fail("the bag was decoded again"))
    again = bag_stereo_sequence(bag_0023, TOPICS, tmp_path / "cache")
    assert again.left == first.left and again.rig.baseline_m == first.rig.baseline_m
    assert len(list((tmp_path / "cache").iterdir())) == 1  # no staging folder left behind


def test_rosbag2_source_in_a_config(bag_0023: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SIAM_DEPTH_CACHE", str(tmp_path))
    from siam_depth_core.training.config import load_config

    config = load_config(None, [f"sources=[{{kind: rosbag2, root: '{bag_0023}', "
                                f"left_topic: {TOPICS.left_image}, right_topic: {TOPICS.right_image}}}]"])
    (sequence,) = load_source(config.sources[0])
    assert sequence.name == "bag/drive_0023" and len(sequence.frames) == 7
    assert (tmp_path / "bag_frames").is_dir()


def test_missing_topic_and_tolerance_errors_name_the_problem(bag_0023: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="topic /cam/left is not in .*topics there: .*camera_color_left"):
        bag_stereo_sequence(bag_0023, BagStereoTopics("/cam/left", TOPICS.right_image), tmp_path)
    with pytest.raises(ValueError, match="carries sensor_msgs/msg/CameraInfo"):
        bag_stereo_sequence(bag_0023, BagStereoTopics("/kitti/camera_color_left/camera_info", TOPICS.right_image,
                                                      TOPICS.resolved().left_info), tmp_path)
    with pytest.raises(FileNotFoundError, match="bag not found"):
        bag_stereo_sequence(tmp_path / "nothing", TOPICS, tmp_path)
    assert not any(p.name.startswith(".") or "." in p.name for p in tmp_path.iterdir())  # no staging leftovers


def _info(width: int = 100, height: int = 50, fx: float = 80.0, cx: float = 50.0, tx: float = 0.0):
    return SimpleNamespace(width=width, height=height, p=[fx, 0, cx, tx, 0, fx, 25.0, 0, 0, 0, 1, 0])


def test_camera_info_must_describe_a_rectified_pair():
    rig = rig_from_camera_info(_info(), _info(tx=-80.0 * 0.3))
    assert rig.baseline_m == pytest.approx(0.3) and rig.image_size == (100, 50) and rig.fx == 80.0
    with pytest.raises(ValueError, match="differ in size"):
        rig_from_camera_info(_info(), _info(width=120, tx=-24.0))
    with pytest.raises(ValueError, match="Tx = 0"):
        rig_from_camera_info(_info(), _info())
    with pytest.raises(ValueError, match="not rectified"):
        rig_from_camera_info(_info(), _info(cx=60.0, tx=-24.0))
    with pytest.raises(ValueError, match="not calibrated"):
        rig_from_camera_info(_info(fx=0.0), _info(fx=0.0))


def test_pairs_are_matched_by_stamp_and_gaps_split_the_clips():
    left = np.array([0.0, 0.1, 0.2, 0.3, 0.9, 1.0])
    right = np.array([0.001, 0.102, 0.25, 0.3, 0.899, 1.0])
    assert match_stamps(left, right, 0.005) == [(0, 0), (1, 1), (3, 3), (4, 4), (5, 5)]
    # median period 0.15 s: one dropped pair (0.2 s) is not a gap, 0.6 s is
    assert frame_numbers(left[[0, 1, 3, 4, 5]]) == [0, 1, 2, 4, 5]


def test_raw_and_compressed_messages_decode_to_rgb():
    rgb = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    bgr_padded = np.zeros((6, 16), np.uint8)
    bgr_padded[:, :15] = rgb[..., ::-1].reshape(6, 15)
    raw = SimpleNamespace(encoding="bgr8", height=6, width=5, step=16, data=bgr_padded.ravel())
    np.testing.assert_array_equal(decode_image_message(raw, "sensor_msgs/msg/Image"), rgb)
    png = cv2.imencode(".png", rgb[..., ::-1])[1]
    compressed = SimpleNamespace(format="png", data=png.ravel())
    np.testing.assert_array_equal(decode_image_message(compressed, "sensor_msgs/msg/CompressedImage"), rgb)
    with pytest.raises(ValueError, match="unsupported image encoding '16UC1'"):
        decode_image_message(SimpleNamespace(encoding="16UC1"), "sensor_msgs/msg/Image")


def _stereo_folder(kitti_root: Path, folder: Path, calibration: str) -> Path:
    source = kitti_raw_sequence(kitti_root, DRIVE_0023)
    for side, files in (("left", source.left), ("right", source.right)):
        (folder / side).mkdir(parents=True)
        for index, path in enumerate(files):
            shutil.copy(path, folder / side / f"img_{index:03d}.png")
    (folder / "stereo.yaml").write_text(calibration)
    return folder


def test_a_stereo_folder_gives_the_same_batches_as_the_kitti_folders(kitti_root: Path, drive_0023: Path,
                                                                     tmp_path: Path):
    raw = kitti_raw_sequence(kitti_root, DRIVE_0023)
    k = raw.rig.camera_matrix
    folder = _stereo_folder(kitti_root, tmp_path / "rig", f"fx: {k[0, 0]}\ncx: {k[0, 2]}\ncy: {k[1, 2]}\n"
                                                         f"baseline: {raw.rig.baseline_m}\n")
    sequence = load_source(SourceSpec(kind="stereo_folder", root=str(folder)))[0]
    assert sequence.name == "folder/rig" and sequence.frames == tuple(range(7))
    assert sequence.rig.depth_per_disparity == pytest.approx(raw.rig.depth_per_disparity)
    _same_batches(StereoClipDataset([sequence], clip_len=2, size=SIZE), StereoClipDataset([raw], clip_len=2, size=SIZE))


def test_a_stereo_folder_frame_list_sets_the_order_and_bad_calibration_is_named(kitti_root: Path, drive_0023: Path,
                                                                                tmp_path: Path):
    folder = _stereo_folder(kitti_root, tmp_path / "rig", "fx: 700\ncx: 600\ncy: 180\nbaseline: 0.5\n"
                                                         "frames: [img_002, img_001.png]\n")
    sequence = stereo_folder_sequence(folder)
    assert [p.stem for p in sequence.left] == ["img_002", "img_001"]
    (folder / "stereo.yaml").write_text("fx: 700\ncx: 600\n")
    with pytest.raises(ValueError, match="has no cy, baseline"):
        stereo_folder_sequence(folder)
    (folder / "stereo.yaml").write_text("fx: -1\ncx: 600\ncy: 1\nbaseline: 0.5\n")
    with pytest.raises(ValueError, match="fx must be a positive number"):
        stereo_folder_sequence(folder)
    (folder / "stereo.yaml").write_text("fx: 700\ncx: 600\ncy: 1\nbaseline: 0.5\nframes: [img_009]\n")
    with pytest.raises(ValueError, match="without a left and right image: img_009"):
        stereo_folder_sequence(folder)
    with pytest.raises(FileNotFoundError, match="missing .*stereo.yaml"):
        stereo_folder_sequence(tmp_path)
