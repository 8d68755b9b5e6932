"""Raw RGB frames with their timestamps, in as much Matroska as ffmpeg needs to carry them
through a pipe: written to feed the encoder a variable-frame-rate clip, read back when
ffmpeg decodes a stream OpenCV cannot select. Only what these two uses need: one video
track, frames one per block, no lacing; every other element is passed over."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterator

_EBML = b"\x1a\x45\xdf\xa3"
_SEGMENT = b"\x18\x53\x80\x67"
_UNKNOWN_SIZE = b"\x01\xff\xff\xff\xff\xff\xff\xff"
_MICROSECOND = 1000  # TimestampScale in ns: timestamps written in microseconds
# Elements whose children are read (Segment, Cluster, BlockGroup, Tracks, TrackEntry, Video).
_MASTERS = {0x18538067, 0x1F43B675, 0xA0, 0x1654AE6B, 0xAE, 0xE0}
_TIMESTAMP_SCALE, _CLUSTER_TIMESTAMP, _WIDTH, _HEIGHT = 0x2AD7B1, 0xE7, 0xB0, 0xBA
_BLOCKS = {0xA3, 0xA1}  # SimpleBlock, Block


def stream_header(width: int, height: int) -> bytes:
    """The EBML header, and a Segment of unknown size (streamed) with one track of packed
    RGB24 frames, top row first, timestamps in microseconds."""
    ebml = _element(_EBML, b"".join([_element(b"\x42\x86", _uint(1)), _element(b"\x42\xf7", _uint(1)),
                                     _element(b"\x42\xf2", _uint(4)), _element(b"\x42\xf3", _uint(8)),
                                     _element(b"\x42\x82", b"matroska"), _element(b"\x42\x87", _uint(4)),
                                     _element(b"\x42\x85", _uint(2))]))
    info = _element(b"\x15\x49\xa9\x66", _element(b"\x2a\xd7\xb1", _uint(_MICROSECOND))
                    + _element(b"\x4d\x80", b"stylize") + _element(b"\x57\x41", b"stylize"))
    video = _element(b"\xe0", _element(b"\xb0", _uint(width)) + _element(b"\xba", _uint(height))
                     + _element(b"\x2e\xb5\x24", b"RGB\x18"))  # ColourSpace: the raw FourCC of rgb24
    track = _element(b"\xae", b"".join([_element(b"\xd7", _uint(1)), _element(b"\x73\xc5", _uint(1)),
                                        _element(b"\x83", _uint(1)), _element(b"\x9c", _uint(0)),
                                        _element(b"\x86", b"V_UNCOMPRESSED"), video]))
    return ebml + _SEGMENT + _UNKNOWN_SIZE + info + _element(b"\x16\x54\xae\x6b", track)


def frame_cluster(pixels: bytes, microseconds: int, duration: int) -> bytes:
    """One frame in a Cluster of its own, shown at `microseconds` for `duration` microseconds."""
    block = b"\x81" + struct.pack(">hB", 0, 0x80)  # track 1, no offset from the cluster, a key frame
    group = _element(b"\xa0", _element(b"\xa1", block + pixels) + _element(b"\x9b", _uint(max(duration, 1))))
    return _element(b"\x1f\x43\xb6\x75", _element(b"\xe7", _uint(microseconds)) + group)


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


def _element(ident: bytes, payload: bytes) -> bytes:
    return ident + _size(len(payload)) + payload


def _size(value: int) -> bytes:
    for length in range(1, 9):
        if value < (1 << (7 * length)) - 1:  # all ones means "unknown"
            return ((1 << (7 * length)) | value).to_bytes(length, "big")
    raise ValueError(f"element too large: {value} bytes")


def _uint(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


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
