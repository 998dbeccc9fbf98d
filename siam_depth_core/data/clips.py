"""Clips of T consecutive stereo frames of one KITTI raw drive, resized to the training size, as tensors.

A clip never crosses drives: the recurrent state is reset at every clip start, so each item is one
independent (T,3,H,W) sequence. Augmentation draws are seeded from (seed, epoch, index), so an epoch
is reproducible whatever the number of DataLoader workers; call `set_epoch` at each epoch start.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from siam_depth_core.data.augment import StereoAugment
from siam_depth_core.data.kitti import frame_path, list_frames, load_image
from siam_depth_core.data.splits import SplitEntry


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


class KittiClipDataset(Dataset):
    """All runs of `clip_len` consecutive frames of one drive, from split entries or whole drives.

    entries: split entries; their frames (both sides merged, since every item is a stereo pair) define
    which frames exist. drives: use every frame with both camera-2 and camera-3 images of `ext`. Give
    exactly one of the two. exclude_drives: drives dropped from either (e.g. `eigen_test_drives()`).
    Item: {"left", "right": (T,3,H,W) float32 RGB in [0,1] resized to size = (H,W), "drive": str,
    "frames": (T,) int64 frame indices}.
    """

    def __init__(self, root: str | Path, entries: list[SplitEntry] | None = None, drives: list[str] | None = None,
                 clip_len: int = 1, size: tuple[int, int] = (256, 512), augment: StereoAugment | None = None,
                 ext: str = ".png", exclude_drives: set[str] | None = None, seed: int = 0) -> None:
        if (entries is None) == (drives is None):
            raise ValueError("give exactly one of `entries` (split lines) or `drives` (whole drives)")
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"size must be (height, width) in pixels, got {size}")
        self.root = Path(root)
        self.clip_len = clip_len
        self.size = (int(size[0]), int(size[1]))
        self.augment = augment
        self.ext = ext
        self.seed = seed
        self.epoch = 0
        excluded = exclude_drives or set()

        frames_by_drive: dict[str, set[int]] = defaultdict(set)
        if entries is not None:
            for entry in entries:
                frames_by_drive[entry.drive].add(entry.frame)
        else:
            for drive in drives:
                frames_by_drive[drive] = self._frames_with_both_views(drive)
        self.clips: list[tuple[str, int]] = [
            (drive, start)
            for drive in sorted(frames_by_drive) if drive not in excluded
            for start in consecutive_runs(frames_by_drive[drive], clip_len)
        ]
        if not self.clips:
            raise ValueError(f"no clip of {clip_len} consecutive frames in {sorted(frames_by_drive)} "
                             f"(excluding {sorted(excluded)}) under {self.root}")

    def _frames_with_both_views(self, drive: str) -> set[int]:
        drive_dir = self.root / drive
        both = set(list_frames(drive_dir, camera=2)) & set(list_frames(drive_dir, camera=3))
        return {f for f in both if frame_path(self.root, drive, f, 2, self.ext).is_file()
                and frame_path(self.root, drive, f, 3, self.ext).is_file()}

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of `epoch` (as DistributedSampler.set_epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.clips)

    def _load_view(self, drive: str, frames: range, camera: int) -> torch.Tensor:
        return torch.stack([
            image_to_tensor(resize_image(load_image(frame_path(self.root, drive, f, camera, self.ext)), self.size))
            for f in frames
        ])

    def __getitem__(self, index: int) -> dict:
        drive, start = self.clips[index]
        frames = range(start, start + self.clip_len)
        left = self._load_view(drive, frames, 2)
        right = self._load_view(drive, frames, 3)
        if self.augment is not None:
            left, right = self.augment(left, right, augment_generator(self.seed, self.epoch, index))
        return {"left": left, "right": right, "drive": drive, "frames": torch.tensor(list(frames), dtype=torch.long)}
