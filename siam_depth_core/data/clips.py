"""Clips of T consecutive stereo frames of one `StereoSequence`, resized to the training size, as tensors.

A clip never crosses sequences: the recurrent state is reset at every clip start, so each item is one
independent (T,3,H,W) sequence. Augmentation draws are seeded from (seed, epoch, index), so an epoch
is reproducible whatever the number of DataLoader workers; call `set_epoch` at each epoch start.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from siam_depth_core.data.augment import StereoAugment
from siam_depth_core.data.depth_hints import DepthHintCache
from siam_depth_core.data.kitti import load_image
from siam_depth_core.data.stereo import ImageCrop, StereoRig, StereoSequence
from siam_depth_core.geometry import scale_intrinsics

LOGGER = logging.getLogger(__name__)
_T = TypeVar("_T")


class UnreadableImageError(Exception):
    """A training image (or its hint) that cannot be read: path and reason."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (H,W,C) image to size = (height, width) with cv2 INTER_AREA (no-op when already that size)."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H,W,3) uint8 RGB -> (3,H,W) float32 in [0,1]."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)


def consecutive_runs(frames: Iterable[int], clip_len: int) -> list[int]:
    """First frames of every run of `clip_len` consecutive indices contained in `frames` (overlapping runs)."""
    if clip_len < 1:
        raise ValueError(f"clip_len must be >= 1, got {clip_len}")
    present = set(frames)
    return sorted(f for f in present if all(f + k in present for k in range(1, clip_len)))


def augment_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A torch.Generator seeded from (seed, epoch, index) only, so augmentation is worker-independent."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)


class StereoClipDataset(Dataset):
    """All runs of `clip_len` consecutive frames of each sequence (sequences may come from different rigs).

    reference_rig: the rig whose baseline the network's disparities refer to (the checkpoint's); None =
    the first sequence's. A frame of a rig with baseline B is trained with disparity = network output *
    B / B_reference, so sources with different baselines agree on metric depth at inference.
    hints: Depth Hints cache; when given, items carry the fused SGBM disparities too.
    cache_in_memory: keep every resized image and hint once loaded (for small data sets: the 173 pairs
    of the KITTI excerpts take about 130 MB at 128x416), so later epochs decode nothing.
    context_frames: c extra frames before and after every clip (the temporal sources of M+S training):
    an item then holds T + 2c frames, of which the middle T are the clip.
    Item: {"left", "right": (T+2c,3,H,W) float32 RGB in [0,1] resized to size = (H,W), "drive": sequence
    name, "frames": (T+2c,) int64 frame numbers, "baseline_ratio": () float32 B / B_reference,
    "depth_per_disparity": () float32 metres (depth = it / disparity), "camera_matrix": (3,3) float32 K of
    the (augmented) left images at size (H,W), "stereo": () bool, False for a monocular clip (right =
    left; only the temporal term trains on it)}, and with hints "hint_left", "hint_right": (T+2c,1,H,W)
    float32 disparity as a fraction of width, 0 where SGBM found none (and everywhere in a monocular clip).
    """

    def __init__(self, sequences: Sequence[StereoSequence], clip_len: int = 1, size: tuple[int, int] = (256, 512),
                 augment: StereoAugment | None = None, seed: int = 0, reference_rig: StereoRig | None = None,
                 hints: DepthHintCache | None = None, cache_in_memory: bool = False, context_frames: int = 0) -> None:
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"size must be (height, width) in pixels, got {size}")
        names = [s.name for s in sequences]
        if len(set(names)) != len(names):
            raise ValueError(f"sequence names must be unique, got {names}")
        self.sequences = {s.name: s for s in sequences}
        if context_frames < 0:
            raise ValueError(f"context_frames must be >= 0, got {context_frames}")
        self.clip_len = clip_len
        self.context_frames = context_frames
        self.size = (int(size[0]), int(size[1]))
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.hints = hints
        self._memory: dict[tuple[str, Path, Path | None], torch.Tensor] | None = {} if cache_in_memory else None
        self.clips: list[tuple[str, int]] = [
            (s.name, start) for s in sequences for start in consecutive_runs(s.frames, self.frames_per_item)
        ]
        if not self.clips:
            raise ValueError(f"no clip of {self.frames_per_item} consecutive frames in {names}")
        self.reference_rig = reference_rig or sequences[0].rig  # there are clips, so there are sequences
        self.skipped_files: set[Path] = set()
        self._positions = {s.name: {f: i for i, f in enumerate(s.frames)} for s in sequences}

    @property
    def frames_per_item(self) -> int:
        """Frames in one item: the clip and its context before and after."""
        return self.clip_len + 2 * self.context_frames

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of `epoch` (as DistributedSampler.set_epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.clips)

    def _cached(self, key: tuple[str, Path, Path | None], load: Callable[[], torch.Tensor]) -> torch.Tensor:
        if self._memory is None:
            return load()
        if key not in self._memory:
            self._memory[key] = load()
        return self._memory[key]

    def _image(self, path: Path, crop: ImageCrop | None = None) -> torch.Tensor:
        """(3,H,W) float32 RGB in [0,1] at the training size (`crop` cut out first)."""
        def load() -> torch.Tensor:
            image = load_image(path)
            return image_to_tensor(resize_image(image if crop is None else crop.apply(image), self.size))

        return self._cached(("image", path, None), load)

    def _hints(self, left_path: Path, right_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        """(1,H,W) float32 left and right hint at the training size (nearest neighbour: no mixed disparities)."""
        hints = self.hints
        if hints is None:
            raise RuntimeError("this dataset was built without Depth Hints (hints=None)")

        def load() -> torch.Tensor:
            hint = hints.get(left_path, right_path)
            height, width = self.size
            resized = [cv2.resize(h, (width, height), interpolation=cv2.INTER_NEAREST) for h in (hint.left, hint.right)]
            return torch.from_numpy(np.stack(resized).astype(np.float32))

        both = self._cached(("hints", left_path, right_path), load)
        return both[0:1], both[1:2]

    def __getitem__(self, index: int) -> dict:
        """Clip `index`; a clip with an unreadable image is skipped (one warning naming the file, counted in
        `skipped_files`) and the next readable clip is returned instead."""
        for offset in range(len(self.clips)):
            candidate = (index + offset) % len(self.clips)
            try:
                return self._load_clip(candidate, index)
            except UnreadableImageError as error:
                if error.path not in self.skipped_files:
                    LOGGER.warning("skipping the clips with unreadable image %s (%s)", error.path, error.reason)
                self.skipped_files.add(error.path)
        raise RuntimeError(f"no readable clip: every clip has an unreadable image ({len(self.skipped_files)} files, "
                           f"e.g. {sorted(self.skipped_files)[0]})")

    def _read(self, load: Callable[[], _T], path: Path) -> _T:
        try:
            return load()
        except (OSError, ValueError) as error:  # missing, corrupt or undecodable file
            raise UnreadableImageError(path, str(error)) from error

    def _load_clip(self, index: int, augment_index: int) -> dict:
        name, start = self.clips[index]
        sequence = self.sequences[name]
        positions = [self._positions[name][f] for f in range(start, start + self.frames_per_item)]
        left = torch.stack([self._read(partial(self._image, sequence.left[p], sequence.crop), sequence.left[p])
                            for p in positions])
        right = left if sequence.monocular else torch.stack(
            [self._read(partial(self._image, sequence.right[p], sequence.crop), sequence.right[p]) for p in positions])
        height, width = self.size
        rig = sequence.rig
        camera_matrix = scale_intrinsics(rig.camera_matrix, width / rig.image_size[0], height / rig.image_size[1])
        # a monocular clip takes the reference baseline: its depth is in the stereo clips' metric scale
        baseline_m = self.reference_rig.baseline_m if sequence.monocular else rig.baseline_m
        depth_per_disparity = baseline_m * rig.fx / rig.image_size[0]
        hint_pair = None
        if self.hints is not None and sequence.monocular:  # no stereo partner, no hint: zeros supervise nothing
            hint_pair = (torch.zeros(len(positions), 1, height, width), torch.zeros(len(positions), 1, height, width))
        elif self.hints is not None:
            pairs = [self._read(partial(self._hints, sequence.left[p], sequence.right[p]), sequence.left[p])
                     for p in positions]
            hint_pair = (torch.stack([h[0] for h in pairs]), torch.stack([h[1] for h in pairs]))
        if self.augment is not None:
            draw = self.augment.draw(augment_generator(self.seed, self.epoch, augment_index))
            left, right = self.augment.apply(draw, left, right)
            if hint_pair is not None:
                hint_pair = self.augment.apply_geometric(draw, *hint_pair, disparity=True)
            camera_matrix = self.augment.camera_matrix(draw, camera_matrix, height, width)
            depth_per_disparity *= self.augment.disparity_scale(draw, width)
        item = {"drive": name, "frames": torch.tensor([sequence.frames[p] for p in positions], dtype=torch.long),
                "baseline_ratio": torch.tensor(baseline_m / self.reference_rig.baseline_m),
                "stereo": torch.tensor(not sequence.monocular),
                "depth_per_disparity": torch.tensor(depth_per_disparity, dtype=torch.float32),
                "camera_matrix": torch.from_numpy(camera_matrix.astype(np.float32)),
                "left": left, "right": right}
        if hint_pair is not None:
            item.update(hint_left=hint_pair[0], hint_right=hint_pair[1])
        return item


class MixedClipDataset(Dataset):
    """Stereo clips mixed with monocular clips (M+S with monocular video) in a fixed proportion.

    An epoch holds every stereo clip once and round(n_stereo * mono_fraction / (1 - mono_fraction)) monocular
    clips, drawn without replacement from (seed, epoch) (a new draw each epoch, so a large video is walked
    through over the epochs); shuffled batches then hold `mono_fraction` monocular clips on average. Items
    are those of `StereoClipDataset` (`stereo` tells them apart); both data sets must share size, clip length,
    context frames and reference rig.
    """

    def __init__(self, stereo: StereoClipDataset, monocular: StereoClipDataset, mono_fraction: float,
                 seed: int = 0) -> None:
        if not 0.0 < mono_fraction < 1.0:
            raise ValueError(f"mono_fraction must be in (0, 1) to mix, got {mono_fraction}")
        if (stereo.size, stereo.frames_per_item) != (monocular.size, monocular.frames_per_item):
            raise ValueError("stereo and monocular clips must share the size, clip length and context frames")
        self.stereo, self.monocular = stereo, monocular
        self.mono_per_epoch = min(len(monocular), round(len(stereo) * mono_fraction / (1.0 - mono_fraction)))
        self.seed = seed
        self._mono_order = self._draw(0)

    @property
    def reference_rig(self) -> StereoRig:
        """The stereo clips' reference rig (the checkpoint's)."""
        return self.stereo.reference_rig

    def _draw(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, epoch, 7]).generate_state(1)[0]))
        return torch.randperm(len(self.monocular), generator=generator)[:self.mono_per_epoch].tolist()

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws and the monocular clips of `epoch`."""
        self.stereo.set_epoch(epoch)
        self.monocular.set_epoch(epoch)
        self._mono_order = self._draw(epoch)

    def __len__(self) -> int:
        return len(self.stereo) + self.mono_per_epoch

    def __getitem__(self, index: int) -> dict:
        if index < len(self.stereo):
            return self.stereo[index]
        return self.monocular[self._mono_order[index - len(self.stereo)]]
