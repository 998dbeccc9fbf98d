"""Compressed images a hostile or broken publisher sends (issue 27), built in the test: decompression bombs and a
corrupt JPEG.

- `jpeg_bomb()`: a small baseline JPEG (64x64) whose SOF0 header is patched to declare 30000x30000 pixels
  (about 3 kB; 2.7 GB once decoded).
- `png_bomb()`: a PNG whose IHDR declares 30000x30000 RGB pixels and whose IDAT is a valid zlib stream of 30000 zero
  rows (2.6 MB; 2.7 GB once inflated). The stream repeats one raw-deflate block of 100 rows (the compressor is
  fully flushed after it, so every copy is the same bytes) and ends with the Adler-32 of all-zero data.
- `corrupt_jpeg(jpeg)`: the JPEG with a middle section replaced by random bytes other than 0xFF (no marker is
  broken; libjpeg decodes it with "Corrupt JPEG data: ... extraneous bytes before marker").
"""
from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np

BOMB_SIDE = 30000


def jpeg_bomb(side: int = BOMB_SIDE) -> bytes:
    rows, cols = np.mgrid[0:64, 0:64]
    small = np.stack([rows * 4, cols * 4, (rows + cols) * 2], axis=-1).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    data = bytearray(encoded.tobytes())
    sof = data.index(b"\xff\xc0")  # baseline frame header: FFC0, length (2), precision (1), height (2), width (2)
    data[sof + 5:sof + 9] = struct.pack(">HH", side, side)
    return bytes(data)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(side: int = BOMB_SIDE, block_rows: int = 100) -> bytes:
    assert side % block_rows == 0
    row_bytes = 1 + 3 * side  # filter byte + RGB
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(block_rows * row_bytes)) + compressor.flush(zlib.Z_FULL_FLUSH)
    total = side * row_bytes
    adler = ((total % 65521) << 16) | 1  # Adler-32 of `total` zero bytes
    stream = b"\x78\xda" + block * (side // block_rows) + compressor.flush(zlib.Z_FINISH) + adler.to_bytes(4, "big")
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)  # 8-bit RGB, deflate, no interlace
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", stream)
            + _png_chunk(b"IEND", b""))


def corrupt_jpeg(jpeg: bytes, length: int = 2048, seed: int = 0) -> bytes:
    data = bytearray(jpeg)
    start = len(data) // 2
    data[start:start + length] = np.random.default_rng(seed).integers(0, 255, length, dtype=np.uint8).tobytes()
    return bytes(data)
