"""What a fast network learns from: the user's own photos and clips, decoded once and kept
small in memory, and augmented batches drawn from them. A batch depends only on the seed and
its step number, never on the batches before it, so a resumed training draws exactly the
batches an uninterrupted one would."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..media.decode import VIDEO_SUFFIXES, probe_video, read_frames
from ..media.files import file_digest, glob_files, is_glob, walk_files
from ..media.images import IMAGE_SUFFIXES, load_image

FRAMES_PER_CLIP = 240  # sampled evenly across the whole clip, not its first seconds
ZOOM = 1.5  # crops are taken from windows up to this many times their size, shrunk: some scale variety
SHIFT = 8  # the stability pairs' largest shift, in pixels of the crop


def training_files(sources: Sequence[str | Path]) -> list[Path]:
    """The photos and clips that folders, globs and files name, sorted; InputError if none."""
    found: list[Path] = []
    for source in sources:
        text = str(source)
        if is_glob(text):
            found += glob_files(text, recursive=True)[1]
        elif Path(text).is_dir():
            found += list(walk_files(Path(text), recursive=True))
        elif Path(text).is_file():
            found.append(Path(text))
        else:
            raise InputError("not found: give photo folders, globs or clips to train on", text)
    media = sorted({p for p in found if p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES})
    if not media:
        raise InputError("no photos or clips to train on", ", ".join(map(str, sources)))
    return media


def material_digest(files: Sequence[Path]) -> str:
    """One fingerprint of everything trained on: a checkpoint resumes only on the same material."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.resolve()}\0{file_digest(path)}\n".encode())
    return digest.hexdigest()


class TrainingImages:
    """Every picture to learn from as uint8 [3, H, W] tensors at the size the model is made for
    (long edge `picture_edge`), so that a crop shows things as large as a frame will, and never
    smaller than a crop and its shift."""

    def __init__(self, files: Sequence[Path], crop: int, picture_edge: int):
        self.crop, self.picture_edge = crop, picture_edge
        self.pictures: list[torch.Tensor] = []
        for path in files:
            self.pictures += [self._kept(pixels) for pixels in _pictures_of(path)]
        if not self.pictures:
            raise InputError("none of these decode to a picture to train on", ", ".join(map(str, files)))

    def _kept(self, pixels: np.ndarray) -> torch.Tensor:
        height, width = pixels.shape[:2]
        scale = max(self.picture_edge / max(height, width), (self.crop + SHIFT) / min(height, width))
        size = (max(round(height * scale), self.crop + SHIFT), max(round(width * scale), self.crop + SHIFT))
        tensor = torch.from_numpy(np.array(pixels)).permute(2, 0, 1)[None].float()  # a copy: decoders hand out read-only arrays
        return F.interpolate(tensor, size=size, mode="bilinear", antialias=True, align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)

    def batch(self, step: int, seed: int, size: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """`size` random crops (random picture, zoom, position and mirror), each with a twin
        shifted by up to SHIFT pixels: ([B, 3, C, C], the same shifted, the shift (dy, dx))."""
        generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
        crop, extent = self.crop, self.crop + SHIFT
        shift = tuple(int(v) for v in torch.randint(0, SHIFT + 1, (2,), generator=generator))
        firsts, seconds = [], []
        for _ in range(size):
            picture = self.pictures[int(torch.randint(len(self.pictures), (1,), generator=generator))]
            zoom = float(torch.empty(1).uniform_(1.0, ZOOM, generator=generator))
            window = min(int(extent * zoom), *picture.shape[-2:])
            top = int(torch.randint(picture.shape[-2] - window + 1, (1,), generator=generator))
            left = int(torch.randint(picture.shape[-1] - window + 1, (1,), generator=generator))
            region = picture[None, :, top : top + window, left : left + window].float() / 255
            region = F.interpolate(region, size=(extent, extent), mode="bilinear", antialias=True, align_corners=False)
            if bool(torch.randint(2, (1,), generator=generator)):
                region = region.flip(-1)
            dy, dx = shift
            firsts.append(region[..., :crop, :crop])
            seconds.append(region[..., dy : dy + crop, dx : dx + crop])
        return torch.cat(firsts).clamp(0, 1), torch.cat(seconds).clamp(0, 1), shift


def _pictures_of(path: Path) -> list[np.ndarray]:
    """A photo, or up to FRAMES_PER_CLIP frames spread across the whole clip."""
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        return [np.asarray(load_image(path))]
    info = probe_video(path)
    every = max(1, info.frame_count_hint // FRAMES_PER_CLIP)
    return [pixels for index, pixels in enumerate(read_frames(path, info=info)) if index % every == 0][:FRAMES_PER_CLIP]

