"""Depth Hints (Watson et al., ICCV 2019): fused SGBM proxy disparities for stereo training, cached on disk.

For each stereo pair, OpenCV's semi-global matcher runs with several parameter sets; per pixel the
candidate whose disparity reconstructs the view best (the training loss's photometric error, SSIM +
L1) is kept. The right view's hint comes from the mirrored pair. Hints are computed once per pair at
the images' own resolution and stored as fractions of the image width (monodepth convention, 0 where
no candidate matched), so any training size reuses them. The training loss uses a hint only where it
reconstructs the view better than the current prediction (`losses.depth_hint_loss`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from siam_depth_core.data.kitti import load_image
from siam_depth_core.photometric import photometric_error
from siam_depth_core.warp import warp_horizontal

LOGGER = logging.getLogger(__name__)

#: Bump when the way hints are computed changes: old cache files are then ignored.
HINT_VERSION = 1


@dataclass(frozen=True)
class SgbmParams:
    """One OpenCV StereoSGBM setting: search range (pixels, multiple of 16) and odd block size."""

    num_disparities: int
    block_size: int

    def __post_init__(self) -> None:
        if self.num_disparities < 16 or self.num_disparities % 16:
            raise ValueError(f"num_disparities must be a positive multiple of 16, got {self.num_disparities}")
        if self.block_size < 1 or self.block_size % 2 == 0:
            raise ValueError(f"block_size must be odd and >= 1, got {self.block_size}")

    def matcher(self) -> cv2.StereoSGBM:
        """The matcher, with smoothness penalties P1/P2 scaled by the block area as OpenCV suggests."""
        area = 3 * self.block_size ** 2
        return cv2.StereoSGBM.create(minDisparity=0, numDisparities=self.num_disparities, blockSize=self.block_size,
                                     P1=8 * area, P2=32 * area, disp12MaxDiff=1, uniquenessRatio=5,
                                     speckleWindowSize=100, speckleRange=2, mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)


#: The parameter sets fused by default: 3 search ranges x 3 block sizes (Depth Hints fuses 12 such runs).
DEFAULT_SGBM_SETS: tuple[SgbmParams, ...] = tuple(SgbmParams(n, b) for n in (64, 128, 192) for b in (1, 3, 5))


def sgbm_disparity(left: np.ndarray, right: np.ndarray, params: SgbmParams) -> np.ndarray:
    """(H,W) float32 left-view disparity in pixels of an (H,W,3) uint8 rectified pair; NaN where unmatched."""
    raw = params.matcher().compute(left, right).astype(np.float32) / 16.0  # fixed point, 4 fractional bits
    raw[raw <= 0] = np.nan
    return raw


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0).unsqueeze(0)


def fuse_candidates(left: np.ndarray, right: np.ndarray, candidates: Sequence[np.ndarray]) -> np.ndarray:
    """Per pixel, the candidate disparity (pixels, NaN = none) whose reconstruction of `left` has the lowest
    photometric error (SSIM + L1 as in the training loss). Returns (H,W) float32 pixels, 0 where every
    candidate is NaN."""
    target, source = _to_tensor(left), _to_tensor(right)
    width = left.shape[1]
    best_error = torch.full(left.shape[:2], float("inf"))
    best = torch.zeros(left.shape[:2])
    with torch.no_grad():
        for disparity in candidates:
            disp = torch.from_numpy(np.nan_to_num(disparity, nan=0.0))
            error = photometric_error(target, warp_horizontal(source, -(disp / width)[None, None]))[0, 0]
            error[torch.from_numpy(np.isnan(disparity))] = float("inf")
            better = error < best_error
            best = torch.where(better, disp, best)
            best_error = torch.where(better, error, best_error)
    return best.numpy().astype(np.float32)


def fused_hint(left: np.ndarray, right: np.ndarray, param_sets: Sequence[SgbmParams] = DEFAULT_SGBM_SETS
               ) -> np.ndarray:
    """The fused SGBM disparity of the left view of an (H,W,3) uint8 RGB pair: (H,W) float32 pixels, 0 = none."""
    if left.shape != right.shape or left.ndim != 3:
        raise ValueError(f"stereo images must have the same (H,W,3) shape, got {left.shape} and {right.shape}")
    return fuse_candidates(left, right, [sgbm_disparity(left, right, p) for p in param_sets])


@dataclass(frozen=True)
class StereoHint:
    """Fused hints of one pair: (H,W) float32 left and right disparity, fraction of width, 0 = none."""

    left: np.ndarray
    right: np.ndarray


def stereo_hint(left: np.ndarray, right: np.ndarray, param_sets: Sequence[SgbmParams] = DEFAULT_SGBM_SETS
                ) -> StereoHint:
    """Hints of both views: the right view's from the mirrored pair (flip(R) as left, flip(L) as right)."""
    width = left.shape[1]
    hint_left = fused_hint(left, right, param_sets)
    hint_right = fused_hint(right[:, ::-1], left[:, ::-1], param_sets)[:, ::-1]
    return StereoHint(left=hint_left / width, right=np.ascontiguousarray(hint_right) / width)


def _content_digest(path: Path, memo: dict[tuple[str, int, int], str]) -> str:
    """sha256 of the file's bytes, remembered per (path, size, modification time) so each file is read once."""
    stat = path.stat()
    identity = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if identity not in memo:
        memo[identity] = hashlib.sha256(path.read_bytes()).hexdigest()
    return memo[identity]


class DepthHintCache:
    """Fused hints on disk, one `.npz` per stereo pair, computed on first use.

    The key covers the content of both image files (sha256 of their bytes), the SGBM parameter sets and
    HINT_VERSION, so a changed image or setting never reuses a stale hint, while a copied or re-mounted
    dataset (new paths, new modification times) reuses the hints already computed. Files are
    written to a temporary name and renamed, so processes filling the same cache never see half a file.
    """

    def __init__(self, cache_dir: str | Path, param_sets: Sequence[SgbmParams] = DEFAULT_SGBM_SETS) -> None:
        if not param_sets:
            raise ValueError("depth hints need at least one SGBM parameter set")
        self.cache_dir = Path(cache_dir)
        self.param_sets = tuple(param_sets)
        self._digests: dict[tuple[str, int, int], str] = {}

    def key(self, left_path: str | Path, right_path: str | Path) -> str:
        """Hex digest naming the cache file of this pair under the current settings."""
        description = {"left": _content_digest(Path(left_path), self._digests),
                       "right": _content_digest(Path(right_path), self._digests),
                       "sgbm": [asdict(p) for p in self.param_sets], "version": HINT_VERSION}
        return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:32]

    def path(self, left_path: str | Path, right_path: str | Path) -> Path:
        """Where the hint of this pair is (or will be) stored."""
        return self.cache_dir / f"{self.key(left_path, right_path)}.npz"

    def get(self, left_path: str | Path, right_path: str | Path) -> StereoHint:
        """The pair's hint, read from the cache or computed and stored."""
        path = self.path(left_path, right_path)
        if path.is_file():
            try:
                with np.load(path) as data:
                    return StereoHint(data["left"].astype(np.float32), data["right"].astype(np.float32))
            except (OSError, ValueError, KeyError, EOFError):
                pass  # damaged file (e.g. disk full while another process wrote it): compute it again
        computed = stereo_hint(load_image(left_path), load_image(right_path), self.param_sets)
        # Stored as float16; return what a later read gives, so the first epoch sees the same values.
        hint = StereoHint(computed.left.astype(np.float16).astype(np.float32),
                          computed.right.astype(np.float16).astype(np.float32))
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp.npz", dir=self.cache_dir)
        os.close(fd)
        try:
            np.savez_compressed(tmp_name, left=hint.left.astype(np.float16), right=hint.right.astype(np.float16))
            os.replace(tmp_name, path)
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        return hint

    def _cached(self, left_path: str | Path, right_path: str | Path) -> bool:
        try:
            return self.path(left_path, right_path).is_file()
        except OSError:  # an image is missing: `get` reports it
            return False

    def fill(self, pairs: Iterable[tuple[Path, Path]], progress: bool = True) -> int:
        """Compute every missing hint of `pairs` (with a progress bar); returns how many were computed.

        A pair whose images cannot be read is left out with a warning (training skips its clips)."""
        from tqdm import tqdm

        computed = 0
        missing = [pair for pair in pairs if not self._cached(*pair)]
        for left_path, right_path in tqdm(missing, desc="depth hints (SGBM)", disable=not progress or None,
                                          dynamic_ncols=True):
            try:
                self.get(left_path, right_path)
                computed += 1
            except (OSError, ValueError) as error:
                LOGGER.warning("no depth hint for %s: %s", left_path, error)
        return computed
