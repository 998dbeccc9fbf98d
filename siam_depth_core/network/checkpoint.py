"""Checkpoint files: model weights + the metadata every consumer needs (training, eval, export, node).

A checkpoint is a `torch.save` dict {"format", "meta", "model", and optionally "optimizer",
"scheduler", "epoch", "step", "config"}. Writes are atomic (temp file + rename).
"""
from __future__ import annotations

import os
import subprocess
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from siam_depth_core.errors import SiamDepthError
from siam_depth_core.geometry import ImageSize
from siam_depth_core.network.model import DEFAULT_MAX_DISP, SiamDepthNet
from siam_depth_core.shipped_files import SHIPPED_CHECKPOINT

FORMAT = "siam_depth/1"
#: KITTI rig baseline (cameras 2-3) from the 2011_09_26 calibration; monodepth uses 0.54 m.
KITTI_BASELINE_M = 0.5327
#: Permissions of a written checkpoint (what a plain torch.save gives under the usual umask 022).
CHECKPOINT_FILE_MODE = 0o644


class CheckpointError(SiamDepthError):
    """A checkpoint file that cannot be used; the message names the file and the problem."""


@dataclass
class ModelMeta:
    """What a checkpoint says about its network and the rig it was trained on.

    net_width: channel multiplier of the network (`SiamDepthNet(width_multiplier=...)`), not an image width;
    recurrent: ConvLSTM (True) or plain-conv skips; siamese: trained with the refinement pass;
    height/width: training input size in pixels (`input_size`); baseline_m: stereo baseline in metres
    (turns disparity into metric depth); lstm_ratio: hidden channels of the ConvLSTM layers relative to Table 1
    (1.0 in checkpoints written before it existed).
    """

    net_width: float = 1.0
    recurrent: bool = True
    siamese: bool = True
    max_disp: float = DEFAULT_MAX_DISP
    height: int = 256
    width: int = 512
    baseline_m: float = KITTI_BASELINE_M
    git_revision: str = "unknown"
    extra: dict[str, Any] = field(default_factory=dict)
    lstm_ratio: float = 1.0

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelMeta:
        """The ModelMeta stored in a checkpoint or sidecar (`asdict` form); keys of newer versions are ignored."""
        known = {item.name for item in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})

    @property
    def input_size(self) -> ImageSize:
        """The training input size (height, width) in pixels: the network size used unless another is asked for."""
        return ImageSize(int(self.height), int(self.width))

    def build_network(self) -> SiamDepthNet:
        """A freshly initialised network with this architecture."""
        return SiamDepthNet(width_multiplier=self.net_width, recurrent=self.recurrent, max_disp=self.max_disp,
                            lstm_ratio=self.lstm_ratio)


def git_revision(repo_dir: str | Path | None = None) -> str:
    """The current git commit of the source tree (with `-dirty`), or "unknown" outside git."""
    repo_dir = Path(repo_dir) if repo_dir else Path(__file__).resolve().parents[2]
    try:
        revision = subprocess.run(["git", "-C", str(repo_dir), "describe", "--always", "--dirty"],
                                  capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return revision or "unknown"


def save_checkpoint(path: str | Path, net: torch.nn.Module, meta: ModelMeta, half: bool = False,
                    **training_state: Any) -> Path:
    """Atomically write weights + meta (+ optimizer/scheduler/epoch/... given as keywords) to `path`.

    half=True stores the weights as fp16 (the shipped demo model); they load back as fp32.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu()
               for k, v in net.state_dict().items()}
    payload = {"format": FORMAT, "meta": asdict(meta), "model": weights, **training_state}
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp_name)
        os.chmod(tmp_name, CHECKPOINT_FILE_MODE)  # mkstemp creates 0600; consumers may run as another user
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return path


def require_checkpoint_file(path: Path) -> None:
    """Raise CheckpointError unless `path` is a file; the message says what to do (`error: <what>, <what to do>`)."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}, give the path of a siam_depth checkpoint (.pt): one "
                              f"that siam-depth-train wrote (runs/<name>/best.pt) or the shipped "
                              f"models/{SHIPPED_CHECKPOINT}")


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint dict; raises CheckpointError naming the file and the problem."""
    path = Path(path)
    require_checkpoint_file(path)
    _check_zip_records(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # torch raises many types for truncated/corrupt files
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(error).__name__}: {error})") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"checkpoint {path} is not a siam_depth checkpoint (format {found!r}, expected {FORMAT!r})")
    for key in ("meta", "model"):
        if key not in payload:
            raise CheckpointError(f"checkpoint {path} has no {key!r} entry")
    return payload


def _check_zip_records(path: Path) -> None:
    """Verify the CRC32 of every record of a checkpoint's zip archive, which torch.load does not: damaged
    bytes (a bad disk or copy) must be an error, not silently wrong weights. Non-zip files are left to torch."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(error).__name__}: {error})") from error
    if damaged is not None:
        raise CheckpointError(f"checkpoint {path} is corrupt: its record {damaged!r} fails the CRC check "
                              "(damaged on disk or in a copy)")


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[SiamDepthNet, ModelMeta]:
    """Build the network a checkpoint describes and load its weights (fp32, eval mode)."""
    payload = read_checkpoint(path)
    meta = ModelMeta.from_dict(payload["meta"])
    net = meta.build_network()
    weights = {k: (v.float() if v.is_floating_point() else v) for k, v in payload["model"].items()}
    try:
        net.load_state_dict(weights)
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {path} does not match its declared architecture: {error}") from error
    return net.to(device).eval(), meta
