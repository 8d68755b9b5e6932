"""A clip to stylize: its source, styles, settings and output, the segments it is cut
into, and the one recipe for its work key, whichever surface (`stylize video`, a
manifest run here or on a cluster) asked for it, so each resumes the others' work."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..engine.engines import engine_for
from ..engine.stylize import as_styles, tensor_key
from ..engine.tensors import as_tensor
from ..engine.weights import weights_identity
from ..media.decode import VideoInfo, frame_index, probe_video
from ..media.encode import check_video_output
from ..media.files import file_digest
from ..media.images import check_fits_network, fit_long_edge
from ..settings import Style, StyleSettings, VideoSettings
from .work import WorkFolder


@dataclass(frozen=True)
class Segment:
    """Frames [first, stop) of a clip, counted from video.start: [first, fade) are burn-in,
    stylized only to settle the temporal chain; over [fade, start) the output cross-fades
    from the segment before to this one; from start on the output is this segment's."""

    number: int
    first: int
    fade: int
    start: int
    stop: int | None  # None: to wherever the clip really ends


@dataclass
class Clip:
    """Everything the segments and the encode of one clip share."""

    source: Path
    output: Path
    info: VideoInfo
    size: tuple[int, int]
    styles: tuple[Style, ...]  # as given; each segment loads them once
    settings: StyleSettings
    video: VideoSettings
    key: str
    segments: list[Segment]
    model: Path | None = None  # a trained model's file: its engine paints the frames, not the optimiser

    def work_path(self, segment: Segment | None = None) -> Path:
        folder = self.output.with_name(f".{self.output.name}.work")
        return folder if segment is None or len(self.segments) == 1 else folder / f"segment_{segment.number:03d}"

    def work(self, segment: Segment) -> WorkFolder:
        bounds = [segment.first, segment.fade, segment.start, segment.stop]
        key = self.key if len(self.segments) == 1 else hashlib.sha256(json.dumps([self.key, bounds]).encode()).hexdigest()
        return WorkFolder(self.work_path(segment), key, segment.first)


def open_clip(source, styles, output, settings: StyleSettings | None = None, video: VideoSettings | None = None,
              model: str | Path | None = None) -> Clip:
    """Probe the clip and cut it into segments; styles are only loaded when frames are stylized,
    and with a trained model (`model`) not at all."""
    settings, video = settings or StyleSettings(), video or VideoSettings()
    source, output = Path(source), Path(output)
    check_video_output(output, video.codec, video.crf)
    info = probe_video(source)
    check_fits_network(info.height, info.width, settings.scale_sizes()[0], source)
    styles = tuple(as_styles(styles)) if model is None else ()
    model = None if model is None else Path(model)
    key = work_key(source, styles, settings, video, model)
    segments = split_clip(_frames_expected(info, video), video)
    return Clip(source, output, info, working_size(info, settings.size), styles, settings, video, key, segments, model)


def work_key(source: Path, styles: tuple[Style, ...], settings: StyleSettings, video: VideoSettings,
             model: Path | None = None) -> str:
    """What the stylized frames depend on: the bytes of the clip and the frame settings (not how
    they are encoded); for the optimiser, the bytes and weights of the styles, the settings that
    change pictures and the VGG weights (as an item's key names them, and a weights file's bytes:
    frames done with the weights a file held before are not resumed); for a trained model, its
    identity (its file's digest and size, the size and precision it runs at)."""
    recipe = {
        "source": file_digest(source),
        "video": video.model_dump(mode="json", exclude={"codec", "crf", "photo_checks"}),
    }
    if model is None:
        recipe.update(styles=[[_style_digest(style), style.weight] for style in styles], settings=settings.output_identity(),
                      weights=weights_identity(settings.weights, by_content=True))
    else:
        recipe.update(engine=engine_for(styles, settings, model).identity())
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def _style_digest(style: Style) -> str:
    if isinstance(style.image, (str, Path)):
        return file_digest(Path(style.image))
    return tensor_key(as_tensor(style.image))


def split_clip(frames: int, video: VideoSettings) -> list[Segment]:
    """Equal segments of at most segment_frames; each after the first starts segment_burn_in +
    segment_overlap frames early. The count comes from the header, so the last runs to the real end."""
    if not video.segment_frames or frames <= video.segment_frames:
        return [Segment(0, 0, 0, 0, None)]
    count = math.ceil(frames / video.segment_frames)
    starts = [round(k * frames / count) for k in range(count)]
    overlap = min(video.segment_overlap, min(b - a for a, b in zip(starts, starts[1:])))  # fade inside the previous segment
    segments = [Segment(0, 0, 0, 0, starts[1])]
    for k, (start, stop) in enumerate(zip(starts[1:], starts[2:] + [None]), start=1):
        fade = start - overlap
        segments.append(Segment(k, max(0, fade - video.segment_burn_in), fade, start, stop))
    return segments


def _frames_expected(info: VideoInfo, video: VideoSettings) -> int:
    first = frame_index(video.start, info.fps)
    stop = frame_index(video.end, info.fps) if video.end is not None else info.frame_count_hint
    stop = min(stop, info.frame_count_hint)
    return max(0, min(stop - first, video.max_frames or stop))


def working_size(info: VideoInfo, long_edge: int) -> tuple[int, int]:
    """(height, width) with the clip's aspect, both even as yuv420p needs."""
    height, width = fit_long_edge(info.height, info.width, long_edge)
    return max(2, height - height % 2), max(2, width - width % 2)
