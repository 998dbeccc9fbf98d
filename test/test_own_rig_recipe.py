"""Issue 27, item 9: the README's own-rig recipe works verbatim — a config outside training/configs/ names a
shipped config as its `base`, and `init_from` of the shipped model trains at the model's size."""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from siam_depth_core.network.checkpoint import read_checkpoint, save_checkpoint
from siam_depth_core.training.config import load_config
from siam_depth_core.training.train import main

REPO = Path(__file__).resolve().parents[1]
SHIPPED_MODEL = REPO / "models" / "siam_depth_small.pt"
TINY = ["dataset=synthetic", "net_width=0.125", "num_workers=0", "image_interval=0"]


def _readme_recipe() -> tuple[str, list[str]]:
    """The README's my_rig.yaml block and the train command that follows it."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```yaml\n(# my_rig\.yaml.*?)```\s*```bash\n(siam-depth-train [^\n]*)\n", text, re.S)
    assert match, "README.md has no my_rig.yaml block followed by its siam-depth-train command"
    return match.group(1), match.group(2).split()[1:]


def _write_stereo_bag(path: Path, left_topic: str, right_topic: str, frames: int = 8) -> None:
    """A rosbag2 (MCAP) of a rectified stereo pair: textured frames at 10 Hz and the camera_info of each camera."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types = store.types
    fx, baseline, (height, width) = 200.0, 0.3, (96, 320)
    rng = np.random.default_rng(0)
    scene = (rng.random((height, width + 40, 3)) * 255).astype(np.uint8)

    def header(stamp_ns: int, frame: str):
        time = types["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
        return types["std_msgs/msg/Header"](stamp=time, frame_id=frame)

    def info(stamp_ns: int, frame: str, tx: float):
        k = np.array([fx, 0, width / 2, 0, fx, height / 2, 0, 0, 1], dtype=np.float64)
        p = np.array([fx, 0, width / 2, tx, 0, fx, height / 2, 0, 0, 0, 1, 0], dtype=np.float64)
        roi = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        return types["sensor_msgs/msg/CameraInfo"](header=header(stamp_ns, frame), height=height, width=width,
                                                   distortion_model="plumb_bob", d=np.zeros(5), k=k,
                                                   r=np.eye(3).reshape(-1), p=p, binning_x=0, binning_y=0, roi=roi)

    def image(stamp_ns: int, frame: str, pixels: np.ndarray):
        return types["sensor_msgs/msg/Image"](header=header(stamp_ns, frame), height=height, width=width,
                                              encoding="rgb8", is_bigendian=0, step=3 * width,
                                              data=np.ascontiguousarray(pixels).reshape(-1))

    info_topic = {topic: topic.rsplit("/", 1)[0] + "/camera_info" for topic in (left_topic, right_topic)}
    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {topic: writer.add_connection(topic, msgtype, typestore=store) for topic, msgtype in (
            (left_topic, "sensor_msgs/msg/Image"), (right_topic, "sensor_msgs/msg/Image"),
            (info_topic[left_topic], "sensor_msgs/msg/CameraInfo"),
            (info_topic[right_topic], "sensor_msgs/msg/CameraInfo"))}
        for index in range(frames):
            stamp = 10**9 + index * 10**8
            left = scene[:, 2 * index + 8:2 * index + 8 + width]
            right = scene[:, 2 * index:2 * index + width]  # 8 px of disparity
            for topic, message, msgtype in (
                    (info_topic[left_topic], info(stamp, "left", 0.0), "sensor_msgs/msg/CameraInfo"),
                    (info_topic[right_topic], info(stamp, "right", -fx * baseline), "sensor_msgs/msg/CameraInfo"),
                    (left_topic, image(stamp, "left", left), "sensor_msgs/msg/Image"),
                    (right_topic, image(stamp, "right", right), "sensor_msgs/msg/Image")):
                writer.write(connections[topic], stamp, store.serialize_cdr(message, msgtype))


def test_the_readme_own_rig_recipe_trains_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("rosbags", reason="reading bags needs the rosbags package (pip install rosbags)")
    config_text, arguments = _readme_recipe()
    recipe = yaml.safe_load(config_text)
    source = recipe["sources"][0]
    monkeypatch.chdir(tmp_path)  # a user's folder: my_rig.yaml, models/ and bags/ side by side, no training/configs
    monkeypatch.setenv("SIAM_DEPTH_CACHE", str(tmp_path / "cache"))
    Path("my_rig.yaml").write_text(config_text)
    Path("models").mkdir()
    os.symlink(SHIPPED_MODEL, recipe["init_from"])
    Path(source["root"]).parent.mkdir(parents=True)
    _write_stereo_bag(Path(source["root"]), source["left_topic"], source["right_topic"])

    with caplog.at_level(logging.INFO, logger="siam_depth"):  # a quick run: one step, no worker processes
        assert main([*arguments, "--set", "max_steps=1", "--set", "num_workers=0"]) == 0
    shipped = read_checkpoint(SHIPPED_MODEL)["meta"]
    trained = read_checkpoint(Path(recipe["out_dir"]) / "best.pt")["meta"]
    assert (trained["height"], trained["width"]) == (shipped["height"], shipped["width"]) == (128, 416)
    assert trained["net_width"] == shipped["net_width"] and trained["max_disp"] == shipped["max_disp"]
    size_lines = [r.getMessage() for r in caplog.records if "size" in r.getMessage() and "init_from" in r.getMessage()]
    assert len(size_lines) == 1 and "(128, 416)" in size_lines[0] and "(96, 320)" in size_lines[0], size_lines


def test_a_base_name_resolves_next_to_the_config_first_then_in_the_shipped_configs(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text("base: small.yaml\nepochs: 3\n")
    config = load_config(mine)
    assert (config.net_width, tuple(config.size), config.epochs) == (0.25, (96, 320), 3)  # small.yaml's, then mine
    (tmp_path / "small.yaml").write_text("base: paper.yaml\nnet_width: 0.5\n")  # a file of the user's own wins
    assert load_config(mine).net_width == 0.5
    (tmp_path / "missing.yaml").write_text("base: no_such_base.yaml\n")
    with pytest.raises(FileNotFoundError, match=r"no_such_base\.yaml.*training/configs"):
        load_config(tmp_path / "missing.yaml")


def test_init_from_takes_the_checkpoints_size_unless_the_config_sets_it(tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    meta_config = load_config(None, [*TINY, "size=[64,128]"])
    from siam_depth_core.training.checkpoints import model_meta
    from siam_depth_core.training.dataset_setup import build_dataset

    meta = model_meta(meta_config, build_dataset(load_config(None, [*TINY, "synthetic_clips=1"])).rig)
    source = save_checkpoint(tmp_path / "source.pt", meta.build_network(), meta)
    base = tmp_path / "base.yaml"
    base.write_text("dataset: synthetic\nsize: [96, 192]\nnet_width: 0.125\n")
    child = tmp_path / "child.yaml"
    child.write_text(f"base: base.yaml\ninit_from: {source}\n")
    with caplog.at_level(logging.INFO, logger="siam_depth"):
        assert tuple(load_config(child).size) == (64, 128)  # the base's size gives way to the checkpoint's
    assert any("(64, 128)" in r.getMessage() and "(96, 192)" in r.getMessage() for r in caplog.records)
    assert tuple(load_config(child, ["size=[96,192]"]).size) == (96, 192)  # --set says otherwise
    child.write_text(f"base: base.yaml\ninit_from: {source}\nsize: [32, 64]\n")
    assert tuple(load_config(child).size) == (32, 64)  # so does the user's own file
    assert tuple(load_config(None, [*TINY, "size=[96,192]", f"init_from={source}"]).size) == (96, 192)
