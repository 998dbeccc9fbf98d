"""What the trainer shows while it runs (rank 0 only): the console (the start line, a tqdm bar per epoch or plain
lines without a terminal, the validation scores) and TensorBoard under `<out_dir>/tensorboard` (`loss/<term>`,
`lr`, `epoch`, `val/<score>` and every `image_interval` steps the images of `image_summaries`).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from siam_depth_core.training.checkpoints import Progress
from siam_depth_core.training.config import TrainConfig
from siam_depth_core.training.distributed import DistributedContext
from siam_depth_core.training.losses import reconstruct_views
from siam_depth_core.training.step import StepResult
from siam_depth_core.training.validation import LidarStream, ValidationStream

LOGGER = logging.getLogger("siam_depth.train")


def summary_writer(out_dir: Path) -> Any:
    """A TensorBoard SummaryWriter into `<out_dir>/tensorboard`; ImportError saying what to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ImportError("TensorBoard logging needs the `tensorboard` package: pip install tensorboard") from error
    return SummaryWriter(log_dir=str(out_dir / "tensorboard"))


def log_start(config: TrainConfig, clips: int, device: torch.device, ctx: DistributedContext, temporal: bool,
              validation: Sequence[ValidationStream | LidarStream]) -> None:
    """One console line: what the run trains on, where, and what it validates on."""
    streams = ", ".join(f"{s.sequence.name} frames {s.sequence.frames[0]}-{s.sequence.frames[-1]}"
                        f"{' (LiDAR)' if s.lidar_drive else ''}" if isinstance(s, ValidationStream)
                        else f"{s.name} {len(s.frames)} frames (LiDAR only)" for s in validation)
    LOGGER.info("training on %d clips of %d frames, %s, %d process(es), global batch %d%s; validation: %s",
                clips, config.clip_len, device, ctx.world_size, config.batch_size,
                f", M+S (temporal frames {config.temporal.frames})" if temporal else "", streams or "none")


def progress_bar(loader: DataLoader, ctx: DistributedContext, progress: Progress, steps_per_epoch: int) -> Any:
    """A tqdm bar over the epoch's batches (off on other ranks; disabled by tqdm itself without a terminal)."""
    from tqdm import tqdm

    return tqdm(loader, desc=f"epoch {progress.epoch}", initial=progress.step_in_epoch, total=steps_per_epoch,
                disable=None if ctx.is_main else True, dynamic_ncols=True)


def log_step(writer: Any, bar: Any, config: TrainConfig, progress: Progress, result: StepResult,
             optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> None:
    """A step's loss terms, lr and images to TensorBoard, its loss on the bar (or as a plain line without one)."""
    _write_step(writer, config, progress, result, optimizer)
    bar.set_postfix(loss=f"{result.terms['total']:.4f}")
    if bar.disable and progress.step % config.log_interval == 0:  # no terminal: plain lines
        LOGGER.info("epoch %d step %d (%d/%d) lr %.3g %s", progress.epoch, progress.step,
                    progress.step_in_epoch, steps_per_epoch, optimizer.param_groups[0]["lr"],
                    " ".join(f"{k} {v:.4f}" for k, v in result.terms.items()))


def _write_step(writer: Any, config: TrainConfig, progress: Progress, result: StepResult,
                optimizer: torch.optim.Optimizer) -> None:
    if progress.step % config.log_interval == 0:
        for name, value in result.terms.items():
            writer.add_scalar(f"loss/{name}", value, progress.step)
        writer.add_scalar("lr", optimizer.param_groups[0]["lr"], progress.step)
        writer.add_scalar("epoch", progress.epoch, progress.step)
    if config.image_interval and progress.step % config.image_interval == 0:
        for name, image in image_summaries(result).items():
            writer.add_image(name, image, progress.step, dataformats="HWC")


def log_validation(writer: Any, progress: Progress, scores: dict[str, float]) -> None:
    """The validation scores of the epoch just finished: console line and TensorBoard `val/<name>`."""
    LOGGER.info("validation after epoch %d (step %d): %s", progress.epoch, progress.step,
                " ".join(f"{name} {value:.4f}" for name, value in scores.items()))
    if writer is not None:
        for name, value in scores.items():
            writer.add_scalar(f"val/{name}", value, progress.step)


def image_summaries(result: StepResult) -> dict[str, np.ndarray]:
    """(H,W,3) uint8 images of the first clip's last frame: inputs, refined disparities, warps."""
    from siam_depth_core.visualize import colorize

    with torch.no_grad():
        disp = result.last_output.disp_refined[0][:1].detach().float()
        left, right = result.last_left[:1].detach().float(), result.last_right[:1].detach().float()
        recon_left, recon_right = reconstruct_views(left, right,
                                                    result.last_output.disp_direct[0][:1].detach().float())

    def rgb(tensor: Tensor) -> np.ndarray:
        return (tensor[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)

    disp_left = disp[0, 0].cpu().numpy()
    disp_right = disp[0, 1].cpu().numpy()
    vmax = float(max(disp_left.max(), disp_right.max(), 1e-6))
    return {"image/left": rgb(left), "disparity/left": colorize(disp_left, 0.0, vmax),
            "disparity/right": colorize(disp_right, 0.0, vmax), "warp/left_from_right": rgb(recon_left),
            "warp/right_from_left": rgb(recon_right),
            "warp/left_error": rgb((recon_left - left).abs().mean(1, keepdim=True).expand(-1, 3, -1, -1))}
