"""Raw RGB frames with their timestamps, in as much Matroska as ffmpeg needs to carry them
through a pipe: read back when ffmpeg decodes a stream OpenCV cannot select. Only what
that needs: one video track, frames one per block, no lacing; every other element is
passed over."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterator

# Elements whose children are read (Segment, Cluster, BlockGroup, Tracks, TrackEntry, Video).
_MASTERS = {0x18538067, 0x1F43B675, 0xA0, 0x1654AE6B, 0xAE, 0xE0}
_TIMESTAMP_SCALE, _CLUSTER_TIMESTAMP, _WIDTH, _HEIGHT = 0x2AD7B1, 0xE7, 0xB0, 0xBA
_BLOCKS = {0xA3, 0xA1}  # SimpleBlock, Block


@dataclass(frozen=True)
class Block:
    seconds: float
    width: int | None  # the track's, as far as the stream has said
    height: int | None
    data: bytes


def read_blocks(stream: BinaryIO) -> Iterator[Block]:
    """The frames of a streamed Matroska file of one video track, in stream order; ends at
    the end of the stream or at a cut-off element."""
    scale, cluster, width, height = 1_000_000, 0, None, None
    while True:
        ident = _read_id(stream)
        if ident is None:
            return
        size = _read_size(stream)
        if ident in _MASTERS:
            continue  # its children follow
        if size is None:
            return  # an unknown size is only valid for masters
        data = stream.read(size)
        if len(data) < size:
            return
        if ident == _TIMESTAMP_SCALE:
            scale = int.from_bytes(data, "big")
        elif ident == _CLUSTER_TIMESTAMP:
            cluster = int.from_bytes(data, "big")
        elif ident == _WIDTH:
            width = int.from_bytes(data, "big")
        elif ident == _HEIGHT:
            height = int.from_bytes(data, "big")
        elif ident in _BLOCKS:
            track_length = _vint_length(data[0])
            (offset,) = struct.unpack(">h", data[track_length:track_length + 2])
            yield Block((cluster + offset) * scale / 1e9, width, height, data[track_length + 3:])


def _vint_length(first: int) -> int:
    for length in range(1, 9):
        if first & (0x80 >> (length - 1)):
            return length
    raise ValueError("not a Matroska variable-length integer")


def _read_id(stream: BinaryIO) -> int | None:
    """An element's id; None at the end of the stream or where it is not Matroska."""
    first = stream.read(1)
    if not first or not first[0]:
        return None
    rest = stream.read(_vint_length(first[0]) - 1)
    return int.from_bytes(first + rest, "big")


def _read_size(stream: BinaryIO) -> int | None:
    """A size; None for "unknown" (a streamed master element) or a cut-off stream."""
    first = stream.read(1)
    if not first or not first[0]:
        return None
    length = _vint_length(first[0])
    rest = stream.read(length - 1)
    value = int.from_bytes(bytes([first[0] & (0xFF >> length)]) + rest, "big")
    return None if value == (1 << (7 * length)) - 1 or len(rest) < length - 1 else value
