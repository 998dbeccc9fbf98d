"""Issue 27, item 10: a checkpoint records the frames it was trained on, and `siam-depth-eval` says loudly when
the frames it scores are among them (the shipped model trained on frames of drive 0009, an Eigen test drive)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from siam_depth_core.evaluation.evaluate import main as evaluate_main
from siam_depth_core.network.checkpoint import ModelMeta, load_model, read_checkpoint, save_checkpoint
from siam_depth_core.trained_frames import frame_ranges, trained_on, training_overlap, training_record
from siam_depth_core.training.config import load_config
from siam_depth_core.training.train import train

REPO = Path(__file__).resolve().parents[1]
SHIPPED_MODEL = REPO / "models" / "siam_depth_small.pt"
DRIVE_0009 = "2011_09_26/2011_09_26_drive_0009_sync"
#: What models/README.md says the shipped model trained on (stage 1 on all 173 pairs, stage 2 on the same).
SHIPPED_TRAINING_FRAMES = [{"sequence": DRIVE_0009, "frames": [[0, 50]]},
                           {"sequence": "odometry/01", "frames": [[0, 50]]},
                           {"sequence": "odometry/02", "frames": [[0, 19]]},
                           {"sequence": "odometry/06", "frames": [[0, 50]]}]
QUICK_EVAL = ["--stereo2015", "none", "--no-tae", "--street-prior", "none", "--vis", "0"]


def test_frame_ranges_records_and_overlap() -> None:
    assert frame_ranges([5, 0, 1, 2, 2, 7, 6]) == [[0, 2], [5, 7]]
    record = training_record([("odometry/06", range(10, 20))],
                             inherited=[{"sequence": "odometry/06", "frames": [[0, 4]]},
                                        {"sequence": DRIVE_0009, "frames": [[0, 50]]}])
    assert record == [{"sequence": "odometry/06", "frames": [[0, 4], [10, 19]]},
                      {"sequence": DRIVE_0009, "frames": [[0, 50]]}]
    scored = [(DRIVE_0009, 16), (DRIVE_0009, 60), ("2011_09_26_drive_0009_sync", 48), ("odometry/06", 7)]
    assert training_overlap(record, scored) == {DRIVE_0009: [16], "2011_09_26_drive_0009_sync": [48]}
    assert trained_on({}) is None and trained_on({"trained_on": []}) == []  # old checkpoints: unknown


def _stereo_folder(folder: Path, frames: int) -> Path:
    rng = np.random.default_rng(1)
    scene = (rng.random((64, 168, 3)) * 255).astype(np.uint8)
    for side, shift in (("left", 8), ("right", 0)):
        (folder / side).mkdir(parents=True)
        for index in range(frames):
            cv2.imwrite(str(folder / side / f"{index:04d}.png"), scene[:, index + shift:index + shift + 128])
    (folder / "stereo.yaml").write_text("fx: 100.0\ncx: 64.0\ncy: 32.0\nbaseline: 0.3\n")
    return folder


def test_training_records_its_frames_and_those_of_its_init_from(tmp_path: Path) -> None:
    meta = ModelMeta(net_width=0.125, max_disp=0.1, height=64, width=128,
                     extra={"trained_on": [{"sequence": DRIVE_0009, "frames": [[0, 50]]}]})
    parent = save_checkpoint(tmp_path / "parent.pt", meta.build_network(), meta)
    folder = _stereo_folder(tmp_path / "rig", frames=6)
    options = ["net_width=0.125", "max_disp=0.1", "size=[64,128]", "clip_len=2", "batch_size=2", "max_steps=1",
               "num_workers=0", "image_interval=0", "exclude_eigen_test=false", "augment=false",
               f"sources=[{{kind: stereo_folder, root: '{folder}'}}]", f"out_dir={tmp_path / 'run'}"]
    train(load_config(None, [*options, f"init_from={parent}"]))
    record = read_checkpoint(tmp_path / "run" / "last.pt")["meta"]["extra"]["trained_on"]
    assert record == [{"sequence": DRIVE_0009, "frames": [[0, 50]]}, {"sequence": "folder/rig", "frames": [[0, 5]]}]
    assert load_model(tmp_path / "run" / "last.pt")[1].extra["trained_on"] == record

    train(load_config(None, [*options, f"out_dir={tmp_path / 'fresh'}"]))  # no init_from: this run's frames only
    fresh = read_checkpoint(tmp_path / "fresh" / "last.pt")["meta"]["extra"]["trained_on"]
    assert fresh == [{"sequence": "folder/rig", "frames": [[0, 5]]}]


def _tiny_checkpoint(path: Path, **extra) -> Path:
    torch.manual_seed(0)
    meta = ModelMeta(net_width=0.125, max_disp=0.1, height=64, width=192, extra=dict(extra))
    return save_checkpoint(path, meta.build_network(), meta)


def test_eval_warns_in_the_table_when_it_scores_training_frames(tmp_path: Path, kitti_root: Path, drive_0009: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--drives", DRIVE_0009, "--frames", "0,16,60", "--data-root", str(kitti_root), *QUICK_EVAL]
    if not (drive_0009 / "image_02" / "data" / "0000000060.png").is_file():
        common[3] = "0,16"
    trained = _tiny_checkpoint(tmp_path / "trained.pt", trained_on=[{"sequence": DRIVE_0009, "frames": [[0, 50]]}])
    assert evaluate_main(["--checkpoint", str(trained), *common, "--out-dir", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out
    scored = len(common[3].split(","))
    warning = (f"WARNING: 2 of the {scored} scored frames are training frames of this checkpoint ({DRIVE_0009} "
               "frames 0, 16): not a test score")
    assert warning in printed.splitlines()
    assert printed.index("Depth range: 0-80 meters") < printed.index(warning) < printed.index("Depth range: 1-50")
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["training_frames_scored"] == {DRIVE_0009: [0, 16]}

    for name, checkpoint in (("unknown", _tiny_checkpoint(tmp_path / "old.pt")),  # written before the record
                             ("other", _tiny_checkpoint(tmp_path / "other.pt", trained_on=[
                                 {"sequence": "odometry/06", "frames": [[0, 50]]}]))):
        assert evaluate_main(["--checkpoint", str(checkpoint), *common, "--out-dir", str(tmp_path / name)]) == 0
        assert "WARNING" not in capsys.readouterr().out
    assert json.loads((tmp_path / "unknown" / "summary.json").read_text())["training_frames_scored"] is None
    assert json.loads((tmp_path / "other" / "summary.json").read_text())["training_frames_scored"] == {}


def test_the_shipped_model_records_its_training_frames_and_eval_flags_its_eigen_frames(
        tmp_path: Path, kitti_root: Path, drive_0009: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]
        ) -> None:
    assert read_checkpoint(SHIPPED_MODEL)["meta"]["extra"]["trained_on"] == SHIPPED_TRAINING_FRAMES
    # the command: siam-depth-eval --checkpoint models/siam_depth_small.pt --split eigen --skip-missing
    assert evaluate_main(["--checkpoint", str(SHIPPED_MODEL), "--split", "eigen", "--skip-missing",
                          "--data-root", str(kitti_root), "--splits-dir", str(shared_data / "splits" / "monodepth2"),
                          *QUICK_EVAL, "--out-dir", str(tmp_path / "eval")]) == 0
    assert (f"WARNING: 4 of the 4 scored frames are training frames of this checkpoint ({DRIVE_0009} frames 0, 16, "
            "32, 48): not a test score") in capsys.readouterr().out
