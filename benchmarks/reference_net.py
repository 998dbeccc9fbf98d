"""The network a user would pick instead, for timing only: monodepth2's depth network layout with random weights.

Encoder: ResNet-18 (7x7/2 convolution, batch norm, ReLU, 3x3/2 max pool, four stages of two basic
residual blocks with 64/128/256/512 channels; the first block of stages 2-4 downsamples by 2 with a 1x1
projection on its shortcut). Decoder (monodepth2's `DepthDecoder`): from 1/32 up to full resolution,
at each level a 3x3 reflection-padded convolution + ELU, 2x nearest upsampling, concatenation with the
encoder feature of that scale (none at full resolution), another 3x3 convolution + ELU; decoder widths
16/32/64/128/256; a 3x3 convolution + sigmoid gives the disparity at 4 scales.

The layers are written here rather than taken from torchvision: the torchvision wheel on the package
index does not load beside the CPU build of torch this project pins (its compiled operators fail to
register), and the timing needs the layout, not the ImageNet weights.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ENCODER_CHANNELS = (64, 64, 128, 256, 512)
DECODER_CHANNELS = (16, 32, 64, 128, 256)
DISPARITY_SCALES = (0, 1, 2, 3)


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 convolutions with batch norm, ReLU, and an identity or 1x1 shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18Encoder(nn.Module):
    """ResNet-18 features at 1/2 (stem), 1/4, 1/8, 1/16 and 1/32 of the input."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True))
        self.pool = nn.MaxPool2d(3, 2, 1)
        stages = []
        in_channels = 64
        for index, channels in enumerate(ENCODER_CHANNELS[1:]):
            stride = 1 if index == 0 else 2
            stages.append(nn.Sequential(BasicBlock(in_channels, channels, stride), BasicBlock(channels, channels, 1)))
            in_channels = channels
        self.stages = nn.ModuleList(stages)

    def forward(self, image: Tensor) -> list[Tensor]:
        features = [self.stem(image)]
        x = self.pool(features[0])
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def _conv_elu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(in_channels, out_channels, 3), nn.ELU(inplace=True))


class DepthDecoder(nn.Module):
    """monodepth2's decoder: sigmoid disparity at scales 0..3 (full, 1/2, 1/4, 1/8)."""

    def __init__(self) -> None:
        super().__init__()
        self.up_first = nn.ModuleList()
        self.up_second = nn.ModuleList()
        previous = ENCODER_CHANNELS[-1]
        for level in range(4, -1, -1):
            channels = DECODER_CHANNELS[level]
            self.up_first.append(_conv_elu(previous, channels))
            skip = ENCODER_CHANNELS[level - 1] if level > 0 else 0
            self.up_second.append(_conv_elu(channels + skip, channels))
            previous = channels
        self.disparity = nn.ModuleDict({str(s): nn.Sequential(nn.ReflectionPad2d(1),
                                                              nn.Conv2d(DECODER_CHANNELS[s], 1, 3))
                                        for s in DISPARITY_SCALES})

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        x = features[-1]
        disparities = {}
        for first, second, level in zip(self.up_first, self.up_second, range(4, -1, -1), strict=True):
            x = F.interpolate(first(x), scale_factor=2.0, mode="nearest")
            if level > 0:
                x = torch.cat([x, features[level - 1]], dim=1)
            x = second(x)
            if level in DISPARITY_SCALES:
                disparities[level] = torch.sigmoid(self.disparity[str(level)](x))
        return [disparities[s] for s in DISPARITY_SCALES]


class Monodepth2Reference(nn.Module):
    """ResNet-18 encoder + monodepth2 decoder; `forward` returns the full-resolution disparity (N,1,H,W).

    H and W must be multiples of 32."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = ResNet18Encoder()
        self.decoder = DepthDecoder()

    def forward(self, image: Tensor) -> Tensor:
        return self.decoder(self.encoder(image))[0]
