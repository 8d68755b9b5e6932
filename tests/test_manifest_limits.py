"""Hostile manifests are refused the way bad input is: exit 2, one line naming the file and where in
it (a line, or a location such as `jobs[0].size`), no traceback, nothing written. Each class of
failure is pinned with more than one instance, and `run` refuses what `validate` does."""

from __future__ import annotations

import pytest

from common import CLIP, PHOTO, STARRY, invoke, one_line_error
from pipeline.batch.strict_yaml import MAX_BYTES, MAX_DEPTH, MAX_INT_CHARS, MAX_SCALAR_CHARS
from pipeline.settings import MAX_ITERATIONS

JOB = f"  - name: a\n    input: {PHOTO}\n    style: {STARRY}\n"
GOOD = f"output_dir: out\ndefaults: {{size: 64}}\njobs:\n{JOB}"


def refused(tmp_path, text: str, *fragments: str) -> str:
    """validate and run both refuse the manifest with one line holding the file's name and the fragments."""
    manifest = tmp_path / "m.yaml"
    manifest.write_text(text)
    line = one_line_error(invoke("validate", manifest), str(manifest), *fragments)
    assert one_line_error(invoke("run", manifest), str(manifest), *fragments)
    assert not (tmp_path / "out").exists()
    return line


def test_a_plain_manifest_passes(tmp_path):
    """The baseline every refusal below differs from by one thing."""
    (tmp_path / "m.yaml").write_text(GOOD)
    assert invoke("validate", tmp_path / "m.yaml").exit_code == 0


# -- a key given twice: the second would silently win ------------------------------------------

FLOW_JOB = f"  - {{name: a, input: {PHOTO}, style: {STARRY}, name: b}}\n"


@pytest.mark.parametrize("text, expected", [
    (f"output_dir: out\noutput_dir: /etc\njobs:\n{JOB}", "'output_dir' at line 2 (first at line 1)"),
    (f"output_dir: out\njobs:\n{JOB}jobs:\n{JOB}", "'jobs' at line 6 (first at line 2)"),
    (f"output_dir: out\njobs:\n{JOB}    size: 64\n    name: b\n", "'name' at line 7 (first at line 3)"),
    (f"output_dir: out\ndefaults:\n  size: 64\n  seed: 1\n  size: 9000\njobs:\n{JOB}", "'size' at line 5 (first at line 3)"),
    # on one line: the columns too
    (f"output_dir: out\ndefaults: {{video: {{crf: 20, crf: 0}}}}\njobs:\n{JOB}", "'crf' at line 2 column 29 (first at column 20)"),
    (f"output_dir: out\njobs:\n{FLOW_JOB}", f"'name' at line 3 column {FLOW_JOB.rindex('name') + 1} (first at column 6)"),
])
def test_a_duplicate_key_names_the_key_and_both_places(tmp_path, text, expected):
    refused(tmp_path, text, f"duplicate key {expected}")


def test_merge_keys_still_merge_and_may_be_overridden(tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"output_dir: out\ndefaults: &d {{size: 64}}\njobs:\n"
                        f"  - &a {{name: a, input: {PHOTO}, style: {STARRY}, <<: *d}}\n  - {{<<: *a, name: b, size: 48}}\n")
    assert invoke("validate", manifest).exit_code == 0, invoke("validate", manifest).output


@pytest.mark.parametrize("key, kind", [("1", "a number"), ("yes", "a boolean"), ("~", "null"), ("[a]", "a list")])
def test_a_key_that_is_not_a_name_is_refused(tmp_path, key, kind):
    refused(tmp_path, f"output_dir: out\n{key}: x\njobs:\n{JOB}", "at line 2", f"is {kind}, not a name")


# -- size and depth: refused before they cost time or Python's recursion limit ----------------

@pytest.mark.parametrize("size", [MAX_BYTES + 1, 50 * 1024 * 1024])
def test_a_manifest_over_the_size_limit_is_refused_before_parsing(tmp_path, size):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(GOOD)
    with manifest.open("r+b") as file:
        file.truncate(size)  # NUL bytes beyond: never parsed, or the message would be about them
    line = one_line_error(invoke("validate", manifest), str(manifest), f"{size:,} bytes", "at most 1 MiB", "split it")
    assert line == one_line_error(invoke("run", manifest))


def test_a_large_manifest_under_the_limit_loads(tmp_path):
    (tmp_path / "m.yaml").write_text(GOOD + "# padding\n" * ((MAX_BYTES - len(GOOD)) // 10 - 1))
    assert invoke("validate", tmp_path / "m.yaml").exit_code == 0


@pytest.mark.parametrize("nested", [
    "[" * 20_000 + "]" * 20_000,  # once a RecursionError
    "{a: " * 5_000 + "1" + "}" * 5_000,
    "\n" + "".join(" " * (2 * i) + "-\n" for i in range(MAX_DEPTH + 5)),  # block style, one level a line
])
def test_nesting_past_the_limit_is_refused(tmp_path, nested):
    refused(tmp_path, f"output_dir: out\njobs: {nested}\n", f"nested more than {MAX_DEPTH} levels deep at line")


# -- numbers: too long to convert, out of range, not finite ------------------------------------

@pytest.mark.parametrize("where, value", [
    ("defaults.seed", "9" * 5000),  # over Python's 4300-digit limit: once a ValueError traceback
    ("jobs[0].size", "1" * (MAX_INT_CHARS + 1)),
    ("jobs[0].video.crf", "0x" + "f" * 4000),
    ("defaults.iterations", "1" + ":59" * 2000),  # sexagesimal: quadratic to convert
])
def test_an_integer_too_long_to_convert_names_its_location(tmp_path, where, value):
    first, _, rest = where.partition(".")
    text = (f"output_dir: out\ndefaults: {{{rest}: {value}}}\njobs:\n{JOB}" if first == "defaults" else
            f"output_dir: out\njobs:\n{JOB}    " + (f"video: {{crf: {value}}}\n" if "video" in rest else f"size: {value}\n"))
    refused(tmp_path, text, f"{where}: an integer", "out of range")


@pytest.mark.parametrize("key", ["input", "name"])
def test_a_value_longer_than_any_path_names_its_location(tmp_path, key):
    text = f"output_dir: out\njobs:\n{JOB}".replace(f"{key}: ", f"{key}: {'x' * (MAX_SCALAR_CHARS + 1)}", 1)
    refused(tmp_path, text, f"jobs[0].{key}: a value", "too long")


def test_a_name_longer_than_file_systems_allow_is_refused_not_raised(tmp_path):
    long = "x" * 300
    refused(tmp_path, f"output_dir: out\njobs:\n{JOB}".replace(f"input: {PHOTO}", f"input: {long}"), "jobs[0].input", "300 bytes long")
    refused(tmp_path, f"output_dir: {long}\njobs:\n{JOB}", "output_dir", "300 bytes long")
    refused(tmp_path, f"output_dir: out\njobs:\n{JOB}    preset: {long}\n", "jobs[0].preset: no preset named")


@pytest.mark.parametrize("setting, where, fragment", [
    (f"iterations: {10**30}", "jobs[0].iterations", f"less than or equal to {MAX_ITERATIONS}"),
    ("size: -5", "jobs[0].size", "greater than 15"),
    ("size: 100000", "jobs[0].size", "less than or equal to 8192"),
    (f"seed: {10**30}", "jobs[0].seed", "less than or equal to"),
    ("tile_size: 100000", "jobs[0].tile_size", "less than or equal to 8192"),
    ("style_weight: 1.0e+30", "jobs[0].style_weight", "less than or equal to"),
    ("quality: 1000", "jobs[0].quality", "less than or equal to 100"),
    (f"style: [{{path: {STARRY}, weight: 1.0e+300}}]", "jobs[0].style[0].weight", "less than or equal to"),
    (f"video: {{max_frames: {10**20}}}", "jobs[0].video.max_frames", "less than or equal to"),
    ("video: {start: 1.0e+300}", "jobs[0].video.start", "less than or equal to"),
    ("video: {long_term: [10, 100000]}", "jobs[0].video", "long_term jumps must be 1 to 1000"),
    ("video: {frame_iterations: -1}", "jobs[0].video.frame_iterations", "greater than or equal to 0"),
])
def test_a_number_out_of_range_names_its_location(tmp_path, setting, where, fragment):
    job = JOB.replace(f"    style: {STARRY}\n", "") if setting.startswith("style:") else JOB
    refused(tmp_path, f"output_dir: out\ndefaults: {{size: 64}}\njobs:\n{job}    {setting}\n", f"{where}: ", fragment)


@pytest.mark.parametrize("defaults, where, fragment", [
    (f"iterations: {10**30}", "defaults.iterations", "less than or equal to"),
    ("quality: 1000", "defaults.quality", "less than or equal to 100"),  # once taken as it was
    ("format: gif", "defaults.format", "'jpg', 'png' or 'webp'"),
    ("video: 3", "defaults.video", "valid dictionary"),  # once ignored
    ("preset: 5", "defaults.preset", "valid string"),
])
def test_a_bad_default_names_its_location(tmp_path, defaults, where, fragment):
    refused(tmp_path, f"output_dir: out\ndefaults: {{{defaults}}}\njobs:\n{JOB}", f"{where}: ", fragment)


@pytest.mark.parametrize("setting, where", [
    ("strength: .nan", "jobs[0].strength"),
    ("content_weight: .inf", "jobs[0].content_weight"),
    ("learning_rate: .NaN", "jobs[0].learning_rate"),
    ("style_layer_weights: [1, 1, .nan, 1, 1]", "jobs[0].style_layer_weights[2]"),
    ("video: {end: -.inf}", "jobs[0].video.end"),
])
def test_nan_and_infinity_are_refused_where_a_finite_number_is_needed(tmp_path, setting, where):
    refused(tmp_path, f"output_dir: out\ndefaults: {{size: 64}}\njobs:\n{JOB}    {setting}\n", f"{where}: ", "finite number")


# -- the same bounds on the command line --------------------------------------------------------

@pytest.mark.parametrize("command, option, value, fragment", [
    ("image", "--iterations", str(10**30), "option: iterations: Input should be less than or equal to"),
    ("image", "--seed", str(10**30), "option: seed"),
    ("image", "--tile-size", "100000", "option: tile_size"),
    ("image", "--style-weight", "1e30", "option: style_weight"),
    ("image", "--quality", "1000", "quality: must be 1 to 100"),
    ("video", "--max-frames", str(10**20), "option: max_frames"),
    ("video", "--long-term", "100000", "long_term jumps must be 1 to 1000"),
    ("video", "--frame-iterations", str(10**30), "option: frame_iterations"),
    ("video", "--start", "nan", "option: start: Input should be a finite number"),
])
def test_options_beyond_reason_are_refused_before_any_work(tmp_path, command, option, value, fragment):
    # An output no command writes: were the option let through, the command would stop at it at once, not run for ever.
    output = tmp_path / ("out.avi" if command == "video" else "out.gif")
    one_line_error(invoke(command, CLIP if command == "video" else PHOTO, "--style", STARRY, "-o", output, option, value), fragment)
    assert list(tmp_path.iterdir()) == []


def test_a_style_weight_beyond_reason_on_the_command_line_is_refused(tmp_path):
    one_line_error(invoke("image", PHOTO, "--style", f"{STARRY}:1e300", "--style", f"{STARRY}:1e300", "-o", tmp_path / "o.jpg",
                          "--size", "32", "--iterations", "1"), "style weights must be 0 to 1,000,000")
    assert list(tmp_path.iterdir()) == []


# -- presets beside a manifest are read with the same care --------------------------------------

@pytest.mark.parametrize("preset, fragment", [
    ("size: [unclosed\n", "not valid YAML at line 2"),
    ("- 1\n", "a preset is a mapping"),
    ("size: 64\nsize: 128\n", "duplicate key 'size' at line 2 (first at line 1)"),
])
def test_a_broken_preset_beside_the_manifest_names_both_files(tmp_path, preset, fragment):
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "mine.yaml").write_text(preset)
    line = refused(tmp_path, f"output_dir: out\njobs:\n{JOB}    preset: mine\n", "jobs[0].preset: ", fragment)
    assert str(tmp_path / "presets" / "mine.yaml") in line


def test_validate_shows_the_first_hundred_problems_and_counts_the_rest(tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text("output_dir: out\njobs: [" + "1, " * 250 + "1]\n")
    result = invoke("validate", manifest)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 101 and "Traceback" not in result.output
    assert "jobs[99]: Input should be a valid dictionary" in lines[99] and lines[100].endswith("and 151 more problems")


def test_a_key_that_looks_like_markup_is_printed_as_it_is(tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"output_dir: out\n'[/x]': 1\njobs:\n{JOB}")
    one_line_error(invoke("validate", manifest), "[/x]: unknown key")
