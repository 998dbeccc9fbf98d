"""Training: `siam-depth-train --config training/configs/paper.yaml [--set key=value ...] [--resume PATH]`.

This module is the entry point: the CLI (`main`) and `train`, which picks the device, joins torchrun's process
group and runs a `Trainer`. The parts, each in its own module:

- `dataset_setup`: the data (`build_dataset`, with the held-out validation streams and the Depth Hints cache;
  `ResumableSampler` and each epoch's loader);
- `step`: the model step on one clip (`clip_step`: truncated BPTT over T frames, state reset at the clip
  start, losses summed, one optimiser step);
- `trainer`: the loop (`Trainer`: `run_epoch`, `train_step`, `end_epoch`; `make_optimizer`);
- `checkpoints`: checkpoint I/O (`save_training_checkpoint`, `restore_training_state`, `init_weights_from`,
  `save_epoch_checkpoints`);
- `distributed`: device and DDP set-up; `summaries`: console, progress bar and TensorBoard;
- losses (`losses`), M+S temporal supervision (`pose` network, `temporal_warp`, `temporal_loss`), EMA (`ema`),
  the validation scores (`validation`).

Validation (`validation.sequences`): the last frames of the named training sequences are held out
(`data.holdout`), scored every `validation.interval` epochs through the deployed streaming path, logged
to TensorBoard (`val/...`) and the console, and `best.pt` keeps the epoch with the lowest validation
score. Without a validation stream `best.pt` keeps the lowest mean training loss.

Multi-GPU / multi-node: launch with `torchrun`; each process reads RANK/WORLD_SIZE/LOCAL_RANK from the
environment, joins a process group (nccl on CUDA, gloo on CPU) and trains a DDP replica on its share
of each global batch (`batch_size` is global). Only rank 0 logs and writes checkpoints.
Resuming (`--resume PATH`, or automatically from `<out_dir>/last.pt`) restores weights, optimiser,
scheduler, scaler, RNG states and the position inside the epoch, so an interrupted run continues
exactly as if it had not stopped (bit-identical on CPU with a fixed number of threads).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist

from siam_depth_core.cli import OneLineParser
from siam_depth_core.training.checkpoints import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    init_weights_from,
    restore_training_state,
    save_training_checkpoint,
)
from siam_depth_core.training.config import TrainConfig, field_help, load_config
from siam_depth_core.training.dataset_setup import ResumableSampler, TrainingData, build_dataset
from siam_depth_core.training.distributed import DistributedContext, init_distributed, select_device
from siam_depth_core.training.step import ClipRig, StepResult, TemporalBatch, autocast_context, clip_step
from siam_depth_core.training.summaries import image_summaries
from siam_depth_core.training.trainer import Trainer, TrainSummary, make_optimizer

# The names scripts and tests import from here (the trainer's parts moved to their own modules in issue 26).
__all__ = ["BEST_CHECKPOINT", "LAST_CHECKPOINT", "ClipRig", "DistributedContext", "ResumableSampler", "StepResult",
           "TemporalBatch", "TrainSummary", "TrainingData", "autocast_context", "build_dataset", "clip_step",
           "image_summaries", "init_weights_from", "main", "make_optimizer", "nullcontext", "restore_training_state",
           "save_training_checkpoint", "train"]

LOGGER = logging.getLogger("siam_depth.train")


def train(config: TrainConfig, resume: str | Path | None = None) -> TrainSummary:
    """Run (or continue) the training `config` describes; see the module docstring."""
    device = select_device(config, int(os.environ.get("LOCAL_RANK", "0")))
    ctx = init_distributed(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        # clip_step is looked up here at each call, so a wrapper set on this module (tests) takes the steps
        return Trainer.create(config, resume, device, ctx, step_fn=clip_step).run()
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        if ctx.initialised_here:
            dist.destroy_process_group()


# ------------------------------------------------------------------------------------------- CLI
def _parser() -> OneLineParser:
    fields = "\n".join(f"  {name:<20} {help} (default: {default})" for name, help, default in field_help())
    parser = OneLineParser(
        prog="siam-depth-train", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train the Siamese ConvLSTM depth network on stereo video (KITTI raw or odometry, a rosbag2 of "
                    "your own rig, a stereo folder) or synthetic data.",
        epilog=f"config fields (YAML keys and --set names):\n{fields}\n\n"
               "examples:\n  siam-depth-train --config training/configs/paper.yaml\n"
               "  siam-depth-train --config training/configs/small.yaml --set max_steps=100 --set out_dir=runs/try\n"
               "  torchrun --nproc_per_node=4 -m siam_depth_core.training.train --config training/configs/paper.yaml")
    parser.add_argument("--config", help="YAML config file (fields below); omitted = the defaults")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, VALUE in YAML syntax (repeatable): --set size=[96,320]")
    parser.add_argument("--resume", help="checkpoint to continue from (default: <out_dir>/last.pt if it exists)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point `siam-depth-train`."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    try:
        config = load_config(args.config, args.overrides)
        summary = train(config, resume=args.resume)
    except (ValueError, OSError, RuntimeError) as error:  # CheckpointError is a RuntimeError
        message = " ".join(str(error).split())  # one line, whatever the exception text holds
        print(f"siam-depth-train: error: {message}", file=sys.stderr)
        return 2
    if summary.losses and int(os.environ.get("RANK", "0")) == 0:
        LOGGER.info("stopped at epoch %d, step %d, last loss %.4f; checkpoint %s", summary.epoch, summary.step,
                    summary.losses[-1]["total"], summary.checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
