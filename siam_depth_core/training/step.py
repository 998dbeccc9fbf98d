"""The model step on one batch of clips (`clip_step`): truncated BPTT over the clip's T frames, the state reset
at the clip start, the frame losses summed, one optimiser step. With Depth Hints the disparities are also
pulled towards the cached hints; with M+S (`TemporalBatch`) the pose network's warps of the neighbouring
frames join the appearance term (`temporal_loss`). `batch_rig_and_hints` / `batch_temporal` turn a loader
batch into the step's arguments.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from siam_depth_core.network.model import SiameseOutput, run_siamese
from siam_depth_core.training.config import TrainConfig
from siam_depth_core.training.losses import HintTargets, LossWeights, siamese_loss
from siam_depth_core.training.temporal_loss import clip_pair_transforms, frame_sources


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
    """Per-clip rig facts of a batch: (N,) baseline ratio to the reference rig, (N,) metres per unit disparity,
    and (N,) bool stereo (False for monocular clips; None when every clip is stereo)."""

    baseline_ratio: Tensor
    depth_per_disparity: Tensor
    stereo: Tensor | None = None


def _check_clips(left: Tensor, right: Tensor, rig: ClipRig | None, hints: tuple[Tensor, Tensor] | None,
                 temporal: TemporalBatch | None) -> int:
    """ValueError when `clip_step`'s arguments do not fit together; else the context frames on each side."""
    if left.ndim != 5 or left.shape != right.shape:
        raise ValueError(f"expected left/right clips of shape (N,T,3,H,W), got {tuple(left.shape)} and "
                         f"{tuple(right.shape)}")
    if (hints is not None or temporal is not None) and rig is None:
        raise ValueError("Depth Hints and M+S need the clips' rig (depth_per_disparity)")
    context = 0 if temporal is None else temporal.context
    if left.shape[1] <= 2 * context:
        raise ValueError(f"clips of {left.shape[1]} frames leave none between {context} context frames on each side")
    return context


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
    context = _check_clips(left, right, rig, hints, temporal)
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
                                       1.0 if temporal is None else temporal.weight,
                                       None if rig is None else rig.stereo)
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
        stereo = batch.get("stereo")
        rig = ClipRig(batch["baseline_ratio"].to(device).float(), batch["depth_per_disparity"].to(device).float(),
                      None if stereo is None or bool(stereo.all()) else stereo.to(device))
    hints = None
    if "hint_left" in batch:
        hints = (batch["hint_left"].to(device, non_blocking=True), batch["hint_right"].to(device, non_blocking=True))
    return rig, hints


def batch_temporal(batch: dict[str, Any], pose_model: nn.Module | None, config: TrainConfig,
                   device: torch.device) -> TemporalBatch | None:
    """The `clip_step` M+S argument of a loader batch (None without the pose network)."""
    if pose_model is None:
        return None
    return TemporalBatch(pose_model, config.temporal.frames, config.temporal.weight,
                         batch["camera_matrix"].to(device).float())
