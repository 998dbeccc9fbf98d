"""Exponential moving average (EMA) of the network's weights during training.

After every optimiser step each averaged parameter and buffer becomes `decay * average + (1 - decay) * current`
(torch's `AveragedModel` with `get_ema_multi_avg_fn`). The averaged copy is what validation scores and what
`best.pt` / `epoch_NNN.pt` hold: it swings less from epoch to epoch than the raw weights, whose last steps
depend on the last few batches. `decay` 0.995 averages over about the last 200 steps.
"""
from __future__ import annotations

from typing import TypeVar, cast

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def make_ema(net: nn.Module, decay: float) -> AveragedModel | None:
    """An averaged copy of `net` (same device) updated by `update_parameters(net)`; None when decay is 0 (off)."""
    if decay == 0.0:
        return None
    if not 0.0 < decay < 1.0:
        raise ValueError(f"ema_decay must be in [0, 1), got {decay}")
    return AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


NetworkT = TypeVar("NetworkT", bound=nn.Module)


def averaged_network(ema: AveragedModel | None, net: NetworkT) -> NetworkT:
    """The weights to validate and save: the averaged copy of `net` when EMA is on, else `net` itself."""
    return net if ema is None else cast(NetworkT, ema.module)
