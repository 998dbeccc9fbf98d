"""The trainer's checkpoint I/O: `last.pt` (everything a resume needs), `best.pt` and `epoch_NNN.pt` (weights
and the epoch's scores), fine-tuning from another checkpoint's weights (`init_from`).

Every checkpoint's metadata records the frames the model trained on (`trained_frames`; with `init_from`, also
those of the checkpoint it started from), so that an evaluation can tell test frames from training frames.
Resuming restores weights, optimiser, scheduler, scaler, RNG states and the position inside the epoch
(`Progress`), so an interrupted run continues exactly as if it had not stopped (bit-identical on CPU with a
fixed number of threads). The file format is `network.checkpoint`'s (`save_checkpoint` / `read_checkpoint`).
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch
from torch import Tensor, nn

from siam_depth_core.data.stereo import StereoRig, StereoSequence
from siam_depth_core.network.checkpoint import ModelMeta, git_revision, read_checkpoint, save_checkpoint
from siam_depth_core.trained_frames import TRAINED_ON, trained_on, training_record
from siam_depth_core.training.config import TrainConfig

LOGGER = logging.getLogger("siam_depth.train")
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"


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


def model_meta(config: TrainConfig, rig: StereoRig, trained: list[dict[str, Any]] | None = None) -> ModelMeta:
    """Checkpoint metadata: architecture, training size, rig baseline, git revision, intrinsics and, when given,
    `trained`, the frames the model trained on (`trained_frames`)."""
    extra = {"dataset": config.dataset, "camera_matrix": np.asarray(rig.camera_matrix).tolist(),
             "camera_image_size": list(rig.image_size), "clip_len": config.clip_len}
    if trained is not None:
        extra[TRAINED_ON] = trained
    return ModelMeta(net_width=config.net_width, recurrent=config.recurrent, siamese=config.siamese,
                     max_disp=config.max_disp, height=config.size[0], width=config.size[1], lstm_ratio=config.lstm_ratio,
                     baseline_m=rig.baseline_m, git_revision=git_revision(), extra=extra)


def training_frames(config: TrainConfig, dataset: Any) -> list[dict[str, Any]]:
    """The `trained_on` record of a run: the frames of every sequence `dataset` draws clips from (none for synthetic
    clips) and those the `init_from` checkpoint records (a warning when it records none: then only this run's)."""
    inherited: list[dict[str, Any]] = []
    if config.init_from and Path(config.init_from).is_file():
        record = trained_on(read_checkpoint(config.init_from)["meta"].get("extra", {}))
        if record is None:
            LOGGER.warning("init_from %s does not record the frames it was trained on: this run's checkpoints "
                           "record only their own", config.init_from)
        inherited = record or []
    return training_record(((s.name, s.frames) for s in _clip_sequences(dataset)), inherited)


def _clip_sequences(dataset: Any) -> list[StereoSequence]:
    """The sequences of a StereoClipDataset, of both parts of a MixedClipDataset, none of synthetic clips."""
    from siam_depth_core.data.clips import MixedClipDataset, StereoClipDataset

    if isinstance(dataset, MixedClipDataset):
        return _clip_sequences(dataset.stereo) + _clip_sequences(dataset.monocular)
    return list(dataset.sequences.values()) if isinstance(dataset, StereoClipDataset) else []


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


def _resumable_payload(path: Path, config: TrainConfig) -> dict[str, Any]:
    """The payload of training checkpoint `path`; ValueError when it holds another network or only weights.
    A changed config (other than the network) is allowed, with a warning naming each change."""
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
    return payload


def _restore_networks(path: Path, payload: dict[str, Any], net: nn.Module, pose_net: nn.Module | None,
                      ema: nn.Module | None) -> None:
    """The depth network's, the pose network's and the average's weights from `payload`."""
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["model"].items()})
    if (pose_net is not None) != ("pose_model" in payload):
        trained = "with" if "pose_model" in payload else "without"
        raise ValueError(f"{path} was trained {trained} temporal.enabled (M+S pose network); choose a new out_dir "
                         f"or set temporal.enabled: {'true' if trained == 'with' else 'false'}")
    if pose_net is not None:
        pose_net.load_state_dict(payload["pose_model"])
    if ema is not None and "ema_model" in payload:
        ema.load_state_dict(payload["ema_model"])


def restore_training_state(path: Path, net: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                           scaler: torch.amp.GradScaler, config: TrainConfig, pose_net: nn.Module | None = None,
                           ema: nn.Module | None = None) -> Progress:
    """Load a `save_training_checkpoint` file into the live objects; returns the saved progress. A run saved
    without EMA that resumes with it starts the average from the restored weights."""
    payload = _resumable_payload(path, config)
    _restore_networks(path, payload, net, pose_net, ema)
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
