"""Stylizing a whole clip without flicker: the one way through for `stylize video`, and the
same three steps a manifest run takes, here or spread over a cluster.

    1. open_clip       probe it, cut it into segments, key its work
    2. stylize_segment each segment's frames into its work folder (resumable)
    3. assemble        join, encode, add the sound, measure the seams
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..media.files import remove_partials_of
from ..media.lock import OutputLock
from ..settings import StyleSettings, VideoSettings
from .chain import VideoProgress, stylize_segment
from .clip import open_clip
from .join import VideoResult, assemble


def stylize_video(
    source: str | Path,
    styles,
    output: str | Path,
    settings: StyleSettings | None = None,
    video: VideoSettings | None = None,
    callback: Callable[[VideoProgress], None] | None = None,
    model: str | Path | None = None,
) -> VideoResult:
    """The whole clip here: its segments one after another (one, unless it is longer
    than segment_frames), then the join, holding the output's lock throughout. With `model`
    (a file from `stylize train`) its network paints the frames and `styles` go unused."""
    clip = open_clip(source, styles, output, settings, video, model)
    with OutputLock.for_output(clip.output):
        remove_partials_of(clip.output)  # the work folder stays: it is what a rerun resumes
        for segment in clip.segments:
            stylize_segment(clip, segment, callback)
        return assemble(clip)
