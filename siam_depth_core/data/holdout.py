"""A validation stream held out of the training sequences: the last frames of named sequences, with a gap.

Frames of one drive that are close in time look alike, so the held-out block is separated from the frames
kept for training by `gap_frames` frames that neither uses. Positions count the frames present (the last
`holdout_frames` frames on disk), not frame numbers.
"""
from __future__ import annotations

from collections.abc import Sequence

from siam_depth_core.data.stereo import StereoSequence


def split_validation(sequences: Sequence[StereoSequence], names: Sequence[str], holdout_frames: int,
                     gap_frames: int) -> tuple[list[StereoSequence], list[StereoSequence]]:
    """(training sequences, validation sequences): each sequence named in `names` loses its last
    `holdout_frames + gap_frames` frames to training and gives its last `holdout_frames` to validation;
    the others stay whole. ValueError naming the problem for an unknown name or a sequence too short."""
    known = [s.name for s in sequences]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"validation sequence(s) {unknown} are not among the training sequences {known}")
    training, validation = [], []
    for sequence in sequences:
        if sequence.name not in names:
            training.append(sequence)
            continue
        count = len(sequence.frames)
        kept = count - holdout_frames - gap_frames
        if kept < 1:
            raise ValueError(f"{sequence.name} has {count} frames: too few to hold out {holdout_frames} with a "
                             f"gap of {gap_frames} and keep any for training")
        training.append(sequence.slice(0, kept))
        validation.append(sequence.slice(count - holdout_frames, count))
    return training, validation
