"""The training data: the clips of the configured sources (`build_dataset`), the held-out validation streams,
the Depth Hints cache, and each epoch's loader (`epoch_loader`, over a `ResumableSampler` that can start
part-way into an epoch after a resume and shares every global batch among the DDP processes).

Validation (`validation.sequences`): the last frames of the named training sequences are held out
(`data.holdout`); `validation.lidar_drives` adds whole drives scored on their LiDAR only.
"""
from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from siam_depth_core.data.clips import MixedClipDataset, StereoClipDataset
from siam_depth_core.data.stereo import StereoRig, StereoSequence
from siam_depth_core.training.config import TrainConfig
from siam_depth_core.training.distributed import DistributedContext
from siam_depth_core.training.validation import LidarStream, ValidationStream

if TYPE_CHECKING:
    from siam_depth_core.data.synthetic import SyntheticClipDataset

LOGGER = logging.getLogger("siam_depth.train")


@dataclass
class TrainingData:
    """What `build_dataset` prepares: the training clips, the reference rig (stored in the checkpoint), the
    held-out validation streams and the Depth Hints cache that scores them (None without validation or hints)."""

    dataset: StereoClipDataset | MixedClipDataset | SyntheticClipDataset
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
        return _synthetic_data(config)

    from siam_depth_core.data.holdout import split_validation

    sequences, raw_root_of = _source_sequences(config)
    monocular = [s for s in sequences if s.monocular]
    held_out = config.validation
    training, validation = split_validation([s for s in sequences if not s.monocular], held_out.sequences,
                                            held_out.holdout_frames, held_out.gap_frames)
    hints = _depth_hints(config, training, validation)
    size = (int(config.size[0]), int(config.size[1]))
    clips = functools.partial(StereoClipDataset, clip_len=config.clip_len, size=size, augment=augment,
                              seed=config.seed, hints=hints if config.depth_hints else None,
                              cache_in_memory=config.cache_images, context_frames=config.temporal.context_frames)
    stereo = clips(training)
    dataset: StereoClipDataset | MixedClipDataset = stereo
    if monocular:
        video = clips(monocular, reference_rig=stereo.reference_rig)
        dataset = MixedClipDataset(stereo, video, config.mono_fraction, seed=config.seed)
    streams = _validation_streams(config, training, validation, raw_root_of)
    return TrainingData(dataset, stereo.reference_rig, streams, hints)


def _synthetic_data(config: TrainConfig) -> TrainingData:
    """`dataset: synthetic`: rendered clips of a fixed rig, no validation."""
    from siam_depth_core.data.synthetic import SyntheticClipDataset

    size = (int(config.size[0]), int(config.size[1]))
    synthetic = SyntheticClipDataset(num_clips=config.synthetic_clips, clip_len=config.clip_len,
                                     size=size, seed=config.seed)
    rig = StereoRig(baseline_m=float(synthetic.baseline_m),
                    camera_matrix=np.asarray(synthetic.camera_matrix),
                    image_size=(config.size[1], config.size[0]))
    return TrainingData(synthetic, rig)


def _source_sequences(config: TrainConfig) -> tuple[list[StereoSequence], dict[str, str | None]]:
    """Every sequence of the configured sources (Eigen test drives left out when asked) and, by name, the KITTI
    raw root each came from (None for other sources): the LiDAR that scores a validation stream."""
    from siam_depth_core.data.sources import load_source
    from siam_depth_core.data.splits import eigen_test_drives

    excluded = eigen_test_drives(config.splits_dir) if config.exclude_eigen_test else set()
    raw_root_of: dict[str, str | None] = {}
    sequences = []
    for spec in config.training_sources():
        for sequence in load_source(spec, excluded, config.splits_dir, config.image_ext,
                                    aspect=config.size[1] / config.size[0]):
            raw_root_of[sequence.name] = str(spec.data_root()) if spec.kind == "kitti_raw" else None
            sequences.append(sequence)
    return sequences, raw_root_of


def _depth_hints(config: TrainConfig, training: list[StereoSequence], validation: list[StereoSequence]) -> Any:
    """The Depth Hints cache, filled for the training pairs (with `depth_hints`) and the validation pairs;
    None when neither needs it."""
    if not (config.depth_hints or validation):
        return None
    from siam_depth_core.data import paths
    from siam_depth_core.data.depth_hints import DepthHintCache

    hints = DepthHintCache(config.hints_cache_dir or paths.depth_hints_cache_dir())
    scored = (training if config.depth_hints else []) + validation
    computed = hints.fill((pair for s in scored for pair in zip(s.left, s.right, strict=True)),
                          progress=int(os.environ.get("RANK", "0")) == 0)
    LOGGER.info("depth hints: %d pairs computed, the rest read from %s", computed, hints.cache_dir)
    return hints


def _validation_streams(config: TrainConfig, training: list[StereoSequence], validation: list[StereoSequence],
                        raw_root_of: dict[str, str | None]) -> list[ValidationStream | LidarStream]:
    """The held-out streams (with their drive's LiDAR where there is one) and the LiDAR-only drives."""
    from siam_depth_core.data import paths

    held_out = config.validation
    streams: list[ValidationStream | LidarStream] = [ValidationStream.with_lidar_if_any(s, raw_root_of[s.name])
                                                      for s in validation]
    trained = {s.name for s in training}
    for name in held_out.lidar_drives:
        if name in trained:
            raise ValueError(f"validation.lidar_drives names {name}, which is also a training sequence")
        lidar_root = paths.expand_root(held_out.lidar_root) if held_out.lidar_root else paths.kitti_raw_root()
        streams.append(LidarStream.of_drive(lidar_root, name))
    return streams


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


def epoch_loader(dataset: StereoClipDataset | MixedClipDataset | SyntheticClipDataset, config: TrainConfig, ctx: DistributedContext,
                 epoch: int, steps_done: int, device: torch.device) -> tuple[DataLoader, int]:
    """This process's loader over epoch `epoch`, starting after its first `steps_done` batches, and the number
    of steps in a whole epoch; ValueError when the clips do not fill one global batch."""
    local_batch = ctx.local_batch(config.batch_size)
    sampler = ResumableSampler(dataset, ctx.world_size, ctx.rank, config.seed, skip=steps_done * local_batch)
    sampler.set_epoch(epoch)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    loader = DataLoader(dataset, batch_size=local_batch, sampler=sampler, drop_last=True,
                        num_workers=config.num_workers, pin_memory=device.type == "cuda",
                        persistent_workers=False)
    steps_per_epoch = sampler.num_samples // local_batch
    if steps_per_epoch == 0:
        raise ValueError(f"{len(dataset)} clips are fewer than one global batch of {config.batch_size}")
    return loader, steps_per_epoch
