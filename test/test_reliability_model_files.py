"""Damaged model files: a corrupt, truncated, mismatched or wrong-version checkpoint, ONNX model or
TensorRT engine gives one clear error through DepthEstimator that names the file and the problem.

Checkpoint and ONNX cases run everywhere; the engine cases need an NVIDIA GPU with TensorRT (an
engine cannot be deserialised without one) and skip with that reason otherwise.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from siam_depth_core.network.checkpoint import CheckpointError, ModelMeta, save_checkpoint
from siam_depth_core.runtime.backends import BackendError
from siam_depth_core.runtime.backends.sidecar import file_sha256, sidecar_path
from siam_depth_core.runtime.backends.source import CheckpointSource, EngineSource, OnnxSource, RuntimeOptions
from siam_depth_core.runtime.backends.tensorrt_backend import verified_onnx
from siam_depth_core.runtime.export import export_onnx
from siam_depth_core.runtime.inference import DepthEstimator

NET_SIZE = (64, 128)  # (H, W)
OTHER_SIZE = (96, 160)
MODEL_FILE_ERRORS = (CheckpointError, BackendError, ValueError)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny checkpoint, its ONNX export (+ sidecar) and an export of a wider network of the same size."""
    folder = tmp_path_factory.mktemp("model_files")
    torch.manual_seed(0)
    meta = ModelMeta(net_width=0.125, height=NET_SIZE[0], width=NET_SIZE[1])
    net = meta.build_network().eval()
    wider_meta = ModelMeta(net_width=0.25, height=NET_SIZE[0], width=NET_SIZE[1])
    files = {"checkpoint": save_checkpoint(folder / "tiny.pt", net, meta), "onnx": folder / "tiny.onnx",
             "wider_onnx": folder / "wider.onnx", "other_size_onnx": folder / "other_size.onnx"}
    export_onnx(net, meta, NET_SIZE, files["onnx"])
    export_onnx(wider_meta.build_network().eval(), wider_meta, NET_SIZE, files["wider_onnx"])
    export_onnx(net, meta, OTHER_SIZE, files["other_size_onnx"])
    return files


def _copy(source: Path, target: Path) -> Path:
    """Copy a model file and its sidecar (if any) to `target`."""
    shutil.copyfile(source, target)
    if sidecar_path(source).is_file():
        shutil.copyfile(sidecar_path(source), sidecar_path(target))
    return target


def _truncate(fraction: float) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[:int(len(data) * fraction)])
    return damage


def _random_bytes(path: Path) -> None:
    size = path.stat().st_size
    path.write_bytes(torch.randint(0, 256, (size,), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
                     .numpy().tobytes())


def _flip_bytes_in_the_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = bytes(255 - byte for byte in data[middle:middle + 4096])
    path.write_bytes(bytes(data))


def _edit_checkpoint(edit: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        payload = torch.load(path, weights_only=False)
        edit(payload)
        torch.save(payload, path)
    return damage


def _edit_sidecar(edit: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        sidecar = json.loads(sidecar_path(path).read_text())
        edit(sidecar)
        sidecar_path(path).write_text(json.dumps(sidecar))
    return damage


CHECKPOINT_CASES = {
    "empty file": (_truncate(0.0), r"is corrupt or truncated"),
    "truncated to 1 byte": (_truncate(1e-9), r"is corrupt or truncated"),
    "truncated to half": (_truncate(0.5), r"is corrupt or truncated"),
    "truncated by the last bytes": (_truncate(0.99), r"is corrupt or truncated"),
    "random bytes": (_random_bytes, r"is corrupt or truncated"),
    "inverted bytes in the middle": (_flip_bytes_in_the_middle, r"is corrupt: its record .* fails the CRC check"),
    "a plain tensor file": (lambda path: torch.save(torch.zeros(3), path),
                            r"is not a siam_depth checkpoint \(format 'Tensor'"),
    "newer format version": (_edit_checkpoint(lambda payload: payload.update(format="siam_depth/2")),
                             r"is not a siam_depth checkpoint \(format 'siam_depth/2', expected 'siam_depth/1'\)"),
    "no weights": (_edit_checkpoint(lambda payload: payload.pop("model")), r"has no 'model' entry"),
    "weights of another width": (_edit_checkpoint(lambda payload: payload["meta"].update(net_width=0.25)),
                                 r"does not match its declared architecture"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", list(CHECKPOINT_CASES))
def test_damaged_checkpoint_names_file_and_problem(model_files: dict[str, Path], tmp_path: Path, case: str) -> None:
    damage, problem = CHECKPOINT_CASES[case]
    path = _copy(model_files["checkpoint"], tmp_path / "damaged.pt")
    damage(path)
    with pytest.raises(MODEL_FILE_ERRORS) as raised:
        DepthEstimator(CheckpointSource(path))
    message = str(raised.value)
    assert str(path) in message and re.search(problem, message), message


def test_missing_checkpoint_or_a_directory_names_the_path(tmp_path: Path) -> None:
    for path in (tmp_path / "missing.pt", tmp_path):
        with pytest.raises(CheckpointError, match=rf"checkpoint not found: {re.escape(str(path))}, give the path of a "):
            DepthEstimator(CheckpointSource(path))


def _swap_model(source_key: str) -> Callable[[dict[str, Path], Path], None]:
    """Replace the ONNX file (keeping its sidecar) by another export: the sidecar no longer describes it."""
    def damage(files: dict[str, Path], path: Path) -> None:
        shutil.copyfile(files[source_key], path)
    return damage


def _damage_file(damage: Callable[[Path], None]) -> Callable[[dict[str, Path], Path], None]:
    return lambda files, path: damage(path)


ONNX_CASES = {
    "empty file": (_damage_file(_truncate(0.0)), r"cannot be loaded \(corrupt or truncated\?\)"),
    "truncated to half": (_damage_file(_truncate(0.5)), r"cannot be loaded \(corrupt or truncated\?\)"),
    "truncated by the last bytes": (_damage_file(_truncate(0.99)), r"cannot be loaded \(corrupt or truncated\?\)"),
    "random bytes": (_damage_file(_random_bytes), r"cannot be loaded \(corrupt or truncated\?\)"),
    "inverted bytes in the middle": (_damage_file(_flip_bytes_in_the_middle),
                                     r"does not match its sidecar .*: its sha256 is .*damaged or replaced"),
    "sidecar missing": (_damage_file(lambda path: sidecar_path(path).unlink()), r"model sidecar not found"),
    "sidecar not JSON": (_damage_file(lambda path: sidecar_path(path).write_text("{ not json")),
                         r"model sidecar .* is malformed"),
    "sidecar of a newer format version": (
        _damage_file(_edit_sidecar(lambda sidecar: sidecar.update(format="siam_depth_export/2"))),
        r"model sidecar .* is malformed: format 'siam_depth_export/2', expected 'siam_depth_export/1'"),
    "sidecar of another size": (
        _damage_file(_edit_sidecar(lambda sidecar: sidecar.update(height=OTHER_SIZE[0], width=OTHER_SIZE[1]))),
        r"does not match its sidecar"),
    "model of another size": (_swap_model("other_size_onnx"), r"does not match its sidecar"),
    "model of another width": (_swap_model("wider_onnx"), r"does not match its sidecar"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", list(ONNX_CASES))
def test_damaged_onnx_names_file_and_problem(model_files: dict[str, Path], tmp_path: Path, case: str) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (onnx extra)")
    damage, problem = ONNX_CASES[case]
    path = _copy(model_files["onnx"], tmp_path / "damaged.onnx")
    damage(model_files, path)
    with pytest.raises(MODEL_FILE_ERRORS) as raised:
        DepthEstimator(OnnxSource(path))
    message = str(raised.value)
    assert str(path) in message and re.search(problem, message), message


def test_onnx_damaged_in_the_middle_is_refused_by_the_tensorrt_build_path(model_files: dict[str, Path],
                                                                        tmp_path: Path) -> None:
    """The check the engine build runs on its ONNX (no GPU needed: it happens before TensorRT is used)."""
    path = _copy(model_files["onnx"], tmp_path / "damaged.onnx")
    sidecar, sha256 = verified_onnx(path)
    assert sha256 == sidecar.onnx_sha256 == file_sha256(model_files["onnx"])
    _flip_bytes_in_the_middle(path)
    with pytest.raises(BackendError, match=rf"ONNX model {re.escape(str(path))} does not match its sidecar"):
        verified_onnx(path)


def test_onnx_whose_sidecar_records_no_hash_loads_with_a_warning(model_files: dict[str, Path], tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """A sidecar of an export made before the ONNX hash was recorded: usable, but damage goes undetected."""
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (onnx extra)")
    path = _copy(model_files["onnx"], tmp_path / "older_export.onnx")
    _edit_sidecar(lambda sidecar: sidecar.pop("onnx_sha256"))(path)
    with caplog.at_level(logging.WARNING, logger="siam_depth_core"):
        estimator = DepthEstimator(OnnxSource(path))
    assert estimator.input_size == NET_SIZE
    assert any(str(path) in record.getMessage() and "records no onnx_sha256" in record.getMessage()
               for record in caplog.records), caplog.text


def test_onnx_of_another_size_than_requested_names_both_sizes(model_files: dict[str, Path]) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (onnx extra)")
    with pytest.raises(ValueError, match=r"requested network size 160x96 but the onnxruntime model was exported "
                                         r"for 128x64"):
        DepthEstimator(OnnxSource(model_files["onnx"]), RuntimeOptions(input_size=OTHER_SIZE))


def _tensorrt_runtime_missing() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA GPU: TensorRT engines can only be deserialised on an NVIDIA GPU"
    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt package is not installed ([trt] extra)"
    return None


ENGINE_CASES = {
    "truncated to half": (_truncate(0.5), r"cannot be loaded: corrupt, truncated"),
    "random bytes": (_random_bytes, r"cannot be loaded: corrupt, truncated"),
    "built by another TensorRT version": (
        _edit_sidecar(lambda sidecar: sidecar["tensorrt"].update(version="9.0.0")),
        r"was built for version '9.0.0' \(here '[^']+'\); pass the ONNX file"),
    "built for another GPU": (_edit_sidecar(lambda sidecar: sidecar["tensorrt"].update(gpu="Jetson AGX Orin")),
                              r"was built for gpu 'Jetson AGX Orin'"),
    "sidecar of another size": (_edit_sidecar(lambda sidecar: sidecar.update(height=OTHER_SIZE[0], width=OTHER_SIZE[1])),
                                r"does not match its sidecar"),
    "sidecar missing": (lambda path: sidecar_path(path).unlink(), r"model sidecar not found"),
}


@pytest.fixture(scope="module")
def engine(model_files: dict[str, Path]) -> Path:
    reason = _tensorrt_runtime_missing()
    if reason:
        pytest.skip(reason)
    engine_path = model_files["onnx"].with_suffix(".engine")
    DepthEstimator(EngineSource(engine_path, model_files["onnx"]))
    return engine_path


@pytest.mark.timeout(300)
@pytest.mark.parametrize("case", list(ENGINE_CASES))
def test_damaged_engine_names_file_and_problem(engine: Path, tmp_path: Path, case: str) -> None:
    damage, problem = ENGINE_CASES[case]
    path = _copy(engine, tmp_path / "damaged.engine")
    damage(path)
    with pytest.raises(MODEL_FILE_ERRORS) as raised:
        DepthEstimator(EngineSource(path))  # no ONNX: nothing to rebuild from
    message = str(raised.value)
    assert str(path) in message and re.search(problem, message), message
