"""SiamDepthNet against Table 1: layer names, channels, scales, shapes, parameter count, recurrent state."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from siam_depth_core.network.model import (
    ConvLSTMCell,
    SiamDepthNet,
    count_parameters,
    run_siamese,
)
from siam_depth_core.network.refine import flip_horizontal, refine_disparity

# Table 1 of the paper: (layer, output channels, downscaling factor, input channels) at width 1.0.
TABLE1 = (
    ("conv1a", 32, 1, 3), ("conv1b", 32, 1, 32), ("convlstm_skip1", 32, 1, 32),
    ("conv2a", 64, 2, 32), ("conv2b", 64, 2, 64), ("convlstm_skip2", 64, 2, 64),
    ("conv3a", 128, 4, 64), ("conv3b", 128, 4, 128), ("convlstm_skip3", 128, 4, 128),
    ("conv4a", 256, 8, 128), ("conv4b", 256, 8, 256), ("convlstm_skip4", 256, 8, 256),
    ("conv5a", 512, 16, 256), ("conv5b", 512, 16, 512), ("convlstm_skip5", 512, 16, 512),
    ("conv6a", 1024, 32, 512), ("conv6b", 1024, 32, 1024),
    ("convlstm7a", 512, 32, 1024), ("convlstm7b", 512, 32, 512),
    ("deconv5", 512, 16, 512), ("iconv5b", 512, 16, 512 + 512), ("iconv5a", 512, 16, 512),
    ("deconv4", 256, 8, 512), ("iconv4b", 256, 8, 256 + 256), ("iconv4a", 256, 8, 256), ("disp4", 2, 8, 256),
    ("deconv3", 128, 4, 256), ("iconv3b", 128, 4, 128 + 128 + 2), ("iconv3a", 128, 4, 128), ("disp3", 2, 4, 128),
    ("deconv2", 64, 2, 128), ("iconv2b", 64, 2, 64 + 64 + 2), ("iconv2a", 64, 2, 64), ("disp2", 2, 2, 64),
    ("deconv1", 32, 1, 64), ("iconv1b", 32, 1, 32 + 32 + 2), ("iconv1a", 32, 1, 32), ("disp1", 2, 1, 32),
)
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny networks: see conftest
CONVLSTM_LAYERS = tuple(name for name, *_ in TABLE1 if name.startswith("convlstm"))
SIZES = ((256, 512), (192, 640))  # (height, width): training size and the KITTI-crop size


def _meta_net(width: float, recurrent: bool = True) -> SiamDepthNet:
    """A network whose tensors live on the meta device: shapes without memory or arithmetic."""
    with torch.device("meta"):
        return SiamDepthNet(width_multiplier=width, recurrent=recurrent)


def _layer_outputs(net: SiamDepthNet, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """Output tensor of every Table 1 layer for one forward pass (h for ConvLSTM layers)."""
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for name, *_ in TABLE1:
        def hook(_module, _inputs, output, name=name):
            outputs[name] = output[0] if isinstance(output, tuple) else output
        handles.append(getattr(net, name).register_forward_hook(hook))
    try:
        net(image)
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def _first_conv(module: nn.Module) -> nn.Conv2d:
    return next(m for m in module.modules() if isinstance(m, nn.Conv2d))


def _table1_parameter_count(recurrent: bool) -> int:
    """Parameters implied by Table 1 alone: 3x3 convs with bias; a ConvLSTM has one conv to 4 gates."""
    total = 0
    for name, out_channels, _, in_channels in TABLE1:
        if name.startswith("convlstm") and recurrent:
            total += 9 * (in_channels + out_channels) * 4 * out_channels + 4 * out_channels
        else:
            total += 9 * in_channels * out_channels + out_channels
    return total


def test_table1_layer_names_channels_and_scales() -> None:
    net = _meta_net(1.0)
    height, width = 256, 512
    outputs = _layer_outputs(net, torch.empty(1, 3, height, width, device="meta"))
    for name, channels, downscale, in_channels in TABLE1:
        assert outputs[name].shape == (1, channels, height // downscale, width // downscale), name
        layer = getattr(net, name)
        if name.startswith("convlstm"):
            assert isinstance(layer, ConvLSTMCell), name
            assert _first_conv(layer).in_channels == in_channels + channels, name
        else:
            assert _first_conv(layer).in_channels == in_channels, name
        assert _first_conv(layer).kernel_size == (3, 3), name


@pytest.mark.parametrize("recurrent", [True, False])
def test_parameter_count_matches_table1(recurrent: bool) -> None:
    assert count_parameters(_meta_net(1.0, recurrent)) == _table1_parameter_count(recurrent)


def test_count_parameters_skips_frozen_weights() -> None:
    net = SiamDepthNet(width_multiplier=0.125)
    everything = count_parameters(net)
    frozen = sum(p.numel() for p in net.conv1a.parameters())
    for parameter in net.conv1a.parameters():
        parameter.requires_grad_(False)
    assert count_parameters(net) == everything - frozen


@pytest.mark.parametrize("width", [1.0, 0.5, 0.25])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[1]}x{s[0]}")
def test_output_and_state_shapes(width: float, size: tuple[int, int]) -> None:
    height, image_width = size
    net = _meta_net(width)
    output, state = run_siamese(net, torch.empty(2, 3, height, image_width, device="meta"))
    for scale in range(4):
        expected = (2, 2, height // 2 ** scale, image_width // 2 ** scale)
        assert output.disp_direct[scale].shape == expected
        assert output.disp_flipped[scale].shape == expected
        assert output.disp_refined[scale].shape == expected
    # The state covers both Siamese streams: batch 2N.
    shapes = net.state_shapes(4, height, image_width)
    assert list(shapes) == list(CONVLSTM_LAYERS)
    for (hidden, cell), shape in zip(state, shapes.values(), strict=True):
        assert hidden.shape == shape and cell.shape == shape
    table_channels = {name: channels for name, channels, *_ in TABLE1}
    for name, shape in shapes.items():
        assert shape[1] == max(1, round(table_channels[name] * width))


def test_width_one_real_forward_at_training_size() -> None:
    """One real (not meta) forward of the full Table 1 network at 512x256: finite, in (0, max_disp)."""
    net = SiamDepthNet(width_multiplier=1.0).eval()
    with torch.no_grad():
        disps, state = net(torch.rand(1, 3, 256, 512))
    assert [tuple(d.shape) for d in disps] == [(1, 2, 256 // 2 ** s, 512 // 2 ** s) for s in range(4)]
    assert len(state) == len(CONVLSTM_LAYERS)
    for disp in disps:
        assert torch.isfinite(disp).all()
        assert disp.min() > 0 and disp.max() < net.max_disp


def test_disparity_bounded_by_max_disp() -> None:
    net = SiamDepthNet(width_multiplier=0.125, max_disp=0.05)
    with torch.no_grad():
        disps, _ = net(torch.rand(2, 3, 64, 128))
    for disp in disps:
        assert disp.min() > 0 and disp.max() < 0.05


def test_non_recurrent_variant_has_no_state() -> None:
    net = SiamDepthNet(width_multiplier=0.125, recurrent=False)
    assert net.state_names == ()
    assert net.state_shapes(1, 64, 128) == {}
    assert net.init_state(1, 64, 128) == ()
    assert not any(isinstance(m, ConvLSTMCell) for m in net.modules())
    for name in CONVLSTM_LAYERS:  # the Table 1 names stay, as plain convolutions
        assert isinstance(getattr(net, name), nn.Module)
    image = torch.rand(1, 3, 64, 128)
    with torch.no_grad():
        first, state = net(image)
        second, _ = net(image, state)
    assert state == ()
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_non_recurrent_variant_rejects_a_state() -> None:
    recurrent = SiamDepthNet(width_multiplier=0.125)
    plain = SiamDepthNet(width_multiplier=0.125, recurrent=False)
    with pytest.raises(ValueError, match="state has 7 layers, the network has 0"):
        plain(torch.rand(1, 3, 64, 128), recurrent.init_state(1, 64, 128))


@pytest.mark.parametrize("size", [(100, 128), (64, 100), (0, 64), (64, 48)])
def test_bad_input_size_raises_value_error(size: tuple[int, int]) -> None:
    net = SiamDepthNet(width_multiplier=0.125)
    height, width = size
    with pytest.raises(ValueError, match="multiple of 32"):
        net(torch.rand(1, 3, height, width))
    with pytest.raises(ValueError, match="multiple of 32"):
        net.state_shapes(1, height, width)


def test_convlstm_cell_follows_the_gate_equations() -> None:
    """With zero weights the gates are their biases: c' = s(b_f)c + s(b_i)lrelu(b_g), h' = s(b_o)lrelu(c')."""
    cell = ConvLSTMCell(in_channels=2, hidden_channels=1)
    b_i, b_f, b_o, b_g = 0.3, -0.4, 1.1, -2.0  # negative candidate: leaky ReLU (slope 0.2), not tanh
    with torch.no_grad():
        cell.gates.weight.zero_()
        cell.gates.bias.copy_(torch.tensor([b_i, b_f, b_o, b_g]))
    cell_in = torch.full((1, 1, 4, 4), 0.7)
    hidden, (hidden_state, cell_out) = cell(torch.rand(1, 2, 4, 4), (torch.rand(1, 1, 4, 4), cell_in))

    def sigmoid(value: float) -> float:
        return 1.0 / (1.0 + torch.exp(torch.tensor(-value)).item())

    expected_cell = sigmoid(b_f) * 0.7 + sigmoid(b_i) * 0.2 * b_g
    expected_hidden = sigmoid(b_o) * (expected_cell if expected_cell > 0 else 0.2 * expected_cell)
    torch.testing.assert_close(cell_out, torch.full_like(cell_out, expected_cell))
    torch.testing.assert_close(hidden, torch.full_like(hidden, expected_hidden))
    assert hidden_state is hidden


def test_zero_state_equals_none() -> None:
    net = SiamDepthNet(width_multiplier=0.125)
    image = torch.rand(2, 3, 64, 128)
    with torch.no_grad():
        from_none, state_none = net(image, None)
        from_zeros, state_zeros = net(image, net.init_state(2, 64, 128))
    for a, b in zip(from_none, from_zeros, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for (h_a, c_a), (h_b, c_b) in zip(state_none, state_zeros, strict=True):
        torch.testing.assert_close(h_a, h_b, rtol=0, atol=0)
        torch.testing.assert_close(c_a, c_b, rtol=0, atol=0)


def test_state_changes_the_output() -> None:
    """The same frame seen twice gives a different answer the second time: the memory is used."""
    net = SiamDepthNet(width_multiplier=0.125)
    image = torch.rand(1, 3, 64, 128)
    with torch.no_grad():
        first, state = net(image)
        second, next_state = net(image, state)
    assert (first[0] - second[0]).abs().max() > 1e-4
    assert any((a[1] - b[1]).abs().max() > 1e-4 for a, b in zip(state, next_state, strict=True))


def _run_clip(net: SiamDepthNet, frames: list[torch.Tensor]) -> tuple[list[torch.Tensor], tuple]:
    """Run frames one at a time, carrying the state; returns the full-scale disparities and last state."""
    state = None
    outputs = []
    with torch.no_grad():
        for frame in frames:
            disps, state = net(frame, state)
            outputs.append(disps[0])
    return outputs, state


def test_state_carried_across_frames_matches_each_stream_run_alone() -> None:
    """Two clips batched together, step by step, equal each clip run alone: no state leaks across items."""
    net = SiamDepthNet(width_multiplier=0.125)
    clip_a = [torch.rand(1, 3, 64, 128) for _ in range(3)]
    clip_b = [torch.rand(1, 3, 64, 128) for _ in range(3)]
    batched, batched_state = _run_clip(net, [torch.cat([a, b]) for a, b in zip(clip_a, clip_b, strict=True)])
    alone_a, state_a = _run_clip(net, clip_a)
    alone_b, state_b = _run_clip(net, clip_b)
    # Batched and single convolutions differ by float rounding only (the He-initialised activations are
    # of unit scale, so absolute differences of a few 1e-6 occur); a leak would differ by far more.
    for step in range(3):
        torch.testing.assert_close(batched[step][0:1], alone_a[step], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(batched[step][1:2], alone_b[step], rtol=1e-4, atol=1e-5)
    for (h, c), (h_a, c_a), (h_b, c_b) in zip(batched_state, state_a, state_b, strict=True):
        torch.testing.assert_close(h, torch.cat([h_a, h_b]), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(c, torch.cat([c_a, c_b]), rtol=1e-4, atol=1e-5)


def test_state_of_one_item_does_not_leak_into_another() -> None:
    """Changing the history of item 1 leaves item 0's output bit-for-bit unchanged."""
    net = SiamDepthNet(width_multiplier=0.125)
    history = torch.rand(2, 3, 64, 128)
    other_history = history.clone()
    other_history[1] = torch.rand(3, 64, 128)
    frame = torch.rand(2, 3, 64, 128)
    first, _ = _run_clip(net, [history, frame])
    second, _ = _run_clip(net, [other_history, frame])
    torch.testing.assert_close(first[1][0], second[1][0], rtol=0, atol=0)
    assert (first[1][1] - second[1][1]).abs().max() > 1e-5


def test_siamese_streams_keep_their_own_state() -> None:
    """run_siamese over a clip equals the direct and the flipped clip run as two independent streams."""
    net = SiamDepthNet(width_multiplier=0.125)
    frames = [torch.rand(1, 3, 64, 128) for _ in range(3)]
    state = None
    with torch.no_grad():
        siamese_steps = []
        for frame in frames:
            output, state = run_siamese(net, frame, state)
            siamese_steps.append(output)
    direct, direct_state = _run_clip(net, frames)
    flipped, flipped_state = _run_clip(net, [flip_horizontal(f) for f in frames])
    for step, output in enumerate(siamese_steps):
        torch.testing.assert_close(output.disp_direct[0], direct[step], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(output.disp_flipped[0], flipped[step], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(output.disp_refined[0], refine_disparity(direct[step], flipped[step]),
                                   rtol=1e-4, atol=1e-6)
    for (h, _), (h_direct, _), (h_flipped, _) in zip(state, direct_state, flipped_state, strict=True):
        torch.testing.assert_close(h, torch.cat([h_direct, h_flipped]), rtol=1e-4, atol=1e-6)


def test_non_siamese_run_has_no_flipped_pass() -> None:
    net = SiamDepthNet(width_multiplier=0.125)
    image = torch.rand(2, 3, 64, 128)
    with torch.no_grad():
        output, state = run_siamese(net, image, siamese=False)
    assert output.disp_flipped is None
    assert output.disp_refined is output.disp_direct
    assert state[0][0].shape[0] == 2


def test_state_of_wrong_batch_raises_value_error() -> None:
    net = SiamDepthNet(width_multiplier=0.125)
    with pytest.raises(ValueError, match="convlstm_skip1.*run_siamese needs a state of batch 2N"):
        run_siamese(net, torch.rand(1, 3, 64, 128), net.init_state(1, 64, 128))
    with pytest.raises(ValueError, match="state has 2 layers, the network has 7"):
        net(torch.rand(1, 3, 64, 128), net.init_state(1, 64, 128)[:2])


def test_lstm_ratio_narrows_only_the_convlstm_layers_and_their_state(tmp_path) -> None:
    from siam_depth_core.network.checkpoint import ModelMeta, load_model, save_checkpoint

    full, narrow = SiamDepthNet(width_multiplier=0.25), SiamDepthNet(width_multiplier=0.25, lstm_ratio=0.5)
    assert narrow.convlstm_skip3.hidden_channels == full.convlstm_skip3.hidden_channels // 2 == 16
    assert narrow.conv3b[0].out_channels == full.conv3b[0].out_channels  # the encoder keeps Table 1's widths
    assert count_parameters(narrow) < 0.6 * count_parameters(full)
    disps, state = narrow(torch.rand(1, 3, 64, 128))
    assert [d.shape[1:] for d in disps] == [(2, 64 // 2 ** s, 128 // 2 ** s) for s in range(4)]
    assert [tuple(h.shape) for h, _ in state] == list(narrow.state_shapes(1, 64, 128).values())
    assert narrow.state_shapes(1, 64, 128)["convlstm7a"] == (1, 64, 2, 4)
    meta = ModelMeta(net_width=0.25, lstm_ratio=0.5, height=64, width=128)
    loaded, loaded_meta = load_model(save_checkpoint(tmp_path / "narrow.pt", narrow, meta))
    assert loaded_meta.lstm_ratio == 0.5 and count_parameters(loaded) == count_parameters(narrow)
    with pytest.raises(ValueError, match="lstm_ratio"):
        SiamDepthNet(width_multiplier=0.25, lstm_ratio=0.0)
