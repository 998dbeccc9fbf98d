"""Training sources in configs: kinds, validation, KITTI raw + odometry mixed into one clip set."""
from __future__ import annotations

from pathlib import Path

import pytest

from siam_depth_core.data.sources import SourceSpec, load_source
from siam_depth_core.training.config import load_config

DRIVE_0009 = "2011_09_26/2011_09_26_drive_0009_sync"
MIXED = ["sources=[{kind: kitti_raw, drives: [2011_09_26/2011_09_26_drive_0009_sync]}, "
         "{kind: kitti_odometry, sequences: [01, 02, 06]}]", "exclude_eigen_test=false"]


def test_yaml_sequence_numbers_and_all_are_read_as_names():
    config = load_config(None, ["sources=[{kind: kitti_odometry, sequences: [01, 2, '06']}]"])
    assert config.sources[0].sequences == ["01", "02", "06"]
    config = load_config(None, ["sources=[{kind: kitti_odometry, sequences: all}]"])
    assert config.sources[0].sequences == ["all"]


@pytest.mark.parametrize(("sources", "message"), [
    ("[{kind: nuscenes}]", "source kind must be one of"),
    ("[{kind: kitti_raw}]", "needs `drives` or `split`"),
    ("[{kind: kitti_odometry}]", "needs `sequences`"),
    ("[{kind: kitti_odometry, sequences: [1], drives: [a]}]", "does not take drives"),
    ("[{kind: kitti_odometry, sequence: [1]}]", "unknown source key"),
    ("[kitti]", "must be a mapping"),
])
def test_bad_sources_are_named(sources: str, message: str):
    with pytest.raises(ValueError, match=message):
        load_config(None, [f"sources={sources}"])


def test_without_sources_the_legacy_fields_make_one_kitti_raw_source():
    config = load_config(None, ["drives=[a/b]", "data_root=/data"])
    assert config.training_sources() == [SourceSpec(kind="kitti_raw", root="/data", drives=["a/b"])]


def test_all_odometry_sequences_with_one_line(shared_data: Path):
    config = load_config(None, ["sources=[{kind: kitti_odometry, sequences: [all]}]"])
    names = [s.name for s in load_source(config.sources[0])]
    assert names == ["odometry/01", "odometry/02", "odometry/06"]


def test_eigen_test_drives_are_excluded_from_raw_sources(kitti_root: Path, drive_0009: Path):
    spec = SourceSpec(kind="kitti_raw", drives=[DRIVE_0009])
    with pytest.raises(ValueError, match="Eigen test drive"):
        load_source(spec, excluded_drives={DRIVE_0009})
    assert [s.name for s in load_source(spec)] == [DRIVE_0009]


def test_mixed_sources_give_one_clip_set_with_the_first_rig_as_reference(kitti_root: Path, drive_0009: Path,
                                                                         shared_data: Path):
    from siam_depth_core.training.train import build_dataset

    config = load_config(None, MIXED + ["size=[32,96]", "clip_len=3", "augment=false"])
    data = build_dataset(config)
    dataset, rig = data.dataset, data.rig
    names = {name for name, _ in dataset.clips}
    assert names == {DRIVE_0009, "odometry/01", "odometry/02", "odometry/06"}
    assert len(dataset) == 49 + 49 + 18 + 49
    assert rig.baseline_m == pytest.approx(0.5327, abs=1e-4) and rig.image_size == (1242, 375)


def test_a_root_may_name_an_environment_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    spec = SourceSpec(kind="kitti_raw", root="${SIAM_DEPTH_EXTRA_DATA}/kitti_raw", drives=["d"])
    monkeypatch.setenv("SIAM_DEPTH_EXTRA_DATA", str(tmp_path))
    assert spec.data_root() == tmp_path / "kitti_raw"
    monkeypatch.delenv("SIAM_DEPTH_EXTRA_DATA")
    with pytest.raises(ValueError, match="SIAM_DEPTH_EXTRA_DATA} is not set|SIAM_DEPTH_EXTRA_DATA is not set"):
        spec.data_root()
