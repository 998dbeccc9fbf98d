"""The command-line tools run the shipped model when no model is given, say so in one line, and fail in one line
when the installation has none."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from siam_depth_core.evaluation.evaluate import main as eval_main
from siam_depth_core.runtime import model_arguments as cli
from siam_depth_core.runtime.export import main as export_main
from siam_depth_core.runtime.predict import main as predict_main
from siam_depth_core.shipped_files import shipped_checkpoint

DRIVE_0023 = "2011_09_26/2011_09_26_drive_0023_sync"


@pytest.fixture
def shipped() -> Path:
    path = shipped_checkpoint()
    if path is None:
        pytest.skip("no shipped models/siam_depth_small.pt in this installation")
    return path


def _announced(stderr: str, prog: str, shipped: Path) -> bool:
    lines = [line for line in stderr.splitlines() if "shipped model" in line]
    return lines == [f"{prog}: no model given; using the shipped model {shipped}"]


def test_predict_without_a_model_flag_uses_the_shipped_model(shipped: Path, drive_0023: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str], one_torch_thread):
    images = tmp_path / "images"
    images.mkdir()
    for frame in (0, 1):
        shutil.copy(drive_0023 / "image_02" / "data" / f"{frame:010d}.png", images)
    assert predict_main([str(images), "--out-dir", str(tmp_path / "out"), "--quiet"]) == 0
    assert _announced(capsys.readouterr().err, "siam-depth-predict", shipped)
    assert len(list((tmp_path / "out" / "color").glob("*.png"))) == 2


def test_eval_without_a_model_flag_uses_the_shipped_model(shipped: Path, kitti_root: Path, drive_0023: Path,
                                                         tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         one_torch_thread):
    out = tmp_path / "eval"
    assert eval_main(["--drives", DRIVE_0023, "--frames", "0", "--data-root", str(kitti_root),
                      "--out-dir", str(out)]) == 0
    assert _announced(capsys.readouterr().err, "siam-depth-eval", shipped)
    assert json.loads((out / "summary.json").read_text())["model"] == str(shipped)


def test_export_without_arguments_writes_the_shipped_model_here(shipped: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]):
    monkeypatch.chdir(tmp_path)
    assert export_main([]) == 0
    assert _announced(capsys.readouterr().err, "siam-depth-export", shipped)
    assert (tmp_path / "siam_depth_small.onnx").is_file() and (tmp_path / "siam_depth_small.onnx.json").is_file()


def test_no_shipped_model_and_no_flag_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]):
    monkeypatch.setattr(cli, "shipped_checkpoint", lambda: None)
    assert eval_main(["--out-dir", str(tmp_path / "eval")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("siam-depth-eval: error: no model given and no shipped") and "Traceback" not in error
    assert len(error.strip().splitlines()) == 1
