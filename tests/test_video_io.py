"""Video decoding (pipeline.media.decode) and encoding (pipeline.media.encode) on tiny clips
made here with the bundled ffmpeg, plus the real sample clip."""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clips import frame_count, frame_times_of, pan_frames, stream_durations, write_two_video_streams, write_vfr_clip
from pipeline.errors import InputError, StylizeError
from pipeline.media import encode
from pipeline.media.decode import (FrameTimes, VideoInfo, frame_index, frame_times, probe_video, rational_fps,
                                   read_frames)
from pipeline.media.encode import CODECS, VideoEncoder, available_encoders, mux_audio
from pipeline.media.ffmpeg import ffmpeg_executable
from pipeline.media.files import partial_path, remove_partials_of

REAL_CLIP = Path(__file__).resolve().parents[1] / "samples" / "realshort.mp4"
GIF_COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]


def ffmpeg(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([ffmpeg_executable(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *arguments],
                          capture_output=True, text=True, timeout=60)


def make(path: Path, *arguments: str) -> Path:
    result = ffmpeg(*arguments, str(path))
    assert result.returncode == 0, result.stderr
    return path


def pattern(rate: str, seconds: float = 1.0, size: str = "64x48") -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}", "-t", str(seconds)]


SINE = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
X264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    clips = {
        "av": make(folder / "av.mp4", *pattern("1501/50"), *SINE, "-t", "1", *X264, "-c:a", "aac"),
        "silent": make(folder / "silent.mp4", *pattern("30000/1001"), *X264),
        "mov": make(folder / "clip.mov", *pattern("25", 0.6), *SINE, "-t", "0.6", *X264, "-c:a", "aac"),
        "mkv": make(folder / "clip.mkv", *pattern("24", 0.5), *SINE, "-t", "0.5", *X264, "-c:a", "libopus"),
        # Index at the front (+faststart), so a cut-off copy still opens.
        "long": make(folder / "long.mp4", *pattern("25", 2.0), *X264, "-g", "10", "-movflags", "+faststart"),
        "long_index_last": make(folder / "long_index_last.mp4", *pattern("25", 2.0), *X264),
    }
    frames = [Image.new("RGB", (40, 30), colour) for colour in GIF_COLOURS]  # distinct: Pillow merges repeats
    clips["gif"] = folder / "anim.gif"
    frames[0].save(clips["gif"], save_all=True, append_images=frames[1:], duration=100, loop=0)
    for name, source in [("truncated", "long"), ("no_index", "long_index_last")]:
        data = clips[source].read_bytes()
        clips[name] = folder / f"{name}.mp4"
        clips[name].write_bytes(data[: int(len(data) * 0.6)])
    clips["empty"] = folder / "empty.mp4"
    clips["empty"].write_bytes(b"")
    clips["text"] = folder / "text.mp4"
    clips["text"].write_text("not a video\n")
    return clips


@pytest.fixture(scope="module")
def rotated(clips) -> Path:
    """The silent clip tagged "display rotated 90 degrees" (stream copy)."""
    path = clips["silent"].with_name("rotated.mp4")
    result = ffmpeg("-display_rotation", "90", "-i", str(clips["silent"]), "-c", "copy", str(path))
    if result.returncode != 0:
        pytest.skip(f"bundled ffmpeg cannot write rotation metadata: {result.stderr.strip()[-200:]}")
    return path


@pytest.fixture(scope="module")
def real_frames() -> list[np.ndarray]:
    return list(read_frames(REAL_CLIP))


def encoder_for(codec: str) -> None:
    if encode._ENCODERS[codec] not in available_encoders():
        pytest.skip(f"bundled ffmpeg lacks {encode._ENCODERS[codec]}")


# --- probing and decoding -------------------------------------------------------------------


def test_probe_real_clip():
    info = probe_video(REAL_CLIP)
    assert isinstance(info, VideoInfo)
    assert (info.width, info.height) == (320, 240)
    assert info.fps == Fraction(1501, 50)
    assert (info.has_audio, info.audio_codec) == (True, "aac")
    assert info.duration == pytest.approx(1.2, abs=0.01)
    assert info.frame_count_hint == 36


def test_real_clip_frames(real_frames):
    assert len(real_frames) == frame_count(REAL_CLIP) == 36
    for frame in real_frames:
        assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8 and frame.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("name, size, fps, frames, audio", [
    ("av", (64, 48), Fraction(1501, 50), 30, "aac"),
    ("silent", (64, 48), Fraction(30000, 1001), 30, None),
    ("mov", (64, 48), Fraction(25), 15, "aac"),
    ("mkv", (64, 48), Fraction(24), 12, "opus"),
])
def test_probe_synthetic(clips, name, size, fps, frames, audio):
    info = probe_video(clips[name])
    assert (info.width, info.height) == size
    assert info.fps == fps
    assert (info.has_audio, info.audio_codec) == (audio is not None, audio)
    assert info.frame_count_hint == frame_count(clips[name]) == frames
    assert info.duration == pytest.approx(frames / fps, abs=0.05)
    video, sound = stream_durations(clips[name])
    assert video == pytest.approx(frames / fps, abs=1e-3)
    assert (sound is None) == (audio is None)


def test_gif_frames_and_rate(clips):
    info = probe_video(clips["gif"])
    assert (info.width, info.height, info.fps, info.has_audio) == (40, 30, Fraction(10), False)
    frames = list(read_frames(clips["gif"]))
    assert len(frames) == frame_count(clips["gif"]) == 6
    assert [tuple(int(v) for v in frame[15, 20]) for frame in frames] == GIF_COLOURS


def test_rotation_applied(clips, rotated):
    info = probe_video(rotated)
    if (info.width, info.height) == (64, 48):
        pytest.skip("the rotation metadata did not survive the stream copy")
    assert (info.width, info.height) == (48, 64)
    upright = list(read_frames(clips["silent"], max_frames=3))
    turned = list(read_frames(rotated, max_frames=3))
    assert turned[0].shape == (64, 48, 3)
    for plain, shown in zip(upright, turned):  # display rotation 90 = a quarter turn anticlockwise
        np.testing.assert_array_equal(shown, np.rot90(plain, 1))


def test_selection_by_time_and_count(clips):
    path = clips["silent"]  # 30 frames at 30000/1001
    every = list(read_frames(path))
    assert len(every) == 30

    def same(selected, expected):
        assert len(selected) == len(expected)
        for a, b in zip(selected, expected):
            np.testing.assert_array_equal(a, b)

    same(list(read_frames(path, start=0.5, end=0.8)), every[15:24])  # round(0.5*29.97)=15, round(0.8*29.97)=24
    same(list(read_frames(path, max_frames=4)), every[:4])
    same(list(read_frames(path, start=0.5, max_frames=4)), every[15:19])
    same(list(read_frames(path, start=0.9, end=5.0)), every[27:])
    assert list(read_frames(path, max_frames=0)) == []


@pytest.mark.parametrize("seconds, fps, index", [(0.5, Fraction(25), 13), (0.3, Fraction(25), 8), (0.0, Fraction(25), 0),
                                                  (0.5, Fraction(30000, 1001), 15), (1.0, Fraction(1501, 50), 30)])
def test_frame_index_rounds_half_up(seconds, fps, index):
    assert frame_index(seconds, fps) == index


@pytest.mark.parametrize("arguments", [dict(start=-1.0), dict(start=0.5, end=0.5), dict(max_frames=-1)])
def test_bad_selection_rejected(clips, arguments):
    with pytest.raises(InputError):
        read_frames(clips["silent"], **arguments)


def test_start_past_the_end(clips):
    with pytest.raises(InputError, match="past the end"):
        list(read_frames(clips["silent"], start=10.0))


def test_truncated_clip_yields_what_decodes(clips):
    full = frame_count(clips["long"])
    frames = list(read_frames(clips["truncated"]))  # no exception
    assert 0 < len(frames) < full
    assert len(frames) == frame_count(clips["truncated"])
    assert probe_video(clips["truncated"]).frame_count_hint == full  # the header still claims all of them


@pytest.mark.parametrize("name", ["empty", "text", "no_index", "missing", "folder"])
def test_undecodable_inputs_name_the_file(clips, tmp_path, name):
    path = {"missing": tmp_path / "missing.mp4", "folder": tmp_path}.get(name) or clips[name]
    for call in (probe_video, read_frames, frame_count, stream_durations):
        with pytest.raises(InputError) as caught:
            call(path)
        assert str(path) in str(caught.value)
        assert caught.value.exit_code == 2


@pytest.mark.parametrize("value, expected", [
    (30.02, Fraction(1501, 50)), (30.020013342228154, Fraction(1501, 50)),
    (30000 / 1001, Fraction(30000, 1001)), (24000 / 1001, Fraction(24000, 1001)),
    (60000 / 1001, Fraction(60000, 1001)), (25.0, Fraction(25)), (12.5, Fraction(25, 2)), (100 / 7, Fraction(100, 7)),
])
def test_rational_fps(value, expected):
    assert rational_fps(value) == expected


# --- variable frame rates ---------------------------------------------------------------------

# A camera that drops frames: shown at these twentieths of a second (0, .2, .4, .6, .65, .7, ...).
VFR_SLOTS = [0, 4, 8, 12, 13, 14, 15, 16, 17, 20, 21, 22]


@pytest.fixture(scope="module")
def vfr_clip(tmp_path_factory) -> Path:
    return write_vfr_clip(tmp_path_factory.mktemp("vfr") / "vfr.mp4", pan_frames(len(VFR_SLOTS), size=(32, 24)), VFR_SLOTS)


def test_variable_frame_rate_times_come_from_the_source(vfr_clip):
    source_times, source_end = frame_times_of(vfr_clip)
    assert source_times == pytest.approx([slot / 20 for slot in VFR_SLOTS], abs=1e-6)
    info = probe_video(vfr_clip)
    assert info.fps == Fraction(len(VFR_SLOTS) * 20, VFR_SLOTS[-1] + 1)  # the average: 12 frames in 1.15 s
    times = frame_times(vfr_clip, info=info)
    assert times.start == 0 and times.times == pytest.approx(source_times, abs=1e-6)
    assert times.end == pytest.approx(source_end, abs=1e-6)  # the last lasts as long as the one before
    assert not times.constant(info.fps)
    assert len(list(read_frames(vfr_clip))) == len(VFR_SLOTS)


@pytest.mark.parametrize("name", ["av", "silent", "mov", "mkv", "gif", "long"])
def test_constant_rate_clips_are_on_their_grid(clips, name):
    info = probe_video(clips[name])
    times = frame_times(clips[name], info=info)
    assert len(times.times) == frame_count(clips[name]) and times.constant(info.fps)
    assert times.end == pytest.approx(len(times.times) / info.fps, abs=1e-3)


def test_a_gif_with_mixed_delays_keeps_them(tmp_path):
    path = tmp_path / "mixed.gif"
    frames = [Image.new("RGB", (40, 30), colour) for colour in GIF_COLOURS[:4]]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=[100, 300, 50, 200], loop=0)
    info = probe_video(path)
    times = frame_times(path, info=info)
    assert info.fps == Fraction(4000, 650) and not times.constant(info.fps)
    assert times.times == pytest.approx([0, 0.1, 0.4, 0.45]) and times.end == pytest.approx(0.65)


def test_variable_frame_rate_selection_follows_the_timestamps(vfr_clip):
    """--start/--end pick frames by their own times (index = time x the average rate, rounded): at
    240/23 fps, 0.5 s is index 5, so the frame at 0.4 s (index 4.2) is out and the one at 0.6 s in."""
    every = list(read_frames(vfr_clip))
    selected = list(read_frames(vfr_clip, start=0.5, end=0.9))
    assert len(selected) == 5  # 0.6, 0.65, 0.7, 0.75, 0.8 (0.85 s is index 8.9, past 0.9 s = index 9.4)
    for got, expected in zip(selected, every[3:8]):
        np.testing.assert_array_equal(got, expected)
    times = frame_times(vfr_clip, start=0.5, end=0.9)
    assert times.start == pytest.approx(0.6) and times.times == pytest.approx([0, 0.05, 0.1, 0.15, 0.2])
    assert times.end == pytest.approx(0.25)  # where the next frame, at 0.85 s, starts
    limited = frame_times(vfr_clip, start=0.5, max_frames=2)
    assert limited.times == pytest.approx([0, 0.05]) and limited.end == pytest.approx(0.1)
    assert len(list(read_frames(vfr_clip, start=0.5, max_frames=5, skip=3))) == 2


def test_encoder_keeps_each_frames_time(tmp_path, vfr_clip):
    times = frame_times(vfr_clip)
    frames = list(read_frames(vfr_clip))
    output = tmp_path / "kept.mp4"
    height, width = frames[0].shape[:2]
    with VideoEncoder(output, width, height, probe_video(vfr_clip).fps, times=times, audio_from=vfr_clip,
                      audio_duration=times.end) as encoder:
        for frame in frames:
            encoder.write(frame)
        with pytest.raises(ValueError, match="no timestamp"):
            encoder.write(frames[0])
        assert encoder.close().audio_kept
    output_times, output_end = frame_times_of(output)
    assert output_times == pytest.approx(times.times, abs=1e-6) and output_end == pytest.approx(times.end, abs=1e-6)
    assert stream_durations(output)[1] == pytest.approx(times.end, abs=0.05)  # the audio ends with the last frame
    decoded = np.stack(list(read_frames(output))).astype(int)
    nearest = [int(np.argmin([np.abs(frame - source).mean() for source in frames])) for frame in decoded]
    assert nearest == list(range(len(frames)))  # each frame where it was, none dropped or repeated


def test_encoder_times_in_the_given_time_base(tmp_path):
    """Times a time base holds exactly come back exactly, even where the encoder's default would round
    them to a guessed frame rate (0.633 s is no multiple of 1/30)."""
    frames = [np.full((24, 32, 3), value, np.uint8) for value in (0, 60, 120, 180)]
    times = FrameTimes(0.0, (0.0, 0.2, 0.233, 0.633), 0.7, Fraction(1, 1000))
    output = tmp_path / "exact.mkv"
    with VideoEncoder(output, 32, 24, Fraction(40, 7), times=times) as encoder:
        for frame in frames:
            encoder.write(frame)
        encoder.close()
    assert frame_times_of(output) == ([0.0, 0.2, 0.233, 0.633], 0.7)


# --- the main video stream ---------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_the_main_stream_is_the_one_ffmpeg_plays(tmp_path, suffix):
    side, main = pan_frames(4, size=(16, 16), photo="coffee"), pan_frames(6)
    path = write_two_video_streams(tmp_path / f"two{suffix}", side, main)
    info = probe_video(path)
    assert (info.width, info.height, info.stream, info.decoder) == (64, 48, 1, "ffmpeg")
    assert info.fps == 25 and info.has_audio
    frames = list(read_frames(path))
    assert len(frames) == 6 and frames[0].shape == (48, 64, 3)
    alone = make(tmp_path / f"alone{suffix}", "-i", str(path), "-map", "0:1", "-c", "copy")  # what OpenCV reads
    assert probe_video(alone).decoder == "opencv"
    for got, expected in zip(frames, read_frames(alone), strict=True):  # decoded by ffmpeg as OpenCV does
        np.testing.assert_array_equal(got, expected)
    later = list(read_frames(path, start=0.1, max_frames=2, info=info))  # 0.1 s at 25 fps: frame 3
    for got, expected in zip(later, frames[3:5]):
        np.testing.assert_array_equal(got, expected)
    times = frame_times(path, info=info)
    assert times.constant(info.fps) and len(times.times) == 6


# --- encoding ---------------------------------------------------------------------------------


def encode_all(output: Path, frames, fps: Fraction, **options):
    height, width = frames[0].shape[:2]
    with VideoEncoder(output, width, height, fps, **options) as encoder:
        for frame in frames:
            encoder.write(frame)
        assert not output.exists()  # never half-written at the output path
        return encoder.close()


def test_round_trip_real_clip(tmp_path, real_frames):
    info = probe_video(REAL_CLIP)
    output = tmp_path / "styled.mp4"
    duration = len(real_frames) / info.fps
    result = encode_all(output, real_frames, info.fps, audio_from=REAL_CLIP, audio_duration=duration)
    assert (result.path, result.frames, result.audio_kept) == (output, 36, True)
    assert sorted(tmp_path.iterdir()) == [output]  # no temporary left beside it

    out = probe_video(output)
    assert out.fps == info.fps
    assert (out.width, out.height) == (320, 240)
    assert (out.has_audio, out.audio_codec) == (True, "aac")
    decoded = list(read_frames(output))
    assert len(decoded) == frame_count(output) == 36
    assert np.abs(decoded[10].astype(int) - real_frames[10]).mean() < 3  # crf 18: close to the source
    period = 1 / float(info.fps)
    video, audio = stream_durations(output)
    assert video == pytest.approx(float(duration), abs=period)
    assert audio == pytest.approx(video, abs=period)


def test_audio_copied_and_trimmed(tmp_path, clips):
    frames = list(read_frames(clips["av"], max_frames=15))  # half the clip: the audio must be cut to match
    fps = probe_video(clips["av"]).fps
    output = tmp_path / "half.mkv"
    assert encode_all(output, frames, fps, audio_from=clips["av"], audio_duration=15 / fps).audio_kept
    period = 1 / float(fps)
    video, audio = stream_durations(output)
    assert video == pytest.approx(15 * period, abs=period)
    assert audio == pytest.approx(video, abs=period)


def test_audio_from_a_later_start_is_reencoded(tmp_path, clips):
    fps = probe_video(clips["av"]).fps
    frames = list(read_frames(clips["av"], start=0.5, max_frames=9))
    output = tmp_path / "middle.mp4"
    result = encode_all(output, frames, fps, audio_from=clips["av"], audio_start=0.5, audio_duration=9 / fps)
    assert result.audio_kept
    period = 1 / float(fps)
    video, audio = stream_durations(output)
    assert video == pytest.approx(9 * period, abs=period)
    assert audio == pytest.approx(9 * period, abs=period)


def audio_onset(path: Path) -> float:
    """Seconds until the first loud sample of the first audio stream."""
    raw = subprocess.run([ffmpeg_executable(), "-loglevel", "error", "-i", str(path), "-map", "0:a:0", "-f", "s16le",
                          "-ac", "1", "-ar", "44100", "-"], capture_output=True, timeout=60, check=True).stdout
    samples = np.abs(np.frombuffer(raw, np.int16).astype(int))
    assert samples.max() > 3000, "no beep found"
    return int(np.argmax(samples > 3000)) / 44100


@pytest.mark.parametrize("start, frames, suffix", [(0.0, 25, ".mkv"), (0.5, 10, ".mp4"), (0.5, 10, ".webm")])
def test_audio_stays_in_sync(tmp_path, start, frames, suffix):
    """A beep at 0.6 s must sound at 0.6 - start in the output: copied (start 0)
    or re-encoded (a later start), AAC priming and all."""
    beep = "aevalsrc=if(between(t\\,0.6\\,0.7)\\,sin(2*PI*440*t)\\,0):s=44100"
    source = make(tmp_path / "beep.mp4", *pattern("25"), "-f", "lavfi", "-i", beep, "-t", "1", *X264, "-c:a", "aac")
    assert audio_onset(source) == pytest.approx(0.6, abs=0.002)
    output = tmp_path / f"out{suffix}"
    codec = "vp9" if suffix == ".webm" else "h264"
    selected = list(read_frames(source, start=start, max_frames=frames))
    encode_all(output, selected, Fraction(25), codec=codec, audio_from=source, audio_start=start,
               audio_duration=frames / 25)
    assert audio_onset(output) == pytest.approx(0.6 - start, abs=0.005)


@pytest.mark.parametrize("start, frames, suffix", [(0.0, 25, ".mp4"), (0.5, 10, ".mp4")])
def test_mux_audio_afterwards(tmp_path, start, frames, suffix):
    """Encode silent first, add the sound after: in sync, same length, the silent file consumed."""
    beep = "aevalsrc=if(between(t\\,0.6\\,0.7)\\,sin(2*PI*440*t)\\,0):s=44100"
    source = make(tmp_path / "beep.mp4", *pattern("25"), "-f", "lavfi", "-i", beep, "-t", "1", *X264, "-c:a", "aac")
    silent = tmp_path / f".silent{suffix}"
    encode_all(silent, list(read_frames(source, start=start, max_frames=frames)), Fraction(25))
    output = tmp_path / f"out{suffix}"
    assert mux_audio(silent, source, output, start, frames / 25) is True
    assert sorted(tmp_path.iterdir()) == [source, output]
    assert frame_count(output) == frames
    video, audio = stream_durations(output)
    assert video == pytest.approx(frames / 25, abs=0.04) and audio == pytest.approx(video, abs=0.04)
    assert audio_onset(output) == pytest.approx(0.6 - start, abs=0.005)


def test_mux_audio_without_sound_renames(tmp_path, clips):
    silent = tmp_path / ".silent.mp4"
    encode_all(silent, list(read_frames(clips["silent"], max_frames=3)), Fraction(30000, 1001))
    output = tmp_path / "out.mp4"
    assert mux_audio(silent, clips["silent"], output) is False
    assert mux_audio(output, None, tmp_path / "again.mp4") is False
    assert sorted(tmp_path.iterdir()) == [tmp_path / "again.mp4"]
    assert frame_count(tmp_path / "again.mp4") == 3


def test_colours_survive(tmp_path):
    """RGB -> YUV with the BT.709 matrix and tagged so: decoders turn it back into the same colours."""
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (200, 120, 40)]
    frames = [np.full((48, 64, 3), colour, np.uint8) for colour in colours]
    output = tmp_path / "colours.mp4"
    encode_all(output, frames, Fraction(25))
    for frame, colour in zip(read_frames(output), colours):
        assert np.abs(frame.reshape(-1, 3).mean(axis=0) - colour).max() < 4
    header = subprocess.run([ffmpeg_executable(), "-hide_banner", "-i", str(output)], capture_output=True, text=True,
                            timeout=60).stderr  # no output named: ffmpeg describes the input and exits 1
    assert "yuv420p(tv, bt709, progressive)" in header


def test_source_without_audio(tmp_path, clips):
    frames = list(read_frames(clips["silent"], max_frames=5))
    output = tmp_path / "quiet.mp4"
    result = encode_all(output, frames, Fraction(30000, 1001), audio_from=clips["silent"])
    assert (result.frames, result.audio_kept) == (5, False)
    assert probe_video(output).has_audio is False
    assert probe_video(output).fps == Fraction(30000, 1001)


@pytest.mark.parametrize("codec, suffix, audio", [("h265", ".mp4", "aac"), ("vp9", ".webm", "opus"),
                                                  ("prores", ".mov", "aac")])
def test_other_codecs(tmp_path, clips, codec, suffix, audio):
    encoder_for(codec)
    frames = list(read_frames(clips["av"], max_frames=6))
    fps = Fraction(1501, 50)
    output = tmp_path / f"out{suffix}"
    result = encode_all(output, frames, fps, codec=codec, audio_from=clips["av"], audio_duration=6 / fps)
    assert result.audio_kept
    info = probe_video(output)
    assert (info.fps, info.audio_codec, frame_count(output)) == (fps, audio, 6)
    assert sorted(tmp_path.iterdir()) == [output]


def test_codec_names_match_encoders():
    assert set(CODECS) == set(encode._ENCODERS)


@pytest.mark.parametrize("width, height", [(65, 48), (64, 47), (0, 48)])
def test_odd_or_empty_size_rejected(tmp_path, width, height):
    with pytest.raises(InputError, match="even"):
        VideoEncoder(tmp_path / "odd.mp4", width, height, Fraction(25))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, codec, message", [
    ("out.webm", "prores", "cannot hold prores"), ("out.webm", "h264", "cannot hold h264"),
    ("out.avi", "h264", "unsupported video format"), ("out", "h264", "unsupported video format"),
    ("out.mp4", "av1", "unknown codec"),
])
def test_container_mismatch_rejected(tmp_path, name, codec, message):
    with pytest.raises(InputError, match=message) as caught:
        VideoEncoder(tmp_path / name, 64, 48, Fraction(25), codec=codec)
    assert name in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_missing_audio_source_rejected(tmp_path):
    missing = tmp_path / "gone.mp4"
    with pytest.raises(InputError, match="file not found") as caught:
        VideoEncoder(tmp_path / "out.mp4", 64, 48, Fraction(25), audio_from=missing)
    assert str(missing) in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_abort_leaves_nothing(tmp_path):
    frame = np.zeros((48, 64, 3), np.uint8)
    encoder = VideoEncoder(tmp_path / "aborted.mp4", 64, 48, Fraction(25))
    for _ in range(5):
        encoder.write(frame)
    encoder.abort()
    encoder.abort()  # twice is harmless
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(StylizeError):
        encoder.write(frame)


def test_temporaries_of_an_encode_in_steps_are_named_after_the_output(tmp_path):
    """What a SIGKILL mid-encode leaves (the silent picture's file and ffmpeg's temporary for it) is
    what remove_partials_of(output) removes."""
    output = tmp_path / "clip.mp4"
    silent = partial_path(output)
    encoder = VideoEncoder(silent, 64, 48, Fraction(25), partial_of=output)
    try:
        for _ in range(3):
            encoder.write(np.zeros((48, 64, 3), np.uint8))
        left = sorted(p.name for p in tmp_path.iterdir())
        assert len(left) == 2 and all(name.startswith(".clip.") and name.endswith(".partial.mp4") for name in left), left
        remove_partials_of(output)
        assert list(tmp_path.iterdir()) == []
    finally:
        encoder.abort()
    with pytest.raises(ValueError, match="another container"):
        VideoEncoder(tmp_path / ".x.mkv", 64, 48, Fraction(25), partial_of=output)


def test_exception_in_with_block_aborts(tmp_path):
    with pytest.raises(RuntimeError, match="stylizer broke"):
        with VideoEncoder(tmp_path / "broken.mp4", 64, 48, Fraction(25)) as encoder:
            encoder.write(np.zeros((48, 64, 3), np.uint8))
            raise RuntimeError("stylizer broke")
    assert list(tmp_path.iterdir()) == []


def test_ffmpeg_failure_reported_and_cleaned_up(tmp_path, monkeypatch):
    monkeypatch.setitem(encode._CODEC_OPTIONS, "h264", ["-preset", "no-such-preset"])
    output = tmp_path / "failed.mp4"
    with pytest.raises(StylizeError, match="encoding failed: .*invalid preset") as caught:
        with VideoEncoder(output, 64, 48, Fraction(25)) as encoder:
            for _ in range(30):
                encoder.write(np.zeros((48, 64, 3), np.uint8))
            encoder.close()
    assert str(output) in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_replaced_only_on_success(tmp_path):
    output = tmp_path / "kept.mp4"
    output.write_bytes(b"previous result")
    with VideoEncoder(output, 64, 48, Fraction(25)) as encoder:
        for value in range(0, 250, 25):
            encoder.write(np.full((48, 64, 3), value, np.uint8))
        assert output.read_bytes() == b"previous result"
        result = encoder.close()
    assert result.frames == frame_count(output) == 10
    assert sorted(tmp_path.iterdir()) == [output]


def test_no_frames_is_an_error(tmp_path):
    encoder = VideoEncoder(tmp_path / "empty.mp4", 64, 48, Fraction(25))
    with pytest.raises(StylizeError, match="no frames"):
        encoder.close()
    assert list(tmp_path.iterdir()) == []


def test_frame_shape_checked(tmp_path):
    with VideoEncoder(tmp_path / "shape.mp4", 64, 48, Fraction(25)) as encoder:
        with pytest.raises(ValueError, match="shape"):
            encoder.write(np.zeros((64, 48, 3), np.uint8))
        with pytest.raises(ValueError):
            encoder.write(np.zeros((48, 64, 3), np.float32))
        encoder.write(np.zeros((48, 64, 3), np.uint8))
        buffer = np.zeros((48, 64, 3), np.uint8)
        encoder.write(buffer)
        buffer[:] = 255  # write() copied: reusing the buffer does not change the queued frame
        assert encoder.close().frames == 2
    with pytest.raises(StylizeError, match="already closed"):
        encoder.write(buffer)
