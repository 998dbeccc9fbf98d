"""What the command-line tools share: checked number types and one-line errors (the model arguments of the
runtime tools are in `runtime.model_arguments`).

Every CLI answers bad input with one line, `<prog>: error: <what>, <what to do>`, and exit code 2 (as
argparse does for bad arguments), never a traceback: `run_cli` turns the errors a user can cause
(missing or corrupt files, bad values, an option a backend cannot honour, an unwritable output) into
that line.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

from siam_depth_core.errors import SiamDepthError

#: Exit code of every CLI for bad input (argparse's own).
USAGE_ERROR = 2
#: Errors a user's input can cause; anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError, SiamDepthError)


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, `<prog>: error: <message> (see --help)`, exit code 2
    (argparse's own also prints the whole usage block first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def one_line(error: BaseException) -> str:
    """The error's message on one line."""
    return " ".join(str(error).split()) or type(error).__name__


def run_cli(prog: str, body: Callable[[], int]) -> int:
    """Run a CLI body; a user error becomes `<prog>: error: <message>` on stderr and exit code 2."""
    try:
        return body()
    except USER_ERRORS as error:
        print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
        return USAGE_ERROR


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value
