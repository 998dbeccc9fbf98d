"""The Siamese ConvLSTM U-Net of Yusiong & Naval (Table 1), with explicit recurrent state.

Layer names follow Table 1. Every ConvLSTM layer takes its state as an argument and returns the
next one; no module attribute holds state, so ONNX/TensorRT export and multi-stream inference work.

Disparities are fractions of the image width (monodepth convention); channel 0 is the left
disparity, channel 1 the right one.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from siam_depth_core.network.refine import flip_horizontal, refine_disparity

#: One ConvLSTM layer's state: (hidden h, cell c), each (N,C,H,W).
LayerState = tuple[Tensor, Tensor]
#: The network's whole recurrent state, one entry per ConvLSTM layer in `SiamDepthNet.state_names`.
NetState = tuple[LayerState, ...]

DEFAULT_MAX_DISP = 0.3
LEAKY_SLOPE = 0.2

# Table 1, encoder: (block name suffix, output channels) at scales 1, 2, 4, 8, 16.
_ENCODER_CHANNELS = (32, 64, 128, 256, 512)
_BOTTLENECK_CHANNELS = 1024  # conv6a/b at 1/32
_RECURRENT_BOTTLENECK_CHANNELS = 512  # convlstm7a/b at 1/32


def scaled_channels(channels: int, width_multiplier: float) -> int:
    """Channel count of a Table 1 layer under the width multiplier (at least 1)."""
    return max(1, int(round(channels * width_multiplier)))


class ConvLSTMCell(nn.Module):
    """Convolutional LSTM (Shi et al. 2015) with leaky-ReLU candidate and output activations.

    One 3x3 convolution over concat(x, h) yields the four gates i, f, o (sigmoid) and g
    (leaky ReLU, slope 0.2, as the paper states instead of tanh):
    c' = f*c + i*act(g); h' = o*act(c').
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.gates = nn.Conv2d(in_channels + hidden_channels, 4 * hidden_channels, kernel_size,
                               padding=kernel_size // 2)

    def forward(self, x: Tensor, state: LayerState | None = None) -> tuple[Tensor, LayerState]:
        """x: (N,C_in,H,W); state: (h, c), each (N,C_hidden,H,W), or None for zeros.

        Returns (h', (h', c')).
        """
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_channels, x.shape[2], x.shape[3])
            state = (zeros, zeros)
        hidden, cell = state
        gates = self.gates(torch.cat([x, hidden], dim=1))
        in_gate, forget_gate, out_gate, candidate = torch.split(gates, self.hidden_channels, dim=1)
        cell_next = (torch.sigmoid(forget_gate) * cell
                     + torch.sigmoid(in_gate) * F.leaky_relu(candidate, LEAKY_SLOPE))
        hidden_next = torch.sigmoid(out_gate) * F.leaky_relu(cell_next, LEAKY_SLOPE)
        return hidden_next, (hidden_next, cell_next)


class PlainSkip(nn.Module):
    """Stand-in for a ConvLSTM layer in the non-recurrent ablation: 3x3 conv + leaky ReLU, no state."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(self.conv(x), LEAKY_SLOPE)


def _conv_elu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ELU(inplace=True))


class _Deconv(nn.Module):
    """Table 1 `deconv`: 2x nearest upsampling then 3x3 conv + ELU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = _conv_elu(in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _DispHead(nn.Module):
    """Table 1 `disp`: 3x3 conv to 2 channels, `max_disp * sigmoid` (fraction of width)."""

    def __init__(self, in_channels: int, max_disp: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 2, 3, padding=1)
        self.max_disp = max_disp

    def forward(self, x: Tensor) -> Tensor:
        return self.max_disp * torch.sigmoid(self.conv(x))


class SiamDepthNet(nn.Module):
    """The ConvLSTM encoder-decoder of Table 1; one branch of the Siamese pair.

    `width_multiplier` multiplies every channel count (1.0 is Table 1 exactly, 0.25 the CPU/embedded variant).
    `recurrent=False` replaces the ConvLSTM layers with plain convolutions (ablation, Table 3).
    `lstm_ratio` multiplies the hidden channels of the ConvLSTM layers only (their gate convolutions, the
    state, and the skip features the decoder receives): 1.0 is Table 1; below 1 a faster variant whose
    ConvLSTM layers, 42 % of an fp32 step, shrink about quadratically (benchmarks/README.md, models/README.md).
    Input: (N,3,H,W) RGB in [0,1], H and W multiples of 32.
    """

    SKIP_NAMES = ("convlstm_skip1", "convlstm_skip2", "convlstm_skip3", "convlstm_skip4", "convlstm_skip5")
    BOTTLENECK_NAMES = ("convlstm7a", "convlstm7b")
    NUM_SCALES = 4

    def __init__(self, width_multiplier: float = 1.0, recurrent: bool = True, max_disp: float = DEFAULT_MAX_DISP,
                 lstm_ratio: float = 1.0) -> None:
        super().__init__()
        if not 0 < lstm_ratio <= 1:
            raise ValueError(f"lstm_ratio must be in (0, 1], got {lstm_ratio}")
        self.width_multiplier = width_multiplier
        self.recurrent = recurrent
        self.max_disp = max_disp
        self.lstm_ratio = lstm_ratio
        enc = [scaled_channels(c, width_multiplier) for c in _ENCODER_CHANNELS]
        bottleneck = scaled_channels(_BOTTLENECK_CHANNELS, width_multiplier)
        rec_bottleneck = scaled_channels(_RECURRENT_BOTTLENECK_CHANNELS, width_multiplier * lstm_ratio)
        skips = [scaled_channels(c, width_multiplier * lstm_ratio) for c in _ENCODER_CHANNELS]
        self._state_channels = dict(zip(self.SKIP_NAMES, skips, strict=True))
        self._state_channels.update({name: rec_bottleneck for name in self.BOTTLENECK_NAMES})

        in_channels = 3
        for level, channels in enumerate(enc, start=1):
            setattr(self, f"conv{level}a", _conv_elu(in_channels, channels))
            setattr(self, f"conv{level}b", _conv_elu(channels, channels))
            in_channels = channels
        self.conv6a = _conv_elu(enc[4], bottleneck)
        self.conv6b = _conv_elu(bottleneck, bottleneck)
        for name, channels, skip_channels in zip(self.SKIP_NAMES, enc, skips, strict=True):
            setattr(self, name, self._recurrent_layer(channels, skip_channels))
        self.convlstm7a = self._recurrent_layer(bottleneck, rec_bottleneck)
        self.convlstm7b = self._recurrent_layer(rec_bottleneck, rec_bottleneck)

        # Decoder: deconv{k} -> iconv{k}b (concat with skip [+ upsampled disp]) -> iconv{k}a [-> disp{k}].
        previous = rec_bottleneck
        for level in range(5, 0, -1):
            channels = enc[level - 1]
            setattr(self, f"deconv{level}", _Deconv(previous, channels))
            extra_disp = 2 if level <= 3 else 0
            setattr(self, f"iconv{level}b", _conv_elu(channels + skips[level - 1] + extra_disp, channels))
            setattr(self, f"iconv{level}a", _conv_elu(channels, channels))
            if level <= 4:
                setattr(self, f"disp{level}", _DispHead(channels, max_disp))
            previous = channels
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He (Kaiming) normal weights, fan-in, ReLU gain, and zero biases for every convolution.

        PyTorch's default (uniform, a = sqrt(5)) shrinks the activations by about half per layer: after the
        20-odd layers of Table 1 the encoder's and the skips' outputs hardly depend on the image, and a
        network trained from there learns a fixed depth layout from the biases and the zero padding (a
        run with the default initialisation predicted the same disparity, to 1e-5, for every image). He
        initialisation keeps the encoder activations at unit scale through the bottleneck.
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def _recurrent_layer(self, in_channels: int, out_channels: int) -> nn.Module:
        if self.recurrent:
            return ConvLSTMCell(in_channels, out_channels)
        return PlainSkip(in_channels, out_channels)

    @property
    def state_names(self) -> tuple[str, ...]:
        """Names of the ConvLSTM layers whose (h, c) make up the state, in state order."""
        return self.SKIP_NAMES + self.BOTTLENECK_NAMES if self.recurrent else ()

    def state_shapes(self, batch: int, height: int, width: int) -> dict[str, tuple[int, int, int, int]]:
        """Shape of h (and of c) for each ConvLSTM layer, for an input of (batch,3,height,width)."""
        check_input_size(height, width)
        scales = {name: 2 ** i for i, name in enumerate(self.SKIP_NAMES)}
        scales.update({name: 32 for name in self.BOTTLENECK_NAMES})
        return {name: (batch, self._state_channels[name], height // scales[name], width // scales[name])
                for name in self.state_names}

    def init_state(self, batch: int, height: int, width: int, device: torch.device | str | None = None,
                   dtype: torch.dtype = torch.float32) -> NetState:
        """An all-zeros state (what `state=None` means)."""
        shapes = self.state_shapes(batch, height, width)
        return tuple((torch.zeros(shape, device=device, dtype=dtype),
                      torch.zeros(shape, device=device, dtype=dtype)) for shape in shapes.values())

    def _apply_recurrent(self, name: str, x: Tensor, state: NetState | None, next_state: list[LayerState]
                         ) -> Tensor:
        layer = getattr(self, name)
        if not self.recurrent:
            return layer(x)
        layer_state = None if state is None else state[len(next_state)]
        if layer_state is not None:
            expected = (x.shape[0], layer.hidden_channels, x.shape[2], x.shape[3])
            for part, tensor in zip(("h", "c"), layer_state, strict=True):
                if tuple(tensor.shape) != expected:
                    raise ValueError(f"state {part} of {name} has shape {tuple(tensor.shape)}, expected {expected}"
                                     " for this input (run_siamese needs a state of batch 2N)")
        out, new_layer_state = layer(x, layer_state)
        next_state.append(new_layer_state)
        return out

    def forward(self, image: Tensor, state: NetState | None = None) -> tuple[list[Tensor], NetState]:
        """image: (N,3,H,W) RGB in [0,1]; state: `NetState` or None (zeros).

        Returns ([disp1, disp2, disp3, disp4], next_state): disp_s is (N,2,H/2^(s-1),W/2^(s-1)),
        channels (left, right), a fraction of width in (0, max_disp).
        """
        check_input_size(image.shape[-2], image.shape[-1])
        if state is not None and len(state) != len(self.state_names):
            raise ValueError(f"state has {len(state)} layers, the network has {len(self.state_names)}")
        next_state: list[LayerState] = []
        skips = []
        x = image
        for level, name in enumerate(self.SKIP_NAMES, start=1):
            x = getattr(self, f"conv{level}b")(getattr(self, f"conv{level}a")(x))
            skips.append(self._apply_recurrent(name, x, state, next_state))
            x = F.max_pool2d(x, 2)
        x = self.conv6b(self.conv6a(x))
        for name in self.BOTTLENECK_NAMES:
            x = self._apply_recurrent(name, x, state, next_state)

        disps: dict[int, Tensor] = {}
        for level in range(5, 0, -1):
            x = getattr(self, f"deconv{level}")(x)
            parts = [x, skips[level - 1]]
            if level + 1 in disps:
                parts.append(F.interpolate(disps[level + 1], scale_factor=2.0, mode="nearest"))
            x = getattr(self, f"iconv{level}a")(getattr(self, f"iconv{level}b")(torch.cat(parts, dim=1)))
            if level <= 4:
                disps[level] = getattr(self, f"disp{level}")(x)
        return [disps[1], disps[2], disps[3], disps[4]], tuple(next_state)


def check_input_size(height: int, width: int) -> None:
    """Raise ValueError unless height and width are positive multiples of 32."""
    if height <= 0 or width <= 0 or height % 32 or width % 32:
        raise ValueError(f"network input must be a positive multiple of 32 in both dimensions, got {width}x{height}"
                         " (width x height)")


@dataclass
class SiameseOutput:
    """Disparities of one Siamese step at the 4 scales (index 0 = full resolution).

    disp_direct: d1, (N,2,h,w) from the image itself (channels left, right), fraction of width.
    disp_flipped: d2, (N,2,h,w) from the flipped image, in flipped coordinates; None when not Siamese.
    disp_refined: D_refine, (N,2,h,w) refined (left, right); equals disp_direct when not Siamese.
    """

    disp_direct: list[Tensor]
    disp_flipped: list[Tensor] | None
    disp_refined: list[Tensor]

    def scaled(self, factor: Tensor) -> SiameseOutput:
        """Every disparity multiplied by a per-item (N,) factor (e.g. the rig's baseline ratio)."""
        view = factor.view(-1, 1, 1, 1)
        return SiameseOutput([d * view for d in self.disp_direct],
                             None if self.disp_flipped is None else [d * view for d in self.disp_flipped],
                             [d * view for d in self.disp_refined])


def run_siamese(net: SiamDepthNet, image: Tensor, state: NetState | None = None, siamese: bool = True
                ) -> tuple[SiameseOutput, NetState]:
    """One Siamese step: the image and its flip batched together (2N) through the shared weights.

    image: (N,3,H,W) RGB in [0,1]. state: the 2N-batch `NetState` (items 0..N-1 are the direct
    streams, N..2N-1 the flipped streams, each keeping its own state) or None for zeros.
    With `siamese=False` only the direct pass runs (the non-Siamese baseline of Table 3) and the
    state has batch N.
    """
    if not siamese:
        disps, next_state = net(image, state)
        return SiameseOutput(disps, None, disps), next_state
    batch = image.shape[0]
    disps, next_state = net(torch.cat([image, flip_horizontal(image)], dim=0), state)
    direct = [d[:batch] for d in disps]
    flipped = [d[batch:] for d in disps]
    refined = [refine_disparity(d1, d2) for d1, d2 in zip(direct, flipped, strict=True)]
    return SiameseOutput(direct, flipped, refined), next_state


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
