"""Split lists: monodepth2 `folder frame side` files, monodepth `.jpg` pair files, Eigen test drives, errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from siam_depth_core.data.splits import SplitEntry, eigen_test_drives, read_split, read_split_file

DRIVE_0009 = "2011_09_26/2011_09_26_drive_0009_sync"


@pytest.fixture(scope="module")
def monodepth2_splits(shared_data: Path) -> Path:
    return shared_data / "splits" / "monodepth2"


def test_eigen_test_split_has_697_frames_of_28_drives(monodepth2_splits: Path):
    entries = read_split("eigen", "test", monodepth2_splits)
    assert len(entries) == 697
    assert entries[0] == SplitEntry("2011_09_26/2011_09_26_drive_0002_sync", 69, "l")
    assert len({entry.drive for entry in entries}) == 28
    assert sorted(e.frame for e in entries if e.drive == DRIVE_0009 and e.frame <= 50) == [0, 16, 32, 48]


def test_eigen_zhou_train_has_both_sides_and_no_eigen_test_drive(monodepth2_splits: Path):
    entries = read_split("eigen_zhou", "train", monodepth2_splits)
    assert len(entries) == 39_810
    assert {entry.side for entry in entries} == {"l", "r"}
    assert {entry.camera for entry in entries} == {2, 3}
    assert not {entry.drive for entry in entries} & eigen_test_drives(monodepth2_splits)


def test_eigen_test_drives_include_the_shared_excerpts(monodepth2_splits: Path):
    drives = eigen_test_drives(monodepth2_splits)
    assert DRIVE_0009 in drives and "2011_09_26/2011_09_26_drive_0023_sync" in drives
    assert len(drives) == 28


def test_monodepth_jpg_pair_format_reads_as_the_same_frames(shared_data: Path, monodepth2_splits: Path):
    monodepth = read_split("eigen", "test", shared_data / "splits" / "monodepth")
    assert monodepth == read_split("eigen", "test", monodepth2_splits)


def test_missing_splits_folder_says_where_to_get_the_lists(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="monodepth2"):
        eigen_test_drives(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="test_files.txt"):
        read_split("eigen", "test", tmp_path)
    with pytest.raises(ValueError, match="subset"):
        read_split("eigen", "testing", tmp_path)


def test_bad_line_is_reported_with_its_line_number(tmp_path: Path):
    split_file = tmp_path / "files.txt"
    split_file.write_text(f"{DRIVE_0009} 3 r\n\n{DRIVE_0009} 4 x\n")
    with pytest.raises(ValueError, match=r"files.txt:3: split side must be 'l' or 'r'"):
        read_split_file(split_file)
    split_file.write_text("image 0\n")  # monodepth2's benchmark list names no KITTI raw frame
    with pytest.raises(ValueError, match="unsupported split line"):
        read_split_file(split_file)
    split_file.write_text(f"{DRIVE_0009} 3 r\n\n{DRIVE_0009}/image_03/data/0000000007.png x.png\n")
    assert read_split_file(split_file) == [SplitEntry(DRIVE_0009, 3, "r"), SplitEntry(DRIVE_0009, 7, "r")]
