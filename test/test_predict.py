"""siam-depth-predict: folder, video and rosbag2 inputs streamed with state; 16-bit mm PNG, colour PNG with bar,
.npy, PLY; intrinsics from YAML, camera_info or the fallback; one-line errors."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from siam_depth_core.network.checkpoint import ModelMeta, save_checkpoint
from siam_depth_core.runtime.predict import depth_to_png_mm, main, read_intrinsics

DRIVE_0023 = "2011_09_26/2011_09_26_drive_0023_sync"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    meta = ModelMeta(net_width=0.125, max_disp=0.1, height=64, width=128)
    return save_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt", meta.build_network(), meta)


@pytest.fixture(scope="module")
def images_0023(kitti_root: Path, drive_0023: Path) -> Path:
    return drive_0023 / "image_02" / "data"


def test_depth_png_is_millimetres_with_zero_for_invalid_and_too_far():
    png = depth_to_png_mm(np.array([[1.2345, np.nan, 70.0, 65.535, -1.0]]))
    assert png.dtype == np.uint16 and png.tolist() == [[1234, 0, 0, 65535, 0]]


def test_a_folder_is_streamed_into_every_output(tiny_checkpoint: Path, images_0023: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "out"
    assert main([str(images_0023), "--checkpoint", str(tiny_checkpoint), "--out-dir", str(out), "--npy", "--ply",
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "7 frames" in printed and "fallback fx = 0.58 x width" in printed
    names = sorted(p.stem for p in (out / "depth").glob("*.png"))
    assert names == [f"{i:010d}" for i in range(7)]
    depth_png = cv2.imread(str(out / "depth" / f"{3:010d}.png"), cv2.IMREAD_UNCHANGED)
    depth_m = np.load(out / "npy" / f"{3:010d}.npy")
    assert depth_png.dtype == np.uint16 and depth_png.shape == depth_m.shape == (375, 1242)
    np.testing.assert_array_equal(depth_png, depth_to_png_mm(depth_m))
    color = cv2.imread(str(out / "color" / f"{3:010d}.png"))
    assert color.shape[0] == 375 and color.shape[1] > 1242  # the colour bar is beside the picture
    header = (out / "ply" / f"{3:010d}.ply").read_bytes()[:300].decode("ascii", "replace")
    vertices = int(header.split("element vertex ")[1].split()[0])
    assert header.startswith("ply\nformat binary_little_endian") and 0 < vertices <= 188 * 621


def test_intrinsics_from_a_yaml_file_are_used_and_checked(tiny_checkpoint: Path, images_0023: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]):
    intrinsics = tmp_path / "k.yaml"
    intrinsics.write_text("fx: 721.5\ncx: 609.6\ncy: 172.9\n")
    np.testing.assert_allclose(read_intrinsics(intrinsics)[:2], [[721.5, 0, 609.6], [0, 721.5, 172.9]])
    assert main([str(images_0023), "--checkpoint", str(tiny_checkpoint), "--out-dir", str(tmp_path / "out"),
                 "--intrinsics", str(intrinsics), "--quiet"]) == 0
    assert "intrinsics: --intrinsics" in capsys.readouterr().out
    intrinsics.write_text("fx: 721.5\n")
    with pytest.raises(ValueError, match="has no cx, cy"):
        read_intrinsics(intrinsics)


def test_a_video_file_is_read_frame_by_frame(tiny_checkpoint: Path, images_0023: Path, tmp_path: Path):
    video = tmp_path / "drive.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (1242, 375))
    for path in sorted(images_0023.glob("*.png")):
        writer.write(cv2.imread(str(path)))
    writer.release()
    assert main([str(video), "--checkpoint", str(tiny_checkpoint), "--out-dir", str(tmp_path / "out"), "--quiet"]) == 0
    assert len(list((tmp_path / "out" / "depth").glob("*.png"))) == 7


def test_a_bag_topic_uses_its_camera_info(tiny_checkpoint: Path, drive_0023: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]):
    pytest.importorskip("rosbags", reason="reading bags needs the rosbags package")
    from siam_depth_ros.kitti2bag import convert_drive

    bag = tmp_path / "bag"
    convert_drive(drive_0023, bag, with_right=False, with_velodyne=False, progress=False)
    assert main([str(bag), "--topic", "/kitti/camera_color_left/image_raw", "--checkpoint", str(tiny_checkpoint),
                 "--out-dir", str(tmp_path / "out"), "--quiet"]) == 0
    assert "intrinsics: camera_info in the bag" in capsys.readouterr().out
    assert len(list((tmp_path / "out" / "color").glob("*.png"))) == 7


@pytest.mark.parametrize("case", ["missing input", "bag without --topic", "corrupt checkpoint",
                                  "unwritable out-dir", "negative rate", "missing intrinsics", "not an input"])
def test_bad_input_is_one_line_and_exit_code_2(case: str, tiny_checkpoint: Path, images_0023: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00" * 32)
    (tmp_path / "bag").mkdir()
    (tmp_path / "bag" / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")
    (tmp_path / "file").write_text("")
    (tmp_path / "notes.txt").write_text("")
    model = ["--checkpoint", str(tiny_checkpoint)]
    out = ["--out-dir", str(tmp_path / "out")]
    arguments = {
        "missing input": [str(tmp_path / "nothing"), *model, *out],
        "bag without --topic": [str(tmp_path / "bag"), *model, *out],
        "corrupt checkpoint": [str(images_0023), "--checkpoint", str(corrupt), *out],
        "unwritable out-dir": [str(images_0023), *model, "--out-dir", str(tmp_path / "file" / "out")],
        "negative rate": [str(images_0023), *model, *out, "--rate", "-1"],
        "missing intrinsics": [str(images_0023), *model, *out, "--intrinsics", str(tmp_path / "k.yaml")],
        "not an input": [str(tmp_path / "notes.txt"), *model, *out],
    }[case]
    with pytest.raises(SystemExit) if case == "negative rate" else _no_exit() as exit_info:
        code = main(arguments)
    code = exit_info.value.code if case == "negative rate" else code
    stderr = capsys.readouterr().err
    lines = [line for line in stderr.splitlines() if "error" in line]
    assert code == 2 and len(lines) == 1 and "Traceback" not in stderr, stderr


class _no_exit:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False
