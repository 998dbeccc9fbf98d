"""Several streams (cameras) in one backend call: the batch range a model takes and the per-stream state rows.

A batched step runs N streams at once: the image is (N,3,H,W) and every state tensor holds the rows of
all N streams. A Siamese step carries 2 rows per stream (the direct and the flipped pass, `run_siamese`),
a single pass 1; the rows are laid out pass-major, as `run_siamese` batches them: rows 0..N-1 are the
first row of streams 0..N-1, rows N..2N-1 their second row. So stream i owns rows i, N+i, ...

`stream_rows` and `stacking_order` are the index arithmetic of that layout; the backends' `split_state`
and `stack_states` apply it to their own state type (torch tensors, ONNX Runtime values, numpy arrays).
A stream's rows never mix with another's: the network is per-sample (no normalisation across the batch),
so splitting a batch-N state and stacking it again in any order gives the same outputs per stream.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BatchRange:
    """How many streams one call of a backend takes: low..high (high None: no limit).

    An export of fixed batch B takes exactly B (B..B); a dynamic-batch export or the torch backend any
    number (1..None); a TensorRT engine what its optimisation profile allows.
    """

    low: int = 1
    high: int | None = 1

    def __post_init__(self) -> None:
        if self.low < 1 or (self.high is not None and self.high < self.low):
            raise ValueError(f"not a batch range: {self.low}..{self.high}")

    def __contains__(self, streams: object) -> bool:
        return isinstance(streams, int) and streams >= self.low and (self.high is None or streams <= self.high)

    def __str__(self) -> str:
        if self.high == self.low:
            return str(self.low)
        return f"{self.low}..{'any' if self.high is None else self.high}"

    def chunk(self, streams: int) -> int:
        """How many streams to run per call for `streams` in all: as many as one call takes."""
        return streams if self.high is None else min(streams, self.high)


ANY_BATCH = BatchRange(1, None)
SINGLE = BatchRange(1, 1)


def stream_rows(streams: int, rows_per_stream: int, stream: int) -> list[int]:
    """The state rows of `stream` (0-based) in a state of `streams` streams with `rows_per_stream` rows each."""
    if not 0 <= stream < streams:
        raise IndexError(f"stream {stream} of {streams}")
    return [row * streams + stream for row in range(rows_per_stream)]


def stacking_order(streams: int, rows_per_stream: int) -> list[int]:
    """Indices that turn per-stream states concatenated stream after stream (stream 0's rows, then stream 1's,
    ...) into the batched layout (first rows of every stream, then second rows, ...)."""
    return [stream * rows_per_stream + row for row in range(rows_per_stream) for stream in range(streams)]

