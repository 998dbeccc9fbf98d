"""`siam-depth-predict`: metric depth for a folder of images, a video file or a rosbag2 image topic, without ROS.

Frames are streamed in order through one `DepthEstimator`, so the ConvLSTM state is carried from frame
to frame (and reset on a time gap, as in the node). Per frame it writes, under `--out-dir`:
`depth/<name>.png` 16-bit depth in millimetres (the KITTI / ROS 16UC1 convention: 0 = invalid, and
depths beyond 65.535 m, which 16 bits cannot hold, are 0 too), `color/<name>.png` the depth in the
project's colours with a colour bar in metres and a label, and optionally `npy/<name>.npy` (float32
metres, NaN invalid) and `ply/<name>.ply` (a coloured point cloud in the camera optical frame).
Intrinsics (for the metric scale and the cloud) come from `--intrinsics file.yaml` (fx, cx, cy
[, fy]), else from the bag's camera_info, else the fallback fx = 0.58 x width (said in the output).

    siam-depth-predict drive/image_02/data --out-dir out/          # the shipped model
    siam-depth-predict drive.mp4 --onnx model.onnx --out-dir out/ --ply
    siam-depth-predict drive.mp4 --onnx model.int8.onnx --openvino --precision bf16 --out-dir out/
    siam-depth-predict bag/ --topic /camera/image_raw --engine model.engine --out-dir out/
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from siam_depth_core.cli import OneLineParser, positive_float, positive_int, run_cli
from siam_depth_core.data.kitti import IMAGE_EXTENSIONS, load_image
from siam_depth_core.geometry import FALLBACK_FX_PER_WIDTH, ImageSize, backproject, fallback_camera_matrix
from siam_depth_core.runtime.inference import DepthEstimator
from siam_depth_core.runtime.model_arguments import add_model_arguments, model_source, runtime_options
from siam_depth_core.visualize import colorize_depth, with_color_bar, write_ply, write_png

LOGGER = logging.getLogger("siam_depth.predict")

#: 16-bit PNG depth: millimetres, so 65535 is the farthest depth it can hold (65.535 m).
DEPTH_PNG_SCALE = 1000.0
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm")


@dataclass
class InputFrame:
    """One frame to predict: a file-safe name, (H,W,3) uint8 RGB, capture time (s) and intrinsics if known."""

    name: str
    image: np.ndarray
    stamp_s: float
    camera_matrix: np.ndarray | None = None


def folder_frames(folder: Path, rate_hz: float) -> Iterator[InputFrame]:
    """The images of a folder in name order, stamped at `rate_hz` (a folder has no capture times)."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"no .png or .jpg image in {folder}")
    for index, path in enumerate(files):
        yield InputFrame(path.stem, load_image(path), index / rate_hz)


def video_frames(path: Path) -> Iterator[InputFrame]:
    """The frames of a video file, stamped with the container's presentation times."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"cannot open video {path} (not a video, or a codec OpenCV lacks)")
    try:
        index = 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            stamp_s = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            yield InputFrame(f"{index:06d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), stamp_s)
            index += 1
        if index == 0:
            raise ValueError(f"video {path} has no frame OpenCV can decode")
    finally:
        capture.release()


def bag_frames(bag: Path, topic: str) -> Iterator[InputFrame]:
    """The images of one topic of a rosbag2 (Image or CompressedImage), in bag order, with the intrinsics of
    the sibling camera_info topic when the bag has it."""
    from siam_depth_core.data.rosbag_source import (
        CAMERA_INFO_TYPE,
        COMPRESSED_TYPE,
        IMAGE_TYPE,
        BagStereoTopics,
        bag_connections,
        decode_image_message,
        open_bag,
        stamp_s,
    )

    info_topic = BagStereoTopics.sibling_info(topic)
    with open_bag(bag) as reader:
        images = bag_connections(reader, topic, (IMAGE_TYPE, COMPRESSED_TYPE), bag)
        infos = [c for c in reader.connections if c.topic == info_topic and c.msgtype == CAMERA_INFO_TYPE]
        camera_matrix = None
        for connection, _, raw in reader.messages(connections=infos):  # a camera's intrinsics do not change
            info = reader.deserialize(raw, connection.msgtype)
            # a rectified image's intrinsics are P's (K is the raw camera's); K only when P is not set
            p = np.asarray(info.p, dtype=np.float64).reshape(3, 4)[:, :3]
            k = p if p[0, 0] > 0 else np.asarray(info.k, dtype=np.float64).reshape(3, 3)
            if k[0, 0] > 0:
                camera_matrix = k
                break
        for connection, _, raw in reader.messages(connections=images):
            message = reader.deserialize(raw, connection.msgtype)
            stamp = stamp_s(message)
            yield InputFrame(f"{int(round(stamp * 1e9)):019d}", decode_image_message(message, connection.msgtype), stamp,
                             camera_matrix)


def read_intrinsics(path: Path) -> np.ndarray:
    """(3,3) K from a YAML file with fx, cx, cy and optionally fy (pixels of the input images)."""
    if not path.is_file():
        raise FileNotFoundError(f"intrinsics file not found: {path}")
    values = yaml.safe_load(path.read_text()) or {}
    missing = [k for k in ("fx", "cx", "cy") if not isinstance(values, dict) or k not in values]
    if missing:
        raise ValueError(f"{path} has no {', '.join(missing)} (write fx, cx, cy [, fy] in pixels)")
    fx = float(values["fx"])
    fy = float(values.get("fy", fx))
    if not (fx > 0 and fy > 0 and np.isfinite([fx, fy, values["cx"], values["cy"]]).all()):
        raise ValueError(f"{path}: fx and fy must be positive and fx, fy, cx, cy finite")
    return np.array([[fx, 0.0, float(values["cx"])], [0.0, fy, float(values["cy"])], [0.0, 0.0, 1.0]])


def depth_to_png_mm(depth_m: np.ndarray) -> np.ndarray:
    """(H,W) metres (NaN invalid) -> (H,W) uint16 millimetres; 0 where invalid or beyond 65.535 m."""
    millimetres = np.nan_to_num(np.asarray(depth_m, dtype=np.float64) * DEPTH_PNG_SCALE, nan=0.0, posinf=0.0,
                                neginf=0.0)
    millimetres = np.round(millimetres)
    millimetres[(millimetres <= 0) | (millimetres > np.iinfo(np.uint16).max)] = 0
    return millimetres.astype(np.uint16)


def open_input(path: Path, topic: str | None, rate_hz: float) -> Iterator[InputFrame]:
    """Frames of `path`: a rosbag2 (with `topic`), a video file or a folder of images."""
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    if topic is not None:
        return bag_frames(path, topic)
    if path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS:
        return video_frames(path)
    if path.is_dir() and ((path / "metadata.yaml").is_file() or any(path.glob("*.mcap")) or any(path.glob("*.db3"))):
        raise ValueError(f"{path} is a rosbag2: pass --topic with the image topic to predict")
    if path.is_dir():
        return folder_frames(path, rate_hz)
    raise ValueError(f"{path} is neither a folder of images, a video ({', '.join(VIDEO_EXTENSIONS)}) nor a bag")


def camera_matrix_for(frame: InputFrame, given: np.ndarray | None) -> tuple[np.ndarray, str]:
    """The intrinsics to use for `frame` and where they come from (for the output's note)."""
    if given is not None:
        return given, "--intrinsics"
    if frame.camera_matrix is not None:
        return frame.camera_matrix, "camera_info in the bag"
    height, width = frame.image.shape[:2]
    return (fallback_camera_matrix(ImageSize(height, width)),
            f"fallback fx = {FALLBACK_FX_PER_WIDTH} x width (no --intrinsics, no camera_info)")


@dataclass
class PredictOutputs:
    """Which files to write per frame, and where: depth PNG and colour PNG always, .npy and PLY optional."""

    out_dir: Path
    npy: bool = False
    ply: bool = False
    ply_stride: int = 2

    def prepare(self) -> None:
        """Create the output folders; OSError naming the folder when that is not possible."""
        for name in ("depth", "color") + (("npy",) if self.npy else ()) + (("ply",) if self.ply else ()):
            folder = self.out_dir / name
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise OSError(f"cannot create {folder} ({error.strerror or error}); choose a writable --out-dir") \
                    from error

    def write(self, frame: InputFrame, depth_m: np.ndarray, camera_matrix: np.ndarray, label: str) -> None:
        """All outputs of one frame."""
        if not cv2.imwrite(str(self.out_dir / "depth" / f"{frame.name}.png"), depth_to_png_mm(depth_m)):
            raise OSError(f"could not write {self.out_dir / 'depth' / f'{frame.name}.png'}")
        write_png(self.out_dir / "color" / f"{frame.name}.png", with_color_bar(colorize_depth(depth_m), label))
        if self.npy:
            np.save(self.out_dir / "npy" / f"{frame.name}.npy", depth_m.astype(np.float32))
        if self.ply:
            points, pixels = backproject(depth_m, camera_matrix, stride=self.ply_stride)
            write_ply(self.out_dir / "ply" / f"{frame.name}.ply", points, frame.image[pixels[:, 0], pixels[:, 1]])


def predict(frames: Iterator[InputFrame], estimator: DepthEstimator, outputs: PredictOutputs,
            intrinsics: np.ndarray | None = None, progress: bool = True) -> dict[str, Any]:
    """Stream `frames` through `estimator` (state carried, reset on gaps) and write every output; returns a
    summary {"frames", "resets", "intrinsics" (where they came from), "out_dir"}."""
    from tqdm import tqdm

    outputs.prepare()
    count, resets, origin = 0, 0, None
    for frame in tqdm(frames, desc="depth", unit="frame", disable=not progress or None, dynamic_ncols=True):
        camera_matrix, frame_origin = camera_matrix_for(frame, intrinsics)
        if origin is None:
            origin = frame_origin
            LOGGER.info("intrinsics: %s (fx %.1f px)", origin, camera_matrix[0, 0])
        result = estimator.step(frame.image, frame.stamp_s, "rgb8", fx_px=float(camera_matrix[0, 0]))
        resets += result.reset_reason is not None
        outputs.write(frame, result.depth_m, camera_matrix, f"depth [m], {estimator.source}")
        count += 1
    if count == 0:
        raise ValueError("the input holds no frame")
    return {"frames": count, "resets": resets, "intrinsics": origin, "out_dir": str(outputs.out_dir)}


def _parser() -> OneLineParser:
    parser = OneLineParser(prog="siam-depth-predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, help="a folder of images, a video file, or a rosbag2 (with --topic)")
    parser.add_argument("--out-dir", type=Path, required=True, help="where depth/, color/, npy/, ply/ go")
    add_model_arguments(parser)
    parser.add_argument("--topic", help="image topic to read from a rosbag2 (Image or CompressedImage)")
    parser.add_argument("--intrinsics", type=Path, help="YAML with fx, cx, cy [, fy] in pixels of the input")
    parser.add_argument("--rate", type=positive_float, default=10.0,
                        help="frames per second of a folder of images (their time stamps; default 10)")
    parser.add_argument("--max-gap-s", type=positive_float, default=0.5,
                        help="a longer gap between frames resets the ConvLSTM state (default 0.5 s)")
    parser.add_argument("--npy", action="store_true", help="also write float32 depth in metres as .npy")
    parser.add_argument("--ply", action="store_true", help="also write a coloured PLY point cloud per frame")
    parser.add_argument("--ply-stride", type=positive_int, default=2, help="use every n-th pixel for the PLY")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point `siam-depth-predict`."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")

    def body() -> int:
        intrinsics = read_intrinsics(args.intrinsics) if args.intrinsics else None
        frames = open_input(args.input, args.topic, args.rate)
        estimator = DepthEstimator(model_source(args, "siam-depth-predict"), runtime_options(args), max_gap_s=args.max_gap_s)
        outputs = PredictOutputs(args.out_dir, npy=args.npy, ply=args.ply, ply_stride=args.ply_stride)
        summary = predict(frames, estimator, outputs, intrinsics, progress=not args.quiet)
        print(f"{summary['frames']} frames -> {summary['out_dir']} (depth/ 16-bit mm, color/"
              f"{', npy/' if args.npy else ''}{', ply/' if args.ply else ''}); state resets: {summary['resets']}; "
              f"intrinsics: {summary['intrinsics']}")
        return 0

    return run_cli("siam-depth-predict", body)


if __name__ == "__main__":
    sys.exit(main())
