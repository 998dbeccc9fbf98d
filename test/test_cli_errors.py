"""Every CLI answers bad input with one line `<prog>: error: ...` and exit code 2 (no usage block, no traceback)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from siam_depth_core.network.checkpoint import ModelMeta, save_checkpoint

DRIVE_0023 = "2011_09_26/2011_09_26_drive_0023_sync"


def _exit_code(main: Callable[[list[str]], int], arguments: list[str]) -> int:
    try:
        return main(arguments)
    except SystemExit as exit_info:  # argparse errors
        return int(exit_info.code)


def _assert_one_line(code: int, stderr: str, prog: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip() and " INFO: " not in line and " WARNING: " not in line]
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), stderr
    assert "Traceback" not in stderr and "usage:" not in stderr


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    meta = ModelMeta(net_width=0.125, max_disp=0.1, height=64, width=128)
    return save_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt", meta.build_network(), meta)


@pytest.mark.parametrize("case", ["negative warm-up", "unknown option", "corrupt checkpoint", "missing stereo folder",
                                  "unwritable out-dir", "missing street-prior drive", "no frames", "zero max-images"])
def test_eval_bad_input(case: str, tiny_checkpoint: Path, kitti_root: Path, drive_0023: Path, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    from siam_depth_core.evaluation.evaluate import main

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 not a zip")
    (tmp_path / "file").write_text("")
    common = ["--checkpoint", str(tiny_checkpoint), "--drives", DRIVE_0023, "--data-root", str(kitti_root),
              "--out-dir", str(tmp_path / "eval"), "--vis", "0", "--street-prior", "none"]
    arguments = {
        "negative warm-up": [*common, "--warmup-frames", "-1"],
        "unknown option": [*common, "--warm-start", "3"],
        "corrupt checkpoint": ["--checkpoint", str(corrupt), *common[2:]],
        "missing stereo folder": [*common, "--stereo2015", str(tmp_path / "k15")],
        "unwritable out-dir": [*common, "--stereo2015", "none", "--out-dir", str(tmp_path / "file" / "eval")],
        "missing street-prior drive": [*common[:-2], "--stereo2015", "none", "--street-prior", "2011_01_01/none"],
        "no frames": [*common, "--frames", "99"],
        "zero max-images": [*common, "--max-images", "0"],
    }[case]
    _assert_one_line(_exit_code(main, arguments), capsys.readouterr().err, "siam-depth-eval")


@pytest.mark.parametrize(("module", "arguments"), [
    ("model_latency", ["--sizes", "500x250"]),
    ("model_latency", ["--frames", "-3"]),
    ("model_latency", ["--backends", "cuda_magic"]),
    ("param_counts", ["--widths", "0"]),
    ("param_counts", ["--size", "wide"]),
    ("run_all", ["--only", "nothing"]),
    ("onnx_profile", ["--size", "500x250"]),
    ("onnx_profile", ["--modes", "twice"]),
    ("onnx_profile", ["--frames", "0"]),
])
def test_benchmark_bad_input(module: str, arguments: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    import importlib

    main = importlib.import_module(f"benchmarks.{module}").main
    _assert_one_line(_exit_code(main, arguments), capsys.readouterr().err, module)


def test_train_usage_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from siam_depth_core.training.train import main

    _assert_one_line(_exit_code(main, ["--sett", "lr=1"]), capsys.readouterr().err, "siam-depth-train")
