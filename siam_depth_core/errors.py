"""The one error base of siam_depth: every error a user's input can cause that is not a ValueError or OSError.

`CheckpointError` (a checkpoint that cannot be used) and `BackendError` (a backend that cannot run) derive
from `SiamDepthError`, so the command-line tools (`cli.run_cli`) and the node catch one type.
"""
from __future__ import annotations


class SiamDepthError(RuntimeError):
    """A model file, backend or input that cannot be used; the message names it and says what to do."""
