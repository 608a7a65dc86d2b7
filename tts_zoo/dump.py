"""``--dump``: a synthesis's intermediates on disk, for debugging (``.npy`` arrays and a picture of
the alignment and the F0 curve, written as PNG with zlib alone: no imaging library)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any, Union


def write_dump(folder: Path, index: int, out: Any, chunk: Any) -> None:
    """Write a chunk's intermediates as ``chunk_NNN_<name>.npy`` (tokens, durations, f0, energy,
    style, wave) plus ``chunk_NNN_alignment_f0.png`` (hard alignment above, F0 below)."""
    import numpy as np

    stem = folder / f"chunk_{index:03d}"
    arrays = {"tokens": np.asarray(chunk.tokens, dtype=np.int64)}
    for name in ("durations", "f0", "energy", "style", "wave"):
        value = getattr(out, name, None)
        if value is not None:
            arrays[name] = value.detach().float().cpu().numpy().squeeze() if name != "durations" \
                else value.detach().cpu().numpy().astype(np.int64)
    for name, array in arrays.items():
        np.save(f"{stem}_{name}.npy", array)
    if "durations" in arrays:
        write_png(f"{stem}_alignment_f0.png", alignment_f0_image(arrays["durations"], arrays.get("f0")))


def alignment_f0_image(durations: Any, f0: Any = None, f0_height: int = 160) -> Any:
    """A grayscale picture [H, W] uint8: the hard alignment (a band per token, black where the token
    is spoken; each frame 2 px wide, matching F0's rate) above the F0 curve (scaled to its maximum)."""
    import numpy as np

    durations = np.asarray(durations, dtype=np.int64)
    owner = np.repeat(np.arange(len(durations)), durations)  # token of every frame
    alignment = np.full((len(durations), 2 * len(owner)), 255, dtype=np.uint8)
    alignment[owner.repeat(2), np.arange(2 * len(owner))] = 0
    alignment = alignment.repeat(max(1, min(8, 256 // max(len(durations), 1))), axis=0)  # short texts: taller rows
    if f0 is None or len(owner) == 0:
        return alignment
    f0 = np.asarray(f0, dtype=np.float64).reshape(-1)[: 2 * len(owner)]
    panel = np.full((f0_height, alignment.shape[1]), 255, dtype=np.uint8)
    top = max(float(np.nanmax(f0)), 1e-6) if f0.size else 1.0
    rows = (f0_height - 1 - np.clip(f0 / top, 0, 1) * (f0_height - 1)).round().astype(np.int64)
    previous = np.concatenate([rows[:1], rows[:-1]])
    for x, (a, b) in enumerate(zip(np.minimum(rows, previous), np.maximum(rows, previous))):
        panel[a : b + 1, x] = 0  # a connected curve: join each point to the one before
    separator = np.full((2, alignment.shape[1]), 128, dtype=np.uint8)
    return np.concatenate([alignment, separator, panel])


def write_png(path: Union[str, Path], image: Any) -> None:
    """Write a grayscale uint8 image [H, W] as PNG (zlib + the PNG chunk layout; no imaging library)."""
    import numpy as np

    image = np.ascontiguousarray(image, dtype=np.uint8)
    height, width = image.shape
    raw = b"".join(b"\x00" + image[r].tobytes() for r in range(height))  # filter 0 on every row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6))
                           + chunk(b"IEND", b""))
