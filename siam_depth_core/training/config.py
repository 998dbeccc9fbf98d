"""Training configuration: one typed dataclass, loaded from YAML, with `--set key=value` overrides.

Every field is documented once, in its `help` metadata; `siam-depth-train --help` prints them all.
A YAML file may name another as `base:` (a path relative to itself, else a shipped config of `training/configs/`
by name, e.g. `base: small.yaml`); its keys override the base's. With `init_from`, the network is trained at the
checkpoint's size unless the file itself (not its base) or `--set` gives `size`.
Nested loss weights are addressed with a dot: `--set loss_weights.smoothness=0.2`.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from siam_depth_core.data.sources import SourceSpec
from siam_depth_core.network.model import DEFAULT_MAX_DISP
from siam_depth_core.shipped_files import shipped_file
from siam_depth_core.training.coerce import coerce_value
from siam_depth_core.training.losses import LossWeights

DATASETS = ("kitti", "synthetic")
AMP_MODES = ("off", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
LR_SCHEDULES = ("step", "cosine")
LOGGER = logging.getLogger("siam_depth.train")
#: Where the shipped configs are, in the source tree or an installation's share folder (`shipped_file`).
SHIPPED_CONFIGS = "training/configs"
#: Fields that hold a mapping; `--set <field>.<key>=value` and a YAML file's `base:` merge them key by key.
NESTED_FIELDS = ("loss_weights", "temporal", "validation")


def _field(default: Any, doc: str) -> Any:
    """A dataclass field with its one-line documentation (shown by --help) in its metadata."""
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": doc})
    return field(default=default, metadata={"help": doc})


#: Neighbouring frames the temporal term may use (offsets from the target frame).
TEMPORAL_OFFSETS = (-1, 1)


@dataclass
class TemporalConfig:
    """Temporal self-supervision (monodepth2's M+S): a pose network and the neighbouring left frames join the
    stereo partner in a per-pixel minimum reprojection with auto-masking (`temporal_loss`)."""

    enabled: bool = False
    frames: list[int] = field(default_factory=lambda: list(TEMPORAL_OFFSETS))
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.frames or len(set(self.frames)) != len(self.frames) or \
                any(f not in TEMPORAL_OFFSETS for f in self.frames):
            raise ValueError(f"temporal.frames must be distinct offsets from {list(TEMPORAL_OFFSETS)}, "
                             f"got {self.frames}")
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"temporal.weight must be in [0, 1] (the share of the left appearance term that "
                             f"the minimum reprojection takes), got {self.weight}")

    @property
    def context_frames(self) -> int:
        """Frames needed before and after each clip for the temporal sources (0 when disabled)."""
        return max(abs(f) for f in self.frames) if self.enabled else 0


@dataclass
class ValidationConfig:
    """A validation stream held out of the training sequences: the last `holdout_frames` frames of each named
    sequence, separated from the frames kept for training by `gap_frames` frames used by neither."""

    sequences: list[str] = field(default_factory=list)
    holdout_frames: int = 10
    gap_frames: int = 5
    interval: int = 1
    #: KITTI raw drives never trained on whose every left frame with a Velodyne scan is streamed and scored
    #: against its LiDAR (only the left camera is needed); read from `lidar_root` (null = the KITTI raw root).
    lidar_drives: list[str] = field(default_factory=list)
    lidar_root: str | None = None

    def __post_init__(self) -> None:
        if self.holdout_frames < 1 or self.gap_frames < 0 or self.interval < 1:
            raise ValueError(f"validation needs holdout_frames >= 1, gap_frames >= 0, interval >= 1; got "
                             f"{self.holdout_frames}, {self.gap_frames}, {self.interval}")


@dataclass
class TrainConfig:
    """Everything one training run needs; defaults are the paper's recipe (section 4.2)."""

    # --- data ---
    dataset: str = _field("kitti", "training data: 'kitti' (KITTI raw stereo) or 'synthetic' (our renderer)")
    data_root: str | None = _field(None, "KITTI raw root holding <date>/<drive>/...; null = $KITTI_ROOT or "
                                         "../shared/data/kitti_raw")
    splits_dir: str | None = _field(None, "folder of split lists in monodepth2 layout; null = $SIAM_DEPTH_SPLITS "
                                          "or ../shared/data/splits/monodepth2")
    split: str | None = _field("eigen_full", "split whose <split>/train_files.txt lists the training frames "
                                             "(eigen_full: 22,600 stereo pairs); ignored when `drives` is set")
    drives: list[str] = _field([], "explicit drives (e.g. 2011_09_26/2011_09_26_drive_0009_sync), every frame "
                                   "used; overrides `split`")
    exclude_eigen_test: bool = _field(True, "drop drives of the Eigen test split from training (required when "
                                            "reporting Eigen numbers)")
    sources: list[SourceSpec] = _field([], "stereo sources to mix, each a mapping {kind: kitti_raw | kitti_odometry | "
                                           "rosbag2 | stereo_folder, root, ...}: kitti_raw takes drives or split, "
                                           "kitti_odometry sequences ([all] = every sequence), rosbag2 left_topic, "
                                           "right_topic (+ left_info_topic, right_info_topic, stamp_tolerance_s); "
                                           "empty = the KITTI raw data of data_root/split/drives")
    image_ext: str = _field(".png", "image file extension on disk ('.png' as in KITTI raw, '.jpg' if converted)")
    size: tuple[int, int] = _field((256, 512), "training input size (H, W) in pixels, multiples of 32")
    clip_len: int = _field(3, "frames T per clip (truncated BPTT: state reset at clip start); 1 = no recurrence "
                              "across frames")
    augment: bool = _field(True, "online augmentation of KITTI clips: flip with left/right swap, gamma, "
                                 "brightness, colour (synthetic clips are never augmented)")
    augment_scale: tuple[float, float] = _field((1.0, 1.0), "random resized crop: zoom factor range (low, high), "
                                                       ">= 1; a crop of 1/zoom of the image is resized back to "
                                                       "`size`, intrinsics and disparities scaled with it; "
                                                       "(1, 1) = off")
    grayscale_prob: float = _field(0.0, "probability of turning a training clip grayscale (both views), so colour "
                                        "and grayscale sources mix")
    depth_hints: bool = _field(False, "Depth Hints: fused SGBM proxy disparities supervise the prediction where "
                                      "they reconstruct the view better (weight loss_weights.depth_hint)")
    hints_cache_dir: str | None = _field(None, "where Depth Hints are cached; null = $SIAM_DEPTH_CACHE/depth_hints or "
                                               "~/.cache/siam_depth/depth_hints")
    cache_images: bool = _field(False, "keep the resized training images (and hints) in memory after first use; "
                                       "for small data sets")
    synthetic_clips: int = _field(64, "number of clips in the synthetic dataset (dataset: synthetic)")

    # --- optimisation ---
    batch_size: int = _field(4, "global batch (clips per optimiser step), split evenly over DDP processes")
    epochs: int = _field(50, "passes over the training set")
    lr: float = _field(1e-4, "Adam learning rate before decay")
    lr_decay_start: int = _field(30, "epoch at which the learning rate is first multiplied by lr_decay_factor")
    lr_decay_every: int = _field(10, "then again every this many epochs")
    lr_decay_factor: float = _field(0.5, "multiplier applied at each decay epoch")
    lr_schedule: str = _field("step", "'step' (x lr_decay_factor at lr_decay_start, then every lr_decay_every "
                                      "epochs) or 'cosine' (from lr down to lr_final at the end of the last epoch)")
    lr_final: float = _field(1.0e-6, "learning rate reached at the end of the run by the cosine schedule")
    mono_fraction: float = _field(0.5, "share of each batch's clips taken from monocular video sources "
                                       "(`video_folder`; trained through the temporal term only, so they need "
                                       "temporal.enabled); ignored without such a source")
    ema_decay: float = _field(0.0, "exponential moving average of the weights, updated every step with this decay "
                                   "(e.g. 0.995); the averaged weights are validated and saved (best.pt, "
                                   "epoch_NNN.pt); 0 = off")
    weight_decay: float = _field(1e-5, "L2 penalty on all weights (Adam's coupled weight decay)")
    adam_betas: tuple[float, float] = _field((0.9, 0.999), "Adam (beta1, beta2)")
    init_from: str | None = _field(None, "checkpoint whose weights start a new run (fine-tuning; fresh optimiser "
                                         "and schedule); its width, skips, max_disp and size must match this config")
    max_steps: int | None = _field(None, "stop after this many optimiser steps in total (smoke runs); null = "
                                         "run all epochs")

    # --- model and loss ---
    net_width: float = _field(1.0, "channel multiplier of Table 1 (1.0 paper, 0.25 CPU/embedded)")
    recurrent: bool = _field(True, "ConvLSTM skips (true) or plain convolutions (U-net ablation)")
    lstm_ratio: float = _field(1.0, "hidden channels of the ConvLSTM layers relative to Table 1 (1.0 = the paper; "
                                    "0.5: a faster variant, see models/README.md)")
    siamese: bool = _field(True, "run the flipped image too and train through the refinement (false = "
                                 "non-Siamese baseline)")
    max_disp: float = _field(DEFAULT_MAX_DISP, "largest disparity the heads can output, fraction of width")
    loss_weights: LossWeights = _field(LossWeights(), "loss term weights: appearance, smoothness (divided by "
                                                      "2^s), left_right, max_depth, ssim, depth_hint")
    temporal: TemporalConfig = _field(TemporalConfig(), "M+S temporal self-supervision: {enabled, frames (offsets "
                                                        "from [-1, 1]), weight (share of the left appearance term "
                                                        "taken by the minimum reprojection, 0..1)}")
    validation: ValidationConfig = _field(ValidationConfig(), "validation stream held out of training: "
                                                              "{sequences (names, e.g. odometry/06), holdout_frames "
                                                              "(the last N of each), gap_frames, interval (epochs), "
                                                              "lidar_drives (KITTI raw drives scored by LiDAR only), "
                                                              "lidar_root}; "
                                                              "best.pt is chosen by it")

    # --- runtime ---
    device: str = _field("auto", "'auto' (cuda if available), 'cpu' or 'cuda'")
    amp: str = _field("off", "mixed precision on CUDA: 'off', 'bf16' or 'fp16' (GradScaler); ignored on CPU")
    num_workers: int = _field(4, "DataLoader worker processes per training process")
    seed: int = _field(0, "seed for weights, shuffling and augmentation")
    deterministic: bool = _field(False, "torch.use_deterministic_algorithms (bit-exact CPU resume; slower on CUDA)")
    out_dir: str = _field("runs/paper", "run folder: last.pt, epoch_NNN.pt, TensorBoard events, config.yaml")
    log_interval: int = _field(50, "optimiser steps between TensorBoard scalar summaries")
    image_interval: int = _field(500, "optimiser steps between image summaries (disparity, warps); 0 = never")
    keep_checkpoints: int = _field(3, "epoch_NNN.pt weight files kept (the newest; 0 = none); best.pt (lowest "
                                      "validation score, else lowest mean epoch loss) and last.pt (for resuming) are "
                                      "always written")
    checkpoint_interval: int = _field(1000, "optimiser steps between last.pt saves (also saved every epoch)")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first field whose value cannot work."""
        _choice("dataset", self.dataset, DATASETS)
        _choice("amp", self.amp, AMP_MODES)
        _choice("device", self.device, DEVICES)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        if not 0.0 <= self.ema_decay < 1.0 or not 0.0 <= self.lr_final < self.lr:
            raise ValueError(f"need 0 <= ema_decay < 1 and 0 <= lr_final < lr; got {self.ema_decay}, {self.lr_final}")
        if len(self.size) != 2 or any(int(s) <= 0 or int(s) % 32 for s in self.size):
            raise ValueError(f"size must be (H, W), positive multiples of 32, got {self.size}")
        for name in ("clip_len", "batch_size", "epochs", "lr_decay_every", "log_interval", "checkpoint_interval",
                     "synthetic_clips"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_workers", "image_interval", "lr_decay_start", "keep_checkpoints"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or null, got {self.max_steps}")
        if self.lr <= 0 or self.weight_decay < 0 or not 0 < self.lr_decay_factor <= 1:
            raise ValueError(f"need lr > 0, weight_decay >= 0, 0 < lr_decay_factor <= 1; got {self.lr}, "
                             f"{self.weight_decay}, {self.lr_decay_factor}")
        if not 0 < self.lstm_ratio <= 1:
            raise ValueError(f"lstm_ratio must be in (0, 1], got {self.lstm_ratio}")
        if self.net_width <= 0 or not 0 < self.max_disp <= 1:
            raise ValueError(f"need net_width > 0 and 0 < max_disp <= 1, got {self.net_width}, {self.max_disp}")
        if self.dataset == "kitti" and not self.sources and not self.drives and not self.split:
            raise ValueError("dataset 'kitti' needs `sources`, `split` (e.g. eigen_full) or `drives`")
        if not 1.0 <= self.augment_scale[0] <= self.augment_scale[1]:
            raise ValueError(f"augment_scale must be a zoom range (low, high) with 1 <= low <= high, got "
                             f"{self.augment_scale}")
        if not 0.0 < self.mono_fraction < 1.0:
            raise ValueError(f"mono_fraction must be in (0, 1), got {self.mono_fraction}")
        if any(s.kind == "video_folder" for s in self.sources) and not self.temporal.enabled:
            raise ValueError("a video_folder source (monocular video) trains only through the temporal term: "
                             "set temporal.enabled: true")
        if (self.temporal.enabled or self.validation.sequences or self.validation.lidar_drives) \
                and self.dataset != "kitti":
            raise ValueError("temporal and validation need stereo sequences on disk (dataset: kitti)")
        if not 0.0 <= self.grayscale_prob <= 1.0:
            raise ValueError(f"grayscale_prob must be a probability in [0,1], got {self.grayscale_prob}")
        if self.depth_hints and self.dataset != "kitti":
            raise ValueError("depth_hints needs stereo image files (dataset: kitti); synthetic clips have none")

    def training_sources(self) -> list[SourceSpec]:
        """`sources`, or the one KITTI raw source that data_root/drives/split describe."""
        if self.sources:
            return list(self.sources)
        return [SourceSpec(kind="kitti_raw", root=self.data_root, drives=list(self.drives),
                           split=None if self.drives else self.split)]

    @property
    def lr_milestones(self) -> list[int]:
        """Epochs at which the learning rate is multiplied by lr_decay_factor (paper: 30, 40)."""
        return list(range(self.lr_decay_start, self.epochs, self.lr_decay_every))

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-safe dict (tuples as lists)."""
        return _plain(dataclasses.asdict(self))


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def field_help() -> list[tuple[str, str, Any]]:
    """(name, help, default) of every field, nested loss weights as `loss_weights.<name>`."""
    rows = []
    defaults = TrainConfig()
    for item in dataclasses.fields(TrainConfig):
        rows.append((item.name, item.metadata["help"], getattr(defaults, item.name)))
    return rows


def _hints() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def read_yaml_config(path: str | Path) -> dict[str, Any]:
    """The raw key/value mapping of a config file, with its `base:` chain (paths relative) merged in."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"config {path} must be a YAML mapping, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data
    merged = read_yaml_config(base_config_path(path, str(base)))
    for key, value in data.items():
        if key in NESTED_FIELDS and isinstance(value, dict):
            merged[key] = {**merged.get(key, {}), **value}
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` with a YAML value (`size=[96,320]`, `max_steps=null`, `drives=a,b` is a string)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override must look like key=value, got {text!r}")
    return key.strip(), yaml.safe_load(raw) if raw.strip() else ""


def build_config(values: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """A validated TrainConfig from a key/value mapping plus `key=value` overrides (applied in order)."""
    values = {k: (dict(v) if isinstance(v, dict) else v) for k, v in values.items()}
    for text in overrides:
        key, value = parse_override(text)
        head, _, tail = key.partition(".")
        if tail:
            if head not in NESTED_FIELDS:
                raise ValueError(f"only {', '.join(NESTED_FIELDS)} have nested keys, got {key!r}")
            values.setdefault(head, {})[tail] = value
        else:
            values[key] = value
    hints = _hints()
    unknown = set(values) - set(hints)
    if unknown:
        raise ValueError(f"unknown config key(s) {sorted(unknown)}; see --help for the fields")
    return TrainConfig(**{k: coerce_value(k, v, hints[k]) for k, v in values.items()})


def base_config_path(path: Path, base: str) -> Path:
    """The file that config `path` names as its `base`: next to it when there, else the shipped config of that name."""
    beside = path.parent / base
    if beside.is_file() or Path(base).is_absolute():
        return beside
    shipped = shipped_file(SHIPPED_CONFIGS, base)
    if shipped is None:
        raise FileNotFoundError(f"config file not found: base {base} of {path} is neither in {path.parent} nor "
                                f"among the shipped {SHIPPED_CONFIGS}")
    return shipped


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """TrainConfig from a YAML file (or the defaults when path is None) and `key=value` overrides. With
    `init_from`, `size` is the checkpoint's unless the file itself (not a base) or an override sets it."""
    config = build_config(read_yaml_config(path) if path else {}, overrides)
    own = (yaml.safe_load(Path(path).read_text()) or {}) if path else {}
    if "size" in own or any(parse_override(text)[0] == "size" for text in overrides):
        return config
    return _size_of_init_from(config)


def _size_of_init_from(config: TrainConfig) -> TrainConfig:
    """`config` at the size of its `init_from` checkpoint, said in one log line when that changes it."""
    if not config.init_from or not Path(config.init_from).is_file():
        return config  # nothing to fine-tune from (the trainer says so when it needs it)
    from siam_depth_core.network.checkpoint import read_checkpoint

    meta = read_checkpoint(config.init_from)["meta"]
    size = (int(meta["height"]), int(meta["width"]))
    if size == tuple(config.size):
        return config
    LOGGER.info("init_from %s: training at its size %s, not %s (set `size` in your config or --set size=... to "
                "choose another)", config.init_from, size, tuple(config.size))
    return dataclasses.replace(config, size=size)


def save_config(config: TrainConfig, path: str | Path) -> Path:
    """Write the config as YAML (loadable by `load_config`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return path
