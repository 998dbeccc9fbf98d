"""The pose network of temporal self-supervision (monodepth2's M+S): two frames in, 6-DoF camera motion out.

`PoseNet(earlier, later)` returns the axis-angle rotation (radians) and translation (metres, in the
scale that the stereo term fixes) of T_{earlier->later}, the rigid transform that maps a point from the
earlier camera's optical frame (x right, y down, z forward) into the later camera's. Feeding the two
frames in temporal order whatever the target is (monodepth2's choice) lets one pose serve both
directions: T_{t->t+1} = T(I_t, I_{t+1}) and T_{t->t-1} = T(I_{t-1}, I_t)^-1.

Smaller than monodepth2's ResNet-18 pose encoder (trained from scratch here, no ImageNet weights):
seven stride-2 convolutions with ReLU (SfMLearner's pose CNN) and a 1x1 head averaged over the image. The
head starts at zero, so training starts from the identity pose; the rotation is scaled by 0.01 (monodepth2),
the translation not at all, so that it reaches KITTI's ~1 m per frame within tens of steps (with monodepth2's
0.01 a run of 372 steps at lr 3e-4 still predicted 0.02 m per frame).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

#: Output channels of the seven stride-2 convolutions (kernel 7, 5, then 3).
POSE_CHANNELS = (16, 32, 64, 128, 256, 256, 256)
#: The head's rotation output is multiplied by this (monodepth2), the translation by TRANSLATION_SCALE.
POSE_SCALE = 0.01
TRANSLATION_SCALE = 1.0
#: ImageNet-style normalisation of the [0,1] input.
_INPUT_MEAN, _INPUT_STD = 0.45, 0.225


class PoseNet(nn.Module):
    """Relative camera motion between two RGB frames; see the module docstring."""

    def __init__(self, channels: tuple[int, ...] = POSE_CHANNELS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 6
        for index, out_channels in enumerate(channels):
            kernel = 7 if index == 0 else 5 if index == 1 else 3
            layers += [nn.Conv2d(in_channels, out_channels, kernel, stride=2, padding=kernel // 2),
                       nn.ReLU(inplace=True)]
            in_channels = out_channels
        self.encoder = nn.Sequential(*layers)
        self.head = nn.Conv2d(in_channels, 6, 1)
        nn.init.zeros_(self.head.weight)
        if self.head.bias is not None:
            nn.init.zeros_(self.head.bias)
        for module in self.encoder:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, earlier: Tensor, later: Tensor) -> tuple[Tensor, Tensor]:
        """earlier, later: (N,3,H,W) RGB in [0,1]. Returns (axis_angle (N,3) radians, translation (N,3) metres)
        of T_{earlier->later}."""
        if earlier.shape != later.shape or earlier.ndim != 4 or earlier.shape[1] != 3:
            raise ValueError(f"PoseNet needs two (N,3,H,W) frames of one shape, got {tuple(earlier.shape)} and "
                             f"{tuple(later.shape)}")
        pair = (torch.cat([earlier, later], dim=1) - _INPUT_MEAN) / _INPUT_STD
        pose = self.head(self.encoder(pair)).mean(dim=(2, 3))
        return pose[:, :3] * POSE_SCALE, pose[:, 3:] * TRANSLATION_SCALE


#: Below this squared angle (rad^2) the Rodrigues coefficients come from their Taylor series.
_SMALL_ANGLE_SQUARED = 1e-6


def axis_angle_to_matrix(axis_angle: Tensor) -> Tensor:
    """(N,3) axis-angle vectors v (direction = axis, norm = angle in radians) -> (N,3,3) rotation matrices,
    R = I + sin(t)/t [v]x + (1 - cos(t))/t^2 [v]x^2 (Rodrigues, t = |v|). Near t = 0 the coefficients come from
    their Taylor series, so R and its gradient are exact there: dR/dv = [.]x at v = 0 (a zero-initialised pose
    head must be able to leave the identity; with v / |v| as the axis the gradient at zero was zero)."""
    angle_squared = (axis_angle * axis_angle).sum(dim=1)
    small = angle_squared < _SMALL_ANGLE_SQUARED
    safe_squared = torch.where(small, torch.ones_like(angle_squared), angle_squared)  # no 0/0 in either branch
    angle = safe_squared.sqrt()
    first = torch.where(small, 1.0 - angle_squared / 6.0, torch.sin(angle) / angle).view(-1, 1, 1)
    second = torch.where(small, 0.5 - angle_squared / 24.0, (1.0 - torch.cos(angle)) / safe_squared).view(-1, 1, 1)
    x, y, z = axis_angle.unbind(dim=1)
    zeros = torch.zeros_like(x)
    cross = torch.stack([zeros, -z, y, z, zeros, -x, -y, x, zeros], dim=1).view(-1, 3, 3)
    identity = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device).expand_as(cross)
    return identity + first * cross + second * (cross @ cross)


def pose_matrix(axis_angle: Tensor, translation: Tensor, invert: bool = False) -> Tensor:
    """(N,4,4) homogeneous transform [R | t] from (N,3) axis-angle and (N,3) translation; with `invert`,
    its inverse [R^T | -R^T t]."""
    rotation = axis_angle_to_matrix(axis_angle)
    offset = translation.unsqueeze(-1)
    if invert:
        rotation = rotation.transpose(1, 2)
        offset = -rotation @ offset
    bottom = translation.new_tensor([0.0, 0.0, 0.0, 1.0]).expand(translation.shape[0], 1, 4)
    return torch.cat([torch.cat([rotation, offset], dim=2), bottom], dim=1)
