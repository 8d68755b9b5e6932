"""How well a stylized clip holds up, measured with yardsticks the optimisation never saw:
the judge (engine/judge.py: the same distances whatever the weights), sharpness (its own and against the input), and
flicker along flow from a second, independent estimator.

Bounds below are what `flags` checks; the README's "How a clip holds up" documents them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..engine.judge import distances
from ..engine.tensors import as_tensor
from ..media.opencv import cv2
from ..settings import StyleSettings
from .clip import Clip, Segment
from .frames import decode_frames, frames_with_flow, prefetch, warping_errors
from .work import WorkFolder

# A clip is flagged when it falls outside these.
MAX_INDEPENDENT_FLICKER = 1.5  # output's warping error over the input's, along independent flow
MAX_PHOTO_GAP = 1.10  # a frame's style or content distance over a photo-path stylization's (its sharpness: under it)
MAX_DRIFT = 0.10  # relative change of mean style, content or sharpness, first frames to last
DRIFT_FRAMES = 50  # how many frames at each end the drift compares (fewer in short clips)
MEASURES = ("style", "content", "sharpness", "own_sharpness")  # a frame's score, in this order


def sharpness(pixels: np.ndarray) -> float:
    """Mean absolute Laplacian of the grey image: falls as a picture smears."""
    grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F)).mean())


@dataclass
class FrameScore:
    """The judge's view of one output frame."""

    style: float | None  # None: no painting to measure against (see score_frame)
    content: float | None
    sharpness: float  # the output's over the input's
    own_sharpness: float  # the output's alone

    def as_list(self) -> list[float | None]:
        return [self.style, self.content, self.sharpness, self.own_sharpness]


def score_frame(output: np.ndarray, content: np.ndarray, styles, settings: StyleSettings) -> FrameScore:
    """The judge's distances to the styles and the content, and sharpness. With no styles (a
    trained model keeps its painting's digest, not its pixels) sharpness alone: there is no
    style to measure, and the content distance by itself costs VGG19 twice a frame (1.2 s at
    320x240 on a 2-core CPU, after 2-3 s to load it: more than a model takes for a whole short
    clip) for a figure whose drift, in frames that stand alone, could only be the footage's."""
    style = content_distance = None
    if styles is not None:
        style, content_distance = distances(as_tensor(output), as_tensor(content), styles, settings)
    own = sharpness(output)
    return FrameScore(style, content_distance, own / max(sharpness(content), 1e-6), own)


def drift(scores: list[list[float | None] | None], cuts: list[int] = ()) -> dict[str, float] | None:
    """Relative change of each measure's mean from the first frames to the last of the longest shot
    (0.05 is 5% higher), over the frames scored (None: a frame not scored). A chain restarts like a
    photo at a cut, so a change across one is the footage's, not the chain's: measured on bikes.mp4,
    whose four cuts moved style 26% in a clip that holds up within each shot."""
    bounds = [0, *sorted(cut for cut in cuts if 0 < cut < len(scores)), len(scores)]
    first, end = max(zip(bounds, bounds[1:]), key=lambda span: span[1] - span[0])
    shot = scores[first:end]
    count = min(DRIFT_FRAMES, len(shot) // 4)
    early, late = [s for s in shot[:count] if s], [s for s in shot[-count:] if s] if count else []
    if count < 2 or not early or not late:
        return None
    measured = min(map(len, early + late))  # a run resumed from a state that kept three measures has three
    changes = {}
    for i, name in enumerate(MEASURES[:measured]):
        before, after = [s[i] for s in early if s[i] is not None], [s[i] for s in late if s[i] is not None]
        if before and after:  # distances are None where the judge had no painting
            changes[name] = float(np.mean(after) / np.mean(before) - 1)
    return changes or None


def flags(independent_flicker: float | None, photo_gaps: list[dict], drifted: dict[str, float] | None) -> list[str]:
    """One line for each bound a clip breaks."""
    found = []
    if independent_flicker is not None and independent_flicker > MAX_INDEPENDENT_FLICKER:
        found.append(f"flickers: independent flicker ratio {_past(independent_flicker, MAX_INDEPENDENT_FLICKER)} > {MAX_INDEPENDENT_FLICKER}")
    for gap in photo_gaps:
        for measure in ("style", "content"):
            if gap[measure] > MAX_PHOTO_GAP:
                found.append(f"frame {gap['frame']} is {_past(gap[measure], MAX_PHOTO_GAP)}x as far from its {measure} as a photo-path stylization (> {MAX_PHOTO_GAP})")
        if gap["sharpness"] * MAX_PHOTO_GAP < 1:
            found.append(f"frame {gap['frame']} is {_past(gap['sharpness'], 1 / MAX_PHOTO_GAP)}x as sharp as a photo-path stylization (< {1 / MAX_PHOTO_GAP:.2f})")
    drifted = drifted or {}
    for measure in ("style", "content"):  # frames that end closer to their style or content than they began are no flaw
        if drifted.get(measure, 0) > MAX_DRIFT:
            found.append(f"{measure} drifts {drifted[measure]:+.0%} from the first frames to the last of the longest shot "
                         f"(more than {MAX_DRIFT:.0%} further from the {measure})")
    if _blurrier(drifted):
        found.append(f"sharpness drifts {drifted['sharpness']:+.0%} against the input" + _in_itself(drifted) +
                     f" from the first frames to the last of the longest shot (more than {MAX_DRIFT:.0%} blurrier)")
    return found


def _past(value: float, bound: float) -> str:
    """Two decimals, or three where two would read as the bound itself (1.104 against 1.10)."""
    return f"{value:.2f}" if round(value, 2) != round(bound, 2) else f"{value:.3f}"


def _blurrier(drifted: dict[str, float]) -> bool:
    """Blurrier against the input and in itself. A sharper input alone (focus settling, motion blur
    ending) lowers the ratio while the style's strokes stay about as sharp: within one shot of
    bikes.mp4 the input got 17% sharper and photo-path stylizations of its frames 5%, so even they
    drift -10% against the input. A smear in the video's frames themselves is the photo gaps' to catch."""
    against_input = drifted.get("sharpness", 0) < -MAX_DRIFT
    in_itself = drifted.get("own_sharpness", -1) < -MAX_DRIFT  # a state that kept no own sharpness: the ratio alone
    return against_input and in_itself


def _in_itself(drifted: dict[str, float]) -> str:
    return f" and {drifted['own_sharpness']:+.0%} in itself" if "own_sharpness" in drifted else ""


def photo_gaps(clip: Clip, segment: Segment, work: WorkFolder, engine) -> list[dict]:
    """A few of the segment's own frames (evenly spread, the last included) stylized again as
    photos by the same engine: how much further from their style and content the video's frames are."""
    own = list(range(segment.start, work.end))
    count = min(clip.video.photo_checks, len(own) - 1)  # the segment's first frame is a photo already
    if count <= 0:
        return []
    picks = sorted({own[round(k * (len(own) - 1) / count)] for k in range(1, count + 1)})
    contents = decode_frames(clip, picks)
    photos = engine.stylize([as_tensor(content) for content in contents])
    gaps = []
    for index, content, photo in zip(picks, contents, photos):
        photo_pixels = np.asarray(photo.image.resize((clip.size[1], clip.size[0])))  # the photo path rounds sizes its own way
        theirs = score_frame(photo_pixels, content, engine.styles, clip.settings)
        style, content_distance, sharp = work.scores[index - work.first][:3]
        gaps.append({"frame": index, "style": style / theirs.style, "content": content_distance / theirs.content,
                     "sharpness": sharp / theirs.sharpness})
    return gaps


def measure_again(clip: Clip, segment: Segment, work: WorkFolder, styles) -> None:
    """Every transition's warping errors and every frame's score, from the frames as the last pass left them."""
    errors, scores, before = [], [], None
    for frame in prefetch(frames_with_flow(clip, segment, 0, long_term=False)):
        output = work.frame(frame.index)
        errors.append(warping_errors(output, before, frame) if frame.previous is not None else None)
        scores.append(score_frame(output, frame.pixels, styles, clip.settings).as_list())
        before = output
    work.remeasured(errors, scores)
