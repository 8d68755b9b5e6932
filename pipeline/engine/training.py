"""Training a fast network for a painting on the user's own photos or clip (Johnson et al.
2016, with this project's perceptual objective), resumably.

    1. gather     the photos and clip frames to learn from (training_data.py)
    2. resume     from the checkpoint beside the model, if it was made on the same material
    3. steps      perceptual loss (the optimiser's, so `strength` means the same) plus a
                  stability term: a shifted input must give the same picture, shifted
    4. save       the model file (model_file.py), and remove the checkpoint

A checkpoint is written atomically about once a minute and when SIGTERM or Ctrl-C stops
the training; the same command resumes it. Batches depend only on the seed and the step,
and the checkpoint holds the network and the optimiser exactly, so on the CPU a resumed
training ends with the weights an uninterrupted one would have."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import InputError
from ..media.files import check_destination, file_digest, partial_path, publish, remove_partials_of
from ..media.lock import OutputLock
from ..settings import Style, StyleSettings
from .device import native_bf16, resolve_device
from .fastnet import DEFAULT_DESIGN, DESIGNS, FastNetSpec, build_fastnet
from .model_file import ModelInfo, Painting, save_model
from .judge import verdict
from .network import network_for
from .stylize import perceptual_objective, prepare_styles
from .tensors import resize_long_edge
from .training_data import TrainingImages, material_digest, training_files

CHECKPOINT_EVERY_S = 60.0
MODEL_SUFFIX = ".safetensors"
# Crops of 128 from pictures of 320, the size clips are stylized at by default: big enough for
# context around a crop, small enough that a crop is not all one surface.
PICTURE_EDGE_PER_CROP = 2.5
JUDGED_PICTURES = 4  # the model file's figures: a few seconds of VGG passes at the end


@dataclass(frozen=True)
class TrainingOptions:
    size: int = 128  # the crops' edge in pixels
    picture_edge: int | None = None  # the long edge of the pictures the model is made for (default: 2.5 x size)
    steps: int | None = None  # stop after this many steps, or
    minutes: float | None = None  # after this much training time (across resumes)
    batch_size: int = 4
    # Adam's 1e-3 (Johnson et al.) is for 40,000 steps; in a few hundred 3e-3 gets further: the lean
    # network on bikes.mp4 for 5 minutes of a 2-core CPU ended at 4.60x the optimiser's style distance against 4.72x.
    learning_rate: float = 3e-3
    stability_weight: float = 100.0  # the shifted-twin term (a mean squared pixel error), against the perceptual loss
    seed: int = 0
    design: str = DEFAULT_DESIGN  # a name in fastnet.DESIGNS


@dataclass
class TrainingProgress:
    step: int  # steps done
    steps: int | None  # of, when a step count was asked for
    losses: dict[str, float]
    elapsed: float  # seconds of training, across resumes
    seconds_left: float | None
    resumed_from: int
    network: torch.nn.Module | None = None  # the network being trained, to try it out (in no_grad)


@dataclass
class TrainingResult:
    path: Path
    info: ModelInfo
    resumed_from: int


def train_model(styles: Sequence[Style], sources: Sequence[str | Path], output: str | Path,
                settings: StyleSettings | None = None, options: TrainingOptions | None = None,
                callback: Callable[[TrainingProgress], None] | None = None) -> TrainingResult:
    """Train a network that paints like `styles` on the photos and clips `sources` name,
    and write it to `output` (a .safetensors model file)."""
    settings, options = _training_precision(settings or StyleSettings()), options or TrainingOptions()
    output = check_model_output(Path(output))
    if options.steps is None and options.minutes is None:
        options = TrainingOptions(**{**asdict(options), "steps": 2000})
    if options.design not in DESIGNS:
        raise InputError(f"unknown design {options.design!r}: use one of {', '.join(DESIGNS)}")
    files = training_files(sources)
    with OutputLock.for_output(output):
        remove_partials_of(output)
        run = _Training(styles, files, output, settings, options)
        run.resume()
        try:
            run.steps(callback)
        except BaseException:  # SIGTERM, Ctrl-C, a full disk: keep what was learnt
            run.checkpoint()
            raise
        info = run.info()
        save_model(output, run.net.state_dict(), info)
        run.checkpoint_path.unlink(missing_ok=True)
    return TrainingResult(output, info, run.resumed_from)


class _Training:
    def __init__(self, styles, files: list[Path], output: Path, settings: StyleSettings, options: TrainingOptions):
        self.styles, self.settings, self.options = list(styles), settings, options
        self.spec = DESIGNS[options.design]
        self.picture_edge = options.picture_edge or round(PICTURE_EDGE_PER_CROP * options.size)
        self.images = TrainingImages(files, options.size, self.picture_edge)
        self.objective = perceptual_objective(settings, prepare_styles(self.styles), self.picture_edge)
        torch.manual_seed(options.seed)  # the network's first weights
        self.net = build_fastnet(self.spec).to(network_for(settings).device)  # where the VGG runs
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=options.learning_rate)
        self.step, self.elapsed, self.resumed_from = 0, 0.0, 0
        self.losses: dict[str, float] = {}
        self.key = _recipe_key(self.spec, settings, options, files, self.styles)
        self.checkpoint_path = output.with_name(f".{output.name}.checkpoint")

    def done(self) -> bool:
        if self.options.steps is not None and self.step >= self.options.steps:
            return True
        return self.options.minutes is not None and self.elapsed >= self.options.minutes * 60

    def steps(self, callback) -> None:
        last_checkpoint = started = time.perf_counter()
        before = self.elapsed
        while not self.done():
            self._one_step()
            now = time.perf_counter()
            self.elapsed = before + now - started
            if callback is not None:
                callback(TrainingProgress(self.step, self.options.steps, self.losses, self.elapsed, self._left(), self.resumed_from, self.net))
            if now - last_checkpoint >= CHECKPOINT_EVERY_S:
                self.checkpoint()
                last_checkpoint = now

    def _one_step(self) -> None:
        device = next(self.net.parameters()).device
        first, second, (dy, dx) = self.images.batch(self.step, self.options.seed, self.options.batch_size)
        first, second = first.to(device), second.to(device)
        painted, shifted = self.net(first), self.net(second)
        terms = self.objective(first, painted)
        crop = first.shape[-1]
        # The twin saw the same scene moved by (dy, dx): its picture must be the same, moved.
        stability = (painted[..., dy:, dx:] - shifted[..., : crop - dy, : crop - dx]).pow(2).mean()
        loss = terms.total.mean() + self.options.stability_weight * stability
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        self.losses = {"total": float(loss.detach()), "content": float(terms.content.detach().mean()),
                       "style": float(terms.style.detach().mean()), "stability": float(stability.detach() * self.options.stability_weight)}

    def _left(self) -> float | None:
        if self.step == self.resumed_from:
            return None
        per_step = self.elapsed / max(self.step, 1)
        if self.options.steps is not None:
            left = (self.options.steps - self.step) * per_step
            return left if self.options.minutes is None else min(left, self.options.minutes * 60 - self.elapsed)
        return max(self.options.minutes * 60 - self.elapsed, 0.0)

    def checkpoint(self) -> None:
        """The network and the optimiser, exactly, in safetensors (never a pickle), atomically."""
        tensors = {f"net.{name}": value.detach().cpu().contiguous() for name, value in self.net.state_dict().items()}
        for index, state in self.optimizer.state_dict()["state"].items():
            for name, value in state.items():
                tensors[f"adam.{index}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
        meta = {"key": self.key, "step": str(self.step), "elapsed": repr(self.elapsed)}
        temporary = partial_path(self.checkpoint_path)
        try:
            save_file(tensors, str(temporary), metadata=meta)
            publish(temporary, self.checkpoint_path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def resume(self) -> None:
        """Continue from the checkpoint, if one was made on this material with these settings."""
        if not self.checkpoint_path.is_file():
            return
        try:
            with safe_open(str(self.checkpoint_path), "pt") as handle:  # one read: tensors and metadata
                meta = handle.metadata() or {}
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        except (OSError, SafetensorError, ValueError):
            return  # a checkpoint cut short: start again rather than fail
        if meta.get("key") != self.key:
            return
        device = next(self.net.parameters()).device
        self.net.load_state_dict({name[4:]: value for name, value in tensors.items() if name.startswith("net.")})
        state = self.optimizer.state_dict()
        for index in range(len(state["param_groups"][0]["params"])):
            entries = {name.split(".", 2)[2]: value for name, value in tensors.items() if name.startswith(f"adam.{index}.")}
            if entries:
                state["state"][index] = {k: (v if k == "step" else v.to(device)) for k, v in entries.items()}
        self.optimizer.load_state_dict(state)
        self.step = self.resumed_from = int(meta["step"])
        self.elapsed = float(meta["elapsed"])

    def judged(self) -> dict[str, float]:
        """The judge's mean verdict on a few of the pictures trained on, whole, at the size the
        model is made for: style distance over the photo's own (0: the painting's statistics, 1:
        none) and content distance."""
        pictures = self.images.pictures
        picks = sorted({round(k * (len(pictures) - 1) / max(JUDGED_PICTURES - 1, 1)) for k in range(JUDGED_PICTURES)})
        device = next(self.net.parameters()).device
        verdicts = []
        for index in picks:
            photo = resize_long_edge(pictures[index][None].float() / 255, self.picture_edge)
            with torch.no_grad():
                painted = self.net(photo.to(device)).float().clamp(0, 1).cpu()
            verdicts.append(verdict(painted, photo, self.styles, self.settings))
        return {"style": round(sum(v.style for v in verdicts) / len(verdicts), 4),
                "content": round(sum(v.content for v in verdicts) / len(verdicts), 4)}

    def info(self) -> ModelInfo:
        return ModelInfo(architecture=self.spec, paintings=[Painting.of_file(s.image, s.weight) for s in self.styles],
                         strength=self.settings.strength, training_size=self.options.size, picture_edge=self.picture_edge, steps=self.step,
                         seconds=round(self.elapsed, 1), device=str(next(self.net.parameters()).device), judge=self.judged())


def _training_precision(settings: StyleSettings) -> StyleSettings:
    """`auto` trains in mixed precision wherever bf16 is native, the CPU included: thousands of
    steps of a loss that is averaged over a batch do not need fp32's last digits, and they
    take half the time. (The optimiser's `auto` stays fp32 on CPUs: L-BFGS is upset by bf16 noise.)"""
    if settings.precision != "auto" or not native_bf16(resolve_device(settings.device)):
        return settings
    return settings.model_copy(update={"precision": "mixed"})


def check_model_output(output: Path) -> Path:
    """A model is written as .safetensors, where it can be written: checked before any work."""
    if output.suffix.lower() != MODEL_SUFFIX:
        raise InputError(f"a model file is written as {MODEL_SUFFIX}; name it so (e.g. {output.stem}{MODEL_SUFFIX})", output)
    return check_destination(output)


def _recipe_key(spec: FastNetSpec, settings: StyleSettings, options: TrainingOptions, files: list[Path], styles) -> str:
    """What the weights depend on (not when to stop): a checkpoint of another recipe is not resumed."""
    recipe = {"spec": asdict(spec), "settings": settings.output_identity(), "material": material_digest(files),
              "styles": [[file_digest(Path(s.image)), s.weight] for s in styles],
              "options": {k: v for k, v in asdict(options).items() if k not in ("steps", "minutes")}}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()
