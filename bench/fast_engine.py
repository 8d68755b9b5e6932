"""The fast engine in `make bench`: a model trained on a real clip under a fixed budget, for
the lean design and for Johnson et al.'s (the pytorch/examples network) side by side, then

- training: steps per second, the judge's figures over time, when each bound was first met;
- quality: sampled frames of the clip, a frame of footage it never saw and a photo, each
  against a photo-path optimisation of the same picture at the same size (the optimiser's
  defaults), by the judge: style and content distance, theirs over the optimiser's;
- speed: the network alone at 320x240 and 1280x720 (and 1920x1080 on a GPU), fp32, bf16
  and channels_last, and the whole clip end to end (decode, network, encode, sound) with its
  independent flicker ratio;
- peak memory.

    python bench/run.py fast            # this section alone
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from pipeline import StyleSettings, VideoSettings, stylize_image, stylize_video
from pipeline.engine.fastnet import DEFAULT_DESIGN
from pipeline.engine.judge import distances
from pipeline.engine.model_file import load_model
from pipeline.engine.tensors import as_tensor, to_pixels
from pipeline.engine.training import TrainingOptions, train_model
from pipeline.media.decode import probe_video, read_frames
from pipeline.media.images import load_image
from pipeline.media.opencv import cv2
from pipeline.settings import Style
from pipeline.video.clip import working_size

TRAIN_MINUTES = 10.0  # the budget each design gets, on any device
CROP = 128
FRAME_EDGE = 320  # what the clip is stylized at, and the pictures the model is made for
JUDGED_FRAMES = 3
MAX_STYLE_GAP, MAX_CONTENT_GAP = 1.5, 1.3  # the bounds: a network's distances over the optimiser's
EVALUATE_EVERY_S = 120.0
SPEED_SIZES_CPU = ((320, 240), (1280, 720))
SPEED_SIZES_GPU = SPEED_SIZES_CPU + ((1920, 1080),)


def fast_engine(bench, clip: Path, unseen: Path | None, photo: Path, style: Path) -> None:
    pictures = _frames(clip, FRAME_EDGE, JUDGED_FRAMES)
    others = ([_frames(unseen, FRAME_EDGE, 1)[0]] if unseen else []) + [_photo(photo, FRAME_EDGE)]
    started = time.perf_counter()
    references = [_optimised(p, style, bench) for p in pictures + others]
    optimiser_seconds = (time.perf_counter() - started) / len(references)
    bench.record(f"optimiser (defaults): seconds per picture at {FRAME_EDGE} px", f"{optimiser_seconds:.1f}")
    painted = {}
    for design in (DEFAULT_DESIGN, "johnson"):
        model = bench.scratch / f"{design}.safetensors"
        timeline = _train(bench, design, clip, style, model, pictures, references[: len(pictures)])
        net, info = load_model(model)
        net = net.to(bench.device).eval()
        seen = _gaps(net, pictures, references[: len(pictures)], style, bench)
        never = _gaps(net, others, references[len(pictures):], style, bench)
        name = f"fast engine, {design}"
        bench.record(f"{name}: training on {clip.name}, {CROP} px crops of {FRAME_EDGE} px frames",
                     f"{info.steps} steps in {info.seconds:.0f} s, {info.steps / info.seconds:.2f} steps/s")
        bench.record(f"{name}: judge over time (style gap, content gap)", timeline)
        bench.record(f"{name}: {len(pictures)} frames of the clip against the optimiser (style gap, content gap; worst)", _describe(seen))
        bench.record(f"{name}: footage and a photo it never saw against the optimiser", _describe(never))
        for width, height in SPEED_SIZES_GPU if bench.gpu else SPEED_SIZES_CPU:
            bench.record(f"{name}: network alone, frames per second at {width}x{height}", _speeds(net, width, height, bench))
        _end_to_end(bench, name, model, clip)
        bench.record(f"{name}: peak memory so far", bench.peak_memory())
        painted[design] = _timed_picture(net, pictures[0])
    _side_by_side(pictures[0], painted[DEFAULT_DESIGN], (references[0], optimiser_seconds), bench)


def _timed_picture(net, picture: np.ndarray) -> tuple[np.ndarray, float]:
    """The network's picture of a frame, and the seconds it took (the second of two runs)."""
    device = next(net.parameters()).device
    for _ in range(2):
        started = time.perf_counter()
        with torch.inference_mode():
            painted = to_pixels(net(as_tensor(picture).to(device)).float().clamp(0, 1).cpu())
        seconds = time.perf_counter() - started
    return painted, seconds


def _side_by_side(frame: np.ndarray, fast: tuple[np.ndarray, float], optimised: tuple[np.ndarray, float], bench) -> None:
    """The README's picture: the frame, the fast engine's and the optimiser's, each with its time."""
    labelled = [_labelled(frame, "frame")]
    labelled += [_labelled(pixels, f"{what}: {_duration(seconds)} on {bench.device.type}")
                 for what, (pixels, seconds) in (("fast engine", fast), ("optimiser", optimised))]
    path = bench.pictures_folder / "fast_vs_optimiser.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(labelled, axis=1), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    bench.record("side by side (frame, fast engine, optimiser)", str(path.relative_to(bench.pictures_folder.parent)))


def _labelled(pixels: np.ndarray, text: str) -> np.ndarray:
    band = np.full((22, pixels.shape[1], 3), 255, np.uint8)
    cv2.putText(band, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([pixels, band], axis=0)


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.0f} s"


def _train(bench, design: str, clip: Path, style: Path, model: Path, pictures, references) -> str:
    """Train for the budget, judging the sampled frames every EVALUATE_EVERY_S: the figures over
    time (the judging, a few seconds each time, counts against the budget)."""
    marks: list[str] = []
    due = [EVALUATE_EVERY_S]

    def watch(progress) -> None:
        if progress.elapsed < due[0]:
            return
        due[0] += EVALUATE_EVERY_S
        gaps = _gaps(progress.network, pictures, references, style, bench)
        marks.append(f"{progress.elapsed / 60:.0f} min x{_mean(gaps, 0):.2f}/x{_mean(gaps, 1):.2f}")

    settings = StyleSettings(device=str(bench.device))
    options = TrainingOptions(size=CROP, picture_edge=FRAME_EDGE, minutes=TRAIN_MINUTES, design=design)
    train_model([Style(style)], [clip], model, settings, options, watch)
    return ", ".join(marks) or "n/a"


def _gaps(net, pictures, references, style: Path, bench) -> list[tuple[float, float]]:
    """Per picture: (style distance, content distance) of the network's over the optimiser's."""
    gaps = []
    device = next(net.parameters()).device
    for picture, reference in zip(pictures, references):
        with torch.inference_mode():
            painted = net(as_tensor(picture).to(device)).float().clamp(0, 1).cpu()
        ours = distances(painted, as_tensor(picture), [Style(style)], StyleSettings(device=str(bench.device)))
        theirs = distances(as_tensor(reference), as_tensor(picture), [Style(style)], StyleSettings(device=str(bench.device)))
        gaps.append((ours[0] / theirs[0], ours[1] / theirs[1]))
    return gaps


def _describe(gaps: list[tuple[float, float]]) -> str:
    worst = max(g[0] for g in gaps), max(g[1] for g in gaps)
    met = "within" if worst[0] <= MAX_STYLE_GAP and worst[1] <= MAX_CONTENT_GAP else "outside"
    return (f"style x{_mean(gaps, 0):.2f}, content x{_mean(gaps, 1):.2f} (worst x{worst[0]:.2f}, x{worst[1]:.2f}; "
            f"{met} x{MAX_STYLE_GAP}/x{MAX_CONTENT_GAP})")


def _mean(gaps, index: int) -> float:
    return float(np.mean([g[index] for g in gaps]))


def _speeds(net, width: int, height: int, bench) -> str:
    """Median frames per second of the network alone, batch 1, in each arithmetic that runs here."""
    frame = torch.rand(1, 3, height, width, device=bench.device)
    cells = []
    for label, channels_last, bf16 in (("fp32", False, False), ("bf16", False, True), ("channels_last", True, False)):
        model = net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        picture = frame.contiguous(memory_format=torch.channels_last) if channels_last else frame
        seconds = []
        with torch.inference_mode(), torch.autocast(bench.device.type, dtype=torch.bfloat16, enabled=bf16):
            for run in range(3 + (20 if bench.gpu else 5)):
                started = bench.now()
                model(picture)
                if run >= 3:
                    seconds.append(bench.now() - started)
        cells.append(f"{label} {1 / statistics.median(seconds):.1f}")
    net.to(memory_format=torch.contiguous_format)
    return ", ".join(cells)


def _end_to_end(bench, name: str, model: Path, clip: Path) -> None:
    started = time.perf_counter()
    result = stylize_video(clip, None, bench.scratch / f"{model.stem}_{clip.stem}.mp4",
                           StyleSettings(size=FRAME_EDGE, device=str(bench.device)), VideoSettings(), model=model)
    seconds = time.perf_counter() - started
    independent = f"{result.flicker_ratio_independent:.2f}" if result.flicker_ratio_independent is not None else "n/a"
    bench.record(f"{name}: {clip.name} end to end at {FRAME_EDGE} px, {result.frames_out} frames (decode, network, encode, sound)",
                 f"{result.frames_out / seconds:.1f} frames/s; flicker {result.flicker_ratio:.2f}, independent {independent}")


def _optimised(picture: np.ndarray, style: Path, bench) -> np.ndarray:
    """A photo-path stylization of the picture at its size, with the optimiser's defaults."""
    result = stylize_image(picture, [Style(style)], StyleSettings(size=max(picture.shape[:2]), device=str(bench.device)))
    return np.asarray(result.image.resize((picture.shape[1], picture.shape[0])))


def _frames(clip: Path, long_edge: int, count: int) -> list[np.ndarray]:
    """`count` frames spread across the clip (not its first or last), at the working size."""
    info = probe_video(clip)
    height, width = working_size(info, long_edge)
    wanted = {round((k + 1) * info.frame_count_hint / (count + 1)) for k in range(count)}
    return [cv2.resize(np.asarray(pixels), (width, height), interpolation=cv2.INTER_AREA)
            for index, pixels in enumerate(read_frames(clip, info=info)) if index in wanted]


def _photo(path: Path, long_edge: int) -> np.ndarray:
    image = load_image(path)
    scale = long_edge / max(image.size)
    return to_pixels(as_tensor(image.resize((round(image.width * scale), round(image.height * scale)))))
