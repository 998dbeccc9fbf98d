"""The torch backend: `run_siamese` eagerly on CPU or CUDA, optionally fp16/channels_last/CUDA graph/post-processing.

fp16 uses autocast, which runs the convolutions in half precision while the ConvLSTM cell state,
which accumulates over frames, stays fp32 (the state is created fp32 and f*c promotes to fp32).
With `cuda_graph=True` the step (network + state update) is captured once into a CUDA graph that
reads and writes static device buffers; the state then never leaves the GPU between frames.
`num_threads` > 0 sets torch's intra-op CPU thread count, which is process-wide (torch.set_num_threads).
A step runs any number of streams at once (`run` with an (N,3,H,W) image), except with `cuda_graph`,
whose graph is captured for one stream.
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from siam_depth_core.network.checkpoint import ModelMeta, load_model
from siam_depth_core.network.model import NetState, SiamDepthNet, check_input_size, run_siamese
from siam_depth_core.network.refine import disparity_confidence
from siam_depth_core.runtime.backends import (
    BackendError,
    StepOutput,
    check_image,
    check_state_streams,
    reject_unsupported,
)
from siam_depth_core.runtime.backends.source import CheckpointSource, NetworkSource, RuntimeOptions
from siam_depth_core.runtime.backends.streams import ANY_BATCH, SINGLE, stacking_order, stream_rows

#: RuntimeOptions the torch backend honours (all of them).
SUPPORTED_OPTIONS = ("device", "num_threads", "input_size", "fp16", "channels_last", "cuda_graph", "post_process",
                     "single_pass")


class TorchBackend:
    """Stateful Siamese step of a SiamDepthNet in torch; state = the `NetState` on the device (2 rows per
    stream for the direct and flipped pass, 1 for a single pass: a non-Siamese model without
    post-processing, or `single_pass`)."""

    name = "torch"

    @classmethod
    def open(cls, source: CheckpointSource | NetworkSource, options: RuntimeOptions) -> TorchBackend:
        """Load the checkpoint (or take the network in memory) and prepare it for `options`."""
        reject_unsupported(cls.name, options, SUPPORTED_OPTIONS)
        net, meta = load_model(source.path) if isinstance(source, CheckpointSource) else (source.net, source.meta)
        return cls(net, meta, options)

    def __init__(self, net: SiamDepthNet, meta: ModelMeta, options: RuntimeOptions) -> None:
        self.input_size = options.input_size or meta.input_size
        check_input_size(*self.input_size)
        device = options.device or "cpu"
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendError(f"device {device!r} requested but torch sees no CUDA GPU "
                               f"(torch {torch.__version__}); use device='cpu'")
        on_cuda = self.device.type == "cuda"
        if (options.fp16 or options.cuda_graph) and not on_cuda:
            raise BackendError("fp16 and cuda_graph need a CUDA device for the torch backend")
        self.meta = meta
        self.fp16 = options.fp16
        self.siamese = (meta.siamese or options.post_process) and not options.single_pass
        self.has_confidence = self.siamese
        self.memory_format = torch.channels_last if options.channels_last else torch.contiguous_format
        self.net = net.to(self.device).eval()
        # Module.to converts in place; torch's overloads omit its documented memory_format keyword
        # (pytorch/pytorch#184642), so the stubs reject this valid call.
        self.net.to(memory_format=self.memory_format)  # type: ignore[call-overload]
        self.batch = 2 if self.siamese else 1  # state rows per stream
        self.batch_range = SINGLE if options.cuda_graph else ANY_BATCH
        if options.num_threads > 0:
            torch.set_num_threads(options.num_threads)  # process-wide: every torch computation of this process
        self._graph: _CapturedStep | None = _CapturedStep(self) if options.cuda_graph else None

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.fp16:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def step_tensors(self, image: torch.Tensor, state: NetState | None
                     ) -> tuple[torch.Tensor, torch.Tensor | None, NetState]:
        """image (N,3,H,W) on the device -> (refined left disparity (N,1,H,W) float32, its confidence
        (N,1,H,W) float32 in [0, 1] or None without the Siamese pass, next state).

        state None starts from an explicit fp32 zero state, so that under fp16 autocast the cell state
        stays fp32 (f*c promotes to fp32) instead of inheriting the half-precision activations' dtype.
        """
        if state is None:
            state = self.net.init_state(self.batch * image.shape[0], *self.input_size, device=self.device)
        with torch.inference_mode(), self._autocast():
            output, next_state = run_siamese(self.net, image.contiguous(memory_format=self.memory_format),
                                             state, siamese=self.siamese)
            confidence = (None if output.disp_flipped is None else
                          disparity_confidence(output.disp_direct[0].float(), output.disp_flipped[0].float()))
        return output.disp_refined[0][:, 0:1].float(), confidence, next_state

    def run(self, image: np.ndarray, state: Any | None) -> tuple[StepOutput, Any]:
        """See `Backend.run`; the state is a `NetState` (or a graph token with cuda_graph)."""
        streams = check_image(image, self.input_size, "the torch model", self.batch_range)
        if state is not None and self._graph is None:
            check_state_streams([tensor.shape[0] for layer in state for tensor in layer], self.batch, streams,
                                "the torch model")
        image_tensor = torch.from_numpy(image).to(self.device, non_blocking=False)
        if self._graph is not None:
            disparity, confidence = self._graph.replay(image_tensor, fresh=state is None)
            next_state: Any = self._graph
        else:
            disparity, confidence, next_state = self.step_tensors(image_tensor, state)
        return StepOutput(disparity.cpu().numpy(), None if confidence is None else confidence.cpu().numpy()), next_state

    def split_state(self, state: Any, streams: int) -> list[NetState]:
        """See `Backend.split_state`: per-stream `NetState`s (copies, on the device)."""
        if self._graph is not None:
            raise BackendError("the torch backend with cuda_graph keeps one stream's state in its graph buffers; "
                               "per-stream states need cuda_graph off")
        check_state_streams([tensor.shape[0] for layer in state for tensor in layer], self.batch, streams,
                            "the torch model")
        split = []
        for stream in range(streams):
            rows = torch.tensor(stream_rows(streams, self.batch, stream), device=self.device)
            split.append(tuple((hidden.index_select(0, rows), cell.index_select(0, rows)) for hidden, cell in state))
        return split

    def stack_states(self, states: Sequence[Any | None]) -> NetState:
        """See `Backend.stack_states`: the `NetState` of len(states) streams."""
        if self._graph is not None:
            raise BackendError("the torch backend with cuda_graph runs one stream; per-stream states need cuda_graph "
                               "off")
        if not states:
            raise ValueError("stack_states needs at least one stream")
        zeros = None
        filled = []
        for state in states:
            if state is None:
                zeros = zeros or self.net.init_state(self.batch, *self.input_size, device=self.device)
                state = zeros
            check_state_streams([tensor.shape[0] for layer in state for tensor in layer], self.batch, 1,
                                "the torch model")
            filled.append(state)
        order = torch.tensor(stacking_order(len(filled), self.batch), device=self.device)
        return tuple((torch.cat([item[layer][0] for item in filled]).index_select(0, order),
                      torch.cat([item[layer][1] for item in filled]).index_select(0, order))
                     for layer in range(len(self.net.state_names)))


class _CapturedStep:
    """The step captured in a CUDA graph: static image/state buffers, state updated in place."""

    def __init__(self, backend: TorchBackend) -> None:
        height, width = backend.input_size
        device = backend.device
        self.image = torch.zeros(1, 3, height, width, device=device)
        self.state = backend.net.init_state(backend.batch, height, width, device=device)
        # Warm up on a side stream (cuDNN autotuning, lazy init) before capturing, as torch requires.
        side_stream = torch.cuda.Stream(device)
        side_stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side_stream):
            for _ in range(3):
                backend.step_tensors(self.image, self.state)
        torch.cuda.current_stream(device).wait_stream(side_stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.disparity, self.confidence, next_state = backend.step_tensors(self.image, self.state)
            with torch.inference_mode():
                for (hidden, cell), (next_hidden, next_cell) in zip(self.state, next_state, strict=True):
                    hidden.copy_(next_hidden)
                    cell.copy_(next_cell)

    def replay(self, image: torch.Tensor, fresh: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Copy the image in, zero the state for a fresh sequence, replay; returns the disparity and confidence
        buffers (confidence None without the Siamese pass)."""
        with torch.inference_mode():
            self.image.copy_(image)
            if fresh:
                for hidden, cell in self.state:
                    hidden.zero_()
                    cell.zero_()
        self.graph.replay()
        return self.disparity, self.confidence
