"""Decoding of compressed camera frames (JPEG, PNG) that a hostile or broken publisher cannot use against the node.

- Size first: the pixel count a frame declares (JPEG SOF / PNG IHDR) is read before anything is decoded. A frame
  that declares more than DECLARED_PIXELS_FACTOR x `max_pixels` is refused outright (a 3 kB JPEG or a 2.6 MB PNG
  can declare 30000x30000 pixels, 2.7 GB once decoded: a decompression bomb); a JPEG over `max_pixels` is decoded
  at 1/2 or 1/4 scale inside libjpeg (DCT scaling), so no more than `max_pixels` pixels are ever allocated for it;
  a PNG over `max_pixels` (at most DECLARED_PIXELS_FACTOR times) is decoded in full and shrunk by the node.
- Damage is an error: a JPEG that libjpeg decodes only with a warning ("Corrupt JPEG data: ... extraneous bytes",
  "Premature end of JPEG file") is refused, not published as a good frame; a PNG with a chunk cut short or a
  wrong CRC (libpng's checks), or image data that does not inflate, likewise.
- Nothing on stderr: JPEG goes through libjpeg-turbo's TurboJPEG API (simplejpeg, strict mode) and PNG through
  Pillow, both of which report problems as exceptions. OpenCV's decoders print libjpeg's warnings and libpng's
  errors straight to the process's stderr, one line per frame, past the node's log rule.

Every failure is an ImageConversionError whose message says what is wrong with the frame.
"""
from __future__ import annotations

import io
import math
import struct
import zlib
from dataclasses import dataclass

import numpy as np
import simplejpeg
from PIL import Image as PilImage

from siam_depth_core.geometry import ImageSize

#: A frame may declare up to this many times `max_pixels` (it is then decoded reduced, or shrunk after decoding);
#: more is refused before decoding. 4: a 7680x4320 (8K) camera against the default 3840x2160 limit.
DECLARED_PIXELS_FACTOR = 4
#: JPEG reduction factors libjpeg's DCT scaling gives cheaply (1/2, 1/4); more needs no more than 4x (the factor).
JPEG_REDUCTIONS = (1, 2, 4)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8"
#: JPEG start-of-frame markers (baseline, extended, progressive, lossless; Huffman and arithmetic), not DHT/JPG/DAC.
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: JPEG markers without a length field (SOI, EOI, RSTn, TEM).
_JPEG_STANDALONE = frozenset({0xD8, 0xD9, 0x01, *range(0xD0, 0xD8)})


class ImageConversionError(ValueError):
    """A message or array that cannot be converted; the message says what is wrong with it."""


@dataclass(frozen=True)
class DeclaredImage:
    """What a compressed frame's header says: format ("jpeg" or "png"), size, bits per sample (PNG IHDR bit depth,
    JPEG sample precision)."""

    image_format: str
    size: ImageSize
    bits: int = 8

    @property
    def pixels(self) -> int:
        return self.size.height * self.size.width


@dataclass(frozen=True)
class DecodedImage:
    """A decoded frame: (H,W,3|4) or (H,W) uint8 pixels, their encoding (rgb8, rgba8 or mono8) and the size the
    frame declares (larger than the pixels' when a JPEG was decoded at reduced scale)."""

    image: np.ndarray
    encoding: str
    declared_size: ImageSize

    @property
    def size(self) -> ImageSize:
        return ImageSize(int(self.image.shape[0]), int(self.image.shape[1]))


def declared_image(data: bytes | memoryview) -> DeclaredImage:
    """The format and size a JPEG or PNG declares in its header (JPEG SOF segment, PNG IHDR chunk), read without
    decoding anything; ImageConversionError when the bytes are neither, or the header is cut short or says 0."""
    view = memoryview(data).cast("B")
    head = bytes(view[:8])
    if head.startswith(_PNG_SIGNATURE):
        return _png_header(view)
    if head.startswith(_JPEG_SOI):
        return _jpeg_header(view)
    raise ImageConversionError(f"neither a JPEG nor a PNG image (the data starts with {head.hex(' ')})")


def _png_header(view: memoryview) -> DeclaredImage:
    if len(view) < 33 or bytes(view[12:16]) != b"IHDR":
        raise ImageConversionError(f"PNG without a complete IHDR header ({len(view)} bytes)")
    width, height, bits = struct.unpack(">IIB", view[16:25])
    if width == 0 or height == 0:
        raise ImageConversionError(f"PNG header declares an empty image ({width}x{height} pixels)")
    return DeclaredImage("png", ImageSize(height, width), bits)


def _jpeg_header(view: memoryview) -> DeclaredImage:
    position, end = 2, len(view)
    while position < end:
        if view[position] != 0xFF:
            raise ImageConversionError(f"JPEG header damaged: no marker at byte {position} (found 0x{view[position]:02x})")
        while position < end and view[position] == 0xFF:  # fill bytes
            position += 1
        if position >= end:
            break
        marker = view[position]
        position += 1
        if marker in _JPEG_STANDALONE:
            if marker == 0xD9:
                break
            continue
        if position + 2 > end:
            break
        (length,) = struct.unpack(">H", view[position:position + 2])
        if marker in _JPEG_SOF_MARKERS:
            if length < 8 or position + 7 > end:
                break
            bits, height, width = struct.unpack(">BHH", view[position + 2:position + 7])
            if width == 0 or height == 0:
                raise ImageConversionError(f"JPEG header declares {width}x{height} pixels (a height given later by a "
                                           "DNL marker is not supported)")
            return DeclaredImage("jpeg", ImageSize(height, width), bits)
        if marker == 0xDA:
            raise ImageConversionError("JPEG scan data before any frame header (SOF)")
        position += length
    raise ImageConversionError(f"JPEG without a complete frame header (SOF) in its {end} bytes")


def jpeg_reduction(declared: DeclaredImage, max_pixels: int) -> int:
    """The smallest of JPEG_REDUCTIONS at which the declared image has at most `max_pixels` pixels (the largest
    when none does: then the node shrinks the rest)."""
    for factor in JPEG_REDUCTIONS:
        if math.ceil(declared.size.height / factor) * math.ceil(declared.size.width / factor) <= max_pixels:
            return factor
    return JPEG_REDUCTIONS[-1]


def check_declared_size(declared: DeclaredImage, max_pixels: int) -> None:
    """ImageConversionError when a frame declares more than DECLARED_PIXELS_FACTOR x `max_pixels` pixels.

    (A progressive JPEG keeps its DCT coefficients at full size, about 3 bytes a pixel, whatever the output scale:
    the factor bounds that too.)"""
    limit = DECLARED_PIXELS_FACTOR * max_pixels
    if declared.pixels > limit:
        raise ImageConversionError(
            f"{declared.image_format.upper()} declares {declared.size} = {declared.pixels} pixels, more than "
            f"{DECLARED_PIXELS_FACTOR} x max_image_pixels ({limit}); refused before decoding (a decompression bomb, "
            "or a camera beyond max_image_pixels: raise it)")


def decode_compressed(data: bytes | memoryview, max_pixels: int | None = None) -> DecodedImage:
    """A JPEG or PNG -> DecodedImage (rgb8, rgba8 or mono8), within `max_pixels` as the module docstring says (None:
    no limit). ImageConversionError for another format, a frame over the limit, damaged data (libjpeg warnings
    included), a 16-bit or otherwise unsupported image."""
    declared = declared_image(data)
    if declared.bits > 8:
        raise ImageConversionError(f"{declared.image_format.upper()} of {declared.bits} bits per sample; the depth "
                                   "node takes 8-bit camera images")
    if max_pixels is not None:
        check_declared_size(declared, max_pixels)
    if declared.image_format == "jpeg":
        factor = 1 if max_pixels is None else jpeg_reduction(declared, max_pixels)
        return DecodedImage(*_decode_jpeg(data, declared, factor), declared.size)
    return DecodedImage(*_decode_png(data), declared.size)


def _decode_jpeg(data: bytes | memoryview, declared: DeclaredImage, factor: int) -> tuple[np.ndarray, str]:
    try:
        _, _, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        gray = colorspace.lower() == "gray"
        image = simplejpeg.decode_jpeg(data, colorspace="GRAY" if gray else "RGB", strict=True,
                                       min_height=math.ceil(declared.size.height / factor),
                                       min_width=math.ceil(declared.size.width / factor))
    except ValueError as error:  # libjpeg's own words, warnings included (strict)
        raise ImageConversionError(f"damaged JPEG ({declared.size}): {str(error).strip()}") from None
    if gray:
        return image[:, :, 0], "mono8"
    return image, "rgb8"


#: Pillow modes -> (mode to convert to or None, encoding).
_PNG_MODES = {"L": (None, "mono8"), "RGB": (None, "rgb8"), "RGBA": (None, "rgba8"), "1": ("L", "mono8"),
              "LA": ("L", "mono8"), "P": ("RGB", "rgb8"), "PA": ("RGBA", "rgba8")}


def check_png_chunks(data: bytes | memoryview) -> None:
    """ImageConversionError unless every chunk of the PNG is complete and its CRC right, through IEND (libpng's
    checks; Pillow does not check the CRC of IDAT, so damaged image data would decode to garbage unnoticed)."""
    view = memoryview(data).cast("B")
    position, end = len(_PNG_SIGNATURE), len(view)
    while position + 8 <= end:
        length, kind = struct.unpack(">I4s", view[position:position + 8])
        body_end = position + 8 + length
        if body_end + 4 > end:
            raise ImageConversionError(f"damaged PNG: truncated in its {kind.decode('latin-1')!r} chunk")
        (crc,) = struct.unpack(">I", view[body_end:body_end + 4])
        if zlib.crc32(view[position + 4:body_end]) != crc:
            raise ImageConversionError(f"damaged PNG: CRC error in its {kind.decode('latin-1')!r} chunk")
        if kind == b"IEND":
            return
        position = body_end + 4
    raise ImageConversionError("damaged PNG: truncated (no IEND chunk)")


def _decode_png(data: bytes | memoryview) -> tuple[np.ndarray, str]:
    check_png_chunks(data)
    try:
        with PilImage.open(io.BytesIO(data), formats=["PNG"]) as picture:
            mode = picture.mode
            if mode not in _PNG_MODES:
                raise ImageConversionError(f"PNG of mode {mode!r}; the depth node takes 8-bit camera images")
            convert_to, encoding = _PNG_MODES[mode]
            if mode == "P" and "transparency" in picture.info:
                convert_to, encoding = "RGBA", "rgba8"
            picture.load()
            if convert_to is not None:
                picture = picture.convert(convert_to)
            image = np.asarray(picture)
    except ImageConversionError:
        raise
    except (OSError, ValueError, SyntaxError, struct.error, PilImage.DecompressionBombError) as error:
        raise ImageConversionError(f"damaged PNG: {error}") from None
    return image, encoding
