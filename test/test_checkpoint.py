"""Checkpoint files: round trip (fp32 and fp16), metadata, training state, and clear errors."""
from __future__ import annotations

import stat
from pathlib import Path

import pytest
import torch

from siam_depth_core.network.checkpoint import (
    FORMAT,
    CheckpointError,
    ModelMeta,
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from siam_depth_core.network.model import SiamDepthNet

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny networks: see conftest
META = ModelMeta(net_width=0.125, recurrent=True, siamese=True, height=64, width=128, baseline_m=0.54,
                 git_revision="abc123", extra={"dataset": "synthetic"})


def _net() -> SiamDepthNet:
    return SiamDepthNet(width_multiplier=META.net_width, recurrent=META.recurrent, max_disp=META.max_disp)


def _forward(net: SiamDepthNet, image: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net.eval()(image)[0][0]


def test_round_trip_restores_weights_meta_and_outputs(tmp_path: Path) -> None:
    net = _net()
    path = save_checkpoint(tmp_path / "run" / "model.pt", net, META)
    assert path == tmp_path / "run" / "model.pt" and path.is_file()
    loaded, meta = load_model(path)
    assert meta == META
    assert not loaded.training
    for name, tensor in net.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0)
    image = torch.rand(1, 3, 64, 128)
    torch.testing.assert_close(_forward(loaded, image), _forward(net, image), rtol=0, atol=0)


def test_half_checkpoint_stores_fp16_and_loads_fp32(tmp_path: Path) -> None:
    net = _net()
    full_path = save_checkpoint(tmp_path / "full.pt", net, META)
    half_path = save_checkpoint(tmp_path / "half.pt", net, META, half=True)
    stored = read_checkpoint(half_path)["model"]
    assert all(tensor.dtype == torch.float16 for tensor in stored.values())
    assert half_path.stat().st_size < 0.6 * full_path.stat().st_size
    loaded, _ = load_model(half_path)
    for name, tensor in net.state_dict().items():
        assert loaded.state_dict()[name].dtype == torch.float32
        torch.testing.assert_close(loaded.state_dict()[name], tensor.half().float(), rtol=0, atol=0)
    image = torch.rand(1, 3, 64, 128)
    torch.testing.assert_close(_forward(loaded, image), _forward(net, image), rtol=0, atol=2e-3)


def test_training_state_is_kept(tmp_path: Path) -> None:
    net = _net()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    path = save_checkpoint(tmp_path / "model.pt", net, META, optimizer=optimizer.state_dict(), epoch=7, step=1234)
    payload = read_checkpoint(path)
    assert payload["format"] == FORMAT
    assert payload["epoch"] == 7 and payload["step"] == 1234
    assert payload["optimizer"]["param_groups"][0]["lr"] == 1e-4


def test_non_recurrent_checkpoint_builds_the_plain_network(tmp_path: Path) -> None:
    meta = ModelMeta(net_width=0.125, recurrent=False, siamese=False)
    path = save_checkpoint(tmp_path / "plain.pt", SiamDepthNet(width_multiplier=0.125, recurrent=False), meta)
    loaded, loaded_meta = load_model(path)
    assert loaded.state_names == () and loaded_meta.siamese is False


def test_write_is_atomic_and_readable_by_others(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "model.pt", _net(), META)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left behind
    assert stat.S_IMODE(path.stat().st_mode) & 0o044 == 0o044


def test_missing_file_raises_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.pt"
    with pytest.raises(CheckpointError, match="not found.*absent.pt"):
        load_model(path)


def test_truncated_file_raises_checkpoint_error(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "model.pt", _net(), META)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.pt.*corrupt or truncated"):
        load_model(truncated)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pt"):
        read_checkpoint(empty)


def test_wrong_format_raises_checkpoint_error(tmp_path: Path) -> None:
    bare_state_dict = tmp_path / "state_dict.pt"
    torch.save(_net().state_dict(), bare_state_dict)
    with pytest.raises(CheckpointError, match="state_dict.pt is not a siam_depth checkpoint"):
        load_model(bare_state_dict)
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match="notes.txt"):
        load_model(text_file)
    no_model = tmp_path / "no_model.pt"
    torch.save({"format": FORMAT, "meta": {}}, no_model)
    with pytest.raises(CheckpointError, match="no_model.pt has no 'model' entry"):
        load_model(no_model)


def test_architecture_mismatch_raises_checkpoint_error(tmp_path: Path) -> None:
    wider = ModelMeta(net_width=0.25)
    path = save_checkpoint(tmp_path / "mismatch.pt", _net(), wider)
    with pytest.raises(CheckpointError, match="mismatch.pt does not match its declared architecture"):
        load_model(path)
