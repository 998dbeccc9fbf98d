"""The validation stream: held-out frames with a gap, their scores through the streaming estimator, and
training that keeps best.pt by validation (with M+S: the pose network saved and restored)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from siam_depth_core.data.depth_hints import DepthHintCache
from siam_depth_core.data.holdout import split_validation
from siam_depth_core.data.kitti import kitti_raw_sequence
from siam_depth_core.data.stereo import StereoRig, StereoSequence
from siam_depth_core.network.checkpoint import load_model, read_checkpoint
from siam_depth_core.network.model import SiamDepthNet
from siam_depth_core.training.config import load_config
from siam_depth_core.training.train import BEST_CHECKPOINT, LAST_CHECKPOINT, build_dataset, train
from siam_depth_core.training.validation import LidarStream, ValidationStream, validate

DRIVE_0009 = "2011_09_26/2011_09_26_drive_0009_sync"
SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "models" / "siam_depth_small.pt"


def _sequence(name: str, count: int) -> StereoSequence:
    rig = StereoRig(0.5, np.diag([700.0, 700.0, 1.0]), (1242, 375))
    return StereoSequence(name, tuple(range(100, 100 + count)), tuple(Path(f"l{i}") for i in range(count)),
                          tuple(Path(f"r{i}") for i in range(count)), rig, tuple(0.1 * i for i in range(count)))


def test_holdout_takes_the_last_frames_and_leaves_a_gap() -> None:
    training, validation = split_validation([_sequence("a", 51), _sequence("b", 20)], ["a"], 10, 5)
    assert [s.name for s in training] == ["a", "b"] and [s.name for s in validation] == ["a"]
    assert training[0].frames == tuple(range(100, 136)) and validation[0].frames == tuple(range(141, 151))
    assert validation[0].left[0] == Path("l41") and validation[0].stamps_s[0] == pytest.approx(4.1)
    assert min(validation[0].frames) - max(training[0].frames) == 6  # frames 136-140 used by neither
    assert len(training[1].frames) == 20
    with pytest.raises(ValueError, match="not among the training sequences"):
        split_validation([_sequence("a", 51)], ["c"], 10, 5)
    with pytest.raises(ValueError, match="too few"):
        split_validation([_sequence("b", 20)], ["b"], 10, 10)


@pytest.mark.parametrize(("override", "message"), [
    ("temporal.frames=[2]", "temporal.frames"),
    ("temporal.weight=1.5", "temporal.weight"),
    ("temporal.enable=true", "unknown temporal key"),
    ("validation.holdout_frames=0", "holdout_frames"),
    ("augment_scale=[0.8,1.0]", "augment_scale"),
])
def test_bad_temporal_validation_and_zoom_settings_are_named(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_config(None, [override])


def test_nested_settings_merge_key_by_key() -> None:
    config = load_config(None, ["temporal.enabled=true", "validation.sequences=[odometry/06]"])
    assert config.temporal.enabled and config.temporal.frames == [-1, 1] and config.temporal.context_frames == 1
    assert config.validation.sequences == ["odometry/06"] and config.validation.gap_frames == 5


@pytest.fixture(scope="module")
def hints_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One Depth Hints cache for this module's tests (they score the same held-out frames)."""
    return tmp_path_factory.mktemp("hints")


def test_validation_scores_respond_to_the_model(kitti_root: Path, drive_0009: Path, hints_dir: Path,
                                                one_torch_thread) -> None:
    """The shipped model (trained on these frames) scores far better than an untrained network."""
    _, held_out = split_validation([kitti_raw_sequence(kitti_root, DRIVE_0009)], [DRIVE_0009], 3, 0)
    stream = ValidationStream.with_lidar_if_any(held_out[0], str(kitti_root))
    assert stream.lidar_drive is not None
    hints = DepthHintCache(hints_dir)
    trained_net, meta = load_model(SHIPPED_MODEL)
    trained = validate(trained_net, meta, [stream], hints)
    untrained = validate(SiamDepthNet(width_multiplier=meta.net_width, max_disp=meta.max_disp), meta, [stream], hints)
    assert set(trained) == {"score", "photometric", "hint_error", "ard_hint", "ard_lidar", f"{DRIVE_0009}/score"}
    assert trained["score"] == trained["ard_lidar"] < 0.2 < untrained["score"]
    assert trained["photometric"] < untrained["photometric"] and trained["ard_hint"] < untrained["ard_hint"]
    assert trained_net.training  # validate leaves the network ready to train on


def test_training_with_m_s_keeps_best_by_validation_and_the_pose_network(kitti_root: Path, drive_0009: Path,
                                                                         hints_dir: Path, tmp_path: Path,
                                                                         one_torch_thread) -> None:
    common = [f"sources=[{{kind: kitti_raw, drives: [{DRIVE_0009}]}}]", "exclude_eigen_test=false",
              "size=[64,192]", "net_width=0.125", "clip_len=1", "batch_size=8", "num_workers=0", "image_interval=0",
              "temporal.enabled=true", f"validation.sequences=[{DRIVE_0009}]", "validation.holdout_frames=3",
              "validation.gap_frames=2", f"hints_cache_dir={hints_dir}", f"out_dir={tmp_path / 'run'}",
              "augment_scale=[1.0,1.2]"]
    config = load_config(None, [*common, "epochs=1"])
    data = build_dataset(config)
    assert len(data.dataset) == 46 - 2 and data.dataset[0]["left"].shape == (3, 3, 64, 192)
    assert data.dataset[0]["camera_matrix"].shape == (3, 3)
    summary = train(config)
    assert summary.epoch == 1 and summary.step == 44 // 8
    best = read_checkpoint(tmp_path / "run" / BEST_CHECKPOINT)
    last = read_checkpoint(tmp_path / "run" / LAST_CHECKPOINT)
    assert best["validation"]["score"] == pytest.approx(last["best_validation_score"])
    assert {"ard_lidar", "photometric"} <= set(best["validation"])
    assert "pose_model" in last and "pose_model" not in best  # best.pt is the depth network only
    pose_weights = {k: v.clone() for k, v in last["pose_model"].items()}
    assert train(load_config(None, [*common, "epochs=2"])).step == 2 * (44 // 8)  # resumes, pose net restored
    moved = read_checkpoint(tmp_path / "run" / LAST_CHECKPOINT)["pose_model"]
    assert any(not torch.equal(pose_weights[k], moved[k]) for k in moved)
    with pytest.raises(ValueError, match="trained with temporal.enabled"):
        train(load_config(None, [*common, "epochs=3", "temporal.enabled=false"]))


def test_a_lidar_only_drive_is_scored_by_its_lidar_and_never_trained_on(kitti_root: Path, drive_0009: Path,
                                                                      one_torch_thread) -> None:
    """validation.lidar_drives: every frame with a scan, left camera only, ard_lidar as the score; a drive that is
    also a training sequence is refused."""
    stream = LidarStream.of_drive(kitti_root, DRIVE_0009)
    assert stream.frames == tuple(range(51))
    short = LidarStream(stream.drive, stream.frames[:3])
    trained_net, meta = load_model(SHIPPED_MODEL)
    trained = validate(trained_net, meta, [short], None)
    untrained = validate(SiamDepthNet(width_multiplier=meta.net_width, max_disp=meta.max_disp), meta, [short], None)
    assert set(trained) == {"score", "ard_lidar", f"{DRIVE_0009}/score"}
    assert trained["score"] == trained["ard_lidar"] < 0.2 < untrained["score"]
    with pytest.raises(FileNotFoundError, match="validation drive .* not found"):
        LidarStream.of_drive(kitti_root, "2011_09_26/2011_09_26_drive_0001_sync")
    config = load_config(None, [f"sources=[{{kind: kitti_raw, drives: [{DRIVE_0009}]}}]", "exclude_eigen_test=false",
                                f"validation.lidar_drives=[{DRIVE_0009}]", f"validation.lidar_root={kitti_root}"])
    with pytest.raises(ValueError, match="also a training sequence"):
        build_dataset(config)



def test_every_validation_stream_weighs_the_same_in_the_score(kitti_root: Path, drive_0009: Path, hints_dir: Path,
                                                              one_torch_thread) -> None:
    """A 4-frame LiDAR stream and a 2-frame held-out block of odometry 06: `score` is the mean of the two stream
    scores, not of the six frames."""
    from siam_depth_core.data.odometry import odometry_sequence
    from siam_depth_core.data.paths import kitti_odometry_root

    if not (kitti_odometry_root() / "sequences" / "06").is_dir():
        pytest.skip(f"KITTI odometry 06 not found under {kitti_odometry_root()}")
    _, held_out = split_validation([odometry_sequence(kitti_odometry_root(), "06")], ["odometry/06"], 2, 0)
    full = LidarStream.of_drive(kitti_root, DRIVE_0009)
    lidar = LidarStream(full.drive, full.frames[:4])
    net, meta = load_model(SHIPPED_MODEL)
    scores = validate(net, meta, [ValidationStream(held_out[0]), lidar], DepthHintCache(hints_dir))
    odometry, drive = scores["odometry/06/score"], scores[f"{DRIVE_0009}/score"]
    assert scores["score"] == pytest.approx((odometry + drive) / 2)
    assert scores["score"] != pytest.approx((2 * odometry + 4 * drive) / 6)
