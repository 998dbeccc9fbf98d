"""Decoding of compressed frames (issue 27, items 1-3): the declared size is read before decoding, bombs are refused
without allocating them, big JPEGs are decoded at reduced scale, damaged data is an error, and nothing reaches
stderr."""
from __future__ import annotations

import resource
from pathlib import Path

import cv2
import numpy as np
import pytest
from crafted_images import BOMB_SIDE, corrupt_jpeg, jpeg_bomb, png_bomb

from siam_depth_core.geometry import ImageSize
from siam_depth_ros.image_decoding import (
    DECLARED_PIXELS_FACTOR,
    ImageConversionError,
    declared_image,
    decode_compressed,
)
from siam_depth_ros.input_limit import DEFAULT_MAX_IMAGE_PIXELS


def _gradient(height: int, width: int) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([rows % 256, cols % 256, (rows + cols) % 256], axis=-1).astype(np.uint8)


def _encode(extension: str, image: np.ndarray, *parameters: int) -> bytes:
    ok, encoded = cv2.imencode(extension, image, list(parameters))
    assert ok
    return encoded.tobytes()


@pytest.fixture(scope="module")
def kitti_jpeg(drive_0009: Path) -> bytes:
    """The first left colour frame of drive 0009 as a quality-95 JPEG (about 185 kB)."""
    image = cv2.imread(str(drive_0009 / "image_02" / "data" / "0000000000.png"))
    return _encode(".jpg", image, cv2.IMWRITE_JPEG_QUALITY, 95)


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize(("extension", "parameters", "bits"), [
    (".jpg", (), 8), (".jpg", (cv2.IMWRITE_JPEG_PROGRESSIVE, 1), 8), (".png", (), 8)])
def test_the_declared_size_is_read_from_the_header(extension: str, parameters: tuple[int, ...], bits: int) -> None:
    declared = declared_image(_encode(extension, _gradient(37, 91), *parameters))
    assert declared.size == ImageSize(37, 91) and declared.bits == bits
    assert declared.image_format == ("png" if extension == ".png" else "jpeg")
    assert declared_image(_encode(".png", np.zeros((5, 7), np.uint16))).bits == 16


@pytest.mark.parametrize("make_bomb", [jpeg_bomb, png_bomb], ids=["jpeg", "png"])
def test_a_decompression_bomb_is_refused_before_decoding(make_bomb, capfd: pytest.CaptureFixture[str]) -> None:
    bomb = make_bomb()
    assert declared_image(bomb).size == ImageSize(BOMB_SIDE, BOMB_SIDE)
    before = _max_rss_mib()
    with pytest.raises(ImageConversionError, match=rf"declares 30000x30000 = 900000000 pixels, more than "
                                                   rf"{DECLARED_PIXELS_FACTOR} x max_image_pixels"):
        decode_compressed(bomb, DEFAULT_MAX_IMAGE_PIXELS)
    assert _max_rss_mib() - before < 50  # decoded, it would have taken 2.7 GB
    assert capfd.readouterr().err == ""


def test_a_jpeg_over_the_limit_is_decoded_at_reduced_scale() -> None:
    image = _gradient(600, 1000)
    jpeg = _encode(".jpg", image, cv2.IMWRITE_JPEG_QUALITY, 98)
    for max_pixels, expected in ((600_000, ImageSize(600, 1000)), (599_999, ImageSize(300, 500)),
                                 (150_000, ImageSize(300, 500))):
        decoded = decode_compressed(jpeg, max_pixels)
        assert (decoded.size, decoded.declared_size, decoded.encoding) == (expected, ImageSize(600, 1000), "rgb8")
    reduced = decode_compressed(jpeg, 300 * 500).image.astype(int)
    area = cv2.resize(image[..., ::-1], (500, 300), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(reduced - area).mean() < 3.0  # libjpeg's DCT scaling: the area average, like cv2.INTER_AREA
    png = _encode(".png", image)  # PNG has no reduced decode: decoded in full (the node shrinks it)
    assert decode_compressed(png, 599_999).size == ImageSize(600, 1000)
    with pytest.raises(ImageConversionError, match="refused before decoding"):
        decode_compressed(png, 600_000 // DECLARED_PIXELS_FACTOR - 1)


def test_a_corrupt_kitti_jpeg_is_an_error_and_prints_nothing(kitti_jpeg: bytes,
                                                             capfd: pytest.CaptureFixture[str]) -> None:
    assert decode_compressed(kitti_jpeg).size == ImageSize(375, 1242)
    damaged = corrupt_jpeg(kitti_jpeg)
    capfd.readouterr()
    assert cv2.imdecode(np.frombuffer(damaged, np.uint8), cv2.IMREAD_COLOR) is not None  # OpenCV takes it ...
    assert "Corrupt JPEG data" in capfd.readouterr().err  # ... printing libjpeg's warning on stderr
    with pytest.raises(ImageConversionError, match=r"damaged JPEG \(1242x375\): Corrupt JPEG data: \d+ extraneous "
                                                   r"bytes before marker 0xd9"):
        decode_compressed(damaged)
    with pytest.raises(ImageConversionError, match="Premature end of JPEG file"):
        decode_compressed(kitti_jpeg[:len(kitti_jpeg) // 2])
    assert capfd.readouterr().err == ""


def test_a_damaged_png_is_an_error_and_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    png = _encode(".png", _gradient(120, 400))
    capfd.readouterr()
    assert cv2.imdecode(np.frombuffer(png[:len(png) // 2], np.uint8), cv2.IMREAD_COLOR) is None
    assert "libpng error" in capfd.readouterr().err  # what OpenCV's decoder does with it
    with pytest.raises(ImageConversionError, match="damaged PNG: truncated in its .IDAT. chunk"):
        decode_compressed(png[:len(png) // 2])
    zeroed = bytearray(png)
    zeroed[len(png) // 2:len(png) // 2 + 100] = bytes(100)
    with pytest.raises(ImageConversionError, match="damaged PNG: CRC error in its .IDAT. chunk"):
        decode_compressed(bytes(zeroed))
    assert capfd.readouterr().err == ""


def test_decoded_encodings() -> None:
    gray = decode_compressed(_encode(".jpg", _gradient(20, 30)[..., 0]))
    assert (gray.encoding, gray.image.shape) == ("mono8", (20, 30))
    palette = cv2.cvtColor(_gradient(20, 30), cv2.COLOR_BGR2RGB)
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    Image.fromarray(palette).quantize(16).save(buffer, format="PNG")
    decoded = decode_compressed(buffer.getvalue())
    assert (decoded.encoding, decoded.image.shape) == ("rgb8", (20, 30, 3))
    rgba = decode_compressed(_encode(".png", np.dstack([_gradient(20, 30), np.full((20, 30), 7, np.uint8)])))
    assert rgba.encoding == "rgba8" and (rgba.image[..., 3] == 7).all()
    with pytest.raises(ImageConversionError, match="PNG of 16 bits per sample"):
        decode_compressed(_encode(".png", np.zeros((5, 7, 3), np.uint16)))
