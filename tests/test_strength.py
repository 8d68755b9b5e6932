"""`strength` (Step 10): one knob that means the same across paintings. Equal strength gives
comparable distances on different paintings, as the judge (pipeline/engine/judge.py) measures
them, and more strength is always more of the painting and less of the photo."""

from __future__ import annotations

import pytest

from pipeline import StyleSettings, stylize_image
from pipeline.batch.manifest import load_manifest
from pipeline.batch.plan import validate_manifest
from pipeline.engine.judge import verdict
from tests.common import PHOTO, REPO, STARRY

PAINTINGS = [STARRY, REPO / "samples/styles/great_wave_hokusai.jpg", REPO / "samples/styles/udnie_picabia.jpg"]
STRENGTHS = (0.2, 0.5, 0.8)
# The README's "Strength and balance" documents this: at equal strength, the style distances on
# different paintings are within this factor of each other (here 1.3-2.1; with the old fixed
# weight, 4-7 on the evaluation set).
STYLE_SPREAD = 2.5


@pytest.fixture(scope="module")
def verdicts():
    """{painting: [verdict at each of STRENGTHS]}, at a tiny size and a few steps."""
    found = {}
    for painting in PAINTINGS:
        found[painting.name] = []
        for strength in STRENGTHS:
            settings = StyleSettings(size=64, iterations=40, tolerance=0, device="cpu", strength=strength)
            found[painting.name].append(verdict(stylize_image(PHOTO, painting, settings).tensor, PHOTO, painting, settings))
    return found


def test_equal_strength_gives_comparable_style_distances_on_three_paintings(verdicts):
    for index, strength in enumerate(STRENGTHS):
        styles = [row[index].style for row in verdicts.values()]
        assert max(styles) / min(styles) <= STYLE_SPREAD, (strength, styles)
        assert all(0 < style < 1 for style in styles)  # styled, and not the painting copied


def test_more_strength_is_more_painting_and_less_photo(verdicts):
    for painting, row in verdicts.items():
        styles, contents = [v.style for v in row], [v.content for v in row]
        assert styles == sorted(styles, reverse=True) and len(set(styles)) == len(styles), (painting, styles)
        assert contents == sorted(contents) and len(set(contents)) == len(contents), (painting, contents)


def test_strength_is_checked_and_reaches_the_style_term():
    assert StyleSettings(strength=1).style_balance() == pytest.approx(10 * StyleSettings().style_balance())
    assert StyleSettings(strength=0).style_balance() == pytest.approx(StyleSettings().style_balance() / 10)
    with pytest.raises(ValueError, match="strength"):
        StyleSettings(strength=1.2)


def test_strength_is_a_manifest_key_checked_where_it_is_set(tmp_path):
    manifest = tmp_path / "night.yaml"
    manifest.write_text(f"""
output_dir: out
defaults: {{strength: 0.3}}
jobs:
  - {{name: faces, input: {PHOTO}, style: {STARRY}}}
  - {{name: bold, input: {PHOTO}, style: {STARRY}, strength: 0.9}}
  - {{name: wrong, input: {PHOTO}, style: {STARRY}, strength: 2}}
""")
    assert any("jobs[2].strength" in problem for problem in validate_manifest(manifest))
    manifest.write_text(manifest.read_text().rsplit("  - {name: wrong", 1)[0])
    assert [job.settings.strength for job in load_manifest(manifest).jobs] == [0.3, 0.9]
