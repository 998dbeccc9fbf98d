"""DDP on CPU (gloo, 2 processes) gives the same weights as 1 process on the same global batch."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from siam_depth_core.network.checkpoint import read_checkpoint
from siam_depth_core.training.config import load_config
from siam_depth_core.training.train import LAST_CHECKPOINT, train

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with the gloo backend is not available in this build")


def _config(out_dir: Path) -> list[str]:
    return ["dataset=synthetic", "synthetic_clips=8", "clip_len=2", "size=[64,128]", "net_width=0.125",
            "batch_size=4", "epochs=1", "max_steps=2", "num_workers=0", "image_interval=0", "lr=1e-3",
            f"out_dir={out_dir}"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    train(load_config(None, _config(Path(out_dir))))


def test_two_gloo_processes_match_one_process_on_the_same_global_batch(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / "ddp")), nprocs=2, join=True)
    ddp_weights = read_checkpoint(tmp_path / "ddp" / LAST_CHECKPOINT)["model"]

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        assert name not in os.environ, f"{name} leaked into the test process"
    single = train(load_config(None, _config(tmp_path / "single")))
    assert single.step == 2
    single_weights = read_checkpoint(tmp_path / "single" / LAST_CHECKPOINT)["model"]

    torch.manual_seed(0)
    initial = load_config(None, _config(tmp_path / "unused"))
    from siam_depth_core.network.model import SiamDepthNet

    untrained = SiamDepthNet(width_multiplier=initial.net_width).state_dict()
    moved = max((single_weights[k] - untrained[k]).abs().max().item() for k in untrained)
    assert moved > 1e-4, "training did not change the weights; the comparison would be vacuous"
    largest_gap = max((ddp_weights[k] - single_weights[k]).abs().max().item() for k in single_weights)
    # the all-reduce sums in another order than one process; Adam's step (about lr per weight whatever the gradient
    # size) magnifies that rounding where a gradient is near zero. A batch half left out moves weights by ~lr.
    assert largest_gap < 0.05 * moved, f"DDP and 1-process weights differ by {largest_gap} (training moved {moved})"
