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


@pytest.mark.parametrize("prog", ["siam-depth-eval", "siam-depth-export", "siam-depth-predict"])
def test_a_missing_checkpoint_says_what_to_do(prog: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 27, item 12: `error: <what>, <what to do>`, as every CLI error."""
    from siam_depth_core.evaluation.evaluate import main as evaluate
    from siam_depth_core.runtime.export import main as export
    from siam_depth_core.runtime.predict import main as predict

    missing = str(tmp_path / "missing.pt")
    main, arguments = {
        "siam-depth-eval": (evaluate, ["--checkpoint", missing, "--out-dir", str(tmp_path / "eval")]),
        "siam-depth-export": (export, ["--checkpoint", missing, "--onnx", str(tmp_path / "model.onnx")]),
        "siam-depth-predict": (predict, [str(tmp_path), "--checkpoint", missing, "--out-dir", str(tmp_path / "out")]),
    }[prog]
    stderr = (_exit_code(main, arguments), capsys.readouterr().err)
    _assert_one_line(*stderr, prog)
    assert f"{prog}: error: checkpoint not found: {missing}, give the path of a siam_depth checkpoint (.pt)" in stderr[1]


def test_export_without_flags_leaves_nothing_untracked_in_a_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 27, item 12: `siam-depth-export` with no flags writes <checkpoint stem>.onnx and its .onnx.json sidecar
    into the current folder (where a user expects them); in a checkout of this repo git ignores both."""
    import subprocess

    from siam_depth_core.runtime.export import main as export

    monkeypatch.chdir(tmp_path)
    assert export([]) == 0
    written = sorted(path.name for path in tmp_path.iterdir())
    assert written == ["siam_depth_small.onnx", "siam_depth_small.onnx.json"], written
    repo = Path(__file__).resolve().parents[1]
    for name in [*written, "siam_depth_small.int8.onnx", "siam_depth_small.int8.onnx.json"]:
        ignored = subprocess.run(["git", "-C", str(repo), "check-ignore", "-q", "--no-index", name], check=False)
        assert ignored.returncode == 0, f"git would show {name} as untracked"
