"""Stereo training augmentation as in monodepth: flip with left/right swap, gamma, brightness, per-channel colour."""
from __future__ import annotations

from dataclasses import dataclass

import torch


def _check_range(name: str, bounds: tuple[float, float]) -> None:
    low, high = bounds
    if not 0 < low <= high:
        raise ValueError(f"{name} must be a range (low, high) with 0 < low <= high, got {bounds}")


@dataclass(frozen=True)
class StereoAugment:
    """Random augmentation of a stereo clip, one draw of parameters for the whole clip.

    flip_prob: probability of mirroring both images and swapping them (the mirrored right image becomes
    the left one, so the pair stays a valid rectified stereo pair). prob: probability of the photometric
    part, which applies image ** gamma, * brightness, * colour (one factor per RGB channel) with each
    factor uniform in its range, then clamps to [0,1].
    """

    flip_prob: float = 0.5
    gamma: tuple[float, float] = (0.8, 1.2)
    brightness: tuple[float, float] = (0.5, 2.0)
    colour: tuple[float, float] = (0.8, 1.2)
    prob: float = 0.5

    def __post_init__(self) -> None:
        for name in ("flip_prob", "prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0,1], got {getattr(self, name)}")
        _check_range("gamma", self.gamma)
        _check_range("brightness", self.brightness)
        _check_range("colour", self.colour)

    def __call__(self, left: torch.Tensor, right: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment (T,3,H,W) or (3,H,W) RGB images in [0,1]; returns new (left, right) in [0,1].

        The same number of random values is drawn whatever happens, so the generator advances identically.
        """
        if left.shape != right.shape or left.dim() not in (3, 4) or left.shape[-3] != 3:
            raise ValueError(f"left/right must both be (T,3,H,W) or (3,H,W) RGB, got {tuple(left.shape)} "
                             f"and {tuple(right.shape)}")
        flip, photometric, gamma_u, brightness_u = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
        colour_u = torch.rand(3, generator=generator, dtype=torch.float64)

        if flip < self.flip_prob:
            left, right = right.flip(-1), left.flip(-1)
        if photometric < self.prob:
            gamma = self.gamma[0] + (self.gamma[1] - self.gamma[0]) * gamma_u
            brightness = self.brightness[0] + (self.brightness[1] - self.brightness[0]) * brightness_u
            colour = self.colour[0] + (self.colour[1] - self.colour[0]) * colour_u
            factor = (brightness * colour).to(left.dtype).view(3, 1, 1)
            left = left.clamp(0, 1) ** gamma * factor
            right = right.clamp(0, 1) ** gamma * factor
        return left.clamp(0, 1), right.clamp(0, 1)
