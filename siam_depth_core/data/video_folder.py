"""A monocular video as a training source: a folder of consecutive rectified frames and the camera's intrinsics.

Layout:
    <folder>/<name>.png|.jpg    consecutive rectified frames of one camera, in file-name order
    <folder>/K.txt              the 3x3 intrinsics K in pixels (9 numbers, whitespace or comma separated)
Such a clip has no stereo partner: it trains only through the temporal (M) term of M+S, with the camera
motion from the pose network (`training.temporal_loss`). Frames of another aspect ratio than the network's
are centre-cropped to it (before the resize to the training size), and K is shifted with the crop.
"""
from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from siam_depth_core.data.kitti import IMAGE_EXTENSIONS
from siam_depth_core.data.stereo import ImageCrop, StereoRig, StereoSequence

INTRINSICS_FILE = "K.txt"
#: Placeholder baseline of a monocular sequence's rig: never used, since monocular clips are trained with the
#: reference (stereo) rig's baseline, which keeps their depth in the same metric scale.
MONOCULAR_BASELINE_M = 1.0


def read_camera_matrix(path: Path) -> np.ndarray:
    """(3,3) float64 K from a text file of 9 numbers; ValueError naming the file when it is not a usable K."""
    if not path.is_file():
        raise FileNotFoundError(f"missing {path}: write the camera's 3x3 intrinsics K (pixels) there")
    try:
        values = [float(v) for v in re.split(r"[\s,;]+", path.read_text().strip()) if v]
    except ValueError as error:
        raise ValueError(f"{path}: not a list of numbers ({error})") from error
    if len(values) != 9:
        raise ValueError(f"{path}: a 3x3 K needs 9 numbers, found {len(values)}")
    camera_matrix = np.asarray(values, dtype=np.float64).reshape(3, 3)
    if not (camera_matrix[0, 0] > 0 and camera_matrix[1, 1] > 0) or not np.allclose(camera_matrix[2], [0, 0, 1]):
        raise ValueError(f"{path}: K must have fx, fy > 0 and last row 0 0 1, got {camera_matrix.tolist()}")
    return camera_matrix


def centre_crop_to_aspect(width: int, height: int, aspect: float) -> ImageCrop:
    """The largest centred box of `aspect` (width / height) inside a width x height image (pixels)."""
    if aspect <= 0:
        raise ValueError(f"aspect must be > 0, got {aspect}")
    if width / height >= aspect:  # too wide: cut the sides
        crop_width = int(round(height * aspect))
        return ImageCrop(top=0, left=(width - crop_width) // 2, height=height, width=crop_width)
    crop_height = int(round(width / aspect))
    return ImageCrop(top=(height - crop_height) // 2, left=0, height=crop_height, width=width)


def video_folder_sequence(folder: str | Path, aspect: float, name: str | None = None) -> StereoSequence:
    """The frames of a monocular video folder as a monocular `StereoSequence` (right = left, `monocular` True),
    centre-cropped to `aspect` (the network's width / height) with K shifted to the crop."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no video folder {folder} (it holds the frames and {INTRINSICS_FILE})")
    camera_matrix = read_camera_matrix(folder / INTRINSICS_FILE)
    frames = [p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS]
    if len(frames) < 2:
        raise FileNotFoundError(f"{folder}: a video folder needs at least 2 frames, found {len(frames)}")
    first = cv2.imread(str(frames[0]), cv2.IMREAD_UNCHANGED)
    if first is None:
        raise ValueError(f"cannot decode image (corrupt or not an image): {frames[0]}")
    crop = centre_crop_to_aspect(int(first.shape[1]), int(first.shape[0]), aspect)
    cropped_k = camera_matrix.copy()
    cropped_k[0, 2] -= crop.left
    cropped_k[1, 2] -= crop.top
    rig = StereoRig(baseline_m=MONOCULAR_BASELINE_M, camera_matrix=cropped_k, image_size=(crop.width, crop.height))
    paths = tuple(frames)
    return StereoSequence(name=name or f"video/{folder.name}", frames=tuple(range(len(paths))), left=paths,
                          right=paths, rig=rig, monocular=True, crop=crop)
