"""A plain stereo folder, for rigs that export images: `left/`, `right/` and a small `stereo.yaml`.

Layout:
    <folder>/left/<name>.png|.jpg     rectified left images
    <folder>/right/<name>.png|.jpg    the right images, same file names
    <folder>/stereo.yaml              fx, cx, cy [px], baseline [m]; optional fy (default fx) and
                                      frames: [name, ...] (the temporal order; default: file names sorted)
Consecutive entries of the order are consecutive frames (ConvLSTM clips run along it).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml

from siam_depth_core.data.kitti import IMAGE_EXTENSIONS
from siam_depth_core.data.stereo import StereoRig, StereoSequence

CALIBRATION_FILE = "stereo.yaml"
_REQUIRED = ("fx", "cx", "cy", "baseline")


def _images(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"no image folder {folder} (a stereo folder holds left/, right/ and "
                                f"{CALIBRATION_FILE})")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS}


def read_folder_calibration(path: Path) -> dict:
    """The numbers of `stereo.yaml`; ValueError naming the missing or bad key."""
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}: write fx, cx, cy (pixels) and baseline (metres) there")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path} must be a YAML mapping with {', '.join(_REQUIRED)}")
    missing = [k for k in _REQUIRED if k not in values]
    if missing:
        raise ValueError(f"{path} has no {', '.join(missing)} (needs fx, cx, cy in pixels and baseline in metres)")
    for key in (*_REQUIRED, "fy"):
        if key in values and (isinstance(values[key], bool) or not isinstance(values[key], (int, float))
                              or not np.isfinite(values[key]) or (key != "cx" and key != "cy" and values[key] <= 0)):
            raise ValueError(f"{path}: {key} must be a {'positive ' if key not in ('cx', 'cy') else ''}number, "
                             f"got {values[key]!r}")
    return values


def stereo_folder_sequence(folder: str | Path, name: str | None = None) -> StereoSequence:
    """The pairs of a stereo folder as a `StereoSequence` (see the module docstring for the layout)."""
    folder = Path(folder)
    calibration = read_folder_calibration(folder / CALIBRATION_FILE)
    left, right = _images(folder / "left"), _images(folder / "right")
    order = calibration.get("frames")
    if order is None:
        order = sorted(set(left) & set(right))
    else:
        order = [str(Path(str(n)).stem) for n in order]
        missing = [n for n in order if n not in left or n not in right]
        if missing:
            raise ValueError(f"{folder / CALIBRATION_FILE} lists frames without a left and right image: "
                             f"{', '.join(missing[:5])}")
    if not order:
        raise FileNotFoundError(f"{folder}: no image name is in both left/ and right/")
    first = cv2.imread(str(left[order[0]]), cv2.IMREAD_UNCHANGED)
    if first is None:
        raise ValueError(f"cannot decode image (corrupt or not an image): {left[order[0]]}")
    fx = float(calibration["fx"])
    camera_matrix = np.array([[fx, 0.0, calibration["cx"]], [0.0, float(calibration.get("fy", fx)), calibration["cy"]],
                              [0.0, 0.0, 1.0]])
    rig = StereoRig(baseline_m=float(calibration["baseline"]), camera_matrix=camera_matrix,
                    image_size=(int(first.shape[1]), int(first.shape[0])))
    return StereoSequence(name=name or f"folder/{folder.name}", frames=tuple(range(len(order))),
                          left=tuple(left[n] for n in order), right=tuple(right[n] for n in order), rig=rig)
