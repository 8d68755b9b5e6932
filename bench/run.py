"""`make bench`: speed, memory and time to quality, ours against pastiche and a tutorial
loop, on whatever device is present. Prints a table and appends it to bench/RESULTS.md."""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.evaluator import score  # noqa: E402
from bench.peers import run_pastiche, run_tutorial_loop  # noqa: E402
from pipeline import StyleSettings, stylize_image  # noqa: E402
from pipeline.device import describe_device, resolve_device  # noqa: E402
from pipeline.settings import VideoSettings  # noqa: E402
from pipeline.video import stylize_video  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONTENT = REPO / "samples/photos/chelsea.jpg"
STYLE = REPO / "samples/styles/starry_night.jpg"
PHOTOS = sorted((REPO / "samples/photos").glob("*.jpg"))
CLIP = REPO / "samples/realshort.mp4"
PASTICHE_STEPS = 100  # reference qualities: what each peer reaches in this many steps
TUTORIAL_STEPS = 300
OUR_LADDER = (10, 20, 30, 40, 50, 70, 100, 150, 200, 300)


class Bench:
    def __init__(self):
        self.device = resolve_device("auto")
        self.gpu = self.device.type == "cuda"
        self.rows: list[tuple[str, str]] = []
        self.scratch = Path(tempfile.mkdtemp(prefix="stylize-bench-"))

    def record(self, what: str, value: str) -> None:
        print(f"{what:60} {value}", flush=True)
        self.rows.append((what, value))

    def settings(self, **overrides) -> StyleSettings:
        base = dict(device=str(self.device), tolerance=0, scales=1, tile_size=4096)
        return StyleSettings(**{**base, **overrides})

    # -- sections ----------------------------------------------------------------
    def per_iteration(self) -> None:
        steps = {256: 40, 512: 30, 1024: 20} if self.gpu else {256: 6, 512: 4, 1024: 3}
        for size, count in steps.items():
            elapsed: dict[int, float] = {}
            if self.gpu:
                torch.cuda.reset_peak_memory_stats()
            stylize_image(CONTENT, STYLE, self.settings(size=size, iterations=count), lambda p, seen=elapsed: seen.__setitem__(p.iteration, p.elapsed))
            ms = (elapsed[count] - elapsed[1]) / (count - 1) * 1000
            self.record(f"ours: ms per iteration at {size} px", f"{ms:.1f}")
            self.record(f"ours: peak memory at {size} px", self.peak_memory())

    def pastiche_per_iteration(self, size: int) -> float:
        few, many = (5, 45) if self.gpu else (2, 12)
        short = run_pastiche(CONTENT, STYLE, self.scratch / "p_short.png", size, few, self.device.type)
        long = run_pastiche(CONTENT, STYLE, self.scratch / "p_long.png", size, many, self.device.type)
        return (long - short) / (many - few)  # start-up and loading cancel out

    def time_to_quality(self, size: int = 256) -> None:
        """For each peer: its score after a fixed number of steps, and how long we take to match it."""
        pastiche_file = self.scratch / "pastiche.png"
        wall = run_pastiche(CONTENT, STYLE, pastiche_file, size, PASTICHE_STEPS, self.device.type)
        startup = run_pastiche(CONTENT, STYLE, self.scratch / "p1.png", size, 1, self.device.type)
        self.compare("pastiche", PASTICHE_STEPS, pastiche_file, wall - startup, size)  # its optimisation only, like ours
        tutorial_file = self.scratch / "tutorial.png"
        seconds = run_tutorial_loop(CONTENT, STYLE, tutorial_file, size, TUTORIAL_STEPS, str(self.device))
        self.compare("tutorial loop (Adam)", TUTORIAL_STEPS, tutorial_file, seconds, size)

    def compare(self, peer: str, steps: int, output: Path, seconds: float, size: int) -> None:
        reference = score(output, CONTENT, STYLE, size, str(self.device))["total"]
        self.record(f"{peer}: judge total after {steps} steps at {size} px", f"{reference:.4g} in {seconds:.1f} s")
        text, ours = self.our_time_to(reference, size)
        self.record(f"ours: time to reach {peer}'s score", text)
        if ours is not None:
            self.record(f"ours / {peer}: time to the same quality (lower is better)", f"{ours / seconds:.2f}")

    def our_time_to(self, reference: float, size: int) -> tuple[str, float | None]:
        for steps in OUR_LADDER:
            output = self.scratch / f"ours_{steps}.png"
            result = stylize_image(CONTENT, STYLE, self.settings(size=size, iterations=steps))
            result.image.save(output)
            total = score(output, CONTENT, STYLE, size, str(self.device))["total"]
            if total <= reference:
                return f"{result.seconds:.1f} s ({steps} steps, total {total:.4g})", result.seconds
        return f"not reached in {OUR_LADDER[-1]} steps", None

    def photos_per_minute(self) -> None:
        iterations = 300 if self.gpu else 20
        started = time.perf_counter()
        for photo in PHOTOS:
            stylize_image(photo, STYLE, self.settings(size=512, iterations=iterations))
        rate = len(PHOTOS) / (time.perf_counter() - started) * 60
        self.record(f"ours: photos per minute at 512 px, {iterations} iterations, {len(PHOTOS)} photos", f"{rate:.1f}")

    def video_fps(self) -> None:
        sizes = (320, 1280) if self.gpu else (320,)
        frames = None if self.gpu else 6
        for size in sizes:
            result = stylize_video(CLIP, [STYLE], self.scratch / f"clip_{size}.mp4", self.settings(size=size, iterations=100),
                                   VideoSettings(max_frames=frames, frame_iterations=30))
            fps = result.frames_out / result.seconds
            ratio = f", flicker ratio {result.flicker_ratio:.2f}" if result.flicker_ratio is not None else ""
            self.record(f"ours: video frames per second at {size} px (incl. flow, first frame included)", f"{fps:.3f} ({result.frames_out} frames{ratio})")

    def peak_memory(self) -> str:
        if self.gpu:
            return f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB (GPU)"
        return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (process peak RSS)"

    def write(self) -> None:
        lines = [f"\n## {time.strftime('%Y-%m-%d %H:%M')} on {describe_device(self.device)}, torch {torch.__version__}\n",
                 "| measure | value |", "|---|---|"] + [f"| {what} | {value} |" for what, value in self.rows]
        with open(REPO / "bench" / "RESULTS.md", "a") as stream:
            stream.write("\n".join(lines) + "\n")


def main() -> None:
    bench = Bench()
    print(f"device: {describe_device(bench.device)}", flush=True)
    bench.per_iteration()
    for size in (256, 512):
        bench.record(f"pastiche: ms per iteration at {size} px", f"{bench.pastiche_per_iteration(size) * 1000:.1f}")
    bench.time_to_quality()
    bench.photos_per_minute()
    bench.video_fps()
    bench.write()


if __name__ == "__main__":
    main()
