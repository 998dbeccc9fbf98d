"""benchmarks.onnx_profile: ONNX Runtime's profiler summed per operator type and per network part."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime", reason="the profile runs ONNX Runtime")


def test_profile_splits_the_step_time_into_operator_types_and_network_parts(tmp_path: Path) -> None:
    from benchmarks.onnx_profile import main

    assert main(["--size", "128x64", "--threads", "1", "--frames", "2", "--warmup", "1", "--modes", "single",
                 "--json", str(tmp_path / "profile.json")]) == 0
    (profile,) = json.loads((tmp_path / "profile.json").read_text())["profiles"]
    assert profile["mode"] == "single" and profile["precision"] == "fp32" and profile["steps"] == 2
    by_op, by_part = profile["by_op_type"], profile["by_part"]
    assert "Conv" in by_op and {"ConvLSTM (7a/7b + skips)", "encoder", "decoder"} <= set(by_part)
    assert sum(by_op.values()) == pytest.approx(sum(by_part.values()))  # the same kernels, grouped two ways
    assert 0 < sum(by_op.values()) < 10 * profile["step_ms"]


def test_node_names_map_to_network_parts() -> None:
    from benchmarks.onnx_profile import network_part

    assert network_part("/net/convlstm_skip3/gates/Conv") == "ConvLSTM (7a/7b + skips)"
    assert network_part("/net/convlstm7a/Sigmoid") == "ConvLSTM (7a/7b + skips)"
    assert network_part("/net/deconv2/deconv2.1/Conv") == network_part("/net/iconv2a/iconv2a.0/Conv") == "decoder"
    assert network_part("/net/conv3b/conv3b.0/Conv") == "encoder"
    assert network_part("Concat_4") == network_part("/net/MaxPool_1") == "pool, concat, resize, flip, refine"
