"""Small valid files for upload tests: what the upload helper's sniffer accepts."""

from __future__ import annotations

import struct
import zlib


def png(seed: int = 0) -> bytes:
    """A valid 1×1 PNG; ``seed`` changes its pixel, and so its digest."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixel = zlib.compress(bytes([0, seed % 256, (seed >> 8) % 256, 0]))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixel) + chunk(b"IEND", b"")
    )


def pdf(words: str = "现场检查笔录") -> bytes:
    """A minimal PDF (a scanned 文书 as far as the sniffer can tell)."""
    return b"%PDF-1.4\n% " + words.encode() + b"\n%%EOF\n"
