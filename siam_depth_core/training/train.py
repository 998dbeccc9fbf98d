"""Training: `siam-depth-train --config training/configs/paper.yaml [--set key=value ...] [--resume PATH]`.

Split into: the data (`build_dataset`, with the held-out validation stream), the model step on one clip
(`clip_step`: truncated BPTT over T frames, state reset at the clip start, losses summed, one optimiser
step), the loop (`train`), and checkpoint I/O (`save_training_checkpoint`, `restore_training_state`).
The parts live in their own modules: losses (`losses`), M+S temporal supervision (`pose` network,
`temporal_warp`, `temporal_loss`), the validation scores (`validation`).

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
import functools
import logging
import os
import random
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from siam_depth_core.cli import OneLineParser
from siam_depth_core.data.stereo import StereoRig
from siam_depth_core.interrupt import InterruptFlag
from siam_depth_core.network.checkpoint import ModelMeta, git_revision, read_checkpoint, save_checkpoint
from siam_depth_core.network.model import SiameseOutput, run_siamese
from siam_depth_core.network.pose import PoseNet
from siam_depth_core.training.config import TrainConfig, field_help, load_config, save_config
from siam_depth_core.training.ema import averaged_network, make_ema
from siam_depth_core.training.losses import HintTargets, LossWeights, reconstruct_views, siamese_loss
from siam_depth_core.training.temporal_loss import clip_pair_transforms, frame_sources
from siam_depth_core.training.validation import LidarStream, ValidationStream, validate

if TYPE_CHECKING:
    from siam_depth_core.data.clips import StereoClipDataset
    from siam_depth_core.data.synthetic import SyntheticClipDataset

LOGGER = logging.getLogger("siam_depth.train")
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"


# --------------------------------------------------------------------------------------------- data
@dataclass
class TrainingData:
    """What `build_dataset` prepares: the training clips, the reference rig (stored in the checkpoint), the
    held-out validation streams and the Depth Hints cache that scores them (None without validation or hints)."""

    dataset: StereoClipDataset | SyntheticClipDataset
    rig: StereoRig
    validation: list[ValidationStream | LidarStream] = field(default_factory=list)
    hints: Any = None


def build_dataset(config: TrainConfig) -> TrainingData:
    """The training clips (items: left/right (T+2c,3,H,W) in [0,1], ...), the reference rig and the validation.

    The reference rig (the first sequence's) is the one stored in the checkpoint: disparities of the
    other rigs are scaled to its baseline during training. Augmentation draws depend only on
    (seed, epoch, index) (`set_epoch` selects the epoch), so they are the same with any number of
    workers or DDP processes and after a resume. With `depth_hints` or a validation stream, the hints of
    every pair used are computed (once, cached on disk) before training starts. With M+S, each clip
    carries `temporal.context_frames` extra frames before and after it (the temporal sources).
    """
    from siam_depth_core.data.augment import StereoAugment

    augment = StereoAugment(grayscale_prob=config.grayscale_prob, zoom=config.augment_scale) if config.augment else None
    if config.dataset == "synthetic":
        from siam_depth_core.data.synthetic import SyntheticClipDataset

        size = (int(config.size[0]), int(config.size[1]))
        synthetic = SyntheticClipDataset(num_clips=config.synthetic_clips, clip_len=config.clip_len,
                                         size=size, seed=config.seed)
        rig = StereoRig(baseline_m=float(synthetic.baseline_m),
                        camera_matrix=np.asarray(synthetic.camera_matrix),
                        image_size=(config.size[1], config.size[0]))
        return TrainingData(synthetic, rig)

    from siam_depth_core.data import paths
    from siam_depth_core.data.clips import StereoClipDataset
    from siam_depth_core.data.depth_hints import DepthHintCache
    from siam_depth_core.data.holdout import split_validation
    from siam_depth_core.data.sources import load_source
    from siam_depth_core.data.splits import eigen_test_drives

    excluded = eigen_test_drives(config.splits_dir) if config.exclude_eigen_test else set()
    raw_root_of: dict[str, str | None] = {}  # sequence name -> KITTI raw root (LiDAR for validation)
    sequences = []
    for spec in config.training_sources():
        for sequence in load_source(spec, excluded, config.splits_dir, config.image_ext):
            raw_root_of[sequence.name] = str(spec.data_root()) if spec.kind == "kitti_raw" else None
            sequences.append(sequence)
    held_out = config.validation
    training, validation = split_validation(sequences, held_out.sequences, held_out.holdout_frames,
                                            held_out.gap_frames)
    hints = None
    if config.depth_hints or validation:
        hints = DepthHintCache(config.hints_cache_dir or paths.depth_hints_cache_dir())
        scored = (training if config.depth_hints else []) + validation
        computed = hints.fill((pair for s in scored for pair in zip(s.left, s.right, strict=True)),
                              progress=int(os.environ.get("RANK", "0")) == 0)
        LOGGER.info("depth hints: %d pairs computed, the rest read from %s", computed, hints.cache_dir)
    size = (int(config.size[0]), int(config.size[1]))
    dataset = StereoClipDataset(training, clip_len=config.clip_len, size=size, augment=augment,
                                seed=config.seed, hints=hints if config.depth_hints else None,
                                cache_in_memory=config.cache_images, context_frames=config.temporal.context_frames)
    streams: list[ValidationStream | LidarStream] = [ValidationStream.with_lidar_if_any(s, raw_root_of[s.name])
                                                      for s in validation]
    trained = {s.name for s in training}
    for name in held_out.lidar_drives:
        if name in trained:
            raise ValueError(f"validation.lidar_drives names {name}, which is also a training sequence")
        lidar_root = paths.expand_root(held_out.lidar_root) if held_out.lidar_root else paths.kitti_raw_root()
        streams.append(LidarStream.of_drive(lidar_root, name))
    return TrainingData(dataset, dataset.reference_rig, streams, hints)


class ResumableSampler(DistributedSampler):
    """DistributedSampler (per-epoch shuffle from `seed + epoch`) that can skip the first `skip` indices.

    With num_replicas=1 it is the single-process sampler; the union of the ranks' k-th batches is
    the single process's k-th batch of the same global size, so DDP and 1-process runs agree.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int, skip: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.skip:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)


# ---------------------------------------------------------------------------------------- model step
@dataclass
class StepResult:
    """Loss terms of one clip (summed over its frames) and the last frame's output for image summaries."""

    terms: dict[str, float]
    last_output: SiameseOutput
    last_left: Tensor
    last_right: Tensor


def autocast_context(device: torch.device, amp: str) -> Any:
    """bf16/fp16 autocast on CUDA; nothing on CPU or with amp 'off'."""
    if device.type != "cuda" or amp == "off":
        return nullcontext()
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


@dataclass
class TemporalBatch:
    """What `clip_step` needs for M+S on one batch: the pose network, the source offsets (-1, +1), the
    weight of the minimum reprojection (`siamese_loss`'s temporal_weight) and the (N,3,3) K of the
    batch's images (pixels, at the training size)."""

    pose_net: nn.Module
    offsets: Sequence[int]
    weight: float
    camera_matrix: Tensor

    @property
    def context(self) -> int:
        """Frames of context before and after the clip in the batch's tensors."""
        return max(abs(offset) for offset in self.offsets)


@dataclass
class ClipRig:
    """Per-clip rig facts of a batch: (N,) baseline ratio to the reference rig, (N,) metres per unit disparity."""

    baseline_ratio: Tensor
    depth_per_disparity: Tensor


def clip_step(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
              left: Tensor, right: Tensor, weights: LossWeights, siamese: bool, amp_context: Callable[[], Any],
              rig: ClipRig | None = None, hints: tuple[Tensor, Tensor] | None = None,
              temporal: TemporalBatch | None = None) -> StepResult:
    """One truncated-BPTT step on a batch of clips.

    left, right: (N,T,3,H,W) RGB in [0,1] (with `temporal`: (N,T+2c,3,H,W), c context frames before and
    after the clip). The state starts from zeros, is carried through the T clip frames, the T frame
    losses are summed, and one optimiser step is taken. rig: when the clips come from rigs with other
    baselines than the reference, the network's disparities are scaled by rig.baseline_ratio before the
    losses. hints: left and right Depth Hints (fraction of width, 0 = none), (N,T(+2c),1,H,W); need
    `rig` for the depth conversion. temporal: M+S (`temporal_loss`): the pose network runs on every
    consecutive pair of left frames and the neighbours join the left image's appearance term; needs `rig`.
    """
    if left.ndim != 5 or left.shape != right.shape:
        raise ValueError(f"expected left/right clips of shape (N,T,3,H,W), got {tuple(left.shape)} and "
                         f"{tuple(right.shape)}")
    if (hints is not None or temporal is not None) and rig is None:
        raise ValueError("Depth Hints and M+S need the clips' rig (depth_per_disparity)")
    context = 0 if temporal is None else temporal.context
    if left.shape[1] <= 2 * context:
        raise ValueError(f"clips of {left.shape[1]} frames leave none between {context} context frames on each side")
    optimizer.zero_grad(set_to_none=True)
    state = None
    total = left.new_zeros(())
    sums: dict[str, Tensor] = {}
    output = None
    with amp_context():
        transforms = None if temporal is None else clip_pair_transforms(temporal.pose_net, left)
    for t in range(context, left.shape[1] - context):
        with amp_context():
            output, state = run_siamese(model, left[:, t], state, siamese=siamese)  # type: ignore[arg-type]
            rig_output = output if rig is None else output.scaled(rig.baseline_ratio)
            targets = None
            if hints is not None and rig is not None:
                targets = HintTargets(hints[0][:, t], hints[1][:, t], rig.depth_per_disparity)
            sources = None
            if temporal is not None and transforms is not None and rig is not None:
                sources = frame_sources(left, t, temporal.offsets, transforms, temporal.camera_matrix,
                                        rig.depth_per_disparity)
            loss, terms = siamese_loss(left[:, t], right[:, t], rig_output, weights, targets, sources,
                                       1.0 if temporal is None else temporal.weight)
        total = total + loss.float()
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + value.float()
    scaler.scale(total).backward()
    scaler.step(optimizer)
    scaler.update()
    assert output is not None
    last = left.shape[1] - 1 - context
    return StepResult({k: float(v) for k, v in sums.items()}, output, left[:, last], right[:, last])


def batch_rig_and_hints(batch: dict[str, Any], device: torch.device
                        ) -> tuple[ClipRig | None, tuple[Tensor, Tensor] | None]:
    """The `clip_step` rig and hint arguments of a loader batch (None where the dataset has none)."""
    rig = None
    if "baseline_ratio" in batch:
        rig = ClipRig(batch["baseline_ratio"].to(device).float(), batch["depth_per_disparity"].to(device).float())
    hints = None
    if "hint_left" in batch:
        hints = (batch["hint_left"].to(device, non_blocking=True), batch["hint_right"].to(device, non_blocking=True))
    return rig, hints


# ---------------------------------------------------------------------------------- checkpoint I/O
@dataclass
class Progress:
    """Where training stands: epoch, optimiser steps done inside it and in total, the summed total loss of
    this epoch's steps so far, the best (lowest) mean epoch loss and the best (lowest) validation score of
    the run (`best.pt` holds the latter's epoch when there is a validation stream, else the former's)."""

    epoch: int = 0
    step_in_epoch: int = 0
    step: int = 0
    epoch_loss_sum: float = 0.0
    best_epoch_loss: float = float("inf")
    best_validation_score: float = float("inf")


def rng_states() -> dict[str, Any]:
    """Python, numpy and torch (CPU and CUDA) RNG states."""
    states: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                              "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Inverse of `rng_states` (CUDA states only when CUDA is present)."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def model_meta(config: TrainConfig, rig: StereoRig) -> ModelMeta:
    """Checkpoint metadata: architecture, training size, rig baseline, git revision, intrinsics."""
    return ModelMeta(net_width=config.net_width, recurrent=config.recurrent, siamese=config.siamese,
                     max_disp=config.max_disp, height=config.size[0], width=config.size[1], lstm_ratio=config.lstm_ratio,
                     baseline_m=rig.baseline_m, git_revision=git_revision(),
                     extra={"dataset": config.dataset, "camera_matrix": np.asarray(rig.camera_matrix).tolist(),
                            "camera_image_size": list(rig.image_size), "clip_len": config.clip_len})


class _PoseState(TypedDict, total=False):
    """The M+S pose network's weights in a training checkpoint (the key is absent without M+S)."""

    pose_model: dict[str, Tensor]
    ema_model: dict[str, Tensor]


def save_training_checkpoint(path: Path, net: nn.Module, meta: ModelMeta, config: TrainConfig,
                             optimizer: torch.optim.Optimizer, scheduler: Any, scaler: torch.amp.GradScaler,
                             progress: Progress, pose_net: nn.Module | None = None,
                             ema: nn.Module | None = None) -> Path:
    """Atomically write everything `restore_training_state` needs to continue exactly (with M+S, the pose
    network's weights too; with EMA, the averaged weights)."""
    extra: _PoseState = {}
    if pose_net is not None:
        extra["pose_model"] = {k: v.detach().cpu() for k, v in pose_net.state_dict().items()}
    if ema is not None:
        extra["ema_model"] = {k: v.detach().cpu() for k, v in ema.state_dict().items()}
    return save_checkpoint(path, net, meta, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                           scaler=scaler.state_dict(), epoch=progress.epoch, step_in_epoch=progress.step_in_epoch,
                           step=progress.step, epoch_loss_sum=progress.epoch_loss_sum,
                           best_epoch_loss=progress.best_epoch_loss,
                           best_validation_score=progress.best_validation_score, config=config.to_dict(),
                           rng=rng_states(), **extra)


def architecture_mismatch(meta: ModelMeta, config: TrainConfig) -> list[str]:
    """What differs between a checkpoint's network/size and `config`'s, as "<field> <theirs> in the checkpoint
    vs <ours> in the config" phrases (empty when they match)."""
    theirs = {"net_width": meta.net_width, "recurrent": meta.recurrent, "max_disp": meta.max_disp,
              "size": (meta.height, meta.width), "lstm_ratio": meta.lstm_ratio}
    ours = {"net_width": config.net_width, "recurrent": config.recurrent, "max_disp": config.max_disp,
            "size": tuple(config.size), "lstm_ratio": config.lstm_ratio}
    return [f"{k} {theirs[k]} in the checkpoint vs {ours[k]} in the config" for k in ours if theirs[k] != ours[k]]


def init_weights_from(path: str | Path, net: nn.Module, config: TrainConfig) -> None:
    """Load the weights of checkpoint `path` into `net` (fine-tuning); ValueError naming both sides when the
    checkpoint's architecture or training size differs from `config`'s."""
    from siam_depth_core.network.checkpoint import load_model

    source, meta = load_model(path)
    differ = architecture_mismatch(meta, config)
    if differ:
        raise ValueError(f"init_from {path} does not fit this config: {', '.join(differ)}")
    net.load_state_dict(source.state_dict())


def restore_training_state(path: Path, net: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                           scaler: torch.amp.GradScaler, config: TrainConfig, pose_net: nn.Module | None = None,
                           ema: nn.Module | None = None) -> Progress:
    """Load a `save_training_checkpoint` file into the live objects; returns the saved progress. A run saved
    without EMA that resumes with it starts the average from the restored weights."""
    payload = read_checkpoint(path)
    differ = architecture_mismatch(ModelMeta.from_dict(payload["meta"]), config)
    if differ:
        raise ValueError(f"{path} holds a run of another network ({', '.join(differ)}); choose a new out_dir "
                         "or pass the same settings")
    missing = [k for k in ("optimizer", "scheduler", "epoch", "step", "step_in_epoch") if k not in payload]
    if missing:
        raise ValueError(f"{path} is a weights-only checkpoint (no {', '.join(missing)}); cannot resume from it")
    saved = payload.get("config", {})
    changed = {k: (saved[k], v) for k, v in config.to_dict().items() if k in saved and saved[k] != v}
    if changed:
        LOGGER.warning("resuming %s with a changed config: %s", path,
                       ", ".join(f"{k}: {old} -> {new}" for k, (old, new) in changed.items()))
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["model"].items()})
    if (pose_net is not None) != ("pose_model" in payload):
        trained = "with" if "pose_model" in payload else "without"
        raise ValueError(f"{path} was trained {trained} temporal.enabled (M+S pose network); choose a new out_dir "
                         f"or set temporal.enabled: {'true' if trained == 'with' else 'false'}")
    if pose_net is not None:
        pose_net.load_state_dict(payload["pose_model"])
    if ema is not None and "ema_model" in payload:
        ema.load_state_dict(payload["ema_model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    if "scaler" in payload:
        scaler.load_state_dict(payload["scaler"])
    if "rng" in payload:
        set_rng_states(payload["rng"])
    return Progress(epoch=int(payload["epoch"]), step_in_epoch=int(payload["step_in_epoch"]),
                    step=int(payload["step"]), epoch_loss_sum=float(payload.get("epoch_loss_sum", 0.0)),
                    best_epoch_loss=float(payload.get("best_epoch_loss", float("inf"))),
                    best_validation_score=float(payload.get("best_validation_score", float("inf"))))


def check_writable(out_dir: Path) -> None:
    """Create `out_dir` and write a probe file there; PermissionError/OSError naming the folder if that fails,
    before any long preparation (hints, data) is spent."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise OSError(f"cannot write to out_dir {out_dir} ({error.strerror or error}); choose a writable out_dir "
                      "(--set out_dir=...)") from error


class _EpochScores(TypedDict, total=False):
    """An epoch checkpoint's validation scores (the key is absent without validation)."""

    validation: dict[str, float]


def save_epoch_checkpoints(out_dir: Path, net: nn.Module, meta: ModelMeta, epoch: int, epoch_loss: float,
                           is_best: bool, keep: int, validation: dict[str, float] | None = None) -> None:
    """Weights after `epoch` as epoch_NNN.pt, keeping only the newest `keep` of them (0 = none), and as
    best.pt when `is_best` (the lowest validation score so far, or without validation the lowest mean
    training loss). The epoch's validation scores, if any, are stored in both."""
    scores: _EpochScores = {} if validation is None else {"validation": validation}
    if keep > 0:
        save_checkpoint(out_dir / f"epoch_{epoch:03d}.pt", net, meta, epoch=epoch, epoch_loss=epoch_loss, **scores)
    for old in sorted(out_dir.glob("epoch_[0-9][0-9][0-9].pt"))[:-keep or None]:
        old.unlink()
    if is_best:
        save_checkpoint(out_dir / BEST_CHECKPOINT, net, meta, epoch=epoch, epoch_loss=epoch_loss, **scores)
        chosen_by = (f"validation score {validation['score']:.4f}" if validation is not None
                     else f"mean loss {epoch_loss:.4f}")
        LOGGER.info("epoch %d: %s, the lowest so far -> %s", epoch, chosen_by, out_dir / BEST_CHECKPOINT)


# ------------------------------------------------------------------------------------- the loop
@dataclass
class DistributedContext:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistributedContext:
    """Join the process group described by torchrun's RANK/WORLD_SIZE/LOCAL_RANK (1 process: nothing to do)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    initialised_here = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        initialised_here = True
    return DistributedContext(rank, world_size, local_rank, initialised_here)


def select_device(config: TrainConfig, local_rank: int) -> torch.device:
    """cuda:<local_rank> when asked for (or 'auto' with CUDA present), else CPU."""
    if config.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device; use device: cpu or auto")
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


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


def train(config: TrainConfig, resume: str | Path | None = None) -> TrainSummary:
    """Run (or continue) the training `config` describes; see the module docstring."""
    device = select_device(config, int(os.environ.get("LOCAL_RANK", "0")))
    ctx = init_distributed(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        return _train(config, resume, device, ctx)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        if ctx.initialised_here:
            dist.destroy_process_group()


def _train(config: TrainConfig, resume: str | Path | None, device: torch.device, ctx: DistributedContext
           ) -> TrainSummary:
    if config.batch_size % ctx.world_size:
        raise ValueError(f"batch_size {config.batch_size} (global) is not divisible by the {ctx.world_size} "
                         "processes")
    local_batch = config.batch_size // ctx.world_size
    if ctx.is_main:
        check_writable(Path(config.out_dir))
    if config.deterministic:
        torch.use_deterministic_algorithms(True)
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)

    data = build_dataset(config)
    dataset = data.dataset
    meta = model_meta(config, data.rig)
    net = meta.build_network().to(device)
    pose_net = PoseNet().to(device) if config.temporal.enabled else None
    optimizer, scheduler = make_optimizer(net, config, *([pose_net] if pose_net is not None else []))
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and config.amp == "fp16")
    ema = make_ema(net, config.ema_decay)
    out_dir = Path(config.out_dir)
    resume_path = Path(resume) if resume else (out_dir / LAST_CHECKPOINT)
    progress = Progress()
    if resume or resume_path.is_file():
        progress = restore_training_state(resume_path, net, optimizer, scheduler, scaler, config, pose_net, ema)
        if ctx.is_main:
            LOGGER.info("resumed from %s at epoch %d, step %d", resume_path, progress.epoch, progress.step)
    elif config.init_from:
        init_weights_from(config.init_from, net, config)
        if ctx.is_main:
            LOGGER.info("fine-tuning from the weights of %s", config.init_from)
    model: nn.Module = net
    pose_model: nn.Module | None = pose_net
    if ctx.world_size > 1:
        device_ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(net, device_ids=device_ids)
        if pose_net is not None:
            pose_model = nn.parallel.DistributedDataParallel(pose_net, device_ids=device_ids)

    writer = _summary_writer(out_dir) if ctx.is_main else None
    if ctx.is_main:
        save_config(config, out_dir / "config.yaml")
        LOGGER.info("training on %d clips of %d frames, %s, %d process(es), global batch %d%s; validation: %s",
                    len(dataset), config.clip_len, device, ctx.world_size, config.batch_size,
                    f", M+S (temporal frames {config.temporal.frames})" if pose_net is not None else "",
                    ", ".join(f"{s.sequence.name} frames {s.sequence.frames[0]}-{s.sequence.frames[-1]}"
                              f"{' (LiDAR)' if s.lidar_drive else ''}" if isinstance(s, ValidationStream)
                              else f"{s.name} {len(s.frames)} frames (LiDAR only)" for s in data.validation) or "none")

    def save(path: Path) -> Path | None:
        if not ctx.is_main:
            return None
        return save_training_checkpoint(path, net, meta, config, optimizer, scheduler, scaler, progress, pose_net,
                                        ema)

    summary = TrainSummary(step=progress.step, epoch=progress.epoch)
    amp_context = functools.partial(autocast_context, device, config.amp)
    interrupted = InterruptFlag()
    with interrupted:
        while progress.epoch < config.epochs and (config.max_steps is None or progress.step < config.max_steps):
            sampler = ResumableSampler(dataset, ctx.world_size, ctx.rank, config.seed,
                                       skip=progress.step_in_epoch * local_batch)
            sampler.set_epoch(progress.epoch)
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(progress.epoch)
            loader = DataLoader(dataset, batch_size=local_batch, sampler=sampler, drop_last=True,
                                num_workers=config.num_workers, pin_memory=device.type == "cuda",
                                persistent_workers=False)
            steps_per_epoch = sampler.num_samples // local_batch
            if steps_per_epoch == 0:
                raise ValueError(f"{len(dataset)} clips are fewer than one global batch of {config.batch_size}")
            bar = _progress_bar(loader, ctx, progress, steps_per_epoch)
            for batch in bar:
                rig_of_batch, hints = batch_rig_and_hints(batch, device)
                temporal = None
                if pose_model is not None:
                    temporal = TemporalBatch(pose_model, config.temporal.frames, config.temporal.weight,
                                             batch["camera_matrix"].to(device).float())
                result = clip_step(model, optimizer, scaler, batch["left"].to(device, non_blocking=True),
                                   batch["right"].to(device, non_blocking=True), config.loss_weights,
                                   config.siamese, amp_context, rig_of_batch, hints, temporal)
                if ema is not None:
                    ema.update_parameters(net)
                progress.step_in_epoch += 1
                progress.step += 1
                progress.epoch_loss_sum += result.terms["total"]
                summary.losses.append(result.terms)
                if writer is not None:
                    _log_step(writer, config, progress, result, optimizer)
                    bar.set_postfix(loss=f"{result.terms['total']:.4f}")
                    if bar.disable and progress.step % config.log_interval == 0:  # no terminal: plain lines
                        LOGGER.info("epoch %d step %d (%d/%d) lr %.3g %s", progress.epoch, progress.step,
                                    progress.step_in_epoch, steps_per_epoch, optimizer.param_groups[0]["lr"],
                                    " ".join(f"{k} {v:.4f}" for k, v in result.terms.items()))
                # max_steps reached on an epoch's last step: the epoch ends first (scheduler, validation, best.pt)
                stop = interrupted.requested or (config.max_steps is not None and progress.step >= config.max_steps
                                                 and progress.step_in_epoch < steps_per_epoch)
                if stop or progress.step % config.checkpoint_interval == 0:
                    summary.checkpoint = save(out_dir / LAST_CHECKPOINT)
                if stop:
                    if interrupted.requested and ctx.is_main:
                        LOGGER.warning("interrupted: saved %s at step %d", out_dir / LAST_CHECKPOINT, progress.step)
                    summary.step, summary.epoch = progress.step, progress.epoch
                    return _finish(summary, writer)
            scheduler.step()
            epoch_loss = progress.epoch_loss_sum / max(progress.step_in_epoch, 1)
            is_best = epoch_loss < progress.best_epoch_loss and not data.validation
            progress.best_epoch_loss = min(progress.best_epoch_loss, epoch_loss)
            progress.epoch += 1
            progress.step_in_epoch = 0
            progress.epoch_loss_sum = 0.0
            scores = None
            if ctx.is_main and data.validation and (progress.epoch % config.validation.interval == 0
                                                    or progress.epoch == config.epochs):
                scores = validate(averaged_network(ema, net), meta, data.validation, data.hints, device)
                if ema is not None:  # the raw weights' score too: how much the average steadies it
                    scores["raw_score"] = validate(net, meta, data.validation, data.hints, device)["score"]
                _log_validation(writer, progress, scores)
                is_best = scores["score"] < progress.best_validation_score
                progress.best_validation_score = min(progress.best_validation_score, scores["score"])
            summary.checkpoint = save(out_dir / LAST_CHECKPOINT)
            if ctx.is_main:
                save_epoch_checkpoints(out_dir, averaged_network(ema, net), meta, progress.epoch, epoch_loss, is_best, config.keep_checkpoints,
                                       scores)
    summary.step, summary.epoch = progress.step, progress.epoch
    return _finish(summary, writer)


def _finish(summary: TrainSummary, writer: Any) -> TrainSummary:
    if writer is not None:
        writer.close()
    return summary


def _progress_bar(loader: DataLoader, ctx: DistributedContext, progress: Progress, steps_per_epoch: int) -> Any:
    from tqdm import tqdm

    return tqdm(loader, desc=f"epoch {progress.epoch}", initial=progress.step_in_epoch, total=steps_per_epoch,
                disable=None if ctx.is_main else True, dynamic_ncols=True)


def _summary_writer(out_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ImportError("TensorBoard logging needs the `tensorboard` package: pip install tensorboard") from error
    return SummaryWriter(log_dir=str(out_dir / "tensorboard"))


def _log_validation(writer: Any, progress: Progress, scores: dict[str, float]) -> None:
    """The validation scores of the epoch just finished: console line and TensorBoard `val/<name>`."""
    LOGGER.info("validation after epoch %d (step %d): %s", progress.epoch, progress.step,
                " ".join(f"{name} {value:.4f}" for name, value in scores.items()))
    if writer is not None:
        for name, value in scores.items():
            writer.add_scalar(f"val/{name}", value, progress.step)


def _log_step(writer: Any, config: TrainConfig, progress: Progress, result: StepResult,
              optimizer: torch.optim.Optimizer) -> None:
    if progress.step % config.log_interval == 0:
        for name, value in result.terms.items():
            writer.add_scalar(f"loss/{name}", value, progress.step)
        writer.add_scalar("lr", optimizer.param_groups[0]["lr"], progress.step)
        writer.add_scalar("epoch", progress.epoch, progress.step)
    if config.image_interval and progress.step % config.image_interval == 0:
        for name, image in image_summaries(result).items():
            writer.add_image(name, image, progress.step, dataformats="HWC")


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
