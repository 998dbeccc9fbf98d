"""The training loop: a `Trainer` holds what a run trains and updates (network, pose network, optimiser,
scheduler, scaler, EMA, progress) and runs it epoch by epoch: `run_epoch` takes the steps of one epoch
(`train_step` on each batch, `last.pt` every `checkpoint_interval` steps and on an interrupt), `end_epoch`
steps the lr schedule, scores the validation streams and writes `last.pt`, `epoch_NNN.pt` and `best.pt`.

`Trainer.create` prepares a run: seeds, data (`dataset_setup`), networks, optimiser (`make_optimizer`: Adam
with the paper's step schedule or a cosine), resume from `last.pt` or fine-tuning from `init_from`
(`checkpoints`), DDP replicas (`distributed`), TensorBoard (`summaries`).
"""
from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from siam_depth_core.interrupt import InterruptFlag
from siam_depth_core.network.checkpoint import ModelMeta
from siam_depth_core.network.model import SiamDepthNet
from siam_depth_core.network.pose import PoseNet
from siam_depth_core.training.checkpoints import (
    LAST_CHECKPOINT,
    Progress,
    check_writable,
    init_weights_from,
    model_meta,
    restore_training_state,
    save_epoch_checkpoints,
    save_training_checkpoint,
    training_frames,
)
from siam_depth_core.training.config import TrainConfig, save_config
from siam_depth_core.training.dataset_setup import TrainingData, build_dataset, epoch_loader
from siam_depth_core.training.distributed import DistributedContext, replicate
from siam_depth_core.training.ema import averaged_network, make_ema
from siam_depth_core.training.step import (
    StepResult,
    autocast_context,
    batch_rig_and_hints,
    batch_temporal,
    clip_step,
)
from siam_depth_core.training.summaries import (
    log_start,
    log_step,
    log_validation,
    progress_bar,
    summary_writer,
)
from siam_depth_core.training.validation import validate

LOGGER = logging.getLogger("siam_depth.train")


@dataclass
class TrainSummary:
    """What a `train` call did: steps taken (total), loss per step (this call), where it saved."""

    step: int
    epoch: int
    losses: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Path | None = None


def make_optimizer(net: nn.Module, config: TrainConfig, *others: nn.Module) -> tuple[torch.optim.Optimizer, Any]:
    """Adam with L2 weight decay over the parameters of `net` (and `others`, e.g. the pose network) and the
    learning-rate schedule, stepped once per epoch: the paper's steps (x0.5 at epochs 30, 40, ...) or a cosine
    from `lr` down to `lr_final` at the end of the last epoch."""
    parameters = [p for module in (net, *others) for p in module.parameters()]
    beta1, beta2 = config.adam_betas
    optimizer = torch.optim.Adam(parameters, lr=config.lr, betas=(float(beta1), float(beta2)),
                                 weight_decay=config.weight_decay)
    scheduler: Any
    if config.lr_schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs, eta_min=config.lr_final)
    else:
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=config.lr_milestones,
                                                         gamma=config.lr_decay_factor)
    return optimizer, scheduler


def seed_run(config: TrainConfig, ctx: DistributedContext) -> None:
    """Checks that cost nothing (the batch splits among the processes, out_dir is writable), then the
    deterministic-algorithms switch and the Python, numpy and torch seeds."""
    ctx.local_batch(config.batch_size)
    if ctx.is_main:
        check_writable(Path(config.out_dir))
    if config.deterministic:
        torch.use_deterministic_algorithms(True)
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)


@dataclass
class Trainer:
    """One process's training run (see the module docstring). `step_fn` is the model step (`clip_step`)."""

    config: TrainConfig
    device: torch.device
    ctx: DistributedContext
    data: TrainingData
    meta: ModelMeta
    net: SiamDepthNet
    pose_net: nn.Module | None
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    ema: AveragedModel | None
    step_fn: Callable[..., StepResult] = clip_step
    progress: Progress = field(default_factory=Progress)
    writer: Any = None
    model: nn.Module = field(init=False)  # `net`, or its DDP replica
    pose_model: nn.Module | None = field(init=False)
    summary: TrainSummary = field(init=False)
    interrupted: InterruptFlag = field(default_factory=InterruptFlag)

    def __post_init__(self) -> None:
        self.model, self.pose_model = self.net, self.pose_net
        self.summary = TrainSummary(step=self.progress.step, epoch=self.progress.epoch)
        self.amp_context = functools.partial(autocast_context, self.device, self.config.amp)

    @property
    def out_dir(self) -> Path:
        return Path(self.config.out_dir)

    @classmethod
    def create(cls, config: TrainConfig, resume: str | Path | None, device: torch.device, ctx: DistributedContext,
               step_fn: Callable[..., StepResult] = clip_step) -> Trainer:
        """Seed, load the data, build the networks and optimiser, resume or fine-tune, wrap for DDP, and (rank 0)
        open TensorBoard, save the config beside the checkpoints and log what the run does."""
        seed_run(config, ctx)
        data = build_dataset(config)
        meta = model_meta(config, data.rig, training_frames(config, data.dataset))
        net = meta.build_network().to(device)
        pose_net = PoseNet().to(device) if config.temporal.enabled else None
        optimizer, scheduler = make_optimizer(net, config, *([pose_net] if pose_net is not None else []))
        scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and config.amp == "fp16")
        trainer = cls(config, device, ctx, data, meta, net, pose_net, optimizer, scheduler, scaler,
                      make_ema(net, config.ema_decay), step_fn)
        trainer.progress = trainer.start_from(resume)
        trainer.model = replicate(net, device, ctx)
        trainer.pose_model = None if pose_net is None else replicate(pose_net, device, ctx)
        if ctx.is_main:
            trainer.writer = summary_writer(trainer.out_dir)
            save_config(config, trainer.out_dir / "config.yaml")
            log_start(config, len(data.dataset), device, ctx, pose_net is not None, data.validation)
        return trainer

    def start_from(self, resume: str | Path | None) -> Progress:
        """Restore `resume` (or `<out_dir>/last.pt` when it exists), else load `init_from`'s weights, else nothing."""
        resume_path = Path(resume) if resume else (self.out_dir / LAST_CHECKPOINT)
        if resume or resume_path.is_file():
            progress = restore_training_state(resume_path, self.net, self.optimizer, self.scheduler, self.scaler,
                                              self.config, self.pose_net, self.ema)
            if self.ctx.is_main:
                LOGGER.info("resumed from %s at epoch %d, step %d", resume_path, progress.epoch, progress.step)
            return progress
        if self.config.init_from:
            init_weights_from(self.config.init_from, self.net, self.config)
            if self.ctx.is_main:
                LOGGER.info("fine-tuning from the weights of %s", self.config.init_from)
        return Progress()

    def run(self) -> TrainSummary:
        """Train until `epochs` or `max_steps` is reached or the process is interrupted (SIGINT/SIGTERM)."""
        self.summary = TrainSummary(step=self.progress.step, epoch=self.progress.epoch)
        with self.interrupted:
            while self.progress.epoch < self.config.epochs and (self.config.max_steps is None
                                                                or self.progress.step < self.config.max_steps):
                if self.run_epoch():
                    return self.finish()
                self.end_epoch()
        return self.finish()

    def run_epoch(self) -> bool:
        """The remaining steps of the current epoch; True when the run stopped inside it (interrupt, or
        `max_steps` before the epoch's last step: that step's epoch ends first), after saving `last.pt`."""
        progress, config = self.progress, self.config
        loader, steps_per_epoch = epoch_loader(self.data.dataset, config, self.ctx, progress.epoch,
                                               progress.step_in_epoch, self.device)
        bar = progress_bar(loader, self.ctx, progress, steps_per_epoch)
        for batch in bar:
            result = self.train_step(batch)
            if self.writer is not None:
                log_step(self.writer, bar, config, progress, result, self.optimizer, steps_per_epoch)
            stop = self.interrupted.requested or (config.max_steps is not None and progress.step >= config.max_steps
                                                  and progress.step_in_epoch < steps_per_epoch)
            if stop or progress.step % config.checkpoint_interval == 0:
                self.summary.checkpoint = self.save(self.out_dir / LAST_CHECKPOINT)
            if stop:
                if self.interrupted.requested and self.ctx.is_main:
                    LOGGER.warning("interrupted: saved %s at step %d", self.out_dir / LAST_CHECKPOINT, progress.step)
                return True
        return False

    def train_step(self, batch: dict[str, Any]) -> StepResult:
        """One optimiser step on a loader batch, the EMA update and the step's place in `progress`."""
        rig, hints = batch_rig_and_hints(batch, self.device)
        temporal = batch_temporal(batch, self.pose_model, self.config, self.device)
        result = self.step_fn(self.model, self.optimizer, self.scaler, batch["left"].to(self.device, non_blocking=True),
                              batch["right"].to(self.device, non_blocking=True), self.config.loss_weights,
                              self.config.siamese, self.amp_context, rig, hints, temporal)
        if self.ema is not None:
            self.ema.update_parameters(self.net)
        self.progress.step_in_epoch += 1
        self.progress.step += 1
        self.progress.epoch_loss_sum += result.terms["total"]
        self.summary.losses.append(result.terms)
        return result

    def end_epoch(self) -> None:
        """Step the lr schedule, score the validation streams when due, save `last.pt` and the epoch's weights
        (`best.pt` when the validation score, or without validation the mean loss, is the lowest so far)."""
        self.scheduler.step()
        progress = self.progress
        epoch_loss = progress.epoch_loss_sum / max(progress.step_in_epoch, 1)
        is_best = epoch_loss < progress.best_epoch_loss and not self.data.validation
        progress.best_epoch_loss = min(progress.best_epoch_loss, epoch_loss)
        progress.epoch += 1
        progress.step_in_epoch = 0
        progress.epoch_loss_sum = 0.0
        scores = self.score_validation()
        if scores is not None:
            is_best = scores["score"] < progress.best_validation_score
            progress.best_validation_score = min(progress.best_validation_score, scores["score"])
        self.summary.checkpoint = self.save(self.out_dir / LAST_CHECKPOINT)
        if self.ctx.is_main:
            save_epoch_checkpoints(self.out_dir, averaged_network(self.ema, self.net), self.meta, progress.epoch,
                                   epoch_loss, is_best, self.config.keep_checkpoints, scores)

    def score_validation(self) -> dict[str, float] | None:
        """The validation scores of the (EMA) weights every `validation.interval` epochs and after the last one
        (rank 0, with validation streams; else None); with EMA also the raw weights' score (`raw_score`)."""
        epoch, config = self.progress.epoch, self.config
        due = epoch % config.validation.interval == 0 or epoch == config.epochs
        if not (self.ctx.is_main and self.data.validation and due):
            return None
        scores = validate(averaged_network(self.ema, self.net), self.meta, self.data.validation, self.data.hints,
                          self.device)
        if self.ema is not None:  # the raw weights' score too: how much the average steadies it
            scores["raw_score"] = validate(self.net, self.meta, self.data.validation, self.data.hints,
                                           self.device)["score"]
        log_validation(self.writer, self.progress, scores)
        return scores

    def save(self, path: Path) -> Path | None:
        """Rank 0: write the resumable training checkpoint `path`; other ranks: nothing (None)."""
        if not self.ctx.is_main:
            return None
        return save_training_checkpoint(path, self.net, self.meta, self.config, self.optimizer, self.scheduler,
                                        self.scaler, self.progress, self.pose_net, self.ema)

    def finish(self) -> TrainSummary:
        """Close TensorBoard; the summary with the step and epoch reached."""
        self.summary.step, self.summary.epoch = self.progress.step, self.progress.epoch
        if self.writer is not None:
            self.writer.close()
        return self.summary
